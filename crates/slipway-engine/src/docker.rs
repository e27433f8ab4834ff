//! `ContainerEngine` over the Docker Engine API (bollard).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, EndpointSettings, HostConfig,
    Mount as DockerMount, MountType, NetworkCreateRequest, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    AttachContainerOptions, BuildImageOptions, CommitContainerOptions, CreateContainerOptions,
    CreateImageOptions, DownloadFromContainerOptions, InspectContainerOptions,
    InspectNetworkOptions, ListContainersOptions, ListImagesOptions, LogsOptions, PushImageOptions,
    RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions, ResizeContainerTTYOptions,
    StartContainerOptions, StatsOptions, StopContainerOptions, TagImageOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use bytes::{Bytes, BytesMut};
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use slipway_types::{ContainerSpec, MountSource};
use tokio_util::io::ReaderStream;

use crate::{
    Attached, ContainerEngine, ContainerId, ContainerState, ContainerStats, EngineError,
    ImageBuild, ImageConfig, ImageDetails, OutputChunk, OutputStream, Result,
};

/// Where dockerd listens when `DOCKER_HOST` is unset.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Per-request limit on getting a response. Bollard's default of 2 minutes is too short for
/// importing or committing a stack image of a few hundred megabytes; streamed bodies (logs,
/// wait) are not bound by it once the headers arrive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Docker reads a detach sequence from a TTY's input, `ctrl-p,ctrl-q` by default, which
/// shells use for their history. An attached run must not detach, so the sequence is one
/// nobody types.
const DETACH_KEYS: &str = "ctrl-],ctrl-],ctrl-],ctrl-]";

/// CPU period of a Dockerfile build's steps; the quota is this share of it.
const CPU_PERIOD_MICROS: i32 = 100_000;

/// Extra time a stop request may take beyond its grace period (the kill and clean-up).
const STOP_SLACK: Duration = Duration::from_secs(60);

/// The Docker Engine, reached through its local socket or `DOCKER_HOST`.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    pub(crate) docker: Docker,
    pub(crate) host: String,
    /// Docker 20.10 creates a second network with the same name instead of refusing, and
    /// then refuses to attach by the now ambiguous name; creating networks one at a time
    /// keeps `ensure_network` idempotent within this process.
    pub(crate) network_lock: Arc<tokio::sync::Mutex<()>>,
}

impl DockerEngine {
    /// Connects to `DOCKER_HOST`, or `unix:///var/run/docker.sock` when it is unset.
    pub async fn connect() -> Result<Self> {
        let host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        Self::connect_to(&host).await
    }

