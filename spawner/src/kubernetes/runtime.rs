//! Starting, watching and stopping clusters through the API server.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DynamicObject, ListParams, PostParams};
use kube::Api;
use tracing::Instrument as _;

use super::agent;
use super::cleanup::{pod_group_resource, Order, Place};
use super::gang;
use super::objects::{self, ClusterNames, ClusterObjects, Gang};
use super::progress::Progress;
use super::ready::{Member, Wait};
use super::state::{ClusterState, NodeState, ObjectNames, BACKEND};
use super::{ApiAccess, KubernetesSpawner, ReapReport, LABEL_CLUSTER};
use crate::docker::naming::new_cluster_id;
use crate::docker::JOVYAN_UID;
use crate::nodes::{node_name, node_oauth_client_id, node_service_prefix};
use crate::paths::path_component;
use crate::resources::check_image;
use crate::{
    Capabilities, ClusterRequest, ClusterResources, NodeInfo, NodeUsage, ProgressSender,
    ResourceLimits, SpawnSpec, SpawnerError, Started,
};

/// How long a failed start's pods get to stop before they are deleted at once.
const ROLLBACK_GRACE: Duration = Duration::from_secs(2);
/// How long an orphan's pods get to stop.
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

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

/// Where this spawner's clusters are.
pub(super) fn place(spawner: &KubernetesSpawner) -> Place {
    Place {
        client: spawner.client.clone(),
        namespace: spawner.cfg.namespace.clone(),
        pod_groups: matches!(spawner.gang, Gang::Volcano),
    }
}

pub(super) fn cluster_id_from_state(state: &serde_json::Value) -> Option<String> {
    ClusterState::from_blob(state)
        .ok()
        .flatten()
        .map(|s| s.cluster_id)
}

/// Deletes every cluster with objects labelled by this hub instance whose id is not in `known`
/// (a start whose hub died, a server whose row is gone): owner first, then the rest.
pub(super) async fn reap_orphans(
    spawner: &KubernetesSpawner,
    known: &HashSet<String>,
) -> Result<ReapReport, SpawnerError> {
    let place = place(spawner);
    let orphans: Vec<String> = place
        .cluster_ids(&spawner.cfg.instance)
        .await?
        .into_iter()
        .filter(|id| !known.contains(id))
        .collect();
    let deletions = orphans.iter().map(|id| {
        let place = &place;
        async move {
            tracing::info!(cluster.id = %id, "deleting an orphaned cluster");
            place
                .delete_cluster(id, ORPHAN_GRACE, Order::OwnerFirst)
                .await
        }
    });
    for result in futures_util::future::join_all(deletions).await {
        result?;
    }
    Ok(ReapReport { clusters: orphans })
}

pub(super) fn capabilities(spawner: &KubernetesSpawner) -> Capabilities {
    let _ = spawner;
    Capabilities {
        runs_images: true,
        // The pods run as jovyan and share the work directories with the hub's host through
        // the storage pools' volumes.
        work_owner: Some(JOVYAN_UID as u32),
        // Through the node agent on the pod's Kubernetes node (`agent.rs`).
        saves_images: true,
        compute_pools: true,
        ..Capabilities::default()
    }
}

/// The limits a spawn form offers: per node, the largest of the default pool's nodes (each
/// resource on its own), as last listed.
pub(super) fn limits(spawner: &KubernetesSpawner) -> ResourceLimits {
    let cfg = &spawner.cfg;
    let nodes = spawner.inventory.snapshot();
    let (cpus, memory, gpus) =
        gang::largest(&nodes, cfg.default_pool.as_deref()).unwrap_or((0.0, 0, 0));
    ResourceLimits {
        max_nodes: cfg.max_nodes,
        host_cpus: cpus,
        host_memory_bytes: memory,
        host_gpus: Some(gpus),
        min_memory_bytes: 128 * 1024 * 1024,
        min_cpus: 0.1,
        max_storage_bytes: cfg.max_storage_bytes,
        default_cpus: cfg.default_cpus,
        default_memory_bytes: cfg.default_memory_bytes,
    }
}

