//! The pre-receive hook and the server side it talks to.
//!
//! git runs `slipway git-hook pre-receive` in the repository with the ref updates on stdin and
//! the pushed objects in a quarantine directory. The hook connects to the server's unix socket
//! and sends one JSON line ([`HookRequest`]); the server answers with JSON lines
//! ([`HookMessage`]): any number of `{"say": "..."}`, which the hook prints for git to relay to
//! the pusher as `remote: ...`, then one `{"exit": N}`, the hook's exit code. A non-zero code,
//! or a connection closed without one, makes git refuse the push and drop the quarantine.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use slipway_types::AppName;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::{GitError, RefUpdate, RepoReader};

/// The variables through which git shows a hook the quarantined objects. git sets them to
/// absolute paths.
const QUARANTINE_VARS: &[&str] = &[
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
];

const UNREACHABLE: &str =
    "-----> the slipway server is not reachable: push again once it is running";

/// A push updating thousands of refs still fits; anything larger is not from our hook.
const MAX_REQUEST: u64 = 8 * 1024 * 1024;

/// The hook writes its request as soon as it connects.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The one line the hook sends.
#[derive(Debug, Serialize, Deserialize)]
struct HookRequest {
    app: String,
    /// The repository git runs the hook in.
    repo: PathBuf,
    /// The hook's stdin as git wrote it; the server parses and checks it.
    ref_updates: String,
    /// The [`QUARANTINE_VARS`] that are set.
    quarantine: Vec<(String, String)>,
    /// Who pushed: the `REMOTE_USER` the server gave `git http-backend`.
    #[serde(default)]
    pusher: String,
}

/// The lines the server sends.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum HookMessage {
    Say(String),
    Exit(i32),
}

/// Runs the pre-receive hook (`slipway git-hook pre-receive`) and returns its exit code: hands
/// the push to the server over `SLIPWAY_HOOK_SOCKET` and prints what the server says.
pub async fn run_pre_receive_hook() -> i32 {
    let mut stdout = tokio::io::stdout();
    match pre_receive(&mut stdout).await {
        Ok(code) => code,
        Err(HookFailure::Message(message)) => {
            // If this fails too, the pusher is gone and nobody would read it.
            let _ = say_locally(&mut stdout, &message).await;
            1
        }
        Err(HookFailure::PusherGone) => 1,
    }
}

enum HookFailure {
    /// Something to tell the pusher before refusing the push.
    Message(String),
    /// Writing to git failed: the pusher has left, so there is no one to tell.
    PusherGone,
}

async fn pre_receive(stdout: &mut tokio::io::Stdout) -> Result<i32, HookFailure> {
    let (Some(socket), Ok(app)) = (
        std::env::var_os("SLIPWAY_HOOK_SOCKET"),
        std::env::var("SLIPWAY_APP"),
    ) else {
        return Err(HookFailure::Message(
            "-----> this repository only accepts pushes through the slipway server".to_owned(),
        ));
    };
    let mut ref_updates = String::new();
    tokio::io::stdin()
        .read_to_string(&mut ref_updates)
        .await
        .map_err(|error| {
            HookFailure::Message(format!("-----> could not read the pushed refs: {error}"))
        })?;
    let cwd = std::env::current_dir().map_err(|error| {
        HookFailure::Message(format!("-----> could not find the repository: {error}"))
    })?;
    // For a bare repository git runs hooks in the repository itself, with GIT_DIR=".".
    let repo = match std::env::var_os("GIT_DIR") {
        Some(dir) => cwd.join(dir),
        None => cwd,
    };
    let repo = tokio::fs::canonicalize(&repo).await.map_err(|error| {
        HookFailure::Message(format!(
            "-----> could not find the repository `{}`: {error}",
            repo.display()
        ))
    })?;
    let quarantine = QUARANTINE_VARS
        .iter()
        .filter_map(|&name| Some((name.to_owned(), std::env::var(name).ok()?)))
        .collect();
    let request = HookRequest {
        app,
        repo,
        ref_updates,
        quarantine,
        pusher: std::env::var("REMOTE_USER").unwrap_or_default(),
    };

    let Ok(mut stream) = UnixStream::connect(&socket).await else {
        return Err(HookFailure::Message(UNREACHABLE.to_owned()));
    };
    let mut line = serde_json::to_vec(&request).expect("a hook request always serializes");
    line.push(b'\n');
    if stream.write_all(&line).await.is_err() {
        return Err(HookFailure::Message(UNREACHABLE.to_owned()));
    }

    let mut lines = BufReader::new(stream).lines();
    let stopped = || {
        HookFailure::Message(
            "-----> the slipway server stopped before finishing this push: push again".to_owned(),
        )
    };
    loop {
        let Ok(Some(line)) = lines.next_line().await else {
            return Err(stopped());
        };
        match serde_json::from_str(&line) {
            Ok(HookMessage::Say(text)) => say_locally(stdout, &text)
                .await
                .map_err(|_| HookFailure::PusherGone)?,
            Ok(HookMessage::Exit(code)) => return Ok(code),
            Err(_) => return Err(stopped()),
        }
    }
}

