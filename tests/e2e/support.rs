//! The harness: a temp HOME and data dir, the real `slipway` binary on free loopback ports,
//! the real `git`, and cleanup of everything a test created.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The `slipway` binary under test: `$SLIPWAY_BIN`, else the workspace's debug build.
pub fn slipway_bin() -> PathBuf {
    let path = std::env::var_os("SLIPWAY_BIN").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/slipway"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "slipway binary not found at {}: run `cargo build -p slipway` (deploy/test.sh does)",
        path.display()
    );
    path
}

/// Fails loudly when a service the tests need is missing.
pub fn require_services() {
    let docker = Command::new("docker").arg("info").output();
    assert!(
        docker.is_ok_and(|o| o.status.success()),
        "the Docker engine is not running: start dockerd (deploy/test.sh does)"
    );
    let stack = Command::new("docker")
        .args(["image", "inspect", "slipway/stack:trixie"])
        .output()
        .expect("running docker");
    assert!(
        stack.status.success(),
        "stack image slipway/stack:trixie is missing: run `slipway stack:build` (deploy/test.sh does)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free port")
        .port()
}

pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An app name no other test run uses.
pub fn unique_app(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{nanos:x}")
}

/// A temp home and data dir with ports for one server.
pub struct Env {
    pub root: tempfile::TempDir,
    pub api_port: u16,
    pub http_port: u16,
    pub https_port: u16,
    pub ssh_port: u16,
}

impl Env {
    pub fn new() -> Self {
        require_services();
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("home")).expect("home dir");
        Self {
            root,
            api_port: free_port(),
            http_port: free_port(),
            https_port: free_port(),
            ssh_port: free_port(),
        }
    }

    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.path().join("data")
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn start_server(&self) -> Server {
        self.start_server_with(&[])
    }

    /// Starts `slipway server` with extra flags.
    pub fn start_server_with(&self, extra: &[&str]) -> Server {
        let log_path = self.root.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("server log");
        let mut command = Command::new(slipway_bin());
        command
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--api-listen", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--https-listen", &format!("127.0.0.1:{}", self.https_port)])
            .args(["--ssh-listen", &format!("127.0.0.1:{}", self.ssh_port)])
            .args(if extra.contains(&"--apps-domain") {
                &[][..]
            } else {
                &["--apps-domain", "localhost"][..]
            })
            .args(extra)
            .env("HOME", self.home())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
        if ca.is_file() {
            command.arg("--build-ca-bundle").arg(ca);
        }
        let child = command.spawn().expect("starting slipway server");
        let server = Server {
            child,
            log: log_path,
        };
        server.wait_healthy(self.api_port);
        server
    }

    /// Runs the CLI in `dir` with this env's HOME.
    pub fn slipway(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new(slipway_bin())
            .args(args)
            .current_dir(dir)
            .env("HOME", self.home())
            .env_remove("SLIPWAY_URL")
            .env_remove("SLIPWAY_TOKEN")
            .output()
            .expect("running slipway")
    }

    /// Like `slipway`, but the command must succeed; returns its stdout.
    pub fn slipway_ok(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.slipway(dir, args);
        assert!(
            output.status.success(),
            "slipway {args:?} failed: {}",
            text(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn git(&self, dir: &Path, args: &[&str]) -> Output {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("HOME", self.home())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", "E2E")
            .env("GIT_AUTHOR_EMAIL", "e2e@example.test")
            .env("GIT_COMMITTER_NAME", "E2E")
            .env("GIT_COMMITTER_EMAIL", "e2e@example.test")
            .output()
            .expect("running git")
    }

    pub fn git_ok(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.git(dir, args);
        assert!(
            output.status.success(),
            "git {args:?} failed: {}",
            text(&output)
        );
        text(&output)
    }

    /// GET through the router with `Host: <app>.localhost`.
    pub async fn get_app(&self, app: &str) -> (u16, String) {
        let host = format!("{app}.localhost");
        let client = reqwest::Client::builder()
            .no_proxy()
            .resolve(&host, ([127, 0, 0, 1], self.http_port).into())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let response = client
            .get(format!("http://{host}:{}/", self.http_port))
            .send()
            .await
            .expect("request through the router");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

pub struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Waits until `/healthz` answers: the listeners are bound before start-up finishes (the
    /// admin token is written after), so an open port alone does not mean ready.
    fn wait_healthy(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if healthz_ok(port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "slipway server was not healthy within 60 s: {}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server with SIGTERM, as an operator would, and waits (bounded) for it.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.terminate();
        }
        let cleaned =
            std::mem::take(&mut *CLEANED_APPS.lock().unwrap_or_else(PoisonError::into_inner));
        for app in cleaned {
            remove_app_resources(&app);
        }
    }
}

/// One blocking `GET /healthz`, bounded by short timeouts.
fn healthz_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    let mut answer = String::new();
    stream.write_all(request).is_ok()
        && stream.read_to_string(&mut answer).is_ok()
        && answer.starts_with("HTTP/1.1 200")
}

/// Removes an app's containers, network, volume and images when the test ends, pass or fail.
pub struct AppCleanup(pub String);

/// Apps whose [`AppCleanup`] ran while a server may still have been running: its reconciler
/// can start a web container again in the moment before the server stops (a test's server is
/// usually declared first, so dropped last). [`Server`]'s drop removes them once more after
/// the server exits.
static CLEANED_APPS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl Drop for AppCleanup {
    fn drop(&mut self) {
        remove_app_resources(&self.0);
        CLEANED_APPS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.0.clone());
    }
}

fn remove_app_resources(app: &str) {
    let label = format!("label=slipway.app={app}");
    remove_listed(&["ps", "-aq", "--filter", &label], &["rm", "-f"]);
    let repo = format!("reference=slipway/{app}");
    remove_listed(&["images", "-q", "--filter", &repo], &["rmi", "-f"]);
    docker_quietly(&["network", "rm", &format!("slipway-{app}")]);
    docker_quietly(&["volume", "rm", &format!("slipway-cache-{app}")]);
}

/// Runs `remove` (e.g. `rm -f`) on each id `list` (e.g. `ps -aq`) prints.
fn remove_listed(list: &[&str], remove: &[&str]) {
    if let Ok(out) = Command::new("docker").args(list).output() {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            docker_quietly(&[remove, &[id]].concat());
        }
    }
}

/// A docker command whose failure (nothing to remove) does not matter.
fn docker_quietly(args: &[&str]) {
    Command::new("docker").args(args).output().ok();
}

/// Copies a fixture app into a fresh git repository on `main`.
pub fn fixture_repo(env: &Env, fixture: &str, dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    std::fs::create_dir_all(dir).expect("repo dir");
    for entry in std::fs::read_dir(&source).expect("fixture dir") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copying fixture");
    }
    env.git_ok(dir, &["init", "-q", "-b", "main"]);
    env.git_ok(dir, &["add", "."]);
    env.git_ok(dir, &["commit", "-q", "-m", "initial commit"]);
}

