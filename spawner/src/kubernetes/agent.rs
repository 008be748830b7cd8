//! Saving a node as an image on Kubernetes: the node agent on the pod's Kubernetes node reads
//! the container's writable layer there.

use super::KubernetesSpawner;
use crate::{NodeLayer, SpawnerError};

pub(super) async fn node_layer(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
    node: &str,
) -> Result<NodeLayer, SpawnerError> {
    let _ = (spawner, state, node);
    Err(SpawnerError::Unsupported {
        backend: "kubernetes",
        what: "save a node as an image yet",
    })
}

pub(super) async fn pause_node(
    spawner: &KubernetesSpawner,
    layer: &NodeLayer,
) -> Result<(), SpawnerError> {
    let _ = (spawner, layer);
    Ok(())
}

pub(super) async fn resume_node(
    spawner: &KubernetesSpawner,
    layer: &NodeLayer,
) -> Result<(), SpawnerError> {
    let _ = (spawner, layer);
    Ok(())
}
