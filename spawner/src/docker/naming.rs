//! Names, labels and per-node settings of a cluster: pure functions the hub can call too.

use std::collections::BTreeMap;

use crate::nodes::{node_name, node_oauth_client_id, node_service_prefix};

/// Label with the hub instance that owns a container or network (`DockerConfig::instance`).
pub const LABEL_HUB: &str = "org.xiji.hub";
/// Label with the owner's user name.
pub const LABEL_USER: &str = "org.xiji.user";
/// Label with the server's name (`""` for the default server).
pub const LABEL_SERVER: &str = "org.xiji.server";
/// Label with the cluster id (random, one per start).
pub const LABEL_CLUSTER: &str = "org.xiji.cluster";
/// Label with the node's name (`node-0` ...), on containers only.
pub const LABEL_NODE: &str = "org.xiji.node";

/// Longest part of a Docker object name taken from a user or server name.
const NAME_PART_MAX: usize = 24;

/// The `JUPYTERHUB_*` variables of node `index`, from the server's (`env`, as the hub gives
/// them): node-k gets its own service prefix, OAuth callback and client id; everything else
/// (token, API URL, scopes, user) is the server's.
pub fn node_env(
    env: &BTreeMap<String, String>,
    server_prefix: &str,
    index: usize,
) -> BTreeMap<String, String> {
    let mut env = env.clone();
    if index == 0 {
        return env;
    }
    let prefix = node_service_prefix(server_prefix, index);
    env.insert("JUPYTERHUB_SERVICE_PREFIX".into(), prefix.clone());
    env.insert(
        "JUPYTERHUB_OAUTH_CALLBACK_URL".into(),
        format!("{prefix}oauth_callback"),
    );
    if let Some(client) = env.get("JUPYTERHUB_CLIENT_ID").cloned() {
        env.insert(
            "JUPYTERHUB_CLIENT_ID".into(),
            node_oauth_client_id(&client, index),
        );
    }
    env
}

/// Replaces the scheme and authority of `url` (`http://127.0.0.1:8081/hub/api`) with `base`
/// (`http://host.docker.internal:8081`), so containers reach the hub.
pub fn rebase_url(url: &str, base: &str) -> String {
    let base = base.trim_end_matches('/');
    match url.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(slash) => format!("{base}{}", &rest[slash..]),
            None => base.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// A name part safe in Docker object names: lower-case ASCII letters, digits and `-`, at most
/// 24 characters; other characters become `-`. Lossy on purpose: names are for people, labels
/// identify.
fn name_part(text: &str) -> String {
    let mut part: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(NAME_PART_MAX)
        .collect();
    while part.ends_with('-') {
        part.pop();
    }
    if part.is_empty() {
        part.push('x');
    }
    part
}

/// `xiji-alice-3f9c2a1b` or `xiji-alice-gpu-3f9c2a1b`: the cluster's network name and the
/// stem of its containers' names (`{stem}-node-0`).
pub fn cluster_name(user: &str, server: &str, cluster_id: &str) -> String {
    if server.is_empty() {
        format!("xiji-{}-{cluster_id}", name_part(user))
    } else {
        format!(
            "xiji-{}-{}-{cluster_id}",
            name_part(user),
            name_part(server)
        )
    }
}

/// A fresh cluster id: 12 lower-case hex digits.
pub fn new_cluster_id() -> String {
    use rand::Rng as _;
    let bytes: [u8; 6] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MPI hostfile: one line per node, `slots` = whole CPU cores (at least 1).
pub fn hostfile(nodes: usize, cpus: Option<f64>) -> String {
    // Validation keeps cpus between 0.1 and the host's cores: the cast cannot overflow.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let slots = cpus.map_or(1, |c| c.floor().max(1.0) as u64);
    (0..nodes)
        .map(|k| format!("{} slots={slots}\n", node_name(k)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_env_changes_only_prefix_callback_and_client() {
        let env: BTreeMap<String, String> = [
            ("JUPYTERHUB_SERVICE_PREFIX", "/user/alice/"),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                "/user/alice/oauth_callback",
            ),
            ("JUPYTERHUB_CLIENT_ID", "jupyterhub-user-alice"),
            ("JUPYTERHUB_API_TOKEN", "t"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(node_env(&env, "/user/alice/", 0), env);
        let node1 = node_env(&env, "/user/alice/", 1);
        assert_eq!(node1["JUPYTERHUB_SERVICE_PREFIX"], "/user/alice/node-1/");
        assert_eq!(
            node1["JUPYTERHUB_OAUTH_CALLBACK_URL"],
            "/user/alice/node-1/oauth_callback"
        );
        assert_eq!(
            node1["JUPYTERHUB_CLIENT_ID"],
            "jupyterhub-user-alice-node-1"
        );
        assert_eq!(node1["JUPYTERHUB_API_TOKEN"], "t");
    }

    #[test]
    fn names_are_safe_for_docker() {
        assert_eq!(cluster_name("alice", "", "00ff"), "xiji-alice-00ff");
        assert_eq!(
            cluster_name("Bob@Example.org", "My GPU", "00ff"),
            "xiji-bob-example-org-my-gpu-00ff"
        );
        assert_eq!(cluster_name("李", "", "1"), "xiji-x-1");
        let id = new_cluster_id();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn urls_are_rebased_onto_the_address_containers_use() {
        assert_eq!(
            rebase_url(
                "http://127.0.0.1:8081/hub/api",
                "http://host.docker.internal:8081/"
            ),
            "http://host.docker.internal:8081/hub/api"
        );
        assert_eq!(rebase_url("http://a:1", "http://b:2"), "http://b:2");
    }

    #[test]
    fn the_hostfile_has_a_line_per_node_with_whole_cores() {
        assert_eq!(hostfile(2, Some(2.5)), "node-0 slots=2\nnode-1 slots=2\n");
        assert_eq!(hostfile(1, Some(0.5)), "node-0 slots=1\n");
        assert_eq!(hostfile(1, None), "node-0 slots=1\n");
    }
}
