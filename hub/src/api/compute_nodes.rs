//! `/hub/api/compute-nodes…` and `/hub/api/compute-pools…`: the machines the backend runs
//! clusters on and the compute pools they are in (a Xiji extension; administrators only; see
//! `docs/compute-nodes.md`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde_json::{json as j, Value};
use spawner::Capacity;

use super::{body_as, empty, json, ApiCaller, JsonBody};
use crate::clock;
use crate::domain::access::administers_installation;
use crate::domain::compute_nodes::{self, AddNode, NewComputePool, NodeView, Overview, PoolView};
use crate::domain::Services;
use crate::error::ApiError;

/// Administrators only: 403 for everyone else.
fn require_admin(caller: &ApiCaller) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "Only administrators may see and manage compute nodes (it needs the scope \
             admin:users)",
        ))
    }
}

/// An administrator's request body as `T`, or a 400 that shows the object it wants: the
/// `what` as `example`.
fn admin_request<T: DeserializeOwned>(
    caller: &ApiCaller,
    body: Option<Value>,
    what: &str,
    example: &str,
) -> Result<T, ApiError> {
    require_admin(caller)?;
    body_as(body)?.ok_or_else(|| {
        ApiError::bad_request(format!("Give the {what} as a JSON object: {example}"))
    })
}

/// A list of the compute overview for an administrator: `rows` picks and renders it.
async fn overview_list(
    hub: &Services,
    caller: &ApiCaller,
    rows: impl FnOnce(&Overview) -> Vec<Value>,
) -> Result<Response, ApiError> {
    require_admin(caller)?;
    let overview = compute_nodes::overview(hub).await?;
    Ok(json(StatusCode::OK, Value::Array(rows(&overview))))
}

fn resources(c: &Capacity) -> Value {
    j!({
        "nodes": c.nodes,
        "cpu_millis": c.cpu_millis,
        "memory_mib": c.memory_mib,
        "gpus": c.gpus,
    })
}

fn node_model(v: &NodeView) -> Value {
    let n = &v.node;
    j!({
        "name": n.name,
        "pool": n.pool,
        "pool_defined": v.pool_defined,
        "status": v.status.as_str(),
        "schedulable": n.schedulable,
        "capacity": resources(&n.capacity),
        "allocatable": resources(&n.allocatable),
        "used": resources(&n.used),
        "xiji_nodes": n.xiji_nodes,
        "conditions": n.conditions.iter().map(|c| j!({
            "type": c.kind,
            "status": c.status,
            "reason": c.reason,
            "message": c.message,
        })).collect::<Vec<_>>(),
        "version": n.version,
        "platform": n.platform,
        "gpu_model": n.gpu_model,
        "labels": n.labels,
    })
}

fn pool_model(p: &PoolView) -> Value {
    j!({
        "name": p.pool.name,
        "description": p.pool.description,
        "created": (p.pool.created > 0).then(|| clock::iso(p.pool.created)),
        "nodes": p.nodes,
        "xiji_nodes": p.xiji_nodes,
    })
}

/// `GET /compute-nodes`: every machine the backend reports.
pub async fn list_nodes(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    overview_list(&hub, &caller, |o| o.nodes.iter().map(node_model).collect()).await
}

/// `POST /compute-nodes`: puts a machine, by name, into a pool.
pub async fn add_node(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request: AddNode = admin_request(&caller, body, "node", r#"{"name": …, "pool": …}"#)?;
    let node = compute_nodes::add_node(&hub, request).await?;
    Ok(json(StatusCode::OK, node_model(&node)))
}

/// `DELETE /compute-nodes/{name}`: takes a machine out of Xiji's pools.
pub async fn remove_node(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    compute_nodes::remove_node(&hub, &name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /compute-pools`: every defined pool with its machines.
pub async fn list_pools(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    overview_list(&hub, &caller, |o| o.pools.iter().map(pool_model).collect()).await
}

/// `POST /compute-pools`: defines a pool.
pub async fn create_pool(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let request: NewComputePool =
        admin_request(&caller, body, "pool", r#"{"name": …, "description": …}"#)?;
    let pool = compute_nodes::create_pool(&hub, request).await?;
    Ok(json(
        StatusCode::CREATED,
        j!({
            "name": pool.name,
            "description": pool.description,
            "created": clock::iso(pool.created),
        }),
    ))
}

/// `DELETE /compute-pools/{name}`: removes a pool no machine is in.
pub async fn delete_pool(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller)?;
    compute_nodes::delete_pool(&hub, &name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