/// Checks a request: the image, the sizes as any backend checks them, and against the pool's
/// nodes (one of them holds a node of this size, all of them idle hold the cluster).
pub(super) async fn validate(
    spawner: &KubernetesSpawner,
    request: &ClusterRequest,
) -> Result<ClusterResources, SpawnerError> {
    let cfg = &spawner.cfg;
    if let Some(image) = &request.image {
        check_image(image, cfg.allowed_images.as_deref())?;
    }
    // The nodes are checked one by one below: the totals are not one host's.
    let per_node = ResourceLimits {
        host_cpus: f64::MAX,
        host_memory_bytes: u64::MAX,
        host_gpus: None,
        ..limits(spawner)
    };
    let mut resources = per_node.admit(request)?;
    resources.pool = request.pool.clone().or_else(|| cfg.default_pool.clone());
    spawner.inventory.refresh().await;
    gang::check_size(
        &spawner.inventory.snapshot(),
        resources.pool.as_deref(),
        &resources,
    )?;
    Ok(resources)
}

pub(super) async fn start(
    spawner: &KubernetesSpawner,
    spec: &SpawnSpec,
    progress: ProgressSender,
) -> Result<Started, SpawnerError> {
    // Checked again: whatever reaches the API server is within the nodes' limits.
    let resources = validate(spawner, &ClusterRequest::from(&spec.resources)).await?;
    let cluster_id = new_cluster_id();
    let span = tracing::info_span!(
        "kubernetes_start",
        user.name = %spec.user,
        server.name = %spec.server_name,
        cluster.id = %cluster_id,
        nodes = resources.nodes,
    );
    async move {
        crate::check_mounts(&spec.mounts)?;
        let work_dir = prepare_work_dir(spawner, spec)?;
        if matches!(spawner.gang, Gang::None) {
            spawner.inventory.try_refresh().await?;
            gang::check_room(
                &spawner.inventory.snapshot(),
                resources.pool.as_deref(),
                &resources,
            )?;
        }
        let spec = SpawnSpec {
            user: spec.user.clone(),
            server_name: spec.server_name.clone(),
            service_prefix: spec.service_prefix.clone(),
            env: spec.env.clone(),
            resources,
            work_dir: Some(work_dir),
            secret_files: spec.secret_files.clone(),
            mounts: spec.mounts.clone(),
        };
        let names = ClusterNames::new(&spec.user, &spec.server_name, &cluster_id);
        let objects = objects::build(&spawner.cfg, &spec, &names, spawner.gang)?;
        let progress = Progress::new(progress, spec.resources.nodes);
        let rollback = Rollback::arm(place(spawner), cluster_id.clone());
        let began = tokio::time::Instant::now();
        match launch(spawner, &spec, &names, objects, &progress).await {
            Ok(started) => {
                rollback.disarm();
                tracing::info!(
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    url = %started.url,
                    "cluster ready"
                );
                Ok(started)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cluster failed to start; deleting it");
                progress.note("Deleting the cluster's pods and objects".into());
                rollback.now().await;
                Err(e)
            }
        }
    }
    .instrument(span)
    .await
}

/// Deletes a cluster whose start failed or was abandoned: at once when asked, or in a task of
/// its own when dropped armed (the hub gave up on the start, dropping its future).
struct Rollback {
    place: Place,
    cluster_id: String,
    armed: bool,
}

impl Rollback {
    fn arm(place: Place, cluster_id: String) -> Self {
        Self {
            place,
            cluster_id,
            armed: true,
        }
    }

    fn disarm(mut self) {
        self.armed = false;
    }

    async fn now(mut self) {
        self.armed = false;
        delete_failed(&self.place, &self.cluster_id).await;
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let place = self.place.clone();
        let cluster_id = self.cluster_id.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            tracing::warn!(cluster.id = %cluster_id, "a start was abandoned; deleting its cluster");
            runtime.spawn(async move { delete_failed(&place, &cluster_id).await });
        }
    }
}

async fn delete_failed(place: &Place, cluster_id: &str) {
    if let Err(e) = place
        .delete_cluster(cluster_id, ROLLBACK_GRACE, Order::OwnerFirst)
        .await
    {
        tracing::error!(cluster.id = %cluster_id, error = %e, "cannot delete a failed cluster");
    }
}

