//! Classic buildpack builds: the source, the buildpacks and the config go into a container
//! from the stack image, `build.sh` runs detect/compile/release there, and the container is
//! committed as the app's image.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use slipway_engine::{ContainerEngine, EngineError, ImageConfig, OutputStream};
use slipway_types::{
    AppName, ConfigVars, ContainerSpec, Mount, MountSource, ProcessType, Procfile, ProcfileError,
    labels,
};
use tokio::sync::mpsc::Sender;

use crate::release::Release;
use crate::upload::{BUILTIN_BUILDPACKS, SourceFiles, UploadArchive};

const BUILD_SCRIPT: &str = include_str!("build.sh");
const LAUNCH_SCRIPT: &str = include_str!("launch.sh");

/// Starts the lines `build.sh` writes for the builder rather than the user.
const MARKER: &str = "::slipway-build::";

/// Where a `ca_bundle` is mounted in the build container; `build.sh` looks for it there.
const EXTRA_CA_PATH: &str = "/etc/slipway/extra-ca.crt";

#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// Image every build container starts from, e.g. `slipway/stack:trixie`.
    pub stack_image: String,
    /// Extra CA certificates (PEM) the build trusts, for TLS-intercepting proxies.
    pub ca_bundle: Option<PathBuf>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
}

impl BuilderConfig {
    /// 2 GiB of memory and 2 CPUs per build.
    pub fn new(stack_image: impl Into<String>) -> Self {
        Self {
            stack_image: stack_image.into(),
            ca_bundle: None,
            memory_bytes: 2 * 1024 * 1024 * 1024,
            nano_cpus: 2_000_000_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub app: AppName,
    /// Image to create, `slipway/<app>:<version>`.
    pub image: String,
    /// The repository tree as `git archive` writes it: relative paths, no root entry needed.
    pub source_tar: Bytes,
    pub config: ConfigVars,
    /// Buildpacks to run in order (built-in names or git URLs with an optional `#ref`); empty
    /// means `BUILDPACK_URL`, then `.buildpacks`, then detection among the built-ins.
    pub buildpacks: Vec<String>,
    /// Labels of the committed image (and of the build container).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    pub image: String,
    /// The buildpacks that ran, comma-separated when there were several.
    pub buildpack: String,
    /// The Procfile, with the last buildpack's `default_process_types` filling its gaps.
    pub procfile: Procfile,
    /// `config_vars` from `bin/release`: defaults the app's own config overrides.
    pub config_defaults: BTreeMap<String, String>,
    /// `addons` from `bin/release`.
    pub addons: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("stack image `{0}` is missing: build it with `slipway stack:build`")]
    StackMissing(String),
    #[error(
        "no buildpack detected: add requirements.txt, package.json, a Procfile or set one with buildpacks:set"
    )]
    NoBuildpack,
    #[error("buildpack `{0}` is neither a built-in ({builtins}) nor a git URL", builtins = BUILTIN_BUILDPACKS.join(", "))]
    UnknownBuildpack(String),
    #[error("fetching buildpack `{0}` failed: see the output above")]
    FetchFailed(String),
    #[error("`{0}` buildpack does not apply to this app: its bin/detect failed")]
    DetectFailed(String),
    #[error("`{buildpack}` buildpack compile failed (exit {exit_code}): see the output above")]
    CompileFailed { buildpack: String, exit_code: i64 },
    #[error("`{0}` buildpack release failed: see the output above")]
    ReleaseFailed(String),
    #[error("bin/release of the `{buildpack}` buildpack printed invalid YAML: {message}")]
    Release { buildpack: String, message: String },
    #[error("the build stopped (exit {exit_code}) before it finished: see the output above")]
    Interrupted { exit_code: i64 },
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error("no process types: add a Procfile with a `web:` line")]
    NoProcesses,
    #[error("the source archive is unreadable: {0}")]
    Source(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How every process of a built image starts: in /app, with each `.profile.d/*.sh` sourced
/// (the buildpacks put PATH and friends there), then `command` evaluated so `$PORT` and other
/// config expand as in a Heroku dyno.
pub fn launch_command(command: &str) -> Vec<String> {
    vec![
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        LAUNCH_SCRIPT.to_owned(),
        "slipway-launch".to_owned(),
        command.to_owned(),
    ]
}

pub struct Builder {
    engine: Arc<dyn ContainerEngine>,
    config: BuilderConfig,
}

impl Builder {
    pub fn new(engine: Arc<dyn ContainerEngine>, config: BuilderConfig) -> Self {
        Self { engine, config }
    }

    /// Builds `request.source_tar` into image `request.image`, streaming the build's output
    /// lines to `output`. The build container is removed whatever the outcome.
    pub async fn build(
        &self,
        request: BuildRequest,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        if !engine.image_exists(&self.config.stack_image).await? {
            return Err(BuildError::StackMissing(self.config.stack_image.clone()));
        }
        let (upload, files) = prepare_upload(&request).await?;
        let procfile = files.procfile.as_deref().map(Procfile::parse).transpose()?;
        let buildpacks = choose_buildpacks(&request, &files)?;

        let cache_volume = format!("slipway-cache-{}", request.app);
        let app_labels = BTreeMap::from([(labels::APP.to_owned(), request.app.to_string())]);
        engine.ensure_volume(&cache_volume, &app_labels).await?;

        let spec = self.container_spec(&request, &cache_volume, &buildpacks);
        let id = engine.create_container(&spec).await?;
        let container = BuildContainer {
            engine: Arc::clone(&self.engine),
            id: id.clone(),
            removed: false,
        };
        let result = self.run(&id, upload, procfile, &request, output).await;
        container.remove().await;
        result
    }

    fn container_spec(
        &self,
        request: &BuildRequest,
        cache_volume: &str,
        buildpacks: &[String],
    ) -> ContainerSpec {
        let mut container_labels = request.labels.clone();
        container_labels.insert(labels::APP.to_owned(), request.app.to_string());
        container_labels.insert(labels::ROLE.to_owned(), "build".to_owned());
        let mut mounts = vec![Mount {
            source: MountSource::Volume(cache_volume.to_owned()),
            target: "/cache".to_owned(),
            read_only: false,
        }];
        if let Some(bundle) = &self.config.ca_bundle {
            mounts.push(Mount {
                source: MountSource::Bind(bundle.clone()),
                target: EXTRA_CA_PATH.to_owned(),
                read_only: true,
            });
        }
        // Docker copies a container's env into the image it commits, so the script gets its
        // settings as arguments rather than environment variables.
        let mut cmd = vec![
            "-c".to_owned(),
            BUILD_SCRIPT.to_owned(),
            "slipway-build".to_owned(),
            MARKER.to_owned(),
            BUILTIN_BUILDPACKS.join(" "),
        ];
        cmd.extend(buildpacks.iter().cloned());
        ContainerSpec {
            name: format!("slipway-build-{}-{:016x}", request.app, random_u64()),
            image: self.config.stack_image.clone(),
            entrypoint: vec!["/bin/bash".to_owned()],
            cmd,
            env: BTreeMap::from([("HOME".to_owned(), "/app".to_owned())]),
            labels: container_labels,
            network: None,
            user: Some("app".to_owned()),
            working_dir: Some("/app".to_owned()),
            memory_bytes: Some(self.config.memory_bytes),
            nano_cpus: Some(self.config.nano_cpus),
            mounts,
            ..ContainerSpec::default()
        }
    }

    async fn run(
        &self,
        id: &str,
        upload: Bytes,
        procfile: Option<Procfile>,
        request: &BuildRequest,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        engine.upload(id, "/", upload).await?;
        engine.start(id).await?;
        let mut transcript = Transcript::default();
        let mut chunks = engine.output(id, None);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            for line in transcript.push(chunk.stream, &chunk.bytes) {
                say(output, line).await;
            }
        }
        for line in transcript.finish() {
            say(output, line).await;
        }
        let exit_code = engine.wait(id).await?;
        let release = transcript.outcome(exit_code)?;
        let buildpack = transcript.buildpacks.join(", ");
        let last = transcript.buildpacks.last().cloned().unwrap_or_default();
        let release = Release::parse(&release).map_err(|message| BuildError::Release {
            buildpack: last,
            message,
        })?;

        say(output, "-----> Discovering process types".to_owned()).await;
        if let Some(procfile) = &procfile {
            say(
                output,
                format!("       Procfile declares types -> {}", type_list(procfile)),
            )
            .await;
        }
        if !release.default_process_types.is_empty() {
            let defaults = Procfile::from_map(release.default_process_types.clone());
            say(
                output,
                format!(
                    "       Default types for buildpack -> {}",
                    type_list(&defaults)
                ),
            )
            .await;
        }
        let procfile = procfile
            .unwrap_or_default()
            .with_defaults(&release.default_process_types);
        if procfile.is_empty() {
            return Err(BuildError::NoProcesses);
        }

        say(output, format!("-----> Committing {}", request.image)).await;
        let image_config = ImageConfig {
            user: Some("app".to_owned()),
            working_dir: Some("/app".to_owned()),
            env: BTreeMap::from([("HOME".to_owned(), "/app".to_owned())]),
            entrypoint: Vec::new(),
            cmd: procfile
                .command(&ProcessType::web())
                .map(launch_command)
                .unwrap_or_else(|| vec!["/bin/bash".to_owned()]),
            labels: image_labels(&request.labels),
        };
        engine.commit(id, &request.image, &image_config).await?;
        Ok(BuildResult {
            image: request.image.clone(),
            buildpack,
            procfile,
            config_defaults: release.config_vars,
            addons: release.addons,
        })
    }
}

