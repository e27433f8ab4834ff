use std::time::Duration;

use slipway_engine::{Call, ContainerState, FAKE_NODE_ID, FakeEngine, OutputStream, ServiceMode};

use super::*;
use crate::logs::{LogFilter, LogLine, LogSource};

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

/// Runs on a fake engine, and their app log in a temporary directory.
struct Setup {
    engine: Arc<FakeEngine>,
    logs: Arc<LogHub>,
    runs: Runs,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// With `swarm`, as `--runtime swarm` runs them, on the fake's swarm.
    fn new(swarm: bool) -> Self {
        let engine = engine();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let logs = LogHub::open(dir.path().join("logs"), 100).expect("opening the log");
        let runs = runs_on(&engine, swarm, &logs);
        Self {
            engine,
            logs,
            runs,
            _dir: dir,
        }
    }

    /// What the app's processes printed.
    fn app_lines(&self) -> Vec<LogLine> {
        let filter = LogFilter {
            source: Some(LogSource::App),
            ..LogFilter::default()
        };
        self.logs
            .recent(&"hello".parse().expect("app name"), 100, &filter)
    }
}

/// Another server's `Runs` on the same engine and log.
fn runs_on(engine: &Arc<FakeEngine>, swarm: bool, logs: &Arc<LogHub>) -> Runs {
    let swarm = swarm.then(|| engine.clone() as Arc<dyn Swarm>);
    Runs::new(engine.clone(), swarm, logs.clone(), INSTANCE.to_owned())
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
    let setup = Setup::new(false);
    let (engine, runs) = (&setup.engine, &setup.runs);
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
    assert!(run_containers(engine).await.is_empty());
    let spec = &engine.created_specs()[0];
    assert_eq!(spec.env["DYNO"], "run.1");
    assert!(engine.networks().contains(&"slipway-hello".to_owned()));
}

#[tokio::test]
async fn a_client_that_leaves_ends_the_run() {
    let setup = Setup::new(false);
    let (engine, runs) = (&setup.engine, &setup.runs);
    let (to_client, _received) = mpsc::channel(16);
    let mut request = request(&["bash"]);
    request.tty = Some(Terminal {
        term: None,
        size: Some((40, 120)),
    });

    runs.attached(&request, futures_util::stream::empty(), to_client)
        .await
        .expect("runs");

    assert!(run_containers(engine).await.is_empty());
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
    let setup = Setup::new(false);
    let (engine, runs) = (&setup.engine, &setup.runs);
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
        if run_containers(engine).await.is_empty() {
            break;
        }
        assert!(attempt < 100, "runs were not removed after they exited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn adopt_removes_its_attached_and_finished_runs_and_waits_for_detached_ones() {
    let setup = Setup::new(false);
    let (engine, runs) = (&setup.engine, &setup.runs);
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

    runs_on(engine, false, &setup.logs)
        .adopt()
        .await
        .expect("adopts");
    let mut left: Vec<String> = run_containers(engine)
        .await
        .into_iter()
        .map(|run| run.id)
        .collect();
    left.sort();
    let mut expected = vec![detached.id, foreign];
    expected.sort();
    assert_eq!(left, expected);
}

/// Waits (bounded) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 5 s");
}

fn stdout(text: &str) -> OutputChunk {
    OutputChunk {
        stream: OutputStream::Stdout,
        bytes: text.to_owned().into(),
    }
}

fn texts(lines: &[LogLine]) -> Vec<(&str, &str)> {
    lines
        .iter()
        .map(|line| (line.process.as_str(), line.text.as_str()))
        .collect()
}

#[tokio::test]
async fn a_detached_runs_output_goes_to_the_apps_log() {
    let setup = Setup::new(false);
    setup.engine.script_output(
        IMAGE,
        vec![stdout("sent 3 reminders\n"), stdout("done\n")],
        0,
    );

    let info = setup
        .runs
        .start_detached(&request(&["./send-reminders"]))
        .await
        .expect("starts");

    assert_eq!(info.dyno, "run.1");
    eventually("removing the run", async || {
        run_containers(&setup.engine).await.is_empty()
    })
    .await;
    assert_eq!(
        texts(&setup.app_lines()),
        [("run.1", "sent 3 reminders"), ("run.1", "done")]
    );
}

