//! Turns "this release should be running" into containers, and containers into routes.
//!
//! A deploy runs the release phase, then replaces each process type's containers one at a
//! time (`rollout.rs`): start new, wait healthy (`health.rs`), put it in the router, take the
//! old one out, drain it, stop it. If a new container fails, every new container is removed
//! and the stopped old ones start again: the old release keeps serving. The store's current
//! release changes only once the whole rollout has succeeded, so a server that dies mid-rollout
//! comes back, reconciles (`reconcile.rs`) against the old release, and undoes the rest.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_engine::{ContainerEngine, Swarm};

use crate::alerts::{Notice, Notifier, ReleaseEvent};
use crate::logs::LogHub;
use slipway_router::Router;
use slipway_store::{App, Release, Store};
use slipway_types::api::{ProcessInfo, ProcessState, ReleaseStatus};
use slipway_types::{
    AppName, Backend, ContainerSpec, ProcessType, RateLimit, RouteSnapshot, SiteRoutes, labels,
};
use tokio::sync::{OwnedMutexGuard, mpsc};
use tokio::time::Instant;

mod canary;
mod health;
mod reconcile;
mod rollout;
mod swarm;

pub use canary::CHECK_EVERY as CANARY_CHECK_EVERY;
use rollout::Side;

/// The port a web process listens on inside its container (`$PORT`), unless its release
/// names another (`app.json` `port`, or a Dockerfile's EXPOSE).
pub const WEB_PORT: u16 = 5000;
/// Label of a web container: the port it listens on, for finding it again after a restart.
const PORT_LABEL: &str = "slipway.port";
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_MEMORY: i64 = 512 * 1024 * 1024;
/// Images kept (besides the running one) for rollbacks: those of the newest releases, counting
/// each image once, since config changes and rollbacks reuse their release's image.
const KEEP_IMAGES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The change did not go live; what was running keeps running.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] slipway_store::StoreError),
}

pub struct DeployerConfig {
    /// This installation's id, labelled on every container it runs.
    pub instance: String,
    /// Where process output and platform events go.
    pub logs: Arc<LogHub>,
    pub apps_domain: String,
    /// How long a `release:` command may run.
    pub release_timeout: Duration,
    /// Where release outcomes and crashes are reported, for webhooks and alerts.
    pub notifier: Notifier,
    /// With `--runtime swarm`, the swarm that runs each process type as a service; `None`
    /// runs containers on `engine` (`--runtime docker`).
    pub swarm: Option<Arc<dyn Swarm>>,
    /// With `swarm`, `HOST[:PORT][/PREFIX]` that release images are pushed to, so tasks on
    /// any node can pull them; `None` runs this node's local images.
    pub registry: Option<String>,
}

pub struct Deployer {
    engine: Arc<dyn ContainerEngine>,
    store: Store,
    router: Arc<Router>,
    logs: Arc<LogHub>,
    instance: String,
    apps_domain: String,
    release_timeout: Duration,
    /// Client for app.json HTTP checks: containers only, never a proxy.
    http: reqwest::Client,
    locks: Mutex<HashMap<AppName, Arc<tokio::sync::Mutex<()>>>>,
    /// Healthy web backends per app; every app in the store has an entry.
    sites: Mutex<BTreeMap<AppName, Vec<Backend>>>,
    /// Custom domains per app, routed beside `<app>.<apps-domain>`.
    custom_hosts: Mutex<BTreeMap<AppName, Vec<String>>>,
    /// Apps whose requests get the maintenance page.
    maintenance: Mutex<std::collections::BTreeSet<AppName>>,
    /// Crash restarts by slot (`app/web.1`): attempts so far and when the next may happen.
    restarts: Mutex<HashMap<String, (u32, Instant)>>,
    /// Canaries running now, by app.
    canaries: Mutex<BTreeMap<AppName, canary::Canary>>,
    /// Rate limits at the router, by app.
    rate_limits: Mutex<BTreeMap<AppName, RateLimit>>,
    notifier: Notifier,
    /// `Some` with `--runtime swarm` (see `swarm.rs`).
    swarm: Option<Arc<dyn Swarm>>,
    /// Where Swarm release images are pushed (`--registry`).
    registry: Option<String>,
    /// Digests of the images this process pushed, by registry reference: each is pushed once.
    pushed: swarm::PushedImages,
}

