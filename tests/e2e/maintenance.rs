//! Maintenance mode: the router answers 503 with a maintenance page while the app's processes
//! keep running, across a server restart, and serves the app again when it is turned off.

use crate::support::{Env, containers_by_label};

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_mode_serves_a_page_without_touching_containers() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("maint", "static-server");
    env.push_ok(&repo);
    assert_eq!(env.get_app(&app).await.0, 200);
    let before = containers_by_label(&app);

    let on = env.slipway_ok(&repo, &["maintenance:on"]);
    assert!(on.contains("Maintenance mode is on"), "{on}");
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 503);
    assert!(body.to_lowercase().contains("maintenance"), "{body}");
    assert_eq!(containers_by_label(&app), before, "containers were touched");
    assert!(
        env.slipway_ok(&repo, &["maintenance"])
            .contains("is in maintenance mode")
    );

    // The flag is stored: a restarted server still shows the page.
    server.stop();
    let server = env.start_server();
    assert_eq!(env.get_app(&app).await.0, 503);

    env.slipway_ok(&repo, &["maintenance:off"]);
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("index.txt"), "{body}");
    server.stop();
}
