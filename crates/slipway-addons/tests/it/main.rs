//! Add-ons on the real Docker engine with the images `slipway stack:build` makes. They need
//! /var/run/docker.sock, `slipway/postgres:17` and `slipway/redis:8`, and fail when any is
//! missing; the `swarm` ones also need the engine to be a swarm manager.

mod isolation;
mod postgres;
mod redis;
mod swarm;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use slipway_addons::{AddonImages, AddonInstance, AddonKind, Provisioner};
use slipway_engine::{ContainerEngine, DockerEngine, OutputStream, Swarm};
use slipway_types::{AppName, ContainerSpec, labels};

/// How long a client container in a test may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Apps, add-ons and client containers of one test, removed afterwards whatever happened.
pub struct Fixture {
    pub engine: Arc<DockerEngine>,
    pub provisioner: Provisioner,
    pub images: AddonImages,
    /// Labels every container of this test carries, so clean-up finds them all.
    instance: String,
    addons: Mutex<Vec<AddonInstance>>,
    networks: Mutex<Vec<String>>,
}

/// What a client container printed.
#[derive(Debug)]
pub struct ClientOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Fixture {
    /// Runs `test` against a fresh fixture, then removes everything it created.
    pub async fn run<F, Fut>(test: F)
    where
        F: FnOnce(Arc<Fixture>) -> Fut,
        Fut: Future<Output = ()>,
    {
        Self::run_on(false, test).await;
    }

    /// Like [`Fixture::run`], with a provisioner that runs servers as services of the
    /// engine's swarm.
    pub async fn run_on_swarm<F, Fut>(test: F)
    where
        F: FnOnce(Arc<Fixture>) -> Fut,
        Fut: Future<Output = ()>,
    {
        Self::run_on(true, test).await;
    }

