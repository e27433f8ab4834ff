//! Detached runs under `--runtime swarm`: each is a Swarm job, `slipway-<app>-run-<n>`, that
//! runs its one task on this server's node, where the app's image was built (`--registry`
//! carries releases to the other nodes, not one-off runs). Its output goes to the app's log as `app[run.<n>]` lines, and
//! its service is removed once the task has ended; Swarm keeps nothing running for it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::{EngineError, ServiceMode, ServiceSpec, ServiceState, Swarm, TaskState};
use slipway_types::api::{ProcessInfo, ProcessState};
use slipway_types::{AppName, ContainerSpec, labels};
use tokio::sync::oneshot;

use super::{OUTPUT_GRACE, ROLE, dyno_of, now};
use crate::logs::LogHub;

/// How often a job's task is looked at.
const POLL: Duration = Duration::from_secs(1);

/// Looks in a row that fail before a job is given up on and its service removed.
const FAILED_LOOKS: u32 = 60;

/// Task states after which nothing more runs.
const ENDED: [&str; 6] = [
    "complete", "failed", "shutdown", "rejected", "orphaned", "remove",
];

/// Between SIGTERM and SIGKILL when the service of a running job is removed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The job that runs `container` once: same image, command, env, labels and memory as a run's
/// container, on the app's overlay network, on node `node_id`, never restarted.
pub(super) fn service_spec(container: ContainerSpec, node_id: &str) -> ServiceSpec {
    ServiceSpec {
        labels: container.labels.clone(),
        container,
        slot_env: BTreeMap::new(),
        mode: ServiceMode::Job,
        health: None,
        published_port: None,
        constraints: vec![format!("node.id=={node_id}")],
        stop_grace: STOP_GRACE,
    }
}

/// Creates the job and a task that follows it to its end; returns its service's id.
pub(super) async fn start(
    swarm: &Arc<dyn Swarm>,
    logs: &Arc<LogHub>,
    app: &AppName,
    dyno: &str,
    container: ContainerSpec,
) -> Result<String, EngineError> {
    let node = swarm
        .swarm_status()
        .await?
        .ok_or_else(|| EngineError::Engine("the engine has left the swarm".into()))?;
    let spec = service_spec(container, &node.node_id);
    let name = spec.container.name.clone();
    let created = match swarm.deploy_service(&spec).await {
        Ok(()) => swarm.service(&name).await,
        Err(error) => Err(error),
    };
    let id = match created {
        Ok(Some(service)) => service.id,
        Ok(None) => {
            return Err(EngineError::NotFound {
                kind: "service",
                name,
            });
        }
        Err(error) => {
            remove(swarm.as_ref(), &name).await;
            return Err(error);
        }
    };
    tokio::spawn(finish(
        swarm.clone(),
        logs.clone(),
        app.clone(),
        dyno.to_owned(),
        name,
        None,
    ));
    Ok(id)
}

/// At server start: follows this installation's jobs that are still around (from now: the
/// server before logged what came earlier) and removes each once it has ended.
pub(super) async fn adopt(
    swarm: &Arc<dyn Swarm>,
    logs: &Arc<LogHub>,
    instance: &str,
) -> Result<(), EngineError> {
    for service in services(swarm.as_ref(), None, instance).await? {
        let Some(app) = service
            .labels
            .get(labels::APP)
            .and_then(|app| app.parse::<AppName>().ok())
        else {
            remove(swarm.as_ref(), &service.name).await;
            continue;
        };
        tokio::spawn(finish(
            swarm.clone(),
            logs.clone(),
            app,
            dyno_of(&service.labels),
            service.name,
            Some(now()),
        ));
    }
    Ok(())
}

/// This installation's jobs, of one app or of all.
pub(super) async fn services(
    swarm: &dyn Swarm,
    app: Option<&AppName>,
    instance: &str,
) -> Result<Vec<ServiceState>, EngineError> {
    let mut filter = vec![(labels::INSTANCE, instance), (labels::ROLE, ROLE)];
    if let Some(app) = app {
        filter.push((labels::APP, app.as_str()));
    }
    swarm.list_services(&filter).await
}

