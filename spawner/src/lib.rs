//! The Spawner contract: how the hub starts, watches and stops single-user servers.
//!
//! The hub talks to every backend through [`Spawner`]. A backend's `start` returns the
//! server's URL and a JSON *state blob*; the hub stores the blob in its database, and
//! `poll`/`stop`/`url_from_state` work from that blob alone, so a restarted hub finds its
//! servers again. [`wait_for_http_server`] is JupyterHub's readiness check, shared by all
//! backends. Backends: [`local`] (child processes on this machine) and [`docker`] (a virtual
//! cluster of N containers on Docker Engine; see its module docs for how the hub drives it).
//!
//! Multi-node backends report every node in [`Started::nodes`] (and again from the state blob
//! with [`Spawner::nodes_from_state`]) and name them as [`nodes`] says. A spawn request's
//! `user_options` are read once into a [`ClusterRequest`] where the request arrives;
//! [`Spawner::validate`] turns it into [`ClusterResources`] or rejects it with a message for the
//! user, and [`Spawner::start`] gets those resources in [`SpawnSpec::resources`].

mod compute;
pub mod docker;
mod error;
pub mod kubernetes;
pub mod local;
pub mod nodes;
mod paths;
mod readiness;
mod resources;
mod state_blob;
mod usage;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use compute::{ComputeNode, NodeCondition};
pub use error::SpawnerError;
pub use readiness::{wait_for_http_server, wait_until_ready};
pub use resources::{is_pool_name, ClusterRequest, ClusterResources, ResourceLimits};
pub use usage::{host_cpu_millis, host_memory_mib, Capacity, NodeUsage};

/// What the hub asks a backend to start: one server of one user.
pub struct SpawnSpec {
    /// The user's name, e.g. `alice`.
    pub user: String,
    /// The server's name; `""` is the default server.
    pub server_name: String,
    /// The server's URL prefix: `/user/alice/` or `/user/alice/srv/`.
    pub service_prefix: String,
    /// Every `JUPYTERHUB_*` variable the hub sets (`JUPYTERHUB_API_TOKEN`, `_API_URL`,
    /// `_ACTIVITY_URL`, `_CLIENT_ID`, ...) except `JUPYTERHUB_SERVICE_URL`, which the backend
    /// sets once it knows where the server listens.
    pub env: BTreeMap<String, String>,
    /// What to start: the image and the nodes' sizes, as [`Spawner::validate`] returned them
    /// for this request (a backend checks them again and refuses what exceeds its limits).
    pub resources: ClusterResources,
    /// The host directory that holds the user's persistent work (mounted at
    /// `/home/jovyan/work` by container backends, the server's working directory for local
    /// processes); created if missing. `None`: the backend's default
    /// ([`Spawner::default_work_dir`]).
    pub work_dir: Option<PathBuf>,
    /// Secrets given to every node as files (e.g. a desktop's VNC password), never as
    /// environment variables: a backend that can place files in a node puts each at
    /// `{SECRETS_DIR}/{name}`, readable only by the node's user (jovyan), and keeps them out of
    /// saved images; a backend that cannot refuses a spec that has any.
    pub secret_files: Vec<SecretFile>,
    /// Host folders every node sees read-only (the datasets a start asks for), checked with
    /// [`check_mounts`] before anything is made: container backends bind each one read-only at
    /// `/home/jovyan/{relative}`; the local backend links it at `{work dir}/{relative}` (see its
    /// module docs: a link cannot make the files read-only).
    pub mounts: Vec<Mount>,
}

/// A host folder given read-only to every node, e.g. a dataset's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The host folder.
    pub source: PathBuf,
    /// Where it appears, relative to the node user's home (`/home/jovyan`) for container
    /// backends and to the server's working directory for local processes, e.g.
    /// `datasets/alice/mnist`: plain components, no `..`, not absolute.
    pub relative: String,
}