#[test]
fn a_detached_run_under_swarm_is_a_job_with_the_containers_spec() {
    let container = run_spec(
        &request(&["./send-reminders"]),
        4,
        Mode::Detached,
        labels_of("hello"),
    );
    let spec = jobs::service_spec(container.clone(), FAKE_NODE_ID);
    assert_eq!(spec.mode, ServiceMode::Job);
    assert_eq!(spec.container, container);
    assert_eq!(spec.container.name, "slipway-hello-run-4");
    assert_eq!(spec.container.network.as_deref(), Some("slipway-hello"));
    assert_eq!(spec.container.memory_bytes, Some(512 * 1024 * 1024));
    assert_eq!(spec.container.env["DYNO"], "run.4");
    assert_eq!(spec.labels, container.labels);
    assert_eq!(spec.labels[labels::ROLE], "run");
    assert_eq!(spec.labels[MODE_LABEL], "detached");
    assert_eq!(spec.labels[labels::INDEX], "4");
    assert_eq!(
        (spec.health, spec.published_port, spec.constraints),
        (None, None, vec![format!("node.id=={FAKE_NODE_ID}")])
    );
    assert!(!spec.container.tty && !spec.container.stdin_open);
}

fn platform_lines(setup: &Setup) -> Vec<String> {
    let filter = LogFilter {
        source: Some(LogSource::Platform),
        ..LogFilter::default()
    };
    setup
        .logs
        .recent(&"hello".parse().expect("app name"), 100, &filter)
        .into_iter()
        .map(|line| format!("{}: {}", line.process, line.text))
        .collect()
}

#[tokio::test]
async fn a_detached_run_under_swarm_is_a_job_logged_and_removed_once_it_ended() {
    let setup = Setup::new(true);
    let engine = &setup.engine;
    // A job of another run that is still around holds its number.
    let earlier = run_spec(
        &request(&["sleep", "1"]),
        5,
        Mode::Detached,
        labels_of("hello"),
    );
    engine
        .deploy_service(&jobs::service_spec(earlier, FAKE_NODE_ID))
        .await
        .expect("deploys");
    engine.script_output(IMAGE, vec![stdout("sent 3 reminders\n")], 3);

    let info = setup
        .runs
        .start_detached(&request(&["./send-reminders"]))
        .await
        .expect("starts");

    assert_eq!(
        (info.dyno.as_str(), info.release.as_str()),
        ("run.6", "1.2.0")
    );
    let calls = engine.calls();
    assert!(calls.iter().any(|call| matches!(
        call,
        Call::EnsureOverlayNetwork { name, .. } if name == "slipway-hello"
    )));
    assert!(
        !calls
            .iter()
            .any(|call| matches!(call, Call::EnsureNetwork { .. }))
    );
    let deployed = calls
        .iter()
        .filter_map(|call| match call {
            Call::DeployService { spec } => Some(spec),
            _ => None,
        })
        .next_back()
        .expect("a job was deployed");
    assert_eq!(deployed.container.name, "slipway-hello-run-6");
    assert_eq!(deployed.mode, ServiceMode::Job);
    assert_eq!(deployed.container.env["DYNO"], "run.6");
    assert_eq!(deployed.labels[labels::INSTANCE], INSTANCE);
    assert!(engine.created_specs().is_empty(), "no container of its own");

    eventually("removing the job", async || {
        engine.services() == ["slipway-hello-run-5"]
    })
    .await;
    assert_eq!(texts(&setup.app_lines()), [("run.6", "sent 3 reminders")]);
    assert_eq!(
        platform_lines(&setup),
        ["run.6: Process exited with status 3"]
    );
}

