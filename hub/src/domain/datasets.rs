//! Datasets: who may see and change them, their records, files, uploads, covers, shares, stars,
//! and the read-only mounts clusters get. See `docs/datasets.md`.
//!
//! A dataset lives in the folder of its placement on a storage pool ([`DatasetDir`]); the
//! database holds its record and one row per complete file (path, size, sha256), which is what
//! listings read. Uploads reserve their declared size against the owner's limit when they start
//! (checked and reserved in one write transaction), and become files only when their last byte is
//! written.

use std::path::PathBuf;

use bytes::Bytes;
use futures::Stream;

use super::dataset_files::{self, AppendError, Appended, DatasetDir, ZipEntry};
use super::{storage_pools, HubError, HubResult, Services};
use crate::clock::{self, Micros};
use crate::db::{
    DatasetFields, DatasetFileRow, DatasetRow, DatasetSearch, DatasetSort, DatasetVisibility,
    DbError, Grantee, PlacementKind, ShareAccess, ShareRow, Store, UploadRow, UploadStart, UserRow,
};

/// Where datasets appear in a node, below the node user's home.
pub const MOUNT_FOLDER: &str = "datasets";
/// Longest dataset name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 100_000;
/// Most tags.
const MAX_TAGS: usize = 20;
/// Longest tag, in characters.
const MAX_TAG_CHARS: usize = 40;
/// Longest licence text, in characters.
const MAX_LICENSE_CHARS: usize = 200;
/// Largest page of a search or a folder listing.
pub const MAX_PAGE: i64 = 1000;

pub use super::access::Viewer;

/// What a viewer may do with one dataset, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Read, download, star.
    Read,
    /// Also upload, move and delete files.
    Write,
    /// Also change the record, share it, delete it.
    Owner,
}

impl Access {
    /// The word the API gives.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Owner => "owner",
        }
    }
}

/// A dataset the viewer may reach, with what they may do.
#[derive(Debug, Clone)]
pub struct Reached {
    /// Its record.
    pub dataset: DatasetRow,
    /// The viewer's access.
    pub access: Access,
}

/// Tags as a list or as one string of words separated by commas or spaces.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum TagsInput {
    /// `["mnist", "images"]`.
    List(Vec<String>),
    /// `"mnist, images"`.
    Text(String),
}

/// A new dataset, or a change of one (absent fields stay as they are).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    /// Unique per owner.
    pub name: Option<String>,
    /// Markdown.
    pub description: Option<String>,
    /// Tags.
    pub tags: Option<TagsInput>,
    /// Licence.
    pub license: Option<String>,
    /// `private` or `public`.
    pub visibility: Option<String>,
    /// Administrators only, at creation: whose dataset it is.
    pub owner: Option<String>,
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreeEntry {
    /// Its name in the folder.
    pub name: String,
    /// Its path in the dataset.
    pub path: String,
    /// `dir` or `file`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Bytes (of everything below it, for a folder).
    pub size: i64,
    /// A file's sha256.
    pub sha256: Option<String>,
    /// Files below it (1 for a file).
    pub file_count: i64,
    /// When it (or the newest file below it) became complete.
    pub updated: String,
}

/// One page of a folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TreePage {
    /// The folder's path (`""`: the top).
    pub path: String,
    /// Folders first, then files, each by name.
    pub entries: Vec<TreeEntry>,
    /// Entries in the folder.
    pub total: usize,
    /// Entries skipped.
    pub offset: usize,
    /// Page size.
    pub limit: usize,
}

/// Checks a dataset name: 1–64 letters (any script), digits, `-`, `_` or `.`, not starting with
/// `.` or `-`.
pub fn check_name(name: &str) -> HubResult<()> {
    let chars = name.chars().count();
    let ok = (1..=MAX_NAME_CHARS).contains(&chars)
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HubError::BadRequest(format!(
            "Invalid dataset name {name:?}: use 1 to {MAX_NAME_CHARS} letters, digits, '-', '_' or \
             '.', not starting with '.' or '-'"
        )))
    }
}

/// Tags from what a user typed: lower-cased, split on commas and spaces, deduplicated.
pub fn tags_of(input: &TagsInput) -> HubResult<String> {
    let words: Vec<String> = match input {
        TagsInput::List(list) => list
            .iter()
            .flat_map(|t| t.split([',', ' ', '\t']))
            .map(str::to_owned)
            .collect(),
        TagsInput::Text(text) => text.split([',', ' ', '\t']).map(str::to_owned).collect(),
    };
    let mut out: Vec<String> = Vec::new();
    for word in words {
        let tag = word.trim().to_lowercase();
        if tag.is_empty() || out.contains(&tag) {
            continue;
        }
        if tag.chars().count() > MAX_TAG_CHARS || tag.chars().any(char::is_control) {
            return Err(HubError::BadRequest(format!(
                "Invalid tag {tag:?}: a tag is a word of at most {MAX_TAG_CHARS} characters"
            )));
        }
        out.push(tag);
    }
    if out.len() > MAX_TAGS {
        return Err(HubError::BadRequest(format!(
            "A dataset has at most {MAX_TAGS} tags, not {}",
            out.len()
        )));
    }
    Ok(out.join(" "))
}

