//! Saving a running node as an image: the hub's side of `imagebuilder`.
//!
//! A save names a node of a running server (`node-0` by default), a name and a tag. The hub
//! finds the node's container in the server's state blob, asks Docker Engine where its
//! writable layer is, and starts an [`imagebuilder::SaveJob`] that pushes
//! `{registry}/{repository_prefix}/{user}/{name}:{tag}` on top of the image the node runs. The
//! job runs in the background; its state and byte progress are read through [`SaveJobEntry`].
//! When it is done, the image becomes a record of the image library owned by the user
//! (`private`, or `library` with `[images] auto_approve`); a failed or cancelled save leaves no
//! record (and the builder pushes no tag).
//!
//! Jobs live in memory (a hub restart forgets them, and a save in progress then stops with the
//! hub's process). Who may save which server is decided by the API layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::container::InspectContainerOptions;
use bollard::Docker;
use imagebuilder::{
    BuilderConfig, CancellationToken, Compression, ExcludeRules, ImageBuilder, JobState, JobStatus,
    LayerOptions, NoPause, PauseHook, RegistryAuth, RegistryConfig, SaveRequest, SavedImage,
};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{images, HubError, HubResult};
use crate::app::Hub;
use crate::clock::{self, Micros};
use crate::config::{read_secret_file, ConfigError, ImagesConfig};
use crate::db::{ImageFields, ServerRow, Store, UserRow};

/// Longest image name accepted (a path component of the repository).
const MAX_NAME_LEN: usize = 64;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 4096;
/// Finished jobs kept at most, whatever their age.
const MAX_FINISHED_JOBS: usize = 500;

/// The body of a save request.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveImageRequest {
    /// The node to save (`node-0` when absent).
    pub node: Option<String>,
    /// The image's name: one lower-case repository path component, e.g. `my-env`.
    pub name: Option<String>,
    /// Its tag (`latest` when absent).
    pub tag: Option<String>,
    /// Free text, shown in the library and written into the image's config.
    pub description: Option<String>,
}

/// The hub's save jobs and the builder that runs them.
pub struct SaveImages {
    builder: ImageBuilder,
    registry: String,
    prefix: String,
    auto_approve: bool,
    pause: bool,
    retention: Duration,
    jobs: Mutex<BTreeMap<String, Arc<SaveJobEntry>>>,
}

/// One save, as the API shows it.
pub struct SaveJobEntry {
    /// Random id (hex).
    pub id: String,
    /// The owner's user id.
    pub user_id: i64,
    /// The owner's name.
    pub user_name: String,
    /// The server's name (`""` for the default server).
    pub server_name: String,
    /// The server's row id (a server token may act on its own server's jobs).
    pub server_id: i64,
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
    pub reference: String,
    /// The image the node runs (the new image's base).
    pub base_image: String,
    /// When the save was asked for.
    pub created: Micros,
    status: watch::Receiver<JobStatus>,
    cancel: CancellationToken,
    outcome: Mutex<Option<Outcome>>,
}

/// How a job ended, as the hub sees it (the image record is written before `done` shows).
#[derive(Debug, Clone)]
struct Outcome {
    state: JobState,
    finished: Micros,
    image_id: Option<i64>,
    saved: Option<SavedImage>,
}

