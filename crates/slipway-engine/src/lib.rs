#![doc = include_str!("../README.md")]

mod docker;
mod docker_swarm;
#[cfg(any(test, feature = "fake"))]
mod fake;
#[cfg(any(test, feature = "fake"))]
mod fake_swarm;
mod swarm;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use slipway_types::ContainerSpec;
use tokio::io::AsyncWrite;

pub use docker::DockerEngine;
#[cfg(any(test, feature = "fake"))]
pub use fake::{Call, FAKE_MEMORY_BYTES, FakeEngine};
#[cfg(any(test, feature = "fake"))]
pub use fake_swarm::{FAKE_NODE_HOSTNAME, FAKE_NODE_ID};
pub use swarm::{
    Availability, HealthCheck, NodeInfo, NodeRole, ServiceMode, ServiceSpec, ServiceState, Swarm,
    SwarmStatus, TaskState, UpdateState, UpdateStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the container engine is unreachable: {0}")]
    Unreachable(String),
    #[error("{kind} `{name}` not found")]
    NotFound { kind: &'static str, name: String },
    #[error("container engine: {0}")]
    Engine(String),
    #[error("reading `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Opaque container id as the engine knows it.
pub type ContainerId = String;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// A piece of a container's output, in the order the engine delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    pub stream: OutputStream,
    pub bytes: Bytes,
}

/// What the engine says about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: ContainerId,
    /// Name without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
    /// Exit code once it has stopped.
    pub exit_code: Option<i64>,
    /// Address on each network it is attached to, by network name.
    pub addresses: BTreeMap<String, IpAddr>,
    /// RFC 3339 start time as the engine reports it; changes when the container restarts.
    pub started_at: Option<String>,
}

/// A client attached to a container's standard streams.
pub struct Attached {
    /// What the process prints, until it exits. With a TTY everything is one raw `Stdout`
    /// stream, as a terminal shows it.
    pub output: BoxStream<'static, Result<OutputChunk>>,
    /// The process's stdin (for a container created with `stdin_open`); shutting it down is
    /// end of file for the process.
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached").finish_non_exhaustive()
    }
}

/// How a committed image runs by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub env: BTreeMap<String, String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// A `docker build` of a Dockerfile: the context travels as a tar archive, and nothing is
/// pulled, so every `FROM` must name an image the engine already has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageBuild {
    /// Image to tag, `repo:tag`.
    pub reference: String,
    /// The build context as a tar archive of relative paths.
    pub context: Bytes,
    /// Path of the Dockerfile inside the context.
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Memory limit of each `RUN` step's container.
    pub memory_bytes: Option<i64>,
    /// CPU limit of each `RUN` step's container, in billionths of a CPU.
    pub nano_cpus: Option<i64>,
}

/// What an image runs and exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageDetails {
    pub config: ImageConfig,
    /// Ports its Dockerfile `EXPOSE`s, as `8080/tcp`.
    pub exposed_ports: Vec<String>,
}

/// One reading of a running container's resource use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerStats {
    /// CPU time used since the container started, in nanoseconds, over all cores: a reader
    /// divides the growth between two readings by the time between them, so one cheap reading
    /// per sample is enough.
    pub cpu_total_ns: u64,
    /// Memory in use without the reclaimable file cache, as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The container's memory limit; the host's memory when it has none, as the engine says.
    pub memory_limit_bytes: Option<u64>,
}

/// What `admin:status` shows of the engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SystemInfo {
    pub version: String,
    /// The sizes of the images, each counting the layers it shares with others.
    pub images_bytes: u64,
    /// `None` when the engine does not say.
    pub volumes_bytes: Option<u64>,
}

