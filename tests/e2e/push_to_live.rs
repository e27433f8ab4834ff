//! The walking skeleton, whole: push a Flask app, see it through the router, bump versions
//! with Conventional Commits, change config, survive a failed build and a failed release,
//! restart the server without restarting the app.

use std::path::Path;

use slipway_types::api::{ReleaseInfo, ReleaseStatus};

use crate::support::{AppCleanup, Env, app_containers, fixture_repo, text, unique_app};

fn commit(env: &Env, repo: &Path, file: &str, contents: &str, message: &str) {
    std::fs::write(repo.join(file), contents).expect("writing file");
    env.git_ok(repo, &["add", "."]);
    env.git_ok(repo, &["commit", "-q", "-m", message]);
}

fn releases(env: &Env, repo: &Path) -> Vec<ReleaseInfo> {
    let json = env.slipway_ok(repo, &["releases", "--json"]);
    serde_json::from_str(&json).expect("releases JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn push_build_release_route_config_and_restart() {
    let env = Env::new();
    let server = env.start_server();
    let app = unique_app("e2e");
    let _cleanup = AppCleanup(app.clone());
    let home = env.home();
    let repo = env.root.path().join("repo");

    // Log in with the token the first start wrote.
    let token_file = env.data_dir().join("admin.token");
    let token = std::fs::read_to_string(&token_file).expect("admin.token written on first start");
    env.slipway_ok(
        &home,
        &["login", "--url", &env.api_url(), "--token", token.trim()],
    );
    assert!(
        std::fs::read_to_string(home.join(".netrc"))
            .expect(".netrc written by login")
            .contains("machine 127.0.0.1"),
    );
    assert!(env.slipway_ok(&home, &["whoami"]).contains("admin"));

    // Bad names are refused with a message naming them; nothing is created.
    let bad = env.slipway(&home, &["apps:create", "Bad_Name"]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("`Bad_Name`"), "{}", text(&bad));

    env.slipway_ok(&home, &["apps:create", &app]);
    fixture_repo(&env, "flask-app", &repo);
    env.slipway_ok(&repo, &["git:remote", "-a", &app]);

    // First push: 1.0.0, served through the router.
    let push = env.git(&repo, &["push", "platform", "main"]);
    let output = text(&push);
    assert!(
        push.status.success(),
        "first push failed:\n{output}\n{}",
        server.log_text()
    );
    assert!(
        output.contains("remote: -----> Python app detected"),
        "{output}"
    );
    let url = format!("http://{app}.localhost:{}", env.http_port);
    assert!(
        output.contains(&format!("-----> Released 1.0.0 to {url}")),
        "{output}"
    );
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello from release 1.0.0 on web.1\n");

    // A `feat:` commit is a minor bump.
    commit(&env, &repo, "NOTES.md", "more\n", "feat: add notes");
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(push.status.success(), "{}", text(&push));
    assert!(text(&push).contains("Released 1.1.0"), "{}", text(&push));
    assert_eq!(
        env.get_app(&app).await.1,
        "hello from release 1.1.0 on web.1\n"
    );

    // A config change cuts a patch release with the same image; the app sees the value.
    let set = env.slipway_ok(&repo, &["config:set", "GREETING=hi"]);
    assert!(set.contains("1.1.1"), "{set}");
    assert_eq!(
        env.get_app(&app).await.1,
        "hi from release 1.1.1 on web.1\n"
    );
    assert_eq!(
        env.slipway_ok(&repo, &["config:get", "GREETING"]).trim(),
        "hi"
    );
    let bad_key = env.slipway(&repo, &["config:set", "1BAD=x"]);
    assert!(!bad_key.status.success());
    assert!(text(&bad_key).contains("`1BAD`"), "{}", text(&bad_key));

    let listed = releases(&env, &repo);
    let versions: Vec<&str> = listed.iter().map(|r| r.version.as_str()).collect();
    assert_eq!(versions, ["1.1.1", "1.1.0", "1.0.0"]);
    assert!(listed.iter().all(|r| r.status == ReleaseStatus::Succeeded));
    assert!(listed[0].current);
    assert_eq!(listed[0].description, "Set GREETING config vars");
    assert_eq!(listed[0].image, listed[1].image);

    // A failing build is refused and the running release keeps answering.
    commit(
        &env,
        &repo,
        "requirements.txt",
        "no-such-package-slipway-e2e==1.0\n",
        "fix: break the build",
    );
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success(), "a failing build must fail the push");
    assert!(text(&push).contains("compile failed"), "{}", text(&push));
    assert_eq!(
        env.get_app(&app).await.1,
        "hi from release 1.1.1 on web.1\n"
    );
    let builds = env.slipway_ok(&repo, &["builds:output"]);
    assert!(builds.contains("no-such-package-slipway-e2e"), "{builds}");
    env.git_ok(&repo, &["reset", "-q", "--hard", "HEAD~1"]);

    // Another branch does not deploy.
    let push = env.git(&repo, &["push", "platform", "main:feature"]);
    assert!(!push.status.success());
    assert!(
        text(&push).contains("only main or master deploys"),
        "{}",
        text(&push)
    );

    // A wrong token is refused before anything is written.
    let builds_before = env.slipway_ok(&repo, &["builds", "--json"]);
    let bad_remote = format!(
        "http://x:not-a-token@127.0.0.1:{}/git/{app}.git",
        env.api_port
    );
    let push = env.git(&repo, &["push", &bad_remote, "main"]);
    assert!(!push.status.success());
    assert_eq!(env.slipway_ok(&repo, &["builds", "--json"]), builds_before);

    // A release whose web process crashes on start is rolled back automatically.
    let crash = env.slipway(&repo, &["config:set", "CRASH_ON_START=1"]);
    assert!(!crash.status.success(), "{}", text(&crash));
    assert!(text(&crash).contains("keeps serving"), "{}", text(&crash));
    assert_eq!(
        env.get_app(&app).await.1,
        "hi from release 1.1.1 on web.1\n"
    );
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, "1.1.2");
    assert_eq!(listed[0].status, ReleaseStatus::Failed);
    assert!(listed[1].current);
    env.slipway_ok(&repo, &["config:unset", "CRASH_ON_START"]);
    assert_eq!(
        env.get_app(&app).await.1,
        "hi from release 1.1.3 on web.1\n"
    );

    // /metrics counted the builds and releases, failures included.
    for (name, outcome, at_least) in [
        ("slipway_builds_total", "succeeded", 2.0),
        ("slipway_builds_total", "failed", 1.0),
        ("slipway_releases_total", "succeeded", 4.0),
        ("slipway_releases_total", "failed", 1.0),
    ] {
        let value = env
            .metric(name, &[("app", &app), ("outcome", outcome)])
            .await;
        assert!(value >= Some(at_least), "{name} {outcome}: {value:?}");
    }

    // Restarting the server adopts the running container instead of restarting it.
    let before = app_containers(&app);
    assert_eq!(before.len(), 1, "{before:?}");
    server.stop();
    let server = env.start_server();
    assert_eq!(
        env.get_app(&app).await.1,
        "hi from release 1.1.3 on web.1\n"
    );
    assert_eq!(
        app_containers(&app),
        before,
        "the restart must not restart the app"
    );

    // The server's /metrics counts what happened; the restarted server starts from zero, so
    // this looks at what it saw: the router requests and the adopted container.
    assert_eq!(
        env.metric("slipway_containers_running", &[("app", &app)])
            .await,
        Some(1.0)
    );
    let served = env
        .metric(
            "slipway_router_requests_total",
            &[("app", &app), ("status", "2xx")],
        )
        .await;
    assert!(served >= Some(1.0), "{served:?}");

    // Destroying the app removes its containers.
    let refused = env.slipway(&repo, &["apps:destroy", "--confirm", "wrong-name"]);
    assert!(!refused.status.success());
    env.slipway_ok(&repo, &["apps:destroy", "--confirm", &app]);
    assert!(app_containers(&app).is_empty());
    assert_eq!(env.get_app(&app).await.0, 404);
    server.stop();
}