impl Mount {
    /// The components of [`relative`](Self::relative) once it is checked: plain names, none of
    /// them empty, `.` or `..`, no NUL and no backslash.
    fn components(&self) -> Result<Vec<&str>, SpawnerError> {
        let relative = &self.relative;
        let refuse = |why: &str| {
            Err(SpawnerError::InvalidSpec(format!(
                "the mount point {relative:?} {why}: give a relative path of plain folder names, \
                 e.g. \"datasets/alice/mnist\""
            )))
        };
        if relative.is_empty() {
            return refuse("is empty");
        }
        if relative.starts_with('/') {
            return refuse("is absolute");
        }
        if relative.len() > 4096 {
            return refuse("is longer than 4096 bytes");
        }
        let parts: Vec<&str> = relative.split('/').collect();
        for part in &parts {
            match *part {
                "" => return refuse("has an empty component"),
                "." | ".." => return refuse("has a '.' or '..' component"),
                p if p.contains(['\0', '\\']) => return refuse("has a NUL or '\\' in it"),
                _ => {}
            }
        }
        Ok(parts)
    }

    /// Checks the mount on its own: [`relative`](Self::relative) made of plain components, and
    /// [`source`](Self::source) an existing folder given as an absolute path.
    /// [`SpawnerError::InvalidSpec`] says which and why.
    pub fn check(&self) -> Result<(), SpawnerError> {
        self.components()?;
        let source = &self.source;
        if !source.is_absolute() {
            return Err(SpawnerError::InvalidSpec(format!(
                "the folder {} to mount at {:?} is not an absolute path",
                source.display(),
                self.relative
            )));
        }
        match std::fs::metadata(source) {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(SpawnerError::InvalidSpec(format!(
                "{} (to mount at {:?}) is not a folder",
                source.display(),
                self.relative
            ))),
            Err(e) => Err(SpawnerError::InvalidSpec(format!(
                "the folder {} to mount at {:?} cannot be used: {e}",
                source.display(),
                self.relative
            ))),
        }
    }
}

/// Checks every mount of a spec ([`Mount::check`]) and that no two of them are at the same
/// place or one inside the other. [`SpawnerError::InvalidSpec`] names the mount points.
pub fn check_mounts(mounts: &[Mount]) -> Result<(), SpawnerError> {
    let mut seen: Vec<(&str, Vec<&str>)> = Vec::with_capacity(mounts.len());
    for mount in mounts {
        mount.check()?;
        let parts = mount.components()?;
        for (other, other_parts) in &seen {
            let shorter = parts.len().min(other_parts.len());
            if parts[..shorter] == other_parts[..shorter] {
                return Err(SpawnerError::InvalidSpec(format!(
                    "the mount points {other:?} and {:?} overlap: each needs a place of its own",
                    mount.relative
                )));
            }
        }
        seen.push((&mount.relative, parts));
    }
    Ok(())
}

/// Where a node's [`SecretFile`]s are (a directory only the node's user can read).
pub const SECRETS_DIR: &str = "/etc/xiji/secrets";

/// One secret given to a node as the file `{SECRETS_DIR}/{name}` (mode 0400, owned by the
/// node's user).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// File name: letters, digits, `.`, `-`, `_`; no `/`, not starting with `.`.
    pub name: String,
    /// Content.
    pub content: Vec<u8>,
}

impl SecretFile {
    /// A secret file `name` with `content`; [`SpawnerError::InvalidSpec`] when the name is not a
    /// plain file name.
    pub fn new(name: &str, content: impl Into<Vec<u8>>) -> Result<Self, SpawnerError> {
        let plain = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !plain {
            return Err(SpawnerError::InvalidSpec(format!(
                "{name:?} is not a plain file name for a node secret"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            content: content.into(),
        })
    }
}

/// Debug shows the name only.
impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Debug shows the names of the environment variables only (their values hold the server's
/// API token) and the names of the secret files.
impl fmt::Debug for SpawnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnSpec")
            .field("user", &self.user)
            .field("server_name", &self.server_name)
            .field("service_prefix", &self.service_prefix)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("resources", &self.resources)
            .field("work_dir", &self.work_dir)
            .field("secret_files", &self.secret_files)
            .field("mounts", &self.mounts)
            .finish()
    }
}

/// Where a freshly started server listens, and the state blob to store for it.
#[derive(Clone, Debug)]
pub struct Started {
    /// Scheme, host and port, without the prefix: `http://127.0.0.1:43121`.
    pub url: String,
    /// The backend's state blob; store it at once, it is all `poll`/`stop` need.
    pub state: serde_json::Value,
    /// Every node of a multi-node server (a virtual cluster), node-0 first; node-0's `url` is
    /// `url` and its prefix the server's. Empty for single-node backends.
    pub nodes: Vec<NodeInfo>,
}

/// One node of a virtual cluster, as the hub routes and lists it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    /// The node's host name inside the cluster: `node-0` ... `node-{N-1}`.
    pub name: String,
    /// Where the node's single-user server listens (scheme, host, port), e.g.
    /// `http://172.18.0.3:8888`.
    pub url: String,
    /// The node's URL prefix and proxy route: the server's prefix for node-0,
    /// `{prefix}node-k/` for the others (see [`nodes::node_service_prefix`]).
    pub service_prefix: String,
    /// The OAuth client id the node's single-user server uses (`JUPYTERHUB_CLIENT_ID`); the
    /// hub must register it with redirect URI `{service_prefix}oauth_callback`.
    pub oauth_client_id: Option<String>,
}

