//! Gang admission: a cluster's N pods run all at once or not at all.
//!
//! Where Volcano runs (the API server serves `scheduling.volcano.sh/v1beta1` PodGroups, found
//! once at connection), the cluster gets a PodGroup with `minMember = N` and Volcano places all
//! N pods or none. Elsewhere Xiji admits the cluster itself before making anything: the pool's
//! schedulable nodes (in the pool, not cordoned, ready: the [inventory](super::nodes), listed
//! again for the start), with their allocatable resources minus what this hub's pods request
//! (other workloads on those nodes only the scheduler sees: a pod it cannot place fails the start
//! at `ready_timeout`), must hold N pods of the cluster's size. The pods are all of one size, so first-fit
//! decreasing is each node's whole number of pods, summed.
//!
//! Admission is a snapshot: two starts admitted at the same moment may want the same room, and
//! nodes change. Whatever is admitted is therefore still held to `ready_timeout`: a pod the
//! scheduler leaves Unschedulable fails the start with the scheduler's reason, and everything
//! made for the cluster is deleted.

use super::objects::Gang;
use crate::resources::human_size;
use crate::{Capacity, ClusterResources, ComputeNode, SpawnerError};

const MIB: u64 = 1024 * 1024;

/// The API version of Volcano's PodGroups.
pub(super) const VOLCANO_API_VERSION: &str = "scheduling.volcano.sh/v1beta1";

/// Whether a gang scheduler runs: Volcano when its PodGroups are served, else none. A
/// discovery that fails for another reason than "not served" is logged and taken as none.
pub(super) async fn detect(client: &kube::Client) -> Gang {
    match client.list_api_group_resources(VOLCANO_API_VERSION).await {
        Ok(list) if list.resources.iter().any(|r| r.name == "podgroups") => {
            tracing::info!(
                "Volcano's PodGroups are served: clusters are admitted as gangs by Volcano"
            );
            Gang::Volcano
        }
        Ok(_) => Gang::None,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            tracing::info!("no gang scheduler: Xiji admits clusters against the nodes' free room");
            Gang::None
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot discover Volcano's PodGroups; admitting clusters without a gang scheduler");
            Gang::None
        }
    }
}

/// What one pod of a cluster asks the scheduler for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PodSize {
    pub(super) cpu_millis: u64,
    pub(super) memory_mib: u64,
    pub(super) gpus: u64,
}

impl PodSize {
    pub(super) fn of(resources: &ClusterResources) -> Self {
        // Validated sizes: 0.1 ≤ cpus, far below 2^53 millicores.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cpu_millis = resources
            .cpus
            .map_or(0, |c| (c * 1000.0).ceil().max(0.0) as u64);
        Self {
            cpu_millis,
            memory_mib: resources.memory_bytes.map_or(0, |m| m.div_ceil(MIB)),
            gpus: u64::from(resources.gpus),
        }
    }

    /// How many pods of this size fit in `room`; a resource the room does not report holds
    /// none of a pod that asks for it.
    fn fit_in(&self, room: &Room) -> u64 {
        [
            (self.cpu_millis, room.cpu_millis),
            (self.memory_mib, room.memory_mib),
            (self.gpus, room.gpus),
        ]
        .into_iter()
        .filter(|(asked, _)| *asked > 0)
        .map(|(asked, free)| free / asked)
        .min()
        .unwrap_or(u64::MAX)
    }
}

/// Resources of one node: its allocatable, or what is free of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Room {
    cpu_millis: u64,
    memory_mib: u64,
    gpus: u64,
}

impl Room {
    fn allocatable(node: &ComputeNode) -> Self {
        Self::from(&node.allocatable)
    }

    fn free(node: &ComputeNode) -> Self {
        let total = Self::from(&node.allocatable);
        let used = Self::from(&node.used);
        Self {
            cpu_millis: total.cpu_millis.saturating_sub(used.cpu_millis),
            memory_mib: total.memory_mib.saturating_sub(used.memory_mib),
            gpus: total.gpus.saturating_sub(used.gpus),
        }
    }
}

