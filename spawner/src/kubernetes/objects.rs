//! The Kubernetes objects of one cluster, built from a spawn spec: pure functions, no API
//! calls (the only outside inputs are fresh SSH keys and the existence checks of the spawn's
//! read-only folders, as in the `docker` backend).
//!
//! A cluster of N nodes is, in [`KubernetesConfig::namespace`]:
//!
//! | object | name | what it holds |
//! | --- | --- | --- |
//! | ConfigMap (the *owner*) | `{base}` | `hostfile`: the MPI hostfile; every other object is its dependent (`ownerReferences`, [`set_owner`]), so deleting it removes the cluster |
//! | Secret (Opaque) | `{base}` | the cluster's SSH keys ([`SSH_FILES`]), each secret environment variable as `env.{NAME}` (the API token: `env.JUPYTERHUB_API_TOKEN`, `env.JPY_API_TOKEN`), each secret file as `file.{name}` |
//! | Service (headless) | `{base}` | `clusterIP: None`, not-ready addresses published, ports `http` and `ssh`: the nodes' DNS names |
//! | NetworkPolicy | `{base}` | ingress to the cluster's pods from its own pods and the hub's only; egress unrestricted |
//! | PodGroup (Volcano, with [`Gang::Volcano`]) | `{base}` | `minMember` = N, `minResources` = the sum of the nodes' requests |
//! | Pod × N | `{base}-node-k` | host name `node-k` in the Service's subdomain, one container `notebook` |
//!
//! Every node pod mirrors a `docker` node, so the same image runs unchanged:
//!
//! | path in the node | from | mode |
//! | --- | --- | --- |
//! | `/etc/xiji/ssh/{id_ed25519,id_ed25519.pub,authorized_keys,ssh_host_ed25519_key,ssh_host_ed25519_key.pub}` | the Secret, one `subPath` mount per file | private 0400, public 0444, group `fsGroup` (1000): the kubelet adds group read, so `0440 root:1000` |
//! | `/etc/xiji/secrets/{name}` | the Secret's `file.{name}` (a directory mount) | 0400 (+ group read, as above) |
//! | `/etc/xiji/hostfile` | the owner ConfigMap's `hostfile` (`subPath`) | 0444 |
//! | `/home/jovyan/work` | the work directory through [`KubernetesConfig::volumes`] | read-write |
//! | `/home/jovyan/{relative}` | each [`SpawnSpec::mounts`] entry through the same mappings | read-only |
//! | `/dev/shm` | a memory `emptyDir` of a quarter of the memory (as Docker's `shm_size`), for MPI | |
//!
//! Why the SSH files are single-file (`subPath`) mounts: sshd's `StrictModes` refuses an
//! `authorized_keys` in a group- or world-writable directory, and a Secret volume's own
//! directory is one (a tmpfs the kubelet makes world-writable); mounted file by file they sit in
//! the image's `/etc/xiji/ssh` (jovyan, 0700). Root owns them and jovyan reads them through the
//! group (`fsGroup`): sshd and ssh check a key's mode only when the user owns it.

// The runtime (runtime.rs, being written) is the caller; until it is, only the tests are.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, NodeAffinity, NodeSelector,
    NodeSelectorRequirement, NodeSelectorTerm, Pod, PodDNSConfig, PodSecurityContext, PodSpec,
    Probe, ResourceRequirements, SeccompProfile, Secret, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, Toleration as KubeToleration, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use ssh_key::sha2::{Digest as _, Sha256};

use super::volumes::PoolVolumes;
use super::{KubernetesConfig, LABEL_CLUSTER, LABEL_HUB, LABEL_NODE, LABEL_SERVER, LABEL_USER};
use crate::docker::files::{ClusterKeys, JOVYAN_UID};
use crate::docker::mounts::node_path;
use crate::docker::naming::rebase_url;
use crate::docker::{hostfile, node_env, HOSTFILE_PATH, SSH_PORT, WORK_MOUNT};
use crate::nodes::{node_name, node_service_prefix};
use crate::paths::path_component;
use crate::{SpawnSpec, SpawnerError, SECRETS_DIR};

