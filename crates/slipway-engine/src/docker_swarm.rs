//! `Swarm` over the Docker Engine API: services, tasks and nodes of the swarm this engine
//! manages. A plain image name is never resolved against a registry (the API does not do it
//! unless asked, from version 1.30 on), so such services run the image this node already has;
//! a reference that names a registry is pulled by each node that runs a task.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, LocalNodeState,
    NetworkAttachmentConfig, NetworkCreateRequest, Node, NodeSpecAvailabilityEnum,
    NodeSpecRoleEnum, PortMap, Service, ServiceSpec as DockerServiceSpec, ServiceSpecMode,
    ServiceSpecModeReplicated, ServiceSpecModeReplicatedJob, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecRollbackConfigOrderEnum,
    ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::{
    InspectContainerOptions, InspectNetworkOptions, InspectServiceOptions, ListNodesOptions,
    ListServicesOptions, ListTasksOptions, LogsOptions, UpdateNodeOptions, UpdateServiceOptions,
};
use futures_util::stream::{BoxStream, StreamExt};

use crate::docker::{DockerEngine, docker_mounts, status, to_hash_map};
use crate::{
    Availability, ContainerEngine, EngineError, NodeInfo, NodeRole, OutputChunk, OutputStream,
    Result, ServiceMode, ServiceSpec, ServiceState, Swarm, SwarmStatus, TaskState, UpdateState,
    UpdateStatus,
};

/// How often a read-modify-write of a service or node is tried when another writer changed
/// it in between (Swarm refuses an update against a stale version).
const WRITE_ATTEMPTS: u32 = 5;

/// The container label that carries the image reference a service spec named.
const IMAGE_LABEL: &str = "slipway.swarm.image";

/// The label Swarm gives its tasks' containers, naming their service.
const SERVICE_NAME_LABEL: &str = "com.docker.swarm.service.name";

/// The service label that keeps a copy of its health check, which bollard cannot read back.
const HEALTH_LABEL: &str = "slipway.swarm.health";

/// How often a job's output stream looks whether the job has ended.
const JOB_POLL: Duration = Duration::from_secs(1);

/// Task states after which a task runs no more.
const TERMINAL_TASK_STATES: &[&str] = &[
    "complete", "failed", "shutdown", "rejected", "orphaned", "remove",
];

/// Between a replicated task's exit and its replacement.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// How long Swarm watches each new task of an update before counting it a success.
const UPDATE_MONITOR: Duration = Duration::from_secs(5);

