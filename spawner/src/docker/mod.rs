//! The `docker` backend: a server is a *virtual cluster* of N containers on Docker Engine.
//!
//! # What a cluster is
//! - One user-defined bridge network per cluster, `xiji-{user}[-{server}]-{id}` (`id`: 12 random
//!   hex digits, new at every start), and one container per node, `{network}-node-k`, with host
//!   name and network alias `node-k`, so the nodes find each other by name.
//! - Every node: the image's entry point runs `sshd` as jovyan on port 2222 and the single-user
//!   server on port 8888. Before a node starts, the backend injects the cluster's SSH keys (fresh
//!   ed25519 pairs, never stored) and the MPI hostfile at [`HOSTFILE_PATH`] (`node-k slots=C`,
//!   C = whole CPU cores per node), so `mpirun --hostfile /etc/xiji/hostfile` works as jovyan.
//! - Limits per node: CPU (`NanoCpus`), memory (hard limit, `MemorySwap` = `Memory`: no swap),
//!   GPUs (device requests to the `nvidia` driver), storage (`--storage-opt size=`, only where
//!   the storage driver supports it; elsewhere ignored with a warning and a progress message).
//! - Every node also gets the operator's CA bundle ([`DockerConfig::ca_bundle`]) at
//!   [`CA_BUNDLE_PATH`], with `PIP_CERT`, `REQUESTS_CA_BUNDLE`, `SSL_CERT_FILE`,
//!   `CURL_CA_BUNDLE`, `GIT_SSL_CAINFO`, `CONDA_SSL_VERIFY` and `NODE_EXTRA_CA_CERTS` pointing
//!   at it ([`CA_BUNDLE_ENV`]), and the spawn's secret files ([`SpawnSpec::secret_files`]) in
//!   [`SECRETS_DIR`](crate::SECRETS_DIR), readable by jovyan only; none of them is ever in the
//!   environment or the labels.
//! - Security: never privileged, uid 1000, a pids limit; Docker's default capability set and
//!   no `no-new-privileges`, so jovyan may `sudo` to root inside its own nodes (the image's
//!   sudoers rule); with [`DockerConfig::sudo`] off, every capability dropped and
//!   `no-new-privileges`. The user's work directory (`SpawnSpec::work_dir`, default
//!   `{work_root}/{user}`, owned by uid 1000) is bind-mounted at `/home/jovyan/work` on every
//!   node; it outlives the cluster.
//! - The spawn's read-only folders ([`SpawnSpec::mounts`], e.g. datasets): a read-only bind mount
//!   of each at `/home/jovyan/{relative}` on every node, the folders above it owned by jovyan
//!   (see [`mounts`]); writing there fails with "Read-only file system".
//! - Labels on containers and network: `org.xiji.hub` ([`DockerConfig::instance`]),
//!   `org.xiji.user`, `org.xiji.server`, `org.xiji.cluster`, and `org.xiji.node` on containers.
//!
//! # Start, all or nothing
//! [`Spawner::start`] validates the request, pulls the image if missing, creates the network,
//! creates and starts every node, and — unlike the `local` backend — **waits until every node's
//! single-user server answers HTTP** (`ready_timeout`), so that a node that cannot serve fails
//! the whole cluster. Any failure removes every container and the network made for the cluster
//! and returns the reason (with the end of the failing node's output). Progress events: network,
//! then per node creating / starting / ready.
//!
//! # How the hub uses it
//! 1. At start-up: `DockerSpawner::connect(cfg)` (fails clearly when Docker is unreachable);
//!    then, before serving, [`DockerSpawner::reap_orphans`] with the cluster ids of every stored
//!    state blob ([`DockerSpawner::cluster_id_from_state`]); then re-adopt as for any backend
//!    (`poll`, and re-add one proxy route per node from [`Spawner::nodes_from_state`]).
//! 2. Spawn request: [`ClusterRequest::from_user_options`] where the request arrives, then
//!    [`Spawner::validate`] → a 400 with the message on [`SpawnerError::Rejected`]; the result's
//!    `nodes` tells how many node OAuth clients to register: for node k ≥ 1, client id
//!    [`node_oauth_client_id`] (same secret = the server's token, same scopes) with redirect URI
//!    `{node_service_prefix(prefix, k)}oauth_callback`. The hub keeps `image` to what its image
//!    library allows (or sets [`DockerConfig::allowed_images`]) and rejects GPU images when the
//!    host has no GPU ([`DockerSpawner::host`]).
//! 3. `start` with the validated resources in [`SpawnSpec::resources`](crate::SpawnSpec) →
//!    [`Started`]: `url` and `state` as usual (node-0), and `nodes` — for each node its name,
//!    URL, service prefix ([`node_service_prefix`]: node-0 = the server's prefix, node-k =
//!    `{prefix}node-k/`) and OAuth client id. Add one proxy route per node
//!    (`service_prefix` → `url`); list the nodes in the API/home page.
//! 4. The `JUPYTERHUB_API_URL` the hub gives must be reachable from containers: set
//!    [`DockerConfig::hub_connect_url`] (e.g. `http://host.docker.internal:8081`, with the hub
//!    listening on an address of the Docker host such as the bridge gateway or 0.0.0.0); the
//!    backend rewrites `JUPYTERHUB_API_URL` and `JUPYTERHUB_ACTIVITY_URL` onto it.
//! 5. `poll` reports the cluster gone as soon as any node is not running; `stop` stops every
//!    node (SIGTERM, `grace`, SIGKILL) and removes the containers and the network.
//!
//! The hub must refuse named servers called `node-<digits>` (their prefix would collide with the
//! default server's nodes).

