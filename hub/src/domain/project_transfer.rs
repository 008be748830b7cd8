//! Moving a project between hubs: export as one `.tar.zst` archive (see
//! `docs/projects-archive.md`) and import into a new project of the caller. The archive's
//! format, its checks and its streaming are `project_archive`; this module reads and writes the
//! rows around it and places the folder on a pool.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::Stream;

use super::datasets::{self, Viewer};
use super::project_archive::{
    self, DatasetRef, ExportPlan, ImageRef, Manifest, ProjectMeta, Visibility,
};
use super::{clusters, storage_pools, HubError, HubResult, Services};
use super::{project_files, projects};
use crate::clock;
use crate::db::{DatasetRow, DatasetVisibility, DbError, PlacementKind, ProjectFields, ProjectRow};

/// An export ready to stream: everything that can fail before the body starts has been checked.
pub struct Export {
    /// The download's file name, `{name}.tar.zst`.
    pub file_name: String,
    /// What will be written.
    pub plan: ExportPlan,
    /// The manifest (counts filled in by the writer).
    pub manifest: Manifest,
}

fn placement_key(id: i64) -> String {
    format!("project:{id}")
}

/// Scans a project the viewer may read for an export: its folder, and, with
/// `include_datasets`, the files of those of its datasets the viewer may read (every dataset is
/// listed by reference either way).
pub async fn prepare_export(
    hub: &Services,
    viewer: &Viewer,
    project: &ProjectRow,
    include_datasets: bool,
) -> HubResult<Export> {
    super::project_forks::ensure_copied(hub, project).await?;
    let dir = projects::dir_of(hub, project).await?;
    let mut refs = Vec::new();
    let mut included = Vec::new();
    for id in hub.store.project_dataset_ids(project.id).await? {
        let Some(d) = hub.store.dataset(id).await? else {
            continue;
        };
        let readable = include_datasets
            && match datasets::reach(hub, viewer, &d.owner, &d.name, datasets::Access::Read).await {
                Ok(_) => true,
                Err(HubError::NotFound(_) | HubError::Forbidden(_)) => false,
                Err(e) => return Err(e),
            };
        if readable {
            let files = datasets::dir_of(hub, &d).await?.files();
            included.push((d.owner.clone(), d.name.clone(), files));
        }
        refs.push(DatasetRef {
            owner: d.owner.clone(),
            name: d.name.clone(),
            included: readable,
        });
    }
    let image = match project.image_id {
        Some(id) => hub.store.image(id).await?.map(|i| ImageRef {
            reference: super::images::reference(&i),
            name: i.name,
        }),
        None => None,
    };
    let manifest = Manifest::new(ProjectMeta {
        name: project.name.clone(),
        description: project.description.clone(),
        tags: project.tag_list(),
        image,
        visibility: match project.visibility {
            DatasetVisibility::Public => Visibility::Public,
            _ => Visibility::Private,
        },
        datasets: refs,
        created: project.created,
        exported_at: clock::now(),
        exported_from: hub.config.public_url.clone().unwrap_or_default(),
    });
    let plan = tokio::task::spawn_blocking(move || ExportPlan::scan(&dir, &included))
        .await
        .map_err(|e| HubError::Internal(format!("scanning a project for an export: {e}")))??;
    Ok(Export {
        file_name: format!("{}.tar.zst", project.name),
        plan,
        manifest,
    })
}

/// What an import made.
#[derive(Debug, Clone)]
pub struct ImportOutcome {
    /// The new project.
    pub project: ProjectRow,
    /// Datasets of the manifest the importer may not read here (or that do not exist): not
    /// attached.
    pub dropped_datasets: Vec<String>,
    /// Datasets whose files were in the archive but which the importer may read here already:
    /// attached by reference, the archive's copy left out.
    pub datasets_not_imported: Vec<String>,
    /// Datasets whose files were in the archive and which the importer may not read here:
    /// created as new private datasets of the importer (`owner/name` as created) and attached.
    pub datasets_imported: Vec<String>,
    /// The manifest's image when no image the importer may start matches it.
    pub image_not_found: Option<String>,
    /// Regular files of the project written, and their bytes.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The bytes an import may write: what the user's dataset storage still holds.
pub async fn import_limit(hub: &Services, owner_id: i64) -> HubResult<u64> {
    let limit = hub.config.datasets.user_limit_bytes();
    let used = hub.store.dataset_bytes_of_owner(owner_id).await?;
    Ok(u64::try_from(limit.saturating_sub(used)).unwrap_or(0))
}

/// Removes what a failed import made: its folder, placement and row.
async fn forget(hub: &Services, project_id: i64, dir: Option<&Path>) {
    if let Some(dir) = dir {
        if let Err(e) = tokio::fs::remove_dir_all(dir).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(project.id = project_id, error = %e, "removing a failed import's folder");
            }
        }
    }
    let _ = hub.store.delete_project(project_id).await;
    let _ = hub
        .store
        .delete_placement(PlacementKind::Project, &placement_key(project_id))
        .await;
}

