//! Metering: every admitted cluster's nodes are written to the append-only usage ledger as
//! intervals `[start, end)` of whole seconds — opened in the transaction that admits the
//! cluster, appended at every checkpoint (`[metering] checkpoint_interval`) and closed when the
//! cluster is released. Each interval is split at the installation's local midnight and at every
//! change of price, so the rows of a day or a project add up exactly to the total, and priced with
//! the version in force. A hub that was killed finds, at its next start, the runs that still
//! hold a reservation and meters them up to the backend's real stop time of each node (Docker's
//! `State.FinishedAt`) or up to now when they still run: no second is lost or invented.

use std::sync::Arc;

use chrono::{Duration as Days, NaiveTime, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;
use spawner::NodeUsage;

use super::billing::{cost_micros, price_at};
use super::HubResult;
use crate::clock;
use crate::db::{LedgerRow, NodeSize, PriceRow, ReservationRow};
use crate::domain::Services;

/// The meter's own state: one writer of the ledger at a time, the days' time zone.
pub struct Meter {
    lock: tokio::sync::Mutex<()>,
    tz: Tz,
    /// Woken when the line of waiting starts moves.
    pub queue_changed: tokio::sync::Notify,
}

impl Meter {
    /// A meter counting days in `tz`.
    pub fn new(tz: Tz) -> Self {
        Self {
            lock: tokio::sync::Mutex::new(()),
            tz,
            queue_changed: tokio::sync::Notify::new(),
        }
    }

    /// The installation's time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }
}

/// What every row of a run repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMeta {
    /// The run's key.
    pub run: String,
    /// The owner.
    pub user_id: i64,
    /// The owner's name.
    pub user_name: String,
    /// The project, if any.
    pub project_id: Option<i64>,
    /// The server's name.
    pub server_name: String,
    /// The image reference.
    pub image: String,
    /// Nodes.
    pub nodes: i64,
    /// Each node's size.
    pub size: NodeSize,
}

impl From<&ReservationRow> for RunMeta {
    fn from(r: &ReservationRow) -> Self {
        Self {
            run: r.run.clone(),
            user_id: r.user_id,
            user_name: r.user_name.clone(),
            project_id: r.project_id,
            server_name: r.server_name.clone(),
            image: r.image.clone(),
            nodes: r.nodes,
            size: r.size(),
        }
    }
}

/// A new run's key: when its start was asked for, and a random part.
pub fn new_run_key(now: clock::Micros) -> String {
    format!("{now}-{}", super::tokens::random_hex(6))
}

/// Part of an interval within one local day and one price version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// Start, Unix seconds.
    pub start_s: i64,
    /// End (excluded), Unix seconds.
    pub end_s: i64,
    /// The local date.
    pub day: chrono::NaiveDate,
    /// The index of the price version in force.
    pub price: usize,
}

/// The local midnight that ends the day of `t` (Unix seconds) in `tz`, in Unix seconds.
fn next_midnight(tz: Tz, t: i64) -> (chrono::NaiveDate, i64) {
    let day = tz.timestamp_opt(t, 0).single().map_or_else(
        || chrono::DateTime::UNIX_EPOCH.date_naive(),
        |d| d.date_naive(),
    );
    let next = day + Days::days(1);
    // A midnight a daylight-saving change skips begins the day at the first moment after it.
    let mut local = next.and_time(NaiveTime::MIN);
    for _ in 0..4 {
        if let Some(at) = tz.from_local_datetime(&local).earliest() {
            return (day, at.timestamp().max(t + 1));
        }
        local += Days::minutes(30);
    }
    (day, t + 86_400)
}

/// Splits `[start_s, end_s)` at `tz`'s midnights and at the price versions' starts (`prices`
/// ordered by `effective_from`). An empty interval is one empty piece.
pub fn split(start_s: i64, end_s: i64, tz: Tz, prices: &[PriceRow]) -> Vec<Piece> {
    let price_index = |t: i64| {
        price_at(prices, t)
            .and_then(|p| prices.iter().position(|q| q.id == p.id))
            .unwrap_or(0)
    };
    let mut pieces = Vec::new();
    let mut t = start_s;
    loop {
        let (day, midnight) = next_midnight(tz, t);
        let price = price_index(t);
        let next_price = prices
            .iter()
            .map(|p| p.effective_from)
            .filter(|&from| from > t)
            .min()
            .unwrap_or(i64::MAX);
        let end = end_s.min(midnight).min(next_price);
        pieces.push(Piece {
            start_s: t,
            end_s: end,
            day,
            price,
        });
        if end >= end_s {
            return pieces;
        }
        t = end;
    }
}