    async fn run_on<F, Fut>(swarm: bool, test: F)
    where
        F: FnOnce(Arc<Fixture>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let engine = Arc::new(DockerEngine::connect().await.expect(
            "the Docker engine at /var/run/docker.sock is needed by the add-on integration tests",
        ));
        engine
            .ping()
            .await
            .expect("the Docker engine at /var/run/docker.sock does not answer");
        let images = AddonImages::default();
        for image in [&images.postgres, &images.redis] {
            assert!(
                engine
                    .image_exists(image)
                    .await
                    .expect("inspecting an image"),
                "add-on image `{image}` is missing: build it with \
                 `cargo run -p slipway -- stack:build` (as root)"
            );
        }
        let mut provisioner = Provisioner::new(
            Arc::clone(&engine) as Arc<dyn ContainerEngine>,
            images.clone(),
        );
        if swarm {
            let status = engine
                .swarm_status()
                .await
                .expect("asking for the swarm status");
            assert!(
                status.is_some_and(|status| status.manager),
                "the swarm add-on tests need the Docker engine to be a swarm manager: run \
                 `docker swarm init --advertise-addr 127.0.0.1`"
            );
            provisioner = provisioner.with_swarm(Arc::clone(&engine) as Arc<dyn Swarm>);
        }
        let fixture = Arc::new(Fixture {
            engine,
            provisioner,
            images,
            instance: format!("addons-it-{:08x}", rand_u32()),
            addons: Mutex::new(Vec::new()),
            networks: Mutex::new(Vec::new()),
        });
        let outcome = AssertUnwindSafe(test(Arc::clone(&fixture)))
            .catch_unwind()
            .await;
        fixture.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    /// A fresh app name; its network is removed afterwards.
    pub fn app(&self, prefix: &str) -> AppName {
        let app: AppName = format!("it-{prefix}-{:06x}", rand_u32() & 0xff_ffff)
            .parse()
            .expect("a valid app name");
        self.networks.lock().expect("lock").push(network(&app));
        app
    }

    /// A new add-on of `app` (not yet provisioned); destroyed afterwards.
    pub fn addon(&self, kind: AddonKind, app: &AppName, name: &str) -> AddonInstance {
        let addon = AddonInstance::new(
            kind,
            app.clone(),
            name,
            network(app),
            BTreeMap::from([
                (labels::APP.to_owned(), app.to_string()),
                (labels::INSTANCE.to_owned(), self.instance.clone()),
            ]),
        );
        self.addons.lock().expect("lock").push(addon.clone());
        addon
    }

    /// Runs `script` with bash in a container of the Postgres image on `network`, with `env`.
    pub async fn client(&self, network: &str, script: &str, env: &[(&str, &str)]) -> ClientOutput {
        self.engine
            .ensure_network(network, &BTreeMap::new())
            .await
            .expect("network");
        let spec = ContainerSpec {
            name: format!("slipway-addons-it-client-{:08x}", rand_u32()),
            image: self.images.postgres.clone(),
            entrypoint: vec!["/bin/bash".to_owned(), "-c".to_owned(), script.to_owned()],
            env: env
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
            labels: BTreeMap::from([(labels::INSTANCE.to_owned(), self.instance.clone())]),
            network: Some(network.to_owned()),
            ..ContainerSpec::default()
        };
        let id = self
            .engine
            .create_container(&spec)
            .await
            .expect("client container");
        let attached = self.engine.attach(&id).await.expect("attach");
        self.engine.start(&id).await.expect("start");
        let mut output = attached.output;
        let collect = async {
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(chunk) = output.next().await {
                let chunk = chunk.expect("client output");
                match chunk.stream {
                    OutputStream::Stdout => stdout.extend_from_slice(&chunk.bytes),
                    OutputStream::Stderr => stderr.extend_from_slice(&chunk.bytes),
                }
            }
            (stdout, stderr)
        };
        let collected = tokio::time::timeout(CLIENT_TIMEOUT, collect).await;
        let code = match &collected {
            Ok(_) => self.engine.wait(&id).await.expect("exit code"),
            Err(_) => -1,
        };
        self.engine.remove_container(&id).await.expect("remove");
        let (stdout, stderr) = collected.unwrap_or_else(|_| {
            panic!("client `{script}` did not finish within {CLIENT_TIMEOUT:?}")
        });
        ClientOutput {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// The add-on's address on its app network, as the engine reports it.
    pub async fn address(&self, addon: &AddonInstance) -> std::net::IpAddr {
        let state = self
            .engine
            .inspect(&addon.container_name)
            .await
            .expect("inspect add-on");
        state.addresses[&addon.network]
    }

    async fn cleanup(&self) {
        let addons = std::mem::take(&mut *self.addons.lock().expect("lock"));
        for addon in &addons {
            if let Err(error) = self.provisioner.destroy(addon).await {
                eprintln!("clean-up: destroying {}: {error}", addon.container_name);
            }
        }
        let leftovers = self
            .engine
            .list_containers(&[(labels::INSTANCE, &self.instance)])
            .await
            .unwrap_or_default();
        for container in leftovers {
            self.engine.remove_container(&container.id).await.ok();
        }
        let networks = std::mem::take(&mut *self.networks.lock().expect("lock"));
        for network in networks {
            // An overlay keeps its load balancer endpoint a moment after its last task left.
            for attempt in 1..=10 {
                match self.engine.remove_network(&network).await {
                    Ok(()) => break,
                    Err(error) if attempt == 10 => {
                        eprintln!("clean-up: removing network {network}: {error}");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        }
    }
}

pub fn network(app: &AppName) -> String {
    format!("slipway-{app}")
}

pub fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) as u32
}

/// Whether the named volume exists, asked of the docker CLI: the engine trait has no way to
/// inspect a volume.
pub async fn volume_exists(volume: &str) -> bool {
    let output = tokio::process::Command::new("docker")
        .args(["volume", "inspect", volume])
        .output()
        .await
        .expect("the docker CLI");
    output.status.success()
}
