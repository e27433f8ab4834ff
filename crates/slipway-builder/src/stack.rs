//! Builds the stack image without a registry: debootstrap a Debian root filesystem from the
//! machine's own mirror, install what the built-in buildpacks need inside it, and import it.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use slipway_engine::{ContainerEngine, EngineError, ImageConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::Sender;

/// Packages the built-in buildpacks rely on. debootstrap's `--include` cannot resolve npm's
/// dependency tree, so these go in with apt inside the chroot instead.
const STACK_PACKAGES: &[&str] = &[
    "python3",
    "python3-venv",
    "python3-dev",
    "nodejs",
    "npm",
    "build-essential",
    "libpq-dev",
    "git",
    "curl",
    "ca-certificates",
    "tini",
];

pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How many lines of a failing command's output are repeated in the stream.
const TAIL_LINES: usize = 40;

#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Image reference to create, e.g. `slipway/stack:trixie`.
    pub reference: String,
    /// Debian suite, e.g. `trixie`.
    pub suite: String,
    /// Debian mirror; `None` reads it from the machine's apt sources.
    pub mirror: Option<String>,
    /// Scratch space for the root filesystem and its tarball (a few GiB); emptied afterwards.
    pub work_dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("building the stack image needs root (debootstrap and chroot): run it as root")]
    NotRoot,
    #[error("debootstrap is not installed: install it with apt-get install debootstrap")]
    DebootstrapMissing,
    #[error(
        "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list: give one explicitly"
    )]
    NoMirror,
    #[error("suite `{0}` is invalid: use a Debian suite name such as trixie")]
    BadSuite(String),
    #[error("{step} failed ({status}): see the output above")]
    StepFailed { step: String, status: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("`{0}` is still mounted: unmount it, then delete the work dir by hand")]
    StillMounted(PathBuf),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> StackError {
    let context = context.into();
    move |source| StackError::Io { context, source }
}

/// What goes into an image beyond debootstrap's minbase: the stack image and the add-on
/// images differ only in this.
pub(crate) struct Recipe {
    /// Names the scratch root filesystem, so two recipes never share one.
    pub name: &'static str,
    /// Installed with apt inside the chroot.
    pub packages: &'static [&'static str],
    /// Run in the chroot before the packages go in: users whose ids must be fixed are
    /// created here, because a package's postinst would pick a free system id instead.
    pub before: Option<Step>,
    /// Files written into the root filesystem after the packages: path, contents, mode.
    pub files: &'static [(&'static str, &'static str, u32)],
    /// Run in the chroot last.
    pub after: Step,
    pub config: ImageConfig,
}

/// A shell script run in the chroot, announced by `message`; `name` is how an error calls it.
pub(crate) struct Step {
    pub name: &'static str,
    pub message: &'static str,
    pub script: &'static str,
}

/// Debootstraps `options.suite`, provisions it and imports it as `options.reference`,
/// streaming progress lines to `output`.
pub async fn build_stack(
    engine: &dyn ContainerEngine,
    options: &StackOptions,
    output: &Sender<String>,
) -> Result<(), StackError> {
    build_image(engine, options, &stack_recipe(&options.suite), output).await
}