#[async_trait]
impl Swarm for DockerEngine {
    async fn swarm_status(&self) -> Result<Option<SwarmStatus>> {
        let info = self
            .docker
            .info()
            .await
            .map_err(|error| self.error("engine", &self.host, error))?;
        let Some(swarm) = info.swarm else {
            return Ok(None);
        };
        if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
            return Ok(None);
        }
        Ok(Some(SwarmStatus {
            node_id: swarm.node_id.unwrap_or_default(),
            node_addr: swarm.node_addr.unwrap_or_default(),
            manager: swarm.control_available.unwrap_or(false),
        }))
    }

    async fn ensure_overlay_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<()> {
        let _guard = self.network_lock.lock().await;
        match self
            .docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(network) => {
                let driver = network.driver.unwrap_or_default();
                return if driver == "overlay" {
                    Ok(())
                } else {
                    Err(EngineError::Engine(format!(
                        "network `{name}` exists with driver `{driver}`, not `overlay`: remove \
                         it so the swarm's services can use the name"
                    )))
                };
            }
            Err(error) if status(&error) == Some(404) => {}
            Err(error) => return Err(self.error("network", name, error)),
        }
        let request = NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("overlay".to_owned()),
            attachable: Some(true),
            labels: Some(to_hash_map(labels)),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map_err(|error| self.error("network", name, error))?;
        tracing::info!(network = %name, "created overlay network");
        Ok(())
    }

    async fn deploy_service(&self, spec: &ServiceSpec) -> Result<()> {
        let name = &spec.container.name;
        let image = &spec.container.image;
        let task_image = if names_registry(image) {
            image.clone()
        } else {
            self.local_image_id(image).await?
        };
        let wanted = docker_service_spec(spec, &task_image)?;
        for _ in 0..WRITE_ATTEMPTS {
            let Some(current) = self.inspect_service(name).await? else {
                match self.docker.create_service(wanted.clone(), None).await {
                    Ok(_) => {
                        tracing::info!(service = %name, image = %spec.container.image, "created service");
                        return Ok(());
                    }
                    // Created by another writer meanwhile: update it instead.
                    Err(error) if status(&error) == Some(409) => continue,
                    Err(error) => return Err(self.write_error(name, error)),
                }
            };
            let mut next = wanted.clone();
            // Keeping the restart counter leaves tasks alone when nothing else changed.
            if let (Some(task), Some(current_task)) = (
                next.task_template.as_mut(),
                current
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.task_template.as_ref()),
            ) {
                task.force_update = current_task.force_update;
            }
            if self.update(name, &current, next, None).await? {
                tracing::info!(service = %name, image = %spec.container.image, "updated service");
                return Ok(());
            }
        }
        Err(out_of_sequence(name))
    }

    async fn scale_service(&self, name: &str, replicas: u32) -> Result<()> {
        self.modify(name, None, |spec| {
            let replicated = spec
                .mode
                .as_mut()
                .and_then(|mode| mode.replicated.as_mut())
                .ok_or_else(|| {
                    EngineError::Engine(format!(
                        "service `{name}` is not replicated: it cannot be scaled"
                    ))
                })?;
            replicated.replicas = Some(i64::from(replicas));
            Ok(())
        })
        .await
    }

    async fn restart_service(&self, name: &str) -> Result<()> {
        self.modify(name, None, |spec| {
            let task = spec.task_template.get_or_insert_with(TaskSpec::default);
            task.force_update = Some(task.force_update.unwrap_or(0).wrapping_add(1));
            Ok(())
        })
        .await
    }

    async fn rollback_service(&self, name: &str) -> Result<()> {
        self.modify(name, Some("previous"), |_| Ok(())).await
    }

    async fn service(&self, name: &str) -> Result<Option<ServiceState>> {
        Ok(self.inspect_service(name).await?.map(service_state))
    }

    async fn list_services(&self, labels: &[(&str, &str)]) -> Result<Vec<ServiceState>> {
        let options = ListServicesOptions {
            filters: Some(label_filters(labels)),
            status: None,
        };
        let services = self
            .docker
            .list_services(Some(options))
            .await
            .map_err(|error| self.error("services", &describe_labels(labels), error))?;
        Ok(services.into_iter().map(service_state).collect())
    }

    async fn tasks(&self, service: &str) -> Result<Vec<TaskState>> {
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_owned(),
                vec![service.to_owned()],
            )])),
        };
        let tasks = match self.docker.list_tasks(Some(options)).await {
            Ok(tasks) => tasks,
            Err(error) if status(&error) == Some(404) => return Ok(Vec::new()),
            Err(error) => return Err(self.service_error(service, error)),
        };
        let addresses: HashMap<String, IpAddr> = self
            .list_nodes()
            .await?
            .into_iter()
            .filter_map(|node| {
                let id = node.id.clone()?;
                node_addr(&node).parse().ok().map(|addr| (id, addr))
            })
            .collect();
        let this_node = self.swarm_status().await?.map(|status| status.node_id);
        let mut states = Vec::with_capacity(tasks.len());
        for task in tasks {
            let ports = published_ports(&task);
            let mut state = task_state(task, &addresses);
            if ports.len() > 1
                && state.serving()
                && this_node.as_deref() == Some(state.node_id.as_str())
            {
                state.published_port = match &state.container_id {
                    Some(container) => self.ipv4_port(container, &ports).await,
                    None => None,
                };
            }
            states.push(state);
        }
        states.sort_by(|a, b| a.slot.cmp(&b.slot).then(b.timestamp.cmp(&a.timestamp)));
        Ok(states)
    }

    /// Also removes the stopped containers of its tasks on this node: Swarm leaves those of
    /// a finished job behind. Running ones are Swarm's to stop and remove.
    async fn remove_service(&self, name: &str) -> Result<()> {
        match self.docker.delete_service(name).await {
            Ok(()) => tracing::info!(service = %name, "removed service"),
            Err(error) if status(&error) == Some(404) => {}
            Err(error) => return Err(self.service_error(name, error)),
        }
        let containers = self.list_containers(&[(SERVICE_NAME_LABEL, name)]).await?;
        for container in containers.iter().filter(|container| !container.running) {
            self.remove_container(&container.id).await?;
        }
        Ok(())
    }

    /// A job's output ends once its task has ended and everything it printed came through;
    /// other services' output follows until the stream is dropped.
    fn service_output(
        &self,
        name: &str,
        since: Option<i64>,
    ) -> BoxStream<'static, Result<OutputChunk>> {
        // Swarm's log stream never ends on its own, not even for a finished job: a task owns
        // it and watches the job beside it. A dropped receiver ends the task.
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let engine = self.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            if let Err(error) = engine.forward_output(&name, since, &tx).await {
                tx.send(Err(error)).await.ok();
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        Ok(self
            .list_nodes()
            .await?
            .into_iter()
            .map(node_info)
            .collect())
    }

    async fn set_node_availability(&self, node: &str, availability: Availability) -> Result<()> {
        let wanted = match availability {
            Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
            Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
            Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
        };
        for _ in 0..WRITE_ATTEMPTS {
            let current = self
                .docker
                .inspect_node(node)
                .await
                .map_err(|error| self.error("node", node, error))?;
            let id = current.id.clone().unwrap_or_else(|| node.to_owned());
            let mut spec = current.spec.unwrap_or_default();
            spec.availability = Some(wanted);
            let options = UpdateNodeOptions {
                version: version_of(current.version.as_ref().and_then(|v| v.index), node)?,
            };
            match self.docker.update_node(&id, spec, options).await {
                Ok(()) => {
                    tracing::info!(node = %node, availability = %wanted, "set node availability");
                    return Ok(());
                }
                Err(error) if is_out_of_sequence(&error) => {}
                Err(error) => return Err(self.error("node", node, error)),
            }
        }
        Err(EngineError::Engine(format!(
            "node `{node}`: changed by another writer {WRITE_ATTEMPTS} times in a row"
        )))
    }
}

