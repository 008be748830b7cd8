//! `/hub/admin/compute-nodes`: the machines the backend runs clusters on — each one's pool,
//! status, CPU, memory and GPUs (capacity, allocatable, what Xiji's clusters use), version,
//! platform and conditions — adding a machine to a pool by its name, taking one out, and the
//! compute pools (the rules are `domain/compute_nodes.rs`).
//!
//! Every change is a form posted with the XSRF token, then a redirect back with a message; a
//! refusal is shown on the page with the values typed and the reason.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use minijinja::context;
use serde::Serialize;
use spawner::Capacity;

use super::auth::{check_xsrf, parse_form};
use super::{redirect, PageError, PageRequest};
use crate::domain::access::administers_installation;
use crate::domain::compute_nodes::{self, AddNode, NewComputePool, NodeView, Overview, PoolView};
use crate::domain::quotas::{cores_text, size_text};
use crate::domain::{HubError, Services};

/// One resource of a machine as the page shows it: texts, and the bar of what Xiji's clusters
/// use of what the machine can hand out.
#[derive(Debug, Serialize)]
struct ResourceView {
    capacity: String,
    allocatable: String,
    used: String,
    /// The bar's `max` and `value` (`None`: nothing to show).
    max: Option<u64>,
    value: u64,
    percent: u64,
    /// The machine has none of it (GPUs, mostly).
    none: bool,
}

#[derive(Debug, Serialize)]
struct ConditionView {
    kind: String,
    status: String,
    reason: Option<String>,
    message: Option<String>,
    /// Whether it is a problem: `Ready` not `True`, or another condition `True`.
    bad: bool,
}

#[derive(Debug, Serialize)]
struct NodeRow {
    name: String,
    pool: Option<String>,
    pool_defined: bool,
    status: &'static str,
    cpu: ResourceView,
    memory: ResourceView,
    gpu: ResourceView,
    gpu_model: Option<String>,
    xiji_nodes: u32,
    version: String,
    platform: String,
    conditions: Vec<ConditionView>,
}

#[derive(Debug, Serialize)]
struct PoolRow {
    name: String,
    description: String,
    nodes: Vec<String>,
    xiji_nodes: u32,
}

/// What the forms hold, as typed.
#[derive(Debug, Clone, Default, Serialize)]
struct FormValues {
    node_name: String,
    node_pool: String,
    pool_name: String,
    pool_description: String,
}

/// The changes a `?done=` can report, each with its `compute_done_*` message.
const DONE: [&str; 4] = ["added", "removed", "pool_added", "pool_removed"];

fn require_admin(page: &PageRequest) -> Result<(), PageError> {
    let (_, caller) = page.require_user()?;
    if administers_installation(&caller.scopes) {
        Ok(())
    } else {
        Err(PageError::status(StatusCode::FORBIDDEN))
    }
}

fn resource(
    pick: impl Fn(&Capacity) -> Option<u64>,
    node: &spawner::ComputeNode,
    text: impl Fn(u64) -> String,
) -> ResourceView {
    let show = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), &text);
    let allocatable = pick(&node.allocatable);
    let used = pick(&node.used).unwrap_or(0);
    let max = allocatable.filter(|a| *a > 0);
    ResourceView {
        capacity: show(pick(&node.capacity)),
        allocatable: show(allocatable),
        used: show(pick(&node.used)),
        max,
        value: max.map_or(0, |m| used.min(m)),
        percent: max.map_or(0, |m| (used.saturating_mul(100) / m).min(100)),
        none: pick(&node.capacity) == Some(0) && max.is_none() && used == 0,
    }
}

fn cores(millis: u64) -> String {
    cores_text(i64::try_from(millis).unwrap_or(i64::MAX))
}

fn mib(mib: u64) -> String {
    match mib {
        0 => "0".to_owned(),
        m => size_text(i64::try_from(m).unwrap_or(i64::MAX)),
    }
}

fn node_row(view: &NodeView) -> NodeRow {
    let n = &view.node;
    NodeRow {
        name: n.name.clone(),
        pool: n.pool.clone(),
        pool_defined: view.pool_defined,
        status: view.status.as_str(),
        cpu: resource(|c| c.cpu_millis, n, cores),
        memory: resource(|c| c.memory_mib, n, mib),
        gpu: resource(|c| c.gpus, n, |g| g.to_string()),
        gpu_model: n.gpu_model.clone(),
        xiji_nodes: n.xiji_nodes,
        version: n.version.clone(),
        platform: n.platform.clone(),
        conditions: n
            .conditions
            .iter()
            .map(|c| ConditionView {
                bad: if c.kind == "Ready" {
                    c.status != "True"
                } else {
                    c.status == "True"
                },
                kind: c.kind.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
            })
            .collect(),
    }
}

