//! Uploads into a project's files: the datasets' resumable protocol (declare `{path, size}`,
//! then `PATCH` bytes at offsets; `docs/datasets.md`), with the same writer (sha256 while
//! writing, a stalled `PATCH` taken over by a newer request) and the same folder layout: the
//! bytes gather in the project's `uploads/{id}` beside `files/` (what `/home/jovyan/work` is on
//! its nodes) and are renamed into place when the last one arrives. A project's files are its
//! folder, not rows, so a finished upload leaves the file and no row; it may land while the
//! project runs, and its nodes see it at once.

use bytes::Bytes;
use futures::Stream;

use super::access::Viewer;
use super::dataset_files::{self, AppendError, Appended, DatasetDir};
use super::datasets::human_bytes;
use super::projects::{self, Access};
use super::{project_files, storage_pools, HubError, HubResult, Services};
use crate::clock::{self, Micros};
use crate::db::{ProjectRow, ProjectUploadRow};

/// First letter of a project upload's id: `/hub/api/uploads/{id}` serves both kinds, and a
/// dataset upload's id is hexadecimal.
const ID_PREFIX: &str = "p";

/// How long "bytes last arrived" may lag behind (it only decides when an abandoned upload
/// expires, after hours).
const TOUCH_EVERY: Micros = 60 * 1_000_000;

/// Whether an upload id is one of a project's.
pub fn is_project_upload(id: &str) -> bool {
    id.starts_with(ID_PREFIX)
}

/// Where an upload into a project stands.
#[derive(Debug, Clone)]
pub struct ProjectUploadState {
    /// Its record.
    pub upload: ProjectUploadRow,
    /// The project, `owner/name`.
    pub project: String,
    /// Bytes received.
    pub offset: u64,
    /// The sha256 of the file, once every byte is in place.
    pub sha256: Option<String>,
}

/// The project's folder on its pool: `files/` and `uploads/` (the datasets' layout).
async fn folder_of(hub: &Services, project: &ProjectRow) -> HubResult<DatasetDir> {
    let files = projects::dir_of(hub, project).await?;
    let root = files
        .parent()
        .ok_or_else(|| HubError::Internal("a project's folder has no parent".into()))?
        .to_path_buf();
    Ok(DatasetDir { root })
}

fn io_failure(what: &str, e: std::io::Error) -> HubError {
    HubError::Internal(format!("{what}: {e}"))
}

fn missing(id: &str) -> HubError {
    HubError::NotFound(format!("No upload {id} (it may have completed or expired)"))
}

fn state(project: &ProjectRow, upload: ProjectUploadRow, offset: u64) -> ProjectUploadState {
    ProjectUploadState {
        upload,
        project: format!("{}/{}", project.owner, project.name),
        offset,
        sha256: None,
    }
}

/// Starts an upload of `size` bytes to `path` of a project the viewer may edit: the path must
/// be free (409; no folder on the way may be a file or a link) and the pool must have the room
/// (507), before any byte. A 0-byte file is complete at once.
pub async fn start(
    hub: &Services,
    viewer: &Viewer,
    project: &ProjectRow,
    path: &str,
    size: i64,
) -> HubResult<ProjectUploadState> {
    let path = dataset_files::normalize_path(path).map_err(HubError::BadRequest)?;
    if size < 0 {
        return Err(HubError::BadRequest(format!(
            "The size of {path:?} must be 0 or more bytes"
        )));
    }
    super::project_forks::ensure_copied(hub, project).await?;
    let placed = projects::placed_of(hub, project).await?;
    let dir = folder_of(hub, project).await?;
    project_files::free_place(&dir.files(), &path)?;
    let free = storage_pools::usage_of(&placed.pool).await.free_bytes;
    if size as u64 > free {
        return Err(HubError::InsufficientStorage(format!(
            "The storage pool of {}/{} has {} free, less than the {} of {path:?}; ask an \
             administrator for room",
            project.owner,
            project.name,
            human_bytes(free as i64),
            human_bytes(size)
        )));
    }
    let now = clock::now();
    let upload = ProjectUploadRow {
        id: format!("{ID_PREFIX}{}", super::tokens::random_hex(16)),
        project_id: project.id,
        user_id: viewer.user.id,
        path: path.clone(),
        size,
        created: now,
        updated: now,
    };
    if hub.store.start_project_upload(&upload).await?.is_err() {
        return Err(HubError::Conflict(format!(
            "{path:?} is being uploaded to {}/{} already: resume that upload or give it up first",
            project.owner, project.name
        )));
    }
    if let Err(e) = dataset_files::create_empty(&dir.upload(&upload.id)).await {
        let _ = hub.store.delete_project_upload(&upload.id).await;
        return Err(io_failure("creating an upload's file", e));
    }
    tracing::info!(project.id = project.id, upload = %upload.id, path = %upload.path, size, "project upload started");
    if size == 0 {
        return finish(hub, project, &dir, upload).await;
    }
    Ok(state(project, upload, 0))
}

