//! `/hub/api/users/{name}/server[s/{server}]`: start, stop, progress.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::{empty, ApiCaller, JsonBody};
use crate::db::ServerStatus;
use crate::domain::access;
use crate::domain::clusters::SpawnOptions;
use crate::domain::release;
use crate::domain::servers::{self, Outcome};
use crate::domain::users::user_or_404;
use crate::domain::Services;
use crate::error::ApiError;

async fn require_server(
    hub: &Services,
    caller: &ApiCaller,
    scope: &str,
    user: &str,
    server: &str,
) -> Result<(), ApiError> {
    Ok(access::check_server(&hub.store, &caller.0, &[scope], user, server).await?)
}

/// The user options of a start request: JupyterHub 6's `{"user_options": {...}}` or, as in 5.x,
/// the whole body.
fn user_options(body: Option<Value>) -> Result<Option<Value>, ApiError> {
    match body {
        None => Ok(None),
        Some(Value::Object(map)) => {
            let only_new_keys = !map.is_empty()
                && map
                    .keys()
                    .all(|k| k == "user_options" || k == "display_name");
            if only_new_keys {
                Ok(map.get("user_options").cloned())
            } else {
                Ok(Some(Value::Object(map)))
            }
        }
        Some(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object of user options",
        )),
    }
}

async fn start(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    server: String,
    body: Option<Value>,
) -> Result<Response, ApiError> {
    require_server(&hub, &caller, "servers", &name, &server).await?;
    let user = user_or_404(&hub, &name).await?;
    let options = user_options(body)?
        .map(|given| SpawnOptions::read(hub.spawner.as_ref(), given))
        .transpose()?;
    match servers::start(&hub, &user, &server, options).await? {
        Outcome::Done => Ok(empty(StatusCode::CREATED)),
        Outcome::Pending => Ok(empty(StatusCode::ACCEPTED)),
    }
}

/// `POST /users/{name}/server`.
pub async fn start_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    start(hub, caller, name, String::new(), body).await
}

/// `POST /users/{name}/servers/{server}`.
pub async fn start_named(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    start(hub, caller, name, server, body).await
}

async fn stop(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    server: String,
    remove: bool,
) -> Result<Response, ApiError> {
    require_server(&hub, &caller, "delete:servers", &name, &server).await?;
    let user = user_or_404(&hub, &name).await?;
    let row = hub.store.server(user.id, &server).await?;
    let Some(row) = row else {
        if server.is_empty() {
            return Ok(empty(StatusCode::NO_CONTENT));
        }
        return Err(ApiError::not_found(format!(
            "{} has no server named {server}",
            user.name
        )));
    };
    if remove && server.is_empty() {
        return Err(ApiError::bad_request("Cannot delete the default server"));
    }
    let outcome = servers::stop(&hub, &user, &row).await?;
    if remove && outcome == Outcome::Done {
        hub.store.delete_server(row.id).await?;
    }
    Ok(empty(match outcome {
        Outcome::Done => StatusCode::NO_CONTENT,
        Outcome::Pending => StatusCode::ACCEPTED,
    }))
}

/// `DELETE /users/{name}/server`.
pub async fn stop_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    stop(hub, caller, name, String::new(), false).await
}

/// `DELETE /users/{name}/servers/{server}` with optional `{"remove": true}`.
pub async fn stop_named(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let remove = body
        .as_ref()
        .and_then(|b| b.get("remove"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    stop(hub, caller, name, server, remove).await
}

async fn progress(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    server: String,
) -> Result<Response, ApiError> {
    require_server(&hub, &caller, "read:servers", &name, &server).await?;
    let user = user_or_404(&hub, &name).await?;
    let row = hub.store.server(user.id, &server).await?;
    let live = hub.live.subscribe(&user.name, &server);
    let prefix = servers::service_prefix(&user.name, &server);
    let ready_event = json!({"progress": 100, "ready": true, "message": format!("Server ready at {prefix}"),
        "html_message": format!("Server ready at <a href=\"{prefix}\">{prefix}</a>"), "url": prefix});
    // As JupyterHub: a ready server gets the ready event alone; a spawn in progress its events;
    // a stopped server 400; a server the user never had 404.
    let body = match (live, row) {
        (_, Some(row)) if row.status == ServerStatus::Running => {
            Body::from(format!("data: {ready_event}\n\n"))
        }
        (Some(rx), _) => Body::from_stream(follow(rx)),
        (None, Some(row)) => {
            // Released by an administrator since it last started: the stream says why.
            if let Some(forced) = release::latest_forced(&hub.store, &user, &row).await? {
                let by = forced.released_by.as_deref().unwrap_or("an administrator");
                let event = json!({"progress": 100, "failed": true, "released": true,
                    "message": format!("Released by {by}: {}", forced.reason)});
                return Ok((
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, "text/event-stream"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    Body::from(format!("data: {event}\n\n")),
                )
                    .into_response());
            }
            let label = if server.is_empty() {
                user.name.clone()
            } else {
                servers::full_name(&user.name, &server)
            };
            return Err(ApiError::bad_request(format!("{label} is not starting...")));
        }
        (None, None) => {
            return Err(ApiError::not_found(format!(
                "{} has no server named {server}",
                user.name
            )));
        }
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// Replays the events so far, then follows new ones until the spawn ends; a blank line every 8 s
/// keeps the connection alive.
fn follow(
    mut rx: tokio::sync::watch::Receiver<servers::ProgressLog>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    async_stream(move |tx| async move {
        let mut sent = 0usize;
        loop {
            let (chunk, done) = {
                let log = rx.borrow_and_update();
                let chunk: String = log.events[sent..]
                    .iter()
                    .map(|e| format!("data: {e}\n\n"))
                    .collect();
                sent = log.events.len();
                (chunk, log.done)
            };
            if !chunk.is_empty() && tx.send(Ok(bytes::Bytes::from(chunk))).await.is_err() {
                return;
            }
            if done {
                return;
            }
            match tokio::time::timeout(Duration::from_secs(8), rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    if tx
                        .send(Ok(bytes::Bytes::from_static(b"\n\n")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(
    f: F,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::convert::Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// `GET /users/{name}/server/progress`.
pub async fn progress_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    progress(hub, caller, name, String::new()).await
}

/// `GET /users/{name}/servers/{server}/progress`.
pub async fn progress_named(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, server)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    progress(hub, caller, name, server).await
}
