//! The `Store`: every SQL statement of the hub, over one `sqlx::AnyPool` so that the same code runs
//! on SQLite (the embedded default) and PostgreSQL. Placeholders are `$1…`, which both accept;
//! timestamps are microseconds, booleans 0/1 (see the migrations).

mod images;
mod rows;
mod save_jobs;

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, Connection, Row};

pub use images::{ImageFields, ImageFilter, ImageRow};
pub use rows::*;
pub use save_jobs::{NewSaveJob, SaveJobRow};

use crate::clock::Micros;

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

    // ---- users -------------------------------------------------------------------------------

    /// Creates a user.
    pub async fn create_user(&self, name: &str, admin: bool, now: Micros) -> Result<UserRow> {
        let row = sqlx::query_as::<_, UserRow>(&format!(
            "INSERT INTO users (name, admin, account_role, created) VALUES ($1, $2, $3, $4) \
             RETURNING {USER_COLUMNS}"
        ))
        .bind(name)
        .bind(i64::from(admin))
        .bind(if admin { "admin" } else { "student" })
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
            .bind(if admin { "admin" } else { "student" })
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
            Some(ServerStateFilter::Active) => conditions.push(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status <> 'stopped')"
                    .into(),
            ),
            Some(ServerStateFilter::Ready) => conditions.push(
                "EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status = 'running')"
                    .into(),
            ),
            Some(ServerStateFilter::Inactive) => conditions.push(
                "NOT EXISTS (SELECT 1 FROM servers s WHERE s.user_id = users.id AND s.status <> 'stopped')"
                    .into(),
            ),
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
        if let Some(role) = &update.account_role {
            sqlx::query("UPDATE users SET account_role = $1 WHERE id = $2")
                .bind(role)
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

    // ---- groups ------------------------------------------------------------------------------

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

    /// Group names of each user id.
    pub async fn user_groups(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<String>>> {
        let mut conn = self.pool.acquire().await?;
        Self::user_groups_on(&mut conn, user_ids).await
    }

    async fn user_groups_on(
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

    // ---- roles -------------------------------------------------------------------------------

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

    async fn user_roles_on(
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

    // ---- services ----------------------------------------------------------------------------

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

    // ---- tokens ------------------------------------------------------------------------------

    /// Stores a token (already hashed).
    pub async fn insert_token(&self, t: &NewToken<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO api_tokens (hashed, kind, user_id, service_id, server_id, scopes, note, session_id, \
             oauth_client, created, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(t.hashed)
        .bind(t.kind)
        .bind(t.user_id)
        .bind(t.service_id)
        .bind(t.server_id)
        .bind(serde_json::to_string(t.scopes)?)
        .bind(t.note)
        .bind(t.session_id)
        .bind(t.oauth_client)
        .bind(t.created)
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The token with this hash, with its owner's names.
    pub async fn token_by_hash(&self, hashed: &str) -> Result<Option<TokenRow>> {
        Ok(
            sqlx::query_as::<_, TokenRow>(&format!("{TOKEN_SELECT} WHERE t.hashed = $1"))
                .bind(hashed)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A token by id.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRow>> {
        Ok(
            sqlx::query_as::<_, TokenRow>(&format!("{TOKEN_SELECT} WHERE t.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A user's tokens.
    pub async fn tokens_of_user(&self, user_id: i64) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as::<_, TokenRow>(&format!(
            "{TOKEN_SELECT} WHERE t.user_id = $1 ORDER BY t.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Tokens of a service.
    pub async fn tokens_of_service(&self, service_id: i64) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as::<_, TokenRow>(&format!(
            "{TOKEN_SELECT} WHERE t.service_id = $1 ORDER BY t.id"
        ))
        .bind(service_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a token.
    pub async fn delete_token(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every token of a login session (logout).
    pub async fn delete_tokens_of_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes expired tokens, codes and sessions.
    pub async fn purge_expired(&self, now: Micros) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM login_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a token's use.
    pub async fn touch_token(&self, id: i64, t: Micros) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_activity = $1 WHERE id = $2")
            .bind(t)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    // ---- servers -----------------------------------------------------------------------------

    /// One server of a user.
    pub async fn server(&self, user_id: i64, name: &str) -> Result<Option<ServerRow>> {
        Ok(sqlx::query_as::<_, ServerRow>(&format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_id = $1 AND name = $2"
        ))
        .bind(user_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Servers of each user id.
    pub async fn servers_of(&self, user_ids: &[i64]) -> Result<BTreeMap<i64, Vec<ServerRow>>> {
        let mut conn = self.pool.acquire().await?;
        Self::servers_of_on(&mut conn, user_ids).await
    }

    async fn servers_of_on(
        conn: &mut AnyConnection,
        user_ids: &[i64],
    ) -> Result<BTreeMap<i64, Vec<ServerRow>>> {
        let mut out: BTreeMap<i64, Vec<ServerRow>> = BTreeMap::new();
        if user_ids.is_empty() {
            return Ok(out);
        }
        let sql = format!(
            "SELECT {SERVER_COLUMNS} FROM servers WHERE user_id IN ({}) ORDER BY name",
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query_as::<_, ServerRow>(&sql);
        for id in user_ids {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.entry(row.user_id).or_default().push(row);
        }
        Ok(out)
    }

    /// Every server that is not stopped, with its owner's name.
    pub async fn active_servers(&self) -> Result<Vec<(String, ServerRow)>> {
        let rows = sqlx::query(&format!(
            "SELECT u.name AS owner, {} FROM servers s JOIN users u ON u.id = s.user_id WHERE s.status <> 'stopped'",
            SERVER_COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ")
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let owner: String = row.try_get("owner")?;
            out.push((owner, <ServerRow as sqlx::FromRow<AnyRow>>::from_row(&row)?));
        }
        Ok(out)
    }

    /// Number of servers of a user other than the default one.
    pub async fn count_named_servers(&self, user_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM servers WHERE user_id = $1 AND name <> ''",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Marks a server as spawning, creating its row if needed, together with its API token and
    /// OAuth client, in one transaction. Returns the server row's id.
    pub async fn begin_spawn(&self, spawn: &BeginSpawn<'_>) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let existing =
            sqlx::query_scalar::<_, i64>("SELECT id FROM servers WHERE user_id = $1 AND name = $2")
                .bind(spawn.user_id)
                .bind(spawn.server_name)
                .fetch_optional(&mut *tx)
                .await?;
        let server_id = match existing {
            Some(id) => {
                let changed = sqlx::query(
                    "UPDATE servers SET status = 'spawn', url = NULL, state = NULL, user_options = $1, \
                     started = $2, last_activity = $2 WHERE id = $3 AND status = 'stopped'",
                )
                .bind(spawn.user_options)
                .bind(spawn.now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Err(DbError::Conflict);
                }
                id
            }
            None => sqlx::query_scalar::<_, i64>(
                "INSERT INTO servers (user_id, name, status, user_options, started, last_activity) \
                 VALUES ($1, $2, 'spawn', $3, $4, $4) RETURNING id",
            )
            .bind(spawn.user_id)
            .bind(spawn.server_name)
            .bind(spawn.user_options)
            .bind(spawn.now)
            .fetch_one(&mut *tx)
            .await?,
        };
        sqlx::query("DELETE FROM api_tokens WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO api_tokens (hashed, kind, user_id, server_id, scopes, note, created) \
             VALUES ($1, 'server', $2, $3, $4, $5, $6)",
        )
        .bind(spawn.token_hash)
        .bind(spawn.user_id)
        .bind(server_id)
        .bind(serde_json::to_string(spawn.token_scopes)?)
        .bind("Server token")
        .bind(spawn.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        let clients = std::iter::once((spawn.client_id, spawn.redirect_uri)).chain(
            spawn
                .node_clients
                .iter()
                .map(|(id, uri)| (id.as_str(), uri.as_str())),
        );
        for (client_id, redirect_uri) in clients {
            sqlx::query("DELETE FROM oauth_clients WHERE identifier = $1")
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_clients (identifier, description, secret_hash, redirect_uri, server_id) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(client_id)
            .bind(spawn.client_description)
            .bind(spawn.token_hash)
            .bind(redirect_uri)
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(server_id)
    }

    /// Saves what the backend reported after launching.
    pub async fn set_server_launched(
        &self,
        id: i64,
        url: &str,
        state: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query("UPDATE servers SET url = $1, state = $2 WHERE id = $3")
            .bind(url)
            .bind(state.to_string())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a server's status (`spawn`, `running`, `stop`, `stopped`).
    pub async fn set_server_status(&self, id: i64, status: &str) -> Result<()> {
        sqlx::query("UPDATE servers SET status = $1 WHERE id = $2")
            .bind(status)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a server stopped and removes its token and OAuth client, in one transaction.
    pub async fn finish_stop(&self, id: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE servers SET status = 'stopped', url = NULL, state = NULL, started = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_tokens WHERE server_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM oauth_clients WHERE server_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a (stopped) server row for good.
    pub async fn delete_server(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Raises a server's last activity.
    pub async fn touch_server(&self, id: i64, t: Micros) -> Result<()> {
        sqlx::query(
            "UPDATE servers SET last_activity = $1 WHERE id = $2 AND (last_activity IS NULL OR last_activity < $1)",
        )
        .bind(t)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    // ---- OAuth -------------------------------------------------------------------------------

    /// An OAuth client by its identifier.
    pub async fn oauth_client(&self, identifier: &str) -> Result<Option<OAuthClientRow>> {
        Ok(sqlx::query_as::<_, OAuthClientRow>(
            "SELECT c.identifier, c.description, c.secret_hash, c.redirect_uri, c.server_id, c.service_id, \
             s.name AS server_name, u.name AS server_owner \
             FROM oauth_clients c LEFT JOIN servers s ON s.id = c.server_id LEFT JOIN users u ON u.id = s.user_id \
             WHERE c.identifier = $1",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores an authorization code (hashed).
    pub async fn insert_code(&self, c: &NewCode<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_identifier, user_id, session_id, redirect_uri, scopes, \
             code_challenge, code_challenge_method, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.code_hash)
        .bind(c.client_identifier)
        .bind(c.user_id)
        .bind(c.session_id)
        .bind(c.redirect_uri)
        .bind(serde_json::to_string(c.scopes)?)
        .bind(c.code_challenge)
        .bind(c.code_challenge_method)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes and returns a code: each code is used once.
    pub async fn take_code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query_as::<_, CodeRow>(
            "SELECT client_identifier, user_id, session_id, redirect_uri, scopes, code_challenge, \
             code_challenge_method, expires_at FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE code_hash = $1")
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }

    // ---- login sessions ----------------------------------------------------------------------

    /// Stores a login session (cookie value hashed).
    pub async fn insert_session(
        &self,
        hashed: &str,
        session_id: &str,
        user_id: i64,
        now: Micros,
        expires_at: Micros,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO login_sessions (hashed, session_id, user_id, created, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hashed)
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this cookie hash, if not expired.
    pub async fn session(&self, hashed: &str, now: Micros) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as::<_, SessionRow>(
            "SELECT session_id, user_id, expires_at FROM login_sessions WHERE hashed = $1 AND expires_at > $2",
        )
        .bind(hashed)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a login session and every token issued within it.
    pub async fn delete_session(&self, session_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM login_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- settings ----------------------------------------------------------------------------

    /// A stored setting.
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a setting.
    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM settings WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
            .bind(key)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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

#[cfg(test)]
mod tests;