impl Deployer {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        store: Store,
        router: Arc<Router>,
        config: DeployerConfig,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            engine,
            store,
            router,
            logs: config.logs,
            instance: config.instance,
            apps_domain: config.apps_domain,
            release_timeout: config.release_timeout,
            notifier: config.notifier,
            swarm: config.swarm,
            registry: config.registry,
            pushed: swarm::PushedImages::default(),
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            locks: Mutex::default(),
            sites: Mutex::default(),
            custom_hosts: Mutex::default(),
            maintenance: Mutex::default(),
            restarts: Mutex::default(),
            canaries: Mutex::default(),
            rate_limits: Mutex::default(),
        })
    }

    pub fn engine(&self) -> &Arc<dyn ContainerEngine> {
        &self.engine
    }

    /// Crash restarts of each slot (`app/web.1`) in its current streak; the count starts over
    /// once the process has been stable. The metrics series counts restarts from its growth.
    pub fn restart_attempts(&self) -> HashMap<String, u32> {
        let restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        restarts
            .iter()
            .map(|(slot, (attempts, _))| (slot.clone(), *attempts))
            .collect()
    }

    /// Labels of everything this installation runs for an app.
    pub fn app_labels(&self, app: &AppName) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::APP.to_owned(), app.to_string()),
            (labels::INSTANCE.to_owned(), self.instance.clone()),
        ])
    }

    /// The app's containers (of one role) that this installation owns.
    async fn app_containers(
        &self,
        app: &AppName,
        role: Option<&str>,
    ) -> Result<Vec<slipway_engine::ContainerState>, slipway_engine::EngineError> {
        let mut filter = vec![
            (labels::APP, app.as_str()),
            (labels::INSTANCE, self.instance.as_str()),
        ];
        if let Some(role) = role {
            filter.push((labels::ROLE, role));
        }
        self.engine.list_containers(&filter).await
    }

    /// How many process containers of the app are running, and the memory their formation
    /// reserves (limits × scale).
    pub async fn usage(&self, app: &App) -> anyhow::Result<(u32, u64)> {
        let running = match &self.swarm {
            Some(swarm) => self.serving_tasks(swarm, &app.name).await?,
            None => self
                .app_containers(&app.name, Some("process"))
                .await?
                .iter()
                .filter(|container| container.running)
                .count(),
        };
        let memory: i64 = self
            .store
            .formation(app.id)
            .await?
            .iter()
            .map(|entry| i64::from(entry.quantity) * entry.memory_bytes.unwrap_or(DEFAULT_MEMORY))
            .sum();
        Ok((
            u32::try_from(running).unwrap_or(u32::MAX),
            u64::try_from(memory).unwrap_or_default(),
        ))
    }

    /// The container that runs process `<process>.<index>` of a release. Names carry a
    /// random suffix: a restart or a resize starts a new container in the same slot beside the
    /// old one.
    fn process_spec(
        &self,
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
        let mut container_labels = self.app_labels(&app.name);
        if process.is_web() {
            let port = web_port(release).to_string();
            env.insert("PORT".into(), port.clone());
            container_labels.insert(PORT_LABEL.into(), port);
        }
        container_labels.insert(labels::RELEASE.into(), version.clone());
        container_labels.insert(labels::PROCESS.into(), process.to_string());
        container_labels.insert(labels::INDEX.into(), index.to_string());
        container_labels.insert(labels::ROLE.into(), "process".into());
        let suffix: u32 = rand::random();
        ContainerSpec {
            name: format!(
                "slipway-{}-{process}-{index}-{version}-{suffix:08x}",
                app.name
            ),
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

    /// Reports to the alerts worker (webhooks, alerts); never waits.
    pub fn notify(&self, notice: Notice) {
        self.notifier.send(notice);
    }

    /// Reports what became of a release, for the app's webhooks.
    pub fn notify_release(
        &self,
        app: &App,
        release: &Release,
        event: ReleaseEvent,
        reason: Option<String>,
    ) {
        self.notify(Notice::Release {
            app: app.name.clone(),
            event,
            version: release.version.to_string(),
            description: release.description.clone(),
            reason,
        });
    }

    /// A platform event in the app's log (`slipway[web.1]: …`).
    fn event(&self, app: &AppName, process: &str, text: impl Into<String>) {
        self.logs.platform(app, process, text);
    }

    /// Sends a container's output to the app's log; `since` skips what it printed before.
    fn follow(&self, app: &AppName, dyno: &str, id: &str, since: Option<i64>) {
        self.logs.follow_container(
            self.engine.clone(),
            app.clone(),
            dyno.to_owned(),
            id.to_owned(),
            since,
        );
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

    /// Makes `release` the running release of `app`. The caller holds the app lock. On
    /// failure the release is marked failed and the previous one keeps serving.
    pub async fn deploy(
        &self,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let started = std::time::Instant::now();
        let outcome = self.rollout_release(app, release, progress).await;
        crate::metrics::deploy(&app.name, outcome.is_ok(), started.elapsed());
        outcome
    }

    async fn rollout_release(
        &self,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        self.event(
            &app.name,
            "release",
            format!("Deploying {} ({})", release.version, release.description),
        );
        if let Some(swarm) = &self.swarm {
            let rolled = rollout::Rolled {
                retired: Vec::new(),
                leftovers: Vec::new(),
            };
            return match self.swarm_rollout(swarm, app, release, progress).await {
                Ok(()) => self.go_live(app, release, rolled).await,
                Err(reason) => self.fail_release(app, release, reason).await,
            };
        }
        // The "how does the next release go out" decision, shared by pushes and promotions.
        let superseded = canary::Verdict::Fail(format!("canary superseded by {}", release.version));
        self.finish_canary_locked(app, Some(superseded)).await?;
        let canary = self.canary_policy_for(app, release).await?;
        let outcome = match (self.release_phase(app, release, progress).await, canary) {
            (Ok(()), Some(policy)) => self
                .start_canary(app, release, policy, progress)
                .await
                .map(|()| None)
                .map_err(|reason| format!("canary failed to start: {reason}")),
            (Ok(()), None) => self
                .roll(app, release, None, progress)
                .await
                .map(Some)
                .map_err(|reason| format!("automatic rollback: {reason}")),
            (Err(reason), _) => Err(format!("release phase failed: {reason}")),
        };
        let rolled = match outcome {
            Ok(Some(rolled)) => rolled,
            Ok(None) => return Ok(()),
            Err(reason) => return self.fail_release(app, release, reason).await,
        };
        self.go_live(app, release, rolled).await
    }

    /// Marks a release failed and says why; what was running keeps running.
    async fn fail_release(
        &self,
        app: &App,
        release: &Release,
        reason: String,
    ) -> Result<(), DeployError> {
        self.store
            .set_release_status(release.id, ReleaseStatus::Failed, Some(&reason))
            .await?;
        tracing::warn!(app = %app.name, version = %release.version, %reason, "release failed");
        self.event(
            &app.name,
            "release",
            format!("Release {} failed: {reason}", release.version),
        );
        self.notify_release(app, release, ReleaseEvent::Failed, Some(reason.clone()));
        Err(DeployError::Failed(reason))
    }

    /// Makes a rolled-out release the current one and cleans up what it replaced.
    async fn go_live(
        &self,
        app: &App,
        release: &Release,
        rolled: rollout::Rolled,
    ) -> Result<(), DeployError> {
        self.store.promote_release(app.id, release.id).await?;
        tracing::info!(app = %app.name, version = %release.version, "release live");
        self.event(
            &app.name,
            "release",
            format!("Release {} is live", release.version),
        );
        self.notify_release(app, release, ReleaseEvent::Succeeded, None);
        if let Some(swarm) = &self.swarm
            && let Err(error) = self.remove_stale_services(swarm, app, release).await
        {
            tracing::warn!(app = %app.name, %error, "removing services of gone process types failed");
        }
        for old in &rolled.leftovers {
            self.discard(app, old).await;
        }
        for old in &rolled.retired {
            self.engine.remove_container(&old.id).await.ok();
        }
        self.prune_images(app).await;
        Ok(())
    }

    /// Replaces the running containers of one type (or all) with fresh ones of the same
    /// release, one at a time. The caller holds the app lock.
    pub async fn restart(
        &self,
        app: &App,
        only: Option<&ProcessType>,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let Some(release) = self.store.current_release(app.id).await? else {
            return Ok(());
        };
        if let Some(swarm) = &self.swarm {
            let restart = self.swarm_restart(swarm, app, &release, only, progress);
            return self
                .while_refreshing(swarm, &app.name, restart)
                .await
                .map_err(DeployError::Failed);
        }
        let rolled = self
            .roll(app, &release, only, progress)
            .await
            .map_err(DeployError::Failed)?;
        for old in rolled.retired.iter().chain(&rolled.leftovers) {
            self.discard(app, old).await;
        }
        Ok(())
    }

    /// Sets a process type's quantity and memory and converges to it without a release: a
    /// new size replaces the containers one at a time, more containers start (each healthy
    /// before it gets traffic), fewer are drained and stopped. If a new container fails, the
    /// formation is put back. The caller holds the app lock.
    pub async fn scale(
        &self,
        app: &App,
        process: &ProcessType,
        quantity: u32,
        memory_bytes: Option<i64>,
        progress: &Progress,
    ) -> Result<(), DeployError> {
        let formation = self.store.formation(app.id).await?;
        let before = formation.iter().find(|e| e.process == *process).cloned();
        self.store
            .set_formation(app.id, process, quantity, memory_bytes)
            .await?;
        let Some(release) = self.store.current_release(app.id).await? else {
            return Ok(());
        };
        let outcome = self
            .converge(app, &release, process, before.as_ref(), progress)
            .await;
        if let Err(reason) = outcome {
            if let Some(before) = before {
                self.store
                    .set_formation(app.id, process, before.quantity, before.memory_bytes)
                    .await?;
            }
            return Err(DeployError::Failed(reason));
        }
        Ok(())
    }

    async fn converge(
        &self,
        app: &App,
        release: &Release,
        process: &ProcessType,
        before: Option<&slipway_store::FormationEntry>,
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
        if let Some(swarm) = &self.swarm {
            let converge = self.swarm_converge(swarm, app, release, process, before, progress);
            return self.while_refreshing(swarm, &app.name, converge).await;
        }
        let resized = before.is_some_and(|b| b.memory_bytes != entry.memory_bytes);
        if resized {
            let rolled = self.roll(app, release, Some(process), progress).await?;
            for old in rolled.retired.iter().chain(&rolled.leftovers) {
                self.discard(app, old).await;
            }
            return Ok(());
        }
        if !release.processes.contains_key(process) {
            return Ok(());
        }
        let slots = self.slots(app).await?;
        let mut started = Vec::new();
        for index in 1..=entry.quantity {
            if slots.contains_key(&(process.clone(), index)) {
                continue;
            }
            match self
                .start_process(app, release, &entry, index, Side::Live, progress)
                .await
            {
                Ok(proc) => started.push(proc),
                Err(reason) => {
                    for proc in &started {
                        self.discard(app, proc).await;
                    }
                    return Err(reason);
                }
            }
        }
        for ((slot_process, index), procs) in slots {
            if slot_process == *process && index > entry.quantity {
                for proc in procs {
                    progress
                        .say(format!("       Stopping {}", proc.dyno()))
                        .await;
                    self.discard(app, &proc).await;
                }
            }
        }
        Ok(())
    }

    /// Whether an image is still there (rollback targets may have been pruned).
    pub async fn has_image(&self, image: &str) -> bool {
        self.engine.image_exists(image).await.unwrap_or(false)
    }

    /// What runs: every process container of the app, with its crash restarts.
    pub async fn processes(
        &self,
        app: &App,
    ) -> Result<Vec<ProcessInfo>, slipway_engine::EngineError> {
        if let Some(swarm) = &self.swarm {
            return self.swarm_processes(swarm, app).await;
        }
        let containers = self.app_containers(&app.name, Some("process")).await?;
        let canaries = self.canary_processes(&app.name).await;
        let restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
        let mut processes: Vec<ProcessInfo> = containers
            .iter()
            .filter_map(|c| {
                let process = c.labels.get(labels::PROCESS)?;
                let index = c.labels.get(labels::INDEX)?;
                let dyno = format!("{process}.{index}");
                let slot = format!("{}/{dyno}", app.name);
                Some(ProcessInfo {
                    restarts: restarts.get(&slot).map_or(0, |(attempts, _)| *attempts),
                    canary: false,
                    release: c.labels.get(labels::RELEASE).cloned().unwrap_or_default(),
                    state: if c.running {
                        ProcessState::Up
                    } else {
                        ProcessState::Crashed
                    },
                    started_at: c.started_at.clone(),
                    exit_code: c.exit_code,
                    dyno,
                })
            })
            .collect();
        processes.extend(canaries);
        processes.sort_by(|a, b| (&a.dyno, a.canary).cmp(&(&b.dyno, b.canary)));
        Ok(processes)
    }

    /// Removes the app's images except the running one and the newest five.
    async fn prune_images(&self, app: &App) {
        let releases = match self.store.releases(app.id).await {
            Ok(releases) => releases,
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "listing releases for pruning failed");
                return;
            }
        };
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        for release in &releases {
            if keep.len() == KEEP_IMAGES {
                break;
            }
            keep.insert(&release.image);
        }
        if let Some(current) = releases.iter().find(|r| Some(r.id) == app.current_release) {
            keep.insert(&current.image);
        }
        let running = match &self.swarm {
            Some(swarm) => self.service_images(swarm, &app.name).await,
            None => Vec::new(),
        };
        keep.extend(running.iter().map(String::as_str));
        let images = match self
            .engine
            .list_images(&format!("slipway/{}", app.name))
            .await
        {
            Ok(images) => images,
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "listing images for pruning failed");
                return;
            }
        };
        for image in images.iter().filter(|i| !keep.contains(i.as_str())) {
            // The name it was pushed under holds the same layers.
            if let Some(registry) = &self.registry {
                let remote = format!("{registry}/{image}");
                if self.engine.remove_image(&remote).await.is_ok() {
                    swarm::forget_pushed(&self.pushed, &remote);
                }
            }
            match self.engine.remove_image(image).await {
                Ok(()) => tracing::info!(app = %app.name, %image, "pruned image"),
                Err(error) => tracing::debug!(app = %app.name, %image, %error, "image kept"),
            }
        }
    }

    /// Waits (bounded) until the router has no request in flight to `addr`.
    async fn drain(&self, addr: SocketAddr) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while self.router.in_flight(addr) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn update_sites(&self, change: impl FnOnce(&mut BTreeMap<AppName, Vec<Backend>>)) {
        let snapshot = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut sites);
            self.snapshot(&sites)
        };
        self.router.update(&snapshot);
    }

    pub fn set_backends(&self, app: &AppName, backends: Vec<Backend>) {
        self.update_sites(|sites| {
            sites.insert(app.clone(), backends);
        });
    }

    fn add_backend(&self, app: &AppName, backend: Backend) {
        self.update_sites(|sites| {
            let backends = sites.entry(app.clone()).or_default();
            backends.retain(|b| b.addr != backend.addr);
            backends.push(backend);
        });
    }

    fn remove_backend(&self, app: &AppName, addr: SocketAddr) {
        self.update_sites(|sites| {
            if let Some(backends) = sites.get_mut(app) {
                backends.retain(|b| b.addr != addr);
            }
        });
    }

    /// Replaces every app's custom domains in the route table.
    /// Replaces the set of apps in maintenance mode in the route table.
    pub fn set_maintenance(&self, apps: impl IntoIterator<Item = AppName>) {
        *self.maintenance.lock().unwrap_or_else(|e| e.into_inner()) = apps.into_iter().collect();
        self.update_sites(|_| {});
    }

    /// Replaces every app's rate limit in the route table.
    pub fn set_rate_limits(&self, limits: impl IntoIterator<Item = (AppName, RateLimit)>) {
        *self.rate_limits.lock().unwrap_or_else(|e| e.into_inner()) = limits.into_iter().collect();
        self.update_sites(|_| {});
    }

    pub fn set_custom_hosts(&self, hosts: BTreeMap<AppName, Vec<String>>) {
        *self.custom_hosts.lock().unwrap_or_else(|e| e.into_inner()) = hosts;
        self.update_sites(|_| {});
    }

    pub fn forget_app(&self, app: &AppName) {
        self.update_sites(|sites| {
            sites.remove(app);
        });
    }

    fn snapshot(&self, sites: &BTreeMap<AppName, Vec<Backend>>) -> RouteSnapshot {
        let custom_hosts = self.custom_hosts.lock().unwrap_or_else(|e| e.into_inner());
        let maintenance = self.maintenance.lock().unwrap_or_else(|e| e.into_inner());
        let canaries = self.canaries.lock().unwrap_or_else(|e| e.into_inner());
        let rate_limits = self.rate_limits.lock().unwrap_or_else(|e| e.into_inner());
        RouteSnapshot {
            sites: sites
                .iter()
                .map(|(app, backends)| SiteRoutes {
                    app: app.clone(),
                    hosts: std::iter::once(format!("{app}.{}", self.apps_domain))
                        .chain(custom_hosts.get(app).into_iter().flatten().cloned())
                        .collect(),
                    backends: backends.clone(),
                    maintenance: maintenance.contains(app),
                    canary: canaries.get(app).and_then(canary::Canary::routes),
                    rate_limit: rate_limits.get(app).copied(),
                })
                .collect(),
        }
    }

    /// Removes every container, the network, the build cache and the images of an app.
    pub async fn destroy(&self, app: &AppName) -> Result<(), slipway_engine::EngineError> {
        if let Some(swarm) = &self.swarm {
            self.remove_app_services(swarm, app).await?;
        }
        let containers = self.app_containers(app, None).await?;
        self.forget_app(app);
        for container in containers {
            self.engine.remove_container(&container.id).await?;
        }
        self.remove_network(app).await?;
        self.engine
            .remove_volume(&format!("slipway-cache-{app}"))
            .await?;
        for image in self.engine.list_images(&format!("slipway/{app}")).await? {
            self.engine.remove_image(&image).await?;
        }
        if let Some(registry) = &self.registry {
            let repository = format!("{registry}/slipway/{app}");
            for image in self.engine.list_images(&repository).await? {
                self.engine.remove_image(&image).await?;
                swarm::forget_pushed(&self.pushed, &image);
            }
        }
        Ok(())
    }
}

