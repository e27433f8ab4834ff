//! Zero-downtime restarts: a new `slipway server` started beside the running one takes its
//! sockets over; requests through the router never fail and the apps are not restarted.

use std::time::Duration;

use crate::support::{Env, Load, app_containers, eventually};

/// `python3 -m http.server` lists the fixture's files at `/`.
fn lists_the_fixture(body: &str) -> bool {
    body.contains("index.txt")
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_under_load_drop_no_request() {
    let env = Env::new();
    let mut server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("restart", "static-server");
    env.push_ok(&repo);
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200, "{body}");
    let containers = app_containers(&app);
    assert_eq!(containers.len(), 1, "{containers:?}");

    let load = Load::start(&env, &app, 8, Duration::from_secs(300), lists_the_fixture);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for round in 1..=3 {
        let old_pid = server.pid();
        let mut next = env.start_server();
        let exited = server.wait_exit(Duration::from_secs(60));
        assert!(
            exited.is_some_and(|status| status.success()),
            "round {round}: the old server (pid {old_pid}) did not hand over and exit 0 within 60 s ({exited:?}): {}",
            next.log_text()
        );
        assert!(
            next.wait_exit(Duration::ZERO).is_none(),
            "round {round}: the new server exited: {}",
            next.log_text()
        );
        server = next;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let report = load.stop().await;
    // No request may fail: no error answer, and none lost on a connection closed under it.
    report.assert_none_failed("restarts: during 3 restarts", || server.log_text());
    assert_eq!(
        app_containers(&app),
        containers,
        "a restart must not restart the app"
    );

    // The last server took the git hook socket over too: a push builds and releases.
    env.git_ok(
        &repo,
        &["commit", "-q", "--allow-empty", "-m", "fix: after restarts"],
    );
    let push = env.push_ok(&repo);
    assert!(push.contains("Released 1.0.1"), "{push}");
    assert!(
        eventually(Duration::from_secs(30), async || env.get_app(&app).await.0
            == 200)
        .await,
        "the app stopped answering after the push"
    );

    // SIGTERM with no successor still stops the server cleanly and leaves the app running.
    assert!(
        eventually(Duration::from_secs(60), async || app_containers(&app).len()
            == 1)
        .await,
        "the previous release's container was not stopped: {:?}",
        app_containers(&app)
    );
    let containers = app_containers(&app);
    let status = server.stop_status();
    assert!(
        status.is_some_and(|status| status.success()),
        "SIGTERM must stop the server with status 0: {status:?}"
    );
    assert_eq!(app_containers(&app), containers);
}
