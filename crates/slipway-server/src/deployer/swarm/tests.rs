use std::sync::Arc;
use std::time::Duration;

use slipway_engine::{Call, FakeEngine, OutputChunk, OutputStream, ServiceMode};
use slipway_router::{Router, RouterConfig};
use slipway_store::{App, NewRelease, Release, Role, Store};
use slipway_types::api::{ProcessState, ReleaseStatus};
use slipway_types::{AppJson, ProcessType, labels};
use tokio::sync::mpsc;

use super::super::{Deployer, DeployerConfig, Progress};
use crate::alerts::Notifier;
use crate::logs::LogHub;

struct Setup {
    engine: Arc<FakeEngine>,
    store: Store,
    deployer: Deployer,
    app: App,
    _logs: tempfile::TempDir,
}

impl Setup {
    async fn new(name: &str) -> Self {
        Self::with_registry(name, None).await
    }

    async fn with_registry(name: &str, registry: Option<&str>) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let store = Store::open_in_memory().await.unwrap();
        let owner = store.create_user("admin", Role::Admin).await.unwrap();
        let app = store
            .create_app(&name.parse().unwrap(), owner.id)
            .await
            .unwrap();
        let engine = Arc::new(FakeEngine::new());
        let deployer = Deployer::new(
            engine.clone(),
            store.clone(),
            Router::new(RouterConfig::default()),
            DeployerConfig {
                instance: "test".into(),
                logs: LogHub::open(logs.path().to_path_buf(), 100).unwrap(),
                apps_domain: "localhost".into(),
                release_timeout: Duration::from_secs(60),
                notifier: Notifier::new().0,
                swarm: Some(engine.clone()),
                registry: registry.map(str::to_owned),
            },
        )
        .unwrap();
        Self {
            engine,
            store,
            deployer,
            app,
            _logs: logs,
        }
    }

    async fn formation(&self, process: &str, quantity: u32, memory_bytes: Option<i64>) {
        self.store
            .set_formation(
                self.app.id,
                &process.parse().unwrap(),
                quantity,
                memory_bytes,
            )
            .await
            .unwrap();
    }

    async fn release(&self, minor: u64, processes: &[(&str, &str)], app_json: AppJson) -> Release {
        let image = format!("slipway/{}:1.{minor}.0", self.app.name);
        self.engine.add_image(&image);
        self.store
            .create_release(
                NewRelease {
                    app_id: self.app.id,
                    version: semver::Version::new(1, minor, 0),
                    image,
                    config: Default::default(),
                    processes: processes
                        .iter()
                        .map(|(process, command)| (process.parse().unwrap(), (*command).to_owned()))
                        .collect(),
                    app_json,
                    commit: None,
                    description: "test".into(),
                    created_by: "admin".into(),
                },
                None,
            )
            .await
            .unwrap()
    }

    async fn app(&self) -> App {
        self.store.app(&self.app.name).await.unwrap().unwrap()
    }

    fn backends(&self) -> Vec<String> {
        let sites = self.deployer.sites.lock().unwrap();
        sites
            .get(&self.app.name)
            .into_iter()
            .flatten()
            .map(|b| format!("{} {}", b.dyno, b.addr))
            .collect()
    }

    fn service(&self, process: &str) -> String {
        format!("slipway-{}-{process}", self.app.name)
    }
}

fn health_checked() -> AppJson {
    serde_json::from_str(
        r#"{"healthchecks": {"web": [{"type": "startup", "path": "/health", "content": "it's ok",
            "attempts": 4, "wait": 2, "timeout": 3, "initialDelay": 1}]}}"#,
    )
    .unwrap()
}