/// Builds `recipe` on a fresh debootstrap of `options.suite` and imports it as
/// `options.reference`.
pub(crate) async fn build_image(
    engine: &dyn ContainerEngine,
    options: &StackOptions,
    recipe: &Recipe,
    output: &Sender<String>,
) -> Result<(), StackError> {
    let started = Instant::now();
    check_suite(&options.suite)?;
    if !running_as_root()? {
        return Err(StackError::NotRoot);
    }
    if !debootstrap_installed() {
        return Err(StackError::DebootstrapMissing);
    }
    let mirror = match &options.mirror {
        Some(mirror) => mirror.clone(),
        None => detect_mirror(Path::new("/etc/apt")).ok_or(StackError::NoMirror)?,
    };
    engine.ping().await?;

    let rootfs = options
        .work_dir
        .join(format!("rootfs-{}-{}", recipe.name, options.suite));
    let tarball = options
        .work_dir
        .join(format!("rootfs-{}-{}.tar", recipe.name, options.suite));
    tokio::fs::create_dir_all(&options.work_dir)
        .await
        .map_err(io_error(format!(
            "creating work dir `{}`",
            options.work_dir.display()
        )))?;
    remove_tree(&rootfs).await?;

    let result = build_in(engine, options, recipe, &mirror, &rootfs, &tarball, output).await;
    let cleanup = cleanup(&options.work_dir, &rootfs, &tarball).await;
    result?;
    cleanup?;
    say(
        output,
        format!(
            "-----> Built {} in {}s",
            options.reference,
            started.elapsed().as_secs()
        ),
    )
    .await;
    Ok(())
}

async fn build_in(
    engine: &dyn ContainerEngine,
    options: &StackOptions,
    recipe: &Recipe,
    mirror: &str,
    rootfs: &Path,
    tarball: &Path,
    output: &Sender<String>,
) -> Result<(), StackError> {
    say(
        output,
        format!("-----> Bootstrapping {} from {mirror}", options.suite),
    )
    .await;
    let mut debootstrap = Command::new("debootstrap");
    debootstrap
        .args(["--variant=minbase", "--include=ca-certificates"])
        .arg(&options.suite)
        .arg(rootfs)
        .arg(mirror);
    run_step("debootstrap", debootstrap, output, |line| {
        line.starts_with("E:") || line.starts_with("W:") || line.contains("installed successfully")
    })
    .await?;

    provision(rootfs, recipe, output).await?;

    say(output, "-----> Packing the root filesystem".to_owned()).await;
    let (source, destination) = (rootfs.to_owned(), tarball.to_owned());
    tokio::task::spawn_blocking(move || pack_rootfs(&source, &destination))
        .await
        .map_err(|join| StackError::Io {
            context: "packing the root filesystem".to_owned(),
            source: io::Error::other(join),
        })??;
    let size = tokio::fs::metadata(tarball)
        .await
        .map_err(io_error(format!("reading `{}`", tarball.display())))?
        .len();
    say(output, format!("       {} MiB", size / (1024 * 1024))).await;

    say(output, format!("-----> Importing as {}", options.reference)).await;
    engine
        .import_image(&options.reference, tarball, &recipe.config)
        .await?;
    Ok(())
}

/// Runs apt and user setup inside the chroot with /proc mounted, unmounting it whatever
/// happens.
async fn provision(
    rootfs: &Path,
    recipe: &Recipe,
    output: &Sender<String>,
) -> Result<(), StackError> {
    let resolv = rootfs.join("etc/resolv.conf");
    tokio::fs::remove_file(&resolv).await.ok();
    tokio::fs::copy("/etc/resolv.conf", &resolv)
        .await
        .map_err(io_error("copying /etc/resolv.conf into the chroot"))?;
    // Keeps package scripts from starting services inside the chroot.
    let policy = rootfs.join("usr/sbin/policy-rc.d");
    write_file(&policy, "#!/bin/sh\nexit 101\n", 0o755).await?;

    let mut proc_mount = ProcMount::mount(rootfs, output).await?;
    let result = provision_mounted(rootfs, recipe, output).await;
    let unmounted = proc_mount.unmount().await;
    result?;
    unmounted?;

    tokio::fs::remove_file(&policy)
        .await
        .map_err(io_error("removing policy-rc.d"))?;
    // Containers get their resolver from the engine.
    tokio::fs::write(&resolv, "")
        .await
        .map_err(io_error("emptying the chroot's resolv.conf"))?;
    for dir in ["var/lib/apt/lists", "var/cache/apt/archives", "tmp"] {
        empty_dir(&rootfs.join(dir)).await?;
    }
    Ok(())
}

