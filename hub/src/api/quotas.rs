//! `/hub/api/quotas…`, `/hub/api/users/{name}/quota` and `/hub/api/capacity`: quotas per role,
//! users' exceptions, and the capacity clusters are admitted against (a Xiji extension; see
//! `docs/quotas.md`). Administrators change them; a user reads their own quota and use.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json as j, Value};

use super::{empty, json, ApiCaller, JsonBody};
use crate::clock::{self, Micros};
use crate::db::{Amounts, Limits, RoleQuotaRow};
use crate::domain::access::administers_installation;
use crate::domain::quotas::{self, CapacityView, QuotaAndUse};
use crate::domain::users::user_or_404;
use crate::domain::{access, Services};
use crate::error::ApiError;

fn require_admin(caller: &ApiCaller, what: &str) -> Result<(), ApiError> {
    if administers_installation(&caller.0.scopes) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Only administrators may {what} (it needs the scope admin:users)"
        )))
    }
}

fn updated(t: Micros) -> Value {
    if t > 0 {
        Value::from(clock::iso(t))
    } else {
        Value::Null
    }
}

/// Limits in stored units; `null`: no limit (or, in an exception, the role's).
fn limits(l: &Limits) -> Value {
    j!({
        "clusters": l.clusters,
        "nodes": l.nodes,
        "cpu_millis": l.cpu_millis,
        "memory_mib": l.memory_mib,
        "gpus": l.gpus,
        "storage_mib": l.storage_mib,
    })
}

fn amounts(a: &Amounts) -> Value {
    j!({
        "clusters": a.clusters,
        "nodes": a.nodes,
        "cpu_millis": a.cpu_millis,
        "memory_mib": a.memory_mib,
        "gpus": a.gpus,
        "storage_mib": a.storage_mib,
    })
}

/// What capacity counts: nodes, CPU, memory, GPUs.
fn hardware(l: &Limits) -> Value {
    j!({
        "nodes": l.nodes,
        "cpu_millis": l.cpu_millis,
        "memory_mib": l.memory_mib,
        "gpus": l.gpus,
    })
}

fn role_model(row: &RoleQuotaRow) -> Value {
    j!({"role": row.role, "limits": limits(&row.limits), "updated": updated(row.updated)})
}

fn user_model(name: &str, q: &QuotaAndUse) -> Value {
    j!({
        "name": name,
        "role": q.quota.role,
        "quota": limits(&q.quota.effective()),
        "role_quota": limits(&q.quota.role_limits),
        "exception": q.quota.exception.as_ref().map(|e| j!({
            "limits": limits(&e.limits),
            "updated": updated(e.updated),
            "quota_class": e.source.as_deref().and_then(|s| s.strip_prefix("campus:")),
        })),
        "used": amounts(&q.used),
    })
}

fn capacity_model(c: &CapacityView) -> Value {
    j!({
        "reported": hardware(&c.reported),
        "caps": hardware(&c.caps.limits),
        "caps_updated": updated(c.caps.updated),
        "effective": hardware(&c.effective),
        "reserved": amounts(&c.reserved),
    })
}

/// `GET /quotas/roles`: every role's default limits.
pub async fn list_roles(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller, "see quotas")?;
    let rows = hub.store.role_quotas().await?;
    Ok(json(
        StatusCode::OK,
        Value::Array(rows.iter().map(role_model).collect()),
    ))
}

/// `GET /quotas/roles/{role}`.
pub async fn get_role(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(role): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller, "see quotas")?;
    let role = quotas::role_or_404(&role)?;
    let row = hub.store.role_quota(role).await?;
    Ok(json(StatusCode::OK, role_model(&row)))
}

/// `PUT /quotas/roles/{role}`: replaces the role's limits (a missing field: no limit).
pub async fn put_role(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(role): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller, "change quotas")?;
    let role = quotas::role_or_404(&role)?;
    let row = quotas::set_role(&hub.store, role, body.as_ref()).await?;
    Ok(json(StatusCode::OK, role_model(&row)))
}

/// `GET /users/{name}/quota`: the quota that holds for the user and what they hold now.
pub async fn get_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    access::check_user(&hub.store, &caller.0, &["read:users"], &name).await?;
    let user = user_or_404(&hub, &name).await?;
    let quota = quotas::of_user(&hub.store, &user).await?;
    Ok(json(StatusCode::OK, user_model(&user.name, &quota)))
}

/// `PUT /users/{name}/quota`: sets the user's exception (the fields given override their
/// role's).
pub async fn put_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller, "change quotas")?;
    let user = user_or_404(&hub, &name).await?;
    let quota = quotas::set_exception(&hub.store, &user, body.as_ref()).await?;
    Ok(json(StatusCode::OK, user_model(&user.name, &quota)))
}

/// `DELETE /users/{name}/quota`: removes the user's exception.
pub async fn delete_user(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    require_admin(&caller, "change quotas")?;
    let user = user_or_404(&hub, &name).await?;
    quotas::clear_exception(&hub.store, &user).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /capacity`: what the backend reports, the caps, the capacity that holds and what
/// admitted clusters hold.
pub async fn get_capacity(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
) -> Result<Response, ApiError> {
    require_admin(&caller, "see the capacity")?;
    Ok(json(
        StatusCode::OK,
        capacity_model(&quotas::capacity(&hub).await?),
    ))
}

/// `PUT /capacity`: replaces the caps (a missing field: what the backend reports).
pub async fn put_capacity(
    State(hub): State<Arc<Services>>,
    caller: ApiCaller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    require_admin(&caller, "cap the capacity")?;
    let view = quotas::set_caps(&hub, body.as_ref()).await?;
    Ok(json(StatusCode::OK, capacity_model(&view)))
}
