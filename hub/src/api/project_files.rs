//! Changing a project's files from the API: uploads (declared here, sent to
//! `/hub/api/uploads/{id}`), deletes and moves. Listing and downloads are in `super::projects`.
//! Every call needs the editor's access (`projects` scope).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::uploads::Answer;
use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::domain::access::Viewer;
use crate::domain::projects::{self, Access, Reached};
use crate::domain::{project_files, project_uploads, Services};
use crate::error::ApiError;

async fn editable(
    hub: &Services,
    caller: &ApiCaller,
    owner: &str,
    name: &str,
) -> Result<(Viewer, Reached), ApiError> {
    let v = super::acting_user(caller, "Projects", "read:projects", "projects", true)?;
    let reached = projects::reach(hub, &v, owner, name, Access::Edit).await?;
    Ok((v, reached))
}

/// Body of `POST …/uploads`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    path: String,
    size: i64,
}

/// `POST /projects/{owner}/{name}/uploads`: declares a file; 201 with where to send it.
pub async fn start_upload(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (v, r) = editable(&hub, &caller, &owner, &name).await?;
    let request: UploadRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request(
            "Declare the file first: {\"path\": \"folder/notebook.ipynb\", \"size\": bytes}",
        )
    })?;
    let state = project_uploads::start(&hub, &v, &r.project, &request.path, request.size).await?;
    Ok(Answer::project(&state).respond(StatusCode::CREATED, true))
}

/// `GET /projects/{owner}/{name}/uploads`: the caller's unfinished uploads into it.
pub async fn list_uploads(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (v, r) = editable(&hub, &caller, &owner, &name).await?;
    let states = project_uploads::uploads_to(&hub, &v, &r.project).await?;
    let items: Vec<Value> = states.iter().map(|s| Answer::project(s).model).collect();
    Ok(json(StatusCode::OK, Value::Array(items)))
}

/// `DELETE /projects/{owner}/{name}/files/{path}`: a file, link or folder.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (_, r) = editable(&hub, &caller, &owner, &name).await?;
    project_files::delete(&hub, &r.project, &path).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// Body of `…/move`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    from: String,
    to: String,
}

/// `POST /projects/{owner}/{name}/move`: renames or moves a file or folder.
pub async fn move_path(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path((owner, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, r) = editable(&hub, &caller, &owner, &name).await?;
    let request: MoveRequest = body_as(body)?
        .ok_or_else(|| ApiError::bad_request("Give {\"from\": path, \"to\": path}"))?;
    let (from, to) = project_files::move_path(&hub, &r.project, &request.from, &request.to).await?;
    Ok(json(StatusCode::OK, j!({"from": from, "to": to})))
}