/// An upload of the viewer's (any, for administrators) into a project they may still edit.
async fn upload_of(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
) -> HubResult<(ProjectUploadRow, ProjectRow)> {
    let upload = hub
        .store
        .project_upload(id)
        .await?
        .ok_or_else(|| missing(id))?;
    if upload.user_id != viewer.user.id && !viewer.admin {
        return Err(missing(id));
    }
    let project = hub
        .store
        .project(upload.project_id)
        .await?
        .ok_or_else(|| missing(id))?;
    match projects::access_of(hub, viewer, &project).await? {
        Some(a) if a >= Access::Edit => Ok((upload, project)),
        _ => Err(missing(id)),
    }
}

/// Where an upload stands; with `take_over` a `PATCH` still writing it is stopped first.
pub async fn upload_state(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
    take_over: bool,
) -> HubResult<ProjectUploadState> {
    let (upload, project) = upload_of(hub, viewer, id).await?;
    let _held = dataset_files::take_upload(&upload.id, take_over).await;
    let dir = folder_of(hub, &project).await?;
    let offset = dataset_files::upload_offset(&dir.upload(&upload.id))
        .await
        .map_err(|e| io_failure("reading an upload", e))?;
    if offset >= upload.size.max(0) as u64 {
        // Every byte is there but the request that brought the last ones ended before the
        // upload was finished: finish it now.
        let upload = hub
            .store
            .project_upload(&upload.id)
            .await?
            .ok_or_else(|| missing(id))?;
        return finish(hub, &project, &dir, upload).await;
    }
    Ok(state(&project, upload, offset))
}

/// The viewer's unfinished uploads into a project.
pub async fn uploads_to(
    hub: &Services,
    viewer: &Viewer,
    project: &ProjectRow,
) -> HubResult<Vec<ProjectUploadState>> {
    let dir = folder_of(hub, project).await?;
    let mut out = Vec::new();
    for upload in hub
        .store
        .project_uploads_of(project.id, viewer.user.id)
        .await?
    {
        let offset = dataset_files::upload_offset(&dir.upload(&upload.id))
            .await
            .map_err(|e| io_failure("reading an upload", e))?;
        out.push(state(project, upload, offset));
    }
    Ok(out)
}

/// Writes a request body at `offset` of an upload; the last byte puts the file in place. A
/// refused body is left partly read (the caller drains it).
pub async fn write<S, E>(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
    offset: u64,
    content_length: Option<u64>,
    body: &mut S,
) -> HubResult<ProjectUploadState>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (upload, project) = upload_of(hub, viewer, id).await?;
    let size = upload.size.max(0) as u64;
    dataset_files::check_length(offset, content_length, size).map_err(HubError::BadRequest)?;
    let mut held = dataset_files::take_upload(&upload.id, true).await;
    // It may have completed or been given up while this request waited.
    let upload = hub
        .store
        .project_upload(&upload.id)
        .await?
        .ok_or_else(|| missing(id))?;
    let dir = folder_of(hub, &project).await?;
    let file = dir.upload(&upload.id);
    let appended = dataset_files::append(&mut held, &upload.id, &file, offset, size, body).await;
    match appended {
        Ok(Appended::Done(n) | Appended::BrokeOff(n)) if n >= size => {}
        Ok(Appended::Done(n) | Appended::BrokeOff(n)) => {
            touch(hub, &upload).await?;
            return Ok(state(&project, upload, n));
        }
        Err(AppendError::NoSpace) => {
            give_up(hub, &dir, &upload).await?;
            tracing::warn!(project.id = project.id, upload = %upload.id, "upload failed: the storage pool is full");
            return Err(HubError::InsufficientStorage(format!(
                "The storage pool of {}/{} is full: {:?} could not be written and was removed; \
                 ask an administrator for room, then upload it again",
                project.owner, project.name, upload.path
            )));
        }
        Err(e) => return Err(e.into()),
    }
    finish(hub, &project, &dir, upload).await
}