impl Deployer {
    /// Removes the app's network. A swarm releases an overlay network's endpoints a moment
    /// after the tasks on it stopped, so that is retried (bounded).
    async fn remove_network(&self, app: &AppName) -> Result<(), slipway_engine::EngineError> {
        let mut attempts = if self.swarm.is_some() { 20 } else { 1 };
        loop {
            attempts -= 1;
            match self.engine.remove_network(&network_name(app)).await {
                Err(_) if attempts > 0 => tokio::time::sleep(Duration::from_millis(500)).await,
                outcome => return outcome,
            }
        }
    }
}

/// Where a deployer operation reports its steps: the pusher's terminal, or nowhere for API
/// calls (their outcome is the answer, and the steps are in the app's log either way).
pub struct Progress(Option<mpsc::Sender<String>>);

impl Progress {
    pub fn to(lines: mpsc::Sender<String>) -> Self {
        Self(Some(lines))
    }

    pub fn none() -> Self {
        Self(None)
    }

    async fn say(&self, line: String) {
        if let Some(lines) = &self.0 {
            lines.send(line).await.ok();
        }
    }
}

pub fn network_name(app: &AppName) -> String {
    format!("slipway-{app}")
}

/// The port the release's web processes listen on.
fn web_port(release: &Release) -> u16 {
    release.app_json.port.unwrap_or(WEB_PORT)
}

