//! One-off processes (`slipway run`): a container from the app's current release that runs
//! one command, attached to a client or in the background, and is removed once it exits.
//! The reconciler only manages `role=process` containers, so these are cleaned up here.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use slipway_engine::{Attached, ContainerEngine, ContainerState, EngineError, OutputChunk};
use slipway_types::api::RunInfo;
use slipway_types::{AppName, ContainerSpec, labels};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};

use crate::deployer::network_name;

/// Value of the role label of one-off containers.
const ROLE: &str = "run";

/// Whether a run has a client (`attached`) or not (`detached`). A server that restarts has
/// lost every attached client, so it removes those runs and lets detached ones finish.
const MODE_LABEL: &str = "slipway.run";

/// Memory limit of a one-off container.
const RUN_MEMORY: i64 = 512 * 1024 * 1024;

/// What a terminal sends when ^D is typed: end of file for a program reading a TTY.
const END_OF_TRANSMISSION: u8 = 0x04;

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

/// Starts one-off containers and removes them when they are done.
pub struct Runs {
    engine: Arc<dyn ContainerEngine>,
    /// This installation's id: servers sharing a Docker engine leave each other's runs alone.
    instance: String,
    /// Held while a run picks its number and creates its container, so two runs of an app
    /// never take the same `run.<n>`.
    numbering: Mutex<()>,
}

impl Runs {
    pub fn new(engine: Arc<dyn ContainerEngine>, instance: String) -> Self {
        Self {
            engine,
            instance,
            numbering: Mutex::new(()),
        }
    }

