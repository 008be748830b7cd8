//! Users: accounts (name, admin flag, account role, password hash, last activity), their
//! listing with JupyterHub's filters and sort orders, and a user read together with its groups,
//! roles and servers ([`UserDetails`]).

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Row};

use super::rows::{
    RoleRow, ServerRow, ServerStateFilter, UserQuery, UserRow, UserSort, UserUpdate, USER_COLUMNS,
};
use super::ServerStatus;
use super::{placeholders, Result, Store};
use crate::clock::Micros;

stored_words! {
    /// A Xiji account's role (quotas depend on it); JupyterHub's `admin` flag is separate.
    pub enum AccountRole ("account_role") {
        /// A student.
        Student = "student",
        /// A teacher.
        Teacher = "teacher",
        /// An administrator.
        Admin = "admin",
    }
}

impl AccountRole {
    /// The role a new account gets: administrators are admins, everyone else a student.
    pub const fn of_new_user(admin: bool) -> Self {
        if admin {
            AccountRole::Admin
        } else {
            AccountRole::Student
        }
    }
}

/// Groups, configured roles and servers of a set of users, by user id.
#[derive(Debug, Default)]
pub struct UserDetails {
    /// Group names.
    pub groups: BTreeMap<i64, Vec<String>>,
    /// Configured roles (directly or through groups).
    pub roles: BTreeMap<i64, Vec<RoleRow>>,
    /// All server rows.
    pub servers: BTreeMap<i64, Vec<ServerRow>>,
}

impl Store {
    /// Creates a user.
    pub async fn create_user(&self, name: &str, admin: bool, now: Micros) -> Result<UserRow> {
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "INSERT INTO users (name, admin, account_role, created) VALUES ($1, $2, $3, $4) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(name)
        .bind(i64::from(admin))
        .bind(AccountRole::of_new_user(admin).as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row)
    }

    /// Creates several users in one transaction; all or none.
    pub async fn create_users(
        &self,
        names: &[String],
        admin: bool,
        now: Micros,
    ) -> Result<Vec<UserRow>> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let row = sqlx::query_as::<_, UserRow>(&format!(
                "INSERT INTO users (name, admin, account_role, created) VALUES ($1, $2, $3, $4) \
                 RETURNING {USER_COLUMNS}"
            ))
            .bind(name)
            .bind(i64::from(admin))
            .bind(AccountRole::of_new_user(admin).as_str())
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            out.push(row);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A user by name.
    pub async fn user(&self, name: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as::<_, UserRow>(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query_as::<_, UserRow>(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    /// Number of users.
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// One page of users and the total matching `query`.
    pub async fn list_users(&self, query: &UserQuery) -> Result<(Vec<UserRow>, i64)> {
        let mut conditions: Vec<String> = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        match query.state {
            Some(ServerStateFilter::Active) => conditions.push(format!(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status <> '{}')",
                ServerStatus::Stopped
            )),
            Some(ServerStateFilter::Ready) => conditions.push(format!(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status = '{}')",
                ServerStatus::Running
            )),
            Some(ServerStateFilter::Inactive) => conditions.push(format!(
                "NOT EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status <> '{}')",
                ServerStatus::Stopped
            )),
            None => {}
        }
        if let Some(filter) = &query.name_filter {
            binds.push(format!("%{}%", filter.to_lowercase()));
            conditions.push(format!("LOWER(name) LIKE ${}", binds.len()));
        }
        if let Some(allowed) = &query.only {
            if allowed.names.is_empty() && allowed.groups.is_empty() {
                return Ok((Vec::new(), 0));
            }
            let mut alternatives = Vec::new();
            if !allowed.names.is_empty() {
                let start = binds.len() + 1;
                binds.extend(allowed.names.iter().cloned());
                alternatives.push(format!(
                    "name IN ({})",
                    placeholders(start, allowed.names.len())
                ));
            }
            if !allowed.groups.is_empty() {
                let start = binds.len() + 1;
                binds.extend(allowed.groups.iter().cloned());
                alternatives.push(format!(
                    "id IN (SELECT ug.user_id FROM user_groups ug JOIN groups g ON g.id = ug.group_id \
                     WHERE g.name IN ({}))",
                    placeholders(start, allowed.groups.len())
                ));
            }
            conditions.push(format!("({})", alternatives.join(" OR ")));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = match query.sort {
            UserSort::Id => "id ASC",
            UserSort::Name => "name ASC",
            UserSort::NameDesc => "name DESC",
            UserSort::LastActivity => "last_activity ASC, id ASC",
            UserSort::LastActivityDesc => "last_activity DESC, id ASC",
            UserSort::IdDesc => "id DESC",
        };
        let count_sql = format!("SELECT COUNT(*) FROM users {where_clause}");
        let mut count = sqlx::query(&count_sql);
        for b in &binds {
            count = count.bind(b.as_str());
        }
        let mut conn = self.pool.acquire().await?;
        let total: i64 = count.fetch_one(&mut *conn).await?.try_get(0)?;
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users {where_clause} ORDER BY {order} LIMIT {} OFFSET {}",
            query.limit, query.offset
        );
        let mut q = sqlx::query_as::<_, UserRow>(&sql);
        for b in &binds {
            q = q.bind(b.as_str());
        }
        Ok((q.fetch_all(&mut *conn).await?, total))
    }

    /// Applies a partial update to a user.
    pub async fn update_user(&self, id: i64, update: &UserUpdate) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if let Some(name) = &update.name {
            sqlx::query("UPDATE users SET name = $1 WHERE id = $2")
                .bind(name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(admin) = update.admin {
            sqlx::query("UPDATE users SET admin = $1 WHERE id = $2")
                .bind(i64::from(admin))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(role) = update.account_role {
            sqlx::query("UPDATE users SET account_role = $1 WHERE id = $2")
                .bind(role.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hash) = &update.password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash.as_deref())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user and everything that belongs to them (cascades).
    pub async fn delete_user(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Raises a user's last activity (never moves it backwards).
    pub async fn touch_user(&self, id: i64, t: Micros) -> Result<()> {
        sqlx::query(
            "UPDATE users SET last_activity = $1 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
        )
        .bind(t)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Groups, configured roles and servers of each user id, read on one connection (each
    /// acquisition from the pool costs round trips to SQLite's worker thread).
    pub async fn user_details(&self, user_ids: &[i64]) -> Result<UserDetails> {
        if user_ids.is_empty() {
            return Ok(UserDetails::default());
        }
        let mut conn = self.pool.acquire().await?;
        Self::user_details_on(&mut conn, user_ids).await
    }

    async fn user_details_on(conn: &mut AnyConnection, user_ids: &[i64]) -> Result<UserDetails> {
        Ok(UserDetails {
            groups: Self::user_groups_on(conn, user_ids).await?,
            roles: Self::user_roles_on(conn, user_ids).await?,
            servers: Self::servers_of_on(conn, user_ids).await?,
        })
    }

    /// A user by name with its groups, roles and servers, read on one connection.
    pub async fn user_with_details(&self, name: &str) -> Result<Option<(UserRow, UserDetails)>> {
        let mut conn = self.pool.acquire().await?;
        let user = sqlx::query_as::<_, UserRow>(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(user) = user else {
            return Ok(None);
        };
        let details = Self::user_details_on(&mut conn, &[user.id]).await?;
        Ok(Some((user, details)))
    }
}