impl From<&Capacity> for Room {
    fn from(c: &Capacity) -> Self {
        Self {
            cpu_millis: c.cpu_millis.unwrap_or(0),
            memory_mib: c.memory_mib.unwrap_or(0),
            gpus: c.gpus.unwrap_or(0),
        }
    }
}

/// The nodes a cluster of `pool` may be placed on: schedulable, in that pool (`None`: in any
/// pool).
pub(super) fn pool_nodes<'a>(nodes: &'a [ComputeNode], pool: Option<&str>) -> Vec<&'a ComputeNode> {
    nodes
        .iter()
        .filter(|n| n.schedulable && n.pool.is_some())
        .filter(|n| pool.is_none_or(|p| n.pool.as_deref() == Some(p)))
        .collect()
}

/// The largest allocatable CPU (cores), memory (bytes) and GPUs of the pool's nodes, each on
/// its own, for the sizes a spawn form offers; `None` when the pool has no node.
pub(super) fn largest(nodes: &[ComputeNode], pool: Option<&str>) -> Option<(f64, u64, u32)> {
    let rooms: Vec<Room> = pool_nodes(nodes, pool)
        .into_iter()
        .map(Room::allocatable)
        .collect();
    let cpu = rooms.iter().map(|r| r.cpu_millis).max()?;
    let memory = rooms.iter().map(|r| r.memory_mib).max()?;
    let gpus = rooms.iter().map(|r| r.gpus).max()?;
    // Node sizes are far below 2^53 millicores.
    #[allow(clippy::cast_precision_loss)]
    let cores = cpu as f64 / 1000.0;
    Some((
        cores,
        memory.saturating_mul(MIB),
        u32::try_from(gpus).unwrap_or(u32::MAX),
    ))
}

/// Whether the pool could ever hold the cluster: one of its nodes holds a pod of this size and
/// all the nodes, idle, hold `resources.nodes` of them. The refusal says what to change.
pub(super) fn check_size(
    nodes: &[ComputeNode],
    pool: Option<&str>,
    resources: &ClusterResources,
) -> Result<(), SpawnerError> {
    let size = PodSize::of(resources);
    let rooms = rooms(nodes, pool, Room::allocatable)?;
    let idle: u64 = rooms.iter().map(|r| size.fit_in(r)).sum();
    if idle == 0 {
        return Err(too_big(&rooms, pool, resources));
    }
    let wanted = u64::from(resources.nodes);
    if idle < wanted {
        return Err(SpawnerError::Rejected(format!(
            "{wanted} nodes of {} do not fit on {} even when it is idle (at most {idle} do): ask \
             for at most {idle} nodes, or smaller nodes",
            size_words(resources),
            pool_words(pool)
        )));
    }
    Ok(())
}

/// Whether the pool holds the cluster now: its nodes' free room holds `resources.nodes` pods.
pub(super) fn check_room(
    nodes: &[ComputeNode],
    pool: Option<&str>,
    resources: &ClusterResources,
) -> Result<(), SpawnerError> {
    let size = PodSize::of(resources);
    let fit: u64 = rooms(nodes, pool, Room::free)?
        .iter()
        .map(|r| size.fit_in(r))
        .sum();
    let wanted = u64::from(resources.nodes);
    if fit < wanted {
        return Err(SpawnerError::Rejected(format!(
            "the cluster needs {wanted} nodes of {}; only {fit} fit now on {}: try again when \
             other clusters have stopped, or ask for fewer or smaller nodes",
            size_words(resources),
            pool_words(pool)
        )));
    }
    Ok(())
}

/// `room` of each of the pool's nodes; a refusal when the pool has none.
fn rooms(
    nodes: &[ComputeNode],
    pool: Option<&str>,
    room: fn(&ComputeNode) -> Room,
) -> Result<Vec<Room>, SpawnerError> {
    let rooms: Vec<Room> = pool_nodes(nodes, pool).into_iter().map(room).collect();
    if rooms.is_empty() {
        return Err(no_nodes(pool));
    }
    Ok(rooms)
}

