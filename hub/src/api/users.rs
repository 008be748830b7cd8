//! `/hub/api/users…`: list, create, read, update, delete users; activity reports.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::models::{bundle, bundle_with, user_model};
use super::{body_as, empty, json, ApiCaller, JsonBody, Page, RequestUrl};
use crate::clock;
use crate::db::{
    AccountRole, AllowedUsers, DbError, ServerStateFilter, ServerStatus, UserQuery, UserSort,
    UserUpdate,
};
use crate::domain::users::user_or_404;
use crate::domain::Services;
use crate::domain::{accounts, names, servers};
use crate::error::ApiError;
use crate::rbac::{self, ListFilter, ListKind, Resource};

/// Loads the groups of a user when the caller's filters need them.
pub(super) async fn groups_for_check(
    hub: &Services,
    caller: &ApiCaller,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    if caller.0.scopes.needs_groups() {
        Ok(hub.store.groups_of(name).await?)
    } else {
        Ok(Vec::new())
    }
}

fn flag(query: &[(String, String)], key: &str) -> bool {
    query
        .iter()
        .any(|(k, v)| k == key && !matches!(v.as_str(), "0" | "false" | "False"))
}

/// `GET /users`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let filter = rbac::list_filter(&caller.0.scopes, ListKind::Users)
        .map_err(|f| ApiError::forbidden(f.message))?;
    let page = Page::from_request(&hub, &query, &headers)?;
    let state = match query
        .iter()
        .rev()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.as_str())
    {
        None | Some("") => None,
        Some("active") => Some(ServerStateFilter::Active),
        Some("ready") => Some(ServerStateFilter::Ready),
        Some("inactive") => Some(ServerStateFilter::Inactive),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unrecognized state filter: {other:?}. Use one of active, ready, inactive"
            )))
        }
    };
    let sort = match query
        .iter()
        .rev()
        .find(|(k, _)| k == "sort")
        .map(|(_, v)| v.as_str())
    {
        None | Some("id") => UserSort::Id,
        Some("-id") => UserSort::IdDesc,
        Some("name") => UserSort::Name,
        Some("-name") => UserSort::NameDesc,
        Some("last_activity") => UserSort::LastActivity,
        Some("-last_activity") => UserSort::LastActivityDesc,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unrecognized sort: {other:?}. Use id, name or last_activity"
            )))
        }
    };
    let only = match filter {
        ListFilter::All => None,
        ListFilter::Only { names, groups } => Some(AllowedUsers {
            names: names.into_iter().collect(),
            groups: groups.into_iter().collect(),
        }),
    };
    let name_filter = query
        .iter()
        .rev()
        .find(|(k, _)| k == "name_filter")
        .map(|(_, v)| v.clone());
    let user_query = UserQuery {
        state,
        name_filter,
        only,
        sort,
        offset: page.offset,
        limit: page.limit,
    };
    let (rows, total) = hub.store.list_users(&user_query).await?;
    if !page.envelope && total > page.offset + page.limit {
        tracing::info!(total, limit = page.limit, "truncated user list");
    }
    let include_stopped = flag(&query, "include_stopped_servers");
    let items: Vec<Value> = bundle(&hub.store, rows)
        .await?
        .iter()
        .map(|b| user_model(&caller.0.scopes, b, include_stopped))
        .collect();
    let url = RequestUrl::new(&hub, &headers, uri.path(), &query);
    Ok(json(StatusCode::OK, page.render(items, total, &url)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUsers {
    usernames: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// `POST /users`: bulk create.
pub async fn create_many(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(&["admin:users"], &Resource::Hub)?;
    let req: CreateUsers = body_as(body)?
        .ok_or_else(|| ApiError::bad_request("Must specify at least one user to create"))?;
    let mut wanted: Vec<String> = Vec::new();
    let mut invalid = Vec::new();
    for name in &req.usernames {
        let name = names::normalize_user(name);
        if names::check_name("user", &name).is_err() {
            invalid.push(name);
        } else if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    if !invalid.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Invalid usernames: {invalid:?}"
        )));
    }
    if wanted.is_empty() {
        return Err(ApiError::bad_request(
            "Must specify at least one user to create",
        ));
    }
    let mut to_create = Vec::new();
    for name in &wanted {
        if hub.store.user(name).await?.is_none() {
            to_create.push(name.clone());
        }
    }
    if to_create.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("All {} users already exist", wanted.len()),
        ));
    }
    let rows = hub
        .store
        .create_users(&to_create, req.admin, clock::now())
        .await
        .map_err(|e| match e {
            DbError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "A user was created concurrently; retry",
            ),
            other => other.into(),
        })?;
    hub.invalidate_auth();
    let items: Vec<Value> = bundle(&hub.store, rows)
        .await?
        .iter()
        .map(|b| user_model(&caller.0.scopes, b, false))
        .collect();
    Ok(json(StatusCode::CREATED, Value::Array(items)))
}

