//! Configuration of the [`KubernetesSpawner`](super::KubernetesSpawner).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const GIB: u64 = 1024 * 1024 * 1024;

/// Where the API server is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiAccess {
    /// The in-cluster service account, else `$KUBECONFIG` / `~/.kube/config` (kube-rs's
    /// inference).
    Infer,
    /// A kubeconfig file (its current context).
    Kubeconfig(PathBuf),
    /// A plain URL with no credentials (`kubectl proxy`, or an API emulator in tests).
    Url(String),
}

/// A storage pool's folders on the hub's host, and the volume the same files are on in the
/// cluster: a work directory or dataset under `host_path` becomes this volume with the rest of
/// the path as its `subPath`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMapping {
    /// The pool's mount point on the hub's host, e.g. `/srv/xiji/pools/gluster1`.
    pub host_path: PathBuf,
    /// The same files in the cluster.
    pub source: VolumeSource,
}

/// Where a storage pool's files are in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeSource {
    /// An existing PersistentVolumeClaim of the namespace (any storage class: NFS, GlusterFS,
    /// CephFS...), ReadWriteMany.
    Claim { claim_name: String },
    /// An inline NFS volume.
    Nfs { server: String, path: String },
    /// The same folder on every node (a filesystem every node mounts at that path).
    HostPath { path: String },
}

/// A toleration every node pod gets (e.g. for tainted GPU nodes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Toleration {
    /// The taint's key.
    pub key: String,
    /// `Equal` (with `value`) or `Exists`.
    pub operator: String,
    /// The taint's value for `Equal`.
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule`, `NoExecute`, or `None` for all.
    pub effect: Option<String>,
}

/// Configuration of the Kubernetes backend.
#[derive(Clone, Debug)]
pub struct KubernetesConfig {
    /// How to reach the API server.
    pub api: ApiAccess,
    /// The namespace every object is made in; default `xiji`.
    pub namespace: String,
    /// Value of the `xiji.org/hub` label: tells this hub's objects from another's; default
    /// `xiji`.
    pub instance: String,
    /// Image run when the request names none.
    pub image: String,
    /// `None`: any image a request names; `Some(list)`: only these.
    pub allowed_images: Option<Vec<String>>,
    /// `imagePullPolicy` of the nodes; default `IfNotPresent`.
    pub image_pull_policy: String,
    /// Secrets for pulling images (names of `kubernetes.io/dockerconfigjson` Secrets).
    pub image_pull_secrets: Vec<String>,
    /// The nodes' command (after the image's entry point); default
    /// `jupyterhub-singleuser --ip=0.0.0.0 --port=8888`.
    pub cmd: Vec<String>,
    /// Port the single-user server listens on in each pod; default 8888.
    pub port: u16,
    /// Scheme and authority under which pods reach the hub, e.g. `http://xiji-hub:8081`;
    /// `None` leaves the hub's URLs as given.
    pub hub_connect_url: Option<String>,
    /// Extra environment of every node.
    pub environment: BTreeMap<String, String>,
    /// The extended resource that counts GPUs; default `nvidia.com/gpu`.
    pub gpu_resource: String,
    /// The node label that puts a Kubernetes node in a Xiji compute pool; default
    /// `xiji.org/pool`.
    pub pool_label: String,
    /// The pool new clusters go to when the request names none; `None`: any node with the
    /// pool label.
    pub default_pool: Option<String>,
    /// Tolerations every node pod gets (e.g. for tainted GPU nodes).
    pub tolerations: Vec<Toleration>,
    /// `runtimeClassName` of the nodes (e.g. `nvidia`), if any.
    pub runtime_class: Option<String>,
    /// `schedulerName` of the nodes when a gang scheduler runs (e.g. `volcano`); `None`: the
    /// default scheduler.
    pub scheduler_name: Option<String>,
    /// How the storage pools' folders on the hub's host are found in the cluster.
    pub volumes: Vec<VolumeMapping>,
    /// The work directories' root on the hub's host when a spec names none: `{work_root}/{user}`.
    pub work_root: PathBuf,
    /// Labels of the hub's and proxy's pods, which the NetworkPolicy lets in.
    pub hub_pod_labels: BTreeMap<String, String>,
    /// How long `start` waits for every pod to be scheduled, started and answering; default
    /// 300 s.
    pub ready_timeout: Duration,
    /// Most nodes in one cluster; default 16.
    pub max_nodes: u32,
    /// CPU cores per node when the request does not say; default 1.
    pub default_cpus: f64,
    /// Memory per node when the request does not say; default 2 GiB.
    pub default_memory_bytes: u64,
    /// Largest storage (ephemeral-storage) per node; default 1 TiB.
    pub max_storage_bytes: u64,
    /// Whether jovyan may `sudo` inside its nodes (no `allowPrivilegeEscalation: false`, the
    /// runtime's default capabilities); false drops every capability. Default true.
    pub sudo: bool,
    /// The node agent's port on every Kubernetes node (the DaemonSet's hostPort), for saving
    /// images; default 8585.
    pub agent_port: u16,
    /// The labels of the node agent's pods, to find the agent on a pod's node.
    pub agent_pod_labels: BTreeMap<String, String>,
    /// A file holding the token the hub presents to the node agents.
    pub agent_token_file: Option<PathBuf>,
    /// The cluster's DNS domain, for the nodes' search path (`node-k` resolves as
    /// `node-k.{service}.{namespace}.svc.{cluster_domain}`); default `cluster.local`.
    pub cluster_domain: String,
    /// A CA bundle (PEM) on the hub's host given to every node at
    /// `/etc/xiji/ca-certificates.crt` (read at each start, carried in the cluster's owner
    /// ConfigMap), with the tools' variables pointing at it as in the `docker` backend; for
    /// networks whose HTTPS goes through an inspecting proxy. `None`: none.
    pub ca_bundle: Option<PathBuf>,
}

impl KubernetesConfig {
    /// A configuration with the defaults above.
    pub fn new(api: ApiAccess, image: impl Into<String>, work_root: PathBuf) -> Self {
        Self {
            api,
            namespace: "xiji".into(),
            instance: "xiji".into(),
            image: image.into(),
            allowed_images: None,
            image_pull_policy: "IfNotPresent".into(),
            image_pull_secrets: Vec::new(),
            cmd: vec![
                "jupyterhub-singleuser".into(),
                "--ip=0.0.0.0".into(),
                "--port=8888".into(),
            ],
            port: 8888,
            hub_connect_url: None,
            environment: BTreeMap::new(),
            gpu_resource: "nvidia.com/gpu".into(),
            pool_label: "xiji.org/pool".into(),
            default_pool: None,
            tolerations: Vec::new(),
            runtime_class: None,
            scheduler_name: None,
            volumes: Vec::new(),
            work_root,
            hub_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "xiji".to_owned(),
            )]),
            ready_timeout: Duration::from_secs(300),
            max_nodes: 16,
            default_cpus: 1.0,
            default_memory_bytes: 2 * GIB,
            max_storage_bytes: 1024 * GIB,
            sudo: true,
            agent_port: 8585,
            agent_pod_labels: BTreeMap::from([(
                "app.kubernetes.io/component".to_owned(),
                "node-agent".to_owned(),
            )]),
            agent_token_file: None,
            cluster_domain: "cluster.local".into(),
            ca_bundle: None,
        }
    }
}