/// The port a web container listens on, as labelled when it was started; containers from
/// before the label existed listen on `WEB_PORT`.
fn container_port(labels: &BTreeMap<String, String>) -> u16 {
    labels
        .get(PORT_LABEL)
        .and_then(|port| port.parse().ok())
        .unwrap_or(WEB_PORT)
}

#[cfg(test)]
mod tests {
    use slipway_engine::FakeEngine;
    use slipway_router::RouterConfig;
    use slipway_store::{NewRelease, Role};

    use super::*;

    async fn deployer(
        engine: Arc<FakeEngine>,
        store: Store,
        logs_dir: &std::path::Path,
    ) -> Deployer {
        Deployer::new(
            engine,
            store,
            Router::new(RouterConfig::default()),
            DeployerConfig {
                instance: "test".into(),
                logs: LogHub::open(logs_dir.to_path_buf(), 100).unwrap(),
                apps_domain: "localhost".into(),
                release_timeout: Duration::from_secs(60),
                notifier: Notifier::new().0,
                swarm: None,
                registry: None,
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn pruning_keeps_the_five_newest_images_and_the_running_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().await.unwrap();
        let engine = Arc::new(FakeEngine::new());
        let owner = store.create_user("admin", Role::Admin).await.unwrap();
        let app = store
            .create_app(&"prune".parse().unwrap(), owner.id)
            .await
            .unwrap();
        // Seven builds, each followed by a config release sharing its image.
        let mut ids = Vec::new();
        for build in 0..7u64 {
            let image = format!("slipway/prune:1.{build}.0");
            engine.add_image(&image);
            for patch in 0..2u64 {
                let release = store
                    .create_release(
                        NewRelease {
                            app_id: app.id,
                            version: semver::Version::new(1, build, patch),
                            image: image.clone(),
                            config: Default::default(),
                            processes: Default::default(),
                            app_json: Default::default(),
                            commit: None,
                            description: "test".into(),
                            created_by: "admin".into(),
                        },
                        None,
                    )
                    .await
                    .unwrap();
                ids.push(release.id);
            }
        }
        // The running release is an old one (rolled back to, say).
        store.promote_release(app.id, ids[1]).await.unwrap();
        let app = store.app(&app.name).await.unwrap().unwrap();
        let deployer = deployer(engine.clone(), store, dir.path()).await;

        deployer.prune_images(&app).await;

        let mut left = engine.images();
        left.retain(|i| i.starts_with("slipway/prune"));
        left.sort();
        assert_eq!(
            left,
            [
                "slipway/prune:1.0.0",
                "slipway/prune:1.2.0",
                "slipway/prune:1.3.0",
                "slipway/prune:1.4.0",
                "slipway/prune:1.5.0",
                "slipway/prune:1.6.0",
            ]
        );
    }

    #[tokio::test]
    async fn web_containers_listen_on_the_release_port_and_are_labelled_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().await.unwrap();
        let owner = store.create_user("admin", Role::Admin).await.unwrap();
        let app = store
            .create_app(&"ported".parse().unwrap(), owner.id)
            .await
            .unwrap();
        let mut releases = Vec::new();
        for (minor, port) in [(0, None), (1, Some(8080))] {
            let release = store
                .create_release(
                    NewRelease {
                        app_id: app.id,
                        version: semver::Version::new(1, minor, 0),
                        image: "slipway/ported:1.0.0".into(),
                        config: Default::default(),
                        processes: Default::default(),
                        app_json: slipway_types::AppJson {
                            port,
                            ..Default::default()
                        },
                        commit: None,
                        description: "test".into(),
                        created_by: "admin".into(),
                    },
                    None,
                )
                .await
                .unwrap();
            releases.push(release);
        }
        let deployer = deployer(Arc::new(FakeEngine::new()), store, dir.path()).await;
        let web = ProcessType::web();
        let default = deployer.process_spec(&app, &releases[0], &web, 1, "x", None);
        assert_eq!(default.env["PORT"], "5000");
        assert_eq!(container_port(&default.labels), 5000);
        let exposed = deployer.process_spec(&app, &releases[1], &web, 1, "x", None);
        assert_eq!(exposed.env["PORT"], "8080");
        assert_eq!(container_port(&exposed.labels), 8080);
        let worker = "worker".parse().unwrap();
        let worker = deployer.process_spec(&app, &releases[1], &worker, 1, "x", None);
        assert!(!worker.env.contains_key("PORT"));
        assert!(!worker.labels.contains_key(PORT_LABEL));
        assert_eq!(container_port(&BTreeMap::new()), WEB_PORT);
    }
}
