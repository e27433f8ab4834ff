//! Which buildpacks a build runs: an app's setting, `BUILDPACK_URL`, or `.buildpacks`, each a
//! built-in name or a git URL with an optional `#ref`. Git buildpacks are fetched on the host
//! with the host's `git`, so any URL the server can reach works (a `file://` bare repository
//! included), kept as bare mirrors between builds (`BuildpackCache`), and then travel into
//! the build container with the source.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc::Sender;

use crate::build::say;
use crate::upload::BUILTIN_BUILDPACKS;

/// Longest a buildpack fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(300);

/// URL schemes `git` fetches a buildpack from.
const GIT_SCHEMES: &[&str] = &["https://", "http://", "git://", "ssh://", "file://"];

/// One buildpack to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Buildpack {
    /// A folder of `buildpacks/` embedded in the binary, by name.
    Builtin(String),
    /// A repository to clone: `url`, at `reference` (a branch, tag or commit) if given.
    Git {
        url: String,
        reference: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("buildpack `{spec}` {reason}")]
pub struct BuildpackError {
    pub spec: String,
    pub reason: String,
}

impl Buildpack {
    /// Parses a built-in name (`nodejs`, or `heroku/nodejs` for the one Heroku names so) or a
    /// git URL with an optional `#ref`.
    pub fn parse(spec: &str) -> Result<Buildpack, BuildpackError> {
        let error = |reason: &str| BuildpackError {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let spec = spec.trim();
        let builtin = spec.strip_prefix("heroku/").unwrap_or(spec);
        if BUILTIN_BUILDPACKS.contains(&builtin) {
            return Ok(Buildpack::Builtin(builtin.to_owned()));
        }
        if !GIT_SCHEMES.iter().any(|scheme| spec.starts_with(scheme)) {
            return Err(error(&format!(
                "is neither a built-in ({}) nor a git URL (https://, http://, git://, ssh://, file://)",
                BUILTIN_BUILDPACKS.join(", ")
            )));
        }
        if spec.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(error("contains white space"));
        }
        let (url, reference) = match spec.split_once('#') {
            Some((url, reference)) => (url, Some(reference)),
            None => (spec, None),
        };
        if GIT_SCHEMES.contains(&url) {
            return Err(error("has no repository after the scheme"));
        }
        if let Some(reference) = reference {
            // A ref is handed to git as an argument: one starting with `-` would be an option.
            if reference.is_empty() || reference.starts_with('-') || reference.contains("..") {
                return Err(error("has an invalid #ref: name a branch, tag or commit"));
            }
        }
        Ok(Buildpack::Git {
            url: url.to_owned(),
            reference: reference.map(str::to_owned),
        })
    }

    /// The name it runs under: its CACHE_DIR and the name in the build's output. A git
    /// buildpack is named after its repository (`heroku-buildpack-foo`).
    pub fn name(&self) -> String {
        match self {
            Buildpack::Builtin(name) => name.clone(),
            Buildpack::Git { url, .. } => {
                let last = url
                    .trim_end_matches('/')
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or_default();
                let name: String = last
                    .strip_suffix(".git")
                    .unwrap_or(last)
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    .collect();
                let name = name.trim_start_matches('.');
                if name.is_empty() {
                    "buildpack".to_owned()
                } else {
                    name.to_owned()
                }
            }
        }
    }
}

impl fmt::Display for Buildpack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buildpack::Builtin(name) => f.write_str(name),
            Buildpack::Git {
                url,
                reference: Some(reference),
            } => write!(f, "{url}#{reference}"),
            Buildpack::Git {
                url,
                reference: None,
            } => f.write_str(url),
        }
    }
}

/// The buildpacks a `.buildpacks` file lists: one a line, blank lines and `#` comments
/// skipped.
pub fn parse_list(text: &str) -> Result<Vec<Buildpack>, BuildpackError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Buildpack::parse)
        .collect()
}