fn pool_row(view: &PoolView) -> PoolRow {
    PoolRow {
        name: view.pool.name.clone(),
        description: view.pool.description.clone(),
        nodes: view.nodes.clone(),
        xiji_nodes: view.xiji_nodes,
    }
}

/// The machines and pools; when the backend cannot list its machines, the pools alone and a
/// notice (the reason goes to the hub's log only).
async fn overview(hub: &Services) -> Result<(Overview, bool), PageError> {
    match compute_nodes::overview(hub).await {
        Ok(overview) => Ok((overview, false)),
        Err(HubError::Spawner(detail)) => {
            tracing::error!(error = %detail, "the backend cannot list its compute nodes");
            let pools = hub
                .store
                .list_compute_pools()
                .await?
                .into_iter()
                .map(|pool| PoolView {
                    pool,
                    nodes: Vec::new(),
                    xiji_nodes: 0,
                })
                .collect();
            Ok((
                Overview {
                    nodes: Vec::new(),
                    pools,
                },
                true,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn render(
    hub: &Services,
    page: &PageRequest,
    status: StatusCode,
    values: &FormValues,
    error: Option<String>,
    done: Option<&'static str>,
) -> Result<Response, PageError> {
    let (overview, unlisted) = overview(hub).await?;
    let nodes: Vec<NodeRow> = overview.nodes.iter().map(node_row).collect();
    let pools: Vec<PoolRow> = overview.pools.iter().map(pool_row).collect();
    Ok(page.render_with_status(
        status,
        "admin_compute_nodes.html",
        context! {
            page => "admin-compute-nodes",
            backend => hub.spawner.backend_name(),
            pools_move_machines => hub.spawner.capabilities().compute_pools,
            nodes => nodes,
            pools => pools,
            unlisted => unlisted,
            values => values,
            error => error,
            done => done,
        },
    ))
}

/// `GET /hub/admin/compute-nodes`.
pub(crate) async fn admin_page(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    require_admin(&page)?;
    let done = query
        .iter()
        .rev()
        .find(|(k, _)| k == "done")
        .and_then(|(_, v)| DONE.iter().find(|d| **d == v.as_str()))
        .map(|d| page.lang.text(&format!("compute_done_{d}")));
    render(
        &hub,
        &page,
        StatusCode::OK,
        &FormValues::default(),
        None,
        done,
    )
    .await
}

/// A refusal the page can show with its status, or the error page.
fn refusal(e: HubError) -> Result<(StatusCode, String), PageError> {
    match e {
        HubError::BadRequest(m) => Ok((StatusCode::BAD_REQUEST, m)),
        HubError::NotFound(m) => Ok((StatusCode::NOT_FOUND, m)),
        HubError::Conflict(m) => Ok((StatusCode::CONFLICT, m)),
        other => Err(other.into()),
    }
}

/// `POST /hub/admin/compute-nodes/{action}`: `add` a machine to a pool, `remove` one from its
/// pool, `add-pool`, `remove-pool`.
pub(crate) async fn admin_action(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    require_admin(&page)?;
    let form: HashMap<String, String> = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let text = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let mut values = FormValues::default();
    let result = match action.as_str() {
        "add" => {
            values.node_name = text("name");
            values.node_pool = text("pool");
            compute_nodes::add_node(
                &hub,
                AddNode {
                    name: Some(values.node_name.clone()),
                    pool: Some(values.node_pool.clone()),
                },
            )
            .await
            .map(|_| "added")
        }
        "remove" => compute_nodes::remove_node(&hub, &text("name"))
            .await
            .map(|()| "removed"),
        "add-pool" => {
            values.pool_name = text("name");
            values.pool_description = text("description");
            compute_nodes::create_pool(
                &hub,
                NewComputePool {
                    name: Some(values.pool_name.clone()),
                    description: Some(values.pool_description.clone()),
                },
            )
            .await
            .map(|_| "pool_added")
        }
        "remove-pool" => compute_nodes::delete_pool(&hub, &text("name"))
            .await
            .map(|()| "pool_removed"),
        _ => return Err(PageError::status(StatusCode::NOT_FOUND)),
    };
    match result {
        Ok(done) => Ok(redirect(&format!("/hub/admin/compute-nodes?done={done}"))),
        Err(e) => {
            let (status, message) = refusal(e)?;
            render(&hub, &page, status, &values, Some(message), None).await
        }
    }
}
