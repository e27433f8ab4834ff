//! Replacing containers one at a time: start a new one, wait until it is healthy, put it in
//! the router, take the old one of the same slot out, drain it, stop it. Old containers are
//! only stopped, not removed, until the whole rollout has succeeded, so a failure can start
//! them again and remove every new container: the old release keeps serving.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::ContainerState;
use slipway_store::{App, FormationEntry, Release};
use slipway_types::{Backend, ProcessType, labels};
use tokio::time::Instant;

use crate::logs::lines::LineSplitter;

use super::canary::CANARY_ROLE;
use super::health::Target;
use super::{Deployer, Progress, STOP_GRACE, container_port, network_name, web_port};

/// Which traffic a started container takes: the app's own (it joins the router's backends
/// once healthy) or a canary's share (the canary's route carries it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Live,
    Canary,
}

/// A process container the rollout knows.
#[derive(Debug, Clone)]
pub(super) struct Proc {
    pub id: String,
    pub process: ProcessType,
    pub index: u32,
    pub release: String,
    /// Where the router reaches it (web only).
    pub addr: Option<SocketAddr>,
}

impl Proc {
    fn of(state: &ContainerState, network: &str) -> Option<Self> {
        let process = state.labels.get(labels::PROCESS)?.parse().ok()?;
        let index = state.labels.get(labels::INDEX)?.parse().ok()?;
        let release = state.labels.get(labels::RELEASE)?.clone();
        let addr = state
            .addresses
            .get(network)
            .filter(|_| state.running)
            .map(|ip| SocketAddr::new(*ip, container_port(&state.labels)));
        Some(Self {
            id: state.id.clone(),
            process,
            index,
            release,
            addr,
        })
    }

    pub fn dyno(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }
}

/// What a successful rollout leaves to clean up once the release is promoted.
pub(super) struct Rolled {
    /// Old containers that were replaced: stopped, not yet removed.
    pub retired: Vec<Proc>,
    /// Old containers with no counterpart in the new formation: still serving.
    pub leftovers: Vec<Proc>,
}

/// Formation entries in the order they roll: `web` first, so traffic moves early.
fn rolling_order(formation: &[FormationEntry]) -> Vec<&FormationEntry> {
    let mut entries: Vec<&FormationEntry> = formation.iter().collect();
    entries.sort_by_key(|e| (!e.process.is_web(), e.process.clone()));
    entries
}

impl Deployer {
    /// The app's process containers by slot.
    pub(super) async fn slots(
        &self,
        app: &App,
    ) -> Result<BTreeMap<(ProcessType, u32), Vec<Proc>>, String> {
        let network = network_name(&app.name);
        let containers = self
            .app_containers(&app.name, Some("process"))
            .await
            .map_err(|e| e.to_string())?;
        let mut slots: BTreeMap<(ProcessType, u32), Vec<Proc>> = BTreeMap::new();
        for proc in containers.iter().filter_map(|c| Proc::of(c, &network)) {
            slots
                .entry((proc.process.clone(), proc.index))
                .or_default()
                .push(proc);
        }
        Ok(slots)
    }

    /// Replaces the containers of `only` (every type when `None`) with containers of
    /// `release`, slot by slot. On failure everything is put back as it was.
    pub(super) async fn roll(
        &self,
        app: &App,
        release: &Release,
        only: Option<&ProcessType>,
        progress: &Progress,
    ) -> Result<Rolled, String> {
        let formation = self
            .store
            .formation(app.id)
            .await
            .map_err(|e| e.to_string())?;
        let mut slots = self.slots(app).await?;
        let mut started = Vec::new();
        let mut retired = Vec::new();
        for entry in rolling_order(&formation) {
            if only.is_some_and(|o| *o != entry.process) {
                continue;
            }
            if !release.processes.contains_key(&entry.process) {
                continue;
            }
            for index in 1..=entry.quantity {
                match self
                    .start_process(app, release, entry, index, Side::Live, progress)
                    .await
                {
                    Ok(proc) => started.push(proc),
                    Err(reason) => {
                        self.undo(app, started, retired, progress).await;
                        return Err(reason);
                    }
                }
                for old in slots
                    .remove(&(entry.process.clone(), index))
                    .unwrap_or_default()
                {
                    progress
                        .say(format!("       Stopping {} ({})", old.dyno(), old.release))
                        .await;
                    self.retire(app, &old).await;
                    retired.push(old);
                }
            }
        }
        let leftovers = slots
            .into_iter()
            .filter(|((process, _), _)| only.is_none_or(|o| o == process))
            .flat_map(|(_, procs)| procs)
            .collect();
        Ok(Rolled { retired, leftovers })
    }

