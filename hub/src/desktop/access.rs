//! Which node a desktop URL names, whether the caller may open it, and where its VNC server is.
//! Plain functions over the store; nothing here knows HTTP.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::app::Hub;
use crate::db::ImageRow;
use crate::domain::identity::{self, Caller};
use crate::domain::{clusters, HubError, HubResult};

/// The scopes that let a caller open a desktop: JupyterHub's `access:servers` (the owner holds
/// it through the `user` role), or `admin:servers`, each possibly filtered to the server.
pub const DESKTOP_SCOPES: [&str; 2] = ["access:servers", "admin:servers"];

/// A running node whose image is a desktop, and how to reach its VNC server.
#[derive(Debug, Clone)]
pub struct DesktopNode {
    /// Owner.
    pub user: String,
    /// Owner's id.
    pub user_id: i64,
    /// Server name (`""` for the default server).
    pub server_name: String,
    /// Server row id.
    pub server_id: i64,
    /// `node-0` … `node-{N-1}`.
    pub node: String,
    /// The node's URL prefix, e.g. `/user/alice/node-1/`.
    pub prefix: String,
    /// The library image's display name.
    pub image_name: String,
    /// `host:port` of the VNC server.
    pub vnc_address: String,
    /// The VNC password of the image record (used by the bridge only).
    pub vnc_password: Option<String>,
}

/// What a desktop path names before anything is looked up: `/user/{name}/[{server}/][node-k/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesktopPath {
    /// The node prefix exactly as the proxy routes it.
    pub prefix: String,
    /// The owner's name, decoded.
    pub user: String,
    /// The server's name, decoded (`""` for the default server).
    pub server_name: String,
}

/// Reads a node prefix (`/user/alice/`, `/user/alice/gpu/node-1/`).
pub fn parse_prefix(prefix: &str) -> HubResult<DesktopPath> {
    let bad = || HubError::NotFound(format!("{prefix} is not the address of a node's desktop"));
    let rest = prefix
        .strip_prefix("/user/")
        .and_then(|r| r.strip_suffix('/'))
        .ok_or_else(bad)?;
    let mut segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) || segments.len() > 3 {
        return Err(bad());
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad())
    };
    let user = decode(segments.remove(0))?;
    let is_node = |s: &str| {
        s.strip_prefix("node-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    if segments.last().is_some_and(|s| is_node(s)) {
        segments.pop();
    }
    let server_name = match segments.as_slice() {
        [] => String::new(),
        [server] => decode(server)?,
        _ => return Err(bad()),
    };
    Ok(DesktopPath {
        prefix: prefix.to_owned(),
        user,
        server_name,
    })
}

/// The desktop at `prefix` if `caller` may open it. Refusals follow JupyterHub: a filtered scope
/// that misses is a 404 (the server's existence is not revealed), none at all a 403; a server
/// that is not running, a node that does not exist and an image without a desktop are 404s that
/// say so (only to callers who may know).
pub async fn find(hub: &Hub, caller: &Caller, prefix: &str) -> HubResult<DesktopNode> {
    let path = parse_prefix(prefix)?;
    identity::check_server_access(
        &hub.store,
        caller,
        &DESKTOP_SCOPES,
        &path.user,
        &path.server_name,
    )
    .await
    .map_err(|e| match e {
        HubError::NotFound(_) => HubError::NotFound(format!("No desktop at {prefix}")),
        other => other,
    })?;
    let user = hub
        .store
        .user(&path.user)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No desktop at {prefix}")))?;
    let server = hub
        .store
        .server(user.id, &path.server_name)
        .await?
        .filter(|s| s.status == "running")
        .ok_or_else(|| {
            HubError::NotFound(format!(
                "The server of {prefix} is not running: start it from the home page"
            ))
        })?;
    let nodes = clusters::nodes_of(hub, server.state.as_deref());
    let node = nodes
        .into_iter()
        .find(|n| n.service_prefix == prefix)
        .ok_or_else(|| HubError::NotFound(format!("The running server has no node at {prefix}")))?;
    let options: Value = serde_json::from_str(&server.user_options).unwrap_or(Value::Null);
    let image = match options.get("image_id").and_then(Value::as_i64) {
        Some(id) => hub.store.image(id).await?,
        None => None,
    };
    let image = image.filter(|i| i.kind == "desktop").ok_or_else(|| {
        HubError::NotFound(format!(
            "The image of {prefix} is not a desktop image: open JupyterLab instead"
        ))
    })?;
    let host = node_host(&node.url)
        .ok_or_else(|| HubError::Spawner(format!("node {} has no usable address", node.name)))?;
    let port = image.vnc_port.unwrap_or(5901);
    Ok(DesktopNode {
        user: user.name,
        user_id: user.id,
        server_name: path.server_name,
        server_id: server.id,
        node: node.name,
        prefix: prefix.to_owned(),
        image_name: image.name.clone(),
        vnc_address: format!("{host}:{port}"),
        vnc_password: image.vnc_password.clone(),
    })
}