async fn provision_mounted(
    rootfs: &Path,
    recipe: &Recipe,
    output: &Sender<String>,
) -> Result<(), StackError> {
    say(output, "-----> Updating package lists".to_owned()).await;
    run_step(
        "apt-get update",
        chroot(rootfs, &["apt-get", "update"]),
        output,
        |line| line.starts_with("E:") || line.starts_with("W:"),
    )
    .await?;

    if let Some(before) = &recipe.before {
        run_script(rootfs, before, output).await?;
    }

    say(
        output,
        format!("-----> Installing {}", recipe.packages.join(" ")),
    )
    .await;
    let mut install = vec![
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "-o",
        "Dpkg::Use-Pty=0",
    ];
    install.extend_from_slice(recipe.packages);
    run_step(
        "apt-get install",
        chroot(rootfs, &install),
        output,
        |line| {
            line.starts_with("E:")
                || line.starts_with("W:")
                || line.contains("newly installed")
                || line.starts_with("Need to get")
        },
    )
    .await?;

    for (path, contents, mode) in recipe.files {
        write_file(&rootfs.join(path), contents, *mode).await?;
    }
    run_script(rootfs, &recipe.after, output).await
}

async fn run_script(rootfs: &Path, step: &Step, output: &Sender<String>) -> Result<(), StackError> {
    say(output, format!("-----> {}", step.message)).await;
    run_step(
        step.name,
        chroot(rootfs, &["/bin/sh", "-c", step.script]),
        output,
        |_| true,
    )
    .await
}

fn chroot(rootfs: &Path, command: &[&str]) -> Command {
    let mut chroot = Command::new("chroot");
    chroot
        .arg(rootfs)
        .args(command)
        .env_clear()
        .env("PATH", PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    chroot
}

/// The chroot's /proc. Dropping it without `unmount` (a cancelled build) still lazily
/// unmounts, so the work dir can be deleted later.
struct ProcMount {
    target: PathBuf,
    mounted: bool,
}

impl ProcMount {
    async fn mount(rootfs: &Path, output: &Sender<String>) -> Result<Self, StackError> {
        let target = rootfs.join("proc");
        let mut mount = Command::new("mount");
        mount.args(["-t", "proc", "proc"]).arg(&target);
        run_step("mounting /proc in the chroot", mount, output, |_| true).await?;
        Ok(Self {
            target,
            mounted: true,
        })
    }

    async fn unmount(&mut self) -> Result<(), StackError> {
        let status = Command::new("umount")
            .arg(&self.target)
            .status()
            .await
            .map_err(io_error("running umount"))?;
        if !status.success() {
            return Err(StackError::StillMounted(self.target.clone()));
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for ProcMount {
    fn drop(&mut self) {
        if self.mounted {
            std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.target)
                .status()
                .ok();
        }
    }
}

/// Runs one step, passing the lines `show` picks to `output` and, when the step fails, the
/// last lines it printed, so the cause is visible without the full apt noise.
async fn run_step(
    step: &str,
    mut command: Command,
    output: &Sender<String>,
    show: impl Fn(&str) -> bool,
) -> Result<(), StackError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(io_error(format!("starting {step}")))?;
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_lines(stdout, tx.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_lines(stderr, tx));
    }
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    while let Some(line) = lines.recv().await {
        let shown = show(&line);
        if shown {
            say(output, format!("       {line}")).await;
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back((shown, line));
    }
    let status = child
        .wait()
        .await
        .map_err(io_error(format!("waiting for {step}")))?;
    if status.success() {
        return Ok(());
    }
    for (shown, line) in tail {
        if !shown {
            say(output, format!("       {line}")).await;
        }
    }
    Err(StackError::StepFailed {
        step: step.to_owned(),
        status: status.to_string(),
    })
}

async fn forward_lines(
    stream: impl tokio::io::AsyncRead + Unpin,
    tx: tokio::sync::mpsc::Sender<String>,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if tx.send(line).await.is_err() {
            break;
        }
    }
}

/// A closed receiver means nobody watches the progress; the build goes on regardless.
async fn say(output: &Sender<String>, line: String) {
    output.send(line).await.ok();
}

fn stack_recipe(suite: &str) -> Recipe {
    Recipe {
        name: "stack",
        packages: STACK_PACKAGES,
        before: None,
        files: &[],
        after: Step {
            name: "creating user app",
            message: "Creating user app (uid 1000, home /app)",
            script: "groupadd --gid 1000 app \
                && useradd --uid 1000 --gid 1000 --home-dir /app --no-create-home --shell /bin/bash app \
                && install -d -o app -g app -m 0755 /app /cache \
                && apt-get clean",
        },
        config: ImageConfig {
            working_dir: Some("/app".to_owned()),
            env: BTreeMap::from([
                ("PATH".to_owned(), PATH.to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ]),
            cmd: vec!["/bin/bash".to_owned()],
            labels: BTreeMap::from([("slipway.stack".to_owned(), suite.to_owned())]),
            ..ImageConfig::default()
        },
    }
}

fn check_suite(suite: &str) -> Result<(), StackError> {
    let valid = suite.starts_with(|c: char| c.is_ascii_lowercase())
        && suite
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(StackError::BadSuite(suite.to_owned()))
    }
}

/// `/proc/self` belongs to the effective user of this process.
fn running_as_root() -> Result<bool, StackError> {
    let meta = std::fs::metadata("/proc/self").map_err(io_error("reading /proc/self"))?;
    Ok(meta.uid() == 0)
}

fn debootstrap_installed() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join("debootstrap").is_file())
}

