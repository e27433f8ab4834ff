//! The `--runtime swarm` path. Each process type of an app is one Swarm service
//! (`slipway-<app>-<process>`), with replicas = its formation quantity; a release updates the
//! services one after the other, `web` first, and Swarm rolls each one task at a time,
//! start-first, rolling back by itself when a new task fails its health check. The deployer
//! says what should run, watches what does, routes to the serving web tasks, and undoes the
//! services it already updated when a later one fails, so the old release keeps serving.
//!
//! No request is dropped across a rolling update: while a deploy, scale or restart is under
//! way the app's backends are refreshed from the tasks every 250 ms (only serving tasks take
//! traffic), and a process container waits `SLIPWAY_STOP_DELAY` after Swarm's SIGTERM before
//! passing it on, so the router has stopped sending to a task before it stops listening.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::{
    EngineError, HealthCheck, ServiceMode, ServiceSpec, ServiceState, Swarm, TaskState, UpdateState,
};
use slipway_store::{App, FormationEntry, Release};
use slipway_types::api::{LogEntry, LogSource, ProcessInfo, ProcessState};
use slipway_types::{AppName, Backend, ProcessType, labels};
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::logs::lines::LineSplitter;

use super::{DeployError, Deployer, Progress, STOP_GRACE, network_name, web_port};

/// How often the app's backends follow its tasks while its services change.
const REFRESH_WHILE_CHANGING: Duration = Duration::from_millis(250);
/// Between Swarm's SIGTERM and the app's: longer than a refresh, so the router has taken the
/// task out before the app stops accepting connections.
const STOP_DELAY: Duration = Duration::from_secs(3);
/// How often a deploy looks at a service it waits for.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// A web process may take this long to listen before its failed checks count (the Docker
/// runtime's 60 s to accept a connection).
const WEB_BOOT: Duration = Duration::from_secs(60);
/// How often the default web check (a TCP connect to `$PORT`) runs.
const TCP_CHECK_EVERY: Duration = Duration::from_secs(2);
/// New tasks of a service that fail (outside an update, which Swarm rolls back) before the
/// change is given up.
const FAILED_TASKS_LIMIT: usize = 3;
/// How long undoing a failed deploy waits for each service to be back on its old spec.
const ROLLBACK_WAIT: Duration = Duration::from_secs(120);
/// How long removing an app waits for its tasks' containers to stop.
const TASKS_GONE_WAIT: Duration = Duration::from_secs(60);

/// Runs the app's process as a child of bash that, on SIGTERM, waits `SLIPWAY_STOP_DELAY`
/// seconds, then passes the signal on and waits for the process to exit.
const STOP_DELAY_SCRIPT: &str = r#""$@" &
child=$!
trap 'sleep "${SLIPWAY_STOP_DELAY:-0}"; kill -TERM "$child" 2>/dev/null' TERM
wait "$child"
status=$?
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done
exit "$status"
"#;

/// Swarm's limit on a service name, a DNS label's.
const SERVICE_NAME_MAX: usize = 63;

/// The service that runs one process type of an app.
pub fn service_name(app: &AppName, process: &ProcessType) -> String {
    process_service_name(app, process.as_str())
}

fn process_service_name(app: &AppName, process: &str) -> String {
    fit_service_name(format!("slipway-{app}-{process}"))
}

/// `name` as Swarm takes it: as it is when it has at most 63 characters and ends with a letter
/// or digit, else cut and ended with a hash of the whole name, so the same app and process
/// always give the same name and two of them never share one. Services are looked up by this
/// name or by their labels, never by parsing it.
fn fit_service_name(name: String) -> String {
    if name.len() <= SERVICE_NAME_MAX && name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return name;
    }
    let hash = format!("{:016x}", fnv1a(name.as_bytes()));
    let hash = &hash[..10];
    let kept: String = name
        .chars()
        .take(SERVICE_NAME_MAX - hash.len() - 1)
        .collect();
    format!("{}-{hash}", kept.trim_end_matches(['-', '_']))
}

/// FNV-1a: a hash that stays the same across builds and Rust versions, as names must.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The job service of a release's `release:` command. Service names allow letters, digits
/// and dashes only, so the version's dots become dashes (build metadata is never part of
/// what makes a version unique).
fn release_job_name(app: &AppName, release: &Release) -> String {
    let version = release.version.to_string();
    let version = version.split('+').next().unwrap_or_default();
    let version: String = version
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    fit_service_name(format!("slipway-{app}-release-{version}"))
}

/// `launch_command(command)` with the stop delay in front (see [`STOP_DELAY_SCRIPT`]).
pub fn stop_delay_command(command: &str) -> Vec<String> {
    let mut cmd = vec![
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        STOP_DELAY_SCRIPT.to_owned(),
        "slipway-stop-delay".to_owned(),
    ];
    cmd.extend(slipway_builder::launch_command(command));
    cmd
}

