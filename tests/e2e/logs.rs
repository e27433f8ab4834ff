//! `slipway logs`: build output, router lines and the app's own output in one log, followed
//! live with `-t`, and still there after a server restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{AppCleanup, Env, Server, fixture_repo, slipway_bin, text, unique_app};

/// Runs `slipway logs` until its output satisfies `done`, for up to 30 s.
fn wait_for_logs(
    env: &Env,
    server: &Server,
    repo: &Path,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut last = String::new();
    for _ in 0..60 {
        last = env.slipway_ok(repo, args);
        if done(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "`slipway {}` never showed {what}:\n{last}\nserver log:\n{}",
        args.join(" "),
        server.log_text()
    );
}

/// GET `path` through the router, so the request has a line of its own in the log.
async fn get_path(env: &Env, app: &str, path: &str) -> u16 {
    let host = format!("{app}.localhost");
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    client
        .get(format!("http://{host}:{}{path}", env.http_port))
        .send()
        .await
        .expect("request through the router")
        .status()
        .as_u16()
}

/// Logs in, creates `app` and pushes the `static-server` fixture from `repo`.
fn deploy_static_server(env: &Env, server: &Server, app: &str, repo: &Path) {
    let home = env.home();
    let token = std::fs::read_to_string(env.data_dir().join("admin.token")).expect("admin.token");
    env.slipway_ok(
        &home,
        &["login", "--url", &env.api_url(), "--token", token.trim()],
    );
    env.slipway_ok(&home, &["apps:create", app]);
    fixture_repo(env, "static-server", repo);
    env.slipway_ok(repo, &["git:remote", "-a", app]);
    let push = env.git(repo, &["push", "platform", "main"]);
    assert!(
        push.status.success(),
        "push failed:\n{}\n{}",
        text(&push),
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn build_and_router_lines_are_kept_followed_live_and_survive_a_restart() {
    let env = Env::new();
    let server = env.start_server();
    let app = unique_app("logs");
    let _cleanup = AppCleanup(app.clone());
    let home = env.home();
    let repo = env.root.path().join("repo");
    deploy_static_server(&env, &server, &app, &repo);
    assert_eq!(env.get_app(&app).await.0, 200);

    // The build's lines and the router's line for that GET.
    let logs_args = ["logs", "-n", "200", "-a", app.as_str()];
    let router_get = "slipway[router]: at=info method=GET path=\"/\"";
    let logs = wait_for_logs(
        &env,
        &server,
        &repo,
        &logs_args,
        "the router line",
        |logs| logs.contains(router_get),
    );
    assert!(
        logs.contains("slipway[build]: -----> Released 1.0.0 to http://"),
        "{logs}"
    );
    let router_line = logs
        .lines()
        .find(|line| line.contains(router_get))
        .expect("router line");
    assert!(router_line.contains(" status=200 "), "{router_line}");
    assert!(router_line.contains(" dyno=web.1 "), "{router_line}");
    let (at, rest) = router_line.split_once(' ').expect("timestamp and text");
    assert!(
        at.len() == 32 && at.as_bytes()[10] == b'T' && at.ends_with("+00:00"),
        "a Heroku-style timestamp starts the line: {router_line}"
    );
    assert!(rest.starts_with(router_get), "{router_line}");

    // Filters.
    let build_only = env.slipway_ok(&repo, &["logs", "--source", "build", "-a", &app]);
    assert!(!build_only.is_empty());
    assert!(
        build_only
            .lines()
            .all(|line| line.contains(" slipway[build]: ")),
        "{build_only}"
    );
    let json = env.slipway_ok(&repo, &["logs", "--source", "router", "--json", "-a", &app]);
    let first: serde_json::Value =
        serde_json::from_str(json.lines().next().expect("a JSON line")).expect("JSON line");
    assert_eq!(first["source"], "router");
    let refused = env.slipway(&repo, &["logs", "--process", "Web!", "-a", &app]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("process `Web!`"),
        "{}",
        text(&refused)
    );

    // `-t` prints a new request's line while it runs.
    let live_path = format!("/live-{}", unique_app("x"));
    let mut follower = Command::new(slipway_bin())
        .args(["logs", "-t", "-n", "1", "--source", "router", "-a", &app])
        .current_dir(&repo)
        .env("HOME", &home)
        .env_remove("SLIPWAY_URL")
        .env_remove("SLIPWAY_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting slipway logs -t");
    let stdout = follower.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next_line = || {
        let left = deadline.saturating_duration_since(Instant::now());
        lines.recv_timeout(left)
    };
    // The one recent line shows the stream is open; what follows is live.
    let recent = next_line().expect("the recent router line");
    assert!(recent.contains(router_get), "{recent}");
    assert_eq!(get_path(&env, &app, &live_path).await, 404);
    let wanted = format!("path=\"{live_path}\"");
    let live = loop {
        match next_line() {
            Ok(line) if line.contains(&wanted) => break Ok(line),
            Ok(_) => {}
            Err(error) => break Err(error),
        }
    };
    follower.kill().ok();
    follower.wait().ok();
    let live = live.unwrap_or_else(|_| panic!("`slipway logs -t` did not print {wanted} in time"));
    assert!(live.contains(" status=404 "), "{live}");

    // A restart keeps the log.
    server.stop();
    let server = env.start_server();
    let logs = env.slipway_ok(&repo, &logs_args);
    assert!(logs.contains(router_get), "{logs}");
    assert!(logs.contains(&wanted), "{logs}");
    assert!(
        logs.contains("slipway[build]: -----> Released 1.0.0"),
        "{logs}"
    );

    // Destroying the app deletes its log.
    env.slipway_ok(&repo, &["apps:destroy", "--confirm", &app]);
    let log_file = env.data_dir().join("logs").join(format!("{app}.jsonl"));
    // The server's log writer deletes it just after the API answers.
    for _ in 0..100 {
        if !log_file.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!log_file.exists(), "{} is still there", log_file.display());
    server.stop();
}

/// What the app prints: http.server logs each request on stderr. This needs the deployer to
/// follow the app's containers.
#[tokio::test(flavor = "multi_thread")]
async fn the_apps_own_output_is_in_its_log() {
    let env = Env::new();
    let server = env.start_server();
    let app = unique_app("applog");
    let _cleanup = AppCleanup(app.clone());
    let repo = env.root.path().join("repo");
    deploy_static_server(&env, &server, &app, &repo);
    assert_eq!(env.get_app(&app).await.0, 200);
    wait_for_logs(
        &env,
        &server,
        &repo,
        &["logs", "--source", "app", "-a", &app],
        "http.server's request line",
        |logs| {
            logs.lines().any(|line| {
                line.contains(" app[web.1]: ") && line.contains("\"GET / HTTP/1.1\" 200")
            })
        },
    );
    server.stop();
}
