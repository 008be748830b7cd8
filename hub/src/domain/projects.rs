//! Projects: the unit of work. A project has a runtime image, attached datasets, members
//! (viewers and editors), a visibility, stars and forks, and a folder on a storage pool that is
//! `/home/jovyan/work` on every node of a cluster run for it. A fork's files are copied in the
//! background (`project_forks`).
//!
//! Running a project starts the runner's named server `project-{id}` (an ordinary named server
//! to JupyterHub clients): its work directory is the project's folder and its datasets are
//! mounted read-only. One running cluster per project per user follows from the server name.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::clusters::{self, SpawnOptions};
use super::datasets::{self, TagsInput, Viewer};
use super::{project_forks, servers, storage_pools, HubError, HubResult, Services};
use crate::clock;
use crate::db::{
    DatasetVisibility, DbError, MemberRow, PlacementKind, PoolState, ProjectFields, ProjectRole,
    ProjectRow, ProjectSearch, ServerRow, ServerStatus, UserRow,
};

/// Named servers of projects are `project-{id}`.
pub const SERVER_PREFIX: &str = "project-";
/// Longest project name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// Longest description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 100_000;
/// Largest page of a search.
const MAX_PAGE: i64 = 100;
/// What a run may say (the spawn form's fields, kept for the next run): the sizes, the compute
/// pool, the release policy, whether to wait in line for capacity.
const RUN_KEYS: [&str; 8] = [
    "nodes",
    "cpus",
    "memory",
    "gpus",
    "storage",
    "pool",
    crate::domain::release::CHOICE_KEY,
    "wait",
];

/// What a viewer may do with one project, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Open and download its files, star and fork it.
    Read,
    /// Also change its files and run it.
    Edit,
    /// Also change its record, members and visibility, delete it.
    Owner,
}

impl Access {
    /// The word the API gives.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Edit => "edit",
            Access::Owner => "owner",
        }
    }
}

/// A project the viewer may reach, with what they may do.
#[derive(Debug, Clone)]
pub struct Reached {
    /// Its record.
    pub project: ProjectRow,
    /// The viewer's access.
    pub access: Access,
}

/// A new project, or a change of one (absent fields stay as they are).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectRequest {
    /// Unique per owner.
    pub name: Option<String>,
    /// Markdown.
    pub description: Option<String>,
    /// Tags.
    pub tags: Option<TagsInput>,
    /// The runtime image: a library record's id, name or reference.
    pub image: Option<Value>,
    /// `private` or `public`.
    pub visibility: Option<String>,
    /// Attached datasets, `owner/name` each.
    pub datasets: Option<Vec<String>>,
}

/// Checks a project name: as a dataset's (1–64 letters of any script, digits, `-`, `_`, `.`).
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
            "Invalid project name {name:?}: use 1 to {MAX_NAME_CHARS} letters, digits, '-', '_' or \
             '.', not starting with '.' or '-'"
        )))
    }
}

fn no_project(owner: &str, name: &str) -> HubError {
    HubError::NotFound(format!("No project {owner}/{name}"))
}

/// What a viewer may do with a project, if anything.
pub async fn access_of(
    hub: &Services,
    viewer: &Viewer,
    project: &ProjectRow,
) -> HubResult<Option<Access>> {
    if viewer.admin || project.owner_id == viewer.user.id {
        return Ok(Some(Access::Owner));
    }
    Ok(
        match hub.store.project_role(project.id, viewer.user.id).await? {
            Some(ProjectRole::Editor) => Some(Access::Edit),
            Some(ProjectRole::Viewer) => Some(Access::Read),
            None if project.visibility == DatasetVisibility::Public => Some(Access::Read),
            None => None,
        },
    )
}