/// Git buildpacks kept between builds: a bare mirror per URL under `root`, updated with
/// `git fetch` rather than cloned again, and read with `git archive` so builds of several
/// apps can share one mirror.
pub(crate) struct BuildpackCache {
    root: PathBuf,
    /// One fetch at a time per mirror: concurrent fetches into one repository fight over its
    /// ref locks.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl BuildpackCache {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            locks: Mutex::default(),
        }
    }

    /// The mirror of `url`: named after the repository, with a hash of the whole URL so two
    /// repositories of one name never share it.
    pub(crate) fn mirror(&self, url: &str) -> PathBuf {
        let name = Buildpack::Git {
            url: url.to_owned(),
            reference: None,
        }
        .name();
        self.root.join(format!("{name}-{:016x}.git", fnv1a(url)))
    }

    /// Writes the files of the buildpack at `url`, at `reference` (a branch, tag or commit;
    /// the default branch if `None`), into `dest`, saying on `output` whether the cached
    /// mirror was used. A pinned commit the mirror already holds is used without fetching:
    /// it cannot have changed.
    pub(crate) async fn checkout(
        &self,
        url: &str,
        reference: Option<&str>,
        dest: &Path,
        output: &Sender<String>,
    ) -> Result<(), String> {
        let mirror = self.mirror(url);
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(mirror.clone()).or_default())
        };
        let _fetching = lock.lock().await;
        let revision = reference.unwrap_or("HEAD");
        if mirror.join("HEAD").is_file() {
            let pinned = match reference {
                Some(reference) if is_commit_like(reference) => resolve(&mirror, reference)
                    .await
                    .filter(|sha| sha.starts_with(&reference.to_ascii_lowercase())),
                _ => None,
            };
            if let Some(sha) = pinned {
                say(
                    output,
                    format!(
                        "       Using the cached clone: commit {} is pinned, nothing to fetch",
                        short(&sha)
                    ),
                )
                .await;
            } else {
                say(
                    output,
                    "       Updating the cached clone with git fetch".to_owned(),
                )
                .await;
                run_git(
                    Command::new("git")
                        .arg("--git-dir")
                        .arg(&mirror)
                        .args(["fetch", "--quiet", "--prune", "origin"]),
                    output,
                )
                .await?;
            }
        } else {
            say(output, "       Cloning into the buildpack cache".to_owned()).await;
            self.clone_mirror(url, &mirror, output).await?;
        }
        let sha = resolve(&mirror, revision)
            .await
            .ok_or_else(|| match reference {
                Some(reference) => format!("`{reference}` is not a branch, tag or commit of {url}"),
                None => format!("{url} has no default branch"),
            })?;
        say(output, format!("       Using commit {}", short(&sha))).await;
        // Modes as a checkout leaves them (git archive's default umask is 002).
        let archive = git_stdout(
            Command::new("git")
                .args(["-c", "tar.umask=0022", "--git-dir"])
                .arg(&mirror)
                .args(["archive", "--format=tar", &sha]),
        )
        .await?;
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dest)?;
            tar::Archive::new(archive.as_slice()).unpack(&dest)
        })
        .await
        .map_err(|join| format!("unpacking the buildpack: {join}"))?
        .map_err(|error| format!("unpacking the buildpack: {error}"))
    }

    /// Clones `url` as a bare mirror beside `mirror`, then moves it into place: a clone cut
    /// short leaves no half-made mirror behind.
    async fn clone_mirror(
        &self,
        url: &str,
        mirror: &Path,
        output: &Sender<String>,
    ) -> Result<(), String> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|error| format!("cannot create `{}`: {error}", self.root.display()))?;
        let partial = tempfile::Builder::new()
            .prefix(".clone-")
            .tempdir_in(&self.root)
            .map_err(|error| {
                format!(
                    "cannot create a folder in `{}`: {error}",
                    self.root.display()
                )
            })?;
        let target = partial.path().join("mirror.git");
        git(&["clone", "--quiet", "--mirror"], url, &target, output).await?;
        tokio::fs::rename(&target, mirror)
            .await
            .map_err(|error| format!("cannot move the clone to `{}`: {error}", mirror.display()))
    }
}

/// Whether a `#ref` may name a commit: 7 to 40 hex digits.
fn is_commit_like(reference: &str) -> bool {
    (7..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

/// The commit `revision` names in the mirror, if any.
async fn resolve(mirror: &Path, revision: &str) -> Option<String> {
    let stdout = git_stdout(
        Command::new("git")
            .arg("--git-dir")
            .arg(mirror)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(format!("{revision}^{{commit}}")),
    )
    .await
    .ok()?;
    let sha = String::from_utf8(stdout).ok()?.trim().to_owned();
    (!sha.is_empty()).then_some(sha)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// 64-bit FNV-1a: a hash that stays the same across runs and versions, for folder names.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

async fn git(args: &[&str], url: &str, dest: &Path, output: &Sender<String>) -> Result<(), String> {
    run_git(
        Command::new("git").args(args).arg("--").arg(url).arg(dest),
        output,
    )
    .await
}

/// Runs git without a terminal prompt, its messages indented into `output`.
async fn run_git(command: &mut Command, output: &Sender<String>) -> Result<(), String> {
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|error| format!("cannot run git: {error}"))?;
    let stderr = child.stderr.take();
    let relay = async {
        if let Some(stderr) = stderr {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                output.send(format!("       {line}")).await.ok();
            }
        }
        child.wait().await
    };
    match tokio::time::timeout(FETCH_TIMEOUT, relay).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("git exited with {status}")),
        Ok(Err(error)) => Err(format!("waiting for git: {error}")),
        Err(_) => Err(format!(
            "git did not finish within {} s",
            FETCH_TIMEOUT.as_secs()
        )),
    }
}