impl DockerEngine {
    fn service_error(&self, name: &str, error: DockerError) -> EngineError {
        self.error("service", name, error)
    }

    /// A create or update that names something missing (a network) is not a missing service.
    fn write_error(&self, name: &str, error: DockerError) -> EngineError {
        match error {
            DockerError::DockerResponseServerError {
                status_code: 404,
                message,
            } => EngineError::Engine(format!("service `{name}`: {message}")),
            error => self.service_error(name, error),
        }
    }

    async fn inspect_service(&self, name: &str) -> Result<Option<Service>> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(service) => Ok(Some(service)),
            Err(error) if status(&error) == Some(404) => Ok(None),
            Err(error) => Err(self.service_error(name, error)),
        }
    }

    async fn list_nodes(&self) -> Result<Vec<Node>> {
        self.docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|error| self.error("swarm nodes of engine", &self.host, error))
    }

    /// Updates `current` to `spec`; `false` when another writer changed it first.
    async fn update(
        &self,
        name: &str,
        current: &Service,
        spec: DockerServiceSpec,
        rollback: Option<&str>,
    ) -> Result<bool> {
        let options = UpdateServiceOptions {
            version: i32::try_from(version_of(
                current.version.as_ref().and_then(|v| v.index),
                name,
            )?)
            .map_err(|_| EngineError::Engine(format!("service `{name}`: version out of range")))?,
            rollback: rollback.map(str::to_owned),
            ..Default::default()
        };
        let id = current.id.as_deref().unwrap_or(name);
        match self.docker.update_service(id, spec, options, None).await {
            Ok(response) => {
                for warning in response.warnings.into_iter().flatten() {
                    tracing::debug!(service = %name, %warning, "swarm warning");
                }
                Ok(true)
            }
            Err(error) if is_out_of_sequence(&error) => Ok(false),
            Err(error) => Err(self.write_error(name, error)),
        }
    }

    /// Sends the service's output to `tx` until the receiver goes, or, for a job, until its
    /// task ended: the follow may lag behind the end, so a last plain read then sends the
    /// lines newer than the last one followed. Docker's timestamps tell them apart.
    async fn forward_output(
        &self,
        name: &str,
        since: Option<i64>,
        tx: &tokio::sync::mpsc::Sender<Result<OutputChunk>>,
    ) -> Result<()> {
        let service = self
            .inspect_service(name)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                kind: "service",
                name: name.to_owned(),
            })?;
        let job = service
            .spec
            .and_then(|spec| spec.mode)
            .is_some_and(|mode| mode.replicated_job.is_some());
        let mut logs = self
            .docker
            .service_logs(name, Some(log_options(since, true)));
        let mut last = None;
        let mut ticker = tokio::time::interval(JOB_POLL);
        loop {
            tokio::select! {
                item = logs.next() => {
                    let Some(item) = item else { return Ok(()) };
                    let item = item.map_err(|error| self.service_error(name, error))?;
                    if let Some(chunk) = timestamped_chunk(item, &mut last)
                        && tx.send(Ok(chunk)).await.is_err()
                    {
                        return Ok(());
                    }
                }
                _ = ticker.tick(), if job => {
                    if self.job_ended(name).await? {
                        break;
                    }
                }
                () = tx.closed() => return Ok(()),
            }
        }
        let seen = last;
        let mut rest = self
            .docker
            .service_logs(name, Some(log_options(since, false)));
        while let Some(item) = rest.next().await {
            let item = item.map_err(|error| self.service_error(name, error))?;
            let mut stamp = None;
            let Some(chunk) = timestamped_chunk(item, &mut stamp) else {
                continue;
            };
            if seen.is_some() && stamp <= seen {
                continue;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Docker 20.10 publishes a port twice, on IPv4 and on IPv6, each on its own random port,
    /// and a task's status lists both without saying which is which: the container on this
    /// node says (a task on another node keeps its first listed port, the agent's IPv4 one).
    /// `None` when the container cannot tell, so the task takes no traffic until it can:
    /// the other listed port is the IPv6 one, whose number the IPv4 side may have given to
    /// another task, even one that is stopping.
    async fn ipv4_port(&self, container: &str, ports: &[(i64, u16)]) -> Option<u16> {
        let inspected = match self
            .docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspected) => inspected,
            Err(error) => {
                tracing::debug!(%container, %error, "reading a task's published ports failed");
                return None;
            }
        };
        let bindings = inspected
            .network_settings
            .and_then(|settings| settings.ports)
            .unwrap_or_default();
        ipv4_binding(&bindings, ports)
    }

    /// The id of an image this node has; there is no pulling one it lacks.
    async fn local_image_id(&self, reference: &str) -> Result<String> {
        let image = self
            .docker
            .inspect_image(reference)
            .await
            .map_err(|error| self.error("image", reference, error))?;
        image.id.ok_or_else(|| EngineError::NotFound {
            kind: "image",
            name: reference.to_owned(),
        })
    }

    /// Whether the job's task has ended (a removed job has ended too).
    async fn job_ended(&self, name: &str) -> Result<bool> {
        let tasks = self.tasks(name).await?;
        if tasks.is_empty() {
            return Ok(self.inspect_service(name).await?.is_none());
        }
        Ok(tasks
            .iter()
            .all(|task| TERMINAL_TASK_STATES.contains(&task.state.as_str())))
    }

    /// Read-modify-write of a service's current spec, retried when another writer wins.
    async fn modify(
        &self,
        name: &str,
        rollback: Option<&str>,
        change: impl Fn(&mut DockerServiceSpec) -> Result<()> + Send + Sync,
    ) -> Result<()> {
        for _ in 0..WRITE_ATTEMPTS {
            let current =
                self.inspect_service(name)
                    .await?
                    .ok_or_else(|| EngineError::NotFound {
                        kind: "service",
                        name: name.to_owned(),
                    })?;
            let mut spec = current.spec.clone().unwrap_or_default();
            restore_health_check(&mut spec);
            change(&mut spec)?;
            if self.update(name, &current, spec, rollback).await? {
                return Ok(());
            }
        }
        Err(out_of_sequence(name))
    }
}