/// The app's jobs whose task has not ended, as `ps` shows them.
pub(super) async fn processes(
    swarm: &dyn Swarm,
    app: &AppName,
    instance: &str,
) -> Result<Vec<ProcessInfo>, EngineError> {
    let mut processes = Vec::new();
    for service in services(swarm, Some(app), instance).await? {
        let tasks = match swarm.tasks(&service.name).await {
            Ok(tasks) => tasks,
            // Removed since it was listed: it has ended.
            Err(EngineError::NotFound { .. }) => continue,
            Err(error) => return Err(error),
        };
        let Some(task) = tasks.iter().find(|task| !ended(task)) else {
            continue;
        };
        processes.push(ProcessInfo {
            dyno: dyno_of(&service.labels),
            release: service
                .labels
                .get(labels::RELEASE)
                .cloned()
                .unwrap_or_default(),
            state: ProcessState::Up,
            started_at: task.timestamp.clone(),
            exit_code: None,
            restarts: 0,
            canary: false,
        });
    }
    Ok(processes)
}

/// Follows the job's output into the app's log from `since` (unix seconds), waits for its
/// task to end, says in the log how it ended and removes the service.
pub(super) async fn finish(
    swarm: Arc<dyn Swarm>,
    logs: Arc<LogHub>,
    app: AppName,
    dyno: String,
    service: String,
    since: Option<i64>,
) {
    // A service's output may go on waiting for more tasks after its last one ended: this
    // ends it once the task's last lines had time to come.
    let (stop_output, output_stopped) = oneshot::channel::<()>();
    let follower = {
        let swarm = swarm.clone();
        let service = service.clone();
        logs.follow_output(
            app.clone(),
            dyno.clone(),
            format!("service {service}"),
            move || {
                swarm
                    .service_output(&service, since)
                    .take_until(output_stopped)
                    .boxed()
            },
        )
    };
    let task = last_task(swarm.as_ref(), &service).await;
    if let Some(mut follower) = follower
        && tokio::time::timeout(OUTPUT_GRACE, &mut follower)
            .await
            .is_err()
    {
        drop(stop_output);
        follower.await.ok();
    }
    if let Some(task) = task {
        tracing::info!(%app, %dyno, state = %task.state, code = ?task.exit_code, "a detached run ended");
        logs.platform(&app, &dyno, outcome(&task));
    }
    remove(swarm.as_ref(), &service).await;
}

/// The job's task once it has ended; `None` when the service went away first, or could not
/// be looked at for a while.
async fn last_task(swarm: &dyn Swarm, service: &str) -> Option<TaskState> {
    let mut failures = 0;
    loop {
        match swarm.tasks(service).await {
            Ok(tasks) if !tasks.is_empty() && tasks.iter().all(ended) => {
                return tasks
                    .into_iter()
                    .max_by(|a, b| a.timestamp.cmp(&b.timestamp));
            }
            Ok(tasks) => {
                failures = 0;
                // No task yet, or none any more because the service was removed (stopped).
                if tasks.is_empty() && matches!(swarm.service(service).await, Ok(None)) {
                    return None;
                }
            }
            Err(EngineError::NotFound { .. }) => return None,
            Err(error) => {
                failures += 1;
                if failures == FAILED_LOOKS {
                    tracing::warn!(%error, %service, "looking at a detached run's task keeps failing; removing it");
                    return None;
                }
                tracing::debug!(%error, %service, "looking at a detached run's task failed");
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ended(task: &TaskState) -> bool {
    ENDED.contains(&task.state.as_str())
}

/// How the task ended, for the app's log.
fn outcome(task: &TaskState) -> String {
    match (task.exit_code, &task.error) {
        (Some(code), _) => format!("Process exited with status {code}"),
        (None, Some(error)) => format!("Process did not run: {error}"),
        (None, None) => format!("Process ended: task {}", task.state),
    }
}

async fn remove(swarm: &dyn Swarm, service: &str) {
    if let Err(error) = swarm.remove_service(service).await {
        tracing::warn!(%error, %service, "removing a detached run's service failed");
    }
}