/// The work directory on the hub's host (the spec's, or `{work_root}/{user}`), made if missing
/// and handed to jovyan where the hub may: the pods see it through a storage pool's volume.
fn prepare_work_dir(
    spawner: &KubernetesSpawner,
    spec: &SpawnSpec,
) -> Result<PathBuf, SpawnerError> {
    let dir = match &spec.work_dir {
        Some(dir) => dir.clone(),
        None => path_component(&spec.user)
            .map(|c| spawner.cfg.work_root.join(c))
            .ok_or_else(|| SpawnerError::InvalidSpec("the user name is empty".into()))?,
    };
    if !dir.is_absolute() {
        return Err(SpawnerError::Config(format!(
            "the work directory {} must be an absolute path",
            dir.display()
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| SpawnerError::io(format!("creating {}", dir.display()), e))?;
    let uid = nix::unistd::Uid::from_raw(JOVYAN_UID as u32);
    let gid = nix::unistd::Gid::from_raw(JOVYAN_UID as u32);
    let owned = std::fs::metadata(&dir)
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid.as_raw())
        .unwrap_or(false);
    if !owned {
        if let Err(e) = nix::unistd::chown(&dir, Some(uid), Some(gid)) {
            // The storage may map owners itself (NFS root squash, a CSI driver's fsGroup).
            tracing::warn!(dir = %dir.display(), error = %e, "cannot hand the work directory to jovyan");
        }
    }
    Ok(dir)
}

/// Makes the objects (the owner first, then everything naming it) and waits for every node.
async fn launch(
    spawner: &KubernetesSpawner,
    spec: &SpawnSpec,
    names: &ClusterNames,
    mut objects: ClusterObjects,
    progress: &Progress,
) -> Result<Started, SpawnerError> {
    let cfg = &spawner.cfg;
    let client = &spawner.client;
    let ns = cfg.namespace.as_str();
    let post = PostParams::default();
    let owner_name = names.owner();
    let owner = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&post, &objects.owner)
        .await
        .map_err(|e| SpawnerError::kube(format!("creating the cluster's owner {owner_name}"), e))?;
    let owner_uid = owner
        .metadata
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            SpawnerError::InvalidState(format!("the API server gave the owner {owner_name} no uid"))
        })?;
    objects::set_owner(&mut objects, &owner_uid);

    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&post, &objects.secret)
        .await
        .map_err(|e| SpawnerError::kube(format!("creating the secret {}", names.secret()), e))?;
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&post, &objects.service)
        .await
        .map_err(|e| SpawnerError::kube(format!("creating the service {}", names.service()), e))?;
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .create(&post, &objects.network_policy)
        .await
        .map_err(|e| {
            SpawnerError::kube(
                format!("creating the network policy {}", names.network_policy()),
                e,
            )
        })?;
    let pod_group = match &objects.pod_group {
        Some(value) => {
            let group: DynamicObject = serde_json::from_value(value.clone())
                .map_err(|e| SpawnerError::InvalidSpec(format!("the cluster's pod group: {e}")))?;
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pod_group_resource())
                .create(&post, &group)
                .await
                .map_err(|e| {
                    SpawnerError::kube(format!("creating the pod group {}", names.pod_group()), e)
                })?;
            Some(names.pod_group())
        }
        None => None,
    };

    let pods_api = Api::<Pod>::namespaced(client.clone(), ns);
    let creations = objects.pods.iter().enumerate().map(|(k, pod)| {
        let api = &pods_api;
        let post = &post;
        async move {
            let name = names.pod(k);
            let made = api.create(post, pod).await.map_err(|e| {
                SpawnerError::kube(format!("creating the pod {name} of {}", node_name(k)), e)
            })?;
            let uid = made.metadata.uid.clone().unwrap_or_default();
            tracing::debug!(node = %node_name(k), pod = %name, "pod created");
            Ok::<_, SpawnerError>(Member {
                name: node_name(k),
                pod: name,
                uid,
                prefix: node_service_prefix(&spec.service_prefix, k),
            })
        }
    });
    let members = futures_util::future::join_all(creations)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    progress.created(format!(
        "Created {} pods with their service, secret and network policy in namespace {ns}",
        members.len()
    ));

    let ready = Wait {
        pods: pods_api,
        events: Api::<Event>::namespaced(client.clone(), ns),
        events_since: owner.metadata.resource_version.clone().unwrap_or_default(),
        cluster_id: &names.cluster_id,
        members: &members,
        port: cfg.port,
        timeout: cfg.ready_timeout,
        progress,
    }
    .run()
    .await?;

    let client_id = spec.env.get("JUPYTERHUB_CLIENT_ID");
    let nodes: Vec<NodeState> = members
        .into_iter()
        .zip(ready)
        .enumerate()
        .map(|(k, (member, ready))| NodeState {
            name: member.name,
            pod: member.pod,
            pod_uid: member.uid,
            ip: ready.ip,
            host: ready.host,
            url: ready.url,
            service_prefix: member.prefix,
            oauth_client_id: client_id.map(|c| node_oauth_client_id(c, k)),
        })
        .collect();
    let url = nodes
        .first()
        .map(|n| n.url.clone())
        .ok_or_else(|| SpawnerError::InvalidSpec("a cluster needs at least 1 node".into()))?;
    let state = ClusterState {
        backend: BACKEND.into(),
        namespace: ns.to_owned(),
        cluster_id: names.cluster_id.clone(),
        base: names.base.clone(),
        owner: owner_name,
        owner_uid,
        objects: ObjectNames {
            secret: names.secret(),
            service: names.service(),
            network_policy: names.network_policy(),
            pod_group,
        },
        url: url.clone(),
        nodes,
    };
    Ok(Started {
        url,
        state: state.to_blob()?,
        nodes: state.node_infos(),
    })
}

