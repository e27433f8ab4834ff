//! What goes wrong gets a clear message, and the release that was serving keeps serving.

use crate::support::{AppCleanup, Env, fixture_repo, text, unique_app};

#[tokio::test(flavor = "multi_thread")]
async fn bad_pushes_are_refused_and_the_running_release_keeps_serving() {
    let env = Env::new();
    let server = env.start_server();
    let app = unique_app("bad");
    let _cleanup = AppCleanup(app.clone());
    let home = env.home();
    let repo = env.root.path().join("repo");
    let token = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin.token");
    env.slipway_ok(
        &home,
        &["login", "--url", &env.api_url(), "--token", token.trim()],
    );
    env.slipway_ok(&home, &["apps:create", &app]);

    // An app with nothing a buildpack recognises.
    std::fs::create_dir_all(&repo).expect("repo dir");
    std::fs::write(repo.join("README.md"), "nothing to run\n").expect("readme");
    env.git_ok(&repo, &["init", "-q", "-b", "main"]);
    env.git_ok(&repo, &["add", "."]);
    env.git_ok(&repo, &["commit", "-q", "-m", "docs only"]);
    env.slipway_ok(&repo, &["git:remote", "-a", &app]);
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success());
    assert!(
        text(&push).contains(
            "no buildpack detected: add requirements.txt, package.json, index.html, a Procfile or a Dockerfile, or set one with buildpacks:set"
        ),
        "{}",
        text(&push)
    );

    // A Procfile with a bad line fails the build and names the line.
    std::fs::write(repo.join("Procfile"), "web python3 -m http.server\n").expect("procfile");
    env.git_ok(&repo, &["add", "."]);
    env.git_ok(&repo, &["commit", "-q", "-m", "bad procfile"]);
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success());
    assert!(text(&push).contains("Procfile line 1"), "{}", text(&push));

    // A good Procfile-only app, tagged: the tag sets the version exactly.
    std::fs::remove_dir_all(&repo).expect("clearing repo");
    fixture_repo(&env, "static-server", &repo);
    env.slipway_ok(&repo, &["git:remote", "-a", &app]);
    env.git_ok(&repo, &["tag", "v2.3.0"]);
    let push = env.git(&repo, &["push", "--force", "platform", "main", "v2.3.0"]);
    assert!(
        push.status.success(),
        "{}\n{}",
        text(&push),
        server.log_text()
    );
    assert!(text(&push).contains("Released 2.3.0"), "{}", text(&push));
    let (status, body) = env.get_app(&app).await;
    assert_eq!(status, 200);
    assert!(body.contains("index.txt"), "{body}");

    // A tag that is not higher than every release is refused.
    std::fs::write(repo.join("index.txt"), "version two\n").expect("index");
    env.git_ok(&repo, &["commit", "-q", "-am", "fix: second"]);
    env.git_ok(&repo, &["tag", "v1.0.0"]);
    let push = env.git(&repo, &["push", "platform", "main", "v1.0.0"]);
    assert!(!push.status.success());
    assert!(
        text(&push).contains("not higher than release 2.3.0"),
        "{}",
        text(&push)
    );

    // A web process that never listens on $PORT fails the release; 2.3.0 keeps serving.
    env.git_ok(&repo, &["tag", "-d", "v1.0.0"]);
    std::fs::write(repo.join("Procfile"), "web: sleep 1000\n").expect("procfile");
    env.git_ok(&repo, &["commit", "-q", "-am", "fix: never bind"]);
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success());
    let output = text(&push);
    assert!(output.contains("did not listen on $PORT"), "{output}");
    assert!(output.contains("2.3.0 keeps serving"), "{output}");
    assert_eq!(env.get_app(&app).await.0, 200);

    // Pushes to an app that does not exist, or without credentials, are refused.
    let missing = format!("{}/git/no-such-app.git", env.api_url());
    let push = env.git(&repo, &["push", &missing, "main"]);
    assert!(!push.status.success());
    assert!(text(&push).contains("not found"), "{}", text(&push));
    std::fs::remove_file(home.join(".netrc")).expect("removing .netrc");
    let push = env.git(&repo, &["push", "platform", "main"]);
    assert!(!push.status.success());

    // Unknown hosts get the router's 404; API errors are JSON with a code and a message.
    assert_eq!(env.get_app("no-such-app").await.0, 404);
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("{}/v1/apps/{app}", env.api_url()))
        .send()
        .await
        .expect("API request");
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error"]["code"], "token_missing");
    server.stop();
}

#[test]
fn the_server_refuses_to_start_with_a_clear_reason() {
    let env = Env::new();

    let (ok, log) = env.server_refusal(&["--stack-image", "slipway/no-such-stack:none"], &[]);
    assert!(!ok);
    assert!(
        log.contains("stack image `slipway/no-such-stack:none` is missing"),
        "{log}"
    );
    assert!(log.contains("slipway stack:build"), "{log}");

    let socket = env.root.path().join("no-docker.sock");
    let docker_host = format!("unix://{}", socket.display());
    let (ok, log) = env.server_refusal(&[], &[("DOCKER_HOST", &docker_host)]);
    assert!(!ok);
    assert!(log.contains("dockerd"), "{log}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let taken_addr = taken.local_addr().expect("address").to_string();
    let (ok, log) = env.server_refusal(&["--api-listen", &taken_addr], &[]);
    assert!(!ok);
    assert!(
        log.contains(&format!("cannot listen on {taken_addr} (--api-listen)")),
        "{log}"
    );

    let (ok, log) = env.server_refusal(&["--apps-domain", "not a domain"], &[]);
    assert!(!ok);
    assert!(log.contains("--apps-domain"), "{log}");
}
