//! Projects: their rows, attached datasets, members and stars, and the state of a fork's copy.

use super::{like_pattern, DatasetVisibility, DbError, Result, Store};
use crate::clock::Micros;

stored_words! {
    /// What a member may do in a project.
    pub enum ProjectRole ("project role") {
        /// Open and download its files.
        Viewer = "viewer",
        /// Also change its files and run it.
        Editor = "editor",
    }
}

stored_words! {
    /// Where the copy of a fork's files stands.
    pub enum ForkState ("fork state") {
        /// The hub is copying the original's files.
        Copying = "copying",
        /// Every file is there.
        Done = "done",
        /// The copy stopped; the fork holds no files.
        Failed = "failed",
    }
}

const FORK_COLUMNS: &str = "project_id, state, files_done, files_total, bytes_done, bytes_total, \
     message, created, updated";

/// The copy of a fork's files: its state and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ForkRow {
    /// The fork.
    pub project_id: i64,
    /// Copying, done or failed.
    #[sqlx(try_from = "String")]
    pub state: ForkState,
    /// Files, links and other non-folders copied.
    pub files_done: i64,
    /// Files to copy (0 while they are being counted).
    pub files_total: i64,
    /// Bytes copied.
    pub bytes_done: i64,
    /// Bytes to copy.
    pub bytes_total: i64,
    /// Why it failed, for the user.
    pub message: Option<String>,
    /// When the fork was made.
    pub created: Micros,
    /// Last write.
    pub updated: Micros,
}

/// How far a copy got: what was counted and what is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForkProgress {
    /// Files copied.
    pub files_done: i64,
    /// Files to copy.
    pub files_total: i64,
    /// Bytes copied.
    pub bytes_done: i64,
    /// Bytes to copy.
    pub bytes_total: i64,
}

const PROJECT_COLUMNS: &str = "p.id, p.owner_id, u.name AS owner, p.name, p.description, p.tags, \
     p.image_id, p.visibility, p.forked_from, p.last_options, \
     (SELECT COUNT(*) FROM project_stars s WHERE s.project_id = p.id) AS stars, \
     (SELECT COUNT(*) FROM projects f WHERE f.forked_from = p.id) AS forks, p.created, p.updated";
const PROJECT_FROM: &str = "projects p JOIN users u ON u.id = p.owner_id";

/// One project, with its owner's name and its star and fork counts.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProjectRow {
    /// Row id.
    pub id: i64,
    /// The owner's user id.
    pub owner_id: i64,
    /// The owner's name.
    pub owner: String,
    /// Unique per owner.
    pub name: String,
    /// Markdown.
    pub description: String,
    /// Words separated by single spaces.
    pub tags: String,
    /// The runtime image (a library record), if one is chosen and still exists.
    pub image_id: Option<i64>,
    /// Private or public.
    #[sqlx(try_from = "String")]
    pub visibility: DatasetVisibility,
    /// The project it was forked from, while that exists.
    pub forked_from: Option<i64>,
    /// The sizes of the last run, as JSON.
    pub last_options: String,
    /// Users who starred it.
    pub stars: i64,
    /// Projects forked from it.
    pub forks: i64,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub updated: Micros,
}

impl ProjectRow {
    /// Its tags as a list.
    pub fn tag_list(&self) -> Vec<String> {
        self.tags.split_whitespace().map(str::to_owned).collect()
    }
}

/// Every writable field of a project record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectFields {
    /// Unique per owner.
    pub name: String,
    /// Markdown.
    pub description: String,
    /// Words separated by single spaces.
    pub tags: String,
    /// The runtime image.
    pub image_id: Option<i64>,
    /// Private or public.
    pub visibility: DatasetVisibility,
}

/// A member and their role.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemberRow {
    /// The user's id.
    #[serde(skip)]
    pub user_id: i64,
    /// The user's name.
    pub name: String,
    /// What they may do.
    pub role: ProjectRole,
}

/// A project search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSearch {
    /// Who searches.
    pub viewer_id: i64,
    /// Administrators see every project.
    pub admin: bool,
    /// Lower-case words that must each be in the name, description, tags or image name.
    pub words: Vec<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only those the viewer owns or is a member of.
    pub mine: bool,
    /// Only those the viewer starred.
    pub starred: bool,
    /// Most starred first (else most recently changed first).
    pub by_stars: bool,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to give.
    pub limit: i64,
}

