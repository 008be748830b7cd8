//! Starting, watching and stopping clusters through the API server.

use std::collections::HashSet;
use std::time::Duration;

use super::{ApiAccess, KubernetesSpawner, ReapReport};
use crate::{
    Capabilities, ClusterRequest, ClusterResources, NodeInfo, NodeUsage, ProgressSender,
    ResourceLimits, SpawnSpec, SpawnerError, Started,
};

const UNBUILT: SpawnerError = SpawnerError::Unsupported {
    backend: "kubernetes",
    what: "run clusters yet (the backend is being built)",
};

pub(super) async fn client(api: &ApiAccess) -> Result<kube::Client, SpawnerError> {
    let config = match api {
        ApiAccess::Infer => kube::Config::infer()
            .await
            .map_err(|e| SpawnerError::Config(format!("finding the Kubernetes API: {e}")))?,
        ApiAccess::Kubeconfig(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                SpawnerError::Config(format!("reading kubeconfig {}: {e}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .map_err(|e| {
                    SpawnerError::Config(format!("using kubeconfig {}: {e}", path.display()))
                })?
        }
        ApiAccess::Url(url) => {
            let uri = url
                .parse()
                .map_err(|e| SpawnerError::Config(format!("the API URL {url:?}: {e}")))?;
            kube::Config::new(uri)
        }
    };
    kube::Client::try_from(config).map_err(|e| SpawnerError::kube("building the API client", e))
}

pub(super) fn cluster_id_from_state(state: &serde_json::Value) -> Option<String> {
    let _ = state;
    None
}

pub(super) async fn reap_orphans(
    spawner: &KubernetesSpawner,
    known: &HashSet<String>,
) -> Result<ReapReport, SpawnerError> {
    let _ = (spawner, known);
    Ok(ReapReport::default())
}

pub(super) fn capabilities(spawner: &KubernetesSpawner) -> Capabilities {
    let _ = spawner;
    Capabilities {
        runs_images: true,
        ..Capabilities::default()
    }
}

pub(super) fn limits(spawner: &KubernetesSpawner) -> ResourceLimits {
    let cfg = &spawner.cfg;
    ResourceLimits {
        max_nodes: cfg.max_nodes,
        host_cpus: 0.0,
        host_memory_bytes: 0,
        host_gpus: None,
        min_memory_bytes: 128 * 1024 * 1024,
        min_cpus: 0.1,
        max_storage_bytes: cfg.max_storage_bytes,
        default_cpus: cfg.default_cpus,
        default_memory_bytes: cfg.default_memory_bytes,
    }
}

pub(super) async fn validate(
    spawner: &KubernetesSpawner,
    request: &ClusterRequest,
) -> Result<ClusterResources, SpawnerError> {
    let _ = (spawner, request);
    Err(UNBUILT)
}

pub(super) async fn start(
    spawner: &KubernetesSpawner,
    spec: &SpawnSpec,
    progress: ProgressSender,
) -> Result<Started, SpawnerError> {
    let _ = (spawner, spec, progress);
    Err(UNBUILT)
}

pub(super) async fn poll(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
) -> Result<Option<i32>, SpawnerError> {
    let _ = (spawner, state);
    Ok(Some(0))
}

pub(super) async fn stop(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
    grace: Duration,
) -> Result<(), SpawnerError> {
    let _ = (spawner, state, grace);
    Ok(())
}

pub(super) fn url_from_state(state: &serde_json::Value) -> Option<String> {
    let _ = state;
    None
}

pub(super) fn nodes_from_state(state: &serde_json::Value) -> Vec<NodeInfo> {
    let _ = state;
    Vec::new()
}

pub(super) async fn node_usage(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
) -> Result<Vec<NodeUsage>, SpawnerError> {
    let _ = (spawner, state);
    Ok(Vec::new())
}
