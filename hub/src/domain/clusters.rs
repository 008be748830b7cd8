//! Virtual clusters: what the hub adds around a multi-node backend. A cluster is a (default or
//! named) server whose backend started several nodes; node-0 has the server's URL prefix, node-k
//! has `{prefix}node-k/`, its own proxy route and its own OAuth client (same secret as the
//! server's token, so each node's single-user server can log users in through the hub).
//!
//! Spawn requests name an image of the library (`image`: its id, display name or reference);
//! the hub turns it into the reference the backend runs and refuses images that are not
//! startable, and GPU images without GPUs, before the backend checks the sizes.

use serde_json::{Map, Value};
use spawner::{ClusterResources, NodeInfo, SpawnerError};

use super::images;
use super::{HubError, HubResult};
use crate::app::Hub;
use crate::db::{ImageFilter, ImageRow};

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

/// Checks a spawn request and makes it concrete for the backend: the library image becomes its
/// reference (`image`), with `image_id` kept for display; the backend then checks the sizes.
pub async fn prepare_options(hub: &Hub, options: Value) -> HubResult<(Value, ClusterResources)> {
    let mut map: Map<String, Value> = match options {
        Value::Object(m) => m,
        _ => {
            return Err(HubError::BadRequest(
                "user_options must be a JSON object".into(),
            ))
        }
    };
    if hub.spawner.backend_name() != "local" {
        let wanted = map.get("image").and_then(|v| match v {
            Value::Array(a) if a.len() == 1 => a.first().cloned(),
            other => Some(other.clone()),
        });
        let image = match wanted {
            None | Some(Value::Null) => None,
            Some(v) => Some(resolve_image(hub, &v).await?),
        };
        if let Some(image) = &image {
            map.insert("image".into(), Value::String(images::reference(image)));
            map.insert("image_id".into(), Value::from(image.id));
            map.insert("image_name".into(), Value::String(image.name.clone()));
        }
        let options = Value::Object(map);
        let resources = validate(hub, &options).await?;
        if let Some(image) = image.filter(|i| i.needs_gpu != 0) {
            if resources.gpus == 0 {
                return Err(HubError::BadRequest(format!(
                    "Image {:?} needs a GPU: ask for at least 1 GPU per node, or choose another image",
                    image.name
                )));
            }
        }
        return Ok((options, resources));
    }
    let options = Value::Object(map);
    let resources = validate(hub, &options).await?;
    Ok((options, resources))
}

async fn validate(hub: &Hub, options: &Value) -> HubResult<ClusterResources> {
    hub.spawner.validate(options).await.map_err(|e| match e {
        SpawnerError::Rejected(message) => HubError::BadRequest(message),
        other => HubError::Spawner(other.to_string()),
    })
}