    /// Starts one container of `release` in a slot and waits until it is healthy; a live web
    /// container then joins the router, a canary's is routed by the canary's own route. A
    /// container that fails is removed.
    pub(super) async fn start_process(
        &self,
        app: &App,
        release: &Release,
        entry: &FormationEntry,
        index: u32,
        side: Side,
        progress: &Progress,
    ) -> Result<Proc, String> {
        let dyno = format!("{}.{index}", entry.process);
        let command = release.processes.get(&entry.process).ok_or_else(|| {
            format!(
                "release {} has no `{}` process",
                release.version, entry.process
            )
        })?;
        let log_dyno = match side {
            Side::Live => dyno.clone(),
            Side::Canary => format!("canary.{dyno}"),
        };
        let version = release.version.to_string();
        progress
            .say(format!("       Starting {log_dyno} ({version})"))
            .await;
        let mut spec = self.process_spec(
            app,
            release,
            &entry.process,
            index,
            command,
            entry.memory_bytes,
        );
        let what = match side {
            Side::Live => "process",
            Side::Canary => {
                spec.labels.insert(labels::ROLE.into(), CANARY_ROLE.into());
                spec.name = format!("{}-canary", spec.name);
                "canary process"
            }
        };
        let network = network_name(&app.name);
        self.engine
            .ensure_network(&network, &self.app_labels(&app.name))
            .await
            .map_err(|e| e.to_string())?;
        let id = slipway_engine::run(self.engine.as_ref(), &spec)
            .await
            .map_err(|e| format!("starting {log_dyno}: {e}"))?;
        self.follow(&app.name, &log_dyno, &id, None);
        self.event(
            &app.name,
            &log_dyno,
            format!("Starting {what} of {version} with command `{command}`"),
        );
        let host = format!("{}.{}", app.name, self.apps_domain);
        let target = Target {
            id: &id,
            process: &entry.process,
            dyno: &log_dyno,
            network: &network,
            host: &host,
            port: web_port(release),
        };
        let checks = release.app_json.startup_checks(&entry.process);
        match self.wait_healthy(&target, &checks).await {
            Ok(addr) => {
                if let (Side::Live, Some(addr)) = (side, addr) {
                    self.add_backend(
                        &app.name,
                        Backend {
                            addr,
                            id: id.clone(),
                            dyno: dyno.clone(),
                            release: version.clone(),
                        },
                    );
                }
                progress.say(format!("       {log_dyno} is up")).await;
                self.event(&app.name, &log_dyno, "State changed from starting to up");
                Ok(Proc {
                    id,
                    process: entry.process.clone(),
                    index,
                    release: version,
                    addr,
                })
            }
            Err(reason) => {
                self.event(&app.name, &log_dyno, format!("Failed to start: {reason}"));
                self.engine.remove_container(&id).await.ok();
                Err(reason)
            }
        }
    }

    /// Takes a container out of the router, lets its requests finish, and stops it.
    pub(super) async fn retire(&self, app: &App, proc: &Proc) {
        self.event(
            &app.name,
            &proc.dyno(),
            format!("Stopping process of {} with SIGTERM", proc.release),
        );
        if let Some(addr) = proc.addr {
            self.remove_backend(&app.name, addr);
            self.drain(addr).await;
        }
        if let Err(error) = self.engine.stop(&proc.id, STOP_GRACE).await {
            tracing::warn!(app = %app.name, dyno = %proc.dyno(), %error, "stopping a container failed");
        }
    }

