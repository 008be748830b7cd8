//! The state blob of a cluster: everything `poll`, `stop` and re-adoption need.

use crate::{NodeInfo, SpawnerError};

/// The state blob of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ClusterState {
    pub(super) backend: String,
    pub(super) cluster_id: String,
    pub(super) network_id: String,
    pub(super) network_name: String,
    /// node-0's URL.
    pub(super) url: String,
    pub(super) nodes: Vec<NodeState>,
    pub(super) storage_enforced: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct NodeState {
    pub(super) name: String,
    pub(super) container_id: String,
    pub(super) container_name: String,
    pub(super) url: String,
    pub(super) service_prefix: String,
    pub(super) oauth_client_id: Option<String>,
}

impl ClusterState {
    pub(super) fn from_blob(state: &serde_json::Value) -> Result<Option<Self>, SpawnerError> {
        let Some(parsed) = crate::state_blob::parse::<Self>(state)? else {
            return Ok(None);
        };
        if parsed.backend != "docker" || parsed.cluster_id.is_empty() {
            return Err(SpawnerError::InvalidState(
                "not a docker cluster state".into(),
            ));
        }
        Ok(Some(parsed))
    }

    pub(super) fn node_infos(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|n| NodeInfo {
                name: n.name.clone(),
                url: n.url.clone(),
                service_prefix: n.service_prefix.clone(),
                oauth_client_id: n.oauth_client_id.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_blob_round_trips_and_foreign_blobs_are_refused() {
        let state = ClusterState {
            backend: "docker".into(),
            cluster_id: "00ff00ff00ff".into(),
            network_id: "net".into(),
            network_name: "xiji-alice-00ff00ff00ff".into(),
            url: "http://172.18.0.2:8888".into(),
            nodes: vec![NodeState {
                name: "node-0".into(),
                container_id: "c0".into(),
                container_name: "xiji-alice-00ff00ff00ff-node-0".into(),
                url: "http://172.18.0.2:8888".into(),
                service_prefix: "/user/alice/".into(),
                oauth_client_id: Some("jupyterhub-user-alice".into()),
            }],
            storage_enforced: false,
        };
        let blob = serde_json::to_value(&state).unwrap();
        assert_eq!(ClusterState::from_blob(&blob).unwrap(), Some(state));
        assert_eq!(
            ClusterState::from_blob(&blob)
                .unwrap()
                .map(|s| s.cluster_id)
                .as_deref(),
            Some("00ff00ff00ff")
        );
        assert_eq!(
            ClusterState::from_blob(&serde_json::json!({})).unwrap(),
            None
        );
        assert!(ClusterState::from_blob(&serde_json::json!({"pid": 3})).is_err());
    }
}
