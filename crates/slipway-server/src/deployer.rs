//! Turns "this release should be running" into containers, and containers into routes.
//!
//! A deploy starts every process container of the new release beside the old ones, waits until
//! each is healthy, swaps the router to the new web containers, then drains and stops the old
//! ones. If any new container fails its check, every new container is removed and the old
//! release keeps serving untouched.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::join_all;
use slipway_engine::{ContainerEngine, ContainerState};
use slipway_router::Router;
use slipway_store::{App, Release, Store};
use slipway_types::api::ReleaseStatus;
use slipway_types::{
    AppName, Backend, ContainerSpec, ProcessType, RouteSnapshot, SiteRoutes, labels,
};
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio::time::Instant;

mod reconcile;

/// The port every web process listens on inside its container (`$PORT`).
pub const WEB_PORT: u16 = 5000;
/// A web process must accept TCP connections on `$PORT` within this long.
const WEB_BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// Other processes must still be running after this long.
const WORKER_SETTLE: Duration = Duration::from_secs(10);
/// A web process must still be running this long after it first accepted a connection:
/// servers like gunicorn bind `$PORT` before their workers load the app, and exit if it fails
/// to load.
const WEB_SETTLE: Duration = Duration::from_secs(2);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_MEMORY: i64 = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// A new container did not become healthy; the old release keeps serving.
    #[error("{0}")]
    Unhealthy(String),
    #[error(transparent)]
    Engine(#[from] slipway_engine::EngineError),
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
}

/// One process container the deployer started.
struct Started {
    id: String,
    process: ProcessType,
    index: u32,
}

pub struct Deployer {
    engine: Arc<dyn ContainerEngine>,
    store: Store,
    router: Arc<Router>,
    apps_domain: String,
    locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    /// Healthy web backends per app; every app in the store has an entry.
    sites: Mutex<BTreeMap<AppName, Vec<Backend>>>,
    /// Crash restarts by container name: attempts so far and when the next may happen.
    restarts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl Deployer {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        store: Store,
        router: Arc<Router>,
        apps_domain: String,
    ) -> Self {
        Self {
            engine,
            store,
            router,
            apps_domain,
            locks: Mutex::default(),
            sites: Mutex::default(),
            restarts: Mutex::default(),
        }
    }

