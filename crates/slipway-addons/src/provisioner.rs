//! Creates, keeps running, inspects and removes add-on servers on the container engine, as
//! plain containers or (under Swarm) as services.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use slipway_engine::{ContainerEngine, ContainerState, EngineError, Swarm};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::redis::ProbeError;
use crate::{ADDON_LABEL, AddonError, AddonImages, AddonInstance, AddonKind, AddonStatus};
use crate::{postgres, redis, service};

/// How long a server may take from start to accepting authenticated connections: initdb on a
/// slow disk, or replaying a large AOF.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between two readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// Bounds a status query.
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// Bounds one backup or restore: generous, but a dump stuck behind a lock ends.
const DUMP_TIMEOUT: Duration = Duration::from_secs(6 * 60 * 60);

/// Redis's `maxmemory` unless the server configures another.
const DEFAULT_REDIS_MAXMEMORY: u64 = 256 * 1024 * 1024;

/// Lines of a server's output quoted when it exits while starting.
const LOG_TAIL_LINES: usize = 20;

/// How long to wait for an exited container's output.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// Add-on servers on a container engine: one container per add-on on its app's network, its
/// data in a named volume; with [`Provisioner::with_swarm`], one single-replica service per
/// add-on instead. It keeps no state beyond locks; an [`AddonInstance`] says everything.
/// Share one per engine: it serialises provision, ensure_running and destroy of the same
/// add-on, so the reconciler never mistakes a server being provisioned for a broken one.
pub struct Provisioner {
    engine: Arc<dyn ContainerEngine>,
    /// Where servers run: `None`, as containers; `Some`, as services of this swarm, whose
    /// probes, dumps and restores still run as containers on the attachable overlay.
    swarm: Option<Arc<dyn Swarm>>,
    images: AddonImages,
    redis_maxmemory: u64,
    /// One lock per add-on container name.
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Provisioner {
    pub fn new(engine: Arc<dyn ContainerEngine>, images: AddonImages) -> Self {
        Self {
            engine,
            swarm: None,
            images,
            redis_maxmemory: DEFAULT_REDIS_MAXMEMORY,
            locks: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Sets Redis's `maxmemory` (bytes) for servers created from now on; past it, the least
    /// recently used keys are evicted.
    pub fn with_redis_maxmemory(mut self, bytes: u64) -> Self {
        self.redis_maxmemory = bytes;
        self
    }

    /// Runs servers as Swarm services of `swarm` (the same engine, a manager), pinned to this
    /// node, which holds their volumes.
    pub fn with_swarm(mut self, swarm: Arc<dyn Swarm>) -> Self {
        self.swarm = Some(swarm);
        self
    }

    pub fn images(&self) -> &AddonImages {
        &self.images
    }

    /// Volume + container on the app network, waits until it accepts authenticated
    /// connections (bounded, clear error). On failure the container and volume are removed
    /// again: a new add-on has no data to keep.
    pub async fn provision(&self, addon: &AddonInstance) -> Result<(), AddonError> {
        addon.check()?;
        let _guard = self.lock(addon).await;
        let image = self.images.image(addon.kind);
        if !self
            .engine
            .image_exists(image)
            .await
            .map_err(engine_error(addon))?
        {
            return Err(AddonError::ImageMissing {
                image: image.to_owned(),
            });
        }
        let exists = AddonError::AlreadyExists {
            addon: addon.display_name(),
            container: addon.container_name.clone(),
        };
        match self.engine.inspect(&addon.container_name).await {
            Ok(_) => return Err(exists),
            Err(EngineError::NotFound { .. }) => {}
            Err(error) => return Err(engine_error(addon)(error)),
        }
        if let Some(swarm) = &self.swarm
            && swarm
                .service(&addon.container_name)
                .await
                .map_err(engine_error(addon))?
                .is_some()
        {
            return Err(exists);
        }
        let started = Instant::now();
        let result = self.create_and_start(addon).await;
        if let Err(error) = &result {
            tracing::warn!(addon = %addon.display_name(), %error, "provisioning failed; removing what it created");
            self.remove_all(addon).await.ok();
        } else {
            tracing::info!(
                addon = %addon.display_name(),
                kind = %addon.kind,
                ms = started.elapsed().as_millis(),
                "provisioned add-on"
            );
        }
        result
    }

    /// For the reconciler: running → Ok; stopped → start; missing (or created but never
    /// started) → recreate on the same volume with the same credentials. Waits until it is
    /// ready after a start.
    pub async fn ensure_running(&self, addon: &AddonInstance) -> Result<(), AddonError> {
        addon.check()?;
        let _guard = self.lock(addon).await;
        if let Some(swarm) = &self.swarm {
            return self.ensure_service(swarm.as_ref(), addon).await;
        }
        match self.engine.inspect(&addon.container_name).await {
            Ok(state) if state.running => Ok(()),
            // Created but never started: a crash may have come before its TLS files did.
            Ok(state) if state.started_at.is_none() => {
                tracing::info!(addon = %addon.display_name(), "recreating add-on container that never started");
                self.engine
                    .remove_container(&state.id)
                    .await
                    .map_err(engine_error(addon))?;
                self.create_and_start(addon).await
            }
            Ok(state) => {
                tracing::info!(addon = %addon.display_name(), "starting stopped add-on");
                self.engine
                    .start(&state.id)
                    .await
                    .map_err(engine_error(addon))?;
                self.wait_ready(addon, &state.id).await
            }
            Err(EngineError::NotFound { .. }) => {
                tracing::info!(addon = %addon.display_name(), "recreating missing add-on container");
                self.create_and_start(addon).await
            }
            Err(error) => Err(engine_error(addon)(error)),
        }
    }

    /// Removes the container, any job containers left behind and the volume (the caller
    /// takes the final backup first). Missing pieces are not an error.
    pub async fn destroy(&self, addon: &AddonInstance) -> Result<(), AddonError> {
        let guard = self.lock(addon).await;
        self.remove_all(addon).await?;
        drop(guard);
        self.locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&addon.container_name);
        tracing::info!(addon = %addon.display_name(), "destroyed add-on");
        Ok(())
    }

    /// Postgres only: `pg_dump -Fc` in a job container on the app network, streamed into
    /// `dest` (created with mode 0600, replaced if it exists); returns the bytes written. A
    /// failed backup leaves no file.
    pub async fn backup(&self, addon: &AddonInstance, dest: &Path) -> Result<u64, AddonError> {
        self.require_postgres(addon, "backup")?;
        let io_error = |source| AddonError::Io {
            context: format!("writing backup `{}`", dest.display()),
            source,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(dest)
            .await
            .map_err(io_error)?;
        // `mode` only applies to a new file; a replaced one may have been readable by others.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .await
            .map_err(io_error)?;
        let mut writer = tokio::io::BufWriter::with_capacity(1024 * 1024, file);
        let image = self.images.image(addon.kind);
        let result = postgres::backup(&self.engine, addon, image, &mut writer, DUMP_TIMEOUT).await;
        let result = match result {
            Ok(bytes) => writer
                .into_inner()
                .sync_all()
                .await
                .map(|()| bytes)
                .map_err(io_error),
            Err(error) => Err(error),
        };
        if result.is_err() {
            tokio::fs::remove_file(dest).await.ok();
        }
        result
    }

    /// Postgres only: `pg_restore --clean --if-exists --no-owner` from `src` in one
    /// transaction, fed through a job container's stdin.
    pub async fn restore(&self, addon: &AddonInstance, src: &Path) -> Result<(), AddonError> {
        self.require_postgres(addon, "restore")?;
        let image = self.images.image(addon.kind);
        postgres::restore(&self.engine, addon, image, src, DUMP_TIMEOUT).await
    }

    /// Running?, server version, size in bytes, open connections. A missing or stopped
    /// container is `running: false` with nothing else known.
    pub async fn status(&self, addon: &AddonInstance) -> Result<AddonStatus, AddonError> {
        if let Some(swarm) = &self.swarm {
            if !service::serving(swarm.as_ref(), addon).await? {
                return Ok(AddonStatus::default());
            }
            let image = self.images.image(addon.kind);
            return match addon.kind {
                AddonKind::Postgres => {
                    postgres::status(&self.engine, addon, image, STATUS_TIMEOUT).await
                }
                AddonKind::Redis => {
                    redis::status_job(&self.engine, addon, image, STATUS_TIMEOUT).await
                }
            };
        }
        let state = match self.engine.inspect(&addon.container_name).await {
            Ok(state) if state.running => state,
            Ok(_) | Err(EngineError::NotFound { .. }) => return Ok(AddonStatus::default()),
            Err(error) => return Err(engine_error(addon)(error)),
        };
        match addon.kind {
            AddonKind::Postgres => {
                let image = self.images.image(addon.kind);
                postgres::status(&self.engine, addon, image, STATUS_TIMEOUT).await
            }
            AddonKind::Redis => {
                let ip = address(addon, &state).ok_or_else(|| AddonError::Protocol {
                    addon: addon.display_name(),
                    message: format!("it has no address on network `{}`", addon.network),
                })?;
                redis::status(ip, addon).await
            }
        }
    }

    async fn lock(&self, addon: &AddonInstance) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = Arc::clone(
            self.locks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(addon.container_name.clone())
                .or_default(),
        );
        lock.lock_owned().await
    }

    fn require_postgres(
        &self,
        addon: &AddonInstance,
        operation: &'static str,
    ) -> Result<(), AddonError> {
        match addon.kind {
            AddonKind::Postgres => Ok(()),
            kind => Err(AddonError::Unsupported {
                addon: addon.display_name(),
                kind,
                operation,
            }),
        }
    }

    /// Under Swarm: a running service is left to Swarm; one with no running task is waited
    /// for; a missing one is created on the same volume with the same credentials (replacing
    /// a server container `--runtime docker` left).
    async fn ensure_service(
        &self,
        swarm: &dyn Swarm,
        addon: &AddonInstance,
    ) -> Result<(), AddonError> {
        if swarm
            .service(&addon.container_name)
            .await
            .map_err(engine_error(addon))?
            .is_none()
        {
            tracing::info!(addon = %addon.display_name(), "creating missing add-on service");
            return self.create_and_start(addon).await;
        }
        let tasks = swarm
            .tasks(&addon.container_name)
            .await
            .map_err(engine_error(addon))?;
        if tasks.iter().any(slipway_engine::TaskState::serving) {
            return Ok(());
        }
        tracing::info!(addon = %addon.display_name(), "waiting for the add-on service's task to run");
        self.wait_service_ready(swarm, addon, &service::ended(&tasks))
            .await
    }

    /// Network, volume, container (with its TLS files for Postgres), start, wait until ready.
    /// Under Swarm: the service instead of the container, its TLS files in a volume.
    async fn create_and_start(&self, addon: &AddonInstance) -> Result<(), AddonError> {
        if let Some(swarm) = &self.swarm {
            return self.create_service(swarm.as_ref(), addon).await;
        }
        self.engine
            .ensure_network(&addon.network, &addon.labels)
            .await
            .map_err(engine_error(addon))?;
        self.engine
            .ensure_volume(&addon.volume, &addon.server_labels())
            .await
            .map_err(engine_error(addon))?;
        let image = self.images.image(addon.kind);
        let spec = match addon.kind {
            AddonKind::Postgres => postgres::server_spec(addon, image),
            AddonKind::Redis => redis::server_spec(addon, image, self.redis_maxmemory),
        };
        let id = self
            .engine
            .create_container(&spec)
            .await
            .map_err(|error| match error {
                EngineError::NotFound { kind: "image", .. } => AddonError::ImageMissing {
                    image: image.to_owned(),
                },
                error => engine_error(addon)(error),
            })?;
        let prepared = match addon.kind {
            AddonKind::Postgres => postgres::prepare(self.engine.as_ref(), addon, &id).await,
            AddonKind::Redis => Ok(()),
        };
        let started = match prepared {
            Ok(()) => self.engine.start(&id).await.map_err(engine_error(addon)),
            Err(error) => Err(error),
        };
        if let Err(error) = started {
            self.engine.remove_container(&id).await.ok();
            return Err(error);
        }
        self.wait_ready(addon, &id).await
    }

    /// The overlay network, the volumes, the service pinned to this node; then waits until it
    /// is ready.
    async fn create_service(
        &self,
        swarm: &dyn Swarm,
        addon: &AddonInstance,
    ) -> Result<(), AddonError> {
        let node = service::manager(swarm, addon).await?;
        // First, so that a bridge network of that name (from `--runtime docker`) stops here
        // with the server it still serves untouched.
        swarm
            .ensure_overlay_network(&addon.network, &addon.labels)
            .await
            .map_err(engine_error(addon))?;
        service::retire_containers(self.engine.as_ref(), addon).await?;
        self.engine
            .ensure_volume(&addon.volume, &addon.server_labels())
            .await
            .map_err(engine_error(addon))?;
        let image = self.images.image(addon.kind);
        // Swarm would only reject the task, again and again: say it now.
        if !self
            .engine
            .image_exists(image)
            .await
            .map_err(engine_error(addon))?
        {
            return Err(AddonError::ImageMissing {
                image: image.to_owned(),
            });
        }
        let container = match addon.kind {
            AddonKind::Postgres => {
                postgres::write_tls_volume(&self.engine, addon, image).await?;
                let mut spec = postgres::server_spec(addon, image);
                spec.mounts.push(postgres::tls_mount(addon));
                spec
            }
            AddonKind::Redis => redis::server_spec(addon, image, self.redis_maxmemory),
        };
        swarm
            .deploy_service(&service::spec(addon, container, &node))
            .await
            .map_err(engine_error(addon))?;
        self.wait_service_ready(swarm, addon, &HashSet::new()).await
    }

    /// Waits until a task of the service runs (tasks in `known` ended before), then for an
    /// authenticated answer from a job on the overlay network.
    async fn wait_service_ready(
        &self,
        swarm: &dyn Swarm,
        addon: &AddonInstance,
        known: &HashSet<String>,
    ) -> Result<(), AddonError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        service::wait_serving(
            swarm,
            self.engine.as_ref(),
            addon,
            known,
            deadline,
            READY_TIMEOUT.as_secs(),
        )
        .await?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(PROBE_INTERVAL);
        let image = self.images.image(addon.kind);
        match addon.kind {
            AddonKind::Postgres => postgres::check_ready(&self.engine, addon, image, left).await,
            AddonKind::Redis => redis::check_ready(&self.engine, addon, image, left).await,
        }
    }

    /// Waits for the container's address on the app network and its port, then for an
    /// authenticated answer. Fails early, quoting its output, if the server exits.
    async fn wait_ready(&self, addon: &AddonInstance, id: &str) -> Result<(), AddonError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let not_ready = |reason: String| AddonError::NotReady {
            addon: addon.display_name(),
            seconds: READY_TIMEOUT.as_secs(),
            reason,
        };
        let mut last_error = String::from("it has no address yet");
        loop {
            let state = self.engine.inspect(id).await.map_err(engine_error(addon))?;
            if !state.running && state.started_at.is_some() {
                let code = state.exit_code.unwrap_or(-1);
                return Err(exited(self.engine.as_ref(), addon, id, code).await);
            }
            if let Some(ip) = address(addon, &state) {
                match self.probe(addon, ip).await {
                    Ok(()) => break,
                    Err(ProbeError::NotYet(reason)) => last_error = reason,
                    Err(ProbeError::Refused(reason)) => return Err(not_ready(reason)),
                }
            }
            if Instant::now() + PROBE_INTERVAL >= deadline {
                return Err(not_ready(last_error));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        match addon.kind {
            AddonKind::Postgres => {
                let left = deadline.saturating_duration_since(Instant::now());
                let image = self.images.image(addon.kind);
                postgres::check_ready(&self.engine, addon, image, left.max(PROBE_INTERVAL)).await
            }
            AddonKind::Redis => Ok(()),
        }
    }

    /// Postgres: its port accepts a connection. Redis: `AUTH` and `PING` succeed.
    async fn probe(&self, addon: &AddonInstance, ip: IpAddr) -> Result<(), ProbeError> {
        match addon.kind {
            AddonKind::Postgres => {
                let address = SocketAddr::new(ip, addon.kind.port());
                match tokio::time::timeout(
                    Duration::from_secs(2),
                    tokio::net::TcpStream::connect(address),
                )
                .await
                {
                    Ok(Ok(mut stream)) => {
                        stream.shutdown().await.ok();
                        Ok(())
                    }
                    Ok(Err(error)) => Err(ProbeError::NotYet(format!(
                        "connecting to {address}: {error}"
                    ))),
                    Err(_) => Err(ProbeError::NotYet(format!(
                        "connecting to {address} timed out"
                    ))),
                }
            }
            AddonKind::Redis => redis::probe(ip, addon).await,
        }
    }

    async fn remove_all(&self, addon: &AddonInstance) -> Result<(), AddonError> {
        if let Some(swarm) = &self.swarm {
            service::remove(swarm.as_ref(), &self.engine, addon).await?;
        }
        let mut filter: Vec<(&str, &str)> = addon
            .labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        filter.push((slipway_types::labels::APP, addon.app.as_str()));
        filter.push((ADDON_LABEL, &addon.name));
        let leftovers = self
            .engine
            .list_containers(&filter)
            .await
            .map_err(engine_error(addon))?;
        for container in leftovers {
            self.engine
                .remove_container(&container.id)
                .await
                .map_err(engine_error(addon))?;
        }
        self.engine
            .remove_container(&addon.container_name)
            .await
            .map_err(engine_error(addon))?;
        if self.swarm.is_some() {
            self.engine
                .remove_volume(&addon.tls_volume())
                .await
                .map_err(engine_error(addon))?;
        }
        self.engine
            .remove_volume(&addon.volume)
            .await
            .map_err(engine_error(addon))
    }
}

/// The error for a server that exited while starting, with the end of its output.
pub(crate) async fn exited(
    engine: &dyn ContainerEngine,
    addon: &AddonInstance,
    id: &str,
    code: i64,
) -> AddonError {
    let mut lines = Vec::new();
    let mut output = engine.output(id, None);
    let collect = async {
        while let Some(Ok(chunk)) = output.next().await {
            lines.extend(
                String::from_utf8_lossy(&chunk.bytes)
                    .lines()
                    .map(str::to_owned),
            );
            if lines.len() > 4 * LOG_TAIL_LINES {
                lines.drain(..lines.len() - LOG_TAIL_LINES);
            }
        }
    };
    tokio::time::timeout(LOG_TIMEOUT, collect).await.ok();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    AddonError::Exited {
        addon: addon.display_name(),
        code,
        output: tail,
    }
}

fn address(addon: &AddonInstance, state: &ContainerState) -> Option<IpAddr> {
    state.addresses.get(&addon.network).copied()
}

pub(crate) fn engine_error(addon: &AddonInstance) -> impl Fn(EngineError) -> AddonError + '_ {
    move |source| AddonError::Engine {
        addon: addon.display_name(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use slipway_engine::{Call, FakeEngine, OutputChunk, OutputStream};
    use slipway_types::ContainerSpec;

    use super::*;

    const INSTANCE: (&str, &str) = ("slipway.instance", "test");

    fn addon(kind: AddonKind) -> AddonInstance {
        AddonInstance::new(
            kind,
            "blog".parse().expect("valid app"),
            "main",
            "slipway-blog",
            BTreeMap::from([
                ("slipway.app".to_owned(), "blog".to_owned()),
                (INSTANCE.0.to_owned(), INSTANCE.1.to_owned()),
            ]),
        )
    }

    fn provisioner(engine: &Arc<FakeEngine>) -> Provisioner {
        Provisioner::new(
            Arc::clone(engine) as Arc<dyn ContainerEngine>,
            AddonImages::default(),
        )
    }

    fn created_names(engine: &FakeEngine) -> Vec<String> {
        engine
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::CreateContainer { spec } => Some(spec.name),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_missing_image_fails_before_anything_is_created() {
        let engine = Arc::new(FakeEngine::new());
        let error = provisioner(&engine)
            .provision(&addon(AddonKind::Postgres))
            .await
            .expect_err("no image");
        assert_eq!(
            error.to_string(),
            "add-on image `slipway/postgres:17` is missing: build it with `slipway stack:build` \
             or point the server at another image"
        );
        assert!(created_names(&engine).is_empty());
        assert!(engine.volumes().is_empty());
    }

    #[tokio::test]
    async fn a_server_exiting_at_start_is_reported_with_its_output_and_removed() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/redis:8");
        engine.script_output(
            "slipway/redis:8",
            vec![OutputChunk {
                stream: OutputStream::Stderr,
                bytes: Bytes::from_static(b"*** FATAL CONFIG FILE ERROR\nBad directive\n"),
            }],
            1,
        );
        let addon = addon(AddonKind::Redis);
        let error = provisioner(&engine)
            .provision(&addon)
            .await
            .expect_err("server exits");
        let message = error.to_string();
        assert!(
            message.starts_with("add-on `blog/main` exited while starting (exit code 1)"),
            "{message}"
        );
        assert!(message.contains("Bad directive"), "{message}");
        assert!(!message.contains(&addon.password), "{message}");
        assert!(
            engine.inspect(&addon.container_name).await.is_err(),
            "the failed container is removed"
        );
        assert!(!engine.volumes().contains(&addon.volume));
        assert!(engine.networks().contains(&addon.network));
    }

    #[tokio::test]
    async fn postgres_gets_its_tls_files_owned_by_the_images_postgres_user() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/postgres:17");
        let passwd = "root:x:0:0::/root:/bin/sh\npostgres:x:70:70::/var/lib/postgresql:/bin/sh\n";
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(passwd.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "passwd", passwd.as_bytes())
            .expect("append");
        engine.script_download(
            "slipway/postgres:17",
            "/etc/passwd",
            Bytes::from(builder.into_inner().expect("tar")),
        );
        // Exiting at once keeps the test from waiting for a port nobody listens on.
        engine.script_output("slipway/postgres:17", Vec::new(), 1);
        provisioner(&engine)
            .provision(&addon(AddonKind::Postgres))
            .await
            .expect_err("server exits");

        let calls = engine.calls();
        let upload = calls
            .iter()
            .position(|call| matches!(call, Call::Upload { .. }))
            .expect("TLS files uploaded");
        let start = calls
            .iter()
            .position(|call| matches!(call, Call::Start { .. }))
            .expect("started");
        assert!(upload < start, "uploaded before the first start");
        let Call::Upload { dest_dir, tar, .. } = &calls[upload] else {
            unreachable!("found above")
        };
        assert_eq!(dest_dir, "/var/lib/postgresql");
        let mut archive = tar::Archive::new(&tar[..]);
        let key = archive
            .entries()
            .expect("entries")
            .map(|entry| entry.expect("entry"))
            .find(|entry| entry.path().expect("path").ends_with("server.key"))
            .expect("a key");
        let header = key.header();
        assert_eq!(header.uid().expect("uid"), 70);
        assert_eq!(header.mode().expect("mode"), 0o600);
    }

    #[tokio::test]
    async fn an_existing_container_is_never_replaced_by_provision() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/redis:8");
        engine
            .ensure_network("slipway-blog", &BTreeMap::new())
            .await
            .expect("network");
        let addon = addon(AddonKind::Redis);
        let id = engine
            .create_container(&ContainerSpec {
                name: addon.container_name.clone(),
                image: "slipway/redis:8".to_owned(),
                network: Some(addon.network.clone()),
                ..ContainerSpec::default()
            })
            .await
            .expect("container");
        let error = provisioner(&engine)
            .provision(&addon)
            .await
            .expect_err("exists");
        assert!(matches!(error, AddonError::AlreadyExists { .. }), "{error}");
        assert!(engine.inspect(&id).await.is_ok(), "left alone");
    }

    #[tokio::test]
    async fn a_running_server_is_adopted_as_it_is() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/redis:8");
        engine
            .ensure_network("slipway-blog", &BTreeMap::new())
            .await
            .expect("network");
        let addon = addon(AddonKind::Redis);
        let spec = redis::server_spec(&addon, "slipway/redis:8", DEFAULT_REDIS_MAXMEMORY);
        slipway_engine::run(engine.as_ref(), &spec)
            .await
            .expect("running");
        engine.clear_calls();
        provisioner(&engine)
            .ensure_running(&addon)
            .await
            .expect("adopted");
        assert_eq!(
            engine.calls(),
            [Call::Inspect {
                id: addon.container_name.clone()
            }]
        );
    }

