//! JupyterHub's REST API under `/hub/api`: every route in one place; handlers are thin — they
//! extract, check scopes, call the domain, render JupyterHub's JSON.

mod billing;
mod compute_nodes;
mod datasets;
mod groups;
mod home_page;
mod hub_info;
mod images;
mod metering;
mod models;
mod oauth;
mod openapi;
mod project_files;
mod projects;
mod quotas;
mod release;
mod save_image;
mod servers;
mod storage_pools;
mod tokens;
mod uploads;
mod users;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::Value;

use crate::domain::access::administers_installation;
use crate::domain::identity::Caller;
use crate::domain::Services;
use crate::error::ApiError;
use crate::rbac::{self, Access, Resource};

/// The version reported to JupyterHub clients (`GET /hub/api`, `X-JupyterHub-Version`): the
/// JupyterHub API level Xiji implements, PEP 440-valid so `packaging.version` parses it.
pub const JUPYTERHUB_VERSION: &str = "5.5.1";

/// The `/hub/api` routes.
pub fn routes(hub: Arc<Services>) -> Router {
    let max_body = hub.config.max_body_bytes;
    Router::new()
        .route("/hub/api", get(hub_info::root))
        .route("/hub/api/", get(hub_info::root))
        .route("/hub/api/info", get(hub_info::info))
        .route("/hub/api/user", get(hub_info::whoami))
        .route(
            "/hub/api/proxy",
            get(hub_info::get_proxy).post(hub_info::sync_proxy),
        )
        .route("/hub/api/services", get(hub_info::list_services))
        .route("/hub/api/services/{name}", get(hub_info::get_service))
        .route("/hub/api/health", get(hub_info::health))
        .route("/hub/api/openapi.json", get(openapi::document))
        .route("/hub/api/users", get(users::list).post(users::create_many))
        .route(
            "/hub/api/users/{name}",
            get(users::get_one)
                .post(users::create_one)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/hub/api/users/{name}/activity", post(users::activity))
        .route(
            "/hub/api/users/{name}/server",
            post(servers::start_default).delete(servers::stop_default),
        )
        .route(
            "/hub/api/users/{name}/server/progress",
            get(servers::progress_default),
        )
        // An empty server name is the default server, as in JupyterHub.
        .route(
            "/hub/api/users/{name}/servers/",
            post(servers::start_default).delete(servers::stop_default),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}",
            post(servers::start_named).delete(servers::stop_named),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}/progress",
            get(servers::progress_named),
        )
        .route(
            "/hub/api/users/{name}/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route(
            "/hub/api/users/{name}/tokens/{token_id}",
            get(tokens::get_one).delete(tokens::delete),
        )
        .route(
            "/hub/api/groups",
            get(groups::list).post(groups::create_many),
        )
        .route(
            "/hub/api/groups/{name}",
            get(groups::get_one)
                .post(groups::create_one)
                .delete(groups::delete),
        )
        .route(
            "/hub/api/groups/{name}/users",
            post(groups::add_users).delete(groups::remove_users),
        )
        .route(
            "/hub/api/groups/{name}/properties",
            axum::routing::put(groups::set_properties),
        )
        .route("/hub/api/images", get(images::list).post(images::create))
        .route(
            "/hub/api/images/{id}",
            get(images::get_one)
                .patch(images::patch)
                .delete(images::delete),
        )
        .route(
            "/hub/api/datasets",
            get(datasets::list).post(datasets::create),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}",
            get(datasets::get_one)
                .patch(datasets::patch)
                .delete(datasets::delete),
        )
        .route("/hub/api/datasets/{owner}/{name}/tree", get(datasets::tree))
        .route("/hub/api/datasets/{owner}/{name}/zip", get(datasets::zip))
        .route(
            "/hub/api/datasets/{owner}/{name}/files/{*path}",
            get(datasets::download).delete(datasets::delete_file),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/move",
            post(datasets::move_path),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/uploads",
            get(datasets::list_uploads).post(datasets::start_upload),
        )
        .route(
            "/hub/api/uploads/{id}",
            get(uploads::status)
                .head(uploads::head)
                .patch(uploads::patch)
                .delete(uploads::delete),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/cover",
            get(datasets::get_cover)
                .put(datasets::put_cover)
                .delete(datasets::delete_cover),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/shares",
            get(datasets::list_shares),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/shares/{kind}/{grantee}",
            axum::routing::put(datasets::put_share).delete(datasets::delete_share),
        )
        .route(
            "/hub/api/datasets/{owner}/{name}/star",
            axum::routing::put(datasets::star).delete(datasets::unstar),
        )
        .route(
            "/hub/api/projects",
            get(projects::list).post(projects::create),
        )
        .route("/hub/api/projects/import", post(projects::import))
        .route(
            "/hub/api/projects/{owner}/{name}/export",
            get(projects::export),
        )
        .route("/hub/api/projects/{owner}/{name}/tree", get(projects::tree))
        .route(
            "/hub/api/projects/{owner}/{name}/files/{*path}",
            get(projects::download).delete(project_files::delete),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/uploads",
            get(project_files::list_uploads).post(project_files::start_upload),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/move",
            post(project_files::move_path),
        )
        .route(
            "/hub/api/projects/{owner}/{name}",
            get(projects::get_one)
                .patch(projects::patch)
                .delete(projects::delete),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/members",
            get(projects::list_members),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/members/{user}",
            axum::routing::put(projects::put_member).delete(projects::delete_member),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/star",
            axum::routing::put(projects::star).delete(projects::unstar),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/fork",
            post(projects::fork),
        )
        .route("/hub/api/projects/{owner}/{name}/run", post(projects::run))
        .route(
            "/hub/api/home-page",
            get(home_page::get).put(home_page::put),
        )
        .route("/hub/api/ledger", get(metering::ledger))
        .route("/hub/api/reservations", get(metering::reservations))
        .route(
            "/hub/api/compute-nodes",
            get(compute_nodes::list_nodes).post(compute_nodes::add_node),
        )
        .route(
            "/hub/api/compute-nodes/{name}",
            axum::routing::delete(compute_nodes::remove_node),
        )
        .route(
            "/hub/api/compute-pools",
            get(compute_nodes::list_pools).post(compute_nodes::create_pool),
        )
        .route(
            "/hub/api/compute-pools/{name}",
            axum::routing::delete(compute_nodes::delete_pool),
        )
        .route(
            "/hub/api/storage-pools",
            get(storage_pools::list).post(storage_pools::create),
        )
        .route(
            "/hub/api/storage-pools/{id}",
            get(storage_pools::get_one)
                .patch(storage_pools::patch)
                .delete(storage_pools::delete),
        )
        .route(
            "/hub/api/users/{name}/server/save-image",
            post(save_image::save_default),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}/save-image",
            post(save_image::save_named),
        )
        .route(
            "/hub/api/users/{name}/save-jobs",
            get(save_image::list_jobs),
        )
        .route(
            "/hub/api/save-jobs/{id}",
            get(save_image::get_job).delete(save_image::cancel_job),
        )
        .route("/hub/api/release-policies", get(release::list))
        .route(
            "/hub/api/release-policies/default",
            axum::routing::put(release::put_default),
        )
        .route(
            "/hub/api/users/{name}/release-policy",
            get(release::get_user)
                .put(release::put_user)
                .delete(release::delete_user),
        )
        .route(
            "/hub/api/users/{name}/server/release",
            post(release::release_default),
        )
        .route(
            "/hub/api/users/{name}/servers/{server}/release",
            post(release::release_named),
        )
        .route(
            "/hub/api/users/{name}/releases",
            get(release::list_releases),
        )
        .route(
            "/hub/api/prices",
            get(billing::list_prices).post(billing::add_price),
        )
        .route(
            "/hub/api/prices/{id}",
            axum::routing::delete(billing::delete_price),
        )
        .route("/hub/api/usage", get(billing::usage))
        .route("/hub/api/usage.csv", get(billing::usage_csv))
        .route("/hub/api/users/{name}/usage", get(billing::user_usage))
        .route(
            "/hub/api/users/{name}/usage.csv",
            get(billing::user_usage_csv),
        )
        .route("/hub/api/users/{name}/usage/live", get(billing::live))
        .route("/hub/api/users/{name}/budgets", get(billing::user_budgets))
        .route("/hub/api/groups/{name}/usage", get(billing::group_usage))
        .route(
            "/hub/api/groups/{name}/usage.csv",
            get(billing::group_usage_csv),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/usage",
            get(billing::project_usage),
        )
        .route(
            "/hub/api/projects/{owner}/{name}/usage.csv",
            get(billing::project_usage_csv),
        )
        .route(
            "/hub/api/budgets",
            get(billing::list_budgets).post(billing::put_budget),
        )
        .route(
            "/hub/api/budgets/settings",
            get(billing::get_budget_settings).put(billing::put_budget_settings),
        )
        .route(
            "/hub/api/budgets/{id}",
            axum::routing::delete(billing::delete_budget),
        )
        .route("/hub/api/quotas/roles", get(quotas::list_roles))
        .route(
            "/hub/api/quotas/roles/{role}",
            get(quotas::get_role).put(quotas::put_role),
        )
        .route(
            "/hub/api/users/{name}/quota",
            get(quotas::get_user)
                .put(quotas::put_user)
                .delete(quotas::delete_user),
        )
        .route(
            "/hub/api/capacity",
            get(quotas::get_capacity).put(quotas::put_capacity),
        )
        .route("/hub/api/oauth2/authorize", get(oauth::authorize))
        .route("/hub/api/oauth2/token", post(oauth::token))
        .route("/hub/api/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(json_rejections))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(hub)
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not Found")
}