impl SaveImages {
    /// The builder and settings from `[images]`; reads password files.
    pub fn from_config(config: &ImagesConfig) -> Result<Self, ConfigError> {
        let mut credentials = BTreeMap::new();
        for (host, c) in &config.credentials {
            let auth = match (&c.username, &c.token) {
                (Some(username), _) => {
                    let password = match (&c.password, &c.password_file) {
                        (Some(p), _) => p.clone(),
                        (None, Some(file)) => read_secret_file(file)?,
                        (None, None) => String::new(),
                    };
                    RegistryAuth::Basic {
                        username: username.clone(),
                        password,
                    }
                }
                (None, Some(token)) => RegistryAuth::Bearer {
                    token: token.clone(),
                },
                (None, None) => RegistryAuth::Anonymous,
            };
            credentials.insert(host.clone(), auth);
        }
        let threads = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let gzip_level = config.compression_level.unwrap_or(6).clamp(1, 9);
        let gzip_level = u32::try_from(gzip_level).unwrap_or(6);
        let compression = match config.compression.as_str() {
            "gzip" => Compression::gzip(gzip_level),
            "zstd" => Compression::Zstd {
                level: config.compression_level.unwrap_or(3).clamp(1, 19),
                threads: u32::try_from(threads).unwrap_or(1),
            },
            _ => Compression::Gzip {
                level: gzip_level,
                threads,
                block_size: 1024 * 1024,
            },
        };
        let size_cap = (config.size_cap_gb > 0.0)
            .then_some((config.size_cap_gb * 1024.0 * 1024.0 * 1024.0) as u64);
        let builder = ImageBuilder::new(BuilderConfig {
            registry: RegistryConfig {
                credentials,
                plain_http: config.plain_http.clone(),
                ..RegistryConfig::default()
            },
            layer: LayerOptions {
                excludes: ExcludeRules::new(
                    config
                        .excludes
                        .iter()
                        .chain(&config.extra_excludes)
                        .cloned(),
                ),
                size_cap,
            },
            compression,
            temp_dir: config.temp_dir.clone(),
            max_concurrent_jobs: config.max_concurrent_jobs.max(1),
        });
        Ok(Self {
            builder,
            registry: config.registry.trim_end_matches('/').to_owned(),
            prefix: config.repository_prefix.trim_matches('/').to_owned(),
            auto_approve: config.auto_approve,
            pause: config.pause,
            retention: Duration::from_secs(config.job_retention_minutes.saturating_mul(60)),
            jobs: Mutex::new(BTreeMap::new()),
        })
    }

    /// The repository a user's image of this name goes to.
    pub fn repository(&self, user: &str, name: &str) -> String {
        let mut parts = vec![self.registry.clone()];
        if !self.prefix.is_empty() {
            parts.push(self.prefix.clone());
        }
        parts.push(user_component(user));
        parts.push(name.to_owned());
        parts.join("/")
    }

    /// A job by id.
    pub fn job(&self, id: &str) -> Option<Arc<SaveJobEntry>> {
        self.jobs.lock().ok()?.get(id).cloned()
    }

    /// A user's jobs, newest first.
    pub fn jobs_of(&self, user_id: i64) -> Vec<Arc<SaveJobEntry>> {
        let mut jobs: Vec<Arc<SaveJobEntry>> = self
            .jobs
            .lock()
            .map(|map| {
                map.values()
                    .filter(|j| j.user_id == user_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        jobs.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| b.id.cmp(&a.id)));
        jobs
    }

    fn active(&self) -> Vec<Arc<SaveJobEntry>> {
        self.jobs
            .lock()
            .map(|map| map.values().filter(|j| !j.is_finished()).cloned().collect())
            .unwrap_or_default()
    }

    fn insert(&self, entry: Arc<SaveJobEntry>) {
        let now = clock::now();
        let keep_micros = i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX);
        if let Ok(mut map) = self.jobs.lock() {
            map.retain(|_, j| match j.finished() {
                Some(t) => now.saturating_sub(t) < keep_micros,
                None => true,
            });
            let mut finished: Vec<(Micros, String)> = map
                .values()
                .filter_map(|j| j.finished().map(|t| (t, j.id.clone())))
                .collect();
            if finished.len() >= MAX_FINISHED_JOBS {
                finished.sort();
                let excess = finished.len() + 1 - MAX_FINISHED_JOBS;
                for (_, id) in finished.into_iter().take(excess) {
                    map.remove(&id);
                }
            }
            map.insert(entry.id.clone(), entry);
        }
    }
}

/// A user name as a repository path component: lower case, `[a-z0-9]` runs joined by `-`.
pub fn user_component(user: &str) -> String {
    let mut out = String::with_capacity(user.len());
    for c in user.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        // A name of only symbols or non-ASCII letters: a stable stand-in from its bytes.
        let hash = super::tokens::hash_secret(user);
        format!("u{}", &hash[..hash.len().min(12)])
    } else {
        trimmed.to_owned()
    }
}

