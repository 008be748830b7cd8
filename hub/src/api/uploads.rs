//! `/hub/api/uploads/{id}`: resumable uploads into datasets and projects, the core of tus 1.0.0
//! (`HEAD` for the offset, `PATCH` with `Upload-Offset`, `DELETE` to give up; `GET` answers the
//! upload as JSON). An upload is declared first on its dataset or project (`POST …/uploads`);
//! a project upload's id starts with `p`, a dataset upload's is hexadecimal. See
//! `docs/datasets.md`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json as j, Value};

use super::{empty, json, ApiCaller};
use crate::clock;
use crate::db::DatasetRow;
use crate::domain::datasets::{self, UploadState, Viewer};
use crate::domain::project_uploads::{self, ProjectUploadState};
use crate::domain::{dataset_files, Services};
use crate::error::ApiError;

/// The tus protocol version spoken.
const TUS_VERSION: &str = "1.0.0";

/// An upload's answer, whichever its kind: its JSON and its tus headers.
pub(crate) struct Answer {
    /// The upload as JSON.
    pub(crate) model: Value,
    offset: u64,
    size: u64,
    sha256: Option<String>,
    url: String,
}

impl Answer {
    /// A dataset upload's answer.
    pub(crate) fn dataset(dataset: &DatasetRow, state: &UploadState) -> Self {
        let u = &state.upload;
        let url = format!("/hub/api/uploads/{}", u.id);
        Answer {
            model: j!({
                "id": u.id,
                "dataset": format!("{}/{}", dataset.owner, dataset.name),
                "path": u.path,
                "size": u.size,
                "offset": state.offset,
                "complete": state.file.is_some(),
                "url": url,
                "file": state.file.as_ref().map(|f| j!({"path": f.path, "size": f.size, "sha256": f.sha256})),
                "created": clock::iso(u.created),
                "updated": clock::iso(u.updated),
            }),
            offset: state.offset,
            size: u.size.max(0) as u64,
            sha256: state.file.as_ref().map(|f| f.sha256.clone()),
            url,
        }
    }

    /// A project upload's answer.
    pub(crate) fn project(state: &ProjectUploadState) -> Self {
        let u = &state.upload;
        let url = format!("/hub/api/uploads/{}", u.id);
        let complete = state.sha256.is_some();
        Answer {
            model: j!({
                "id": u.id,
                "project": state.project,
                "path": u.path,
                "size": u.size,
                "offset": state.offset,
                "complete": complete,
                "url": url,
                "file": state.sha256.as_ref().map(|s| j!({"path": u.path, "size": u.size, "sha256": s})),
                "created": clock::iso(u.created),
                "updated": clock::iso(u.updated),
            }),
            offset: state.offset,
            size: u.size.max(0) as u64,
            sha256: state.sha256.clone(),
            url,
        }
    }

    /// The response: the JSON (with `body`) or nothing, with the tus headers; a 201 also says
    /// where the upload is (`Location`).
    pub(crate) fn respond(self, status: StatusCode, body: bool) -> Response {
        let mut response = if body {
            json(status, self.model)
        } else {
            empty(status)
        };
        let headers = response.headers_mut();
        headers.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
        headers.insert("upload-offset", HeaderValue::from(self.offset));
        headers.insert("upload-length", HeaderValue::from(self.size));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(v) = self.sha256.and_then(|s| HeaderValue::from_str(&s).ok()) {
            headers.insert("x-xiji-sha256", v);
        }
        if status == StatusCode::CREATED {
            if let Ok(v) = HeaderValue::from_str(&self.url) {
                headers.insert(header::LOCATION, v);
            }
        }
        response
    }
}

/// The caller as the uploader of `id`: a dataset upload needs the `datasets` scope, a project
/// upload the `projects` scope.
fn uploader(caller: &ApiCaller, id: &str) -> Result<Viewer, ApiError> {
    if project_uploads::is_project_upload(id) {
        super::acting_user(caller, "Projects", "read:projects", "projects", true)
    } else {
        super::acting_user(caller, "Datasets", "read:datasets", "datasets", true)
    }
}

/// Where an upload stands, as an answer; `take_over` stops a `PATCH` still writing it.
async fn state_of(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
    take_over: bool,
) -> Result<Answer, ApiError> {
    if project_uploads::is_project_upload(id) {
        let state = project_uploads::upload_state(hub, viewer, id, take_over).await?;
        return Ok(Answer::project(&state));
    }
    let state = datasets::upload_state(hub, viewer, id, take_over).await?;
    dataset_answer(hub, &state).await
}

async fn dataset_answer(hub: &Services, state: &UploadState) -> Result<Answer, ApiError> {
    let dataset = hub
        .store
        .dataset(state.upload.dataset_id)
        .await?
        .ok_or_else(|| ApiError::not_found("The upload's dataset is gone"))?;
    Ok(Answer::dataset(&dataset, state))
}

/// `GET /uploads/{id}`: where an upload stands.
pub async fn status(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = uploader(&caller, &id)?;
    Ok(state_of(&hub, &v, &id, false)
        .await?
        .respond(StatusCode::OK, true))
}

/// `HEAD /uploads/{id}`: tus's offset request, made to resume: a `PATCH` still writing the
/// upload (a connection that hangs) is stopped first, keeping what it wrote.
pub async fn head(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = uploader(&caller, &id)?;
    Ok(state_of(&hub, &v, &id, true)
        .await?
        .respond(StatusCode::OK, false))
}

/// `PATCH /uploads/{id}`: bytes from `Upload-Offset`. A refused body is read to its end first
/// (thrown away), so a client that sends it whole before reading gets the answer.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut stream = body.into_data_stream().boxed();
    let checked = (|| {
        let v = uploader(&caller, &id)?;
        let offset = headers
            .get("upload-offset")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::bad_request("Send the Upload-Offset header: the byte this body starts at")
            })?
            .trim()
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("Upload-Offset must be a whole number of bytes"))?;
        Ok::<_, ApiError>((v, offset))
    })();
    let (v, offset) = match checked {
        Ok(c) => c,
        Err(e) => {
            dataset_files::drain(&mut stream).await;
            return Err(e);
        }
    };
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let answer = if project_uploads::is_project_upload(&id) {
        project_uploads::write(&hub, &v, &id, offset, content_length, &mut stream)
            .await
            .map(|state| Answer::project(&state))
            .map_err(ApiError::from)
    } else {
        match datasets::write_upload(&hub, &v, &id, offset, content_length, &mut stream).await {
            Ok(state) => dataset_answer(&hub, &state).await,
            Err(e) => Err(e.into()),
        }
    };
    match answer {
        Ok(answer) => Ok(answer.respond(StatusCode::NO_CONTENT, false)),
        Err(e) => {
            // Read to its end (thrown away), so a client that sends it whole gets the answer.
            dataset_files::drain(&mut stream).await;
            Err(e)
        }
    }
}

/// `DELETE /uploads/{id}`: gives an upload up.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let v = uploader(&caller, &id)?;
    if project_uploads::is_project_upload(&id) {
        project_uploads::cancel(&hub, &v, &id).await?;
    } else {
        datasets::cancel_upload(&hub, &v, &id).await?;
    }
    let mut response = empty(StatusCode::NO_CONTENT);
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    Ok(response)
}
