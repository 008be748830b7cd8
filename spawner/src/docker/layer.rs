//! A node's writable layer, for saving the node as an image: where Docker keeps the container's
//! changes (overlay2's upper directory), and pausing the container while they are read.

use std::path::PathBuf;

use bollard::container::InspectContainerOptions;

use super::state::ClusterState;
use super::DockerSpawner;
use crate::{LayerLocation, NodeLayer, SpawnerError};

impl DockerSpawner {
    /// The writable layer of `node` of the cluster recorded in `state`.
    pub(super) async fn layer_of(
        &self,
        state: &serde_json::Value,
        node: &str,
    ) -> Result<NodeLayer, SpawnerError> {
        let cluster = ClusterState::from_blob(state)?;
        let nodes = cluster.as_ref().map_or(&[][..], |c| c.nodes.as_slice());
        let Some(found) = nodes.iter().find(|n| n.name == node) else {
            return Err(SpawnerError::NoSuchNode {
                node: node.to_owned(),
                nodes: nodes.iter().map(|n| n.name.clone()).collect(),
            });
        };
        let not_running = |reason: &str| SpawnerError::NodeNotRunning {
            node: node.to_owned(),
            reason: reason.to_owned(),
        };
        let inspected = match self
            .docker
            .inspect_container(&found.container_id, None::<InspectContainerOptions>)
            .await
        {
            Ok(inspected) => inspected,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(not_running("its container is gone")),
            Err(e) => {
                return Err(SpawnerError::docker(
                    format!("inspecting {node}'s container"),
                    e,
                ))
            }
        };
        let running = inspected
            .state
            .as_ref()
            .and_then(|s| s.running)
            .unwrap_or(false);
        if !running {
            return Err(not_running("its container has stopped"));
        }
        let driver = inspected.graph_driver.ok_or_else(|| {
            SpawnerError::InvalidState(format!(
                "{node}'s container has no GraphDriver (a containerd image store?); only \
                 overlay2 layers can be saved"
            ))
        })?;
        if driver.name != "overlay2" && driver.name != "overlay" {
            return Err(SpawnerError::InvalidState(format!(
                "{node}'s container uses the storage driver {:?}; only overlay2 layers can be \
                 saved",
                driver.name
            )));
        }
        let upper = driver
            .data
            .get("UpperDir")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                SpawnerError::InvalidState(format!(
                    "{node}'s container has no GraphDriver.Data.UpperDir"
                ))
            })?;
        Ok(NodeLayer {
            node: node.to_owned(),
            instance_id: found.container_id.clone(),
            base_image: inspected.config.and_then(|c| c.image).unwrap_or_default(),
            location: LayerLocation::HostDir(PathBuf::from(upper)),
        })
    }

    /// `docker pause` of a node's container.
    pub(super) async fn pause_container(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        self.docker
            .pause_container(&layer.instance_id)
            .await
            .map_err(|e| SpawnerError::docker(format!("pausing {}", layer.node), e))
    }

    /// `docker unpause` of a node's container; one that is not paused is left as it is.
    pub(super) async fn unpause_container(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        match self.docker.unpause_container(&layer.instance_id).await {
            Ok(()) => Ok(()),
            // 409: the container is not paused.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(SpawnerError::docker(format!("resuming {}", layer.node), e)),
        }
    }
}
