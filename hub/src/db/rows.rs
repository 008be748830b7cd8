//! Rows as stored, apart from the JSON models the API renders.

use super::{AccountRole, ServerStatus};
use crate::clock::Micros;

pub(super) const USER_COLUMNS: &str =
    "id, name, admin, account_role, password_hash, created, last_activity";
pub(super) const SERVER_COLUMNS: &str =
    "id, user_id, name, status, url, state, user_options, started, last_activity";
pub(super) const TOKEN_SELECT: &str = "SELECT t.id, t.kind, t.user_id, t.service_id, t.server_id, t.scopes, t.note, \
     t.session_id, t.oauth_client, t.created, t.last_activity, t.expires_at, u.name AS user_name, \
     u.admin AS user_admin, sv.name AS service_name, sv.admin AS service_admin, s.name AS server_name \
     FROM api_tokens t LEFT JOIN users u ON u.id = t.user_id LEFT JOIN services sv ON sv.id = t.service_id \
     LEFT JOIN servers s ON s.id = t.server_id";

/// A user account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Row id.
    pub id: i64,
    /// Unique user name.
    pub name: String,
    /// 1 if the user holds JupyterHub's admin role.
    pub admin: i64,
    /// Xiji account role (quotas depend on it).
    #[sqlx(try_from = "String")]
    pub account_role: AccountRole,
    /// argon2id hash of the local password, if any.
    pub password_hash: Option<String>,
    /// Creation time.
    pub created: Micros,
    /// Last activity, if any.
    pub last_activity: Option<Micros>,
}

impl UserRow {
    /// Whether the user is an administrator.
    pub fn is_admin(&self) -> bool {
        self.admin != 0
    }
}

/// A group.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GroupRow {
    /// Row id.
    pub id: i64,
    /// Unique group name.
    pub name: String,
    /// JSON object of free-form properties.
    pub properties: String,
}

/// An external service.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServiceRow {
    /// Row id (ignored on upsert).
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// 1 if it holds the admin role.
    pub admin: i64,
    /// Its URL, if any.
    pub url: Option<String>,
    /// JSON object of information.
    pub info: String,
    /// 1 if shown on the home page.
    pub display: i64,
}

/// A role from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    /// Role name.
    pub name: String,
    /// Raw scopes.
    pub scopes: Vec<String>,
}

/// A stored token with its owner's names.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenRow {
    /// Row id (`a<id>` in the API).
    pub id: i64,
    /// `api`, `server` or `oauth`.
    pub kind: String,
    /// Owning user.
    pub user_id: Option<i64>,
    /// Owning service.
    pub service_id: Option<i64>,
    /// Server this token was issued to (server tokens).
    pub server_id: Option<i64>,
    /// JSON list of raw scopes.
    pub scopes: String,
    /// Note given at creation.
    pub note: String,
    /// Login session the token belongs to (OAuth tokens).
    pub session_id: Option<String>,
    /// Identifier of the OAuth client that issued it.
    pub oauth_client: Option<String>,
    /// Creation time.
    pub created: Micros,
    /// Last use.
    pub last_activity: Option<Micros>,
    /// Expiry.
    pub expires_at: Option<Micros>,
    /// Owner's user name.
    pub user_name: Option<String>,
    /// Owner's admin flag.
    pub user_admin: Option<i64>,
    /// Owner's service name.
    pub service_name: Option<String>,
    /// Owning service's admin flag.
    pub service_admin: Option<i64>,
    /// Name of the server this token belongs to.
    pub server_name: Option<String>,
}

/// A token to store.
#[derive(Debug)]
pub struct NewToken<'a> {
    /// Hash of the secret.
    pub hashed: &'a str,
    /// `api`, `server` or `oauth`.
    pub kind: &'a str,
    /// Owning user.
    pub user_id: Option<i64>,
    /// Owning service.
    pub service_id: Option<i64>,
    /// Server it belongs to.
    pub server_id: Option<i64>,
    /// Raw scopes.
    pub scopes: &'a [String],
    /// Note.
    pub note: &'a str,
    /// Login session.
    pub session_id: Option<&'a str>,
    /// Issuing OAuth client.
    pub oauth_client: Option<&'a str>,
    /// Creation time.
    pub created: Micros,
    /// Expiry.
    pub expires_at: Option<Micros>,
}

/// A user's server (JupyterHub's spawner row).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerRow {
    /// Row id.
    pub id: i64,
    /// Owner.
    pub user_id: i64,
    /// `""` for the default server.
    pub name: String,
    /// Where the server is in its life.
    #[sqlx(try_from = "String")]
    pub status: ServerStatus,
    /// Backend URL (without prefix) once launched.
    pub url: Option<String>,
    /// Backend state blob (JSON).
    pub state: Option<String>,
    /// JSON user options of the last start.
    pub user_options: String,
    /// Start time.
    pub started: Option<Micros>,
    /// Last activity.
    pub last_activity: Option<Micros>,
}

