//! Starting a server from the browser and JupyterHub's "not running" behaviour: the proxy sends
//! `/user/{name}/…` without a route to the hub, which redirects it to `/hub/user/{name}/…`; there a
//! ready server is retried (with a loop guard), a pending one shows the progress page, a stopped
//! one a 503 page with a Start button.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use minijinja::context;
use serde_json::json;

use super::auth::{check_xsrf, parse_form_pairs};
use super::cluster::{spawn_form, FormRequest, SpawnForm, SpawnValues};
use super::next::next_from_query;
use super::pages::status_of;
use super::{encode_query, redirect, PageError, PageRequest};
use crate::db::{ServerRow, ServerStatus, UserRow};
use crate::domain::access;
use crate::domain::clusters::{self, SpawnOptions};
use crate::domain::identity::Caller;
use crate::domain::servers::{self, service_prefix, url_quote, Outcome};
use crate::domain::HubError;
use crate::domain::Services;

/// How long a spawn started from a page may take before the browser is sent to the progress
/// page (a quick failure is shown directly).
const SPAWN_PAGE_PATIENCE: Duration = Duration::from_millis(1500);

/// After this many redirects from `/hub/user/…` back to a ready server, give up (JupyterHub's
/// `user_redirect_limit`).
const USER_REDIRECT_LIMIT: u32 = 4;

/// `/hub/spawn/alice` or `/hub/spawn/alice/gpu`.
pub(crate) fn spawn_path(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("/hub/spawn/{}", url_quote(user))
    } else {
        format!("/hub/spawn/{}/{}", url_quote(user), url_quote(server))
    }
}

fn pending_path(user: &str, server: &str, next: &str) -> String {
    let base = if server.is_empty() {
        format!("/hub/spawn-pending/{}", url_quote(user))
    } else {
        format!(
            "/hub/spawn-pending/{}/{}",
            url_quote(user),
            url_quote(server)
        )
    };
    format!("{base}?{}", encode_query(&[("next", next)]))
}