/// Where a running node's changes since its image are, for saving the node as a new image
/// ([`Capabilities::saves_images`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeLayer {
    /// The node's name, e.g. `node-1`.
    pub node: String,
    /// The backend's id of the node's current instance (a container id): a node started again
    /// gets another, so work begun on one instance is not carried on to the next.
    pub instance_id: String,
    /// The image the node was started from, as the backend was given it: the saved image's base.
    pub base_image: String,
    /// Where the node's writable layer (its changes) can be read.
    pub location: LayerLocation,
}

/// Where a node's writable layer can be read, and so who reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerLocation {
    /// A directory on the hub's own host (the docker backend: overlay2's upper directory). The
    /// hub reads it itself; [`Spawner::pause_node`] and [`Spawner::resume_node`] freeze the node
    /// around the read when `[images] pause` asks for it.
    HostDir(PathBuf),
    /// On another machine (the kubernetes backend: the pod's Kubernetes node). The node agent
    /// there (`xiji-node-agent`, see `docs/saving-images.md`) finds the container, reads its
    /// layer and pushes the image; the hub drives it over HTTP. The agent freezes the container
    /// itself while it reads, so the backend's `pause_node`/`resume_node` do nothing for it.
    NodeAgent {
        /// The agent on the node's machine, e.g. `http://10.0.0.5:8585`.
        agent_url: String,
        /// The node's container as the runtime names it (`containerd://<64 hex digits>`).
        container_id: String,
    },
}

/// One step of a spawn, as shown on the spawn-pending page (`/progress` event stream).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProgressEvent {
    /// Percentage, 0..=100.
    pub progress: u8,
    /// Human-readable message.
    pub message: String,
}

impl ProgressEvent {
    /// An event with `progress` percent and `message`.
    pub fn new(progress: u8, message: impl Into<String>) -> Self {
        Self {
            progress,
            message: message.into(),
        }
    }
}

/// Where a backend sends its progress events; sending never blocks, and a closed receiver is
/// ignored.
pub type ProgressSender = tokio::sync::mpsc::UnboundedSender<ProgressEvent>;

/// What a backend can do, for the hub's decisions that depend on the backend. Each field is
/// named after what the hub needs to know, never after a backend; the default (all `false`)
/// suits a backend that runs plain processes elsewhere and nothing more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Servers run from container images: the hub resolves the request's `image` (an id or
    /// name from the image library, or the user's own image) to a reference before `validate`.
    /// Otherwise `image` is passed on untouched.
    pub runs_images: bool,
    /// Servers are processes on the hub's own machine: the operator's extra environment for
    /// them (`[spawner.local] environment`) is added to every spawn.
    pub runs_on_hub_host: bool,
    /// Nodes can be saved as images (`POST …/save-image`): their writable layer is on the
    /// hub's host or read by a node agent ([`LayerLocation`]). Otherwise a save is refused
    /// with a 400.
    pub saves_images: bool,
    /// Servers are placed on machines by compute pool ([`ClusterRequest::pool`]), and
    /// machines are moved between pools ([`Spawner::set_node_pool`]). Otherwise the backend
    /// has one machine and ignores a request's pool.
    pub compute_pools: bool,
    /// The user id (and group id) the servers' processes have in the work directory when it is
    /// not the hub's own: what the hub puts there itself (a project's uploaded files and the
    /// folders made for them) is handed to it, so the servers can change it. `None`: the hub's.
    pub work_owner: Option<u32>,
}