/// Applies a request to a record's fields (a new dataset starts from empty ones).
fn apply(fields: &mut DatasetFields, request: &DatasetRequest) -> HubResult<()> {
    if let Some(name) = &request.name {
        check_name(name)?;
        fields.name = name.clone();
    }
    if let Some(description) = &request.description {
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(HubError::BadRequest(format!(
                "The description is longer than {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        fields.description = description.replace('\0', "");
    }
    if let Some(tags) = &request.tags {
        fields.tags = tags_of(tags)?;
    }
    if let Some(license) = &request.license {
        let license = license.trim();
        if license.chars().count() > MAX_LICENSE_CHARS || license.chars().any(char::is_control) {
            return Err(HubError::BadRequest(format!(
                "The licence is at most {MAX_LICENSE_CHARS} characters on one line"
            )));
        }
        fields.license = license.to_owned();
    }
    if let Some(visibility) = &request.visibility {
        fields.visibility = DatasetVisibility::parse(visibility).map_err(HubError::BadRequest)?;
    }
    Ok(())
}

/// The message for a dataset the viewer cannot see (the same whether or not it exists).
fn no_dataset(owner: &str, name: &str) -> HubError {
    HubError::NotFound(format!("No dataset {owner}/{name}"))
}

/// What a viewer may do with a dataset, if anything.
pub async fn access_of(
    store: &Store,
    viewer: &Viewer,
    dataset: &DatasetRow,
) -> HubResult<Option<Access>> {
    if viewer.admin || dataset.owner_id == viewer.user.id {
        return Ok(Some(Access::Owner));
    }
    let shared = store.share_access(dataset.id, viewer.user.id).await?;
    Ok(match shared {
        Some(ShareAccess::Write) => Some(Access::Write),
        Some(ShareAccess::Read) => Some(Access::Read),
        None if dataset.visibility == DatasetVisibility::Public => Some(Access::Read),
        None => None,
    })
}

/// A dataset by owner and name that the viewer may reach with at least `need`: 404 when they
/// may not see it (or it does not exist), 403 when they see it but may not do this.
pub async fn reach(
    hub: &Services,
    viewer: &Viewer,
    owner: &str,
    name: &str,
    need: Access,
) -> HubResult<Reached> {
    // No stored name holds a control character (and PostgreSQL refuses NUL in a query).
    if owner.chars().chain(name.chars()).any(char::is_control) {
        return Err(no_dataset(owner, name));
    }
    let dataset = hub
        .store
        .dataset_by_name(owner, name)
        .await?
        .ok_or_else(|| no_dataset(owner, name))?;
    let access = access_of(&hub.store, viewer, &dataset)
        .await?
        .ok_or_else(|| no_dataset(owner, name))?;
    if access < need {
        let what = match need {
            Access::Read => "read",
            Access::Write => "change the files of",
            Access::Owner => "change the settings of, share or delete",
        };
        return Err(HubError::Forbidden(format!(
            "You may {} {owner}/{name} but not {what} it",
            access.as_str()
        )));
    }
    Ok(Reached { dataset, access })
}

/// The key of a dataset's placement.
fn placement_key(id: i64) -> String {
    format!("dataset:{id}")
}

/// A dataset's placement (on the freest pool the first time).
async fn placed_of(hub: &Services, dataset: &DatasetRow) -> HubResult<storage_pools::Placed> {
    storage_pools::place(
        hub,
        PlacementKind::Dataset,
        &placement_key(dataset.id),
        &dataset.id.to_string(),
    )
    .await
}

/// A dataset's folder on its pool (placed on the freest pool the first time).
pub async fn dir_of(hub: &Services, dataset: &DatasetRow) -> HubResult<DatasetDir> {
    Ok(DatasetDir {
        root: placed_of(hub, dataset).await?.dir,
    })
}

fn io_failure(what: &str, e: std::io::Error) -> HubError {
    HubError::Internal(format!("{what}: {e}"))
}

/// Creates a dataset of the viewer (or, for administrators, of `owner`) and places its folder on
/// the freest pool; nothing is left behind when placing fails.
pub async fn create(
    hub: &Services,
    viewer: &Viewer,
    request: DatasetRequest,
) -> HubResult<DatasetRow> {
    let owner = match request.owner.as_deref() {
        Some(name) if name.chars().any(char::is_control) => {
            return Err(HubError::BadRequest(format!(
                "{name:?} is not a user name: names cannot contain control characters"
            )))
        }
        Some(name) if name != viewer.user.name => {
            if !viewer.admin {
                return Err(HubError::Forbidden(
                    "Only administrators may create datasets for other users".into(),
                ));
            }
            hub.store
                .user(name)
                .await?
                .ok_or_else(|| HubError::NotFound(format!("No user named {name}")))?
        }
        _ => viewer.user.clone(),
    };
    if request.name.is_none() {
        return Err(HubError::BadRequest("Give the dataset a name".into()));
    }
    let mut fields = DatasetFields {
        name: String::new(),
        description: String::new(),
        tags: String::new(),
        license: String::new(),
        visibility: DatasetVisibility::Private,
    };
    apply(&mut fields, &request)?;
    let dataset = match hub
        .store
        .create_dataset(owner.id, &fields, clock::now())
        .await
    {
        Ok(d) => d,
        Err(DbError::Conflict) => {
            return Err(HubError::Conflict(format!(
                "{} already has a dataset named {}",
                owner.name, fields.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let made = async {
        let dir = dir_of(hub, &dataset).await?;
        dir.create()
            .await
            .map_err(|e| io_failure("creating a dataset's folders", e))
    }
    .await;
    if let Err(e) = made {
        let _ = hub.store.delete_dataset(dataset.id).await;
        let _ = hub
            .store
            .delete_placement(PlacementKind::Dataset, &placement_key(dataset.id))
            .await;
        return Err(e);
    }
    tracing::info!(dataset.id = dataset.id, dataset.owner = %owner.name, dataset.name = %dataset.name, "dataset created");
    Ok(dataset)
}

/// Changes a dataset's record (owners and administrators).
pub async fn update(
    hub: &Services,
    reached: &Reached,
    request: DatasetRequest,
) -> HubResult<DatasetRow> {
    if request.owner.is_some() {
        return Err(HubError::BadRequest(
            "A dataset's owner cannot be changed".into(),
        ));
    }
    let d = &reached.dataset;
    let mut fields = DatasetFields {
        name: d.name.clone(),
        description: d.description.clone(),
        tags: d.tags.clone(),
        license: d.license.clone(),
        visibility: d.visibility,
    };
    apply(&mut fields, &request)?;
    match hub.store.update_dataset(d.id, &fields, clock::now()).await {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(no_dataset(&d.owner, &d.name)),
        Err(DbError::Conflict) => Err(HubError::Conflict(format!(
            "{} already has a dataset named {}",
            d.owner, fields.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a dataset: its record (with files' rows, uploads, shares, stars), its folder and its
/// placement.
pub async fn delete(hub: &Services, dataset: &DatasetRow) -> HubResult<()> {
    let dir = hub
        .store
        .placement(PlacementKind::Dataset, &placement_key(dataset.id))
        .await?;
    let root = match dir {
        Some(p) => match hub.store.pool(p.pool_id).await? {
            Some(pool) => Some(PathBuf::from(pool.path).join(p.relative_path)),
            None => None,
        },
        None => None,
    };
    hub.store.delete_dataset(dataset.id).await?;
    hub.store
        .delete_placement(PlacementKind::Dataset, &placement_key(dataset.id))
        .await?;
    if let Some(root) = root {
        if let Err(e) = tokio::fs::remove_dir_all(&root).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dataset.id = dataset.id, path = %root.display(), error = %e, "a deleted dataset's folder could not be removed");
            }
        }
    }
    tracing::info!(dataset.id = dataset.id, dataset.owner = %dataset.owner, dataset.name = %dataset.name, "dataset deleted");
    Ok(())
}

/// Gives a new, empty dataset the files of `from` (a folder on any pool, which is emptied):
/// renamed into place on the same filesystem, copied otherwise; each `(path, size, sha256)`
/// recorded. On failure the dataset holds no file and no row.
pub async fn adopt_files(
    hub: &Services,
    dataset: &DatasetRow,
    from: &std::path::Path,
    files: &[(String, i64, String)],
) -> HubResult<()> {
    let target = dir_of(hub, dataset).await?.files();
    let moved = match tokio::fs::rename(from, &target).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
            let copied = tokio::process::Command::new("cp")
                .arg("-a")
                .arg("--reflink=auto")
                .arg("--")
                .arg(from.join("."))
                .arg(&target)
                .output()
                .await;
            match copied {
                Ok(out) if out.status.success() => Ok(()),
                Ok(out) => Err(std::io::Error::other(
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    if let Err(e) = moved {
        return Err(io_failure("placing a dataset's imported files", e));
    }
    hub.store
        .add_dataset_files(dataset.id, files, clock::now())
        .await?;
    Ok(())
}

/// Deletes every dataset a user owns (before the user is deleted).
pub async fn forget_user(hub: &Services, user: &UserRow) -> HubResult<()> {
    for dataset in hub.store.datasets_owned_by(user.id).await? {
        delete(hub, &dataset).await?;
    }
    Ok(())
}

/// A search query as the API takes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SearchQuery {
    /// Words that must each be in the name, description or tags.
    pub q: Option<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only with this tag.
    pub tag: Option<String>,
    /// Only the viewer's starred ones (`true`/`1`).
    pub starred: Option<String>,
    /// `updated`, `stars` or `name`.
    pub sort: Option<String>,
    /// Rows to skip.
    pub offset: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

/// A whole number of a query (`offset`, `limit`): `default` when absent, at most `max`; a 400
/// naming it otherwise.
pub fn query_number(what: &str, text: Option<&str>, default: i64, max: i64) -> HubResult<i64> {
    match text {
        None | Some("") => Ok(default),
        Some(t) => match t.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(n.min(max)),
            _ => Err(HubError::BadRequest(format!(
                "{what} must be a whole number of 0 or more, not {t:?}"
            ))),
        },
    }
}

/// A page of the datasets the viewer may read that match a query, and the total.
pub async fn search(
    hub: &Services,
    viewer: &Viewer,
    query: &SearchQuery,
) -> HubResult<(Vec<DatasetRow>, i64, i64, i64)> {
    for (what, text) in [
        ("q", &query.q),
        ("owner", &query.owner),
        ("tag", &query.tag),
    ] {
        if text
            .as_deref()
            .is_some_and(|t| t.chars().any(char::is_control))
        {
            return Err(HubError::BadRequest(format!(
                "The search's {what} cannot contain control characters"
            )));
        }
    }
    let sort = match query.sort.as_deref() {
        None | Some("") => DatasetSort::Updated,
        Some(s) => DatasetSort::parse(s).map_err(HubError::BadRequest)?,
    };
    let offset = query_number("offset", query.offset.as_deref(), 0, i64::MAX / 2)?;
    let limit = query_number("limit", query.limit.as_deref(), 50, MAX_PAGE)?.max(1);
    let words = query
        .q
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .take(10)
        .map(str::to_lowercase)
        .collect();
    let search = DatasetSearch {
        viewer_id: viewer.user.id,
        admin: viewer.admin,
        words,
        owner: query.owner.clone().filter(|o| !o.is_empty()),
        tag: query
            .tag
            .as_deref()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty()),
        starred: query
            .starred
            .as_deref()
            .is_some_and(|v| matches!(v, "1" | "true" | "yes")),
        sort,
        offset,
        limit,
    };
    let (rows, total) = hub.store.search_datasets(&search).await?;
    Ok((rows, total, offset, limit))
}

/// The datasets a user may read, as `owner/name`, for the spawn form.
pub async fn readable_for_spawn(hub: &Services, user: &UserRow) -> HubResult<Vec<String>> {
    let viewer = Viewer {
        user: user.clone(),
        admin: false,
    };
    let search = DatasetSearch {
        viewer_id: viewer.user.id,
        admin: false,
        words: Vec::new(),
        owner: None,
        tag: None,
        starred: false,
        sort: DatasetSort::Name,
        offset: 0,
        limit: MAX_PAGE,
    };
    let (rows, _) = hub.store.search_datasets(&search).await?;
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|d| format!("{}/{}", d.owner, d.name))
        .collect();
    out.sort();
    Ok(out)
}

/// The read-only mounts of the datasets a start asks for (`owner/name` each); a 400 naming the
/// first one the user may not read (or that does not exist).
pub async fn mounts_for(
    hub: &Services,
    user: &UserRow,
    wanted: &[String],
) -> HubResult<Vec<spawner::Mount>> {
    let viewer = Viewer {
        user: user.clone(),
        admin: false,
    };
    let mut mounts = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for full in wanted {
        let refused = || {
            HubError::BadRequest(format!(
                "Dataset {full:?} cannot be attached: it does not exist or {} may not read it",
                user.name
            ))
        };
        let Some((owner, name)) = full.split_once('/') else {
            return Err(HubError::BadRequest(format!(
                "Dataset {full:?} is not of the form owner/name"
            )));
        };
        if !seen.insert(full.clone()) {
            continue;
        }
        let reached = match reach(hub, &viewer, owner, name, Access::Read).await {
            Ok(r) => r,
            Err(HubError::NotFound(_) | HubError::Forbidden(_)) => return Err(refused()),
            Err(e) => return Err(e),
        };
        let dir = dir_of(hub, &reached.dataset).await?;
        dir.create()
            .await
            .map_err(|e| io_failure("creating a dataset's folders", e))?;
        mounts.push(spawner::Mount {
            source: dir.files(),
            relative: format!(
                "{MOUNT_FOLDER}/{}/{}",
                reached.dataset.owner, reached.dataset.name
            ),
        });
    }
    Ok(mounts)
}

/// One page of the folder `path` (normalised; `""`: the top): folders first, then files, by name.
pub async fn tree(
    hub: &Services,
    dataset: &DatasetRow,
    path: &str,
    offset: usize,
    limit: usize,
) -> HubResult<TreePage> {
    let path = if path.is_empty() {
        String::new()
    } else {
        dataset_files::normalize_path(path).map_err(HubError::BadRequest)?
    };
    let files = hub.store.dataset_files_under(dataset.id, &path).await?;
    if !path.is_empty() && files.iter().any(|f| f.path == path) {
        return Err(HubError::BadRequest(format!(
            "{path:?} is a file, not a folder"
        )));
    }
    if !path.is_empty() && files.is_empty() {
        return Err(HubError::NotFound(format!(
            "No folder {path:?} in {}/{}",
            dataset.owner, dataset.name
        )));
    }
    let prefix_len = if path.is_empty() { 0 } else { path.len() + 1 };
    let mut dirs: std::collections::BTreeMap<String, (i64, i64, Micros)> = Default::default();
    let mut plain: Vec<&DatasetFileRow> = Vec::new();
    for f in &files {
        let rest = &f.path[prefix_len..];
        match rest.split_once('/') {
            Some((dir, _)) => {
                let e = dirs.entry(dir.to_owned()).or_insert((0, 0, 0));
                e.0 += f.size;
                e.1 += 1;
                e.2 = e.2.max(f.created);
            }
            None => plain.push(f),
        }
    }
    plain.sort_by(|a, b| a.path.cmp(&b.path));
    let join = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}/{name}")
        }
    };
    let total = dirs.len() + plain.len();
    let entries = dirs
        .into_iter()
        .map(|(name, (size, count, updated))| TreeEntry {
            path: join(&name),
            name,
            kind: "dir",
            size,
            sha256: None,
            file_count: count,
            updated: clock::iso(updated),
        })
        .chain(plain.into_iter().map(|f| TreeEntry {
            name: f.path[prefix_len..].to_owned(),
            path: f.path.clone(),
            kind: "file",
            size: f.size,
            sha256: Some(f.sha256.clone()),
            file_count: 1,
            updated: clock::iso(f.created),
        }))
        .skip(offset)
        .take(limit)
        .collect();
    Ok(TreePage {
        path,
        entries,
        total,
        offset,
        limit,
    })
}

/// A complete file and where its bytes are.
pub async fn file(
    hub: &Services,
    dataset: &DatasetRow,
    path: &str,
) -> HubResult<(DatasetFileRow, PathBuf)> {
    let path = dataset_files::normalize_path(path).map_err(HubError::BadRequest)?;
    let row = hub
        .store
        .dataset_file(dataset.id, &path)
        .await?
        .ok_or_else(|| {
            HubError::NotFound(format!(
                "No file {path:?} in {}/{}",
                dataset.owner, dataset.name
            ))
        })?;
    let dir = dir_of(hub, dataset).await?;
    let on_disk = dir.file(&row.path);
    Ok((row, on_disk))
}

/// The ZIP of the folder `path` (`""`: the whole dataset), streamed, and its file name.
pub async fn zip(
    hub: &Services,
    dataset: &DatasetRow,
    path: &str,
) -> HubResult<(String, impl Stream<Item = std::io::Result<Bytes>> + use<>)> {
    let path = if path.is_empty() {
        String::new()
    } else {
        dataset_files::normalize_path(path).map_err(HubError::BadRequest)?
    };
    let files = hub.store.dataset_files_under(dataset.id, &path).await?;
    if !path.is_empty() && files.is_empty() {
        return Err(HubError::NotFound(format!(
            "No folder {path:?} in {}/{}",
            dataset.owner, dataset.name
        )));
    }
    let dir = dir_of(hub, dataset).await?;
    // Entries are named below the folder's own name, as a desktop's "compress" does.
    let base = path.rsplit('/').next().unwrap_or("").to_owned();
    let top = if path.is_empty() {
        dataset.name.clone()
    } else {
        base
    };
    let cut = path.len() - path.rsplit('/').next().map_or(0, str::len);
    let entries = files
        .iter()
        .map(|f| ZipEntry {
            name: if path.is_empty() {
                format!("{top}/{}", f.path)
            } else {
                f.path[cut..].to_owned()
            },
            source: dir.file(&f.path),
            size: f.size.max(0) as u64,
            modified_micros: f.created,
        })
        .collect();
    Ok((format!("{top}.zip"), dataset_files::zip_stream(entries)))
}

/// Deletes a file or folder; how many files went.
pub async fn delete_path(hub: &Services, dataset: &DatasetRow, path: &str) -> HubResult<usize> {
    let path = dataset_files::normalize_path(path).map_err(HubError::BadRequest)?;
    let gone = hub
        .store
        .delete_dataset_files(dataset.id, &path, clock::now())
        .await?;
    if gone.is_empty() {
        return Err(HubError::NotFound(format!(
            "No file or folder {path:?} in {}/{}",
            dataset.owner, dataset.name
        )));
    }
    let dir = dir_of(hub, dataset).await?;
    dataset_files::remove_path(&dir, &path)
        .await
        .map_err(|e| io_failure("removing dataset files", e))?;
    tracing::info!(dataset.id = dataset.id, path = %path, files = gone.len(), "dataset files deleted");
    Ok(gone.len())
}

/// Renames or moves a file or folder; both paths normalised, as answered.
pub async fn move_path(
    hub: &Services,
    dataset: &DatasetRow,
    from: &str,
    to: &str,
) -> HubResult<(String, String)> {
    let from = dataset_files::normalize_path(from).map_err(HubError::BadRequest)?;
    let to = dataset_files::normalize_path(to).map_err(HubError::BadRequest)?;
    if from == to {
        return Ok((from, to));
    }
    if to.starts_with(&format!("{from}/")) {
        return Err(HubError::BadRequest(format!(
            "{from:?} cannot move into itself ({to:?})"
        )));
    }
    let dir = dir_of(hub, dataset).await?;
    let disk = dir.clone();
    let (f, t) = (from.clone(), to.clone());
    let moved = hub
        .store
        .move_dataset_files(dataset.id, &from, &to, clock::now(), async move || {
            dataset_files::rename_path(&disk, &f, &t).await
        })
        .await;
    match moved {
        Ok(Ok(0)) => Err(HubError::NotFound(format!(
            "No file or folder {from:?} in {}/{}",
            dataset.owner, dataset.name
        ))),
        Ok(Ok(_)) => Ok((from, to)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidFilename => Err(HubError::BadRequest(
            format!("{to:?} is too long a name for the storage pool's filesystem; shorten it"),
        )),
        Ok(Err(e)) => Err(io_failure("moving dataset files", e)),
        Err(DbError::Conflict) => Err(HubError::Conflict(format!(
            "{to:?} exists already in {}/{}",
            dataset.owner, dataset.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// An upload and where it stands.
#[derive(Debug, Clone)]
pub struct UploadState {
    /// Its record.
    pub upload: UploadRow,
    /// Bytes received.
    pub offset: u64,
    /// The file it became, once complete.
    pub file: Option<DatasetFileRow>,
}

fn random_id() -> String {
    super::tokens::random_hex(16)
}

/// Starts an upload of `size` bytes to `path`: the name is checked, the path must be free (409),
/// the owner's limit must hold it (413) and the pool must have the room (507), all before any
/// byte is sent. A 0-byte file is complete at once.
pub async fn start_upload(
    hub: &Services,
    viewer: &Viewer,
    dataset: &DatasetRow,
    path: &str,
    size: i64,
) -> HubResult<UploadState> {
    let path = dataset_files::normalize_path(path).map_err(HubError::BadRequest)?;
    if size < 0 {
        return Err(HubError::BadRequest(format!(
            "The size of {path:?} must be 0 or more bytes"
        )));
    }
    let placed = placed_of(hub, dataset).await?;
    let dir = DatasetDir {
        root: placed.dir.clone(),
    };
    {
        let free = storage_pools::usage_of(&placed.pool).await.free_bytes;
        if (size as u64) > free {
            return Err(HubError::InsufficientStorage(format!(
                "The storage pool of {}/{} has {} free, less than the {} of {path:?}; ask an \
                 administrator for room",
                dataset.owner,
                dataset.name,
                human_bytes(free as i64),
                human_bytes(size)
            )));
        }
    }
    let now = clock::now();
    let row = UploadRow {
        id: random_id(),
        dataset_id: dataset.id,
        user_id: viewer.user.id,
        path: path.clone(),
        size,
        created: now,
        updated: now,
    };
    let limit = hub.config.datasets.user_limit_bytes();
    let started = hub
        .store
        .start_upload(&row, dataset.owner_id, limit)
        .await?;
    let upload = match started {
        UploadStart::Started(u) => u,
        UploadStart::FileExists => {
            return Err(HubError::Conflict(format!(
                "{path:?} exists already in {}/{}: delete or rename it first",
                dataset.owner, dataset.name
            )))
        }
        UploadStart::UploadExists(_) => {
            return Err(HubError::Conflict(format!(
                "{path:?} is being uploaded to {}/{} already: resume that upload or give it up \
                 first",
                dataset.owner, dataset.name
            )))
        }
        UploadStart::OverLimit { used } => {
            return Err(HubError::PayloadTooLarge(format!(
                "{path:?} ({}) does not fit in the storage limit of {}: {} of {} is used, {} is \
                 left",
                human_bytes(size),
                dataset.owner,
                human_bytes(used),
                human_bytes(limit),
                human_bytes((limit - used).max(0))
            )))
        }
    };
    let file = dir.upload(&upload.id);
    if let Err(e) = dataset_files::create_empty(&file).await {
        let _ = hub.store.delete_upload(&upload.id).await;
        return Err(io_failure("creating an upload's file", e));
    }
    tracing::info!(dataset.id = dataset.id, upload = %upload.id, path = %upload.path, size, "upload started");
    if size == 0 {
        return finish(hub, &dir, upload).await;
    }
    Ok(UploadState {
        upload,
        offset: 0,
        file: None,
    })
}

/// "1.5 GiB".
pub fn human_bytes(n: i64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n.max(0) as f64;
    let mut unit = 0;
    while x >= 1024.0 && unit + 1 < units.len() {
        x /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{x:.1} {}", units[unit])
    }
}

/// An upload the viewer may see: its own (or any, for administrators); 404 otherwise.
pub async fn upload_of(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
) -> HubResult<(UploadRow, DatasetRow)> {
    let missing =
        || HubError::NotFound(format!("No upload {id} (it may have completed or expired)"));
    let upload = hub.store.upload(id).await?.ok_or_else(missing)?;
    if upload.user_id != viewer.user.id && !viewer.admin {
        return Err(missing());
    }
    let dataset = hub
        .store
        .dataset(upload.dataset_id)
        .await?
        .ok_or_else(missing)?;
    // Someone whose write access ended may not go on.
    match access_of(&hub.store, viewer, &dataset).await? {
        Some(a) if a >= Access::Write => Ok((upload, dataset)),
        _ => Err(missing()),
    }
}

/// Where an upload stands. With `take_over` (tus's offset request, made to resume), a `PATCH`
/// still writing it is stopped first; without, this waits for it; either way the offset
/// answered is where the next `PATCH` must start.
pub async fn upload_state(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
    take_over: bool,
) -> HubResult<UploadState> {
    let (upload, dataset) = upload_of(hub, viewer, id).await?;
    let _held = dataset_files::take_upload(&upload.id, take_over).await;
    let dir = dir_of(hub, &dataset).await?;
    let offset = dataset_files::upload_offset(&dir.upload(&upload.id))
        .await
        .map_err(|e| io_failure("reading an upload", e))?;
    if offset >= upload.size.max(0) as u64 {
        // Every byte is there but the request that brought the last ones ended before the
        // upload was finished (cut off at its very end, or the hub stopped): finish it now.
        if hub.store.upload(&upload.id).await?.is_none() {
            return Err(HubError::NotFound(format!(
                "No upload {id} (it may have completed or expired)"
            )));
        }
        return finish(hub, &dir, upload).await;
    }
    Ok(UploadState {
        upload,
        offset,
        file: None,
    })
}

/// The viewer's unfinished uploads to a dataset.
pub async fn uploads_to(
    hub: &Services,
    viewer: &Viewer,
    dataset: &DatasetRow,
) -> HubResult<Vec<UploadState>> {
    let dir = dir_of(hub, dataset).await?;
    let mut out = Vec::new();
    for upload in hub.store.uploads_of(dataset.id, viewer.user.id).await? {
        let offset = dataset_files::upload_offset(&dir.upload(&upload.id))
            .await
            .map_err(|e| io_failure("reading an upload", e))?;
        out.push(UploadState {
            upload,
            offset,
            file: None,
        });
    }
    Ok(out)
}

/// Writes a request body at `offset` of an upload; the last byte makes it a file. A refused
/// body is left partly read: the caller reads it to its end (and throws it away) so that the
/// client gets the answer.
pub async fn write_upload<S, E>(
    hub: &Services,
    viewer: &Viewer,
    id: &str,
    offset: u64,
    content_length: Option<u64>,
    body: &mut S,
) -> HubResult<UploadState>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (upload, dataset) = upload_of(hub, viewer, id).await?;
    let size = upload.size.max(0) as u64;
    dataset_files::check_length(offset, content_length, size).map_err(HubError::BadRequest)?;
    let mut held = dataset_files::take_upload(&upload.id, true).await;
    // It may have completed or been given up while this request waited.
    let Some(upload) = hub.store.upload(&upload.id).await? else {
        return Err(HubError::NotFound(format!(
            "No upload {id} (it may have completed or expired)"
        )));
    };
    let dir = dir_of(hub, &dataset).await?;
    let file = dir.upload(&upload.id);
    let appended = dataset_files::append(&mut held, &upload.id, &file, offset, size, body).await;
    let now = match appended {
        Ok(Appended::BrokeOff(n)) if n < size => {
            touch(hub, &upload).await?;
            return Ok(UploadState {
                upload,
                offset: n,
                file: None,
            });
        }
        Ok(Appended::Done(n) | Appended::BrokeOff(n)) => n,
        Err(AppendError::NoSpace) => {
            give_up(hub, &dir, &upload).await?;
            tracing::warn!(dataset.id = dataset.id, upload = %upload.id, "upload failed: the storage pool is full");
            return Err(HubError::InsufficientStorage(format!(
                "The storage pool of {}/{} is full: {:?} could not be written and was removed; \
                 ask an administrator for room, then upload it again",
                dataset.owner, dataset.name, upload.path
            )));
        }
        Err(e) => return Err(e.into()),
    };
    touch(hub, &upload).await?;
    if now < size {
        return Ok(UploadState {
            upload,
            offset: now,
            file: None,
        });
    }
    finish(hub, &dir, upload).await
}

/// How long an upload's "bytes last arrived" may lag behind: it only decides when an abandoned
/// upload expires (hours), so a `PATCH` every few milliseconds need not write it each time.
const TOUCH_EVERY: Micros = 60 * 1_000_000;

/// Records that bytes of an upload arrived, at most once per [`TOUCH_EVERY`].
async fn touch(hub: &Services, upload: &UploadRow) -> HubResult<()> {
    let now = clock::now();
    if now - upload.updated >= TOUCH_EVERY {
        hub.store.touch_upload(&upload.id, now).await?;
    }
    Ok(())
}

/// Records a complete upload's sha256 and moves it into place, in one transaction.
async fn finish(hub: &Services, dir: &DatasetDir, upload: UploadRow) -> HubResult<UploadState> {
    let source = dir.upload(&upload.id);
    let size = upload.size.max(0) as u64;
    let sha256 = dataset_files::upload_sha256(&upload.id, &source, size)
        .await
        .map_err(|e| io_failure("hashing an upload", e))?;
    let target = dir.file(&upload.path);
    let (from, to) = (source.clone(), target.clone());
    let done = hub
        .store
        .complete_upload(&upload, &sha256, clock::now(), async move || {
            dataset_files::move_into_place(&from, &to).await
        })
        .await;
    dataset_files::forget_upload(&upload.id);
    match done {
        Ok(Ok(file)) => {
            tracing::info!(dataset.id = upload.dataset_id, path = %file.path, size = file.size, sha256 = %file.sha256, "file complete");
            Ok(UploadState {
                offset: size,
                upload,
                file: Some(file),
            })
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            give_up(hub, dir, &upload).await?;
            Err(HubError::Conflict(format!(
                "{:?} exists already: delete or rename it first",
                upload.path
            )))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidFilename => {
            give_up(hub, dir, &upload).await?;
            Err(HubError::BadRequest(format!(
                "{:?} is too long a name for the storage pool's filesystem; shorten it",
                upload.path
            )))
        }
        Ok(Err(e)) => Err(io_failure("moving a complete upload into place", e)),
        Err(DbError::Conflict) => {
            give_up(hub, dir, &upload).await?;
            Err(HubError::Conflict(format!(
                "{:?} exists already: delete or rename it first",
                upload.path
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Forgets an upload and removes its bytes.
async fn give_up(hub: &Services, dir: &DatasetDir, upload: &UploadRow) -> HubResult<()> {
    hub.store.delete_upload(&upload.id).await?;
    dataset_files::forget_upload(&upload.id);
    match tokio::fs::remove_file(dir.upload(&upload.id)).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_failure("removing an upload's bytes", e)),
    }
}

/// Gives an upload up (its uploader or an administrator).
pub async fn cancel_upload(hub: &Services, viewer: &Viewer, id: &str) -> HubResult<()> {
    let (upload, dataset) = upload_of(hub, viewer, id).await?;
    let _held = dataset_files::take_upload(&upload.id, true).await;
    let dir = dir_of(hub, &dataset).await?;
    give_up(hub, &dir, &upload).await
}

/// When an upload (of a dataset or a project) that no byte reached since is abandoned:
/// `[datasets] upload_expiry_hours` ago.
pub fn upload_expiry_cutoff(hub: &Services) -> Micros {
    let hours = hub.config.datasets.upload_expiry_hours.max(1) as i64;
    clock::now() - hours * 3600 * 1_000_000
}

/// Removes uploads no byte reached for `[datasets] upload_expiry_hours`; how many.
pub async fn purge_stale_uploads(hub: &Services) -> HubResult<usize> {
    let before = upload_expiry_cutoff(hub);
    let stale = hub.store.stale_uploads(before).await?;
    let n = stale.len();
    for upload in stale {
        let Some(dataset) = hub.store.dataset(upload.dataset_id).await? else {
            continue;
        };
        let _held = dataset_files::take_upload(&upload.id, true).await;
        let dir = dir_of(hub, &dataset).await?;
        give_up(hub, &dir, &upload).await?;
        tracing::info!(upload = %upload.id, dataset.id = dataset.id, "an abandoned upload was removed");
    }
    Ok(n)
}

/// Stores a cover image after checking what it is and its size.
pub async fn set_cover(
    hub: &Services,
    dataset: &DatasetRow,
    bytes: Bytes,
) -> HubResult<&'static str> {
    let max = hub.config.datasets.cover_max_kb.saturating_mul(1024);
    if bytes.len() as u64 > max {
        return Err(HubError::PayloadTooLarge(format!(
            "The cover image is {}; the largest allowed is {}",
            human_bytes(bytes.len() as i64),
            human_bytes(max as i64)
        )));
    }
    let kind = dataset_files::sniff_image(&bytes).ok_or_else(|| {
        HubError::BadRequest(
            "The cover is not a PNG, JPEG or WebP image (its content was checked, not its name)"
                .into(),
        )
    })?;
    let dir = dir_of(hub, dataset).await?;
    let tmp = dir.root.join(format!(".cover-{}", random_id()));
    let written = async {
        tokio::fs::write(&tmp, &bytes).await?;
        tokio::fs::rename(&tmp, dir.cover()).await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        if matches!(e.kind(), std::io::ErrorKind::StorageFull) {
            return Err(HubError::InsufficientStorage(
                "The storage pool is full; the cover could not be stored".into(),
            ));
        }
        return Err(io_failure("writing a cover", e));
    }
    hub.store
        .set_dataset_cover(dataset.id, true, clock::now())
        .await?;
    Ok(kind)
}

/// A dataset's cover: its bytes and kind; 404 when it has none.
pub async fn cover(hub: &Services, dataset: &DatasetRow) -> HubResult<(Vec<u8>, &'static str)> {
    let none = || {
        HubError::NotFound(format!(
            "{}/{} has no cover image",
            dataset.owner, dataset.name
        ))
    };
    if dataset.has_cover == 0 {
        return Err(none());
    }
    let dir = dir_of(hub, dataset).await?;
    let bytes = match tokio::fs::read(dir.cover()).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(none()),
        Err(e) => return Err(io_failure("reading a cover", e)),
    };
    let kind = dataset_files::sniff_image(&bytes).ok_or_else(none)?;
    Ok((bytes, kind))
}

/// Removes a dataset's cover.
pub async fn delete_cover(hub: &Services, dataset: &DatasetRow) -> HubResult<()> {
    let dir = dir_of(hub, dataset).await?;
    match tokio::fs::remove_file(dir.cover()).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_failure("removing a cover", e)),
    }
    hub.store
        .set_dataset_cover(dataset.id, false, clock::now())
        .await?;
    Ok(())
}

/// The grantee of a share named in a URL: `user/{name}` or `group/{name}`.
async fn grantee(hub: &Services, kind: &str, name: &str) -> HubResult<Grantee> {
    match kind {
        "user" => hub
            .store
            .user(name)
            .await?
            .map(|u| Grantee::User(u.id))
            .ok_or_else(|| HubError::NotFound(format!("No user named {name}"))),
        "group" => hub
            .store
            .group(name)
            .await?
            .map(|g| Grantee::Group(g.id))
            .ok_or_else(|| HubError::NotFound(format!("No group named {name}"))),
        other => Err(HubError::BadRequest(format!(
            "Share with a user or a group (…/shares/user/{{name}} or …/shares/group/{{name}}), \
             not {other:?}"
        ))),
    }
}

/// A dataset's shares.
pub async fn shares(hub: &Services, dataset: &DatasetRow) -> HubResult<Vec<ShareRow>> {
    Ok(hub.store.dataset_shares(dataset.id).await?)
}

/// Gives a user or group `read` or `write` access.
pub async fn share(
    hub: &Services,
    dataset: &DatasetRow,
    kind: &str,
    name: &str,
    access: &str,
) -> HubResult<ShareRow> {
    let access = ShareAccess::parse(access).map_err(HubError::BadRequest)?;
    let who = grantee(hub, kind, name).await?;
    if who == Grantee::User(dataset.owner_id) {
        return Err(HubError::BadRequest(format!(
            "{name} owns {}/{}: an owner needs no share",
            dataset.owner, dataset.name
        )));
    }
    hub.store
        .set_dataset_share(dataset.id, who, access, clock::now())
        .await?;
    tracing::info!(dataset.id = dataset.id, share.kind = kind, share.name = name, share.access = %access, "dataset shared");
    Ok(ShareRow {
        kind: if kind == "user" { "user" } else { "group" },
        name: name.to_owned(),
        access,
    })
}

/// Ends a share; 404 when there was none.
pub async fn unshare(
    hub: &Services,
    dataset: &DatasetRow,
    kind: &str,
    name: &str,
) -> HubResult<()> {
    let who = grantee(hub, kind, name).await?;
    if hub.store.delete_dataset_share(dataset.id, who).await? {
        Ok(())
    } else {
        Err(HubError::NotFound(format!(
            "{}/{} is not shared with {kind} {name}",
            dataset.owner, dataset.name
        )))
    }
}

/// Stars or unstars; the star count and whether the viewer has starred it now.
pub async fn star(
    hub: &Services,
    viewer: &Viewer,
    dataset: &DatasetRow,
    on: bool,
) -> HubResult<(i64, bool)> {
    hub.store
        .set_dataset_star(dataset.id, viewer.user.id, on, clock::now())
        .await?;
    let row = hub
        .store
        .dataset(dataset.id)
        .await?
        .ok_or_else(|| no_dataset(&dataset.owner, &dataset.name))?;
    Ok((row.stars, on))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names_take_letters_of_any_script_and_refuse_the_rest() {
        for good in ["mnist", "ImageNet-1k", "数据集_2024", "a.b"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".hidden", "-x", "a/b", "a b", "a\0", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tags_are_lower_cased_split_and_deduplicated() {
        let t = tags_of(&TagsInput::Text("Images, MNIST images  digits".into())).unwrap();
        assert_eq!(t, "images mnist digits");
        let t = tags_of(&TagsInput::List(vec!["NLP".into(), "中文".into()])).unwrap();
        assert_eq!(t, "nlp 中文");
        let many = TagsInput::List((0..21).map(|i| format!("t{i}")).collect());
        assert!(tags_of(&many).is_err());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(12), "12 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
