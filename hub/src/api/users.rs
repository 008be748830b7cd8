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
use crate::db::{AccountRole, AllowedUsers, ServerStateFilter, UserQuery, UserSort};
use crate::domain::access;
use crate::domain::users::{self, user_or_404, UserChange};
use crate::domain::Services;
use crate::error::ApiError;
use crate::rbac::{self, ListFilter, ListKind, Resource};

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
    let items: Vec<Value> = bundle(&hub, rows)
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
    let rows = users::create_many(&hub, &req.usernames, req.admin).await?;
    let items: Vec<Value> = bundle(&hub, rows)
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
    access::check_user(&hub.store, &caller.0, &READ_USER_SCOPES, &name).await?;
    let (user, details) = hub
        .store
        .user_with_details(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user: {name}")))?;
    let b = bundle_with(hub.spawner.as_ref(), vec![user], details);
    let include_stopped = flag(&query, "include_stopped_servers");
    let mut model = b
        .first()
        .map(|b| user_model(&caller.0.scopes, b, include_stopped))
        .unwrap_or(Value::Null);
    if let Some(user) = b.first() {
        fill_auth_state(&hub, &mut model, user.user.id).await?;
    }
    Ok(json(StatusCode::OK, model))
}

/// Fills a single user's `auth_state` where the model carries the key (the caller holds
/// `admin:auth_state` for them) and the hub keeps it, as JupyterHub does for one user.
async fn fill_auth_state(hub: &Services, model: &mut Value, user_id: i64) -> Result<(), ApiError> {
    let (Some(keeper), Some(slot)) = (&hub.auth_states, model.get_mut("auth_state")) else {
        return Ok(());
    };
    *slot = keeper.load(&hub.store, user_id).await?;
    Ok(())
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
    let row = users::create_one(&hub, &name, req.admin).await?;
    let b = bundle(&hub, vec![row]).await?;
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
    /// The user's authentication state (scope `admin:auth_state`; kept only with
    /// `[auth] enable_auth_state`); `null` forgets it.
    #[serde(default, deserialize_with = "present")]
    auth_state: Option<Value>,
}

/// `PATCH /users/{name}`.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    access::check_user(&hub.store, &caller.0, &["admin:users"], &name).await?;
    let user = user_or_404(&hub, &name).await?;
    let req: PatchUser =
        body_as(body)?.ok_or_else(|| ApiError::bad_request("Request body is empty"))?;
    if let Some(state) = &req.auth_state {
        access::check_user(&hub.store, &caller.0, &["admin:auth_state"], &name).await?;
        if !(state.is_object() || state.is_null()) {
            return Err(ApiError::bad_request(
                "auth_state must be a JSON object, or null to forget it",
            ));
        }
        if hub.auth_states.is_none() && !state.is_null() {
            return Err(ApiError::bad_request(
                "This hub keeps no auth_state: set [auth] enable_auth_state and a crypt key to store it",
            ));
        }
    }
    let account_role = match req.account_role {
        Some(role) => Some(AccountRole::parse(&role).map_err(ApiError::bad_request)?),
        None => None,
    };
    let change = UserChange {
        name: req.name,
        admin: req.admin,
        account_role,
        password: req.password,
    };
    let fresh = users::change(&hub, &user, change).await?;
    if let (Some(state), Some(keeper)) = (&req.auth_state, &hub.auth_states) {
        keeper.save(&hub.store, user.id, state).await?;
    }
    let b = bundle(&hub, vec![fresh]).await?;
    let mut model = b
        .first()
        .map(|b| user_model(&caller.0.scopes, b, false))
        .unwrap_or(Value::Null);
    fill_auth_state(&hub, &mut model, user.id).await?;
    Ok(json(StatusCode::OK, model))
}

/// A field given, even as `null`, is `Some` (`null` included); a field left out stays `None`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `DELETE /users/{name}`: stops the user's servers first.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    access::check_user(&hub.store, &caller.0, &["delete:users"], &name).await?;
    let user = user_or_404(&hub, &name).await?;
    users::delete(&hub, &user, caller.0.user()).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /users/{name}/activity`: raises last_activity of the user and the named servers.
pub async fn activity(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    access::check_user(&hub.store, &caller.0, &["users:activity"], &name).await?;
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
                let t = match info.get("last_activity") {
                    Some(v) => parse(v, "last_activity")?,
                    None => {
                        return Err(ApiError::bad_request(
                            "servers.<name>.last_activity is required",
                        ))
                    }
                };
                server_times.push((server_name.clone(), t));
            }
        }
        Some(_) => return Err(ApiError::bad_request("servers must be an object")),
    }
    if user_time.is_none() && server_times.is_empty() {
        return Err(ApiError::bad_request(
            "Activity must include last_activity or servers",
        ));
    }
    users::record_activity(&hub, &user, user_time, &server_times).await?;
    Ok(super::empty_json(StatusCode::OK))
}