/// axum's own extractor rejections (e.g. a path segment that is not UTF-8) are plain text; every
/// API error must be JupyterHub's JSON body, so they are rewritten with the same status and text.
async fn json_rejections(response: Response) -> Response {
    let plain_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    if !response.status().is_client_error() || !plain_text {
        return response;
    }
    let status = response.status();
    let text = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&text).trim().to_owned();
    ApiError::new(status, message).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
}

/// What a URL path segment may hold unescaped.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `text` as one URL path segment (percent-encoded).
pub(crate) fn url_segment(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, SEGMENT).to_string()
}

/// The caller as a user acting on their own things (datasets, projects): a user whose token
/// holds `read_scope` (to read) or `change_scope` (to change) for themself; administrators
/// (unfiltered `admin:users`) always may. `things` names them in the 403's message.
pub(crate) fn acting_user(
    caller: &ApiCaller,
    things: &str,
    read_scope: &str,
    change_scope: &str,
    change: bool,
) -> Result<crate::domain::access::Viewer, ApiError> {
    let user = caller.0.user().ok_or_else(|| {
        ApiError::forbidden(format!(
            "{things} belong to users: a service's token cannot use them"
        ))
    })?;
    let admin = administers_installation(&caller.0.scopes);
    let scope = if change { change_scope } else { read_scope };
    let allowed = rbac::check(
        &caller.0.scopes,
        &[scope],
        &Resource::User {
            name: &user.name,
            groups: &[],
        },
    ) == Access::Allowed;
    if !admin && !allowed {
        return Err(ApiError::forbidden(format!(
            "This token may not {} {}: it lacks the scope {scope}",
            if change { "change" } else { "read" },
            things.to_lowercase()
        )));
    }
    Ok(crate::domain::access::Viewer {
        user: user.clone(),
        admin,
    })
}