    fn app_lock(&self, app: &AppName) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(app.clone()).or_default().clone()
    }

    /// Serializes everything that changes one app's containers.
    pub async fn lock(&self, app: &AppName) -> OwnedMutexGuard<()> {
        self.app_lock(app).lock_owned().await
    }

    pub fn try_lock(&self, app: &AppName) -> Option<OwnedMutexGuard<()>> {
        self.app_lock(app).try_lock_owned().ok()
    }

    /// Makes `release` the running release of `app`. The caller holds the app lock.
    pub async fn deploy(
        &self,
        app: &App,
        release: &Release,
        progress: &mpsc::Sender<String>,
    ) -> Result<(), DeployError> {
        let network = network_name(&app.name);
        self.engine
            .ensure_network(&network, &app_labels(&app.name))
            .await?;
        let formation = self.store.formation(app.id).await?;
        let mut started = Vec::new();
        let mut launch_error = None;
        for entry in &formation {
            let Some(command) = release.processes.get(&entry.process) else {
                continue;
            };
            for index in 1..=entry.quantity {
                let spec = process_spec(
                    app,
                    release,
                    &entry.process,
                    index,
                    command,
                    entry.memory_bytes,
                );
                say(
                    progress,
                    format!("       Starting {}.{index}", entry.process),
                )
                .await;
                match self.start_fresh(&spec).await {
                    Ok(id) => started.push(Started {
                        id,
                        process: entry.process.clone(),
                        index,
                    }),
                    Err(error) => {
                        launch_error = Some(error);
                        break;
                    }
                }
            }
        }
        let checks = join_all(started.iter().map(|s| self.wait_healthy(s, &network))).await;
        let failure = launch_error
            .map(|e| e.to_string())
            .or_else(|| checks.iter().find_map(|c| c.as_ref().err().cloned()));
        if let Some(reason) = failure {
            for container in &started {
                self.engine.remove_container(&container.id).await.ok();
            }
            let reason = format!("automatic rollback: {reason}");
            self.store
                .set_release_status(release.id, ReleaseStatus::Failed, Some(&reason))
                .await?;
            tracing::warn!(app = %app.name, version = %release.version, %reason, "release failed");
            return Err(DeployError::Unhealthy(reason));
        }
        let backends = started
            .iter()
            .zip(&checks)
            .filter_map(|(s, check)| match check {
                Ok(Some(addr)) => Some(Backend {
                    addr: *addr,
                    dyno: format!("{}.{}", s.process, s.index),
                    release: release.version.to_string(),
                }),
                _ => None,
            })
            .collect();
        self.store.promote_release(app.id, release.id).await?;
        self.set_backends(&app.name, backends);
        tracing::info!(app = %app.name, version = %release.version, "release live");
        self.retire_others(&app.name, &release.version.to_string())
            .await?;
        Ok(())
    }

    /// Starts a container, first removing any leftover of the same name.
    async fn start_fresh(&self, spec: &ContainerSpec) -> Result<String, DeployError> {
        self.engine.remove_container(&spec.name).await?;
        Ok(slipway_engine::run(self.engine.as_ref(), spec).await?)
    }

    /// Waits for a new container to be healthy; for web, returns the address to route to.
    async fn wait_healthy(
        &self,
        started: &Started,
        network: &str,
    ) -> Result<Option<SocketAddr>, String> {
        let dyno = format!("{}.{}", started.process, started.index);
        if started.process.is_web() {
            let deadline = Instant::now() + WEB_BOOT_TIMEOUT;
            loop {
                let state = self
                    .engine
                    .inspect(&started.id)
                    .await
                    .map_err(|e| e.to_string())?;
                if !state.running {
                    return Err(self.exited_reason(&dyno, &state).await);
                }
                if let Some(ip) = state.addresses.get(network) {
                    let addr = SocketAddr::new(*ip, WEB_PORT);
                    let connect = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::net::TcpStream::connect(addr),
                    );
                    if matches!(connect.await, Ok(Ok(_))) {
                        return self
                            .still_running_after(started, &dyno, WEB_SETTLE)
                            .await
                            .map(|()| Some(addr));
                    }
                }
                if Instant::now() >= deadline {
                    return Err(format!(
                        "{dyno} did not listen on $PORT ({WEB_PORT}) within {} s: bind your web process to 0.0.0.0:$PORT",
                        WEB_BOOT_TIMEOUT.as_secs()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        } else {
            self.still_running_after(started, &dyno, WORKER_SETTLE)
                .await
                .map(|()| None)
        }
    }

    async fn still_running_after(
        &self,
        started: &Started,
        dyno: &str,
        settle: Duration,
    ) -> Result<(), String> {
        tokio::time::sleep(settle).await;
        let state = self
            .engine
            .inspect(&started.id)
            .await
            .map_err(|e| e.to_string())?;
        if state.running {
            Ok(())
        } else {
            Err(self.exited_reason(dyno, &state).await)
        }
    }

    /// Says why a container stopped, with the last lines it printed.
    async fn exited_reason(&self, dyno: &str, state: &ContainerState) -> String {
        let mut output = Vec::new();
        let mut stream = self.engine.output(&state.id, None);
        let collect = async {
            while let Some(Ok(chunk)) = stream.next().await {
                output.extend_from_slice(&chunk.bytes);
            }
        };
        tokio::time::timeout(Duration::from_secs(3), collect)
            .await
            .ok();
        let text = String::from_utf8_lossy(&output);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        let code = state
            .exit_code
            .map_or_else(|| "?".to_owned(), |c| c.to_string());
        let mut reason = format!("{dyno} exited with status {code} while starting");
        if !tail.is_empty() {
            reason.push_str(": ");
            reason.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
        }
        reason
    }

    /// Drains and removes the app's process containers that do not belong to `keep_version`.
    async fn retire_others(&self, app: &AppName, keep_version: &str) -> Result<(), DeployError> {
        let containers = self
            .engine
            .list_containers(&[(labels::APP, app.as_str()), (labels::ROLE, "process")])
            .await?;
        let old: Vec<_> = containers
            .into_iter()
            .filter(|c| c.labels.get(labels::RELEASE).map(String::as_str) != Some(keep_version))
            .collect();
        let network = network_name(app);
        join_all(old.iter().map(|container| async {
            if let Some(ip) = container.addresses.get(&network) {
                self.drain(SocketAddr::new(*ip, WEB_PORT)).await;
            }
            self.engine.stop(&container.id, STOP_GRACE).await.ok();
            self.engine.remove_container(&container.id).await.ok();
        }))
        .await;
        Ok(())
    }

    /// Waits (bounded) until the router has no request in flight to `addr`.
    async fn drain(&self, addr: SocketAddr) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.router.in_flight(addr) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn set_backends(&self, app: &AppName, backends: Vec<Backend>) {
        let snapshot = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites.insert(app.clone(), backends);
            self.snapshot(&sites)
        };
        self.router.update(&snapshot);
    }

    pub fn forget_app(&self, app: &AppName) {
        let snapshot = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites.remove(app);
            self.snapshot(&sites)
        };
        self.router.update(&snapshot);
    }

    fn snapshot(&self, sites: &BTreeMap<AppName, Vec<Backend>>) -> RouteSnapshot {
        RouteSnapshot {
            sites: sites
                .iter()
                .map(|(app, backends)| SiteRoutes {
                    app: app.clone(),
                    hosts: vec![format!("{app}.{}", self.apps_domain)],
                    backends: backends.clone(),
                })
                .collect(),
        }
    }

    /// Removes every container, the network and the build cache of an app.
    pub async fn destroy(&self, app: &AppName) -> Result<(), DeployError> {
        let containers = self
            .engine
            .list_containers(&[(labels::APP, app.as_str())])
            .await?;
        self.forget_app(app);
        for container in containers {
            self.engine.remove_container(&container.id).await?;
        }
        self.engine.remove_network(&network_name(app)).await?;
        self.engine
            .remove_volume(&format!("slipway-cache-{app}"))
            .await?;
        for image in self.engine.list_images(&format!("slipway/{app}")).await? {
            self.engine.remove_image(&image).await?;
        }
        Ok(())
    }
}

