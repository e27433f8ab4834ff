//! Add-on servers as Swarm services (`--runtime swarm`): one replica, pinned to the node
//! that holds its volume (volumes are node-local), on the app's overlay network under the
//! name a container would have had, so the app's URL is the same. The host cannot reach
//! overlay addresses, so every probe runs as a job container on the attachable overlay.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use slipway_engine::{
    ContainerEngine, EngineError, ServiceMode, ServiceSpec, Swarm, SwarmStatus, TaskState,
};
use slipway_types::ContainerSpec;
use tokio::time::Instant;

use crate::provisioner::{engine_error, exited};
use crate::{AddonError, AddonInstance};

/// Pause between two looks at a service's tasks: each look is a few API calls.
const TASK_POLL: Duration = Duration::from_millis(250);

/// Between SIGTERM and SIGKILL when Swarm stops the server: time to flush and close cleanly.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(30);

/// How long a removed service's container may take to go, beyond its stop grace, before it
/// is removed by force.
const GONE_MARGIN: Duration = Duration::from_secs(30);

/// The service for a server container: one replica that Swarm restarts whenever it exits,
/// pinned to `node`, with the container's own labels on the service too.
pub(crate) fn spec(
    addon: &AddonInstance,
    container: ContainerSpec,
    node: &SwarmStatus,
) -> ServiceSpec {
    ServiceSpec {
        container,
        labels: addon.server_labels(),
        slot_env: BTreeMap::new(),
        mode: ServiceMode::Replicated(1),
        health: None,
        published_port: None,
        constraints: vec![format!("node.id=={}", node.node_id)],
        stop_grace: STOP_GRACE,
    }
}

/// This engine's place in the swarm; only a manager creates services.
pub(crate) async fn manager(
    swarm: &dyn Swarm,
    addon: &AddonInstance,
) -> Result<SwarmStatus, AddonError> {
    match swarm.swarm_status().await.map_err(engine_error(addon))? {
        Some(status) if status.manager => Ok(status),
        _ => Err(AddonError::NoSwarm {
            addon: addon.display_name(),
        }),
    }
}

/// Whether a task of the add-on's service runs and Swarm means it to; `false` when there is
/// no service.
pub(crate) async fn serving(swarm: &dyn Swarm, addon: &AddonInstance) -> Result<bool, AddonError> {
    if swarm
        .service(&addon.container_name)
        .await
        .map_err(engine_error(addon))?
        .is_none()
    {
        return Ok(false);
    }
    let tasks = swarm
        .tasks(&addon.container_name)
        .await
        .map_err(engine_error(addon))?;
    Ok(tasks.iter().any(TaskState::serving))
}

/// Tasks that already ended: a wait ignores them, since Swarm replaced them.
pub(crate) fn ended(tasks: &[TaskState]) -> HashSet<String> {
    tasks
        .iter()
        .filter(|task| ended_state(&task.state))
        .map(|task| task.id.clone())
        .collect()
}

fn ended_state(state: &str) -> bool {
    matches!(
        state,
        "complete" | "failed" | "shutdown" | "rejected" | "orphaned" | "remove"
    )
}

/// Waits until a task of the service runs. A task not in `known` that exits fails the wait
/// at once with the end of its output, and one Swarm rejects with Swarm's reason: restarting
/// a server that cannot start only repeats the failure.
pub(crate) async fn wait_serving(
    swarm: &dyn Swarm,
    engine: &dyn ContainerEngine,
    addon: &AddonInstance,
    known: &HashSet<String>,
    deadline: Instant,
    seconds: u64,
) -> Result<(), AddonError> {
    let not_ready = |reason: String| AddonError::NotReady {
        addon: addon.display_name(),
        seconds,
        reason,
    };
    let mut last = String::from("it has no task yet");
    loop {
        let tasks = swarm
            .tasks(&addon.container_name)
            .await
            .map_err(engine_error(addon))?;
        if tasks.iter().any(TaskState::serving) {
            return Ok(());
        }
        for task in tasks.iter().filter(|task| !known.contains(&task.id)) {
            match task.state.as_str() {
                "failed" | "complete" => {
                    if let Some(container) = &task.container_id {
                        let code = task.exit_code.unwrap_or(-1);
                        return Err(exited(engine, addon, container, code).await);
                    }
                    return Err(not_ready(describe(task)));
                }
                "rejected" => return Err(not_ready(describe(task))),
                _ => {}
            }
        }
        if let Some(task) = tasks
            .iter()
            .find(|task| task.desired_state == "running" && !ended_state(&task.state))
        {
            last = describe(task);
        }
        if Instant::now() + TASK_POLL >= deadline {
            return Err(not_ready(last));
        }
        tokio::time::sleep(TASK_POLL).await;
    }
}