/// Checks the image name: one repository path component as registries accept it.
pub fn check_name(name: &str) -> HubResult<()> {
    let rule = "use lower-case letters and digits, separated by '.', '_', '__' or '-' \
                (e.g. \"my-env\"), at most 64 characters";
    if name.is_empty() {
        return Err(HubError::BadRequest(format!(
            "Give the image a name: {rule}"
        )));
    }
    if name.contains('/') || name.contains(':') || name.len() > MAX_NAME_LEN {
        return Err(HubError::BadRequest(format!(
            "Invalid image name {name:?}: {rule}"
        )));
    }
    images::check_repository(name)
        .map_err(|_| HubError::BadRequest(format!("Invalid image name {name:?}: {rule}")))
}

/// The container id of a node in a docker server's state blob.
pub fn container_of(state: Option<&str>, node: &str) -> Result<String, Vec<String>> {
    let state: Value = state
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    let nodes = state
        .get("nodes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut names = Vec::new();
    for n in &nodes {
        let name = n.get("name").and_then(Value::as_str).unwrap_or_default();
        let id = n
            .get("container_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name == node && !id.is_empty() {
            return Ok(id.to_owned());
        }
        names.push(name.to_owned());
    }
    Err(names)
}

/// Starts saving a node of a user's running server. Errors: 400 (bad name or tag, server not
/// running, not a docker server, container gone), 404 (unknown node), 409 (name taken, or a save
/// of this node or to this name under way), 500 (Docker Engine unreachable).
pub async fn start(
    hub: &Hub,
    user: &UserRow,
    server: &ServerRow,
    request: SaveImageRequest,
) -> HubResult<Arc<SaveJobEntry>> {
    let saves = &hub.save_images;
    let name = request.name.unwrap_or_default().trim().to_owned();
    check_name(&name)?;
    let tag = request
        .tag
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "latest".into());
    images::check_tag(&tag)?;
    let description = request.description.unwrap_or_default().trim().to_owned();
    if description.len() > MAX_DESCRIPTION_LEN
        || description.chars().any(|c| c.is_control() && c != '\n')
    {
        return Err(HubError::BadRequest(format!(
            "The description must be at most {MAX_DESCRIPTION_LEN} bytes, without control characters"
        )));
    }
    let node = request
        .node
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "node-0".into());
    let label = if server.name.is_empty() {
        format!("{}'s server", user.name)
    } else {
        format!("Server {}/{}", user.name, server.name)
    };
    if hub.spawner.backend_name() != "docker" {
        return Err(HubError::BadRequest(
            "Saving a node as an image needs the docker backend ([spawner] backend = \"docker\")"
                .into(),
        ));
    }
    if server.status != "running" {
        return Err(HubError::BadRequest(format!(
            "{label} is not running; start it, then save"
        )));
    }
    let container_id = container_of(server.state.as_deref(), &node).map_err(|names| {
        HubError::NotFound(format!(
            "{label} has no node {node:?}; its nodes are: {}",
            names.join(", ")
        ))
    })?;
    let repository = saves.repository(&user.name, &name);
    images::check_repository(&repository)?;
    let reference = format!("{repository}:{tag}");
    let display_name = format!("{}/{name}:{tag}", user.name);
    let taken = hub.store.image_by_name(&display_name).await?.is_some()
        || hub
            .store
            .list_images(crate::db::ImageFilter::OwnedBy(user.id))
            .await?
            .iter()
            .any(|r| images::reference(r) == reference);
    if taken {
        return Err(HubError::Conflict(format!(
            "You already have an image {name}:{tag}; choose another name or tag, or delete that image first"
        )));
    }
    for job in saves.active() {
        if job.container_id == container_id {
            return Err(HubError::Conflict(format!(
                "A save of {node} is under way (job {}); wait for it or cancel it",
                job.id
            )));
        }
        if job.reference == reference {
            return Err(HubError::Conflict(format!(
                "A save to {name}:{tag} is under way (job {}); choose another name or tag",
                job.id
            )));
        }
    }
    let docker = Docker::connect_with_local_defaults()
        .map_err(|e| HubError::Spawner(format!("Cannot reach Docker Engine: {e}")))?;
    let container = inspect(&docker, &container_id, &node).await?;
    if !container.running {
        return Err(HubError::BadRequest(format!(
            "{node}'s container is not running; restart the server, then save"
        )));
    }
    let mut save = SaveRequest::new(
        container.writable_layer(),
        container.image.clone(),
        reference.clone(),
        user.name.clone(),
    );
    save.description = (!description.is_empty()).then(|| description.clone());
    save.labels
        .insert("org.xiji.saved-node".into(), node.clone());
    if saves.pause {
        save.pause = Arc::new(DockerPause {
            docker: docker.clone(),
            container: container_id.clone(),
        });
    } else {
        save.pause = Arc::new(NoPause);
    }
    let job = saves.builder.start(save).map_err(|e| match e {
        imagebuilder::Error::InvalidReference { .. } => HubError::BadRequest(e.to_string()),
        other => HubError::Spawner(other.to_string()),
    })?;
    let entry = Arc::new(SaveJobEntry {
        id: super::tokens::random_hex(12),
        user_id: user.id,
        user_name: user.name.clone(),
        server_name: server.name.clone(),
        server_id: server.id,
        node,
        container_id,
        name,
        tag,
        description,
        repository,
        reference,
        base_image: container.image,
        created: clock::now(),
        status: job.subscribe(),
        cancel: job.cancel_token(),
        outcome: Mutex::new(None),
    });
    saves.insert(Arc::clone(&entry));
    tracing::info!(
        job.id = %entry.id,
        user.name = %entry.user_name,
        server.name = %entry.server_name,
        node = %entry.node,
        image.reference = %entry.reference,
        image.base = %entry.base_image,
        "image save started"
    );
    let store = hub.store.clone();
    let visibility = if saves.auto_approve {
        "library"
    } else {
        "private"
    };
    let finishing = Arc::clone(&entry);
    tokio::spawn(async move {
        let result = job.wait().await;
        let outcome = match result {
            Ok(saved) => {
                match record(&store, &finishing, &saved, visibility, &display_name).await {
                    Ok(image_id) => {
                        tracing::info!(job.id = %finishing.id, image.id = image_id, "saved image recorded in the library");
                        Outcome {
                            state: JobState::Done,
                            finished: clock::now(),
                            image_id: Some(image_id),
                            saved: Some(saved),
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(job.id = %finishing.id, error = %reason, "saved image not recorded");
                        Outcome {
                            state: JobState::Failed { reason },
                            finished: clock::now(),
                            image_id: None,
                            saved: Some(saved),
                        }
                    }
                }
            }
            Err(imagebuilder::Error::Cancelled) => Outcome {
                state: JobState::Cancelled,
                finished: clock::now(),
                image_id: None,
                saved: None,
            },
            Err(e) => Outcome {
                state: JobState::Failed {
                    reason: e.to_string(),
                },
                finished: clock::now(),
                image_id: None,
                saved: None,
            },
        };
        if let Ok(mut slot) = finishing.outcome.lock() {
            *slot = Some(outcome);
        }
    });
    Ok(entry)
}