/// The group of jovyan in the images (its own group, as in the `docker` backend's `1000:1000`),
/// also the pods' `fsGroup`, through which jovyan reads the Secret's files.
const JOVYAN_GID: i64 = 1000;
/// Longest [`ClusterNames::base`], so that `{base}-node-15` (and up to `-node-999`) stays a
/// DNS label of at most 63 characters.
const BASE_MAX: usize = 47;
/// The node's container.
pub(super) const CONTAINER: &str = "notebook";
/// Where the cluster's SSH files are in a node (the image's `sshd_config` and `ssh_config`).
const SSH_DIR: &str = "/etc/xiji/ssh";
/// The SSH files of the Secret: key (= file name under [`SSH_DIR`]) and mode.
pub(super) const SSH_FILES: [(&str, i32); 5] = [
    ("id_ed25519", 0o400),
    ("id_ed25519.pub", 0o444),
    ("authorized_keys", 0o400),
    ("ssh_host_ed25519_key", 0o400),
    ("ssh_host_ed25519_key.pub", 0o444),
];
/// The owner ConfigMap's key holding the hostfile.
pub(super) const HOSTFILE_KEY: &str = "hostfile";
/// `app.kubernetes.io/managed-by` of every object.
const MANAGED_BY: &str = "xiji";
/// `app.kubernetes.io/component` of every object.
const COMPONENT: &str = "singleuser";
/// Volcano's annotation naming a pod's PodGroup.
const VOLCANO_GROUP_ANNOTATION: &str = "scheduling.k8s.io/group-name";
/// Volcano's scheduler, when [`KubernetesConfig::scheduler_name`] names none.
const VOLCANO_SCHEDULER: &str = "volcano";
const MIB: u64 = 1024 * 1024;

/// How the pods of a cluster are scheduled together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Gang {
    /// Pod by pod (the default scheduler, or [`KubernetesConfig::scheduler_name`]): the runtime
    /// removes a cluster whose pods cannot all be placed.
    None,
    /// Volcano: a PodGroup with `minMember` = N, so that all pods are bound or none.
    /// (The scheduler-plugins' coscheduling PodGroup is not supported.)
    Volcano,
}

/// The names of one cluster's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ClusterNames {
    /// The cluster id (also the `xiji.org/cluster` label, escaped).
    pub(super) cluster_id: String,
    /// `xiji-{user}[-{server}]-{id}`: a DNS-1035 label of at most 47 characters.
    pub(super) base: String,
    /// The user's name as given.
    pub(super) user: String,
    /// The server's name as given (`""`: the default server).
    pub(super) server: String,
}

impl ClusterNames {
    /// The names of cluster `cluster_id` of `user`'s server `server`. Names are for people
    /// (lossy: lower-case ASCII letters, digits and `-`); the id makes them unique, and a name
    /// with no ASCII letter or digit is replaced by a short hash of it.
    pub(super) fn new(user: &str, server: &str, cluster_id: &str) -> Self {
        let id = {
            let plain = dns_part(cluster_id, usize::MAX);
            if plain == cluster_id && !plain.is_empty() && plain.len() <= 20 {
                plain
            } else {
                short_hash(cluster_id, 12)
            }
        };
        // "xiji-" + parts + "-" + id
        let budget = BASE_MAX - "xiji-".len() - 1 - id.len();
        let name_part = |text: &str, max: usize| {
            let part = dns_part(text, max);
            if part.is_empty() {
                format!("u{}", short_hash(text, 6))
            } else {
                part
            }
        };
        let middle = if server.is_empty() {
            name_part(user, budget)
        } else {
            let server_part = name_part(server, (budget - 1) / 2);
            let user_part = name_part(user, budget - 1 - server_part.len());
            format!("{user_part}-{server_part}")
        };
        Self {
            cluster_id: cluster_id.to_owned(),
            base: format!("xiji-{middle}-{id}"),
            user: user.to_owned(),
            server: server.to_owned(),
        }
    }

    /// `{base}-node-{index}`.
    pub(super) fn pod(&self, index: usize) -> String {
        format!("{}-{}", self.base, node_name(index))
    }

    /// The headless Service, whose name is also the nodes' DNS subdomain.
    pub(super) fn service(&self) -> String {
        self.base.clone()
    }

