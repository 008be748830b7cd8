//! The node agent on a pod's Kubernetes node: it reads the container's writable layer there for
//! saving a node as an image, and its CPU time for metering.
//!
//! The hub cannot read a pod's writable layer: it is in containerd's snapshots on the
//! Kubernetes node the pod runs on. [`node_layer`] says where that is — the node's container
//! (`status.containerStatuses[].containerID`, e.g. `containerd://<id>`) and the agent
//! (`xiji-node-agent`, a DaemonSet) on the pod's `spec.nodeName` — as
//! [`LayerLocation::NodeAgent`]; the hub then drives the save through that agent.
//!
//! The agent is found among the pods labelled [`KubernetesConfig::agent_pod_labels`] in the
//! backend's namespace ([`NodeAgents`], the one place that finds agents): the one whose
//! `spec.nodeName` is the pod's node, running and ready. Its
//! URL is `http://{hostIP}:{agent_port}`: the DaemonSet publishes the agent as a `hostPort`, so
//! the node's address reaches it from wherever the hub runs (also a hub outside the pod
//! network), and it stays the same when the agent's pod is replaced. The pod's own IP (same
//! port, the container port) is the fallback when the API reports no host IP.
//!
//! Pausing: the agent freezes the container's cgroup itself during its read (the hub passes
//! `[images] pause` on in the request), so [`pause_node`] and [`resume_node`] do nothing here.
//!
//! CPU time ([`cpu_times`]): the metrics API gives rates and the kubelet's summary API needs
//! `nodes/proxy`, so each running pod's container is asked of its node's agent
//! (`GET /v1/containers/{id}/usage`, with the hub's [`KubernetesConfig::agent_token_file`]):
//! one request per pod, all of a cluster's at once, a few seconds at most. A pod whose agent is
//! missing or does not answer has no CPU time this once (metering keeps its last reading).
//!
//! [`KubernetesConfig::agent_pod_labels`]: super::KubernetesConfig::agent_pod_labels
//! [`KubernetesConfig::agent_token_file`]: super::KubernetesConfig::agent_token_file

use std::collections::BTreeMap;

use futures_util::StreamExt;
use imagebuilder::agent::AgentClient;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::ListParams;
use kube::Api;

use super::objects::CONTAINER;
use super::state::ClusterState;
use super::KubernetesSpawner;
use crate::{LayerLocation, NodeLayer, SpawnerError};

/// Agent requests for CPU time in flight at once, over all of a cluster's pods.
const USAGE_REQUESTS_AT_ONCE: usize = 32;

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
    let container = notebook_container(&pod)
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
    let agent_url = NodeAgents::list(spawner, &cluster.namespace)
        .await?
        .url_on(&host)?;
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

/// The status of a pod's notebook container (its first, if none is named so).
pub(super) fn notebook_container(pod: &Pod) -> Option<&ContainerStatus> {
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    statuses
        .iter()
        .find(|c| c.name == CONTAINER)
        .or_else(|| statuses.first())
}

/// The ready node agents of a namespace, by the Kubernetes node they run on.
pub(super) struct NodeAgents {
    namespace: String,
    selector: String,
    /// Kubernetes node → the agent's URL.
    urls: BTreeMap<String, String>,
}

impl NodeAgents {
    /// The agent pods (labelled [`KubernetesConfig::agent_pod_labels`]) of `namespace` that run
    /// and are ready, each at `http://{hostIP}:{agent_port}` (its pod IP when the API shows no
    /// host IP).
    ///
    /// [`KubernetesConfig::agent_pod_labels`]: super::KubernetesConfig::agent_pod_labels
    pub(super) async fn list(
        spawner: &KubernetesSpawner,
        namespace: &str,
    ) -> Result<Self, SpawnerError> {
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
        let mut urls = BTreeMap::new();
        // Checked here too: the selector is the API server's business, the match is ours.
        for pod in list.items.iter().filter(|p| {
            let pod_labels = p.metadata.labels.as_ref();
            labels
                .iter()
                .all(|(k, v)| pod_labels.and_then(|l| l.get(k)) == Some(v))
                && p.metadata.deletion_timestamp.is_none()
                && is_ready(p)
        }) {
            let host = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            let ip = pod.status.as_ref().and_then(|s| {
                s.host_ip
                    .as_deref()
                    .or(s.pod_ip.as_deref())
                    .filter(|ip| !ip.is_empty())
            });
            if let (Some(host), Some(ip)) = (host, ip) {
                let host_part = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.to_owned()
                };
                urls.entry(host.to_owned())
                    .or_insert_with(|| format!("http://{host_part}:{}", spawner.cfg.agent_port));
            }
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            selector,
            urls,
        })
    }

    /// The URL of the ready agent on Kubernetes node `host`, or a configuration error that
    /// says what to deploy.
    pub(super) fn url_on(&self, host: &str) -> Result<String, SpawnerError> {
        self.urls.get(host).cloned().ok_or_else(|| {
            SpawnerError::Config(format!(
                "no ready node agent runs on Kubernetes node {host} (pods labelled {} in \
                 namespace {}): is the node agent's DaemonSet deployed, and does it \
                 tolerate that node's taints?",
                self.selector, self.namespace
            ))
        })
    }
}