/// Runs git for what it prints on stdout, without a terminal prompt and within the fetch
/// timeout.
async fn git_stdout(command: &mut Command) -> Result<Vec<u8>, String> {
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(FETCH_TIMEOUT, command.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(out.stdout),
        Ok(Ok(out)) => Err(format!(
            "git exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(error)) => Err(format!("cannot run git: {error}")),
        Err(_) => Err(format!(
            "git did not finish within {} s",
            FETCH_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(url: &str, reference: Option<&str>) -> Buildpack {
        Buildpack::Git {
            url: url.to_owned(),
            reference: reference.map(str::to_owned),
        }
    }

    #[test]
    fn urls_with_and_without_a_ref() {
        assert_eq!(
            Buildpack::parse("https://github.com/heroku/heroku-buildpack-ruby.git#v250").unwrap(),
            git(
                "https://github.com/heroku/heroku-buildpack-ruby.git",
                Some("v250")
            )
        );
        assert_eq!(
            Buildpack::parse("file:///srv/buildpacks/hello.git").unwrap(),
            git("file:///srv/buildpacks/hello.git", None)
        );
        assert_eq!(
            Buildpack::parse("ssh://git@example.com/bp.git#main").unwrap(),
            git("ssh://git@example.com/bp.git", Some("main"))
        );
        let spec = "https://example.com/a/b.git#0123abc";
        assert_eq!(Buildpack::parse(spec).unwrap().to_string(), spec);
    }

    #[test]
    fn builtins_by_name_or_heroku_name() {
        for (spec, name) in [
            ("nodejs", "nodejs"),
            ("heroku/python", "python"),
            ("static", "static"),
            ("procfile", "procfile"),
        ] {
            assert_eq!(
                Buildpack::parse(spec).unwrap(),
                Buildpack::Builtin(name.to_owned())
            );
        }
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, reason) in [
            ("../etc", "neither a built-in"),
            ("ruby", "neither a built-in"),
            ("ftp://example.com/bp", "neither a built-in"),
            ("https://", "no repository"),
            ("https://example.com/bp.git#", "invalid #ref"),
            ("https://example.com/bp.git#--upload-pack=x", "invalid #ref"),
            ("https://example.com/bp.git#a..b", "invalid #ref"),
            ("https://example.com/b p.git", "white space"),
        ] {
            let error = Buildpack::parse(spec).unwrap_err();
            assert!(error.to_string().contains(reason), "{spec}: {error}");
            assert!(error.to_string().contains(&format!("`{spec}`")), "{error}");
        }
    }

    #[test]
    fn git_buildpacks_are_named_after_their_repository() {
        for (spec, name) in [
            (
                "https://github.com/heroku/heroku-buildpack-ruby.git#v1",
                "heroku-buildpack-ruby",
            ),
            ("file:///tmp/x/hello-bp/", "hello-bp"),
            ("ssh://git@example.com:2222/team/bp", "bp"),
            ("https://example.com/.git", "buildpack"),
        ] {
            assert_eq!(Buildpack::parse(spec).unwrap().name(), name, "{spec}");
        }
    }

    /// Runs git in `dir` for a test, panicking with its output when it fails.
    fn run(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git must be installed to run the buildpack cache tests");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A buildpack repository with one commit on `main`, and its `file://` URL.
    fn origin(root: &Path) -> (PathBuf, String) {
        let repo = root.join("bp");
        std::fs::create_dir_all(repo.join("bin")).unwrap();
        std::fs::write(repo.join("bin/detect"), "#!/bin/sh\necho Test\n").unwrap();
        std::fs::set_permissions(
            repo.join("bin/detect"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        run(&repo, &["init", "-q", "-b", "main"]);
        run(&repo, &["add", "-A"]);
        run(&repo, &["commit", "-q", "-m", "one"]);
        let url = format!("file://{}", repo.display());
        (repo, url)
    }

    async fn checkout(
        cache: &BuildpackCache,
        url: &str,
        reference: Option<&str>,
        dest: &Path,
    ) -> (Result<(), String>, Vec<String>) {
        let (tx, mut rx) = tokio::sync::mpsc::channel(100);
        let result = cache.checkout(url, reference, dest, &tx).await;
        drop(tx);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (result, lines)
    }

    fn inode(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(path).unwrap())
    }

    #[tokio::test]
    async fn the_second_fetch_updates_the_cached_mirror_instead_of_cloning() {
        let root = tempfile::tempdir().unwrap();
        let (repo, url) = origin(root.path());
        let cache = BuildpackCache::new(root.path().join("cache"));

        let (result, lines) = checkout(&cache, &url, None, &root.path().join("a")).await;
        result.unwrap();
        assert!(
            lines.contains(&"       Cloning into the buildpack cache".to_owned()),
            "{lines:?}"
        );
        let detect = root.path().join("a/bin/detect");
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&detect).unwrap().permissions()
            ) & 0o777,
            0o755
        );
        let mirror = cache.mirror(&url);
        assert!(
            mirror
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("bp-")
        );
        let mirror_inode = inode(&mirror);

        std::fs::write(repo.join("bin/compile"), "#!/bin/sh\n").unwrap();
        run(&repo, &["add", "-A"]);
        run(&repo, &["commit", "-q", "-m", "two"]);
        let (result, lines) = checkout(&cache, &url, Some("main"), &root.path().join("b")).await;
        result.unwrap();
        assert!(
            lines.contains(&"       Updating the cached clone with git fetch".to_owned()),
            "{lines:?}"
        );
        assert!(
            !lines.iter().any(|line| line.contains("Cloning")),
            "{lines:?}"
        );
        assert!(
            root.path().join("b/bin/compile").is_file(),
            "the fetch brought the new commit"
        );
        assert_eq!(
            inode(&mirror),
            mirror_inode,
            "the mirror was not cloned again"
        );
    }

    #[tokio::test]
    async fn a_cached_pinned_commit_builds_without_its_origin() {
        let root = tempfile::tempdir().unwrap();
        let (repo, url) = origin(root.path());
        let first = run(&repo, &["rev-parse", "HEAD"]);
        run(&repo, &["tag", "v1"]);
        let cache = BuildpackCache::new(root.path().join("cache"));
        checkout(&cache, &url, Some("v1"), &root.path().join("a"))
            .await
            .0
            .unwrap();

        std::fs::rename(&repo, root.path().join("gone")).unwrap();
        let (result, lines) =
            checkout(&cache, &url, Some(&first[..10]), &root.path().join("b")).await;
        result.unwrap();
        assert_eq!(
            lines[0],
            format!(
                "       Using the cached clone: commit {} is pinned, nothing to fetch",
                &first[..12]
            )
        );
        assert!(root.path().join("b/bin/detect").is_file());

        let (result, _) = checkout(&cache, &url, Some("main"), &root.path().join("c")).await;
        assert!(result.unwrap_err().starts_with("git exited with"));
    }

    #[tokio::test]
    async fn an_unknown_ref_is_named() {
        let root = tempfile::tempdir().unwrap();
        let (_, url) = origin(root.path());
        let cache = BuildpackCache::new(root.path().join("cache"));
        let (result, _) = checkout(&cache, &url, Some("v9"), &root.path().join("a")).await;
        assert_eq!(
            result.unwrap_err(),
            format!("`v9` is not a branch, tag or commit of {url}")
        );
    }

    #[test]
    fn mirrors_of_same_named_repositories_differ() {
        let cache = BuildpackCache::new(PathBuf::from("/cache"));
        let a = cache.mirror("https://a.example/bp.git");
        let b = cache.mirror("https://b.example/bp.git");
        assert_ne!(a, b);
        assert_eq!(a, cache.mirror("https://a.example/bp.git"));
        assert!(a.starts_with("/cache"));
    }

    #[test]
    fn dot_buildpacks_skips_comments_and_blank_lines() {
        let list = parse_list("# first\nhttps://example.com/a.git#v2\n\n  nodejs  \r\n").unwrap();
        assert_eq!(
            list,
            [
                git("https://example.com/a.git", Some("v2")),
                Buildpack::Builtin("nodejs".to_owned())
            ]
        );
        let error = parse_list("nodejs\nnot-a-buildpack\n").unwrap_err();
        assert_eq!(error.spec, "not-a-buildpack");
    }
}
