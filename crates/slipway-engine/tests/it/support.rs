//! A scratch space on the real Docker daemon: unique names, a busybox image built from the
//! host's `/bin/busybox`, and clean-up of everything a test created, even when it fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt;
use slipway_engine::{
    ContainerEngine, ContainerId, DockerEngine, ImageConfig, OutputStream, Swarm,
};
use slipway_types::ContainerSpec;

const BUSYBOX: &str = "/bin/busybox";

/// The busybox applets the tests call, linked into the image's `/bin`.
const APPLETS: &[&str] = &[
    "sh", "echo", "sleep", "cat", "id", "pwd", "httpd", "ls", "touch", "stat", "true", "stty",
    "tty",
];

/// How long a test waits for a short-lived container's output to end.
const OUTPUT_DEADLINE: Duration = Duration::from_secs(60);

/// How many times clean-up tries to remove a network, a second apart.
const NETWORK_REMOVAL_ATTEMPTS: u32 = 30;

/// Resources a test created, removed when it is dropped.
pub struct Scratch {
    pub engine: DockerEngine,
    prefix: String,
    dir: tempfile::TempDir,
    created: Mutex<Created>,
}

#[derive(Default)]
struct Created {
    services: Vec<String>,
    containers: Vec<String>,
    images: Vec<String>,
    networks: Vec<String>,
    volumes: Vec<String>,
}

impl Scratch {
    /// Connects to the local daemon; a test without one fails here, loudly.
    pub async fn new(test: &str) -> Self {
        let engine = DockerEngine::connect()
            .await
            .unwrap_or_else(|error| panic!("these tests need a running Docker daemon: {error}"));
        engine
            .ping()
            .await
            .unwrap_or_else(|error| panic!("these tests need a running Docker daemon: {error}"));
        Self {
            engine,
            prefix: format!("slipway-it-{test}-{}", unique_suffix()),
            dir: tempfile::tempdir().expect("temporary directory"),
            created: Mutex::new(Created::default()),
        }
    }

    /// A name no other test or run uses.
    pub fn name(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// A scratch folder on the host, removed with the scratch space.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Imports a busybox root filesystem as a fresh image with `config`; returns its reference.
    pub async fn busybox_image(&self, config: &ImageConfig) -> String {
        let tarball = self.dir.path().join("rootfs.tar");
        if !tarball.exists() {
            write_busybox_rootfs(&tarball);
        }
        let reference = format!("{}/busybox:1.0.0", self.prefix);
        self.track_image(&reference);
        self.engine
            .import_image(&reference, &tarball, config)
            .await
            .expect("imports the busybox root filesystem");
        reference
    }

    /// Creates (without starting) a container; it is removed with the scratch space.
    pub async fn create(&self, spec: &ContainerSpec) -> ContainerId {
        self.track_container(&spec.name);
        self.engine
            .create_container(spec)
            .await
            .unwrap_or_else(|error| panic!("creating container `{}`: {error}", spec.name))
    }

    /// Creates and starts a container; it is removed with the scratch space.
    pub async fn run(&self, spec: &ContainerSpec) -> ContainerId {
        self.track_container(&spec.name);
        slipway_engine::run(&self.engine, spec)
            .await
            .unwrap_or_else(|error| panic!("running container `{}`: {error}", spec.name))
    }

    pub fn track_service(&self, name: &str) {
        self.track(|created| &mut created.services, name);
    }

    pub fn track_container(&self, name: &str) {
        self.track(|created| &mut created.containers, name);
    }

    pub fn track_image(&self, reference: &str) {
        self.track(|created| &mut created.images, reference);
    }

    pub fn track_network(&self, name: &str) {
        self.track(|created| &mut created.networks, name);
    }

    pub fn track_volume(&self, name: &str) {
        self.track(|created| &mut created.volumes, name);
    }

    fn track(&self, list: impl FnOnce(&mut Created) -> &mut Vec<String>, name: &str) {
        let mut created = self
            .created
            .lock()
            .unwrap_or_else(|error| error.into_inner());
        list(&mut created).push(name.to_owned());
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let created = std::mem::take(
            &mut *self
                .created
                .lock()
                .unwrap_or_else(|error| error.into_inner()),
        );
        // Drop cannot await, and the test's runtime may be unwinding: clean up on a thread
        // with its own runtime and its own connection.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("clean-up runtime");
            runtime.block_on(remove_all(created));
        });
        if cleanup.join().is_err() {
            eprintln!("clean-up of the test's Docker resources panicked");
        }
    }
}

