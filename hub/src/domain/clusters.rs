//! Virtual clusters: what the hub adds around a multi-node backend. A cluster is a (default or
//! named) server whose backend started several nodes; node-0 has the server's URL prefix, node-k
//! has `{prefix}node-k/`, its own proxy route and its own OAuth client (same secret as the
//! server's token, so each node's single-user server can log users in through the hub).
//!
//! Spawn requests name an image (`image`: its id, display name or reference) of the library or
//! of the server owner's own saved images; the hub turns it into the reference the backend runs
//! and refuses images that are not startable by that user (another user's private image is
//! "not found", as an unknown one), and GPU images without GPUs, before the backend checks the
//! sizes.
//!
//! `datasets` (`["owner/name", …]`) names datasets to mount read-only on every node; they are
//! read here with the other options and turned into mounts by the start
//! (`domain::datasets::mounts_for`), which refuses those the server's owner may not read.

use serde_json::{Map, Value};
use spawner::{ClusterRequest, ClusterResources, NodeInfo, Spawner, SpawnerError};

use super::images;
use super::{HubError, HubResult};
use crate::db::{ImageFilter, ImageRow, Visibility};
use crate::domain::Services;

/// Named servers may not be called like nodes: their prefix would be a node's of the default
/// server.
pub fn check_server_name_is_not_a_node(name: &str) -> HubResult<()> {
    let is_node = name
        .strip_prefix("node-")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    if is_node {
        return Err(HubError::BadRequest(format!(
            "Server name {name:?} is reserved for the nodes of a cluster; choose another name"
        )));
    }
    Ok(())
}

/// A spawn request's options as they arrived: kept as given (the API shows them as the
/// server's `user_options`) and read once into a typed request.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    given: Map<String, Value>,
    request: ClusterRequest,
    datasets: Vec<String>,
}

impl SpawnOptions {
    /// Reads `user_options` (a JSON object; `null` is `{}`) for `spawner`: a 400 that names the
    /// value and how to write it when it cannot be read. A backend that runs no images and
    /// takes no sizes ignores the options, so they are kept but not read.
    pub fn read(spawner: &dyn Spawner, user_options: Value) -> HubResult<Self> {
        let mut given = match user_options {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => {
                return Err(HubError::BadRequest(
                    "user_options must be a JSON object".into(),
                ))
            }
        };
        let takes_options =
            spawner.capabilities().runs_images || spawner.resource_limits().is_some();
        let request = if takes_options {
            ClusterRequest::from_user_options(&Value::Object(given.clone())).map_err(rejected)?
        } else {
            ClusterRequest::default()
        };
        // Every backend mounts datasets, so they are read whatever the backend.
        let datasets = read_datasets(given.get(DATASETS_KEY))?;
        if given.contains_key(DATASETS_KEY) {
            let list = datasets.iter().cloned().map(Value::String).collect();
            given.insert(DATASETS_KEY.into(), Value::Array(list));
        }
        Ok(Self {
            given,
            request,
            datasets,
        })
    }

    /// The datasets asked for, as `owner/name`, each once, in the order given.
    pub fn datasets(&self) -> &[String] {
        &self.datasets
    }

    /// No options at all (`{}`): a start that reuses the previous start's.
    pub fn is_empty(&self) -> bool {
        self.given.is_empty()
    }
}

/// The `user_options` key of the datasets to mount.
pub const DATASETS_KEY: &str = "datasets";

/// Reads `datasets`: a list of `"owner/name"` strings (a single string is a list of one;
/// absent or `null`, none), each once. A 400 names the value that is not of that form.
fn read_datasets(value: Option<&Value>) -> HubResult<Vec<String>> {
    let how = "write \"datasets\" as a list of \"owner/name\" strings, e.g. [\"alice/mnist\"]";
    let items: Vec<&Value> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one @ Value::String(_)) => vec![one],
        Some(other) => {
            return Err(HubError::BadRequest(format!(
                "\"datasets\" cannot be {other}: {how}"
            )));
        }
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(text) = item else {
            return Err(HubError::BadRequest(format!(
                "The dataset {item} is not a string: {how}"
            )));
        };
        let text = text.trim();
        let plain = text.split_once('/').is_some_and(|(owner, name)| {
            !owner.is_empty() && !name.is_empty() && !name.contains('/')
        });
        if !plain {
            return Err(HubError::BadRequest(format!(
                "The dataset {text:?} is not of the form owner/name: {how}"
            )));
        }
        if !out.iter().any(|d| d == text) {
            out.push(text.to_owned());
        }
    }
    Ok(out)
}

/// A spawn made concrete: what the backend starts, the image it starts from, and the options to
/// store (as given, with the image's reference, library id and name).
#[derive(Debug, Clone)]
pub struct PreparedSpawn {
    /// The checked resources, the image as a reference.
    pub resources: ClusterResources,
    /// The image record, when the request named one.
    pub image: Option<ImageRow>,
    /// The server's `user_options` to store.
    pub user_options: Value,
    /// The datasets to mount, as `owner/name` (not yet checked against the owner's rights).
    pub datasets: Vec<String>,
}

