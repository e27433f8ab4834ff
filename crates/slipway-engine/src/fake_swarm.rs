//! The swarm half of [`FakeEngine`]: one node that is the leading manager, and services whose
//! tasks follow from their specs at once. Updates complete at once too, except updates to an
//! image a test marked failing with [`FakeEngine::fail_updates_to`], which Swarm would roll
//! back: the previous spec stays, its tasks keep serving and one failed task of the new image
//! is listed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use async_trait::async_trait;
use futures_util::stream::{self, BoxStream, StreamExt};

use crate::fake::{Call, FakeEngine};
use crate::{
    Availability, EngineError, NodeInfo, NodeRole, OutputChunk, Result, ServiceMode, ServiceSpec,
    ServiceState, Swarm, SwarmStatus, TaskState, UpdateState, UpdateStatus,
};

/// The id of the fake swarm's only node.
pub const FAKE_NODE_ID: &str = "fakenode00000000000000001";

/// The hostname of the fake swarm's only node.
pub const FAKE_NODE_HOSTNAME: &str = "fake-node";

/// The fake node's address: where its tasks' published ports are.
const FAKE_NODE_ADDR: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The first node port the fake hands out to a published task port, as Docker's range starts.
const FIRST_NODE_PORT: u16 = 30_000;

#[derive(Debug, Default)]
pub(crate) struct SwarmState {
    /// `None` until set: the node starts active.
    availability: Option<Availability>,
    services: BTreeMap<String, Service>,
    /// Updates to these images fail and roll back.
    failing_images: BTreeSet<String>,
    serial: u64,
}

#[derive(Debug)]
struct Service {
    id: String,
    spec: ServiceSpec,
    /// The spec before the last update, which a rollback returns to.
    previous: Option<ServiceSpec>,
    update: Option<UpdateStatus>,
    /// Current tasks first, then the ones they replaced.
    tasks: Vec<TaskState>,
}

impl SwarmState {
    fn next(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }

    fn node(&self) -> NodeInfo {
        NodeInfo {
            id: FAKE_NODE_ID.to_owned(),
            hostname: FAKE_NODE_HOSTNAME.to_owned(),
            role: NodeRole::Manager,
            leader: true,
            state: "ready".to_owned(),
            availability: self.availability.unwrap_or(Availability::Active),
            addr: FAKE_NODE_ADDR.to_string(),
            labels: BTreeMap::new(),
            engine_version: "fake".to_owned(),
        }
    }

    fn service(&mut self, name: &str) -> Result<&mut Service> {
        self.services
            .get_mut(name)
            .ok_or_else(|| EngineError::NotFound {
                kind: "service",
                name: name.to_owned(),
            })
    }

    /// A task of `spec` in `slot` (none for a job), running unless `exit` says how it ended.
    fn task(&mut self, spec: &ServiceSpec, slot: Option<u32>, exit: Option<i64>) -> TaskState {
        let serial = self.next();
        let published_port = spec.published_port.map(|_| {
            FIRST_NODE_PORT.wrapping_add(u16::try_from(serial % 30_000).unwrap_or_default())
        });
        let (desired_state, state, error) = match exit {
            None => ("running", "running", None),
            Some(0) => ("complete", "complete", None),
            Some(code) => (
                "complete",
                "failed",
                Some(format!("task: non-zero exit ({code})")),
            ),
        };
        TaskState {
            id: format!("faketask{serial:017}"),
            slot,
            node_id: FAKE_NODE_ID.to_owned(),
            node_addr: published_port.map(|_| IpAddr::V4(FAKE_NODE_ADDR)),
            desired_state: desired_state.to_owned(),
            state: state.to_owned(),
            error,
            container_id: Some(format!("{serial:064x}")),
            published_port,
            exit_code: exit,
            image: spec.container.image.clone(),
            labels: spec.container.labels.clone(),
            timestamp: Some(format!("1970-01-01T00:00:00.{serial:09}Z")),
        }
    }
}

/// Marks a task as replaced, as Swarm keeps it in the service's history.
fn shut_down(task: &mut TaskState) {
    if task.desired_state == "running" {
        task.desired_state = "shutdown".to_owned();
        task.state = "shutdown".to_owned();
    }
}

