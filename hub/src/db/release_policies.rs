//! Release policies: the installation's default and grace period, per-user exceptions, the policy
//! each running cluster holds, and the record of releases users are shown.

use super::{Result, Store};
use crate::clock::Micros;

stored_words! {
    /// When a running cluster is given back (PRODUCT: "Release policies").
    pub enum ReleasePolicy ("release policy") {
        /// Released once no page of the cluster (JupyterLab or a desktop, any node) has been
        /// open for the grace period.
        Automatic = "automatic",
        /// Kept, pages open or not, until the user releases it (Release, or a stop).
        Manual = "manual",
        /// Released when its user logs out.
        OnLogout = "on_logout",
    }
}

stored_words! {
    /// Why the hub released a cluster (a user's own Release is a plain stop, not recorded here).
    pub enum ReleaseCause ("release cause") {
        /// The automatic policy: no page open for the grace period.
        Automatic = "automatic",
        /// The on-logout policy: its user logged out.
        OnLogout = "on_logout",
        /// An administrator released it, with a reason.
        Forced = "forced",
    }
}

/// The installation's default, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReleaseSettingsRow {
    /// The policy of users without an exception.
    #[sqlx(try_from = "String")]
    pub policy: ReleasePolicy,
    /// Seconds with no page open before an automatic cluster is released.
    pub grace_seconds: i64,
    /// Last change (0: never changed).
    pub updated: Micros,
    /// The administrator who made it.
    pub updated_by: Option<String>,
}

/// One user's exception.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReleaseExceptionRow {
    /// The user.
    pub user_name: String,
    /// Their policy instead of the default.
    #[sqlx(try_from = "String")]
    pub policy: ReleasePolicy,
    /// Last change.
    pub updated: Micros,
    /// The administrator who made it.
    pub updated_by: Option<String>,
}

/// A release the hub made or an administrator forced.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReleaseRow {
    /// Row id.
    pub id: i64,
    /// The cluster's user.
    pub user_name: String,
    /// The server (`""`: the default one).
    pub server_name: String,
    /// Why.
    #[sqlx(try_from = "String")]
    pub cause: ReleaseCause,
    /// The administrator's words (forced), else empty.
    pub reason: String,
    /// The administrator (forced).
    pub released_by: Option<String>,
    /// When.
    pub created: Micros,
}

/// What a release record says.
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    /// The cluster's user.
    pub user_id: i64,
    /// The server (`""`: the default one).
    pub server_name: &'a str,
    /// Why.
    pub cause: ReleaseCause,
    /// The administrator's words (forced), else empty.
    pub reason: &'a str,
    /// The administrator (forced).
    pub released_by: Option<&'a str>,
}

const RELEASE_COLUMNS: &str =
    "r.id, u.name AS user_name, r.server_name, r.cause, r.reason, r.released_by, r.created";

