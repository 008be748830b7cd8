//! The `kubernetes` backend: a server is a *virtual cluster* of N pods in one namespace.
//!
//! # What a cluster is
//! In [`KubernetesConfig::namespace`], per start (cluster id: 12 random hex digits, as the
//! `docker` backend's): one ConfigMap, the cluster's *owner* (it holds the MPI hostfile), and,
//! each naming the owner in its `ownerReferences`, a Secret (SSH keys, the API token, the
//! spawn's secret files), a headless Service (the nodes resolve each other as `node-k`), a
//! NetworkPolicy (only the cluster's own pods and the hub's reach them), Volcano's PodGroup
//! where Volcano runs, and one pod per node, `{base}-node-k`, with requests = limits (CPU,
//! memory, the GPU resource), on the nodes of the requested compute pool (the node label
//! [`KubernetesConfig::pool_label`]), the work directory and datasets mounted from the storage
//! pools' volumes ([`KubernetesConfig::volumes`]) where the `docker` backend puts them. Every
//! object is labelled [`LABEL_HUB`], [`LABEL_USER`], [`LABEL_SERVER`], [`LABEL_CLUSTER`] (and
//! pods [`LABEL_NODE`]). `objects.rs` builds them (pure functions, its docs have the table).
//!
//! # Start, all or nothing
//! [`Spawner::start`] checks the request again ([`Spawner::validate`]: the image, the sizes, and
//! against the pool's schedulable nodes: one must hold a node of this size, all of them idle the
//! whole cluster), then admits it as a gang: where Volcano's PodGroups are served (found once
//! at [`KubernetesSpawner::connect`]) Volcano binds all N pods or none; elsewhere Xiji checks
//! that N pods of the size fit the pool's nodes' allocatable minus what this hub's pods request
//! (first fit) and otherwise refuses at once ([`SpawnerError::Rejected`]: "the cluster
//! needs 4 nodes of 2 CPU / 4G; only 2 fit now on pool gpu…"). Then it creates the owner, the
//! objects that name it, and the pods, and **waits until every pod is scheduled, Ready and its
//! server answers HTTP** within [`KubernetesConfig::ready_timeout`]. Progress events per node
//! come from a watch of the pods and of the namespace's Events: placed on a Kubernetes node,
//! pulling, pulled, started, ready; a pod the scheduler cannot place adds its reason. Any
//! failure deletes everything made for the cluster (the owner, then each object by label, so
//! a cluster is cleaned where no garbage collector runs too) and says why: the scheduler's
//! Unschedulable message per node at the deadline, an image that cannot be pulled, a container
//! that exited (its status and the end of its log). A start the hub abandons (its own timeout
//! drops the future) deletes its cluster in the background.
//!
//! # How the hub uses it
//! 1. At start-up: [`KubernetesSpawner::connect`] (the API as [`KubernetesConfig::api`] says;
//!    fails clearly when it cannot list the nodes), then, before serving,
//!    [`KubernetesSpawner::reap_orphans`] with the cluster ids of every stored state blob
//!    ([`KubernetesSpawner::cluster_id_from_state`]), then re-adopt as for any backend (`poll`,
//!    one proxy route per node from [`Spawner::nodes_from_state`]).
//! 2. Spawn request: as with the `docker` backend ([`Spawner::validate`], one OAuth client per
//!    extra node, `start` with the validated resources). [`Started::nodes`] gives each node's
//!    URL, `http://{pod IP}:{port}`: the hub (and the proxy) must reach the pods' network, as
//!    they do when they run in the cluster. Pods reach the hub at the URLs the hub gives, or
//!    rebased onto [`KubernetesConfig::hub_connect_url`] (e.g. the hub's Service).
//! 3. `poll` reports the cluster gone as soon as any pod is gone, being deleted, failed, or its
//!    container ended or restarted (its exit status); `stop` deletes the pods with the grace
//!    period, waits until they are gone (grace + 30 s at most, then deletes them at once), then
//!    deletes the owner and the rest. Both work from the state blob alone, after a restart too.
//! 4. [`Spawner::node_usage`] gives each pod's container start and end times, and its CPU time
//!    as the node agent on its Kubernetes node reads it from the container's cgroup (unknown
//!    where no agent answers).
//!
//! Compute nodes ([`Spawner::compute_nodes`], [`Spawner::set_node_pool`], [`Spawner::capacity`])
//! are `nodes.rs`; saving a node as an image goes through the node agent (`agent.rs`).

mod agent;
mod cleanup;
mod config;
mod gang;
mod nodes;
mod objects;
mod progress;
mod ready;
mod runtime;
mod state;
mod volumes;
mod watch;

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
    /// Whether a gang scheduler (Volcano) places each cluster's pods all at once, found at
    /// connection.
    gang: objects::Gang,
}

impl KubernetesSpawner {
    /// Connects to the API server as [`KubernetesConfig::api`] says and checks that it answers.
    pub async fn connect(cfg: KubernetesConfig) -> Result<Self, SpawnerError> {
        let client = runtime::client(&cfg.api).await?;
        let inventory = nodes::Inventory::start(client.clone(), cfg.clone()).await?;
        let gang = gang::detect(&client).await;
        Ok(Self {
            cfg,
            client,
            inventory,
            gang,
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
        crate::paths::path_component(user).map(|c| self.cfg.work_root.join(c))
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