const READ_USER_SCOPES: [&str; 6] = [
    "read:users",
    "read:users:name",
    "read:servers",
    "read:users:groups",
    "read:users:activity",
    "read:roles:users",
];

/// `GET /users/{name}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let groups = groups_for_check(&hub, &caller, &name).await?;
    caller.require(
        &READ_USER_SCOPES,
        &Resource::User {
            name: &name,
            groups: &groups,
        },
    )?;
    let (user, details) = hub
        .store
        .user_with_details(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let b = bundle_with(vec![user], details);
    let include_stopped = flag(&query, "include_stopped_servers");
    let model = b
        .first()
        .map(|b| user_model(&caller.0.scopes, b, include_stopped))
        .unwrap_or(Value::Null);
    Ok(json(StatusCode::OK, model))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    #[serde(default)]
    admin: bool,
}

/// `POST /users/{name}`.
pub async fn create_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(&["admin:users"], &Resource::Hub)?;
    let req: CreateUser = body_as(body)?.unwrap_or_default();
    let name = names::normalize_user(&name);
    names::check_name("user", &name)?;
    let row = hub
        .store
        .create_user(&name, req.admin, clock::now())
        .await
        .map_err(|e| match e {
            DbError::Conflict => {
                ApiError::new(StatusCode::CONFLICT, format!("User {name} already exists"))
            }
            other => other.into(),
        })?;
    hub.invalidate_auth();
    let b = bundle(&hub.store, vec![row]).await?;
    Ok(json(
        StatusCode::CREATED,
        b.first()
            .map(|b| user_model(&caller.0.scopes, b, false))
            .unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    name: Option<String>,
    admin: Option<bool>,
    /// Xiji: set the local password.
    password: Option<String>,
    /// Xiji: `student`, `teacher` or `admin`.
    account_role: Option<String>,
    /// Accepted for compatibility; Xiji keeps no authenticator state.
    auth_state: Option<Value>,
}

/// `PATCH /users/{name}`.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(
        &["admin:users"],
        &Resource::User {
            name: &name,
            groups: &groups_for_check(&hub, &caller, &name).await?,
        },
    )?;
    let user = user_or_404(&hub, &name).await?;
    let req: PatchUser =
        body_as(body)?.ok_or_else(|| ApiError::bad_request("Request body is empty"))?;
    let _ = req.auth_state;
    let mut update = UserUpdate::default();
    if let Some(new_name) = req.name {
        let new_name = names::normalize_user(&new_name);
        names::check_name("user", &new_name)?;
        if new_name != user.name && hub.store.user(&new_name).await?.is_some() {
            return Err(ApiError::bad_request(format!(
                "User {new_name} already exists, username must be unique"
            )));
        }
        let active = hub
            .store
            .servers_of(&[user.id])
            .await?
            .remove(&user.id)
            .unwrap_or_default();
        if new_name != user.name && active.iter().any(|s| s.status != ServerStatus::Stopped) {
            return Err(ApiError::bad_request(
                "Stop the user's servers before renaming them",
            ));
        }
        update.name = Some(new_name);
    }
    update.admin = req.admin;
    if let Some(role) = req.account_role {
        update.account_role = Some(AccountRole::parse(&role).map_err(ApiError::bad_request)?);
    }
    if let Some(password) = req.password {
        update.password_hash = Some(Some(accounts::hash_password(&password)?));
    }
    hub.store
        .update_user(user.id, &update)
        .await
        .map_err(|e| match e {
            DbError::Conflict => ApiError::bad_request("That user name is taken"),
            other => other.into(),
        })?;
    hub.invalidate_auth();
    let fresh = hub
        .store
        .user_by_id(user.id)
        .await?
        .ok_or_else(|| ApiError::not_found("User vanished"))?;
    let b = bundle(&hub.store, vec![fresh]).await?;
    Ok(json(
        StatusCode::OK,
        b.first()
            .map(|b| user_model(&caller.0.scopes, b, false))
            .unwrap_or(Value::Null),
    ))
}