    /// The ConfigMap that owns every other object of the cluster (and holds its hostfile).
    pub(super) fn owner(&self) -> String {
        self.base.clone()
    }

    /// The Secret with the SSH keys, the API token and the secret files.
    pub(super) fn secret(&self) -> String {
        self.base.clone()
    }

    /// The NetworkPolicy.
    pub(super) fn network_policy(&self) -> String {
        self.base.clone()
    }

    /// The Volcano PodGroup.
    pub(super) fn pod_group(&self) -> String {
        self.base.clone()
    }
}

/// Every object of one cluster.
#[derive(Clone, Debug)]
pub(super) struct ClusterObjects {
    /// The owner: made first; its uid goes into every other object ([`set_owner`]).
    pub(super) owner: ConfigMap,
    pub(super) secret: Secret,
    pub(super) service: Service,
    pub(super) network_policy: NetworkPolicy,
    /// Volcano's PodGroup (`scheduling.volcano.sh/v1beta1`), with [`Gang::Volcano`].
    pub(super) pod_group: Option<serde_json::Value>,
    /// node-0 first.
    pub(super) pods: Vec<Pod>,
}

/// What one node asks for, as quantities.
struct NodeSizes {
    cpu_millis: u64,
    memory_mib: u64,
    gpus: u32,
    storage_mib: Option<u64>,
}

impl NodeSizes {
    fn of(cfg: &KubernetesConfig, spec: &SpawnSpec) -> Self {
        let r = &spec.resources;
        let cpus = r.cpus.unwrap_or(cfg.default_cpus).max(0.001);
        // Validation bounds cpus by the cluster's cores, so this fits u64.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let cpu_millis = (cpus * 1000.0).round().max(1.0) as u64;
        let memory = r.memory_bytes.unwrap_or(cfg.default_memory_bytes).max(MIB);
        Self {
            cpu_millis,
            memory_mib: memory.div_ceil(MIB),
            gpus: r.gpus,
            storage_mib: r.storage_bytes.map(|b| b.max(MIB).div_ceil(MIB)),
        }
    }

    /// The resource list of `nodes` such nodes (1 for a pod, N for the PodGroup).
    fn times(&self, nodes: u64, gpu_resource: &str) -> BTreeMap<String, Quantity> {
        let mut list = BTreeMap::from([
            (
                "cpu".to_owned(),
                Quantity(format!("{}m", self.cpu_millis * nodes)),
            ),
            (
                "memory".to_owned(),
                Quantity(format!("{}Mi", self.memory_mib * nodes)),
            ),
        ]);
        if self.gpus > 0 {
            list.insert(
                gpu_resource.to_owned(),
                Quantity((u64::from(self.gpus) * nodes).to_string()),
            );
        }
        if let Some(storage) = self.storage_mib {
            list.insert(
                "ephemeral-storage".to_owned(),
                Quantity(format!("{}Mi", storage * nodes)),
            );
        }
        list
    }

    /// Whole CPU cores, for the hostfile's slots.
    fn cpus(&self) -> f64 {
        // Millicores of a node are far below 2^52.
        #[allow(clippy::cast_precision_loss)]
        let cpus = self.cpu_millis as f64 / 1000.0;
        cpus
    }
}

