//! Datasets: their rows, files, uploads under way, shares and stars.

use super::{like_pattern, DbError, Engine, Result, Store};
use crate::clock::Micros;

stored_words! {
    /// Who may read a dataset besides its owner, its shares and administrators.
    pub enum DatasetVisibility ("visibility") {
        /// Nobody else.
        Private = "private",
        /// Every logged-in user.
        Public = "public",
    }
}

stored_words! {
    /// What a share gives.
    pub enum ShareAccess ("access") {
        /// Read and download.
        Read = "read",
        /// Read, upload, move and delete files.
        Write = "write",
    }
}

stored_words! {
    /// The order of a dataset search.
    pub enum DatasetSort ("sort order") {
        /// Most recently changed first.
        Updated = "updated",
        /// Most starred first.
        Stars = "stars",
        /// By name.
        Name = "name",
    }
}

const DATASET_COLUMNS: &str = "d.id, d.owner_id, u.name AS owner, d.name, d.description, d.tags, \
     d.license, d.visibility, d.has_cover, d.file_count, d.size_bytes, \
     (SELECT COUNT(*) FROM dataset_stars s WHERE s.dataset_id = d.id) AS stars, d.created, d.updated";
const DATASET_FROM: &str = "datasets d JOIN users u ON u.id = d.owner_id";
const FILE_COLUMNS: &str = "id, dataset_id, path, size, sha256, created";
const UPLOAD_COLUMNS: &str = "id, dataset_id, user_id, path, size, created, updated";

/// One dataset, with its owner's name and its star count.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DatasetRow {
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
    /// Free text, e.g. `CC-BY-4.0`.
    pub license: String,
    /// Private or public.
    #[sqlx(try_from = "String")]
    pub visibility: DatasetVisibility,
    /// 1 when a cover image is stored.
    pub has_cover: i64,
    /// Complete files.
    pub file_count: i64,
    /// Bytes of the complete files.
    pub size_bytes: i64,
    /// Users who starred it.
    pub stars: i64,
    /// Creation time.
    pub created: Micros,
    /// Last change of its record or files.
    pub updated: Micros,
}

impl DatasetRow {
    /// Its tags as a list.
    pub fn tag_list(&self) -> Vec<String> {
        self.tags.split_whitespace().map(str::to_owned).collect()
    }
}

/// Every writable field of a dataset record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFields {
    /// Unique per owner.
    pub name: String,
    /// Markdown.
    pub description: String,
    /// Words separated by single spaces.
    pub tags: String,
    /// Free text.
    pub license: String,
    /// Private or public.
    pub visibility: DatasetVisibility,
}

/// One complete file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DatasetFileRow {
    /// Row id.
    pub id: i64,
    /// The dataset.
    pub dataset_id: i64,
    /// NFC, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: i64,
    /// Hex sha256 of its content.
    pub sha256: String,
    /// When it became complete.
    pub created: Micros,
}

/// An upload under way.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UploadRow {
    /// Random id, the last segment of its URL.
    pub id: String,
    /// The dataset it goes to.
    pub dataset_id: i64,
    /// Who started it.
    pub user_id: i64,
    /// Where the file will be.
    pub path: String,
    /// Declared size.
    pub size: i64,
    /// When it started.
    pub created: Micros,
    /// When bytes last arrived.
    pub updated: Micros,
}

/// What starting an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadStart {
    /// Recorded; its size is reserved.
    Started(UploadRow),
    /// The owner's limit would be exceeded: what the owner's datasets and uploads hold now.
    OverLimit {
        /// Bytes held and reserved now.
        used: i64,
    },
    /// A complete file already has this path.
    FileExists,
    /// An unfinished upload already goes to this path.
    UploadExists(UploadRow),
}

/// Who a share is given to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    /// A user by id.
    User(i64),
    /// A group by id.
    Group(i64),
}

/// One share, with the grantee's name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShareRow {
    /// `user` or `group`.
    pub kind: &'static str,
    /// The user's or group's name.
    pub name: String,
    /// What it gives.
    pub access: ShareAccess,
}

/// A dataset search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSearch {
    /// Who searches; `None` with `admin`: everything.
    pub viewer_id: i64,
    /// Administrators see every dataset.
    pub admin: bool,
    /// Lower-case words that must each be in the name, description or tags.
    pub words: Vec<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only with this tag.
    pub tag: Option<String>,
    /// Only those the viewer starred.
    pub starred: bool,
    /// Order.
    pub sort: DatasetSort,
    /// Rows to skip.
    pub offset: i64,
    /// Rows to give.
    pub limit: i64,
}

