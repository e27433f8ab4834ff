//! The reconciler: makes the containers match the store. At start it adopts the containers
//! that are already running (a server restart never restarts apps); periodically it restarts
//! crashed processes with back-off, removes leftovers and re-derives the routes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use slipway_engine::ContainerState;
use slipway_store::App;
use slipway_types::{Backend, ProcessType, labels};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::{DeployError, Deployer, STOP_GRACE, container_port, network_name};

/// A container that has run this long without crashing has its back-off forgiven.
const STABLE_AFTER: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a probe of a web container's port may take (see `listening_addr`).
const LISTEN_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

impl Deployer {
    /// Reconciles every app, then removes containers of apps the store no longer has.
    pub async fn reconcile_all(&self) -> Result<(), DeployError> {
        if let Some(swarm) = &self.swarm {
            return self.swarm_reconcile_all(swarm).await;
        }
        let apps = self.store.apps().await?;
        for app in &apps {
            if let Err(error) = self.reconcile_app(app).await {
                tracing::warn!(app = %app.name, %error, "reconcile failed");
            }
        }
        let known: BTreeSet<&str> = apps.iter().map(|a| a.name.as_str()).collect();
        for container in self
            .engine
            .list_containers(&[
                (labels::ROLE, "process"),
                (labels::INSTANCE, &self.instance),
            ])
            .await
            .map_err(engine_error)?
        {
            let owner = container.labels.get(labels::APP).map(String::as_str);
            if owner.is_some_and(|name| !known.contains(name)) {
                tracing::info!(container = %container.name, "removing container of a deleted app");
                self.engine
                    .remove_container(&container.id)
                    .await
                    .map_err(engine_error)?;
            }
        }
        Ok(())
    }

    /// A follower's reconcile: fills the router from the containers the leader runs, changing
    /// nothing. Every server routes, only the leader converges containers; the follower's table
    /// trails the leader's by at most one pass.
    pub async fn follow_routes(&self) -> Result<(), DeployError> {
        if let Some(swarm) = &self.swarm {
            return self.swarm_follow_routes(swarm).await;
        }
        for app in self.store.apps().await? {
            let Some(release) = self.store.current_release(app.id).await? else {
                self.set_backends(&app.name, Vec::new());
                continue;
            };
            let version = release.version.to_string();
            let network = network_name(&app.name);
            let mut backends = Vec::new();
            for container in self
                .app_containers(&app.name, Some("process"))
                .await
                .map_err(engine_error)?
            {
                let Some((process, index)) = slot_of(&container) else {
                    continue;
                };
                if !container.running
                    || container.labels.get(labels::RELEASE) != Some(&version)
                    || process != ProcessType::web().to_string()
                {
                    continue;
                }
                if let Some(addr) = listening_addr(&container, &network).await {
                    backends.push(Backend {
                        addr,
                        id: container.id.clone(),
                        dyno: format!("{process}.{index}"),
                        release: version.clone(),
                    });
                }
            }
            self.set_backends(&app.name, backends);
        }
        self.set_maintenance(self.store.apps_in_maintenance().await?);
        Ok(())
    }

    /// Brings one app's process containers in line with its current release and formation.
    /// Skips the app while a deploy holds its lock: the deploy owns its containers then.
    pub async fn reconcile_app(&self, app: &App) -> Result<(), DeployError> {
        let Some(_guard) = self.try_lock(&app.name) else {
            return Ok(());
        };
        self.clean_orphan_canary(app).await?;
        // A release phase runs only under the app lock, which this holds: any release
        // container is what an interrupted rollout left.
        for leftover in self
            .app_containers(&app.name, Some("release"))
            .await
            .map_err(engine_error)?
        {
            tracing::info!(app = %app.name, container = %leftover.name, "removing an interrupted release command");
            self.engine
                .remove_container(&leftover.id)
                .await
                .map_err(engine_error)?;
        }
        let containers = self
            .app_containers(&app.name, Some("process"))
            .await
            .map_err(engine_error)?;
        let Some(release) = self.store.current_release(app.id).await? else {
            for container in containers {
                tracing::info!(app = %app.name, container = %container.name, "removing a container of an app with no release");
                self.engine
                    .remove_container(&container.id)
                    .await
                    .map_err(engine_error)?;
            }
            self.set_backends(&app.name, Vec::new());
            return Ok(());
        };
        let version = release.version.to_string();
        let mut slots: BTreeMap<(String, u32), ContainerState> = BTreeMap::new();
        for container in containers {
            let slot = slot_of(&container);
            match slot {
                Some(slot)
                    if container.labels.get(labels::RELEASE) == Some(&version)
                        && !slots.contains_key(&slot) =>
                {
                    slots.insert(slot, container);
                }
                _ => {
                    tracing::info!(app = %app.name, container = %container.name, "removing leftover container");
                    self.engine.stop(&container.id, STOP_GRACE).await.ok();
                    self.engine
                        .remove_container(&container.id)
                        .await
                        .map_err(engine_error)?;
                }
            }
        }
        let network = network_name(&app.name);
        let mut backends = Vec::new();
        let mut running = 0;
        let formation = self.store.formation(app.id).await?;
        for entry in &formation {
            let command = release.processes.get(&entry.process);
            let quantity = if command.is_some() { entry.quantity } else { 0 };
            for index in 1..=quantity {
                let slot = (entry.process.to_string(), index);
                match slots.remove(&slot) {
                    Some(container) if container.running => {
                        running += 1;
                        self.forgive_if_stable(app, &entry.process, index, &container);
                        // Adopted after a restart, or its follower ended: only new output.
                        self.follow(
                            &app.name,
                            &format!("{}.{index}", entry.process),
                            &container.id,
                            Some(OffsetDateTime::now_utc().unix_timestamp()),
                        );
                        if entry.process.is_web()
                            && let Some(addr) = listening_addr(&container, &network).await
                        {
                            backends.push(Backend {
                                addr,
                                id: container.id.clone(),
                                dyno: format!("{}.{index}", entry.process),
                                release: version.clone(),
                            });
                        }
                    }
                    existing => {
                        let spec = self.process_spec(
                            app,
                            &release,
                            &entry.process,
                            index,
                            command.map(String::as_str).unwrap_or_default(),
                            entry.memory_bytes,
                        );
                        self.restart_with_backoff(app, &entry.process, index, existing, &spec)
                            .await?;
                    }
                }
            }
        }
        for surplus in slots.into_values() {
            self.engine.stop(&surplus.id, STOP_GRACE).await.ok();
            self.engine
                .remove_container(&surplus.id)
                .await
                .map_err(engine_error)?;
        }
        crate::metrics::running_containers(&app.name, running);
        self.set_backends(&app.name, backends);
        Ok(())
    }

