//! The `Store`: every SQL statement of the hub, over one `sqlx::AnyPool` so that the same code runs
//! on SQLite (the embedded default) and PostgreSQL. Placeholders are `$1…`, which both accept;
//! timestamps are microseconds, booleans 0/1 (see the migrations).
//!
//! This file holds what all statements share: the `Store` (connecting, migrations, the write
//! transaction) and `DbError`. The statements live with their entity, each file adding an
//! `impl Store` block: users, groups, roles, services, tokens, servers, OAuth clients and codes,
//! login sessions, settings, images, save jobs and storage pools. Rows shared between them are in `rows`.

#[macro_use]
mod words;

mod auth_states;
mod billing;
mod budgets;
mod compute_pools;
mod datasets;
mod groups;
mod home_page;
mod images;
mod metering;
mod oauth;
mod project_uploads;
mod projects;
mod quotas;
mod release_policies;
mod reservations;
mod roles;
mod rows;
mod save_jobs;
mod server_status;
mod servers;
mod services;
mod sessions;
mod settings;
mod storage_pools;
mod tokens;
mod users;

use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection};

pub use billing::{
    NodeBilled, PriceRow, RunningRun, UsageFilter, UsageGrouping, UsageScope, UsageSums,
};
pub use budgets::{AdmittedCluster, BudgetKind, BudgetRow};
pub use compute_pools::ComputePoolRow;
pub use datasets::{
    DatasetFields, DatasetFileRow, DatasetRow, DatasetSearch, DatasetSort, DatasetVisibility,
    Grantee, ShareAccess, ShareRow, UploadRow, UploadStart,
};
pub use home_page::{HomePageTexts, HomePageTextsRow, TextLanguage};
pub use images::{ImageFields, ImageFilter, ImageKind, ImageRow, Visibility};
pub use metering::{LedgerRow, NodeMeter};
pub use project_uploads::ProjectUploadRow;
pub use projects::{
    ForkProgress, ForkRow, ForkState, MemberRow, ProjectFields, ProjectRole, ProjectRow,
    ProjectSearch,
};
pub use quotas::{CapacityCapsRow, RoleQuotaRow, UserQuota, UserQuotaRow};
pub use release_policies::{
    NewRelease, ReleaseCause, ReleaseExceptionRow, ReleasePolicy, ReleaseRow, ReleaseSettingsRow,
};
pub use reservations::{
    Admission, Amounts, Excess, Limits, NodeSize, Quantity, Refusal, ReservationRow, Reserve,
};
pub use rows::*;
pub use save_jobs::{NewSaveJob, SaveJobRow};
pub use server_status::ServerStatus;
pub use storage_pools::{
    NewPool, PlacementKind, PlacementRow, PoolRemoval, PoolRow, PoolState, PoolType,
};
pub use users::{AccountRole, UserDetails};

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A row with the same unique key exists already.
    #[error("already exists")]
    Conflict,
    /// The database URL is not one Xiji supports.
    #[error("unsupported database URL (use sqlite://… or postgres://…)")]
    UnsupportedUrl,
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored JSON is corrupt.
    #[error("corrupt JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
    /// Any other database error.
    #[error("database error: {0}")]
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => DbError::Conflict,
            _ => DbError::Sql(e),
        }
    }
}

/// Which database engine is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite file (embedded default).
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// Handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

type Result<T> = std::result::Result<T, DbError>;

/// `%word%` for `LIKE … ESCAPE '\'`.
pub(super) fn like_pattern(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('%');
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// `$1, $2, …` placeholders for an `IN (…)` list starting at `$start`.
fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Connects and applies migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(DbError::UnsupportedUrl);
        };
        let options = AnyPoolOptions::new().after_release(|conn, _| {
            Box::pin(async move {
                // A transaction whose COMMIT and ROLLBACK both failed (SQLite on a full disk
                // rolls back by itself, so the ROLLBACK then fails too) leaves the driver
                // counting an open transaction, and every later BEGIN on that connection fails.
                // Such a connection is closed instead of reused. The ping first lets a
                // transaction dropped unfinished roll back, which the driver does in the
                // background.
                if conn.is_in_transaction() {
                    conn.ping().await?;
                }
                Ok(!conn.is_in_transaction())
            })
        });
        let pool = match engine {
            Engine::Sqlite => {
                // WAL lets readers run beside the writer; the pragma persists in the file.
                let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                    .foreign_keys(true);
                let setup = sqlx::SqlitePool::connect_with(opts).await?;
                setup.close().await;
                // A local file cannot drop the connection: no ping (a round trip to the
                // connection's worker thread) before every acquire; sqlx still pings on release.
                options
                    .max_connections(8)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = NORMAL")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await?
            }
            Engine::Postgres => options.max_connections(16).connect(url).await?,
        };
        let store = Store { pool, engine };
        match engine {
            Engine::Sqlite => sqlx::migrate!("migrations/sqlite").run(&store.pool).await?,
            Engine::Postgres => {
                sqlx::migrate!("migrations/postgres")
                    .run(&store.pool)
                    .await?
            }
        }
        Ok(store)
    }

    /// The engine in use.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// A transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes fails with
    /// `SQLITE_BUSY_SNAPSHOT` (no retry, no busy timeout) when another writer committed between.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod billing_tests;
#[cfg(test)]
mod reservations_tests;
#[cfg(test)]
pub(crate) mod tests;
