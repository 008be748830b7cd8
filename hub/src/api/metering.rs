//! `/hub/api/ledger` and `/hub/api/reservations`: the raw metering ledger of a user (an audit
//! trail like Slurm's `sacct`) and what every cluster holds or waits for (administrators only;
//! a Xiji extension).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json as j, Value};

use super::{json, ApiCaller};
use crate::clock;
use crate::db::{LedgerRow, ReservationRow};
use crate::domain::access::administers_installation;
use crate::domain::Services;
use crate::error::ApiError;

fn require_admin(caller: &ApiCaller) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only administrators may read the usage ledger and the reservations",
        ))
    }
}

fn row_model(r: &LedgerRow) -> Value {
    j!({
        "run": r.run, "user": r.user_name, "project_id": r.project_id, "server_name": r.server_name,
        "image": r.image, "node": r.node, "cpu_millis": r.cpu_millis, "memory_mib": r.memory_mib,
        "gpus": r.gpus, "start": r.start_s, "end": r.end_s, "seconds": r.end_s - r.start_s,
        "day": r.day, "cpu_millicore_seconds": r.cpu_mcs, "memory_mib_seconds": r.mib_s,
        "gpu_seconds": r.gpu_s, "cpu_used_ms": r.cpu_used_ms, "price_id": r.price_id,
        "cost_micros": r.cost_micros, "kind": r.kind, "recorded": clock::iso(r.recorded),
    })
}

fn reservation_model(r: &ReservationRow) -> Value {
    j!({
        "user": r.user_name, "server_name": r.server_name, "project_id": r.project_id,
        "image": r.image, "nodes": r.nodes, "cpu_millis": r.cpu_millis, "memory_mib": r.memory_mib,
        "gpus": r.gpus, "storage_mib": r.storage_mib, "state": r.state, "run": r.run,
        "created": clock::iso(r.created), "admitted": clock::iso_json(r.admitted),
    })
}

/// `GET /ledger?user={name}[&offset=&limit=]`: the user's ledger rows in the order written.
pub async fn ledger(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let param = |k: &str| {
        query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let name = param("user").ok_or_else(|| ApiError::bad_request("Name the user: ?user={name}"))?;
    let number = |k: &str, default: i64| -> Result<i64, ApiError> {
        param(k).map_or(Ok(default), |v| {
            v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request(format!("{k} must be a whole number ≥ 0, not {v:?}"))
            })
        })
    };
    let offset = number("offset", 0)?;
    let limit = number("limit", 10_000)?.min(10_000);
    let user = hub
        .store
        .user(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("No such user {name}")))?;
    let rows = hub.store.user_ledger(user.id, offset, limit).await?;
    Ok(json(
        StatusCode::OK,
        Value::Array(rows.iter().map(row_model).collect()),
    ))
}

/// `GET /reservations`: admitted clusters, then the line of waiting starts in order.
pub async fn reservations(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    let rows = hub.store.reservations().await?;
    let admitted = hub.store.admitted_amounts().await?;
    let capacity = crate::domain::admission::capacity(&hub).await?;
    Ok(json(
        StatusCode::OK,
        j!({
            "reservations": rows.iter().map(reservation_model).collect::<Vec<_>>(),
            "admitted": {
                "clusters": admitted.clusters, "nodes": admitted.nodes, "cpu_millis": admitted.cpu_millis,
                "memory_mib": admitted.memory_mib, "gpus": admitted.gpus, "storage_mib": admitted.storage_mib,
            },
            "capacity": {
                "nodes": capacity.nodes, "cpu_millis": capacity.cpu_millis,
                "memory_mib": capacity.memory_mib, "gpus": capacity.gpus,
            },
        }),
    ))
}