async fn remove_all(created: Created) {
    let engine = match DockerEngine::connect().await {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("clean-up cannot reach Docker: {error}");
            return;
        }
    };
    for name in &created.services {
        report(name, engine.remove_service(name).await);
    }
    for name in &created.containers {
        report(name, engine.remove_container(name).await);
    }
    for reference in &created.images {
        report(reference, engine.remove_image(reference).await);
    }
    for name in &created.networks {
        report(name, remove_network(&engine, name).await);
    }
    for name in &created.volumes {
        report(name, engine.remove_volume(name).await);
    }
}

/// A removed service's tasks leave its networks a little later; until then the network is
/// in use and cannot go.
async fn remove_network(engine: &DockerEngine, name: &str) -> slipway_engine::Result<()> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match engine.remove_network(name).await {
            Err(error) if attempts < NETWORK_REMOVAL_ATTEMPTS => {
                eprintln!("network `{name}` not removed yet: {error}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            result => return result,
        }
    }
}

fn report(name: &str, result: slipway_engine::Result<()>) {
    if let Err(error) = result {
        eprintln!("clean-up of `{name}` failed: {error}");
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{:x}{:08x}{:x}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A root filesystem of the host's static busybox and links to the applets the tests use.
fn write_busybox_rootfs(path: &Path) {
    let busybox = std::fs::read(BUSYBOX).unwrap_or_else(|error| {
        panic!(
            "reading {BUSYBOX} ({error}): these tests build their image from it; install it \
             with `apt-get install -y busybox-static`"
        )
    });
    let mut archive = tar::Builder::new(Vec::new());
    for (dir, mode) in [("bin/", 0o755), ("etc/", 0o755), ("tmp/", 0o1777)] {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_size(0);
        archive
            .append_data(&mut header, dir, std::io::empty())
            .expect("directory entry");
    }
    let mut header = tar::Header::new_gnu();
    header.set_mode(0o755);
    header.set_size(busybox.len() as u64);
    archive
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .expect("busybox entry");
    for applet in APPLETS {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_mode(0o777);
        header.set_size(0);
        archive
            .append_link(&mut header, format!("bin/{applet}"), "busybox")
            .expect("applet link");
    }
    let bytes = archive.into_inner().expect("finished archive");
    std::fs::write(path, bytes).expect("writes the root filesystem tarball");
}

/// A tar archive of regular files, each with the given owner.
pub fn tar_of(files: &[(&str, &str)], uid: u64) -> Bytes {
    let mut archive = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_uid(uid);
        header.set_gid(uid);
        header.set_size(contents.len() as u64);
        archive
            .append_data(&mut header, path, contents.as_bytes())
            .expect("file entry");
    }
    Bytes::from(archive.into_inner().expect("finished archive"))
}

/// The files in a tar archive, by path.
pub fn untar(archive: &[u8]) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().expect("entry path").into_owned();
        let mut contents = String::new();
        std::io::Read::read_to_string(&mut entry, &mut contents).expect("entry contents");
        files.insert(path, contents);
    }
    files
}

/// A container spec running `cmd` in `image`.
pub fn command(name: String, image: &str, cmd: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name,
        image: image.to_owned(),
        cmd: cmd.iter().map(|word| (*word).to_owned()).collect(),
        ..ContainerSpec::default()
    }
}

/// A container spec running `script` with `sh -c`.
pub fn shell(name: String, image: &str, script: &str) -> ContainerSpec {
    command(name, image, &["sh", "-c", script])
}

/// A container's stdout and stderr until it exits.
pub async fn output(engine: &DockerEngine, id: &str) -> (String, String) {
    let collected = engine.output(id, None).try_fold(
        (BytesMut::new(), BytesMut::new()),
        |(mut stdout, mut stderr), chunk| async move {
            match chunk.stream {
                OutputStream::Stdout => stdout.extend_from_slice(&chunk.bytes),
                OutputStream::Stderr => stderr.extend_from_slice(&chunk.bytes),
            }
            Ok((stdout, stderr))
        },
    );
    let (stdout, stderr) = tokio::time::timeout(OUTPUT_DEADLINE, collected)
        .await
        .unwrap_or_else(|_| panic!("output of `{id}` did not end within {OUTPUT_DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("output of `{id}`: {error}"));
    (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// The exit code of a container expected to end on its own soon.
pub async fn wait(engine: &DockerEngine, id: &str) -> i64 {
    tokio::time::timeout(OUTPUT_DEADLINE, engine.wait(id))
        .await
        .unwrap_or_else(|_| panic!("`{id}` did not exit within {OUTPUT_DEADLINE:?}"))
        .unwrap_or_else(|error| panic!("waiting for `{id}`: {error}"))
}
