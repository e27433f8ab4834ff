//! The swarm's nodes: `/v1/admin/nodes…` (admins only, `--runtime swarm` servers only).

use reqwest::Method;
use slipway_types::nodes::NodeView;

use super::{Client, ClientError};

impl Client {
    pub async fn admin_nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.call(Method::GET, &["v1", "admin", "nodes"]).await
    }

    /// `action` is `drain` or `activate`; returns the node as it is after the change.
    pub async fn admin_set_node(&self, node: &str, action: &str) -> Result<NodeView, ClientError> {
        self.call(Method::POST, &["v1", "admin", "nodes", node, action])
            .await
    }
}
