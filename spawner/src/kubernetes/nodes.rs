//! The Kubernetes nodes as compute nodes: what they have, what Xiji's pods use, which compute
//! pool each is in (the node label [`KubernetesConfig::pool_label`]).
//!
//! [`Inventory`] lists the nodes and this hub's pods (label `xiji.org/hub=<instance>`) when the
//! spawner connects and again every [`REFRESH_INTERVAL`] in a task of its own, stopped when the
//! spawner is dropped. [`Spawner::capacity`](crate::Spawner::capacity), which admission calls
//! and which cannot wait on the API server, reads that snapshot: the sum of the allocatable
//! resources of the schedulable nodes (in a pool, not cordoned, ready). The administrators'
//! page ([`compute_nodes`]) lists again before it answers.
//!
//! Putting a node into a pool is a merge patch of its label; taking it out removes the label:
//! no new cluster is placed there, the pods running on it are not touched.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{ListParams, Patch, PatchParams};
use kube::Api;

use super::{KubernetesConfig, KubernetesSpawner, LABEL_HUB};
use crate::{is_pool_name, Capacity, ComputeNode, NodeCondition, SpawnerError};

/// How often the background task lists the nodes and pods again.
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// The node label that names a GPU node's model (NVIDIA's GPU feature discovery sets it).
const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

const MIB: u128 = 1024 * 1024;

/// The nodes and Xiji's use of them, refreshed in the background.
pub(super) struct Inventory {
    shared: Arc<Shared>,
    /// The refresh loop; aborted when the inventory (the spawner) is dropped.
    task: tokio::task::AbortHandle,
}

/// What the refresh loop and the spawner share.
struct Shared {
    client: kube::Client,
    namespace: String,
    instance: String,
    pool_label: String,
    gpu_resource: String,
    snapshot: RwLock<Vec<ComputeNode>>,
    /// One listing at a time: a refresh asked for while one runs waits for it, then lists
    /// again (its caller may have just changed a label).
    listing: tokio::sync::Mutex<()>,
}

impl Inventory {
    /// Lists the nodes and this hub's pods once (failing clearly when the API server refuses),
    /// then keeps the snapshot fresh in the background.
    pub(super) async fn start(
        client: kube::Client,
        cfg: KubernetesConfig,
    ) -> Result<Self, SpawnerError> {
        let shared = Arc::new(Shared {
            client,
            namespace: cfg.namespace,
            instance: cfg.instance,
            pool_label: cfg.pool_label,
            gpu_resource: cfg.gpu_resource,
            snapshot: RwLock::new(Vec::new()),
            listing: tokio::sync::Mutex::new(()),
        });
        shared.refresh().await?;
        let nodes = shared.read().len();
        tracing::info!(nodes, "listed the Kubernetes nodes");
        let task = tokio::spawn(refresh_loop(Arc::clone(&shared))).abort_handle();
        Ok(Self { shared, task })
    }

    /// Every node as last listed, by name.
    pub(super) fn snapshot(&self) -> Vec<ComputeNode> {
        self.shared.read().clone()
    }

    /// Lists the nodes and pods now (after a start or a stop, say); a failure is logged and
    /// the last snapshot kept.
    pub(super) async fn refresh(&self) {
        if let Err(e) = self.shared.refresh().await {
            tracing::warn!(error = %e, "cannot refresh the Kubernetes nodes; keeping the last list");
        }
    }

    /// Lists the nodes and pods now.
    pub(super) async fn try_refresh(&self) -> Result<(), SpawnerError> {
        self.shared.refresh().await
    }

    /// The sum of the schedulable nodes' allocatable resources.
    pub(super) fn capacity(&self) -> Capacity {
        total_capacity(&self.shared.read())
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<ComputeNode>> {
        self.snapshot.read().unwrap_or_else(PoisonError::into_inner)
    }

    async fn refresh(&self) -> Result<(), SpawnerError> {
        let _one_at_a_time = self.listing.lock().await;
        let nodes = Api::<Node>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                SpawnerError::kube(
                    "listing the Kubernetes nodes (the hub's service account needs `list` on \
                     nodes: the Helm chart's ClusterRole)",
                    e,
                )
            })?;
        let selector = format!("{LABEL_HUB}={}", self.instance);
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| {
                SpawnerError::kube(
                    format!("listing Xiji's pods in the namespace {}", self.namespace),
                    e,
                )
            })?;
        // Filtered here too: a label selector is a request, and the pods are counted only if
        // they are this hub's.
        let ours: Vec<&Pod> = pods
            .items
            .iter()
            .filter(|p| {
                p.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_HUB))
                    .is_some_and(|v| *v == self.instance)
            })
            .collect();
        let mut list: Vec<ComputeNode> = nodes
            .items
            .iter()
            .map(|n| compute_node(n, &ours, &self.pool_label, &self.gpu_resource))
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = list;
        Ok(())
    }
}