/// JupyterHub's answer to an API request for a server that is not running: JSON, status 503.
pub(crate) fn not_running_json(path: &str, spawn_url: &str) -> Response {
    let body = json!({
        "status": 503,
        "message": format!("Server not running at {path}. Start it at {spawn_url}"),
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The page's form of an access check: a 404 or 403 page without the API's message.
async fn check_access(
    hub: &Services,
    caller: &Caller,
    scope: &str,
    user: &str,
    server: &str,
) -> Result<(), PageError> {
    match access::check_server(&hub.store, caller, &[scope], user, server).await {
        Ok(()) => Ok(()),
        Err(HubError::NotFound(_)) => Err(PageError::status(StatusCode::NOT_FOUND)),
        Err(HubError::Forbidden(_)) => Err(PageError::status(StatusCode::FORBIDDEN)),
        Err(e) => Err(e.into()),
    }
}

async fn find_user(hub: &Services, name: &str) -> Result<UserRow, PageError> {
    hub.store
        .user(name)
        .await?
        .ok_or_else(|| PageError::status(StatusCode::NOT_FOUND))
}

fn path_params(params: &HashMap<String, String>) -> (String, String) {
    (
        params.get("name").cloned().unwrap_or_default(),
        params.get("server").cloned().unwrap_or_default(),
    )
}

/// `GET /hub/spawn/{name}[/{server}][?image=ID]`: shows the spawn form when the backend takes
/// options (a cluster's image and sizes), else starts the server (owner, or anyone with
/// `servers` on it) and shows its progress.
pub(crate) async fn spawn_get(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (name, server) = path_params(&params);
    let wanted_image = query
        .iter()
        .rev()
        .find(|(k, _)| k == "image")
        .map(|(_, v)| v.as_str());
    let request = SpawnRequest {
        name: &name,
        server: &server,
        next: next_from_query(&query),
        // A backend that takes sizes asks for them first (JupyterHub's options form).
        form: FormMode::AskFirst { wanted_image },
    };
    spawn(&hub, &page, request).await
}

/// `POST /hub/spawn/{name}[/{server}]`: starts the server with the spawn form's options (a
/// refused request shows the form again, with the reason and the values as typed); a form
/// without option fields (the "not running" page's button) starts with the previous options.
pub(crate) async fn spawn_post(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    // As pairs: a field may repeat (one `dataset` per ticked box).
    let pairs = parse_form_pairs(&body)?;
    let form: HashMap<String, String> = pairs.iter().cloned().collect();
    check_xsrf(&headers, &form)?;
    let (name, server) = path_params(&params);
    let request = SpawnRequest {
        name: &name,
        server: &server,
        next: next_from_query(&query),
        form: match SpawnValues::from_pairs(&pairs) {
            Some(values) => FormMode::Posted(Box::new(values)),
            None => FormMode::Start,
        },
    };
    spawn(&hub, &page, request).await
}

/// How a spawn request relates to the spawn form.
enum FormMode<'a> {
    /// Show the form if the backend takes options, else start.
    AskFirst {
        /// Image to preselect.
        wanted_image: Option<&'a str>,
    },
    /// Start with these options from the form; show it again if they are refused.
    Posted(Box<SpawnValues>),
    /// Start with the previous options.
    Start,
}

struct SpawnRequest<'a> {
    name: &'a str,
    server: &'a str,
    next: Option<String>,
    form: FormMode<'a>,
}

async fn spawn(
    hub: &Arc<Services>,
    page: &PageRequest,
    request: SpawnRequest<'_>,
) -> Result<Response, PageError> {
    let SpawnRequest {
        name,
        server,
        next,
        form,
    } = request;
    let (_, caller) = page.require_user()?;
    if !server.is_empty() && !hub.config.allow_named_servers {
        return Err(PageError::with_key(
            StatusCode::BAD_REQUEST,
            "named_servers_disabled",
        ));
    }
    check_access(hub, caller, "servers", name, server).await?;
    let user = find_user(hub, name).await?;
    let row = hub.store.server(user.id, server).await?;
    let next_given = next.clone();
    let target = next.unwrap_or_else(|| service_prefix(&user.name, server));
    match status_of(row.as_ref()) {
        ServerStatus::Running => return Ok(redirect(&target)),
        ServerStatus::Spawning => return Ok(redirect(&pending_path(&user.name, server, &target))),
        ServerStatus::Stopping => {
            return Err(PageError::with_key(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_stopping_wait",
            ))
        }
        ServerStatus::Stopped => {}
    }
    let form_request =
        |values: Option<SpawnValues>, error: Option<String>, wanted_image| FormRequest {
            user: name,
            server,
            row: row.as_ref(),
            values,
            wanted_image,
            error,
            next: next_given.as_deref(),
        };
    let values = match form {
        FormMode::AskFirst { wanted_image } => {
            if clusters::size_choices(hub).is_some() {
                let form = spawn_form(hub, form_request(None, None, wanted_image)).await?;
                return Ok(render_spawn_page(page, StatusCode::OK, &user, server, form));
            }
            None
        }
        FormMode::Posted(values) => Some(*values),
        FormMode::Start => None,
    };
    let read = values
        .as_ref()
        .map(|v| SpawnOptions::read(hub.spawner.as_ref(), v.user_options()))
        .transpose();
    let options = match read {
        Ok(options) => options,
        Err(HubError::BadRequest(message)) => {
            return refused_form(hub, page, &user, form_request(values, Some(message), None)).await
        }
        Err(e) => return Err(e.into()),
    };
    let task = {
        let hub = Arc::clone(hub);
        let user = user.clone();
        let server = server.to_owned();
        tokio::spawn(async move { servers::start(&hub, &user, &server, options).await })
    };
    match tokio::time::timeout(SPAWN_PAGE_PATIENCE, task).await {
        Ok(Ok(Ok(Outcome::Done))) => Ok(redirect(&target)),
        Ok(Ok(Ok(Outcome::Pending))) | Err(_) => {
            Ok(redirect(&pending_path(&user.name, server, &target)))
        }
        Ok(Ok(Err(HubError::BadRequest(message)))) if values.is_some() => {
            refused_form(hub, page, &user, form_request(values, Some(message), None)).await
        }
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(join)) => {
            tracing::error!(error = %join, "spawn task failed");
            Err(PageError::status(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// The spawn form again, with the values given and why they were refused (a 400).
async fn refused_form(
    hub: &Services,
    page: &PageRequest,
    user: &UserRow,
    request: FormRequest<'_>,
) -> Result<Response, PageError> {
    let server = request.server;
    tracing::info!(user.name = %user.name, server.name = %server, reason = request.error.as_deref().unwrap_or_default(), "spawn form refused");
    let form = spawn_form(hub, request).await?;
    Ok(render_spawn_page(
        page,
        StatusCode::BAD_REQUEST,
        user,
        server,
        form,
    ))
}

/// The spawn form on a page of its own (`spawn.html`).
fn render_spawn_page(
    page: &PageRequest,
    status: StatusCode,
    user: &UserRow,
    server: &str,
    form: SpawnForm,
) -> Response {
    page.render_with_status(
        status,
        "spawn.html",
        context! {
            page => "spawn",
            owner => user.name.clone(),
            is_owner => page.user().is_some_and(|me| me.id == user.id),
            server_name => server,
            form => form,
        },
    )
}

/// `GET /hub/spawn-pending/{name}[/{server}]?next=`: a progress bar fed by the progress stream;
/// goes on to `next` (or the server) when ready.
pub(crate) async fn pending(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (name, server) = path_params(&params);
    let (me, caller) = page.require_user()?;
    check_access(&hub, caller, "read:servers", &name, &server).await?;
    let user = find_user(&hub, &name).await?;
    let row = hub.store.server(user.id, &server).await?;
    let target = next_from_query(&query).unwrap_or_else(|| service_prefix(&user.name, &server));
    let status = status_of(row.as_ref());
    if status == ServerStatus::Running {
        return Ok(redirect(&target));
    }
    let failed = hub
        .live
        .subscribe(&user.name, &server)
        .is_some_and(|rx| rx.borrow().failed);
    if status == ServerStatus::Spawning || failed {
        let view = super::pages::server_view(&user.name, &server, row.as_ref());
        return Ok(page.render(
            "spawn_pending.html",
            context! {
                page => "spawn-pending",
                owner => user.name.clone(),
                is_owner => user.id == me.id,
                server => view,
                next => target,
            },
        ));
    }
    not_running_page(&hub, &page, caller, &user, &server, row.as_ref(), &target).await
}

async fn not_running_page(
    hub: &Services,
    page: &PageRequest,
    caller: &Caller,
    user: &UserRow,
    server: &str,
    row: Option<&ServerRow>,
    next: &str,
) -> Result<Response, PageError> {
    let may_start = match check_access(hub, caller, "servers", &user.name, server).await {
        Ok(()) => true,
        Err(e) if e.is_refusal() => false,
        Err(e) => return Err(e),
    };
    let can_start = may_start && (server.is_empty() || hub.config.allow_named_servers);
    let spawn_action = format!(
        "{}?{}",
        spawn_path(&user.name, server),
        encode_query(&[("next", next)])
    );
    let is_owner = caller.user().is_some_and(|u| u.id == user.id);
    Ok(page.render_with_status(
        StatusCode::SERVICE_UNAVAILABLE,
        "not_running.html",
        context! {
            page => "not-running",
            owner => user.name.clone(),
            is_owner => is_owner,
            server_name => server,
            stopping => status_of(row) == ServerStatus::Stopping,
            can_start => can_start,
            spawn_action => spawn_action,
        },
    ))
}

/// Whether a request for a stopped server looks like an API call (answered with JSON).
fn looks_like_api(headers: &HeaderMap, user_path: &str) -> bool {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            let first = accept.split(',').next().unwrap_or_default().trim();
            first.starts_with("application/json")
        });
    wants_json || user_path.split('/').any(|segment| segment == "api")
}

/// `/hub/user/{name}/{path}`: where the proxy's fallback sends requests for servers without a
/// route. See the module comment.
pub(crate) async fn user_url(
    State(hub): State<Arc<Services>>,
    method: Method,
    headers: HeaderMap,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<Vec<(String, String)>>,
    page: PageRequest,
) -> Result<Response, PageError> {
    let name = params.get("name").cloned().unwrap_or_default();
    let rest = params.get("rest").cloned().unwrap_or_default();
    let user_path = format!("/{rest}");
    // The URL without `/hub`: `/user/alice/lab?x=1`.
    let here = page
        .here
        .strip_prefix("/hub")
        .unwrap_or(&page.here)
        .to_owned();
    let path_only = here.split('?').next().unwrap_or_default().to_owned();
    let user = hub.store.user(&name).await?;
    // The first segment may name a server of this user.
    let server = match (&user, rest.split('/').next()) {
        (Some(u), Some(first)) if hub.config.allow_named_servers && !first.is_empty() => hub
            .store
            .server(u.id, first)
            .await?
            .map(|r| r.name)
            .unwrap_or_default(),
        _ => String::new(),
    };
    if !matches!(method, Method::GET | Method::HEAD) {
        return Ok(not_running_json(&path_only, &spawn_path(&name, &server)));
    }
    let api_like = looks_like_api(&headers, &user_path);
    let caller = match crate::http::bearer_token(&headers) {
        Some(token) => {
            crate::domain::identity::caller_for_token(&hub.store, &hub.auth, token).await?
        }
        None => page.caller.clone(),
    };
    let Some(caller) = caller else {
        if api_like {
            return Ok(not_running_json(&path_only, &spawn_path(&name, &server)));
        }
        return Err(PageError::Login {
            next: page.here.clone(),
        });
    };
    check_access(&hub, &caller, "access:servers", &name, &server)
        .await
        .map_err(|_| PageError::status(StatusCode::NOT_FOUND))?;
    let Some(user) = user else {
        return Err(PageError::status(StatusCode::NOT_FOUND));
    };
    let row = hub.store.server(user.id, &server).await?;
    match status_of(row.as_ref()) {
        ServerStatus::Running => return redirect_to_server(&here, &query).await,
        _ if api_like => return Ok(not_running_json(&path_only, &spawn_path(&name, &server))),
        ServerStatus::Spawning => return Ok(redirect(&pending_path(&user.name, &server, &here))),
        _ => {}
    }
    let failed = hub
        .live
        .subscribe(&user.name, &server)
        .is_some_and(|rx| rx.borrow().failed);
    if failed {
        return Ok(redirect(&pending_path(&user.name, &server, &here)));
    }
    not_running_page(&hub, &page, &caller, &user, &server, row.as_ref(), &here).await
}

/// The server is ready but the request came here: the proxy route may not have been visible
/// yet. Retry with a growing pause, counting in `redirects`; give up after a few.
async fn redirect_to_server(here: &str, query: &[(String, String)]) -> Result<Response, PageError> {
    let redirects: u32 = query
        .iter()
        .rev()
        .find(|(k, _)| k == "redirects")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if redirects >= USER_REDIRECT_LIMIT {
        tracing::warn!(path = %here, redirects, "redirect loop to a ready server");
        return Err(PageError::with_key(
            StatusCode::INTERNAL_SERVER_ERROR,
            "redirect_loop",
        ));
    }
    if redirects > 0 {
        tokio::time::sleep(Duration::from_secs(1 << redirects.min(3))).await;
    }
    let path = here.split('?').next().unwrap_or(here);
    let mut pairs: Vec<(&str, &str)> = query
        .iter()
        .filter(|(k, _)| k != "redirects")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let count = (redirects + 1).to_string();
    pairs.push(("redirects", &count));
    Ok(redirect(&format!("{path}?{}", encode_query(&pairs))))
}

/// `GET /hub/user-redirect/{path}`: `/user/{me}/{path}`, for links that work for everyone.
pub(crate) async fn user_redirect(page: PageRequest) -> Result<Response, PageError> {
    let (me, _) = page.require_user()?;
    let rest = page
        .here
        .strip_prefix("/hub/user-redirect/")
        .unwrap_or_default();
    Ok(redirect(&format!("{}{rest}", service_prefix(&me.name, ""))))
}