impl FakeEngine {
    /// Updates of any service to `image` fail their new task and roll back, as a failing
    /// health check makes Swarm do.
    pub fn fail_updates_to(&self, image: &str) {
        self.state().swarm.failing_images.insert(image.to_owned());
    }

    /// The spec a service now runs, after any rollback.
    pub fn service_spec(&self, name: &str) -> Option<ServiceSpec> {
        self.state()
            .swarm
            .services
            .get(name)
            .map(|service| service.spec.clone())
    }

    /// Names of the services, sorted.
    pub fn services(&self) -> Vec<String> {
        self.state().swarm.services.keys().cloned().collect()
    }
}

/// Replaces the service's current tasks with fresh ones of its spec: a job runs its one task
/// to the end (as scripted for its name or image, else with exit code 0), a replicated
/// service gets a running task per slot.
fn start_tasks(state: &mut crate::fake::State, name: &str) -> Result<()> {
    let spec = state.swarm.service(name)?.spec.clone();
    let fresh = match spec.mode {
        ServiceMode::Job => {
            let exit = state
                .script(name, &spec.container.image)
                .map_or(0, |(_, code)| code);
            vec![state.swarm.task(&spec, None, Some(exit))]
        }
        ServiceMode::Replicated(replicas) => (1..=replicas)
            .map(|slot| state.swarm.task(&spec, Some(slot), None))
            .collect(),
    };
    let service = state.swarm.service(name)?;
    service.tasks.iter_mut().for_each(shut_down);
    service.tasks.splice(0..0, fresh);
    Ok(())
}

#[async_trait]
impl Swarm for FakeEngine {
    async fn swarm_status(&self) -> Result<Option<SwarmStatus>> {
        self.state().record(Call::SwarmStatus);
        Ok(Some(SwarmStatus {
            node_id: FAKE_NODE_ID.to_owned(),
            node_addr: FAKE_NODE_ADDR.to_string(),
            manager: true,
        }))
    }

