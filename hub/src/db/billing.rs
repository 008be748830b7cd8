//! Billing's reads: the dated price versions (`prices`) and the aggregates over the metering
//! ledger (`usage_ledger`) that the usage pages and API show. The ledger itself is written by
//! `metering.rs`; nothing here writes it.

use super::{Result, Store};
use crate::clock::Micros;

/// One price version: billing units per hour of a CPU core, a GiB of memory and a GPU, in
/// millionths of a unit, in force from `effective_from` until the next version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct PriceRow {
    /// The version's id (ledger rows name it).
    pub id: i64,
    /// When it takes effect, Unix seconds.
    pub effective_from: i64,
    /// Millionths of a unit per CPU-core-hour.
    pub cpu_core_hour: i64,
    /// Millionths of a unit per GiB-hour of memory.
    pub memory_gib_hour: i64,
    /// Millionths of a unit per GPU-hour.
    pub gpu_hour: i64,
    /// The administrator's note.
    pub note: String,
    /// When it was written.
    pub created: Micros,
}

impl Store {
    /// Every price version, oldest first (by `effective_from`).
    pub async fn price_versions(&self) -> Result<Vec<PriceRow>> {
        Ok(sqlx::query_as::<_, PriceRow>(
            "SELECT id, effective_from, cpu_core_hour, memory_gib_hour, gpu_hour, note, created \
             FROM prices ORDER BY effective_from",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Whose ledger rows a report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageScope {
    /// The whole installation.
    All,
    /// One user's clusters (by user id).
    User(i64),
    /// The clusters of a group's members, as the group is now (by group id).
    Group(i64),
    /// The clusters that ran one project (by project id).
    Project(i64),
}

/// How a report's lines are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageGrouping {
    /// One line per local day (`YYYY-MM-DD`).
    Day,
    /// One line per project (key: the id, empty for clusters outside any project).
    Project,
    /// One line per user (key: the id; label: the name on the newest row).
    User,
    /// One line for everything.
    Total,
}

/// Which rows a report counts: a scope and an inclusive range of local days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageFilter {
    /// Whose rows.
    pub scope: UsageScope,
    /// First day counted, `YYYY-MM-DD`.
    pub from_day: String,
    /// Last day counted, `YYYY-MM-DD`.
    pub to_day: String,
}

/// The sums of the rows of one line that were priced with one price version.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageSums {
    /// The line's key (a day, a project's or a user's id; empty for `Total`).
    pub key: String,
    /// A name for the key (the user's name for `User`, else empty).
    pub label: String,
    /// The price version of these rows.
    pub price_id: i64,
    /// Ledger rows.
    pub rows: i64,
    /// Node-seconds.
    pub node_s: i64,
    /// CPU millicore-seconds reserved.
    pub cpu_mcs: i64,
    /// MiB-seconds reserved.
    pub mib_s: i64,
    /// GPU-seconds reserved.
    pub gpu_s: i64,
    /// CPU time used, in milliseconds.
    pub cpu_used_ms: i64,
    /// Cost, in millionths of a billing unit.
    pub cost_micros: i64,
}

/// What the live usage of a running cluster needs: its reservation and its ledger so far.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunningRun {
    /// The run's key in the ledger.
    pub run: String,
    /// The project it runs, if any.
    pub project_id: Option<i64>,
    /// Nodes.
    pub nodes: i64,
    /// CPU per node, millicores.
    pub cpu_millis: i64,
    /// Memory per node, MiB.
    pub memory_mib: i64,
    /// GPUs per node.
    pub gpus: i64,
    /// When it was admitted (microseconds), if it was.
    pub admitted: Option<Micros>,
}

/// Where one node of a run was metered up to, and what its rows cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct NodeBilled {
    /// The node's index.
    pub node: i64,
    /// Its first row's start (Unix seconds).
    pub start_s: i64,
    /// Its last row's end (Unix seconds).
    pub end_s: i64,
    /// What its rows cost, millionths of a unit.
    pub cost_micros: i64,
}

/// The `WHERE` clause of a scope and day range, its parameters starting at `$1`.
fn usage_where(scope: UsageScope) -> &'static str {
    match scope {
        UsageScope::All => "day >= $1 AND day <= $2",
        UsageScope::User(_) => "day >= $1 AND day <= $2 AND user_id = $3",
        UsageScope::Group(_) => {
            "day >= $1 AND day <= $2 AND user_id IN (SELECT user_id FROM user_groups WHERE group_id = $3)"
        }
        UsageScope::Project(_) => "day >= $1 AND day <= $2 AND project_id = $3",
    }
}