async fn touch(hub: &Services, upload: &ProjectUploadRow) -> HubResult<()> {
    let now = clock::now();
    if now - upload.updated >= TOUCH_EVERY {
        hub.store.touch_project_upload(&upload.id, now).await?;
    }
    Ok(())
}

/// Moves a complete upload into place among the project's files and forgets it; when its path
/// was taken meanwhile (someone wrote it from a node), the upload is given up with a 409.
async fn finish(
    hub: &Services,
    project: &ProjectRow,
    dir: &DatasetDir,
    upload: ProjectUploadRow,
) -> HubResult<ProjectUploadState> {
    let source = dir.upload(&upload.id);
    let size = upload.size.max(0) as u64;
    let sha256 = dataset_files::upload_sha256(&upload.id, &source, size)
        .await
        .map_err(|e| io_failure("hashing an upload", e))?;
    let target = match project_files::free_place(&dir.files(), &upload.path) {
        Ok(t) => t,
        Err(e) => {
            give_up(hub, dir, &upload).await?;
            return Err(e);
        }
    };
    if let Err(e) = dataset_files::move_into_place(&source, &target).await {
        give_up(hub, dir, &upload).await?;
        return Err(match e.kind() {
            std::io::ErrorKind::AlreadyExists => HubError::Conflict(format!(
                "{:?} exists already: delete or rename it first",
                upload.path
            )),
            std::io::ErrorKind::InvalidFilename => HubError::BadRequest(format!(
                "{:?} is too long a name for the storage pool's filesystem; shorten it",
                upload.path
            )),
            _ => io_failure("moving an upload into place", e),
        });
    }
    project_files::hand_over(hub, &dir.files(), &target, false).await;
    hub.store.delete_project_upload(&upload.id).await?;
    dataset_files::forget_upload(&upload.id);
    tracing::info!(project.id = project.id, path = %upload.path, size, sha256 = %sha256, "project file uploaded");
    let mut done = state(project, upload, size);
    done.sha256 = Some(sha256);
    Ok(done)
}

async fn give_up(hub: &Services, dir: &DatasetDir, upload: &ProjectUploadRow) -> HubResult<()> {
    hub.store.delete_project_upload(&upload.id).await?;
    dataset_files::forget_upload(&upload.id);
    match tokio::fs::remove_file(dir.upload(&upload.id)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failure("removing an upload's bytes", e)),
    }
}

/// Gives an upload up (its uploader or an administrator).
pub async fn cancel(hub: &Services, viewer: &Viewer, id: &str) -> HubResult<()> {
    let (upload, project) = upload_of(hub, viewer, id).await?;
    let _held = dataset_files::take_upload(&upload.id, true).await;
    let dir = folder_of(hub, &project).await?;
    give_up(hub, &dir, &upload).await
}

/// Removes uploads into projects no byte reached for `[datasets] upload_expiry_hours`; how
/// many.
pub async fn purge_stale(hub: &Services) -> HubResult<usize> {
    let before = super::datasets::upload_expiry_cutoff(hub);
    let stale = hub.store.stale_project_uploads(before).await?;
    let n = stale.len();
    for upload in stale {
        let Some(project) = hub.store.project(upload.project_id).await? else {
            continue;
        };
        let _held = dataset_files::take_upload(&upload.id, true).await;
        let dir = folder_of(hub, &project).await?;
        give_up(hub, &dir, &upload).await?;
        tracing::info!(upload = %upload.id, project.id = project.id, "an abandoned project upload was removed");
    }
    Ok(n)
}