pub(crate) mod compute;
pub(crate) mod files;
mod host;
mod hub_check;
mod layer;
pub mod mounts;
pub(crate) mod naming;
mod state;
mod usage;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bollard::container::{
    Config, CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogOutput,
    LogsOptions, RemoveContainerOptions, StopContainerOptions, UploadToContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::models::{
    ContainerStateStatusEnum, DeviceRequest, EndpointSettings, HostConfig, PortBinding,
};
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use bollard::Docker;
use futures_util::StreamExt as _;
use tokio::time::Instant;
use tracing::Instrument as _;

pub use files::{CA_BUNDLE_PATH, JOVYAN_UID};
pub use host::HostCapacity;
pub use naming::{
    cluster_name, hostfile, node_env, LABEL_CLUSTER, LABEL_HUB, LABEL_NODE, LABEL_SERVER,
    LABEL_USER,
};

use crate::nodes::{node_name, node_oauth_client_id, node_service_prefix};
use crate::paths::path_component;
use crate::resources::{check_image, human_size};
use crate::{
    Capabilities, Capacity, ClusterRequest, ClusterResources, NodeInfo, NodeLayer, NodeUsage,
    ProgressEvent, ProgressSender, ResourceLimits, SpawnSpec, Spawner, SpawnerError, Started,
};
use state::{ClusterState, NodeState};

/// Where the MPI hostfile is inside every node (also in `$XIJI_HOSTFILE`).
pub const HOSTFILE_PATH: &str = "/etc/xiji/hostfile";
/// Where the work directory is mounted inside every node.
pub const WORK_MOUNT: &str = "/home/jovyan/work";
/// Port of the nodes' SSH servers (set by the image's `sshd_config`).
pub const SSH_PORT: u16 = 2222;
/// The variables that point a node's tools at [`CA_BUNDLE_PATH`] when a CA bundle is given.
pub const CA_BUNDLE_ENV: [&str; 7] = [
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "CONDA_SSL_VERIFY",
    "NODE_EXTRA_CA_CERTS",
];

const GIB: u64 = 1024 * 1024 * 1024;
/// How often a starting node's container state is checked while waiting for HTTP.
const NODE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Lines of a failed node's output quoted in the error.
const LOG_TAIL_LINES: &str = "25";

/// How the hub reaches a node's single-user server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAddress {
    /// The container's address on the cluster network (`http://172.18.0.3:8888`): works when
    /// the hub runs on the Docker host (Linux), no ports published.
    ContainerIp,
    /// A port published on the host's loopback (`http://127.0.0.1:49153`): for hosts where
    /// bridge addresses are not routable from the hub.
    PublishedOnLoopback,
}

/// Configuration of the [`DockerSpawner`].
#[derive(Clone, Debug)]
pub struct DockerConfig {
    /// Image run when the request names none, e.g. `127.0.0.1:5000/xiji/base-notebook:latest`.
    pub image: String,
    /// `None`: any image a request names; `Some(list)`: only these (exact references).
    pub allowed_images: Option<Vec<String>>,
    /// Work directories default to `{work_root}/{user}` (created, owned by uid 1000).
    pub work_root: PathBuf,
    /// Value of the `org.xiji.hub` label: tells this hub's containers from another's on a
    /// shared engine; default `xiji`.
    pub instance: String,
    /// The nodes' command (after the image's entry point); default
    /// `jupyterhub-singleuser --ip=0.0.0.0 --port=8888`.
    pub cmd: Vec<String>,
    /// Port the single-user server listens on inside each node; default 8888.
    pub port: u16,
    /// Scheme and authority under which containers reach the hub, e.g.
    /// `http://host.docker.internal:8081`; `None` leaves the hub's URLs as given.
    pub hub_connect_url: Option<String>,
    /// `/etc/hosts` entries of every node; default `host.docker.internal:host-gateway`.
    pub extra_hosts: Vec<String>,
    /// Extra environment of every node (applied after the hub's variables).
    pub environment: BTreeMap<String, String>,
    /// How the hub reaches the nodes; default [`NodeAddress::ContainerIp`].
    pub node_address: NodeAddress,
    /// How long `start` waits for every node to answer HTTP; default 120 s.
    pub ready_timeout: Duration,
    /// Most nodes in one cluster; default 16.
    pub max_nodes: u32,
    /// CPU cores per node when the request does not say; default 1.
    pub default_cpus: f64,
    /// Memory per node when the request does not say; default 2 GiB.
    pub default_memory_bytes: u64,
    /// Largest storage per node; default 1 TiB.
    pub max_storage_bytes: u64,
    /// Process limit per node; default 4096.
    pub pids_limit: Option<i64>,
    /// GPUs of the host, instead of detecting them.
    pub gpus: Option<u32>,
    /// How many times its CPUs the host offers for admission ([`Spawner::capacity`]): a node's
    /// `cpus` is a ceiling (CFS quota), not a guarantee, and an operator who accepts contention
    /// admits more than the cores; default 1 (no overcommit).
    pub cpu_overcommit: f64,
    /// Run Docker's init (`--init`) as PID 1, for images without their own; default false (the
    /// Xiji images use tini).
    pub init: bool,
    /// A CA bundle (PEM) on the hub's host copied into every node at [`CA_BUNDLE_PATH`] at each
    /// start, for networks whose HTTPS goes through an inspecting proxy; `None`: none.
    pub ca_bundle: Option<PathBuf>,
    /// Whether nodes keep Docker's default capabilities without `no-new-privileges`, so that
    /// jovyan may `sudo` inside them (root in the container, not on the host); false drops
    /// every capability and sets `no-new-privileges`. Default true.
    pub sudo: bool,
    /// Test hook: this node's command exits at once, to exercise the all-or-nothing rollback.
    #[doc(hidden)]
    pub test_failing_node: Option<usize>,
}