/// Imports an archive (a request body, read as it arrives) as a new private project of the
/// viewer named `name` (else as the manifest says). Any refusal leaves nothing: no row, no
/// placement, no files.
pub async fn import<S, E>(
    hub: &Services,
    viewer: &Viewer,
    name: Option<String>,
    body: S,
) -> HubResult<ImportOutcome>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let owner = &viewer.user;
    if let Some(name) = &name {
        projects::check_name(name)?;
        if hub
            .store
            .project_by_name(&owner.name, name)
            .await?
            .is_some()
        {
            return Err(taken(&owner.name, name));
        }
    }
    let limit = import_limit(hub, owner.id).await?;
    // The row comes first (its id places the folder), under a name no project can take.
    let placeholder = ProjectFields {
        name: format!("{IMPORTING_PREFIX}{:016x}", rand::random::<u64>()),
        description: String::new(),
        tags: String::new(),
        image_id: None,
        visibility: DatasetVisibility::Private,
    };
    let row = hub
        .store
        .create_project(owner.id, &placeholder, &[], None, clock::now())
        .await?;
    let mut root: Option<PathBuf> = None;
    let mut created: Vec<DatasetRow> = Vec::new();
    let result = async {
        let placed = storage_pools::place(
            hub,
            PlacementKind::Project,
            &placement_key(row.id),
            &row.id.to_string(),
        )
        .await?;
        root = Some(placed.dir.clone());
        let staging = placed.dir.join("import");
        let imported = project_archive::import_stream(body, staging.clone(), limit).await?;
        let files = placed.dir.join("files");
        tokio::fs::rename(&imported.project_dir, &files)
            .await
            .map_err(|e| HubError::Internal(format!("placing an imported project: {e}")))?;
        project_files::hand_over(hub, &placed.dir, &files, true).await;
        let outcome = finish(hub, viewer, &row, name.as_deref(), imported, &mut created).await?;
        tokio::fs::remove_dir_all(&staging)
            .await
            .map_err(|e| HubError::Internal(format!("tidying an imported project: {e}")))?;
        Ok(outcome)
    }
    .await;
    match result {
        Ok(outcome) => {
            tracing::info!(project.id = outcome.project.id, owner = %owner.name, project.name = %outcome.project.name, files = outcome.files, bytes = outcome.bytes, "project imported");
            Ok(outcome)
        }
        Err(e) => {
            tracing::info!(owner = %owner.name, error = %e, "a project import was refused or failed");
            for dataset in &created {
                if let Err(e) = datasets::delete(hub, dataset).await {
                    tracing::warn!(dataset.id = dataset.id, error = %e, "removing a failed import's dataset");
                }
            }
            forget(hub, row.id, root.as_deref()).await;
            Err(e)
        }
    }
}

/// Start of the hidden name an import's project has until the archive was read whole.
const IMPORTING_PREFIX: &str = ".import-";

/// Removes what imports left when the hub stopped in the middle of one (their projects still
/// have the hidden name): run at start-up, before anyone imports.
pub async fn sweep_interrupted(hub: &Services) -> HubResult<()> {
    for project in hub.store.projects_named_from(IMPORTING_PREFIX).await? {
        let dir = match hub
            .store
            .placement(PlacementKind::Project, &placement_key(project.id))
            .await?
        {
            Some(p) => hub
                .store
                .pool(p.pool_id)
                .await?
                .map(|pool| PathBuf::from(pool.path).join(p.relative_path)),
            None => None,
        };
        forget(hub, project.id, dir.as_deref()).await;
        tracing::info!(project.id = project.id, owner = %project.owner, "an import the hub stopped in the middle of was removed");
    }
    Ok(())
}

fn taken(owner: &str, name: &str) -> HubError {
    HubError::Conflict(format!(
        "{owner} already has a project named {name}: import it under another name (?name=)"
    ))
}

