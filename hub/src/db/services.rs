//! External services from configuration.

use super::rows::ServiceRow;
use super::{placeholders, Result, Store};

impl Store {
    /// Creates or updates a service (from configuration).
    pub async fn upsert_service(&self, s: &ServiceRow) -> Result<i64> {
        if let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM services WHERE name = $1")
            .bind(&s.name)
            .fetch_optional(&self.pool)
            .await?
        {
            sqlx::query(
                "UPDATE services SET admin = $1, url = $2, info = $3, display = $4 WHERE id = $5",
            )
            .bind(s.admin)
            .bind(s.url.as_deref())
            .bind(&s.info)
            .bind(s.display)
            .bind(id)
            .execute(&self.pool)
            .await?;
            return Ok(id);
        }
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO services (name, admin, url, info, display) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&s.name)
        .bind(s.admin)
        .bind(s.url.as_deref())
        .bind(&s.info)
        .bind(s.display)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Deletes services not in `keep`.
    pub async fn delete_services_except(&self, keep: &[String]) -> Result<()> {
        let sql = if keep.is_empty() {
            "DELETE FROM services".to_owned()
        } else {
            format!(
                "DELETE FROM services WHERE name NOT IN ({})",
                placeholders(1, keep.len())
            )
        };
        let mut q = sqlx::query(&sql);
        for k in keep {
            q = q.bind(k.as_str());
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// All services.
    pub async fn services(&self) -> Result<Vec<ServiceRow>> {
        Ok(sqlx::query_as::<_, ServiceRow>(
            "SELECT id, name, admin, url, info, display FROM services ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// A service by name.
    pub async fn service(&self, name: &str) -> Result<Option<ServiceRow>> {
        Ok(sqlx::query_as::<_, ServiceRow>(
            "SELECT id, name, admin, url, info, display FROM services WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }
}
