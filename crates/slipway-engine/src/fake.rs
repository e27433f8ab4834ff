//! An in-memory `ContainerEngine` for unit tests of the crates built on the engine: it keeps
//! images, networks, volumes and containers in a map, records every call, and lets a test
//! script what a container prints and how it exits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use slipway_types::{ContainerSpec, MountSource};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use crate::docker::split_reference;
use crate::fake_swarm::SwarmState;
use crate::{
    Attached, Availability, ContainerEngine, ContainerId, ContainerState, ContainerStats,
    EngineError, ImageBuild, ImageConfig, ImageDetails, OutputChunk, OutputStream, Result,
    ServiceSpec,
};

/// The network a container without one joins, as Docker's default bridge.
const DEFAULT_NETWORK: &str = "bridge";

/// Exit code of a process ended by SIGTERM, as docker-init reports after a graceful stop.
const STOPPED_EXIT_CODE: i64 = 143;

/// Exit code of a process ended by SIGKILL, as when a running container is removed.
const KILLED_EXIT_CODE: i64 = 137;

/// How many bytes written to an attached container's stdin wait for it to echo them.
const STDIN_BUFFER: usize = 64 * 1024;

/// What [`FakeEngine`] reports as any container's memory use.
pub const FAKE_MEMORY_BYTES: u64 = 32 * 1024 * 1024;

/// One call made to the fake, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Ping,
    ImageExists {
        reference: String,
    },
    ImportImage {
        reference: String,
        rootfs_tar: PathBuf,
        config: ImageConfig,
    },
    TagImage {
        source: String,
        reference: String,
    },
    RemoveImage {
        reference: String,
    },
    PushImage {
        reference: String,
    },
    InspectImage {
        reference: String,
    },
    BuildImage {
        build: ImageBuild,
    },
    ListImages {
        repository: String,
    },
    EnsureNetwork {
        name: String,
        labels: BTreeMap<String, String>,
    },
    RemoveNetwork {
        name: String,
    },
    EnsureVolume {
        name: String,
        labels: BTreeMap<String, String>,
    },
    RemoveVolume {
        name: String,
    },
    CreateContainer {
        spec: ContainerSpec,
    },
    Upload {
        id: String,
        dest_dir: String,
        tar: Bytes,
    },
    Download {
        id: String,
        path: String,
    },
    Start {
        id: String,
    },
    Output {
        id: String,
    },
    Attach {
        id: String,
    },
    ResizeTty {
        id: String,
        rows: u16,
        cols: u16,
    },
    Wait {
        id: String,
    },
    Stop {
        id: String,
        grace: Duration,
    },
    RemoveContainer {
        id: String,
    },
    Commit {
        id: String,
        reference: String,
        config: ImageConfig,
    },
    Inspect {
        id: String,
    },
    Stats {
        id: String,
    },
    ListContainers {
        labels: Vec<(String, String)>,
    },
    SwarmStatus,
    EnsureOverlayNetwork {
        name: String,
        labels: BTreeMap<String, String>,
    },
    DeployService {
        spec: ServiceSpec,
    },
    ScaleService {
        name: String,
        replicas: u32,
    },
    RestartService {
        name: String,
    },
    RollbackService {
        name: String,
    },
    Service {
        name: String,
    },
    ListServices {
        labels: Vec<(String, String)>,
    },
    Tasks {
        service: String,
    },
    RemoveService {
        name: String,
    },
    ServiceOutput {
        name: String,
    },
    Nodes,
    SetNodeAvailability {
        node: String,
        availability: Availability,
    },
}

/// In-memory engine. Containers without a script run until stopped, removed or given an exit
/// code with [`FakeEngine::set_exit_code`]; scripted ones print their chunks and exit as soon
/// as they start. An attached container behaves like `cat`: it echoes its stdin to stdout and
/// exits with 0 when stdin closes. Addresses are `10.<network>.x.y` and are never dialled.
/// It is also a one-node swarm (see `fake_swarm.rs`): services of images it has get their
/// tasks at once, and updates complete at once unless [`FakeEngine::fail_updates_to`] says
/// otherwise.
#[derive(Debug)]
pub struct FakeEngine {
    /// Shared with the tasks that echo attached containers' stdin.
    state: Arc<Mutex<State>>,
}

