//! The node agent's JSON, shared by the agent and its client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::compress::Compression;
use crate::job::JobStatus;
use crate::layer::LayerOptions;
use crate::registry::RegistryConfig;

/// The body of `POST /v1/saves`: which container, onto which base, to which name, how.
///
/// Registry credentials travel in the request (the agent keeps none of its own), so the hub
/// stays the one place that holds them; the hub–agent link must therefore stay inside the
/// cluster (the agent's port is reachable only from the hub: see `docs/saving-images.md`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveSpec {
    /// The job's id, chosen by the caller (the hub passes its own job id): posting the same id
    /// again answers the job that runs or ran (a hub that restarted picks its save up again).
    /// Absent: the agent makes one. `[A-Za-z0-9_-]`, at most 64 characters.
    #[serde(default)]
    pub id: Option<String>,
    /// The container as Kubernetes' `containerStatuses[].containerID` names it:
    /// `containerd://<id>`, `docker://<id>`, `cri-o://<id>`, or the bare 64-digit id.
    pub container_id: String,
    /// The image the container runs: the new image's base.
    pub base_image: String,
    /// The new image, `registry/repository:tag`.
    pub target: String,
    /// Who saves it (history entry, `org.xiji.saved-by`).
    pub saved_by: String,
    /// A description (history comment, `org.opencontainers.image.description`).
    #[serde(default)]
    pub description: Option<String>,
    /// Extra labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Exclusions and size cap (the hub's `[images] excludes` and `size_cap_gb`).
    #[serde(default)]
    pub layer: LayerOptions,
    /// Paths excluded besides `layer.excludes` (this node's dataset mounts).
    #[serde(default)]
    pub extra_excludes: Vec<String>,
    /// Layer compression; absent: the agent's default (parallel gzip on the node's cores). The
    /// agent uses at most its own machine's cores whatever the request says.
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Credentials per registry host and plain-HTTP registries (added to the agent's own
    /// `--plain-http` list).
    #[serde(default)]
    pub registry: RegistryConfig,
    /// Freeze the container's cgroup while its layer is read (a consistent snapshot).
    #[serde(default)]
    pub pause: bool,
}

impl std::fmt::Debug for SaveSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `registry` holds credentials: its `Debug` redacts them, but keep it short anyway.
        f.debug_struct("SaveSpec")
            .field("id", &self.id)
            .field("container_id", &self.container_id)
            .field("base_image", &self.base_image)
            .field("target", &self.target)
            .field("saved_by", &self.saved_by)
            .field("pause", &self.pause)
            .finish_non_exhaustive()
    }
}

/// A save as the agent shows it (`POST` and `GET /v1/saves/{id}`):
/// `{"id", "container_id", "target", "layer_dir", "cgroup", "pause", "frozen", "state",
/// "reason"?, "progress", "image"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveView {
    /// The job's id.
    pub id: String,
    /// The container, as the request named it.
    pub container_id: String,
    /// The new image.
    pub target: String,
    /// The writable layer the agent reads (a path on the agent's machine).
    pub layer_dir: String,
    /// The container's cgroup directory (the one frozen when `pause`); empty when the agent
    /// found no freezer for it (a save without `pause` still works).
    pub cgroup: String,
    /// Whether the request asked for the container to be frozen while it is read.
    pub pause: bool,
    /// Whether the container is frozen by this job right now.
    pub frozen: bool,
    /// State (`queued` … `done`, `failed` with `reason`, `cancelled`), byte progress, result.
    #[serde(flatten)]
    pub status: JobStatus,
}

/// A container's CPU time as the agent read it from its cgroup
/// (`GET /v1/containers/{id}/usage`): `{"cpu_ns", "read_at"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUsage {
    /// CPU time the container's cgroup has used since it was created, in nanoseconds.
    pub cpu_ns: u64,
    /// When the agent read it.
    pub read_at: chrono::DateTime<chrono::Utc>,
}

/// An error answer: `{"status": N, "message": "..."}`, as the hub's API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobState;
    use crate::progress::ByteProgress;

    #[test]
    fn a_view_round_trips_with_its_state_and_reason_at_the_top() {
        let view = SaveView {
            id: "j1".into(),
            container_id: "containerd://ab".into(),
            target: "r/x:1".into(),
            layer_dir: "/var/lib/x/fs".into(),
            cgroup: "/sys/fs/cgroup/x".into(),
            pause: true,
            frozen: false,
            status: JobStatus {
                state: JobState::Failed {
                    reason: "registry down".into(),
                },
                progress: ByteProgress {
                    bytes_read: 7,
                    ..ByteProgress::default()
                },
                image: None,
            },
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["state"], "failed");
        assert_eq!(json["reason"], "registry down");
        assert_eq!(json["progress"]["bytes_read"], 7);
        let back: SaveView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
    }

    #[test]
    fn a_spec_needs_only_the_container_the_images_and_the_user() {
        let spec: SaveSpec = serde_json::from_value(serde_json::json!({
            "container_id": "docker://0123",
            "base_image": "r/base:1",
            "target": "r/new:1",
            "saved_by": "alice",
        }))
        .unwrap();
        assert!(!spec.pause);
        assert_eq!(spec.layer, LayerOptions::default());
        let unknown = serde_json::from_value::<SaveSpec>(serde_json::json!({
            "container_id": "x", "base_image": "b", "target": "t", "saved_by": "a", "paws": true,
        }));
        assert!(unknown.is_err());
    }
}