/// The release's first app.json startup check of a process type as a Swarm health check:
/// an HTTP check becomes curl against the task itself (a 2xx or 3xx answer, with the content
/// if one is given), an uptime check a check that first runs after that long. A web process
/// without one is checked by connecting to `$PORT`, as the Docker runtime does.
fn service_health(release: &Release, process: &ProcessType, host: &str) -> Option<HealthCheck> {
    let checks = release.app_json.startup_checks(process);
    let boot = if process.is_web() {
        WEB_BOOT
    } else {
        Duration::ZERO
    };
    if let Some(check) = checks.iter().find(|c| c.path.is_some()) {
        let path = check.path.as_deref().unwrap_or("/");
        let port = check.port.unwrap_or_else(|| web_port(release));
        let curl = format!(
            "curl -fsS --max-time {} -H {} {}",
            check.timeout.max(1),
            sh_quote(&format!("Host: {host}")),
            sh_quote(&format!("http://127.0.0.1:{port}{path}")),
        );
        let shell = match &check.content {
            Some(content) => format!("{curl} | grep -qF -- {}", sh_quote(content)),
            None => format!("{curl} -o /dev/null"),
        };
        return Some(HealthCheck {
            shell,
            interval: Duration::from_secs(check.wait.max(1)),
            timeout: Duration::from_secs(check.timeout.max(1) + 1),
            retries: check.attempts.max(1),
            start_period: Duration::from_secs(check.initial_delay) + boot,
        });
    }
    if let Some(uptime) = checks.iter().find_map(|c| c.uptime) {
        return Some(HealthCheck {
            shell: "true".to_owned(),
            interval: Duration::from_secs(uptime.max(1)),
            timeout: Duration::from_secs(5),
            retries: 1,
            start_period: Duration::ZERO,
        });
    }
    process.is_web().then(|| HealthCheck {
        shell: format!(
            "bash -c {}",
            sh_quote(&format!("</dev/tcp/127.0.0.1/{}", web_port(release)))
        ),
        interval: TCP_CHECK_EVERY,
        timeout: TCP_CHECK_EVERY,
        retries: 3,
        start_period: WEB_BOOT,
    })
}

/// A single-quoted shell word.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The longest a new task can take to be healthy or given up, by its health check.
fn task_deadline(health: Option<&HealthCheck>) -> Duration {
    let slack = Duration::from_secs(30);
    health.map_or(slack, |check| {
        check.start_period + (check.interval + check.timeout) * (check.retries + 1) + slack
    })
}

/// An image as Swarm records it may carry the digest it resolved (`name:tag@sha256:…`).
fn same_image(running: &str, wanted: &str) -> bool {
    running.split('@').next() == Some(wanted)
}

/// Swarm's task states after which a task never runs again.
fn finished(task: &TaskState) -> bool {
    matches!(
        task.state.as_str(),
        "complete" | "failed" | "rejected" | "shutdown" | "orphaned" | "remove"
    )
}

/// Why a task failed, in Swarm's words and with its exit status.
fn task_failure(task: &TaskState) -> String {
    match (&task.error, task.exit_code) {
        // Swarm's error names the exit status (`task: non-zero exit (1)`).
        (Some(error), _) => error.clone(),
        (None, Some(code)) => format!("{} (exit status {code})", task.state),
        (None, None) => task.state.clone(),
    }
}

/// The dyno a task is, `web.2`.
fn task_dyno(process: &str, task: &TaskState) -> String {
    match task.slot {
        Some(slot) => format!("{process}.{slot}"),
        None => process.to_owned(),
    }
}

/// What a change to one service waits for.
struct Goal<'a> {
    name: &'a str,
    process: &'a ProcessType,
    /// Tasks of this release, when the change is a new release.
    version: Option<&'a str>,
    replicas: u32,
    /// Only a completed update counts: the change keeps the release (a restart, a resize).
    expect_update: bool,
    /// Tasks that existed before the change: their failures are not the change's.
    known: BTreeSet<String>,
    deadline: Instant,
}

impl Goal<'_> {
    fn wants(&self, task: &TaskState) -> bool {
        self.version.is_none_or(|version| {
            task.labels.get(labels::RELEASE).map(String::as_str) == Some(version)
        })
    }
}

/// Why a service change failed, and whether Swarm already put the service back.
struct Failure {
    reason: String,
    rolled_back: bool,
}

/// A service a deploy changed, for undoing it.
struct Changed {
    name: String,
    /// `false`: the deploy created it, so undoing removes it.
    existed: bool,
}

impl Deployer {
    /// The image reference a release's services and release command run. With `--registry`
    /// it is the release image pushed there, pinned by the digest the registry gave it
    /// (`<registry>/slipway/<app>:<version>@sha256:…`), so every node pulls exactly that
    /// image; each image is pushed once per server process (a later push only finds its
    /// layers there). Without a registry it is the local name, which only this node has.
    pub(super) async fn release_image(&self, release: &Release) -> Result<String, String> {
        let Some(registry) = &self.registry else {
            return Ok(release.image.clone());
        };
        let remote = format!("{registry}/{}", release.image);
        if let Some(digest) = lock(&self.pushed).get(&remote) {
            return Ok(format!("{remote}@{digest}"));
        }
        self.engine
            .tag_image(&release.image, &remote)
            .await
            .map_err(|e| format!("naming the image for the registry: {e}"))?;
        let digest = self
            .engine
            .push_image(&remote)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(image = %remote, %digest, "pushed the release image");
        lock(&self.pushed).insert(remote.clone(), digest.clone());
        Ok(format!("{remote}@{digest}"))
    }