/// The container engine in Slipway's terms. Docker implements it; `FakeEngine` records calls
/// for unit tests.
#[async_trait]
pub trait ContainerEngine: Send + Sync + 'static {
    /// Checks the engine answers.
    async fn ping(&self) -> Result<()>;

    /// The engine's version and the disk its images and volumes take.
    async fn system_info(&self) -> Result<SystemInfo>;

    async fn image_exists(&self, reference: &str) -> Result<bool>;

    /// Imports a root filesystem tarball as image `reference` (like `docker import`), applying
    /// the image config.
    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: &Path,
        config: &ImageConfig,
    ) -> Result<()>;

    /// How an image runs (user, working dir, env, entrypoint, command, labels) and what it
    /// exposes; `None` when there is no such image.
    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>>;

    /// Builds `build.reference` from a Dockerfile, like `docker build`, without pulling.
    /// Yields the build's output text as it comes (pieces of lines, as the engine sends them)
    /// and ends after the image is tagged, or with the error that stopped the build.
    /// Dropping the stream cancels the build.
    fn build_image(&self, build: ImageBuild) -> BoxStream<'static, Result<String>>;

    /// Gives the image `source` the second name `reference` (`repo:tag`), like `docker tag`:
    /// both names point at the same image id, and removing one leaves the other.
    async fn tag_image(&self, source: &str, reference: &str) -> Result<()>;

    /// Removes an image; a missing image is not an error.
    async fn remove_image(&self, reference: &str) -> Result<()>;

    /// Pushes the local image `reference` (`registry[:port]/repo:tag`) to the registry its
    /// name starts with, like `docker push`, and returns the digest the registry gave its
    /// manifest (`sha256:…`), so others can pull exactly that image. No credentials are sent:
    /// the registry must accept anonymous pushes.
    async fn push_image(&self, reference: &str) -> Result<String>;

    /// Images whose repository is `repository` (e.g. `slipway/hello`), as full references.
    async fn list_images(&self, repository: &str) -> Result<Vec<String>>;

    /// Creates the network if it does not exist.
    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()>;

    /// Removes the network; a missing one is not an error.
    async fn remove_network(&self, name: &str) -> Result<()>;

    /// Creates the volume if it does not exist.
    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()>;

    /// Removes the volume; a missing one is not an error.
    async fn remove_volume(&self, name: &str) -> Result<()>;

    /// Creates (does not start) a container.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId>;

    /// Extracts a tar archive into `dest_dir` of a created or running container. Ownership
    /// comes from the archive's headers.
    async fn upload(&self, id: &str, dest_dir: &str, tar: Bytes) -> Result<()>;

    /// Reads `path` out of a container as a tar archive.
    async fn download(&self, id: &str, path: &str) -> Result<Bytes>;

    async fn start(&self, id: &str) -> Result<()>;

    /// Follows the container's stdout and stderr until it exits: from its start, or with
    /// `since` (unix seconds) only what it printed from then on, so a follower that restarts
    /// does not replay old lines.
    fn output(&self, id: &str, since: Option<i64>) -> BoxStream<'static, Result<OutputChunk>>;

    /// Attaches to a container's stdin, stdout and stderr. Attach to a created container
    /// before starting it, so no output is lost.
    async fn attach(&self, id: &str) -> Result<Attached>;

    /// Tells a TTY container's terminal its size (after start), as a terminal window resize.
    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()>;

    /// Waits for the container to exit and returns its exit code.
    async fn wait(&self, id: &str) -> Result<i64>;

    /// SIGTERM, then SIGKILL after `grace`. Stopping a stopped container is not an error.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;

    /// Removes a container (forcefully, with its anonymous volumes); missing is not an error.
    async fn remove_container(&self, id: &str) -> Result<()>;

    /// Commits a container's filesystem as image `reference` with the given config.
    async fn commit(&self, id: &str, reference: &str, config: &ImageConfig) -> Result<()>;

    async fn inspect(&self, id: &str) -> Result<ContainerState>;

    /// A one-shot reading of a running container's CPU time and memory.
    async fn stats(&self, id: &str) -> Result<ContainerStats>;

    /// Containers (running or not) carrying every given label with the given value.
    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerState>>;
}

/// Creates and starts a container.
pub async fn run(engine: &dyn ContainerEngine, spec: &ContainerSpec) -> Result<ContainerId> {
    let id = engine.create_container(spec).await?;
    if let Err(error) = engine.start(&id).await {
        engine.remove_container(&id).await.ok();
        return Err(error);
    }
    Ok(id)
}