impl DockerConfig {
    /// A configuration with the defaults above.
    pub fn new(image: impl Into<String>, work_root: PathBuf) -> Self {
        Self {
            image: image.into(),
            allowed_images: None,
            work_root,
            instance: "xiji".into(),
            cmd: vec![
                "jupyterhub-singleuser".into(),
                "--ip=0.0.0.0".into(),
                "--port=8888".into(),
            ],
            port: 8888,
            hub_connect_url: None,
            extra_hosts: vec!["host.docker.internal:host-gateway".into()],
            environment: BTreeMap::new(),
            node_address: NodeAddress::ContainerIp,
            ready_timeout: Duration::from_secs(120),
            max_nodes: 16,
            default_cpus: 1.0,
            default_memory_bytes: 2 * GIB,
            max_storage_bytes: 1024 * GIB,
            pids_limit: Some(4096),
            gpus: None,
            cpu_overcommit: 1.0,
            init: false,
            ca_bundle: None,
            sudo: true,
            test_failing_node: None,
        }
    }
}

/// What [`DockerSpawner::reap_orphans`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReapReport {
    /// Names of the removed containers.
    pub containers: Vec<String>,
    /// Names of the removed networks.
    pub networks: Vec<String>,
}

/// Runs virtual clusters on Docker Engine. See the [module docs](self).
pub struct DockerSpawner {
    cfg: DockerConfig,
    docker: Docker,
    host: HostCapacity,
}