/// An authenticated caller; rejects with 403 "Missing or invalid credentials." otherwise.
pub struct ApiCaller(pub Arc<Caller>);

impl FromRequestParts<Arc<Services>> for ApiCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        hub: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        match crate::http::resolve_caller(hub, parts).await? {
            Some(c) => Ok(ApiCaller(c)),
            None => Err(ApiError::missing_credentials()),
        }
    }
}

impl ApiCaller {
    /// JupyterHub's `needs_scope`: 404 when a filtered scope misses, 403 when none is held.
    pub fn require(&self, any_of: &[&str], resource: &Resource<'_>) -> Result<(), ApiError> {
        match rbac::check(&self.0.scopes, any_of, resource) {
            Access::Allowed => Ok(()),
            Access::NotFound => Err(ApiError::no_access()),
            Access::Forbidden { message } => Err(ApiError::forbidden(message)),
        }
    }
}

/// An optional JSON request body: `None` when empty. Too large → 413, invalid JSON → 400, each
/// with JupyterHub's JSON error body.
pub struct JsonBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
            } else {
                ApiError::bad_request(format!("Could not read the request body: {e}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(Some(v)))
            .map_err(|e| ApiError::bad_request(format!("Invalid JSON in body of request: {e}")))
    }
}

/// Deserialises a JSON body into a typed request, with a clear 400 on a wrong shape.
pub fn body_as<T: serde::de::DeserializeOwned>(body: Option<Value>) -> Result<Option<T>, ApiError> {
    match body {
        None => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}"))),
    }
}