impl Default for FakeEngine {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    calls: Vec<Call>,
    /// Services, tasks and the node of the fake swarm.
    pub(crate) swarm: SwarmState,
    images: BTreeMap<String, ImageConfig>,
    /// What `push_image` pushed, as `reference@digest`: a service may run these, as a node
    /// pulls them.
    pushed: BTreeSet<String>,
    networks: BTreeMap<String, Network>,
    volumes: BTreeMap<String, BTreeMap<String, String>>,
    containers: BTreeMap<ContainerId, Container>,
    /// Exposed ports of images that have some, by reference.
    exposed_ports: BTreeMap<String, Vec<String>>,
    /// What `build_image` does, by the reference it builds.
    builds: BTreeMap<String, BuildScript>,
    /// By container name or image reference.
    scripts: BTreeMap<String, Script>,
    /// By (container name or image reference, path).
    scripted_files: BTreeMap<(String, String), Bytes>,
    /// Exit codes for the next start, by container id or name.
    pending_exits: BTreeMap<String, i64>,
    networks_created: u8,
    containers_created: u64,
    starts: u64,
}

#[derive(Debug)]
struct Network {
    index: u8,
    hosts: u16,
}

#[derive(Debug, Clone)]
struct BuildScript {
    output: Vec<String>,
    /// The image it makes, or the error that stops it.
    outcome: std::result::Result<ImageDetails, String>,
}

#[derive(Debug, Clone)]
struct Script {
    chunks: Vec<OutputChunk>,
    exit_code: i64,
}

#[derive(Debug)]
struct Container {
    id: ContainerId,
    spec: ContainerSpec,
    network: String,
    address: IpAddr,
    status: Status,
    started_at: Option<String>,
    output: Vec<OutputChunk>,
    /// Uploaded archives by destination folder.
    uploads: BTreeMap<String, Bytes>,
    /// `Some(exit code)` once the current run has ended.
    exit: watch::Sender<Option<i64>>,
    /// The output streams of attached clients, until the container exits.
    attached: Vec<mpsc::UnboundedSender<Result<OutputChunk>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Exited(i64),
}

impl Container {
    fn exit_with(&mut self, code: i64) {
        self.status = Status::Exited(code);
        self.exit.send_replace(Some(code));
        self.attached.clear();
    }

    /// Sends the current output to attached clients, as a started process prints it.
    fn print_to_attached(&self) {
        for client in &self.attached {
            for chunk in &self.output {
                client.send(Ok(chunk.clone())).ok();
            }
        }
    }

    fn state(&self) -> ContainerState {
        let running = self.status == Status::Running;
        ContainerState {
            id: self.id.clone(),
            name: self.spec.name.clone(),
            image: self.spec.image.clone(),
            labels: self.spec.labels.clone(),
            running,
            exit_code: match self.status {
                Status::Exited(code) => Some(code),
                Status::Created | Status::Running => None,
            },
            addresses: if running {
                BTreeMap::from([(self.network.clone(), self.address)])
            } else {
                BTreeMap::new()
            },
            started_at: self.started_at.clone(),
        }
    }
}

impl State {
    pub(crate) fn record(&mut self, call: Call) {
        self.calls.push(call);
    }

    /// Docker accepts a container's id or its name wherever it takes one.
    fn container_id(&self, id_or_name: &str) -> Option<ContainerId> {
        if self.containers.contains_key(id_or_name) {
            return Some(id_or_name.to_owned());
        }
        self.containers
            .values()
            .find(|container| container.spec.name == id_or_name)
            .map(|container| container.id.clone())
    }

    fn container(&mut self, id_or_name: &str) -> Result<&mut Container> {
        let id = self
            .container_id(id_or_name)
            .ok_or_else(|| not_found("container", id_or_name))?;
        self.containers
            .get_mut(&id)
            .ok_or_else(|| not_found("container", id_or_name))
    }

    pub(crate) fn has_image(&self, reference: &str) -> bool {
        self.images.contains_key(reference) || self.pushed.contains(reference)
    }

    /// The output and exit code scripted for `name`, else for `image`.
    pub(crate) fn script(&self, name: &str, image: &str) -> Option<(Vec<OutputChunk>, i64)> {
        [name, image]
            .into_iter()
            .find_map(|key| self.scripts.get(key))
            .map(|script| (script.chunks.clone(), script.exit_code))
    }

    pub(crate) fn ensure_network(&mut self, name: &str) {
        if !self.networks.contains_key(name) {
            let index = self.networks_created;
            self.networks_created = self.networks_created.wrapping_add(1);
            self.networks
                .insert(name.to_owned(), Network { index, hosts: 1 });
        }
    }
}

