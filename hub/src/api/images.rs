//! `/hub/api/images…`: the image library (a Xiji extension; JupyterHub has no such API).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json as j, Value};

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::{ImageFields, ImageKind, ImageRow, Visibility};
use crate::domain::images::{self, ImagePatch};
use crate::domain::Services;
use crate::error::ApiError;

/// The caller's user id and whether it administers the library.
fn who(caller: &ApiCaller) -> (Option<i64>, bool) {
    (
        caller.0.user().map(|u| u.id),
        images::is_library_admin(&caller.0.scopes),
    )
}

async fn model(hub: &Services, row: &ImageRow, admin: bool) -> Result<Value, ApiError> {
    let owner = match row.owner_id {
        Some(id) => hub.store.user_by_id(id).await?.map(|u| u.name),
        None => None,
    };
    let mut v = j!({
        "id": row.id,
        "kind": row.kind,
        "name": row.name,
        "image": row.image,
        "tag": row.tag,
        "reference": images::reference(row),
        "start_options": row.start_options,
        "start_command": row.start_command,
        "vnc_port": row.vnc_port,
        "description": row.description,
        "needs_gpu": row.needs_gpu != 0,
        "enabled": row.enabled != 0,
        "visibility": row.visibility,
        "owner": owner,
        "created": clock::iso(row.created),
        "updated": clock::iso(row.updated),
    });
    // The VNC password reaches only administrators; the desktop bridge uses it server-side.
    if admin {
        if let Some(map) = v.as_object_mut() {
            map.insert("vnc_password".into(), j!(row.vnc_password));
        }
    }
    Ok(v)
}

/// Query of `GET /images`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Only the caller's own saved images.
    #[serde(default)]
    mine: Option<String>,
}

/// `GET /images`: the library (administrators: every record), plus the caller's own images.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let (user_id, admin) = who(&caller);
    let mine = q
        .mine
        .as_deref()
        .is_some_and(|v| !matches!(v, "0" | "false" | ""));
    let rows = hub
        .store
        .list_images(images::listing(user_id, admin, mine))
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.push(model(&hub, row, admin).await?);
    }
    Ok(json(StatusCode::OK, Value::Array(out)))
}

/// Body of `POST /images`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewImage {
    kind: Option<ImageKind>,
    name: String,
    image: String,
    tag: Option<String>,
    #[serde(default)]
    start_options: String,
    #[serde(default)]
    start_command: String,
    vnc_password: Option<String>,
    vnc_port: Option<i64>,
    #[serde(default)]
    description: String,
    #[serde(default)]
    needs_gpu: bool,
    enabled: Option<bool>,
}

/// `POST /images` (administrators): adds a library record.
pub async fn create(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (_, admin) = who(&caller);
    if !admin {
        return Err(ApiError::forbidden(
            "Only administrators may add images to the library",
        ));
    }
    let req: NewImage =
        body_as(body)?.ok_or_else(|| ApiError::bad_request("Give the image as a JSON object"))?;
    let fields = ImageFields {
        kind: req.kind.unwrap_or(ImageKind::Jupyter),
        name: req.name.trim().to_owned(),
        image: req.image,
        tag: req.tag.unwrap_or_else(|| "latest".into()),
        start_options: req.start_options,
        start_command: req.start_command,
        vnc_password: req.vnc_password,
        vnc_port: req.vnc_port,
        description: req.description,
        needs_gpu: req.needs_gpu,
        enabled: req.enabled.unwrap_or(true),
        visibility: Visibility::Library,
        owner_id: None,
    };
    let row = images::create(&hub.store, fields).await?;
    tracing::info!(image.id = row.id, image.reference = %images::reference(&row), "image added to the library");
    Ok(json(StatusCode::CREATED, model(&hub, &row, admin).await?))
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("No such image: {text}")))
}

/// `GET /images/{id}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (user_id, admin) = who(&caller);
    let row = images::visible(&hub.store, parse_id(&id)?, user_id, admin).await?;
    Ok(json(StatusCode::OK, model(&hub, &row, admin).await?))
}

/// `PATCH /images/{id}`.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let (user_id, admin) = who(&caller);
    let change: ImagePatch = body_as(body)?.unwrap_or_default();
    let row = images::patch(&hub.store, parse_id(&id)?, change, user_id, admin).await?;
    Ok(json(StatusCode::OK, model(&hub, &row, admin).await?))
}

/// `DELETE /images/{id}`.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (user_id, admin) = who(&caller);
    images::delete(&hub.store, parse_id(&id)?, user_id, admin).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