/// Gives an imported project its record: name, description, tags, image, datasets.
async fn finish(
    hub: &Services,
    viewer: &Viewer,
    row: &ProjectRow,
    name: Option<&str>,
    imported: project_archive::Imported,
    created: &mut Vec<DatasetRow>,
) -> HubResult<ImportOutcome> {
    let meta = &imported.manifest.project;
    let name = name.unwrap_or(&meta.name).to_owned();
    projects::check_name(&name)?;
    let tags = datasets::tags_of(&datasets::TagsInput::List(meta.tags.clone()))?;
    let mut image_not_found = None;
    let image_id = match &meta.image {
        Some(image) => {
            let found = match clusters::resolve_image(hub, viewer.user.id, &image.reference).await {
                Ok(i) => Some(i.id),
                Err(_) => clusters::resolve_image(hub, viewer.user.id, &image.name)
                    .await
                    .ok()
                    .map(|i| i.id),
            };
            if found.is_none() {
                image_not_found = Some(image.reference.clone());
            }
            found
        }
        None => None,
    };
    let mut dataset_ids = Vec::new();
    let mut dropped_datasets = Vec::new();
    let mut datasets_not_imported = Vec::new();
    let mut datasets_imported = Vec::new();
    for d in &meta.datasets {
        let full = format!("{}/{}", d.owner, d.name);
        match datasets::reach(hub, viewer, &d.owner, &d.name, datasets::Access::Read).await {
            Ok(r) => {
                if d.included {
                    datasets_not_imported.push(full);
                }
                if !dataset_ids.contains(&r.dataset.id) {
                    dataset_ids.push(r.dataset.id);
                }
            }
            Err(HubError::NotFound(_) | HubError::Forbidden(_)) => {
                let included = imported
                    .datasets_included
                    .iter()
                    .find(|i| d.included && i.owner == d.owner && i.name == d.name);
                match included {
                    Some(files) => {
                        let dataset = import_dataset(hub, viewer, &name, files, created).await?;
                        datasets_imported.push(format!("{}/{}", dataset.owner, dataset.name));
                        dataset_ids.push(dataset.id);
                    }
                    None => dropped_datasets.push(full),
                }
            }
            Err(e) => return Err(e),
        }
    }
    let fields = ProjectFields {
        name: name.clone(),
        description: meta.description.replace('\0', ""),
        tags,
        image_id,
        visibility: DatasetVisibility::Private,
    };
    let project = match hub
        .store
        .update_project(row.id, &fields, Some(&dataset_ids), clock::now())
        .await
    {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(HubError::Internal(
                "the imported project's row disappeared".into(),
            ))
        }
        Err(DbError::Conflict) => return Err(taken(&viewer.user.name, &name)),
        Err(e) => return Err(e.into()),
    };
    Ok(ImportOutcome {
        project,
        dropped_datasets,
        datasets_not_imported,
        datasets_imported,
        image_not_found,
        files: imported.project_files,
        bytes: imported.project_bytes,
    })
}

/// Most names tried for an included dataset whose name the importer uses already (`name`,
/// `name-2`, …).
const DATASET_NAME_TRIES: u32 = 20;

/// Makes an included dataset of the archive a new private dataset of the importer (named as
/// in the archive, or with `-2`, `-3`… when they have one by that name), holding its files.
async fn import_dataset(
    hub: &Services,
    viewer: &Viewer,
    project: &str,
    included: &project_archive::IncludedDataset,
    created: &mut Vec<DatasetRow>,
) -> HubResult<DatasetRow> {
    let mut attempt = 1;
    let dataset = loop {
        let name = if attempt == 1 {
            included.name.clone()
        } else {
            format!("{}-{attempt}", included.name)
        };
        let request = datasets::DatasetRequest {
            name: Some(name),
            description: Some(format!(
                "Imported with the project {project}; it was {}/{} where the project was \
                 exported.",
                included.owner, included.name
            )),
            ..Default::default()
        };
        match datasets::create(hub, viewer, request).await {
            Ok(d) => break d,
            Err(HubError::Conflict(_)) if attempt < DATASET_NAME_TRIES => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    created.push(dataset.clone());
    let files: Vec<(String, i64, String)> = included
        .files
        .iter()
        .map(|f| (f.path.clone(), f.size as i64, f.sha256.clone()))
        .collect();
    datasets::adopt_files(hub, &dataset, &included.dir, &files).await?;
    tracing::info!(dataset.id = dataset.id, dataset.name = %dataset.name, files = files.len(), "an included dataset was imported");
    Ok(dataset)
}