async fn say(progress: &mpsc::Sender<String>, line: String) {
    progress.send(line).await.ok();
}

pub fn network_name(app: &AppName) -> String {
    format!("slipway-{app}")
}

pub fn app_labels(app: &AppName) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::APP.to_owned(), app.to_string())])
}

/// The container that runs process `<process>.<index>` of a release.
pub fn process_spec(
    app: &App,
    release: &Release,
    process: &ProcessType,
    index: u32,
    command: &str,
    memory_bytes: Option<i64>,
) -> ContainerSpec {
    let version = release.version.to_string();
    let mut env: BTreeMap<String, String> = release
        .config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_owned()))
        .collect();
    env.insert("DYNO".into(), format!("{process}.{index}"));
    env.insert("SLIPWAY_APP".into(), app.name.to_string());
    env.insert("SLIPWAY_RELEASE".into(), version.clone());
    env.insert("HOME".into(), "/app".into());
    if process.is_web() {
        env.insert("PORT".into(), WEB_PORT.to_string());
    }
    let mut container_labels = app_labels(&app.name);
    container_labels.insert(labels::RELEASE.into(), version.clone());
    container_labels.insert(labels::PROCESS.into(), process.to_string());
    container_labels.insert(labels::INDEX.into(), index.to_string());
    container_labels.insert(labels::ROLE.into(), "process".into());
    ContainerSpec {
        name: format!("slipway-{}-{process}-{index}-{version}", app.name),
        image: release.image.clone(),
        cmd: slipway_builder::launch_command(command),
        env,
        labels: container_labels,
        network: Some(network_name(&app.name)),
        user: Some("app".into()),
        working_dir: Some("/app".into()),
        memory_bytes: Some(memory_bytes.unwrap_or(DEFAULT_MEMORY)),
        ..ContainerSpec::default()
    }
}