/// Builds every object of the cluster `names` for `spec`. Errors: [`SpawnerError::Rejected`]
/// when a folder to mount is on no storage the cluster can mount (naming the folder and
/// [`KubernetesConfig::volumes`]), [`SpawnerError::InvalidSpec`] for a bad mount or an empty
/// cluster, [`SpawnerError::Config`] for an environment variable name Kubernetes refuses.
pub(super) fn build(
    cfg: &KubernetesConfig,
    spec: &SpawnSpec,
    names: &ClusterNames,
    gang: Gang,
) -> Result<ClusterObjects, SpawnerError> {
    let nodes = spec.resources.nodes as usize;
    if nodes == 0 {
        return Err(SpawnerError::InvalidSpec(
            "a cluster needs at least 1 node".into(),
        ));
    }
    crate::docker::mounts::check(&spec.mounts)?;
    let sizes = NodeSizes::of(cfg, spec);

    // Where the folders are: the same volumes for every node.
    let mut pool = PoolVolumes::new(&cfg.volumes);
    let work_dir = match &spec.work_dir {
        Some(dir) => dir.clone(),
        None => path_component(&spec.user)
            .map(|user| cfg.work_root.join(user))
            .ok_or_else(|| SpawnerError::InvalidSpec("the user name is empty".into()))?,
    };
    let mut folder_mounts = vec![pool.mount(&work_dir, WORK_MOUNT, false, "the work directory")?];
    for mount in &spec.mounts {
        folder_mounts.push(pool.mount(
            &mount.source,
            &node_path(mount),
            true,
            &format!("the folder to mount at {:?}", mount.relative),
        )?);
    }
    let pool_volumes = pool.volumes();

    let keys = ClusterKeys::generate(&names.base)?;
    let mut secret_data: BTreeMap<String, ByteString> = BTreeMap::new();
    for (file, _) in SSH_FILES {
        let content = match file {
            "id_ed25519" => &keys.user_private,
            "id_ed25519.pub" | "authorized_keys" => &keys.user_public,
            "ssh_host_ed25519_key" => &keys.host_private,
            _ => &keys.host_public,
        };
        secret_data.insert(file.to_owned(), ByteString(content.as_bytes().to_vec()));
    }
    for file in &spec.secret_files {
        secret_data.insert(
            secret_file_key(&file.name),
            ByteString(file.content.clone()),
        );
    }

    let mut pods = Vec::with_capacity(nodes);
    for k in 0..nodes {
        let env = node_environment(cfg, spec, names, k, &mut secret_data)?;
        let plan = PodPlan {
            cfg,
            spec,
            names,
            gang,
            sizes: &sizes,
            env,
            folder_mounts: &folder_mounts,
            pool_volumes: &pool_volumes,
        };
        pods.push(plan.pod(k));
    }

    let owner = ConfigMap {
        metadata: metadata(cfg, names, names.owner(), None),
        data: Some(BTreeMap::from([(
            HOSTFILE_KEY.to_owned(),
            hostfile(nodes, Some(sizes.cpus())),
        )])),
        ..Default::default()
    };
    let secret = Secret {
        metadata: metadata(cfg, names, names.secret(), None),
        type_: Some("Opaque".into()),
        data: Some(secret_data),
        ..Default::default()
    };
    let pod_group = (gang == Gang::Volcano).then(|| pod_group(cfg, names, &sizes, nodes));
    Ok(ClusterObjects {
        owner,
        secret,
        service: service(cfg, names),
        network_policy: network_policy(cfg, names),
        pod_group,
        pods,
    })
}

/// Makes every object but the owner a dependent of the owner ConfigMap (uid `owner_uid`), as
/// its controller: deleting the owner deletes the cluster (foreground deletion waits for them).
/// The hub's role needs `update` on `configmaps/finalizers` for `blockOwnerDeletion`.
pub(super) fn set_owner(objects: &mut ClusterObjects, owner_uid: &str) {
    let reference = OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: objects.owner.metadata.name.clone().unwrap_or_default(),
        uid: owner_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let set = |meta: &mut ObjectMeta| meta.owner_references = Some(vec![reference.clone()]);
    set(&mut objects.secret.metadata);
    set(&mut objects.service.metadata);
    set(&mut objects.network_policy.metadata);
    for pod in &mut objects.pods {
        set(&mut pod.metadata);
    }
    if let Some(group) = objects.pod_group.as_mut() {
        if let (Some(meta), Ok(reference)) = (
            group.get_mut("metadata").and_then(|m| m.as_object_mut()),
            serde_json::to_value(&reference),
        ) {
            meta.insert(
                "ownerReferences".into(),
                serde_json::Value::Array(vec![reference]),
            );
        }
    }
}

/// Any string as a valid label value (at most 63 characters of `[A-Za-z0-9._-]`, beginning
/// and ending with a letter or digit, or empty), stable and collision-resistant: a value that
/// is valid already is kept, unless it ends like an escaped one; any other becomes its valid
/// characters (others as `-`, at most 44) + `--` + 16 hex digits of its SHA-256.
pub(super) fn label_value(s: &str) -> String {
    if is_label_value(s) && !looks_escaped(s) {
        return s.to_owned();
    }
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    // ASCII only: bytes are characters.
    let mut prefix = trimmed[..trimmed.len().min(44)].to_owned();
    while prefix.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        prefix.pop();
    }
    if prefix.is_empty() {
        prefix.push('x');
    }
    format!("{prefix}--{}", short_hash(s, 16))
}

