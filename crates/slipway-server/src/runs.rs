//! One-off processes (`slipway run`): a container from the app's current release that runs
//! one command, attached to a client or in the background, and is removed once it exits.
//! The reconciler only manages `role=process` containers, so these are cleaned up here.
//!
//! With `--runtime swarm` a detached run is a Swarm job (see [`jobs`]), placed on any node.
//! An attached run stays a container on this node, on the app's overlay network: Swarm cannot
//! close a task's stdin (a service's container has no `StdinOnce`), so a job would never see
//! the end of what is piped into `slipway run`.

mod jobs;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{Stream, StreamExt};
use slipway_engine::{Attached, ContainerEngine, EngineError, OutputChunk, Swarm};
use slipway_types::api::{ProcessInfo, ProcessState, RunInfo};
use slipway_types::{AppName, ContainerSpec, labels};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, MutexGuard, mpsc};
use tokio::task::JoinHandle;

use crate::deployer::network_name;
use crate::logs::LogHub;

/// Value of the role label of one-off containers.
const ROLE: &str = "run";

/// Whether a run has a client (`attached`) or not (`detached`). A server that restarts has
/// lost every attached client, so it removes those runs and lets detached ones finish.
const MODE_LABEL: &str = "slipway.run";

/// Docker's label on a Swarm task's container: a detached run's under `--runtime swarm`,
/// which its service owns.
const SWARM_TASK_LABEL: &str = "com.docker.swarm.task.id";

/// Memory limit of a one-off container.
const RUN_MEMORY: i64 = 512 * 1024 * 1024;

/// What a terminal sends when ^D is typed: end of file for a program reading a TTY.
const END_OF_TRANSMISSION: u8 = 0x04;

/// How long a detached run's last output may take to reach the app's log once it exited,
/// before its container or service is removed.
const OUTPUT_GRACE: Duration = Duration::from_secs(2);

/// What to run, and with what: the release's image and config.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub app: AppName,
    pub release: String,
    pub image: String,
    pub config: BTreeMap<String, String>,
    pub command: Vec<String>,
    /// A terminal for the process, when the client has one.
    pub tty: Option<Terminal>,
    pub launch: Launch,
}

/// How the command starts in its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// Through the release's launcher: as user `app` in `/app`, `.profile.d` sourced.
    Release,
    /// The words as the program and its arguments, as the image's user: an image that is not
    /// a release's, like an add-on's for `pg:psql`.
    Direct,
}

/// The client's terminal, as far as the process needs to know it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Terminal {
    pub term: Option<String>,
    /// Rows and columns.
    pub size: Option<(u16, u16)>,
}

/// What the client of an attached run sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    Stdin(Vec<u8>),
    Resize { rows: u16, cols: u16 },
    Eof,
}

/// What an attached run sends its client, in order: output, then the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToClient {
    Output(OutputChunk),
    Exited(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Attached,
    Detached,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Attached => "attached",
            Mode::Detached => "detached",
        }
    }
}

/// Starts one-off processes and removes them when they are done.
pub struct Runs {
    engine: Arc<dyn ContainerEngine>,
    /// With `--runtime swarm`: detached runs are jobs, and app networks are overlays.
    swarm: Option<Arc<dyn Swarm>>,
    /// Where detached runs' output goes, as `app[run.N]` lines.
    logs: Arc<LogHub>,
    /// This installation's id: servers sharing a Docker engine leave each other's runs alone.
    instance: String,
    /// Held while a run picks its number and creates its container or service, so two runs
    /// of an app never take the same `run.<n>`.
    numbering: Mutex<()>,
}

impl Runs {
    pub fn new(
        engine: Arc<dyn ContainerEngine>,
        swarm: Option<Arc<dyn Swarm>>,
        logs: Arc<LogHub>,
        instance: String,
    ) -> Self {
        Self {
            engine,
            swarm,
            logs,
            instance,
            numbering: Mutex::new(()),
        }
    }

    /// Starts the process in the background, its output going to the app's log; a task
    /// removes it once it exits.
    pub async fn start_detached(&self, request: &RunRequest) -> Result<RunInfo, EngineError> {
        let (_numbering, number, spec) = self.prepare(request, Mode::Detached).await?;
        let dyno = format!("run.{number}");
        let id = match &self.swarm {
            Some(swarm) => jobs::start(swarm, &self.logs, &request.app, &dyno, spec).await?,
            None => self.start_container(&request.app, &dyno, &spec).await?,
        };
        tracing::info!(app = %request.app, %dyno, release = %request.release, "started a detached run");
        Ok(RunInfo {
            dyno,
            id,
            release: request.release.clone(),
        })
    }

