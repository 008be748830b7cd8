//! Reservations: what each cluster holds (or waits for) against its user's quota and the
//! hardware's capacity. A start's reservation is decided in the transaction that writes the
//! server's row ([`Store::begin_spawn`]): quota and capacity are read and the reservation and
//! the ledger's opening rows written under one lock (SQLite `BEGIN IMMEDIATE`; PostgreSQL a row
//! lock on `capacity_caps`), so concurrent starts never both take the last of anything.

use sqlx::{Any, Transaction};

use super::metering::{append_in, LedgerRow};
use super::{Engine, Result, Store};
use crate::clock::Micros;

/// What one node of a cluster reserves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeSize {
    /// CPU, in millicores.
    pub cpu_millis: i64,
    /// Memory, in MiB.
    pub memory_mib: i64,
    /// GPUs.
    pub gpus: i64,
    /// Storage (writable layer), in MiB.
    pub storage_mib: i64,
}

/// The quantities quotas and capacity count, for a cluster or a sum of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Amounts {
    /// Clusters.
    pub clusters: i64,
    /// Nodes.
    pub nodes: i64,
    /// CPU, in millicores.
    pub cpu_millis: i64,
    /// Memory, in MiB.
    pub memory_mib: i64,
    /// GPUs.
    pub gpus: i64,
    /// Storage, in MiB.
    pub storage_mib: i64,
}

/// Limits on [`Amounts`]; `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Limits {
    /// Clusters at once.
    pub clusters: Option<i64>,
    /// Nodes.
    pub nodes: Option<i64>,
    /// CPU, in millicores.
    pub cpu_millis: Option<i64>,
    /// Memory, in MiB.
    pub memory_mib: Option<i64>,
    /// GPUs.
    pub gpus: Option<i64>,
    /// Storage, in MiB.
    pub storage_mib: Option<i64>,
}

impl Limits {
    /// `self`'s limits where set, else `fallback`'s (a user's exception over their role's).
    pub fn over(self, fallback: Limits) -> Limits {
        Limits {
            clusters: self.clusters.or(fallback.clusters),
            nodes: self.nodes.or(fallback.nodes),
            cpu_millis: self.cpu_millis.or(fallback.cpu_millis),
            memory_mib: self.memory_mib.or(fallback.memory_mib),
            gpus: self.gpus.or(fallback.gpus),
            storage_mib: self.storage_mib.or(fallback.storage_mib),
        }
    }

    /// The smaller of both limits on each quantity.
    pub fn min(self, other: Limits) -> Limits {
        fn lower(a: Option<i64>, b: Option<i64>) -> Option<i64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Limits {
            clusters: lower(self.clusters, other.clusters),
            nodes: lower(self.nodes, other.nodes),
            cpu_millis: lower(self.cpu_millis, other.cpu_millis),
            memory_mib: lower(self.memory_mib, other.memory_mib),
            gpus: lower(self.gpus, other.gpus),
            storage_mib: lower(self.storage_mib, other.storage_mib),
        }
    }

    /// The first quantity where `used + asked` goes over the limit.
    pub fn first_excess(&self, used: &Amounts, asked: &Amounts) -> Option<Excess> {
        let checks = [
            (
                Quantity::Clusters,
                self.clusters,
                used.clusters,
                asked.clusters,
            ),
            (Quantity::Nodes, self.nodes, used.nodes, asked.nodes),
            (
                Quantity::Cpu,
                self.cpu_millis,
                used.cpu_millis,
                asked.cpu_millis,
            ),
            (
                Quantity::Memory,
                self.memory_mib,
                used.memory_mib,
                asked.memory_mib,
            ),
            (Quantity::Gpus, self.gpus, used.gpus, asked.gpus),
            (
                Quantity::Storage,
                self.storage_mib,
                used.storage_mib,
                asked.storage_mib,
            ),
        ];
        checks
            .into_iter()
            .find_map(|(quantity, limit, used, asked)| {
                let limit = limit?;
                (asked > 0 && used + asked > limit).then_some(Excess {
                    quantity,
                    limit,
                    used,
                    asked,
                })
            })
    }
}

/// A quantity quotas and capacity count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// Clusters at once.
    Clusters,
    /// Nodes.
    Nodes,
    /// CPU (millicores).
    Cpu,
    /// Memory (MiB).
    Memory,
    /// GPUs.
    Gpus,
    /// Storage (MiB).
    Storage,
}

/// A limit a request would go over: `used + asked > limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Excess {
    /// What.
    pub quantity: Quantity,
    /// The limit.
    pub limit: i64,
    /// What is held already.
    pub used: i64,
    /// What the request asks for.
    pub asked: i64,
}