/// Lists again every [`REFRESH_INTERVAL`]; a failure is logged once until a listing works.
async fn refresh_loop(shared: Arc<Shared>) {
    let mut failing = false;
    loop {
        tokio::time::sleep(REFRESH_INTERVAL).await;
        match shared.refresh().await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the Kubernetes nodes are listed again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot refresh the Kubernetes nodes; keeping the last list");
            }
            Err(_) => {}
        }
    }
}

pub(super) fn capacity(spawner: &KubernetesSpawner) -> Capacity {
    spawner.inventory.capacity()
}

pub(super) async fn compute_nodes(
    spawner: &KubernetesSpawner,
) -> Result<Vec<ComputeNode>, SpawnerError> {
    spawner.inventory.try_refresh().await?;
    Ok(spawner.inventory.snapshot())
}

pub(super) async fn set_node_pool(
    spawner: &KubernetesSpawner,
    node: &str,
    pool: Option<&str>,
) -> Result<(), SpawnerError> {
    if let Some(pool) = pool {
        if !is_pool_name(pool) {
            return Err(SpawnerError::Rejected(format!(
                "{pool:?} cannot name a compute pool: use 1 to 63 lower-case letters, digits and \
                 '-', starting and ending with a letter or digit"
            )));
        }
    }
    let nodes = Api::<Node>::all(spawner.client.clone());
    let no_such_node = || SpawnerError::NoSuchNode {
        node: node.to_owned(),
        nodes: spawner
            .inventory
            .snapshot()
            .into_iter()
            .map(|n| n.name)
            .collect(),
    };
    let found = nodes
        .get_opt(node)
        .await
        .map_err(|e| SpawnerError::kube(format!("reading the node {node}"), e))?;
    if found.is_none() {
        spawner.inventory.refresh().await;
        return Err(no_such_node());
    }
    let label = &spawner.cfg.pool_label;
    let patch = serde_json::json!({ "metadata": { "labels": { label.as_str(): pool } } });
    match nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Err(no_such_node()),
        Err(e) => {
            return Err(SpawnerError::kube(
                format!(
                    "labelling the node {node} {label}={}",
                    pool.unwrap_or("(none)")
                ),
                e,
            ))
        }
    }
    match pool {
        Some(pool) => tracing::info!(node, pool, "node put into a compute pool"),
        None => tracing::info!(node, "node taken out of Xiji's compute pools"),
    }
    spawner.inventory.refresh().await;
    Ok(())
}

/// The sum of the schedulable nodes' allocatable resources.
fn total_capacity(nodes: &[ComputeNode]) -> Capacity {
    let mut total = Capacity {
        nodes: Some(0),
        cpu_millis: Some(0),
        memory_mib: Some(0),
        gpus: Some(0),
    };
    for node in nodes.iter().filter(|n| n.schedulable) {
        add(&mut total.nodes, node.allocatable.nodes);
        add(&mut total.cpu_millis, node.allocatable.cpu_millis);
        add(&mut total.memory_mib, node.allocatable.memory_mib);
        add(&mut total.gpus, node.allocatable.gpus);
    }
    total
}

fn add(total: &mut Option<u64>, more: Option<u64>) {
    if let (Some(t), Some(m)) = (total.as_mut(), more) {
        *t = t.saturating_add(m);
    }
}

