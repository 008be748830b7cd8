//! Who is calling, and with which scopes: API tokens, login sessions, and the cache that keeps this
//! off the database for repeated requests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::tokens::hash_secret;
use super::{HubError, HubResult};
use crate::clock::{self, Micros};
use crate::db::{ServiceRow, Store, TokenRow, UserRow};
use crate::rbac::{self, Client, Owner, ScopeCatalog, ScopeSet};

/// The account behind a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A user.
    User(UserRow),
    /// An external service.
    Service(ServiceRow),
}

impl Principal {
    /// The user or service name.
    pub fn name(&self) -> &str {
        match self {
            Principal::User(u) => &u.name,
            Principal::Service(s) => &s.name,
        }
    }
}

/// An authenticated caller with its effective, expanded scopes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub principal: Principal,
    /// What it may do.
    pub scopes: ScopeSet,
    /// The token used (`None` for the login cookie).
    pub token_id: Option<i64>,
    /// The login session (cookie, or OAuth tokens issued within it).
    pub session_id: Option<String>,
    /// The server whose own API token (`kind = server`) the caller used, if it did.
    pub server_id: Option<i64>,
}

impl Caller {
    /// The user, if the caller is one.
    pub fn user(&self) -> Option<&UserRow> {
        match &self.principal {
            Principal::User(u) => Some(u),
            Principal::Service(_) => None,
        }
    }
}

/// Role names of a user: `user`, `admin` when admin, and configured roles.
pub fn user_role_names(user: &UserRow, configured: &[crate::db::RoleRow]) -> Vec<String> {
    let mut names = vec!["user".to_owned()];
    if user.is_admin() {
        names.push("admin".to_owned());
    }
    names.extend(configured.iter().map(|r| r.name.clone()));
    names
}

/// Raw scopes of a list of built-in role names plus configured roles.
fn raw_scopes(builtin: &[&str], configured: &[crate::db::RoleRow]) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    for name in builtin {
        if let Some(role) = rbac::default_role(name) {
            raw.extend(role.scopes.iter().map(|s| (*s).to_owned()));
        }
    }
    for role in configured {
        raw.extend(role.scopes.iter().cloned());
    }
    raw
}

/// The expanded scopes a user holds through its roles and groups.
pub async fn user_scopes(store: &Store, user: &UserRow) -> HubResult<ScopeSet> {
    let configured = store
        .user_roles(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    let builtin: &[&str] = if user.is_admin() {
        &["user", "admin"]
    } else {
        &["user"]
    };
    let raw = raw_scopes(builtin, &configured);
    Ok(ScopeCatalog::builtin().expand(&raw, &Owner::user(&user.name)))
}

/// The expanded scopes a service holds.
pub async fn service_scopes(store: &Store, service: &ServiceRow) -> HubResult<ScopeSet> {
    let configured = store.service_roles(service.id).await?;
    let builtin: &[&str] = if service.admin != 0 { &["admin"] } else { &[] };
    let raw = raw_scopes(builtin, &configured);
    Ok(ScopeCatalog::builtin().expand(&raw, &Owner::service(&service.name)))
}

/// Loads the group memberships of the users that `sets` name in filters, so the synchronous
/// intersection can consult them.
pub async fn memberships(
    store: &Store,
    sets: &[&ScopeSet],
) -> HubResult<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    if !sets.iter().any(|s| s.needs_groups()) {
        return Ok(out);
    }
    let names: BTreeSet<String> = sets.iter().flat_map(|s| s.filter_user_names()).collect();
    for name in names {
        let groups = store.groups_of(&name).await?;
        out.insert(name, groups);
    }
    Ok(out)
}