#[tokio::test]
async fn a_deploy_runs_one_service_per_process_type_with_its_spec() {
    let t = Setup::new("swarmy").await;
    t.formation("web", 2, None).await;
    t.formation("worker", 1, Some(256 << 20)).await;
    let release = t
        .release(
            0,
            &[
                ("web", "python3 server.py"),
                ("worker", "python3 worker.py"),
            ],
            health_checked(),
        )
        .await;

    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();

    assert_eq!(t.engine.services(), [t.service("web"), t.service("worker")]);
    let web = t.engine.service_spec(&t.service("web")).unwrap();
    assert_eq!(web.mode, ServiceMode::Replicated(2));
    assert_eq!(web.published_port, Some(5000));
    assert_eq!(web.container.image, "slipway/swarmy:1.0.0");
    assert_eq!(web.container.network.as_deref(), Some("slipway-swarmy"));
    assert_eq!(web.slot_env["DYNO"], "web.");
    assert_eq!(web.container.env["PORT"], "5000");
    assert_eq!(web.container.env["SLIPWAY_RELEASE"], "1.0.0");
    assert_eq!(web.container.env["SLIPWAY_STOP_DELAY"], "3");
    assert_eq!(web.labels[labels::APP], "swarmy");
    assert_eq!(web.labels[labels::INSTANCE], "test");
    assert_eq!(web.labels[labels::ROLE], "process");
    assert_eq!(web.labels[labels::PROCESS], "web");
    assert_eq!(web.container.labels[labels::RELEASE], "1.0.0");
    assert!(!web.container.labels.contains_key(labels::INDEX));
    assert_eq!(web.stop_grace, Duration::from_secs(33));
    assert_eq!(web.container.cmd[3], "slipway-stop-delay");
    assert_eq!(web.container.cmd.last().unwrap(), "python3 server.py");
    let health = web.health.unwrap();
    assert_eq!(
        health.shell,
        "curl -fsS --max-time 3 -H 'Host: swarmy.localhost' 'http://127.0.0.1:5000/health' \
         | grep -qF -- 'it'\\''s ok'"
    );
    assert_eq!(health.retries, 4);
    assert_eq!(health.interval, Duration::from_secs(2));
    assert_eq!(health.timeout, Duration::from_secs(4));
    assert_eq!(health.start_period, Duration::from_secs(61));

    let worker = t.engine.service_spec(&t.service("worker")).unwrap();
    assert_eq!(worker.mode, ServiceMode::Replicated(1));
    assert_eq!(worker.published_port, None);
    assert_eq!(worker.health, None);
    assert_eq!(worker.container.memory_bytes, Some(256 << 20));
    assert_eq!(worker.slot_env["DYNO"], "worker.");
    assert!(!worker.container.env.contains_key("PORT"));

    assert_eq!(
        t.app().await.current_release,
        Some(release.id),
        "the release is live"
    );
    let backends = t.backends();
    assert_eq!(backends.len(), 2, "{backends:?}");
    assert!(backends[0].starts_with("web.1 127.0.0.1:"), "{backends:?}");
    assert!(backends[1].starts_with("web.2 127.0.0.1:"), "{backends:?}");
}

#[tokio::test]
async fn a_web_process_without_checks_is_checked_by_connecting_to_its_port() {
    let t = Setup::new("tcpcheck").await;
    t.formation("web", 1, None).await;
    let app_json = AppJson {
        port: Some(8080),
        ..AppJson::default()
    };
    let release = t.release(0, &[("web", "serve")], app_json).await;
    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();
    let web = t.engine.service_spec(&t.service("web")).unwrap();
    assert_eq!(web.published_port, Some(8080));
    let health = web.health.unwrap();
    assert_eq!(health.shell, "bash -c '</dev/tcp/127.0.0.1/8080'");
    assert_eq!(health.start_period, Duration::from_secs(60));
}

#[tokio::test]
async fn a_failed_update_fails_the_release_and_undoes_the_services_changed_before_it() {
    let t = Setup::new("undo").await;
    t.formation("web", 1, None).await;
    t.formation("worker", 1, None).await;
    let first = t
        .release(0, &[("worker", "work")], AppJson::default())
        .await;
    t.deployer
        .deploy(&t.app, &first, &Progress::none())
        .await
        .unwrap();
    assert_eq!(t.engine.services(), [t.service("worker")]);

    let second = t
        .release(
            1,
            &[("web", "serve"), ("worker", "work")],
            AppJson::default(),
        )
        .await;
    t.engine.fail_updates_to(&second.image);
    let error = t
        .deployer
        .deploy(&t.app().await, &second, &Progress::none())
        .await
        .unwrap_err()
        .to_string();

    assert!(
        error.starts_with("automatic rollback: Swarm rolled worker back"),
        "{error}"
    );
    assert!(error.contains("unhealthy container"), "{error}");
    // The web service this deploy created is gone; the worker runs the first release.
    assert_eq!(t.engine.services(), [t.service("worker")]);
    let worker = t.engine.service_spec(&t.service("worker")).unwrap();
    assert_eq!(worker.container.image, first.image);
    let releases = t.store.releases(t.app.id).await.unwrap();
    let failed = releases.iter().find(|r| r.id == second.id).unwrap();
    assert_eq!(failed.status, ReleaseStatus::Failed);
    assert_eq!(t.app().await.current_release, Some(first.id));
    assert!(t.backends().is_empty());
}