/// The rows of one node's interval `[start_s, end_s)`: split, priced, with `cpu_used_ms`
/// shared out in proportion to the pieces' lengths (the last takes the rounding).
#[allow(clippy::too_many_arguments)]
pub fn rows_for(
    meta: &RunMeta,
    node: i64,
    start_s: i64,
    end_s: i64,
    cpu_used_ms: i64,
    kind: &str,
    tz: Tz,
    prices: &[PriceRow],
    now: clock::Micros,
) -> Vec<LedgerRow> {
    let pieces = split(start_s, end_s.max(start_s), tz, prices);
    let total = (end_s - start_s).max(0);
    let mut cpu_left = cpu_used_ms.max(0);
    let count = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let seconds = piece.end_s - piece.start_s;
            let cpu = if i + 1 == count || total == 0 {
                cpu_left
            } else {
                let share = i64::try_from(
                    i128::from(cpu_used_ms.max(0)) * i128::from(seconds) / i128::from(total),
                )
                .unwrap_or(0);
                share.min(cpu_left)
            };
            cpu_left -= cpu;
            let cpu_mcs = meta.size.cpu_millis * seconds;
            let mib_s = meta.size.memory_mib * seconds;
            let gpu_s = meta.size.gpus * seconds;
            let price = prices.get(piece.price);
            // An empty row (a run's opening, a release right after a checkpoint) is named by its
            // kind: it shares its start with the interval that follows or precedes it.
            let suffix = if piece.start_s == piece.end_s {
                format!("/{kind}")
            } else {
                String::new()
            };
            LedgerRow {
                idem_key: format!("{}/{node}/{}{suffix}", meta.run, piece.start_s),
                run: meta.run.clone(),
                user_id: meta.user_id,
                user_name: meta.user_name.clone(),
                project_id: meta.project_id,
                server_name: meta.server_name.clone(),
                image: meta.image.clone(),
                node,
                cpu_millis: meta.size.cpu_millis,
                memory_mib: meta.size.memory_mib,
                gpus: meta.size.gpus,
                start_s: piece.start_s,
                end_s: piece.end_s,
                day: piece.day.format("%Y-%m-%d").to_string(),
                cpu_mcs,
                mib_s,
                gpu_s,
                cpu_used_ms: cpu,
                price_id: price.map_or(0, |p| p.id),
                cost_micros: price.map_or(0, |p| cost_micros(p, cpu_mcs, mib_s, gpu_s)),
                kind: kind.to_owned(),
                recorded: now,
            }
        })
        .collect()
}

/// The opening rows of a run admitted at `now`: an empty interval per node.
pub fn open_rows(
    meta: &RunMeta,
    tz: Tz,
    prices: &[PriceRow],
    now: clock::Micros,
) -> Vec<LedgerRow> {
    let t = now.div_euclid(1_000_000);
    (0..meta.nodes)
        .flat_map(|node| rows_for(meta, node, t, t, 0, "open", tz, prices, now))
        .collect()
}

/// How far each node of a run goes now: `(node, end, cpu used in the new interval)` from
/// where the ledger stands and what the backend reports.
async fn extend(
    hub: &Services,
    meta: &RunMeta,
    usage: &[NodeUsage],
    now_s: i64,
    kind: &str,
    unknown_until_now: bool,
) -> HubResult<Vec<LedgerRow>> {
    let meters = hub.store.run_meters(&meta.run).await?;
    let prices = hub.store.price_versions().await?;
    let now = clock::now();
    let mut rows = Vec::new();
    for node in 0..meta.nodes {
        let Some(meter) = meters.iter().find(|m| m.node == node) else {
            continue;
        };
        let seen = usage.iter().find(|u| i64::from(u.index) == node);
        // A node that stopped ends at its real stop time, one that runs at now. One the backend
        // cannot tell about ran until now while the hub watched it; after a restart nobody
        // knows when it ended, and nothing is invented.
        let end = match seen {
            Some(u) if u.running => now_s,
            Some(NodeUsage {
                finished_at: Some(finished),
                ..
            }) => finished.div_euclid(1_000_000).min(now_s),
            _ if unknown_until_now => now_s,
            _ => continue,
        };
        if end <= meter.end_s {
            // Nothing new since the last checkpoint: a release still says so with an empty row.
            if kind == "close" {
                rows.extend(rows_for(
                    meta,
                    node,
                    meter.end_s,
                    meter.end_s,
                    0,
                    kind,
                    hub.meter.tz,
                    &prices,
                    now,
                ));
            }
            continue;
        }
        let cpu_total_ms = seen.and_then(|u| u.cpu_ns).map_or(meter.cpu_used_ms, |ns| {
            i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
        });
        let cpu = (cpu_total_ms - meter.cpu_used_ms).max(0);
        rows.extend(rows_for(
            meta,
            node,
            meter.end_s,
            end,
            cpu,
            kind,
            hub.meter.tz,
            &prices,
            now,
        ));
    }
    Ok(rows)
}