/// The effective scopes of a stored token for its current owner.
pub async fn token_caller(store: &Store, token: &TokenRow) -> HubResult<Option<Caller>> {
    let raw: Vec<String> = serde_json::from_str(&token.scopes).map_err(crate::db::DbError::from)?;
    let (principal, owner_scopes) = if let Some(uid) = token.user_id {
        let Some(user) = store.user_by_id(uid).await? else {
            return Ok(None);
        };
        let scopes = user_scopes(store, &user).await?;
        (Principal::User(user), scopes)
    } else if let Some(name) = &token.service_name {
        let Some(service) = store.service(name).await? else {
            return Ok(None);
        };
        let scopes = service_scopes(store, &service).await?;
        (Principal::Service(service), scopes)
    } else {
        return Ok(None);
    };
    let full;
    let mut owner = match &principal {
        Principal::User(u) => Owner::user(&u.name),
        Principal::Service(s) => Owner::service(&s.name),
    };
    if token.kind == "server" || token.oauth_client.is_some() {
        if let (Principal::User(u), Some(server)) = (&principal, server_of_token(token)) {
            full = super::servers::full_name(&u.name, &server);
            owner = owner.issued_by(Client::Server(&full));
        }
    }
    let memberships = memberships(store, &[&owner_scopes]).await?;
    let groups_of = |u: &str| memberships.get(u).cloned().unwrap_or_default();
    let scopes = ScopeCatalog::builtin()
        .token_scopes(&raw, &owner, &owner_scopes, &groups_of)
        .effective;
    Ok(Some(Caller {
        principal,
        scopes,
        token_id: Some(token.id),
        session_id: token.session_id.clone(),
        server_id: token.server_id.filter(|_| token.kind == "server"),
    }))
}

/// The server a server or OAuth token belongs to (`""` for the default server).
fn server_of_token(token: &TokenRow) -> Option<String> {
    if let Some(name) = &token.server_name {
        return Some(name.clone());
    }
    let client = token.oauth_client.as_deref()?;
    let user = token.user_name.as_deref()?;
    let default = super::servers::client_id(user, "");
    if client == default {
        Some(String::new())
    } else {
        client.strip_prefix(&format!("{default}-")).map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
    }
}

/// Cached resolution of callers, keyed by the hash of the presented secret. Any change of rights,
/// tokens or servers bumps the generation, which invalidates every entry at once.
#[derive(Default)]
pub struct AuthCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<String, CachedCaller>>,
}

#[derive(Clone)]
struct CachedCaller {
    generation: u64,
    caller: Arc<Caller>,
    expires_at: Option<Micros>,
    last_touch: Micros,
    /// The user whose `last_activity` each use raises (JupyterHub's `_record_activity`): the
    /// owner of a login session or of a token other than a server's.
    user_id: Option<i64>,
}

/// How often token use is written to the database (JupyterHub's `activity_resolution`).
const ACTIVITY_RESOLUTION_MICROS: i64 = 30_000_000;

impl AuthCache {
    /// Drops every cached caller.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut e) = self.entries.lock() {
            e.clear();
        }
    }

    /// The cached caller, whether its use should be recorded now, and the user to record it on.
    fn get(&self, key: &str, now: Micros) -> Option<(Arc<Caller>, bool, Option<i64>)> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.get_mut(key)?;
        if entry.generation != generation || entry.expires_at.is_some_and(|e| e <= now) {
            entries.remove(key);
            return None;
        }
        let touch = now - entry.last_touch > ACTIVITY_RESOLUTION_MICROS;
        if touch {
            entry.last_touch = now;
        }
        Some((Arc::clone(&entry.caller), touch, entry.user_id))
    }

    fn put(
        &self,
        key: String,
        caller: Arc<Caller>,
        generation: u64,
        expires_at: Option<Micros>,
        now: Micros,
        user_id: Option<i64>,
    ) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() > 50_000 {
                entries.clear();
            }
            entries.insert(
                key,
                CachedCaller {
                    generation,
                    caller,
                    expires_at,
                    last_touch: now,
                    user_id,
                },
            );
        }
    }
}