/// Prints one line for git to relay, flushed at once so output streams while the build runs.
async fn say_locally(stdout: &mut tokio::io::Stdout, text: &str) -> io::Result<()> {
    stdout.write_all(text.as_bytes()).await?;
    stdout.write_all(b"\n").await?;
    stdout.flush().await
}

/// Accepts the pushes that pre-receive hooks hand over on a unix socket.
#[derive(Debug)]
pub struct HookListener {
    pushes: Mutex<mpsc::Receiver<Push>>,
    accepting: JoinHandle<()>,
}

impl HookListener {
    /// Listens on `path` (mode 0600: the hook runs as the server's own user). A socket file
    /// left by a server that is gone is replaced; one a running process still serves is an
    /// error. Must be called inside a tokio runtime.
    pub fn bind(path: &Path) -> Result<Self, GitError> {
        remove_stale_socket(path)?;
        let io_error = |action| {
            move |source| GitError::Io {
                action,
                path: path.to_owned(),
                source,
            }
        };
        let listener = UnixListener::bind(path).map_err(io_error("listen on"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(io_error("set the permissions of"))?;
        // Requests are read off the accepting task, so a hook that connects and stalls cannot
        // hold up the pushes behind it.
        let (sender, receiver) = mpsc::channel(16);
        Ok(Self {
            pushes: Mutex::new(receiver),
            accepting: tokio::spawn(accept_hooks(listener, sender)),
        })
    }

    /// The next push, once its hook has connected and sent a valid request. Malformed requests
    /// are refused and logged here, not returned.
    pub async fn accept(&self) -> Result<Push, GitError> {
        self.pushes
            .lock()
            .await
            .recv()
            .await
            .ok_or(GitError::ListenerClosed)
    }
}

impl Drop for HookListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

fn remove_stale_socket(path: &Path) -> Result<(), GitError> {
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(GitError::SocketInUse(path.to_owned())),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => match std::fs::remove_file(path) {
            Err(source) if source.kind() != io::ErrorKind::NotFound => Err(GitError::Io {
                action: "remove the stale socket",
                path: path.to_owned(),
                source,
            }),
            _ => Ok(()),
        },
    }
}

async fn accept_hooks(listener: UnixListener, pushes: mpsc::Sender<Push>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let pushes = pushes.clone();
                tokio::spawn(async move {
                    if let Some(push) = read_push(stream).await
                        && let Err(refused) = pushes.send(push).await
                    {
                        // Dropping the push closes its connection, which refuses it.
                        tracing::warn!(app = %refused.0.app, "no one is accepting pushes");
                    }
                });
            }
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to be released.
                tracing::warn!(%error, "could not accept a pre-receive hook connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads a hook's request; a malformed one is answered with a refusal and yields `None`.
async fn read_push(stream: UnixStream) -> Option<Push> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        (&mut reader).take(MAX_REQUEST).read_line(&mut line),
    )
    .await;
    let mut connection = reader.into_inner();
    let parsed = match read {
        Ok(Ok(_)) => parse_request(&line),
        Ok(Err(error)) => Err(GitError::HookRequest(error.to_string())),
        Err(_) => Err(GitError::HookRequest(format!(
            "no request within {} seconds",
            REQUEST_TIMEOUT.as_secs()
        ))),
    };
    match parsed {
        Ok((app, updates, repo, object_env, pusher)) => Some(Push {
            app,
            updates,
            repo,
            object_env,
            pusher,
            connection,
        }),
        Err(error) => {
            tracing::warn!(%error, "refused a pre-receive hook request");
            let refusal = [
                HookMessage::Say(format!("-----> slipway could not read this push: {error}")),
                HookMessage::Exit(1),
            ];
            for message in &refusal {
                if send(&mut connection, message).await.is_err() {
                    break;
                }
            }
            None
        }
    }
}

type ParsedRequest = (
    AppName,
    Vec<RefUpdate>,
    PathBuf,
    Vec<(String, String)>,
    String,
);

