//! `Swarm` for `DockerEngine` against the local swarm, which must be initialised with this
//! engine as a manager. Services run `slipway/stack:trixie`; every service and network has a
//! unique name and is removed at the end, even when the test fails.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use slipway_engine::{
    Availability, ContainerEngine, DockerEngine, EngineError, HealthCheck, NodeRole, OutputStream,
    ServiceMode, ServiceSpec, Swarm, TaskState, UpdateState,
};
use slipway_types::ContainerSpec;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLock;

use crate::support::Scratch;

const STACK: &str = "slipway/stack:trixie";

/// The port the test web services listen on inside their tasks.
const WEB_PORT: u16 = 8000;

/// Longest wait for the swarm to reach a state (tasks start, an update rolls, a job ends).
const DEADLINE: Duration = Duration::from_secs(180);

/// Between two looks at the swarm.
const POLL: Duration = Duration::from_millis(500);

/// A node's availability is shared by every service on the machine: the test that drains the
/// node holds this exclusively, the others share it, so none of them runs during a drain.
static NODE: RwLock<()> = RwLock::const_new(());

/// A scratch space on an engine that is a swarm manager; fails loudly otherwise.
async fn swarm_scratch(test: &str) -> Scratch {
    let scratch = Scratch::new(test).await;
    let status = scratch
        .engine
        .swarm_status()
        .await
        .unwrap_or_else(|error| panic!("reading the swarm status: {error}"));
    match status {
        Some(status) if status.manager => scratch,
        _ => panic!(
            "these tests need the Docker engine to be a swarm manager: run `docker swarm init \
             --advertise-addr 127.0.0.1`"
        ),
    }
}

