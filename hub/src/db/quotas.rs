//! Quotas and capacity caps: each account role's default limits, users' exceptions to them
//! (a NULL field is the role's), the administrator's caps on what the backend reports, and what
//! a user's admitted clusters hold now. Admission reads the same rows in its own transaction
//! (`reservations`); these statements are for the administration and the pages.

use super::reservations::{Amounts, Limits};
use super::{AccountRole, Result, Store};
use crate::clock::Micros;

const LIMIT_COLUMNS: &str = "clusters, nodes, cpu_millis, memory_mib, gpus, storage_mib";

/// A role's default limits (`None`: no limit).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleQuotaRow {
    /// The account role.
    #[sqlx(try_from = "String")]
    pub role: AccountRole,
    /// Its limits.
    #[sqlx(flatten)]
    pub limits: Limits,
    /// Last change (0: never changed since the migration).
    pub updated: Micros,
}

/// A user's exception to their role's limits (`None`: the role's).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserQuotaRow {
    /// The user.
    pub user_id: i64,
    /// Their name.
    pub user_name: String,
    /// Their account role, whose limits fill the fields left `None`.
    #[sqlx(try_from = "String")]
    pub account_role: AccountRole,
    /// The fields the exception sets.
    #[sqlx(flatten)]
    pub limits: Limits,
    /// Last change.
    pub updated: Micros,
    /// Who set it: `None` an administrator, `campus:<class>` the quota class a campus login's
    /// claims named.
    pub source: Option<String>,
}

/// A user's quota: their role's limits and their exception, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserQuota {
    /// The user's account role.
    pub role: AccountRole,
    /// The role's limits.
    pub role_limits: Limits,
    /// The user's exception.
    pub exception: Option<UserQuotaRow>,
}

impl UserQuota {
    /// The limits that hold for the user: each field of the exception where it sets one, else
    /// the role's.
    pub fn effective(&self) -> Limits {
        match &self.exception {
            Some(e) => e.limits.over(self.role_limits),
            None => self.role_limits,
        }
    }
}

/// The administrator's caps on the backend's capacity (`None`: what the backend reports).
/// Clusters and storage are never capped: those fields are always `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct CapacityCapsRow {
    /// The caps.
    #[sqlx(flatten)]
    pub limits: Limits,
    /// Last change (0: never).
    pub updated: Micros,
}

const SELECT_USER_QUOTA: &str = "SELECT q.user_id, u.name AS user_name, u.account_role, \
     q.clusters, q.nodes, q.cpu_millis, q.memory_mib, q.gpus, q.storage_mib, q.updated, q.source \
     FROM quotas q JOIN users u ON u.id = q.user_id";