fn no_nodes(pool: Option<&str>) -> SpawnerError {
    SpawnerError::Rejected(match pool {
        Some(p) => format!(
            "no compute node of pool {p} takes new clusters now: choose another pool, or ask \
             an administrator to add nodes to it"
        ),
        None => "no compute node takes new clusters now: an administrator must add Kubernetes \
                 nodes to a compute pool"
            .to_owned(),
    })
}

/// The refusal of a node size that no node of the pool holds even when idle, naming the
/// resource that is too much.
fn too_big(rooms: &[Room], pool: Option<&str>, resources: &ClusterResources) -> SpawnerError {
    let size = PodSize::of(resources);
    let most = |f: fn(&Room) -> u64| rooms.iter().map(f).max().unwrap_or(0);
    let (cpu, memory, gpus) = (
        most(|r| r.cpu_millis),
        most(|r| r.memory_mib),
        most(|r| r.gpus),
    );
    let place = pool.map_or_else(String::new, |p| format!(" of pool {p}"));
    let message = if size.cpu_millis > cpu {
        // Sizes in messages; far below 2^53.
        #[allow(clippy::cast_precision_loss)]
        let cores = cpu as f64 / 1000.0;
        format!(
            "{} CPU cores per node is more than any compute node{place} offers ({cores}): ask \
             for at most {cores} cores per node",
            resources.cpus.unwrap_or(0.0)
        )
    } else if size.memory_mib > memory {
        let most = human_size(memory.saturating_mul(MIB));
        format!(
            "{} of memory per node is more than any compute node{place} offers ({most}): ask for \
             at most {most} per node",
            human_size(resources.memory_bytes.unwrap_or(0))
        )
    } else if size.gpus > gpus && gpus == 0 {
        format!("no compute node{place} has a GPU: ask for 0 GPUs, or choose a GPU pool")
    } else if size.gpus > gpus {
        format!(
            "{} GPUs per node is more than any compute node{place} has ({gpus}): ask for at most \
             {gpus} GPUs per node",
            resources.gpus
        )
    } else {
        format!(
            "no single compute node{place} offers {} at once: ask for smaller nodes",
            size_words(resources)
        )
    };
    SpawnerError::Rejected(message)
}

/// `2 CPU / 4G` or `1 CPU / 8G / 1 GPU`.
fn size_words(resources: &ClusterResources) -> String {
    let mut words = format!(
        "{} CPU / {}",
        resources.cpus.unwrap_or(0.0),
        human_size(resources.memory_bytes.unwrap_or(0))
    );
    if resources.gpus > 0 {
        words.push_str(&format!(
            " / {} GPU{}",
            resources.gpus,
            if resources.gpus == 1 { "" } else { "s" }
        ));
    }
    words
}