/// A start's reservation, decided with the server's row.
#[derive(Debug, Clone, Copy)]
pub struct Reserve<'a> {
    /// The project the cluster runs, if any.
    pub project_id: Option<i64>,
    /// The image reference.
    pub image: &'a str,
    /// Nodes.
    pub nodes: i64,
    /// Each node's size.
    pub size: NodeSize,
    /// The run's key in the ledger.
    pub run: &'a str,
    /// Whether the start waits in line when the capacity is taken (else it is refused).
    pub wait: bool,
    /// What the backend can run at once (the administrator's caps are applied on top).
    pub capacity: Limits,
    /// The run's opening ledger rows, written if it is admitted at once.
    pub open_rows: &'a [LedgerRow],
}

impl Reserve<'_> {
    /// What the cluster holds in all.
    pub fn amounts(&self) -> Amounts {
        amounts(self.nodes, self.size)
    }
}

fn amounts(nodes: i64, size: NodeSize) -> Amounts {
    Amounts {
        clusters: 1,
        nodes,
        cpu_millis: nodes * size.cpu_millis,
        memory_mib: nodes * size.memory_mib,
        gpus: nodes * size.gpus,
        storage_mib: nodes * size.storage_mib,
    }
}

/// How a reservation was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It holds its resources from now on.
    Admitted,
    /// It waits in line: `position` 1 is next.
    Queued {
        /// Its place in the line.
        position: i64,
    },
}

/// Why a reservation was refused (nothing was written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the user's quota.
    Quota(Excess),
    /// More than the hardware has at all, however long one waits.
    TooLarge(Excess),
    /// More than is free now, and the start does not wait.
    Busy {
        /// The first quantity that is short.
        excess: Excess,
        /// Starts already waiting.
        waiting: i64,
    },
    /// Others are waiting for capacity before it, and the start does not wait.
    Waiting {
        /// Starts already waiting.
        waiting: i64,
    },
}

/// One reservation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReservationRow {
    /// Its server.
    pub server_id: i64,
    /// The owner.
    pub user_id: i64,
    /// The owner's name.
    pub user_name: String,
    /// The server's name.
    pub server_name: String,
    /// The server's backend state blob, once launched.
    pub server_state: Option<String>,
    /// The project it runs.
    pub project_id: Option<i64>,
    /// The image reference.
    pub image: String,
    /// Nodes.
    pub nodes: i64,
    /// CPU per node, millicores.
    pub cpu_millis: i64,
    /// Memory per node, MiB.
    pub memory_mib: i64,
    /// GPUs per node.
    pub gpus: i64,
    /// Storage per node, MiB.
    pub storage_mib: i64,
    /// `queued` or `admitted`.
    pub state: String,
    /// Order of arrival.
    pub seq: i64,
    /// The run's key in the ledger.
    pub run: String,
    /// When it was asked for.
    pub created: Micros,
    /// When it was admitted.
    pub admitted: Option<Micros>,
}

impl ReservationRow {
    /// Each node's size.
    pub fn size(&self) -> NodeSize {
        NodeSize {
            cpu_millis: self.cpu_millis,
            memory_mib: self.memory_mib,
            gpus: self.gpus,
            storage_mib: self.storage_mib,
        }
    }

    /// What it holds in all.
    pub fn amounts(&self) -> Amounts {
        amounts(self.nodes, self.size())
    }
}

const SELECT_RESERVATION: &str =
    "SELECT r.server_id, r.user_id, u.name AS user_name, s.name AS server_name, \
     s.state AS server_state, r.project_id, r.image, r.nodes, r.cpu_millis, r.memory_mib, r.gpus, \
     r.storage_mib, r.state, r.seq, r.run, r.created, r.admitted \
     FROM reservations r JOIN users u ON u.id = r.user_id JOIN servers s ON s.id = r.server_id";

const SUM_AMOUNTS: &str = "SELECT CAST(COUNT(*) AS BIGINT) AS clusters, \
     CAST(COALESCE(SUM(nodes), 0) AS BIGINT) AS nodes, \
     CAST(COALESCE(SUM(nodes * cpu_millis), 0) AS BIGINT) AS cpu_millis, \
     CAST(COALESCE(SUM(nodes * memory_mib), 0) AS BIGINT) AS memory_mib, \
     CAST(COALESCE(SUM(nodes * gpus), 0) AS BIGINT) AS gpus, \
     CAST(COALESCE(SUM(nodes * storage_mib), 0) AS BIGINT) AS storage_mib FROM reservations";

const LIMIT_COLUMNS: &str = "clusters, nodes, cpu_millis, memory_mib, gpus, storage_mib";