/// A project by owner and name that the viewer may reach with at least `need`: 404 when they
/// may not see it, 403 when they see it but may not do this.
pub async fn reach(
    hub: &Services,
    viewer: &Viewer,
    owner: &str,
    name: &str,
    need: Access,
) -> HubResult<Reached> {
    // No stored name holds a control character (and PostgreSQL refuses NUL in a query).
    if owner.chars().chain(name.chars()).any(char::is_control) {
        return Err(no_project(owner, name));
    }
    let project = hub
        .store
        .project_by_name(owner, name)
        .await?
        .ok_or_else(|| no_project(owner, name))?;
    let access = access_of(hub, viewer, &project)
        .await?
        .ok_or_else(|| no_project(owner, name))?;
    if access < need {
        let what = match need {
            Access::Read => "open",
            Access::Edit => "change the files of or run",
            Access::Owner => "change the settings of, share or delete",
        };
        return Err(HubError::Forbidden(format!(
            "You may {} {owner}/{name} but not {what} it",
            match access {
                Access::Read => "open",
                Access::Edit => "edit",
                Access::Owner => "own",
            }
        )));
    }
    Ok(Reached { project, access })
}

fn placement_key(id: i64) -> String {
    format!("project:{id}")
}

/// A project's placement: its pool and folder (`files/` inside is what its nodes see).
pub async fn placed_of(hub: &Services, project: &ProjectRow) -> HubResult<storage_pools::Placed> {
    storage_pools::place(
        hub,
        PlacementKind::Project,
        &placement_key(project.id),
        &project.id.to_string(),
    )
    .await
}

/// A project's folder on its pool: what `/home/jovyan/work` is on its nodes (placed on the
/// freest pool the first time, created).
pub async fn dir_of(hub: &Services, project: &ProjectRow) -> HubResult<PathBuf> {
    let placed = placed_of(hub, project).await?;
    let files = placed.dir.join("files");
    tokio::fs::create_dir_all(&files)
        .await
        .map_err(|e| HubError::Internal(format!("creating a project's folder: {e}")))?;
    Ok(files)
}

/// The library image a request names, as the owner may start it.
async fn image_of(hub: &Services, owner_id: i64, wanted: &Value) -> HubResult<Option<i64>> {
    let text = match wanted {
        Value::Null => return Ok(None),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.trim().is_empty() => return Ok(None),
        Value::String(s) => s.clone(),
        _ => {
            return Err(HubError::BadRequest(
                "image must be an image's id, name or reference".into(),
            ))
        }
    };
    let image = clusters::resolve_image(hub, owner_id, &text).await?;
    Ok(Some(image.id))
}

/// The ids of datasets named `owner/name` that `user` may read; the names of those they may
/// not read (or that do not exist).
async fn readable_datasets(
    hub: &Services,
    user: &UserRow,
    names: &[String],
) -> HubResult<(Vec<i64>, Vec<String>)> {
    let viewer = Viewer {
        user: user.clone(),
        admin: false,
    };
    let mut ids = Vec::new();
    let mut dropped = Vec::new();
    for full in names {
        let Some((owner, name)) = full.split_once('/') else {
            dropped.push(full.clone());
            continue;
        };
        match datasets::reach(hub, &viewer, owner, name, datasets::Access::Read).await {
            Ok(r) if !ids.contains(&r.dataset.id) => ids.push(r.dataset.id),
            Ok(_) => {}
            Err(HubError::NotFound(_) | HubError::Forbidden(_)) => dropped.push(full.clone()),
            Err(e) => return Err(e),
        }
    }
    Ok((ids, dropped))
}

/// The `owner/name` of a project's datasets.
pub async fn dataset_names(hub: &Services, project: &ProjectRow) -> HubResult<Vec<String>> {
    let mut out = Vec::new();
    for id in hub.store.project_dataset_ids(project.id).await? {
        if let Some(d) = hub.store.dataset(id).await? {
            out.push(format!("{}/{}", d.owner, d.name));
        }
    }
    Ok(out)
}

async fn apply(
    hub: &Services,
    owner_id: i64,
    fields: &mut ProjectFields,
    request: &ProjectRequest,
) -> HubResult<()> {
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
        fields.tags = datasets::tags_of(tags)?;
    }
    if let Some(visibility) = &request.visibility {
        fields.visibility = DatasetVisibility::parse(visibility).map_err(HubError::BadRequest)?;
    }
    if let Some(image) = &request.image {
        fields.image_id = image_of(hub, owner_id, image).await?;
    }
    Ok(())
}