/// Checks a spawn request of `owner_id`'s server and makes it concrete for the backend: the
/// image (library or the owner's own) becomes its reference, kept with its id for display; the
/// backend then checks the sizes.
pub async fn prepare(
    hub: &Services,
    owner_id: i64,
    options: SpawnOptions,
) -> HubResult<PreparedSpawn> {
    let SpawnOptions {
        mut given,
        mut request,
        datasets,
    } = options;
    let image = match (&request.image, hub.spawner.capabilities().runs_images) {
        (Some(wanted), true) => Some(resolve_image(hub, owner_id, wanted).await?),
        _ => None,
    };
    if let Some(image) = &image {
        let reference = images::reference(image);
        request.image = Some(reference.clone());
        given.insert("image".into(), Value::String(reference));
        given.insert("image_id".into(), Value::from(image.id));
        given.insert("image_name".into(), Value::String(image.name.clone()));
    }
    if let Some(pool) = &request.pool {
        if hub.store.compute_pool(pool).await?.is_none() {
            let pools: Vec<String> = hub
                .store
                .list_compute_pools()
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect();
            return Err(HubError::BadRequest(format!(
                "There is no compute pool {pool:?}: choose one of {}",
                pools.join(", ")
            )));
        }
    }
    let resources = hub.spawner.validate(&request).await.map_err(rejected)?;
    if let Some(image) = image.as_ref().filter(|i| i.needs_gpu != 0) {
        if resources.gpus == 0 {
            return Err(HubError::BadRequest(format!(
                "Image {:?} needs a GPU: ask for at least 1 GPU per node, or choose another image",
                image.name
            )));
        }
    }
    Ok(PreparedSpawn {
        resources,
        image,
        user_options: Value::Object(given),
        datasets,
    })
}

/// A backend's refusal as a 400 with its message; any other failure as the backend's.
fn rejected(e: SpawnerError) -> HubError {
    match e {
        SpawnerError::Rejected(message) => HubError::BadRequest(message),
        other => HubError::Spawner(other.to_string()),
    }
}

/// The image `owner_id` may start that a request names by id, display name or reference.
pub async fn resolve_image(hub: &Services, owner_id: i64, wanted: &str) -> HubResult<ImageRow> {
    let text = wanted.trim();
    if let Ok(id) = text.parse::<i64>() {
        return images::startable(&hub.store, id, owner_id).await;
    }
    let startable = hub
        .store
        .list_images(ImageFilter::StartableBy(owner_id))
        .await?;
    // A name is unique; a reference may be both a library image's and the owner's: the
    // library's record wins (same image either way).
    let found = startable.iter().find(|r| r.name == text).or_else(|| {
        startable
            .iter()
            .filter(|r| images::reference(r) == text)
            .min_by_key(|r| r.visibility != Visibility::Library)
    });
    if let Some(row) = found {
        return Ok(row.clone());
    }
    let names: Vec<&str> = startable.iter().map(|r| r.name.as_str()).collect();
    Err(HubError::BadRequest(if names.is_empty() {
        format!("Image {text:?} is not in the image library, and the library has no enabled image yet; ask an administrator to add one")
    } else {
        format!(
            "Image {text:?} is not an image you may start; choose one of: {}",
            names.join(", ")
        )
    }))
}

/// OAuth clients of nodes 1…N-1: `(client id, redirect URI)`; node-0 uses the server's own.
pub fn node_clients(prefix: &str, client_id: &str, nodes: u32) -> Vec<(String, String)> {
    (1..nodes as usize)
        .map(|k| {
            (
                spawner::nodes::node_oauth_client_id(client_id, k),
                format!(
                    "{}oauth_callback",
                    spawner::nodes::node_service_prefix(prefix, k)
                ),
            )
        })
        .collect()
}

/// The proxy routes of a launched server: one per node, or just the server's.
pub fn routes(prefix: &str, url: &str, nodes: &[NodeInfo]) -> Vec<(String, String)> {
    if nodes.is_empty() {
        vec![(prefix.to_owned(), url.to_owned())]
    } else {
        nodes
            .iter()
            .map(|n| (n.service_prefix.clone(), n.url.clone()))
            .collect()
    }
}

/// The nodes of a stored server (its state blob, read by the backend that wrote it), for the
/// API and the pages: name, URL and public URL path; empty for a single-node server.
pub fn nodes_of(spawner: &dyn Spawner, state: Option<&str>) -> Vec<NodeInfo> {
    state
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|state| spawner.nodes_from_state(&state))
        .unwrap_or_default()
}