/// The startable library image a request names by id, display name or reference.
async fn resolve_image(hub: &Hub, wanted: &Value) -> HubResult<ImageRow> {
    let id = match wanted {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if let Some(id) = id {
        return images::startable(&hub.store, id).await;
    }
    let Some(text) = wanted.as_str().map(str::trim) else {
        return Err(HubError::BadRequest(
            "image must be an image id, name or reference from the image library".into(),
        ));
    };
    let startable = hub.store.list_images(ImageFilter::Startable).await?;
    if let Some(row) = startable
        .iter()
        .find(|r| r.name == text || images::reference(r) == text)
    {
        return Ok(row.clone());
    }
    let names: Vec<&str> = startable.iter().map(|r| r.name.as_str()).collect();
    Err(HubError::BadRequest(if names.is_empty() {
        format!("Image {text:?} is not in the image library, and the library has no enabled image yet; ask an administrator to add one")
    } else {
        format!(
            "Image {text:?} is not an enabled image of the library; choose one of: {}",
            names.join(", ")
        )
    }))
}

/// OAuth clients of nodes 1…N-1: `(client id, redirect URI)`; node-0 uses the server's own.
pub fn node_clients(prefix: &str, client_id: &str, nodes: u32) -> Vec<(String, String)> {
    (1..nodes as usize)
        .map(|k| {
            (
                spawner::docker::node_oauth_client_id(client_id, k),
                format!(
                    "{}oauth_callback",
                    spawner::docker::node_service_prefix(prefix, k)
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

/// The nodes of a stored server, for the API and the pages: name and public URL path.
pub fn nodes_of(hub: &Hub, state: Option<&str>) -> Vec<NodeInfo> {
    state
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|state| hub.spawner.nodes_from_state(&state))
        .unwrap_or_default()
}

/// What a spawn form may offer for a cluster: the backend's defaults and the smallest and
/// largest sizes it accepts (for one node, except `max_nodes`). The `Spawner` contract shows its
/// limits only through `validate`, so they are found by asking it (bisection over cheap, pure
/// checks, a few hundred calls at most).
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
    /// Largest storage per node; `None`: the backend takes no storage size.
    pub max_storage_bytes: Option<u64>,
}

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The sizes the backend accepts, or `None` when it ignores them (one node without limits, as
/// the local backend).
pub async fn size_choices(hub: &Hub) -> Option<SizeChoices> {
    if hub.spawner.backend_name() == "local" {
        return None;
    }
    let ok = |options: Value| async move { hub.spawner.validate(&options).await.is_ok() };
    let defaults = hub
        .spawner
        .validate(&Value::Object(Map::new()))
        .await
        .ok()?;
    let default_cpus = defaults.cpus?;
    let default_memory_bytes = defaults.memory_bytes?;
    // CPU in hundredths of a core, memory in MiB.
    let cpu_units = |c: u64| serde_json::json!(c as f64 / 100.0);
    let mem_text = |m: u64| format!("{m}M");
    let default_cpu_units = (default_cpus * 100.0).round().max(0.0) as u64;
    let default_mib = default_memory_bytes / MIB;
    let min_cpu_units = smallest_accepted(0, default_cpu_units, |c| {
        ok(serde_json::json!({"cpus": cpu_units(c), "memory": mem_text(default_mib)}))
    })
    .await;
    let max_cpu_units = largest_accepted(default_cpu_units, 1_000_000, |c| {
        ok(serde_json::json!({"cpus": cpu_units(c), "memory": mem_text(default_mib)}))
    })
    .await;
    let min_mib = smallest_accepted(1, default_mib.max(1), |m| {
        ok(serde_json::json!({"cpus": cpu_units(min_cpu_units), "memory": mem_text(m)}))
    })
    .await;
    let max_mib = largest_accepted(default_mib, 1 << 40, |m| {
        ok(serde_json::json!({"cpus": cpu_units(min_cpu_units), "memory": mem_text(m)}))
    })
    .await;
    let max_nodes = largest_accepted(1, 100_000, |n| {
        ok(serde_json::json!({
            "nodes": n, "cpus": cpu_units(min_cpu_units), "memory": mem_text(min_mib)
        }))
    })
    .await;
    let gpus_ok = |g: u64| ok(serde_json::json!({"gpus": g}));
    let max_gpus = if !gpus_ok(1).await {
        Some(0)
    } else if gpus_ok(4096).await {
        None
    } else {
        Some(largest_accepted(1, 4096, gpus_ok).await)
    };
    let storage_ok = |s: u64| ok(serde_json::json!({"storage": format!("{s}G")}));
    let max_storage_bytes = if storage_ok(1).await {
        Some(largest_accepted(1, 1 << 20, storage_ok).await * GIB)
    } else {
        None
    };
    Some(SizeChoices {
        max_nodes: u32::try_from(max_nodes).unwrap_or(u32::MAX),
        default_cpus,
        min_cpus: min_cpu_units as f64 / 100.0,
        max_cpus: max_cpu_units as f64 / 100.0,
        default_memory_bytes,
        min_memory_bytes: min_mib * MIB,
        max_memory_bytes: max_mib * MIB,
        max_gpus: max_gpus.map(|g| u32::try_from(g).unwrap_or(u32::MAX)),
        max_storage_bytes,
    })
}

/// The largest `x` in `lo..=hi` that `accepted` takes, for a check that takes `lo` and every
/// value up to some limit (`lo` if it takes nothing larger).
async fn largest_accepted<F, Fut>(lo: u64, hi: u64, accepted: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (mut good, mut bad) = (lo, hi.saturating_add(1));
    if accepted(hi).await {
        return hi;
    }
    while bad - good > 1 {
        let mid = good + (bad - good) / 2;
        if accepted(mid).await {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

/// The smallest `x` in `lo..=hi` that `accepted` takes, for a check that takes `hi` and every
/// value down to some limit.
async fn smallest_accepted<F, Fut>(lo: u64, hi: u64, accepted: F) -> u64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if accepted(lo).await {
        return lo;
    }
    let (mut bad, mut good) = (lo, hi);
    while good - bad > 1 {
        let mid = bad + (good - bad) / 2;
        if accepted(mid).await {
            good = mid;
        } else {
            bad = mid;
        }
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;

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
