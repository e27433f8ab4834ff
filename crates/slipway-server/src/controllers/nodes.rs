//! The swarm's nodes, `/v1/admin/nodes…`: list them with this installation's tasks on each,
//! drain one before maintenance and activate it again after. The route table restricts all of
//! it to admins; with `--runtime docker` there are no nodes and every call says so.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use slipway_engine::{Availability, NodeInfo, NodeRole, Swarm};
use slipway_types::nodes::{NodeAvailability, NodeRole as ViewRole, NodeView};

use crate::app::{AppState, Platform};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};

pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<NodeView>>> {
    let swarm = swarm(&state)?;
    Ok(Json(views(&state, swarm.as_ref()).await?))
}

/// Moves every task off the node and places no new ones there: Swarm starts replacements on
/// the other nodes. Add-ons pinned to the node wait until it is active again.
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<NodeView>> {
    set_availability(
        &state,
        &caller,
        &node,
        Availability::Drain,
        "admin.nodes.drain",
    )
    .await
}

/// Undoes a drain: the node takes new tasks again (Swarm does not move running ones back).
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<NodeView>> {
    set_availability(
        &state,
        &caller,
        &node,
        Availability::Active,
        "admin.nodes.activate",
    )
    .await
}

async fn set_availability(
    state: &AppState,
    caller: &Caller,
    name: &str,
    availability: Availability,
    action: &str,
) -> ApiResult<Json<NodeView>> {
    let swarm = swarm(state)?;
    let nodes = swarm.nodes().await.map_err(ApiError::internal)?;
    let node = find_node(&nodes, name)?;
    swarm
        .set_node_availability(&node.id, availability)
        .await
        .map_err(ApiError::internal)?;
    state
        .audit(caller, action, &node.hostname, Some(&node.id))
        .await;
    let id = node.id.clone();
    views(state, swarm.as_ref())
        .await?
        .into_iter()
        .find(|view| view.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("node `{name}` left the swarm")))
}

fn swarm(state: &Platform) -> ApiResult<std::sync::Arc<dyn Swarm>> {
    state
        .swarm
        .clone()
        .ok_or_else(|| ApiError::conflict("nodes exist only with --runtime swarm"))
}

async fn views(state: &Platform, swarm: &dyn Swarm) -> ApiResult<Vec<NodeView>> {
    let nodes = swarm.nodes().await.map_err(ApiError::internal)?;
    let tasks = state.tasks_per_node(swarm).await?;
    Ok(nodes
        .into_iter()
        .map(|node| {
            let running = tasks.get(&node.id).copied().unwrap_or(0);
            view(node, running)
        })
        .collect())
}

fn view(node: NodeInfo, tasks: u32) -> NodeView {
    NodeView {
        role: match node.role {
            NodeRole::Manager => ViewRole::Manager,
            NodeRole::Worker => ViewRole::Worker,
        },
        availability: match node.availability {
            Availability::Active => NodeAvailability::Active,
            Availability::Pause => NodeAvailability::Pause,
            Availability::Drain => NodeAvailability::Drain,
        },
        id: node.id,
        hostname: node.hostname,
        leader: node.leader,
        state: node.state,
        addr: node.addr,
        labels: node.labels,
        engine_version: node.engine_version,
        tasks,
    }
}

/// The node `name` names, as Docker's CLI reads it: its id, its hostname, or a prefix of
/// exactly one node's id.
fn find_node<'a>(nodes: &'a [NodeInfo], name: &str) -> ApiResult<&'a NodeInfo> {
    let not_found = || {
        ApiError::not_found(format!(
            "no node `{name}` in the swarm: `slipway admin:nodes` lists them"
        ))
    };
    if name.is_empty() {
        return Err(not_found());
    }
    if let Some(node) = nodes.iter().find(|node| node.id == name) {
        return Ok(node);
    }
    let by_hostname: Vec<&NodeInfo> = nodes.iter().filter(|n| n.hostname == name).collect();
    match by_hostname[..] {
        [node] => return Ok(node),
        [] => {}
        _ => {
            return Err(ApiError::conflict(format!(
                "hostname `{name}` names {} nodes: use the node's id",
                by_hostname.len()
            )));
        }
    }
    let by_prefix: Vec<&NodeInfo> = nodes.iter().filter(|n| n.id.starts_with(name)).collect();
    match by_prefix[..] {
        [node] => Ok(node),
        [] => Err(not_found()),
        _ => Err(ApiError::conflict(format!(
            "node id prefix `{name}` matches {} nodes: give more of the id",
            by_prefix.len()
        ))),
    }
}

impl Platform {
    /// Running tasks of this installation's services (apps' processes, add-ons, one-off runs)
    /// by node id: the services carrying an app's labels, this installation's included.
    /// Tasks that are starting or shutting down do not count.
    pub async fn tasks_per_node(&self, swarm: &dyn Swarm) -> ApiResult<BTreeMap<String, u32>> {
        let mut counts = BTreeMap::new();
        for app in self.store.apps().await? {
            let labels = self.deployer.app_labels(&app.name);
            let filter: Vec<(&str, &str)> = labels
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            let services = swarm
                .list_services(&filter)
                .await
                .map_err(ApiError::internal)?;
            for service in services {
                let tasks = swarm
                    .tasks(&service.name)
                    .await
                    .map_err(ApiError::internal)?;
                for task in tasks {
                    if task.serving() {
                        *counts.entry(task.node_id).or_insert(0) += 1;
                    }
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, hostname: &str) -> NodeInfo {
        NodeInfo {
            id: id.to_owned(),
            hostname: hostname.to_owned(),
            role: NodeRole::Worker,
            leader: false,
            state: "ready".to_owned(),
            availability: Availability::Active,
            addr: "10.0.0.1".to_owned(),
            labels: BTreeMap::new(),
            engine_version: "20.10.24".to_owned(),
        }
    }

    #[test]
    fn nodes_are_found_by_id_hostname_or_unique_id_prefix() {
        let nodes = [
            node("abc123", "one"),
            node("abd456", "two"),
            node("two", "three"),
        ];
        assert_eq!(find_node(&nodes, "abc123").unwrap().hostname, "one");
        assert_eq!(find_node(&nodes, "one").unwrap().id, "abc123");
        assert_eq!(find_node(&nodes, "abd").unwrap().hostname, "two");
        // An exact id wins over a hostname.
        assert_eq!(find_node(&nodes, "two").unwrap().hostname, "three");
        let ambiguous = find_node(&nodes, "ab").unwrap_err();
        assert!(ambiguous.message().contains("matches 2 nodes"));
        let missing = find_node(&nodes, "zzz").unwrap_err();
        assert_eq!(
            missing.message(),
            "no node `zzz` in the swarm: `slipway admin:nodes` lists them"
        );
        assert!(find_node(&nodes, "").is_err());
    }

    #[test]
    fn a_hostname_shared_by_two_nodes_needs_an_id() {
        let nodes = [node("a1", "same"), node("b2", "same")];
        let error = find_node(&nodes, "same").unwrap_err();
        assert!(
            error.message().contains("names 2 nodes"),
            "{}",
            error.message()
        );
        assert_eq!(find_node(&nodes, "b2").unwrap().id, "b2");
    }
}
