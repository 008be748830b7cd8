//! Groups: their rows and properties, and their members (`user_groups`) seen from either side.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::rows::GroupRow;
use super::{placeholders, Result, Store};

impl Store {
    /// Creates a group.
    pub async fn create_group(
        &self,
        name: &str,
        properties: &serde_json::Value,
    ) -> Result<GroupRow> {
        Ok(sqlx::query_as::<_, GroupRow>(
            "INSERT INTO groups (name, properties) VALUES ($1, $2) RETURNING id, name, properties",
        )
        .bind(name)
        .bind(properties.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Creates several groups, each without properties, in one transaction: all or none
    /// ([`DbError::Conflict`](super::DbError::Conflict) if one exists already).
    pub async fn create_groups(&self, names: &[String]) -> Result<Vec<GroupRow>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            out.push(
                sqlx::query_as::<_, GroupRow>(
                    "INSERT INTO groups (name, properties) VALUES ($1, '{}') \
                     RETURNING id, name, properties",
                )
                .bind(name)
                .fetch_one(&mut *tx)
                .await?,
            );
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Creates a group without properties with these members (user ids), in one transaction.
    pub async fn create_group_with_members(
        &self,
        name: &str,
        user_ids: &[i64],
    ) -> Result<GroupRow> {
        let mut tx = self.write_tx().await?;
        let group = sqlx::query_as::<_, GroupRow>(
            "INSERT INTO groups (name, properties) VALUES ($1, '{}') RETURNING id, name, properties",
        )
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        for uid in user_ids {
            sqlx::query("INSERT INTO user_groups (user_id, group_id) VALUES ($1, $2)")
                .bind(*uid)
                .bind(group.id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(group)
    }

    /// A group by name.
    pub async fn group(&self, name: &str) -> Result<Option<GroupRow>> {
        Ok(
            sqlx::query_as::<_, GroupRow>(
                "SELECT id, name, properties FROM groups WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// A page of groups (optionally only the named ones) and the total.
    pub async fn list_groups(
        &self,
        only: Option<&[String]>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<GroupRow>, i64)> {
        let (where_clause, binds): (String, Vec<String>) = match only {
            Some([]) => return Ok((Vec::new(), 0)),
            Some(names) => (
                format!("WHERE name IN ({})", placeholders(1, names.len())),
                names.to_vec(),
            ),
            None => (String::new(), Vec::new()),
        };
        let count_sql = format!("SELECT COUNT(*) FROM groups {where_clause}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for b in &binds {
            count = count.bind(b.as_str());
        }
        let total = count.fetch_one(&self.pool).await?;
        let sql = format!(
            "SELECT id, name, properties FROM groups {where_clause} ORDER BY id LIMIT {limit} OFFSET {offset}"
        );
        let mut q = sqlx::query_as::<_, GroupRow>(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        Ok((q.fetch_all(&self.pool).await?, total))
    }

    /// Replaces a group's properties.
    pub async fn set_group_properties(
        &self,
        id: i64,
        properties: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query("UPDATE groups SET properties = $1 WHERE id = $2")
            .bind(properties.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a group.
    pub async fn delete_group(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM groups WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds users (by id) to a group; members already in it are ignored.
    pub async fn add_group_members(&self, group_id: i64, user_ids: &[i64]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for uid in user_ids {
            sqlx::query(
                "INSERT INTO user_groups (user_id, group_id) SELECT $1, $2 WHERE NOT EXISTS \
                 (SELECT 1 FROM user_groups WHERE user_id = $1 AND group_id = $2)",
            )
            .bind(*uid)
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes users (by id) from a group.
    pub async fn remove_group_members(&self, group_id: i64, user_ids: &[i64]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for uid in user_ids {
            sqlx::query("DELETE FROM user_groups WHERE user_id = $1 AND group_id = $2")
                .bind(*uid)
                .bind(group_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Member names of each group id.
    pub async fn group_members(&self, group_ids: &[i64]) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        if group_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT ug.group_id, u.name FROM user_groups ug JOIN users u ON u.id = ug.user_id \
             WHERE ug.group_id IN ({}) ORDER BY u.name",
            placeholders(1, group_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in group_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&self.pool).await? {
            out.entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        Ok(out)
    }

    /// Group names of each user id.
    pub async fn user_groups(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut conn = self.pool.acquire().await?;
        Self::user_groups_on(&mut conn, user_ids).await
    }

    pub(super) async fn user_groups_on(
        conn: &mut AnyConnection,
        user_ids: &[i64],
    ) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT ug.user_id, g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             WHERE ug.user_id IN ({}) ORDER BY g.name",
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.entry(row.try_get(0)?)
                .or_default()
                .push(row.try_get(1)?);
        }
        Ok(out)
    }

    /// Groups of one user, by name.
    pub async fn groups_of(&self, user_name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT g.name FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
             JOIN users u ON u.id = ug.user_id WHERE u.name = $1 ORDER BY g.name",
        )
        .bind(user_name)
        .fetch_all(&self.pool)
        .await?)
    }
}