/// Polls `check` until it gives a value, at most until [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    let attempts = DEADLINE.as_millis() / POLL.as_millis();
    for _ in 0..attempts {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > DEADLINE {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    panic!("{what}: not within {DEADLINE:?}");
}

/// A web service printing `$GREETING` at `/`, healthy once its port answers.
fn web(name: &str, network: Option<&str>, greeting: &str, replicas: u32) -> ServiceSpec {
    let script = "mkdir -p /tmp/www && printf %s \"$GREETING\" > /tmp/www/index.html && \
                  cd /tmp/www && exec python3 -m http.server 8000";
    ServiceSpec {
        container: ContainerSpec {
            name: name.to_owned(),
            image: STACK.to_owned(),
            cmd: vec!["bash".to_owned(), "-c".to_owned(), script.to_owned()],
            env: BTreeMap::from([("GREETING".to_owned(), greeting.to_owned())]),
            labels: BTreeMap::from([("slipway.test.task".to_owned(), name.to_owned())]),
            network: network.map(str::to_owned),
            memory_bytes: Some(256 * 1024 * 1024),
            ..ContainerSpec::default()
        },
        labels: BTreeMap::from([("slipway.test".to_owned(), name.to_owned())]),
        slot_env: BTreeMap::new(),
        mode: ServiceMode::Replicated(replicas),
        health: Some(health("bash -c 'exec 3<>/dev/tcp/127.0.0.1/8000'")),
        published_port: Some(WEB_PORT),
        constraints: vec!["node.role==manager".to_owned()],
        stop_grace: Duration::from_secs(2),
    }
}

fn health(shell: &str) -> HealthCheck {
    HealthCheck {
        shell: shell.to_owned(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retries: 3,
        start_period: Duration::ZERO,
    }
}

/// A one-task job running `script` with bash.
fn job(name: &str, script: &str) -> ServiceSpec {
    ServiceSpec {
        container: ContainerSpec {
            name: name.to_owned(),
            image: STACK.to_owned(),
            cmd: vec!["bash".to_owned(), "-c".to_owned(), script.to_owned()],
            ..ContainerSpec::default()
        },
        labels: BTreeMap::new(),
        slot_env: BTreeMap::new(),
        mode: ServiceMode::Job,
        health: None,
        published_port: None,
        constraints: Vec::new(),
        stop_grace: Duration::from_secs(1),
    }
}

async fn deploy(scratch: &Scratch, spec: &ServiceSpec) {
    scratch.track_service(&spec.container.name);
    scratch
        .engine
        .deploy_service(spec)
        .await
        .unwrap_or_else(|error| panic!("deploying `{}`: {error}", spec.container.name));
}

async fn tasks(engine: &DockerEngine, service: &str) -> Vec<TaskState> {
    engine
        .tasks(service)
        .await
        .unwrap_or_else(|error| panic!("tasks of `{service}`: {error}"))
}

/// Waits for exactly `count` serving tasks and returns them.
async fn serving(engine: &DockerEngine, service: &str, count: usize) -> Vec<TaskState> {
    eventually(&format!("{count} serving tasks of `{service}`"), || async {
        let serving: Vec<TaskState> = tasks(engine, service)
            .await
            .into_iter()
            .filter(TaskState::serving)
            .collect();
        (serving.len() == count).then_some(serving)
    })
    .await
}

/// What a task answers at `/`, through its published port on its node.
async fn fetch(task: &TaskState) -> String {
    let addr = task
        .node_addr
        .expect("a serving task has its node's address");
    let port = task
        .published_port
        .expect("a serving task has its published port");
    let attempt = async {
        let mut stream = TcpStream::connect((addr, port)).await?;
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            .await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| panic!("{addr}:{port} did not answer within 10 s"))
        .unwrap_or_else(|error| panic!("fetching from {addr}:{port}: {error}"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response from {addr}:{port}: {response:?}"));
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    body.to_owned()
}

/// Waits until the service's last update is in `state`, and returns its message.
async fn update_reaches(
    engine: &DockerEngine,
    service: &str,
    state: &UpdateState,
) -> Option<String> {
    eventually(
        &format!("update of `{service}` reaching {state:?}"),
        || async {
            let update = engine
                .service(service)
                .await
                .unwrap_or_else(|error| panic!("inspecting `{service}`: {error}"))
                .unwrap_or_else(|| panic!("service `{service}` is gone"))
                .update?;
            (update.state == *state).then_some(update.message)
        },
    )
    .await
}

/// A job's stdout and stderr, until its output ends with it.
async fn job_output(engine: &DockerEngine, name: &str) -> (String, String) {
    let collected = engine.service_output(name, None).try_fold(
        (String::new(), String::new()),
        |(mut stdout, mut stderr), chunk| async move {
            let text = String::from_utf8_lossy(&chunk.bytes);
            match chunk.stream {
                OutputStream::Stdout => stdout.push_str(&text),
                OutputStream::Stderr => stderr.push_str(&text),
            }
            Ok((stdout, stderr))
        },
    );
    tokio::time::timeout(DEADLINE, collected)
        .await
        .unwrap_or_else(|_| panic!("the output of `{name}` did not end within {DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("the output of `{name}`: {error}"))
}

/// Every serving task answers `greeting`.
async fn all_answer(tasks: &[TaskState], greeting: &str) {
    for task in tasks {
        assert_eq!(fetch(task).await, greeting, "task {}", task.id);
    }
}

#[tokio::test]
async fn a_service_updates_rolls_back_on_request_and_restarts() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("svc-one").await;
    let engine = &scratch.engine;
    let network = scratch.name("net");
    scratch.track_network(&network);
    engine
        .ensure_overlay_network(&network, &BTreeMap::new())
        .await
        .expect("creates the overlay network");
    let name = scratch.name("web");

    deploy(&scratch, &web(&name, Some(&network), "one", 1)).await;
    let first = serving(engine, &name, 1).await;
    all_answer(&first, "one").await;
    assert_eq!(first[0].slot, Some(1));
    assert_eq!(first[0].image, STACK);
    assert_eq!(first[0].labels["slipway.test.task"], name);
    assert!(first[0].container_id.is_some());
    let state = engine
        .service(&name)
        .await
        .expect("inspects")
        .expect("exists");
    assert_eq!(state.name, name);
    assert_eq!(state.image, STACK);
    assert_eq!(state.replicas, Some(1));
    assert_eq!(state.labels["slipway.test"], name);
    assert_eq!(state.container_labels["slipway.test.task"], name);
    assert_eq!(state.update, None, "never updated");
    let listed = engine
        .list_services(&[("slipway.test", &name)])
        .await
        .expect("lists");
    assert_eq!(listed.iter().map(|s| &s.name).collect::<Vec<_>>(), [&name]);

    let started = Instant::now();
    deploy(&scratch, &web(&name, Some(&network), "two", 1)).await;
    update_reaches(engine, &name, &UpdateState::Completed).await;
    eprintln!("figure: update of 1 task took {:?}", started.elapsed());
    all_answer(&serving(engine, &name, 1).await, "two").await;

    let started = Instant::now();
    engine.rollback_service(&name).await.expect("rolls back");
    update_reaches(engine, &name, &UpdateState::RollbackCompleted).await;
    eprintln!(
        "figure: requested rollback of 1 task took {:?}",
        started.elapsed()
    );
    let rolled_back = serving(engine, &name, 1).await;
    all_answer(&rolled_back, "one").await;

    engine.restart_service(&name).await.expect("restarts");
    update_reaches(engine, &name, &UpdateState::Completed).await;
    let restarted = serving(engine, &name, 1).await;
    assert_ne!(restarted[0].id, rolled_back[0].id, "a fresh task");
    all_answer(&restarted, "one").await;

    engine.remove_service(&name).await.expect("removes");
    engine
        .remove_service(&name)
        .await
        .expect("removing a missing service is fine");
    assert_eq!(engine.service(&name).await.expect("inspects"), None);
}

#[tokio::test]
async fn a_scaled_service_updates_and_rolls_back_a_failing_update_by_itself() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("svc-three").await;
    let engine = &scratch.engine;
    let name = scratch.name("web");

    deploy(&scratch, &web(&name, None, "one", 1)).await;
    serving(engine, &name, 1).await;
    engine.scale_service(&name, 3).await.expect("scales");
    let scaled = serving(engine, &name, 3).await;
    all_answer(&scaled, "one").await;
    let slots: BTreeSet<Option<u32>> = scaled.iter().map(|task| task.slot).collect();
    assert_eq!(slots, BTreeSet::from([Some(1), Some(2), Some(3)]));
    let ports: BTreeSet<Option<u16>> = scaled.iter().map(|task| task.published_port).collect();
    assert_eq!(ports.len(), 3, "each task has its own node port: {ports:?}");
    assert_eq!(
        engine
            .service(&name)
            .await
            .expect("inspects")
            .expect("exists")
            .replicas,
        Some(3)
    );

    let started = Instant::now();
    deploy(&scratch, &web(&name, None, "two", 3)).await;
    update_reaches(engine, &name, &UpdateState::Completed).await;
    eprintln!("figure: update of 3 tasks took {:?}", started.elapsed());
    let updated = serving(engine, &name, 3).await;
    all_answer(&updated, "two").await;

    let failing = ServiceSpec {
        health: Some(health("exit 1")),
        ..web(&name, None, "three", 3)
    };
    let started = Instant::now();
    deploy(&scratch, &failing).await;
    let message = update_reaches(engine, &name, &UpdateState::RollbackCompleted).await;
    eprintln!(
        "figure: failing update of 3 tasks rolled back in {:?}",
        started.elapsed()
    );
    let message = message.expect("swarm says where the rollback stands");
    assert!(message.contains("rollback"), "{message}");
    let failed = tasks(engine, &name)
        .await
        .into_iter()
        .filter(|task| task.error.is_some() && task.desired_state == "shutdown")
        .count();
    assert!(failed >= 1, "the failed new task is listed with its error");
    let kept = serving(engine, &name, 3).await;
    all_answer(&kept, "two").await;
    let kept_ids: BTreeSet<&str> = kept.iter().map(|task| task.id.as_str()).collect();
    let updated_ids: BTreeSet<&str> = updated.iter().map(|task| task.id.as_str()).collect();
    assert_eq!(kept_ids, updated_ids, "the old tasks kept serving");
}

#[tokio::test]
async fn env_values_reach_the_tasks_as_written_and_slot_variables_name_the_slot() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("env").await;
    let engine = &scratch.engine;
    let name = scratch.name("env");
    let written = "a{{b}}c {{.Task.Slot}} }}{{{";
    let mut spec = web(&name, None, written, 2);
    spec.slot_env = BTreeMap::from([("DYNO".to_owned(), "web{{.".to_owned())]);
    spec.container.cmd[2] = spec.container.cmd[2].replace("\"$GREETING\"", "\"$GREETING|$DYNO\"");
    deploy(&scratch, &spec).await;

    let mut answers = Vec::new();
    for task in serving(engine, &name, 2).await {
        let slot = task.slot.expect("a replica has a slot");
        answers.push((slot, fetch(&task).await));
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            (1, format!("{written}|web{{{{.1")),
            (2, format!("{written}|web{{{{.2")),
        ]
    );
}

#[tokio::test]
async fn a_job_runs_to_completion_and_its_output_is_readable() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("job").await;
    let engine = &scratch.engine;
    let done = scratch.name("done");
    let failed = scratch.name("failed");
    deploy(
        &scratch,
        &job(
            &done,
            "echo hello-from-job; echo to-stderr >&2; sleep 2; echo bye",
        ),
    )
    .await;
    deploy(&scratch, &job(&failed, "exit 3")).await;

    // Read from the start, while the job runs: the stream ends once the job has.
    let (stdout, stderr) = job_output(engine, &done).await;
    assert_eq!(stdout, "hello-from-job\nbye\n");
    assert_eq!(stderr, "to-stderr\n");

    let task = eventually("the job's task completing", || async {
        let tasks = tasks(engine, &done).await;
        tasks.into_iter().find(|task| task.state == "complete")
    })
    .await;
    assert_eq!(task.exit_code, Some(0));
    assert_eq!(task.slot, None, "a job's task has no replica slot");
    assert!(!task.serving());
    let state = engine
        .service(&done)
        .await
        .expect("inspects")
        .expect("exists");
    assert_eq!(state.replicas, None, "a job has no replica count");
    assert_eq!(
        job_output(engine, &done).await,
        ("hello-from-job\nbye\n".to_owned(), "to-stderr\n".to_owned()),
        "read again once it ended, the same output"
    );

    let task = eventually("the failing job's task ending", || async {
        let tasks = tasks(engine, &failed).await;
        tasks.into_iter().find(|task| task.state == "failed")
    })
    .await;
    assert_eq!(task.exit_code, Some(3));
    assert!(task.error.is_some(), "swarm says why it failed");
    assert_eq!(
        tasks(engine, &failed).await.len(),
        1,
        "a failed job is not restarted"
    );

    for name in [&done, &failed] {
        engine.remove_service(name).await.expect("removes the job");
        let left = engine
            .list_containers(&[("com.docker.swarm.service.name", name)])
            .await
            .expect("lists containers");
        assert!(
            left.is_empty(),
            "the job's container is removed too: {left:?}"
        );
    }
}

#[tokio::test]
async fn an_overlay_network_is_ensured_once_and_plain_containers_join_it() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("overlay").await;
    let engine = &scratch.engine;
    let network = scratch.name("net");
    scratch.track_network(&network);
    let labels = BTreeMap::from([("slipway.app".to_owned(), "overlay".to_owned())]);
    engine
        .ensure_overlay_network(&network, &labels)
        .await
        .expect("creates");
    engine
        .ensure_overlay_network(&network, &labels)
        .await
        .expect("ensuring again is fine");

    let spec = ContainerSpec {
        name: scratch.name("plain"),
        image: STACK.to_owned(),
        cmd: vec!["sleep".to_owned(), "1000".to_owned()],
        network: Some(network.clone()),
        ..ContainerSpec::default()
    };
    let id = scratch.run(&spec).await;
    let state = engine.inspect(&id).await.expect("inspects");
    assert!(state.addresses.contains_key(&network), "{state:?}");
    engine.remove_container(&id).await.expect("removes");

    let bridge = scratch.name("bridge");
    scratch.track_network(&bridge);
    engine
        .ensure_network(&bridge, &labels)
        .await
        .expect("creates a bridge network");
    let error = engine
        .ensure_overlay_network(&bridge, &labels)
        .await
        .expect_err("a bridge network of that name is in the way");
    let message = error.to_string();
    assert!(
        message.contains(&bridge) && message.contains("bridge"),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

/// Sets the node back to active when dropped, even when the test panicked: a drained node
/// would stop every other service on this machine.
struct Reactivate {
    node: String,
}

impl Drop for Reactivate {
    fn drop(&mut self) {
        let node = self.node.clone();
        let restore = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("restore runtime");
            runtime.block_on(async {
                let engine = DockerEngine::connect().await?;
                engine
                    .set_node_availability(&node, Availability::Active)
                    .await
            })
        });
        match restore.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("SETTING NODE `{}` ACTIVE AGAIN FAILED: {error}", self.node)
            }
            Err(_) => eprintln!("setting node `{}` active again panicked", self.node),
        }
    }
}