fn log_options(since: Option<i64>, follow: bool) -> LogsOptions {
    LogsOptions {
        follow,
        stdout: true,
        stderr: true,
        // Docker's API takes a 32-bit timestamp here; saturate rather than wrap.
        since: since.map_or(0, |s| i32::try_from(s).unwrap_or(i32::MAX)),
        timestamps: true,
        ..Default::default()
    }
}

/// Our chunk for one line of service output, without the timestamp Docker put before it;
/// `last` becomes that timestamp, in a form that sorts as time does.
fn timestamped_chunk(item: LogOutput, last: &mut Option<String>) -> Option<OutputChunk> {
    let (stream, message) = match item {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (OutputStream::Stdout, message)
        }
        LogOutput::StdErr { message } => (OutputStream::Stderr, message),
        LogOutput::StdIn { .. } => return None,
    };
    let stamped = message
        .iter()
        .position(|byte| *byte == b' ')
        .and_then(|space| {
            let stamp = std::str::from_utf8(&message[..space]).ok()?;
            Some((sortable_timestamp(stamp)?, space))
        });
    let bytes = match stamped {
        Some((stamp, space)) => {
            *last = Some(stamp);
            message.slice(space + 1..)
        }
        None => message,
    };
    Some(OutputChunk { stream, bytes })
}

/// Docker's RFC 3339 UTC timestamp with its fraction padded to nanoseconds (Docker trims
/// trailing zeros), so that two of them compare as the times do; `None` if it is not one.
fn sortable_timestamp(stamp: &str) -> Option<String> {
    let stamp = stamp.strip_suffix('Z')?;
    let (seconds, fraction) = stamp.split_once('.').unwrap_or((stamp, ""));
    let well_formed = seconds.len() == 19
        && seconds.as_bytes()[10] == b'T'
        && fraction.len() <= 9
        && fraction.bytes().all(|byte| byte.is_ascii_digit());
    well_formed.then(|| format!("{seconds}.{fraction:0<9}"))
}

/// Swarm expands every env value as a Go template against its task; this Go template gives
/// back `{{` as written.
const LITERAL_BRACES: &str = r#"{{"{{"}}"#;

/// The tasks' env: the container's values as written (every `{{` escaped, so Swarm's template
/// expansion leaves them unchanged), then the slot variables, the only templates.
fn task_env(spec: &ServiceSpec) -> Vec<String> {
    let literal = spec
        .container
        .env
        .iter()
        .filter(|(key, _)| !spec.slot_env.contains_key(*key))
        .map(|(key, value)| format!("{key}={}", value.replace("{{", LITERAL_BRACES)));
    let slots = spec.slot_env.iter().map(|(key, prefix)| {
        format!(
            "{key}={}{{{{.Task.Slot}}}}",
            prefix.replace("{{", LITERAL_BRACES)
        )
    });
    literal.chain(slots).collect()
}

/// Whether an image reference starts with a registry host (`registry.internal/…`,
/// `10.0.0.5:5000/…`, `localhost/…`), by Docker's own rule: a first path component with a
/// dot or a colon, or `localhost`. Plain names (`slipway/hello:1`) name no registry.
fn names_registry(reference: &str) -> bool {
    reference.split_once('/').is_some_and(|(first, _)| {
        first.contains('.') || first.contains(':') || first == "localhost"
    })
}

