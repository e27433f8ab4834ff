#![doc = include_str!("../README.md")]

mod instance;
mod job;
mod postgres;
mod provisioner;
mod redis;
mod service;

use std::io;

use slipway_engine::EngineError;

pub use instance::{
    ADDON_KIND_LABEL, ADDON_LABEL, AddonImages, AddonInstance, AddonKind, ROLE_ADDON,
    ROLE_ADDON_JOB,
};
pub use provisioner::Provisioner;

/// What `Provisioner::status` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddonStatus {
    pub running: bool,
    /// The server's version, e.g. `17.5` or `8.0.2`; `None` while it is not running.
    pub version: Option<String>,
    /// Postgres: the size of all its databases. Redis: the size of its append-only file.
    pub size_bytes: Option<u64>,
    /// Client connections other than the one asking.
    pub connections: Option<u32>,
}

/// Errors name the add-on as `<app>/<name>` and never contain its password.
#[derive(Debug, thiserror::Error)]
pub enum AddonError {
    #[error("add-on kind `{0}` is unknown: use postgres or redis")]
    UnknownKind(String),
    #[error(
        "add-on name `{0}` is invalid: use 1 to 30 lowercase letters, digits and dashes, starting with a letter"
    )]
    InvalidName(String),
    #[error("add-on name `{name}` is too long for app `{app}`: use at most {max} characters")]
    NameTooLong {
        name: String,
        app: String,
        max: usize,
    },
    #[error("add-on `{addon}` already has a container `{container}`")]
    AlreadyExists { addon: String, container: String },
    #[error(
        "add-on image `{image}` is missing: build it with `slipway stack:build` or point the server at another image"
    )]
    ImageMissing { image: String },
    #[error("{operation} is not supported for {kind} add-on `{addon}`")]
    Unsupported {
        addon: String,
        kind: AddonKind,
        operation: &'static str,
    },
    #[error(
        "add-on `{addon}` exited while starting (exit code {code}); its last output:\n{output}"
    )]
    Exited {
        addon: String,
        code: i64,
        output: String,
    },
    #[error("add-on `{addon}` did not accept connections within {seconds} s: {reason}")]
    NotReady {
        addon: String,
        seconds: u64,
        reason: String,
    },
    #[error("{job} of add-on `{addon}` failed (exit code {code}): {output}")]
    JobFailed {
        addon: String,
        job: &'static str,
        code: i64,
        output: String,
    },
    #[error("{job} of add-on `{addon}` did not finish within {seconds} s")]
    JobTimedOut {
        addon: String,
        job: &'static str,
        seconds: u64,
    },
    #[error(
        "add-on `{addon}` cannot run as a swarm service: the engine is not a swarm manager (run `docker swarm init`)"
    )]
    NoSwarm { addon: String },
    #[error("add-on `{addon}` answered unexpectedly: {message}")]
    Protocol { addon: String, message: String },
    #[error("generating the TLS certificate of add-on `{addon}`: {message}")]
    Certificate { addon: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("add-on `{addon}`: {source}")]
    Engine {
        addon: String,
        #[source]
        source: EngineError,
    },
}
