//! The node agent: saving a container of *this* machine as an image, for a hub on another one.
//!
//! On Kubernetes the hub does not run where the nodes' containers do, so it cannot read their
//! writable layers. `xiji-node-agent` runs on every Kubernetes node (a DaemonSet) and offers the
//! builder as a small authenticated HTTP service:
//!
//! - [`locate`]: a container is found by the kernel alone, without the container runtime's
//!   API: its processes by their cgroup (`{host_proc}/*/cgroup` naming the container id),
//!   its writable layer from their mountinfo (the `upperdir=` of the overlay at `/`), its cgroup
//!   directory for the freezer;
//! - [`freeze`]: with `pause`, the container's cgroup is frozen while its layer is read and
//!   thawed after, always (also on failure, cancel, or an agent that restarts);
//! - [`usage`]: a container's CPU time from its cgroup, for the hub's metering;
//! - [`service`]: the HTTP API (`POST /v1/saves`, `GET`/`DELETE /v1/saves/{id}`,
//!   `GET /v1/containers/{id}/usage`), every request with `Authorization: Bearer <token>`;
//! - [`client`]: the hub's side: a save on an agent is an ordinary [`SaveJob`](crate::SaveJob)
//!   whose progress is polled from the agent; a container's CPU time is one request.
//!
//! The wire types are in [`wire`], shared by both sides.

pub mod client;
pub mod freeze;
pub mod locate;
pub mod service;
pub mod usage;
pub mod wire;

pub use client::AgentClient;
pub use freeze::{thaw_recorded, CgroupFreezer};
pub use locate::{
    locate, locate_cgroup, ContainerCgroup, ContainerId, ContainerLocation, HostPaths,
};
pub use service::{AgentConfig, NodeAgent};
pub use usage::container_usage;
pub use wire::{ContainerUsage, SaveSpec, SaveView};

/// Why the agent refuses or cannot do a request. Each variant is one HTTP status; the text is
/// for the person reading the hub's message and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request is malformed (a container id that is not one, an unknown field).
    #[error("{0}")]
    BadRequest(String),
    /// The token is missing or wrong.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// No such container on this machine, or no such job.
    #[error("{0}")]
    NotFound(String),
    /// A save of this container, or a job of this id, is under way.
    #[error("{0}")]
    Conflict(String),
    /// The container exists but cannot be saved (its root is not an overlay with an upper
    /// directory, or no cgroup freezer is found for it).
    #[error("{0}")]
    Unprocessable(String),
    /// The agent cannot do it on this machine (a host path it was not given, an I/O error).
    #[error("{0}")]
    Internal(String),
}

impl AgentError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            AgentError::BadRequest(_) => 400,
            AgentError::Unauthorized => 401,
            AgentError::NotFound(_) => 404,
            AgentError::Conflict(_) => 409,
            AgentError::Unprocessable(_) => 422,
            AgentError::Internal(_) => 500,
        }
    }
}