    /// Overlay networks are plain fake networks, so fake containers can join them.
    async fn ensure_overlay_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let mut state = self.state();
        state.record(Call::EnsureOverlayNetwork {
            name: name.to_owned(),
            labels: labels.clone(),
        });
        state.ensure_network(name);
        Ok(())
    }

    async fn deploy_service(&self, spec: &ServiceSpec) -> Result<()> {
        let mut state = self.state();
        state.record(Call::DeployService { spec: spec.clone() });
        // Swarm is never asked to pull, so a service's image must be here already.
        if !state.has_image(&spec.container.image) {
            return Err(EngineError::NotFound {
                kind: "image",
                name: spec.container.image.clone(),
            });
        }
        let name = spec.container.name.clone();
        let failing = state.swarm.failing_images.contains(&spec.container.image);
        let Some(service) = state.swarm.services.get(&name) else {
            let id = format!("fakeservice{:014}", state.swarm.next());
            state.swarm.services.insert(
                name.clone(),
                Service {
                    id,
                    spec: spec.clone(),
                    previous: None,
                    update: None,
                    tasks: Vec::new(),
                },
            );
            return start_tasks(&mut state, &name);
        };
        // Swarm leaves a service alone when its spec did not change.
        if service.spec == *spec {
            return Ok(());
        }
        if failing {
            let slot = match spec.mode {
                ServiceMode::Replicated(_) => Some(1),
                ServiceMode::Job => None,
            };
            let mut failed = state.swarm.task(spec, slot, Some(1));
            failed.desired_state = "shutdown".to_owned();
            failed.error = Some("task: non-zero exit (1): unhealthy container".to_owned());
            let service = state.swarm.service(&name)?;
            service.previous = Some(spec.clone());
            service.tasks.push(failed);
            service.update = Some(UpdateStatus {
                state: UpdateState::RollbackCompleted,
                message: Some("rollback completed".to_owned()),
            });
            return Ok(());
        }
        let service = state.swarm.service(&name)?;
        service.previous = Some(std::mem::replace(&mut service.spec, spec.clone()));
        service.update = Some(UpdateStatus {
            state: UpdateState::Completed,
            message: Some("update completed".to_owned()),
        });
        start_tasks(&mut state, &name)
    }

    async fn scale_service(&self, name: &str, replicas: u32) -> Result<()> {
        let mut state = self.state();
        state.record(Call::ScaleService {
            name: name.to_owned(),
            replicas,
        });
        let service = state.swarm.service(name)?;
        let ServiceMode::Replicated(current) = service.spec.mode else {
            return Err(EngineError::Engine(format!(
                "service `{name}` is not replicated: it cannot be scaled"
            )));
        };
        let mut next = service.spec.clone();
        next.mode = ServiceMode::Replicated(replicas);
        service.previous = Some(std::mem::replace(&mut service.spec, next));
        // Scaling keeps the tasks in the slots that remain and adds or removes the others.
        for task in &mut service.tasks {
            if task.slot.is_some_and(|slot| slot > replicas) {
                shut_down(task);
            }
        }
        let spec = service.spec.clone();
        let added: Vec<TaskState> = (current + 1..=replicas)
            .map(|slot| state.swarm.task(&spec, Some(slot), None))
            .collect();
        let service = state.swarm.service(name)?;
        service.tasks.splice(0..0, added);
        Ok(())
    }

    async fn restart_service(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RestartService {
            name: name.to_owned(),
        });
        let service = state.swarm.service(name)?;
        service.update = Some(UpdateStatus {
            state: UpdateState::Completed,
            message: Some("update completed".to_owned()),
        });
        start_tasks(&mut state, name)
    }

    async fn rollback_service(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RollbackService {
            name: name.to_owned(),
        });
        let service = state.swarm.service(name)?;
        let previous = service.previous.take().ok_or_else(|| {
            EngineError::Engine(format!(
                "service `{name}`: no previous spec to roll back to"
            ))
        })?;
        service.previous = Some(std::mem::replace(&mut service.spec, previous));
        service.update = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            message: Some("rollback completed".to_owned()),
        });
        start_tasks(&mut state, name)
    }

    async fn service(&self, name: &str) -> Result<Option<ServiceState>> {
        let mut state = self.state();
        state.record(Call::Service {
            name: name.to_owned(),
        });
        Ok(state.swarm.services.get(name).map(service_state))
    }

    async fn list_services(&self, labels: &[(&str, &str)]) -> Result<Vec<ServiceState>> {
        let mut state = self.state();
        state.record(Call::ListServices {
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        });
        Ok(state
            .swarm
            .services
            .values()
            .filter(|service| {
                labels.iter().all(|(key, value)| {
                    service.spec.labels.get(*key).map(String::as_str) == Some(*value)
                })
            })
            .map(service_state)
            .collect())
    }

    /// A missing service has no tasks.
    async fn tasks(&self, service: &str) -> Result<Vec<TaskState>> {
        let mut state = self.state();
        state.record(Call::Tasks {
            service: service.to_owned(),
        });
        let drained = state.swarm.availability == Some(Availability::Drain);
        let Some(found) = state.swarm.services.get(service) else {
            return Ok(Vec::new());
        };
        let mut tasks = found.tasks.clone();
        // A drained node runs nothing: its tasks wait for another node.
        if drained {
            for task in &mut tasks {
                if task.desired_state == "running" {
                    task.state = "pending".to_owned();
                    task.published_port = None;
                }
            }
        }
        Ok(tasks)
    }

    async fn remove_service(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RemoveService {
            name: name.to_owned(),
        });
        state.swarm.services.remove(name);
        Ok(())
    }

    /// What the service's job was scripted to print (see [`FakeEngine::script_output`]);
    /// the stream ends after it, as the fake has no clock for `since`.
    fn service_output(
        &self,
        name: &str,
        _since: Option<i64>,
    ) -> BoxStream<'static, Result<OutputChunk>> {
        let mut state = self.state();
        state.record(Call::ServiceOutput {
            name: name.to_owned(),
        });
        let Some(image) = state
            .swarm
            .services
            .get(name)
            .map(|service| service.spec.container.image.clone())
        else {
            let error = EngineError::NotFound {
                kind: "service",
                name: name.to_owned(),
            };
            return stream::once(async move { Err(error) }).boxed();
        };
        let chunks = state
            .script(name, &image)
            .map(|(chunks, _)| chunks)
            .unwrap_or_default();
        stream::iter(chunks.into_iter().map(Ok)).boxed()
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let mut state = self.state();
        state.record(Call::Nodes);
        Ok(vec![state.swarm.node()])
    }

    async fn set_node_availability(&self, node: &str, availability: Availability) -> Result<()> {
        let mut state = self.state();
        state.record(Call::SetNodeAvailability {
            node: node.to_owned(),
            availability,
        });
        if node != FAKE_NODE_ID && node != FAKE_NODE_HOSTNAME {
            return Err(EngineError::NotFound {
                kind: "node",
                name: node.to_owned(),
            });
        }
        state.swarm.availability = Some(availability);
        Ok(())
    }
}