impl Store {
    /// Every role's limits, in the roles' order (student, teacher, admin).
    pub async fn role_quotas(&self) -> Result<Vec<RoleQuotaRow>> {
        let mut rows = sqlx::query_as::<_, RoleQuotaRow>(&format!(
            "SELECT role, {LIMIT_COLUMNS}, updated FROM quotas WHERE role IS NOT NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.sort_by_key(|r| AccountRole::ALL.iter().position(|a| *a == r.role));
        Ok(rows)
    }

    /// One role's limits (no limit at all if its row is missing).
    pub async fn role_quota(&self, role: AccountRole) -> Result<RoleQuotaRow> {
        Ok(sqlx::query_as::<_, RoleQuotaRow>(&format!(
            "SELECT role, {LIMIT_COLUMNS}, updated FROM quotas WHERE role = $1"
        ))
        .bind(role.as_str())
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(RoleQuotaRow {
            role,
            limits: Limits::default(),
            updated: 0,
        }))
    }

    /// Replaces a role's limits.
    pub async fn set_role_quota(
        &self,
        role: AccountRole,
        limits: &Limits,
        now: Micros,
    ) -> Result<RoleQuotaRow> {
        Ok(sqlx::query_as::<_, RoleQuotaRow>(&format!(
            "INSERT INTO quotas (role, {LIMIT_COLUMNS}, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (role) DO UPDATE SET clusters = excluded.clusters, nodes = excluded.nodes, \
             cpu_millis = excluded.cpu_millis, memory_mib = excluded.memory_mib, gpus = excluded.gpus, \
             storage_mib = excluded.storage_mib, updated = excluded.updated \
             RETURNING role, {LIMIT_COLUMNS}, updated"
        ))
        .bind(role.as_str())
        .bind(limits.clusters)
        .bind(limits.nodes)
        .bind(limits.cpu_millis)
        .bind(limits.memory_mib)
        .bind(limits.gpus)
        .bind(limits.storage_mib)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every user's exception, by user name.
    pub async fn user_quota_exceptions(&self) -> Result<Vec<UserQuotaRow>> {
        Ok(
            sqlx::query_as::<_, UserQuotaRow>(&format!("{SELECT_USER_QUOTA} ORDER BY u.name"))
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A user's quota: their role's limits and their exception; `None` if there is no such user.
    pub async fn user_quota(&self, user_id: i64) -> Result<Option<UserQuota>> {
        // The user's role and its limits (none if the role's row is missing).
        let role = sqlx::query_as::<_, RoleQuotaRow>(
            "SELECT u.account_role AS role, r.clusters, r.nodes, r.cpu_millis, r.memory_mib, r.gpus, \
             r.storage_mib, CAST(COALESCE(r.updated, 0) AS BIGINT) AS updated \
             FROM users u LEFT JOIN quotas r ON r.role = u.account_role WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(role) = role else {
            return Ok(None);
        };
        let exception =
            sqlx::query_as::<_, UserQuotaRow>(&format!("{SELECT_USER_QUOTA} WHERE q.user_id = $1"))
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(Some(UserQuota {
            role: role.role,
            role_limits: role.limits,
            exception,
        }))
    }

    /// Sets (or replaces) a user's exception: the fields given override the role's. `source`
    /// says who set it (`None`: an administrator).
    pub async fn set_user_quota(
        &self,
        user_id: i64,
        limits: &Limits,
        source: Option<&str>,
        now: Micros,
    ) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO quotas (user_id, {LIMIT_COLUMNS}, updated, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (user_id) DO UPDATE SET clusters = excluded.clusters, nodes = excluded.nodes, \
             cpu_millis = excluded.cpu_millis, memory_mib = excluded.memory_mib, gpus = excluded.gpus, \
             storage_mib = excluded.storage_mib, updated = excluded.updated, source = excluded.source"
        ))
        .bind(user_id)
        .bind(limits.clusters)
        .bind(limits.nodes)
        .bind(limits.cpu_millis)
        .bind(limits.memory_mib)
        .bind(limits.gpus)
        .bind(limits.storage_mib)
        .bind(now)
        .bind(source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a user's exception (their role's limits hold again); `false` if they had none.
    pub async fn clear_user_quota(&self, user_id: i64) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM quotas WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// The administrator's caps on the backend's capacity.
    pub async fn capacity_caps(&self) -> Result<CapacityCapsRow> {
        Ok(sqlx::query_as::<_, CapacityCapsRow>(
            "SELECT CAST(NULL AS BIGINT) AS clusters, nodes, cpu_millis, memory_mib, gpus, \
             CAST(NULL AS BIGINT) AS storage_mib, updated FROM capacity_caps WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or(CapacityCapsRow {
            limits: Limits::default(),
            updated: 0,
        }))
    }

    /// Replaces the caps (`clusters` and `storage_mib` are not stored: nothing caps them).
    pub async fn set_capacity_caps(&self, caps: &Limits, now: Micros) -> Result<CapacityCapsRow> {
        sqlx::query(
            "INSERT INTO capacity_caps (id, nodes, cpu_millis, memory_mib, gpus, updated) \
             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO UPDATE SET nodes = excluded.nodes, \
             cpu_millis = excluded.cpu_millis, memory_mib = excluded.memory_mib, \
             gpus = excluded.gpus, updated = excluded.updated",
        )
        .bind(caps.nodes)
        .bind(caps.cpu_millis)
        .bind(caps.memory_mib)
        .bind(caps.gpus)
        .bind(now)
        .execute(&self.pool)
        .await?;
        self.capacity_caps().await
    }

    /// What the user's admitted clusters hold now (waiting starts are not counted): clusters,
    /// nodes, and over all nodes CPU, memory, GPUs and storage.
    pub async fn reserved_by_user(&self, user_id: i64) -> Result<Amounts> {
        Ok(sqlx::query_as::<_, Amounts>(
            "SELECT CAST(COUNT(*) AS BIGINT) AS clusters, \
             CAST(COALESCE(SUM(nodes), 0) AS BIGINT) AS nodes, \
             CAST(COALESCE(SUM(nodes * cpu_millis), 0) AS BIGINT) AS cpu_millis, \
             CAST(COALESCE(SUM(nodes * memory_mib), 0) AS BIGINT) AS memory_mib, \
             CAST(COALESCE(SUM(nodes * gpus), 0) AS BIGINT) AS gpus, \
             CAST(COALESCE(SUM(nodes * storage_mib), 0) AS BIGINT) AS storage_mib \
             FROM reservations WHERE user_id = $1 AND state = 'admitted'",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::stores;
    use super::*;

    fn limits(nodes: Option<i64>, cpu_millis: Option<i64>) -> Limits {
        Limits {
            nodes,
            cpu_millis,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn role_defaults_start_unlimited_and_a_user_exception_overrides_only_its_fields_on_both_engines(
    ) {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let roles = store.role_quotas().await.unwrap();
            assert_eq!(
                roles.iter().map(|r| r.role).collect::<Vec<_>>(),
                AccountRole::ALL,
                "{engine:?}"
            );
            assert!(roles.iter().all(|r| r.limits == Limits::default()));

            let student = Limits {
                clusters: Some(2),
                nodes: Some(4),
                cpu_millis: Some(8000),
                memory_mib: Some(16384),
                gpus: Some(0),
                storage_mib: Some(102_400),
            };
            let row = store
                .set_role_quota(AccountRole::Student, &student, 7)
                .await
                .unwrap();
            assert_eq!((row.limits, row.updated), (student, 7), "{engine:?}");

            let alice = store.create_user("alice", false, 1).await.unwrap();
            let quota = store.user_quota(alice.id).await.unwrap().unwrap();
            assert_eq!(quota.role, AccountRole::Student);
            assert_eq!(quota.exception, None);
            assert_eq!(quota.effective(), student, "{engine:?}");

            store
                .set_user_quota(alice.id, &limits(Some(8), None), None, 8)
                .await
                .unwrap();
            let quota = store.user_quota(alice.id).await.unwrap().unwrap();
            assert_eq!(
                quota.effective(),
                Limits {
                    nodes: Some(8),
                    ..student
                },
                "{engine:?}: the exception changes nodes only"
            );
            // Setting again replaces the whole exception.
            store
                .set_user_quota(alice.id, &limits(None, Some(500)), None, 9)
                .await
                .unwrap();
            let quota = store.user_quota(alice.id).await.unwrap().unwrap();
            assert_eq!(quota.effective().nodes, Some(4), "{engine:?}");
            assert_eq!(quota.effective().cpu_millis, Some(500), "{engine:?}");
            let listed = store.user_quota_exceptions().await.unwrap();
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].user_name, "alice");
            assert_eq!(listed[0].updated, 9);

            assert!(store.clear_user_quota(alice.id).await.unwrap());
            assert!(!store.clear_user_quota(alice.id).await.unwrap());
            let quota = store.user_quota(alice.id).await.unwrap().unwrap();
            assert_eq!(quota.effective(), student, "{engine:?}");
            assert!(store.user_quota(alice.id + 100).await.unwrap().is_none());
        }
    }

    #[tokio::test]
    async fn capacity_caps_are_stored_without_clusters_or_storage_on_both_engines() {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            assert_eq!(
                store.capacity_caps().await.unwrap().limits,
                Limits::default()
            );
            let caps = Limits {
                clusters: Some(3),
                nodes: Some(10),
                cpu_millis: Some(16_000),
                memory_mib: None,
                gpus: Some(2),
                storage_mib: Some(1),
            };
            let row = store.set_capacity_caps(&caps, 5).await.unwrap();
            assert_eq!(
                row.limits,
                Limits {
                    clusters: None,
                    storage_mib: None,
                    ..caps
                },
                "{engine:?}"
            );
            assert_eq!(row.updated, 5);
        }
    }

    #[tokio::test]
    async fn a_users_use_sums_their_admitted_clusters_only_on_both_engines() {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let alice = store.create_user("alice", false, 1).await.unwrap();
            let bob = store.create_user("bob", false, 1).await.unwrap();
            assert_eq!(
                store.reserved_by_user(alice.id).await.unwrap(),
                Amounts::default()
            );
            // (user, server, nodes, cpu, memory, gpus, storage, state)
            let rows = [
                (alice.id, "a", 2, 1500, 2048, 1, 10_240, "admitted"),
                (alice.id, "b", 1, 500, 1024, 0, 0, "admitted"),
                (alice.id, "c", 4, 1000, 1024, 0, 0, "queued"),
                (bob.id, "", 3, 1000, 1024, 0, 0, "admitted"),
            ];
            for (seq, (user, server, nodes, cpu, memory, gpus, storage, state)) in
                rows.into_iter().enumerate()
            {
                let server_id: i64 = sqlx::query_scalar(
                    "INSERT INTO servers (user_id, name) VALUES ($1, $2) RETURNING id",
                )
                .bind(user)
                .bind(server)
                .fetch_one(&store.pool)
                .await
                .unwrap();
                sqlx::query(
                    "INSERT INTO reservations (server_id, user_id, image, nodes, cpu_millis, \
                     memory_mib, gpus, storage_mib, state, seq, run, created) \
                     VALUES ($1, $2, 'img', $3, $4, $5, $6, $7, $8, $9, $10, 0)",
                )
                .bind(server_id)
                .bind(user)
                .bind(nodes)
                .bind(cpu)
                .bind(memory)
                .bind(gpus)
                .bind(storage)
                .bind(state)
                .bind(i64::try_from(seq).unwrap())
                .bind(format!("run-{seq}"))
                .execute(&store.pool)
                .await
                .unwrap();
            }
            assert_eq!(
                store.reserved_by_user(alice.id).await.unwrap(),
                Amounts {
                    clusters: 2,
                    nodes: 3,
                    cpu_millis: 2 * 1500 + 500,
                    memory_mib: 2 * 2048 + 1024,
                    gpus: 2,
                    storage_mib: 2 * 10_240,
                },
                "{engine:?}"
            );
            assert_eq!(store.reserved_by_user(bob.id).await.unwrap().nodes, 3);
        }
    }
}
