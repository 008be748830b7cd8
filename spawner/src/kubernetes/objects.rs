//! The Kubernetes objects of one cluster, built from a spawn spec: pure functions, no API
//! calls (the only outside inputs are fresh SSH keys and the existence checks of the spawn's
//! read-only folders, as in the `docker` backend).
//!
//! A cluster of N nodes is, in [`KubernetesConfig::namespace`]:
//!
//! | object | name | what it holds |
//! | --- | --- | --- |
//! | ConfigMap (the *owner*) | `{base}` | `hostfile`: the MPI hostfile; `ca-certificates.crt`: the operator's CA bundle, if any; every other object is its dependent (`ownerReferences`, [`set_owner`]), so deleting it removes the cluster |
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
//! | `/etc/xiji/ca-certificates.crt` | the owner ConfigMap's `ca-certificates.crt` (`subPath`), with [`KubernetesConfig::ca_bundle`]; the tools' variables (`PIP_CERT`, `REQUESTS_CA_BUNDLE`, …) point at it | 0444 |
//! | `/home/jovyan/work` | the work directory through [`KubernetesConfig::volumes`] | read-write |
//! | `/home/jovyan/{relative}` | each [`SpawnSpec::mounts`] entry through the same mappings | read-only |
//! | `/dev/shm` | a memory `emptyDir` of a quarter of the memory (as Docker's `shm_size`), for MPI | |
//!
//! Why the SSH files are single-file (`subPath`) mounts: sshd's `StrictModes` refuses an
//! `authorized_keys` in a group- or world-writable directory, and a Secret volume's own
//! directory is one (a tmpfs the kubelet makes world-writable); mounted file by file they sit in
//! the image's `/etc/xiji/ssh` (jovyan, 0700). Root owns them and jovyan reads them through the
//! group (`fsGroup`): sshd and ssh check a key's mode only when the user owns it.

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
use crate::docker::{
    hostfile, node_env, CA_BUNDLE_ENV, CA_BUNDLE_PATH, HOSTFILE_PATH, SSH_PORT, WORK_MOUNT,
};
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
/// The owner ConfigMap's key holding the CA bundle ([`KubernetesConfig::ca_bundle`]).
pub(super) const CA_BUNDLE_KEY: &str = "ca-certificates.crt";
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
    /// (lossy: lower-case ASCII letters, digits and `-`, shortened); the id makes them unique.
    /// A name with other characters keeps its ASCII ones and gains 6 hex digits of its
    /// SHA-256.
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
        // A name with anything but ASCII keeps its ASCII and gains a short hash of itself, so
        // that people can tell `王小明` from `李四`.
        let name_part = |text: &str, max: usize| {
            if text.is_ascii() {
                let part = dns_part(text, max);
                if !part.is_empty() {
                    return part;
                }
            }
            let hash = short_hash(text, 6);
            let part = dns_part(text, max.saturating_sub(hash.len() + 1));
            if part.is_empty() {
                format!("u{hash}")
            } else {
                format!("{part}-{hash}")
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
    let ca_bundle = match &cfg.ca_bundle {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| {
                SpawnerError::io(format!("reading the CA bundle {}", path.display()), e)
            })?;
            Some(String::from_utf8(bytes).map_err(|_| {
                SpawnerError::Config(format!("the CA bundle {} is not PEM text", path.display()))
            })?)
        }
        None => None,
    };

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

    let mut owner_data =
        BTreeMap::from([(HOSTFILE_KEY.to_owned(), hostfile(nodes, Some(sizes.cpus())))]);
    if let Some(bundle) = ca_bundle {
        owner_data.insert(CA_BUNDLE_KEY.to_owned(), bundle);
    }
    let owner = ConfigMap {
        metadata: metadata(cfg, names, names.owner(), None),
        data: Some(owner_data),
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
    if cfg.ca_bundle.is_some() {
        for key in CA_BUNDLE_ENV {
            env.insert(key.into(), CA_BUNDLE_PATH.into());
        }
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
        if self.cfg.ca_bundle.is_some() {
            volumes.push(Volume {
                name: "ca-bundle".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: self.names.owner(),
                    items: Some(vec![KeyToPath {
                        key: CA_BUNDLE_KEY.into(),
                        path: CA_BUNDLE_KEY.into(),
                        mode: Some(0o444),
                    }]),
                    default_mode: Some(0o444),
                    optional: None,
                }),
                ..Default::default()
            });
            // In the image this path is a link to the system bundle; the runtime resolves it
            // inside the container and mounts over its target, so tools that ignore the
            // variables trust the bundle too.
            mounts.push(VolumeMount {
                name: "ca-bundle".into(),
                mount_path: CA_BUNDLE_PATH.into(),
                sub_path: Some(CA_BUNDLE_KEY.into()),
                read_only: Some(true),
                ..Default::default()
            });
        }
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

