//! The image library's rows and statements.

use super::{Result, Store};
use crate::clock::Micros;

stored_words! {
    /// What an image's nodes run: JupyterLab, or a Linux desktop (VNC) beside it.
    pub enum ImageKind ("image kind") {
        /// A Jupyter image.
        Jupyter = "jupyter",
        /// A desktop image: its nodes also start a VNC server.
        Desktop = "desktop",
    }
}

stored_words! {
    /// Who may start an image.
    pub enum Visibility ("visibility") {
        /// In the library: everyone.
        Library = "library",
        /// A user's saved image: its owner only.
        Private = "private",
        /// Saved, and its owner asked for it to join the library (still its owner's only).
        Requested = "requested",
    }
}

pub(super) const IMAGE_COLUMNS: &str = "id, kind, name, image, tag, start_options, start_command, \
     vnc_password, vnc_port, description, needs_gpu, enabled, visibility, owner_id, created, updated";

/// One image record.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ImageRow {
    /// Row id.
    pub id: i64,
    /// What its nodes run.
    #[sqlx(try_from = "String")]
    pub kind: ImageKind,
    /// Unique display name.
    pub name: String,
    /// Repository, e.g. `127.0.0.1:5000/xiji/base-notebook`.
    pub image: String,
    /// Tag.
    pub tag: String,
    /// Extra arguments for the single-user server.
    pub start_options: String,
    /// Desktop images: the command that starts the VNC server.
    pub start_command: String,
    /// Desktop images: the VNC password.
    pub vnc_password: Option<String>,
    /// Desktop images: the VNC port inside the node.
    pub vnc_port: Option<i64>,
    /// Free text.
    pub description: String,
    /// 1 if it only runs with a GPU.
    pub needs_gpu: i64,
    /// 1 if users may start it.
    pub enabled: i64,
    /// Who may start it.
    #[sqlx(try_from = "String")]
    pub visibility: Visibility,
    /// The user who saved it, if a user did.
    pub owner_id: Option<i64>,
    /// Creation time.
    pub created: Micros,
    /// Last change.
    pub updated: Micros,
}

/// Every writable field of an image record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFields {
    /// What its nodes run.
    pub kind: ImageKind,
    /// Unique display name.
    pub name: String,
    /// Repository.
    pub image: String,
    /// Tag.
    pub tag: String,
    /// Extra arguments for the single-user server.
    pub start_options: String,
    /// VNC start command.
    pub start_command: String,
    /// VNC password.
    pub vnc_password: Option<String>,
    /// VNC port.
    pub vnc_port: Option<i64>,
    /// Free text.
    pub description: String,
    /// Needs a GPU.
    pub needs_gpu: bool,
    /// Users may start it.
    pub enabled: bool,
    /// Who may start it.
    pub visibility: Visibility,
    /// Owner, for saved images.
    pub owner_id: Option<i64>,
}

impl ImageFields {
    /// The fields of an existing row.
    pub fn of(row: &ImageRow) -> Self {
        Self {
            kind: row.kind,
            name: row.name.clone(),
            image: row.image.clone(),
            tag: row.tag.clone(),
            start_options: row.start_options.clone(),
            start_command: row.start_command.clone(),
            vnc_password: row.vnc_password.clone(),
            vnc_port: row.vnc_port,
            description: row.description.clone(),
            needs_gpu: row.needs_gpu != 0,
            enabled: row.enabled != 0,
            visibility: row.visibility,
            owner_id: row.owner_id,
        }
    }
}

/// Which images a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFilter {
    /// Every record (administrators).
    All,
    /// Enabled library images (what everyone may start).
    Startable,
    /// Enabled library images and the given user's own enabled images (what they may start).
    StartableBy(i64),
    /// Library images, enabled or not, plus the given user's own.
    VisibleTo(i64),
    /// Images saved by this user.
    OwnedBy(i64),
    /// Images waiting for an administrator's approval.
    Requested,
}

pub(super) type ImageQuery<'q> =
    sqlx::query::QueryAs<'q, sqlx::Any, ImageRow, sqlx::any::AnyArguments<'q>>;

/// Binds every writable field, as `$1…$13` in `ImageFields`' order.
pub(super) fn bind_fields<'q>(query: ImageQuery<'q>, f: &'q ImageFields) -> ImageQuery<'q> {
    query
        .bind(f.kind.as_str())
        .bind(&f.name)
        .bind(&f.image)
        .bind(&f.tag)
        .bind(&f.start_options)
        .bind(&f.start_command)
        .bind(&f.vnc_password)
        .bind(f.vnc_port)
        .bind(&f.description)
        .bind(i64::from(f.needs_gpu))
        .bind(i64::from(f.enabled))
        .bind(f.visibility.as_str())
        .bind(f.owner_id)
}

impl Store {
    /// Images matching `filter`, ordered by kind then name.
    pub async fn list_images(&self, filter: ImageFilter) -> Result<Vec<ImageRow>> {
        let (clause, owner) = match filter {
            ImageFilter::All => ("", None),
            ImageFilter::Startable => ("WHERE visibility = 'library' AND enabled = 1", None),
            ImageFilter::StartableBy(id) => (
                "WHERE enabled = 1 AND (visibility = 'library' OR owner_id = $1)",
                Some(id),
            ),
            ImageFilter::VisibleTo(id) => {
                ("WHERE visibility = 'library' OR owner_id = $1", Some(id))
            }
            ImageFilter::OwnedBy(id) => ("WHERE owner_id = $1", Some(id)),
            ImageFilter::Requested => ("WHERE visibility = 'requested'", None),
        };
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images {clause} ORDER BY kind, name");
        let mut query = sqlx::query_as::<_, ImageRow>(&sql);
        if let Some(id) = owner {
            query = query.bind(id);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// One image by id.
    pub async fn image(&self, id: i64) -> Result<Option<ImageRow>> {
        Ok(sqlx::query_as::<_, ImageRow>(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// One image by its display name.
    pub async fn image_by_name(&self, name: &str) -> Result<Option<ImageRow>> {
        Ok(sqlx::query_as::<_, ImageRow>(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Adds an image; `DbError::Conflict` if the name is taken.
    pub async fn create_image(&self, f: &ImageFields, now: Micros) -> Result<ImageRow> {
        let sql = format!(
            "INSERT INTO images (kind, name, image, tag, start_options, start_command, vnc_password, \
             vnc_port, description, needs_gpu, enabled, visibility, owner_id, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) \
             RETURNING {IMAGE_COLUMNS}"
        );
        Ok(bind_fields(sqlx::query_as::<_, ImageRow>(&sql), f)
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Replaces every writable field; `None` if the image is gone.
    pub async fn update_image(
        &self,
        id: i64,
        f: &ImageFields,
        now: Micros,
    ) -> Result<Option<ImageRow>> {
        let sql = format!(
            "UPDATE images SET kind = $1, name = $2, image = $3, tag = $4, start_options = $5, \
             start_command = $6, vnc_password = $7, vnc_port = $8, description = $9, \
             needs_gpu = $10, enabled = $11, visibility = $12, owner_id = $13, updated = $14 \
             WHERE id = $15 RETURNING {IMAGE_COLUMNS}"
        );
        Ok(bind_fields(sqlx::query_as::<_, ImageRow>(&sql), f)
            .bind(now)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Deletes an image record; whether it existed.
    pub async fn delete_image(&self, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM images WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
