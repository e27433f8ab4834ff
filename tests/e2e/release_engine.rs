//! The release engine: zero-downtime rolling releases, health checks, the release phase,
//! rollbacks, scaling, and a server killed mid-rollout.

use std::path::Path;
use std::time::Duration;

use slipway_types::api::{FormationView, ReleaseInfo, ReleaseStatus};

use crate::support::{Env, Load, containers_by_label, eventually, text};

fn releases(env: &Env, repo: &Path) -> Vec<ReleaseInfo> {
    serde_json::from_str(&env.slipway_ok(repo, &["releases", "--json"])).expect("releases JSON")
}

fn commit(env: &Env, repo: &Path, message: &str) {
    env.git_ok(repo, &["commit", "-q", "--allow-empty", "-m", message]);
}

/// Bodies look like `<BODY> <version> web.<n>`.
fn from_some_release(body: &str) -> bool {
    let parts: Vec<&str> = body.split_whitespace().collect();
    parts.len() == 3 && parts[1].starts_with("1.") && parts[2].starts_with("web.")
}

#[tokio::test(flavor = "multi_thread")]
async fn deploys_and_rollbacks_under_load_drop_no_request() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("zdt", "release-app");
    let first = env.push_ok(&repo);
    assert_eq!(
        first.matches("release phase ran for 1.0.0").count(),
        1,
        "{first}"
    );
    assert_eq!(env.get_app(&app).await.1, "hello 1.0.0 web.1\n");

    let load = Load::start(&env, &app, 8, Duration::from_secs(300), from_some_release);
    env.slipway_ok(&repo, &["config:set", "BODY=one"]);
    commit(&env, &repo, "fix: second deploy");
    let push = env.push_ok(&repo);
    assert_eq!(
        push.matches("release phase ran for 1.0.2").count(),
        1,
        "{push}"
    );
    env.slipway_ok(&repo, &["config:set", "BODY=two"]);
    commit(&env, &repo, "feat: fourth deploy");
    env.push_ok(&repo);
    env.slipway_ok(&repo, &["config:set", "BODY=three"]);
    assert_eq!(env.get_app(&app).await.1, "three 1.1.1 web.1\n");

    // Rollback with no version goes to the release before the current one.
    let back = env.slipway_ok(&repo, &["releases:rollback"]);
    assert!(back.contains("done, v1.1.2"), "{back}");
    assert_eq!(env.get_app(&app).await.1, "two 1.1.2 web.1\n");
    env.slipway_ok(&repo, &["releases:rollback", "1.0.1"]);
    assert_eq!(env.get_app(&app).await.1, "one 1.1.3 web.1\n");
    assert_eq!(env.slipway_ok(&repo, &["config:get", "BODY"]).trim(), "one");
    let report = load.stop().await;
    report.assert_none_failed(
        "zero-downtime: during 5 deploys and 2 rollbacks",
        String::new,
    );

    let listed = releases(&env, &repo);
    assert_eq!(listed[0].description, "Rollback to 1.0.1");
    assert_eq!(listed[1].description, "Rollback to 1.1.0");
    assert_eq!(listed[1].status, ReleaseStatus::RolledBack);
    assert!(listed[0].current);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_checks_and_release_phases_change_nothing_and_scaling_spreads_traffic() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("chk", "release-app");
    env.push_ok(&repo);
    let serving = containers_by_label(&app);

    // A failing app.json check: the release fails, the running container is untouched.
    let bad = env.slipway(&repo, &["config:set", "HEALTH=bad"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("failed its health check `health endpoint`"),
        "{}",
        text(&bad)
    );
    assert_eq!(env.get_app(&app).await.1, "hello 1.0.0 web.1\n");
    assert_eq!(containers_by_label(&app), serving);
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].status, ReleaseStatus::Failed);
    assert!(
        listed[0]
            .status_reason
            .as_deref()
            .unwrap_or_default()
            .starts_with("automatic rollback")
    );
    let events = env.slipway_ok(&repo, &["logs", "-n", "500", "--source", "platform"]);
    for event in [
        "slipway[web.1]: State changed from starting to up",
        "slipway[web.1]: Failed to start: web.1 failed its health check",
        "slipway[release]: Release 1.0.1 failed: automatic rollback",
        "slipway[release]: Running release command `python3 release.py`",
    ] {
        assert!(events.contains(event), "`{event}` missing from:\n{events}");
    }
    env.slipway_ok(&repo, &["config:unset", "HEALTH"]);

    // A failing release phase: nothing is replaced.
    let serving = containers_by_label(&app);
    let failed = env.slipway(&repo, &["config:set", "RELEASE_FAIL=1"]);
    assert!(!failed.status.success());
    assert!(
        text(&failed).contains("release command exited with status 1"),
        "{}",
        text(&failed)
    );
    assert_eq!(containers_by_label(&app), serving);
    env.slipway_ok(&repo, &["config:unset", "RELEASE_FAIL"]);

    // Three web processes all receive traffic; scaling cuts no release.
    let before = releases(&env, &repo).len();
    env.slipway_ok(&repo, &["ps:scale", "web=3"]);
    let mut dynos = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let body = env.get_app(&app).await.1;
        dynos.insert(
            body.split_whitespace()
                .last()
                .unwrap_or_default()
                .to_owned(),
        );
        if dynos.len() == 3 {
            break;
        }
    }
    assert_eq!(
        dynos.into_iter().collect::<Vec<_>>(),
        ["web.1", "web.2", "web.3"]
    );
    let view: FormationView =
        serde_json::from_str(&env.slipway_ok(&repo, &["ps", "--json"])).expect("ps JSON");
    assert_eq!(view.processes.len(), 3);
    assert_eq!(releases(&env, &repo).len(), before);

    env.slipway_ok(&repo, &["ps:scale", "web=1"]);
    assert_eq!(containers_by_label(&app).len(), 1);
    env.slipway_ok(&repo, &["ps:resize", "web=256M"]);
    let id = containers_by_label(&app)[0].0.clone();
    let memory = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{.HostConfig.Memory}}", &id])
        .output()
        .expect("docker inspect");
    assert_eq!(String::from_utf8_lossy(&memory.stdout).trim(), "268435456");
    env.slipway_ok(&repo, &["ps:restart"]);
    let restarted = containers_by_label(&app);
    assert_eq!(restarted.len(), 1);
    assert_ne!(restarted[0].0, id, "ps:restart starts a new container");
    assert_eq!(env.get_app(&app).await.0, 200);

    // Bad input gets clear errors.
    let unknown = env.slipway(&repo, &["ps:scale", "nope=1"]);
    assert!(
        text(&unknown).contains("process type `nope` is not in the app's Procfile"),
        "{}",
        text(&unknown)
    );
    let absurd = env.slipway(&repo, &["ps:scale", "web=1000"]);
    assert!(!absurd.status.success());
    let missing = env.slipway(&repo, &["releases:rollback", "9.9.9"]);
    assert!(
        text(&missing).contains("release `9.9.9`"),
        "{}",
        text(&missing)
    );
    std::fs::write(
        repo.join("app.json"),
        r#"{"healthchecks": {"web": [{"path": "health"}]}}"#,
    )
    .expect("app.json");
    env.git_ok(&repo, &["commit", "-q", "-am", "fix: bad app.json"]);
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success());
    assert!(
        text(&push).contains("healthchecks.web[0].path"),
        "{}",
        text(&push)
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_rollout_comes_back_converged() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("kill", "release-app");
    env.push_ok(&repo);

    // A slow-starting release, and the server dies while it waits for it.
    let mut change = std::process::Command::new(crate::support::slipway_bin())
        .args(["config:set", "SLOW_START=30"])
        .current_dir(&repo)
        .env("HOME", env.home())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("config:set");
    let started = eventually(Duration::from_secs(30), async || {
        containers_by_label(&app).iter().any(|c| c.1 == "1.0.1")
    })
    .await;
    assert!(started, "no 1.0.1 container started: {}", server.log_text());
    server.crash();
    change.wait().ok();

    let server = env.start_server();
    let converged = eventually(Duration::from_secs(60), async || {
        let containers = containers_by_label(&app);
        containers.len() == 1 && containers[0].1 == "1.0.0" && containers[0].3
    })
    .await;
    assert!(
        converged,
        "not converged on 1.0.0: {:?}\n{}",
        containers_by_label(&app),
        server.log_text()
    );
    assert_eq!(env.get_app(&app).await.1, "hello 1.0.0 web.1\n");
    let listed = releases(&env, &repo);
    assert_eq!(listed[0].version, "1.0.1");
    assert_eq!(listed[0].status, ReleaseStatus::Failed);
    assert!(listed[1].current);
    server.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn formation_from_app_json_crash_loops_and_hung_release_commands() {
    let env = Env::new();
    let server = env.start_server_with(&["--release-timeout", "3s"]);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("crash", "release-app");

    // app.json's formation applies on the first deploy.
    let app_json = std::fs::read_to_string(repo.join("app.json")).expect("app.json");
    let with_formation = app_json.replacen(
        "\"healthchecks\"",
        "\"formation\": {\"web\": {\"quantity\": 2, \"size\": \"256M\"}},\n  \"healthchecks\"",
        1,
    );
    std::fs::write(repo.join("app.json"), with_formation).expect("app.json");
    env.git_ok(&repo, &["commit", "-q", "-am", "feat: two web processes"]);
    env.push_ok(&repo);
    let view: FormationView =
        serde_json::from_str(&env.slipway_ok(&repo, &["ps", "--json"])).expect("ps JSON");
    assert_eq!(view.formation[0].quantity, 2);
    assert_eq!(view.formation[0].size, "256M");
    assert_eq!(view.processes.len(), 2);

    // A release command that hangs past --release-timeout fails the release.
    let serving = containers_by_label(&app);
    let hung = env.slipway(&repo, &["config:set", "RELEASE_SLEEP=60"]);
    assert!(!hung.status.success());
    assert!(
        text(&hung).contains("did not finish within 3 s"),
        "{}",
        text(&hung)
    );
    assert_eq!(containers_by_label(&app), serving);
    env.slipway_ok(&repo, &["config:unset", "RELEASE_SLEEP"]);

    // A process that crashes after it went live is restarted with back-off, visibly.
    env.slipway_ok(&repo, &["ps:scale", "web=1"]);
    env.slipway_ok(&repo, &["config:set", "CRASH_AFTER=3"]);
    let restarted = eventually(Duration::from_secs(60), async || {
        let view: FormationView =
            serde_json::from_str(&env.slipway_ok(&repo, &["ps", "--json"])).expect("ps JSON");
        view.processes.iter().any(|p| p.restarts >= 2)
    })
    .await;
    assert!(restarted, "no restarts seen:\n{}", server.log_text());
    let events = env.slipway_ok(&repo, &["logs", "-n", "1000", "--source", "platform"]);
    assert!(
        events.contains("slipway[web.1]: State changed from up to crashed (exit status 3)"),
        "{events}"
    );
    server.stop();
}