/// The cluster's pods now, matched to its nodes by name and uid (`None`: gone).
async fn pods_of(
    spawner: &KubernetesSpawner,
    cluster: &ClusterState,
) -> Result<Vec<Option<Pod>>, SpawnerError> {
    let api = Api::<Pod>::namespaced(spawner.client.clone(), &cluster.namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{LABEL_CLUSTER}={}", cluster.cluster_id)))
        .await
        .map_err(|e| {
            SpawnerError::kube(
                format!("listing the pods of cluster {}", cluster.cluster_id),
                e,
            )
        })?;
    Ok(cluster
        .nodes
        .iter()
        .map(|node| {
            list.items
                .iter()
                .find(|p| {
                    p.metadata.name.as_deref() == Some(node.pod.as_str())
                        && p.metadata.uid.as_deref() == Some(node.pod_uid.as_str())
                })
                .cloned()
        })
        .collect())
}

pub(super) async fn poll(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
) -> Result<Option<i32>, SpawnerError> {
    let Some(cluster) = ClusterState::from_blob(state)? else {
        return Ok(Some(0));
    };
    let pods = pods_of(spawner, &cluster).await?;
    for (node, pod) in cluster.nodes.iter().zip(&pods) {
        if let Some(status) = exit_status(pod.as_ref()) {
            tracing::info!(cluster.id = %cluster.cluster_id, node = %node.name, pod = %node.pod, status, "a node is gone");
            return Ok(Some(status));
        }
    }
    Ok(None)
}

/// `None` while the pod runs; `Some(status)` once it is gone, being deleted, failed, or its
/// container ended or was restarted (a node that restarts has lost its processes).
fn exit_status(pod: Option<&Pod>) -> Option<i32> {
    let Some(pod) = pod else { return Some(0) };
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(0);
    }
    let status = pod.status.as_ref();
    for container in status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
    {
        let ended = container
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| {
                container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .filter(|_| container.restart_count > 0)
            });
        if let Some(ended) = ended {
            return Some(ended.exit_code);
        }
    }
    match status.and_then(|s| s.phase.as_deref()) {
        Some("Failed") => Some(1),
        Some("Succeeded") => Some(0),
        _ => None,
    }
}

pub(super) async fn stop(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
    grace: Duration,
) -> Result<(), SpawnerError> {
    let Some(cluster) = ClusterState::from_blob(state)? else {
        return Ok(());
    };
    let mut place = place(spawner);
    place.namespace.clone_from(&cluster.namespace);
    place.pod_groups |= cluster.objects.pod_group.is_some();
    place
        .delete_cluster(&cluster.cluster_id, grace, Order::PodsFirst)
        .await?;
    spawner.inventory.refresh().await;
    Ok(())
}

