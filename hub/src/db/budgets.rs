//! Budgets (`budgets`): monthly limits on what a user, a group or a project may cost, and when a
//! budget was first seen used up in a month (`budget_exceeded`), which starts the grace period
//! before its running clusters are released.

use super::{Result, Store};
use crate::clock::Micros;

stored_words! {
    /// What a budget limits.
    pub enum BudgetKind ("budget kind") {
        /// One user's clusters.
        User = "user",
        /// The clusters of a group's members together.
        Group = "group",
        /// The clusters that run one project.
        Project = "project",
    }
}

/// A stored budget.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BudgetRow {
    /// Row id.
    pub id: i64,
    /// What it limits.
    #[sqlx(try_from = "String")]
    pub kind: BudgetKind,
    /// The user's, group's or project's id.
    pub target_id: i64,
    /// `YYYY-MM`, or empty for every month.
    pub month: String,
    /// The limit, millionths of a billing unit.
    pub limit_micros: i64,
    /// The administrator's note.
    pub note: String,
    /// Created.
    pub created: Micros,
    /// Last changed.
    pub updated: Micros,
}

/// A cluster that holds resources now, with whose budgets it counts against.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdmittedCluster {
    /// The server's row id.
    pub server_id: i64,
    /// Its owner's id.
    pub user_id: i64,
    /// Its owner's name.
    pub user_name: String,
    /// The server's name (empty: the default server).
    pub server_name: String,
    /// The project it runs, if any.
    pub project_id: Option<i64>,
}

const BUDGET_COLUMNS: &str = "id, kind, target_id, month, limit_micros, note, created, updated";

impl Store {
    /// Every budget, by kind, target and month.
    pub async fn budgets(&self) -> Result<Vec<BudgetRow>> {
        Ok(sqlx::query_as::<_, BudgetRow>(&format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets ORDER BY kind, target_id, month"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// One budget.
    pub async fn budget(&self, id: i64) -> Result<Option<BudgetRow>> {
        Ok(sqlx::query_as::<_, BudgetRow>(&format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The budgets of one target: its every-month row and its rows for given months.
    pub async fn budgets_of(&self, kind: BudgetKind, target_id: i64) -> Result<Vec<BudgetRow>> {
        Ok(sqlx::query_as::<_, BudgetRow>(&format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE kind = $1 AND target_id = $2 ORDER BY month"
        ))
        .bind(kind.as_str())
        .bind(target_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sets the budget of a target for a month (`""`: every month), replacing one there was.
    pub async fn put_budget(
        &self,
        kind: BudgetKind,
        target_id: i64,
        month: &str,
        limit_micros: i64,
        note: &str,
        now: Micros,
    ) -> Result<BudgetRow> {
        let mut tx = self.write_tx().await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM budgets WHERE kind = $1 AND target_id = $2 AND month = $3",
        )
        .bind(kind.as_str())
        .bind(target_id)
        .bind(month)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match existing {
            Some(id) => {
                sqlx::query(
                    "UPDATE budgets SET limit_micros = $1, note = $2, updated = $3 WHERE id = $4",
                )
                .bind(limit_micros)
                .bind(note)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                // A new limit starts a new grace period if it is used up again.
                sqlx::query("DELETE FROM budget_exceeded WHERE budget_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
            None => {
                sqlx::query_scalar(
                    "INSERT INTO budgets (kind, target_id, month, limit_micros, note, created, updated) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                )
                .bind(kind.as_str())
                .bind(target_id)
                .bind(month)
                .bind(limit_micros)
                .bind(note)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let row = sqlx::query_as::<_, BudgetRow>(&format!(
            "SELECT {BUDGET_COLUMNS} FROM budgets WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// Deletes a budget; `false` if there was none.
    pub async fn delete_budget(&self, id: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM budget_exceeded WHERE budget_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM budgets WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(done > 0)
    }

    /// When the budget was first seen used up in `month`, recording `now_s` if this is the
    /// first time.
    pub async fn budget_exceeded_since(
        &self,
        budget_id: i64,
        month: &str,
        now_s: i64,
    ) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let since: Option<i64> = sqlx::query_scalar(
            "SELECT since FROM budget_exceeded WHERE budget_id = $1 AND month = $2",
        )
        .bind(budget_id)
        .bind(month)
        .fetch_optional(&mut *tx)
        .await?;
        let since = match since {
            Some(s) => s,
            None => {
                sqlx::query(
                    "INSERT INTO budget_exceeded (budget_id, month, since) VALUES ($1, $2, $3)",
                )
                .bind(budget_id)
                .bind(month)
                .bind(now_s)
                .execute(&mut *tx)
                .await?;
                now_s
            }
        };
        tx.commit().await?;
        Ok(since)
    }

    /// When the budget was first seen used up in `month`, if it was.
    pub async fn budget_exceeded_at(&self, budget_id: i64, month: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT since FROM budget_exceeded WHERE budget_id = $1 AND month = $2",
        )
        .bind(budget_id)
        .bind(month)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Forgets that a budget was used up in `month` (its limit was raised).
    pub async fn clear_budget_exceeded(&self, budget_id: i64, month: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM budget_exceeded WHERE budget_id = $1 AND month = $2")
            .bind(budget_id)
            .bind(month)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every cluster that holds an admitted reservation now.
    pub async fn admitted_clusters(&self) -> Result<Vec<AdmittedCluster>> {
        Ok(sqlx::query_as::<_, AdmittedCluster>(
            "SELECT r.server_id, r.user_id, u.name AS user_name, s.name AS server_name, r.project_id \
             FROM reservations r JOIN servers s ON s.id = r.server_id JOIN users u ON u.id = r.user_id \
             WHERE r.state = 'admitted' ORDER BY r.server_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// The ids of the groups a user is a member of.
    pub async fn group_ids_of(&self, user_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT group_id FROM user_groups WHERE user_id = $1 ORDER BY group_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A group's name by id.
    pub async fn group_name(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}