/// Everything written when a spawn begins.
#[derive(Debug)]
pub struct BeginSpawn<'a> {
    /// Owner.
    pub user_id: i64,
    /// Server name.
    pub server_name: &'a str,
    /// JSON user options.
    pub user_options: &'a str,
    /// Hash of the server's API token (also the OAuth client secret).
    pub token_hash: &'a str,
    /// Raw scopes of the server token.
    pub token_scopes: &'a [String],
    /// OAuth client id.
    pub client_id: &'a str,
    /// OAuth client description.
    pub client_description: &'a str,
    /// OAuth redirect URI.
    pub redirect_uri: &'a str,
    /// OAuth clients of a cluster's other nodes: `(client id, redirect URI)`, same secret.
    pub node_clients: &'a [(String, String)],
    /// The cluster's reservation against quota and capacity; `None`: none (tests of the
    /// spawn's own writes).
    pub reserve: Option<super::Reserve<'a>>,
    /// Now.
    pub now: Micros,
}

/// How a spawn's first transaction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnBegun {
    /// The rows are written; the reservation (if any) was admitted or queued.
    Begun {
        /// The server's row.
        server_id: i64,
        /// How its reservation was decided (`None` without one).
        admission: Option<super::Admission>,
    },
    /// The reservation was refused: nothing was written.
    Refused(super::Refusal),
}

/// An OAuth client with the server it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OAuthClientRow {
    /// Client id.
    pub identifier: String,
    /// Description.
    pub description: String,
    /// Hash of the secret.
    pub secret_hash: String,
    /// Registered redirect URI.
    pub redirect_uri: String,
    /// The server it belongs to.
    pub server_id: Option<i64>,
    /// The service it belongs to.
    pub service_id: Option<i64>,
    /// Name of that server.
    pub server_name: Option<String>,
    /// Owner of that server.
    pub server_owner: Option<String>,
}

/// An authorization code to store.
#[derive(Debug)]
pub struct NewCode<'a> {
    /// Hash of the code.
    pub code_hash: &'a str,
    /// Client it was issued to.
    pub client_identifier: &'a str,
    /// The user who authorized.
    pub user_id: i64,
    /// Their login session.
    pub session_id: Option<&'a str>,
    /// Redirect URI it was issued for.
    pub redirect_uri: &'a str,
    /// Granted raw scopes.
    pub scopes: &'a [String],
    /// PKCE challenge.
    pub code_challenge: Option<&'a str>,
    /// PKCE method.
    pub code_challenge_method: Option<&'a str>,
    /// Expiry.
    pub expires_at: Micros,
}

/// A stored authorization code.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    /// Client it was issued to.
    pub client_identifier: String,
    /// The user who authorized.
    pub user_id: i64,
    /// Their login session.
    pub session_id: Option<String>,
    /// Redirect URI.
    pub redirect_uri: String,
    /// JSON list of granted scopes.
    pub scopes: String,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// PKCE method.
    pub code_challenge_method: Option<String>,
    /// Expiry.
    pub expires_at: Micros,
}

/// A login session.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    /// The public session id (`jupyterhub-session-id` cookie).
    pub session_id: String,
    /// The user.
    pub user_id: i64,
    /// Expiry.
    pub expires_at: Micros,
}

/// JupyterHub's `state` filter of `GET /users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerStateFilter {
    /// At least one server pending or ready.
    Active,
    /// At least one server ready.
    Ready,
    /// No server active.
    Inactive,
}

/// Sort orders of `GET /users`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    /// By id (creation order).
    #[default]
    Id,
    /// Newest first.
    IdDesc,
    /// By name.
    Name,
    /// By name, descending.
    NameDesc,
    /// Least recently active first.
    LastActivity,
    /// Most recently active first.
    LastActivityDesc,
}

/// Users a caller may see when its scope is filtered.
#[derive(Debug, Clone, Default)]
pub struct AllowedUsers {
    /// By name.
    pub names: Vec<String>,
    /// Members of these groups.
    pub groups: Vec<String>,
}

/// Parameters of a user listing.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Server state filter.
    pub state: Option<ServerStateFilter>,
    /// Case-insensitive substring of the name.
    pub name_filter: Option<String>,
    /// Restriction from filtered scopes (`None` = all users).
    pub only: Option<AllowedUsers>,
    /// Sort order.
    pub sort: UserSort,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to return.
    pub limit: i64,
}

/// A partial update of a user.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    /// New name.
    pub name: Option<String>,
    /// New admin flag.
    pub admin: Option<bool>,
    /// New account role.
    pub account_role: Option<AccountRole>,
    /// New password hash (`Some(None)` removes the password).
    pub password_hash: Option<Option<String>>,
}