pub(super) fn url_from_state(state: &serde_json::Value) -> Option<String> {
    ClusterState::from_blob(state).ok().flatten().map(|s| s.url)
}

pub(super) fn nodes_from_state(state: &serde_json::Value) -> Vec<NodeInfo> {
    ClusterState::from_blob(state)
        .ok()
        .flatten()
        .map(|s| s.node_infos())
        .unwrap_or_default()
}

/// Each node's pod: whether it runs, when its container started and ended, and the CPU time
/// its container used, from the node agent of its Kubernetes node (the metrics API gives a
/// recent rate, not the time used): all pods' at once, `None` where no agent answers.
pub(super) async fn node_usage(
    spawner: &KubernetesSpawner,
    state: &serde_json::Value,
) -> Result<Vec<NodeUsage>, SpawnerError> {
    let Some(cluster) = ClusterState::from_blob(state)? else {
        return Ok(Vec::new());
    };
    let pods = pods_of(spawner, &cluster).await?;
    let found: Vec<(u32, &Pod)> = pods
        .iter()
        .enumerate()
        .filter_map(|(k, pod)| Some((u32::try_from(k).ok()?, pod.as_ref()?)))
        .collect();
    let running: Vec<_> = found
        .iter()
        .map(|(_, pod)| agent::running_container(pod))
        .collect();
    let cpu = agent::cpu_times(spawner, &cluster.namespace, &running).await;
    Ok(found
        .iter()
        .zip(cpu)
        .map(|((index, pod), cpu_ns)| NodeUsage {
            cpu_ns,
            ..usage_of(*index, pod)
        })
        .collect())
}

/// A pod's usage as its status tells it (no CPU time).
fn usage_of(index: u32, pod: &Pod) -> NodeUsage {
    let micros = |t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time| t.0.as_microsecond();
    let container = agent::notebook_container(pod);
    let state = container.and_then(|c| c.state.as_ref());
    let running = state.and_then(|s| s.running.as_ref());
    let terminated = state.and_then(|s| s.terminated.as_ref());
    NodeUsage {
        index,
        running: running.is_some() && exit_status(Some(pod)).is_none(),
        started_at: running
            .and_then(|r| r.started_at.as_ref())
            .or_else(|| terminated.and_then(|t| t.started_at.as_ref()))
            .map(micros),
        finished_at: terminated.and_then(|t| t.finished_at.as_ref()).map(micros),
        cpu_ns: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_counts_as_gone_once_it_ended_restarted_or_is_being_deleted() {
        let running = pod(
            serde_json::json!({"phase": "Running", "containerStatuses": [{
                "name": "notebook", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-02T03:04:05Z"}}
            }]}),
        );
        assert_eq!(exit_status(Some(&running)), None);
        assert_eq!(exit_status(None), Some(0));
        let exited = pod(
            serde_json::json!({"phase": "Failed", "containerStatuses": [{
                "name": "notebook", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 3, "startedAt": "2026-01-02T03:04:05Z",
                                         "finishedAt": "2026-01-02T03:05:05Z"}}
            }]}),
        );
        assert_eq!(exit_status(Some(&exited)), Some(3));
        let restarted = pod(
            serde_json::json!({"phase": "Running", "containerStatuses": [{
                "name": "notebook", "image": "i", "imageID": "", "ready": true, "restartCount": 1,
                "state": {"running": {"startedAt": "2026-01-02T03:06:05Z"}},
                "lastState": {"terminated": {"exitCode": 137}}
            }]}),
        );
        assert_eq!(exit_status(Some(&restarted)), Some(137));
        let mut deleting = running.clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-02T03:04:05Z".parse().unwrap(),
            ));
        assert_eq!(exit_status(Some(&deleting)), Some(0));

        let usage = usage_of(1, &exited);
        assert!(!usage.running);
        assert_eq!(
            usage.finished_at.unwrap() - usage.started_at.unwrap(),
            60_000_000
        );
        let usage = usage_of(0, &running);
        assert!(usage.running);
        assert_eq!(usage.started_at, Some(1_767_323_045_000_000));
        assert_eq!(usage.cpu_ns, None);
    }
}