/// Slipway's service spec in Swarm's terms: see [`Swarm::deploy_service`] for how it rolls.
/// Tasks run `task_image`. For a plain local name that is the local image's id: a node pulls
/// any image named by a tag before it starts a task, even one it has, and only an id stops
/// it. A reference that names a registry is kept as it is, so each node pulls it (one pinned
/// by `@sha256:…` is pulled only by nodes that lack it). The reference the spec named travels
/// in a label, so [`ServiceState`] and [`TaskState`] still show it.
fn docker_service_spec(spec: &ServiceSpec, task_image: &str) -> Result<DockerServiceSpec> {
    let container = &spec.container;
    let job = spec.mode == ServiceMode::Job;
    let health_check: Option<HealthConfig> = spec.health.as_ref().map(|health| HealthConfig {
        test: Some(vec!["CMD-SHELL".to_owned(), health.shell.clone()]),
        interval: Some(nanos(health.interval)),
        timeout: Some(nanos(health.timeout)),
        retries: Some(i64::from(health.retries)),
        start_period: Some(nanos(health.start_period)),
        ..Default::default()
    });
    let health_label = health_check
        .as_ref()
        .map(|health| {
            serde_json::to_string(health)
                .map(|json| (HEALTH_LABEL.to_owned(), json))
                .map_err(|error| {
                    EngineError::Engine(format!(
                        "service `{}`: health check: {error}",
                        container.name
                    ))
                })
        })
        .transpose()?;
    let container_spec = TaskSpecContainerSpec {
        image: Some(task_image.to_owned()),
        labels: Some(
            to_hash_map(&container.labels)
                .into_iter()
                .chain([(IMAGE_LABEL.to_owned(), container.image.clone())])
                .collect(),
        ),
        // Swarm's command replaces the image's entrypoint and its args the image's command,
        // as a plain container's entrypoint and cmd do.
        command: (!container.entrypoint.is_empty()).then(|| container.entrypoint.clone()),
        args: (!container.cmd.is_empty()).then(|| container.cmd.clone()),
        env: Some(task_env(spec)),
        dir: container.working_dir.clone(),
        user: container.user.clone(),
        tty: Some(container.tty),
        open_stdin: Some(container.stdin_open),
        mounts: Some(docker_mounts(container)?),
        stop_grace_period: Some(nanos(spec.stop_grace)),
        health_check,
        // docker-init as PID 1 reaps zombies and forwards SIGTERM, as for plain containers.
        init: Some(true),
        ..Default::default()
    };
    let restart_policy = if job {
        TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            ..Default::default()
        }
    } else {
        TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            delay: Some(nanos(RESTART_DELAY)),
            ..Default::default()
        }
    };
    let task_template = TaskSpec {
        container_spec: Some(container_spec),
        resources: Some(TaskSpecResources {
            limits: Some(Limit {
                nano_cpus: container.nano_cpus,
                memory_bytes: container.memory_bytes,
                ..Default::default()
            }),
            ..Default::default()
        }),
        restart_policy: Some(restart_policy),
        placement: Some(TaskSpecPlacement {
            constraints: Some(spec.constraints.clone()),
            ..Default::default()
        }),
        networks: container.network.as_ref().map(|network| {
            vec![NetworkAttachmentConfig {
                target: Some(network.clone()),
                aliases: Some(vec![container.name.clone()]),
                ..Default::default()
            }]
        }),
        ..Default::default()
    };
    let mode = match spec.mode {
        ServiceMode::Replicated(replicas) => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(replicas)),
            }),
            ..Default::default()
        },
        ServiceMode::Job => ServiceSpecMode {
            replicated_job: Some(ServiceSpecModeReplicatedJob {
                max_concurrent: Some(1),
                total_completions: Some(1),
            }),
            ..Default::default()
        },
    };
    let ports = spec
        .published_port
        .map(|port| EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(port)),
            publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            ..Default::default()
        })
        .into_iter()
        .collect();
    Ok(DockerServiceSpec {
        name: Some(container.name.clone()),
        labels: Some(
            to_hash_map(&spec.labels)
                .into_iter()
                .chain(health_label)
                .collect(),
        ),
        task_template: Some(task_template),
        mode: Some(mode),
        // A job runs once; there is nothing to roll.
        update_config: (!job).then(|| ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(nanos(UPDATE_MONITOR)),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        }),
        rollback_config: (!job).then(|| ServiceSpecRollbackConfig {
            parallelism: Some(1),
            delay: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(nanos(UPDATE_MONITOR)),
            max_failure_ratio: Some(0.0),
            order: Some(ServiceSpecRollbackConfigOrderEnum::START_FIRST),
        }),
        // DNS round robin instead of a virtual IP: a VIP needs IPVS in the kernel, which
        // some hosts lack (the name then answers "no route to host"), and Slipway publishes
        // in host mode, never through the routing mesh a VIP serves.
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(ports),
        }),
        ..Default::default()
    })
}