/// Takes the admission lock: on PostgreSQL the row lock of `capacity_caps` (SQLite's
/// `BEGIN IMMEDIATE` holds the whole database already).
async fn lock(engine: Engine, tx: &mut Transaction<'static, Any>) -> Result<()> {
    if engine == Engine::Postgres {
        sqlx::query("SELECT id FROM capacity_caps WHERE id = 1 FOR UPDATE")
            .fetch_optional(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The user's quota: their exception over their role's defaults.
async fn quota_in(tx: &mut Transaction<'static, Any>, user_id: i64) -> Result<Limits> {
    let own = sqlx::query_as::<_, Limits>(&format!(
        "SELECT {LIMIT_COLUMNS} FROM quotas WHERE user_id = $1"
    ))
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or_default();
    let role = sqlx::query_as::<_, Limits>(
        "SELECT q.clusters, q.nodes, q.cpu_millis, q.memory_mib, q.gpus, q.storage_mib \
         FROM quotas q JOIN users u ON q.role = u.account_role WHERE u.id = $1",
    )
    .bind(user_id)
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or_default();
    Ok(own.over(role))
}

/// The capacity: the backend's, capped by the administrator's caps. Clusters are not capped.
async fn capacity_in(tx: &mut Transaction<'static, Any>, backend: Limits) -> Result<Limits> {
    let caps = sqlx::query_as::<_, Limits>(
        "SELECT NULL AS clusters, nodes, cpu_millis, memory_mib, gpus, NULL AS storage_mib \
         FROM capacity_caps WHERE id = 1",
    )
    .fetch_optional(&mut **tx)
    .await?
    .unwrap_or_default();
    Ok(backend.min(caps))
}

async fn sum_in(
    tx: &mut Transaction<'static, Any>,
    filter: &str,
    bind: Option<i64>,
) -> Result<Amounts> {
    let sql = format!("{SUM_AMOUNTS} WHERE {filter}");
    let query = sqlx::query_as::<_, Amounts>(&sql);
    let query = match bind {
        Some(v) => query.bind(v),
        None => query,
    };
    Ok(query.fetch_one(&mut **tx).await?)
}

async fn waiting_in(tx: &mut Transaction<'static, Any>) -> Result<i64> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM reservations WHERE state = 'queued'")
            .fetch_one(&mut **tx)
            .await?,
    )
}

/// Decides and writes a start's reservation in the spawn's transaction (see the module docs).
pub(super) async fn reserve_in(
    engine: Engine,
    tx: &mut Transaction<'static, Any>,
    server_id: i64,
    user_id: i64,
    reserve: &Reserve<'_>,
    now: Micros,
) -> Result<std::result::Result<Admission, Refusal>> {
    lock(engine, tx).await?;
    let asked = reserve.amounts();
    // Waiting starts count against their user's quota as running ones do.
    let held = sum_in(tx, "user_id = $1", Some(user_id)).await?;
    if let Some(excess) = quota_in(tx, user_id).await?.first_excess(&held, &asked) {
        return Ok(Err(Refusal::Quota(excess)));
    }
    let capacity = capacity_in(tx, reserve.capacity).await?;
    if let Some(excess) = capacity.first_excess(&Amounts::default(), &asked) {
        return Ok(Err(Refusal::TooLarge(excess)));
    }
    let waiting = waiting_in(tx).await?;
    let admitted = sum_in(tx, "state = 'admitted'", None).await?;
    let short = capacity.first_excess(&admitted, &asked);
    // First come, first served: nobody passes a start that waits.
    let admit_now = waiting == 0 && short.is_none();
    if !admit_now && !reserve.wait {
        return Ok(Err(match short {
            Some(excess) => Refusal::Busy { excess, waiting },
            None => Refusal::Waiting { waiting },
        }));
    }
    let seq: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM reservations")
            .fetch_one(&mut **tx)
            .await?;
    sqlx::query(
        "INSERT INTO reservations (server_id, user_id, project_id, image, nodes, cpu_millis, memory_mib, \
         gpus, storage_mib, state, seq, run, created, admitted) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(server_id)
    .bind(user_id)
    .bind(reserve.project_id)
    .bind(reserve.image)
    .bind(reserve.nodes)
    .bind(reserve.size.cpu_millis)
    .bind(reserve.size.memory_mib)
    .bind(reserve.size.gpus)
    .bind(reserve.size.storage_mib)
    .bind(if admit_now { "admitted" } else { "queued" })
    .bind(seq)
    .bind(reserve.run)
    .bind(now)
    .bind(admit_now.then_some(now))
    .execute(&mut **tx)
    .await?;
    if admit_now {
        append_in(tx, reserve.open_rows).await?;
        Ok(Ok(Admission::Admitted))
    } else {
        Ok(Ok(Admission::Queued {
            position: waiting + 1,
        }))
    }
}

impl Store {
    /// A server's reservation.
    pub async fn reservation(&self, server_id: i64) -> Result<Option<ReservationRow>> {
        Ok(sqlx::query_as::<_, ReservationRow>(&format!(
            "{SELECT_RESERVATION} WHERE r.server_id = $1"
        ))
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every reservation, admitted ones first, then the line in order.
    pub async fn reservations(&self) -> Result<Vec<ReservationRow>> {
        Ok(sqlx::query_as::<_, ReservationRow>(&format!(
            "{SELECT_RESERVATION} ORDER BY CASE r.state WHEN 'admitted' THEN 0 ELSE 1 END, r.seq"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The first start in line, if any.
    pub async fn queue_head(&self) -> Result<Option<ReservationRow>> {
        Ok(sqlx::query_as::<_, ReservationRow>(&format!(
            "{SELECT_RESERVATION} WHERE r.state = 'queued' ORDER BY r.seq LIMIT 1"
        ))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A waiting start's place in line (1 is next); `None` if it is not waiting.
    pub async fn queue_position(&self, server_id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM reservations o JOIN reservations m \
             ON m.server_id = $1 AND m.state = 'queued' WHERE o.state = 'queued' AND o.seq <= m.seq",
        )
        .bind(server_id)
        .fetch_one(&self.pool)
        .await
        .map(|n| (n > 0).then_some(n))?)
    }

    /// Admits the start at the head of the line if it still is the head and fits in what the
    /// admitted ones leave of `capacity`, writing its opening rows; `false` if it does not fit
    /// (or is no longer waiting).
    pub async fn admit_head(
        &self,
        server_id: i64,
        capacity: Limits,
        open_rows: &[LedgerRow],
        now: Micros,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        lock(self.engine, &mut tx).await?;
        let head: Option<(i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT server_id, nodes, cpu_millis, memory_mib, gpus, storage_mib FROM reservations \
             WHERE state = 'queued' ORDER BY seq LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some((head_id, nodes, cpu_millis, memory_mib, gpus, storage_mib)) = head else {
            return Ok(false);
        };
        if head_id != server_id {
            return Ok(false);
        }
        let size = NodeSize {
            cpu_millis,
            memory_mib,
            gpus,
            storage_mib,
        };
        let capacity = capacity_in(&mut tx, capacity).await?;
        let admitted = sum_in(&mut tx, "state = 'admitted'", None).await?;
        if capacity
            .first_excess(&admitted, &amounts(nodes, size))
            .is_some()
        {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE reservations SET state = 'admitted', admitted = $1 WHERE server_id = $2",
        )
        .bind(now)
        .bind(server_id)
        .execute(&mut *tx)
        .await?;
        append_in(&mut tx, open_rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a reservation of `run` and appends its closing rows, in one transaction. `false`
    /// if there was none (released already): then nothing is written.
    pub async fn release_reservation(
        &self,
        server_id: i64,
        run: &str,
        close_rows: &[LedgerRow],
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM reservations WHERE server_id = $1 AND run = $2")
            .bind(server_id)
            .bind(run)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone == 0 {
            return Ok(false);
        }
        append_in(&mut tx, close_rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Appends rows of a run that still holds its reservation (a checkpoint); `false` (nothing
    /// written) if the run was released meanwhile.
    pub async fn append_to_run(
        &self,
        server_id: i64,
        run: &str,
        rows: &[LedgerRow],
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT server_id FROM reservations WHERE server_id = $1 AND run = $2 AND state = 'admitted'",
        )
        .bind(server_id)
        .bind(run)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Ok(false);
        }
        append_in(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Withdraws a waiting start from the line; `false` if it was not waiting.
    pub async fn cancel_queued(&self, server_id: i64) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM reservations WHERE server_id = $1 AND state = 'queued'")
                .bind(server_id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    /// The capacity admission holds starts against: the backend's, capped by the
    /// administrator's caps.
    pub async fn effective_capacity(&self, backend: Limits) -> Result<Limits> {
        let mut tx = self.pool.begin().await?;
        let capacity = capacity_in(&mut tx, backend).await?;
        tx.commit().await?;
        Ok(capacity)
    }

    /// What admitted clusters hold in all.
    pub async fn admitted_amounts(&self) -> Result<Amounts> {
        Ok(
            sqlx::query_as::<_, Amounts>(&format!("{SUM_AMOUNTS} WHERE state = 'admitted'"))
                .fetch_one(&self.pool)
                .await?,
        )
    }
}