#[tokio::test]
async fn an_attached_run_under_swarm_is_a_container_on_the_overlay_network() {
    let setup = Setup::new(true);
    let engine = &setup.engine;
    let (to_client, mut received) = mpsc::channel(16);
    let frames = futures_util::stream::iter([FromClient::Stdin(b"hi\n".to_vec()), FromClient::Eof])
        .chain(futures_util::stream::pending());

    setup
        .runs
        .attached(&request(&["cat"]), frames, to_client)
        .await
        .expect("runs");

    let mut events = Vec::new();
    while let Some(event) = received.recv().await {
        events.push(event);
    }
    assert_eq!(
        events,
        [ToClient::Output(stdout("hi\n")), ToClient::Exited(0)]
    );
    let calls = engine.calls();
    assert!(calls.iter().any(|call| matches!(
        call,
        Call::EnsureOverlayNetwork { name, .. } if name == "slipway-hello"
    )));
    assert!(!calls.iter().any(|call| matches!(
        call,
        Call::EnsureNetwork { .. } | Call::DeployService { .. }
    )));
    let spec = &engine.created_specs()[0];
    assert_eq!(spec.network.as_deref(), Some("slipway-hello"));
    assert!(spec.stdin_open);
    assert!(run_containers(engine).await.is_empty());
}

#[tokio::test]
async fn adopt_under_swarm_removes_ended_jobs_and_leaves_task_containers_to_their_job() {
    let setup = Setup::new(true);
    let engine = &setup.engine;
    let ended = run_spec(&request(&["true"]), 2, Mode::Detached, labels_of("hello"));
    engine
        .deploy_service(&jobs::service_spec(ended.clone(), FAKE_NODE_ID))
        .await
        .expect("deploys");
    let mut foreign_labels = labels_of("hello");
    foreign_labels.insert(labels::INSTANCE.to_owned(), "fedcba9876543210".to_owned());
    let foreign = ContainerSpec {
        name: "someone-elses-run".into(),
        ..run_spec(&request(&["true"]), 1, Mode::Detached, foreign_labels)
    };
    engine
        .deploy_service(&jobs::service_spec(foreign, FAKE_NODE_ID))
        .await
        .expect("deploys");
    // The container of a running job's task on this node.
    let mut task_container = ended;
    task_container.name = "slipway-hello-run-3.1.abc".into();
    task_container
        .labels
        .insert(labels::INDEX.into(), "3".into());
    task_container
        .labels
        .insert(SWARM_TASK_LABEL.into(), "abc".into());
    engine
        .ensure_overlay_network("slipway-hello", &labels_of("hello"))
        .await
        .expect("creates the network");
    let task = engine
        .create_container(&task_container)
        .await
        .expect("creates");
    engine.start(&task).await.expect("starts");

    runs_on(engine, true, &setup.logs)
        .adopt()
        .await
        .expect("adopts");

    eventually("removing the ended job", async || {
        engine.services() == ["someone-elses-run"]
    })
    .await;
    assert!(engine.inspect(&task).await.expect("inspects").running);
    assert_eq!(
        platform_lines(&setup),
        ["run.2: Process exited with status 0"]
    );
}

#[tokio::test]
async fn ps_lists_runs_while_they_run() {
    let setup = Setup::new(false);
    let app: AppName = "hello".parse().expect("app name");
    let info = setup
        .runs
        .start_detached(&request(&["sleep", "100"]))
        .await
        .expect("starts");

    let listed = setup.runs.processes(&app).await.expect("lists");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (listed[0].dyno.as_str(), listed[0].release.as_str()),
        ("run.1", "1.2.0")
    );
    assert_eq!(listed[0].state, ProcessState::Up);

    setup.engine.set_exit_code(&info.id, 0);
    eventually("removing the run", async || {
        run_containers(&setup.engine).await.is_empty()
    })
    .await;
    assert!(setup.runs.processes(&app).await.expect("lists").is_empty());
}