/// Puts back the health check an inspected spec lost: Docker names it `Healthcheck` and
/// bollard reads only `HealthCheck`, so it comes from the label that keeps a copy.
fn restore_health_check(spec: &mut DockerServiceSpec) {
    let saved = spec
        .labels
        .as_ref()
        .and_then(|labels| labels.get(HEALTH_LABEL))
        .and_then(|json| serde_json::from_str::<HealthConfig>(json).ok());
    if let Some(container) = spec
        .task_template
        .as_mut()
        .and_then(|task| task.container_spec.as_mut())
        && container.health_check.is_none()
    {
        container.health_check = saved;
    }
}

/// The image as the spec named it, taken out of the container labels it travelled in.
fn named_image(image: Option<String>, labels: Option<&mut HashMap<String, String>>) -> String {
    labels
        .and_then(|labels| labels.remove(IMAGE_LABEL))
        .or(image)
        .unwrap_or_default()
}

fn service_state(service: Service) -> ServiceState {
    let spec = service.spec.unwrap_or_default();
    let mut container = spec
        .task_template
        .and_then(|task| task.container_spec)
        .unwrap_or_default();
    ServiceState {
        id: service.id.unwrap_or_default(),
        name: spec.name.unwrap_or_default(),
        image: named_image(container.image, container.labels.as_mut()),
        labels: spec
            .labels
            .unwrap_or_default()
            .into_iter()
            .filter(|(key, _)| key != HEALTH_LABEL)
            .collect(),
        container_labels: container.labels.unwrap_or_default().into_iter().collect(),
        replicas: spec
            .mode
            .and_then(|mode| mode.replicated)
            .map(|replicated| u32::try_from(replicated.replicas.unwrap_or(0)).unwrap_or(u32::MAX)),
        update: service.update_status.and_then(|update| {
            let state = match update.state? {
                ServiceUpdateStatusStateEnum::UPDATING => UpdateState::Updating,
                ServiceUpdateStatusStateEnum::PAUSED => UpdateState::Paused,
                ServiceUpdateStatusStateEnum::COMPLETED => UpdateState::Completed,
                ServiceUpdateStatusStateEnum::ROLLBACK_STARTED => UpdateState::RollbackStarted,
                ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED => UpdateState::RollbackPaused,
                ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED => UpdateState::RollbackCompleted,
                ServiceUpdateStatusStateEnum::EMPTY => return None,
            };
            Some(UpdateStatus {
                state,
                message: update.message.filter(|message| !message.is_empty()),
            })
        }),
    }
}

/// The node port of the first of `ports` (target, node port) that the container binds on IPv4.
fn ipv4_binding(bindings: &PortMap, ports: &[(i64, u16)]) -> Option<u16> {
    ports.iter().find_map(|(target, _)| {
        bindings
            .get(&format!("{target}/tcp"))?
            .as_ref()?
            .iter()
            .filter(|binding| {
                binding
                    .host_ip
                    .as_deref()
                    .and_then(|ip| ip.parse::<IpAddr>().ok())
                    .is_some_and(|ip| ip.is_ipv4())
            })
            .find_map(|binding| binding.host_port.as_deref()?.parse().ok())
    })
}

/// The task's published ports as (target port, node port).
fn published_ports(task: &Task) -> Vec<(i64, u16)> {
    task.status
        .as_ref()
        .and_then(|status| status.port_status.as_ref())
        .and_then(|ports| ports.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|port| Some((port.target_port?, u16::try_from(port.published_port?).ok()?)))
        .collect()
}

fn task_state(task: Task, addresses: &HashMap<String, IpAddr>) -> TaskState {
    let published_port = published_ports(&task).first().map(|&(_, port)| port);
    let status = task.status.unwrap_or_default();
    let mut container = task
        .spec
        .and_then(|spec| spec.container_spec)
        .unwrap_or_default();
    let node_id = task.node_id.unwrap_or_default();
    let container_status = status.container_status.unwrap_or_default();
    TaskState {
        id: task.id.unwrap_or_default(),
        // Swarm gives a job's task a slot too; Slipway only numbers replicas.
        slot: task
            .slot
            .and_then(|slot| u32::try_from(slot).ok())
            .filter(|slot| *slot > 0),
        node_addr: addresses.get(&node_id).copied(),
        node_id,
        desired_state: task
            .desired_state
            .map(|state| state.to_string())
            .unwrap_or_default(),
        state: status
            .state
            .map(|state| state.to_string())
            .unwrap_or_default(),
        error: status.err.filter(|error| !error.is_empty()),
        container_id: container_status.container_id.filter(|id| !id.is_empty()),
        published_port,
        exit_code: container_status.exit_code,
        image: named_image(container.image, container.labels.as_mut()),
        labels: container.labels.unwrap_or_default().into_iter().collect(),
        timestamp: status.timestamp.map(|timestamp| timestamp.to_string()),
    }
}

