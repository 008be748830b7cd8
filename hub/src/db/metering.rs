//! The metering ledger (`usage_ledger`): rows appended, never updated or deleted (triggers
//! refuse both), each with an idempotency key so a retried write counts once; and what the
//! meter needs to go on from the ledger alone — where each node of a run was metered up to.

use sqlx::{Any, Transaction};

use super::{Result, Store};
use crate::clock::Micros;

/// One node's interval `[start_s, end_s)` with what it reserved and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerRow {
    /// `{run}/{node}/{start_s}` (plus `/{kind}` for an empty row: an opening, a release right
    /// after a checkpoint): a write retried with the same key is ignored.
    pub idem_key: String,
    /// The run (one start of a cluster).
    pub run: String,
    /// The cluster's owner.
    pub user_id: i64,
    /// The owner's name when the row was written.
    pub user_name: String,
    /// The project the cluster runs, if any.
    pub project_id: Option<i64>,
    /// The server's name.
    pub server_name: String,
    /// The image reference (empty for a backend without images).
    pub image: String,
    /// The node's index.
    pub node: i64,
    /// CPU reserved, in millicores.
    pub cpu_millis: i64,
    /// Memory reserved, in MiB.
    pub memory_mib: i64,
    /// GPUs reserved.
    pub gpus: i64,
    /// Start, Unix seconds.
    pub start_s: i64,
    /// End (excluded), Unix seconds.
    pub end_s: i64,
    /// The installation's local date of the interval, `YYYY-MM-DD`.
    pub day: String,
    /// CPU millicore-seconds reserved.
    pub cpu_mcs: i64,
    /// MiB-seconds reserved.
    pub mib_s: i64,
    /// GPU-seconds reserved.
    pub gpu_s: i64,
    /// CPU time the node used in the interval, in milliseconds.
    pub cpu_used_ms: i64,
    /// The price version it was priced with.
    pub price_id: i64,
    /// Its cost in millionths of a billing unit.
    pub cost_micros: i64,
    /// `open`, `checkpoint`, `close` or `recovered`.
    pub kind: String,
    /// When it was written.
    pub recorded: Micros,
}

/// Where a node of a run has been metered up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeMeter {
    /// The node's index.
    pub node: i64,
    /// The end of its last interval (Unix seconds).
    pub end_s: i64,
    /// The CPU time written for it so far, in milliseconds.
    pub cpu_used_ms: i64,
}

const LEDGER_COLUMNS: &str = "idem_key, run, user_id, user_name, project_id, server_name, image, node, \
     cpu_millis, memory_mib, gpus, start_s, end_s, day, cpu_mcs, mib_s, gpu_s, cpu_used_ms, price_id, \
     cost_micros, kind, recorded";

/// Appends rows in the given transaction; rows whose key is in the ledger already are skipped.
/// Returns how many were written.
pub(super) async fn append_in(
    tx: &mut Transaction<'static, Any>,
    rows: &[LedgerRow],
) -> Result<u64> {
    let mut written = 0;
    for r in rows {
        written += sqlx::query(
            "INSERT INTO usage_ledger (idem_key, run, user_id, user_name, project_id, server_name, image, \
             node, cpu_millis, memory_mib, gpus, start_s, end_s, day, cpu_mcs, mib_s, gpu_s, cpu_used_ms, \
             price_id, cost_micros, kind, recorded) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) \
             ON CONFLICT (idem_key) DO NOTHING",
        )
        .bind(&r.idem_key)
        .bind(&r.run)
        .bind(r.user_id)
        .bind(&r.user_name)
        .bind(r.project_id)
        .bind(&r.server_name)
        .bind(&r.image)
        .bind(r.node)
        .bind(r.cpu_millis)
        .bind(r.memory_mib)
        .bind(r.gpus)
        .bind(r.start_s)
        .bind(r.end_s)
        .bind(&r.day)
        .bind(r.cpu_mcs)
        .bind(r.mib_s)
        .bind(r.gpu_s)
        .bind(r.cpu_used_ms)
        .bind(r.price_id)
        .bind(r.cost_micros)
        .bind(&r.kind)
        .bind(r.recorded)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    Ok(written)
}

impl Store {
    /// Appends rows in one transaction (see [`append_in`]); returns how many were new.
    pub async fn append_ledger(&self, rows: &[LedgerRow]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        let written = append_in(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Where each node of `run` has been metered up to.
    pub async fn run_meters(&self, run: &str) -> Result<Vec<NodeMeter>> {
        Ok(sqlx::query_as::<_, NodeMeter>(
            "SELECT node, MAX(end_s) AS end_s, CAST(SUM(cpu_used_ms) AS BIGINT) AS cpu_used_ms \
             FROM usage_ledger WHERE run = $1 GROUP BY node ORDER BY node",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The rows of a run, in the order they were written (tests and audits).
    pub async fn run_ledger(&self, run: &str) -> Result<Vec<LedgerRow>> {
        Ok(sqlx::query_as::<_, LedgerRow>(&format!(
            "SELECT {LEDGER_COLUMNS} FROM usage_ledger WHERE run = $1 ORDER BY id"
        ))
        .bind(run)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A user's rows, in the order they were written, at most `limit` from `offset`.
    pub async fn user_ledger(
        &self,
        user_id: i64,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<LedgerRow>> {
        Ok(sqlx::query_as::<_, LedgerRow>(&format!(
            "SELECT {LEDGER_COLUMNS} FROM usage_ledger WHERE user_id = $1 ORDER BY id LIMIT $2 OFFSET $3"
        ))
        .bind(user_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?)
    }
}