#[cfg(test)]
mod schema_tests;

#[cfg(test)]
pub(super) mod tests {
    use std::path::{Path, PathBuf};

    use super::super::{ApiAccess, Toleration, VolumeMapping, VolumeSource};
    use super::*;
    use crate::{ClusterResources, Mount, SecretFile};

    pub(super) const TOKEN: &str = "token-0f9e8d7c6b5a";

    /// A configuration whose storage is three folders of `root`: `claim/` (a PVC), `nfs/` (inline
    /// NFS) and `host/` (a hostPath), each made.
    pub(super) fn config(root: &Path) -> KubernetesConfig {
        let mut cfg = KubernetesConfig::new(
            ApiAccess::Url("http://127.0.0.1:1".into()),
            "registry.campus:5000/xiji/base-notebook:1",
            root.join("claim/homes"),
        );
        cfg.namespace = "xiji-test".into();
        cfg.hub_connect_url = Some("http://xiji-hub.xiji-test.svc:8081".into());
        cfg.environment = BTreeMap::from([("LANG".to_owned(), "C.UTF-8".to_owned())]);
        let sources = [
            (
                "claim",
                VolumeSource::Claim {
                    claim_name: "pool-gluster1".into(),
                },
            ),
            (
                "nfs",
                VolumeSource::Nfs {
                    server: "nfs.campus".into(),
                    path: "/export/xiji".into(),
                },
            ),
            (
                "host",
                VolumeSource::HostPath {
                    path: "/mnt/xiji".into(),
                },
            ),
        ];
        for (folder, source) in sources {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            cfg.volumes.push(VolumeMapping {
                host_path: root.join(folder),
                source,
            });
        }
        cfg
    }