fn pool_words(pool: Option<&str>) -> String {
    pool.map_or_else(|| "the compute pools".to_owned(), |p| format!("pool {p}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn node(name: &str, pool: Option<&str>, cpus: u64, memory_gib: u64, gpus: u64) -> ComputeNode {
        ComputeNode {
            name: name.into(),
            pool: pool.map(Into::into),
            schedulable: pool.is_some(),
            allocatable: Capacity {
                nodes: Some(110),
                cpu_millis: Some(cpus * 1000),
                memory_mib: Some(memory_gib * 1024),
                gpus: Some(gpus),
            },
            used: Capacity {
                nodes: Some(0),
                cpu_millis: Some(0),
                memory_mib: Some(0),
                gpus: Some(0),
            },
            ..ComputeNode::default()
        }
    }

    fn using(mut node: ComputeNode, cpus: u64, memory_gib: u64) -> ComputeNode {
        node.used.cpu_millis = Some(cpus * 1000);
        node.used.memory_mib = Some(memory_gib * 1024);
        node
    }

    fn cluster(nodes: u32, cpus: f64, memory_gib: u64, gpus: u32) -> ClusterResources {
        ClusterResources {
            image: None,
            nodes,
            cpus: Some(cpus),
            memory_bytes: Some(memory_gib * GIB),
            gpus,
            storage_bytes: None,
            pool: None,
        }
    }

    fn refusal(result: Result<(), SpawnerError>) -> String {
        match result {
            Err(SpawnerError::Rejected(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_pools_nodes_are_the_schedulable_ones_with_its_label() {
        let mut cordoned = node("c", Some("cpu"), 8, 32, 0);
        cordoned.schedulable = false;
        let nodes = [
            node("a", Some("cpu"), 4, 16, 0),
            node("b", Some("gpu"), 4, 16, 1),
            node("x", None, 64, 256, 0),
            cordoned,
        ];
        let names = |pool| {
            pool_nodes(&nodes, pool)
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some("cpu")), ["a"]);
        assert_eq!(names(Some("gpu")), ["b"]);
        assert_eq!(names(None), ["a", "b"]);
        assert_eq!(largest(&nodes, None), Some((4.0, 16 * GIB, 1)));
        assert_eq!(largest(&nodes, Some("nope")), None);
    }

    #[test]
    fn a_cluster_fits_when_every_pod_finds_a_node_first_fit() {
        // 3 + 1 pods of 2 CPU / 4G fit in the free room; the 5th does not.
        let nodes = [
            using(node("a", Some("cpu"), 8, 16, 0), 2, 4),
            using(node("b", Some("cpu"), 4, 16, 0), 2, 4),
        ];
        assert!(check_room(&nodes, Some("cpu"), &cluster(4, 2.0, 4, 0)).is_ok());
        let message = refusal(check_room(&nodes, Some("cpu"), &cluster(5, 2.0, 4, 0)));
        assert_eq!(
            message,
            "the cluster needs 5 nodes of 2 CPU / 4G; only 4 fit now on pool cpu: try again \
             when other clusters have stopped, or ask for fewer or smaller nodes"
        );
        // Memory is the bound on node a here (12G free: 2 pods of 5G), CPU and memory on b.
        assert!(check_room(&nodes, None, &cluster(4, 1.0, 5, 0)).is_ok());
        let message = refusal(check_room(&nodes, None, &cluster(5, 1.0, 5, 0)));
        assert!(
            message.contains("only 4 fit now on the compute pools"),
            "{message}"
        );
        // Idle, the pool holds 6 of them.
        assert!(check_size(&nodes, None, &cluster(6, 1.0, 5, 0)).is_ok());
    }

    #[test]
    fn a_size_no_node_holds_is_refused_naming_the_resource() {
        let nodes = [
            node("a", Some("cpu"), 4, 16, 0),
            node("b", Some("cpu"), 2, 32, 0),
        ];
        let message = refusal(check_size(&nodes, Some("cpu"), &cluster(1, 8.0, 1, 0)));
        assert_eq!(
            message,
            "8 CPU cores per node is more than any compute node of pool cpu offers (4): ask for \
             at most 4 cores per node"
        );
        let message = refusal(check_size(&nodes, None, &cluster(1, 1.0, 64, 0)));
        assert!(message.contains("64G of memory per node"), "{message}");
        assert!(message.contains("at most 32G per node"), "{message}");
        let message = refusal(check_size(&nodes, None, &cluster(1, 1.0, 1, 1)));
        assert!(
            message.starts_with("no compute node has a GPU"),
            "{message}"
        );
        // Each resource exists, but never on one node together.
        let message = refusal(check_size(&nodes, None, &cluster(1, 3.0, 20, 0)));
        assert!(
            message.contains("no single compute node offers 3 CPU / 20G"),
            "{message}"
        );
        let message = refusal(check_size(&nodes, None, &cluster(5, 1.0, 8, 0)));
        assert!(message.contains("at most 4 do"), "{message}");
    }

    #[test]
    fn a_pool_without_nodes_says_so() {
        let nodes = [node("a", Some("cpu"), 4, 16, 0)];
        let message = refusal(check_size(&nodes, Some("gpu"), &cluster(1, 1.0, 1, 0)));
        assert!(
            message.starts_with("no compute node of pool gpu"),
            "{message}"
        );
        let message = refusal(check_room(&[], None, &cluster(1, 1.0, 1, 0)));
        assert!(
            message.contains("add Kubernetes nodes to a compute pool"),
            "{message}"
        );
    }
}