    /// Runs the process with the client's frames as its stdin and sends its output, then its
    /// exit code, to the client. A client that leaves (its frames end, or it stops taking
    /// output) ends the process. The container is removed either way.
    pub async fn attached(
        &self,
        request: &RunRequest,
        from_client: impl Stream<Item = FromClient>,
        to_client: mpsc::Sender<ToClient>,
    ) -> Result<(), EngineError> {
        let (info, container) = {
            let (_numbering, number, spec) = self.prepare(request, Mode::Attached).await?;
            let id = self.engine.create_container(&spec).await?;
            let info = RunInfo {
                dyno: format!("run.{number}"),
                id: id.clone(),
                release: request.release.clone(),
            };
            (info, RunContainer::new(self.engine.clone(), id))
        };
        tracing::info!(app = %request.app, dyno = %info.dyno, release = %info.release, "starting an attached run");
        let outcome = self
            .session(&info.id, request.tty.as_ref(), from_client, &to_client)
            .await;
        match &outcome {
            Ok(Some(code)) => {
                tracing::info!(app = %request.app, dyno = %info.dyno, code, "attached run exited");
            }
            Ok(None) => {
                tracing::info!(app = %request.app, dyno = %info.dyno, "the client of an attached run left; stopping it");
            }
            Err(_) => {}
        }
        container.remove().await;
        outcome.map(|_| ())
    }

    /// At server start: removes attached runs (their clients left with the old server) and
    /// finished ones, and follows running detached ones until they exit, then removes them.
    pub async fn adopt(&self) -> Result<(), EngineError> {
        let runs = self
            .engine
            .list_containers(&[
                (labels::INSTANCE, self.instance.as_str()),
                (labels::ROLE, ROLE),
            ])
            .await?;
        for run in runs {
            if run.labels.contains_key(SWARM_TASK_LABEL) {
                continue;
            }
            let detached =
                run.labels.get(MODE_LABEL).map(String::as_str) == Some(Mode::Detached.label());
            let container = RunContainer::new(self.engine.clone(), run.id.clone());
            let app = run.labels.get(labels::APP).and_then(|app| app.parse().ok());
            match (detached && run.running, app) {
                (true, Some(app)) => {
                    let follower = self.follow(&app, &dyno_of(&run.labels), &run.id, Some(now()));
                    tokio::spawn(container.remove_after_exit(follower));
                }
                _ => container.remove().await,
            }
        }
        if let Some(swarm) = &self.swarm {
            jobs::adopt(swarm, &self.logs, &self.instance).await?;
        }
        Ok(())
    }

    /// The app's one-off processes that are running, for `ps`.
    pub async fn processes(&self, app: &AppName) -> Result<Vec<ProcessInfo>, EngineError> {
        let mut processes: Vec<ProcessInfo> = self
            .run_containers(app)
            .await?
            .into_iter()
            .filter(|run| run.running && !run.labels.contains_key(SWARM_TASK_LABEL))
            .map(|run| ProcessInfo {
                dyno: dyno_of(&run.labels),
                release: run.labels.get(labels::RELEASE).cloned().unwrap_or_default(),
                state: ProcessState::Up,
                started_at: run.started_at,
                exit_code: None,
                restarts: 0,
                canary: false,
            })
            .collect();
        if let Some(swarm) = &self.swarm {
            processes.extend(jobs::processes(swarm.as_ref(), app, &self.instance).await?);
        }
        processes.sort_by(|a, b| a.dyno.cmp(&b.dyno));
        Ok(processes)
    }

