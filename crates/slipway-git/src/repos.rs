//! The bare repositories, one per app, and the hook they run.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use slipway_types::AppName;
use tokio::fs;
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::command::{git, run};
use crate::{GitError, RepoReader};

/// Settings every app repository carries. `ensure` writes them each time, so a repository made
/// by an older version catches up.
const REPO_CONFIG: &[(&str, &str)] = &[
    // Deleting main would leave the app without the commit it runs. Deletes are refused after
    // the pre-receive hook has run, so the hook still sees (and may report on) them.
    ("receive.denyDeletes", "true"),
    // Force pushes are allowed, as on Heroku.
    ("receive.denyNonFastForwards", "false"),
    // Pushes only: `http_backend` refuses clone and fetch, and so would git.
    ("http.receivepack", "true"),
    ("http.uploadpack", "false"),
    ("http.getanyfile", "false"),
];

/// Makes each temporary hook file name unique within this process.
static HOOK_WRITES: AtomicU64 = AtomicU64::new(0);

/// Where the apps' bare repositories live and how their pushes reach the server.
#[derive(Debug)]
pub struct Repos {
    pub(crate) root: PathBuf,
    hook_exe: PathBuf,
    pub(crate) hook_socket: PathBuf,
    /// `git-http-backend`, found once through `git --exec-path`.
    pub(crate) http_backend: OnceCell<PathBuf>,
}

impl Repos {
    /// `root` holds the bare repositories (`<data-dir>/repos`); `hook_exe` is the absolute path
    /// of the `slipway` binary that each repository's pre-receive hook runs; `hook_socket` is
    /// the unix socket that hook connects to (see [`crate::HookListener`]).
    pub fn new(root: PathBuf, hook_exe: PathBuf, hook_socket: PathBuf) -> Self {
        Self {
            root,
            hook_exe,
            hook_socket,
            http_backend: OnceCell::new(),
        }
    }

    /// The bare repository of `app`, whether or not it exists yet.
    pub fn path(&self, app: &AppName) -> PathBuf {
        self.root.join(format!("{app}.git"))
    }

    /// Creates the bare repository of `app` (default branch `main`) if it is missing, and
    /// (re)writes its settings and pre-receive hook. Safe to call on every start and push, so a
    /// moved `slipway` binary or data directory is picked up.
    pub async fn ensure(&self, app: &AppName) -> Result<PathBuf, GitError> {
        let path = self.path(app);
        fs::create_dir_all(&self.root)
            .await
            .map_err(|source| GitError::Io {
                action: "create",
                path: self.root.clone(),
                source,
            })?;

        let mut init = git(None);
        init.args([
            "init",
            "--bare",
            "--quiet",
            "--template=",
            "--initial-branch=main",
        ])
        .arg(&path);
        run(init).await?;

        let hooks = path.join("hooks");
        for (key, value) in REPO_CONFIG {
            let mut config = git(Some(&path));
            config.args(["config", key, value]);
            run(config).await?;
        }
        // An absolute hooks path wins over a `core.hooksPath` in the operator's global config,
        // which would otherwise bypass the build.
        let mut hooks_path = git(Some(&path));
        hooks_path.args(["config", "core.hooksPath"]).arg(&hooks);
        run(hooks_path).await?;

        write_hook(&hooks, &self.hook_exe).await?;
        tracing::debug!(app = %app, path = %path.display(), "repository ready");
        Ok(path)
    }

    /// Deletes the repository of `app`; a missing one is not an error.
    pub async fn remove(&self, app: &AppName) -> Result<(), GitError> {
        let path = self.path(app);
        match fs::remove_dir_all(&path).await {
            Ok(()) => Ok(()),
            Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(GitError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    /// Reads the committed state of `app`'s repository, outside any push.
    pub fn reader(&self, app: &AppName) -> RepoReader {
        RepoReader::new(self.path(app))
    }
}

/// Writes `hooks/pre-receive` through a rename, so git never runs a half-written script.
async fn write_hook(hooks: &Path, hook_exe: &Path) -> Result<(), GitError> {
    let io_error = |action, path: &Path| {
        let path = path.to_owned();
        move |source| GitError::Io {
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(hooks)
        .await
        .map_err(io_error("create", hooks))?;
    let target = hooks.join("pre-receive");
    let temp = hooks.join(format!(
        ".pre-receive.{}.{}",
        std::process::id(),
        HOOK_WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&temp)
        .await
        .map_err(io_error("create", &temp))?;
    file.write_all(&hook_script(hook_exe))
        .await
        .map_err(io_error("write", &temp))?;
    file.sync_all().await.map_err(io_error("write", &temp))?;
    drop(file);
    fs::rename(&temp, &target)
        .await
        .map_err(io_error("replace", &target))
}

/// The pre-receive hook: hand over to `slipway git-hook pre-receive`.
pub(crate) fn hook_script(hook_exe: &Path) -> Vec<u8> {
    let mut script = b"#!/bin/sh\nexec ".to_vec();
    script.extend(shell_quote(hook_exe.as_os_str().as_bytes()));
    script.extend(b" git-hook pre-receive\n");
    script
}

/// Single-quotes `word` for `sh`: inside single quotes nothing is special but the quote itself,
/// which is closed, escaped and reopened.
fn shell_quote(word: &[u8]) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in word {
        if byte == b'\'' {
            quoted.extend(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_script_execs_the_quoted_binary() {
        assert_eq!(
            hook_script(Path::new("/usr/local/bin/slipway")),
            b"#!/bin/sh\nexec '/usr/local/bin/slipway' git-hook pre-receive\n"
        );
        assert_eq!(
            hook_script(Path::new("/opt/it's $HOME/slip way")),
            b"#!/bin/sh\nexec '/opt/it'\\''s $HOME/slip way' git-hook pre-receive\n"
        );
    }
}