    #[tokio::test]
    async fn a_container_that_never_started_is_recreated() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/redis:8");
        engine
            .ensure_network("slipway-blog", &BTreeMap::new())
            .await
            .expect("network");
        let addon = addon(AddonKind::Redis);
        let spec = redis::server_spec(&addon, "slipway/redis:8", DEFAULT_REDIS_MAXMEMORY);
        let old = engine.create_container(&spec).await.expect("created");
        engine.script_output("slipway/redis:8", Vec::new(), 1);
        engine.clear_calls();
        provisioner(&engine)
            .ensure_running(&addon)
            .await
            .expect_err("the scripted server exits");
        let calls = engine.calls();
        assert!(calls.contains(&Call::RemoveContainer { id: old.clone() }));
        assert!(!calls.contains(&Call::Start { id: old }), "{calls:?}");
        assert_eq!(created_names(&engine), [addon.container_name.as_str()]);
    }

    #[tokio::test]
    async fn destroy_removes_server_leftover_jobs_and_volume_of_this_addon_only() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/postgres:17");
        engine
            .ensure_network("slipway-blog", &BTreeMap::new())
            .await
            .expect("network");
        let addon = addon(AddonKind::Postgres);
        let other = AddonInstance::new(
            AddonKind::Postgres,
            "blog".parse().expect("valid app"),
            "other",
            "slipway-blog",
            addon.labels.clone(),
        );
        for spec in [
            postgres::server_spec(&addon, "slipway/postgres:17"),
            postgres::server_spec(&other, "slipway/postgres:17"),
            ContainerSpec {
                name: format!("{}-backup-1", addon.container_name),
                image: "slipway/postgres:17".to_owned(),
                labels: addon.job_labels(),
                network: Some(addon.network.clone()),
                ..ContainerSpec::default()
            },
        ] {
            slipway_engine::run(engine.as_ref(), &spec)
                .await
                .expect("running");
        }
        provisioner(&engine)
            .destroy(&addon)
            .await
            .expect("destroyed");
        let left: Vec<String> = engine
            .list_containers(&[])
            .await
            .expect("list")
            .into_iter()
            .map(|state| state.name)
            .collect();
        assert_eq!(left, [other.container_name.as_str()]);
        assert_eq!(engine.volumes(), [other.volume.as_str()]);
        provisioner(&engine)
            .destroy(&addon)
            .await
            .expect("destroying twice is fine");
    }

    #[tokio::test]
    async fn backups_are_for_postgres_only() {
        let engine = Arc::new(FakeEngine::new());
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dump");
        let addon = addon(AddonKind::Redis);
        let error = provisioner(&engine)
            .backup(&addon, &dest)
            .await
            .expect_err("redis");
        assert_eq!(
            error.to_string(),
            "backup is not supported for redis add-on `blog/main`"
        );
        assert!(!dest.exists());
        let error = provisioner(&engine)
            .restore(&addon, &dest)
            .await
            .expect_err("redis");
        assert!(matches!(error, AddonError::Unsupported { .. }), "{error}");
    }

    #[tokio::test]
    async fn a_failed_backup_leaves_no_file() {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image("slipway/postgres:17");
        engine
            .ensure_network("slipway-blog", &BTreeMap::new())
            .await
            .expect("network");
        engine.script_output(
            "slipway/postgres:17",
            vec![OutputChunk {
                stream: OutputStream::Stderr,
                bytes: Bytes::from_static(b"pg_dump: error: connection failed\n"),
            }],
            1,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dump");
        let error = provisioner(&engine)
            .backup(&addon(AddonKind::Postgres), &dest)
            .await
            .expect_err("pg_dump fails");
        assert_eq!(
            error.to_string(),
            "backup of add-on `blog/main` failed (exit code 1): pg_dump: error: connection failed"
        );
        assert!(!dest.exists());
        assert!(
            engine.list_containers(&[]).await.expect("list").is_empty(),
            "the job container is removed"
        );
    }

    /// The server runs these in spawned tasks and axum handlers.
    #[test]
    fn provisioner_and_its_futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Provisioner>();
        let engine = Arc::new(FakeEngine::new());
        let provisioner = provisioner(&engine);
        let addon = addon(AddonKind::Postgres);
        let path = Path::new("dump");
        assert_send(&provisioner.provision(&addon));
        assert_send(&provisioner.ensure_running(&addon));
        assert_send(&provisioner.destroy(&addon));
        assert_send(&provisioner.backup(&addon, path));
        assert_send(&provisioner.restore(&addon, path));
        assert_send(&provisioner.status(&addon));
    }

    #[tokio::test]
    async fn status_of_a_missing_server_is_not_running() {
        let engine = Arc::new(FakeEngine::new());
        let status = provisioner(&engine)
            .status(&addon(AddonKind::Postgres))
            .await
            .expect("status");
        assert_eq!(status, AddonStatus::default());
    }
}
