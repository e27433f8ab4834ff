//! One-off processes: `slipway run` attached (streams, stdin, exit status, a terminal) and
//! detached, with the release's config, and no container left behind.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Env, eventually, slipway_bin, text};

/// `slipway ARGS` in `dir` with `input` on its stdin.
fn slipway_with_stdin(env: &Env, dir: &Path, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(slipway_bin())
        .args(args)
        .current_dir(dir)
        .env("HOME", env.home())
        .env_remove("SLIPWAY_URL")
        .env_remove("SLIPWAY_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running slipway");
    let mut stdin = child.stdin.take().expect("stdin pipe");
    stdin.write_all(input).expect("writing stdin");
    drop(stdin);
    child.wait_with_output().expect("waiting for slipway")
}

/// `slipway ARGS` in `dir` on a pseudo-terminal (util-linux `script`), as a user types it.
fn slipway_on_a_terminal(env: &Env, dir: &Path, args: &str) -> Output {
    let command = format!("{} {args}", slipway_bin().display());
    Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .current_dir(dir)
        .env("HOME", env.home())
        .env("TERM", "xterm-256color")
        .env_remove("SLIPWAY_URL")
        .env_remove("SLIPWAY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running slipway under `script` (util-linux)")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The app's one-off containers, running or not.
fn run_containers(app: &str) -> Vec<String> {
    let label = format!("label=slipway.app={app}");
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &label,
            "--filter",
            "label=slipway.role=run",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_attaches_propagates_the_exit_status_detaches_and_cleans_up() {
    let env = Env::new();
    let server = env.start_server();
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("run", "static-server");

    // Before the first push there is nothing to run.
    let early = env.slipway(&repo, &["run", "--", "true"]);
    assert!(!early.status.success());
    assert!(
        text(&early).contains(&format!("app `{app}` has no release yet: push first")),
        "{}",
        text(&early)
    );
    env.push_ok(&repo);

    // Both streams, each to its own side, and the exit status.
    let streams = env.slipway(
        &repo,
        &["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!(streams.status.code(), Some(3), "{}", text(&streams));
    assert_eq!(stdout(&streams), "out\n");
    assert_eq!(String::from_utf8_lossy(&streams.stderr), "err\n");

    // Stdin reaches the process, and its end is end of file.
    let cat = slipway_with_stdin(&env, &repo, &["run", "-a", &app, "--", "cat"], b"hello\n");
    assert!(cat.status.success(), "{}", text(&cat));
    assert_eq!(stdout(&cat), "hello\n");

    // The process is a dyno of its own, with the release's config.
    let dyno = env.slipway_ok(&repo, &["run", "--", "printenv", "DYNO"]);
    let number = dyno.trim().strip_prefix("run.").unwrap_or_default();
    assert!(number.parse::<u32>().is_ok(), "DYNO is `{dyno}`");
    env.slipway_ok(&repo, &["config:set", "X=1"]);
    let config = env.slipway_ok(&repo, &["run", "printenv X SLIPWAY_RELEASE"]);
    assert_eq!(config, "1\n1.0.1\n");

    // With a terminal, the process gets one of the same size and type.
    let tty = slipway_on_a_terminal(&env, &repo, "run -- sh -c 'tty; echo $TERM; exit 4'");
    let printed = stdout(&tty);
    assert_eq!(tty.status.code(), Some(4), "{printed}");
    assert!(printed.contains("/dev/pts/"), "{printed}");
    assert!(printed.contains("xterm-256color"), "{printed}");

    // Detached: back at once while the process keeps running.
    let detached = env.slipway_ok(&repo, &["run", "--detach", "--", "sleep", "5"]);
    assert!(
        detached.starts_with(&format!("Running `sleep 5` on {app}... up, run.")),
        "{detached}"
    );
    assert_eq!(run_containers(&app).len(), 1, "the detached run is running");

    let removed = eventually(Duration::from_secs(60), async || {
        run_containers(&app).is_empty()
    })
    .await;
    assert!(
        removed,
        "one-off containers were left: {:?}",
        run_containers(&app)
    );
    server.stop();
}