#[tokio::test]
async fn scaling_changes_the_replicas_and_routes_only_serving_tasks() {
    let t = Setup::new("scaled").await;
    t.formation("web", 1, None).await;
    t.formation("worker", 1, None).await;
    let release = t
        .release(
            0,
            &[("web", "serve"), ("worker", "work")],
            AppJson::default(),
        )
        .await;
    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();
    let app = t.app().await;
    let web: ProcessType = "web".parse().unwrap();

    t.deployer
        .scale(&app, &web, 3, None, &Progress::none())
        .await
        .unwrap();
    let spec = t.engine.service_spec(&t.service("web")).unwrap();
    assert_eq!(spec.mode, ServiceMode::Replicated(3));
    assert_eq!(t.backends().len(), 3, "{:?}", t.backends());

    t.deployer
        .scale(&app, &web, 1, None, &Progress::none())
        .await
        .unwrap();
    let backends = t.backends();
    assert_eq!(
        backends.len(),
        1,
        "the shut down tasks left the routes: {backends:?}"
    );
    assert!(backends[0].starts_with("web.1 "), "{backends:?}");
    let processes = t.deployer.processes(&app).await.unwrap();
    let dynos: Vec<&str> = processes.iter().map(|p| p.dyno.as_str()).collect();
    assert_eq!(dynos, ["web.1", "worker.1"]);
    assert!(processes.iter().all(|p| p.state == ProcessState::Up));
    assert!(processes.iter().all(|p| p.release == "1.0.0"));

    t.deployer
        .scale(&app, &"worker".parse().unwrap(), 0, None, &Progress::none())
        .await
        .unwrap();
    assert_eq!(t.engine.services(), [t.service("web")]);
    let (running, _) = t.deployer.usage(&app).await.unwrap();
    assert_eq!(running, 1);
}

#[tokio::test]
async fn a_restart_routes_the_new_tasks_and_none_of_the_old() {
    let t = Setup::new("restarted").await;
    t.formation("web", 2, None).await;
    let release = t.release(0, &[("web", "serve")], AppJson::default()).await;
    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();
    let before = t.backends();
    assert_eq!(before.len(), 2, "{before:?}");

    t.deployer
        .restart(&t.app().await, None, &Progress::none())
        .await
        .unwrap();
    let after = t.backends();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(
        after.iter().all(|backend| !before.contains(backend)),
        "an old task is still routed: {before:?} then {after:?}"
    );
}

#[tokio::test]
async fn a_failing_release_command_fails_the_release_before_any_service_changes() {
    let t = Setup::new("migrate").await;
    t.formation("web", 1, None).await;
    let release = t
        .release(
            0,
            &[("web", "serve"), ("release", "migrate")],
            AppJson::default(),
        )
        .await;
    t.engine.script_output(
        "slipway-migrate-release-1-0-0",
        vec![OutputChunk {
            stream: OutputStream::Stdout,
            bytes: "migrating\nno database\n".into(),
        }],
        3,
    );
    let (lines, mut said) = mpsc::channel(100);

    let error = t
        .deployer
        .deploy(&t.app, &release, &Progress::to(lines))
        .await
        .unwrap_err()
        .to_string();

    assert_eq!(
        error,
        "release phase failed: release command exited with status 3"
    );
    let mut output = Vec::new();
    while let Ok(line) = said.try_recv() {
        output.push(line);
    }
    assert!(
        output.contains(&"       migrating".to_owned()),
        "{output:?}"
    );
    assert!(
        output.contains(&"       no database".to_owned()),
        "{output:?}"
    );
    assert!(t.engine.services().is_empty(), "{:?}", t.engine.services());
}

#[tokio::test]
async fn canary_releases_are_refused() {
    let t = Setup::new("canaried").await;
    t.formation("web", 1, None).await;
    let first = t.release(0, &[("web", "serve")], AppJson::default()).await;
    t.deployer
        .deploy(&t.app, &first, &Progress::none())
        .await
        .unwrap();
    t.store
        .set_canary_policy(
            t.app.id,
            &slipway_types::canary::CanaryPolicy {
                percent: 10,
                duration_secs: 60,
                max_error_basis_points: 100,
                max_p99_ms: None,
                sticky: false,
            },
        )
        .await
        .unwrap();
    let second = t.release(1, &[("web", "serve")], AppJson::default()).await;
    let error = t
        .deployer
        .deploy(&t.app().await, &second, &Progress::none())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(error, "canary releases need --runtime docker");
}

#[test]
fn the_stop_delay_runs_the_launch_command_as_a_child() {
    let command = super::stop_delay_command("gunicorn app:app");
    assert_eq!(command[..2], ["/bin/bash", "-c"]);
    assert!(command[2].contains("sleep \"${SLIPWAY_STOP_DELAY:-0}\""));
    assert_eq!(
        command[4..],
        slipway_builder::launch_command("gunicorn app:app")[..]
    );
}

