//! What the engine is asked to run, in Slipway's words rather than Docker's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Label keys every Slipway container carries; the reconciler finds its containers by them.
pub mod labels {
    pub const APP: &str = "slipway.app";
    pub const RELEASE: &str = "slipway.release";
    pub const PROCESS: &str = "slipway.process";
    pub const INDEX: &str = "slipway.index";
    /// `web`-style process containers are `process`; builds are `build`; one-offs `run`.
    pub const ROLE: &str = "slipway.role";
    /// Which Slipway installation owns the container: servers sharing a Docker engine leave
    /// each other's containers alone.
    pub const INSTANCE: &str = "slipway.instance";
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A file or folder on the host.
    Bind(PathBuf),
    /// A named engine volume, created if missing.
    Volume(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    /// Entrypoint override; empty keeps the image's.
    pub entrypoint: Vec<String>,
    /// Command; empty keeps the image's.
    pub cmd: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// The network to attach to; `None` is the engine's default bridge.
    pub network: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub memory_bytes: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub mounts: Vec<Mount>,
    /// Gives the process a terminal, for interactive one-off runs; its output is then one
    /// raw stream.
    #[serde(default)]
    pub tty: bool,
    /// Keeps stdin open for an attached client, which closes it by closing its input.
    #[serde(default)]
    pub stdin_open: bool,
}