impl Store {
    /// The installation's default policy and grace period.
    pub async fn release_settings(&self) -> Result<ReleaseSettingsRow> {
        Ok(sqlx::query_as::<_, ReleaseSettingsRow>(
            "SELECT policy, grace_seconds, updated, updated_by FROM release_settings WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Replaces the default policy and grace period.
    pub async fn set_release_settings(
        &self,
        policy: ReleasePolicy,
        grace_seconds: i64,
        by: &str,
        now: Micros,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE release_settings SET policy = $1, grace_seconds = $2, updated = $3, \
             updated_by = $4 WHERE id = 1",
        )
        .bind(policy.as_str())
        .bind(grace_seconds)
        .bind(now)
        .bind(by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every user's exception, by user name.
    pub async fn release_exceptions(&self) -> Result<Vec<ReleaseExceptionRow>> {
        Ok(sqlx::query_as::<_, ReleaseExceptionRow>(
            "SELECT u.name AS user_name, e.policy, e.updated, e.updated_by \
             FROM release_exceptions e JOIN users u ON u.id = e.user_id ORDER BY u.name",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One user's exception, if they have one.
    pub async fn release_exception(&self, user_id: i64) -> Result<Option<ReleaseExceptionRow>> {
        Ok(sqlx::query_as::<_, ReleaseExceptionRow>(
            "SELECT u.name AS user_name, e.policy, e.updated, e.updated_by \
             FROM release_exceptions e JOIN users u ON u.id = e.user_id WHERE e.user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Gives a user an exception, or replaces theirs.
    pub async fn set_release_exception(
        &self,
        user_id: i64,
        policy: ReleasePolicy,
        by: &str,
        now: Micros,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM release_exceptions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO release_exceptions (user_id, policy, updated, updated_by) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(user_id)
        .bind(policy.as_str())
        .bind(now)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a user's exception (the default applies again); whether they had one.
    pub async fn delete_release_exception(&self, user_id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM release_exceptions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The policy the start of server `server_id` at `started` holds: the one recorded for that
    /// start, else `current` (the owner's policy now), recorded for it in the same transaction.
    pub async fn cluster_release_policy(
        &self,
        server_id: i64,
        started: Micros,
        current: ReleasePolicy,
    ) -> Result<ReleasePolicy> {
        let select = "SELECT policy FROM cluster_release_policies \
                      WHERE server_id = $1 AND started = $2";
        let held: Option<String> = sqlx::query_scalar(select)
            .bind(server_id)
            .bind(started)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(policy) = held.and_then(|p| ReleasePolicy::parse(&p).ok()) {
            return Ok(policy);
        }
        let mut tx = self.write_tx().await?;
        // Another hub task may have recorded it in between: the first record wins.
        let held: Option<String> = sqlx::query_scalar(select)
            .bind(server_id)
            .bind(started)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(policy) = held.and_then(|p| ReleasePolicy::parse(&p).ok()) {
            return Ok(policy);
        }
        sqlx::query("DELETE FROM cluster_release_policies WHERE server_id = $1")
            .bind(server_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO cluster_release_policies (server_id, started, policy) VALUES ($1, $2, $3)",
        )
        .bind(server_id)
        .bind(started)
        .bind(current.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Records a release.
    pub async fn record_release(&self, release: NewRelease<'_>, now: Micros) -> Result<()> {
        sqlx::query(
            "INSERT INTO releases (user_id, server_name, cause, reason, released_by, created) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(release.user_id)
        .bind(release.server_name)
        .bind(release.cause.as_str())
        .bind(release.reason)
        .bind(release.released_by)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's releases since `since`, newest first, at most `limit`.
    pub async fn releases_of(
        &self,
        user_id: i64,
        since: Micros,
        limit: i64,
    ) -> Result<Vec<ReleaseRow>> {
        Ok(sqlx::query_as::<_, ReleaseRow>(&format!(
            "SELECT {RELEASE_COLUMNS} FROM releases r JOIN users u ON u.id = r.user_id \
             WHERE r.user_id = $1 AND r.created >= $2 ORDER BY r.created DESC, r.id DESC LIMIT $3"
        ))
        .bind(user_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::stores;

    #[tokio::test]
    async fn the_default_is_manual_and_exceptions_override_it_on_both_engines() {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let settings = store.release_settings().await.unwrap();
            assert_eq!(
                (settings.policy, settings.grace_seconds, settings.updated),
                (ReleasePolicy::Manual, 60, 0),
                "{engine:?}: today's behaviour (nothing released) is the default"
            );
            store
                .set_release_settings(ReleasePolicy::Automatic, 30, "root", 5)
                .await
                .unwrap();
            let settings = store.release_settings().await.unwrap();
            assert_eq!(settings.policy, ReleasePolicy::Automatic);
            assert_eq!(settings.grace_seconds, 30);
            assert_eq!(settings.updated_by.as_deref(), Some("root"));

            let bob = store.create_user("bob", false, 1).await.unwrap();
            let ann = store.create_user("ann", false, 1).await.unwrap();
            assert!(store.release_exception(bob.id).await.unwrap().is_none());
            store
                .set_release_exception(bob.id, ReleasePolicy::Manual, "root", 6)
                .await
                .unwrap();
            store
                .set_release_exception(ann.id, ReleasePolicy::OnLogout, "root", 6)
                .await
                .unwrap();
            // Replacing keeps one exception per user.
            store
                .set_release_exception(bob.id, ReleasePolicy::Manual, "root2", 7)
                .await
                .unwrap();
            let all = store.release_exceptions().await.unwrap();
            let names: Vec<(&str, ReleasePolicy)> = all
                .iter()
                .map(|e| (e.user_name.as_str(), e.policy))
                .collect();
            assert_eq!(
                names,
                [
                    ("ann", ReleasePolicy::OnLogout),
                    ("bob", ReleasePolicy::Manual)
                ],
                "{engine:?}"
            );
            assert!(store.delete_release_exception(ann.id).await.unwrap());
            assert!(!store.delete_release_exception(ann.id).await.unwrap());
            // A deleted user's exception goes with them.
            store.delete_user(bob.id).await.unwrap();
            assert!(store.release_exceptions().await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_cluster_keeps_the_policy_of_its_start_and_releases_are_listed_newest_first() {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let cy = store.create_user("cy", false, 1).await.unwrap();
            sqlx::query("INSERT INTO servers (user_id, name) VALUES ($1, '')")
                .bind(cy.id)
                .execute(&store.pool)
                .await
                .unwrap();
            let server = store.server(cy.id, "").await.unwrap().unwrap();
            let held = store
                .cluster_release_policy(server.id, 100, ReleasePolicy::Automatic)
                .await
                .unwrap();
            assert_eq!(held, ReleasePolicy::Automatic);
            // The administrator changes the policy: this start keeps its own.
            let held = store
                .cluster_release_policy(server.id, 100, ReleasePolicy::Manual)
                .await
                .unwrap();
            assert_eq!(held, ReleasePolicy::Automatic, "{engine:?}");
            // The next start gets the policy of its time.
            let held = store
                .cluster_release_policy(server.id, 200, ReleasePolicy::Manual)
                .await
                .unwrap();
            assert_eq!(held, ReleasePolicy::Manual, "{engine:?}");

            for (i, cause) in [ReleaseCause::Automatic, ReleaseCause::Forced]
                .into_iter()
                .enumerate()
            {
                store
                    .record_release(
                        NewRelease {
                            user_id: cy.id,
                            server_name: "",
                            cause,
                            reason: if cause == ReleaseCause::Forced {
                                "maintenance tonight"
                            } else {
                                ""
                            },
                            released_by: (cause == ReleaseCause::Forced).then_some("root"),
                        },
                        1_000 + i64::try_from(i).unwrap(),
                    )
                    .await
                    .unwrap();
            }
            let all = store.releases_of(cy.id, 0, 10).await.unwrap();
            assert_eq!(all.len(), 2, "{engine:?}");
            assert_eq!(all[0].cause, ReleaseCause::Forced);
            assert_eq!(all[0].reason, "maintenance tonight");
            assert_eq!(all[0].released_by.as_deref(), Some("root"));
            assert_eq!(all[0].user_name, "cy");
            assert_eq!(all[1].cause, ReleaseCause::Automatic);
            assert_eq!(store.releases_of(cy.id, 1_001, 10).await.unwrap().len(), 1);
            assert_eq!(store.releases_of(cy.id, 0, 1).await.unwrap().len(), 1);
        }
    }
}