/// Offset and limit of a paginated request, cleaned up as JupyterHub does.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Items to skip.
    pub offset: i64,
    /// Items to return.
    pub limit: i64,
    /// Whether the client asked for the pagination envelope.
    pub envelope: bool,
}

impl Page {
    /// Reads `offset`/`limit` (non-integers → 400; negatives made positive; limit capped) and the
    /// `Accept: application/jupyterhub-pagination+json` opt-in.
    pub fn from_request(
        hub: &Services,
        query: &[(String, String)],
        headers: &HeaderMap,
    ) -> Result<Page, ApiError> {
        let envelope = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|v| v.trim() == "application/jupyterhub-pagination+json");
        let read = |key: &str| -> Result<Option<i64>, ApiError> {
            match query.iter().rev().find(|(k, _)| k == key) {
                None => Ok(None),
                Some((_, v)) => v
                    .trim()
                    .parse::<i64>()
                    .map(|n| Some(n.saturating_abs()))
                    .map_err(|_| {
                        ApiError::bad_request(format!("{key} must be an integer, not {v:?}"))
                    }),
            }
        };
        let max = i64::from(hub.config.api_page_max_limit);
        let default = if envelope {
            i64::from(hub.config.api_page_default_limit)
        } else {
            max
        };
        let offset = read("offset")?.unwrap_or(0);
        let limit = read("limit")?.unwrap_or(default).clamp(1, max);
        Ok(Page {
            offset,
            limit,
            envelope,
        })
    }

    /// The response: a bare list, or the envelope with an absolute `next.url`.
    pub fn render(&self, items: Vec<Value>, total: i64, parts: &RequestUrl) -> Value {
        if !self.envelope {
            return Value::Array(items);
        }
        let next_offset = self.offset + self.limit;
        let next = if next_offset < total {
            serde_json::json!({"offset": next_offset, "limit": self.limit, "url": parts.with_page(next_offset, self.limit)})
        } else {
            Value::Null
        };
        serde_json::json!({
            "items": items,
            "_pagination": {"offset": self.offset, "limit": self.limit, "total": total, "next": next}
        })
    }
}

/// The absolute URL of the current request, to build `next.url`.
pub struct RequestUrl {
    base: String,
    path: String,
    query: Vec<(String, String)>,
}

impl RequestUrl {
    /// From the request's Host header (and `X-Forwarded-Proto`), path and query.
    pub fn new(
        hub: &Services,
        headers: &HeaderMap,
        path: &str,
        query: &[(String, String)],
    ) -> Self {
        let base = match &hub.config.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        hub.internal_url()
                            .trim_end_matches('/')
                            .trim_start_matches("http://")
                            .to_owned()
                    });
                let proto = headers
                    .get("x-forwarded-proto")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or("http");
                format!("{proto}://{host}")
            }
        };
        Self {
            base,
            path: path.to_owned(),
            query: query.to_vec(),
        }
    }

    /// The request's query with `offset` and `limit` set, in JupyterHub's order: each key once,
    /// where it first appeared (with all its values), `offset` then `limit` appended if new.
    fn with_page(&self, offset: i64, limit: i64) -> String {
        let mut keys: Vec<(String, Vec<String>)> = Vec::new();
        for (k, v) in &self.query {
            match keys.iter_mut().find(|(key, _)| key == k) {
                Some((_, values)) => values.push(v.clone()),
                None => keys.push((k.clone(), vec![v.clone()])),
            }
        }
        for (key, value) in [("offset", offset), ("limit", limit)] {
            match keys.iter_mut().find(|(k, _)| k == key) {
                Some((_, values)) => *values = vec![value.to_string()],
                None => keys.push((key.to_owned(), vec![value.to_string()])),
            }
        }
        let query: Vec<(String, String)> = keys
            .into_iter()
            .flat_map(|(k, values)| values.into_iter().map(move |v| (k.clone(), v)))
            .collect();
        let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
        format!("{}{}?{}", self.base, self.path, encoded)
    }
}

/// An empty response with a status, `text/plain` like JupyterHub's (which sends no
/// `Content-Type` with a 204).
pub fn empty(status: StatusCode) -> Response {
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, [(header::CONTENT_TYPE, "text/plain")], "").into_response()
}

/// An empty response labelled `application/json`, as JupyterHub's API handlers answer when they
/// finish without a body (`POST /users/{name}/activity`, `POST /proxy`).
pub fn empty_json(status: StatusCode) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], "").into_response()
}

/// A JSON response with a status.
pub fn json(status: StatusCode, value: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}
