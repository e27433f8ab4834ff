//! Docker Swarm in Slipway's terms: services, their tasks and the nodes they run on. The
//! `--runtime swarm` deployer runs each process type of an app as one service and leaves
//! placement, restarts and rolling updates to Swarm; it only says what should run and watches
//! what does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;
use slipway_types::ContainerSpec;

use crate::{OutputChunk, Result};

/// Where this engine stands in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmStatus {
    /// This node's id.
    pub node_id: String,
    /// The address this node advertises to the others.
    pub node_addr: String,
    /// Only a manager can create services and change nodes.
    pub manager: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    Manager,
    Worker,
}

/// Whether the scheduler may place tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// New tasks may be placed here.
    Active,
    /// Running tasks stay, no new ones come.
    Pause,
    /// Tasks are moved elsewhere, none are placed here.
    Drain,
}

/// A node of the swarm, as `admin:nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    /// The manager that leads the Raft group.
    pub leader: bool,
    /// `ready`, `down`, `unknown` or `disconnected`, as Swarm says.
    pub state: String,
    pub availability: Availability,
    /// The address the node is reached at; tasks' host-mode ports are published there.
    pub addr: String,
    pub labels: BTreeMap<String, String>,
    pub engine_version: String,
}

/// A container health check, as Swarm runs it inside every task: a task is `running` only
/// once its check passes, so a rolling update waits for it and rolls back when it never does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// A shell command (`CMD-SHELL`); exit status 0 is healthy.
    pub shell: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Failures in a row that make the task unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    pub start_period: Duration,
}

/// How many tasks a service runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceMode {
    /// Keeps this many tasks running, restarting those that exit.
    Replicated(u32),
    /// Runs one task to completion and never restarts it (a one-off run or a release command).
    Job,
}

/// What one service should run. The container part says image, command, env, labels (given
/// to every task's container), user, memory, mounts, tty and stdin; its `network` is the
/// overlay network the tasks join and its `name` is the service's name. Its env values reach
/// the tasks as written, even where they look like Swarm's Go templates (`{{…}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub container: ContainerSpec,
    /// Env variables set to the given prefix followed by the task's slot number, which only
    /// Swarm knows (`DYNO` → `web.` gives `web.1`, `web.2`…); they win over the container's
    /// env of the same name.
    pub slot_env: BTreeMap<String, String>,
    /// Labels of the service itself, for finding it again.
    pub labels: BTreeMap<String, String>,
    pub mode: ServiceMode,
    pub health: Option<HealthCheck>,
    /// A port the tasks listen on, published in host mode on a port the node picks, so a
    /// router on any node reaches each task at `node address:published port`.
    pub published_port: Option<u16>,
    /// Placement constraints, in Swarm's syntax (`node.labels.slipway.addons==true`).
    pub constraints: Vec<String>,
    /// Between SIGTERM and SIGKILL when a task stops.
    pub stop_grace: Duration,
}

/// Where a service's last update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateState {
    Updating,
    Paused,
    Completed,
    RollbackStarted,
    RollbackPaused,
    RollbackCompleted,
    /// A state this version does not know, as Swarm names it.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateStatus {
    pub state: UpdateState,
    /// Swarm's explanation, e.g. why it rolled back.
    pub message: Option<String>,
}

/// What the engine says about one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub id: String,
    pub name: String,
    /// The image its current spec runs.
    pub image: String,
    /// The service's own labels.
    pub labels: BTreeMap<String, String>,
    /// The labels its tasks' containers get.
    pub container_labels: BTreeMap<String, String>,
    /// `None` for a job.
    pub replicas: Option<u32>,
    /// The last update, `None` when the service was never updated.
    pub update: Option<UpdateStatus>,
}

/// One task of a service: a slot's container on some node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub id: String,
    /// The replica's slot, from 1; `None` for a job's task.
    pub slot: Option<u32>,
    pub node_id: String,
    /// The node's address, where the task's published port is.
    pub node_addr: Option<IpAddr>,
    /// What Swarm wants of it: `running`, `shutdown`, `complete`…
    pub desired_state: String,
    /// Where it is: `new`, `pending`, `starting`, `running`, `complete`, `failed`,
    /// `shutdown`, `rejected`…
    pub state: String,
    /// Swarm's error for a failed or rejected task.
    pub error: Option<String>,
    /// The container on its node, once it has one.
    pub container_id: Option<String>,
    /// The node port the task's published port is at, in host mode.
    pub published_port: Option<u16>,
    /// The container's exit code once it stopped.
    pub exit_code: Option<i64>,
    /// The image the task runs.
    pub image: String,
    /// The labels of its container, as its service spec gave them.
    pub labels: BTreeMap<String, String>,
    /// When it last changed state, RFC 3339.
    pub timestamp: Option<String>,
}

impl TaskState {
    /// Running, and Swarm means it to keep running: the task may take traffic.
    pub fn serving(&self) -> bool {
        self.desired_state == "running" && self.state == "running"
    }
}

/// Docker Swarm services and nodes. The Docker engine implements it when it is a swarm
/// manager; `FakeEngine` implements it for unit tests.
#[async_trait]
pub trait Swarm: Send + Sync + 'static {
    /// This engine's place in a swarm; `None` when it is not part of one.
    async fn swarm_status(&self) -> Result<Option<SwarmStatus>>;

    /// Creates an attachable overlay network if it does not exist: services' tasks join it,
    /// and so can plain containers on any node (builds, probes).
    async fn ensure_overlay_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()>;

    /// Creates the service, or updates it to `spec` when it exists. Updates roll one task at
    /// a time, start-first (the new task is healthy before the old one stops), and Swarm rolls
    /// the service back by itself when a new task fails. Returns at once; watch
    /// [`Swarm::service`] for the outcome.
    async fn deploy_service(&self, spec: &ServiceSpec) -> Result<()>;

    /// Sets a replicated service's task count without changing anything else.
    async fn scale_service(&self, name: &str, replicas: u32) -> Result<()>;

    /// Replaces every task of the service with a fresh one of the same spec, rolling as an
    /// update does (`docker service update --force`).
    async fn restart_service(&self, name: &str) -> Result<()>;

    /// Puts the service back to the spec it had before its last update.
    async fn rollback_service(&self, name: &str) -> Result<()>;

    /// `None` when there is no such service.
    async fn service(&self, name: &str) -> Result<Option<ServiceState>>;

    /// Services carrying every given label with the given value.
    async fn list_services(&self, labels: &[(&str, &str)]) -> Result<Vec<ServiceState>>;

    /// The service's tasks, current and recent, with their nodes' addresses.
    async fn tasks(&self, service: &str) -> Result<Vec<TaskState>>;

    /// Removes the service and so its tasks; a missing one is not an error.
    async fn remove_service(&self, name: &str) -> Result<()>;

    /// Follows what every task of the service prints, from `since` (unix seconds) or its
    /// start, on whichever node it runs.
    fn service_output(
        &self,
        name: &str,
        since: Option<i64>,
    ) -> BoxStream<'static, Result<OutputChunk>>;

    async fn nodes(&self) -> Result<Vec<NodeInfo>>;

    /// Sets a node's availability; `node` is its id or hostname.
    async fn set_node_availability(&self, node: &str, availability: Availability) -> Result<()>;
}