/// The first non-security Debian mirror in the apt sources under `apt_dir` (normally
/// `/etc/apt`): deb822 `.sources` files first, then one-line `.list` files.
pub fn detect_mirror(apt_dir: &Path) -> Option<String> {
    let parts = apt_dir.join("sources.list.d");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&parts)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let sources = files
        .iter()
        .filter(|path| path.extension().is_some_and(|ext| ext == "sources"));
    for path in sources {
        if let Some(mirror) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| mirror_from_deb822(&text))
        {
            return Some(mirror);
        }
    }
    let lists = std::iter::once(apt_dir.join("sources.list")).chain(
        files
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "list")),
    );
    for path in lists {
        if let Some(mirror) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| mirror_from_one_line(&text))
        {
            return Some(mirror);
        }
    }
    None
}

/// The first `URIs:` of an enabled `deb` paragraph whose suites are not security updates.
fn mirror_from_deb822(text: &str) -> Option<String> {
    deb822_paragraphs(text).iter().find_map(mirror_of_paragraph)
}

/// Fields of each paragraph, keys lower-cased; comments and continuation lines are dropped.
fn deb822_paragraphs(text: &str) -> Vec<BTreeMap<String, String>> {
    let mut paragraphs = Vec::new();
    let mut current = BTreeMap::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else if !line.starts_with(['#', ' ', '\t'])
            && let Some((key, value)) = line.split_once(':')
        {
            current.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    paragraphs
}

fn mirror_of_paragraph(paragraph: &BTreeMap<String, String>) -> Option<String> {
    let field = |name: &str| paragraph.get(name).map(String::as_str).unwrap_or_default();
    let is_deb = field("types").split_whitespace().any(|t| t == "deb");
    let enabled = !field("enabled").eq_ignore_ascii_case("no");
    let security = field("suites")
        .split_whitespace()
        .any(|suite| suite.contains("security"));
    if !is_deb || !enabled || security {
        return None;
    }
    field("uris")
        .split_whitespace()
        .find(|uri| !uri.contains("security"))
        .map(normalize_mirror)
}

/// The URL of the first `deb URL SUITE …` line whose suite is not security updates.
fn mirror_from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        let rest = line.strip_prefix("deb ")?.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']')?.1,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let uri = words.next()?;
        let suite = words.next()?;
        (!suite.contains("security") && !uri.contains("security")).then(|| normalize_mirror(uri))
    })
}