fn is_label_value(s: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && alnum(s.chars().next())
            && alnum(s.chars().last()))
}

/// Ends with `--` and 16 lower-case hex digits, as [`label_value`]'s escaped values do.
fn looks_escaped(s: &str) -> bool {
    s.len() >= 18 && {
        let (head, hash) = s.split_at(s.len() - 16);
        head.ends_with("--") && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// The first `digits` hex digits of the SHA-256 of `text`.
fn short_hash(text: &str, digits: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .chars()
        .take(digits)
        .collect()
}

/// Lower-case ASCII letters, digits and single `-` (for anything else), at most `max`
/// characters, no `-` at either end; empty when `text` has no ASCII letter or digit.
fn dns_part(text: &str, max: usize) -> String {
    let mut part = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            part.push(c.to_ascii_lowercase());
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
        if part.len() >= max {
            break;
        }
    }
    part.truncate(max);
    while part.ends_with('-') {
        part.pop();
    }
    part
}

/// The Secret's key of a secret file.
fn secret_file_key(name: &str) -> String {
    format!("file.{name}")
}

/// The Secret's key of a secret environment variable.
fn secret_env_key(name: &str) -> String {
    format!("env.{name}")
}

/// Whether an environment variable's value is a secret (goes through the Secret, never into
/// the pod spec): its name speaks of a token, secret, password, credential or key.
fn is_secret_env(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "PRIVATE_KEY",
        "API_KEY",
        "ACCESS_KEY",
    ]
    .iter()
    .any(|word| upper.contains(word))
}

/// A name Kubernetes takes for an environment variable on every version
/// (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Node `k`'s environment, as the `docker` backend gives it (node-k's JupyterHub variables,
/// the hub's URLs rebased onto [`KubernetesConfig::hub_connect_url`], the operator's variables,
/// the service URL and `XIJI_*`), with every secret value moved into `secret_data` and read
/// from the Secret.
fn node_environment(
    cfg: &KubernetesConfig,
    spec: &SpawnSpec,
    names: &ClusterNames,
    k: usize,
    secret_data: &mut BTreeMap<String, ByteString>,
) -> Result<Vec<EnvVar>, SpawnerError> {
    let prefix = node_service_prefix(&spec.service_prefix, k);
    let mut env = node_env(&spec.env, &spec.service_prefix, k);
    if let Some(base) = &cfg.hub_connect_url {
        for key in ["JUPYTERHUB_API_URL", "JUPYTERHUB_ACTIVITY_URL"] {
            if let Some(url) = env.get(key).cloned() {
                env.insert(key.into(), rebase_url(&url, base));
            }
        }
    }
    if let Some(token) = env.get("JUPYTERHUB_API_TOKEN").cloned() {
        env.insert("JPY_API_TOKEN".into(), token);
    }
    env.extend(cfg.environment.clone());
    env.insert(
        "JUPYTERHUB_SERVICE_URL".into(),
        format!("http://0.0.0.0:{}{prefix}", cfg.port),
    );
    env.insert("XIJI_NODE".into(), node_name(k));
    env.insert("XIJI_NODES".into(), spec.resources.nodes.to_string());
    env.insert("XIJI_HOSTFILE".into(), HOSTFILE_PATH.into());

    let mut vars = Vec::with_capacity(env.len());
    for (name, value) in env {
        if !is_env_name(&name) {
            return Err(SpawnerError::Config(format!(
                "the environment variable name {name:?} is not one Kubernetes takes: use \
                 letters, digits, '_', '-' and '.', not starting with a digit"
            )));
        }
        if is_secret_env(&name) {
            let key = secret_env_key(&name);
            let bytes = ByteString(value.into_bytes());
            match secret_data.get(&key) {
                Some(known) if *known != bytes => {
                    return Err(SpawnerError::InvalidSpec(format!(
                        "the secret variable {name} differs between nodes"
                    )))
                }
                Some(_) => {}
                None => {
                    secret_data.insert(key.clone(), bytes);
                }
            }
            vars.push(EnvVar {
                name,
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: names.secret(),
                        key,
                        optional: None,
                    }),
                    ..Default::default()
                }),
            });
        } else {
            vars.push(EnvVar {
                name,
                value: Some(value),
                value_from: None,
            });
        }
    }
    Ok(vars)
}

