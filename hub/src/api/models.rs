//! JupyterHub's JSON models, built from rows and trimmed to the keys the caller's scopes allow.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use spawner::{NodeInfo, Spawner};

use crate::clock::iso_json;
use crate::db::{GroupRow, RoleRow, ServerRow, ServerStatus, ServiceRow, TokenRow, UserRow};
use crate::domain::clusters::nodes_of;
use crate::domain::identity::user_role_names;
use crate::domain::servers::{pending_of, service_prefix};
use crate::domain::tokens::token_id;
use crate::domain::Services;
use crate::error::ApiError;
use crate::rbac::{self, Resource, ScopeSet};

/// Everything needed to render users.
pub struct UserBundle {
    /// The user.
    pub user: UserRow,
    /// Group names.
    pub groups: Vec<String>,
    /// Configured roles.
    pub roles: Vec<RoleRow>,
    /// All server rows.
    pub servers: Vec<ServerRow>,
    /// The nodes of each multi-node server, by server id (read from the state blobs by the
    /// backend).
    pub nodes: HashMap<i64, Vec<NodeInfo>>,
}

/// Loads groups, roles and servers for a page of users in three queries.
pub async fn bundle(hub: &Services, users: Vec<UserRow>) -> Result<Vec<UserBundle>, ApiError> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let details = hub.store.user_details(&ids).await?;
    Ok(bundle_with(hub.spawner.as_ref(), users, details))
}

/// Pairs users with their already loaded groups, roles and servers.
pub fn bundle_with(
    spawner: &dyn Spawner,
    users: Vec<UserRow>,
    details: crate::db::UserDetails,
) -> Vec<UserBundle> {
    let crate::db::UserDetails {
        mut groups,
        mut roles,
        mut servers,
    } = details;
    users
        .into_iter()
        .map(|u| {
            let servers = servers.remove(&u.id).unwrap_or_default();
            let nodes = servers
                .iter()
                .map(|s| (s.id, nodes_of(spawner, s.state.as_deref())))
                .filter(|(_, nodes)| !nodes.is_empty())
                .collect();
            UserBundle {
                groups: groups.remove(&u.id).unwrap_or_default(),
                roles: roles.remove(&u.id).unwrap_or_default(),
                servers,
                nodes,
                user: u,
            }
        })
        .collect()
}

/// The Server model.
pub fn server_model(user: &str, row: &ServerRow, nodes: &[NodeInfo], with_state: bool) -> Value {
    let ready = row.status == ServerStatus::Running;
    let prefix = service_prefix(user, &row.name);
    let progress_url = if row.name.is_empty() {
        format!(
            "/hub/api/users/{}/server/progress",
            crate::domain::servers::url_quote(user)
        )
    } else {
        format!(
            "/hub/api/users/{}/servers/{}/progress",
            crate::domain::servers::url_quote(user),
            crate::domain::servers::url_quote(&row.name)
        )
    };
    let active = row.status != ServerStatus::Stopped;
    let mut m = Map::new();
    m.insert("name".into(), json!(row.name));
    m.insert("full_name".into(), json!(format!("{user}/{}", row.name)));
    m.insert("last_activity".into(), iso_json(row.last_activity));
    m.insert(
        "started".into(),
        if active {
            iso_json(row.started)
        } else {
            Value::Null
        },
    );
    m.insert("pending".into(), json!(pending_of(row)));
    m.insert("ready".into(), json!(ready));
    m.insert("stopped".into(), json!(!active));
    m.insert("url".into(), json!(prefix));
    m.insert(
        "user_options".into(),
        serde_json::from_str(&row.user_options).unwrap_or_else(|_| json!({})),
    );
    m.insert("progress_url".into(), json!(progress_url));
    m.insert("full_url".into(), Value::Null);
    m.insert("full_progress_url".into(), Value::Null);
    // Xiji: the nodes of a virtual cluster, each with its own URL (JupyterHub has no such key;
    // single-node servers do not carry it).
    if !nodes.is_empty() {
        m.insert(
            "nodes".into(),
            Value::Array(
                nodes
                    .iter()
                    .map(|n| json!({"name": n.name, "url": n.service_prefix, "ready": ready}))
                    .collect(),
            ),
        );
    }
    if with_state {
        m.insert(
            "state".into(),
            row.state
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok())
                .unwrap_or_else(|| json!({})),
        );
    }
    Value::Object(m)
}