/// One Kubernetes node as a compute node, with what `pods` (this hub's) request on it.
fn compute_node(node: &Node, pods: &[&Pod], pool_label: &str, gpu_resource: &str) -> ComputeNode {
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = node.metadata.labels.clone().unwrap_or_default();
    let pool = labels.get(pool_label).cloned();
    let status = node.status.as_ref();
    let conditions: Vec<NodeCondition> = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| NodeCondition {
            kind: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone().filter(|r| !r.is_empty()),
            message: c.message.clone().filter(|m| !m.is_empty()),
        })
        .collect();
    let ready = conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.status == "True");
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let info = status.and_then(|s| s.node_info.as_ref());
    let empty = BTreeMap::new();
    let capacity = status.and_then(|s| s.capacity.as_ref()).unwrap_or(&empty);
    // Without `allocatable` (an old or partial status) the node can hand out what it has.
    let allocatable = status
        .and_then(|s| s.allocatable.as_ref())
        .unwrap_or(capacity);

    let mut used = Requests::default();
    let mut xiji_nodes = 0u32;
    for pod in pods.iter().filter(|p| runs_on(p, &name)) {
        used.add(&pod_requests(pod, gpu_resource));
        xiji_nodes = xiji_nodes.saturating_add(1);
    }
    ComputeNode {
        schedulable: pool.is_some() && !cordoned && ready,
        pool,
        capacity: node_resources(capacity, gpu_resource),
        allocatable: node_resources(allocatable, gpu_resource),
        used: Capacity {
            nodes: Some(u64::from(xiji_nodes)),
            cpu_millis: Some(used.cpu_millis),
            memory_mib: Some(
                used.memory_bytes
                    .div_ceil(MIB)
                    .try_into()
                    .unwrap_or(u64::MAX),
            ),
            gpus: Some(used.gpus),
        },
        xiji_nodes,
        conditions,
        version: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        platform: info
            .map(|i| format!("{}/{}", i.operating_system, i.architecture))
            .unwrap_or_default(),
        gpu_model: labels.get(GPU_PRODUCT_LABEL).cloned(),
        labels,
        name,
    }
}

/// Whether the pod is bound to `node` and not terminated (a terminated pod holds nothing).
fn runs_on(pod: &Pod, node: &str) -> bool {
    let bound = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| n == node);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    bound && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// A node's resources: `pods` as nodes, CPU, memory, the GPU resource (0 when absent).
fn node_resources(resources: &BTreeMap<String, Quantity>, gpu_resource: &str) -> Capacity {
    let get = |key: &str| resources.get(key).and_then(|q| ParsedQuantity::parse(&q.0));
    Capacity {
        nodes: get("pods").and_then(|q| q.floor_in(1)),
        cpu_millis: get("cpu").and_then(|q| q.floor_in_scaled(1000)),
        memory_mib: get("memory").and_then(|q| q.floor_in(MIB)),
        gpus: Some(get(gpu_resource).and_then(|q| q.floor_in(1)).unwrap_or(0)),
    }
}

/// What a pod asks the scheduler for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Requests {
    cpu_millis: u64,
    memory_bytes: u128,
    gpus: u64,
}

impl Requests {
    fn add(&mut self, other: &Requests) {
        self.cpu_millis = self.cpu_millis.saturating_add(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.saturating_add(other.memory_bytes);
        self.gpus = self.gpus.saturating_add(other.gpus);
    }

    fn max(&mut self, other: &Requests) {
        self.cpu_millis = self.cpu_millis.max(other.cpu_millis);
        self.memory_bytes = self.memory_bytes.max(other.memory_bytes);
        self.gpus = self.gpus.max(other.gpus);
    }

    /// From a requests map, with the limits where a request is missing (Kubernetes sets a
    /// missing request to the limit).
    fn from_maps(
        requests: Option<&BTreeMap<String, Quantity>>,
        limits: Option<&BTreeMap<String, Quantity>>,
        gpu_resource: &str,
    ) -> Requests {
        let get = |key: &str| {
            requests
                .and_then(|r| r.get(key))
                .or_else(|| limits.and_then(|l| l.get(key)))
                .and_then(|q| ParsedQuantity::parse(&q.0))
        };
        Requests {
            cpu_millis: get("cpu").and_then(|q| q.ceil_in_scaled(1000)).unwrap_or(0),
            memory_bytes: get("memory")
                .and_then(|q| q.ceil_in(1))
                .map_or(0, u128::from),
            gpus: get(gpu_resource).and_then(|q| q.ceil_in(1)).unwrap_or(0),
        }
    }

    fn of_container(container: &Container, gpu_resource: &str) -> Requests {
        let resources = container.resources.as_ref();
        Requests::from_maps(
            resources.and_then(|r| r.requests.as_ref()),
            resources.and_then(|r| r.limits.as_ref()),
            gpu_resource,
        )
    }
}

/// A pod's effective requests as the scheduler counts them: the pod-level resources if set,
/// else the containers' and sidecars' sum or the largest init container with the sidecars
/// started before it, whichever is more; plus the pod's overhead.
fn pod_requests(pod: &Pod, gpu_resource: &str) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let mut total = Requests::default();
    for c in &spec.containers {
        total.add(&Requests::of_container(c, gpu_resource));
    }
    let mut sidecars = Requests::default();
    let mut init_peak = Requests::default();
    for c in spec.init_containers.iter().flatten() {
        let one = Requests::of_container(c, gpu_resource);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&one);
        } else {
            let mut with_sidecars = sidecars;
            with_sidecars.add(&one);
            init_peak.max(&with_sidecars);
        }
    }
    total.add(&sidecars);
    total.max(&init_peak);
    if let Some(pod_level) = spec.resources.as_ref() {
        let pod_level = Requests::from_maps(
            pod_level.requests.as_ref(),
            pod_level.limits.as_ref(),
            gpu_resource,
        );
        // Pod-level resources cover CPU and memory; devices stay per container.
        if pod_level.cpu_millis > 0 {
            total.cpu_millis = pod_level.cpu_millis;
        }
        if pod_level.memory_bytes > 0 {
            total.memory_bytes = pod_level.memory_bytes;
        }
    }
    if let Some(overhead) = spec.overhead.as_ref() {
        total.add(&Requests::from_maps(Some(overhead), None, gpu_resource));
    }
    total
}