async fn usage_of(hub: &Services, state: Option<&str>) -> Vec<NodeUsage> {
    let Some(state) = state.and_then(|s| serde_json::from_str::<Value>(s).ok()) else {
        return Vec::new();
    };
    match hub.spawner.node_usage(&state).await {
        Ok(usage) => usage,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the nodes' usage; metering by the clock");
            Vec::new()
        }
    }
}

/// Appends every admitted run's intervals up to now (one transaction per run).
pub async fn checkpoint(hub: &Arc<Services>) -> HubResult<()> {
    let _writer = hub.meter.lock.lock().await;
    let now_s = clock::now().div_euclid(1_000_000);
    for reservation in hub.store.reservations().await? {
        if reservation.state != "admitted" {
            continue;
        }
        let usage = usage_of(hub, reservation.server_state.as_deref()).await;
        let meta = RunMeta::from(&reservation);
        let rows = extend(hub, &meta, &usage, now_s, "checkpoint", true).await?;
        if !rows.is_empty() {
            hub.store
                .append_to_run(reservation.server_id, &reservation.run, &rows)
                .await?;
        }
    }
    Ok(())
}

/// Releases a server's reservation: its intervals are closed (at each node's real stop time
/// when the backend still knows it, else now) in the transaction that ends the reservation.
/// `state` is the server's state blob before it was stopped, if the backend should be asked.
/// Nothing happens for a server without a reservation.
pub async fn close_run(hub: &Arc<Services>, server_id: i64, state: Option<&str>) -> HubResult<()> {
    let released = {
        let _writer = hub.meter.lock.lock().await;
        let Some(reservation) = hub.store.reservation(server_id).await? else {
            return Ok(());
        };
        let rows = if reservation.state == "admitted" {
            let usage = usage_of(hub, state).await;
            let meta = RunMeta::from(&reservation);
            extend(
                hub,
                &meta,
                &usage,
                clock::now().div_euclid(1_000_000),
                "close",
                true,
            )
            .await?
        } else {
            Vec::new()
        };
        hub.store
            .release_reservation(server_id, &reservation.run, &rows)
            .await?
    };
    if released {
        tracing::info!(server.id = server_id, "reservation released");
        super::admission::pump(hub).await?;
    }
    Ok(())
}