fn parse_request(line: &str) -> Result<ParsedRequest, GitError> {
    let invalid = |reason: String| GitError::HookRequest(reason);
    let request: HookRequest =
        serde_json::from_str(line).map_err(|error| invalid(error.to_string()))?;
    let app: AppName = request
        .app
        .parse()
        .map_err(|error: slipway_types::NameError| invalid(error.to_string()))?;
    let updates = RefUpdate::parse_all(&request.ref_updates)?;
    if !request.repo.is_absolute() {
        return Err(invalid(format!(
            "repository path `{}` is not absolute",
            request.repo.display()
        )));
    }
    if let Some((name, _)) = request
        .quarantine
        .iter()
        .find(|(name, _)| !QUARANTINE_VARS.contains(&name.as_str()))
    {
        return Err(invalid(format!("`{name}` is not a quarantine variable")));
    }
    Ok((
        app,
        updates,
        request.repo,
        request.quarantine,
        request.pusher,
    ))
}

async fn send(connection: &mut UnixStream, message: &HookMessage) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    connection.write_all(&line).await
}

/// A push waiting in its pre-receive hook for the server's verdict. Dropping it without
/// [`Push::finish`] refuses the push.
#[derive(Debug)]
pub struct Push {
    pub app: AppName,
    pub updates: Vec<RefUpdate>,
    /// The bare repository being pushed to.
    pub repo: PathBuf,
    /// Environment for `git` commands that must see the pushed objects, which stay in a
    /// quarantine directory until the hook succeeds.
    pub object_env: Vec<(String, String)>,
    /// Who pushed (the authenticated user's email), for the release's `created_by`.
    pub pusher: String,
    connection: UnixStream,
}

impl Push {
    /// Reads the pushed commits before the push lands (valid until [`Push::finish`]).
    pub fn reader(&self) -> RepoReader {
        RepoReader::in_push(
            self.repo.clone(),
            self.object_env.clone(),
            self.updates.clone(),
        )
    }

    /// Shows `line` to the pusher at once, as `remote: <line>`. Fails when the pusher has gone.
    pub async fn say(&mut self, line: &str) -> Result<(), GitError> {
        send(&mut self.connection, &HookMessage::Say(line.to_owned()))
            .await
            .map_err(GitError::Say)
    }

    /// Ends the hook: `ok` lets git update the refs, otherwise the push fails and its objects
    /// are dropped.
    pub async fn finish(mut self, ok: bool) {
        let code = if ok { 0 } else { 1 };
        let sent = send(&mut self.connection, &HookMessage::Exit(code)).await;
        if let Err(error) = sent.and(self.connection.shutdown().await) {
            tracing::debug!(app = %self.app, %error, "the pusher left before the push finished");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1ec4e79207ee3c6c347946f691f43031fc18120a";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn request(app: &str, repo: &str, quarantine: &[(&str, &str)]) -> String {
        serde_json::to_string(&HookRequest {
            app: app.to_owned(),
            repo: repo.into(),
            ref_updates: format!("{ZERO} {A} refs/heads/main\n"),
            quarantine: quarantine
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            pusher: "dev@example.test".to_owned(),
        })
        .expect("serializes")
    }

    #[test]
    fn parses_a_hook_request() {
        let line = request(
            "my-app",
            "/data/repos/my-app.git",
            &[("GIT_QUARANTINE_PATH", "/data/repos/my-app.git/objects/tmp")],
        );
        let (app, updates, repo, env, pusher) = parse_request(&line).expect("valid request");
        assert_eq!(app.as_str(), "my-app");
        assert_eq!(pusher, "dev@example.test");
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].new, A);
        assert_eq!(repo, Path::new("/data/repos/my-app.git"));
        assert_eq!(
            env,
            [(
                "GIT_QUARANTINE_PATH".to_owned(),
                "/data/repos/my-app.git/objects/tmp".to_owned()
            )]
        );
    }

    #[test]
    fn refuses_bad_hook_requests() {
        for line in [
            "not json".to_owned(),
            request("Bad_App", "/r.git", &[]),
            request("my-app", "relative.git", &[]),
            request("my-app", "/r.git", &[("LD_PRELOAD", "/x.so")]),
        ] {
            assert!(
                matches!(parse_request(&line), Err(GitError::HookRequest(_))),
                "{line} should be refused"
            );
        }
        let bad_refs =
            r#"{"app":"my-app","repo":"/r.git","ref_updates":"x y z\n","quarantine":[]}"#;
        assert!(matches!(
            parse_request(bad_refs),
            Err(GitError::InvalidRefUpdate(_))
        ));
    }

    #[test]
    fn messages_are_one_json_line_each() {
        let say =
            serde_json::to_string(&HookMessage::Say("-----> a\nb".to_owned())).expect("serializes");
        assert_eq!(say, r#"{"say":"-----> a\nb"}"#);
        let exit = serde_json::to_string(&HookMessage::Exit(1)).expect("serializes");
        assert_eq!(exit, r#"{"exit":1}"#);
    }
}