/// `$n`: the condition that `path` is `prefix` or below it (character-based, both engines).
fn under(prefix_param: usize, len_param: usize) -> String {
    format!(
        "(path = ${prefix_param} OR substr(path, 1, ${len_param} + 1) = ${prefix_param} || '/')"
    )
}

impl Store {
    /// Creates a dataset; `DbError::Conflict` if the owner has one of that name.
    pub async fn create_dataset(
        &self,
        owner_id: i64,
        fields: &DatasetFields,
        now: Micros,
    ) -> Result<DatasetRow> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO datasets (owner_id, name, description, tags, license, visibility, \
             created, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
        )
        .bind(owner_id)
        .bind(&fields.name)
        .bind(&fields.description)
        .bind(&fields.tags)
        .bind(&fields.license)
        .bind(fields.visibility.as_str())
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        self.dataset(id)
            .await?
            .ok_or(DbError::Sql(sqlx::Error::RowNotFound))
    }

    /// One dataset by id.
    pub async fn dataset(&self, id: i64) -> Result<Option<DatasetRow>> {
        Ok(sqlx::query_as::<_, DatasetRow>(&format!(
            "SELECT {DATASET_COLUMNS} FROM {DATASET_FROM} WHERE d.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One dataset by owner and name.
    pub async fn dataset_by_name(&self, owner: &str, name: &str) -> Result<Option<DatasetRow>> {
        Ok(sqlx::query_as::<_, DatasetRow>(&format!(
            "SELECT {DATASET_COLUMNS} FROM {DATASET_FROM} WHERE u.name = $1 AND d.name = $2"
        ))
        .bind(owner)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Every dataset a user owns.
    pub async fn datasets_owned_by(&self, user_id: i64) -> Result<Vec<DatasetRow>> {
        Ok(sqlx::query_as::<_, DatasetRow>(&format!(
            "SELECT {DATASET_COLUMNS} FROM {DATASET_FROM} WHERE d.owner_id = $1 ORDER BY d.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Changes a dataset's record; `DbError::Conflict` if the new name is taken.
    pub async fn update_dataset(
        &self,
        id: i64,
        fields: &DatasetFields,
        now: Micros,
    ) -> Result<Option<DatasetRow>> {
        sqlx::query(
            "UPDATE datasets SET name = $1, description = $2, tags = $3, license = $4, \
             visibility = $5, updated = $6 WHERE id = $7",
        )
        .bind(&fields.name)
        .bind(&fields.description)
        .bind(&fields.tags)
        .bind(&fields.license)
        .bind(fields.visibility.as_str())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        self.dataset(id).await
    }

    /// Records whether a dataset has a cover image.
    pub async fn set_dataset_cover(&self, id: i64, has_cover: bool, now: Micros) -> Result<()> {
        sqlx::query("UPDATE datasets SET has_cover = $1, updated = $2 WHERE id = $3")
            .bind(i64::from(has_cover))
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes a dataset with its files' rows, uploads, shares and stars; whether it existed.
    pub async fn delete_dataset(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM datasets WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// A page of the datasets a search finds, and how many it finds in all.
    pub async fn search_datasets(&self, search: &DatasetSearch) -> Result<(Vec<DatasetRow>, i64)> {
        let mut conditions: Vec<String> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        // $1 is always the viewer.
        let mut next = 2;
        if !search.admin {
            conditions.push(
                "(d.visibility = 'public' OR d.owner_id = $1 \
                 OR EXISTS (SELECT 1 FROM dataset_shares sh WHERE sh.dataset_id = d.id AND \
                   (sh.user_id = $1 OR sh.group_id IN \
                     (SELECT ug.group_id FROM user_groups ug WHERE ug.user_id = $1))))"
                    .into(),
            );
        }
        for word in &search.words {
            conditions.push(format!(
                "(lower(d.name) LIKE ${next} ESCAPE '\\' OR lower(d.description) LIKE ${next} \
                 ESCAPE '\\' OR lower(d.tags) LIKE ${next} ESCAPE '\\')"
            ));
            texts.push(like_pattern(word));
            next += 1;
        }
        if let Some(owner) = &search.owner {
            conditions.push(format!("u.name = ${next}"));
            texts.push(owner.clone());
            next += 1;
        }
        if let Some(tag) = &search.tag {
            conditions.push(format!("(' ' || d.tags || ' ') LIKE ${next} ESCAPE '\\'"));
            texts.push(like_pattern(&format!(" {tag} ")));
            next += 1;
        }
        if search.starred {
            conditions.push(
                "EXISTS (SELECT 1 FROM dataset_stars st WHERE st.dataset_id = d.id \
                 AND st.user_id = $1)"
                    .into(),
            );
        }
        let filter = if conditions.is_empty() {
            // $1 must appear in the statement for PostgreSQL to type it.
            "WHERE $1 = $1".to_owned()
        } else {
            format!("WHERE $1 = $1 AND {}", conditions.join(" AND "))
        };
        let order = match search.sort {
            DatasetSort::Updated => "d.updated DESC, d.id DESC",
            DatasetSort::Stars => "stars DESC, d.updated DESC, d.id DESC",
            DatasetSort::Name => "d.name ASC, u.name ASC, d.id ASC",
        };
        let page_sql = format!(
            "SELECT {DATASET_COLUMNS} FROM {DATASET_FROM} {filter} ORDER BY {order} \
             LIMIT ${next} OFFSET ${}",
            next + 1
        );
        let mut page = sqlx::query_as::<_, DatasetRow>(&page_sql).bind(search.viewer_id);
        for t in &texts {
            page = page.bind(t.as_str());
        }
        let rows = page
            .bind(search.limit)
            .bind(search.offset)
            .fetch_all(&self.pool)
            .await?;
        let count_sql = format!("SELECT COUNT(*) FROM {DATASET_FROM} {filter}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(search.viewer_id);
        for t in &texts {
            count = count.bind(t.as_str());
        }
        let total = count.fetch_one(&self.pool).await?;
        Ok((rows, total))
    }

    /// The best access a user has to a dataset through shares (to them or their groups).
    pub async fn share_access(&self, dataset_id: i64, user_id: i64) -> Result<Option<ShareAccess>> {
        let words: Vec<String> = sqlx::query_scalar(
            "SELECT access FROM dataset_shares WHERE dataset_id = $1 AND (user_id = $2 OR \
             group_id IN (SELECT group_id FROM user_groups WHERE user_id = $2))",
        )
        .bind(dataset_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let mut best = None;
        for word in words {
            match ShareAccess::parse(&word) {
                Ok(ShareAccess::Write) => return Ok(Some(ShareAccess::Write)),
                Ok(ShareAccess::Read) => best = Some(ShareAccess::Read),
                Err(_) => {}
            }
        }
        Ok(best)
    }

    /// A dataset's shares, users first, by name.
    pub async fn dataset_shares(&self, dataset_id: i64) -> Result<Vec<ShareRow>> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT 'user', u.name, s.access FROM dataset_shares s JOIN users u ON u.id = s.user_id \
             WHERE s.dataset_id = $1 \
             UNION ALL \
             SELECT 'group', g.name, s.access FROM dataset_shares s JOIN groups g ON g.id = s.group_id \
             WHERE s.dataset_id = $1",
        )
        .bind(dataset_id)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<ShareRow> = rows
            .into_iter()
            .filter_map(|(kind, name, access)| {
                Some(ShareRow {
                    kind: if kind == "user" { "user" } else { "group" },
                    name,
                    access: ShareAccess::parse(&access).ok()?,
                })
            })
            .collect();
        out.sort_by(|a, b| (a.kind != "user", &a.name).cmp(&(b.kind != "user", &b.name)));
        Ok(out)
    }

    /// Gives or changes a share.
    pub async fn set_dataset_share(
        &self,
        dataset_id: i64,
        grantee: Grantee,
        access: ShareAccess,
        now: Micros,
    ) -> Result<()> {
        let (user_id, group_id) = match grantee {
            Grantee::User(id) => (Some(id), None),
            Grantee::Group(id) => (None, Some(id)),
        };
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM dataset_shares WHERE dataset_id = $1 AND \
             (user_id = $2 OR group_id = $3)",
        )
        .bind(dataset_id)
        .bind(user_id)
        .bind(group_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO dataset_shares (dataset_id, user_id, group_id, access, created) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(dataset_id)
        .bind(user_id)
        .bind(group_id)
        .bind(access.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes a share; whether there was one.
    pub async fn delete_dataset_share(&self, dataset_id: i64, grantee: Grantee) -> Result<bool> {
        let (user_id, group_id) = match grantee {
            Grantee::User(id) => (Some(id), None),
            Grantee::Group(id) => (None, Some(id)),
        };
        let done = sqlx::query(
            "DELETE FROM dataset_shares WHERE dataset_id = $1 AND (user_id = $2 OR group_id = $3)",
        )
        .bind(dataset_id)
        .bind(user_id)
        .bind(group_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Stars (`true`) or unstars a dataset for a user; idempotent.
    pub async fn set_dataset_star(
        &self,
        dataset_id: i64,
        user_id: i64,
        starred: bool,
        now: Micros,
    ) -> Result<()> {
        if starred {
            sqlx::query(
                "INSERT INTO dataset_stars (dataset_id, user_id, created) SELECT $1, $2, $3 \
                 WHERE NOT EXISTS (SELECT 1 FROM dataset_stars WHERE dataset_id = $1 AND user_id = $2)",
            )
            .bind(dataset_id)
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .or_else(|e| match DbError::from(e) {
                // Two stars at once: the other one won.
                DbError::Conflict => Ok(()),
                other => Err(other),
            })
        } else {
            sqlx::query("DELETE FROM dataset_stars WHERE dataset_id = $1 AND user_id = $2")
                .bind(dataset_id)
                .bind(user_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
    }

    /// Whether a user starred a dataset.
    pub async fn dataset_starred(&self, dataset_id: i64, user_id: i64) -> Result<bool> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM dataset_stars WHERE dataset_id = $1 AND user_id = $2",
        )
        .bind(dataset_id)
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// The files at `prefix` or below it (`""`: every file), by path.
    pub async fn dataset_files_under(
        &self,
        dataset_id: i64,
        prefix: &str,
    ) -> Result<Vec<DatasetFileRow>> {
        let sql = if prefix.is_empty() {
            format!("SELECT {FILE_COLUMNS} FROM dataset_files WHERE dataset_id = $1 AND $2 = $2 AND $3 = $3 ORDER BY path")
        } else {
            format!(
                "SELECT {FILE_COLUMNS} FROM dataset_files WHERE dataset_id = $1 AND {} ORDER BY path",
                under(2, 3)
            )
        };
        Ok(sqlx::query_as::<_, DatasetFileRow>(&sql)
            .bind(dataset_id)
            .bind(prefix)
            .bind(prefix.chars().count() as i32)
            .fetch_all(&self.pool)
            .await?)
    }

    /// One complete file.
    pub async fn dataset_file(
        &self,
        dataset_id: i64,
        path: &str,
    ) -> Result<Option<DatasetFileRow>> {
        Ok(sqlx::query_as::<_, DatasetFileRow>(&format!(
            "SELECT {FILE_COLUMNS} FROM dataset_files WHERE dataset_id = $1 AND path = $2"
        ))
        .bind(dataset_id)
        .bind(path)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a path is taken: a file at it, below it (a folder), or a file at one of its
    /// parent folders.
    pub async fn dataset_path_taken(&self, dataset_id: i64, path: &str) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        path_taken_on(&mut conn, dataset_id, path).await
    }

    /// Deletes the files at `path` or below it, with the dataset's counters, in one
    /// transaction; the rows deleted.
    pub async fn delete_dataset_files(
        &self,
        dataset_id: i64,
        path: &str,
        now: Micros,
    ) -> Result<Vec<DatasetFileRow>> {
        let mut tx = self.write_tx().await?;
        let len = path.chars().count() as i32;
        let gone = sqlx::query_as::<_, DatasetFileRow>(&format!(
            "SELECT {FILE_COLUMNS} FROM dataset_files WHERE dataset_id = $1 AND {}",
            under(2, 3)
        ))
        .bind(dataset_id)
        .bind(path)
        .bind(len)
        .fetch_all(&mut *tx)
        .await?;
        if gone.is_empty() {
            return Ok(gone);
        }
        sqlx::query(&format!(
            "DELETE FROM dataset_files WHERE dataset_id = $1 AND {}",
            under(2, 3)
        ))
        .bind(dataset_id)
        .bind(path)
        .bind(len)
        .execute(&mut *tx)
        .await?;
        let bytes: i64 = gone.iter().map(|f| f.size).sum();
        sqlx::query(
            "UPDATE datasets SET file_count = file_count - $1, size_bytes = size_bytes - $2, \
             updated = $3 WHERE id = $4",
        )
        .bind(gone.len() as i64)
        .bind(bytes)
        .bind(now)
        .bind(dataset_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(gone)
    }

    /// Renames the file or folder `from` to `to` in one transaction; how many files moved;
    /// `DbError::Conflict` when `to` is taken. `on_disk` runs inside the transaction (the
    /// rename of the bytes): its failure rolls the rows back.
    pub async fn move_dataset_files<F>(
        &self,
        dataset_id: i64,
        from: &str,
        to: &str,
        now: Micros,
        on_disk: F,
    ) -> Result<std::result::Result<u64, std::io::Error>>
    where
        F: AsyncFnOnce() -> std::io::Result<()>,
    {
        let mut tx = self.write_tx().await?;
        if path_taken_on(&mut tx, dataset_id, to).await? {
            return Err(DbError::Conflict);
        }
        let moved = sqlx::query(&format!(
            "UPDATE dataset_files SET path = $4 || substr(path, $3 + 1) \
             WHERE dataset_id = $1 AND {}",
            under(2, 3)
        ))
        .bind(dataset_id)
        .bind(from)
        .bind(from.chars().count() as i32)
        .bind(to)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            return Ok(Ok(0));
        }
        sqlx::query("UPDATE datasets SET updated = $1 WHERE id = $2")
            .bind(now)
            .bind(dataset_id)
            .execute(&mut *tx)
            .await?;
        if let Err(e) = on_disk().await {
            tx.rollback().await?;
            return Ok(Err(e));
        }
        tx.commit().await?;
        Ok(Ok(moved))
    }

    /// Starts an upload if the path is free and the dataset's owner, holding `used` bytes in
    /// datasets and reservations, stays within `limit_bytes`. Checked and reserved in one write
    /// transaction (the owner's row is locked on PostgreSQL), so two uploads cannot both take
    /// the last free bytes.
    pub async fn start_upload(
        &self,
        upload: &UploadRow,
        owner_id: i64,
        limit_bytes: i64,
    ) -> Result<UploadStart> {
        let mut tx = self.write_tx().await?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(owner_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        if path_taken_on(&mut tx, upload.dataset_id, &upload.path).await? {
            return Ok(UploadStart::FileExists);
        }
        if let Some(existing) = sqlx::query_as::<_, UploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM dataset_uploads WHERE dataset_id = $1 AND path = $2"
        ))
        .bind(upload.dataset_id)
        .bind(&upload.path)
        .fetch_optional(&mut *tx)
        .await?
        {
            return Ok(UploadStart::UploadExists(existing));
        }
        let used = used_by_owner_on(&mut tx, owner_id).await?;
        if used.saturating_add(upload.size) > limit_bytes {
            return Ok(UploadStart::OverLimit { used });
        }
        sqlx::query(
            "INSERT INTO dataset_uploads (id, dataset_id, user_id, path, size, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&upload.id)
        .bind(upload.dataset_id)
        .bind(upload.user_id)
        .bind(&upload.path)
        .bind(upload.size)
        .bind(upload.created)
        .bind(upload.updated)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UploadStart::Started(upload.clone()))
    }

    /// What a user's datasets hold plus what their datasets' uploads have reserved.
    pub async fn dataset_bytes_of_owner(&self, owner_id: i64) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        used_by_owner_on(&mut conn, owner_id).await
    }

    /// One upload.
    pub async fn upload(&self, id: &str) -> Result<Option<UploadRow>> {
        Ok(sqlx::query_as::<_, UploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM dataset_uploads WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A user's unfinished uploads to a dataset, oldest first.
    pub async fn uploads_of(&self, dataset_id: i64, user_id: i64) -> Result<Vec<UploadRow>> {
        Ok(sqlx::query_as::<_, UploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM dataset_uploads WHERE dataset_id = $1 AND user_id = $2 \
             ORDER BY created, id"
        ))
        .bind(dataset_id)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Uploads no byte reached since `before`.
    pub async fn stale_uploads(&self, before: Micros) -> Result<Vec<UploadRow>> {
        Ok(sqlx::query_as::<_, UploadRow>(&format!(
            "SELECT {UPLOAD_COLUMNS} FROM dataset_uploads WHERE updated < $1 ORDER BY id"
        ))
        .bind(before)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Notes that bytes arrived.
    pub async fn touch_upload(&self, id: &str, now: Micros) -> Result<()> {
        sqlx::query("UPDATE dataset_uploads SET updated = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets an upload (its reservation ends); whether it existed.
    pub async fn delete_upload(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM dataset_uploads WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Turns a finished upload into a file of its dataset, with the dataset's counters, in one
    /// transaction. `on_disk` (moving the bytes into place) runs inside it: its failure rolls
    /// the rows back.
    pub async fn complete_upload<F>(
        &self,
        upload: &UploadRow,
        sha256: &str,
        now: Micros,
        on_disk: F,
    ) -> Result<std::result::Result<DatasetFileRow, std::io::Error>>
    where
        F: AsyncFnOnce() -> std::io::Result<()>,
    {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM dataset_uploads WHERE id = $1")
            .bind(&upload.id)
            .execute(&mut *tx)
            .await?;
        let file = sqlx::query_as::<_, DatasetFileRow>(&format!(
            "INSERT INTO dataset_files (dataset_id, path, size, sha256, created) \
             VALUES ($1, $2, $3, $4, $5) RETURNING {FILE_COLUMNS}"
        ))
        .bind(upload.dataset_id)
        .bind(&upload.path)
        .bind(upload.size)
        .bind(sha256)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE datasets SET file_count = file_count + 1, size_bytes = size_bytes + $1, \
             updated = $2 WHERE id = $3",
        )
        .bind(upload.size)
        .bind(now)
        .bind(upload.dataset_id)
        .execute(&mut *tx)
        .await?;
        if let Err(e) = on_disk().await {
            tx.rollback().await?;
            return Ok(Err(e));
        }
        tx.commit().await?;
        Ok(Ok(file))
    }
}

impl Store {
    /// Records files that are already in a new dataset's folder (an imported project's included
    /// dataset): `(path, size, sha256)` each, with the dataset's counts, in one transaction.
    pub async fn add_dataset_files(
        &self,
        dataset_id: i64,
        files: &[(String, i64, String)],
        now: Micros,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let mut bytes: i64 = 0;
        for (path, size, sha256) in files {
            sqlx::query(
                "INSERT INTO dataset_files (dataset_id, path, size, sha256, created) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(dataset_id)
            .bind(path)
            .bind(*size)
            .bind(sha256)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            bytes = bytes.saturating_add(*size);
        }
        sqlx::query(
            "UPDATE datasets SET file_count = file_count + $1, size_bytes = size_bytes + $2, \
             updated = $3 WHERE id = $4",
        )
        .bind(files.len() as i64)
        .bind(bytes)
        .bind(now)
        .bind(dataset_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// See [`Store::dataset_path_taken`].
async fn path_taken_on(
    conn: &mut sqlx::AnyConnection,
    dataset_id: i64,
    path: &str,
) -> Result<bool> {
    // The path itself or anything below it.
    let below: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM dataset_files WHERE dataset_id = $1 AND {}",
        under(2, 3)
    ))
    .bind(dataset_id)
    .bind(path)
    .bind(path.chars().count() as i32)
    .fetch_one(&mut *conn)
    .await?;
    if below > 0 {
        return Ok(true);
    }
    // A file where one of its parent folders would be.
    let mut parents = Vec::new();
    let mut rest = path;
    while let Some((parent, _)) = rest.rsplit_once('/') {
        parents.push(parent.to_owned());
        rest = parent;
    }
    if parents.is_empty() {
        return Ok(false);
    }
    let sql = format!(
        "SELECT COUNT(*) FROM dataset_files WHERE dataset_id = $1 AND path IN ({})",
        super::placeholders(2, parents.len())
    );
    let mut q = sqlx::query_scalar::<_, i64>(&sql).bind(dataset_id);
    for p in &parents {
        q = q.bind(p.as_str());
    }
    Ok(q.fetch_one(&mut *conn).await? > 0)
}

/// See [`Store::dataset_bytes_of_owner`].
async fn used_by_owner_on(conn: &mut sqlx::AnyConnection, owner_id: i64) -> Result<i64> {
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM datasets WHERE owner_id = $1",
    )
    .bind(owner_id)
    .fetch_one(&mut *conn)
    .await?;
    let reserved: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(up.size), 0) AS BIGINT) FROM dataset_uploads up \
         JOIN datasets d ON d.id = up.dataset_id WHERE d.owner_id = $1",
    )
    .bind(owner_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(held.saturating_add(reserved))
}