    /// Connects to the daemon at `host` (`unix://…`, `tcp://…` or `http://…`) and settles on
    /// the highest API version both sides speak, so an older daemon (20.10 speaks 1.41) does
    /// not reject bollard's newer default version.
    pub async fn connect_to(host: &str) -> Result<Self> {
        let docker = Docker::connect_with_host(host).map_err(|error| {
            if is_connect_failure(&error) {
                unreachable(host, &error)
            } else {
                EngineError::Engine(format!("docker host `{host}`: {error}"))
            }
        })?;
        let docker = docker
            .with_timeout(REQUEST_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(|error| engine_error(host, "engine", host, error))?;
        Ok(Self {
            docker,
            host: host.to_owned(),
            network_lock: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    pub(crate) fn error(&self, kind: &'static str, name: &str, error: DockerError) -> EngineError {
        engine_error(&self.host, kind, name, error)
    }
}

#[async_trait]
impl ContainerEngine for DockerEngine {
    async fn ping(&self) -> Result<()> {
        self.docker
            .ping()
            .await
            .map_err(|error| self.error("engine", &self.host, error))?;
        Ok(())
    }

    async fn system_info(&self) -> Result<crate::SystemInfo> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|error| self.error("engine", &self.host, error))?;
        let images = self
            .docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|error| self.error("engine", &self.host, error))?;
        // Engines before API 1.44 answer `df` in a shape this client does not read: their
        // volume use is then unknown rather than wrong.
        let usage = self
            .docker
            .df(None::<bollard::query_parameters::DataUsageOptions>)
            .await
            .ok();
        Ok(crate::SystemInfo {
            version: version.version.unwrap_or_default(),
            images_bytes: images
                .iter()
                .map(|image| u64::try_from(image.size).unwrap_or_default())
                .sum(),
            volumes_bytes: usage
                .and_then(|usage| usage.volume_usage)
                .and_then(|volumes| volumes.total_size)
                .and_then(|size| u64::try_from(size).ok()),
        })
    }

    async fn image_exists(&self, reference: &str) -> Result<bool> {
        match self.docker.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(error) if status(&error) == Some(404) => Ok(false),
            Err(error) => Err(self.error("image", reference, error)),
        }
    }

    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: &Path,
        config: &ImageConfig,
    ) -> Result<()> {
        let changes = dockerfile_changes(config)?;
        let file = tokio::fs::File::open(rootfs_tar)
            .await
            .map_err(|source| EngineError::Io {
                path: rootfs_tar.display().to_string(),
                source,
            })?;
        let (repo, tag) = split_reference(reference);
        let options = CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes,
            ..Default::default()
        };
        let body = bollard::body_try_stream(ReaderStream::new(file));
        self.docker
            .create_image(Some(options), Some(body), None)
            .try_for_each(|_| async { Ok(()) })
            .await
            .map_err(|error| self.error("image", reference, error))?;
        tracing::info!(image = %reference, tarball = %rootfs_tar.display(), "imported image");
        Ok(())
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>> {
        let image = match self.docker.inspect_image(reference).await {
            Ok(image) => image,
            Err(error) if status(&error) == Some(404) => return Ok(None),
            Err(error) => return Err(self.error("image", reference, error)),
        };
        let config = image.config.unwrap_or_default();
        let env = config
            .env
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                Some((key.to_owned(), value.to_owned()))
            })
            .collect();
        let mut exposed_ports = config.exposed_ports.unwrap_or_default();
        exposed_ports.sort();
        Ok(Some(ImageDetails {
            config: ImageConfig {
                user: config.user.filter(|user| !user.is_empty()),
                working_dir: config.working_dir.filter(|dir| !dir.is_empty()),
                env,
                entrypoint: config.entrypoint.unwrap_or_default(),
                cmd: config.cmd.unwrap_or_default(),
                labels: config.labels.unwrap_or_default().into_iter().collect(),
            },
            exposed_ports,
        }))
    }

    fn build_image(&self, build: ImageBuild) -> BoxStream<'static, Result<String>> {
        // Bollard's build stream borrows the client; a task owns a clone of it instead, so
        // the stream can outlive this call. A dropped receiver ends the task, and with it the
        // request, which makes dockerd cancel the build.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let engine = self.clone();
        tokio::spawn(async move {
            let reference = build.reference.clone();
            let options = BuildImageOptions {
                dockerfile: build.dockerfile.clone(),
                t: Some(build.reference.clone()),
                rm: true,
                forcerm: true,
                // Docker takes a 32-bit byte count here; a larger limit saturates.
                memory: build
                    .memory_bytes
                    .map(|bytes| i32::try_from(bytes).unwrap_or(i32::MAX)),
                cpuperiod: build.nano_cpus.map(|_| CPU_PERIOD_MICROS),
                cpuquota: build.nano_cpus.map(|nanos| {
                    i32::try_from(nanos / 1000 * i64::from(CPU_PERIOD_MICROS) / 1_000_000)
                        .unwrap_or(i32::MAX)
                }),
                buildargs: Some(to_hash_map(&build.build_args)),
                labels: Some(to_hash_map(&build.labels)),
                ..Default::default()
            };
            let body = bollard::body_full(build.context);
            let mut stream = engine.docker.build_image(options, None, Some(body));
            while let Some(item) = stream.next().await {
                let message = match item {
                    Ok(info) => {
                        if let Some(detail) = info.error_detail {
                            let text = detail.message.unwrap_or_default();
                            Some(Err(EngineError::Engine(format!(
                                "building image `{reference}`: {}",
                                text.trim()
                            ))))
                        } else {
                            info.stream.filter(|text| !text.is_empty()).map(Ok)
                        }
                    }
                    Err(DockerError::DockerStreamError { error }) => {
                        Some(Err(EngineError::Engine(format!(
                            "building image `{reference}`: {}",
                            error.trim()
                        ))))
                    }
                    Err(error) => Some(Err(engine.error("image", &reference, error))),
                };
                let Some(message) = message else { continue };
                let failed = message.is_err();
                if tx.send(message).await.is_err() || failed {
                    return;
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }

    async fn tag_image(&self, source: &str, reference: &str) -> Result<()> {
        let (repo, tag) = split_reference(reference);
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.docker
            .tag_image(source, Some(options))
            .await
            .map_err(|error| self.error("image", source, error))?;
        tracing::info!(image = %source, name = %reference, "tagged image");
        Ok(())
    }

    async fn push_image(&self, reference: &str) -> Result<String> {
        let (repo, tag) = split_reference(reference);
        let registry = repo.split('/').next().unwrap_or(repo);
        let options = PushImageOptions {
            tag: Some(tag.to_owned()),
            platform: None,
        };
        let mut progress = self.docker.push_image(repo, Some(options), None);
        let mut digest = None;
        while let Some(info) = progress.next().await {
            let info = info.map_err(|error| push_error(&self.host, registry, reference, error))?;
            if let Some(found) = info.status.as_deref().and_then(pushed_digest) {
                digest = Some(found.to_owned());
            }
        }
        let digest = digest.ok_or_else(|| {
            EngineError::Engine(format!(
                "pushing `{reference}` to registry `{registry}`: the engine did not report a digest"
            ))
        })?;
        tracing::info!(image = %reference, %digest, "pushed image");
        Ok(digest)
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            platforms: None,
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.error("image", reference, error)),
        }
    }

    async fn list_images(&self, repository: &str) -> Result<Vec<String>> {
        let options = ListImagesOptions {
            filters: Some(HashMap::from([(
                "reference".to_owned(),
                vec![repository.to_owned()],
            )])),
            ..Default::default()
        };
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|error| self.error("image repository", repository, error))?;
        let mut references: Vec<String> = images
            .into_iter()
            .flat_map(|image| image.repo_tags)
            .filter(|tag| split_reference(tag).0 == repository)
            .collect();
        references.sort();
        references.dedup();
        Ok(references)
    }

    async fn ensure_network(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let _guard = self.network_lock.lock().await;
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(_) => return Ok(()),
            Err(error) if status(&error) == Some(404) => {}
            Err(error) => return Err(self.error("network", name, error)),
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            labels: Some(to_hash_map(labels)),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(|error| self.error("network", name, error))?;
        tracing::info!(network = %name, "created network");
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.error("network", name, error)),
        }
    }

    async fn ensure_volume(&self, name: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let request = VolumeCreateRequest {
            name: Some(name.to_owned()),
            labels: Some(to_hash_map(labels)),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map_err(|error| self.error("volume", name, error))?;
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<()> {
        match self
            .docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(error) => Err(self.error("volume", name, error)),
        }
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<ContainerId> {
        let body = create_body(spec)?;
        let options = CreateContainerOptions {
            name: (!spec.name.is_empty()).then(|| spec.name.clone()),
            platform: String::new(),
        };
        let response = self
            .docker
            .create_container(Some(options), body)
            .await
            .map_err(|error| match &error {
                DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                } if message.contains("No such image") => EngineError::NotFound {
                    kind: "image",
                    name: spec.image.clone(),
                },
                DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                } if message.contains("network") => EngineError::NotFound {
                    kind: "network",
                    name: spec.network.clone().unwrap_or_default(),
                },
                _ => self.error("container", &spec.name, error),
            })?;
        tracing::debug!(container = %spec.name, id = %response.id, image = %spec.image, "created container");
        Ok(response.id)
    }

    async fn upload(&self, id: &str, dest_dir: &str, tar: Bytes) -> Result<()> {
        let options = UploadToContainerOptions {
            path: dest_dir.to_owned(),
            ..Default::default()
        };
        self.docker
            .upload_to_container(id, Some(options), bollard::body_full(tar))
            .await
            .map_err(|error| self.error("container", id, error))
    }

    async fn download(&self, id: &str, path: &str) -> Result<Bytes> {
        let options = DownloadFromContainerOptions {
            path: path.to_owned(),
        };
        let archive = self
            .docker
            .download_from_container(id, Some(options))
            .try_fold(BytesMut::new(), |mut archive, chunk| async move {
                archive.extend_from_slice(&chunk);
                Ok(archive)
            })
            .await
            .map_err(|error| match &error {
                DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                } if message.contains("Could not find the file") => EngineError::NotFound {
                    kind: "path",
                    name: path.to_owned(),
                },
                _ => self.error("container", id, error),
            })?;
        Ok(archive.freeze())
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker
            .start_container(id, None::<StartContainerOptions>)
            .await
            .map_err(|error| self.error("container", id, error))
    }

    fn output(&self, id: &str, since: Option<i64>) -> BoxStream<'static, Result<OutputChunk>> {
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            // Docker's API takes a 32-bit timestamp here; saturate rather than wrap.
            since: since.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let engine = self.clone();
        let id = id.to_owned();
        self.docker
            .logs(&id, Some(options))
            .filter_map(move |item| std::future::ready(output_chunk(item, &engine, &id)))
            .boxed()
    }

    /// Bollard tells a raw (TTY) stream from Docker's multiplexed one by its first byte, so
    /// TTY output whose read starts with byte 0, 1 or 2 is misread as a frame header.
    async fn attach(&self, id: &str) -> Result<Attached> {
        let options = AttachContainerOptions {
            detach_keys: Some(DETACH_KEYS.to_owned()),
            logs: false,
            stream: true,
            stdin: true,
            stdout: true,
            stderr: true,
        };
        let attached = self
            .docker
            .attach_container(id, Some(options))
            .await
            .map_err(|error| self.error("container", id, error))?;
        let engine = self.clone();
        let id = id.to_owned();
        let output = attached
            .output
            .filter_map(move |item| std::future::ready(output_chunk(item, &engine, &id)))
            .boxed();
        Ok(Attached {
            output,
            input: attached.input,
        })
    }

    async fn resize_tty(&self, id: &str, rows: u16, cols: u16) -> Result<()> {
        let options = ResizeContainerTTYOptions {
            h: i32::from(rows),
            w: i32::from(cols),
        };
        self.docker
            .resize_container_tty(id, options)
            .await
            .map_err(|error| self.error("container", id, error))
    }

    async fn wait(&self, id: &str) -> Result<i64> {
        let mut responses = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match responses.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // Bollard reports a non-zero exit as an error; for us it is an answer.
            Some(Err(DockerError::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(error)) => Err(self.error("container", id, error)),
            None => Err(EngineError::Engine(format!(
                "waiting for container `{id}`: the engine ended the response without an exit code"
            ))),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let whole_seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
        let seconds = i32::try_from(whole_seconds).unwrap_or(i32::MAX);
        let options = StopContainerOptions {
            signal: None,
            t: Some(seconds),
        };
        // Docker answers a stop only once the container is down, up to `grace` later.
        let docker = self
            .docker
            .clone()
            .with_timeout(REQUEST_TIMEOUT.max(grace + STOP_SLACK));
        docker
            .stop_container(id, Some(options))
            .await
            .map_err(|error| self.error("container", id, error))?;
        tracing::debug!(container = %id, "stopped container");
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions {
            v: true,
            force: true,
            link: false,
        };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(error) if status(&error) == Some(404) => Ok(()),
            Err(DockerError::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(error) => Err(self.error("container", id, error)),
        }
    }

    /// Docker lays the container's own config under `config`: an unset user or working dir,
    /// env vars and labels `config` does not name, and the command when both entrypoint and
    /// cmd are empty all carry over into the image.
    async fn commit(&self, id: &str, reference: &str, config: &ImageConfig) -> Result<()> {
        let (repo, tag) = split_reference(reference);
        let options = CommitContainerOptions {
            container: Some(id.to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            ..Default::default()
        };
        let body = ContainerConfig {
            user: config.user.clone(),
            working_dir: config.working_dir.clone(),
            env: Some(env_list(&config.env)),
            // An explicit empty list keeps Docker from copying the container's entrypoint.
            entrypoint: Some(config.entrypoint.clone()),
            cmd: (!config.cmd.is_empty()).then(|| config.cmd.clone()),
            labels: Some(to_hash_map(&config.labels)),
            ..Default::default()
        };
        self.docker
            .commit_container(options, body)
            .await
            .map_err(|error| self.error("container", id, error))?;
        tracing::info!(container = %id, image = %reference, "committed image");
        Ok(())
    }

    async fn inspect(&self, id: &str) -> Result<ContainerState> {
        let response = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|error| self.error("container", id, error))?;
        Ok(container_state(response))
    }

    async fn stats(&self, id: &str) -> Result<ContainerStats> {
        let options = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let reading = self
            .docker
            .stats(id, Some(options))
            .next()
            .await
            .ok_or_else(|| EngineError::Engine(format!("no statistics for container `{id}`")))?
            .map_err(|error| self.error("container", id, error))?;
        let cpu_total_ns = reading
            .cpu_stats
            .and_then(|cpu| cpu.cpu_usage)
            .and_then(|usage| usage.total_usage)
            .unwrap_or(0);
        let memory = reading.memory_stats.unwrap_or_default();
        // As `docker stats`: the inactive file cache can be reclaimed, so it is not counted
        // (`inactive_file` under cgroup v2, `total_inactive_file` under v1).
        let cache = memory
            .stats
            .as_ref()
            .and_then(|stats| {
                stats
                    .get("inactive_file")
                    .or_else(|| stats.get("total_inactive_file"))
            })
            .copied()
            .unwrap_or(0);
        Ok(ContainerStats {
            cpu_total_ns,
            memory_bytes: memory.usage.unwrap_or(0).saturating_sub(cache),
            memory_limit_bytes: memory.limit,
        })
    }

    async fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<ContainerState>> {
        let filters: Vec<String> = labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let options = ListContainersOptions {
            all: true,
            filters: (!filters.is_empty()).then(|| HashMap::from([("label".to_owned(), filters)])),
            ..Default::default()
        };
        let summaries = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|error| self.error("containers", "list", error))?;
        let mut states = Vec::with_capacity(summaries.len());
        for id in summaries.into_iter().filter_map(|summary| summary.id) {
            match self.inspect(&id).await {
                Ok(state) => states.push(state),
                // Removed between the listing and the inspection.
                Err(EngineError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(states)
    }
}

/// Our chunk for one piece of Docker output; a TTY's raw output counts as stdout.
fn output_chunk(
    item: Result<LogOutput, DockerError>,
    engine: &DockerEngine,
    id: &str,
) -> Option<Result<OutputChunk>> {
    match item {
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
            Some(Ok(OutputChunk {
                stream: OutputStream::Stdout,
                bytes: message,
            }))
        }
        Ok(LogOutput::StdErr { message }) => Some(Ok(OutputChunk {
            stream: OutputStream::Stderr,
            bytes: message,
        })),
        Ok(LogOutput::StdIn { .. }) => None,
        Err(error) => Some(Err(engine.error("container", id, error))),
    }
}

/// Splits `repo:tag` (a registry port such as `host:5000/repo` is part of the repository);
/// a reference without a tag means `latest`, as in Docker.
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// The digest in a push's last status line, `latest: digest: sha256:… size: 528`.
fn pushed_digest(status: &str) -> Option<&str> {
    let (_, rest) = status.split_once("digest: ")?;
    rest.split_whitespace()
        .next()
        .filter(|digest| digest.starts_with("sha256:"))
}

/// A failed push in one line that names the registry, which is usually what is wrong (not
/// running, not trusted for plain HTTP, asking for a login).
fn push_error(host: &str, registry: &str, reference: &str, error: DockerError) -> EngineError {
    let message = match error {
        // What the registry (or the way to it) answered, as the daemon relays it.
        DockerError::DockerStreamError { error } => error,
        error => match engine_error(host, "image", reference, error) {
            EngineError::Engine(message) => message,
            other => return other,
        },
    };
    EngineError::Engine(format!(
        "pushing `{reference}` to registry `{registry}`: {}",
        message.replace('\n', " ")
    ))
}

/// The spec's mounts as Docker takes them, for a container or a service's tasks.
pub(crate) fn docker_mounts(spec: &ContainerSpec) -> Result<Vec<DockerMount>> {
    spec.mounts
        .iter()
        .map(|mount| {
            let (typ, source) = match &mount.source {
                MountSource::Bind(path) => {
                    let source = path.to_str().ok_or_else(|| {
                        EngineError::Engine(format!(
                            "bind mount source `{}` is not valid UTF-8",
                            path.display()
                        ))
                    })?;
                    (MountType::BIND, source.to_owned())
                }
                MountSource::Volume(name) => (MountType::VOLUME, name.clone()),
            };
            Ok(DockerMount {
                target: Some(mount.target.clone()),
                source: Some(source),
                typ: Some(typ),
                read_only: Some(mount.read_only),
                ..Default::default()
            })
        })
        .collect()
}

fn create_body(spec: &ContainerSpec) -> Result<ContainerCreateBody> {
    let mounts = docker_mounts(spec)?;
    let host_config = HostConfig {
        // docker-init as PID 1 reaps zombies and forwards SIGTERM, so a stop is graceful
        // even when the app itself would ignore signals as PID 1.
        init: Some(true),
        memory: spec.memory_bytes,
        nano_cpus: spec.nano_cpus,
        mounts: Some(mounts),
        network_mode: spec.network.clone(),
        ..Default::default()
    };
    let networking_config = spec.network.as_ref().map(|network| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            network.clone(),
            EndpointSettings::default(),
        )])),
    });
    Ok(ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(env_list(&spec.env)),
        labels: Some(to_hash_map(&spec.labels)),
        user: spec.user.clone(),
        working_dir: spec.working_dir.clone(),
        tty: Some(spec.tty),
        open_stdin: Some(spec.stdin_open),
        // Without a TTY, the attached client closing its input is end of file for the process.
        stdin_once: Some(spec.stdin_open),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    })
}