/// Containers of an app as `docker ps` sees them: (id, started at).
pub fn app_containers(app: &str) -> Vec<(String, String)> {
    let label = format!("label=slipway.app={app}");
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &label,
            "--filter",
            "label=slipway.role=process",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|id| {
            let started = Command::new("docker")
                .args(["inspect", "-f", "{{.State.StartedAt}}", id])
                .output()
                .expect("docker inspect");
            (
                id.to_owned(),
                String::from_utf8_lossy(&started.stdout).trim().to_owned(),
            )
        })
        .collect()
}

impl Env {
    /// Runs `slipway server` with extra arguments and environment, expecting it to refuse to
    /// start; returns its exit status and what it printed. Fails the test if it keeps running.
    pub fn server_refusal(&self, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
        let log_path = self.root.path().join("refusal.log");
        let log = std::fs::File::create(&log_path).expect("refusal log");
        let mut command = Command::new(slipway_bin());
        command.arg("server").arg("--data-dir").arg(self.data_dir());
        if !args.contains(&"--api-listen") {
            command.args(["--api-listen", &format!("127.0.0.1:{}", self.api_port)]);
        }
        command.args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)]);
        command.args(["--https-listen", &format!("127.0.0.1:{}", self.https_port)]);
        command.args(["--ssh-listen", &format!("127.0.0.1:{}", self.ssh_port)]);
        let mut child = command
            .args(args)
            .envs(envs.iter().copied())
            .env("HOME", self.home())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting slipway server");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for slipway server") {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill().ok();
                child.wait().ok();
                panic!(
                    "slipway server {args:?} kept running instead of refusing to start: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        (
            status.success(),
            std::fs::read_to_string(&log_path).unwrap_or_default(),
        )
    }
}