#[test]
fn service_names_fit_swarms_63_characters_and_stay_apart() {
    let short: slipway_types::AppName = "hello".parse().unwrap();
    assert_eq!(
        super::service_name(&short, &ProcessType::web()),
        "slipway-hello-web"
    );

    let app: slipway_types::AppName = "a".repeat(30).parse().unwrap();
    let worker: ProcessType = format!("{}-1", "w".repeat(28)).parse().unwrap();
    let other: ProcessType = format!("{}-2", "w".repeat(28)).parse().unwrap();
    let name = super::service_name(&app, &worker);
    assert_eq!(name.len(), 63, "{name}");
    assert_eq!(
        name,
        super::service_name(&app, &worker),
        "the same every time"
    );
    assert_ne!(name, super::service_name(&app, &other));
    assert!(name.starts_with(&format!("slipway-{app}-www")), "{name}");
    assert!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "{name}"
    );

    let trailing: ProcessType = "worker_".parse().unwrap();
    let name = super::service_name(&short, &trailing);
    assert!(name.starts_with("slipway-hello-worker-"), "{name}");
    assert!(
        name.ends_with(|c: char| c.is_ascii_alphanumeric()),
        "{name}"
    );

    let long = super::fit_service_name(format!("slipway-{app}-release-1-200-0-rc-12345"));
    assert!(long.len() <= 63, "{long}");
}

#[tokio::test]
async fn with_a_registry_services_run_the_pushed_image_by_digest_and_it_is_pushed_once() {
    let t = Setup::with_registry("pushy", Some("127.0.0.1:5000/team")).await;
    t.formation("web", 1, None).await;
    t.formation("worker", 1, None).await;
    let release = t
        .release(
            0,
            &[("web", "serve"), ("worker", "work"), ("release", "migrate")],
            AppJson::default(),
        )
        .await;

    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();

    let remote = "127.0.0.1:5000/team/slipway/pushy:1.0.0";
    let pushes = || {
        t.engine
            .calls()
            .into_iter()
            .filter(|call| matches!(call, Call::PushImage { .. }))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pushes(),
        [Call::PushImage {
            reference: remote.to_owned()
        }],
        "pushed once for the release command and both services"
    );
    assert!(t.engine.calls().contains(&Call::TagImage {
        source: "slipway/pushy:1.0.0".to_owned(),
        reference: remote.to_owned(),
    }));
    let release_job = t
        .engine
        .calls()
        .into_iter()
        .find_map(|call| match call {
            Call::DeployService { spec } if spec.mode == ServiceMode::Job => Some(spec),
            _ => None,
        })
        .expect("the release command ran as a job");
    let web = t.engine.service_spec(&t.service("web")).unwrap();
    let worker = t.engine.service_spec(&t.service("worker")).unwrap();
    let (name, digest) = web.container.image.split_once('@').unwrap();
    assert_eq!(name, remote);
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(worker.container.image, web.container.image);
    assert_eq!(release_job.container.image, web.container.image);

    t.engine.clear_calls();
    t.deployer.reconcile_all().await.unwrap();
    t.deployer
        .scale(
            &t.app().await,
            &"worker".parse().unwrap(),
            2,
            None,
            &Progress::none(),
        )
        .await
        .unwrap();
    assert!(pushes().is_empty(), "{:?}", t.engine.calls());
    assert!(
        !t.engine.calls().iter().any(
            |call| matches!(call, Call::DeployService { spec } if spec.container.name == t.service("web"))
        ),
        "reconciling finds the pinned service up to date"
    );
}

#[tokio::test]
async fn what_a_services_tasks_print_reaches_the_apps_log_as_its_process() {
    let t = Setup::new("chatty").await;
    t.formation("web", 1, None).await;
    let release = t
        .release(0, &[("web", "python3 server.py")], AppJson::default())
        .await;
    t.engine.script_output(
        &t.service("web"),
        vec![OutputChunk {
            stream: OutputStream::Stdout,
            bytes: "listening on 5000\nready".into(),
        }],
        0,
    );

    t.deployer
        .deploy(&t.app, &release, &Progress::none())
        .await
        .unwrap();

    let app_output = crate::logs::LogFilter {
        source: Some(crate::logs::LogSource::App),
        ..crate::logs::LogFilter::default()
    };
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = t
            .deployer
            .logs
            .recent(&t.app.name, 100, &app_output)
            .into_iter()
            .filter(|line| line.process == "web")
            .map(|line| line.text)
            .collect();
        if lines.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lines, ["listening on 5000", "ready"]);
}