fn service_state(service: &Service) -> ServiceState {
    ServiceState {
        id: service.id.clone(),
        name: service.spec.container.name.clone(),
        image: service.spec.container.image.clone(),
        labels: service.spec.labels.clone(),
        container_labels: service.spec.container.labels.clone(),
        replicas: match service.spec.mode {
            ServiceMode::Replicated(replicas) => Some(replicas),
            ServiceMode::Job => None,
        },
        update: service.update.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::TryStreamExt;
    use slipway_types::ContainerSpec;

    use super::*;
    use crate::OutputStream;

    fn web(image: &str, replicas: u32) -> ServiceSpec {
        ServiceSpec {
            container: ContainerSpec {
                name: "slipway-hello-web".to_owned(),
                image: image.to_owned(),
                ..ContainerSpec::default()
            },
            labels: BTreeMap::from([("slipway.app".to_owned(), "hello".to_owned())]),
            slot_env: BTreeMap::new(),
            mode: ServiceMode::Replicated(replicas),
            health: None,
            published_port: Some(5000),
            constraints: Vec::new(),
            stop_grace: Duration::from_secs(10),
        }
    }

    async fn serving(engine: &FakeEngine, name: &str) -> Vec<TaskState> {
        let tasks = engine.tasks(name).await.expect("tasks");
        tasks.into_iter().filter(TaskState::serving).collect()
    }

    #[tokio::test]
    async fn replicas_serve_and_an_update_replaces_them() {
        let engine = FakeEngine::new();
        assert!(matches!(
            engine.deploy_service(&web("slipway/hello:1", 2)).await,
            Err(EngineError::NotFound { kind: "image", .. })
        ));
        engine.add_image("slipway/hello:1");
        engine.add_image("slipway/hello:2");
        engine
            .deploy_service(&web("slipway/hello:1", 2))
            .await
            .expect("creates");
        let first = serving(&engine, "slipway-hello-web").await;
        assert_eq!(
            first.iter().map(|task| task.slot).collect::<Vec<_>>(),
            [Some(1), Some(2)]
        );
        assert!(first.iter().all(|task| task.published_port.is_some()
            && task.node_addr == Some(IpAddr::V4(Ipv4Addr::LOCALHOST))));
        let state = engine
            .service("slipway-hello-web")
            .await
            .expect("inspects")
            .expect("exists");
        assert_eq!((state.replicas, state.update), (Some(2), None));

        engine
            .deploy_service(&web("slipway/hello:2", 2))
            .await
            .expect("updates");
        let updated = serving(&engine, "slipway-hello-web").await;
        assert!(updated.iter().all(|task| task.image == "slipway/hello:2"));
        assert_eq!(
            engine
                .service("slipway-hello-web")
                .await
                .expect("inspects")
                .and_then(|state| state.update)
                .map(|update| update.state),
            Some(UpdateState::Completed)
        );
        assert_eq!(
            engine
                .list_services(&[("slipway.app", "hello")])
                .await
                .expect("lists")
                .len(),
            1
        );

        engine
            .scale_service("slipway-hello-web", 1)
            .await
            .expect("scales");
        assert_eq!(serving(&engine, "slipway-hello-web").await.len(), 1);
        engine
            .rollback_service("slipway-hello-web")
            .await
            .expect("rolls back the scaling");
        assert_eq!(serving(&engine, "slipway-hello-web").await.len(), 2);
    }

    #[tokio::test]
    async fn an_update_to_a_failing_image_rolls_back() {
        let engine = FakeEngine::new();
        engine.add_image("slipway/hello:1");
        engine.add_image("slipway/hello:2");
        engine.fail_updates_to("slipway/hello:2");
        engine
            .deploy_service(&web("slipway/hello:1", 1))
            .await
            .expect("creates");
        let before = serving(&engine, "slipway-hello-web").await;
        engine
            .deploy_service(&web("slipway/hello:2", 1))
            .await
            .expect("updates");

        let update = engine
            .service("slipway-hello-web")
            .await
            .expect("inspects")
            .and_then(|state| state.update)
            .expect("an update status");
        assert_eq!(update.state, UpdateState::RollbackCompleted);
        assert_eq!(
            engine.service_spec("slipway-hello-web"),
            Some(web("slipway/hello:1", 1))
        );
        assert_eq!(serving(&engine, "slipway-hello-web").await, before);
        let tasks = engine.tasks("slipway-hello-web").await.expect("tasks");
        assert!(tasks.iter().any(|task| task.image == "slipway/hello:2"
            && task.state == "failed"
            && task.error.is_some()));
    }

    #[tokio::test]
    async fn a_job_ends_as_scripted_and_prints_its_output() {
        let engine = FakeEngine::new();
        let chunk = OutputChunk {
            stream: OutputStream::Stdout,
            bytes: Bytes::from_static(b"migrated\n"),
        };
        engine.add_image("slipway/hello:3");
        engine.script_output("slipway-hello-release-3", vec![chunk.clone()], 2);
        let spec = ServiceSpec {
            mode: ServiceMode::Job,
            published_port: None,
            container: ContainerSpec {
                name: "slipway-hello-release-3".to_owned(),
                image: "slipway/hello:3".to_owned(),
                ..ContainerSpec::default()
            },
            ..web("unused", 1)
        };
        engine.deploy_service(&spec).await.expect("creates");
        let tasks = engine
            .tasks("slipway-hello-release-3")
            .await
            .expect("tasks");
        assert_eq!(tasks.len(), 1);
        assert_eq!((tasks[0].slot, tasks[0].exit_code), (None, Some(2)));
        assert_eq!(tasks[0].state, "failed");
        let output: Vec<OutputChunk> = engine
            .service_output("slipway-hello-release-3", None)
            .try_collect()
            .await
            .expect("output");
        assert_eq!(output, [chunk]);
        assert!(
            engine
                .scale_service("slipway-hello-release-3", 2)
                .await
                .is_err()
        );
        engine
            .remove_service("slipway-hello-release-3")
            .await
            .expect("removes");
        assert!(engine.services().is_empty());
    }

    #[tokio::test]
    async fn the_node_can_be_drained_and_made_active_again() {
        let engine = FakeEngine::new();
        engine.add_image("slipway/hello:1");
        engine
            .deploy_service(&web("slipway/hello:1", 1))
            .await
            .expect("creates");
        engine
            .set_node_availability(FAKE_NODE_HOSTNAME, Availability::Drain)
            .await
            .expect("drains");
        assert_eq!(
            engine.nodes().await.expect("nodes")[0].availability,
            Availability::Drain
        );
        assert!(serving(&engine, "slipway-hello-web").await.is_empty());
        engine
            .set_node_availability(FAKE_NODE_ID, Availability::Active)
            .await
            .expect("activates");
        assert_eq!(serving(&engine, "slipway-hello-web").await.len(), 1);
        assert!(
            engine
                .set_node_availability("other", Availability::Active)
                .await
                .is_err()
        );
        assert_eq!(
            engine.calls().last(),
            Some(&Call::SetNodeAvailability {
                node: "other".to_owned(),
                availability: Availability::Active
            })
        );
    }
}