fn normalize_mirror(uri: &str) -> String {
    uri.trim_end_matches('/').to_owned()
}

async fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), StackError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(io_error(format!("creating `{}`", parent.display())))?;
    }
    tokio::fs::write(path, content)
        .await
        .map_err(io_error(format!("writing `{}`", path.display())))?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .await
        .map_err(io_error(format!(
            "setting the mode of `{}`",
            path.display()
        )))
}

async fn empty_dir(dir: &Path) -> Result<(), StackError> {
    let context = format!("emptying `{}`", dir.display());
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(context)(error)),
    };
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(io_error(context.clone()))?
    {
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .await
            .map_err(io_error(context.clone()))?
            .is_dir();
        if path.file_name().is_some_and(|name| name == "partial") {
            continue;
        }
        let removed = if is_dir {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        removed.map_err(io_error(context.clone()))?;
    }
    Ok(())
}

/// Writes `rootfs` as a tarball with owners, modes and symlinks kept, and the contents of
/// /proc, /sys and /dev left out (the engine provides those).
fn pack_rootfs(rootfs: &Path, tarball: &Path) -> Result<(), StackError> {
    let file = std::fs::File::create(tarball)
        .map_err(io_error(format!("creating `{}`", tarball.display())))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let dir = rootfs.join(&relative);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io_error(format!("reading `{}`", dir.display())))?
            .collect::<Result<_, _>>()
            .map_err(io_error(format!("reading `{}`", dir.display())))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let name = relative.join(entry.file_name());
            let file_type = entry
                .file_type()
                .map_err(io_error(format!("reading `{}`", entry.path().display())))?;
            if !(file_type.is_dir() || file_type.is_file() || file_type.is_symlink()) {
                continue;
            }
            builder
                .append_path_with_name(entry.path(), &name)
                .map_err(io_error(format!("packing `{}`", entry.path().display())))?;
            let skip_contents = relative.as_os_str().is_empty()
                && ["proc", "sys", "dev"].iter().any(|d| name == Path::new(d));
            if file_type.is_dir() && !skip_contents {
                pending.push(name);
            }
        }
    }
    builder
        .into_inner()
        .and_then(|mut writer| io::Write::flush(&mut writer))
        .map_err(io_error(format!("writing `{}`", tarball.display())))
}

/// Removes what this build put in the work dir, and the work dir itself when that leaves it
/// empty. Refuses while anything is still mounted inside the root filesystem.
async fn cleanup(work_dir: &Path, rootfs: &Path, tarball: &Path) -> Result<(), StackError> {
    match tokio::fs::remove_file(tarball).await {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            return Err(io_error(format!("removing `{}`", tarball.display()))(error));
        }
        _ => {}
    }
    remove_tree(rootfs).await?;
    tokio::fs::remove_dir(work_dir).await.ok();
    Ok(())
}

async fn remove_tree(rootfs: &Path) -> Result<(), StackError> {
    if !tokio::fs::try_exists(rootfs).await.unwrap_or(false) {
        return Ok(());
    }
    for mount in mounts_under(rootfs).await {
        Command::new("umount")
            .arg("-l")
            .arg(&mount)
            .status()
            .await
            .ok();
    }
    if let Some(mount) = mounts_under(rootfs).await.into_iter().next() {
        return Err(StackError::StillMounted(mount));
    }
    tokio::fs::remove_dir_all(rootfs)
        .await
        .map_err(io_error(format!("removing `{}`", rootfs.display())))
}