/// The image config as Dockerfile instructions, which is how `docker import` takes it.
fn dockerfile_changes(config: &ImageConfig) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if let Some(user) = &config.user {
        changes.push(format!("USER {}", quote("user", user)?));
    }
    if let Some(dir) = &config.working_dir {
        changes.push(format!("WORKDIR {}", quote("working dir", dir)?));
    }
    for (key, value) in &config.env {
        if key.is_empty()
            || key.contains(|c: char| c == '=' || c.is_whitespace() || "\"'\\$".contains(c))
        {
            return Err(EngineError::Engine(format!(
                "env var name `{key}` cannot be set on an imported image"
            )));
        }
        changes.push(format!("ENV {key}={}", quote("env var value", value)?));
    }
    for (key, value) in &config.labels {
        changes.push(format!(
            "LABEL {}={}",
            quote("label", key)?,
            quote("label value", value)?
        ));
    }
    if !config.entrypoint.is_empty() {
        changes.push(format!("ENTRYPOINT {}", json_array(&config.entrypoint)?));
    }
    if !config.cmd.is_empty() {
        changes.push(format!("CMD {}", json_array(&config.cmd)?));
    }
    Ok(changes)
}

/// A Dockerfile double-quoted word, safe from variable expansion. Dockerfile instructions end
/// at a newline, so values holding one cannot be expressed.
fn quote(what: &str, value: &str) -> Result<String> {
    if value.contains(['\n', '\r']) {
        return Err(EngineError::Engine(format!(
            "{what} `{}` contains a line break, which an image change cannot hold",
            value.escape_default()
        )));
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\' | '$') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Ok(quoted)
}

/// The JSON ("exec") form of ENTRYPOINT and CMD, which runs without a shell.
fn json_array(words: &[String]) -> Result<String> {
    let json = serde_json::to_string(words)
        .map_err(|error| EngineError::Engine(format!("encoding `{words:?}`: {error}")))?;
    if json.contains(['\n', '\r']) {
        return Err(EngineError::Engine(format!(
            "command `{words:?}` cannot be written as an image change"
        )));
    }
    Ok(json)
}

fn container_state(response: ContainerInspectResponse) -> ContainerState {
    let state = response.state.unwrap_or_default();
    let config = response.config.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    // Docker reports Go's zero time for a container that never started.
    let started_at = state.started_at.filter(|time| !time.starts_with("0001-"));
    let exit_code = if !running && started_at.is_some() {
        state.exit_code
    } else {
        None
    };
    let addresses = response
        .network_settings
        .and_then(|settings| settings.networks)
        .into_iter()
        .flatten()
        .filter_map(|(network, endpoint)| endpoint_address(&endpoint).map(|ip| (network, ip)))
        .collect();
    ContainerState {
        id: response.id.unwrap_or_default(),
        name: response
            .name
            .map(|name| name.trim_start_matches('/').to_owned())
            .unwrap_or_default(),
        image: config.image.unwrap_or_default(),
        labels: config.labels.into_iter().flatten().collect(),
        running,
        exit_code,
        addresses,
        started_at,
    }
}

/// The endpoint's IPv4 address, else its IPv6 one; none while the container is stopped.
fn endpoint_address(endpoint: &EndpointSettings) -> Option<IpAddr> {
    [&endpoint.ip_address, &endpoint.global_ipv6_address]
        .into_iter()
        .flatten()
        .find_map(|address| address.parse().ok())
}

pub(crate) fn env_list(env: &BTreeMap<String, String>) -> Vec<String> {
    env.iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect()
}

pub(crate) fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

pub(crate) fn status(error: &DockerError) -> Option<u16> {
    match error {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine_error(host: &str, kind: &'static str, name: &str, error: DockerError) -> EngineError {
    if is_connect_failure(&error) {
        return unreachable(host, &error);
    }
    match error {
        DockerError::DockerResponseServerError {
            status_code: 404, ..
        } => EngineError::NotFound {
            kind,
            name: name.to_owned(),
        },
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => EngineError::Engine(format!("{kind} `{name}`: {message} (status {status_code})")),
        DockerError::RequestTimeoutError => EngineError::Engine(format!(
            "{kind} `{name}`: no answer from dockerd within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        error => EngineError::Engine(format!("{kind} `{name}`: {error}")),
    }
}

/// Whether the daemon could not be reached at all (no socket, nothing listening, no access),
/// as opposed to answering with an error.
fn is_connect_failure(error: &DockerError) -> bool {
    if matches!(error, DockerError::SocketNotFoundError(_)) {
        return true;
    }
    io_cause(error).is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
        )
    })
}

fn io_cause(error: &DockerError) -> Option<&std::io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        current = error.source();
    }
    None
}