impl Store {
    /// Creates a project with its datasets in one transaction; `DbError::Conflict` if the owner
    /// has one of that name. A fork (`forked_from`) starts with its copy `copying`, in the same
    /// transaction, so that it is never seen ready before its files are.
    pub async fn create_project(
        &self,
        owner_id: i64,
        fields: &ProjectFields,
        dataset_ids: &[i64],
        forked_from: Option<i64>,
        now: Micros,
    ) -> Result<ProjectRow> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO projects (owner_id, name, description, tags, image_id, visibility, \
             forked_from, created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id",
        )
        .bind(owner_id)
        .bind(&fields.name)
        .bind(&fields.description)
        .bind(&fields.tags)
        .bind(fields.image_id)
        .bind(fields.visibility.as_str())
        .bind(forked_from)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        for dataset_id in dataset_ids {
            sqlx::query("INSERT INTO project_datasets (project_id, dataset_id) VALUES ($1, $2)")
                .bind(id)
                .bind(*dataset_id)
                .execute(&mut *tx)
                .await?;
        }
        if forked_from.is_some() {
            sqlx::query(
                "INSERT INTO project_forks (project_id, state, created, updated) \
                 VALUES ($1, $2, $3, $3)",
            )
            .bind(id)
            .bind(ForkState::Copying.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.project(id)
            .await?
            .ok_or(DbError::Sql(sqlx::Error::RowNotFound))
    }

    /// One project by id.
    pub async fn project(&self, id: i64) -> Result<Option<ProjectRow>> {
        Ok(sqlx::query_as::<_, ProjectRow>(&format!(
            "SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE p.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Projects whose name starts with `prefix` (taken literally), any owner.
    pub async fn projects_named_from(&self, prefix: &str) -> Result<Vec<ProjectRow>> {
        Ok(sqlx::query_as::<_, ProjectRow>(&format!(
            "SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE p.name LIKE $1 ESCAPE '\\' \
             ORDER BY p.id"
        ))
        .bind(like_pattern(prefix).trim_start_matches('%').to_owned())
        .fetch_all(&self.pool)
        .await?)
    }

    /// One project by owner and name.
    pub async fn project_by_name(&self, owner: &str, name: &str) -> Result<Option<ProjectRow>> {
        Ok(sqlx::query_as::<_, ProjectRow>(&format!(
            "SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE u.name = $1 AND p.name = $2"
        ))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every project a user owns.
    pub async fn projects_owned_by(&self, user_id: i64) -> Result<Vec<ProjectRow>> {
        Ok(sqlx::query_as::<_, ProjectRow>(&format!(
            "SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE p.owner_id = $1 ORDER BY p.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Changes a project's record and, when given, its datasets, in one transaction;
    /// `DbError::Conflict` if the new name is taken.
    pub async fn update_project(
        &self,
        id: i64,
        fields: &ProjectFields,
        dataset_ids: Option<&[i64]>,
        now: Micros,
    ) -> Result<Option<ProjectRow>> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE projects SET name = $1, description = $2, tags = $3, image_id = $4, \
             visibility = $5, updated = $6 WHERE id = $7",
        )
        .bind(&fields.name)
        .bind(&fields.description)
        .bind(&fields.tags)
        .bind(fields.image_id)
        .bind(fields.visibility.as_str())
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if let Some(ids) = dataset_ids {
            sqlx::query("DELETE FROM project_datasets WHERE project_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for dataset_id in ids {
                sqlx::query(
                    "INSERT INTO project_datasets (project_id, dataset_id) VALUES ($1, $2)",
                )
                .bind(id)
                .bind(*dataset_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        self.project(id).await
    }

    /// Records the sizes of a project's last run.
    pub async fn set_project_last_options(&self, id: i64, options: &str) -> Result<()> {
        sqlx::query("UPDATE projects SET last_options = $1 WHERE id = $2")
            .bind(options)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a project with its datasets' links, members and stars; whether it existed.
    pub async fn delete_project(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The ids of a project's datasets.
    pub async fn project_dataset_ids(&self, project_id: i64) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT dataset_id FROM project_datasets WHERE project_id = $1 ORDER BY dataset_id",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// A user's role in a project, if they are a member.
    pub async fn project_role(&self, project_id: i64, user_id: i64) -> Result<Option<ProjectRole>> {
        let word: Option<String> = sqlx::query_scalar(
            "SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(word.and_then(|w| ProjectRole::parse(&w).ok()))
    }

    /// A project's members, by name.
    pub async fn project_members(&self, project_id: i64) -> Result<Vec<MemberRow>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT m.user_id, u.name, m.role FROM project_members m JOIN users u ON u.id = m.user_id \
             WHERE m.project_id = $1 ORDER BY u.name",
        )
        .bind(project_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(user_id, name, role)| {
                Some(MemberRow {
                    user_id,
                    name,
                    role: ProjectRole::parse(&role).ok()?,
                })
            })
            .collect())
    }

    /// Adds a member or changes their role.
    pub async fn set_project_member(
        &self,
        project_id: i64,
        user_id: i64,
        role: ProjectRole,
        now: Micros,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
            .bind(project_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO project_members (project_id, user_id, role, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(project_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member; whether they were one.
    pub async fn delete_project_member(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stars (`true`) or unstars a project for a user; idempotent.
    pub async fn set_project_star(
        &self,
        project_id: i64,
        user_id: i64,
        starred: bool,
        now: Micros,
    ) -> Result<()> {
        if starred {
            sqlx::query(
                "INSERT INTO project_stars (project_id, user_id, created) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM project_stars WHERE project_id = $1 AND user_id = $2)",
            )
            .bind(project_id)
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .or_else(|e| match DbError::from(e) {
                DbError::Conflict => Ok(()),
                other => Err(other),
            })
        } else {
            sqlx::query("DELETE FROM project_stars WHERE project_id = $1 AND user_id = $2")
                .bind(project_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
    }

    /// Whether a user starred a project.
    pub async fn project_starred(&self, project_id: i64, user_id: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM project_stars WHERE project_id = $1 AND user_id = $2",
        )
        .bind(project_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// The copy of a fork's files, if the project is a fork made with one.
    pub async fn project_fork(&self, project_id: i64) -> Result<Option<ForkRow>> {
        Ok(sqlx::query_as::<_, ForkRow>(&format!(
            "SELECT {FORK_COLUMNS} FROM project_forks WHERE project_id = $1"
        ))
        .bind(project_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Writes how far a copy under way got; false when it is no longer copying (or gone).
    pub async fn set_fork_progress(
        &self,
        project_id: i64,
        progress: ForkProgress,
        now: Micros,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE project_forks SET files_done = $1, files_total = $2, bytes_done = $3, \
             bytes_total = $4, updated = $5 WHERE project_id = $6 AND state = $7",
        )
        .bind(progress.files_done)
        .bind(progress.files_total)
        .bind(progress.bytes_done)
        .bind(progress.bytes_total)
        .bind(now)
        .bind(project_id)
        .bind(ForkState::Copying.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a copy under way as `done` or `failed` (with why) and its last progress; false when
    /// it was not copying (or is gone).
    pub async fn end_fork(
        &self,
        project_id: i64,
        state: ForkState,
        message: Option<&str>,
        progress: ForkProgress,
        now: Micros,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE project_forks SET state = $1, message = $2, files_done = $3, \
             files_total = $4, bytes_done = $5, bytes_total = $6, updated = $7 \
             WHERE project_id = $8 AND state = $9",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(progress.files_done)
        .bind(progress.files_total)
        .bind(progress.bytes_done)
        .bind(progress.bytes_total)
        .bind(now)
        .bind(project_id)
        .bind(ForkState::Copying.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The forks whose copy is under way (at start-up: left by a hub that stopped).
    pub async fn copying_forks(&self) -> Result<Vec<ForkRow>> {
        Ok(sqlx::query_as::<_, ForkRow>(&format!(
            "SELECT {FORK_COLUMNS} FROM project_forks WHERE state = $1 ORDER BY project_id"
        ))
        .bind(ForkState::Copying.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// A page of the projects a search finds, and how many it finds in all.
    pub async fn search_projects(&self, search: &ProjectSearch) -> Result<(Vec<ProjectRow>, i64)> {
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut next = 2;
        let member = "EXISTS (SELECT 1 FROM project_members m WHERE m.project_id = p.id \
                      AND m.user_id = $1)";
        if !search.admin {
            conditions.push(format!(
                "(p.visibility = 'public' OR p.owner_id = $1 OR {member})"
            ));
        }
        if search.mine {
            conditions.push(format!("(p.owner_id = $1 OR {member})"));
        }
        for word in &search.words {
            conditions.push(format!(
                "(lower(p.name) LIKE ${next} ESCAPE '\\' OR lower(p.description) LIKE ${next} \
                 ESCAPE '\\' OR lower(p.tags) LIKE ${next} ESCAPE '\\' OR EXISTS (SELECT 1 FROM \
                 images i WHERE i.id = p.image_id AND lower(i.name) LIKE ${next} ESCAPE '\\'))"
            ));
            texts.push(like_pattern(word));
            next += 1;
        }
        if let Some(owner) = &search.owner {
            conditions.push(format!("u.name = ${next}"));
            texts.push(owner.clone());
            next += 1;
        }
        if search.starred {
            conditions.push(
                "EXISTS (SELECT 1 FROM project_stars st WHERE st.project_id = p.id \
                 AND st.user_id = $1)"
                    .into(),
            );
        }
        let filter = if conditions.is_empty() {
            "WHERE $1 = $1".to_owned()
        } else {
            format!("WHERE $1 = $1 AND {}", conditions.join(" AND "))
        };
        let order = if search.by_stars {
            "stars DESC, p.updated DESC, p.id DESC"
        } else {
            "p.updated DESC, p.id DESC"
        };
        let page_sql = format!(
            "SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} {filter} ORDER BY {order} \
             LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut page = sqlx::query_as::<_, ProjectRow>(&page_sql).bind(search.viewer_id);
        for t in &texts {
            page = page.bind(t.as_str());
        }
        let rows = page
            .bind(search.limit)
            .bind(search.offset)
            .fetch_all(&self.pool)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM {PROJECT_FROM} {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(search.viewer_id);
        for t in &texts {
            count = count.bind(t.as_str());
        }
        let total = count.fetch_one(&self.pool).await?;
        Ok((rows, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::tests::stores;

    #[tokio::test]
    async fn a_fork_starts_copying_and_ends_once_done_or_failed_on_both_engines() {
        for (store, _dir) in stores().await {
            let engine = store.engine();
            let alice = store.create_user("alice", false, 1).await.unwrap();
            let fields = |name: &str| ProjectFields {
                name: name.into(),
                description: String::new(),
                tags: String::new(),
                image_id: None,
                visibility: DatasetVisibility::Public,
            };
            let original = store
                .create_project(alice.id, &fields("lab"), &[], None, 10)
                .await
                .unwrap();
            assert!(store.project_fork(original.id).await.unwrap().is_none());
            let fork = store
                .create_project(alice.id, &fields("lab-2"), &[], Some(original.id), 11)
                .await
                .unwrap();
            let row = store.project_fork(fork.id).await.unwrap().unwrap();
            assert_eq!(row.state, ForkState::Copying, "{engine:?}");
            assert_eq!((row.files_total, row.created), (0, 11));
            let copying: Vec<i64> = store
                .copying_forks()
                .await
                .unwrap()
                .iter()
                .map(|f| f.project_id)
                .collect();
            assert_eq!(copying, [fork.id]);

            let halfway = ForkProgress {
                files_done: 1,
                files_total: 2,
                bytes_done: 10,
                bytes_total: 20,
            };
            assert!(store.set_fork_progress(fork.id, halfway, 12).await.unwrap());
            let row = store.project_fork(fork.id).await.unwrap().unwrap();
            assert_eq!((row.files_done, row.bytes_total, row.updated), (1, 20, 12));

            let all = ForkProgress {
                files_done: 2,
                bytes_done: 20,
                ..halfway
            };
            assert!(store
                .end_fork(fork.id, ForkState::Done, None, all, 13)
                .await
                .unwrap());
            // An ended copy is not written again, nor ended twice.
            assert!(!store.set_fork_progress(fork.id, halfway, 14).await.unwrap());
            assert!(!store
                .end_fork(fork.id, ForkState::Failed, Some("late"), halfway, 14)
                .await
                .unwrap());
            let row = store.project_fork(fork.id).await.unwrap().unwrap();
            assert_eq!(row.state, ForkState::Done);
            assert_eq!((row.files_done, row.message), (2, None));
            assert!(store.copying_forks().await.unwrap().is_empty());

            let failed = store
                .create_project(alice.id, &fields("lab-3"), &[], Some(original.id), 15)
                .await
                .unwrap();
            assert!(store
                .end_fork(failed.id, ForkState::Failed, Some("full"), halfway, 16)
                .await
                .unwrap());
            let row = store.project_fork(failed.id).await.unwrap().unwrap();
            assert_eq!(row.state, ForkState::Failed);
            assert_eq!(row.message.as_deref(), Some("full"));

            // Deleting the fork takes its copy's row with it.
            store.delete_project(failed.id).await.unwrap();
            assert!(store.project_fork(failed.id).await.unwrap().is_none());
        }
    }
}
