use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("could not {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{0}` is not a full hexadecimal object id")]
    InvalidObjectId(String),
    #[error("`{0}` is not a ref name under refs/")]
    InvalidRefName(String),
    #[error("ref update line `{0}` is not `<old> <new> <ref>`")]
    InvalidRefUpdate(String),
    #[error("git http-backend sent an invalid CGI header `{0}`")]
    InvalidCgiHeader(String),
    #[error("hook socket `{0}` is already served by a running process")]
    SocketInUse(PathBuf),
    #[error("invalid pre-receive hook request: {0}")]
    HookRequest(String),
    #[error("could not send a line to the pusher: {0}")]
    Say(#[source] io::Error),
    #[error("the hook listener has stopped accepting pushes")]
    ListenerClosed,
}
