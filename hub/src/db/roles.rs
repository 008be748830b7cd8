//! Roles from configuration (name, description, scopes) and who holds them: users, groups and
//! services.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::rows::RoleRow;
use super::{placeholders, Result, Store};

impl Store {
    /// Creates or updates a role (from configuration).
    pub async fn upsert_role(
        &self,
        name: &str,
        description: &str,
        scopes: &[String],
    ) -> Result<i64> {
        let scopes = serde_json::to_string(scopes)?;
        if let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM roles WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
        {
            sqlx::query("UPDATE roles SET description = $1, scopes = $2 WHERE id = $3")
                .bind(description)
                .bind(scopes)
                .bind(id)
                .execute(&self.pool)
                .await?;
            return Ok(id);
        }
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO roles (name, description, scopes) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(description)
        .bind(scopes)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces the holders of a role.
    pub async fn set_role_holders(
        &self,
        role_id: i64,
        users: &[i64],
        groups: &[i64],
        services: &[i64],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        for table in ["user_roles", "group_roles", "service_roles"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE role_id = $1"))
                .bind(role_id)
                .execute(&mut *tx)
                .await?;
        }
        for (table, column, ids) in [
            ("user_roles", "user_id", users),
            ("group_roles", "group_id", groups),
            ("service_roles", "service_id", services),
        ] {
            for id in ids {
                sqlx::query(&format!(
                    "INSERT INTO {table} ({column}, role_id) VALUES ($1, $2)"
                ))
                .bind(*id)
                .bind(role_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes roles not in `keep`.
    pub async fn delete_roles_except(&self, keep: &[String]) -> Result<()> {
        if keep.is_empty() {
            sqlx::query("DELETE FROM roles").execute(&self.pool).await?;
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM roles WHERE name NOT IN ({})",
            placeholders(1, keep.len())
        );
        let mut q = sqlx::query(&sql);
        for k in keep {
            q = q.bind(k.as_str());
        }
        q.execute(&self.pool).await?;
        Ok(())
    }

    /// Configured roles (name and raw scopes) held by each user id, directly or through groups.
    pub async fn user_roles(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<RoleRow>>> {
        let mut conn = self.pool.acquire().await?;
        Self::user_roles_on(&mut conn, user_ids).await
    }

    pub(super) async fn user_roles_on(
        conn: &mut AnyConnection,
        user_ids: &[i64],
    ) -> Result<BTreeMap<i64, Vec<RoleRow>>> {
        let mut out: BTreeMap<i64, Vec<RoleRow>> = BTreeMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let ph = placeholders(1, user_ids.len());
        let sql = format!(
            "SELECT ur.user_id, r.name, r.scopes FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.user_id IN ({ph}) \
             UNION SELECT ug.user_id, r.name, r.scopes FROM user_groups ug \
             JOIN group_roles gr ON gr.group_id = ug.group_id JOIN roles r ON r.id = gr.role_id \
             WHERE ug.user_id IN ({ph})"
        );
        let mut q = sqlx::query(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let role = role_from_row(&row, 1)?;
            out.entry(row.try_get(0)?).or_default().push(role);
        }
        for roles in out.values_mut() {
            roles.sort_by(|a, b| a.name.cmp(&b.name));
            roles.dedup_by(|a, b| a.name == b.name);
        }
        Ok(out)
    }

    /// Configured roles held directly by each group id.
    pub async fn group_roles(&self, group_ids: &[i64]) -> Result<BTreeMap<i64, Vec<RoleRow>>> {
        let mut out: BTreeMap<i64, Vec<RoleRow>> = BTreeMap::new();
        if group_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT gr.group_id, r.name, r.scopes FROM group_roles gr JOIN roles r ON r.id = gr.role_id \
             WHERE gr.group_id IN ({}) ORDER BY r.name",
            placeholders(1, group_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for id in group_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&self.pool).await? {
            let role = role_from_row(&row, 1)?;
            out.entry(row.try_get(0)?).or_default().push(role);
        }
        Ok(out)
    }

    /// Configured roles of a service.
    pub async fn service_roles(&self, service_id: i64) -> Result<Vec<RoleRow>> {
        let rows = sqlx::query(
            "SELECT sr.service_id, r.name, r.scopes FROM service_roles sr JOIN roles r ON r.id = sr.role_id \
             WHERE sr.service_id = $1 ORDER BY r.name",
        )
        .bind(service_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| role_from_row(r, 1)).collect()
    }
}

fn role_from_row(row: &AnyRow, start: usize) -> Result<RoleRow> {
    let name: String = row.try_get(start)?;
    let scopes: String = row.try_get(start + 1)?;
    Ok(RoleRow {
        name,
        scopes: serde_json::from_str(&scopes)?,
    })
}