/// At start-up, before servers are re-adopted: runs that still hold a reservation are metered
/// up to the real stop time of their nodes (or now, for nodes that still run); reservations of
/// servers that are not active any more are released; starts that were waiting in line are
/// withdrawn (their requests ended with the hub).
pub async fn recover(hub: &Arc<Services>) -> HubResult<()> {
    let now_s = clock::now().div_euclid(1_000_000);
    let active: std::collections::HashSet<i64> = hub
        .store
        .active_servers()
        .await?
        .into_iter()
        .map(|(_, s)| s.id)
        .collect();
    for reservation in hub.store.reservations().await? {
        if reservation.state != "admitted" {
            hub.store.cancel_queued(reservation.server_id).await?;
            tracing::info!(
                server.id = reservation.server_id,
                "a start waiting in line ended with the hub"
            );
            continue;
        }
        let usage = usage_of(hub, reservation.server_state.as_deref()).await;
        let meta = RunMeta::from(&reservation);
        let rows = extend(hub, &meta, &usage, now_s, "recovered", false).await?;
        let running = usage.iter().any(|u| u.running);
        if active.contains(&reservation.server_id) && running {
            hub.store
                .append_to_run(reservation.server_id, &reservation.run, &rows)
                .await?;
        } else {
            hub.store
                .release_reservation(reservation.server_id, &reservation.run, &rows)
                .await?;
            tracing::info!(
                server.id = reservation.server_id,
                "released the reservation of a cluster that ended while the hub was down"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn price(id: i64, from: i64) -> PriceRow {
        PriceRow {
            id,
            effective_from: from,
            cpu_core_hour: 1_000_000,
            memory_gib_hour: 100_000,
            gpu_hour: 10_000_000,
            note: String::new(),
            created: 0,
        }
    }

    #[test]
    fn an_interval_over_midnight_in_shanghai_is_two_rows_that_add_up() {
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        // 2026-12-04 23:59:30 +08:00 for 60 s.
        let start = 1_796_399_970;
        let pieces = split(start, start + 60, tz, &[price(1, 0)]);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].day.to_string(), "2026-12-04");
        assert_eq!(pieces[1].day.to_string(), "2026-12-05");
        assert_eq!(pieces[0].end_s - pieces[0].start_s, 30);
        assert_eq!(pieces[1].end_s, start + 60);
    }

    proptest! {
        #[test]
        fn split_pieces_cover_the_interval_exactly_within_one_day_and_price(
            start in 1_600_000_000i64..1_900_000_000,
            length in 0i64..(5 * 86_400),
            zone in 0usize..4,
            changes in proptest::collection::vec(0i64..(6 * 86_400), 0..4),
            cpu_millis in 0i64..64_000,
            memory_mib in 0i64..262_144,
            cpu_used in 0i64..10_000_000,
        ) {
            let tz: Tz = ["UTC", "Asia/Shanghai", "Europe/Berlin", "America/Sao_Paulo"][zone].parse().unwrap();
            let mut prices = vec![price(1, 0)];
            let mut froms: Vec<i64> = changes.iter().map(|c| start - 86_400 + c).collect();
            froms.sort_unstable();
            froms.dedup();
            for (i, from) in froms.into_iter().enumerate() {
                prices.push(price(i as i64 + 2, from));
            }
            let end = start + length;
            let pieces = split(start, end, tz, &prices);
            prop_assert_eq!(pieces.first().unwrap().start_s, start);
            prop_assert_eq!(pieces.last().unwrap().end_s, end);
            for w in pieces.windows(2) {
                prop_assert_eq!(w[0].end_s, w[1].start_s);
            }
            for p in &pieces {
                let first_day = tz.timestamp_opt(p.start_s, 0).unwrap().date_naive();
                let last_day = tz.timestamp_opt((p.end_s - 1).max(p.start_s), 0).unwrap().date_naive();
                prop_assert_eq!(first_day, p.day);
                prop_assert_eq!(last_day, p.day);
                let at_start = price_at(&prices, p.start_s).unwrap().id;
                let at_end = price_at(&prices, (p.end_s - 1).max(p.start_s)).unwrap().id;
                prop_assert_eq!(at_start, at_end);
            }
            let meta = RunMeta {
                run: "1.1".into(), user_id: 1, user_name: "a".into(), project_id: Some(3),
                server_name: String::new(), image: String::new(), nodes: 1,
                size: NodeSize { cpu_millis, memory_mib, gpus: 1, storage_mib: 0 },
            };
            let rows = rows_for(&meta, 0, start, end, cpu_used, "checkpoint", tz, &prices, 0);
            let sum = |f: fn(&LedgerRow) -> i64| rows.iter().map(f).sum::<i64>();
            prop_assert_eq!(sum(|r| r.end_s - r.start_s), length);
            prop_assert_eq!(sum(|r| r.cpu_mcs), cpu_millis * length);
            prop_assert_eq!(sum(|r| r.mib_s), memory_mib * length);
            prop_assert_eq!(sum(|r| r.gpu_s), length);
            prop_assert_eq!(sum(|r| r.cpu_used_ms), cpu_used);
            // Per-day lines add up to the total, exactly.
            let mut by_day = std::collections::BTreeMap::<String, (i64, i64)>::new();
            for r in &rows {
                let e = by_day.entry(r.day.clone()).or_default();
                e.0 += r.cpu_mcs;
                e.1 += r.cost_micros;
            }
            prop_assert_eq!(by_day.values().map(|v| v.0).sum::<i64>(), sum(|r| r.cpu_mcs));
            prop_assert_eq!(by_day.values().map(|v| v.1).sum::<i64>(), sum(|r| r.cost_micros));
            let keys: std::collections::HashSet<_> = rows.iter().map(|r| r.idem_key.clone()).collect();
            prop_assert_eq!(keys.len(), rows.len());
        }
    }
}
