//! Save jobs' rows and statements: a save of a running node as an image, from the request to its
//! end. A job is finished exactly when `finished` is set; it becomes `done` only together with its
//! image record ([`Store::complete_save_job`]).

use super::images::{bind_fields, ImageFields, ImageRow, IMAGE_COLUMNS};
use super::{Result, Store};
use crate::clock::Micros;

const JOB_COLUMNS: &str = "j.id, j.user_id, u.name AS user_name, j.server_id, j.server_name, \
     j.node, j.container_id, j.name, j.tag, j.description, j.repository, j.image_reference, \
     j.base_image, j.state, j.reason, j.progress, j.result, j.image_id, j.created, j.updated, \
     j.finished";
const JOB_FROM: &str = "save_jobs j JOIN users u ON u.id = j.user_id";

/// One save job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct SaveJobRow {
    /// Random id (hex).
    pub id: String,
    /// The owner.
    pub user_id: i64,
    /// The owner's name (joined from `users`).
    pub user_name: String,
    /// The server's row id (a server token may act on its own server's jobs).
    pub server_id: i64,
    /// The server's name (`""` for the default server).
    pub server_name: String,
    /// The node saved.
    pub node: String,
    /// Its container.
    pub container_id: String,
    /// The name asked for.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The description.
    pub description: String,
    /// The repository pushed to, `registry/prefix/user/name`.
    pub repository: String,
    /// `repository:tag`.
    pub image_reference: String,
    /// The image the node runs (the new image's base).
    pub base_image: String,
    /// `queued`, `reading`, `compressing`, `pushing`, `done`, `failed` or `cancelled`.
    pub state: String,
    /// Why it failed, for the user.
    pub reason: Option<String>,
    /// Byte counters (JSON).
    pub progress: String,
    /// What was pushed (JSON), once done.
    pub result: Option<String>,
    /// The image record, once done.
    pub image_id: Option<i64>,
    /// When the save was asked for.
    pub created: Micros,
    /// Last write.
    pub updated: Micros,
    /// When it ended.
    pub finished: Option<Micros>,
}

/// What a new job is: everything but its state, progress and outcome.
#[derive(Debug, Clone)]
pub struct NewSaveJob {
    /// Random id (hex).
    pub id: String,
    /// The owner.
    pub user_id: i64,
    /// The server's row id.
    pub server_id: i64,
    /// The server's name.
    pub server_name: String,
    /// The node saved.
    pub node: String,
    /// Its container.
    pub container_id: String,
    /// The name asked for.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// The description.
    pub description: String,
    /// The repository pushed to.
    pub repository: String,
    /// `repository:tag`.
    pub image_reference: String,
    /// The base image.
    pub base_image: String,
}

impl Store {
    /// Adds a job in state `queued`.
    pub async fn create_save_job(&self, job: &NewSaveJob, now: Micros) -> Result<()> {
        sqlx::query(
            "INSERT INTO save_jobs (id, user_id, server_id, server_name, node, container_id, \
             name, tag, description, repository, image_reference, base_image, state, progress, \
             created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', '{}', $13, $13)",
        )
        .bind(&job.id)
        .bind(job.user_id)
        .bind(job.server_id)
        .bind(&job.server_name)
        .bind(&job.node)
        .bind(&job.container_id)
        .bind(&job.name)
        .bind(&job.tag)
        .bind(&job.description)
        .bind(&job.repository)
        .bind(&job.image_reference)
        .bind(&job.base_image)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One job by id.
    pub async fn save_job(&self, id: &str) -> Result<Option<SaveJobRow>> {
        Ok(sqlx::query_as::<_, SaveJobRow>(&format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user's jobs, newest first.
    pub async fn save_jobs_of(&self, user_id: i64) -> Result<Vec<SaveJobRow>> {
        Ok(sqlx::query_as::<_, SaveJobRow>(&format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.user_id = $1 \
             ORDER BY j.created DESC, j.id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Jobs that have not ended, oldest first.
    pub async fn unfinished_save_jobs(&self) -> Result<Vec<SaveJobRow>> {
        Ok(sqlx::query_as::<_, SaveJobRow>(&format!(
            "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.finished IS NULL \
             ORDER BY j.created, j.id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Writes a running job's state and progress; `false` if it has ended (or is gone).
    pub async fn update_save_job(
        &self,
        id: &str,
        state: &str,
        progress: &str,
        now: Micros,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE save_jobs SET state = $1, progress = $2, updated = $3 \
             WHERE id = $4 AND finished IS NULL",
        )
        .bind(state)
        .bind(progress)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a job without an image (`failed` with a reason, or `cancelled`); `false` if it had
    /// ended already (or is gone).
    pub async fn end_save_job(
        &self,
        id: &str,
        state: &str,
        reason: Option<&str>,
        progress: Option<&str>,
        now: Micros,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE save_jobs SET state = $1, reason = $2, progress = COALESCE($3, progress), \
             updated = $4, finished = $4 WHERE id = $5 AND finished IS NULL",
        )
        .bind(state)
        .bind(reason)
        .bind(progress)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// In one transaction: the image record of a pushed save, and the job `done` with its result.
    /// `None` (nothing written) if the job had ended already; `DbError::Conflict` (nothing
    /// written) if the image's name is taken.
    pub async fn complete_save_job(
        &self,
        id: &str,
        image: &ImageFields,
        result: &str,
        progress: &str,
        now: Micros,
    ) -> Result<Option<ImageRow>> {
        let mut tx = self.write_tx().await?;
        let open: Option<(String,)> =
            sqlx::query_as("SELECT id FROM save_jobs WHERE id = $1 AND finished IS NULL")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if open.is_none() {
            return Ok(None);
        }
        let sql = format!(
            "INSERT INTO images (kind, name, image, tag, start_options, start_command, vnc_password, \
             vnc_port, description, needs_gpu, enabled, visibility, owner_id, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
             RETURNING {IMAGE_COLUMNS}"
        );
        let row = bind_fields(sqlx::query_as::<_, ImageRow>(&sql), image)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE save_jobs SET state = 'done', reason = NULL, result = $1, progress = $2, \
             image_id = $3, updated = $4, finished = $4 WHERE id = $5",
        )
        .bind(result)
        .bind(progress)
        .bind(row.id)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(row))
    }

    /// Puts an unfinished job back to `queued` (a hub that restarted resumes it); `false` if it
    /// has ended.
    pub async fn requeue_save_job(&self, id: &str, now: Micros) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE save_jobs SET state = 'queued', progress = '{}', updated = $1 \
             WHERE id = $2 AND finished IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes jobs that ended before `before`; how many.
    pub async fn delete_save_jobs_finished_before(&self, before: Micros) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM save_jobs WHERE finished IS NOT NULL AND finished < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }
}