/// The caller presenting an API token, or `None` if the token is unknown or expired.
pub async fn caller_for_token(
    store: &Store,
    cache: &AuthCache,
    token: &str,
) -> HubResult<Option<Arc<Caller>>> {
    let now = clock::now();
    let hashed = hash_secret(token);
    if let Some((caller, touch, user_id)) = cache.get(&hashed, now) {
        if touch {
            if let Some(id) = caller.token_id {
                store.touch_token(id, now).await?;
            }
            if let Some(id) = user_id {
                store.touch_user(id, now).await?;
            }
        }
        return Ok(Some(caller));
    }
    let generation = cache.generation.load(Ordering::SeqCst);
    let Some(row) = store.token_by_hash(&hashed).await? else {
        return Ok(None);
    };
    if row.expires_at.is_some_and(|e| e <= now) {
        return Ok(None);
    }
    let Some(caller) = token_caller(store, &row).await? else {
        return Ok(None);
    };
    // As JupyterHub's `_record_activity`: written only when older than the resolution, so that
    // re-resolving after the cache was invalidated (by any write) does not write twice more.
    let stale = |last: Option<Micros>| last.is_none_or(|t| now - t > ACTIVITY_RESOLUTION_MICROS);
    let mut touched = false;
    if stale(row.last_activity) {
        store.touch_token(row.id, now).await?;
        touched = true;
    }
    // A server's own API requests are not its user's activity (as in JupyterHub).
    let user_id = match &caller.principal {
        Principal::User(u) if row.kind != "server" => Some(u.id),
        _ => None,
    };
    if let (Some(id), Principal::User(u)) = (user_id, &caller.principal) {
        if stale(u.last_activity) {
            store.touch_user(id, now).await?;
            touched = true;
        }
    }
    // Untouched: the next write is due a resolution after the stored one.
    let last_touch = if touched {
        now
    } else {
        row.last_activity.unwrap_or(now)
    };
    let caller = Arc::new(caller);
    cache.put(
        hashed,
        Arc::clone(&caller),
        generation,
        row.expires_at,
        last_touch,
        user_id,
    );
    Ok(Some(caller))
}

/// The caller holding a login cookie, with the user's full scopes.
pub async fn caller_for_session(
    store: &Store,
    cache: &AuthCache,
    cookie: &str,
) -> HubResult<Option<Arc<Caller>>> {
    let now = clock::now();
    let key = format!("session:{}", hash_secret(cookie));
    if let Some((caller, touch, user_id)) = cache.get(&key, now) {
        if let (true, Some(id)) = (touch, user_id) {
            store.touch_user(id, now).await?;
        }
        return Ok(Some(caller));
    }
    let generation = cache.generation.load(Ordering::SeqCst);
    let Some(session) = store.session(&hash_secret(cookie), now).await? else {
        return Ok(None);
    };
    let Some(user) = store.user_by_id(session.user_id).await? else {
        return Ok(None);
    };
    let scopes = user_scopes(store, &user).await?;
    let user_id = user.id;
    store.touch_user(user_id, now).await?;
    let caller = Arc::new(Caller {
        principal: Principal::User(user),
        scopes,
        token_id: None,
        session_id: Some(session.session_id),
        server_id: None,
    });
    cache.put(
        key,
        Arc::clone(&caller),
        generation,
        Some(session.expires_at),
        now,
        Some(user_id),
    );
    Ok(Some(caller))
}

/// Opens a login session; returns (cookie value, session id).
pub async fn open_session(
    store: &Store,
    user: &UserRow,
    max_age_days: u32,
) -> HubResult<(String, String)> {
    let cookie = super::tokens::random_hex(32);
    let session_id = super::tokens::random_hex(16);
    let now = clock::now();
    let expires = now + i64::from(max_age_days) * 86_400 * 1_000_000;
    store
        .insert_session(&hash_secret(&cookie), &session_id, user.id, now, expires)
        .await?;
    Ok((cookie, session_id))
}

/// Ends a login session and revokes the OAuth tokens issued within it.
pub async fn close_session(store: &Store, cache: &AuthCache, session_id: &str) -> HubResult<()> {
    store.delete_session(session_id).await?;
    cache.invalidate();
    Ok(())
}

/// Ends every login session of a user (each browser they are signed in with) and the tokens
/// issued in them; how many sessions ended.
pub async fn close_sessions_of(store: &Store, cache: &AuthCache, user_id: i64) -> HubResult<u64> {
    let ended = store.delete_sessions_of(user_id).await?;
    cache.invalidate();
    Ok(ended)
}

/// Rejects a token request whose scopes the owner does not hold (JupyterHub's 400).
pub async fn check_requested_scopes(
    store: &Store,
    caller_user: &UserRow,
    requested: &[String],
) -> HubResult<()> {
    let owner_scopes = user_scopes(store, caller_user).await?;
    let memberships = memberships(store, &[&owner_scopes]).await?;
    let groups_of = |u: &str| memberships.get(u).cloned().unwrap_or_default();
    ScopeCatalog::builtin()
        .check_token_scopes(
            requested,
            &Owner::user(&caller_user.name),
            &owner_scopes,
            &groups_of,
        )
        .map(|_| ())
        .map_err(|e| HubError::BadRequest(e.to_string()))
}