#[tokio::test]
async fn this_node_is_the_leading_manager_and_draining_it_moves_tasks_off() {
    let _exclusive = NODE.write().await;
    let scratch = swarm_scratch("drain").await;
    let engine = &scratch.engine;
    let status = engine
        .swarm_status()
        .await
        .expect("status")
        .expect("in a swarm");
    let nodes = engine.nodes().await.expect("lists nodes");
    let node = nodes
        .iter()
        .find(|node| node.id == status.node_id)
        .unwrap_or_else(|| panic!("this node `{}` among {nodes:?}", status.node_id));
    assert_eq!(node.role, NodeRole::Manager);
    assert!(node.leader);
    assert_eq!(node.state, "ready");
    assert_eq!(node.availability, Availability::Active);
    assert!(node.addr.parse::<IpAddr>().is_ok(), "{}", node.addr);
    assert!(!node.engine_version.is_empty());

    let name = scratch.name("sleeper");
    let mut spec = job(&name, "exec sleep 1000");
    spec.mode = ServiceMode::Replicated(1);
    deploy(&scratch, &spec).await;
    serving(engine, &name, 1).await;

    let _reactivate = Reactivate {
        node: node.id.clone(),
    };
    engine
        .set_node_availability(&node.hostname, Availability::Drain)
        .await
        .expect("drains by hostname");
    eventually("the task leaving the drained node", || async {
        let tasks = tasks(engine, &name).await;
        tasks
            .iter()
            .all(|task| task.desired_state != "running" || task.state != "running")
            .then_some(())
    })
    .await;
    let drained = engine.nodes().await.expect("lists nodes");
    assert!(
        drained
            .iter()
            .any(|n| n.id == node.id && n.availability == Availability::Drain)
    );

    engine
        .set_node_availability(&node.id, Availability::Active)
        .await
        .expect("activates by id");
    serving(engine, &name, 1).await;
    assert!(matches!(
        engine
            .set_node_availability("no-such-node", Availability::Active)
            .await,
        Err(EngineError::NotFound { kind: "node", .. })
    ));
}