/// `its task is pending: no suitable node (…)`.
fn describe(task: &TaskState) -> String {
    match &task.error {
        Some(error) => format!("its task is {}: {error}", task.state),
        None => format!("its task is {}", task.state),
    }
}

/// Stops and removes every server container of the add-on: one `--runtime docker` left, or
/// a task of a removed service still stopping. Called before a service is created, since two
/// servers must never share the data directory (each would take the other's lock file, PID 1
/// in another container, for a stale one).
pub(crate) async fn retire_containers(
    engine: &dyn ContainerEngine,
    addon: &AddonInstance,
) -> Result<(), AddonError> {
    let server = addon.server_labels();
    let filter: Vec<(&str, &str)> = server
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    for container in engine
        .list_containers(&filter)
        .await
        .map_err(engine_error(addon))?
    {
        tracing::info!(addon = %addon.display_name(), container = %container.name, "stopping an add-on server container before its service starts");
        if container.running {
            engine
                .stop(&container.id, STOP_GRACE)
                .await
                .map_err(engine_error(addon))?;
        }
        engine
            .remove_container(&container.id)
            .await
            .map_err(engine_error(addon))?;
    }
    Ok(())
}

/// Removes the service, then waits until its tasks' containers are gone, so that the volume
/// they mount can be removed next; one still there after the stop grace is removed by force.
pub(crate) async fn remove(
    swarm: &dyn Swarm,
    engine: &Arc<dyn ContainerEngine>,
    addon: &AddonInstance,
) -> Result<(), AddonError> {
    let name = &addon.container_name;
    if swarm
        .service(name)
        .await
        .map_err(engine_error(addon))?
        .is_none()
    {
        return Ok(());
    }
    let containers: Vec<String> = swarm
        .tasks(name)
        .await
        .map_err(engine_error(addon))?
        .into_iter()
        .filter_map(|task| task.container_id)
        .collect();
    swarm
        .remove_service(name)
        .await
        .map_err(engine_error(addon))?;
    let deadline = Instant::now() + STOP_GRACE + GONE_MARGIN;
    for container in containers {
        loop {
            match engine.inspect(&container).await {
                Err(EngineError::NotFound { .. }) => break,
                Err(error) => return Err(engine_error(addon)(error)),
                Ok(_) if Instant::now() >= deadline => {
                    tracing::warn!(addon = %addon.display_name(), %container, "a removed add-on service left its container; removing it");
                    engine
                        .remove_container(&container)
                        .await
                        .map_err(engine_error(addon))?;
                    break;
                }
                Ok(_) => tokio::time::sleep(TASK_POLL).await,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use slipway_engine::{Call, FAKE_NODE_ID, FakeEngine, OutputChunk, OutputStream};
    use slipway_types::{Mount, MountSource};

    use super::*;
    use crate::{AddonImages, AddonKind, AddonStatus, Provisioner};

    fn addon(kind: AddonKind) -> AddonInstance {
        AddonInstance::new(
            kind,
            "blog".parse().expect("valid app"),
            "main",
            "slipway-blog",
            BTreeMap::from([("slipway.instance".to_owned(), "test".to_owned())]),
        )
    }

    /// A provisioner on the fake's swarm whose jobs (readiness checks, status queries) exit
    /// at once with `stdout`.
    fn provisioner(engine: &Arc<FakeEngine>, stdout: &'static str) -> Provisioner {
        for image in ["slipway/postgres:17", "slipway/redis:8"] {
            engine.add_image(image);
            engine.script_output(
                image,
                vec![OutputChunk {
                    stream: OutputStream::Stdout,
                    bytes: Bytes::from_static(stdout.as_bytes()),
                }],
                0,
            );
        }
        Provisioner::new(
            Arc::clone(engine) as Arc<dyn ContainerEngine>,
            AddonImages::default(),
        )
        .with_swarm(Arc::clone(engine) as Arc<dyn Swarm>)
    }

    fn deployed(engine: &FakeEngine) -> Vec<ServiceSpec> {
        engine
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::DeployService { spec } => Some(spec),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn postgres_is_a_pinned_service_with_its_tls_files_written_into_a_volume() {
        let engine = Arc::new(FakeEngine::new());
        let provisioner = provisioner(&engine, "");
        let addon = addon(AddonKind::Postgres);
        provisioner.provision(&addon).await.expect("provisioned");

        let calls = engine.calls();
        assert!(calls.contains(&Call::EnsureOverlayNetwork {
            name: "slipway-blog".to_owned(),
            labels: addon.labels.clone(),
        }));
        let [spec] = &deployed(&engine)[..] else {
            panic!("one service deployed: {calls:?}")
        };
        let mut container = crate::postgres::server_spec(&addon, "slipway/postgres:17");
        container.mounts.push(Mount {
            source: MountSource::Volume("slipway-blog-addon-main-tls".to_owned()),
            target: "/var/lib/postgresql/slipway-tls".to_owned(),
            read_only: false,
        });
        assert_eq!(
            spec.container, container,
            "the container path's server, plus TLS"
        );
        assert_eq!(spec.mode, ServiceMode::Replicated(1));
        assert_eq!(spec.constraints, [format!("node.id=={FAKE_NODE_ID}")]);
        assert_eq!(spec.published_port, None);

        // The TLS files went into the volume through a container that never started.
        let created = engine.created_specs();
        let helper = created
            .iter()
            .find(|spec| spec.name.starts_with("slipway-blog-addon-main-tls-"))
            .expect("a container mounting the TLS volume");
        assert_eq!(helper.mounts, [crate::postgres::tls_mount(&addon)]);
        let upload = calls
            .iter()
            .position(|call| matches!(call, Call::Upload { .. }))
            .expect("TLS files uploaded");
        let deploy = calls
            .iter()
            .position(|call| matches!(call, Call::DeployService { .. }))
            .expect("deployed");
        assert!(upload < deploy, "written before the service starts");
        let Call::Upload { id, dest_dir, .. } = &calls[upload] else {
            unreachable!("found above")
        };
        assert_eq!(dest_dir, "/var/lib/postgresql");
        assert!(!calls.contains(&Call::Start { id: id.clone() }));
        assert!(calls.contains(&Call::RemoveContainer { id: id.clone() }));
        assert!(
            created.iter().all(|spec| spec.name != addon.container_name),
            "no server container"
        );
        assert!(
            created.iter().any(
                |spec| spec.name.starts_with("slipway-blog-addon-main-check-")
                    && spec.network.as_deref() == Some("slipway-blog")
            ),
            "readiness checked from the overlay"
        );
        assert_eq!(
            engine.volumes(),
            [
                "slipway-blog-addon-main-data",
                "slipway-blog-addon-main-tls"
            ]
        );
    }

    #[tokio::test]
    async fn a_running_service_is_left_alone_and_a_missing_one_recreated_alike() {
        let engine = Arc::new(FakeEngine::new());
        let provisioner = provisioner(&engine, "");
        let addon = addon(AddonKind::Redis);
        provisioner.provision(&addon).await.expect("provisioned");
        let first = deployed(&engine);
        engine.clear_calls();
        provisioner.ensure_running(&addon).await.expect("running");
        assert!(deployed(&engine).is_empty(), "{:?}", engine.calls());

        engine
            .remove_service(&addon.container_name)
            .await
            .expect("removed");
        provisioner.ensure_running(&addon).await.expect("recreated");
        assert_eq!(deployed(&engine), first, "same spec, same volume");
        let error = provisioner
            .provision(&addon)
            .await
            .expect_err("the service exists");
        assert!(matches!(error, AddonError::AlreadyExists { .. }), "{error}");
    }

    /// Two servers on one data directory would corrupt it.
    #[tokio::test]
    async fn a_server_container_of_the_docker_runtime_is_retired_before_its_service_starts() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/redis:8");
        let addon = addon(AddonKind::Redis);
        engine
            .ensure_network(&addon.network, &BTreeMap::new())
            .await
            .expect("network");
        let old = slipway_engine::run(
            engine.as_ref(),
            &crate::redis::server_spec(&addon, "slipway/redis:8", 1024),
        )
        .await
        .expect("running");
        let provisioner = provisioner(&engine, "");
        engine.clear_calls();
        provisioner.ensure_running(&addon).await.expect("moved");
        let calls = engine.calls();
        let stop = calls
            .iter()
            .position(|call| matches!(call, Call::Stop { id, .. } if *id == old))
            .expect("stopped");
        let removed = calls
            .iter()
            .position(|call| *call == Call::RemoveContainer { id: old.clone() })
            .expect("removed");
        let deploy = calls
            .iter()
            .position(|call| matches!(call, Call::DeployService { .. }))
            .expect("deployed");
        assert!(stop < removed && removed < deploy, "{calls:?}");
    }

    #[tokio::test]
    async fn destroy_removes_service_jobs_and_both_volumes() {
        let engine = Arc::new(FakeEngine::new());
        let provisioner = provisioner(&engine, "");
        let addon = addon(AddonKind::Postgres);
        provisioner.provision(&addon).await.expect("provisioned");
        provisioner.destroy(&addon).await.expect("destroyed");
        assert!(engine.services().is_empty());
        assert!(engine.volumes().is_empty(), "{:?}", engine.volumes());
        assert!(engine.list_containers(&[]).await.expect("list").is_empty());
        let status = provisioner.status(&addon).await.expect("status");
        assert_eq!(status, AddonStatus::default());
        provisioner
            .destroy(&addon)
            .await
            .expect("destroying twice is fine");
    }

    #[tokio::test]
    async fn redis_status_comes_from_a_job_on_the_overlay() {
        let engine = Arc::new(FakeEngine::new());
        let provisioner = provisioner(
            &engine,
            "# Server\r\nredis_version:8.0.2\r\nconnected_clients:2\r\naof_current_size:88\r\n",
        );
        let addon = addon(AddonKind::Redis);
        provisioner.provision(&addon).await.expect("provisioned");
        engine.clear_calls();
        let status = provisioner.status(&addon).await.expect("status");
        assert_eq!(
            status,
            AddonStatus {
                running: true,
                version: Some("8.0.2".to_owned()),
                size_bytes: Some(88),
                connections: Some(1),
            }
        );
        let job = engine
            .created_specs()
            .into_iter()
            .find(|spec| spec.name.starts_with("slipway-blog-addon-main-status-"))
            .expect("a status job");
        assert_eq!(job.network.as_deref(), Some("slipway-blog"));
        assert_eq!(job.env["REDISCLI_AUTH"], addon.password);
        assert!(
            !job.cmd
                .iter()
                .chain(&job.entrypoint)
                .any(|arg| arg.contains(&addon.password)),
            "the password stays off the command line"
        );
        assert_eq!(job.cmd[..2], [addon.container_name.as_str(), "6379"]);
    }

    fn task(id: &str, desired: &str, state: &str) -> TaskState {
        TaskState {
            id: id.to_owned(),
            slot: Some(1),
            node_id: "n1".to_owned(),
            node_addr: None,
            desired_state: desired.to_owned(),
            state: state.to_owned(),
            error: None,
            container_id: None,
            published_port: None,
            exit_code: None,
            image: "slipway/redis:8".to_owned(),
            labels: BTreeMap::new(),
            timestamp: None,
        }
    }

    #[test]
    fn the_service_is_one_replica_pinned_to_this_node_with_the_server_labels() {
        let addon = AddonInstance::new(
            AddonKind::Redis,
            "blog".parse().expect("valid app"),
            "cache",
            "slipway-blog",
            BTreeMap::new(),
        );
        let container = crate::redis::server_spec(&addon, "slipway/redis:8", 1024);
        let node = SwarmStatus {
            node_id: "abc123".to_owned(),
            node_addr: "10.0.0.1".to_owned(),
            manager: true,
        };
        let spec = spec(&addon, container.clone(), &node);
        assert_eq!(spec.container, container);
        assert_eq!(spec.mode, ServiceMode::Replicated(1));
        assert_eq!(spec.constraints, ["node.id==abc123"]);
        assert_eq!(spec.published_port, None, "never reachable from outside");
        assert_eq!(spec.labels["slipway.role"], "addon");
        assert_eq!(spec.labels["slipway.addon"], "cache");
    }

    #[test]
    fn only_ended_tasks_are_left_out_of_a_wait() {
        let tasks = [
            task("a", "shutdown", "failed"),
            task("b", "running", "starting"),
            task("c", "shutdown", "shutdown"),
            task("d", "running", "pending"),
        ];
        let ended = ended(&tasks);
        assert_eq!(
            ended,
            HashSet::from(["a".to_owned(), "c".to_owned()]),
            "a task that may still fail is watched"
        );
        let mut rejected = task("e", "shutdown", "rejected");
        rejected.error = Some("No such image: slipway/redis:8".to_owned());
        assert_eq!(
            describe(&rejected),
            "its task is rejected: No such image: slipway/redis:8"
        );
    }
}