    /// A spec of `nodes` nodes of alice's default server, her work directory on the claim.
    pub(super) fn spec(root: &Path, nodes: u32) -> SpawnSpec {
        let env: BTreeMap<String, String> = [
            ("JUPYTERHUB_API_TOKEN", TOKEN),
            ("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                "http://127.0.0.1:8081/hub/api/users/alice/activity",
            ),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice"),
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/"),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback",
            ),
            ("JUPYTERHUB_USER", "alice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let work = root.join("claim/homes/alice");
        std::fs::create_dir_all(&work).unwrap();
        SpawnSpec {
            user: "alice".into(),
            server_name: String::new(),
            service_prefix: "/user/alice/".into(),
            env,
            resources: ClusterResources {
                image: None,
                nodes,
                cpus: Some(1.5),
                memory_bytes: Some(3 * 1024 * MIB),
                gpus: 0,
                storage_bytes: None,
                pool: None,
            },
            work_dir: Some(work),
            secret_files: Vec::new(),
            mounts: Vec::new(),
        }
    }

    /// A dataset folder made under `root/{under}` and mounted at `relative`.
    pub(super) fn dataset(root: &Path, under: &str, relative: &str) -> Mount {
        let source = root.join(under).join("datasets").join(relative);
        std::fs::create_dir_all(&source).unwrap();
        Mount {
            source,
            relative: relative.into(),
        }
    }

    fn names() -> ClusterNames {
        ClusterNames::new("alice", "", "0123456789ab")
    }

    fn container(pod: &Pod) -> &Container {
        &pod.spec.as_ref().unwrap().containers[0]
    }

    fn env_of(pod: &Pod) -> BTreeMap<String, EnvVar> {
        container(pod)
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn plain(env: &BTreeMap<String, EnvVar>, name: &str) -> String {
        env[name].value.clone().unwrap_or_else(|| panic!("{name}"))
    }

    #[test]
    fn every_node_is_guaranteed_exactly_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.gpu_resource = "amd.com/gpu".into();
        let mut spec = spec(dir.path(), 3);
        spec.resources.cpus = Some(0.25);
        spec.resources.gpus = 2;
        spec.resources.storage_bytes = Some(10 * 1024 * MIB);
        let objects = build(&cfg, &spec, &names(), Gang::None).unwrap();
        assert_eq!(objects.pods.len(), 3);
        for pod in &objects.pods {
            let resources = container(pod).resources.clone().unwrap();
            let limits = resources.limits.unwrap();
            assert_eq!(resources.requests.unwrap(), limits, "Guaranteed QoS");
            let get = |k: &str| limits.get(k).map(|q| q.0.as_str());
            assert_eq!(get("cpu"), Some("250m"));
            assert_eq!(get("memory"), Some("3072Mi"));
            assert_eq!(get("amd.com/gpu"), Some("2"));
            assert_eq!(get("nvidia.com/gpu"), None);
            assert_eq!(get("ephemeral-storage"), Some("10240Mi"));
            let tolerations = pod.spec.as_ref().unwrap().tolerations.clone().unwrap();
            assert!(tolerations
                .iter()
                .any(|t| t.key.as_deref() == Some("amd.com/gpu")
                    && t.effect.as_deref() == Some("NoSchedule")));
        }
        // No GPUs: no GPU resource, no toleration; whole cores for the hostfile's slots.
        let mut spec = self::spec(dir.path(), 2);
        spec.resources.cpus = Some(2.5);
        let objects = build(&config(dir.path()), &spec, &names(), Gang::None).unwrap();
        let limits = container(&objects.pods[0])
            .resources
            .clone()
            .unwrap()
            .limits
            .unwrap();
        assert_eq!(limits.len(), 2, "{limits:?}");
        assert_eq!(limits["cpu"].0, "2500m");
        assert!(objects.pods[0].spec.as_ref().unwrap().tolerations.is_none());
        assert_eq!(
            objects.owner.data.as_ref().unwrap()[HOSTFILE_KEY],
            "node-0 slots=2\nnode-1 slots=2\n"
        );
    }

    #[test]
    fn node_k_gets_its_own_jupyterhub_variables_and_reaches_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let objects = build(
            &config(dir.path()),
            &spec(dir.path(), 3),
            &names(),
            Gang::None,
        )
        .unwrap();
        let node0 = env_of(&objects.pods[0]);
        let node2 = env_of(&objects.pods[2]);
        assert_eq!(plain(&node0, "JUPYTERHUB_SERVICE_PREFIX"), "/user/alice/");
        assert_eq!(
            plain(&node2, "JUPYTERHUB_SERVICE_PREFIX"),
            "/user/alice/node-2/"
        );
        assert_eq!(
            plain(&node2, "JUPYTERHUB_CLIENT_ID"),
            "jupyterhub-user-alice-node-2"
        );
        assert_eq!(
            plain(&node2, "JUPYTERHUB_OAUTH_CALLBACK_URL"),
            "/user/alice/node-2/oauth_callback"
        );
        assert_eq!(
            plain(&node2, "JUPYTERHUB_SERVICE_URL"),
            "http://0.0.0.0:8888/user/alice/node-2/"
        );
        assert_eq!(
            plain(&node2, "JUPYTERHUB_API_URL"),
            "http://xiji-hub.xiji-test.svc:8081/hub/api"
        );
        assert_eq!(
            plain(&node2, "JUPYTERHUB_ACTIVITY_URL"),
            "http://xiji-hub.xiji-test.svc:8081/hub/api/users/alice/activity"
        );
        assert_eq!(plain(&node2, "XIJI_NODE"), "node-2");
        assert_eq!(plain(&node2, "XIJI_NODES"), "3");
        assert_eq!(plain(&node2, "XIJI_HOSTFILE"), "/etc/xiji/hostfile");
        assert_eq!(plain(&node2, "LANG"), "C.UTF-8");
        // Each node's readiness probe asks what the hub's check asks.
        let probe = container(&objects.pods[2])
            .readiness_probe
            .clone()
            .unwrap()
            .http_get
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some("/user/alice/node-2/api"));
        assert_eq!(probe.port, IntOrString::String("http".into()));
        // Nodes find each other as node-k through the Service's subdomain.
        let pod_spec = objects.pods[2].spec.as_ref().unwrap();
        assert_eq!(pod_spec.hostname.as_deref(), Some("node-2"));
        assert_eq!(pod_spec.subdomain.as_deref(), Some(names().base.as_str()));
        assert_eq!(
            pod_spec.dns_config.as_ref().unwrap().searches,
            Some(vec![format!(
                "{}.xiji-test.svc.cluster.local",
                names().service()
            )])
        );
        assert_eq!(
            objects.pods[2].metadata.labels.as_ref().unwrap()[LABEL_NODE],
            "node-2"
        );
        // The image's entry point stays; the command is its argument.
        let c = container(&objects.pods[2]);
        assert_eq!(c.command, None);
        assert_eq!(
            c.args.clone().unwrap(),
            ["jupyterhub-singleuser", "--ip=0.0.0.0", "--port=8888"]
        );
        assert_eq!(
            c.image.as_deref(),
            Some("registry.campus:5000/xiji/base-notebook:1")
        );
    }

    #[test]
    fn the_api_token_reaches_the_pods_only_through_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.environment
            .insert("PIP_INDEX_PASSWORD".into(), "hunter2".into());
        let mut spec = spec(dir.path(), 2);
        spec.secret_files = vec![SecretFile::new("vnc-password", "pw-5678").unwrap()];
        let objects = build(&cfg, &spec, &names(), Gang::None).unwrap();
        for pod in &objects.pods {
            let json = serde_json::to_string(pod).unwrap();
            for secret in [TOKEN, "hunter2", "pw-5678", "PRIVATE KEY"] {
                assert!(!json.contains(secret), "{secret} in the pod spec");
            }
            let env = env_of(pod);
            for (name, key) in [
                ("JUPYTERHUB_API_TOKEN", "env.JUPYTERHUB_API_TOKEN"),
                ("JPY_API_TOKEN", "env.JPY_API_TOKEN"),
                ("PIP_INDEX_PASSWORD", "env.PIP_INDEX_PASSWORD"),
            ] {
                let var = &env[name];
                assert_eq!(var.value, None);
                let reference = var.value_from.clone().unwrap().secret_key_ref.unwrap();
                assert_eq!(reference.name, names().secret());
                assert_eq!(reference.key, key);
            }
        }
        let data = objects.secret.data.as_ref().unwrap();
        assert_eq!(data["env.JUPYTERHUB_API_TOKEN"].0, TOKEN.as_bytes());
        assert_eq!(data["env.PIP_INDEX_PASSWORD"].0, b"hunter2");
        assert_eq!(data["file.vnc-password"].0, b"pw-5678");
        assert!(String::from_utf8_lossy(&data["id_ed25519"].0).contains("OPENSSH PRIVATE KEY"));
        assert_eq!(data["id_ed25519.pub"], data["authorized_keys"]);
        assert!(String::from_utf8_lossy(&data["ssh_host_ed25519_key.pub"].0)
            .starts_with("ssh-ed25519 "));
        assert_eq!(objects.secret.type_.as_deref(), Some("Opaque"));
        // The secret files are jovyan's only, at the image's path.
        let pod_spec = objects.pods[0].spec.as_ref().unwrap();
        let volume = pod_spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "secret-files")
            .unwrap();
        let items = volume.secret.as_ref().unwrap().items.clone().unwrap();
        assert_eq!(items[0].key, "file.vnc-password");
        assert_eq!(items[0].path, "vnc-password");
        assert_eq!(items[0].mode, Some(0o400));
        assert_eq!(
            pod_spec.security_context.as_ref().unwrap().fs_group,
            Some(1000)
        );
        let mounts = container(&objects.pods[0]).volume_mounts.clone().unwrap();
        let at = |path: &str| mounts.iter().find(|m| m.mount_path == path).cloned();
        assert_eq!(at("/etc/xiji/secrets").unwrap().name, "secret-files");
        let authorized = at("/etc/xiji/ssh/authorized_keys").unwrap();
        assert_eq!(authorized.sub_path.as_deref(), Some("authorized_keys"));
        assert_eq!(
            at("/etc/xiji/hostfile").unwrap().sub_path.as_deref(),
            Some("hostfile")
        );
        assert_eq!(at("/home/jovyan/work").unwrap().read_only, None);
        // A fresh pair of keys at every build.
        let again = build(&cfg, &spec, &names(), Gang::None).unwrap();
        assert_ne!(
            again.secret.data.as_ref().unwrap()["id_ed25519"],
            data["id_ed25519"]
        );
    }

    #[test]
    fn folders_become_volumes_and_a_folder_outside_every_mapping_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let cfg = config(root);
        let mut spec = spec(root, 1);
        spec.mounts = vec![
            dataset(root, "claim", "datasets/alice/mnist"),
            dataset(root, "nfs", "datasets/bob/cifar"),
            dataset(root, "host", "datasets/carol/imagenet"),
        ];
        let objects = build(&cfg, &spec, &names(), Gang::None).unwrap();
        let pod_spec = objects.pods[0].spec.as_ref().unwrap();
        let volumes = pod_spec.volumes.clone().unwrap();
        let pools: Vec<&Volume> = volumes
            .iter()
            .filter(|v| v.name.starts_with("pool-"))
            .collect();
        assert_eq!(pools.len(), 3, "one volume per source");
        let mounts = container(&objects.pods[0]).volume_mounts.clone().unwrap();
        let at = |path: &str| {
            mounts
                .iter()
                .find(|m| m.mount_path == path)
                .cloned()
                .unwrap()
        };
        let work = at("/home/jovyan/work");
        assert_eq!(
            (work.name.as_str(), work.sub_path.as_deref()),
            ("pool-0", Some("homes/alice"))
        );
        let mnist = at("/home/jovyan/datasets/alice/mnist");
        assert_eq!(mnist.name, "pool-0");
        assert_eq!(
            mnist.sub_path.as_deref(),
            Some("datasets/datasets/alice/mnist")
        );
        assert_eq!(mnist.read_only, Some(true));
        assert_eq!(at("/home/jovyan/datasets/bob/cifar").name, "pool-1");
        assert_eq!(
            at("/home/jovyan/datasets/carol/imagenet").read_only,
            Some(true)
        );

        let outside = tempfile::tempdir().unwrap();
        let mut spec = self::spec(root, 1);
        spec.mounts = vec![Mount {
            source: outside.path().to_path_buf(),
            relative: "datasets/eve/x".into(),
        }];
        match build(&cfg, &spec, &names(), Gang::None) {
            Err(SpawnerError::Rejected(message)) => {
                assert!(
                    message.contains(&outside.path().display().to_string()),
                    "{message}"
                );
                assert!(
                    message.contains("[[spawner.kubernetes.volumes]]"),
                    "{message}"
                );
                assert!(message.contains("datasets/eve/x"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let mut spec = self::spec(root, 1);
        spec.work_dir = Some(PathBuf::from("/home/alice"));
        assert!(matches!(
            build(&cfg, &spec, &names(), Gang::None),
            Err(SpawnerError::Rejected(m)) if m.contains("the work directory") && m.contains("/home/alice")
        ));
    }

    #[test]
    fn pods_go_to_the_requested_pool_the_default_pool_or_any_managed_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        let mut spec = spec(dir.path(), 1);
        let placement = |cfg: &KubernetesConfig, spec: &SpawnSpec| {
            let pod = build(cfg, spec, &names(), Gang::None)
                .unwrap()
                .pods
                .remove(0);
            let pod_spec = pod.spec.unwrap();
            (pod_spec.node_selector, pod_spec.affinity)
        };
        let (selector, affinity) = placement(&cfg, &spec);
        assert_eq!(selector, None);
        let term = &affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms[0];
        let requirement = &term.match_expressions.as_ref().unwrap()[0];
        assert_eq!(requirement.key, "xiji.org/pool");
        assert_eq!(requirement.operator, "Exists");
        cfg.default_pool = Some("cpu".into());
        let (selector, affinity) = placement(&cfg, &spec);
        assert_eq!(selector.unwrap()["xiji.org/pool"], "cpu");
        assert!(affinity.is_none());
        spec.resources.pool = Some("a100".into());
        let (selector, _) = placement(&cfg, &spec);
        assert_eq!(selector.unwrap()["xiji.org/pool"], "a100");
        cfg.tolerations.push(Toleration {
            key: "dedicated".into(),
            operator: "Equal".into(),
            value: Some("xiji".into()),
            effect: Some("NoSchedule".into()),
        });
        let pod = build(&cfg, &spec, &names(), Gang::None)
            .unwrap()
            .pods
            .remove(0);
        let tolerations = pod.spec.unwrap().tolerations.unwrap();
        assert_eq!(tolerations[0].value.as_deref(), Some("xiji"));
    }

    #[test]
    fn sudo_off_drops_every_capability_and_sudo_on_keeps_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        let spec = spec(dir.path(), 1);
        let security = |cfg: &KubernetesConfig| {
            let objects = build(cfg, &spec, &names(), Gang::None).unwrap();
            let pod_spec = objects.pods[0].spec.clone().unwrap();
            let pod = pod_spec.security_context.unwrap();
            assert_eq!(pod.run_as_user, Some(1000));
            assert_eq!(pod.run_as_group, Some(1000));
            assert_eq!(pod.seccomp_profile.unwrap().type_, "RuntimeDefault");
            assert_eq!(pod_spec.restart_policy.as_deref(), Some("Never"));
            assert_eq!(pod_spec.automount_service_account_token, Some(false));
            assert_eq!(pod_spec.enable_service_links, Some(false));
            pod_spec.containers[0].security_context.clone().unwrap()
        };
        let on = security(&cfg);
        assert_eq!(on.allow_privilege_escalation, None);
        assert_eq!(on.capabilities, None);
        cfg.sudo = false;
        let off = security(&cfg);
        assert_eq!(off.allow_privilege_escalation, Some(false));
        assert_eq!(off.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn volcano_gangs_the_pods_in_one_pod_group_of_their_sum() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.gpu_resource = "nvidia.com/gpu".into();
        let mut spec = spec(dir.path(), 4);
        spec.resources.gpus = 1;
        let none = build(&cfg, &spec, &names(), Gang::None).unwrap();
        assert!(none.pod_group.is_none());
        assert_eq!(none.pods[0].spec.as_ref().unwrap().scheduler_name, None);
        let objects = build(&cfg, &spec, &names(), Gang::Volcano).unwrap();
        let group = objects.pod_group.as_ref().unwrap();
        assert_eq!(group["apiVersion"], "scheduling.volcano.sh/v1beta1");
        assert_eq!(group["metadata"]["name"], names().pod_group());
        assert_eq!(group["metadata"]["namespace"], "xiji-test");
        assert_eq!(group["spec"]["minMember"], 4);
        assert_eq!(group["spec"]["minResources"]["cpu"], "6000m");
        assert_eq!(group["spec"]["minResources"]["memory"], "12288Mi");
        assert_eq!(group["spec"]["minResources"]["nvidia.com/gpu"], "4");
        for pod in &objects.pods {
            assert_eq!(
                pod.spec.as_ref().unwrap().scheduler_name.as_deref(),
                Some("volcano")
            );
            assert_eq!(
                pod.metadata.annotations.as_ref().unwrap()["scheduling.k8s.io/group-name"],
                names().pod_group()
            );
        }
    }

    #[test]
    fn every_object_but_the_owner_depends_on_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mut objects = build(
            &config(dir.path()),
            &spec(dir.path(), 2),
            &names(),
            Gang::Volcano,
        )
        .unwrap();
        set_owner(&mut objects, "6b1f0c1e-3c51-4f4e-9b7a-2b4f5d6e7f80");
        assert!(objects.owner.metadata.owner_references.is_none());
        let mut metas = vec![
            &objects.secret.metadata,
            &objects.service.metadata,
            &objects.network_policy.metadata,
        ];
        metas.extend(objects.pods.iter().map(|p| &p.metadata));
        for meta in metas {
            let reference = &meta.owner_references.as_ref().unwrap()[0];
            assert_eq!(reference.kind, "ConfigMap");
            assert_eq!(reference.name, names().owner());
            assert_eq!(reference.uid, "6b1f0c1e-3c51-4f4e-9b7a-2b4f5d6e7f80");
            assert_eq!(reference.controller, Some(true));
            assert_eq!(reference.block_owner_deletion, Some(true));
        }
        let group = objects.pod_group.as_ref().unwrap();
        assert_eq!(
            group["metadata"]["ownerReferences"][0]["uid"],
            "6b1f0c1e-3c51-4f4e-9b7a-2b4f5d6e7f80"
        );
        // Labels and annotations of every object.
        let labels = objects.service.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_HUB], "xiji");
        assert_eq!(labels[LABEL_USER], "alice");
        assert_eq!(labels[LABEL_SERVER], "");
        assert_eq!(labels[LABEL_CLUSTER], "0123456789ab");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "xiji");
        assert_eq!(labels["app.kubernetes.io/component"], "singleuser");
        assert_eq!(
            objects.service.metadata.namespace.as_deref(),
            Some("xiji-test")
        );
    }

    #[test]
    fn the_service_is_headless_and_the_network_policy_lets_in_the_cluster_and_the_hub() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let objects = build(&cfg, &spec(dir.path(), 2), &names(), Gang::None).unwrap();
        let service = objects.service.spec.unwrap();
        assert_eq!(service.cluster_ip.as_deref(), Some("None"));
        assert_eq!(service.publish_not_ready_addresses, Some(true));
        assert_eq!(
            service.selector.unwrap(),
            BTreeMap::from([(LABEL_CLUSTER.to_owned(), "0123456789ab".to_owned())])
        );
        let ports: Vec<(Option<String>, i32)> = service
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.port))
            .collect();
        assert_eq!(
            ports,
            [(Some("http".into()), 8888), (Some("ssh".into()), 2222)]
        );
        let policy = objects.network_policy.spec.unwrap();
        assert_eq!(policy.policy_types, Some(vec!["Ingress".to_owned()]));
        let from = policy.ingress.unwrap()[0].from.clone().unwrap();
        let selectors: Vec<BTreeMap<String, String>> = from
            .into_iter()
            .map(|peer| peer.pod_selector.unwrap().match_labels.unwrap())
            .collect();
        assert_eq!(selectors[0][LABEL_CLUSTER], "0123456789ab");
        assert_eq!(selectors[1], cfg.hub_pod_labels);
        // No hub labels: never an empty selector (every pod of the namespace).
        let mut cfg = cfg;
        cfg.hub_pod_labels.clear();
        let objects = build(&cfg, &spec(dir.path(), 1), &names(), Gang::None).unwrap();
        let from = objects.network_policy.spec.unwrap().ingress.unwrap()[0]
            .from
            .clone()
            .unwrap();
        assert_eq!(from.len(), 1);
    }

    fn valid_label_value(v: &str) -> bool {
        v.is_empty()
            || (v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                && v.starts_with(|c: char| c.is_ascii_alphanumeric())
                && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
    }

    #[test]
    fn label_values_are_valid_stable_and_distinct_for_any_name() {
        let long = "a".repeat(200);
        let names = [
            "alice",
            "",
            "Bob.Smith_2",
            "bob@example.org",
            "王小明",
            "-dash-",
            "名字-with-ascii",
            long.as_str(),
            "x--0123456789abcdef",
            "a b",
            "a-b",
            "a_b",
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let value = label_value(name);
            assert!(valid_label_value(&value), "{name:?} → {value:?}");
            assert_eq!(value, label_value(name), "stable");
            assert!(seen.insert(value.clone()), "{name:?} → {value:?} collides");
        }
        assert_eq!(label_value("alice"), "alice");
        assert_eq!(label_value(""), "");
        assert!(label_value("bob@example.org").starts_with("bob-example.org--"));
        // A name that looks escaped is escaped again, so no name takes another's value.
        let escaped = label_value("a b");
        assert_ne!(label_value(&escaped), escaped);
    }

    #[test]
    fn names_are_dns_labels_of_at_most_63_characters() {
        let long = "Ümlaut-".repeat(30);
        let cases = [
            ("alice", "", "0123456789ab"),
            ("bob@example.org", "My GPU Server", "0123456789ab"),
            ("王小明", "实验", "0123456789ab"),
            (long.as_str(), long.as_str(), "0123456789ab"),
            ("alice", "", "Not_A-DNS_id_and_very_long_indeed_0123456789"),
        ];
        let dns_1035 = |s: &str| {
            !s.is_empty()
                && s.len() <= 63
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        };
        let mut bases = std::collections::HashSet::new();
        for (user, server, id) in cases {
            let names = ClusterNames::new(user, server, id);
            assert!(names.base.len() <= BASE_MAX, "{}", names.base);
            for name in [
                names.base.clone(),
                names.pod(0),
                names.pod(15),
                names.pod(999),
                names.service(),
                names.owner(),
                names.secret(),
                names.network_policy(),
                names.pod_group(),
            ] {
                assert!(dns_1035(&name), "{user:?}/{server:?}: {name:?}");
            }
            assert_eq!(names, ClusterNames::new(user, server, id), "stable");
            assert!(bases.insert(names.base));
        }
        assert_eq!(
            ClusterNames::new("alice", "", "0123456789ab").base,
            "xiji-alice-0123456789ab"
        );
        assert_eq!(
            ClusterNames::new("bob@example.org", "gpu", "0123456789ab").pod(1),
            "xiji-bob-example-org-gpu-0123456789ab-node-1"
        );
        let unicode = ClusterNames::new("王小明@example.org", "", "0123456789ab").base;
        assert!(unicode.starts_with("xiji-example-org-"), "{unicode}");
        assert_ne!(
            unicode,
            ClusterNames::new("李四@example.org", "", "0123456789ab").base
        );
        // Unicode names get a hash, so two such users' clusters are told apart by people too.
        assert_ne!(
            ClusterNames::new("王小明", "", "1").base,
            ClusterNames::new("李四", "", "1").base
        );
    }

    #[test]
    fn the_operators_ca_bundle_reaches_every_node_with_the_tools_variables() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        let spec = spec(dir.path(), 2);
        let without = build(&cfg, &spec, &names(), Gang::None).unwrap();
        assert!(!without
            .owner
            .data
            .as_ref()
            .unwrap()
            .contains_key(CA_BUNDLE_KEY));
        assert!(!env_of(&without.pods[0]).contains_key("PIP_CERT"));
        let bundle = dir.path().join("campus-ca.pem");
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        cfg.ca_bundle = Some(bundle);
        let objects = build(&cfg, &spec, &names(), Gang::None).unwrap();
        assert!(objects.owner.data.as_ref().unwrap()[CA_BUNDLE_KEY].starts_with("-----BEGIN"));
        for pod in &objects.pods {
            let env = env_of(pod);
            for key in CA_BUNDLE_ENV {
                assert_eq!(plain(&env, key), "/etc/xiji/ca-certificates.crt");
            }
            let mounts = container(pod).volume_mounts.clone().unwrap();
            let mount = mounts
                .iter()
                .find(|m| m.mount_path == "/etc/xiji/ca-certificates.crt")
                .unwrap();
            assert_eq!(mount.sub_path.as_deref(), Some(CA_BUNDLE_KEY));
        }
        cfg.ca_bundle = Some(dir.path().join("missing.pem"));
        assert!(matches!(
            build(&cfg, &spec, &names(), Gang::None),
            Err(SpawnerError::Io { context, .. }) if context.contains("missing.pem")
        ));
    }

    #[test]
    fn bad_requests_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        let spec0 = spec(dir.path(), 0);
        assert!(matches!(
            build(&cfg, &spec0, &names(), Gang::None),
            Err(SpawnerError::InvalidSpec(_))
        ));
        cfg.environment.insert("BAD NAME".into(), "x".into());
        assert!(matches!(
            build(&cfg, &spec(dir.path(), 1), &names(), Gang::None),
            Err(SpawnerError::Config(m)) if m.contains("BAD NAME")
        ));
    }
}