/// A Kubernetes quantity (`4`, `3500m`, `16Gi`, `16G`, `1e3`, `0.5`) as an exact fraction:
/// `numerator / 10^scale`, both non-negative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ParsedQuantity {
    numerator: u128,
    scale: u32,
}

impl ParsedQuantity {
    /// Parses the quantity's text; `None` for anything Kubernetes would refuse, a negative
    /// value, or one too large to count.
    fn parse(text: &str) -> Option<ParsedQuantity> {
        let text = text.trim();
        let text = text.strip_prefix('+').unwrap_or(text);
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let digits = format!("{whole}{fraction}");
        if digits.len() > 30 {
            return None;
        }
        let mut numerator: u128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        // value = numerator * 10^exp10 * 2^exp2
        let mut exp10: i32 = -i32::try_from(fraction.len()).ok()?;
        let mut exp2: u32 = 0;
        match suffix {
            "" => {}
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            exponent => {
                let power = exponent
                    .strip_prefix(['e', 'E'])
                    .filter(|p| {
                        let p = p.strip_prefix(['+', '-']).unwrap_or(p);
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                    })
                    .and_then(|p| p.parse::<i32>().ok())
                    .filter(|p| p.abs() <= 40)?;
                exp10 += power;
            }
        }
        numerator = numerator.checked_mul(1u128.checked_shl(exp2)?)?;
        if exp10 >= 0 {
            numerator = numerator.checked_mul(10u128.checked_pow(exp10.unsigned_abs())?)?;
            Some(ParsedQuantity {
                numerator,
                scale: 0,
            })
        } else {
            let scale = exp10.unsigned_abs();
            10u128.checked_pow(scale)?;
            Some(ParsedQuantity { numerator, scale })
        }
    }

    /// The value times `factor`, divided by `unit`, rounded down or up.
    fn in_units(self, factor: u128, unit: u128, up: bool) -> Option<u64> {
        let denominator = 10u128.checked_pow(self.scale)?.checked_mul(unit)?;
        let scaled = self.numerator.checked_mul(factor)?;
        let value = if up {
            scaled.div_ceil(denominator)
        } else {
            scaled / denominator
        };
        u64::try_from(value).ok()
    }

    /// Whole `unit`s, rounded down (what a node has).
    fn floor_in(self, unit: u128) -> Option<u64> {
        self.in_units(1, unit, false)
    }

    /// Whole `unit`s, rounded up (what a pod asks for).
    fn ceil_in(self, unit: u128) -> Option<u64> {
        self.in_units(1, unit, true)
    }

    /// The value times `factor` (1000 for thousandths), rounded down.
    fn floor_in_scaled(self, factor: u128) -> Option<u64> {
        self.in_units(factor, 1, false)
    }

