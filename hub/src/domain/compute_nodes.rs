//! Compute nodes and compute pools: the machines the backend runs clusters on, as the
//! administrators see and manage them.
//!
//! The machines and which pool each is in come from the backend
//! ([`Spawner::compute_nodes`](spawner::Spawner::compute_nodes)): a Kubernetes node is in a pool
//! by its label, the Docker and local backends' one host is always in `default`. The pools
//! themselves — names an administrator defined, with a description — are stored
//! (`compute_pools`). Adding a node by its name to a defined pool labels it
//! ([`Spawner::set_node_pool`](spawner::Spawner::set_node_pool)); removing it takes the label
//! away: no new cluster is placed there, running ones keep going. A pool machines are in cannot
//! be removed.
//!
//! Admission needs nothing from here: the backend's [`capacity`](spawner::Spawner::capacity) is
//! what its schedulable nodes can hand out, so putting a node into a pool or taking it out
//! changes the capacity clusters are admitted against.

use spawner::{is_pool_name, ComputeNode, SpawnerError};

use super::{HubError, HubResult, Services};
use crate::clock;
use crate::db::{ComputePoolRow, DbError};

/// Longest description of a pool, in characters.
const MAX_DESCRIPTION: usize = 500;
/// Longest machine name (a Kubernetes node name is a DNS subdomain).
const MAX_NODE_NAME: usize = 253;

/// Where a machine stands for new clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// In a pool, ready, not cordoned: new clusters may be placed on it.
    Ready,
    /// In a pool and ready, but cordoned (`kubectl cordon`): no new clusters.
    Cordoned,
    /// In a pool but not ready (its kubelet does not report `Ready`).
    NotReady,
    /// In no pool: Xiji places no new cluster there.
    NotManaged,
}

impl NodeStatus {
    /// The status of a machine as the backend reports it.
    pub fn of(node: &ComputeNode) -> NodeStatus {
        let ready = node
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status == "True");
        match (&node.pool, ready, node.schedulable) {
            (None, _, _) => NodeStatus::NotManaged,
            (Some(_), false, _) => NodeStatus::NotReady,
            (Some(_), true, false) => NodeStatus::Cordoned,
            (Some(_), true, true) => NodeStatus::Ready,
        }
    }

    /// The word the API and the pages use.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Ready => "ready",
            NodeStatus::Cordoned => "cordoned",
            NodeStatus::NotReady => "not_ready",
            NodeStatus::NotManaged => "not_managed",
        }
    }
}

/// A machine with where it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// What the backend reports.
    pub node: ComputeNode,
    /// Where it stands for new clusters.
    pub status: NodeStatus,
    /// Whether its pool is one the administrators defined (a label set by hand may name
    /// another).
    pub pool_defined: bool,
}

/// A defined pool with the machines in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolView {
    /// The stored pool.
    pub pool: ComputePoolRow,
    /// The machines in it, by name.
    pub nodes: Vec<String>,
    /// Xiji's cluster nodes running on those machines.
    pub xiji_nodes: u32,
}

/// The machines and the pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// Every machine the backend reports, by name.
    pub nodes: Vec<NodeView>,
    /// Every defined pool, by name.
    pub pools: Vec<PoolView>,
}

/// An administrator's request to put a machine into a pool.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddNode {
    /// The machine's name (the Kubernetes node name).
    pub name: Option<String>,
    /// A defined pool.
    pub pool: Option<String>,
}

/// An administrator's new pool.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComputePool {
    /// Its name: a label value.
    pub name: Option<String>,
    /// What it is for.
    pub description: Option<String>,
}

/// A backend's refusal as the administrator's 4xx; other failures are the hub's 500.
fn backend_error(e: SpawnerError) -> HubError {
    match e {
        SpawnerError::NoSuchNode { node, nodes } if nodes.is_empty() => {
            HubError::NotFound(format!("No compute node {node}: the backend reports none"))
        }
        SpawnerError::NoSuchNode { node, nodes } => HubError::NotFound(format!(
            "No compute node {node}; the backend's nodes are: {}",
            nodes.join(", ")
        )),
        SpawnerError::Unsupported { backend, .. } => HubError::Conflict(format!(
            "The {backend} backend runs clusters on its one host, which is always in the pool \
             \"default\": no machine can be added or taken out"
        )),
        SpawnerError::Rejected(message) => HubError::BadRequest(message),
        other => HubError::Spawner(format!("compute nodes: {other}")),
    }
}