impl Store {
    /// The version in force at `t` (Unix seconds): the last that took effect at or before it.
    pub async fn price_at(&self, t: i64) -> Result<Option<PriceRow>> {
        Ok(sqlx::query_as::<_, PriceRow>(
            "SELECT id, effective_from, cpu_core_hour, memory_gib_hour, gpu_hour, note, created \
             FROM prices WHERE effective_from <= $1 ORDER BY effective_from DESC LIMIT 1",
        )
        .bind(t)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Adds a price version; [`DbError::Conflict`](super::DbError::Conflict) if one takes effect
    /// at the same second.
    pub async fn add_price(
        &self,
        effective_from: i64,
        cpu_core_hour: i64,
        memory_gib_hour: i64,
        gpu_hour: i64,
        note: &str,
        now: Micros,
    ) -> Result<PriceRow> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query_as::<_, PriceRow>(
            "INSERT INTO prices (effective_from, cpu_core_hour, memory_gib_hour, gpu_hour, note, created) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id, effective_from, cpu_core_hour, memory_gib_hour, gpu_hour, note, created",
        )
        .bind(effective_from)
        .bind(cpu_core_hour)
        .bind(memory_gib_hour)
        .bind(gpu_hour)
        .bind(note)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes a price version that has not taken effect at `now_s` and that no ledger row
    /// names; `false` if there is no such version.
    pub async fn delete_future_price(&self, id: i64, now_s: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "DELETE FROM prices WHERE id = $1 AND effective_from > $2 \
             AND NOT EXISTS (SELECT 1 FROM usage_ledger WHERE price_id = $1)",
        )
        .bind(id)
        .bind(now_s)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(done > 0)
    }

    /// The sums of the ledger rows `filter` selects, one per line of `grouping` and price
    /// version, ordered by key. Every line is a sum of whole rows, so the lines of any grouping
    /// add up exactly to the `Total`.
    pub async fn usage_sums(
        &self,
        filter: &UsageFilter,
        grouping: UsageGrouping,
    ) -> Result<Vec<UsageSums>> {
        // PostgreSQL refuses a constant in GROUP BY: the total groups by price version only.
        let (key, label, group) = match grouping {
            UsageGrouping::Day => ("day", "''", "day, "),
            UsageGrouping::Project => {
                let key = "COALESCE(CAST(project_id AS TEXT), '')";
                (key, "''", "COALESCE(CAST(project_id AS TEXT), ''), ")
            }
            UsageGrouping::User => ("CAST(user_id AS TEXT)", "MAX(user_name)", "user_id, "),
            UsageGrouping::Total => ("''", "''", ""),
        };
        let sql = format!(
            "SELECT {key} AS key, {label} AS label, price_id, COUNT(*) AS rows, \
             CAST(SUM(end_s - start_s) AS BIGINT) AS node_s, CAST(SUM(cpu_mcs) AS BIGINT) AS cpu_mcs, \
             CAST(SUM(mib_s) AS BIGINT) AS mib_s, CAST(SUM(gpu_s) AS BIGINT) AS gpu_s, \
             CAST(SUM(cpu_used_ms) AS BIGINT) AS cpu_used_ms, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM usage_ledger WHERE {} GROUP BY {group}price_id ORDER BY {group}price_id",
            usage_where(filter.scope)
        );
        let query = sqlx::query_as::<_, UsageSums>(&sql)
            .bind(&filter.from_day)
            .bind(&filter.to_day);
        let query = match filter.scope {
            UsageScope::All => query,
            UsageScope::User(id) | UsageScope::Group(id) | UsageScope::Project(id) => {
                query.bind(id)
            }
        };
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// The cost of the rows `filter` selects, millionths of a unit.
    pub async fn usage_cost(&self, filter: &UsageFilter) -> Result<i64> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) FROM usage_ledger WHERE {}",
            usage_where(filter.scope)
        );
        let query = sqlx::query_scalar::<_, i64>(&sql)
            .bind(&filter.from_day)
            .bind(&filter.to_day);
        let query = match filter.scope {
            UsageScope::All => query,
            UsageScope::User(id) | UsageScope::Group(id) | UsageScope::Project(id) => {
                query.bind(id)
            }
        };
        Ok(query.fetch_one(&self.pool).await?)
    }

    /// The admitted run of a server, if it holds one.
    pub async fn running_run(&self, server_id: i64) -> Result<Option<RunningRun>> {
        Ok(sqlx::query_as::<_, RunningRun>(
            "SELECT run, project_id, nodes, cpu_millis, memory_mib, gpus, admitted \
             FROM reservations WHERE server_id = $1 AND state = 'admitted'",
        )
        .bind(server_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Each node of a run: where its rows start and end, and what they cost.
    pub async fn run_nodes_billed(&self, run: &str) -> Result<Vec<NodeBilled>> {
        Ok(sqlx::query_as::<_, NodeBilled>(
            "SELECT node, MIN(start_s) AS start_s, MAX(end_s) AS end_s, \
             CAST(SUM(cost_micros) AS BIGINT) AS cost_micros \
             FROM usage_ledger WHERE run = $1 GROUP BY node ORDER BY node",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?)
    }
}