impl DockerSpawner {
    /// Connects to the engine (`DOCKER_HOST` or the local socket), agrees on an API version and
    /// reads the host's capacity. Fails with a clear message when Docker is unreachable.
    pub async fn connect(cfg: DockerConfig) -> Result<Self, SpawnerError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| SpawnerError::docker("connecting to Docker Engine", e))?
            .with_timeout(Duration::from_secs(300));
        let docker = docker.negotiate_version().await.map_err(|e| {
            SpawnerError::docker(
                "connecting to Docker Engine (is dockerd running, and may this user use its \
                 socket?)",
                e,
            )
        })?;
        let info = docker
            .info()
            .await
            .map_err(|e| SpawnerError::docker("reading `docker info`", e))?;
        let host = HostCapacity::from_info(&info, cfg.gpus);
        tracing::info!(
            cpus = host.cpus,
            memory = %human_size(host.memory_bytes),
            gpus = ?host.gpus,
            storage_driver = %host.storage_driver,
            storage_limits = host.storage_limit_supported,
            "connected to Docker Engine"
        );
        Ok(Self { cfg, docker, host })
    }

    /// The host's capacity as read at connection.
    pub fn host(&self) -> &HostCapacity {
        &self.host
    }

    /// The limits requests are checked against.
    pub fn limits(&self) -> ResourceLimits {
        ResourceLimits {
            max_nodes: self.cfg.max_nodes,
            host_cpus: self.host.cpus,
            host_memory_bytes: self.host.memory_bytes,
            host_gpus: self.host.gpus,
            min_memory_bytes: 128 * 1024 * 1024,
            min_cpus: 0.1,
            max_storage_bytes: self.cfg.max_storage_bytes,
            default_cpus: self.cfg.default_cpus,
            default_memory_bytes: self.cfg.default_memory_bytes,
        }
    }

    /// The cluster id recorded in a state blob (`None` for an empty or foreign blob), for
    /// [`reap_orphans`](Self::reap_orphans).
    pub fn cluster_id_from_state(state: &serde_json::Value) -> Option<String> {
        ClusterState::from_blob(state)
            .ok()
            .flatten()
            .map(|s| s.cluster_id)
    }

    /// Removes every container and network labelled by this hub instance whose cluster id is
    /// not in `known` (clusters of a hub that died mid-start, or whose database rows are gone).
    /// Call it at start-up, before any spawn begins.
    pub async fn reap_orphans(&self, known: &HashSet<String>) -> Result<ReapReport, SpawnerError> {
        let mut report = ReapReport::default();
        let hub_filter = format!("{LABEL_HUB}={}", self.cfg.instance);
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: true,
                filters: HashMap::from([("label".to_owned(), vec![hub_filter.clone()])]),
                ..Default::default()
            }))
            .await
            .map_err(|e| SpawnerError::docker("listing Xiji's containers", e))?;
        for container in containers {
            let cluster = container
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CLUSTER))
                .cloned()
                .unwrap_or_default();
            if known.contains(&cluster) {
                continue;
            }
            let Some(id) = container.id else { continue };
            let name = container
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_else(|| id.clone());
            tracing::info!(cluster.id = %cluster, container = %name, "removing an orphaned container");
            self.remove_container(&id).await?;
            report
                .containers
                .push(name.trim_start_matches('/').to_owned());
        }
        let networks = self
            .docker
            .list_networks(Some(ListNetworksOptions::<String> {
                filters: HashMap::from([("label".to_owned(), vec![hub_filter])]),
            }))
            .await
            .map_err(|e| SpawnerError::docker("listing Xiji's networks", e))?;
        for network in networks {
            let cluster = network
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_CLUSTER))
                .cloned()
                .unwrap_or_default();
            if known.contains(&cluster) {
                continue;
            }
            let Some(name) = network.name else { continue };
            tracing::info!(cluster.id = %cluster, network = %name, "removing an orphaned network");
            self.remove_network(&name).await?;
            report.networks.push(name);
        }
        Ok(report)
    }

    /// The work directory to mount: the spec's, or `{work_root}/{user}`; created if missing
    /// and handed to uid 1000 (jovyan) when it is not already.
    fn prepare_work_dir(&self, spec: &SpawnSpec) -> Result<PathBuf, SpawnerError> {
        let dir = match &spec.work_dir {
            Some(dir) => dir.clone(),
            None => self
                .default_work_dir(&spec.user)
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
        let meta = std::fs::metadata(&dir)
            .map_err(|e| SpawnerError::io(format!("reading {}", dir.display()), e))?;
        let owner = std::os::unix::fs::MetadataExt::uid(&meta);
        if u64::from(owner) != JOVYAN_UID {
            let uid = nix::unistd::Uid::from_raw(JOVYAN_UID as u32);
            let gid = nix::unistd::Gid::from_raw(JOVYAN_UID as u32);
            nix::unistd::chown(&dir, Some(uid), Some(gid)).map_err(|e| {
                SpawnerError::io(
                    format!(
                        "handing {} to uid {JOVYAN_UID} (jovyan in the containers; run the hub \
                         as root or create the directory with that owner)",
                        dir.display()
                    ),
                    std::io::Error::from(e),
                )
            })?;
        }
        Ok(dir)
    }

    /// Pulls `image` unless the engine has it.
    async fn ensure_image(&self, image: &str, progress: &Progress) -> Result<(), SpawnerError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(SpawnerError::docker(format!("inspecting image {image}"), e)),
        }
        progress.note(format!("Pulling {image}"));
        let mut pull = self.docker.create_image(
            Some(CreateImageOptions {
                from_image: image,
                ..Default::default()
            }),
            None,
            None,
        );
        while let Some(step) = pull.next().await {
            step.map_err(|e| SpawnerError::docker(format!("pulling image {image}"), e))?;
        }
        Ok(())
    }

    /// Everything of a start after validation; on error the caller removes what was made.
    async fn launch(
        &self,
        plan: &ClusterPlan,
        progress: &Progress,
    ) -> Result<Started, SpawnerError> {
        self.ensure_image(&plan.image, progress).await?;

        progress.step(format!("Creating network {}", plan.name));
        let labels = plan.labels(None);
        let network = self
            .docker
            .create_network(CreateNetworkOptions::<String> {
                name: plan.name.clone(),
                check_duplicate: true,
                driver: "bridge".into(),
                labels,
                ..Default::default()
            })
            .await
            .map_err(|e| SpawnerError::docker(format!("creating network {}", plan.name), e))?;
        let network_id = network.id;

        let keys = files::ClusterKeys::generate(&plan.name)?;
        let ca_bundle = match &self.cfg.ca_bundle {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                SpawnerError::io(format!("reading the CA bundle {}", path.display()), e)
            })?),
            None => None,
        };
        let jovyan_folders = mounts::parent_folders(&plan.mounts);
        let archive = files::node_files_archive(
            &keys,
            &hostfile(plan.resources.nodes as usize, plan.resources.cpus),
            &files::NodeExtras {
                ca_bundle: ca_bundle.as_deref(),
                secrets: &plan.secret_files,
                jovyan_folders: &jovyan_folders,
            },
        )?;
        if plan.resources.storage_bytes.is_some() && !plan.storage_enforced {
            progress.note(format!(
                "Storage limit not enforced: the {} storage driver on {} cannot limit it",
                self.host.storage_driver, self.host.backing_filesystem
            ));
        }

        let nodes = futures_util::future::join_all(
            (0..plan.resources.nodes as usize)
                .map(|k| self.launch_node(plan, k, &archive, progress)),
        )
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;

        let url = nodes
            .first()
            .map(|n| n.url.clone())
            .ok_or_else(|| SpawnerError::InvalidSpec("a cluster needs at least 1 node".into()))?;
        let state = ClusterState {
            backend: "docker".into(),
            cluster_id: plan.cluster_id.clone(),
            network_id,
            network_name: plan.name.clone(),
            url: url.clone(),
            nodes,
            storage_enforced: plan.storage_enforced,
        };
        let blob = serde_json::to_value(&state)
            .map_err(|e| SpawnerError::InvalidState(format!("cannot encode the state: {e}")))?;
        Ok(Started {
            url,
            state: blob,
            nodes: state.node_infos(),
        })
    }

    /// Creates, fills, starts node `k` and waits until its server answers.
    async fn launch_node(
        &self,
        plan: &ClusterPlan,
        k: usize,
        archive: &[u8],
        progress: &Progress,
    ) -> Result<NodeState, SpawnerError> {
        let node = node_name(k);
        let container_name = format!("{}-{node}", plan.name);
        progress.step(format!("Creating {node}"));
        let config = self.container_config(plan, k);
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: container_name.clone(),
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|e| {
                node_failed(
                    &node,
                    format!("cannot create its container: {}", docker_message(&e)),
                    String::new(),
                )
            })?;
        let id = created.id;
        self.docker
            .upload_to_container(
                &id,
                Some(UploadToContainerOptions {
                    path: "/",
                    ..Default::default()
                }),
                archive.to_vec().into(),
            )
            .await
            .map_err(|e| {
                node_failed(
                    &node,
                    format!(
                        "cannot copy the SSH keys, hostfile and CA bundle into it: {}",
                        docker_message(&e)
                    ),
                    String::new(),
                )
            })?;

        progress.step(format!("Starting {node}"));
        self.docker
            .start_container::<String>(&id, None)
            .await
            .map_err(|e| {
                node_failed(
                    &node,
                    format!("cannot start: {}", docker_message(&e)),
                    String::new(),
                )
            })?;

        let url = match self.node_url(&id, &plan.name, &node).await {
            Ok(url) => url,
            // A node that exits at once has no address any more: say why it exited.
            Err(e) => match self.container_exit(&id).await {
                Ok(Some(status)) => return Err(self.exited_early(&id, &node, status).await),
                _ => return Err(e),
            },
        };
        let prefix = node_service_prefix(&plan.server_prefix, k);
        self.wait_node_ready(&id, &node, &format!("{url}{prefix}api"))
            .await?;
        progress.step(format!("{node} is ready"));
        Ok(NodeState {
            name: node,
            container_id: id,
            container_name,
            url,
            service_prefix: prefix,
            oauth_client_id: plan
                .env
                .get("JUPYTERHUB_CLIENT_ID")
                .map(|c| node_oauth_client_id(c, k)),
        })
    }

    /// The container definition of node `k`.
    fn container_config(&self, plan: &ClusterPlan, k: usize) -> Config<String> {
        let node = node_name(k);
        let prefix = node_service_prefix(&plan.server_prefix, k);
        let mut env = node_env(&plan.env, &plan.server_prefix, k);
        if let Some(base) = &self.cfg.hub_connect_url {
            for key in ["JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"] {
                if let Some(url) = env.get(key).cloned() {
                    env.insert(key.into(), naming::rebase_url(&url, base));
                }
            }
        }
        if let Some(token) = env.get("JUPYTERHUB_API_TOKEN").cloned() {
            env.insert("JPY_API_TOKEN".into(), token);
        }
        if self.cfg.ca_bundle.is_some() {
            for key in CA_BUNDLE_ENV {
                env.insert(key.into(), CA_BUNDLE_PATH.into());
            }
        }
        env.extend(self.cfg.environment.clone());
        env.insert(
            "JUPYTERHUB_SERVICE_URL".into(),
            format!("http://0.0.0.0:{}{prefix}", self.cfg.port),
        );
        env.insert("XIJI_NODE".into(), node.clone());
        env.insert("XIJI_NODES".into(), plan.resources.nodes.to_string());
        env.insert("XIJI_HOSTFILE".into(), HOSTFILE_PATH.into());
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

        let cmd = if self.cfg.test_failing_node == Some(k) {
            vec![
                "sh".into(),
                "-c".into(),
                "echo 'xiji test hook: this node fails on purpose' >&2; exit 3".into(),
            ]
        } else {
            self.cfg.cmd.clone()
        };

        let r = &plan.resources;
        let memory = r.memory_bytes.and_then(|m| i64::try_from(m).ok());
        let nano_cpus = r.cpus.map(|c| {
            // Checked by validation: 0.1 ≤ cpus ≤ host cores, so this fits i64.
            #[allow(clippy::cast_possible_truncation)]
            let nanos = (c * 1e9).round() as i64;
            nanos
        });
        let device_requests = (r.gpus > 0).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(i64::from(r.gpus)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        let storage_opt = match (r.storage_bytes, plan.storage_enforced) {
            (Some(bytes), true) => Some(HashMap::from([("size".to_owned(), bytes.to_string())])),
            _ => None,
        };
        let port_key = format!("{}/tcp", self.cfg.port);
        let port_bindings =
            (self.cfg.node_address == NodeAddress::PublishedOnLoopback).then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )])
            });
        let host_config = HostConfig {
            nano_cpus,
            memory,
            memory_swap: memory,
            // /dev/shm for MPI's shared-memory transport; it counts against the memory limit.
            shm_size: memory.map(|m| m / 4),
            device_requests,
            storage_opt,
            pids_limit: self.cfg.pids_limit,
            privileged: Some(false),
            // Docker's default capability set (root inside the container, for sudo), or none.
            cap_drop: (!self.cfg.sudo).then(|| vec!["ALL".into()]),
            security_opt: (!self.cfg.sudo).then(|| vec!["no-new-privileges".into()]),
            binds: Some(vec![format!("{}:{WORK_MOUNT}", plan.work_dir.display())]),
            mounts: (!plan.mounts.is_empty()).then(|| mounts::read_only_binds(&plan.mounts)),
            network_mode: Some(plan.name.clone()),
            extra_hosts: Some(self.cfg.extra_hosts.clone()),
            init: self.cfg.init.then_some(true),
            port_bindings,
            ..Default::default()
        };
        Config {
            image: Some(plan.image.clone()),
            hostname: Some(node.clone()),
            user: Some(format!("{JOVYAN_UID}:{JOVYAN_UID}")),
            working_dir: Some(WORK_MOUNT.into()),
            env: Some(env),
            cmd: Some(cmd),
            labels: Some(plan.labels(Some(&node))),
            exposed_ports: Some(HashMap::from([(port_key, HashMap::new())])),
            host_config: Some(host_config),
            networking_config: Some(bollard::container::NetworkingConfig {
                endpoints_config: HashMap::from([(
                    plan.name.clone(),
                    EndpointSettings {
                        aliases: Some(vec![node]),
                        ..Default::default()
                    },
                )]),
            }),
            ..Default::default()
        }
    }

    /// `http://{container ip}:{port}` or `http://127.0.0.1:{published port}`.
    async fn node_url(&self, id: &str, network: &str, node: &str) -> Result<String, SpawnerError> {
        let info = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| SpawnerError::docker(format!("inspecting {node}"), e))?;
        let settings = info.network_settings.unwrap_or_default();
        let missing = || {
            node_failed(
                node,
                "it has no address on the cluster network (did it exit at once?)".into(),
                String::new(),
            )
        };
        match self.cfg.node_address {
            NodeAddress::ContainerIp => {
                let ip = settings
                    .networks
                    .as_ref()
                    .and_then(|n| n.get(network))
                    .and_then(|e| e.ip_address.clone())
                    .filter(|ip| !ip.is_empty())
                    .ok_or_else(missing)?;
                Ok(format!("http://{ip}:{}", self.cfg.port))
            }
            NodeAddress::PublishedOnLoopback => {
                let port = settings
                    .ports
                    .as_ref()
                    .and_then(|p| p.get(&format!("{}/tcp", self.cfg.port)))
                    .and_then(|b| b.as_ref())
                    .and_then(|b| b.first())
                    .and_then(|b| b.host_port.clone())
                    .filter(|p| !p.is_empty())
                    .ok_or_else(missing)?;
                Ok(format!("http://127.0.0.1:{port}"))
            }
        }
    }

    /// Waits until `api_url` answers, failing early (with the node's output) if the container
    /// stops running.
    async fn wait_node_ready(
        &self,
        id: &str,
        node: &str,
        api_url: &str,
    ) -> Result<(), SpawnerError> {
        let http = crate::wait_for_http_server(api_url, self.cfg.ready_timeout);
        let exited = async {
            loop {
                tokio::time::sleep(NODE_CHECK_INTERVAL).await;
                match self.container_exit(id).await {
                    Ok(Some(status)) => return self.exited_early(id, node, status).await,
                    Ok(None) => {}
                    Err(e) => return e,
                }
            }
        };
        tokio::select! {
            ready = http => match ready {
                Ok(()) => Ok(()),
                Err(e) => Err(node_failed(node, e.to_string(), self.log_tail(id).await)),
            },
            failed = exited => Err(failed),
        }
    }

    /// The error for a node whose container stopped before its server answered.
    async fn exited_early(&self, id: &str, node: &str, status: i32) -> SpawnerError {
        node_failed(
            node,
            format!("its container exited with status {status} before the server answered"),
            self.log_tail(id).await,
        )
    }

    /// `None` while the container runs; `Some(status)` once it is gone or stopped.
    async fn container_exit(&self, id: &str) -> Result<Option<i32>, SpawnerError> {
        match self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let running = matches!(
                    state.status,
                    Some(ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::PAUSED)
                        | Some(ContainerStateStatusEnum::RESTARTING)
                );
                if running {
                    Ok(None)
                } else {
                    let code = state.exit_code.unwrap_or(0);
                    Ok(Some(i32::try_from(code).unwrap_or(1)))
                }
            }
            Err(e) if is_not_found(&e) => Ok(Some(0)),
            Err(e) => Err(SpawnerError::docker(
                format!("inspecting container {id}"),
                e,
            )),
        }
    }

    /// The last lines of a container's output, for error messages (empty if unavailable).
    async fn log_tail(&self, id: &str) -> String {
        let mut logs = self.docker.logs(
            id,
            Some(LogsOptions::<String> {
                stdout: true,
                stderr: true,
                tail: LOG_TAIL_LINES.into(),
                ..Default::default()
            }),
        );
        let mut text = String::new();
        while let Some(Ok(chunk)) = logs.next().await {
            match chunk {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => {
                    text.push_str(&String::from_utf8_lossy(&message));
                }
                LogOutput::StdIn { .. } => {}
            }
        }
        text
    }

    /// Removes every container labelled with `cluster_id` and the network `network`; what is
    /// already gone is fine.
    async fn remove_cluster(&self, cluster_id: &str, network: &str) -> Result<(), SpawnerError> {
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptions::<String> {
                all: true,
                filters: HashMap::from([(
                    "label".to_owned(),
                    vec![format!("{LABEL_CLUSTER}={cluster_id}")],
                )]),
                ..Default::default()
            }))
            .await
            .map_err(|e| {
                SpawnerError::docker(format!("listing the containers of cluster {cluster_id}"), e)
            })?;
        let removals = containers
            .into_iter()
            .filter_map(|c| c.id)
            .map(|id| async move { self.remove_container(&id).await });
        for result in futures_util::future::join_all(removals).await {
            result?;
        }
        self.remove_network(network).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), SpawnerError> {
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(SpawnerError::docker(format!("removing container {id}"), e)),
        }
    }

    async fn remove_network(&self, name: &str) -> Result<(), SpawnerError> {
        match self.docker.remove_network(name).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(SpawnerError::docker(format!("removing network {name}"), e)),
        }
    }
}