fn check_pool_name(name: &str) -> HubResult<()> {
    if is_pool_name(name) {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid compute pool name {name:?}: use 1 to 63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

/// The machines the backend reports now.
async fn machines(hub: &Services) -> HubResult<Vec<ComputeNode>> {
    hub.spawner.compute_nodes().await.map_err(backend_error)
}

/// The machine `name` among `nodes`, or a 404 naming the others.
fn find(nodes: Vec<ComputeNode>, name: &str) -> HubResult<ComputeNode> {
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();
    nodes.into_iter().find(|n| n.name == name).ok_or_else(|| {
        backend_error(SpawnerError::NoSuchNode {
            node: name.to_owned(),
            nodes: names,
        })
    })
}

fn view(node: ComputeNode, pools: &[ComputePoolRow]) -> NodeView {
    NodeView {
        status: NodeStatus::of(&node),
        pool_defined: node
            .pool
            .as_ref()
            .is_some_and(|p| pools.iter().any(|row| row.name == *p)),
        node,
    }
}

/// Every machine with its status, and every defined pool with its machines.
pub async fn overview(hub: &Services) -> HubResult<Overview> {
    let rows = hub.store.list_compute_pools().await?;
    let nodes: Vec<NodeView> = machines(hub)
        .await?
        .into_iter()
        .map(|n| view(n, &rows))
        .collect();
    let pools = rows
        .into_iter()
        .map(|pool| {
            let members: Vec<&NodeView> = nodes
                .iter()
                .filter(|n| n.node.pool.as_deref() == Some(pool.name.as_str()))
                .collect();
            PoolView {
                nodes: members.iter().map(|n| n.node.name.clone()).collect(),
                xiji_nodes: members.iter().map(|n| n.node.xiji_nodes).sum(),
                pool,
            }
        })
        .collect();
    Ok(Overview { nodes, pools })
}

/// One machine with its status.
pub async fn node(hub: &Services, name: &str) -> HubResult<NodeView> {
    let rows = hub.store.list_compute_pools().await?;
    Ok(view(find(machines(hub).await?, name)?, &rows))
}

/// Puts the machine `name` into the defined pool `pool` (nothing to do when it is there).
pub async fn add_node(hub: &Services, request: AddNode) -> HubResult<NodeView> {
    let name = request.name.unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.len() > MAX_NODE_NAME {
        return Err(HubError::BadRequest(format!(
            "Give the compute node's name (1 to {MAX_NODE_NAME} characters), as the backend \
             lists it"
        )));
    }
    let pool = request.pool.unwrap_or_default().trim().to_owned();
    if pool.is_empty() {
        return Err(HubError::BadRequest(
            "Name the compute pool to put the node into".into(),
        ));
    }
    check_pool_name(&pool)?;
    if hub.store.compute_pool(&pool).await?.is_none() {
        return Err(HubError::NotFound(format!(
            "No compute pool {pool}: define it first"
        )));
    }
    let current = find(machines(hub).await?, &name)?;
    if current.pool.as_deref() != Some(pool.as_str()) {
        hub.spawner
            .set_node_pool(&name, Some(&pool))
            .await
            .map_err(backend_error)?;
        tracing::info!(node = %name, pool = %pool, "compute node put into a pool");
    }
    node(hub, &name).await
}

/// Takes the machine `name` out of Xiji's pools: no new cluster is placed there, running ones
/// keep going (nothing to do when it is in none).
pub async fn remove_node(hub: &Services, name: &str) -> HubResult<()> {
    let current = find(machines(hub).await?, name)?;
    if current.pool.is_none() {
        return Ok(());
    }
    hub.spawner
        .set_node_pool(name, None)
        .await
        .map_err(backend_error)?;
    tracing::info!(node = %name, "compute node taken out of Xiji's pools");
    Ok(())
}

/// Defines a pool.
pub async fn create_pool(hub: &Services, request: NewComputePool) -> HubResult<ComputePoolRow> {
    let name = request.name.unwrap_or_default().trim().to_owned();
    check_pool_name(&name)?;
    let description = request.description.unwrap_or_default().trim().to_owned();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(HubError::BadRequest(format!(
            "A compute pool's description has at most {MAX_DESCRIPTION} characters"
        )));
    }
    match hub
        .store
        .create_compute_pool(&name, &description, clock::now())
        .await
    {
        Ok(row) => {
            tracing::info!(pool = %name, "compute pool defined");
            Ok(row)
        }
        Err(DbError::Conflict) => Err(HubError::Conflict(format!(
            "A compute pool named {name} exists already"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Removes a pool no machine is in.
pub async fn delete_pool(hub: &Services, name: &str) -> HubResult<()> {
    if hub.store.compute_pool(name).await?.is_none() {
        return Err(HubError::NotFound(format!("No compute pool {name}")));
    }
    let members: Vec<String> = machines(hub)
        .await?
        .into_iter()
        .filter(|n| n.pool.as_deref() == Some(name))
        .map(|n| n.name)
        .collect();
    if !members.is_empty() {
        return Err(HubError::Conflict(format!(
            "The compute pool {name} holds {}: take {} out of it first",
            members.join(", "),
            if members.len() == 1 { "it" } else { "them" }
        )));
    }
    hub.store.delete_compute_pool(name).await?;
    tracing::info!(pool = %name, "compute pool removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spawner::NodeCondition;

    fn machine(pool: Option<&str>, ready: &str, schedulable: bool) -> ComputeNode {
        ComputeNode {
            name: "n".into(),
            pool: pool.map(str::to_owned),
            schedulable,
            conditions: vec![NodeCondition {
                kind: "Ready".into(),
                status: ready.into(),
                ..NodeCondition::default()
            }],
            ..ComputeNode::default()
        }
    }

    #[test]
    fn a_machines_status_says_whether_new_clusters_may_go_there_and_why_not() {
        assert_eq!(
            NodeStatus::of(&machine(Some("gpu"), "True", true)),
            NodeStatus::Ready
        );
        assert_eq!(
            NodeStatus::of(&machine(Some("gpu"), "True", false)),
            NodeStatus::Cordoned
        );
        assert_eq!(
            NodeStatus::of(&machine(Some("gpu"), "Unknown", false)),
            NodeStatus::NotReady
        );
        assert_eq!(
            NodeStatus::of(&machine(None, "True", false)),
            NodeStatus::NotManaged
        );
    }

    #[test]
    fn backend_refusals_are_the_administrators_4xx_and_failures_stay_500s() {
        let missing = backend_error(SpawnerError::NoSuchNode {
            node: "node-x".into(),
            nodes: vec!["node-a".into(), "node-b".into()],
        });
        assert!(
            matches!(&missing, HubError::NotFound(m) if m.contains("node-x") && m.contains("node-a, node-b")),
            "{missing:?}"
        );
        let unsupported = backend_error(SpawnerError::Unsupported {
            backend: "docker",
            what: "move a machine between compute pools",
        });
        assert!(
            matches!(&unsupported, HubError::Conflict(m) if m.contains("docker") && m.contains("default")),
            "{unsupported:?}"
        );
        assert!(matches!(
            backend_error(SpawnerError::Rejected("bad pool".into())),
            HubError::BadRequest(_)
        ));
        assert!(matches!(
            backend_error(SpawnerError::Config("x".into())),
            HubError::Spawner(_)
        ));
    }

    #[test]
    fn pool_names_are_label_values() {
        assert!(check_pool_name("gpu-a100").is_ok());
        for bad in ["", "GPU", "-gpu", "gpu-", "gpu_a100", &"a".repeat(64)] {
            assert!(
                matches!(check_pool_name(bad), Err(HubError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
