//! Admission of clusters against their user's quota and the hardware's capacity: a start's
//! reservation is decided in the transaction that writes its server (see
//! `db::reservations`); this module says what a start asks for, turns a refusal into the
//! message the user sees (403 over quota, 409 when the hardware is busy), keeps a waiting
//! start informed of its place in line, and admits the line's head whenever capacity frees up.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use spawner::{Capacity, ClusterResources};

use super::{HubError, HubResult};
use crate::clock;
use crate::db::{Excess, Limits, NodeSize, Quantity, Refusal};
use crate::domain::metering::{self, RunMeta};
use crate::domain::Services;

const MIB: u64 = 1024 * 1024;

/// What each node of a cluster of these resources reserves.
pub fn node_size(resources: &ClusterResources) -> NodeSize {
    let mib = |bytes: Option<u64>| {
        bytes.map_or(0, |b| i64::try_from(b.div_ceil(MIB)).unwrap_or(i64::MAX))
    };
    #[allow(clippy::cast_possible_truncation)]
    let cpu_millis = resources
        .cpus
        .map_or(0, |c| (c * 1000.0).ceil().max(0.0) as i64);
    NodeSize {
        cpu_millis,
        memory_mib: mib(resources.memory_bytes),
        gpus: i64::from(resources.gpus),
        storage_mib: mib(resources.storage_bytes),
    }
}

/// The backend's capacity as limits (clusters and storage are not bounded by hardware).
pub fn backend_capacity(capacity: &Capacity) -> Limits {
    let limit = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    Limits {
        clusters: None,
        nodes: limit(capacity.nodes),
        cpu_millis: limit(capacity.cpu_millis),
        memory_mib: limit(capacity.memory_mib),
        gpus: limit(capacity.gpus),
        storage_mib: None,
    }
}

/// The capacity starts are admitted against now: the backend's, capped by the administrator.
pub async fn capacity(hub: &Services) -> HubResult<Limits> {
    Ok(hub
        .store
        .effective_capacity(backend_capacity(&hub.spawner.capacity()))
        .await?)
}

/// Whether the start's options ask to wait in line when the hardware is busy (`"wait": true`;
/// a form's `"on"`/`"true"`, also as a one-element list).
pub fn wants_to_wait(user_options: &Value) -> bool {
    let value = match user_options.get("wait") {
        Some(Value::Array(items)) => items.first(),
        other => other,
    };
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "on" | "true" | "1" | "yes"),
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        _ => false,
    }
}

/// `8 CPU cores`, `16 GiB of memory`…: an amount of a quantity in the user's units.
fn amount(quantity: Quantity, value: i64) -> String {
    fn decimal(value: i64, unit: i64) -> String {
        #[allow(clippy::cast_precision_loss)]
        let v = value as f64 / unit as f64;
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
    let plural = |n: i64, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    match quantity {
        Quantity::Clusters => plural(value, "cluster", "clusters"),
        Quantity::Nodes => plural(value, "node", "nodes"),
        Quantity::Cpu => format!("{} CPU cores", decimal(value, 1000)),
        Quantity::Memory => format!("{} GiB of memory", decimal(value, 1024)),
        Quantity::Gpus => plural(value, "GPU", "GPUs"),
        Quantity::Storage => format!("{} GiB of storage", decimal(value, 1024)),
    }
}

fn quantity_name(quantity: Quantity) -> &'static str {
    match quantity {
        Quantity::Clusters => "clusters at once",
        Quantity::Nodes => "nodes",
        Quantity::Cpu => "CPU",
        Quantity::Memory => "memory",
        Quantity::Gpus => "GPUs",
        Quantity::Storage => "storage",
    }
}

/// The error a refused start answers with.
pub fn refusal_error(refusal: Refusal) -> HubError {
    match refusal {
        Refusal::Quota(Excess {
            quantity,
            limit,
            used,
            asked,
        }) => HubError::Forbidden(format!(
            "Over your quota of {}: you may hold {}, you hold {} (running or waiting) and this start \
             asks for {}, {} too many. Release a cluster or ask for a smaller one.",
            quantity_name(quantity),
            amount(quantity, limit),
            amount(quantity, used),
            amount(quantity, asked),
            amount(quantity, used + asked - limit),
        )),
        Refusal::TooLarge(Excess {
            quantity,
            limit,
            asked,
            ..
        }) => HubError::Conflict(format!(
            "This start asks for {} but the hardware has {} in all: ask for less.",
            amount(quantity, asked),
            amount(quantity, limit),
        )),
        Refusal::Busy {
            excess:
                Excess {
                    quantity,
                    limit,
                    used,
                    asked,
                },
            waiting,
        } => HubError::Conflict(format!(
            "Not enough free {} now: this start asks for {}, {} of {} are free{}. Choose \"wait\" \
             to queue for it, or try again later.",
            quantity_name(quantity),
            amount(quantity, asked),
            amount(quantity, (limit - used).max(0)),
            amount(quantity, limit),
            if waiting > 0 {
                format!(" and {waiting} starts are waiting")
            } else {
                String::new()
            },
        )),
        Refusal::Waiting { waiting } => HubError::Conflict(format!(
            "{waiting} starts are waiting for free capacity before this one. Choose \"wait\" to \
             queue behind them, or try again later."
        )),
    }
}

/// Admits starts from the head of the line while they fit; each admitted one finds out at its
/// next look (see [`wait_for_turn`]).
pub async fn pump(hub: &Arc<Services>) -> HubResult<()> {
    let capacity = backend_capacity(&hub.spawner.capacity());
    while let Some(head) = hub.store.queue_head().await? {
        let prices = hub.store.price_versions().await?;
        let now = clock::now();
        let rows = metering::open_rows(&RunMeta::from(&head), hub.meter.tz(), &prices, now);
        if !hub
            .store
            .admit_head(head.server_id, capacity, &rows, now)
            .await?
        {
            break;
        }
        tracing::info!(server.id = head.server_id, user.name = %head.user_name, "admitted from the line");
        hub.meter.queue_changed.notify_waiters();
    }
    Ok(())
}

/// Waits until a queued start is admitted (`Ok`), or withdrawn (`Err` with why). `on_position`
/// hears the start's place in line whenever it changes.
pub async fn wait_for_turn(
    hub: &Arc<Services>,
    server_id: i64,
    mut on_position: impl FnMut(i64),
) -> Result<(), String> {
    let mut last = None;
    loop {
        let changed = hub.meter.queue_changed.notified();
        let reservation = hub
            .store
            .reservation(server_id)
            .await
            .map_err(|e| e.to_string())?;
        match reservation {
            None => return Err("The start was cancelled while it waited for capacity.".into()),
            Some(r) if r.state == "admitted" => return Ok(()),
            Some(_) => {}
        }
        let position = hub
            .store
            .queue_position(server_id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(position) = position {
            if last != Some(position) {
                on_position(position);
                last = Some(position);
            }
        }
        // A notification when the line moves; a look every ten seconds in any case.
        let _ = tokio::time::timeout(Duration::from_secs(10), changed).await;
    }
}
