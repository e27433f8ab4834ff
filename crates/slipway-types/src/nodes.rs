//! The nodes of a Docker Swarm as `admin:nodes` shows them: `GET /v1/admin/nodes` and the
//! drain and activate changes. Only a server run with `--runtime swarm` has nodes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A manager can create services and change nodes; a worker only runs tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    Manager,
    Worker,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Manager => "manager",
            NodeRole::Worker => "worker",
        }
    }
}

/// Whether Swarm places tasks on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAvailability {
    /// New tasks may be placed here.
    Active,
    /// Running tasks stay, no new ones come.
    Pause,
    /// Tasks move to other nodes, none are placed here.
    Drain,
}

impl NodeAvailability {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAvailability::Active => "active",
            NodeAvailability::Pause => "pause",
            NodeAvailability::Drain => "drain",
        }
    }
}

impl fmt::Display for NodeAvailability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of the swarm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Swarm's node id, in full (the CLI shows its first 12 characters).
    pub id: String,
    pub hostname: String,
    pub role: NodeRole,
    /// The manager leading the swarm's Raft group.
    pub leader: bool,
    /// `ready`, `down`, `unknown` or `disconnected`, as Swarm says.
    pub state: String,
    pub availability: NodeAvailability,
    /// Where the node is reached; web tasks' host-mode ports are published there.
    pub addr: String,
    pub labels: BTreeMap<String, String>,
    pub engine_version: String,
    /// Tasks of this installation's services running on the node now.
    pub tasks: u32,
}