async fn inspect(
    docker: &Docker,
    container_id: &str,
    node: &str,
) -> HubResult<imagebuilder::DockerContainer> {
    let response = docker
        .inspect_container(container_id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            } => HubError::BadRequest(format!(
                "{node}'s container is gone; restart the server, then save"
            )),
            other => HubError::Spawner(format!("Cannot inspect {node}'s container: {other}")),
        })?;
    let text = serde_json::to_string(&response)
        .map_err(|e| HubError::Spawner(format!("Cannot read {node}'s container: {e}")))?;
    imagebuilder::docker_container_from_inspect(&text)
        .map_err(|e| HubError::Spawner(format!("Cannot save {node}: {e}")))
}

/// Writes the library record of a pushed image; the reason for the user on failure.
async fn record(
    store: &Store,
    job: &SaveJobEntry,
    saved: &SavedImage,
    visibility: &str,
    display_name: &str,
) -> Result<i64, String> {
    // A saved image starts like the image it was saved from: a desktop stays a desktop (same
    // VNC command, port and password), a GPU image keeps needing a GPU.
    let base = store
        .list_images(crate::db::ImageFilter::All)
        .await
        .ok()
        .and_then(|rows| {
            rows.into_iter()
                .find(|r| images::reference(r) == job.base_image)
        });
    let fields = ImageFields {
        kind: base
            .as_ref()
            .map_or_else(|| "jupyter".into(), |b| b.kind.clone()),
        name: display_name.to_owned(),
        image: job.repository.clone(),
        tag: job.tag.clone(),
        start_options: base
            .as_ref()
            .map(|b| b.start_options.clone())
            .unwrap_or_default(),
        start_command: base
            .as_ref()
            .map(|b| b.start_command.clone())
            .unwrap_or_default(),
        vnc_password: base.as_ref().and_then(|b| b.vnc_password.clone()),
        vnc_port: base.as_ref().and_then(|b| b.vnc_port),
        description: job.description.clone(),
        needs_gpu: base.as_ref().is_some_and(|b| b.needs_gpu != 0),
        enabled: true,
        visibility: visibility.to_owned(),
        owner_id: Some(job.user_id),
    };
    match images::create(store, fields).await {
        Ok(row) => Ok(row.id),
        Err(HubError::Conflict(_)) => Err(format!(
            "The image was pushed ({}@{}), but an image named {display_name:?} was added to the \
             library meanwhile; delete it and save again",
            saved.reference, saved.manifest_digest
        )),
        Err(e) => {
            tracing::error!(job.id = %job.id, error = %e, "cannot record a saved image");
            Err(format!(
                "The image was pushed ({}@{}), but the hub could not record it in the library",
                saved.reference, saved.manifest_digest
            ))
        }
    }
}