/// The labels of every object of the cluster (and `xiji.org/node` for a pod).
fn labels(
    cfg: &KubernetesConfig,
    names: &ClusterNames,
    node: Option<usize>,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_HUB.to_owned(), label_value(&cfg.instance)),
        (LABEL_USER.to_owned(), label_value(&names.user)),
        (LABEL_SERVER.to_owned(), label_value(&names.server)),
        (LABEL_CLUSTER.to_owned(), label_value(&names.cluster_id)),
        (
            "app.kubernetes.io/managed-by".to_owned(),
            MANAGED_BY.to_owned(),
        ),
        (
            "app.kubernetes.io/component".to_owned(),
            COMPONENT.to_owned(),
        ),
    ]);
    if let Some(k) = node {
        labels.insert(LABEL_NODE.to_owned(), node_name(k));
    }
    labels
}

/// The selector of the cluster's pods.
fn cluster_selector(names: &ClusterNames) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_CLUSTER.to_owned(), label_value(&names.cluster_id))])
}

fn metadata(
    cfg: &KubernetesConfig,
    names: &ClusterNames,
    name: String,
    node: Option<usize>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels(cfg, names, node)),
        annotations: Some(BTreeMap::from([
            (LABEL_USER.to_owned(), names.user.clone()),
            (LABEL_SERVER.to_owned(), names.server.clone()),
        ])),
        ..Default::default()
    }
}

fn service(cfg: &KubernetesConfig, names: &ClusterNames) -> Service {
    Service {
        metadata: metadata(cfg, names, names.service(), None),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(cluster_selector(names)),
            ports: Some(vec![
                ServicePort {
                    name: Some("http".into()),
                    port: i32::from(cfg.port),
                    target_port: Some(IntOrString::Int(i32::from(cfg.port))),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("ssh".into()),
                    port: i32::from(SSH_PORT),
                    target_port: Some(IntOrString::Int(i32::from(SSH_PORT))),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn network_policy(cfg: &KubernetesConfig, names: &ClusterNames) -> NetworkPolicy {
    let mut from = vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(cluster_selector(names)),
            ..Default::default()
        }),
        ..Default::default()
    }];
    // An empty selector would let in every pod of the namespace.
    if !cfg.hub_pod_labels.is_empty() {
        from.push(NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(cfg.hub_pod_labels.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    NetworkPolicy {
        metadata: metadata(cfg, names, names.network_policy(), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(cluster_selector(names)),
                ..Default::default()
            }),
            // Ingress only: egress stays open (package indexes, Git, the hub's API).
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: None,
            }]),
            ..Default::default()
        }),
    }
}

fn pod_group(
    cfg: &KubernetesConfig,
    names: &ClusterNames,
    sizes: &NodeSizes,
    nodes: usize,
) -> serde_json::Value {
    let meta = metadata(cfg, names, names.pod_group(), None);
    serde_json::json!({
        "apiVersion": "scheduling.volcano.sh/v1beta1",
        "kind": "PodGroup",
        "metadata": meta,
        "spec": {
            "minMember": nodes,
            "minResources": sizes.times(nodes as u64, &cfg.gpu_resource),
        },
    })
}

/// What every pod of the cluster shares.
struct PodPlan<'a> {
    cfg: &'a KubernetesConfig,
    spec: &'a SpawnSpec,
    names: &'a ClusterNames,
    gang: Gang,
    sizes: &'a NodeSizes,
    env: Vec<EnvVar>,
    folder_mounts: &'a [VolumeMount],
    pool_volumes: &'a [Volume],
}

