//! Web desktops in the domain: which node a desktop URL names, whether the caller may open it, and where its VNC server is.
//! Plain functions over the store; nothing here knows HTTP.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use spawner::SecretFile;

use crate::db::{ImageKind, ImageRow, ServerStatus};
use crate::domain::access;
use crate::domain::identity::Caller;
use crate::domain::Services;
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
    /// The VNC password (used by the bridge only): the image record's, or the cluster's own
    /// ([`cluster_vnc_password`]).
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
pub async fn find(hub: &Services, caller: &Caller, prefix: &str) -> HubResult<DesktopNode> {
    let path = parse_prefix(prefix)?;
    access::check_server(
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
        .filter(|s| s.status == ServerStatus::Running)
        .ok_or_else(|| {
            HubError::NotFound(format!(
                "The server of {prefix} is not running: start it from the home page"
            ))
        })?;
    let nodes = clusters::nodes_of(hub.spawner.as_ref(), server.state.as_deref());
    let node = nodes
        .into_iter()
        .find(|n| n.service_prefix == prefix)
        .ok_or_else(|| HubError::NotFound(format!("The running server has no node at {prefix}")))?;
    let options: Value = serde_json::from_str(&server.user_options).unwrap_or(Value::Null);
    let image = match options.get("image_id").and_then(Value::as_i64) {
        Some(id) => hub.store.image(id).await?,
        None => None,
    };
    let image = image
        .filter(|i| i.kind == ImageKind::Desktop)
        .ok_or_else(|| {
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
        vnc_password: Some(vnc_password(
            &image,
            &hub.secret,
            server.id,
            server.started.unwrap_or_default(),
        )),
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

/// The name of the node secret holding the VNC password (`/etc/xiji/secrets/vnc-password`).
pub const VNC_PASSWORD_FILE: &str = "vnc-password";

/// What a desktop image's nodes get from their library record: the VNC server's start command
/// and port as variables, and its password as a secret file (never a variable).
#[derive(Debug, Clone)]
pub struct DesktopLaunch {
    image: ImageRow,
}

/// The desktop launch of the image a server starts from, or `None` for other images.
pub fn launch_of(image: Option<&ImageRow>) -> Option<DesktopLaunch> {
    image
        .filter(|image| image.kind == ImageKind::Desktop)
        .map(|image| DesktopLaunch {
            image: image.clone(),
        })
}

impl DesktopLaunch {
    /// `XIJI_VNC_COMMAND`, `XIJI_VNC_PORT` and `XIJI_VNC_PASSWORD_FILE` (where the password
    /// is, not the password).
    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "XIJI_VNC_COMMAND".to_owned(),
                self.image.start_command.clone(),
            ),
            (
                "XIJI_VNC_PORT".to_owned(),
                self.image.vnc_port.unwrap_or(5901).to_string(),
            ),
            (
                "XIJI_VNC_PASSWORD_FILE".to_owned(),
                format!("{}/{VNC_PASSWORD_FILE}", spawner::SECRETS_DIR),
            ),
        ])
    }

    /// The VNC password of the server `server_id` started at `started`, as the node's secret
    /// file.
    pub fn secret_files(&self, hub_secret: &str, server_id: i64, started: i64) -> Vec<SecretFile> {
        let password = vnc_password(&self.image, hub_secret, server_id, started);
        vec![SecretFile {
            name: VNC_PASSWORD_FILE.to_owned(),
            content: format!("{password}\n").into_bytes(),
        }]
    }
}

/// The VNC password of a desktop cluster: the record's when it has one (images that bake in
/// their own password), else [`cluster_vnc_password`].
fn vnc_password(image: &ImageRow, hub_secret: &str, server_id: i64, started: i64) -> String {
    match image.vnc_password.as_deref() {
        Some(p) if !p.is_empty() => p.to_owned(),
        _ => cluster_vnc_password(hub_secret, server_id, started),
    }
}

/// Letters and digits a generated VNC password is made of.
const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// A cluster's own VNC password: 8 characters (VNC authentication uses 8 bytes at most) of
/// HMAC-SHA256 keyed with the hub's secret (random, per database) over the server's id and the
/// instant it was started. New at every start, unguessable without the hub's secret, never
/// stored: the hub computes it again from the server's row when it bridges a desktop, also
/// after a restart.
pub fn cluster_vnc_password(hub_secret: &str, server_id: i64, started: i64) -> String {
    let mac = hmac_sha256(
        hub_secret.as_bytes(),
        format!("xiji-vnc-password\0{server_id}\0{started}").as_bytes(),
    );
    mac.iter()
        .take(8)
        .map(|b| char::from(PASSWORD_ALPHABET[usize::from(*b) % PASSWORD_ALPHABET.len()]))
        .collect()
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
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

    fn desktop_row(password: Option<&str>) -> ImageRow {
        ImageRow {
            id: 1,
            kind: "desktop".into(),
            name: "Desktop".into(),
            image: "xiji/desktop".into(),
            tag: "latest".into(),
            start_options: String::new(),
            start_command: "xiji-desktop-vnc".into(),
            vnc_password: password.map(str::to_owned),
            vnc_port: Some(5902),
            description: String::new(),
            needs_gpu: 0,
            enabled: 1,
            visibility: "library".into(),
            owner_id: None,
            created: 0,
            updated: 0,
        }
    }

    #[test]
    fn a_desktop_gets_its_vnc_password_as_a_file_and_never_as_a_variable() {
        let launch = DesktopLaunch {
            image: desktop_row(None),
        };
        let env = launch.env();
        assert_eq!(env["XIJI_VNC_COMMAND"], "xiji-desktop-vnc");
        assert_eq!(env["XIJI_VNC_PORT"], "5902");
        assert_eq!(
            env["XIJI_VNC_PASSWORD_FILE"],
            "/etc/xiji/secrets/vnc-password"
        );
        assert!(!env.contains_key("XIJI_VNC_PASSWORD"));
        let files = launch.secret_files("hub-secret", 7, 1_000);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].name, "vnc-password");
        let password = cluster_vnc_password("hub-secret", 7, 1_000);
        assert_eq!(files[0].content, format!("{password}\n").into_bytes());
        assert!(env.values().all(|v| !v.contains(&password)));

        // A record with its own password (an image that bakes it in) keeps it.
        let baked = DesktopLaunch {
            image: desktop_row(Some("secret1")),
        };
        let files = baked.secret_files("hub-secret", 7, 1_000);
        assert_eq!(files[0].content, b"secret1\n");
    }

    #[test]
    fn a_cluster_vnc_password_is_new_at_every_start_and_the_same_when_computed_again() {
        let a = cluster_vnc_password("s3cret", 1, 100);
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
        assert_eq!(a, cluster_vnc_password("s3cret", 1, 100));
        assert_ne!(a, cluster_vnc_password("s3cret", 1, 101));
        assert_ne!(a, cluster_vnc_password("s3cret", 2, 100));
        assert_ne!(a, cluster_vnc_password("other", 1, 100));
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