/// A way of running single-user servers (local processes, containers, pods).
///
/// Implementations keep no state the hub cannot lose: everything needed to find a server again
/// is in the state blob returned by `start`.
#[async_trait::async_trait]
pub trait Spawner: Send + Sync + 'static {
    /// Short backend name for logs and the admin page, e.g. `"local"`.
    fn backend_name(&self) -> &'static str;

    /// What this backend can do (see [`Capabilities`]). Default: nothing beyond the contract.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    /// Checks a spawn request before anything is created: the resources to start, or
    /// [`SpawnerError::Rejected`] with a message that says what to change (the hub answers 400
    /// with it). The default accepts anything as one node without limits, for backends that
    /// take no sizes ([`resource_limits`](Self::resource_limits) is `None`).
    async fn validate(&self, request: &ClusterRequest) -> Result<ClusterResources, SpawnerError> {
        let _ = request;
        Ok(ClusterResources::single_node())
    }

    /// Launches the server and returns once its location is known; it does NOT wait for HTTP
    /// (use [`wait_for_http_server`] or [`wait_until_ready`]). On error, nothing is left running.
    async fn start(
        &self,
        spec: &SpawnSpec,
        progress: ProgressSender,
    ) -> Result<Started, SpawnerError>;

    /// `None` = running (or still starting); `Some(exit status)` = gone (0 if unknown, also
    /// for an empty state). Works from the state blob alone, also after a hub restart.
    async fn poll(&self, state: &serde_json::Value) -> Result<Option<i32>, SpawnerError>;

    /// Returns once the server is gone: SIGTERM (or the backend's equivalent), then SIGKILL
    /// after `grace`. `Ok` if it was already gone.
    async fn stop(&self, state: &serde_json::Value, grace: Duration) -> Result<(), SpawnerError>;

    /// The URL recorded in the state blob (scheme, host, port), for re-adoption after restart.
    fn url_from_state(&self, state: &serde_json::Value) -> Option<String>;

    /// The sizes this backend accepts and its defaults (what [`validate`](Self::validate)
    /// enforces), for a spawn form; `None` for a backend that takes no sizes.
    fn resource_limits(&self) -> Option<ResourceLimits> {
        None
    }

    /// The nodes recorded in the state blob (as [`Started::nodes`]), for re-adoption after a
    /// restart; empty for single-node backends.
    fn nodes_from_state(&self, state: &serde_json::Value) -> Vec<NodeInfo> {
        let _ = state;
        Vec::new()
    }

    /// Where this backend keeps `user`'s work directory when a spec names none
    /// ([`SpawnSpec::work_dir`] is `None`); `None` if it keeps none.
    fn default_work_dir(&self, user: &str) -> Option<PathBuf> {
        let _ = user;
        None
    }

    /// The writable layer of the running `node` of the server whose state blob is `state`.
    /// [`SpawnerError::NoSuchNode`] names the server's nodes; [`SpawnerError::NodeNotRunning`]
    /// says the node's instance is gone or stopped. The default: [`SpawnerError::Unsupported`].
    async fn node_layer(
        &self,
        state: &serde_json::Value,
        node: &str,
    ) -> Result<NodeLayer, SpawnerError> {
        let _ = (state, node);
        Err(SpawnerError::Unsupported {
            backend: self.backend_name(),
            what: "save a node as an image",
        })
    }

    /// Freezes every process of the node while its layer is read, so the saved files are
    /// consistent; [`resume_node`](Self::resume_node) thaws them. Resuming a node that is not
    /// frozen is not an error.
    async fn pause_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        let _ = layer;
        Err(SpawnerError::Unsupported {
            backend: self.backend_name(),
            what: "pause a node",
        })
    }

    /// Thaws a node frozen by [`pause_node`](Self::pause_node).
    async fn resume_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        let _ = layer;
        Err(SpawnerError::Unsupported {
            backend: self.backend_name(),
            what: "resume a node",
        })
    }

    /// What this backend can run at once, for the hub's admission of clusters (an
    /// administrator may cap it further). The default: no bound.
    fn capacity(&self) -> Capacity {
        Capacity::default()
    }

    /// Each node of the server whose state blob is `state` as the backend sees it now: whether
    /// it runs, when its instance started and stopped, the CPU time it used. The hub meters
    /// with it and, after a restart, closes the intervals of nodes that stopped meanwhile at
    /// their real stop time. A node the backend cannot find any more is left out. The default:
    /// nothing known.
    async fn node_usage(&self, state: &serde_json::Value) -> Result<Vec<NodeUsage>, SpawnerError> {
        let _ = state;
        Ok(Vec::new())
    }

    /// The machines this backend runs servers on, with what they have and what Xiji's nodes
    /// use of them, for the administrators' compute-node pages. The default: none known.
    async fn compute_nodes(&self) -> Result<Vec<ComputeNode>, SpawnerError> {
        Ok(Vec::new())
    }

    /// Puts the machine `node` into the compute pool `pool` (new clusters may be placed on
    /// it), or with `None` takes it out of Xiji's management (no new clusters; running ones
    /// keep going). [`SpawnerError::NoSuchNode`] when the backend has no such machine. The
    /// default: [`SpawnerError::Unsupported`].
    async fn set_node_pool(&self, node: &str, pool: Option<&str>) -> Result<(), SpawnerError> {
        let _ = (node, pool);
        Err(SpawnerError::Unsupported {
            backend: self.backend_name(),
            what: "move a machine between compute pools",
        })
    }

    /// Checks, from inside every node of a running server, that the hub API URL the node was
    /// started with (`JUPYTERHUB_API_URL`) answers as a hub: a re-adopted server whose nodes
    /// cannot reach the hub (it restarted on another address) looks alive but cannot open a
    /// kernel. [`SpawnerError::HubUnreachable`] names the node and what it saw. The default
    /// checks nothing, for backends whose servers reach the hub as the hub's host does.
    async fn check_hub_reachable(&self, state: &serde_json::Value) -> Result<(), SpawnerError> {
        let _ = state;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &std::path::Path, relative: &str) -> Mount {
        Mount {
            source: source.to_path_buf(),
            relative: relative.to_owned(),
        }
    }

    fn refusal(result: Result<(), SpawnerError>) -> String {
        match result {
            Err(SpawnerError::InvalidSpec(message)) => message,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn a_mount_point_is_a_relative_path_of_plain_folder_names() {
        let dir = tempfile::tempdir().unwrap();
        for good in ["datasets/alice/mnist", "datasets/王/数据.v2", "data"] {
            assert!(mount(dir.path(), good).check().is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("/home/jovyan/datasets/a/b", "is absolute"),
            ("datasets/../../etc", "'..'"),
            ("datasets/./a", "'.'"),
            ("datasets//a", "empty component"),
            ("datasets/a/", "empty component"),
            ("datasets/a\0b", "NUL"),
            ("datasets\\a", "NUL or"),
        ] {
            let message = refusal(mount(dir.path(), bad).check());
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(message.contains("mount point"), "{message}");
        }
    }

    #[test]
    fn a_mount_source_must_be_an_existing_folder_given_absolutely() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let message = refusal(mount(&file, "datasets/a/b").check());
        assert!(message.contains("is not a folder"), "{message}");
        let missing = dir.path().join("missing");
        let message = refusal(mount(&missing, "datasets/a/b").check());
        assert!(message.contains("cannot be used"), "{message}");
        let message = refusal(mount(std::path::Path::new("relative/dir"), "datasets/a/b").check());
        assert!(message.contains("not an absolute path"), "{message}");
    }

    #[test]
    fn two_mounts_may_not_share_a_place_or_nest() {
        let dir = tempfile::tempdir().unwrap();
        let ok = [
            mount(dir.path(), "datasets/alice/mnist"),
            mount(dir.path(), "datasets/alice/mnist2"),
            mount(dir.path(), "datasets/bob/mnist"),
        ];
        assert!(check_mounts(&ok).is_ok());
        assert!(check_mounts(&[]).is_ok());
        for (a, b) in [
            ("datasets/alice/mnist", "datasets/alice/mnist"),
            ("datasets/alice", "datasets/alice/mnist"),
            ("datasets/alice/mnist/x", "datasets/alice/mnist"),
        ] {
            let message = refusal(check_mounts(&[mount(dir.path(), a), mount(dir.path(), b)]));
            assert!(message.contains("overlap"), "{a} {b}: {message}");
        }
    }
}