/// Mount points at or below `dir`, deepest first.
async fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(dir) = tokio::fs::canonicalize(dir).await else {
        return Vec::new();
    };
    let table = tokio::fs::read_to_string("/proc/self/mounts")
        .await
        .unwrap_or_default();
    let mut mounts: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|point| PathBuf::from(point.replace("\\040", " ")))
        .filter(|point| point.starts_with(&dir))
        .collect();
    mounts.sort_by_key(|point| std::cmp::Reverse(point.components().count()));
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_mirror_skips_security_and_disabled_entries() {
        let text = "Types: deb\n\
            # http://snapshot.debian.org/archive/debian-security/20250520T000000Z\n\
            URIs: http://deb.debian.org/debian-security\n\
            Suites: bookworm-security\n\
            Components: main\n\
            \n\
            Types: deb\n\
            URIs: http://disabled.example/debian\n\
            Suites: bookworm\n\
            Enabled: no\n\
            \n\
            Types: deb-src deb\n\
            URIs: http://deb.debian.org/debian/\n\
            Suites: bookworm bookworm-updates\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            mirror_from_deb822(
                "Types: deb\nURIs: http://x/debian-security\nSuites: trixie-security\n"
            ),
            None
        );
    }

    #[test]
    fn deb822_mirror_reads_a_paragraph_at_end_of_file_without_newline() {
        assert_eq!(
            mirror_from_deb822("Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie")
                .as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn one_line_mirror_skips_comments_sources_and_security() {
        let text = "# deb http://commented.example/debian bookworm main\n\
            deb-src http://src.example/debian bookworm main\n\
            deb http://security.debian.org/debian-security bookworm-security main\n\
            deb [arch=amd64 signed-by=/k.gpg] http://ftp.example/debian/ bookworm main contrib\n\
            deb http://later.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_one_line(text).as_deref(),
            Some("http://ftp.example/debian")
        );
        assert_eq!(
            mirror_from_one_line("deb-src http://x/debian trixie main"),
            None
        );
    }

    #[test]
    fn detect_mirror_prefers_sources_files_then_lists() {
        let apt = tempfile::tempdir().unwrap();
        let parts = apt.path().join("sources.list.d");
        std::fs::create_dir(&parts).unwrap();
        assert_eq!(detect_mirror(apt.path()), None);

        std::fs::write(
            apt.path().join("sources.list"),
            "deb http://list.example/debian trixie main\n",
        )
        .unwrap();
        assert_eq!(
            detect_mirror(apt.path()).as_deref(),
            Some("http://list.example/debian")
        );

        std::fs::write(
            parts.join("debian.sources"),
            "Types: deb\nURIs: http://deb.example/debian\nSuites: trixie\n",
        )
        .unwrap();
        assert_eq!(
            detect_mirror(apt.path()).as_deref(),
            Some("http://deb.example/debian")
        );
    }

    #[test]
    fn suites_are_checked_before_they_reach_a_command_line() {
        assert!(check_suite("trixie").is_ok());
        assert!(check_suite("bookworm-backports").is_ok());
        for bad in ["", "Trixie", "../etc", "a b", "-x", "--foo=1"] {
            assert!(
                matches!(check_suite(bad), Err(StackError::BadSuite(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn packing_keeps_modes_and_symlinks_and_skips_proc_contents() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let rootfs = root.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("proc/1")).unwrap();
        std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
        std::fs::write(rootfs.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            rootfs.join("usr/bin/tool"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("usr/bin", rootfs.join("bin")).unwrap();
        let tarball = root.path().join("rootfs.tar");
        pack_rootfs(&rootfs, &tarball).unwrap();

        let mut archive = tar::Archive::new(std::fs::File::open(&tarball).unwrap());
        let mut seen = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            seen.insert(
                entry.path().unwrap().display().to_string(),
                (
                    header.entry_type(),
                    header.mode().unwrap(),
                    header.link_name().unwrap().map(|l| l.display().to_string()),
                ),
            );
        }
        assert!(seen.contains_key("proc"));
        assert!(!seen.contains_key("proc/1"));
        assert_eq!(seen["usr/bin/tool"].1 & 0o777, 0o755);
        assert_eq!(seen["bin"].0, tar::EntryType::Symlink);
        assert_eq!(seen["bin"].2.as_deref(), Some("usr/bin"));
    }
}
