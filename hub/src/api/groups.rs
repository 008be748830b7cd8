//! `/hub/api/groups…`: groups, their members and properties.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::models::group_model;
use super::{body_as, empty, json, ApiCaller, JsonBody, Page, RequestUrl};
use crate::db::GroupRow;
use crate::domain::groups;
use crate::domain::Services;
use crate::error::ApiError;
use crate::rbac::{self, ListFilter, ListKind, Resource};

async fn render(
    hub: &Services,
    caller: &ApiCaller,
    groups: &[GroupRow],
) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
    let members = hub.store.group_members(&ids).await?;
    let roles = hub.store.group_roles(&ids).await?;
    Ok(groups
        .iter()
        .map(|g| {
            group_model(
                &caller.0.scopes,
                g,
                members.get(&g.id).map(Vec::as_slice).unwrap_or_default(),
                roles.get(&g.id).map(Vec::as_slice).unwrap_or_default(),
            )
        })
        .collect())
}

/// `GET /groups`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let filter = rbac::list_filter(&caller.0.scopes, ListKind::Groups)
        .map_err(|f| ApiError::forbidden(f.message))?;
    let page = Page::from_request(&hub, &query, &headers)?;
    let only: Option<Vec<String>> = match filter {
        ListFilter::All => None,
        ListFilter::Only { names, .. } => Some(names.into_iter().collect()),
    };
    let (rows, total) = hub
        .store
        .list_groups(only.as_deref(), page.offset, page.limit)
        .await?;
    let items = render(&hub, &caller, &rows).await?;
    let url = RequestUrl::new(&hub, &headers, uri.path(), &query);
    Ok(json(StatusCode::OK, page.render(items, total, &url)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroups {
    groups: Vec<String>,
}

/// `POST /groups` with `{"groups": [...]}`.
pub async fn create_many(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(&["admin:groups"], &Resource::Hub)?;
    let req: CreateGroups = body_as(body)?
        .ok_or_else(|| ApiError::bad_request("Must specify at least one group to create"))?;
    let created = groups::create_many(&hub, &req.groups).await?;
    let items = render(&hub, &caller, &created).await?;
    Ok(json(StatusCode::CREATED, Value::Array(items)))
}

/// `GET /groups/{name}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(
        &["read:groups", "read:groups:name", "read:roles:groups"],
        &Resource::Group { name: &name },
    )?;
    let group = groups::group_or_404(&hub, &name).await?;
    let items = render(&hub, &caller, &[group]).await?;
    Ok(json(
        StatusCode::OK,
        items.into_iter().next().unwrap_or(Value::Null),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Members {
    #[serde(default)]
    users: Vec<String>,
}

/// `POST /groups/{name}`, optionally with `{"users": [...]}`.
pub async fn create_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(&["admin:groups"], &Resource::Hub)?;
    let req: Members = body_as(body)?.unwrap_or_default();
    let group = groups::create_one(&hub, &name, &req.users).await?;
    let items = render(&hub, &caller, &[group]).await?;
    Ok(json(
        StatusCode::CREATED,
        items.into_iter().next().unwrap_or(Value::Null),
    ))
}

/// `DELETE /groups/{name}`.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(&["delete:groups"], &Resource::Group { name: &name })?;
    groups::delete(&hub, &name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

async fn change_members(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    body: Option<Value>,
    add: bool,
) -> Result<Response, ApiError> {
    caller.require(&["groups"], &Resource::Group { name: &name })?;
    let group = groups::group_or_404(&hub, &name).await?;
    let req: Members = body_as(body)?.ok_or_else(|| ApiError::bad_request("Must specify users"))?;
    groups::change_members(&hub, &group, &req.users, add).await?;
    let items = render(&hub, &caller, &[group]).await?;
    Ok(json(
        StatusCode::OK,
        items.into_iter().next().unwrap_or(Value::Null),
    ))
}

/// `POST /groups/{name}/users` with `{"users": [...]}`.
pub async fn add_users(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    change_members(hub, caller, name, body, true).await
}

/// `DELETE /groups/{name}/users` with `{"users": [...]}`.
pub async fn remove_users(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    change_members(hub, caller, name, body, false).await
}

/// `PUT /groups/{name}/properties` with a JSON object.
pub async fn set_properties(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.require(&["groups"], &Resource::Group { name: &name })?;
    let group = groups::group_or_404(&hub, &name).await?;
    let properties = body.unwrap_or(Value::Null);
    let fresh = groups::set_properties(&hub, &group, &properties).await?;
    let items = render(&hub, &caller, &[fresh]).await?;
    Ok(json(
        StatusCode::OK,
        items.into_iter().next().unwrap_or(Value::Null),
    ))
}
