//! The `kubernetes` backend: a server is a *virtual cluster* of N pods in one namespace.
//!
//! (Module documentation to be completed with the backend: what a cluster is, start all or
//! nothing with gang admission, how the hub uses it.)

mod agent;
mod config;
mod nodes;
mod objects;
mod runtime;
mod volumes;

use std::collections::HashSet;
use std::time::Duration;

pub use config::{ApiAccess, KubernetesConfig, Toleration, VolumeMapping, VolumeSource};

use crate::{
    Capabilities, Capacity, ClusterRequest, ClusterResources, ComputeNode, NodeInfo, NodeLayer,
    NodeUsage, ProgressSender, ResourceLimits, SpawnSpec, Spawner, SpawnerError, Started,
};

/// Label of every object: the hub instance ([`KubernetesConfig::instance`]).
pub const LABEL_HUB: &str = "xiji.org/hub";
/// Label of every object: the user's name (escaped to a label value).
pub const LABEL_USER: &str = "xiji.org/user";
/// Label of every object: the server's name (escaped; empty for the default server).
pub const LABEL_SERVER: &str = "xiji.org/server";
/// Label of every object: the cluster id.
pub const LABEL_CLUSTER: &str = "xiji.org/cluster";
/// Label of pods: the node's name, `node-k`.
pub const LABEL_NODE: &str = "xiji.org/node";

/// What [`KubernetesSpawner::reap_orphans`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// The cluster ids whose objects were removed.
    pub clusters: Vec<String>,
}

/// Runs virtual clusters on Kubernetes. See the [module docs](self).
pub struct KubernetesSpawner {
    cfg: KubernetesConfig,
    client: kube::Client,
    /// The Kubernetes nodes and what Xiji's pods use of them, kept fresh in the background
    /// (for [`Spawner::capacity`], which cannot wait on the API server).
    inventory: nodes::Inventory,
}

impl KubernetesSpawner {
    /// Connects to the API server as [`KubernetesConfig::api`] says and checks that it answers.
    pub async fn connect(cfg: KubernetesConfig) -> Result<Self, SpawnerError> {
        let client = runtime::client(&cfg.api).await?;
        let inventory = nodes::Inventory::start(client.clone(), cfg.clone()).await?;
        Ok(Self {
            cfg,
            client,
            inventory,
        })
    }

    /// The cluster id recorded in a state blob (`None` for an empty or foreign blob).
    pub fn cluster_id_from_state(state: &serde_json::Value) -> Option<String> {
        runtime::cluster_id_from_state(state)
    }

    /// Removes every object labelled by this hub instance whose cluster id is not in `known`.
    pub async fn reap_orphans(&self, known: &HashSet<String>) -> Result<ReapReport, SpawnerError> {
        runtime::reap_orphans(self, known).await
    }
}

#[async_trait::async_trait]
impl Spawner for KubernetesSpawner {
    fn backend_name(&self) -> &'static str {
        "kubernetes"
    }

    fn capabilities(&self) -> Capabilities {
        runtime::capabilities(self)
    }

    async fn validate(&self, request: &ClusterRequest) -> Result<ClusterResources, SpawnerError> {
        runtime::validate(self, request).await
    }

    async fn start(
        &self,
        spec: &SpawnSpec,
        progress: ProgressSender,
    ) -> Result<Started, SpawnerError> {
        runtime::start(self, spec, progress).await
    }

    async fn poll(&self, state: &serde_json::Value) -> Result<Option<i32>, SpawnerError> {
        runtime::poll(self, state).await
    }

    async fn stop(&self, state: &serde_json::Value, grace: Duration) -> Result<(), SpawnerError> {
        runtime::stop(self, state, grace).await
    }

    fn url_from_state(&self, state: &serde_json::Value) -> Option<String> {
        runtime::url_from_state(state)
    }

    fn resource_limits(&self) -> Option<ResourceLimits> {
        Some(runtime::limits(self))
    }

    fn nodes_from_state(&self, state: &serde_json::Value) -> Vec<NodeInfo> {
        runtime::nodes_from_state(state)
    }

    fn default_work_dir(&self, user: &str) -> Option<std::path::PathBuf> {
        Some(self.cfg.work_root.join(user))
    }

    async fn node_layer(
        &self,
        state: &serde_json::Value,
        node: &str,
    ) -> Result<NodeLayer, SpawnerError> {
        agent::node_layer(self, state, node).await
    }

    async fn pause_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        agent::pause_node(self, layer).await
    }

    async fn resume_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        agent::resume_node(self, layer).await
    }

    fn capacity(&self) -> Capacity {
        nodes::capacity(self)
    }

    async fn node_usage(&self, state: &serde_json::Value) -> Result<Vec<NodeUsage>, SpawnerError> {
        runtime::node_usage(self, state).await
    }

    async fn compute_nodes(&self) -> Result<Vec<ComputeNode>, SpawnerError> {
        nodes::compute_nodes(self).await
    }

    async fn set_node_pool(&self, node: &str, pool: Option<&str>) -> Result<(), SpawnerError> {
        nodes::set_node_pool(self, node, pool).await
    }
}