/// Everything decided before a cluster is created.
struct ClusterPlan {
    cluster_id: String,
    /// Network name and container-name stem.
    name: String,
    user: String,
    server_name: String,
    server_prefix: String,
    image: String,
    resources: ClusterResources,
    env: BTreeMap<String, String>,
    secret_files: Vec<crate::SecretFile>,
    /// Read-only folders of every node.
    mounts: Vec<crate::Mount>,
    work_dir: PathBuf,
    storage_enforced: bool,
    instance: String,
}

impl ClusterPlan {
    fn labels(&self, node: Option<&str>) -> HashMap<String, String> {
        let mut labels = HashMap::from([
            (LABEL_HUB.to_owned(), self.instance.clone()),
            (LABEL_USER.to_owned(), self.user.clone()),
            (LABEL_SERVER.to_owned(), self.server_name.clone()),
            (LABEL_CLUSTER.to_owned(), self.cluster_id.clone()),
        ]);
        if let Some(node) = node {
            labels.insert(LABEL_NODE.to_owned(), node.to_owned());
        }
        labels
    }
}

/// Progress events of a start: `step` advances the bar (network, then creating / starting /
/// ready per node, possibly interleaved across nodes); `note` repeats the current percentage.
struct Progress {
    sender: ProgressSender,
    done: AtomicUsize,
    total: usize,
}