    /// Retires a container and removes it.
    pub(super) async fn discard(&self, app: &App, proc: &Proc) {
        self.retire(app, proc).await;
        if let Err(error) = self.engine.remove_container(&proc.id).await {
            tracing::warn!(app = %app.name, dyno = %proc.dyno(), %error, "removing a container failed");
        }
    }

    /// Puts back what a failed rollout changed: the stopped old containers start again and
    /// rejoin the router before the new ones leave it.
    async fn undo(&self, app: &App, started: Vec<Proc>, retired: Vec<Proc>, progress: &Progress) {
        let network = network_name(&app.name);
        for old in retired.iter().rev() {
            progress
                .say(format!(
                    "       Restarting {} ({})",
                    old.dyno(),
                    old.release
                ))
                .await;
            self.event(
                &app.name,
                &old.dyno(),
                format!("Restarting process of {}: automatic rollback", old.release),
            );
            if let Err(error) = self.engine.start(&old.id).await {
                tracing::warn!(app = %app.name, dyno = %old.dyno(), %error, "restarting an old container failed");
                continue;
            }
            if old.process.is_web()
                && let Some(addr) = self.listening_after_restart(&old.id, &network).await
            {
                self.add_backend(
                    &app.name,
                    Backend {
                        addr,
                        id: old.id.clone(),
                        dyno: old.dyno(),
                        release: old.release.clone(),
                    },
                );
            }
        }
        for new in &started {
            self.discard(app, new).await;
        }
    }

    /// The address of a restarted web container once it accepts connections (bounded).
    async fn listening_after_restart(&self, id: &str, network: &str) -> Option<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let state = self.engine.inspect(id).await.ok()?;
            if !state.running {
                return None;
            }
            if let Some(ip) = state.addresses.get(network) {
                let addr = SocketAddr::new(*ip, container_port(&state.labels));
                let connect = tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(addr),
                );
                if matches!(connect.await, Ok(Ok(_))) {
                    return Some(addr);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    /// Runs the release's `release:` process once, before anything is replaced.
    pub(super) async fn release_phase(
        &self,
        app: &App,
        release: &Release,
        progress: &Progress,
    ) -> Result<(), String> {
        let release_type: ProcessType = ProcessType::release();
        let Some(command) = release.processes.get(&release_type) else {
            return Ok(());
        };
        progress
            .say(format!("-----> Running release command: {command}"))
            .await;
        let mut spec = self.process_spec(app, release, &release_type, 1, command, None);
        spec.labels.insert(labels::ROLE.into(), "release".into());
        self.engine
            .ensure_network(&network_name(&app.name), &self.app_labels(&app.name))
            .await
            .map_err(|e| e.to_string())?;
        let id = slipway_engine::run(self.engine.as_ref(), &spec)
            .await
            .map_err(|e| format!("starting the release command: {e}"))?;
        self.follow(&app.name, "release", &id, None);
        self.event(
            &app.name,
            "release",
            format!("Running release command `{command}`"),
        );
        let outcome = self.watch_release(&id, progress).await;
        self.engine.remove_container(&id).await.ok();
        outcome
    }

    async fn watch_release(&self, id: &str, progress: &Progress) -> Result<(), String> {
        let mut output = self.engine.output(id, None);
        let relay = async {
            let mut lines = LineSplitter::default();
            while let Some(Ok(chunk)) = output.next().await {
                for text in lines.feed(chunk.stream, &chunk.bytes) {
                    progress.say(format!("       {text}")).await;
                }
            }
            for text in lines.finish() {
                progress.say(format!("       {text}")).await;
            }
        };
        let finished = async {
            relay.await;
            self.engine.wait(id).await
        };
        match tokio::time::timeout(self.release_timeout, finished).await {
            Ok(Ok(0)) => Ok(()),
            Ok(Ok(code)) => Err(format!("release command exited with status {code}")),
            Ok(Err(error)) => Err(format!("release command: {error}")),
            Err(_) => {
                self.engine.stop(id, Duration::from_secs(5)).await.ok();
                Err(format!(
                    "release command did not finish within {} s",
                    self.release_timeout.as_secs()
                ))
            }
        }
    }
}
