//! Compute pools: the groups of machines clusters are placed on, as administrators define them.
//! Which machine is in which pool is the backend's record (a Kubernetes node's label), not a
//! row here.

use super::{Result, Store};
use crate::clock::Micros;

const COLUMNS: &str = "name, description, created";

/// One compute pool.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ComputePoolRow {
    /// Unique name, a label value (`gpu`, `a100-nodes`).
    pub name: String,
    /// What it is for, as the administrator wrote it (may be empty).
    pub description: String,
    /// When it was defined (0: made by the migration).
    pub created: Micros,
}

impl Store {
    /// Every compute pool, by name.
    pub async fn list_compute_pools(&self) -> Result<Vec<ComputePoolRow>> {
        Ok(sqlx::query_as::<_, ComputePoolRow>(&format!(
            "SELECT {COLUMNS} FROM compute_pools ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// One compute pool by name.
    pub async fn compute_pool(&self, name: &str) -> Result<Option<ComputePoolRow>> {
        Ok(sqlx::query_as::<_, ComputePoolRow>(&format!(
            "SELECT {COLUMNS} FROM compute_pools WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Defines a pool; `DbError::Conflict` if the name is taken.
    pub async fn create_compute_pool(
        &self,
        name: &str,
        description: &str,
        now: Micros,
    ) -> Result<ComputePoolRow> {
        Ok(sqlx::query_as::<_, ComputePoolRow>(&format!(
            "INSERT INTO compute_pools (name, description, created) VALUES ($1, $2, $3) \
             RETURNING {COLUMNS}"
        ))
        .bind(name)
        .bind(description)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Removes a pool; false if there was none of that name.
    pub async fn delete_compute_pool(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM compute_pools WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::db::tests::stores;
    use crate::db::DbError;

    #[tokio::test]
    async fn compute_pools_are_defined_listed_unique_and_removed_on_both_engines() {
        for (store, _dir) in stores().await {
            let pools = store.list_compute_pools().await.unwrap();
            assert_eq!(
                pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
                ["default"],
                "the migration defines the pool single-machine backends' host is in"
            );
            let gpu = store
                .create_compute_pool("gpu", "A100 nodes", 42)
                .await
                .unwrap();
            assert_eq!(
                (gpu.name.as_str(), gpu.description.as_str(), gpu.created),
                ("gpu", "A100 nodes", 42)
            );
            assert!(matches!(
                store.create_compute_pool("gpu", "again", 43).await,
                Err(DbError::Conflict)
            ));
            assert_eq!(store.compute_pool("gpu").await.unwrap(), Some(gpu));
            assert_eq!(store.compute_pool("cpu").await.unwrap(), None);
            assert!(store.delete_compute_pool("gpu").await.unwrap());
            assert!(!store.delete_compute_pool("gpu").await.unwrap());
            assert_eq!(store.list_compute_pools().await.unwrap().len(), 1);
        }
    }
}