/// The host part of a node's URL (`http://172.18.0.3:8888` → `172.18.0.3`; IPv6 keeps its
/// brackets).
fn node_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Ipv6(a) => Some(format!("[{a}]")),
        other => Some(other.to_string()),
    }
}

/// The environment a desktop image's nodes get from their library record: the VNC server's
/// start command, port and password (the image's entry point starts the command when they are
/// set). Empty for other images.
pub async fn node_env(hub: &Hub, options: &Value) -> HubResult<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    let Some(id) = options.get("image_id").and_then(Value::as_i64) else {
        return Ok(env);
    };
    let Some(image) = hub.store.image(id).await? else {
        return Ok(env);
    };
    env.extend(vnc_env(&image));
    Ok(env)
}

fn vnc_env(image: &ImageRow) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if image.kind != "desktop" {
        return env;
    }
    env.insert("XIJI_VNC_COMMAND".into(), image.start_command.clone());
    env.insert(
        "XIJI_VNC_PORT".into(),
        image.vnc_port.unwrap_or(5901).to_string(),
    );
    if let Some(p) = &image.vnc_password {
        env.insert("XIJI_VNC_PASSWORD".into(), p.clone());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_prefixes_name_user_server_and_node() {
        let p = parse_prefix("/user/alice/").unwrap();
        assert_eq!((p.user.as_str(), p.server_name.as_str()), ("alice", ""));
        let p = parse_prefix("/user/alice/node-1/").unwrap();
        assert_eq!((p.user.as_str(), p.server_name.as_str()), ("alice", ""));
        let p = parse_prefix("/user/al%20ice/gpu/node-12/").unwrap();
        assert_eq!((p.user.as_str(), p.server_name.as_str()), ("al ice", "gpu"));
        let p = parse_prefix("/user/alice/gpu/").unwrap();
        assert_eq!(p.server_name, "gpu");
        for bad in [
            "/user/",
            "/user//",
            "/hub/alice/",
            "/user/alice",
            "/user/alice/a/b/",
            "/user/alice/a/b/node-1/",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_hosts_come_from_their_urls() {
        assert_eq!(
            node_host("http://172.18.0.3:8888").as_deref(),
            Some("172.18.0.3")
        );
        assert_eq!(node_host("http://[::1]:8888").as_deref(), Some("[::1]"));
        assert_eq!(node_host("not a url"), None);
    }

    #[test]
    fn only_desktop_records_give_vnc_variables() {
        let mut row = ImageRow {
            id: 1,
            kind: "desktop".into(),
            name: "Desktop".into(),
            image: "xiji/desktop".into(),
            tag: "latest".into(),
            start_options: String::new(),
            start_command: "xiji-desktop-vnc".into(),
            vnc_password: Some("secret1".into()),
            vnc_port: Some(5902),
            description: String::new(),
            needs_gpu: 0,
            enabled: 1,
            visibility: "library".into(),
            owner_id: None,
            created: 0,
            updated: 0,
        };
        let env = vnc_env(&row);
        assert_eq!(env["XIJI_VNC_COMMAND"], "xiji-desktop-vnc");
        assert_eq!(env["XIJI_VNC_PORT"], "5902");
        assert_eq!(env["XIJI_VNC_PASSWORD"], "secret1");
        row.kind = "jupyter".into();
        assert!(vnc_env(&row).is_empty());
    }
}