/// The build container; removing it is the last step of every build. Dropped without
/// `remove` (the build future was cancelled), it is removed in the background.
struct BuildContainer {
    engine: Arc<dyn ContainerEngine>,
    id: String,
    removed: bool,
}

impl BuildContainer {
    async fn remove(mut self) {
        self.removed = true;
        if let Err(error) = self.engine.remove_container(&self.id).await {
            tracing::warn!(container = %self.id, %error, "could not remove the build container");
        }
    }
}

impl Drop for BuildContainer {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let engine = Arc::clone(&self.engine);
            let id = std::mem::take(&mut self.id);
            runtime.spawn(async move {
                if let Err(error) = engine.remove_container(&id).await {
                    tracing::warn!(container = %id, %error, "could not remove the build container");
                }
            });
        }
    }
}

/// Builds the upload archive off the async threads: a large repository is a lot of copying.
async fn prepare_upload(request: &BuildRequest) -> Result<(Bytes, SourceFiles), BuildError> {
    let source = request.source_tar.clone();
    let config = request.config.clone();
    tokio::task::spawn_blocking(move || {
        let mut upload = UploadArchive::new();
        let files = upload.add_source(&source)?;
        upload.add_builtin_buildpacks()?;
        upload.add_env_dir(&config)?;
        Ok((upload.finish()?, files))
    })
    .await
    .map_err(|join| BuildError::Source(std::io::Error::other(join)))?
    .map_err(BuildError::Source)
}