/// `docker pause` / `docker unpause` around the read of the writable layer.
struct DockerPause {
    docker: Docker,
    container: String,
}

#[async_trait]
impl PauseHook for DockerPause {
    async fn pause(&self) -> Result<(), String> {
        self.docker
            .pause_container(&self.container)
            .await
            .map_err(|e| e.to_string())
    }
    async fn resume(&self) -> Result<(), String> {
        self.docker
            .unpause_container(&self.container)
            .await
            .map_err(|e| e.to_string())
    }
}

impl SaveJobEntry {
    fn outcome(&self) -> Option<Outcome> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }

    fn finished(&self) -> Option<Micros> {
        self.outcome().map(|o| o.finished)
    }

    /// Whether the job has ended (and, when done, its image is in the library).
    pub fn is_finished(&self) -> bool {
        self.finished().is_some()
    }

    /// Asks the job to stop; a finished job is left as it is.
    pub fn cancel(&self) {
        if !self.is_finished() {
            tracing::info!(job.id = %self.id, "image save cancel requested");
            self.cancel.cancel();
        }
    }

    /// The job's API model.
    pub fn model(&self) -> Value {
        let status = self.status.borrow().clone();
        let outcome = self.outcome();
        // The builder's `done` shows only once the library record exists.
        let state = match &outcome {
            Some(o) => o.state.clone(),
            None if status.state.is_finished() => JobState::Pushing,
            None => status.state.clone(),
        };
        let (state_name, reason) = match &state {
            JobState::Queued => ("queued", None),
            JobState::Reading => ("reading", None),
            JobState::Compressing => ("compressing", None),
            JobState::Pushing => ("pushing", None),
            JobState::Done => ("done", None),
            JobState::Failed { reason } => ("failed", Some(reason.clone())),
            JobState::Cancelled => ("cancelled", None),
        };
        let p = &status.progress;
        let saved = outcome.as_ref().and_then(|o| o.saved.clone());
        json!({
            "id": self.id,
            "user": self.user_name,
            "server": self.server_name,
            "node": self.node,
            "name": self.name,
            "tag": self.tag,
            "description": self.description,
            "image": self.reference,
            "base_image": self.base_image,
            "state": state_name,
            "reason": reason,
            "finished": outcome.is_some(),
            "percent": percent(&state, p),
            "progress": p,
            "image_id": outcome.as_ref().and_then(|o| o.image_id),
            "manifest_digest": saved.as_ref().map(|s| s.manifest_digest.clone()),
            "result": saved,
            "created": clock::iso(self.created),
            "finished_at": clock::iso_json(outcome.as_ref().map(|o| o.finished)),
        })
    }
}

