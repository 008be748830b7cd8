//! Saving a running node as an image (a Xiji extension; JupyterHub has no such API):
//!
//! - `POST /users/{name}/server/save-image`, `POST /users/{name}/servers/{server}/save-image`
//!   `{"node", "name", "tag", "description"}` → 202 with the job;
//! - `GET /save-jobs/{id}`, `DELETE /save-jobs/{id}` (cancel), `GET /users/{name}/save-jobs`.
//!
//! Who may: holders of `servers` on the server (its owner, administrators), as for starting it;
//! and the server's own API token (the one the hub gave the server when it started), which may
//! save only its own server and read or cancel only that server's jobs.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::{body_as, json, ApiCaller, JsonBody};
use crate::db::SaveJobRow;
use crate::domain::access;
use crate::domain::save_image::{self, SaveImageRequest};
use crate::domain::users::user_or_404;
use crate::domain::Services;
use crate::error::ApiError;

/// Checks `scope` on a user's server, except for a server's own token (`kind = server`), which
/// is allowed exactly on its own server (`server_id`, known once the server row is read).
async fn authorize(
    hub: &Services,
    caller: &ApiCaller,
    scope: &str,
    user: &str,
    server: &str,
    server_id: Option<i64>,
) -> Result<(), ApiError> {
    let Some(mine) = caller.0.server_id else {
        return Ok(access::check_server(&hub.store, &caller.0, &[scope], user, server).await?);
    };
    if caller.0.user().is_none_or(|u| u.name != user) {
        return Err(ApiError::no_access());
    }
    if server_id == Some(mine) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "A server's API token may save only its own server",
        ))
    }
}

async fn save(
    hub: Arc<Services>,
    caller: ApiCaller,
    name: String,
    server: String,
    body: Option<Value>,
) -> Result<Response, ApiError> {
    // Scope check first (404/403 before anything about the user is revealed), then again with
    // the server's row for a server token.
    let server_token = caller.0.server_id.is_some();
    if !server_token {
        authorize(&hub, &caller, "servers", &name, &server, None).await?;
    } else if caller.0.user().is_none_or(|u| u.name != name) {
        return Err(ApiError::no_access());
    }
    let user = user_or_404(&hub, &name).await?;
    let row = hub.store.server(user.id, &server).await?.ok_or_else(|| {
        ApiError::not_found(if server.is_empty() {
            format!("{} has no server; start it, then save", user.name)
        } else {
            format!("{} has no server named {server:?}", user.name)
        })
    })?;
    if server_token {
        authorize(&hub, &caller, "servers", &name, &server, Some(row.id)).await?;
    }
    let request: SaveImageRequest = body_as(body)?.unwrap_or_default();
    let job = save_image::start(&hub, &user, &row, request).await?;
    Ok(json(StatusCode::ACCEPTED, save_image::model(&job)))
}

/// `POST /users/{name}/server/save-image`.
pub async fn save_default(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    save(hub, caller, name, String::new(), body).await
}

/// `POST /users/{name}/servers/{server}/save-image`.
pub async fn save_named(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((name, server)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    save(hub, caller, name, server, body).await
}

/// The job, if the caller may see it with `scope`; 404 otherwise (as for a missing job).
async fn visible_job(
    hub: &Services,
    caller: &ApiCaller,
    scope: &str,
    id: &str,
) -> Result<SaveJobRow, ApiError> {
    let missing = || ApiError::not_found(format!("No such save job: {id}"));
    let job = hub.store.save_job(id).await?.ok_or_else(missing)?;
    let server_id = job.server_id;
    authorize(
        hub,
        caller,
        scope,
        &job.user_name,
        &job.server_name,
        Some(server_id),
    )
    .await
    .map_err(|e| {
        let hidden = e.status == StatusCode::NOT_FOUND
            || (e.status == StatusCode::FORBIDDEN && scope == "read:servers");
        if hidden {
            missing()
        } else {
            e
        }
    })?;
    Ok(job)
}

/// `GET /save-jobs/{id}`.
pub async fn get_job(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&hub, &caller, "read:servers", &id).await?;
    Ok(json(StatusCode::OK, save_image::model(&job)))
}

/// `DELETE /save-jobs/{id}`: cancels the job (a finished job is left as it is); answers the
/// job's model.
pub async fn cancel_job(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&hub, &caller, "servers", &id).await?;
    let job = save_image::cancel(&hub, &job).await?;
    Ok(json(StatusCode::ACCEPTED, save_image::model(&job)))
}

/// `GET /users/{name}/save-jobs`: the user's save jobs, newest first (a server's token sees
/// its own server's).
pub async fn list_jobs(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let own_server = match caller.0.server_id {
        Some(server_id) => {
            if caller.0.user().is_none_or(|u| u.name != name) {
                return Err(ApiError::no_access());
            }
            Some(server_id)
        }
        None => {
            access::check_user(&hub.store, &caller.0, &["read:servers"], &name).await?;
            None
        }
    };
    let user = user_or_404(&hub, &name).await?;
    let jobs: Vec<Value> = hub
        .store
        .save_jobs_of(user.id)
        .await?
        .iter()
        .filter(|j| own_server.is_none_or(|s| j.server_id == s))
        .map(save_image::model)
        .collect();
    Ok(json(StatusCode::OK, Value::Array(jobs)))
}
