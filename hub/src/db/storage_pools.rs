//! Storage pools and what is placed on them.

use super::{DbError, Result, Store};
use crate::clock::Micros;

stored_words! {
    /// The kind of filesystem a pool must be mounted with.
    pub enum PoolType ("pool type") {
        /// A filesystem of this machine (ext4, xfs, btrfs, tmpfs…).
        Local = "local",
        /// An NFS mount.
        Nfs = "nfs",
        /// A GlusterFS volume mounted through FUSE.
        Glusterfs = "glusterfs",
    }
}

stored_words! {
    /// Whether a pool takes new data.
    pub enum PoolState ("pool state") {
        /// New data may be placed on it.
        Active = "active",
        /// Keeps what it holds, takes nothing new.
        Draining = "draining",
    }
}

stored_words! {
    /// What a placement holds.
    pub enum PlacementKind ("placement kind") {
        /// A user's work directory.
        Work = "work",
        /// A dataset's files.
        Dataset = "dataset",
        /// A project's files.
        Project = "project",
    }
}

const POOL_COLUMNS: &str = "id, name, path, fs_type, capacity_bytes, state, created, updated";
const PLACEMENT_COLUMNS: &str = "id, pool_id, kind, owner_key, relative_path, created";

/// One storage pool.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PoolRow {
    /// Row id.
    pub id: i64,
    /// Unique name, e.g. `fast-ssd`.
    pub name: String,
    /// Absolute, canonical path.
    pub path: String,
    /// The filesystem type it was declared with.
    #[sqlx(try_from = "String")]
    pub fs_type: PoolType,
    /// A cap below the filesystem's size, in bytes.
    pub capacity_bytes: Option<i64>,
    /// Whether it takes new data.
    #[sqlx(try_from = "String")]
    pub state: PoolState,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub updated: Micros,
}

/// A new pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPool {
    /// Unique name.
    pub name: String,
    /// Absolute, canonical path.
    pub path: String,
    /// Declared filesystem type.
    pub fs_type: PoolType,
    /// Optional cap in bytes.
    pub capacity_bytes: Option<i64>,
}

/// Where one stored thing lives.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PlacementRow {
    /// Row id.
    pub id: i64,
    /// The pool.
    pub pool_id: i64,
    /// What it holds.
    #[sqlx(try_from = "String")]
    pub kind: PlacementKind,
    /// Whose or which, e.g. `user:7`.
    pub owner_key: String,
    /// Its folder below the pool's path.
    pub relative_path: String,
    /// When it was placed.
    pub created: Micros,
}

/// What removing a pool did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolRemoval {
    /// It is gone.
    Removed,
    /// It holds this many placements; nothing changed.
    NotEmpty(i64),
    /// There was no such pool.
    Missing,
}

impl Store {
    /// Every pool, by name.
    pub async fn list_pools(&self) -> Result<Vec<PoolRow>> {
        Ok(sqlx::query_as::<_, PoolRow>(&format!(
            "SELECT {POOL_COLUMNS} FROM storage_pools ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// One pool by id.
    pub async fn pool(&self, id: i64) -> Result<Option<PoolRow>> {
        Ok(sqlx::query_as::<_, PoolRow>(&format!(
            "SELECT {POOL_COLUMNS} FROM storage_pools WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Adds a pool; `DbError::Conflict` if its name or path is taken.
    pub async fn create_pool(&self, new: &NewPool, now: Micros) -> Result<PoolRow> {
        Ok(sqlx::query_as::<_, PoolRow>(&format!(
            "INSERT INTO storage_pools (name, path, fs_type, capacity_bytes, state, created, updated) \
             VALUES ($1, $2, $3, $4, '{}', $5, $5) RETURNING {POOL_COLUMNS}",
            PoolState::Active.as_str()
        ))
        .bind(&new.name)
        .bind(&new.path)
        .bind(new.fs_type.as_str())
        .bind(new.capacity_bytes)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Changes a pool's state and cap; `None` if it is gone.
    pub async fn update_pool(
        &self,
        id: i64,
        state: PoolState,
        capacity_bytes: Option<i64>,
        now: Micros,
    ) -> Result<Option<PoolRow>> {
        Ok(sqlx::query_as::<_, PoolRow>(&format!(
            "UPDATE storage_pools SET state = $1, capacity_bytes = $2, updated = $3 WHERE id = $4 \
             RETURNING {POOL_COLUMNS}"
        ))
        .bind(state.as_str())
        .bind(capacity_bytes)
        .bind(now)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Removes a pool that holds nothing, in one transaction with the check.
    pub async fn delete_empty_pool(&self, id: i64) -> Result<PoolRemoval> {
        let mut tx = self.write_tx().await?;
        let held: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM storage_placements WHERE pool_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        if held > 0 {
            tx.rollback().await?;
            return Ok(PoolRemoval::NotEmpty(held));
        }
        let done = sqlx::query("DELETE FROM storage_pools WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(if done.rows_affected() > 0 {
            PoolRemoval::Removed
        } else {
            PoolRemoval::Missing
        })
    }

    /// Where `kind`/`owner_key` was placed, if it was.
    pub async fn placement(
        &self,
        kind: PlacementKind,
        owner_key: &str,
    ) -> Result<Option<PlacementRow>> {
        Ok(sqlx::query_as::<_, PlacementRow>(&format!(
            "SELECT {PLACEMENT_COLUMNS} FROM storage_placements WHERE kind = $1 AND owner_key = $2"
        ))
        .bind(kind.as_str())
        .bind(owner_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a placement; if `kind`/`owner_key` was placed meanwhile, that one is returned
    /// (the first placement wins, so two concurrent starts use the same folder).
    pub async fn create_placement(
        &self,
        pool_id: i64,
        kind: PlacementKind,
        owner_key: &str,
        relative_path: &str,
        now: Micros,
    ) -> Result<PlacementRow> {
        let created = sqlx::query_as::<_, PlacementRow>(&format!(
            "INSERT INTO storage_placements (pool_id, kind, owner_key, relative_path, created) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {PLACEMENT_COLUMNS}"
        ))
        .bind(pool_id)
        .bind(kind.as_str())
        .bind(owner_key)
        .bind(relative_path)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(DbError::from);
        match created {
            Err(DbError::Conflict) => self
                .placement(kind, owner_key)
                .await?
                .ok_or(DbError::Conflict),
            other => other,
        }
    }

    /// Everything placed on a pool, oldest first.
    pub async fn placements_on(&self, pool_id: i64) -> Result<Vec<PlacementRow>> {
        Ok(sqlx::query_as::<_, PlacementRow>(&format!(
            "SELECT {PLACEMENT_COLUMNS} FROM storage_placements WHERE pool_id = $1 ORDER BY id"
        ))
        .bind(pool_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets a placement (its data was deleted); whether it existed.
    pub async fn delete_placement(&self, kind: PlacementKind, owner_key: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM storage_placements WHERE kind = $1 AND owner_key = $2")
            .bind(kind.as_str())
            .bind(owner_key)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