/// The address a node is reached at. A manager may report `0.0.0.0` as its status address;
/// its manager address (`ip:port`) then says which one it advertises.
fn node_addr(node: &Node) -> String {
    let status = node
        .status
        .as_ref()
        .and_then(|status| status.addr.clone())
        .unwrap_or_default();
    let unspecified = status
        .parse::<IpAddr>()
        .map_or(true, |addr| addr.is_unspecified());
    if !unspecified {
        return status;
    }
    node.manager_status
        .as_ref()
        .and_then(|manager| manager.addr.as_deref())
        .and_then(|addr| addr.rsplit_once(':'))
        .map_or(status, |(host, _)| host.trim_matches(['[', ']']).to_owned())
}

fn node_info(node: Node) -> NodeInfo {
    let addr = node_addr(&node);
    let spec = node.spec.unwrap_or_default();
    let description = node.description.unwrap_or_default();
    let status = node.status.unwrap_or_default();
    let manager = node.manager_status.unwrap_or_default();
    NodeInfo {
        id: node.id.unwrap_or_default(),
        hostname: description.hostname.unwrap_or_default(),
        role: match spec.role {
            Some(NodeSpecRoleEnum::MANAGER) => NodeRole::Manager,
            _ => NodeRole::Worker,
        },
        leader: manager.leader.unwrap_or(false),
        state: status
            .state
            .map_or_else(|| "unknown".to_owned(), |state| state.to_string()),
        availability: match spec.availability {
            Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => Availability::Active,
        },
        addr,
        labels: spec.labels.unwrap_or_default().into_iter().collect(),
        engine_version: description
            .engine
            .and_then(|engine| engine.engine_version)
            .unwrap_or_default(),
    }
}

fn label_filters(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect(),
    )])
}

