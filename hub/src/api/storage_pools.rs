//! `/hub/api/storage-pools…`: the storage pools (a Xiji extension; administrators only).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json as j, Value};

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::db::PoolRow;
use crate::domain::access::administers_installation;
use crate::domain::storage_pools::{self, PoolChange, PoolRequest};
use crate::domain::Services;
use crate::error::ApiError;

/// Administrators only: 403 for everyone else.
fn require_admin(caller: &ApiCaller) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only administrators may see and manage storage pools",
        ))
    }
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::not_found(format!("No storage pool {text}")))
}

/// A pool's JSON: its record, its sizes now and what it holds.
async fn model(hub: &Services, pool: &PoolRow) -> Result<Value, ApiError> {
    let usage = storage_pools::usage_of(pool).await;
    let contents = storage_pools::contents(&hub.store, pool.id).await?;
    Ok(j!({
        "id": pool.id,
        "name": pool.name,
        "path": pool.path,
        "fs_type": pool.fs_type,
        "state": pool.state,
        "capacity_bytes": pool.capacity_bytes,
        "size_bytes": usage.size_bytes,
        "used_bytes": usage.used_bytes,
        "free_bytes": usage.free_bytes,
        "filesystem_size_bytes": usage.filesystem_size_bytes,
        "filesystem_free_bytes": usage.filesystem_free_bytes,
        "mount": usage.mount,
        "problem": usage.problem,
        "contents": contents,
        "created": clock::iso(pool.created),
        "updated": clock::iso(pool.updated),
    }))
}

/// `GET /storage-pools`.
pub async fn list(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let mut out = Vec::new();
    for pool in hub.store.list_pools().await? {
        out.push(model(&hub, &pool).await?);
    }
    Ok(json(StatusCode::OK, Value::Array(out)))
}

/// `POST /storage-pools`: adds a pool after checking its mount.
pub async fn create(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let request: PoolRequest = body_as(body)?.ok_or_else(|| {
        ApiError::bad_request("Give the pool as a JSON object: name, path, fs_type")
    })?;
    let pool = storage_pools::add(&hub, request).await?;
    Ok(json(StatusCode::CREATED, model(&hub, &pool).await?))
}

/// `GET /storage-pools/{id}`.
pub async fn get_one(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let pool = storage_pools::pool_or_404(&hub.store, parse_id(&id)?).await?;
    Ok(json(StatusCode::OK, model(&hub, &pool).await?))
}

/// `PATCH /storage-pools/{id}`: state (`active`, `draining`) and cap.
pub async fn patch(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let change: PoolChange = body_as(body)?.unwrap_or_default();
    let pool = storage_pools::change(&hub, parse_id(&id)?, change).await?;
    Ok(json(StatusCode::OK, model(&hub, &pool).await?))
}

/// `DELETE /storage-pools/{id}`: only an empty pool.
pub async fn delete(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    storage_pools::remove(&hub, parse_id(&id)?).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
