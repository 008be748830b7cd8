//! Uploads under way into a project's files. A project's files are its folder, not rows: a
//! finished upload only leaves the file, and its row goes.

use super::{Result, Store};
use crate::clock::Micros;

const COLUMNS: &str = "id, project_id, user_id, path, size, created, updated";

/// One upload into a project, from its declaration until its last byte.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectUploadRow {
    /// Random id (starting with `p`), the last segment of its URL.
    pub id: String,
    /// The project it goes to.
    pub project_id: i64,
    /// Who started it.
    pub user_id: i64,
    /// Where the file will be, below the project's folder.
    pub path: String,
    /// Declared size.
    pub size: i64,
    /// When it started.
    pub created: Micros,
    /// When bytes last arrived (at most a minute behind).
    pub updated: Micros,
}

impl Store {
    /// Records a new upload, unless one to the same path is under way (which is answered).
    pub async fn start_project_upload(
        &self,
        upload: &ProjectUploadRow,
    ) -> Result<std::result::Result<(), ProjectUploadRow>> {
        let mut tx = self.write_tx().await?;
        if let Some(existing) = sqlx::query_as::<_, ProjectUploadRow>(&format!(
            "SELECT {COLUMNS} FROM project_uploads WHERE project_id = $1 AND path = $2"
        ))
        .bind(upload.project_id)
        .bind(&upload.path)
        .fetch_optional(&mut *tx)
        .await?
        {
            return Ok(Err(existing));
        }
        sqlx::query(
            "INSERT INTO project_uploads (id, project_id, user_id, path, size, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&upload.id)
        .bind(upload.project_id)
        .bind(upload.user_id)
        .bind(&upload.path)
        .bind(upload.size)
        .bind(upload.created)
        .bind(upload.updated)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }

    /// One upload into a project.
    pub async fn project_upload(&self, id: &str) -> Result<Option<ProjectUploadRow>> {
        Ok(sqlx::query_as::<_, ProjectUploadRow>(&format!(
            "SELECT {COLUMNS} FROM project_uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user's unfinished uploads into a project, oldest first.
    pub async fn project_uploads_of(
        &self,
        project_id: i64,
        user_id: i64,
    ) -> Result<Vec<ProjectUploadRow>> {
        Ok(sqlx::query_as::<_, ProjectUploadRow>(&format!(
            "SELECT {COLUMNS} FROM project_uploads WHERE project_id = $1 AND user_id = $2 \
             ORDER BY created, id"
        ))
        .bind(project_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Uploads into projects no byte reached since `before`.
    pub async fn stale_project_uploads(&self, before: Micros) -> Result<Vec<ProjectUploadRow>> {
        Ok(sqlx::query_as::<_, ProjectUploadRow>(&format!(
            "SELECT {COLUMNS} FROM project_uploads WHERE updated < $1 ORDER BY id"
        ))
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Notes that bytes of an upload into a project arrived.
    pub async fn touch_project_upload(&self, id: &str, now: Micros) -> Result<()> {
        sqlx::query("UPDATE project_uploads SET updated = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets an upload into a project; whether it existed.
    pub async fn delete_project_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM project_uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