impl Progress {
    fn new(sender: ProgressSender, nodes: u32) -> Self {
        Self {
            sender,
            done: AtomicUsize::new(0),
            total: 1 + 3 * nodes as usize,
        }
    }

    fn percent(&self, done: usize) -> u8 {
        let done = done.min(self.total);
        u8::try_from(5 + 90 * done / self.total.max(1)).unwrap_or(95)
    }

    fn step(&self, message: String) {
        let done = self.done.fetch_add(1, Ordering::SeqCst);
        // The hub may have stopped listening (client went away); the spawn goes on.
        let _ = self
            .sender
            .send(ProgressEvent::new(self.percent(done), message));
    }

    fn note(&self, message: String) {
        let done = self.done.load(Ordering::SeqCst);
        let _ = self
            .sender
            .send(ProgressEvent::new(self.percent(done), message));
    }
}

#[async_trait::async_trait]
impl Spawner for DockerSpawner {
    fn resource_limits(&self) -> Option<ResourceLimits> {
        Some(self.limits())
    }

    fn backend_name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            runs_images: true,
            saves_images: true,
            work_owner: Some(JOVYAN_UID as u32),
            ..Capabilities::default()
        }
    }

    async fn validate(&self, request: &ClusterRequest) -> Result<ClusterResources, SpawnerError> {
        let resources = self.limits().admit(request)?;
        if let Some(image) = &resources.image {
            check_image(image, self.cfg.allowed_images.as_deref())?;
        }
        Ok(resources)
    }

    async fn start(
        &self,
        spec: &SpawnSpec,
        progress: ProgressSender,
    ) -> Result<Started, SpawnerError> {
        // Checked again: whatever reaches Docker is within the host's limits.
        let resources = self
            .validate(&ClusterRequest::from(&spec.resources))
            .await?;
        let cluster_id = naming::new_cluster_id();
        let span = tracing::info_span!(
            "docker_start",
            user.name = %spec.user,
            server.name = %spec.server_name,
            cluster.id = %cluster_id,
            nodes = resources.nodes,
        );
        async move {
            mounts::check(&spec.mounts)?;
            let work_dir = self.prepare_work_dir(spec)?;
            let plan = ClusterPlan {
                name: cluster_name(&spec.user, &spec.server_name, &cluster_id),
                cluster_id: cluster_id.clone(),
                user: spec.user.clone(),
                server_name: spec.server_name.clone(),
                server_prefix: spec.service_prefix.clone(),
                image: resources
                    .image
                    .clone()
                    .unwrap_or_else(|| self.cfg.image.clone()),
                storage_enforced: resources.storage_bytes.is_some()
                    && self.host.storage_limit_supported,
                resources,
                env: spec.env.clone(),
                secret_files: spec.secret_files.clone(),
                mounts: spec.mounts.clone(),
                work_dir,
                instance: self.cfg.instance.clone(),
            };
            if plan.resources.storage_bytes.is_some() && !plan.storage_enforced {
                tracing::warn!(
                    storage_driver = %self.host.storage_driver,
                    "the storage driver cannot limit storage; the limit is not enforced"
                );
            }
            let progress = Progress::new(progress, plan.resources.nodes);
            let started_at = Instant::now();
            match self.launch(&plan, &progress).await {
                Ok(started) => {
                    tracing::info!(
                        elapsed_ms = started_at.elapsed().as_millis() as u64,
                        url = %started.url,
                        "cluster ready"
                    );
                    Ok(started)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster failed to start; removing it");
                    progress.note("Removing the cluster's containers and network".into());
                    if let Err(cleanup) = self.remove_cluster(&plan.cluster_id, &plan.name).await {
                        tracing::error!(error = %cleanup, "cannot remove a failed cluster");
                    }
                    Err(e)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn poll(&self, state: &serde_json::Value) -> Result<Option<i32>, SpawnerError> {
        let Some(state) = ClusterState::from_blob(state)? else {
            return Ok(Some(0));
        };
        for node in &state.nodes {
            if let Some(status) = self.container_exit(&node.container_id).await? {
                tracing::info!(cluster.id = %state.cluster_id, node = %node.name, status, "a node is gone");
                return Ok(Some(status));
            }
        }
        Ok(None)
    }

    async fn stop(&self, state: &serde_json::Value, grace: Duration) -> Result<(), SpawnerError> {
        let Some(state) = ClusterState::from_blob(state)? else {
            return Ok(());
        };
        let seconds = i64::try_from(grace.as_secs() + u64::from(grace.subsec_nanos() > 0))
            .unwrap_or(i64::MAX);
        let stops = state.nodes.iter().map(|node| async move {
            match self
                .docker
                .stop_container(
                    &node.container_id,
                    Some(StopContainerOptions { t: seconds }),
                )
                .await
            {
                Ok(()) => Ok(()),
                // 304: already stopped; 404: already gone.
                Err(e) if is_not_found(&e) || status_code(&e) == Some(304) => Ok(()),
                Err(e) => Err(SpawnerError::docker(
                    format!("stopping {}", node.container_name),
                    e,
                )),
            }
        });
        let stopped = futures_util::future::join_all(stops).await;
        // Remove everything even if a graceful stop failed; report the first failure after.
        let removed = self
            .remove_cluster(&state.cluster_id, &state.network_name)
            .await;
        for result in stopped {
            result?;
        }
        removed?;
        tracing::info!(cluster.id = %state.cluster_id, "cluster stopped and removed");
        Ok(())
    }

    fn url_from_state(&self, state: &serde_json::Value) -> Option<String> {
        ClusterState::from_blob(state).ok().flatten().map(|s| s.url)
    }

    fn nodes_from_state(&self, state: &serde_json::Value) -> Vec<NodeInfo> {
        ClusterState::from_blob(state)
            .ok()
            .flatten()
            .map(|s| s.node_infos())
            .unwrap_or_default()
    }

    fn capacity(&self) -> Capacity {
        self.host_capacity()
    }

    async fn compute_nodes(&self) -> Result<Vec<crate::ComputeNode>, SpawnerError> {
        Ok(vec![self.host_node().await?])
    }

    async fn node_usage(&self, state: &serde_json::Value) -> Result<Vec<NodeUsage>, SpawnerError> {
        let Some(cluster) = ClusterState::from_blob(state)? else {
            return Ok(Vec::new());
        };
        let found =
            futures_util::future::join_all(cluster.nodes.iter().map(|n| self.usage_of(n))).await;
        let mut usage = Vec::new();
        for node in found {
            usage.extend(node?);
        }
        Ok(usage)
    }

    async fn check_hub_reachable(&self, state: &serde_json::Value) -> Result<(), SpawnerError> {
        match ClusterState::from_blob(state)? {
            Some(cluster) => self.check_nodes_reach_hub(&cluster).await,
            None => Ok(()),
        }
    }

    fn default_work_dir(&self, user: &str) -> Option<PathBuf> {
        path_component(user).map(|c| self.cfg.work_root.join(c))
    }

    async fn node_layer(
        &self,
        state: &serde_json::Value,
        node: &str,
    ) -> Result<NodeLayer, SpawnerError> {
        self.layer_of(state, node).await
    }

    async fn pause_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        self.pause_container(layer).await
    }

    async fn resume_node(&self, layer: &NodeLayer) -> Result<(), SpawnerError> {
        self.unpause_container(layer).await
    }
}

fn node_failed(node: &str, reason: String, log_tail: String) -> SpawnerError {
    SpawnerError::NodeFailed {
        node: node.to_owned(),
        reason,
        log_tail,
    }
}

fn status_code(e: &bollard::errors::Error) -> Option<u16> {
    match e {
        bollard::errors::Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    status_code(e) == Some(404)
}

/// 409 on removal: already being removed.
fn is_conflict(e: &bollard::errors::Error) -> bool {
    status_code(e) == Some(409)
}

/// The engine's own message for server errors, else the error's text.
fn docker_message(e: &bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_only_moves_forward_and_stays_below_100() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let progress = Progress::new(tx, 2);
        for i in 0..7 {
            progress.step(format!("step {i}"));
        }
        progress.note("note".into());
        let mut last = 0;
        while let Ok(event) = rx.try_recv() {
            assert!(event.progress >= last && event.progress < 100, "{event:?}");
            last = event.progress;
        }
        assert!(last >= 80);
    }
}
