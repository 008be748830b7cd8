//! The Kubernetes nodes as compute nodes: what they have, what Xiji's pods use, which compute
//! pool each is in (the node label [`KubernetesConfig::pool_label`]).

use super::{KubernetesConfig, KubernetesSpawner};
use crate::{Capacity, ComputeNode, SpawnerError};

/// The nodes and Xiji's use of them, refreshed in the background.
pub(super) struct Inventory {}

impl Inventory {
    pub(super) async fn start(
        client: kube::Client,
        cfg: KubernetesConfig,
    ) -> Result<Self, SpawnerError> {
        let _ = (client, cfg);
        Ok(Self {})
    }
}

pub(super) fn capacity(spawner: &KubernetesSpawner) -> Capacity {
    let _ = &spawner.inventory;
    Capacity::default()
}

pub(super) async fn compute_nodes(
    spawner: &KubernetesSpawner,
) -> Result<Vec<ComputeNode>, SpawnerError> {
    let _ = (&spawner.client, &spawner.cfg);
    Ok(Vec::new())
}

pub(super) async fn set_node_pool(
    spawner: &KubernetesSpawner,
    node: &str,
    pool: Option<&str>,
) -> Result<(), SpawnerError> {
    let _ = (spawner, node, pool);
    Err(SpawnerError::Unsupported {
        backend: "kubernetes",
        what: "move a machine between compute pools yet",
    })
}