/// The User model, trimmed to what `scopes` allow (JupyterHub's access map).
pub fn user_model(scopes: &ScopeSet, b: &UserBundle, include_stopped: bool) -> Value {
    let resource = Resource::User {
        name: &b.user.name,
        groups: &b.groups,
    };
    let keys = rbac::user_model_keys(scopes, &resource);
    let default = b.servers.iter().find(|s| s.name.is_empty());
    let mut m = Map::new();
    m.insert("kind".into(), json!("user"));
    m.insert("name".into(), json!(b.user.name));
    m.insert("admin".into(), json!(b.user.is_admin()));
    m.insert("roles".into(), json!(user_role_names(&b.user, &b.roles)));
    m.insert("groups".into(), json!(b.groups));
    m.insert(
        "server".into(),
        match default {
            Some(s) if s.status == ServerStatus::Running => json!(service_prefix(&b.user.name, "")),
            _ => Value::Null,
        },
    );
    m.insert("pending".into(), json!(default.and_then(pending_of)));
    m.insert("created".into(), iso_json(Some(b.user.created)));
    m.insert("last_activity".into(), iso_json(b.user.last_activity));
    m.insert("auth_state".into(), Value::Null);
    let mut servers = Map::new();
    for s in &b.servers {
        if include_stopped || s.status != ServerStatus::Stopped {
            let server_resource = Resource::Server {
                user: &b.user.name,
                server_name: &s.name,
                user_groups: &b.groups,
            };
            let with_state = rbac::server_state_visible(scopes, &server_resource);
            servers.insert(
                s.name.clone(),
                server_model(
                    &b.user.name,
                    s,
                    b.nodes.get(&s.id).map_or(&[][..], Vec::as_slice),
                    with_state,
                ),
            );
        }
    }
    m.insert("servers".into(), Value::Object(servers));
    m.retain(|k, _| keys.contains(k.as_str()));
    Value::Object(m)
}

/// The Group model.
pub fn group_model(
    scopes: &ScopeSet,
    g: &GroupRow,
    members: &[String],
    roles: &[RoleRow],
) -> Value {
    let keys = rbac::group_model_keys(scopes, &g.name);
    let mut m = Map::new();
    m.insert("kind".into(), json!("group"));
    m.insert("name".into(), json!(g.name));
    m.insert(
        "roles".into(),
        json!(roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
    );
    m.insert("users".into(), json!(members));
    m.insert(
        "properties".into(),
        serde_json::from_str(&g.properties).unwrap_or_else(|_| json!({})),
    );
    m.retain(|k, _| keys.contains(k.as_str()));
    Value::Object(m)
}

/// The Service model.
pub fn service_model(scopes: &ScopeSet, s: &ServiceRow, roles: &[RoleRow]) -> Value {
    let keys = rbac::service_model_keys(scopes, &s.name);
    let mut role_names: Vec<String> = roles.iter().map(|r| r.name.clone()).collect();
    if s.admin != 0 {
        role_names.insert(0, "admin".into());
    }
    let mut m = Map::new();
    m.insert("kind".into(), json!("service"));
    m.insert("name".into(), json!(s.name));
    m.insert("roles".into(), json!(role_names));
    m.insert("admin".into(), json!(s.admin != 0));
    m.insert("url".into(), json!(s.url.clone().unwrap_or_default()));
    m.insert(
        "prefix".into(),
        json!(s
            .url
            .as_ref()
            .map(|_| format!("/services/{}/", s.name))
            .unwrap_or_default()),
    );
    m.insert("command".into(), json!([]));
    m.insert("pid".into(), json!(0));
    m.insert(
        "info".into(),
        serde_json::from_str(&s.info).unwrap_or_else(|_| json!({})),
    );
    m.insert("display".into(), json!(s.display != 0));
    m.retain(|k, _| keys.contains(k.as_str()));
    Value::Object(m)
}

/// The Token model. `scopes` are the token's effective expanded scopes (JupyterHub's
/// `get_scopes_for(token)`); `None` renders the stored raw scopes with `!user`/`!server` resolved.
pub fn token_model(t: &TokenRow, scopes: Option<Vec<String>>) -> Value {
    let scopes = scopes.unwrap_or_else(|| {
        let raw: Vec<String> = serde_json::from_str(&t.scopes).unwrap_or_default();
        match (&t.user_name, &t.service_name) {
            (Some(user), _) => raw
                .iter()
                .map(|s| resolve_self_filters(s, user, t.server_name.as_deref()))
                .collect(),
            _ => raw,
        }
    });
    let mut m = Map::new();
    match (&t.user_name, &t.service_name) {
        (Some(u), _) => {
            m.insert("user".into(), json!(u));
        }
        (None, Some(s)) => {
            m.insert("service".into(), json!(s));
        }
        _ => {}
    }
    m.insert("id".into(), json!(token_id(t.id)));
    m.insert("kind".into(), json!("api_token"));
    m.insert("roles".into(), json!([]));
    m.insert("scopes".into(), json!(scopes));
    m.insert("created".into(), iso_json(Some(t.created)));
    m.insert("last_activity".into(), iso_json(t.last_activity));
    m.insert("expires_at".into(), iso_json(t.expires_at));
    m.insert("note".into(), json!(t.note));
    m.insert("session_id".into(), json!(t.session_id));
    m.insert(
        "oauth_client".into(),
        json!(t
            .oauth_client
            .clone()
            .unwrap_or_else(|| "JupyterHub".into())),
    );
    Value::Object(m)
}

/// `x!user` → `x!user=alice`, `x!server` → `x!server=alice/srv` for display.
fn resolve_self_filters(scope: &str, user: &str, server: Option<&str>) -> String {
    if let Some(base) = scope.strip_suffix("!user") {
        format!("{base}!user={user}")
    } else if let (Some(base), Some(server)) = (scope.strip_suffix("!server"), server) {
        format!("{base}!server={user}/{server}")
    } else {
        scope.to_owned()
    }
}
