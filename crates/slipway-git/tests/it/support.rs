//! A test server (axum on 127.0.0.1:0 routing `/git/{app}.git/{*rest}` to `Repos`), work
//! repositories driven by the real `git`, and small helpers.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::StatusCode;
use slipway_git::{HookListener, Push, Repos};
use slipway_types::AppName;
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// Every git command and every wait for a push ends by then.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub const ZERO: &str = "0000000000000000000000000000000000000000";

pub fn block_on(test: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test);
}

/// What the server saw of one request, to check which transfer paths git took.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub rest: String,
    pub content_length: Option<String>,
}

struct RouteState {
    repos: Arc<Repos>,
    seen: Mutex<Vec<SeenRequest>>,
}

pub struct TestServer {
    pub dir: TempDir,
    pub repos: Arc<Repos>,
    hooks: Option<HookListener>,
    addr: SocketAddr,
    state: Arc<RouteState>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(true).await
    }

    /// A server whose hook socket nobody listens on, as when slipway is down.
    pub async fn without_hook_listener() -> Self {
        Self::start_with(false).await
    }

    async fn start_with(listen_for_hooks: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("hook.sock");
        // This test binary is the hook: see main.rs.
        let hook_exe = std::env::current_exe().expect("path of the test binary");
        let repos = Arc::new(Repos::new(
            dir.path().join("repos"),
            hook_exe,
            socket.clone(),
        ));
        let hooks =
            listen_for_hooks.then(|| HookListener::bind(&socket).expect("bind the hook socket"));
        let state = Arc::new(RouteState {
            repos: Arc::clone(&repos),
            seen: Mutex::new(Vec::new()),
        });
        let router = Router::new()
            .route("/git/{repo}/{*rest}", any(git_route))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("test server");
        });
        Self {
            dir,
            repos,
            hooks,
            addr,
            state,
        }
    }

    pub async fn create_app(&self, name: &str) -> AppName {
        let app: AppName = name.parse().expect("valid app name");
        self.repos.ensure(&app).await.expect("ensure the repo");
        app
    }

    pub fn url(&self, app: &AppName) -> String {
        format!("http://{}/git/{app}.git", self.addr)
    }

    /// The next push handed over by a hook.
    pub async fn accept(&self) -> Push {
        let hooks = self.hooks.as_ref().expect("this server listens for hooks");
        tokio::time::timeout(DEADLINE, hooks.accept())
            .await
            .expect("a push reaches the hook listener in time")
            .expect("the hook listener is running")
    }

    pub fn seen(&self) -> Vec<SeenRequest> {
        self.state.seen.lock().expect("lock").clone()
    }

    /// A git command on the bare repository of `app`.
    pub async fn bare_git(&self, app: &AppName, args: &[&str]) -> Output {
        let mut command = git_command(self.dir.path());
        command
            .arg("--git-dir")
            .arg(self.repos.path(app))
            .args(args);
        finish(command).await
    }

    /// Where `app`'s main branch points in the bare repository, if anywhere.
    pub async fn main_of(&self, app: &AppName) -> Option<String> {
        self.repos
            .reader(app)
            .ref_target("refs/heads/main")
            .await
            .expect("read refs/heads/main")
    }
}

async fn git_route(
    State(state): State<Arc<RouteState>>,
    UrlPath((repo, rest)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    let Some(app) = repo
        .strip_suffix(".git")
        .and_then(|name| name.parse::<AppName>().ok())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let seen = SeenRequest {
        method: request.method().to_string(),
        rest: rest.clone(),
        content_length: header(&request, http::header::CONTENT_LENGTH),
    };
    state.seen.lock().expect("lock").push(seen);
    state
        .repos
        .http_backend(&app, &rest, "tester", request)
        .await
}

fn header(request: &Request, name: http::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// `git` isolated from the machine's configuration, with a fixed identity.
fn git_command(scratch: &Path) -> Command {
    let mut command = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    ] {
        command.env_remove(var);
    }
    command
        .env("HOME", scratch)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn finish(mut command: Command) -> Output {
    tokio::time::timeout(DEADLINE, command.output())
        .await
        .expect("git finishes in time")
        .expect("run git (is it installed?)")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A developer's repository.
pub struct WorkRepo {
    pub dir: PathBuf,
    scratch: PathBuf,
}

impl WorkRepo {
    pub async fn init(server: &TestServer) -> Self {
        let scratch = server.dir.path().to_owned();
        let dir = scratch.join("work");
        let repo = Self { dir, scratch };
        let mut command = git_command(&repo.scratch);
        command
            .args(["init", "--quiet", "--initial-branch=main"])
            .arg(&repo.dir);
        assert_success(&finish(command).await);
        repo
    }

    /// Runs git here. The arguments are taken at once, so the future borrows nothing and can
    /// run beside the test's hook side in `tokio::join!`.
    pub fn git(&self, args: &[&str]) -> impl Future<Output = Output> + use<> {
        let mut command = git_command(&self.scratch);
        command.current_dir(&self.dir).args(args);
        finish(command)
    }

    /// Starts git with its stderr piped, to read what the pusher sees while it happens.
    pub fn spawn_git(&self, args: &[&str]) -> Child {
        let mut command = git_command(&self.scratch);
        command
            .current_dir(&self.dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command.spawn().expect("run git")
    }

    /// Runs git with `input` on stdin, requires success and returns stdout.
    pub async fn git_with_input(&self, args: &[&str], input: String) -> Vec<u8> {
        let mut command = git_command(&self.scratch);
        command
            .current_dir(&self.dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("run git");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin
            .write_all(input.as_bytes())
            .await
            .expect("write to git");
        drop(stdin);
        let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
            .await
            .expect("git finishes in time")
            .expect("git output");
        assert_success(&output);
        output.stdout
    }

    /// Runs git, requires success and returns stdout, trimmed.
    pub async fn git_ok(&self, args: &[&str]) -> String {
        let output = self.git(args).await;
        assert_success(&output);
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Writes `files` and commits everything; returns the new commit's id.
    pub async fn commit(&self, files: &[(&str, &[u8])], message: &str) -> String {
        for (name, content) in files {
            std::fs::write(self.dir.join(name), content).expect("write a work file");
        }
        self.git_ok(&["add", "--all"]).await;
        self.git_ok(&["commit", "--quiet", "--allow-empty", "-m", message])
            .await;
        self.git_ok(&["rev-parse", "HEAD"]).await
    }
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "git failed ({}): {}",
        output.status,
        stderr(output)
    );
}

/// The files of a tar archive, by path.
pub fn untar(archive: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        if entry.header().entry_type().is_file() {
            let path = entry.path().expect("entry path").display().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).expect("entry content");
            files.insert(path, content);
        }
    }
    files
}

/// Incompressible bytes, the same on every run (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