/// `DELETE /users/{name}`: stops the user's servers first.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(
        &["delete:users"],
        &Resource::User {
            name: &name,
            groups: &groups_for_check(&hub, &caller, &name).await?,
        },
    )?;
    let user = user_or_404(&hub, &name).await?;
    if caller.0.user().is_some_and(|u| u.id == user.id) {
        return Err(ApiError::bad_request("Cannot delete yourself!"));
    }
    let rows = hub
        .store
        .servers_of(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    for row in &rows {
        if row.status.is_transitioning() {
            return Err(ApiError::bad_request(format!(
                "{}'s server {:?} is pending {}, please wait",
                user.name, row.name, row.status
            )));
        }
    }
    for row in rows.iter().filter(|r| r.status == ServerStatus::Running) {
        servers::stop(&hub, &user, row).await?;
    }
    hub.store.delete_user(user.id).await?;
    hub.invalidate_auth();
    tracing::info!(user.name = %user.name, "user deleted");
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /users/{name}/activity`: raises last_activity of the user and the named servers.
pub async fn activity(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(
        &["users:activity"],
        &Resource::User {
            name: &name,
            groups: &groups_for_check(&hub, &caller, &name).await?,
        },
    )?;
    let user = user_or_404(&hub, &name).await?;
    let body = body.ok_or_else(|| ApiError::bad_request("Request body is empty"))?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request("Activity must be a JSON object"));
    };
    let parse = |v: &Value, what: &str| -> Result<i64, ApiError> {
        let text = v.as_str().ok_or_else(|| {
            ApiError::bad_request(format!("{what} must be an ISO8601 timestamp string"))
        })?;
        let t = clock::parse_iso(text).ok_or_else(|| {
            ApiError::bad_request(format!("{what} is not a valid ISO8601 timestamp: {text:?}"))
        })?;
        if t > clock::now() + 59 * 60 * 1_000_000 {
            return Err(ApiError::bad_request(format!(
                "{what} {text} is more than 59 minutes in the future"
            )));
        }
        Ok(t)
    };
    let user_time = match body.get("last_activity") {
        Some(Value::Null) | None => None,
        Some(v) => Some(parse(v, "last_activity")?),
    };
    let mut server_times = Vec::new();
    match body.get("servers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(servers)) => {
            for (server_name, info) in servers {
                let row = hub
                    .store
                    .server(user.id, server_name)
                    .await?
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "No such server '{server_name}' for user {}",
                            user.name
                        ))
                    })?;
                let t = match info.get("last_activity") {
                    Some(v) => parse(v, "last_activity")?,
                    None => {
                        return Err(ApiError::bad_request(
                            "servers.<name>.last_activity is required",
                        ))
                    }
                };
                server_times.push((row.id, t));
            }
        }
        Some(_) => return Err(ApiError::bad_request("servers must be an object")),
    }
    if user_time.is_none() && server_times.is_empty() {
        return Err(ApiError::bad_request(
            "Activity must include last_activity or servers",
        ));
    }
    let latest = server_times.iter().map(|(_, t)| *t).chain(user_time).max();
    for (id, t) in server_times {
        hub.store.touch_server(id, t).await?;
    }
    if let Some(t) = latest {
        hub.store.touch_user(user.id, t).await?;
    }
    Ok(super::empty_json(StatusCode::OK))
}
