//! The state blob of a cluster: everything `poll`, `stop`, re-adoption and orphan reaping need,
//! with no API call.

use crate::{NodeInfo, SpawnerError};

/// What the `backend` field of every blob this backend writes says.
pub(super) const BACKEND: &str = "kubernetes";

/// The state blob of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ClusterState {
    /// Always [`BACKEND`].
    pub(super) backend: String,
    /// The namespace of every object of the cluster.
    pub(super) namespace: String,
    /// The cluster id (the `xiji.org/cluster` label).
    pub(super) cluster_id: String,
    /// The stem of the objects' names.
    pub(super) base: String,
    /// The owner object (a ConfigMap) that every other object names in its ownerReferences.
    pub(super) owner: String,
    /// Its uid: an owner of the same name made later is another cluster's.
    pub(super) owner_uid: String,
    /// The other objects, by name, for an explicit delete where no garbage collector runs.
    pub(super) objects: ObjectNames,
    /// node-0's URL.
    pub(super) url: String,
    /// Every node, node-0 first.
    pub(super) nodes: Vec<NodeState>,
}

/// The names of a cluster's objects besides its owner and pods.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ObjectNames {
    pub(super) secret: String,
    pub(super) service: String,
    pub(super) network_policy: String,
    /// The gang scheduler's PodGroup, if one was made.
    pub(super) pod_group: Option<String>,
}

/// One node of a cluster: its pod, where it runs and how the hub routes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct NodeState {
    /// `node-k`.
    pub(super) name: String,
    /// The pod's name.
    pub(super) pod: String,
    /// The pod's uid: a pod of the same name with another uid is not this node.
    pub(super) pod_uid: String,
    /// The pod's IP.
    pub(super) ip: String,
    /// The Kubernetes node the pod runs on.
    pub(super) host: String,
    /// `http://{ip}:{port}`.
    pub(super) url: String,
    pub(super) service_prefix: String,
    pub(super) oauth_client_id: Option<String>,
}

impl ClusterState {
    /// The blob's cluster; `None` for an empty blob (nothing started), an error for a blob this
    /// backend did not write.
    pub(super) fn from_blob(state: &serde_json::Value) -> Result<Option<Self>, SpawnerError> {
        let Some(parsed) = crate::state_blob::parse::<Self>(state)? else {
            return Ok(None);
        };
        if parsed.backend != BACKEND || parsed.cluster_id.is_empty() {
            return Err(SpawnerError::InvalidState(
                "not a kubernetes cluster state".into(),
            ));
        }
        Ok(Some(parsed))
    }

    pub(super) fn to_blob(&self) -> Result<serde_json::Value, SpawnerError> {
        serde_json::to_value(self)
            .map_err(|e| SpawnerError::InvalidState(format!("cannot encode the state: {e}")))
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

    fn state() -> ClusterState {
        ClusterState {
            backend: BACKEND.into(),
            namespace: "xiji".into(),
            cluster_id: "00ff00ff00ff".into(),
            base: "xiji-alice-00ff00ff00ff".into(),
            owner: "xiji-alice-00ff00ff00ff".into(),
            owner_uid: "6c1b0c3e-0000-4000-8000-000000000001".into(),
            objects: ObjectNames {
                secret: "xiji-alice-00ff00ff00ff-ssh".into(),
                service: "xiji-alice-00ff00ff00ff".into(),
                network_policy: "xiji-alice-00ff00ff00ff".into(),
                pod_group: None,
            },
            url: "http://10.1.0.7:8888".into(),
            nodes: vec![NodeState {
                name: "node-0".into(),
                pod: "xiji-alice-00ff00ff00ff-node-0".into(),
                pod_uid: "6c1b0c3e-0000-4000-8000-000000000002".into(),
                ip: "10.1.0.7".into(),
                host: "worker-1".into(),
                url: "http://10.1.0.7:8888".into(),
                service_prefix: "/user/alice/".into(),
                oauth_client_id: Some("jupyterhub-user-alice".into()),
            }],
        }
    }

    #[test]
    fn a_state_blob_round_trips_and_foreign_blobs_are_refused() {
        let blob = state().to_blob().unwrap();
        assert_eq!(blob["backend"], "kubernetes");
        assert_eq!(ClusterState::from_blob(&blob).unwrap(), Some(state()));
        assert_eq!(
            ClusterState::from_blob(&serde_json::json!({})).unwrap(),
            None
        );
        assert_eq!(
            ClusterState::from_blob(&serde_json::Value::Null).unwrap(),
            None
        );
        assert!(ClusterState::from_blob(&serde_json::json!({"pid": 3})).is_err());
        let mut docker = blob.clone();
        docker["backend"] = "docker".into();
        assert!(ClusterState::from_blob(&docker).is_err());
    }

    #[test]
    fn the_nodes_of_a_blob_are_what_the_hub_routes() {
        let nodes = state().node_infos();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].name, "node-0");
        assert_eq!(nodes[0].url, "http://10.1.0.7:8888");
        assert_eq!(nodes[0].service_prefix, "/user/alice/");
    }
}