    /// `Some(exit code)`, or `None` when the client left first.
    async fn session(
        &self,
        id: &str,
        tty: Option<&Terminal>,
        from_client: impl Stream<Item = FromClient>,
        to_client: &mpsc::Sender<ToClient>,
    ) -> Result<Option<i64>, EngineError> {
        let Attached {
            mut output,
            mut input,
        } = self.engine.attach(id).await?;
        self.engine.start(id).await?;
        if let Some((rows, cols)) = tty.and_then(|terminal| terminal.size) {
            self.resize(id, rows, cols).await;
        }
        let mut from_client = std::pin::pin!(from_client);
        // Stdin and output flow independently, so a process blocked writing output while the
        // client is still sending input cannot stall both.
        let client = async {
            let mut stdin_open = true;
            while let Some(frame) = from_client.next().await {
                match frame {
                    FromClient::Stdin(bytes) if stdin_open => {
                        // A process that closed its stdin takes no more input; that is its choice.
                        stdin_open =
                            input.write_all(&bytes).await.is_ok() && input.flush().await.is_ok();
                    }
                    FromClient::Stdin(_) => {}
                    FromClient::Resize { rows, cols } => self.resize(id, rows, cols).await,
                    // Docker does not pass end of file on to a TTY; the terminal's ^D does.
                    FromClient::Eof if tty.is_some() => {
                        stdin_open = input.write_all(&[END_OF_TRANSMISSION]).await.is_ok()
                            && input.flush().await.is_ok();
                    }
                    FromClient::Eof => {
                        input.shutdown().await.ok();
                        stdin_open = false;
                    }
                }
            }
        };
        let process = async {
            while let Some(chunk) = output.next().await {
                if to_client.send(ToClient::Output(chunk?)).await.is_err() {
                    return Ok(None);
                }
            }
            let code = self.engine.wait(id).await?;
            to_client.send(ToClient::Exited(code)).await.ok();
            Ok(Some(code))
        };
        tokio::select! {
            () = client => Ok(None),
            ended = process => ended,
        }
    }

    fn app_labels(&self, app: &AppName) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::APP.to_owned(), app.to_string()),
            (labels::INSTANCE.to_owned(), self.instance.clone()),
        ])
    }

    /// A failed resize leaves the terminal at its old size, which is no reason to end a run.
    async fn resize(&self, id: &str, rows: u16, cols: u16) {
        if let Err(error) = self.engine.resize_tty(id, rows, cols).await {
            tracing::debug!(%error, container = %id, "resizing a run's terminal failed");
        }
    }

    /// The run's container spec, with the app's network in place and the next number taken:
    /// the guard holds the number until the run's container or service exists.
    async fn prepare(
        &self,
        request: &RunRequest,
        mode: Mode,
    ) -> Result<(MutexGuard<'_, ()>, u32, ContainerSpec), EngineError> {
        let app_labels = self.app_labels(&request.app);
        let network = network_name(&request.app);
        match &self.swarm {
            Some(swarm) => swarm.ensure_overlay_network(&network, &app_labels).await?,
            None => self.engine.ensure_network(&network, &app_labels).await?,
        }
        let numbering = self.numbering.lock().await;
        let mut taken: Vec<BTreeMap<String, String>> = self
            .run_containers(&request.app)
            .await?
            .into_iter()
            .map(|run| run.labels)
            .collect();
        if let Some(swarm) = &self.swarm {
            taken.extend(
                jobs::services(swarm.as_ref(), Some(&request.app), &self.instance)
                    .await?
                    .into_iter()
                    .map(|service| service.labels),
            );
        }
        let number = next_number(&taken);
        Ok((
            numbering,
            number,
            run_spec(request, number, mode, app_labels),
        ))
    }

    /// The app's run containers on this engine, a Swarm job's included.
    async fn run_containers(
        &self,
        app: &AppName,
    ) -> Result<Vec<slipway_engine::ContainerState>, EngineError> {
        self.engine
            .list_containers(&[
                (labels::APP, app.as_str()),
                (labels::INSTANCE, self.instance.as_str()),
                (labels::ROLE, ROLE),
            ])
            .await
    }

    async fn start_container(
        &self,
        app: &AppName,
        dyno: &str,
        spec: &ContainerSpec,
    ) -> Result<String, EngineError> {
        let id = self.engine.create_container(spec).await?;
        let container = RunContainer::new(self.engine.clone(), id.clone());
        if let Err(error) = self.engine.start(&id).await {
            container.remove().await;
            return Err(error);
        }
        let follower = self.follow(app, dyno, &id, None);
        tokio::spawn(container.remove_after_exit(follower));
        Ok(id)
    }

    /// Sends a detached run's output to the app's log, from `since` (unix seconds).
    fn follow(
        &self,
        app: &AppName,
        dyno: &str,
        id: &str,
        since: Option<i64>,
    ) -> Option<JoinHandle<()>> {
        let engine = self.engine.clone();
        let container = id.to_owned();
        self.logs
            .follow_output(app.clone(), dyno.to_owned(), id.to_owned(), move || {
                engine.output(&container, since)
            })
    }
}

/// The empty command, and words Docker cannot pass on, are refused with a message for the
/// client.
pub fn check_command(command: &[String]) -> Result<(), String> {
    if command.is_empty() {
        return Err(
            "no command given: send the command to run as a non-empty list of words".into(),
        );
    }
    if let Some(word) = command.iter().find(|word| word.contains('\0')) {
        return Err(format!(
            "command word `{}` contains a NUL byte",
            word.escape_default()
        ));
    }
    Ok(())
}