/// What a spawn form may offer for a cluster: the backend's defaults and the smallest and
/// largest sizes it accepts (for one node, except `max_nodes`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SizeChoices {
    /// Most nodes one cluster may have, at the smallest node size.
    pub max_nodes: u32,
    /// CPU cores per node when the request does not say.
    pub default_cpus: f64,
    /// Fewest CPU cores per node.
    pub min_cpus: f64,
    /// Most CPU cores one node may have (the host's).
    pub max_cpus: f64,
    /// Memory per node in bytes when the request does not say.
    pub default_memory_bytes: u64,
    /// Least memory per node.
    pub min_memory_bytes: u64,
    /// Most memory one node may have (the host's).
    pub max_memory_bytes: u64,
    /// Most GPUs per node: `Some(0)` the host has none; `None` present but not counted.
    pub max_gpus: Option<u32>,
    /// Largest storage per node.
    pub max_storage_bytes: Option<u64>,
}

/// The sizes the backend accepts, or `None` when it takes none (one node without limits, as
/// the local backend).
pub fn size_choices(hub: &Services) -> Option<SizeChoices> {
    let l = hub.spawner.resource_limits()?;
    // How many of the smallest nodes the host holds: the whole cluster must fit.
    let fit = |host: f64, least: f64| {
        if least > 0.0 {
            (host / least + 1e-9).floor()
        } else {
            f64::from(u32::MAX)
        }
    };
    let max_nodes = f64::from(l.max_nodes)
        .min(fit(l.host_cpus, l.min_cpus))
        .min(fit(l.host_memory_bytes as f64, l.min_memory_bytes as f64))
        .max(1.0);
    Some(SizeChoices {
        max_nodes: max_nodes as u32,
        default_cpus: l.default_cpus,
        min_cpus: l.min_cpus,
        max_cpus: l.host_cpus,
        default_memory_bytes: l.default_memory_bytes,
        min_memory_bytes: l.min_memory_bytes,
        max_memory_bytes: l.host_memory_bytes,
        max_gpus: l.host_gpus,
        max_storage_bytes: Some(l.max_storage_bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_a_list_of_owner_slash_name_each_once() {
        let read = |v: Value| read_datasets(Some(&v));
        assert_eq!(
            read(serde_json::json!([
                "alice/mnist",
                " bob/数据 ",
                "alice/mnist"
            ]))
            .unwrap(),
            ["alice/mnist", "bob/数据"]
        );
        assert_eq!(
            read(serde_json::json!("alice/mnist")).unwrap(),
            ["alice/mnist"]
        );
        assert!(read(Value::Null).unwrap().is_empty());
        assert!(read_datasets(None).unwrap().is_empty());
        for (bad, says) in [
            (
                serde_json::json!(["mnist"]),
                "\"mnist\" is not of the form owner/name",
            ),
            (serde_json::json!(["a/b/c"]), "not of the form owner/name"),
            (serde_json::json!(["/b"]), "not of the form owner/name"),
            (serde_json::json!([7]), "The dataset 7 is not a string"),
            (serde_json::json!({"a": 1}), "cannot be"),
            (serde_json::json!(true), "cannot be true"),
        ] {
            match read(bad.clone()) {
                Err(HubError::BadRequest(message)) => {
                    assert!(message.contains(says), "{bad}: {message}");
                    assert!(message.contains("[\"alice/mnist\"]"), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn node_names_are_reserved_for_clusters() {
        assert!(check_server_name_is_not_a_node("node-1").is_err());
        assert!(check_server_name_is_not_a_node("node-12").is_err());
        assert!(check_server_name_is_not_a_node("node-x").is_ok());
        assert!(check_server_name_is_not_a_node("node-").is_ok());
        assert!(check_server_name_is_not_a_node("gpu").is_ok());
    }

    #[test]
    fn nodes_after_the_first_get_their_own_client_under_the_servers_prefix() {
        let clients = node_clients("/user/al/", "jupyterhub-user-al", 3);
        assert_eq!(
            clients,
            [
                (
                    "jupyterhub-user-al-node-1".to_owned(),
                    "/user/al/node-1/oauth_callback".to_owned()
                ),
                (
                    "jupyterhub-user-al-node-2".to_owned(),
                    "/user/al/node-2/oauth_callback".to_owned()
                ),
            ]
        );
        assert!(node_clients("/user/al/", "c", 1).is_empty());
    }

    #[test]
    fn a_single_node_server_has_one_route() {
        assert_eq!(
            routes("/user/al/", "http://127.0.0.1:5", &[]),
            [("/user/al/".to_owned(), "http://127.0.0.1:5".to_owned())]
        );
        let nodes = vec![
            NodeInfo {
                name: "node-0".into(),
                url: "http://10.0.0.2:8888".into(),
                service_prefix: "/user/al/".into(),
                oauth_client_id: None,
            },
            NodeInfo {
                name: "node-1".into(),
                url: "http://10.0.0.3:8888".into(),
                service_prefix: "/user/al/node-1/".into(),
                oauth_client_id: None,
            },
        ];
        assert_eq!(routes("/user/al/", "http://10.0.0.2:8888", &nodes).len(), 2);
    }
}