/// A running container to read the CPU time of: its Kubernetes node and its id as
/// `containerStatuses[].containerID` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RunningContainer {
    /// The Kubernetes node (`spec.nodeName`).
    pub host: String,
    /// `containerd://<id>` and the like.
    pub container_id: String,
}

/// The running notebook container of `pod`, if it runs and is placed.
pub(super) fn running_container(pod: &Pod) -> Option<RunningContainer> {
    let container = notebook_container(pod)?;
    let running = container
        .state
        .as_ref()
        .is_some_and(|s| s.running.is_some());
    let container_id = container
        .container_id
        .clone()
        .filter(|id| running && !id.is_empty())?;
    let host = pod.spec.as_ref()?.node_name.clone()?;
    Some(RunningContainer { host, container_id })
}

/// The CPU time in nanoseconds of each container (in the same order), asked of the node agent
/// of its Kubernetes node — concurrently, at most a few seconds. `None` for a container not
/// given, or whose agent is missing, not known to the hub (no `agent_token_file`) or does not
/// answer (logged at debug: metering keeps its last reading then).
pub(super) async fn cpu_times(
    spawner: &KubernetesSpawner,
    namespace: &str,
    containers: &[Option<RunningContainer>],
) -> Vec<Option<u64>> {
    let none = || vec![None; containers.len()];
    if containers.iter().all(Option::is_none) {
        return none();
    }
    let Some(token_file) = spawner.cfg.agent_token_file.as_deref() else {
        tracing::debug!("no agent_token_file: the pods' CPU time is not read");
        return none();
    };
    let token = match std::fs::read_to_string(token_file) {
        Ok(text) => text.trim_end_matches(['\n', '\r']).to_owned(),
        Err(e) => {
            tracing::debug!(path = %token_file.display(), error = %e, "cannot read the node agents' token; the pods' CPU time is not read");
            return none();
        }
    };
    let agents = match NodeAgents::list(spawner, namespace).await {
        Ok(agents) => agents,
        Err(e) => {
            tracing::debug!(error = %e, "cannot list the node agents; the pods' CPU time is not read");
            return none();
        }
    };
    // One client per agent, shared by its node's pods.
    let mut clients: BTreeMap<&str, Result<AgentClient, String>> = BTreeMap::new();
    for container in containers.iter().flatten() {
        clients.entry(container.host.as_str()).or_insert_with(|| {
            let url = agents.url_on(&container.host).map_err(|e| e.to_string())?;
            AgentClient::new(&url, &token).map_err(|e| e.to_string())
        });
    }
    let asks: Vec<_> = containers
        .iter()
        .map(|container| {
            let container = container.clone()?;
            let client = clients.get(container.host.as_str())?.clone();
            Some((client, container))
        })
        .collect();
    futures_util::stream::iter(asks.into_iter().map(cpu_time))
        .buffered(USAGE_REQUESTS_AT_ONCE)
        .collect()
        .await
}

/// One container's CPU time from its agent (or why there is none, logged).
async fn cpu_time(ask: Option<(Result<AgentClient, String>, RunningContainer)>) -> Option<u64> {
    let (client, container) = ask?;
    let why = match client {
        Ok(client) => match client.usage(&container.container_id).await {
            Ok(Some(usage)) => return Some(usage.cpu_ns),
            Ok(None) => "the node agent finds no process of the container".to_owned(),
            Err(e) => e.to_string(),
        },
        Err(why) => why,
    };
    tracing::debug!(
        kubernetes.node = %container.host,
        container.id = %container.container_id,
        error = %why,
        "no CPU time for the container"
    );
    None
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
