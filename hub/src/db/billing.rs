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