impl Server {
    /// Kills the server with SIGKILL mid-whatever, as a crash would.
    pub fn crash(mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// What a load run saw.
pub struct LoadReport {
    pub total: usize,
    /// Every response that was not a 200 with an expected body, and every transport error.
    pub failures: Vec<String>,
    /// Latency of every successful request.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    pub fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }
    /// Prints what the run saw, labelled `what`, and fails unless the load generator really
    /// ran (over 100 requests) and no request failed; `context` (a server's log, read only on
    /// failure) follows the first failures.
    pub fn assert_none_failed(&self, what: &str, context: impl FnOnce() -> String) {
        println!(
            "{what}: {} requests, {} failed, p50 {:?}, p99 {:?}, max {:?}",
            self.total,
            self.failures.len(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.percentile(100.0)
        );
        assert!(
            self.total > 100,
            "the load generator barely ran: {}",
            self.total
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} requests failed, first: {:?}\n{}",
            self.failures.len(),
            self.total,
            &self.failures[..self.failures.len().min(5)],
            context()
        );
    }
}

/// Clients hitting an app through the router until stopped: half reuse keep-alive
/// connections, half open a new connection per request. Bounded by a deadline.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadReport>>,
}

impl Load {
    /// `accept` says whether a 200's body is one the test expects from some release.
    pub fn start(
        env: &Env,
        app: &str,
        clients: usize,
        deadline: Duration,
        accept: fn(&str) -> bool,
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let host = format!("{app}.localhost");
        let url = format!("http://{host}:{}/", env.http_port);
        let until = Instant::now() + deadline;
        let tasks = (0..clients)
            .map(|i| {
                let keep_alive = i % 2 == 0;
                let mut builder = reqwest::Client::builder()
                    .no_proxy()
                    .resolve(&host, ([127, 0, 0, 1], env.http_port).into())
                    .timeout(Duration::from_secs(30));
                if !keep_alive {
                    builder = builder.pool_max_idle_per_host(0);
                }
                let client = builder.build().expect("load client");
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let mut report = LoadReport {
                        total: 0,
                        failures: Vec::new(),
                        latencies: Vec::new(),
                    };
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until
                    {
                        let started = Instant::now();
                        let outcome = match client.get(&url).send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                match response.text().await {
                                    Ok(body) if status == 200 && accept(&body) => Ok(()),
                                    Ok(body) => Err(format!("{status}: {}", body.trim())),
                                    Err(error) => Err(format!("reading the body: {error}")),
                                }
                            }
                            Err(error) => Err(format!("request: {error}")),
                        };
                        report.total += 1;
                        match outcome {
                            Ok(()) => report.latencies.push(started.elapsed()),
                            Err(failure) => report.failures.push(failure),
                        }
                    }
                    report
                })
            })
            .collect();
        Self { stop, tasks }
    }

    pub async fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = LoadReport {
            total: 0,
            failures: Vec::new(),
            latencies: Vec::new(),
        };
        for task in self.tasks {
            let report = task.await.expect("load task");
            all.total += report.total;
            all.failures.extend(report.failures);
            all.latencies.extend(report.latencies);
        }
        all
    }
}

/// Polls until `ready` holds or `timeout` passes; says which.
pub async fn eventually<F: AsyncFn() -> bool>(timeout: Duration, ready: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Labels of every container of an app: (id, release, role, running).
pub fn containers_by_label(app: &str) -> Vec<(String, String, String, bool)> {
    let label = format!("label=slipway.app={app}");
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            &label,
            "--format",
            "{{.ID}} {{.Label \"slipway.release\"}} {{.Label \"slipway.role\"}} {{.State}}",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()?.to_owned(),
                parts.next()? == "running",
            ))
        })
        .collect()
}

impl Env {
    /// Logs the CLI in with the admin token the server wrote on first start.
    pub fn login(&self) {
        let token = std::fs::read_to_string(self.data_dir().join("admin.token"))
            .expect("admin.token written on first start");
        self.slipway_ok(
            &self.home(),
            &["login", "--url", &self.api_url(), "--token", token.trim()],
        );
    }

    /// Creates an app and a repository of `fixture` with the `platform` remote set.
    pub fn app_with_repo(&self, prefix: &str, fixture: &str) -> (String, AppCleanup, PathBuf) {
        let app = unique_app(prefix);
        let cleanup = AppCleanup(app.clone());
        self.slipway_ok(&self.home(), &["apps:create", &app]);
        let repo = self.root.path().join(format!("repo-{app}"));
        fixture_repo(self, fixture, &repo);
        self.slipway_ok(&repo, &["git:remote", "-a", &app]);
        (app, cleanup, repo)
    }

    /// `git push platform main`, which must succeed; returns what it printed.
    pub fn push_ok(&self, repo: &Path) -> String {
        let push = self.git(repo, &["push", "platform", "main"]);
        let output = text(&push);
        assert!(push.status.success(), "push failed:\n{output}");
        output
    }
}

impl Env {
    /// The value of a `/metrics` series whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let text = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("http client")
            .get(format!("{}/metrics", self.api_url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|line| {
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .find(|line| {
                labels
                    .iter()
                    .all(|(key, value)| line.contains(&format!("{key}=\"{value}\"")))
            })
            .and_then(|line| line.rsplit(' ').next()?.parse().ok())
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits, bounded by `timeout`, for the server to exit by itself; `None` if it did not.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Stops the server with SIGTERM and returns how it exited; `None` if it did not within
    /// 20 s (it is then killed).
    pub fn stop_status(mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().ok();
        let status = self.wait_exit(Duration::from_secs(20));
        if status.is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
        status
    }
}