    async fn restart_with_backoff(
        &self,
        app: &App,
        process: &ProcessType,
        index: u32,
        crashed: Option<ContainerState>,
        spec: &slipway_types::ContainerSpec,
    ) -> Result<(), DeployError> {
        let now = Instant::now();
        let attempts = {
            let mut restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
            let (attempts, next) = restarts
                .entry(slot_key(app, process, index))
                .or_insert((0, now));
            if *next > now {
                return Ok(());
            }
            *attempts += 1;
            let delay = Duration::from_secs(1u64 << (*attempts).min(9)).min(MAX_BACKOFF);
            *next = now + delay;
            *attempts
        };
        let dyno = format!("{process}.{index}");
        match &crashed {
            Some(state) => {
                let status = state
                    .exit_code
                    .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
                tracing::warn!(app = %app.name, %dyno, %status, attempt = attempts, "process crashed: restarting");
                self.event(
                    &app.name,
                    &dyno,
                    format!("State changed from up to crashed (exit status {status}); restart {attempts}"),
                );
                self.notify(crate::alerts::Notice::Crashed {
                    app: app.name.clone(),
                });
            }
            None => {
                tracing::info!(app = %app.name, %dyno, "starting missing process");
                self.event(&app.name, &dyno, "Starting missing process");
            }
        }
        if let Some(crashed) = &crashed {
            self.engine
                .remove_container(&crashed.id)
                .await
                .map_err(engine_error)?;
        }
        let id = slipway_engine::run(self.engine.as_ref(), spec)
            .await
            .map_err(engine_error)?;
        self.follow(&app.name, &dyno, &id, None);
        Ok(())
    }

    fn forgive_if_stable(
        &self,
        app: &App,
        process: &ProcessType,
        index: u32,
        container: &ContainerState,
    ) {
        let stable = container
            .started_at
            .as_deref()
            .and_then(|at| OffsetDateTime::parse(at, &Rfc3339).ok())
            .is_some_and(|at| OffsetDateTime::now_utc() - at > STABLE_AFTER);
        if stable {
            let mut restarts = self.restarts.lock().unwrap_or_else(|e| e.into_inner());
            restarts.remove(&slot_key(app, process, index));
        }
    }
}

/// Back-off is kept per slot: each restart is a new container with a new name.
fn slot_key(app: &App, process: &ProcessType, index: u32) -> String {
    format!("{}/{process}.{index}", app.name)
}

fn engine_error(error: slipway_engine::EngineError) -> DeployError {
    DeployError::Failed(error.to_string())
}

fn slot_of(container: &ContainerState) -> Option<(String, u32)> {
    let process = container.labels.get(labels::PROCESS)?;
    let index = container.labels.get(labels::INDEX)?.parse().ok()?;
    Some((process.clone(), index))
}

/// The container's web address, if it accepts connections right now.
async fn listening_addr(container: &ContainerState, network: &str) -> Option<SocketAddr> {
    let addr = SocketAddr::new(
        *container.addresses.get(network)?,
        container_port(&container.labels),
    );
    // A process that is not listening refuses at once; a busy one whose listen queue is full
    // drops the SYN, and the kernel sends it again after a second. The deadline covers that
    // retry, so a loaded app adopted by a restarted server is not left out of the routes.
    let connect = tokio::time::timeout(LISTEN_PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr));
    matches!(connect.await, Ok(Ok(_))).then_some(addr)
}