/// The command as the line the launcher `eval`s. One word is already a command line
/// (`slipway run 'rake db:migrate && echo ok'`, as with ssh); several are quoted each, so
/// `sh -c 'echo a; echo b'` reaches `sh` as three arguments.
pub fn command_line(command: &[String]) -> String {
    match command {
        [line] => line.clone(),
        words => words
            .iter()
            .map(|word| shell_quote(word))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A word the shell reads back unchanged: as it is when nothing in it is special, else in
/// single quotes, where only `'` itself needs care.
fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./=:@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_owned();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// One more than the highest `run.<n>` among the labels of the app's runs still around.
fn next_number(existing: &[BTreeMap<String, String>]) -> u32 {
    existing
        .iter()
        .filter_map(|labels| labels.get(labels::INDEX)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1
}

/// `run.<n>`, from a run's labels.
fn dyno_of(run_labels: &BTreeMap<String, String>) -> String {
    let number = run_labels.get(labels::INDEX).map_or("0", String::as_str);
    format!("run.{number}")
}

/// Unix seconds: an adopted run's output is followed from here, as the server before this
/// one logged what came earlier.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// `app_labels` name the app and this installation.
fn run_spec(
    request: &RunRequest,
    number: u32,
    mode: Mode,
    app_labels: BTreeMap<String, String>,
) -> ContainerSpec {
    let dyno = format!("run.{number}");
    let mut env = request.config.clone();
    env.insert("DYNO".into(), dyno);
    env.insert("SLIPWAY_APP".into(), request.app.to_string());
    env.insert("SLIPWAY_RELEASE".into(), request.release.clone());
    if request.launch == Launch::Release {
        env.insert("HOME".into(), "/app".into());
    }
    if let Some(term) = request.tty.as_ref().and_then(|tty| tty.term.clone()) {
        env.insert("TERM".into(), term);
    }
    let mut container_labels = app_labels;
    container_labels.insert(labels::RELEASE.into(), request.release.clone());
    container_labels.insert(labels::PROCESS.into(), ROLE.into());
    container_labels.insert(labels::INDEX.into(), number.to_string());
    container_labels.insert(labels::ROLE.into(), ROLE.into());
    container_labels.insert(MODE_LABEL.into(), mode.label().into());
    let (cmd, user, working_dir) = match request.launch {
        Launch::Release => (
            slipway_builder::launch_command(&command_line(&request.command)),
            Some("app".into()),
            Some("/app".into()),
        ),
        Launch::Direct => (request.command.clone(), None, None),
    };
    ContainerSpec {
        name: format!("slipway-{}-run-{number}", request.app),
        image: request.image.clone(),
        cmd,
        env,
        labels: container_labels,
        network: Some(network_name(&request.app)),
        user,
        working_dir,
        memory_bytes: Some(RUN_MEMORY),
        tty: request.tty.is_some(),
        stdin_open: mode == Mode::Attached,
        ..ContainerSpec::default()
    }
}

/// A run's container, removed when this is dropped, so a session that ends any way (a
/// panic, or the server shutting down) leaves nothing behind; `adopt` removes what a
/// server that stopped abruptly left.
struct RunContainer {
    engine: Arc<dyn ContainerEngine>,
    id: Option<String>,
}

impl RunContainer {
    fn new(engine: Arc<dyn ContainerEngine>, id: String) -> Self {
        Self {
            engine,
            id: Some(id),
        }
    }

    async fn remove(mut self) {
        if let Some(id) = self.id.take() {
            remove(self.engine.as_ref(), &id).await;
        }
    }

    /// Waits for the container to exit and for `follower` to log its last output (for a
    /// while), then removes it.
    async fn remove_after_exit(self, follower: Option<JoinHandle<()>>) {
        if let Some(id) = &self.id
            && let Err(error) = self.engine.wait(id).await
        {
            tracing::warn!(%error, container = %id, "waiting for a detached run failed; removing it");
        }
        if let Some(follower) = follower {
            tokio::time::timeout(OUTPUT_GRACE, follower).await.ok();
        }
        self.remove().await;
    }
}

impl Drop for RunContainer {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let engine = self.engine.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { remove(engine.as_ref(), &id).await });
        }
    }
}

async fn remove(engine: &dyn ContainerEngine, id: &str) {
    if let Err(error) = engine.remove_container(id).await {
        tracing::warn!(%error, container = %id, "removing a run container failed");
    }
}

#[cfg(test)]
mod tests;