fn unreachable(host: &str, error: &DockerError) -> EngineError {
    let cause = io_cause(error).map_or_else(|| error.to_string(), ToString::to_string);
    EngineError::Unreachable(format!(
        "cannot connect to dockerd at `{host}` ({cause}); start it (`systemctl start docker` or \
         `dockerd`) or point DOCKER_HOST at a running one"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_reports_its_digest_in_its_last_status_line() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            pushed_digest(&format!("1.2.0: digest: {digest} size: 528")),
            Some(digest.as_str())
        );
        assert_eq!(pushed_digest("Layer already exists"), None);
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("latest: digest: md5:abc size: 1"), None);
    }

    #[test]
    fn references_split_at_the_tag_colon_only() {
        assert_eq!(
            split_reference("slipway/hello:1.0.0"),
            ("slipway/hello", "1.0.0")
        );
        assert_eq!(
            split_reference("slipway/hello"),
            ("slipway/hello", "latest")
        );
        assert_eq!(
            split_reference("registry:5000/hello"),
            ("registry:5000/hello", "latest")
        );
        assert_eq!(
            split_reference("registry:5000/hello:2"),
            ("registry:5000/hello", "2")
        );
    }

    #[test]
    fn image_config_becomes_dockerfile_changes() {
        let config = ImageConfig {
            user: Some("1000:1000".to_owned()),
            working_dir: Some("/app".to_owned()),
            env: BTreeMap::from([("PATH".to_owned(), "/bin:$HOME \"x\"\\".to_owned())]),
            entrypoint: vec!["/bin/sh".to_owned(), "-c".to_owned()],
            cmd: vec!["echo \"hi\"".to_owned()],
            labels: BTreeMap::from([("slipway.app".to_owned(), "hello".to_owned())]),
        };
        assert_eq!(
            dockerfile_changes(&config).expect("valid config"),
            [
                r#"USER "1000:1000""#,
                r#"WORKDIR "/app""#,
                r#"ENV PATH="/bin:\$HOME \"x\"\\""#,
                r#"LABEL "slipway.app"="hello""#,
                r#"ENTRYPOINT ["/bin/sh","-c"]"#,
                r#"CMD ["echo \"hi\""]"#,
            ]
        );
    }

    #[test]
    fn image_config_with_a_line_break_is_refused() {
        let config = ImageConfig {
            env: BTreeMap::from([("X".to_owned(), "a\nb".to_owned())]),
            ..ImageConfig::default()
        };
        let error = dockerfile_changes(&config).expect_err("line break refused");
        assert!(error.to_string().contains("env var value"), "{error}");
    }
}
