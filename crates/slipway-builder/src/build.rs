//! Builds: the source, the buildpacks and the config go into a container from the stack
//! image, `build.sh` runs the buildpacks there (classic detect/compile/release, or a Cloud
//! Native Buildpack's detect/build), and the container is committed as the app's image. An
//! app with a Dockerfile and no buildpack setting is built with it instead
//! (`dockerfile.rs`).

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use slipway_engine::{ContainerEngine, EngineError, ImageConfig, OutputStream};
use slipway_types::{
    AppName, ConfigVars, ContainerSpec, Mount, MountSource, ProcessType, Procfile, ProcfileError,
    labels,
};
use tokio::sync::mpsc::Sender;

use crate::buildpack::{self, Buildpack, BuildpackCache, BuildpackError};
use crate::dockerfile::DockerContext;
use crate::release::Release;
use crate::static_site::{SITE_CONFIG_PATH, StaticSite};
use crate::upload::{BUILTIN_BUILDPACKS, SourceFiles, UploadArchive};

const BUILD_SCRIPT: &str = include_str!("build.sh");
const LAUNCH_SCRIPT: &str = include_str!("launch.sh");
/// Resolves the build plan of the Cloud Native Buildpacks; `build.sh` runs it from here.
const CNB_PLAN_SCRIPT: &str = include_str!("cnb_plan.py");
const CNB_PLAN_PATH: &str = "buildpacks/.slipway/cnb-plan.py";

/// Starts the lines `build.sh` writes for the builder rather than the user.
const MARKER: &str = "::slipway-build::";

/// Where a `ca_bundle` is mounted in the build container; `build.sh` looks for it there.
const EXTRA_CA_PATH: &str = "/etc/slipway/extra-ca.crt";

/// The profile script that gives `bin/release`'s `config_vars` to every process, unless the
/// app's own config sets them.
const CONFIG_DEFAULTS_PROFILE: &str = "app/.profile.d/000-buildpack-config-vars.sh";

#[derive(Debug, Clone)]
pub struct BuilderConfig {
    /// Image every build container starts from, e.g. `slipway/stack:trixie`.
    pub stack_image: String,
    /// Extra CA certificates (PEM) the build trusts, for TLS-intercepting proxies.
    pub ca_bundle: Option<PathBuf>,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    /// A build still running after this long is stopped and fails.
    pub timeout: Duration,
    /// Where git buildpacks are kept between builds (a bare mirror per URL); `None` fetches
    /// them afresh into a temporary folder for each build.
    pub buildpack_cache: Option<PathBuf>,
}