    /// The value times `factor`, rounded up, as Kubernetes' `MilliValue`.
    fn ceil_in_scaled(self, factor: u128) -> Option<u64> {
        self.in_units(factor, 1, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> ParsedQuantity {
        ParsedQuantity::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn cpu_quantities_become_thousandths_of_a_core() {
        assert_eq!(q("4").floor_in_scaled(1000), Some(4000));
        assert_eq!(q("3500m").floor_in_scaled(1000), Some(3500));
        assert_eq!(q("0.5").floor_in_scaled(1000), Some(500));
        assert_eq!(q(".25").floor_in_scaled(1000), Some(250));
        assert_eq!(q("1e3").floor_in_scaled(1000), Some(1_000_000));
        assert_eq!(q("2E-3").floor_in_scaled(1000), Some(2));
        assert_eq!(q("+7").floor_in_scaled(1000), Some(7000));
        // A request rounds up to a whole thousandth, as Kubernetes' MilliValue does.
        assert_eq!(q("100u").ceil_in_scaled(1000), Some(1));
        assert_eq!(q("100u").floor_in_scaled(1000), Some(0));
        assert_eq!(q("250000000n").ceil_in_scaled(1000), Some(250));
    }

    #[test]
    fn memory_quantities_become_mib_in_binary_and_decimal_units() {
        assert_eq!(q("16Gi").floor_in(MIB), Some(16384));
        assert_eq!(q("16G").floor_in(MIB), Some(15258)); // 16e9 bytes
        assert_eq!(q("16G").ceil_in(MIB), Some(15259));
        assert_eq!(q("512Mi").floor_in(MIB), Some(512));
        assert_eq!(q("32929812Ki").floor_in(MIB), Some(32158));
        assert_eq!(q("1.5Gi").floor_in(MIB), Some(1536));
        assert_eq!(q("128974848").floor_in(MIB), Some(123));
        assert_eq!(q("129e6").floor_in(MIB), Some(123));
        assert_eq!(q("1Ti").floor_in(MIB), Some(1_048_576));
        assert_eq!(q("2k").floor_in(1), Some(2000));
        assert_eq!(q("1Ei").floor_in(MIB), Some(1 << 40));
    }

    #[test]
    fn malformed_negative_and_huge_quantities_are_refused() {
        for bad in [
            "", "abc", "-1", "1.2.3", "1Qi", "1e", "1e+", "4 cores", "1..", "e3", "1KiB", "1e99",
            ".",
        ] {
            assert_eq!(ParsedQuantity::parse(bad), None, "{bad:?}");
        }
        assert_eq!(q("0").floor_in(1), Some(0));
        assert_eq!(q("99999999999999999999E").floor_in(1), None);
    }

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).unwrap()
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn ready_node(name: &str, pool: Option<&str>, cpu: &str, memory: &str) -> Node {
        let mut labels = serde_json::json!({"kubernetes.io/hostname": name});
        if let Some(pool) = pool {
            labels["xiji.org/pool"] = pool.into();
        }
        node(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
                "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status"},
                    {"type": "MemoryPressure", "status": "False"}
                ],
                "nodeInfo": {
                    "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://2.0.5",
                    "kernelVersion": "6.1.0", "kubeProxyVersion": "", "kubeletVersion": "v1.33.2",
                    "machineID": "", "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12",
                    "systemUUID": ""
                }
            }
        }))
    }

    #[test]
    fn a_node_reports_its_pool_resources_conditions_and_what_xijis_running_pods_request() {
        let mut n = ready_node("node-a", Some("cpu"), "8", "32Gi");
        if let Some(status) = n.status.as_mut() {
            status.allocatable = Some(BTreeMap::from([
                ("cpu".into(), Quantity("7800m".into())),
                ("memory".into(), Quantity("31Gi".into())),
                ("pods".into(), Quantity("110".into())),
            ]));
        }
        let running = pod(serde_json::json!({
            "metadata": {"name": "p1", "labels": {"xiji.org/hub": "xiji"}},
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "node", "resources": {"requests": {"cpu": "1500m", "memory": "2Gi"}}},
                {"name": "helper", "resources": {"limits": {"cpu": "250m", "memory": "100M"}}}
            ]},
            "status": {"phase": "Running"}
        }));
        let finished = pod(serde_json::json!({
            "metadata": {"name": "p2", "labels": {"xiji.org/hub": "xiji"}},
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "node", "resources": {"requests": {"cpu": "4", "memory": "4Gi"}}}
            ]},
            "status": {"phase": "Succeeded"}
        }));
        let elsewhere = pod(serde_json::json!({
            "metadata": {"name": "p3"},
            "spec": {"nodeName": "node-b", "containers": [
                {"name": "node", "resources": {"requests": {"cpu": "4"}}}
            ]}
        }));
        let c = compute_node(
            &n,
            &[&running, &finished, &elsewhere],
            "xiji.org/pool",
            "nvidia.com/gpu",
        );
        assert_eq!(c.name, "node-a");
        assert_eq!(c.pool.as_deref(), Some("cpu"));
        assert!(c.schedulable);
        assert_eq!(c.capacity.cpu_millis, Some(8000));
        assert_eq!(c.capacity.memory_mib, Some(32768));
        assert_eq!(c.capacity.gpus, Some(0));
        assert_eq!(c.allocatable.cpu_millis, Some(7800));
        assert_eq!(c.allocatable.memory_mib, Some(31744));
        assert_eq!(c.allocatable.nodes, Some(110));
        // 2 GiB + 100 MB rounds up to 2144 MiB.
        assert_eq!(
            c.used,
            Capacity {
                nodes: Some(1),
                cpu_millis: Some(1750),
                memory_mib: Some(2144),
                gpus: Some(0)
            }
        );
        assert_eq!(c.xiji_nodes, 1);
        assert_eq!(c.version, "v1.33.2");
        assert_eq!(c.platform, "linux/amd64");
        assert_eq!(c.conditions.len(), 2);
        assert_eq!(c.conditions[0].reason.as_deref(), Some("KubeletReady"));
        assert_eq!(c.conditions[1].reason, None);
    }

    #[test]
    fn only_ready_uncordoned_nodes_in_a_pool_are_schedulable_and_count_in_the_capacity() {
        let in_pool = ready_node("a", Some("cpu"), "4", "16Gi");
        let no_pool = ready_node("b", None, "8", "32Gi");
        let mut cordoned = ready_node("c", Some("cpu"), "16", "64Gi");
        cordoned.spec.get_or_insert_default().unschedulable = Some(true);
        let mut not_ready = ready_node("d", Some("cpu"), "32", "128Gi");
        if let Some(s) = not_ready.status.as_mut() {
            s.conditions.get_or_insert_default()[0].status = "Unknown".into();
        }
        let mut gpu = ready_node("e", Some("gpu"), "16", "64Gi");
        if let Some(s) = gpu.status.as_mut() {
            s.allocatable
                .get_or_insert_default()
                .insert("nvidia.com/gpu".into(), Quantity("4".into()));
        }
        gpu.metadata
            .labels
            .get_or_insert_default()
            .insert(GPU_PRODUCT_LABEL.into(), "NVIDIA-A100-SXM4-80GB".into());
        let nodes: Vec<ComputeNode> = [&in_pool, &no_pool, &cordoned, &not_ready, &gpu]
            .into_iter()
            .map(|n| compute_node(n, &[], "xiji.org/pool", "nvidia.com/gpu"))
            .collect();
        let schedulable: Vec<bool> = nodes.iter().map(|n| n.schedulable).collect();
        assert_eq!(schedulable, [true, false, false, false, true]);
        assert_eq!(nodes[4].gpu_model.as_deref(), Some("NVIDIA-A100-SXM4-80GB"));
        assert_eq!(nodes[4].allocatable.gpus, Some(4));
        assert_eq!(
            nodes[4].capacity.gpus,
            Some(0),
            "capacity lists no GPU here"
        );
        assert_eq!(
            total_capacity(&nodes),
            Capacity {
                nodes: Some(220),
                cpu_millis: Some(20_000),
                memory_mib: Some(80 * 1024),
                gpus: Some(4)
            }
        );
        assert_eq!(
            total_capacity(&[]),
            Capacity {
                nodes: Some(0),
                cpu_millis: Some(0),
                memory_mib: Some(0),
                gpus: Some(0)
            }
        );
    }

    #[test]
    fn a_pods_requests_count_init_containers_sidecars_pod_level_resources_and_overhead() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}}
                ],
                "initContainers": [
                    {"name": "sidecar", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "setup", "resources": {"requests": {"cpu": "3", "memory": "256Mi"}}}
                ],
                "overhead": {"cpu": "10m", "memory": "1Mi"}
            }
        }));
        // CPU: the setup step with its sidecar (3.1) beats 1 + 0.1; memory: 1 GiB + 64 MiB.
        assert_eq!(
            pod_requests(&p, "nvidia.com/gpu"),
            Requests {
                cpu_millis: 3110,
                memory_bytes: (1024 + 64 + 1) * MIB,
                gpus: 1
            }
        );
        let pod_level = pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "resources": {"requests": {"cpu": "2", "memory": "3Gi"}},
                "containers": [{"name": "a"}]
            }
        }));
        assert_eq!(
            pod_requests(&pod_level, "nvidia.com/gpu"),
            Requests {
                cpu_millis: 2000,
                memory_bytes: 3 * 1024 * MIB,
                gpus: 0
            }
        );
    }
}
