//! `admin:nodes`, `admin:nodes:drain` and `admin:nodes:activate`: the swarm's nodes, for
//! operators of a server run with `--runtime swarm`.

use slipway_types::nodes::NodeView;

use crate::cli::Session;
use crate::table::{self, Table};

/// How much of a node id the table shows, as `docker node ls` does.
const SHORT_ID: usize = 12;

pub(crate) async fn list(session: &mut Session<'_>) -> anyhow::Result<()> {
    let nodes = session.client()?.admin_nodes().await?;
    if session.global.json {
        return session.print_json(&nodes);
    }
    session.print(&render(&nodes))
}

/// `action` is `drain` or `activate`.
pub(crate) async fn set(session: &mut Session<'_>, node: &str, action: &str) -> anyhow::Result<()> {
    let changed = session.client()?.admin_set_node(node, action).await?;
    if session.global.json {
        return session.print_json(&changed);
    }
    let name = format!("{} ({})", changed.hostname, short_id(&changed.id));
    let text = if action == "drain" {
        format!(
            "Draining {name}: Swarm moves its tasks to the other nodes; add-ons pinned to it wait. Undo with `slipway admin:nodes:activate {}`\n",
            changed.hostname
        )
    } else {
        format!("Activated {name}: it takes new tasks again\n")
    };
    session.print(&text)
}

fn render(nodes: &[NodeView]) -> String {
    let mut rows = Table::new(&[
        "ID",
        "HOSTNAME",
        "ROLE",
        "STATE",
        "AVAILABILITY",
        "ADDRESS",
        "TASKS",
        "LABELS",
    ]);
    for node in nodes {
        let role = if node.leader {
            format!("{} (leader)", node.role.as_str())
        } else {
            node.role.as_str().to_owned()
        };
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        rows.row(vec![
            short_id(&node.id).to_owned(),
            node.hostname.clone(),
            role,
            node.state.clone(),
            node.availability.as_str().to_owned(),
            table::or_dash((!node.addr.is_empty()).then(|| node.addr.clone())),
            node.tasks.to_string(),
            table::or_dash((!labels.is_empty()).then(|| labels.join(","))),
        ]);
    }
    rows.render()
}

fn short_id(id: &str) -> &str {
    id.get(..SHORT_ID).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use slipway_types::nodes::{NodeAvailability, NodeRole};

    use super::*;

    #[test]
    fn the_table_marks_the_leader_and_shortens_ids() {
        let nodes = [
            NodeView {
                id: "q9x2m4kd8w1pz7y3c5v6b0n1".to_owned(),
                hostname: "node-1".to_owned(),
                role: NodeRole::Manager,
                leader: true,
                state: "ready".to_owned(),
                availability: NodeAvailability::Active,
                addr: "10.0.0.1".to_owned(),
                labels: BTreeMap::from([
                    ("slipway.addons".to_owned(), "true".to_owned()),
                    ("zone".to_owned(), "a".to_owned()),
                ]),
                engine_version: "20.10.24".to_owned(),
                tasks: 4,
            },
            NodeView {
                id: "short".to_owned(),
                hostname: "node-2".to_owned(),
                role: NodeRole::Worker,
                leader: false,
                state: "down".to_owned(),
                availability: NodeAvailability::Drain,
                addr: String::new(),
                labels: BTreeMap::new(),
                engine_version: "20.10.24".to_owned(),
                tasks: 0,
            },
        ];
        assert_eq!(
            render(&nodes),
            "ID            HOSTNAME  ROLE              STATE  AVAILABILITY  ADDRESS   TASKS  LABELS\n\
             q9x2m4kd8w1p  node-1    manager (leader)  ready  active        10.0.0.1  4      slipway.addons=true,zone=a\n\
             short         node-2    worker            down   drain         -         0      -\n"
        );
    }
}