/// The app's buildpack setting, else its `BUILDPACK_URL` config var, else its `.buildpacks`
/// file; empty means detect among the built-ins.
fn choose_buildpacks(
    request: &BuildRequest,
    files: &SourceFiles,
) -> Result<Vec<String>, BuildError> {
    let chosen: Vec<String> = if !request.buildpacks.is_empty() {
        request.buildpacks.clone()
    } else if let Some(url) = request
        .config
        .iter()
        .find(|(key, _)| key.as_str() == "BUILDPACK_URL")
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
    {
        vec![url.to_owned()]
    } else {
        files
            .buildpacks
            .as_deref()
            .unwrap_or_default()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    for buildpack in &chosen {
        let builtin = BUILTIN_BUILDPACKS.contains(&buildpack.as_str());
        if !builtin && !is_git_url(buildpack) {
            return Err(BuildError::UnknownBuildpack(buildpack.clone()));
        }
    }
    Ok(chosen)
}

/// Docker copies the build container's labels into the image it commits and cannot drop
/// one, so the build-only role label is blanked: containers run from the image must not look
/// like builds.
fn image_labels(requested: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut image_labels = requested.clone();
    image_labels.entry(labels::ROLE.to_owned()).or_default();
    image_labels
}

fn is_git_url(spec: &str) -> bool {
    let url = spec.split('#').next().unwrap_or_default();
    ["https://", "http://", "git://", "ssh://", "file://"]
        .iter()
        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len())
}

