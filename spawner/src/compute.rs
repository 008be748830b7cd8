//! The machines servers run on, as an administrator sees them ([`ComputeNode`]): what each
//! has, what Xiji's servers use of it, and which compute pool it is in.

use std::collections::BTreeMap;

use crate::Capacity;

/// One machine of the backend (a Kubernetes node, the Docker host, the hub's own host).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ComputeNode {
    /// The machine's name (the Kubernetes node name, the Docker host's name).
    pub name: String,
    /// The Xiji compute pool the machine is in; `None`: not managed by Xiji (no new clusters
    /// are placed on it).
    pub pool: Option<String>,
    /// Whether new clusters may be placed on it now (in a pool, not cordoned, ready).
    pub schedulable: bool,
    /// What the machine has.
    pub capacity: Capacity,
    /// What the backend may hand out on it (Kubernetes' `allocatable`; the host's capacity
    /// with overcommit for Docker).
    pub allocatable: Capacity,
    /// What Xiji's running nodes on it reserve (their requests).
    pub used: Capacity,
    /// How many of Xiji's cluster nodes run on it.
    pub xiji_nodes: u32,
    /// The machine's conditions (`Ready`, `MemoryPressure`, ...), as the backend reports them.
    pub conditions: Vec<NodeCondition>,
    /// The runtime's version, e.g. `v1.33.2` (kubelet) or `Docker 28.2.2`.
    pub version: String,
    /// Operating system and architecture, e.g. `linux/amd64`.
    pub platform: String,
    /// The GPU model, where the backend knows it (a node label such as
    /// `nvidia.com/gpu.product`).
    pub gpu_model: Option<String>,
    /// The machine's labels (Kubernetes); empty elsewhere.
    pub labels: BTreeMap<String, String>,
}

/// One condition of a machine.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeCondition {
    /// `Ready`, `MemoryPressure`, `DiskPressure`, ...
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The machine's short reason, if any.
    pub reason: Option<String>,
    /// The machine's message, if any.
    pub message: Option<String>,
}
