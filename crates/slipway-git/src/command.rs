//! Running `git` with an environment the caller controls.

use std::path::Path;
use std::process::{Output, Stdio};

use tokio::process::Command;

use crate::GitError;

/// Variables that point git at a repository, an object store or extra configuration. The
/// server's own environment must not leak them into the git processes it starts (a server run
/// from inside a git hook would otherwise act on that hook's repository); quarantine variables
/// are passed explicitly by the callers that need them.
pub(crate) const LOCATION_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_IMPLICIT_WORK_TREE",
];

/// A `git` command on `git_dir` (when given) with the location variables removed.
pub(crate) fn git(git_dir: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    for var in LOCATION_VARS {
        command.env_remove(var);
    }
    if let Some(dir) = git_dir {
        command.arg("--git-dir").arg(dir);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// The command line, for error messages.
pub(crate) fn describe(command: &Command) -> String {
    let command = command.as_std();
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `command` to completion, whatever its exit status.
pub(crate) async fn output(command: &mut Command) -> Result<Output, GitError> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| GitError::Spawn {
            command: describe(command),
            source,
        })
}

/// Runs `command` to completion and returns its stdout; a non-zero exit is an error carrying
/// git's stderr, which names the problem better than we could.
pub(crate) async fn run(mut command: Command) -> Result<Vec<u8>, GitError> {
    let output = output(&mut command).await?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(failed(&command, &output))
    }
}

/// The error for a command that exited non-zero.
pub(crate) fn failed(command: &Command, output: &Output) -> GitError {
    GitError::Command {
        command: describe(command),
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    }
}