fn type_list(procfile: &Procfile) -> String {
    procfile
        .processes()
        .keys()
        .map(ProcessType::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `build.sh` said on its control lines: which buildpacks ran, why it stopped early, and
/// `bin/release`'s YAML. Everything else is the user's build output.
#[derive(Default)]
struct Transcript {
    partial: [Vec<u8>; 2],
    buildpacks: Vec<String>,
    stop: Option<Stop>,
    release: Option<String>,
    in_release: bool,
    done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    NoBuildpack,
    FetchFailed(String),
    DetectFailed(String),
    CompileFailed(String, i64),
    ReleaseFailed(String),
}

impl Transcript {
    /// Takes a chunk of output and returns the complete user-visible lines in it.
    fn push(&mut self, stream: OutputStream, bytes: &[u8]) -> Vec<String> {
        let index = match stream {
            OutputStream::Stdout => 0,
            OutputStream::Stderr => 1,
        };
        self.partial[index].extend_from_slice(bytes);
        let mut shown = Vec::new();
        while let Some(end) = self.partial[index].iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.partial[index].drain(..=end).collect();
            let text = String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned();
            shown.extend(self.line(&text));
        }
        shown
    }

    /// The last unterminated line of each stream.
    fn finish(&mut self) -> Vec<String> {
        let mut shown = Vec::new();
        for index in 0..2 {
            let raw = std::mem::take(&mut self.partial[index]);
            if !raw.is_empty() {
                shown.extend(self.line(&String::from_utf8_lossy(&raw)));
            }
        }
        shown
    }

    fn line(&mut self, text: &str) -> Option<String> {
        let text = text.strip_suffix('\r').unwrap_or(text);
        let Some(at) = text.find(MARKER) else {
            if self.in_release {
                let release = self.release.get_or_insert_with(String::new);
                release.push_str(text);
                release.push('\n');
                return None;
            }
            return Some(text.to_owned());
        };
        let control = text[at + MARKER.len()..].trim().to_owned();
        self.control(&control);
        let before = &text[..at];
        (!before.is_empty()).then(|| before.to_owned())
    }

    fn control(&mut self, line: &str) {
        let mut words = line.split_whitespace();
        let verb = words.next().unwrap_or_default();
        let arg = words.next().unwrap_or_default().to_owned();
        match verb {
            "buildpack" => self.buildpacks.push(arg),
            "no-buildpack" => self.stop = Some(Stop::NoBuildpack),
            "fetch-failed" => self.stop = Some(Stop::FetchFailed(arg)),
            "detect-failed" => self.stop = Some(Stop::DetectFailed(arg)),
            "compile-failed" => {
                let code = words.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                self.stop = Some(Stop::CompileFailed(arg, code));
            }
            "release-failed" => self.stop = Some(Stop::ReleaseFailed(arg)),
            "release-begin" => {
                self.in_release = true;
                self.release = Some(String::new());
            }
            "release-end" => self.in_release = false,
            "done" => self.done = true,
            _ => {}
        }
    }

    /// The release YAML of a finished build, or why the build failed.
    fn outcome(&self, exit_code: i64) -> Result<String, BuildError> {
        match (&self.stop, &self.release) {
            (Some(Stop::NoBuildpack), _) => Err(BuildError::NoBuildpack),
            (Some(Stop::FetchFailed(spec)), _) => Err(BuildError::FetchFailed(spec.clone())),
            (Some(Stop::DetectFailed(name)), _) => Err(BuildError::DetectFailed(name.clone())),
            (Some(Stop::CompileFailed(name, code)), _) => Err(BuildError::CompileFailed {
                buildpack: name.clone(),
                exit_code: *code,
            }),
            (Some(Stop::ReleaseFailed(name)), _) => Err(BuildError::ReleaseFailed(name.clone())),
            (None, Some(release)) if exit_code == 0 && self.done && !self.in_release => {
                Ok(release.clone())
            }
            (None, _) => Err(BuildError::Interrupted { exit_code }),
        }
    }
}

/// Nobody listening is not a reason to stop a build.
async fn say(output: &Sender<String>, line: String) {
    output.send(line).await.ok();
}

/// Unpredictable enough to keep build container names apart; not for secrets.
fn random_u64() -> u64 {
    RandomState::new().hash_one(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use slipway_engine::{Call, FakeEngine, OutputChunk};

    use super::*;

    const STACK: &str = "slipway/stack:trixie";

    fn source(files: &[(&str, &str)]) -> Bytes {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_ustar();
            header.set_mode(0o644);
            header.set_size(content.len() as u64);
            builder
                .append_data(&mut header, path, content.as_bytes())
                .unwrap();
        }
        Bytes::from(builder.into_inner().unwrap())
    }

    fn request(files: &[(&str, &str)]) -> BuildRequest {
        BuildRequest {
            app: "hello".parse().unwrap(),
            image: "slipway/hello:1.0.0".to_owned(),
            source_tar: source(files),
            config: ConfigVars::new(),
            buildpacks: Vec::new(),
            labels: BTreeMap::from([("slipway.release".to_owned(), "1.0.0".to_owned())]),
        }
    }

    fn engine_with_stack() -> Arc<FakeEngine> {
        let engine = Arc::new(FakeEngine::new());
        engine.add_image(STACK);
        engine
    }

    /// Makes every build container print `lines` and exit with `exit_code`.
    fn script(engine: &FakeEngine, lines: &[String], exit_code: i64) {
        let chunks = lines
            .iter()
            .map(|line| OutputChunk {
                stream: OutputStream::Stdout,
                bytes: Bytes::from(format!("{line}\n")),
            })
            .collect();
        engine.script_output(STACK, chunks, exit_code);
    }

    fn control(line: &str) -> String {
        format!("{MARKER} {line}")
    }

    fn successful_build(release: &str) -> Vec<String> {
        let mut lines = vec![
            control("buildpack python"),
            "-----> Python app detected".to_owned(),
            "       Installed six".to_owned(),
            control("release-begin"),
        ];
        lines.extend(release.lines().map(str::to_owned));
        lines.push(control("release-end"));
        lines.push(control("done"));
        lines
    }

    async fn build(
        engine: &Arc<FakeEngine>,
        config: BuilderConfig,
        request: BuildRequest,
    ) -> (Result<BuildResult, BuildError>, Vec<String>) {
        let builder = Builder::new(Arc::clone(engine) as Arc<dyn ContainerEngine>, config);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let result = builder.build(request, &tx).await;
        drop(tx);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (result, lines)
    }

    /// Every container the build created was removed again.
    fn assert_containers_removed(engine: &FakeEngine) {
        let calls = engine.calls();
        let created = engine.created_specs().len();
        let removed = calls
            .iter()
            .filter(|call| matches!(call, Call::RemoveContainer { .. }))
            .count();
        assert_eq!(created, removed, "{calls:#?}");
    }

    #[tokio::test]
    async fn a_successful_build_commits_the_image_with_merged_process_types() {
        let engine = engine_with_stack();
        script(
            &engine,
            &successful_build(
                "---\nconfig_vars:\n  WEB_CONCURRENCY: 2\ndefault_process_types:\n  web: theirs\n  worker: python worker.py\n",
            ),
            0,
        );
        let (result, lines) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("Procfile", "web: python3 -m http.server $PORT\n")]),
        )
        .await;
        let result = result.unwrap();
        assert_eq!(result.image, "slipway/hello:1.0.0");
        assert_eq!(result.buildpack, "python");
        assert_eq!(
            result.procfile.command(&ProcessType::web()),
            Some("python3 -m http.server $PORT")
        );
        assert_eq!(
            result.procfile.command(&"worker".parse().unwrap()),
            Some("python worker.py")
        );
        assert_eq!(result.config_defaults["WEB_CONCURRENCY"], "2");

        assert!(lines.contains(&"-----> Python app detected".to_owned()));
        assert!(lines.contains(&"       Procfile declares types -> web".to_owned()));
        assert!(lines.contains(&"       Default types for buildpack -> web, worker".to_owned()));
        assert!(
            !lines
                .iter()
                .any(|line| line.contains(MARKER) || line.contains("default_process_types")),
            "{lines:#?}"
        );

        let image = engine.image_config("slipway/hello:1.0.0").unwrap();
        assert_eq!(image.user.as_deref(), Some("app"));
        assert_eq!(image.working_dir.as_deref(), Some("/app"));
        assert_eq!(image.env["HOME"], "/app");
        assert_eq!(image.cmd, launch_command("python3 -m http.server $PORT"));
        assert_eq!(image.labels["slipway.release"], "1.0.0");
        assert_eq!(image.labels[labels::ROLE], "");
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn the_build_container_is_limited_cached_and_has_no_docker_socket() {
        let engine = engine_with_stack();
        script(
            &engine,
            &successful_build("---\ndefault_process_types: {}\n"),
            0,
        );
        let mut config = BuilderConfig::new(STACK);
        config.ca_bundle = Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
        let mut request = request(&[("Procfile", "web: ./run\n")]);
        request.config = [("SECRET".parse().unwrap(), "s3cret".to_owned())]
            .into_iter()
            .collect();
        build(&engine, config, request).await.0.unwrap();

        let specs = engine.created_specs();
        assert_eq!(specs.len(), 1);
        let spec = &specs[0];
        assert_eq!(spec.image, STACK);
        assert_eq!(spec.user.as_deref(), Some("app"));
        assert_eq!(spec.working_dir.as_deref(), Some("/app"));
        assert_eq!(spec.memory_bytes, Some(2 * 1024 * 1024 * 1024));
        assert_eq!(spec.nano_cpus, Some(2_000_000_000));
        assert_eq!(spec.labels[labels::ROLE], "build");
        assert_eq!(spec.labels[labels::APP], "hello");
        assert_eq!(spec.labels["slipway.release"], "1.0.0");
        assert_eq!(
            spec.env,
            BTreeMap::from([("HOME".to_owned(), "/app".to_owned())])
        );
        assert_eq!(
            spec.mounts,
            vec![
                Mount {
                    source: MountSource::Volume("slipway-cache-hello".to_owned()),
                    target: "/cache".to_owned(),
                    read_only: false,
                },
                Mount {
                    source: MountSource::Bind(PathBuf::from("/etc/ssl/certs/ca-certificates.crt")),
                    target: EXTRA_CA_PATH.to_owned(),
                    read_only: true,
                },
            ]
        );
        assert!(engine.volumes().contains(&"slipway-cache-hello".to_owned()));

        let uploads: Vec<(String, Bytes)> = engine
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Upload { dest_dir, tar, .. } => Some((dest_dir, tar)),
                _ => None,
            })
            .collect();
        assert_eq!(uploads.len(), 1);
        assert_eq!(uploads[0].0, "/");
        let mut archive = tar::Archive::new(&uploads[0].1[..]);
        let paths: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        for path in [
            "app/Procfile",
            "env/SECRET",
            "buildpacks/python/bin/compile",
        ] {
            assert!(paths.contains(&path.to_owned()), "{path} in {paths:?}");
        }
    }

    #[tokio::test]
    async fn no_detected_buildpack_is_reported_and_the_container_removed() {
        let engine = engine_with_stack();
        script(&engine, &[control("no-buildpack")], 1);
        let (result, lines) = build(&engine, BuilderConfig::new(STACK), request(&[])).await;
        let error = result.unwrap_err();
        assert!(matches!(error, BuildError::NoBuildpack));
        assert_eq!(
            error.to_string(),
            "no buildpack detected: add requirements.txt, package.json, a Procfile or set one with buildpacks:set"
        );
        assert!(lines.iter().all(|line| !line.contains(MARKER)));
        assert_containers_removed(&engine);
        assert!(engine.image_config("slipway/hello:1.0.0").is_none());
    }

    #[tokio::test]
    async fn a_failed_compile_names_the_buildpack_and_exit_code() {
        let engine = engine_with_stack();
        script(
            &engine,
            &[
                control("buildpack python"),
                "-----> Python app detected".to_owned(),
                "       ERROR: No matching distribution found for nonexistent".to_owned(),
                control("compile-failed python 1"),
            ],
            1,
        );
        let (result, lines) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("requirements.txt", "nonexistent\n")]),
        )
        .await;
        let error = result.unwrap_err();
        assert_eq!(
            error.to_string(),
            "`python` buildpack compile failed (exit 1): see the output above"
        );
        assert!(
            lines
                .iter()
                .any(|line| line.contains("No matching distribution"))
        );
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn a_killed_build_is_interrupted_not_successful() {
        let engine = engine_with_stack();
        script(
            &engine,
            &[
                control("buildpack python"),
                "-----> Python app detected".to_owned(),
            ],
            137,
        );
        let (result, _) = build(&engine, BuilderConfig::new(STACK), request(&[])).await;
        assert!(matches!(
            result.unwrap_err(),
            BuildError::Interrupted { exit_code: 137 }
        ));
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn a_cancelled_build_still_removes_its_container() {
        let engine = engine_with_stack();
        let builder = Builder::new(
            Arc::clone(&engine) as Arc<dyn ContainerEngine>,
            BuilderConfig::new(STACK),
        );
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let build = builder.build(request(&[("Procfile", "web: x\n")]), &tx);
        // Without a script the fake's container runs until removed, so the build never ends.
        let timed_out = tokio::time::timeout(Duration::from_millis(50), build).await;
        assert!(timed_out.is_err());
        for _ in 0..100 {
            if engine
                .calls()
                .iter()
                .any(|call| matches!(call, Call::RemoveContainer { .. }))
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(engine.created_specs().len(), 1);
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn without_any_process_type_nothing_is_committed() {
        let engine = engine_with_stack();
        script(
            &engine,
            &successful_build("---\ndefault_process_types: {}\n"),
            0,
        );
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("requirements.txt", "six\n")]),
        )
        .await;
        let error = result.unwrap_err();
        assert_eq!(
            error.to_string(),
            "no process types: add a Procfile with a `web:` line"
        );
        assert!(engine.image_config("slipway/hello:1.0.0").is_none());
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn invalid_release_yaml_fails_the_build() {
        let engine = engine_with_stack();
        script(
            &engine,
            &successful_build("default_process_types: [web]"),
            0,
        );
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("Procfile", "web: x\n")]),
        )
        .await;
        assert!(matches!(
            result.unwrap_err(),
            BuildError::Release { buildpack, .. } if buildpack == "python"
        ));
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn a_bad_procfile_or_missing_stack_fails_before_any_container_exists() {
        let engine = engine_with_stack();
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("Procfile", "web: ok\nnot a process line\n")]),
        )
        .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "Procfile line 2: expected `type: command`, found `not a process line`"
        );

        let (result, _) = build(
            &engine,
            BuilderConfig::new("slipway/stack:missing"),
            request(&[]),
        )
        .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "stack image `slipway/stack:missing` is missing: build it with `slipway stack:build`"
        );
        assert!(engine.created_specs().is_empty());
    }

    #[tokio::test]
    async fn requested_buildpacks_become_script_arguments() {
        let engine = engine_with_stack();
        script(&engine, &successful_build("---\n"), 0);
        let mut request = request(&[("Procfile", "web: x\n")]);
        request.buildpacks = vec![
            "procfile".to_owned(),
            "https://github.com/example/buildpack.git#v1".to_owned(),
        ];
        build(&engine, BuilderConfig::new(STACK), request)
            .await
            .0
            .unwrap();
        let cmd = &engine.created_specs()[0].cmd;
        assert_eq!(cmd[0], "-c");
        assert_eq!(
            cmd[2..],
            [
                "slipway-build",
                MARKER,
                "python procfile",
                "procfile",
                "https://github.com/example/buildpack.git#v1"
            ]
        );
    }

    #[test]
    fn buildpack_choice_falls_back_to_buildpack_url_then_dot_buildpacks() {
        let mut request = request(&[]);
        let files = SourceFiles {
            procfile: None,
            buildpacks: Some("# mine\nhttps://example.com/a.git\n\npython\n".to_owned()),
        };
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap(),
            ["https://example.com/a.git", "python"]
        );
        request.config = [(
            "BUILDPACK_URL".parse().unwrap(),
            "https://example.com/b.git".to_owned(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap(),
            ["https://example.com/b.git"]
        );
        request.buildpacks = vec!["procfile".to_owned()];
        assert_eq!(choose_buildpacks(&request, &files).unwrap(), ["procfile"]);
        assert!(choose_buildpacks(&request, &SourceFiles::default()).is_ok());

        request.buildpacks = vec!["../etc".to_owned()];
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap_err().to_string(),
            "buildpack `../etc` is neither a built-in (python, procfile) nor a git URL"
        );
    }

    #[test]
    fn transcript_reassembles_lines_and_hides_control_lines() {
        let mut transcript = Transcript::default();
        let mut shown = transcript.push(OutputStream::Stdout, b"-----> Py");
        shown.extend(transcript.push(OutputStream::Stderr, b"warning: x\n"));
        shown.extend(transcript.push(OutputStream::Stdout, b"thon app detected\r\nno newline"));
        shown.extend(transcript.push(
            OutputStream::Stdout,
            format!(" at end{MARKER} buildpack python\n{MARKER} release-begin\n---\n{MARKER} release-end\n{MARKER} done\n").as_bytes(),
        ));
        shown.extend(transcript.push(OutputStream::Stdout, b"tail"));
        shown.extend(transcript.finish());
        assert_eq!(
            shown,
            [
                "warning: x",
                "-----> Python app detected",
                "no newline at end",
                "tail"
            ]
        );
        assert_eq!(transcript.buildpacks, ["python"]);
        assert_eq!(transcript.outcome(0).unwrap(), "---\n");
        assert!(matches!(
            transcript.outcome(1),
            Err(BuildError::Interrupted { exit_code: 1 })
        ));
    }

    #[test]
    fn launch_command_runs_the_command_through_bash_with_profiles() {
        let command = launch_command("gunicorn app:app --bind 0.0.0.0:$PORT");
        assert_eq!(command.len(), 5);
        assert_eq!(command[0], "/bin/bash");
        assert_eq!(command[1], "-c");
        assert!(command[2].contains("/app/.profile.d/*.sh"));
        assert!(command[2].contains("eval \"exec $1\""));
        assert_eq!(command[3], "slipway-launch");
        assert_eq!(command[4], "gunicorn app:app --bind 0.0.0.0:$PORT");
    }
}