impl FakeEngine {
    pub fn new() -> Self {
        let mut state = State::default();
        state.ensure_network(DEFAULT_NETWORK);
        Self {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The spec of every container created so far, in order.
    pub fn created_specs(&self) -> Vec<ContainerSpec> {
        self.state()
            .calls
            .iter()
            .filter_map(|call| match call {
                Call::CreateContainer { spec } => Some(spec.clone()),
                _ => None,
            })
            .collect()
    }

    /// Forgets the calls so far, so a test can assert on what follows its set-up.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Makes `reference` exist with a default config, as if built or imported earlier.
    pub fn add_image(&self, reference: &str) {
        self.state()
            .images
            .insert(reference.to_owned(), ImageConfig::default());
    }

    /// The config an imported or committed image was given.
    pub fn image_config(&self, reference: &str) -> Option<ImageConfig> {
        self.state().images.get(reference).cloned()
    }

    pub fn images(&self) -> Vec<String> {
        self.state().images.keys().cloned().collect()
    }

    /// Networks, including the default `bridge`.
    pub fn networks(&self) -> Vec<String> {
        self.state().networks.keys().cloned().collect()
    }

    pub fn volumes(&self) -> Vec<String> {
        self.state().volumes.keys().cloned().collect()
    }

    /// Makes the container with this id or name exit with `code`: at once if it is running,
    /// otherwise the next time it starts (a container that does not exist yet included).
    pub fn set_exit_code(&self, id_or_name: &str, code: i64) {
        let mut state = self.state();
        if let Some(id) = state.container_id(id_or_name)
            && let Some(container) = state.containers.get_mut(&id)
            && container.status == Status::Running
        {
            container.exit_with(code);
            return;
        }
        state.pending_exits.insert(id_or_name.to_owned(), code);
    }

    /// Containers named `image_or_name`, or created from that image, print `chunks` and exit
    /// with `exit_code` each time they start; so do the tasks of job services of that name or
    /// image. A script for the name wins over one for the image.
    pub fn script_output(&self, image_or_name: &str, chunks: Vec<OutputChunk>, exit_code: i64) {
        self.state()
            .scripts
            .insert(image_or_name.to_owned(), Script { chunks, exit_code });
    }

    /// `download(path)` from containers named `image_or_name`, or created from that image,
    /// returns `tar` unless something was uploaded to exactly that path.
    pub fn script_download(&self, image_or_name: &str, path: &str, tar: Bytes) {
        self.state()
            .scripted_files
            .insert((image_or_name.to_owned(), path.to_owned()), tar);
    }

    /// Adds an image with a config and exposed ports, as if built or pulled before.
    pub fn add_image_details(&self, reference: &str, details: ImageDetails) {
        let mut state = self.state();
        state
            .images
            .insert(reference.to_owned(), details.config.clone());
        state
            .exposed_ports
            .insert(reference.to_owned(), details.exposed_ports);
    }

    /// `build_image` of `reference` prints `output`, then tags an image with `outcome`'s
    /// details or fails with its message. Unscripted builds print nothing and tag an image
    /// with a default config.
    pub fn script_build(
        &self,
        reference: &str,
        output: Vec<String>,
        outcome: std::result::Result<ImageDetails, String>,
    ) {
        self.state()
            .builds
            .insert(reference.to_owned(), BuildScript { output, outcome });
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panicking test must not hide the fake's state from the assertions after it.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Echoes an attached container's stdin to its output until stdin closes, then ends the
/// container with 0 as `cat` would (at its start if it has not started yet). Stops early
/// when the container exits or is removed.
async fn echo_stdin(
    state: Arc<Mutex<State>>,
    id: ContainerId,
    mut stdin: tokio::io::DuplexStream,
    output: mpsc::UnboundedSender<Result<OutputChunk>>,
    mut exit: watch::Receiver<Option<i64>>,
) {
    let mut buffer = vec![0; STDIN_BUFFER];
    loop {
        tokio::select! {
            read = stdin.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = OutputChunk {
                        stream: OutputStream::Stdout,
                        bytes: Bytes::copy_from_slice(&buffer[..n]),
                    };
                    output.send(Ok(chunk)).ok();
                }
            },
            _ = exit.wait_for(Option::is_some) => return,
        }
    }
    let mut state = lock(&state);
    let status = state.containers.get(&id).map(|container| container.status);
    match status {
        Some(Status::Running) => {
            if let Some(container) = state.containers.get_mut(&id) {
                container.exit_with(0);
            }
        }
        Some(Status::Created) => {
            state.pending_exits.insert(id, 0);
        }
        Some(Status::Exited(_)) | None => {}
    }
}

#[async_trait]
impl ContainerEngine for FakeEngine {
    async fn ping(&self) -> Result<()> {
        self.state().record(Call::Ping);
        Ok(())
    }

    async fn system_info(&self) -> Result<crate::SystemInfo> {
        Ok(crate::SystemInfo {
            version: "fake".to_owned(),
            ..crate::SystemInfo::default()
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        let mut state = self.state();
        state.record(Call::ImageExists {
            reference: reference.to_owned(),
        });
        Ok(state.images.contains_key(reference))
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        let mut state = self.state();
        state.record(Call::InspectImage {
            reference: reference.to_owned(),
        });
        Ok(state.images.get(reference).map(|config| ImageDetails {
            config: config.clone(),
            exposed_ports: state
                .exposed_ports
                .get(reference)
                .cloned()
                .unwrap_or_default(),
        }))
    }

    fn build_image(&self, build: ImageBuild) -> BoxStream<'static, Result<String>> {
        let mut state = self.state();
        let script = state
            .builds
            .get(&build.reference)
            .cloned()
            .unwrap_or(BuildScript {
                output: Vec::new(),
                outcome: Ok(ImageDetails::default()),
            });
        let reference = build.reference.clone();
        state.record(Call::BuildImage { build });
        let mut items: Vec<Result<String>> = script.output.into_iter().map(Ok).collect();
        match script.outcome {
            Ok(details) => {
                state.images.insert(reference.clone(), details.config);
                state.exposed_ports.insert(reference, details.exposed_ports);
            }
            Err(message) => items.push(Err(EngineError::Engine(format!(
                "building image `{reference}`: {message}"
            )))),
        }
        stream::iter(items).boxed()
    }

    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: &Path,
        config: &ImageConfig,
    ) -> Result<()> {
        self.state().record(Call::ImportImage {
            reference: reference.to_owned(),
            rootfs_tar: rootfs_tar.to_owned(),
            config: config.clone(),
        });
        tokio::fs::metadata(rootfs_tar)
            .await
            .map_err(|source| EngineError::Io {
                path: rootfs_tar.display().to_string(),
                source,
            })?;
        self.state()
            .images
            .insert(reference.to_owned(), config.clone());
        Ok(())
    }

    async fn tag_image(&self, source: &str, reference: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::TagImage {
            source: source.to_owned(),
            reference: reference.to_owned(),
        });
        let config = state
            .images
            .get(source)
            .cloned()
            .ok_or_else(|| EngineError::Engine(format!("no such image `{source}`")))?;
        let exposed = state.exposed_ports.get(source).cloned();
        state.images.insert(reference.to_owned(), config);
        if let Some(exposed) = exposed {
            state.exposed_ports.insert(reference.to_owned(), exposed);
        }
        Ok(())
    }

    async fn push_image(&self, reference: &str) -> Result<String> {
        let mut state = self.state();
        state.record(Call::PushImage {
            reference: reference.to_owned(),
        });
        if !state.images.contains_key(reference) {
            return Err(EngineError::Engine(format!("no such image `{reference}`")));
        }
        let digest = fake_digest(reference);
        state.pushed.insert(format!("{reference}@{digest}"));
        Ok(digest)
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RemoveImage {
            reference: reference.to_owned(),
        });
        if let Some(container) = state
            .containers
            .values()
            .find(|container| container.spec.image == reference)
        {
            return Err(EngineError::Engine(format!(
                "image `{reference}` is used by container `{}`",
                container.spec.name
            )));
        }
        state.images.remove(reference);
        Ok(())
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<String>> {
        let mut state = self.state();
        state.record(Call::ListImages {
            repository: repository.to_owned(),
        });
        Ok(state
            .images
            .keys()
            .filter(|reference| split_reference(reference).0 == repository)
            .cloned()
            .collect())
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let mut state = self.state();
        state.record(Call::EnsureNetwork {
            name: name.to_owned(),
            labels: labels.clone(),
        });
        state.ensure_network(name);
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RemoveNetwork {
            name: name.to_owned(),
        });
        if let Some(container) = state
            .containers
            .values()
            .find(|container| container.network == name && container.status == Status::Running)
        {
            return Err(EngineError::Engine(format!(
                "network `{name}` has active endpoints (container `{}`)",
                container.spec.name
            )));
        }
        state.networks.remove(name);
        Ok(())
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let mut state = self.state();
        state.record(Call::EnsureVolume {
            name: name.to_owned(),
            labels: labels.clone(),
        });
        state
            .volumes
            .entry(name.to_owned())
            .or_insert_with(|| labels.clone());
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RemoveVolume {
            name: name.to_owned(),
        });
        let in_use = state.containers.values().find(|container| {
            container
                .spec
                .mounts
                .iter()
                .any(|mount| mount.source == MountSource::Volume(name.to_owned()))
        });
        if let Some(container) = in_use {
            return Err(EngineError::Engine(format!(
                "volume `{name}` is in use by container `{}`",
                container.spec.name
            )));
        }
        state.volumes.remove(name);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        let mut state = self.state();
        state.record(Call::CreateContainer { spec: spec.clone() });
        if !state.images.contains_key(&spec.image) {
            return Err(not_found("image", &spec.image));
        }
        if !spec.name.is_empty() && state.container_id(&spec.name).is_some() {
            return Err(EngineError::Engine(format!(
                "container name `{}` is already in use",
                spec.name
            )));
        }
        let network = spec.network.as_deref().unwrap_or(DEFAULT_NETWORK);
        let Some(subnet) = state.networks.get_mut(network) else {
            return Err(not_found("network", network));
        };
        subnet.hosts = subnet.hosts.wrapping_add(1);
        let [high, low] = subnet.hosts.to_be_bytes();
        let address = IpAddr::V4(Ipv4Addr::new(10, subnet.index, high, low));
        for mount in &spec.mounts {
            if let MountSource::Volume(volume) = &mount.source {
                state.volumes.entry(volume.clone()).or_default();
            }
        }
        state.containers_created += 1;
        let id = fake_container_id(state.containers_created);
        let mut spec = spec.clone();
        if spec.name.is_empty() {
            spec.name = format!("fake-{}", state.containers_created);
        }
        let container = Container {
            id: id.clone(),
            spec,
            network: network.to_owned(),
            address,
            status: Status::Created,
            started_at: None,
            output: Vec::new(),
            uploads: BTreeMap::new(),
            exit: watch::Sender::new(None),
            attached: Vec::new(),
        };
        state.containers.insert(id.clone(), container);
        Ok(id)
    }

    async fn upload(&self, id: &str, dest_dir: &str, tar: Bytes) -> Result<()> {
        let mut state = self.state();
        state.record(Call::Upload {
            id: id.to_owned(),
            dest_dir: dest_dir.to_owned(),
            tar: tar.clone(),
        });
        state
            .container(id)?
            .uploads
            .insert(dest_dir.to_owned(), tar);
        Ok(())
    }

    async fn download(&self, id: &str, path: &str) -> Result<Bytes> {
        let mut state = self.state();
        state.record(Call::Download {
            id: id.to_owned(),
            path: path.to_owned(),
        });
        let container = state.container(id)?;
        if let Some(tar) = container.uploads.get(path) {
            return Ok(tar.clone());
        }
        let (name, image) = (container.spec.name.clone(), container.spec.image.clone());
        [name, image]
            .into_iter()
            .find_map(|key| state.scripted_files.get(&(key, path.to_owned())).cloned())
            .ok_or_else(|| not_found("path", path))
    }

    async fn start(&self, id: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::Start { id: id.to_owned() });
        let container = state.container(id)?;
        if container.status == Status::Running {
            return Ok(());
        }
        let (container_id, name, image) = (
            container.id.clone(),
            container.spec.name.clone(),
            container.spec.image.clone(),
        );
        let script = [&name, &image]
            .into_iter()
            .find_map(|key| state.scripts.get(key.as_str()).cloned());
        let pending_exit = [&container_id, &name]
            .into_iter()
            .find_map(|key| state.pending_exits.remove(key.as_str()));
        state.starts += 1;
        let started_at = format!("1970-01-01T00:00:00.{:09}Z", state.starts);
        let container = state.container(&container_id)?;
        container.status = Status::Running;
        container.started_at = Some(started_at);
        container.exit.send_replace(None);
        match (script, pending_exit) {
            (Some(script), pending_exit) => {
                container.output = script.chunks;
                container.print_to_attached();
                container.exit_with(pending_exit.unwrap_or(script.exit_code));
            }
            (None, Some(code)) => {
                container.output.clear();
                container.exit_with(code);
            }
            (None, None) => container.output.clear(),
        }
        Ok(())
    }

    /// `since` is ignored: the fake has no clock for its output.
    fn output(&self, id: &str, _since: Option<i64>) -> BoxStream<'static, Result<OutputChunk>> {
        let mut state = self.state();
        state.record(Call::Output { id: id.to_owned() });
        let container = match state.container(id) {
            Ok(container) => container,
            Err(error) => return stream::once(async { Err(error) }).boxed(),
        };
        let chunks = stream::iter(container.output.clone().into_iter().map(Ok));
        if container.status != Status::Running {
            return chunks.boxed();
        }
        let mut exit = container.exit.subscribe();
        let until_exit = stream::once(async move {
            // A dropped sender means the container is gone, which ends its output too.
            exit.wait_for(Option::is_some).await.ok();
        })
        .filter_map(|()| std::future::ready(None));
        chunks.chain(until_exit).boxed()
    }

    async fn attach(&self, id: &str) -> Result<Attached> {
        let (client, mut output) = mpsc::unbounded_channel();
        let (input, stdin) = tokio::io::duplex(STDIN_BUFFER);
        let (container_id, exit) = {
            let mut state = self.state();
            state.record(Call::Attach { id: id.to_owned() });
            let container = state.container(id)?;
            // An exited container's output has ended; a client attaching now gets nothing.
            if !matches!(container.status, Status::Exited(_)) {
                container.attached.push(client.clone());
            }
            (container.id.clone(), container.exit.subscribe())
        };
        tokio::spawn(echo_stdin(
            Arc::clone(&self.state),
            container_id,
            stdin,
            client,
            exit,
        ));
        Ok(Attached {
            output: stream::poll_fn(move |cx| output.poll_recv(cx)).boxed(),
            input: Box::pin(input),
        })
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let mut state = self.state();
        state.record(Call::ResizeTty {
            id: id.to_owned(),
            rows,
            cols,
        });
        let container = state.container(id)?;
        if container.status != Status::Running {
            return Err(EngineError::Engine(format!(
                "container `{id}` is not running: cannot resize its terminal"
            )));
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        let mut exit = {
            let mut state = self.state();
            state.record(Call::Wait { id: id.to_owned() });
            let container = state.container(id)?;
            match container.status {
                // Docker's `not-running` condition is met at once by a created container.
                Status::Created => return Ok(0),
                Status::Exited(code) => return Ok(code),
                Status::Running => container.exit.subscribe(),
            }
        };
        let code = exit
            .wait_for(Option::is_some)
            .await
            .map(|code| code.unwrap_or(KILLED_EXIT_CODE))
            .unwrap_or(KILLED_EXIT_CODE);
        Ok(code)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let mut state = self.state();
        state.record(Call::Stop {
            id: id.to_owned(),
            grace,
        });
        let container = state.container(id)?;
        if container.status == Status::Running {
            container.exit_with(STOPPED_EXIT_CODE);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut state = self.state();
        state.record(Call::RemoveContainer { id: id.to_owned() });
        let Some(container_id) = state.container_id(id) else {
            return Ok(());
        };
        if let Some(mut container) = state.containers.remove(&container_id)
            && container.status == Status::Running
        {
            container.exit_with(KILLED_EXIT_CODE);
        }
        Ok(())
    }

    async fn commit(&self, id: &str, reference: &str, config: &ImageConfig) -> Result<()> {
        let mut state = self.state();
        state.record(Call::Commit {
            id: id.to_owned(),
            reference: reference.to_owned(),
            config: config.clone(),
        });
        state.container(id)?;
        state.images.insert(reference.to_owned(), config.clone());
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerState> {
        let mut state = self.state();
        state.record(Call::Inspect { id: id.to_owned() });
        Ok(state.container(id)?.state())
    }

    /// A container of the fake has used no CPU and a fixed 32 MiB, within its spec's limit.
    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let mut state = self.state();
        state.record(Call::Stats { id: id.to_owned() });
        let container = state.container(id)?;
        Ok(ContainerStats {
            cpu_total_ns: 0,
            memory_bytes: FAKE_MEMORY_BYTES,
            memory_limit_bytes: container
                .spec
                .memory_bytes
                .and_then(|limit| u64::try_from(limit).ok()),
        })
    }

    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerState>> {
        let mut state = self.state();
        state.record(Call::ListContainers {
            labels: labels
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        });
        Ok(state
            .containers
            .values()
            .filter(|container| {
                labels.iter().all(|(key, value)| {
                    container.spec.labels.get(*key).map(String::as_str) == Some(*value)
                })
            })
            .map(Container::state)
            .collect())
    }
}

fn not_found(kind: &'static str, name: &str) -> EngineError {
    EngineError::NotFound {
        kind,
        name: name.to_owned(),
    }
}

/// A Docker-shaped 64-hex-digit id whose 12-digit short form differs between containers.
fn fake_container_id(serial: u64) -> ContainerId {
    // splitmix64: spreads consecutive serials over the whole range, deterministically.
    let mut z = serial.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    format!("{z:016x}").repeat(4)
}

/// The digest a fake registry gives a pushed image: the same for the same reference, as a
/// real registry gives the same for the same image.
fn fake_digest(reference: &str) -> String {
    let hash = reference
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("sha256:{}", format!("{hash:016x}").repeat(4))
}

#[cfg(test)]
mod tests {
    use futures_util::TryStreamExt;

    use super::*;
    use crate::OutputStream;

    fn spec(name: &str, image: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            ..ContainerSpec::default()
        }
    }

    fn stdout(text: &str) -> OutputChunk {
        OutputChunk {
            stream: OutputStream::Stdout,
            bytes: Bytes::from(text.to_owned()),
        }
    }

    #[tokio::test]
    async fn scripted_container_prints_and_exits() {
        let engine = FakeEngine::new();
        engine.add_image("slipway/stack:1");
        engine.script_output("slipway/stack:1", vec![stdout("compiled\n")], 3);

        let id = crate::run(&engine, &spec("build-1", "slipway/stack:1"))
            .await
            .expect("runs");
        let output: Vec<OutputChunk> = engine
            .output(&id, None)
            .try_collect()
            .await
            .expect("output");
        assert_eq!(output, [stdout("compiled\n")]);
        assert_eq!(engine.wait(&id).await.expect("waits"), 3);
        let state = engine.inspect("build-1").await.expect("inspects by name");
        assert!(!state.running);
        assert_eq!(state.exit_code, Some(3));
        assert!(state.addresses.is_empty());
    }

    #[tokio::test]
    async fn unscripted_container_runs_until_stopped() {
        let engine = FakeEngine::new();
        engine.add_image("slipway/hello:1.0.0");
        let labels = BTreeMap::new();
        engine
            .ensure_network("slipway-hello", &labels)
            .await
            .expect("network");
        let web = ContainerSpec {
            network: Some("slipway-hello".to_owned()),
            labels: BTreeMap::from([("slipway.app".to_owned(), "hello".to_owned())]),
            ..spec("hello.web.1", "slipway/hello:1.0.0")
        };
        let id = crate::run(&engine, &web).await.expect("runs");

        let state = engine.inspect(&id).await.expect("inspects");
        assert!(state.running);
        let address = state.addresses["slipway-hello"];
        assert!(matches!(address, IpAddr::V4(v4) if v4.octets()[0] == 10));
        assert_eq!(
            engine
                .list_containers(&[("slipway.app", "hello")])
                .await
                .expect("lists")
                .len(),
            1
        );
        assert!(
            engine
                .list_containers(&[("slipway.app", "other")])
                .await
                .expect("lists")
                .is_empty()
        );

        let waiter = engine.wait(&id);
        engine
            .stop(&id, Duration::from_secs(10))
            .await
            .expect("stops");
        assert_eq!(waiter.await.expect("waits"), STOPPED_EXIT_CODE);
        engine.remove_container(&id).await.expect("removes");
        engine
            .remove_container(&id)
            .await
            .expect("removing again is fine");
        assert!(matches!(
            engine.inspect(&id).await,
            Err(EngineError::NotFound {
                kind: "container",
                ..
            })
        ));
        assert_eq!(
            engine.calls().last(),
            Some(&Call::Inspect { id: id.clone() })
        );
    }

    #[tokio::test]
    async fn set_exit_code_crashes_a_running_container_or_the_next_start() {
        let engine = FakeEngine::new();
        engine.add_image("app:1");
        let running = crate::run(&engine, &spec("a", "app:1"))
            .await
            .expect("runs");
        engine.set_exit_code("a", 1);
        assert_eq!(engine.wait(&running).await.expect("waits"), 1);

        engine.set_exit_code("b", 2);
        let crashing = crate::run(&engine, &spec("b", "app:1"))
            .await
            .expect("runs");
        assert_eq!(
            engine.inspect(&crashing).await.expect("inspects").exit_code,
            Some(2)
        );
        engine.start(&crashing).await.expect("restarts");
        assert!(engine.inspect(&crashing).await.expect("inspects").running);
    }

    #[tokio::test]
    async fn missing_image_and_duplicate_name_are_refused() {
        let engine = FakeEngine::new();
        assert!(matches!(
            engine.create_container(&spec("a", "nope:1")).await,
            Err(EngineError::NotFound { kind: "image", .. })
        ));
        engine.add_image("app:1");
        engine
            .create_container(&spec("a", "app:1"))
            .await
            .expect("creates");
        assert!(engine.create_container(&spec("a", "app:1")).await.is_err());
        assert!(engine.remove_image("app:1").await.is_err());
    }

    #[tokio::test]
    async fn commit_and_uploads_round_trip() {
        let engine = FakeEngine::new();
        engine.add_image("stack:1");
        engine.add_image("slipway/hello:1.0.0");
        let id = engine
            .create_container(&spec("b", "stack:1"))
            .await
            .expect("creates");
        engine
            .upload(&id, "/app", Bytes::from_static(b"tar"))
            .await
            .expect("uploads");
        assert_eq!(
            engine.download(&id, "/app").await.expect("downloads"),
            "tar"
        );
        assert!(matches!(
            engine.download(&id, "/other").await,
            Err(EngineError::NotFound { kind: "path", .. })
        ));

        let config = ImageConfig {
            cmd: vec!["web".to_owned()],
            ..ImageConfig::default()
        };
        engine
            .commit(&id, "slipway/hello:1.0.1", &config)
            .await
            .expect("commits");
        assert_eq!(engine.image_config("slipway/hello:1.0.1"), Some(config));
        assert_eq!(
            engine.list_images("slipway/hello").await.expect("lists"),
            ["slipway/hello:1.0.0", "slipway/hello:1.0.1"]
        );
    }

    #[tokio::test]
    async fn attached_container_echoes_stdin_and_exits_when_it_closes() {
        use tokio::io::AsyncWriteExt;

        let engine = FakeEngine::new();
        engine.add_image("app:1");
        let id = engine
            .create_container(&spec("run-1", "app:1"))
            .await
            .expect("creates");
        let mut attached = engine.attach(&id).await.expect("attaches");
        engine.start(&id).await.expect("starts");
        engine.resize_tty(&id, 24, 80).await.expect("resizes");

        attached.input.write_all(b"hello\n").await.expect("writes");
        let echoed = attached.output.next().await.expect("a chunk");
        assert_eq!(echoed.expect("output"), stdout("hello\n"));
        attached.input.shutdown().await.expect("closes stdin");
        assert!(
            attached.output.next().await.is_none(),
            "output ends at exit"
        );
        assert_eq!(engine.wait(&id).await.expect("waits"), 0);
        assert!(engine.calls().contains(&Call::ResizeTty {
            id: id.clone(),
            rows: 24,
            cols: 80
        }));
        assert!(engine.resize_tty(&id, 24, 80).await.is_err());
    }

    #[tokio::test]
    async fn attached_client_gets_a_scripted_container_output_from_its_start() {
        let engine = FakeEngine::new();
        engine.add_image("app:1");
        engine.script_output("app:1", vec![stdout("one\n"), stdout("two\n")], 7);
        let id = engine
            .create_container(&spec("run-2", "app:1"))
            .await
            .expect("creates");
        let attached = engine.attach(&id).await.expect("attaches");
        engine.start(&id).await.expect("starts");

        let output: Vec<OutputChunk> = attached.output.try_collect().await.expect("output");
        assert_eq!(output, [stdout("one\n"), stdout("two\n")]);
        assert_eq!(engine.wait(&id).await.expect("waits"), 7);

        let late = engine
            .attach(&id)
            .await
            .expect("attaches to the exited one");
        let output: Vec<OutputChunk> = late.output.try_collect().await.expect("output");
        assert!(output.is_empty());
    }

    #[test]
    fn fake_ids_have_distinct_short_forms() {
        let ids: Vec<String> = (1..=100).map(fake_container_id).collect();
        let mut short: Vec<&str> = ids.iter().map(|id| &id[..12]).collect();
        short.sort_unstable();
        short.dedup();
        assert_eq!(short.len(), 100);
        assert!(ids.iter().all(|id| id.len() == 64));
    }
}
