//! Builds against the real Docker engine and the real stack image. They need
//! /var/run/docker.sock and `slipway/stack:trixie`, and fail when either is missing.

mod procfile;
mod python;

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use slipway_builder::{BuildError, BuildRequest, BuildResult, Builder, BuilderConfig};
use slipway_engine::{ContainerEngine, DockerEngine};
use slipway_types::{AppName, ConfigVars, ContainerSpec, labels};

pub const STACK: &str = "slipway/stack:trixie";

/// The host's CA bundle: it holds the CA of the TLS-intercepting proxy between builds and PyPI.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// One app's worth of builds against Docker; `run` removes everything it created afterwards.
pub struct Fixture {
    pub engine: Arc<DockerEngine>,
    pub app: AppName,
    pub builder: Builder,
}

impl Fixture {
    /// Runs `test` with a fresh app name, then removes the app's images, cache volume, network
    /// and containers whether or not the test passed.
    pub async fn run<F, Fut>(prefix: &str, test: F)
    where
        F: FnOnce(Arc<Fixture>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let engine = Arc::new(DockerEngine::connect().await.expect(
            "the Docker engine at /var/run/docker.sock is needed by the builder's integration tests",
        ));
        engine
            .ping()
            .await
            .expect("the Docker engine at /var/run/docker.sock does not answer");
        assert!(
            engine
                .image_exists(STACK)
                .await
                .expect("inspecting the stack image"),
            "stack image `{STACK}` is missing: build it with `slipway stack:build`"
        );
        let app: AppName = format!("it-{prefix}-{:08x}", random_u64() as u32)
            .parse()
            .expect("a valid app name");
        let mut config = BuilderConfig::new(STACK);
        config.ca_bundle = Some(PathBuf::from(HOST_CA_BUNDLE));
        let builder = Builder::new(Arc::clone(&engine) as Arc<dyn ContainerEngine>, config);
        let fixture = Arc::new(Fixture {
            engine,
            app,
            builder,
        });
        let outcome = AssertUnwindSafe(test(Arc::clone(&fixture)))
            .catch_unwind()
            .await;
        fixture.cleanup().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    pub fn image(&self, version: &str) -> String {
        format!("slipway/{}:{version}", self.app)
    }

    pub fn network(&self) -> String {
        format!("slipway-{}", self.app)
    }

    /// Builds `files` as version `version` with buildpack detection, returning the result and
    /// every output line.
    pub async fn build(
        &self,
        version: &str,
        files: &[(&str, &str)],
    ) -> (Result<BuildResult, BuildError>, Vec<String>) {
        self.build_with(version, files, &[]).await
    }

    /// Builds `files` as version `version` with the given buildpacks.
    pub async fn build_with(
        &self,
        version: &str,
        files: &[(&str, &str)],
        buildpacks: &[&str],
    ) -> (Result<BuildResult, BuildError>, Vec<String>) {
        let request = BuildRequest {
            app: self.app.clone(),
            image: self.image(version),
            source_tar: source_tar(files),
            config: ConfigVars::new(),
            buildpacks: buildpacks.iter().map(|name| name.to_string()).collect(),
            labels: BTreeMap::from([
                (labels::APP.to_owned(), self.app.to_string()),
                (labels::RELEASE.to_owned(), version.to_owned()),
            ]),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let printer = tokio::spawn(async move {
            let mut lines = Vec::new();
            while let Some(line) = rx.recv().await {
                eprintln!("remote: {line}");
                lines.push(line);
            }
            lines
        });
        let result = self.builder.build(request, &tx).await;
        drop(tx);
        (result, printer.await.expect("the output printer"))
    }

    /// Build containers of this app still present.
    pub async fn build_containers(&self) -> usize {
        self.engine
            .list_containers(&[(labels::ROLE, "build"), (labels::APP, self.app.as_str())])
            .await
            .expect("listing build containers")
            .len()
    }

    /// Starts `spec` with this app's label so cleanup finds it.
    pub async fn start(&self, mut spec: ContainerSpec) -> String {
        spec.labels
            .insert(labels::APP.to_owned(), self.app.to_string());
        slipway_engine::run(&*self.engine, &spec)
            .await
            .expect("starting a container")
    }

    /// Runs `spec` to completion and returns its exit code and output.
    pub async fn run_to_end(&self, spec: ContainerSpec) -> (i64, String) {
        let id = self.start(spec).await;
        let mut output = String::new();
        let mut chunks = self.engine.output(&id, None);
        while let Some(chunk) = chunks.next().await {
            output.push_str(&String::from_utf8_lossy(
                &chunk.expect("container output").bytes,
            ));
        }
        let code = self
            .engine
            .wait(&id)
            .await
            .expect("waiting for a container");
        (code, output)
    }

    async fn cleanup(&self) {
        let containers = self
            .engine
            .list_containers(&[(labels::APP, self.app.as_str())])
            .await
            .unwrap_or_default();
        for container in containers {
            self.engine.remove_container(&container.id).await.ok();
        }
        for image in self
            .engine
            .list_images(&format!("slipway/{}", self.app))
            .await
            .unwrap_or_default()
        {
            self.engine.remove_image(&image).await.ok();
        }
        self.engine
            .remove_volume(&format!("slipway-cache-{}", self.app))
            .await
            .ok();
        self.engine.remove_network(&self.network()).await.ok();
    }
}

/// A tar of `files` as `git archive` writes it.
pub fn source_tar(files: &[(&str, &str)]) -> Bytes {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, path, content.as_bytes())
            .expect("a tar entry");
    }
    Bytes::from(builder.into_inner().expect("a tar archive"))
}

fn random_u64() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}