/// Creates a project of the viewer with its folder on the freest pool; its datasets must be
/// readable by the viewer (a 400 names the first that is not).
pub async fn create(
    hub: &Services,
    viewer: &Viewer,
    request: ProjectRequest,
) -> HubResult<ProjectRow> {
    if request.name.is_none() {
        return Err(HubError::BadRequest("Give the project a name".into()));
    }
    let mut fields = ProjectFields {
        name: String::new(),
        description: String::new(),
        tags: String::new(),
        image_id: None,
        visibility: DatasetVisibility::Private,
    };
    apply(hub, viewer.user.id, &mut fields, &request).await?;
    let (dataset_ids, refused) = readable_datasets(
        hub,
        &viewer.user,
        request.datasets.as_deref().unwrap_or(&[]),
    )
    .await?;
    if let Some(first) = refused.first() {
        return Err(HubError::BadRequest(format!(
            "Dataset {first:?} cannot be attached: it does not exist or you may not read it"
        )));
    }
    let project = match hub
        .store
        .create_project(viewer.user.id, &fields, &dataset_ids, None, clock::now())
        .await
    {
        Ok(p) => p,
        Err(DbError::Conflict) => {
            return Err(HubError::Conflict(format!(
                "{} already has a project named {}",
                viewer.user.name, fields.name
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = dir_of(hub, &project).await {
        forget_rows(hub, &project).await;
        return Err(e);
    }
    tracing::info!(project.id = project.id, project.owner = %project.owner, project.name = %project.name, "project created");
    Ok(project)
}

/// Removes a project's rows and placement (a failed creation).
async fn forget_rows(hub: &Services, project: &ProjectRow) {
    let _ = hub.store.delete_project(project.id).await;
    let _ = hub
        .store
        .delete_placement(PlacementKind::Project, &placement_key(project.id))
        .await;
}

/// Changes a project's record and datasets (owners and administrators).
pub async fn update(
    hub: &Services,
    viewer: &Viewer,
    reached: &Reached,
    request: ProjectRequest,
) -> HubResult<ProjectRow> {
    let p = &reached.project;
    let mut fields = ProjectFields {
        name: p.name.clone(),
        description: p.description.clone(),
        tags: p.tags.clone(),
        image_id: p.image_id,
        visibility: p.visibility,
    };
    apply(hub, p.owner_id, &mut fields, &request).await?;
    let dataset_ids = match &request.datasets {
        Some(names) => {
            let (ids, refused) = readable_datasets(hub, &viewer.user, names).await?;
            if let Some(first) = refused.first() {
                return Err(HubError::BadRequest(format!(
                    "Dataset {first:?} cannot be attached: it does not exist or you may not read it"
                )));
            }
            Some(ids)
        }
        None => None,
    };
    match hub
        .store
        .update_project(p.id, &fields, dataset_ids.as_deref(), clock::now())
        .await
    {
        Ok(Some(row)) => Ok(row),
        Ok(None) => Err(no_project(&p.owner, &p.name)),
        Err(DbError::Conflict) => Err(HubError::Conflict(format!(
            "{} already has a project named {}",
            p.owner, fields.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The project a named server runs, if its name is `project-{id}`.
pub fn project_id_of_server(server_name: &str) -> Option<i64> {
    server_name
        .strip_prefix(SERVER_PREFIX)
        .and_then(|id| id.parse::<i64>().ok())
}

/// Whether a server name is a project's (`project-{id}`).
pub fn is_project_server(server_name: &str) -> bool {
    project_id_of_server(server_name).is_some()
}

/// The servers running (or starting) for a project, with their users' names.
pub async fn running(hub: &Services, project: &ProjectRow) -> HubResult<Vec<(String, ServerRow)>> {
    let name = format!("{SERVER_PREFIX}{}", project.id);
    Ok(hub
        .store
        .active_servers()
        .await?
        .into_iter()
        .filter(|(_, row)| row.name == name)
        .collect())
}

/// Deletes a project: its rows, then its folder. A running cluster of it is a 409 naming who
/// runs it, unless `release` (administrators, a deleted owner): then its clusters are stopped
/// first.
pub async fn delete(hub: &Arc<Services>, project: &ProjectRow, release: bool) -> HubResult<()> {
    // A fork whose files are being copied: the copy stops (and removes what it copied) first.
    project_forks::stop(project.id).await;
    let running = running(hub, project).await?;
    if !release {
        if let Some((user_name, _)) = running.first() {
            return Err(HubError::Conflict(format!(
                "{user_name} is running {}/{}: stop that cluster first",
                project.owner, project.name
            )));
        }
    }
    for (user_name, row) in running {
        if row.status.is_transitioning() {
            return Err(HubError::Conflict(format!(
                "{user_name}'s cluster of this project is starting or stopping; wait for it, then \
                 delete"
            )));
        }
        if let Some(user) = hub.store.user(&user_name).await? {
            if row.status == ServerStatus::Running {
                servers::stop(hub, &user, &row).await?;
            }
        }
    }
    let placement = hub
        .store
        .placement(PlacementKind::Project, &placement_key(project.id))
        .await?;
    let root = match placement {
        Some(p) => hub
            .store
            .pool(p.pool_id)
            .await?
            .map(|pool| PathBuf::from(pool.path).join(p.relative_path)),
        None => None,
    };
    hub.store.delete_project(project.id).await?;
    hub.store
        .delete_placement(PlacementKind::Project, &placement_key(project.id))
        .await?;
    if let Some(root) = root {
        if let Err(e) = tokio::fs::remove_dir_all(&root).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(project.id = project.id, error = %e, "a deleted project's folder could not be removed");
            }
        }
    }
    tracing::info!(project.id = project.id, project.owner = %project.owner, project.name = %project.name, "project deleted");
    Ok(())
}

/// Deletes every project a user owns (before the user is deleted).
pub async fn forget_user(hub: &Arc<Services>, user: &UserRow) -> HubResult<()> {
    for project in hub.store.projects_owned_by(user.id).await? {
        delete(hub, &project, true).await?;
    }
    Ok(())
}

/// A search query as the API takes it.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct SearchQuery {
    /// Words that must each be in the name, description, tags or image name.
    pub q: Option<String>,
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only the viewer's own and those they are a member of (`true`/`1`).
    pub mine: Option<String>,
    /// Only the viewer's starred ones.
    pub starred: Option<String>,
    /// `updated` (default) or `stars`.
    pub sort: Option<String>,
    /// Rows to skip.
    pub offset: Option<String>,
    /// Page size.
    pub limit: Option<String>,
}

fn flag(text: &Option<String>) -> bool {
    text.as_deref()
        .is_some_and(|v| matches!(v, "1" | "true" | "yes"))
}

/// A page of the projects the viewer may see that match a query, the total, offset and limit.
pub async fn search(
    hub: &Services,
    viewer: &Viewer,
    query: &SearchQuery,
) -> HubResult<(Vec<ProjectRow>, i64, i64, i64)> {
    for (what, text) in [("q", &query.q), ("owner", &query.owner)] {
        if text
            .as_deref()
            .is_some_and(|t| t.chars().any(char::is_control))
        {
            return Err(HubError::BadRequest(format!(
                "The search's {what} cannot contain control characters"
            )));
        }
    }
    let by_stars = match query.sort.as_deref() {
        None | Some("") | Some("updated") => false,
        Some("stars") => true,
        Some(other) => {
            return Err(HubError::BadRequest(format!(
                "Unknown sort order {other:?}: use updated, stars"
            )))
        }
    };
    let offset = datasets::query_number("offset", query.offset.as_deref(), 0, i64::MAX / 2)?;
    let limit = datasets::query_number("limit", query.limit.as_deref(), 20, MAX_PAGE)?.max(1);
    let search = ProjectSearch {
        viewer_id: viewer.user.id,
        admin: viewer.admin,
        words: query
            .q
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .take(10)
            .map(str::to_lowercase)
            .collect(),
        owner: query.owner.clone().filter(|o| !o.is_empty()),
        mine: flag(&query.mine),
        starred: flag(&query.starred),
        by_stars,
        offset,
        limit,
    };
    let (rows, total) = hub.store.search_projects(&search).await?;
    Ok((rows, total, offset, limit))
}

/// Adds a member with a role, or changes their role.
pub async fn set_member(
    hub: &Services,
    project: &ProjectRow,
    user_name: &str,
    role: &str,
) -> HubResult<MemberRow> {
    let role = ProjectRole::parse(role).map_err(HubError::BadRequest)?;
    let user = hub
        .store
        .user(user_name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No user named {user_name}")))?;
    if user.id == project.owner_id {
        return Err(HubError::BadRequest(format!(
            "{user_name} owns {}/{}: an owner needs no role",
            project.owner, project.name
        )));
    }
    hub.store
        .set_project_member(project.id, user.id, role, clock::now())
        .await?;
    tracing::info!(project.id = project.id, member = %user.name, role = %role, "project member set");
    Ok(MemberRow {
        user_id: user.id,
        name: user.name,
        role,
    })
}

/// Removes a member; 404 when they were none.
pub async fn remove_member(hub: &Services, project: &ProjectRow, user_name: &str) -> HubResult<()> {
    let user = hub
        .store
        .user(user_name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No user named {user_name}")))?;
    if hub.store.delete_project_member(project.id, user.id).await? {
        Ok(())
    } else {
        Err(HubError::NotFound(format!(
            "{user_name} is not a member of {}/{}",
            project.owner, project.name
        )))
    }
}

/// Stars or unstars; the star count now.
pub async fn star(
    hub: &Services,
    viewer: &Viewer,
    project: &ProjectRow,
    on: bool,
) -> HubResult<i64> {
    hub.store
        .set_project_star(project.id, viewer.user.id, on, clock::now())
        .await?;
    Ok(hub.store.project(project.id).await?.map_or(0, |p| p.stars))
}

/// What a fork made.
#[derive(Debug, Clone)]
pub struct Forked {
    /// The new project.
    pub project: ProjectRow,
    /// Datasets of the original the forker may not read: not attached to the fork.
    pub dropped_datasets: Vec<String>,
}

/// Forks a project the viewer may read into a new private project of theirs (named `name`, or
/// as the original): the same image, the datasets the viewer may read, and a copy of its files
/// made in the background (`project_forks`), on the original's pool where it takes new data so
/// that the copy can share the original's blocks. The fork is returned at once, copying; a 409
/// when the original is itself a fork whose files are not all there.
pub async fn fork(
    hub: &Arc<Services>,
    viewer: &Viewer,
    original: &ProjectRow,
    name: Option<&str>,
) -> HubResult<Forked> {
    let name = name.unwrap_or(&original.name).to_owned();
    check_name(&name)?;
    project_forks::ensure_copied(hub, original).await?;
    let names = dataset_names(hub, original).await?;
    let (dataset_ids, dropped_datasets) = readable_datasets(hub, &viewer.user, &names).await?;
    // The image only if the forker may start it.
    let image_id = match original.image_id {
        Some(id) => super::images::startable(&hub.store, id, viewer.user.id)
            .await
            .ok()
            .map(|i| i.id),
        None => None,
    };
    let fields = ProjectFields {
        name: name.clone(),
        description: original.description.clone(),
        tags: original.tags.clone(),
        image_id,
        visibility: DatasetVisibility::Private,
    };
    let project = match hub
        .store
        .create_project(
            viewer.user.id,
            &fields,
            &dataset_ids,
            Some(original.id),
            clock::now(),
        )
        .await
    {
        Ok(p) => p,
        Err(DbError::Conflict) => {
            return Err(HubError::Conflict(format!(
                "You already have a project named {name}: give the fork another name"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let folders = async {
        place_beside(hub, original, &project).await?;
        let from = dir_of(hub, original).await?;
        let to = dir_of(hub, &project).await?;
        HubResult::Ok((from, to))
    }
    .await;
    let (from, to) = match folders {
        Ok(folders) => folders,
        Err(e) => {
            // Nothing of a fork that cannot start is left: its folder, placement and rows.
            if let Ok(Some(p)) = hub
                .store
                .placement(PlacementKind::Project, &placement_key(project.id))
                .await
            {
                if let Ok(Some(pool)) = hub.store.pool(p.pool_id).await {
                    let _ =
                        tokio::fs::remove_dir_all(PathBuf::from(pool.path).join(p.relative_path))
                            .await;
                }
            }
            forget_rows(hub, &project).await;
            return Err(e);
        }
    };
    project_forks::start(hub, &project, from, to);
    tracing::info!(project.id = project.id, forked_from = original.id, owner = %viewer.user.name, "project forked; copying its files");
    Ok(Forked {
        project,
        dropped_datasets,
    })
}

/// Places a fork's folder on its original's pool when that pool is active and has free space
/// (a copy within one filesystem can share blocks), else leaves it to the pools' rule.
async fn place_beside(hub: &Services, original: &ProjectRow, fork: &ProjectRow) -> HubResult<()> {
    let Some(placement) = hub
        .store
        .placement(PlacementKind::Project, &placement_key(original.id))
        .await?
    else {
        return Ok(());
    };
    let Some(pool) = hub.store.pool(placement.pool_id).await? else {
        return Ok(());
    };
    if pool.state != PoolState::Active || storage_pools::usage_of(&pool).await.free_bytes == 0 {
        return Ok(());
    }
    hub.store
        .create_placement(
            pool.id,
            PlacementKind::Project,
            &placement_key(fork.id),
            &format!("{}/{}", PlacementKind::Project, fork.id),
            clock::now(),
        )
        .await?;
    Ok(())
}

/// The server name of a project.
pub fn server_name(project: &ProjectRow) -> String {
    format!("{SERVER_PREFIX}{}", project.id)
}

/// Runs a project as the viewer's named server `project-{id}`: the project's image and
/// datasets (those the viewer may read), the given sizes (else the last run's); the sizes are
/// kept for the next run.
pub async fn run(
    hub: &Arc<Services>,
    viewer: &Viewer,
    project: &ProjectRow,
    sizes: Map<String, Value>,
) -> HubResult<servers::Outcome> {
    let mut options = Map::new();
    let sizes = if sizes.is_empty() {
        serde_json::from_str::<Map<String, Value>>(&project.last_options).unwrap_or_default()
    } else {
        sizes
    };
    for (k, v) in &sizes {
        if !RUN_KEYS.contains(&k.as_str()) {
            return Err(HubError::BadRequest(format!(
                "Unknown size {k:?}: a run takes {}",
                RUN_KEYS.join(", ")
            )));
        }
        options.insert(k.clone(), v.clone());
    }
    if let Some(image_id) = project.image_id {
        options.insert("image".into(), Value::from(image_id));
    }
    let names = dataset_names(hub, project).await?;
    let (_, unreadable) = readable_datasets(hub, &viewer.user, &names).await?;
    let readable: Vec<Value> = names
        .into_iter()
        .filter(|n| !unreadable.contains(n))
        .map(Value::String)
        .collect();
    options.insert(datasets_key(), Value::Array(readable));
    options.insert(
        "project".into(),
        Value::String(format!("{}/{}", project.owner, project.name)),
    );
    let read = SpawnOptions::read(hub.spawner.as_ref(), Value::Object(options))?;
    let outcome = servers::start(hub, &viewer.user, &server_name(project), Some(read)).await?;
    let kept = Value::Object(sizes).to_string();
    hub.store
        .set_project_last_options(project.id, &kept)
        .await?;
    Ok(outcome)
}

fn datasets_key() -> String {
    "datasets".into()
}

/// The work directory of a named server: the project's folder for `project-{id}` (its runner must
/// be allowed to run it: an editor, the owner or an administrator), else `None`.
pub async fn work_dir_for_server(
    hub: &Services,
    user: &UserRow,
    server_name: &str,
) -> HubResult<Option<PathBuf>> {
    let Some(id) = project_id_of_server(server_name) else {
        return Ok(None);
    };
    let refused = || {
        HubError::BadRequest(format!(
            "Server names {SERVER_PREFIX}N belong to projects, and {} may not run project {id}",
            user.name
        ))
    };
    let project = hub.store.project(id).await?.ok_or_else(refused)?;
    let viewer = Viewer {
        user: user.clone(),
        admin: user.admin != 0,
    };
    match access_of(hub, &viewer, &project).await? {
        Some(a) if a >= Access::Edit => {
            // A fork runs once its files are all there.
            project_forks::ensure_copied(hub, &project).await?;
            Ok(Some(dir_of(hub, &project).await?))
        }
        _ => Err(refused()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_servers_are_named_after_the_project_id_only() {
        assert_eq!(project_id_of_server("project-12"), Some(12));
        assert_eq!(project_id_of_server("project-"), None);
        assert_eq!(project_id_of_server("project-x"), None);
        assert_eq!(project_id_of_server("lab"), None);
    }
}
