//! One-off processes under `slipway server --runtime swarm`: an attached run is a container on
//! this node, on the app's overlay network, with its streams, stdin and exit status as with
//! `--runtime docker`; a detached one is a Swarm job that `ps` lists while it runs, whose output
//! reaches the app's log and whose service is removed once it has ended.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Env, Server, eventually, slipway_bin, text};
use crate::swarm::{self, services};

/// Stops the server, then removes the app's services and waits (bounded) for their
/// containers to go, when the test ends, pass or fail: a server still running would put the
/// services back. Declared after `AppCleanup`, so it is dropped first: the network is free by
/// then.
struct ServicesCleanup {
    app: String,
    server: Option<Server>,
}

impl Drop for ServicesCleanup {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        drop(swarm::ServicesCleanup(self.app.clone()));
    }
}

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

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_under_swarm_attach_here_and_detach_as_jobs() {
    let _swarm = swarm::ONE_AT_A_TIME.lock().await;
    swarm::require_swarm();
    let env = Env::new();
    let server = env.start_server_with(&["--runtime", "swarm"]);
    env.login();
    let (app, _cleanup, repo) = env.app_with_repo("srun", "static-server");
    let mut guard = ServicesCleanup {
        app: app.clone(),
        server: Some(server),
    };
    env.push_ok(&repo);

    // Attached: both streams, each to its own side, and the exit status.
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

    // On the app's overlay network, where the web service's name resolves.
    let web = format!("slipway-{app}-web");
    let resolved = env.slipway(&repo, &["run", "--", "getent", "hosts", &web]);
    assert!(resolved.status.success(), "{}", text(&resolved));
    assert!(stdout(&resolved).contains(&web), "{}", stdout(&resolved));

    // Detached: a job, listed by `ps` while it runs.
    let detached = env.slipway_ok(
        &repo,
        &[
            "run",
            "--detach",
            "--",
            "sh",
            "-c",
            "echo reminders sent; sleep 4",
        ],
    );
    let dyno = detached
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        detached.starts_with("Running `sh -c ")
            && detached.contains(&format!("` on {app}... up, run.")),
        "{detached}"
    );
    let number = dyno.strip_prefix("run.").expect("a run's dyno");
    let job = format!("slipway-{app}-run-{number}");
    assert!(services(&app).contains(&job), "{:?}", services(&app));
    let ps = env.slipway_ok(&repo, &["ps"]);
    assert!(ps.contains(&dyno), "{ps}");

    // Once it has ended, its service is gone and its output is in the app's log.
    let removed = eventually(Duration::from_secs(60), async || {
        !services(&app).contains(&job)
    })
    .await;
    assert!(removed, "the job was left: {:?}", services(&app));
    let logs = env.slipway_ok(&repo, &["logs", "-n", "200"]);
    assert!(
        logs.contains(&format!(" app[{dyno}]: reminders sent")),
        "{logs}"
    );
    assert!(
        logs.contains(&format!(" slipway[{dyno}]: Process exited with status 0")),
        "{logs}"
    );
    let ps = env.slipway_ok(&repo, &["ps"]);
    assert!(!ps.contains(&dyno), "{ps}");

    // A server that restarts meanwhile adopts the job and removes it once it has ended.
    let detached = env.slipway_ok(&repo, &["run", "--detach", "--", "sleep", "15"]);
    let number = detached.trim().rsplit("run.").next().unwrap_or_default();
    let job = format!("slipway-{app}-run-{number}");
    assert!(
        services(&app).contains(&job),
        "{detached}: {:?}",
        services(&app)
    );
    if let Some(server) = guard.server.take() {
        server.stop();
    }
    guard.server = Some(env.start_server_with(&["--runtime", "swarm"]));
    assert!(
        services(&app).contains(&job),
        "the job ended before the restart"
    );
    let removed = eventually(Duration::from_secs(60), async || {
        !services(&app).contains(&job)
    })
    .await;
    assert!(removed, "the adopted job was left: {:?}", services(&app));
}