/// An overall percentage for a progress bar: reading 0–5, compressing 5–70, pushing 70–100.
fn percent(state: &JobState, p: &imagebuilder::ByteProgress) -> u32 {
    let ratio = |done: u64, total: u64| {
        if total == 0 {
            0.0
        } else {
            (done as f64 / total as f64).clamp(0.0, 1.0)
        }
    };
    let value = match state {
        JobState::Queued => 0.0,
        JobState::Reading => 2.0,
        JobState::Compressing => 5.0 + 65.0 * ratio(p.bytes_read, p.total_estimate),
        JobState::Pushing => 70.0 + 29.0 * ratio(p.bytes_pushed, p.push_total),
        JobState::Done => 100.0,
        JobState::Failed { .. } | JobState::Cancelled => 0.0,
    };
    value.round() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_become_repository_components() {
        assert_eq!(user_component("alice"), "alice");
        assert_eq!(
            user_component("Alice.Smith@example.edu"),
            "alice-smith-example-edu"
        );
        assert_eq!(user_component("--x--"), "x");
        let odd = user_component("名字");
        assert!(odd.starts_with('u') && odd.len() == 13, "{odd}");
        assert!(images::check_repository(&odd).is_ok());
    }

    #[test]
    fn names_must_be_one_path_component() {
        assert!(check_name("my-env").is_ok());
        assert!(check_name("env_1.2").is_ok());
        for bad in [
            "",
            "My-Env",
            "a/b",
            "a:b",
            "-x",
            "x-",
            "a b",
            &"x".repeat(65),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(
                err.contains("lower-case") || err.contains("name"),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn the_repository_is_registry_prefix_user_name() {
        let saves = SaveImages::from_config(&ImagesConfig::default()).unwrap();
        assert_eq!(
            saves.repository("Bob", "env"),
            "127.0.0.1:5000/xiji-saved/bob/env"
        );
        let config = ImagesConfig {
            repository_prefix: String::new(),
            registry: "registry.example.edu".into(),
            ..ImagesConfig::default()
        };
        let saves = SaveImages::from_config(&config).unwrap();
        assert_eq!(
            saves.repository("bob", "env"),
            "registry.example.edu/bob/env"
        );
    }

    #[test]
    fn nodes_are_found_in_the_state_blob() {
        let state = r#"{"backend":"docker","nodes":[{"name":"node-0","container_id":"abc"},{"name":"node-1","container_id":"def"}]}"#;
        assert_eq!(container_of(Some(state), "node-1").unwrap(), "def");
        assert_eq!(
            container_of(Some(state), "node-7").unwrap_err(),
            ["node-0", "node-1"]
        );
        assert!(container_of(None, "node-0").unwrap_err().is_empty());
    }

    #[test]
    fn percent_moves_forward_through_the_states() {
        let mut p = imagebuilder::ByteProgress::default();
        assert_eq!(percent(&JobState::Queued, &p), 0);
        p.bytes_read = 50;
        p.total_estimate = 100;
        let c = percent(&JobState::Compressing, &p);
        assert!((35..=40).contains(&c), "{c}");
        p.bytes_pushed = 10;
        p.push_total = 10;
        assert_eq!(percent(&JobState::Pushing, &p), 99);
        assert_eq!(percent(&JobState::Done, &p), 100);
    }
}
