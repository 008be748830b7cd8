//! How the nodes of a multi-node server (a virtual cluster) are named, whatever the backend:
//! host names, URL prefixes and OAuth client ids. The hub registers one proxy route and one OAuth
//! client per node from these; every backend that starts several nodes must name them so.

/// `node-3`.
pub fn node_name(index: usize) -> String {
    format!("node-{index}")
}

/// The index of a node named by [`node_name`] (`node-3` → 3).
pub fn node_index(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("node-")?;
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    digits.parse().ok()
}

/// The URL prefix of node `index` of a server whose prefix is `server_prefix`: node-0 uses the
/// server's own prefix (`/user/alice/`), node-k uses `{server_prefix}node-k/`
/// (`/user/alice/node-1/`, `/user/alice/gpu/node-1/` for the named server `gpu`).
///
/// The hub adds one proxy route per node; the longest-prefix rule sends `/user/alice/node-1/…`
/// to node-1 and everything else under `/user/alice/` to node-0. For the default server these
/// prefixes look like named servers' (`/user/alice/node-1/`), so the hub must not allow named
/// servers called `node-<digits>`.
pub fn node_service_prefix(server_prefix: &str, index: usize) -> String {
    if index == 0 {
        server_prefix.to_owned()
    } else {
        let base = if server_prefix.ends_with('/') {
            server_prefix.to_owned()
        } else {
            format!("{server_prefix}/")
        };
        format!("{base}{}/", node_name(index))
    }
}

/// The OAuth client id of node `index`: the server's (`jupyterhub-user-alice`) for node-0,
/// `{client_id}-node-k` for the others. The hub registers each with the server's token as
/// secret, redirect URI `{node prefix}oauth_callback` and the server's access scopes.
pub fn node_oauth_client_id(server_client_id: &str, index: usize) -> String {
    if index == 0 {
        server_client_id.to_owned()
    } else {
        format!("{server_client_id}-{}", node_name(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_0_is_the_server_and_other_nodes_nest_under_its_prefix() {
        assert_eq!(node_service_prefix("/user/alice/", 0), "/user/alice/");
        assert_eq!(
            node_service_prefix("/user/alice/", 2),
            "/user/alice/node-2/"
        );
        assert_eq!(
            node_service_prefix("/user/alice/gpu/", 1),
            "/user/alice/gpu/node-1/"
        );
        assert_eq!(
            node_oauth_client_id("jupyterhub-user-alice", 0),
            "jupyterhub-user-alice"
        );
        assert_eq!(
            node_oauth_client_id("jupyterhub-user-alice", 1),
            "jupyterhub-user-alice-node-1"
        );
    }
}
