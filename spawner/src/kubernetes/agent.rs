//! Saving a node as an image on Kubernetes: the node agent on the pod's Kubernetes node reads
//! the container's writable layer there.
//!
//! The hub cannot read a pod's writable layer: it is in containerd's snapshots on the
//! Kubernetes node the pod runs on. [`node_layer`] says where that is — the node's container
//! (`status.containerStatuses[].containerID`, e.g. `containerd://<id>`) and the agent
//! (`xiji-node-agent`, a DaemonSet) on the pod's `spec.nodeName` — as
//! [`LayerLocation::NodeAgent`]; the hub then drives the save through that agent.
//!
//! The agent is found among the pods labelled [`KubernetesConfig::agent_pod_labels`] in the
//! backend's namespace: the one whose `spec.nodeName` is the pod's node, running and ready. Its
//! URL is `http://{hostIP}:{agent_port}`: the DaemonSet publishes the agent as a `hostPort`, so
//! the node's address reaches it from wherever the hub runs (also a hub outside the pod
//! network), and it stays the same when the agent's pod is replaced. The pod's own IP (same
//! port, the container port) is the fallback when the API reports no host IP.
//!
//! Pausing: the agent freezes the container's cgroup itself during its read (the hub passes
//! `[images] pause` on in the request), so [`pause_node`] and [`resume_node`] do nothing here.
//!
//! [`KubernetesConfig::agent_pod_labels`]: super::KubernetesConfig::agent_pod_labels

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;

use super::objects::CONTAINER;
use super::state::ClusterState;
use super::KubernetesSpawner;
use crate::{LayerLocation, NodeLayer, SpawnerError};

/// The writable layer of `node` of the cluster recorded in `state`: its container on its
/// Kubernetes node, and the agent there. [`SpawnerError::NoSuchNode`] when the cluster has no
/// such node, [`SpawnerError::NodeNotRunning`] when its pod is gone, replaced, not running or its
/// container not started, [`SpawnerError::Config`] when no ready agent runs on that node.
pub(super) async fn node_layer(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
    node: &str,
) -> Result<NodeLayer, SpawnerError> {
    let cluster = ClusterState::from_blob(state)?;
    let nodes = cluster.as_ref().map_or(&[][..], |c| c.nodes.as_slice());
    let (Some(cluster), Some(found)) = (&cluster, nodes.iter().find(|n| n.name == node)) else {
        return Err(SpawnerError::NoSuchNode {
            node: node.to_owned(),
            nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        });
    };
    let not_running = |reason: String| SpawnerError::NodeNotRunning {
        node: node.to_owned(),
        reason,
    };
    let pods = Api::<Pod>::namespaced(spawner.client.clone(), &cluster.namespace);
    let pod = pods
        .get_opt(&found.pod)
        .await
        .map_err(|e| SpawnerError::kube(format!("reading {node}'s pod {}", found.pod), e))?
        .ok_or_else(|| not_running("its pod is gone".into()))?;
    if pod.metadata.uid.as_deref() != Some(found.pod_uid.as_str()) {
        return Err(not_running("its pod was replaced".into()));
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Err(not_running("its pod is being deleted".into()));
    }
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Running" {
        return Err(not_running(format!("its pod is {phase}")));
    }
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    let container = statuses
        .iter()
        .find(|c| c.name == CONTAINER)
        .or_else(|| statuses.first())
        .ok_or_else(|| not_running("its pod reports no container".into()))?;
    let started = container
        .state
        .as_ref()
        .is_some_and(|s| s.running.is_some());
    let container_id = container
        .container_id
        .clone()
        .filter(|id| started && !id.is_empty())
        .ok_or_else(|| not_running("its container is not running".into()))?;
    let spec = pod.spec.as_ref();
    let host = spec
        .and_then(|s| s.node_name.clone())
        .ok_or_else(|| not_running("its pod is not scheduled".into()))?;
    let base_image = spec
        .and_then(|s| {
            s.containers
                .iter()
                .find(|c| c.name == container.name)
                .and_then(|c| c.image.clone())
        })
        .unwrap_or_else(|| container.image.clone());
    let agent_url = agent_on(spawner, &cluster.namespace, &host).await?;
    tracing::debug!(node, kubernetes.node = %host, container.id = %container_id, agent.url = %agent_url, "node layer located");
    Ok(NodeLayer {
        node: node.to_owned(),
        instance_id: container_id.clone(),
        base_image,
        location: LayerLocation::NodeAgent {
            agent_url,
            container_id,
        },
    })
}

/// The URL of the ready node agent on Kubernetes node `host`.
async fn agent_on(
    spawner: &KubernetesSpawner,
    namespace: &str,
    host: &str,
) -> Result<String, SpawnerError> {
    let labels = &spawner.cfg.agent_pod_labels;
    let selector = labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let list = Api::<Pod>::namespaced(spawner.client.clone(), namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| SpawnerError::kube("listing the node agents", e))?;
    // Checked here too: the selector is the API server's business, the match is ours.
    let on_host = list.items.iter().filter(|p| {
        let pod_labels = p.metadata.labels.as_ref();
        labels
            .iter()
            .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
            && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(host)
            && p.metadata.deletion_timestamp.is_none()
    });
    let ready = on_host.filter(|p| is_ready(p)).find_map(|p| {
        let status = p.status.as_ref()?;
        status
            .host_ip
            .as_deref()
            .or(status.pod_ip.as_deref())
            .filter(|ip| !ip.is_empty())
            .map(str::to_owned)
    });
    let ip = ready.ok_or_else(|| {
        SpawnerError::Config(format!(
            "no ready node agent runs on Kubernetes node {host} (pods labelled {selector} in \
             namespace {namespace}): is the node agent's DaemonSet deployed, and does it \
             tolerate that node's taints?"
        ))
    })?;
    let host_part = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip
    };
    Ok(format!("http://{host_part}:{}", spawner.cfg.agent_port))
}

/// Whether a pod runs and says it is ready.
fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Nothing: the agent freezes the container during its own read.
pub(super) async fn pause_node(
    spawner: &KubernetesSpawner,
    layer: &NodeLayer,
) -> Result<(), SpawnerError> {
    let _ = (spawner, layer);
    Ok(())
}

/// Nothing: the agent thaws what it froze, also after a restart of its own.
pub(super) async fn resume_node(
    spawner: &KubernetesSpawner,
    layer: &NodeLayer,
) -> Result<(), SpawnerError> {
    let _ = (spawner, layer);
    Ok(())
}