    /// Starts the process in the background; a task removes its container once it exits.
    pub async fn start_detached(&self, request: &RunRequest) -> Result<RunInfo, EngineError> {
        let (info, container) = self.create(request, Mode::Detached).await?;
        if let Err(error) = self.engine.start(&info.id).await {
            container.remove().await;
            return Err(error);
        }
        tracing::info!(app = %request.app, dyno = %info.dyno, release = %info.release, "started a detached run");
        tokio::spawn(container.remove_after_exit());
        Ok(info)
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
        let (info, container) = self.create(request, Mode::Attached).await?;
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
    /// finished ones, and removes running detached ones once they exit.
    pub async fn adopt(&self) -> Result<(), EngineError> {
        let runs = self
            .engine
            .list_containers(&[
                (labels::INSTANCE, self.instance.as_str()),
                (labels::ROLE, ROLE),
            ])
            .await?;
        for run in runs {
            let detached =
                run.labels.get(MODE_LABEL).map(String::as_str) == Some(Mode::Detached.label());
            let container = RunContainer::new(self.engine.clone(), run.id);
            if detached && run.running {
                tokio::spawn(container.remove_after_exit());
            } else {
                container.remove().await;
            }
        }
        Ok(())
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

    async fn create(
        &self,
        request: &RunRequest,
        mode: Mode,
    ) -> Result<(RunInfo, RunContainer), EngineError> {
        let app_labels = self.app_labels(&request.app);
        self.engine
            .ensure_network(&network_name(&request.app), &app_labels)
            .await?;
        let _numbering = self.numbering.lock().await;
        let existing = self
            .engine
            .list_containers(&[
                (labels::APP, request.app.as_str()),
                (labels::INSTANCE, self.instance.as_str()),
                (labels::ROLE, ROLE),
            ])
            .await?;
        let number = next_number(&existing);
        let spec = run_spec(request, number, mode, app_labels);
        let id = self.engine.create_container(&spec).await?;
        let info = RunInfo {
            dyno: format!("run.{number}"),
            id: id.clone(),
            release: request.release.clone(),
        };
        Ok((info, RunContainer::new(self.engine.clone(), id)))
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

/// One more than the highest `run.<n>` of the app's run containers still around.
fn next_number(existing: &[ContainerState]) -> u32 {
    existing
        .iter()
        .filter_map(|run| run.labels.get(labels::INDEX)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1
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

    async fn remove_after_exit(self) {
        if let Some(id) = &self.id
            && let Err(error) = self.engine.wait(id).await
        {
            tracing::warn!(%error, container = %id, "waiting for a detached run failed; removing it");
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
mod tests {
    use std::time::Duration;

    use slipway_engine::{Call, FakeEngine, OutputStream};

    use super::*;

    const IMAGE: &str = "slipway/hello:1.2.0";

    fn request(command: &[&str]) -> RunRequest {
        RunRequest {
            app: "hello".parse().expect("app name"),
            release: "1.2.0".into(),
            image: IMAGE.into(),
            config: BTreeMap::from([("GREETING".into(), "hi".into())]),
            command: command.iter().map(|word| (*word).to_owned()).collect(),
            tty: None,
            launch: Launch::Release,
        }
    }

    const INSTANCE: &str = "0123456789abcdef";

    fn runs_of(engine: &Arc<FakeEngine>) -> Runs {
        Runs::new(engine.clone(), INSTANCE.to_owned())
    }

    fn labels_of(app: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (labels::APP.to_owned(), app.to_owned()),
            (labels::INSTANCE.to_owned(), INSTANCE.to_owned()),
        ])
    }

    fn engine() -> Arc<FakeEngine> {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image(IMAGE);
        engine
    }

    async fn run_containers(engine: &FakeEngine) -> Vec<ContainerState> {
        engine
            .list_containers(&[(labels::ROLE, ROLE)])
            .await
            .expect("lists")
    }

    #[test]
    fn words_are_quoted_for_the_launcher_and_one_word_is_a_command_line() {
        let words = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            command_line(&words(&["sh", "-c", "echo out; echo 'err' >&2", ""])),
            r#"sh -c 'echo out; echo '\''err'\'' >&2' ''"#
        );
        assert_eq!(
            command_line(&words(&["printenv", "DYNO", "a=b/c:1"])),
            "printenv DYNO a=b/c:1"
        );
        assert_eq!(
            command_line(&words(&["rake db:migrate && echo ok"])),
            "rake db:migrate && echo ok"
        );
    }

    #[test]
    fn empty_commands_and_nul_bytes_are_refused() {
        assert!(check_command(&[]).unwrap_err().contains("no command given"));
        let error = check_command(&["a\0b".to_owned()]).unwrap_err();
        assert!(error.contains(r"`a\u{0}b`"), "{error}");
        assert!(check_command(&["true".to_owned()]).is_ok());
    }

    #[test]
    fn the_container_runs_the_release_with_its_config_as_the_app_user() {
        let mut request = request(&["printenv", "DYNO"]);
        request.tty = Some(Terminal {
            term: Some("xterm-256color".into()),
            size: Some((24, 80)),
        });
        let spec = run_spec(&request, 3, Mode::Attached, labels_of("hello"));
        assert_eq!(spec.name, "slipway-hello-run-3");
        assert_eq!(spec.image, IMAGE);
        assert_eq!(spec.cmd, slipway_builder::launch_command("printenv DYNO"));
        let env: Vec<(&str, &str)> = spec
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("DYNO", "run.3"),
                ("GREETING", "hi"),
                ("HOME", "/app"),
                ("SLIPWAY_APP", "hello"),
                ("SLIPWAY_RELEASE", "1.2.0"),
                ("TERM", "xterm-256color"),
            ]
        );
        assert_eq!(spec.labels[labels::APP], "hello");
        assert_eq!(spec.labels[labels::INSTANCE], INSTANCE);
        assert_eq!(spec.labels[labels::ROLE], "run");
        assert_eq!(spec.labels[labels::PROCESS], "run");
        assert_eq!(spec.labels[labels::INDEX], "3");
        assert_eq!(spec.labels[labels::RELEASE], "1.2.0");
        assert_eq!(spec.network.as_deref(), Some("slipway-hello"));
        assert_eq!(spec.user.as_deref(), Some("app"));
        assert_eq!(spec.working_dir.as_deref(), Some("/app"));
        assert_eq!(spec.memory_bytes, Some(512 * 1024 * 1024));
        assert!(spec.tty && spec.stdin_open);

        let detached = run_spec(
            &self::request(&["true"]),
            1,
            Mode::Detached,
            labels_of("hello"),
        );
        assert!(!detached.tty && !detached.stdin_open);
        assert!(!detached.env.contains_key("TERM"));
    }

    #[test]
    fn a_direct_run_passes_its_words_as_they_are_as_the_images_user() {
        let request = RunRequest {
            image: "slipway/postgres:17".into(),
            launch: Launch::Direct,
            ..self::request(&["psql", "-c", "select 1"])
        };
        let spec = run_spec(&request, 2, Mode::Attached, labels_of("hello"));
        assert_eq!(spec.cmd, ["psql", "-c", "select 1"]);
        assert_eq!(spec.image, "slipway/postgres:17");
        assert_eq!((spec.user, spec.working_dir), (None, None));
        assert!(!spec.env.contains_key("HOME"));
        assert_eq!(spec.env["DYNO"], "run.2");
        assert_eq!(spec.labels[labels::ROLE], "run");
        assert_eq!(spec.network.as_deref(), Some("slipway-hello"));
    }

    #[tokio::test]
    async fn an_attached_run_echoes_stdin_reports_its_exit_and_is_removed() {
        let engine = engine();
        let runs = runs_of(&engine);
        let (to_client, mut received) = mpsc::channel(16);
        let frames =
            futures_util::stream::iter([FromClient::Stdin(b"hello\n".to_vec()), FromClient::Eof])
                // The client stays connected until the process has exited.
                .chain(futures_util::stream::pending());

        runs.attached(&request(&["cat"]), frames, to_client)
            .await
            .expect("runs");

        let mut events = Vec::new();
        while let Some(event) = received.recv().await {
            events.push(event);
        }
        assert_eq!(
            events,
            [
                ToClient::Output(OutputChunk {
                    stream: OutputStream::Stdout,
                    bytes: "hello\n".into(),
                }),
                ToClient::Exited(0),
            ]
        );
        assert!(run_containers(&engine).await.is_empty());
        let spec = &engine.created_specs()[0];
        assert_eq!(spec.env["DYNO"], "run.1");
        assert!(engine.networks().contains(&"slipway-hello".to_owned()));
    }

    #[tokio::test]
    async fn a_client_that_leaves_ends_the_run() {
        let engine = engine();
        let runs = runs_of(&engine);
        let (to_client, _received) = mpsc::channel(16);
        let mut request = request(&["bash"]);
        request.tty = Some(Terminal {
            term: None,
            size: Some((40, 120)),
        });

        runs.attached(&request, futures_util::stream::empty(), to_client)
            .await
            .expect("runs");

        assert!(run_containers(&engine).await.is_empty());
        assert!(engine.calls().iter().any(|call| matches!(
            call,
            Call::ResizeTty {
                rows: 40,
                cols: 120,
                ..
            }
        )));
    }

    #[tokio::test]
    async fn detached_runs_take_the_next_number_and_are_removed_after_they_exit() {
        let engine = engine();
        let runs = runs_of(&engine);
        let first = runs
            .start_detached(&request(&["sleep", "100"]))
            .await
            .expect("starts");
        let second = runs
            .start_detached(&request(&["sleep", "100"]))
            .await
            .expect("starts");
        assert_eq!(
            (first.dyno.as_str(), second.dyno.as_str()),
            ("run.1", "run.2")
        );
        assert_eq!(first.release, "1.2.0");
        assert!(engine.inspect(&first.id).await.expect("inspects").running);

        engine.set_exit_code(&first.id, 0);
        engine.set_exit_code(&second.id, 1);
        for attempt in 0.. {
            if run_containers(&engine).await.is_empty() {
                break;
            }
            assert!(attempt < 100, "runs were not removed after they exited");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn adopt_removes_its_attached_and_finished_runs_and_waits_for_detached_ones() {
        let engine = engine();
        let runs = runs_of(&engine);
        let detached = runs
            .start_detached(&request(&["sleep", "100"]))
            .await
            .expect("starts");
        // An attached run a server that stopped abruptly left behind.
        let orphan = engine
            .create_container(&run_spec(
                &request(&["bash"]),
                7,
                Mode::Attached,
                labels_of("hello"),
            ))
            .await
            .expect("creates");
        engine.start(&orphan).await.expect("starts");
        // Another installation's run on the same engine.
        let mut foreign_labels = labels_of("hello");
        foreign_labels.insert(labels::INSTANCE.to_owned(), "fedcba9876543210".to_owned());
        let foreign = engine
            .create_container(&ContainerSpec {
                name: "someone-elses-run".into(),
                ..run_spec(&request(&["bash"]), 1, Mode::Attached, foreign_labels)
            })
            .await
            .expect("creates");

        runs_of(&engine).adopt().await.expect("adopts");
        let mut left: Vec<String> = run_containers(&engine)
            .await
            .into_iter()
            .map(|run| run.id)
            .collect();
        left.sort();
        let mut expected = vec![detached.id, foreign];
        expected.sort();
        assert_eq!(left, expected);
    }
}