/// The registry `deploy/test.sh` starts: Debian's docker-registry, anonymous, plain HTTP.
const TEST_REGISTRY: &str = "127.0.0.1:5000";

#[tokio::test]
async fn a_pushed_image_runs_as_a_service_by_digest_on_a_node_that_lost_it() {
    let _shared = NODE.read().await;
    let scratch = swarm_scratch("registry").await;
    let engine = &scratch.engine;
    let local = scratch
        .busybox_image(&slipway_engine::ImageConfig::default())
        .await;
    let remote = format!("{TEST_REGISTRY}/{local}");
    scratch.track_image(&remote);
    engine
        .tag_image(&local, &remote)
        .await
        .expect("names the image for the registry");
    let digest = engine.push_image(&remote).await.unwrap_or_else(|error| {
        panic!(
            "pushing to the test registry (deploy/test.sh starts it on {TEST_REGISTRY}): {error}"
        )
    });
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(
        engine.push_image(&remote).await.expect("pushes again"),
        digest,
        "the same image has the same digest"
    );

    let unreachable = format!("127.0.0.1:9/{local}");
    scratch.track_image(&unreachable);
    engine
        .tag_image(&local, &unreachable)
        .await
        .expect("names the image for a registry that is not there");
    let error = engine
        .push_image(&unreachable)
        .await
        .expect_err("nothing listens on port 9");
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "pushing `{unreachable}` to registry `127.0.0.1:9`: "
        )),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
    engine
        .remove_image(&unreachable)
        .await
        .expect("removes a name");

    // This node forgets the image entirely: the task must pull it from the registry.
    let pinned = format!("{remote}@{digest}");
    scratch.track_image(&pinned);
    engine.remove_image(&remote).await.expect("removes a name");
    engine
        .remove_image(&local)
        .await
        .expect("removes the image");
    assert!(!engine.image_exists(&pinned).await.expect("inspects"));

    let name = scratch.name("pulled");
    let mut spec = job(&name, "");
    spec.container.image = pinned.clone();
    spec.container.cmd = vec![
        "sh".to_owned(),
        "-c".to_owned(),
        "echo pulled-and-ran".to_owned(),
    ];
    deploy(&scratch, &spec).await;
    let (stdout, _) = job_output(engine, &name).await;
    assert_eq!(stdout, "pulled-and-ran\n");
    let state = engine
        .service(&name)
        .await
        .expect("inspects")
        .expect("exists");
    assert_eq!(
        state.image, pinned,
        "the service names the pinned reference"
    );
    assert!(engine.image_exists(&pinned).await.expect("inspects"));
}