impl PodPlan<'_> {
    fn pod(&self, k: usize) -> Pod {
        let cfg = self.cfg;
        let mut meta = metadata(cfg, self.names, self.names.pod(k), Some(k));
        if self.gang == Gang::Volcano {
            if let Some(annotations) = meta.annotations.as_mut() {
                annotations.insert(VOLCANO_GROUP_ANNOTATION.into(), self.names.pod_group());
            }
        }
        let scheduler_name = match self.gang {
            Gang::None => cfg.scheduler_name.clone(),
            Gang::Volcano => Some(
                cfg.scheduler_name
                    .clone()
                    .unwrap_or_else(|| VOLCANO_SCHEDULER.into()),
            ),
        };
        let (node_selector, affinity) = self.placement();
        let (volumes, volume_mounts) = self.volumes();
        Pod {
            metadata: meta,
            spec: Some(PodSpec {
                hostname: Some(node_name(k)),
                subdomain: Some(self.names.service()),
                dns_config: Some(PodDNSConfig {
                    searches: Some(vec![format!(
                        "{}.{}.svc.{}",
                        self.names.service(),
                        cfg.namespace,
                        cfg.cluster_domain
                    )]),
                    ..Default::default()
                }),
                restart_policy: Some("Never".into()),
                enable_service_links: Some(false),
                automount_service_account_token: Some(false),
                image_pull_secrets: (!cfg.image_pull_secrets.is_empty()).then(|| {
                    cfg.image_pull_secrets
                        .iter()
                        .map(|name| k8s_openapi::api::core::v1::LocalObjectReference {
                            name: name.clone(),
                        })
                        .collect()
                }),
                node_selector,
                affinity,
                tolerations: self.tolerations(),
                runtime_class_name: cfg.runtime_class.clone(),
                scheduler_name,
                security_context: Some(PodSecurityContext {
                    run_as_user: Some(JOVYAN_UID as i64),
                    run_as_group: Some(JOVYAN_GID),
                    run_as_non_root: Some(true),
                    fs_group: Some(JOVYAN_GID),
                    // Never a recursive chown of a whole storage pool at every start.
                    fs_group_change_policy: Some("OnRootMismatch".into()),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..Default::default()
                }),
                containers: vec![self.container(k, volume_mounts)],
                volumes: Some(volumes),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(&self, k: usize, volume_mounts: Vec<VolumeMount>) -> Container {
        let cfg = self.cfg;
        let resources = self.sizes.times(1, &cfg.gpu_resource);
        let prefix = node_service_prefix(&self.spec.service_prefix, k);
        Container {
            name: CONTAINER.into(),
            image: Some(
                self.spec
                    .resources
                    .image
                    .clone()
                    .unwrap_or_else(|| cfg.image.clone()),
            ),
            image_pull_policy: Some(cfg.image_pull_policy.clone()),
            // The image's entry point (tini, sshd, then this) is left as it is.
            args: Some(cfg.cmd.clone()),
            working_dir: Some(WORK_MOUNT.into()),
            env: Some(self.env.clone()),
            ports: Some(vec![
                ContainerPort {
                    name: Some("http".into()),
                    container_port: i32::from(cfg.port),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
                ContainerPort {
                    name: Some("ssh".into()),
                    container_port: i32::from(SSH_PORT),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                },
            ]),
            // Requests = limits: Guaranteed QoS, a node gets exactly what it is billed for.
            resources: Some(ResourceRequirements {
                requests: Some(resources.clone()),
                limits: Some(resources),
                ..Default::default()
            }),
            security_context: Some(if cfg.sudo {
                // The runtime's default capabilities, so jovyan may sudo inside its node.
                SecurityContext {
                    privileged: Some(false),
                    ..Default::default()
                }
            } else {
                SecurityContext {
                    privileged: Some(false),
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                        drop: Some(vec!["ALL".into()]),
                        add: None,
                    }),
                    ..Default::default()
                }
            }),
            // What the hub's readiness check asks (any answer below 500 there; 2xx-3xx here).
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some(format!("{prefix}api")),
                    port: IntOrString::String("http".into()),
                    scheme: Some("HTTP".into()),
                    ..Default::default()
                }),
                period_seconds: Some(2),
                timeout_seconds: Some(3),
                failure_threshold: Some(3),
                ..Default::default()
            }),
            volume_mounts: Some(volume_mounts),
            ..Default::default()
        }
    }

    /// `nodeSelector` on the pool, or an affinity to any node with the pool label.
    fn placement(&self) -> (Option<BTreeMap<String, String>>, Option<Affinity>) {
        let cfg = self.cfg;
        let pool = self
            .spec
            .resources
            .pool
            .clone()
            .or_else(|| cfg.default_pool.clone());
        match pool {
            Some(pool) => (Some(BTreeMap::from([(cfg.pool_label.clone(), pool)])), None),
            // Only nodes brought under Xiji's management (in some pool).
            None => (
                None,
                Some(Affinity {
                    node_affinity: Some(NodeAffinity {
                        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                            node_selector_terms: vec![NodeSelectorTerm {
                                match_expressions: Some(vec![NodeSelectorRequirement {
                                    key: cfg.pool_label.clone(),
                                    operator: "Exists".into(),
                                    values: None,
                                }]),
                                ..Default::default()
                            }],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            ),
        }
    }

    /// The configured tolerations, and the GPU taint's when the nodes have GPUs.
    fn tolerations(&self) -> Option<Vec<KubeToleration>> {
        let cfg = self.cfg;
        let mut tolerations: Vec<KubeToleration> = cfg
            .tolerations
            .iter()
            .map(|t| KubeToleration {
                key: Some(t.key.clone()),
                operator: Some(t.operator.clone()),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: None,
            })
            .collect();
        if self.sizes.gpus > 0
            && !tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some(cfg.gpu_resource.as_str()))
        {
            tolerations.push(KubeToleration {
                key: Some(cfg.gpu_resource.clone()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            });
        }
        (!tolerations.is_empty()).then_some(tolerations)
    }

    /// The pod's volumes and the container's mounts of them.
    fn volumes(&self) -> (Vec<Volume>, Vec<VolumeMount>) {
        let secret = self.names.secret();
        let mut volumes = vec![
            Volume {
                name: "ssh".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    items: Some(
                        SSH_FILES
                            .iter()
                            .map(|(file, mode)| KeyToPath {
                                key: (*file).to_owned(),
                                path: (*file).to_owned(),
                                mode: Some(*mode),
                            })
                            .collect(),
                    ),
                    default_mode: Some(0o400),
                    optional: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "hostfile".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: self.names.owner(),
                    items: Some(vec![KeyToPath {
                        key: HOSTFILE_KEY.into(),
                        path: HOSTFILE_KEY.into(),
                        mode: Some(0o444),
                    }]),
                    default_mode: Some(0o444),
                    optional: None,
                }),
                ..Default::default()
            },
            Volume {
                name: "shm".into(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: Some("Memory".into()),
                    // As Docker's shm_size: a quarter of the memory (it counts against it).
                    size_limit: Some(Quantity(format!(
                        "{}Mi",
                        (self.sizes.memory_mib / 4).max(1)
                    ))),
                }),
                ..Default::default()
            },
        ];
        let mut mounts: Vec<VolumeMount> = SSH_FILES
            .iter()
            .map(|(file, _)| VolumeMount {
                name: "ssh".into(),
                mount_path: format!("{SSH_DIR}/{file}"),
                sub_path: Some((*file).to_owned()),
                read_only: Some(true),
                ..Default::default()
            })
            .collect();
        mounts.push(VolumeMount {
            name: "hostfile".into(),
            mount_path: HOSTFILE_PATH.into(),
            sub_path: Some(HOSTFILE_KEY.into()),
            read_only: Some(true),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "shm".into(),
            mount_path: "/dev/shm".into(),
            ..Default::default()
        });
        if !self.spec.secret_files.is_empty() {
            volumes.push(Volume {
                name: "secret-files".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    items: Some(
                        self.spec
                            .secret_files
                            .iter()
                            .map(|file| KeyToPath {
                                key: secret_file_key(&file.name),
                                path: file.name.clone(),
                                mode: Some(0o400),
                            })
                            .collect(),
                    ),
                    default_mode: Some(0o400),
                    optional: None,
                }),
                ..Default::default()
            });
            mounts.push(VolumeMount {
                name: "secret-files".into(),
                mount_path: SECRETS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
        }
        volumes.extend(self.pool_volumes.iter().cloned());
        mounts.extend(self.folder_mounts.iter().cloned());
        (volumes, mounts)
    }
}