impl BuilderConfig {
    /// 2 GiB of memory, 2 CPUs and 30 minutes per build.
    pub fn new(stack_image: impl Into<String>) -> Self {
        Self {
            stack_image: stack_image.into(),
            ca_bundle: None,
            memory_bytes: 2 * 1024 * 1024 * 1024,
            nano_cpus: 2_000_000_000,
            timeout: Duration::from_secs(30 * 60),
            buildpack_cache: None,
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
    /// means `BUILDPACK_URL`, then `.buildpacks`, then the Dockerfile, then detection among
    /// the built-ins.
    pub buildpacks: Vec<String>,
    /// Labels of the committed image (and of the build container).
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildResult {
    pub image: String,
    /// The buildpacks that ran, comma-separated when there were several; `dockerfile` for a
    /// Dockerfile build.
    pub buildpack: String,
    /// The Procfile, with the last buildpack's `default_process_types` filling its gaps.
    pub procfile: Procfile,
    /// `config_vars` from `bin/release`: defaults the app's own config overrides. The image
    /// already applies them at process start.
    pub config_defaults: BTreeMap<String, String>,
    /// `addons` from `bin/release`.
    pub addons: Vec<String>,
    /// The port the web process listens on when the image decides it (a Dockerfile's first
    /// EXPOSEd TCP port); `None` means the platform's `$PORT`.
    pub port: Option<u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("stack image `{0}` is missing: build it with `slipway stack:build`")]
    StackMissing(String),
    #[error(
        "no buildpack detected: add requirements.txt, package.json, index.html, a Procfile or a Dockerfile, or set one with buildpacks:set"
    )]
    NoBuildpack,
    #[error(transparent)]
    Buildpack(#[from] BuildpackError),
    #[error("fetching buildpack `{buildpack}` failed: {reason}")]
    FetchFailed { buildpack: String, reason: String },
    #[error("`{0}` buildpack does not apply to this app: its bin/detect failed")]
    DetectFailed(String),
    #[error("`{buildpack}` buildpack compile failed (exit {exit_code}): see the output above")]
    CompileFailed { buildpack: String, exit_code: i64 },
    #[error("`{0}` buildpack release failed: see the output above")]
    ReleaseFailed(String),
    #[error("the Cloud Native Buildpacks have no build plan: {0}")]
    PlanFailed(String),
    #[error("bin/release of the `{buildpack}` buildpack printed invalid YAML: {message}")]
    Release { buildpack: String, message: String },
    #[error("launch.toml of the `{buildpack}` buildpack is invalid: {message}")]
    LaunchToml { buildpack: String, message: String },
    #[error("static.json is invalid: {0}")]
    StaticJson(String),
    #[error(".dockerignore is invalid: {0}")]
    DockerIgnore(String),
    #[error(
        "Dockerfile line {line}: FROM `{image}` is not an image on this machine, and Slipway pulls from no registry: build FROM slipway/stack:trixie or another local image"
    )]
    BaseImageMissing { line: usize, image: String },
    #[error("the Dockerfile build failed: {0}")]
    DockerfileFailed(String),
    #[error("the build stopped (exit {exit_code}) before it finished: see the output above")]
    Interrupted { exit_code: i64 },
    #[error(
        "the build was killed (exit 137): it may have needed more than its {limit_mib} MiB of memory"
    )]
    Killed { limit_mib: i64 },
    #[error("the build took longer than {limit} and was stopped")]
    TimedOut { limit: String },
    #[error(transparent)]
    Procfile(#[from] ProcfileError),
    #[error("no process types: add a Procfile with a `web:` line")]
    NoProcesses,
    #[error("the source archive is unreadable: {0}")]
    Source(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// How every process of a built image starts: in the app's folder (`/app`, or a Dockerfile's
/// `WORKDIR`), with each `.profile.d/*.sh` sourced (the buildpacks put PATH and friends
/// there), then `command` evaluated so `$PORT` and other config expand as in a Heroku dyno.
pub fn launch_command(command: &str) -> Vec<String> {
    vec![
        "/bin/bash".to_owned(),
        "-c".to_owned(),
        LAUNCH_SCRIPT.to_owned(),
        "slipway-launch".to_owned(),
        command.to_owned(),
    ]
}

/// The per-app volume holding every buildpack's CACHE_DIR.
pub fn cache_volume(app: &AppName) -> String {
    format!("slipway-cache-{app}")
}

pub struct Builder {
    pub(crate) engine: Arc<dyn ContainerEngine>,
    pub(crate) config: BuilderConfig,
    buildpack_cache: Option<BuildpackCache>,
}

impl Builder {
    pub fn new(engine: Arc<dyn ContainerEngine>, config: BuilderConfig) -> Self {
        let buildpack_cache = config.buildpack_cache.clone().map(BuildpackCache::new);
        Self {
            engine,
            config,
            buildpack_cache,
        }
    }

    /// Builds `request.source_tar` into image `request.image`, streaming the build's output
    /// lines to `output`. Build containers are removed whatever the outcome, and a build
    /// that outlives `BuilderConfig::timeout` is stopped.
    pub async fn build(
        &self,
        request: BuildRequest,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        if !engine.image_exists(&self.config.stack_image).await? {
            return Err(BuildError::StackMissing(self.config.stack_image.clone()));
        }
        let files = scan_source(&request).await?;
        let procfile = files.procfile.as_deref().map(Procfile::parse).transpose()?;
        let site = files
            .static_json
            .as_deref()
            .map(StaticSite::parse)
            .transpose()
            .map_err(BuildError::StaticJson)?
            .unwrap_or_default();
        let buildpacks = choose_buildpacks(&request, &files)?;
        let timeout = self.config.timeout;
        let build = async {
            match &files.dockerfile {
                Some(dockerfile) if buildpacks.is_empty() => {
                    let context = DockerContext {
                        dockerfile,
                        dockerignore: files.dockerignore.as_deref(),
                    };
                    self.build_dockerfile(&request, context, procfile, output)
                        .await
                }
                _ => {
                    self.build_with_buildpacks(&request, &buildpacks, &site, procfile, output)
                        .await
                }
            }
        };
        tokio::time::timeout(timeout, build)
            .await
            .unwrap_or_else(|_| {
                Err(BuildError::TimedOut {
                    limit: human_duration(timeout),
                })
            })
    }

    /// Empties the app's build cache: the next build starts cold. Waits for nothing: a build
    /// running now keeps the volume, and this then fails saying it is in use.
    pub async fn purge_cache(&self, app: &AppName) -> Result<(), BuildError> {
        self.engine.remove_volume(&cache_volume(app)).await?;
        Ok(())
    }

    async fn build_with_buildpacks(
        &self,
        request: &BuildRequest,
        buildpacks: &[Buildpack],
        site: &StaticSite,
        procfile: Option<Procfile>,
        output: &Sender<String>,
    ) -> Result<BuildResult, BuildError> {
        let engine = &*self.engine;
        let fetched = tempfile_dir()?;
        let scratch_cache;
        let cache = match &self.buildpack_cache {
            Some(cache) => cache,
            None => {
                scratch_cache = BuildpackCache::new(fetched.path().join(".cache"));
                &scratch_cache
            }
        };
        let mut folders = Vec::new();
        let mut extra = Vec::new();
        for (index, buildpack) in buildpacks.iter().enumerate() {
            let folder = folder_name(buildpack, index, &folders);
            if let Buildpack::Git { url, reference } = buildpack {
                say(output, format!("-----> Fetching buildpack {buildpack}")).await;
                let dest = fetched.path().join(&folder);
                cache
                    .checkout(url, reference.as_deref(), &dest, output)
                    .await
                    .map_err(|reason| BuildError::FetchFailed {
                        buildpack: buildpack.to_string(),
                        reason,
                    })?;
                extra.push((folder.clone(), dest));
            }
            folders.push(folder);
        }
        let upload = prepare_upload(request, extra, site).await?;
        drop(fetched);

        let cache_volume = cache_volume(&request.app);
        let app_labels = BTreeMap::from([(labels::APP.to_owned(), request.app.to_string())]);
        engine.ensure_volume(&cache_volume, &app_labels).await?;

        let spec = self.container_spec(request, &cache_volume, &folders);
        let id = engine.create_container(&spec).await?;
        let container = BuildContainer::new(&self.engine, &id);
        let result = self.run(&id, upload, procfile, request, output).await;
        container.remove().await;
        result
    }

    /// A name no other build container has: the app's, with a random suffix.
    pub(crate) fn container_name(&self, request: &BuildRequest) -> String {
        format!("slipway-build-{}-{:016x}", request.app, random_u64())
    }

    fn container_spec(
        &self,
        request: &BuildRequest,
        cache_volume: &str,
        folders: &[String],
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
        cmd.extend(folders.iter().cloned());
        ContainerSpec {
            name: self.container_name(request),
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
        let release = match transcript.outcome(exit_code) {
            Err(BuildError::Interrupted { exit_code: 137 }) => {
                return Err(BuildError::Killed {
                    limit_mib: self.config.memory_bytes / (1024 * 1024),
                });
            }
            outcome => outcome?,
        };
        let buildpack = transcript.buildpacks.join(", ");
        let last = transcript.buildpacks.last().cloned().unwrap_or_default();
        let mut release = Release::parse(&release).map_err(|message| BuildError::Release {
            buildpack: last,
            message,
        })?;
        for (buildpack, launch) in &transcript.launches {
            let processes =
                crate::cnb::launch_processes(launch).map_err(|message| BuildError::LaunchToml {
                    buildpack: buildpack.clone(),
                    message,
                })?;
            release.default_process_types.extend(processes);
        }

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
        if !release.config_vars.is_empty() {
            let mut archive = UploadArchive::new();
            archive
                .add_file(
                    CONFIG_DEFAULTS_PROFILE,
                    0o644,
                    config_defaults_profile(&release.config_vars).as_bytes(),
                )
                .map_err(BuildError::Source)?;
            engine
                .upload(id, "/", archive.finish().map_err(BuildError::Source)?)
                .await?;
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
            port: None,
        })
    }
}

/// A build container; removing it is the last step of every build. Dropped without
/// `remove` (the build future was cancelled or timed out), it is removed in the background.
pub(crate) struct BuildContainer {
    engine: Arc<dyn ContainerEngine>,
    id: String,
    removed: bool,
}

impl BuildContainer {
    pub(crate) fn new(engine: &Arc<dyn ContainerEngine>, id: &str) -> Self {
        Self {
            engine: Arc::clone(engine),
            id: id.to_owned(),
            removed: false,
        }
    }

    pub(crate) async fn remove(mut self) {
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

/// Reads the files the builder needs before any container exists, off the async threads.
async fn scan_source(request: &BuildRequest) -> Result<SourceFiles, BuildError> {
    let source = request.source_tar.clone();
    tokio::task::spawn_blocking(move || SourceFiles::scan(&source))
        .await
        .map_err(|join| BuildError::Source(std::io::Error::other(join)))?
        .map_err(BuildError::Source)
}

/// Builds the upload archive off the async threads: a large repository is a lot of copying.
/// `fetched` are git buildpacks on the host, by the folder they take under `/buildpacks`.
async fn prepare_upload(
    request: &BuildRequest,
    fetched: Vec<(String, PathBuf)>,
    site: &StaticSite,
) -> Result<Bytes, BuildError> {
    let source = request.source_tar.clone();
    let config = request.config.clone();
    let site = site.to_json();
    tokio::task::spawn_blocking(move || {
        let mut upload = UploadArchive::new();
        upload.add_source(&source)?;
        upload.add_builtin_buildpacks()?;
        for (folder, dir) in &fetched {
            upload.add_host_dir(&format!("buildpacks/{folder}"), dir)?;
        }
        upload.add_file(SITE_CONFIG_PATH, 0o644, site.as_bytes())?;
        upload.add_file(CNB_PLAN_PATH, 0o644, CNB_PLAN_SCRIPT.as_bytes())?;
        upload.add_env_dir(&config)?;
        upload.finish()
    })
    .await
    .map_err(|join| BuildError::Source(std::io::Error::other(join)))?
    .map_err(BuildError::Source)
}

/// A private temporary folder on the host for fetched buildpacks.
fn tempfile_dir() -> Result<tempfile::TempDir, BuildError> {
    tempfile::Builder::new()
        .prefix("slipway-buildpacks-")
        .tempdir()
        .map_err(BuildError::Source)
}

/// The folder a buildpack runs from under `/buildpacks` (and the name of its CACHE_DIR): a
/// built-in's name, or a git buildpack's repository name, made unique.
fn folder_name(buildpack: &Buildpack, index: usize, taken: &[String]) -> String {
    let name = buildpack.name();
    match buildpack {
        Buildpack::Builtin(_) => name,
        Buildpack::Git { .. } => {
            let clashes = BUILTIN_BUILDPACKS.contains(&name.as_str()) || taken.contains(&name);
            if clashes {
                format!("{name}-{}", index + 1)
            } else {
                name
            }
        }
    }
}

/// The app's buildpack setting, else its `BUILDPACK_URL` config var, else its `.buildpacks`
/// file; empty means the Dockerfile, else detection among the built-ins.
fn choose_buildpacks(
    request: &BuildRequest,
    files: &SourceFiles,
) -> Result<Vec<Buildpack>, BuildError> {
    if !request.buildpacks.is_empty() {
        return Ok(request
            .buildpacks
            .iter()
            .map(|spec| Buildpack::parse(spec))
            .collect::<Result<_, _>>()?);
    }
    if let Some(url) = request
        .config
        .iter()
        .find(|(key, _)| key.as_str() == "BUILDPACK_URL")
        .map(|(_, value)| value.trim())
        .filter(|value| !value.is_empty())
    {
        return Ok(vec![Buildpack::parse(url)?]);
    }
    Ok(buildpack::parse_list(
        files.buildpacks.as_deref().unwrap_or_default(),
    )?)
}

/// Sets each var that the app's config (set at container start) does not.
fn config_defaults_profile(vars: &BTreeMap<String, String>) -> String {
    let mut profile = String::from("# config_vars of the buildpack's bin/release\n");
    for (key, value) in vars {
        let is_name = key
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_name {
            continue;
        }
        let quoted = format!("'{}'", value.replace('\'', r"'\''"));
        profile.push_str(&format!(
            "if [ -z \"${{{key}+set}}\" ]; then export {key}={quoted}; fi\n"
        ));
    }
    profile
}

/// Docker copies the build container's labels into the image it commits and cannot drop
/// one, so the build-only role label is blanked: containers run from the image must not look
/// like builds.
pub(crate) fn image_labels(requested: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut image_labels = requested.clone();
    image_labels.entry(labels::ROLE.to_owned()).or_default();
    image_labels
}

pub(crate) fn type_list(procfile: &Procfile) -> String {
    procfile
        .processes()
        .keys()
        .map(ProcessType::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `build.sh` said on its control lines: which buildpacks ran, why it stopped early,
/// `bin/release`'s YAML and a Cloud Native Buildpack's `launch.toml`. Everything else is the
/// user's build output.
#[derive(Default)]
struct Transcript {
    partial: [Vec<u8>; 2],
    buildpacks: Vec<String>,
    stop: Option<Stop>,
    release: Option<String>,
    /// Each Cloud Native Buildpack's `launch.toml`, by buildpack, in order.
    launches: Vec<(String, String)>,
    block: Option<Block>,
    done: bool,
}

/// A multi-line document `build.sh` is in the middle of sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Release,
    Launch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    NoBuildpack,
    DetectFailed(String),
    CompileFailed(String, i64),
    ReleaseFailed(String),
    PlanFailed(String),
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
            let document = match self.block {
                Some(Block::Release) => self.release.get_or_insert_with(String::new),
                Some(Block::Launch) => match self.launches.last_mut() {
                    Some((_, document)) => document,
                    None => return None,
                },
                None => return Some(text.to_owned()),
            };
            document.push_str(text);
            document.push('\n');
            return None;
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
            "detect-failed" => self.stop = Some(Stop::DetectFailed(arg)),
            "compile-failed" => {
                let code = words.next().and_then(|c| c.parse().ok()).unwrap_or(1);
                self.stop = Some(Stop::CompileFailed(arg, code));
            }
            "release-failed" => self.stop = Some(Stop::ReleaseFailed(arg)),
            "release-begin" => {
                self.block = Some(Block::Release);
                self.release = Some(String::new());
            }
            "launch-begin" => {
                self.block = Some(Block::Launch);
                self.launches.push((arg, String::new()));
            }
            "plan-failed" => {
                let message = line.split_once(char::is_whitespace).map(|(_, rest)| rest);
                self.stop = Some(Stop::PlanFailed(
                    message.unwrap_or_default().trim().to_owned(),
                ));
            }
            "release-end" | "launch-end" => self.block = None,
            "done" => self.done = true,
            _ => {}
        }
    }

    /// The release YAML of a finished build, or why the build failed.
    fn outcome(&self, exit_code: i64) -> Result<String, BuildError> {
        match (&self.stop, &self.release) {
            (Some(Stop::NoBuildpack), _) => Err(BuildError::NoBuildpack),
            (Some(Stop::DetectFailed(name)), _) => Err(BuildError::DetectFailed(name.clone())),
            (Some(Stop::CompileFailed(name, code)), _) => Err(BuildError::CompileFailed {
                buildpack: name.clone(),
                exit_code: *code,
            }),
            (Some(Stop::ReleaseFailed(name)), _) => Err(BuildError::ReleaseFailed(name.clone())),
            (Some(Stop::PlanFailed(message)), _) => Err(BuildError::PlanFailed(message.clone())),
            (None, Some(release)) if exit_code == 0 && self.done && self.block.is_none() => {
                Ok(release.clone())
            }
            (None, _) => Err(BuildError::Interrupted { exit_code }),
        }
    }
}

/// `30 min` for whole minutes, else seconds (`0.1 s`).
fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds >= 60 && seconds.is_multiple_of(60) && duration.subsec_nanos() == 0 {
        format!("{} min", seconds / 60)
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

/// Nobody listening is not a reason to stop a build.
pub(crate) async fn say(output: &Sender<String>, line: String) {
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
            "no buildpack detected: add requirements.txt, package.json, index.html, a Procfile or a Dockerfile, or set one with buildpacks:set"
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
        assert_eq!(
            result.unwrap_err().to_string(),
            "the build was killed (exit 137): it may have needed more than its 2048 MiB of memory"
        );
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

    /// A bare repository holding a classic buildpack, as a `file://` URL.
    fn local_buildpack_repo(dir: &std::path::Path) -> String {
        let work = dir.join("work");
        std::fs::create_dir_all(work.join("bin")).unwrap();
        for script in ["detect", "compile", "release"] {
            let path = work.join("bin").join(script);
            std::fs::write(&path, "#!/usr/bin/env bash\necho Mine\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let git = |args: &[&str], cwd: &std::path::Path| {
            let status = std::process::Command::new("git")
                .args(args)
                .current_dir(cwd)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@example.test")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@example.test")
                .status()
                .expect("these tests need git");
            assert!(status.success(), "git {args:?}");
        };
        git(&["init", "-q", "-b", "main"], &work);
        git(&["add", "."], &work);
        git(&["commit", "-q", "-m", "buildpack"], &work);
        git(&["tag", "v1"], &work);
        let bare = dir.join("mine-bp.git");
        git(
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
            dir,
        );
        format!("file://{}", bare.display())
    }

    fn uploaded_entries(engine: &FakeEngine) -> BTreeMap<String, (u32, Vec<u8>)> {
        let mut entries = BTreeMap::new();
        for call in engine.calls() {
            let Call::Upload { tar, .. } = call else {
                continue;
            };
            let mut archive = tar::Archive::new(&tar[..]);
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().display().to_string();
                let mode = entry.header().mode().unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                entries.insert(path, (mode, data));
            }
        }
        entries
    }

    #[tokio::test]
    async fn git_buildpacks_are_fetched_on_the_host_and_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let url = local_buildpack_repo(dir.path());
        let engine = engine_with_stack();
        script(&engine, &successful_build("---\n"), 0);
        let mut request = request(&[("Procfile", "web: x\n")]);
        request.buildpacks = vec!["procfile".to_owned(), format!("{url}#v1")];
        let (result, lines) = build(&engine, BuilderConfig::new(STACK), request).await;
        result.unwrap();
        assert!(
            lines.contains(&format!("-----> Fetching buildpack {url}#v1")),
            "{lines:#?}"
        );
        let cmd = &engine.created_specs()[0].cmd;
        assert_eq!(cmd[0], "-c");
        assert_eq!(
            cmd[2..],
            [
                "slipway-build",
                MARKER,
                "python nodejs static procfile",
                "procfile",
                "mine-bp"
            ]
        );
        let entries = uploaded_entries(&engine);
        assert_eq!(entries["buildpacks/mine-bp/bin/compile"].0, 0o755);
        assert!(!entries.keys().any(|path| path.contains(".git/")));
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn an_unreachable_buildpack_fails_before_any_container_exists() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine_with_stack();
        let mut request = request(&[("Procfile", "web: x\n")]);
        let url = format!("file://{}/nothing-here.git", dir.path().display());
        request.buildpacks = vec![url.clone()];
        let (result, _) = build(&engine, BuilderConfig::new(STACK), request).await;
        let error = result.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("fetching buildpack `{url}` failed")),
            "{error}"
        );
        assert!(engine.created_specs().is_empty());
    }

    #[tokio::test]
    async fn config_vars_of_bin_release_become_a_profile_script() {
        let engine = engine_with_stack();
        script(
            &engine,
            &successful_build("---\nconfig_vars:\n  WEB_CONCURRENCY: 2\n  QUOTE: \"it's\"\n"),
            0,
        );
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("Procfile", "web: x\n")]),
        )
        .await;
        assert_eq!(result.unwrap().config_defaults["WEB_CONCURRENCY"], "2");
        let profile =
            String::from_utf8(uploaded_entries(&engine)[CONFIG_DEFAULTS_PROFILE].1.clone())
                .unwrap();
        assert!(
            profile.contains(
                "if [ -z \"${WEB_CONCURRENCY+set}\" ]; then export WEB_CONCURRENCY='2'; fi"
            ),
            "{profile}"
        );
        assert!(profile.contains(r"export QUOTE='it'\''s'"), "{profile}");
    }

    #[tokio::test]
    async fn a_cloud_native_buildpack_declares_processes_in_launch_toml() {
        let engine = engine_with_stack();
        let lines = vec![
            control("buildpack hello-cnb"),
            "-----> Hello CNB app detected".to_owned(),
            control("launch-begin"),
            "[[processes]]".to_owned(),
            "type = \"web\"".to_owned(),
            "command = [\"python3\", \"-m\", \"http.server\"]".to_owned(),
            "args = [\"5000\"]".to_owned(),
            control("launch-end"),
            control("release-begin"),
            "---".to_owned(),
            control("release-end"),
            control("done"),
        ];
        script(&engine, &lines, 0);
        let (result, shown) = build(&engine, BuilderConfig::new(STACK), request(&[])).await;
        let result = result.unwrap();
        assert_eq!(
            result.procfile.command(&ProcessType::web()),
            Some("python3 -m http.server 5000")
        );
        assert!(
            !shown.iter().any(|line| line.contains("[[processes]]")),
            "{shown:#?}"
        );
    }

    #[tokio::test]
    async fn processes_of_several_cloud_native_buildpacks_merge_the_later_winning() {
        let engine = engine_with_stack();
        let lines = vec![
            control("buildpack tool"),
            control("buildpack web"),
            "-----> Build plan: tool provides `greeter` for web".to_owned(),
            control("launch-begin tool"),
            "[[processes]]\ntype = \"web\"\ncommand = [\"tool-server\"]".to_owned(),
            "[[processes]]\ntype = \"worker\"\ncommand = [\"tool-worker\"]".to_owned(),
            control("launch-end"),
            control("launch-begin web"),
            "[[processes]]\ntype = \"web\"\ncommand = [\"python3\", \"server.py\"]".to_owned(),
            control("launch-end"),
            control("release-begin"),
            "---".to_owned(),
            control("release-end"),
            control("done"),
        ];
        script(&engine, &lines, 0);
        let (result, shown) = build(&engine, BuilderConfig::new(STACK), request(&[])).await;
        let result = result.unwrap();
        assert_eq!(result.buildpack, "tool, web");
        assert_eq!(
            result.procfile.command(&ProcessType::web()),
            Some("python3 server.py")
        );
        assert_eq!(
            result.procfile.command(&"worker".parse().unwrap()),
            Some("tool-worker")
        );
        assert!(shown.contains(&"-----> Build plan: tool provides `greeter` for web".to_owned()));
        let plan = &uploaded_entries(&engine)[CNB_PLAN_PATH];
        assert_eq!(plan.1, CNB_PLAN_SCRIPT.as_bytes());
    }

    #[tokio::test]
    async fn buildpacks_whose_plans_do_not_match_fail_saying_why() {
        let engine = engine_with_stack();
        let lines = vec![
            control("buildpack web"),
            control("plan-failed web requires `greeter` and no buildpack before it provides it"),
        ];
        script(&engine, &lines, 1);
        let (result, _) = build(&engine, BuilderConfig::new(STACK), request(&[])).await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "the Cloud Native Buildpacks have no build plan: web requires `greeter` and no buildpack before it provides it"
        );
    }

    #[tokio::test]
    async fn a_build_past_its_timeout_is_stopped_and_removed() {
        let engine = engine_with_stack();
        let mut config = BuilderConfig::new(STACK);
        config.timeout = Duration::from_millis(100);
        // Without a script the fake's container runs until removed.
        let (result, _) = build(&engine, config, request(&[("Procfile", "web: x\n")])).await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "the build took longer than 0.1 s and was stopped"
        );
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
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn a_bad_static_json_fails_naming_the_field() {
        let engine = engine_with_stack();
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[("index.html", "hi"), ("static.json", r#"{"root": "../x"}"#)]),
        )
        .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "static.json is invalid: root: `../x` must be a relative path inside the app"
        );
        assert!(engine.created_specs().is_empty());
    }

    #[tokio::test]
    async fn the_static_site_config_travels_with_the_buildpacks() {
        let engine = engine_with_stack();
        script(&engine, &successful_build("---\n"), 0);
        build(
            &engine,
            BuilderConfig::new(STACK),
            request(&[
                ("index.html", "hi"),
                ("static.json", r#"{"routes": {"/**": "index.html"}}"#),
                ("Procfile", "web: x\n"),
            ]),
        )
        .await
        .0
        .unwrap();
        let site: serde_json::Value =
            serde_json::from_slice(&uploaded_entries(&engine)["buildpacks/static/site.json"].1)
                .unwrap();
        assert_eq!(site["routes"][0][0], "/**");
        assert_eq!(site["root"], ".");
    }

    /// The container that finishes a Dockerfile build exits at once with `exit_code`.
    fn script_finish(engine: &FakeEngine, exit_code: i64) {
        engine.script_output("slipway/hello:1.0.0-dockerfile", Vec::new(), exit_code);
    }

    fn dockerfile_request(dockerfile: &str, extra: &[(&str, &str)]) -> BuildRequest {
        let mut files = vec![("Dockerfile", dockerfile)];
        files.extend_from_slice(extra);
        request(&files)
    }

    #[tokio::test]
    async fn a_dockerfile_builds_with_the_engine_and_runs_as_app() {
        let engine = engine_with_stack();
        engine.script_build(
            "slipway/hello:1.0.0-dockerfile",
            vec![
                "Step 1/2 : FROM slipway/stack:trixie\n".to_owned(),
                " ---> abc\nStep 2/2".to_owned(),
                " : CMD x\n".to_owned(),
            ],
            Ok(slipway_engine::ImageDetails {
                config: ImageConfig {
                    working_dir: Some("/srv".to_owned()),
                    entrypoint: vec!["python3".to_owned()],
                    cmd: vec![
                        "-m".to_owned(),
                        "http.server".to_owned(),
                        "$PORT".to_owned(),
                    ],
                    ..ImageConfig::default()
                },
                exposed_ports: vec!["8080/tcp".to_owned()],
            }),
        );
        script_finish(&engine, 0);
        let (result, lines) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request("FROM slipway/stack:trixie\nCMD x\n", &[]),
        )
        .await;
        let result = result.unwrap();
        assert_eq!(result.buildpack, "dockerfile");
        assert_eq!(result.port, Some(8080));
        assert_eq!(
            result.procfile.command(&ProcessType::web()),
            Some("python3 -m http.server '$PORT'")
        );
        for expected in [
            "-----> Dockerfile app detected",
            "       Step 1/2 : FROM slipway/stack:trixie",
            "       Step 2/2 : CMD x",
            "       The image EXPOSEs port 8080: the web process gets PORT=8080 and is routed there",
        ] {
            assert!(
                lines.contains(&expected.to_owned()),
                "{expected} in {lines:#?}"
            );
        }
        let build_call = engine
            .calls()
            .into_iter()
            .find_map(|call| match call {
                Call::BuildImage { build } => Some(build),
                _ => None,
            })
            .unwrap();
        assert_eq!(build_call.dockerfile, "Dockerfile");
        assert_eq!(build_call.memory_bytes, Some(2 * 1024 * 1024 * 1024));
        let finish = &engine.created_specs()[0];
        assert_eq!(finish.image, "slipway/hello:1.0.0-dockerfile");
        assert_eq!(finish.user.as_deref(), Some("root"));
        let image = engine.image_config("slipway/hello:1.0.0").unwrap();
        assert_eq!(image.user.as_deref(), Some("app"));
        assert_eq!(image.env[crate::dockerfile::APP_DIR_VAR], "/srv");
        assert_eq!(image.cmd, launch_command("python3 -m http.server '$PORT'"));
        assert!(image.entrypoint.is_empty());
        assert!(
            engine
                .image_config("slipway/hello:1.0.0-dockerfile")
                .is_none()
        );
        assert_containers_removed(&engine);
    }

    #[tokio::test]
    async fn a_procfile_wins_over_the_dockerfile_command_and_buildpacks_over_the_dockerfile() {
        let engine = engine_with_stack();
        script_finish(&engine, 0);
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request(
                "FROM slipway/stack:trixie\n",
                &[("Procfile", "web: ./serve\n")],
            ),
        )
        .await;
        assert_eq!(
            result.unwrap().procfile.command(&ProcessType::web()),
            Some("./serve")
        );

        let engine = engine_with_stack();
        script(&engine, &successful_build("---\n"), 0);
        let mut request =
            dockerfile_request("FROM slipway/stack:trixie\n", &[("Procfile", "web: x\n")]);
        request.buildpacks = vec!["procfile".to_owned()];
        let (result, _) = build(&engine, BuilderConfig::new(STACK), request).await;
        assert_eq!(result.unwrap().buildpack, "python");
        assert!(
            !engine
                .calls()
                .iter()
                .any(|call| matches!(call, Call::BuildImage { .. }))
        );
    }

    #[tokio::test]
    async fn dockerignore_leaves_files_out_of_the_build_context() {
        let engine = engine_with_stack();
        script_finish(&engine, 0);
        let (result, lines) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request(
                "FROM slipway/stack:trixie\nCMD x\n",
                &[
                    (".dockerignore", "secret.txt\n*.log\n"),
                    ("secret.txt", "s"),
                    ("debug.log", "d"),
                    ("app.py", "a"),
                    ("Procfile", "web: x\n"),
                ],
            ),
        )
        .await;
        result.unwrap();
        assert!(
            lines.contains(&"-----> Leaving out 2 files .dockerignore lists".to_owned()),
            "{lines:#?}"
        );
        let context = engine
            .calls()
            .into_iter()
            .find_map(|call| match call {
                Call::BuildImage { build } => Some(build.context),
                _ => None,
            })
            .unwrap();
        let mut archive = tar::Archive::new(&context[..]);
        let mut names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "Procfile", "app.py"]);

        let engine = engine_with_stack();
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request(
                "FROM slipway/stack:trixie\n",
                &[(".dockerignore", "ok\n[z-a]\n")],
            ),
        )
        .await;
        let error = result.unwrap_err().to_string();
        assert!(
            error.starts_with(".dockerignore is invalid: line 2: `[z-a]`"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_dockerfile_from_an_image_this_machine_lacks_fails_clearly() {
        let engine = engine_with_stack();
        let (result, _) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request(
                "FROM slipway/stack:trixie AS base\nFROM python:3.13-slim\nCOPY --from=base / /\n",
                &[],
            ),
        )
        .await;
        assert_eq!(
            result.unwrap_err().to_string(),
            "Dockerfile line 2: FROM `python:3.13-slim` is not an image on this machine, and Slipway pulls from no registry: build FROM slipway/stack:trixie or another local image"
        );
        assert!(
            !engine
                .calls()
                .iter()
                .any(|call| matches!(call, Call::BuildImage { .. }))
        );
    }

    #[tokio::test]
    async fn a_failing_dockerfile_step_fails_the_build_and_leaves_nothing() {
        let engine = engine_with_stack();
        engine.script_build(
            "slipway/hello:1.0.0-dockerfile",
            vec!["Step 2/2 : RUN exit 3\n".to_owned()],
            Err("The command '/bin/sh -c exit 3' returned a non-zero code: 3".to_owned()),
        );
        let (result, lines) = build(
            &engine,
            BuilderConfig::new(STACK),
            dockerfile_request("FROM slipway/stack:trixie\nRUN exit 3\n", &[]),
        )
        .await;
        let error = result.unwrap_err().to_string();
        assert!(
            error.starts_with("the Dockerfile build failed: "),
            "{error}"
        );
        assert!(error.contains("non-zero code: 3"), "{error}");
        assert!(lines.contains(&"       Step 2/2 : RUN exit 3".to_owned()));
        assert!(engine.created_specs().is_empty());
        assert!(engine.image_config("slipway/hello:1.0.0").is_none());
    }

    #[tokio::test]
    async fn purging_the_cache_removes_the_app_volume() {
        let engine = engine_with_stack();
        engine
            .ensure_volume("slipway-cache-hello", &BTreeMap::new())
            .await
            .unwrap();
        let builder = Builder::new(
            Arc::clone(&engine) as Arc<dyn ContainerEngine>,
            BuilderConfig::new(STACK),
        );
        builder
            .purge_cache(&"hello".parse().unwrap())
            .await
            .unwrap();
        assert!(engine.volumes().is_empty());
    }

    #[test]
    fn buildpack_choice_falls_back_to_buildpack_url_then_dot_buildpacks() {
        let git = |url: &str| Buildpack::Git {
            url: url.to_owned(),
            reference: None,
        };
        let mut request = request(&[]);
        let files = SourceFiles {
            buildpacks: Some("# mine\nhttps://example.com/a.git\n\npython\n".to_owned()),
            ..SourceFiles::default()
        };
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap(),
            [
                git("https://example.com/a.git"),
                Buildpack::Builtin("python".to_owned())
            ]
        );
        request.config = [(
            "BUILDPACK_URL".parse().unwrap(),
            "https://example.com/b.git".to_owned(),
        )]
        .into_iter()
        .collect();
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap(),
            [git("https://example.com/b.git")]
        );
        request.buildpacks = vec!["procfile".to_owned()];
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap(),
            [Buildpack::Builtin("procfile".to_owned())]
        );
        assert!(choose_buildpacks(&request, &SourceFiles::default()).is_ok());

        request.buildpacks = vec!["../etc".to_owned()];
        assert_eq!(
            choose_buildpacks(&request, &files).unwrap_err().to_string(),
            "buildpack `../etc` is neither a built-in (python, nodejs, static, procfile) nor a git URL (https://, http://, git://, ssh://, file://)"
        );
    }

    #[test]
    fn timeouts_read_in_minutes_or_seconds() {
        assert_eq!(human_duration(Duration::from_secs(1800)), "30 min");
        assert_eq!(human_duration(Duration::from_secs(90)), "90.0 s");
        assert_eq!(human_duration(Duration::from_millis(250)), "0.2 s");
    }

    #[test]
    fn git_buildpack_folders_never_clash() {
        let git = |url: &str| Buildpack::parse(url).unwrap();
        assert_eq!(
            folder_name(&git("https://e.com/python.git"), 0, &[]),
            "python-1"
        );
        assert_eq!(
            folder_name(&git("https://e.com/x/bp.git"), 2, &["bp".to_owned()]),
            "bp-3"
        );
        assert_eq!(folder_name(&git("https://e.com/bp.git"), 0, &[]), "bp");
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
