//! `/hub/admin/storage`: the storage pools' administration — each pool's size, used and free
//! space and what it holds, adding a pool online, draining, activating and removing one.
//!
//! Every change is a form posted with the XSRF token, then a redirect back with a message; a
//! refused pool is shown again with the values typed and the reason.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;

use super::auth::{check_xsrf, parse_form};
use super::cluster::size_text;
use super::{redirect, PageError, PageRequest};
use crate::db::{PoolState, PoolType};
use crate::domain::access::administers_installation;
use crate::domain::storage_pools::{self, PoolChange, PoolRequest};
use crate::domain::{HubError, Services};

/// A pool as the page shows it.
#[derive(Debug, Serialize)]
struct PoolView {
    id: i64,
    name: String,
    path: String,
    fs_type: PoolType,
    mounted_type: Option<String>,
    mount_source: Option<String>,
    state: PoolState,
    size: String,
    used: String,
    free: String,
    used_percent: u64,
    capacity: Option<String>,
    problem: Option<String>,
    contents: Vec<(String, usize)>,
    empty: bool,
}

/// What the add form holds, as typed.
#[derive(Debug, Clone, Default, Serialize)]
struct PoolFormValues {
    name: String,
    path: String,
    fs_type: String,
    capacity_gb: String,
}

/// The changes a `?done=` can report, each with its `pool_done_*` message.
const DONE: [&str; 4] = ["added", "drained", "activated", "removed"];

/// The caller, if it administers storage; 403 otherwise.
fn require_storage_admin(page: &PageRequest) -> Result<(), PageError> {
    let (_, caller) = page.require_user()?;
    if administers_installation(&caller.scopes) {
        Ok(())
    } else {
        Err(PageError::status(StatusCode::FORBIDDEN))
    }
}

async fn pool_views(hub: &Services) -> Result<Vec<PoolView>, PageError> {
    let mut views = Vec::new();
    for pool in hub.store.list_pools().await? {
        let usage = storage_pools::usage_of(&pool).await;
        let contents = storage_pools::contents(&hub.store, pool.id).await?;
        let used_percent = (usage.used_bytes.saturating_mul(100))
            .checked_div(usage.size_bytes)
            .unwrap_or(0)
            .min(100);
        views.push(PoolView {
            id: pool.id,
            name: pool.name.clone(),
            path: pool.path.clone(),
            fs_type: pool.fs_type,
            mounted_type: usage.mount.as_ref().map(|m| m.mounted_type.clone()),
            mount_source: usage.mount.as_ref().map(|m| m.source.clone()),
            state: pool.state,
            size: size_text(usage.size_bytes),
            used: size_text(usage.used_bytes),
            free: size_text(usage.free_bytes),
            used_percent,
            capacity: pool
                .capacity_bytes
                .and_then(|c| u64::try_from(c).ok())
                .map(size_text),
            problem: usage.problem,
            empty: contents.is_empty(),
            contents: contents
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
        });
    }
    Ok(views)
}

fn render(
    page: &PageRequest,
    status: StatusCode,
    pools: Vec<PoolView>,
    values: &PoolFormValues,
    error: Option<String>,
    done: Option<&'static str>,
) -> Response {
    page.render_with_status(
        status,
        "admin_storage.html",
        context! {
            page => "admin-storage",
            pools => pools,
            values => values,
            types => PoolType::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            error => error,
            done => done,
        },
    )
}

/// `GET /hub/admin/storage`.
pub(crate) async fn admin_list(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_storage_admin(&page)?;
    let done = query
        .iter()
        .rev()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| DONE.iter().find(|d| **d == v.as_str()))
        .map(|d| page.lang.text(&format!("pool_done_{d}")));
    let values = PoolFormValues {
        fs_type: PoolType::Local.as_str().to_owned(),
        ..PoolFormValues::default()
    };
    Ok(render(
        &page,
        StatusCode::OK,
        pool_views(&hub).await?,
        &values,
        None,
        done,
    ))
}

/// A refusal the form can show, or the error page.
fn form_error(e: HubError) -> Result<String, PageError> {
    match e {
        HubError::BadRequest(m) | HubError::Conflict(m) => Ok(m),
        other => Err(other.into()),
    }
}

/// `POST /hub/admin/storage/new`: adds a pool.
pub(crate) async fn admin_create(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    require_storage_admin(&page)?;
    let form: HashMap<String, String> = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let values = PoolFormValues {
        name: text("name"),
        path: text("path"),
        fs_type: text("fs_type"),
        capacity_gb: text("capacity_gb"),
    };
    let capacity = if values.capacity_gb.is_empty() {
        Ok(None)
    } else {
        values
            .capacity_gb
            .parse::<f64>()
            .ok()
            .filter(|gb| gb.is_finite() && *gb > 0.0 && *gb < 1.0e9)
            // Whole bytes of a positive size below 2^60: the conversion is exact enough.
            .map(|gb| Some((gb * f64::from(1u32 << 30)).round() as i64))
            .ok_or_else(|| page.lang.text("pool_capacity_invalid").to_owned())
    };
    let result = match capacity {
        Ok(capacity_bytes) => storage_pools::add(
            &hub,
            PoolRequest {
                name: Some(values.name.clone()),
                path: Some(values.path.clone()),
                fs_type: Some(values.fs_type.clone()),
                capacity_bytes,
            },
        )
        .await
        .map_err(form_error),
        Err(message) => Err(Ok(message)),
    };
    match result {
        Ok(_) => Ok(redirect("/hub/admin/storage?done=added")),
        Err(refusal) => Ok(render(
            &page,
            StatusCode::BAD_REQUEST,
            pool_views(&hub).await?,
            &values,
            Some(refusal?),
            None,
        )),
    }
}

/// `POST /hub/admin/storage/{id}/{action}`: `drain`, `activate` or `remove` (an empty pool).
pub(crate) async fn admin_action(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    require_storage_admin(&page)?;
    let id: i64 = id
        .parse()
        .map_err(|_| PageError::status(StatusCode::NOT_FOUND))?;
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let state_change = |state: PoolState| PoolChange {
        state: Some(state.as_str().to_owned()),
        capacity_bytes: None,
    };
    let result = match action.as_str() {
        "drain" => storage_pools::change(&hub, id, state_change(PoolState::Draining))
            .await
            .map(|_| "drained"),
        "activate" => storage_pools::change(&hub, id, state_change(PoolState::Active))
            .await
            .map(|_| "activated"),
        "remove" => storage_pools::remove(&hub, id).await.map(|()| "removed"),
        _ => return Err(PageError::status(StatusCode::NOT_FOUND)),
    };
    match result {
        Ok(done) => Ok(redirect(&format!("/hub/admin/storage?done={done}"))),
        Err(e) => {
            let message = form_error(e)?;
            let values = PoolFormValues {
                fs_type: PoolType::Local.as_str().to_owned(),
                ..PoolFormValues::default()
            };
            Ok(render(
                &page,
                StatusCode::CONFLICT,
                pool_views(&hub).await?,
                &values,
                Some(message),
                None,
            ))
        }
    }
}