    /// The local name of an image a service runs: without the digest and, for one pushed to
    /// `--registry`, without the registry.
    pub(super) fn local_image<'a>(&self, image: &'a str) -> &'a str {
        let image = image.split('@').next().unwrap_or_default();
        self.registry
            .as_deref()
            .and_then(|registry| image.strip_prefix(registry))
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(image)
    }

    /// The service running `entry`'s process type of `release`, from `image` (see
    /// [`Self::release_image`]).
    pub(super) fn service_spec(
        &self,
        app: &App,
        release: &Release,
        entry: &FormationEntry,
        image: &str,
    ) -> Result<ServiceSpec, String> {
        let command = release.processes.get(&entry.process).ok_or_else(|| {
            format!(
                "release {} has no `{}` process",
                release.version, entry.process
            )
        })?;
        let mut container =
            self.process_spec(app, release, &entry.process, 0, command, entry.memory_bytes);
        container.name = service_name(&app.name, &entry.process);
        container.image = image.to_owned();
        container.cmd = stop_delay_command(command);
        container.env.insert(
            "SLIPWAY_STOP_DELAY".into(),
            STOP_DELAY.as_secs().to_string(),
        );
        container.labels.remove(labels::INDEX);
        let mut service_labels = self.app_labels(&app.name);
        service_labels.insert(labels::ROLE.into(), "process".into());
        service_labels.insert(labels::PROCESS.into(), entry.process.to_string());
        let host = format!("{}.{}", app.name, self.apps_domain);
        Ok(ServiceSpec {
            container,
            labels: service_labels,
            slot_env: BTreeMap::from([("DYNO".to_owned(), format!("{}.", entry.process))]),
            mode: ServiceMode::Replicated(entry.quantity),
            health: service_health(release, &entry.process, &host),
            published_port: entry.process.is_web().then(|| web_port(release)),
            constraints: Vec::new(),
            stop_grace: STOP_DELAY + STOP_GRACE,
        })
    }

    /// The app's services of one role (every role when `None`).
    async fn app_services(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
        role: Option<&str>,
    ) -> Result<Vec<ServiceState>, EngineError> {
        let mut filter = vec![
            (labels::APP, app.as_str()),
            (labels::INSTANCE, self.instance.as_str()),
        ];
        if let Some(role) = role {
            filter.push((labels::ROLE, role));
        }
        swarm.list_services(&filter).await
    }

    /// The serving web tasks of an app, as the router reaches them.
    async fn task_backends(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
    ) -> Result<Vec<Backend>, EngineError> {
        let tasks = match swarm.tasks(&service_name(app, &ProcessType::web())).await {
            Ok(tasks) => tasks,
            Err(EngineError::NotFound { .. }) => Vec::new(),
            Err(error) => return Err(error),
        };
        let mut backends: Vec<Backend> = tasks
            .iter()
            .filter(|task| task.serving())
            .filter_map(|task| {
                Some(Backend {
                    addr: SocketAddr::new(task.node_addr?, task.published_port?),
                    id: task.container_id.clone().unwrap_or_else(|| task.id.clone()),
                    dyno: task_dyno("web", task),
                    release: task
                        .labels
                        .get(labels::RELEASE)
                        .cloned()
                        .unwrap_or_default(),
                })
            })
            .collect();
        backends.sort_by(|a, b| (&a.dyno, a.addr).cmp(&(&b.dyno, b.addr)));
        Ok(backends)
    }

    /// Routes the app to its serving web tasks; returns the addresses that left the routes.
    /// An engine error leaves the routes as they were.
    pub(super) async fn refresh_task_routes(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
    ) -> Vec<SocketAddr> {
        let backends = match self.task_backends(swarm, app).await {
            Ok(backends) => backends,
            Err(error) => {
                tracing::debug!(%app, %error, "reading the web tasks failed");
                return Vec::new();
            }
        };
        let removed: Vec<SocketAddr> = {
            let sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            let current = sites.get(app);
            if current == Some(&backends) {
                return Vec::new();
            }
            current
                .into_iter()
                .flatten()
                .filter(|old| !backends.iter().any(|new| new.addr == old.addr))
                .map(|old| old.addr)
                .collect()
        };
        // Which task took or left which address, to match a router error to a task change.
        let routed: Vec<String> = backends
            .iter()
            .map(|b| format!("{}={}", b.dyno, b.addr))
            .collect();
        tracing::info!(%app, routed = %routed.join(" "), removed = ?removed, "web task routes changed");
        self.set_backends(app, backends);
        removed
    }

    /// Runs `work` while refreshing the app's routes from its tasks every 250 ms, then lets
    /// the requests to the tasks that left the routes finish.
    pub(super) async fn while_refreshing<T>(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
        work: impl Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        let mut removed = BTreeSet::new();
        let output = loop {
            tokio::select! {
                output = &mut work => break output,
                () = tokio::time::sleep(REFRESH_WHILE_CHANGING) => {
                    removed.extend(self.refresh_task_routes(swarm, app).await);
                }
            }
        };
        removed.extend(self.refresh_task_routes(swarm, app).await);
        for addr in removed {
            self.drain(addr).await;
        }
        output
    }

    /// Sends what a service's tasks print to the app's log, once per service at a time.
    pub(super) fn follow_service(&self, swarm: &Arc<dyn Swarm>, app: &AppName, process: &str) {
        let name = process_service_name(app, process);
        let since = OffsetDateTime::now_utc().unix_timestamp();
        let swarm = swarm.clone();
        self.logs
            .follow_output(app.clone(), process.to_owned(), name.clone(), move || {
                swarm.service_output(&name, Some(since))
            });
    }

    /// A release on Swarm: refuses canaries, runs the release phase as a job, then rolls the
    /// services. The error is the release's failure reason.
    pub(super) async fn swarm_rollout(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), String> {
        if self
            .canary_policy_for(app, release)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err("canary releases need --runtime docker".to_owned());
        }
        self.swarm_release_phase(swarm, app, release, progress)
            .await
            .map_err(|reason| format!("release phase failed: {reason}"))?;
        self.while_refreshing(
            swarm,
            &app.name,
            self.roll_services(swarm, app, release, progress),
        )
        .await
        .map_err(|reason| format!("automatic rollback: {reason}"))
    }

    /// Runs the release's `release:` command once as a job service, relaying its output.
    async fn swarm_release_phase(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), String> {
        let release_type = ProcessType::release();
        let Some(command) = release.processes.get(&release_type) else {
            return Ok(());
        };
        progress
            .say(format!("-----> Running release command: {command}"))
            .await;
        let name = release_job_name(&app.name, release);
        let mut container = self.process_spec(app, release, &release_type, 1, command, None);
        container.name = name.clone();
        container.image = self.release_image(release).await?;
        container
            .labels
            .insert(labels::ROLE.into(), "release".into());
        let mut service_labels = self.app_labels(&app.name);
        service_labels.insert(labels::ROLE.into(), "release".into());
        let spec = ServiceSpec {
            container,
            labels: service_labels,
            slot_env: BTreeMap::new(),
            mode: ServiceMode::Job,
            health: None,
            published_port: None,
            constraints: Vec::new(),
            stop_grace: Duration::from_secs(5),
        };
        swarm
            .ensure_overlay_network(&network_name(&app.name), &self.app_labels(&app.name))
            .await
            .map_err(|e| e.to_string())?;
        swarm
            .remove_service(&name)
            .await
            .map_err(|e| e.to_string())?;
        swarm
            .deploy_service(&spec)
            .await
            .map_err(|e| format!("starting the release command: {e}"))?;
        self.event(
            &app.name,
            "release",
            format!("Running release command `{command}`"),
        );
        let outcome = self.watch_job(swarm, &app.name, &name, progress).await;
        if let Err(error) = swarm.remove_service(&name).await {
            tracing::warn!(app = %app.name, %error, "removing the release command's service failed");
        }
        // Swarm leaves a finished job task's container behind its removed service.
        for container in self
            .app_containers(&app.name, Some("release"))
            .await
            .unwrap_or_default()
            .iter()
            .filter(|c| !c.running)
        {
            self.engine.remove_container(&container.id).await.ok();
        }
        outcome
    }

    /// Relays a job's output to the pusher and the log until its task ends, within the
    /// release timeout.
    async fn watch_job(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
        name: &str,
        progress: &Progress,
    ) -> Result<(), String> {
        let mut output = swarm.service_output(name, None);
        let relay = async {
            let mut lines = LineSplitter::default();
            while let Some(Ok(chunk)) = output.next().await {
                for text in lines.feed(chunk.stream, &chunk.bytes) {
                    progress.say(format!("       {text}")).await;
                    self.logs.push(app, app_line("release", text));
                }
            }
            for text in lines.finish() {
                progress.say(format!("       {text}")).await;
                self.logs.push(app, app_line("release", text));
            }
        };
        let watched = async {
            let mut relay = std::pin::pin!(relay);
            let mut relayed = false;
            let ended = loop {
                tokio::select! {
                    () = &mut relay, if !relayed => relayed = true,
                    () = tokio::time::sleep(WATCH_EVERY) => {
                        let tasks = swarm.tasks(name).await.map_err(|e| e.to_string())?;
                        if let Some(task) = tasks.iter().find(|task| finished(task)) {
                            break job_outcome(task);
                        }
                    }
                }
            };
            // The last lines may still be on their way.
            if !relayed {
                tokio::time::timeout(Duration::from_secs(2), relay)
                    .await
                    .ok();
            }
            ended
        };
        tokio::time::timeout(self.release_timeout, watched)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "release command did not finish within {} s",
                    self.release_timeout.as_secs()
                ))
            })
    }

    /// Updates (or creates) the service of each process type, `web` first, each one healthy
    /// before the next; if one fails, the ones already changed are put back.
    async fn roll_services(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), String> {
        let mut formation = self
            .running_entries(app, release)
            .await
            .map_err(|e| e.to_string())?;
        formation.sort_by_key(|e| (!e.process.is_web(), e.process.clone()));
        swarm
            .ensure_overlay_network(&network_name(&app.name), &self.app_labels(&app.name))
            .await
            .map_err(|e| e.to_string())?;
        let version = release.version.to_string();
        let image = self.release_image(release).await?;
        let mut changed: Vec<Changed> = Vec::new();
        for entry in &formation {
            let spec = self.service_spec(app, release, entry, &image)?;
            let name = spec.container.name.clone();
            let before = swarm.service(&name).await.map_err(|e| e.to_string())?;
            let known = self.task_ids(swarm, &name, before.is_some()).await?;
            progress
                .say(format!(
                    "       Updating {} to {version} ({} task(s))",
                    entry.process, entry.quantity
                ))
                .await;
            self.event(
                &app.name,
                entry.process.as_str(),
                format!(
                    "Deploying {version} to {} task(s) with command `{}`",
                    entry.quantity, release.processes[&entry.process]
                ),
            );
            if let Err(error) = swarm.deploy_service(&spec).await {
                self.undo_services(swarm, &changed).await;
                return Err(format!("deploying {name}: {error}"));
            }
            changed.push(Changed {
                name: name.clone(),
                existed: before.is_some(),
            });
            self.follow_service(swarm, &app.name, entry.process.as_str());
            let goal = Goal {
                name: &name,
                process: &entry.process,
                version: Some(&version),
                replicas: entry.quantity,
                expect_update: false,
                known,
                deadline: Instant::now()
                    + task_deadline(spec.health.as_ref()) * entry.quantity.max(1),
            };
            match self.settle(swarm, &goal).await {
                Ok(()) => {
                    progress
                        .say(format!("       {} is up", entry.process))
                        .await;
                    self.event(
                        &app.name,
                        entry.process.as_str(),
                        format!("{} task(s) of {version} up", entry.quantity),
                    );
                }
                Err(failure) => {
                    self.event(
                        &app.name,
                        entry.process.as_str(),
                        format!("Failed to start: {}", failure.reason),
                    );
                    if failure.rolled_back {
                        changed.pop();
                    }
                    self.undo_services(swarm, &changed).await;
                    return Err(failure.reason);
                }
            }
        }
        Ok(())
    }

    async fn task_ids(
        &self,
        swarm: &Arc<dyn Swarm>,
        name: &str,
        exists: bool,
    ) -> Result<BTreeSet<String>, String> {
        if !exists {
            return Ok(BTreeSet::new());
        }
        let tasks = swarm.tasks(name).await.map_err(|e| e.to_string())?;
        Ok(tasks.into_iter().map(|task| task.id).collect())
    }

    /// Puts back the services a failed deploy changed, newest first: a created one is removed,
    /// an updated one rolled back to its previous spec (bounded wait for each).
    async fn undo_services(&self, swarm: &Arc<dyn Swarm>, changed: &[Changed]) {
        for service in changed.iter().rev() {
            let outcome = if service.existed {
                match swarm.rollback_service(&service.name).await {
                    Ok(()) => {
                        self.await_rollback(swarm, &service.name).await;
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            } else {
                swarm.remove_service(&service.name).await
            };
            if let Err(error) = outcome {
                tracing::warn!(service = %service.name, %error, "undoing a service change failed");
            }
        }
    }

    async fn await_rollback(&self, swarm: &Arc<dyn Swarm>, name: &str) {
        let deadline = Instant::now() + ROLLBACK_WAIT;
        while Instant::now() < deadline {
            match swarm.service(name).await {
                Ok(Some(service))
                    if service.update.as_ref().is_some_and(|update| {
                        matches!(
                            update.state,
                            UpdateState::RollbackStarted | UpdateState::Updating
                        )
                    }) => {}
                Ok(Some(service)) if service.update.is_none() => {}
                _ => return,
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
        tracing::warn!(service = %name, "the rollback did not finish in time");
    }

    /// Waits until a changed service serves as `goal` says, or says why it will not.
    async fn settle(&self, swarm: &Arc<dyn Swarm>, goal: &Goal<'_>) -> Result<(), Failure> {
        let started = Instant::now();
        let failed = |reason: String| Failure {
            reason,
            rolled_back: false,
        };
        loop {
            let service = swarm
                .service(goal.name)
                .await
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| failed(format!("service {} was removed", goal.name)))?;
            let tasks = swarm
                .tasks(goal.name)
                .await
                .map_err(|e| failed(e.to_string()))?;
            let serving = tasks
                .iter()
                .filter(|t| t.serving() && goal.wants(t))
                .count();
            let others = tasks
                .iter()
                .filter(|t| t.serving() && !goal.wants(t))
                .count();
            let converged = u32::try_from(serving).ok() == Some(goal.replicas) && others == 0;
            let new_failures: Vec<&TaskState> = tasks
                .iter()
                .filter(|t| {
                    !goal.known.contains(&t.id)
                        && goal.wants(t)
                        && matches!(t.state.as_str(), "failed" | "rejected")
                })
                .collect();
            let last_failure = new_failures
                .iter()
                .max_by_key(|t| t.timestamp.clone())
                .map(|t| {
                    format!(
                        "{} {}",
                        task_dyno(goal.process.as_str(), t),
                        task_failure(t)
                    )
                });
            match service.update.as_ref().map(|u| (&u.state, &u.message)) {
                Some((UpdateState::Completed, _)) if converged => return Ok(()),
                None if converged && !goal.expect_update => return Ok(()),
                Some((
                    UpdateState::RollbackStarted
                    | UpdateState::RollbackPaused
                    | UpdateState::RollbackCompleted,
                    message,
                )) => {
                    let mut reason = format!(
                        "Swarm rolled {} back: {}",
                        goal.process,
                        message.as_deref().unwrap_or("a new task failed")
                    );
                    if let Some(why) = last_failure {
                        reason.push_str(&format!("; {why}"));
                    }
                    return Err(Failure {
                        reason,
                        rolled_back: true,
                    });
                }
                Some((UpdateState::Paused, message)) => {
                    return Err(failed(format!(
                        "Swarm paused the update of {}: {}",
                        goal.process,
                        message.as_deref().unwrap_or("a new task failed")
                    )));
                }
                None if new_failures.len() >= FAILED_TASKS_LIMIT => {
                    return Err(failed(last_failure.unwrap_or_default()));
                }
                _ => {}
            }
            if Instant::now() >= goal.deadline {
                let mut reason = format!(
                    "{} did not have {} healthy task(s) within {} s",
                    goal.process,
                    goal.replicas,
                    (goal.deadline - started).as_secs()
                );
                if let Some(why) = last_failure {
                    reason.push_str(&format!(": {why}"));
                }
                return Err(failed(reason));
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    /// The formation entries that run under `release`: a quantity above zero and a command in
    /// the release. Each has a service; any other process service is stale.
    async fn running_entries(
        &self,
        app: &App,
        release: &Release,
    ) -> slipway_store::Result<Vec<FormationEntry>> {
        let mut formation = self.store.formation(app.id).await?;
        formation.retain(|e| e.quantity > 0 && release.processes.contains_key(&e.process));
        Ok(formation)
    }

    /// Removes the app's process services that the release and formation no longer have.
    pub(super) async fn remove_stale_services(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
    ) -> Result<(), String> {
        let wanted: BTreeSet<String> = self
            .running_entries(app, release)
            .await
            .map_err(|e| e.to_string())?
            .iter()
            .map(|e| e.process.to_string())
            .collect();
        let services = self
            .app_services(swarm, &app.name, Some("process"))
            .await
            .map_err(|e| e.to_string())?;
        for service in services {
            let process = service
                .labels
                .get(labels::PROCESS)
                .cloned()
                .unwrap_or_default();
            if wanted.contains(&process) {
                continue;
            }
            self.event(&app.name, &process, "Stopping: not in the formation");
            swarm
                .remove_service(&service.name)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Scales one process type's service to the formation: created when it had none, rolled
    /// when its memory changed, else only its task count changes. On failure the service is
    /// put back as it was.
    pub(super) async fn swarm_converge(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
        process: &ProcessType,
        before: Option<&FormationEntry>,
        progress: &Progress,
    ) -> Result<(), String> {
        let formation = self
            .store
            .formation(app.id)
            .await
            .map_err(|e| e.to_string())?;
        let Some(entry) = formation.into_iter().find(|e| e.process == *process) else {
            return Ok(());
        };
        if !release.processes.contains_key(process) {
            return Ok(());
        }
        let name = service_name(&app.name, process);
        let existing = swarm.service(&name).await.map_err(|e| e.to_string())?;
        if entry.quantity == 0 {
            if existing.is_some() {
                progress.say(format!("       Stopping {process}")).await;
                swarm
                    .remove_service(&name)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        let image = self.release_image(release).await?;
        let spec = self.service_spec(app, release, &entry, &image)?;
        let known = self.task_ids(swarm, &name, existing.is_some()).await?;
        let resized = before.is_some_and(|b| b.memory_bytes != entry.memory_bytes);
        let added = entry
            .quantity
            .saturating_sub(existing.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        let mut goal = Goal {
            name: &name,
            process,
            version: None,
            replicas: entry.quantity,
            expect_update: false,
            known,
            deadline: Instant::now() + task_deadline(spec.health.as_ref()) * added.max(1),
        };
        progress
            .say(format!("       Scaling {process} to {}", entry.quantity))
            .await;
        match existing {
            None => {
                swarm
                    .ensure_overlay_network(&network_name(&app.name), &self.app_labels(&app.name))
                    .await
                    .map_err(|e| e.to_string())?;
                swarm
                    .deploy_service(&spec)
                    .await
                    .map_err(|e| e.to_string())?;
                self.follow_service(swarm, &app.name, process.as_str());
                if let Err(failure) = self.settle(swarm, &goal).await {
                    swarm.remove_service(&name).await.ok();
                    return Err(failure.reason);
                }
            }
            Some(service) if resized => {
                goal.expect_update = true;
                goal.deadline =
                    Instant::now() + task_deadline(spec.health.as_ref()) * entry.quantity.max(1);
                swarm
                    .deploy_service(&spec)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Err(failure) = self.settle(swarm, &goal).await {
                    if !failure.rolled_back {
                        self.undo_services(
                            swarm,
                            &[Changed {
                                name: service.name,
                                existed: true,
                            }],
                        )
                        .await;
                    }
                    return Err(failure.reason);
                }
            }
            Some(service) => {
                swarm
                    .scale_service(&name, entry.quantity)
                    .await
                    .map_err(|e| e.to_string())?;
                if let Err(failure) = self.settle(swarm, &goal).await {
                    if let Some(replicas) = service.replicas {
                        swarm.scale_service(&name, replicas).await.ok();
                    }
                    return Err(failure.reason);
                }
            }
        }
        Ok(())
    }

    /// Replaces every task of the app's services (of one type) with a fresh one, rolling.
    pub(super) async fn swarm_restart(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
        release: &Release,
        only: Option<&ProcessType>,
        progress: &Progress,
    ) -> Result<(), String> {
        let formation = self
            .store
            .formation(app.id)
            .await
            .map_err(|e| e.to_string())?;
        for entry in formation {
            if only.is_some_and(|o| *o != entry.process) || entry.quantity == 0 {
                continue;
            }
            let name = service_name(&app.name, &entry.process);
            if swarm
                .service(&name)
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                continue;
            }
            let image = self.release_image(release).await?;
            let spec = self.service_spec(app, release, &entry, &image)?;
            let known = self.task_ids(swarm, &name, true).await?;
            progress
                .say(format!("       Restarting {}", entry.process))
                .await;
            self.event(&app.name, entry.process.as_str(), "Restarting");
            swarm
                .restart_service(&name)
                .await
                .map_err(|e| e.to_string())?;
            let goal = Goal {
                name: &name,
                process: &entry.process,
                version: None,
                replicas: entry.quantity,
                expect_update: true,
                known,
                deadline: Instant::now()
                    + task_deadline(spec.health.as_ref()) * entry.quantity.max(1),
            };
            self.settle(swarm, &goal).await.map_err(|f| f.reason)?;
        }
        Ok(())
    }

    /// `ps` from the tasks: each slot's current task, with the slot's failed tasks counted as
    /// restarts.
    pub(super) async fn swarm_processes(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
    ) -> Result<Vec<ProcessInfo>, EngineError> {
        let mut processes = Vec::new();
        for service in self.app_services(swarm, &app.name, Some("process")).await? {
            let Some(process) = service.labels.get(labels::PROCESS) else {
                continue;
            };
            let mut slots: BTreeMap<u32, Vec<TaskState>> = BTreeMap::new();
            for task in swarm.tasks(&service.name).await? {
                if let Some(slot) = task.slot {
                    slots.entry(slot).or_default().push(task);
                }
            }
            for (slot, mut tasks) in slots {
                tasks.sort_by(|a, b| a.timestamp.cmp(&b.timestamp));
                let Some(current) = tasks.iter().rev().find(|t| t.desired_state == "running")
                else {
                    continue;
                };
                let failed: Vec<&TaskState> =
                    tasks.iter().filter(|t| t.state == "failed").collect();
                let up = matches!(current.state.as_str(), "running" | "starting");
                processes.push(ProcessInfo {
                    dyno: format!("{process}.{slot}"),
                    release: current
                        .labels
                        .get(labels::RELEASE)
                        .cloned()
                        .unwrap_or_default(),
                    state: if up {
                        ProcessState::Up
                    } else {
                        ProcessState::Crashed
                    },
                    started_at: current.timestamp.clone(),
                    exit_code: if up {
                        None
                    } else {
                        current
                            .exit_code
                            .or_else(|| failed.last().and_then(|t| t.exit_code))
                    },
                    restarts: u32::try_from(failed.len()).unwrap_or(u32::MAX),
                    canary: false,
                });
            }
        }
        processes.sort_by(|a, b| a.dyno.cmp(&b.dyno));
        Ok(processes)
    }

    /// How many tasks of the app's process services serve now.
    pub(super) async fn serving_tasks(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
    ) -> Result<usize, EngineError> {
        let mut serving = 0;
        for service in self.app_services(swarm, app, Some("process")).await? {
            serving += swarm
                .tasks(&service.name)
                .await?
                .iter()
                .filter(|t| t.serving())
                .count();
        }
        Ok(serving)
    }

    /// Removes every service of the app and waits (bounded) until their containers stopped,
    /// so the network can go.
    pub(super) async fn remove_app_services(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
    ) -> Result<(), EngineError> {
        for service in self.app_services(swarm, app, None).await? {
            swarm.remove_service(&service.name).await?;
        }
        let deadline = Instant::now() + TASKS_GONE_WAIT;
        while Instant::now() < deadline {
            let running = self
                .app_containers(app, None)
                .await?
                .iter()
                .any(|c| c.running && c.labels.contains_key("com.docker.swarm.service.id"));
            if !running {
                break;
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
        Ok(())
    }

    /// The reconciler on Swarm: Swarm restarts crashed tasks itself; this makes each app's
    /// services match its current release and formation, adopts them (routes, logs), and
    /// removes the services of apps that are gone.
    pub(super) async fn swarm_reconcile_all(
        &self,
        swarm: &Arc<dyn Swarm>,
    ) -> Result<(), DeployError> {
        let apps = self.store.apps().await?;
        for app in &apps {
            if let Err(error) = self.swarm_reconcile_app(swarm, app).await {
                tracing::warn!(app = %app.name, %error, "reconcile failed");
            }
        }
        let known: BTreeSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        let services = swarm
            .list_services(&[(labels::INSTANCE, &self.instance)])
            .await
            .map_err(engine_error)?;
        for service in services {
            let role = service.labels.get(labels::ROLE).map(String::as_str);
            let owner = service.labels.get(labels::APP).map(String::as_str);
            if matches!(role, Some("process" | "release"))
                && owner.is_some_and(|name| !known.contains(name))
            {
                tracing::info!(service = %service.name, "removing the service of a deleted app");
                swarm
                    .remove_service(&service.name)
                    .await
                    .map_err(engine_error)?;
            }
        }
        Ok(())
    }

    async fn swarm_reconcile_app(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &App,
    ) -> Result<(), DeployError> {
        let Some(_guard) = self.try_lock(&app.name) else {
            return Ok(());
        };
        let services = self
            .app_services(swarm, &app.name, None)
            .await
            .map_err(engine_error)?;
        // Release commands run only under the app lock, which this holds: any left is what an
        // interrupted deploy left.
        for service in services
            .iter()
            .filter(|s| s.labels.get(labels::ROLE).map(String::as_str) == Some("release"))
        {
            tracing::info!(app = %app.name, service = %service.name, "removing an interrupted release command");
            swarm
                .remove_service(&service.name)
                .await
                .map_err(engine_error)?;
        }
        let processes: Vec<&ServiceState> = services
            .iter()
            .filter(|s| s.labels.get(labels::ROLE).map(String::as_str) == Some("process"))
            .collect();
        let Some(release) = self.store.current_release(app.id).await? else {
            for service in processes {
                swarm
                    .remove_service(&service.name)
                    .await
                    .map_err(engine_error)?;
            }
            self.set_backends(&app.name, Vec::new());
            return Ok(());
        };
        // The release's image by name, as a service that runs it names it (pinned or not).
        let wanted_image = match &self.registry {
            Some(registry) => format!("{registry}/{}", release.image),
            None => release.image.clone(),
        };
        let wanted = self.running_entries(app, &release).await?;
        for service in &processes {
            let process = service.labels.get(labels::PROCESS);
            if !wanted
                .iter()
                .any(|e| Some(&e.process.to_string()) == process)
            {
                tracing::info!(app = %app.name, service = %service.name, "removing a service not in the formation");
                swarm
                    .remove_service(&service.name)
                    .await
                    .map_err(engine_error)?;
            }
        }
        for entry in &wanted {
            let name = service_name(&app.name, &entry.process);
            let existing = processes.iter().find(|s| s.name == name);
            let changing = existing.and_then(|s| s.update.as_ref()).is_some_and(|u| {
                matches!(
                    u.state,
                    UpdateState::Updating | UpdateState::RollbackStarted
                )
            });
            let matches = existing.is_some_and(|s| {
                same_image(&s.image, &wanted_image) && s.replicas == Some(entry.quantity)
            });
            if !changing && !matches {
                let image = self
                    .release_image(&release)
                    .await
                    .map_err(DeployError::Failed)?;
                let spec = self
                    .service_spec(app, &release, entry, &image)
                    .map_err(DeployError::Failed)?;
                let what = if existing.is_some() {
                    "Updating a service that does not match the release"
                } else {
                    "Starting missing process"
                };
                tracing::info!(app = %app.name, service = %name, "{what}");
                self.event(&app.name, entry.process.as_str(), what);
                swarm
                    .ensure_overlay_network(&network_name(&app.name), &self.app_labels(&app.name))
                    .await
                    .map_err(engine_error)?;
                swarm.deploy_service(&spec).await.map_err(engine_error)?;
            }
            self.follow_service(swarm, &app.name, entry.process.as_str());
        }
        self.refresh_task_routes(swarm, &app.name).await;
        let serving = self
            .serving_tasks(swarm, &app.name)
            .await
            .map_err(engine_error)?;
        crate::metrics::running_containers(&app.name, serving);
        Ok(())
    }

    /// A follower's routes on Swarm: the serving web tasks of every app.
    pub(super) async fn swarm_follow_routes(
        &self,
        swarm: &Arc<dyn Swarm>,
    ) -> Result<(), DeployError> {
        for app in self.store.apps().await? {
            if self.store.current_release(app.id).await?.is_none() {
                self.set_backends(&app.name, Vec::new());
                continue;
            }
            self.refresh_task_routes(swarm, &app.name).await;
        }
        self.set_maintenance(self.store.apps_in_maintenance().await?);
        Ok(())
    }

    /// The images the app's services run, so pruning keeps them.
    pub(super) async fn service_images(
        &self,
        swarm: &Arc<dyn Swarm>,
        app: &AppName,
    ) -> Vec<String> {
        match self.app_services(swarm, app, None).await {
            Ok(services) => services
                .iter()
                .map(|s| self.local_image(&s.image).to_owned())
                .collect(),
            Err(error) => {
                tracing::warn!(%app, %error, "listing services for pruning failed");
                Vec::new()
            }
        }
    }
}

fn job_outcome(task: &TaskState) -> Result<(), String> {
    match (task.state.as_str(), task.exit_code) {
        ("complete", _) | (_, Some(0)) => Ok(()),
        (_, Some(code)) => Err(format!("release command exited with status {code}")),
        _ => Err(format!("release command: {}", task_failure(task))),
    }
}

fn engine_error(error: EngineError) -> DeployError {
    DeployError::Failed(error.to_string())
}

fn app_line(process: &str, text: String) -> LogEntry {
    LogEntry {
        at: OffsetDateTime::now_utc(),
        source: LogSource::App,
        process: process.to_owned(),
        text,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The services whose output is being followed.
/// Digests of pushed images, by registry reference.
pub(super) type PushedImages = Mutex<HashMap<String, String>>;

/// Forgets a pushed image whose local name is gone, so a later deploy of it pushes again.
pub(super) fn forget_pushed(pushed: &PushedImages, remote: &str) {
    lock(pushed).remove(remote);
}

#[cfg(test)]
mod tests;