fn describe_labels(labels: &[(&str, &str)]) -> String {
    labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn version_of(index: Option<u64>, name: &str) -> Result<i64> {
    index
        .and_then(|index| i64::try_from(index).ok())
        .ok_or_else(|| EngineError::Engine(format!("swarm object `{name}` has no version")))
}

fn is_out_of_sequence(error: &DockerError) -> bool {
    matches!(
        error,
        DockerError::DockerResponseServerError { message, .. }
            if message.contains("update out of sequence")
    )
}

fn out_of_sequence(name: &str) -> EngineError {
    EngineError::Engine(format!(
        "service `{name}`: changed by another writer {WRITE_ATTEMPTS} times in a row"
    ))
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use slipway_types::ContainerSpec;

    use super::*;
    use crate::HealthCheck;

    fn web() -> ServiceSpec {
        ServiceSpec {
            container: ContainerSpec {
                name: "slipway-hello-web".to_owned(),
                image: "slipway/hello:1".to_owned(),
                entrypoint: vec!["/bin/sh".to_owned()],
                cmd: vec!["-c".to_owned(), "serve".to_owned()],
                labels: BTreeMap::from([("slipway.release".to_owned(), "1".to_owned())]),
                network: Some("slipway-hello".to_owned()),
                ..ContainerSpec::default()
            },
            labels: BTreeMap::from([("slipway.app".to_owned(), "hello".to_owned())]),
            slot_env: BTreeMap::new(),
            mode: ServiceMode::Replicated(2),
            health: Some(HealthCheck {
                shell: "true".to_owned(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                retries: 3,
                start_period: Duration::ZERO,
            }),
            published_port: Some(5000),
            constraints: vec!["node.role==manager".to_owned()],
            stop_grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_service_spec_runs_the_image_id_and_publishes_in_host_mode() {
        let spec = docker_service_spec(&web(), "sha256:abc").expect("valid spec");
        let task = spec.task_template.clone().expect("task template");
        let container = task.container_spec.expect("container spec");
        assert_eq!(container.image.as_deref(), Some("sha256:abc"));
        assert_eq!(container.command, Some(vec!["/bin/sh".to_owned()]));
        assert_eq!(
            container.args,
            Some(vec!["-c".to_owned(), "serve".to_owned()])
        );
        assert_eq!(container.init, Some(true));
        let labels = container.labels.expect("labels");
        assert_eq!(labels[IMAGE_LABEL], "slipway/hello:1");
        let port = &spec
            .endpoint_spec
            .clone()
            .and_then(|e| e.ports)
            .expect("ports")[0];
        assert_eq!(
            port.publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
        assert_eq!((port.target_port, port.published_port), (Some(5000), None));
        let networks = task.networks.expect("networks");
        assert_eq!(
            networks[0].aliases,
            Some(vec!["slipway-hello-web".to_owned()])
        );
        assert_eq!(
            spec.update_config.as_ref().and_then(|update| update.order),
            Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST)
        );

        let state = service_state(Service {
            spec: Some(spec),
            ..Service::default()
        });
        assert_eq!(state.image, "slipway/hello:1");
        assert_eq!(state.replicas, Some(2));
        assert!(!state.container_labels.contains_key(IMAGE_LABEL));
        assert!(!state.labels.contains_key(HEALTH_LABEL));
    }

    #[test]
    fn only_a_first_component_with_a_dot_colon_or_localhost_names_a_registry() {
        for reference in [
            "127.0.0.1:5000/slipway/hello:1@sha256:abc",
            "registry.internal/slipway/hello:1",
            "localhost/slipway/hello:1",
            "[::1]:5000/slipway/hello:1",
        ] {
            assert!(names_registry(reference), "{reference}");
        }
        for reference in ["slipway/hello:1", "hello:1", "hello", "sha256:abc"] {
            assert!(!names_registry(reference), "{reference}");
        }
    }

    #[test]
    fn env_values_are_literal_but_slot_variables_are_templates() {
        let mut spec = web();
        spec.container.env = BTreeMap::from([
            ("DYNO".to_owned(), "web.0".to_owned()),
            ("PLAIN".to_owned(), "a}}b".to_owned()),
            ("TEMPLATE".to_owned(), "a{{b}}c{{{".to_owned()),
        ]);
        spec.slot_env = BTreeMap::from([("DYNO".to_owned(), "web.".to_owned())]);
        assert_eq!(
            task_env(&spec),
            [
                "PLAIN=a}}b",
                r#"TEMPLATE=a{{"{{"}}b}}c{{"{{"}}{"#,
                "DYNO=web.{{.Task.Slot}}",
            ]
        );
    }

    #[test]
    fn an_inspected_spec_gets_its_health_check_back() {
        let mut spec = docker_service_spec(&web(), "sha256:abc").expect("valid spec");
        let container = spec
            .task_template
            .as_mut()
            .and_then(|task| task.container_spec.as_mut())
            .expect("container spec");
        let health = container.health_check.take();
        assert!(health.is_some());
        restore_health_check(&mut spec);
        assert_eq!(
            spec.task_template
                .and_then(|task| task.container_spec)
                .and_then(|container| container.health_check),
            health
        );
    }

    #[test]
    fn a_job_never_restarts_and_has_no_replica_count() {
        let job = ServiceSpec {
            mode: ServiceMode::Job,
            health: None,
            ..web()
        };
        let spec = docker_service_spec(&job, "sha256:abc").expect("valid spec");
        assert_eq!(
            spec.task_template
                .clone()
                .and_then(|task| task.restart_policy)
                .and_then(|policy| policy.condition),
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let mode = spec.mode.clone().expect("mode");
        assert!(mode.replicated.is_none());
        assert!(mode.replicated_job.is_some());
        assert!(spec.update_config.is_none());
        let state = service_state(Service {
            spec: Some(spec),
            ..Service::default()
        });
        assert_eq!(state.replicas, None);
    }

    #[test]
    fn only_the_ipv4_binding_of_a_published_port_is_taken() {
        let binding = |ip: &str, port: &str| bollard::models::PortBinding {
            host_ip: Some(ip.to_owned()),
            host_port: Some(port.to_owned()),
        };
        // As Docker 20.10 on this machine lists them: one random port per address family.
        let listed = [(5000, 33007), (5000, 33022)];
        let both = PortMap::from([(
            "5000/tcp".to_owned(),
            Some(vec![binding("::", "33007"), binding("0.0.0.0", "33022")]),
        )]);
        assert_eq!(ipv4_binding(&both, &listed), Some(33022));
        let ipv6_only =
            PortMap::from([("5000/tcp".to_owned(), Some(vec![binding("::", "33007")]))]);
        assert_eq!(
            ipv4_binding(&ipv6_only, &listed),
            None,
            "the IPv6 port is never a guess for the IPv4 one"
        );
        assert_eq!(ipv4_binding(&PortMap::new(), &listed), None);
    }

    #[test]
    fn docker_timestamps_sort_as_the_times_do() {
        let earlier = sortable_timestamp("2026-11-22T08:30:01.9Z").expect("valid");
        let later = sortable_timestamp("2026-11-22T08:30:01.12345678Z").expect("valid");
        assert_eq!(earlier, "2026-11-22T08:30:01.900000000");
        assert!(later < earlier, "0.123… s comes before 0.9 s");
        assert_eq!(
            sortable_timestamp("2026-11-22T08:30:02Z").as_deref(),
            Some("2026-11-22T08:30:02.000000000")
        );
        assert_eq!(sortable_timestamp("hello"), None);

        let mut last = None;
        let chunk = timestamped_chunk(
            LogOutput::StdErr {
                message: bytes::Bytes::from_static(b"2026-11-22T08:30:02.5Z oops\n"),
            },
            &mut last,
        )
        .expect("a chunk");
        assert_eq!(chunk.stream, OutputStream::Stderr);
        assert_eq!(chunk.bytes, "oops\n");
        assert_eq!(last.as_deref(), Some("2026-11-22T08:30:02.500000000"));
    }
}
