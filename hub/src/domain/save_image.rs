//! Saving a running node as an image: the hub's side of `imagebuilder`.
//!
//! A save names a node of a running server (`node-0` by default), a name and a tag. The hub
//! asks the backend for the node's writable layer ([`spawner::Spawner::node_layer`]: where its
//! changes are, and the image it runs) and starts an [`imagebuilder::SaveJob`] that pushes
//! `{registry}/{repository_prefix}/{user}/{name}:{tag}` on top of the image the node runs. A
//! layer on the hub's host ([`LayerLocation::HostDir`], the docker backend) is read by the hub's
//! own builder; one on another machine ([`LayerLocation::NodeAgent`], the kubernetes backend) by
//! the node agent there, which the hub drives over HTTP with the job's id as the agent's job id
//! ([`imagebuilder::agent::AgentClient`]): the agent's state, progress and outcome go to the same
//! rows, and a cancel is passed on to it.
//!
//! A job is a row of `save_jobs` from the request on ([`SaveJobRow`]): a background task writes
//! its state at each change and its byte progress about once a second, and the API reads the
//! rows. When the builder has pushed the manifest, the image's library record (owned by the user,
//! `private`, or `library` with `[images] auto_approve`) is written in the same transaction that
//! marks the job `done`; a failed or cancelled save leaves no record (and the builder pushes no
//! tag). Memory holds only the running jobs' cancel tokens.
//!
//! A hub that stops (or dies) during a save finds the job unfinished at start-up
//! ([`recover`]): if the node still runs the same instance, the save starts again from the node (blobs
//! already in the registry are skipped by digest, and the manifest push replaces the tag) — on a
//! node agent, which went on with the save meanwhile, asking again under the same id picks the
//! agent's job up where it is (or its outcome, when it ended meanwhile); otherwise the job ends
//! `failed`, saying that the hub restarted during the save. Who may save which server is decided
//! by the API layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use imagebuilder::agent::{AgentClient, SaveSpec};
use imagebuilder::{
    BuilderConfig, ByteProgress, CancellationToken, Compression, ExcludeRules, ImageBuilder,
    JobState, LayerOptions, NoPause, PauseHook, RegistryAuth, RegistryConfig, SaveJob, SaveRequest,
    SavedImage, WritableLayer,
};
use serde_json::{json, Value};
use spawner::{LayerLocation, NodeLayer, Spawner, SpawnerError};

use super::{images, HubError, HubResult};
use crate::clock;
use crate::config::{read_secret_file, ConfigError, ImagesConfig};
use crate::db::{
    DbError, ImageFields, ImageKind, NewSaveJob, SaveJobRow, ServerRow, ServerStatus, Store,
    UserRow, Visibility,
};
use crate::domain::Services;

/// Longest image name accepted (a path component of the repository).
const MAX_NAME_LEN: usize = 64;
/// Longest description accepted.
const MAX_DESCRIPTION_LEN: usize = 4096;
/// How often a running job's byte progress is written at most (state changes are written at
/// once).
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(1);

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

/// The builder that runs saves, its settings, and the cancel tokens of the jobs running in this
/// process.
pub struct SaveImages {
    builder: ImageBuilder,
    registry: String,
    prefix: String,
    auto_approve: bool,
    pause: bool,
    retention: Duration,
    /// The token presented to node agents (`[spawner.kubernetes] agent_token_file`).
    agent_token: Option<String>,
    running: Arc<Mutex<BTreeMap<String, CancellationToken>>>,
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
            agent_token: None,
            running: Arc::default(),
        })
    }

    /// Reads the token presented to node agents from `file` (`[spawner.kubernetes]
    /// agent_token_file`); `None` leaves saves through a node agent refused for want of one.
    pub fn with_agent_token_file(
        mut self,
        file: Option<&std::path::Path>,
    ) -> Result<Self, ConfigError> {
        self.agent_token = file.map(read_secret_file).transpose()?;
        Ok(self)
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

    /// The visibility of a saved image's record.
    fn visibility(&self) -> Visibility {
        if self.auto_approve {
            Visibility::Library
        } else {
            Visibility::Private
        }
    }

    /// Deletes the jobs that ended longer than `[images] job_retention_minutes` ago.
    async fn forget_old(&self, store: &Store) {
        let keep = i64::try_from(self.retention.as_micros()).unwrap_or(i64::MAX);
        let before = clock::now().saturating_sub(keep);
        match store.delete_save_jobs_finished_before(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(jobs = n, "old save jobs forgotten"),
            Err(e) => tracing::warn!(error = %e, "cannot delete old save jobs"),
        }
    }

    /// The save request for a node's writable layer in `dir` on the hub's host.
    fn request(
        &self,
        spawner: &Arc<dyn Spawner>,
        layer: &NodeLayer,
        dir: &std::path::Path,
        job: &SaveJobRow,
    ) -> SaveRequest {
        let mut save = SaveRequest::new(
            WritableLayer::at(dir),
            layer.base_image.clone(),
            job.image_reference.clone(),
            job.user_name.clone(),
        );
        save.description = (!job.description.is_empty()).then(|| job.description.clone());
        save.labels
            .insert("org.xiji.saved-node".into(), job.node.clone());
        save.pause = if self.pause {
            Arc::new(NodePause {
                spawner: Arc::clone(spawner),
                layer: layer.clone(),
            })
        } else {
            Arc::new(NoPause)
        };
        save
    }

    /// The same save for the node agent on the node's machine: the job's id is the agent's job
    /// id, so that asking again (after a restart of the hub) finds the agent's job.
    fn agent_spec(&self, layer: &NodeLayer, container_id: &str, job: &SaveJobRow) -> SaveSpec {
        let config = self.builder.config();
        SaveSpec {
            id: Some(job.id.clone()),
            container_id: container_id.to_owned(),
            base_image: layer.base_image.clone(),
            target: job.image_reference.clone(),
            saved_by: job.user_name.clone(),
            description: (!job.description.is_empty()).then(|| job.description.clone()),
            labels: BTreeMap::from([("org.xiji.saved-node".to_owned(), job.node.clone())]),
            layer: config.layer.clone(),
            extra_excludes: Vec::new(),
            compression: Some(config.compression),
            registry: config.registry.clone(),
            pause: self.pause,
        }
    }

    /// Starts a stored job where the node's layer is, and a task that writes its progress and
    /// outcome. A layer on the hub's host: the hub's builder (errors: 400 for a reference the
    /// builder refuses, else 500). A layer behind a node agent: the agent's job; an agent that
    /// refuses or cannot be reached ends the job `failed` with its reason, as a registry that is
    /// down does.
    async fn launch(
        &self,
        spawner: &Arc<dyn Spawner>,
        store: &Store,
        layer: &NodeLayer,
        job: SaveJobRow,
    ) -> HubResult<()> {
        let builder_job = match &layer.location {
            LayerLocation::HostDir(dir) => {
                let save = self.request(spawner, layer, dir, &job);
                self.builder.start(save).map_err(|e| match e {
                    imagebuilder::Error::InvalidReference { .. } => {
                        HubError::BadRequest(e.to_string())
                    }
                    other => HubError::Spawner(other.to_string()),
                })?
            }
            LayerLocation::NodeAgent {
                agent_url,
                container_id,
            } => {
                let spec = self.agent_spec(layer, container_id, &job);
                match self.start_on_agent(agent_url, &spec).await {
                    Ok(builder_job) => builder_job,
                    Err(reason) => {
                        tracing::warn!(job.id = %job.id, agent.url = %agent_url, reason = %reason, "the node agent did not start the save");
                        store
                            .end_save_job(&job.id, "failed", Some(&reason), None, clock::now())
                            .await?;
                        return Ok(());
                    }
                }
            }
        };
        if let Ok(mut running) = self.running.lock() {
            running.insert(job.id.clone(), builder_job.cancel_token());
        }
        let store = store.clone();
        let running = Arc::clone(&self.running);
        let visibility = self.visibility();
        tokio::spawn(async move {
            let id = job.id.clone();
            drive(&store, job, builder_job, visibility).await;
            if let Ok(mut running) = running.lock() {
                running.remove(&id);
            }
        });
        Ok(())
    }

    /// The agent's job, or the reason (for the user) why there is none.
    async fn start_on_agent(&self, agent_url: &str, spec: &SaveSpec) -> Result<SaveJob, String> {
        let token = self.agent_token.as_deref().ok_or_else(|| {
            "The hub has no token for the node agents ([spawner.kubernetes] agent_token_file); \
             ask an administrator"
                .to_owned()
        })?;
        let client = AgentClient::new(agent_url, token).map_err(|e| e.to_string())?;
        client
            .start(spec)
            .await
            .map_err(|e| format!("The node agent could not start the save: {e}"))
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

/// A server's state blob as stored (`null` when there is none or it is unreadable).
fn state_of(server: &ServerRow) -> Value {
    server
        .state
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null)
}

/// A node's writable layer from the backend, or what to tell the user.
async fn layer_of(
    hub: &Services,
    server: &ServerRow,
    node: &str,
    label: &str,
) -> HubResult<NodeLayer> {
    hub.spawner
        .node_layer(&state_of(server), node)
        .await
        .map_err(|e| match e {
            SpawnerError::NoSuchNode { node, nodes } => HubError::NotFound(format!(
                "{label} has no node {node:?}; its nodes are: {}",
                nodes.join(", ")
            )),
            SpawnerError::NodeNotRunning { node, reason } => HubError::BadRequest(format!(
                "{node} is not running ({reason}); restart the server, then save"
            )),
            other => HubError::Spawner(format!("Cannot save {node}: {other}")),
        })
}

/// Starts saving a node of a user's running server. Errors: 400 (bad name or tag, server not
/// running, a backend that cannot save nodes, node gone), 404 (unknown node), 409 (name taken, or
/// a save of this node or to this name under way), 500 (the backend failed).
pub async fn start(
    hub: &Services,
    user: &UserRow,
    server: &ServerRow,
    request: SaveImageRequest,
) -> HubResult<SaveJobRow> {
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
    if !hub.spawner.capabilities().saves_images {
        return Err(HubError::BadRequest(format!(
            "Saving a node as an image needs a backend that can read its nodes' changes \
             (docker, or kubernetes with its node agents); this hub's is {}",
            hub.spawner.backend_name()
        )));
    }
    if server.status != ServerStatus::Running {
        return Err(HubError::BadRequest(format!(
            "{label} is not running; start it, then save"
        )));
    }
    let layer = layer_of(hub, server, &node, &label).await?;
    let repository = saves.repository(&user.name, &name);
    images::check_repository(&repository)?;
    let reference = format!("{repository}:{tag}");
    let display_name = display_name(&user.name, &name, &tag);
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
    for job in hub.store.unfinished_save_jobs().await? {
        if job.container_id == layer.instance_id {
            return Err(HubError::Conflict(format!(
                "A save of {node} is under way (job {}); wait for it or cancel it",
                job.id
            )));
        }
        if job.image_reference == reference {
            return Err(HubError::Conflict(format!(
                "A save to {name}:{tag} is under way (job {}); choose another name or tag",
                job.id
            )));
        }
    }
    saves.forget_old(&hub.store).await;
    let new = NewSaveJob {
        id: super::tokens::random_hex(12),
        user_id: user.id,
        server_id: server.id,
        server_name: server.name.clone(),
        node,
        container_id: layer.instance_id.clone(),
        name,
        tag,
        description,
        repository,
        image_reference: reference,
        base_image: layer.base_image.clone(),
    };
    hub.store.create_save_job(&new, clock::now()).await?;
    let job = hub
        .store
        .save_job(&new.id)
        .await?
        .ok_or_else(|| HubError::Spawner(format!("save job {} vanished", new.id)))?;
    if let Err(e) = saves
        .launch(&hub.spawner, &hub.store, &layer, job.clone())
        .await
    {
        let reason = e.to_string();
        hub.store
            .end_save_job(&job.id, "failed", Some(&reason), None, clock::now())
            .await?;
        return Err(e);
    }
    if matches!(layer.location, LayerLocation::NodeAgent { .. }) {
        // An agent that refused has ended the job already: answer it as it is.
        let now = hub.store.save_job(&job.id).await?;
        if let Some(ended) = now.filter(|j| j.finished.is_some()) {
            return Ok(ended);
        }
    }
    tracing::info!(
        job.id = %job.id,
        user.name = %job.user_name,
        server.name = %job.server_name,
        node = %job.node,
        image.reference = %job.image_reference,
        image.base = %job.base_image,
        "image save started"
    );
    Ok(job)
}

/// The library name of a user's saved image: `{user}/{name}:{tag}`.
fn display_name(user: &str, name: &str, tag: &str) -> String {
    format!("{user}/{name}:{tag}")
}

/// A job's state as stored.
fn state_name(state: &JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Reading => "reading",
        JobState::Compressing => "compressing",
        JobState::Pushing => "pushing",
        JobState::Done => "done",
        JobState::Failed { .. } => "failed",
        JobState::Cancelled => "cancelled",
    }
}

/// Follows a running builder job: writes its state changes at once and its progress about once
/// a second, then its outcome. The job becomes `done` only together with its image record.
async fn drive(store: &Store, job: SaveJobRow, builder_job: SaveJob, visibility: Visibility) {
    let mut status = builder_job.subscribe();
    let wait = builder_job.wait();
    tokio::pin!(wait);
    let mut written: (&str, Option<Instant>) = ("queued", None);
    let mut watching = true;
    let result = loop {
        tokio::select! {
            result = &mut wait => break result,
            changed = status.changed(), if watching => {
                if changed.is_err() {
                    watching = false;
                    continue;
                }
                let current = status.borrow_and_update().clone();
                // `done` is written with the record, after the builder's result is in.
                if current.state.is_finished() {
                    continue;
                }
                let state = state_name(&current.state);
                let due = written
                    .1
                    .is_none_or(|t| t.elapsed() >= PROGRESS_WRITE_INTERVAL);
                if state == written.0 && !due {
                    continue;
                }
                let progress = progress_text(&current.progress);
                match store.update_save_job(&job.id, state, &progress, clock::now()).await {
                    Ok(_) => written = (state, Some(Instant::now())),
                    Err(e) => tracing::warn!(job.id = %job.id, error = %e, "cannot write a save job's progress"),
                }
            }
        }
    };
    let progress = progress_text(&status.borrow().progress);
    let now = clock::now();
    let ended = match result {
        Ok(saved) => match complete(store, &job, &saved, visibility, &progress).await {
            Ok(image_id) => {
                tracing::info!(job.id = %job.id, image.id = image_id, manifest.digest = %saved.manifest_digest, "saved image recorded in the library");
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(job.id = %job.id, error = %reason, "saved image not recorded");
                store
                    .end_save_job(&job.id, "failed", Some(&reason), Some(&progress), now)
                    .await
                    .map(drop)
            }
        },
        Err(imagebuilder::Error::Cancelled) => store
            .end_save_job(&job.id, "cancelled", None, Some(&progress), now)
            .await
            .map(drop),
        Err(e) => store
            .end_save_job(
                &job.id,
                "failed",
                Some(&e.to_string()),
                Some(&progress),
                now,
            )
            .await
            .map(drop),
    };
    if let Err(e) = ended {
        // The row stays unfinished: the next start of the hub ends or resumes it.
        tracing::error!(job.id = %job.id, error = %e, "cannot write the end of a save job");
    }
}

fn progress_text(progress: &ByteProgress) -> String {
    serde_json::to_string(progress).unwrap_or_else(|_| "{}".into())
}

/// Cancels a job: a running one is asked to stop (it ends `cancelled` when the builder notices);
/// one that no task runs (it was left by a hub that stopped) ends at once. A finished job is left
/// as it is. Answers the job as it is now.
pub async fn cancel(hub: &Services, job: &SaveJobRow) -> HubResult<SaveJobRow> {
    if job.finished.is_some() {
        return Ok(job.clone());
    }
    let token = hub
        .save_images
        .running
        .lock()
        .ok()
        .and_then(|r| r.get(&job.id).cloned());
    tracing::info!(job.id = %job.id, "image save cancel requested");
    match token {
        Some(token) => token.cancel(),
        None => {
            hub.store
                .end_save_job(&job.id, "cancelled", None, None, clock::now())
                .await?;
        }
    }
    Ok(hub
        .store
        .save_job(&job.id)
        .await?
        .unwrap_or_else(|| job.clone()))
}

/// At start-up: every job a previous run of the hub left unfinished is resumed if its node's
/// container still runs (the save starts again from the node), else it ends `failed` saying the
/// hub restarted during the save. Also forgets jobs past their retention.
pub async fn recover(hub: &Services) -> HubResult<()> {
    let saves = &hub.save_images;
    saves.forget_old(&hub.store).await;
    for job in hub.store.unfinished_save_jobs().await? {
        let resumed = match resumable(hub, &job).await {
            Ok(layer) => {
                if !hub.store.requeue_save_job(&job.id, clock::now()).await? {
                    continue;
                }
                saves
                    .launch(&hub.spawner, &hub.store, &layer, job.clone())
                    .await
                    .map_err(|e| format!("it could not start again: {e}"))
            }
            Err(why) => Err(why),
        };
        match resumed {
            Ok(()) => tracing::info!(
                job.id = %job.id,
                user.name = %job.user_name,
                image.reference = %job.image_reference,
                "image save resumed after a restart of the hub"
            ),
            Err(why) => {
                let reason = format!("The hub restarted during the save, and {why}; save again");
                tracing::warn!(job.id = %job.id, user.name = %job.user_name, reason = %reason, "image save ended by a restart of the hub");
                hub.store
                    .end_save_job(&job.id, "failed", Some(&reason), None, clock::now())
                    .await?;
            }
        }
    }
    Ok(())
}

/// The writable layer of an unfinished job's node, or why the save cannot go on.
async fn resumable(hub: &Services, job: &SaveJobRow) -> Result<NodeLayer, String> {
    let gone = || format!("{} no longer runs", job.node);
    if !hub.spawner.capabilities().saves_images {
        return Err(format!(
            "the hub's {} backend cannot save nodes",
            hub.spawner.backend_name()
        ));
    }
    let server = hub
        .store
        .server(job.user_id, &job.server_name)
        .await
        .map_err(|e| format!("its server could not be read ({e})"))?
        .filter(|s| s.id == job.server_id && s.status == ServerStatus::Running)
        .ok_or_else(gone)?;
    let layer = hub
        .spawner
        .node_layer(&state_of(&server), &job.node)
        .await
        .map_err(|_| gone())?;
    // The node was started again since: its changes are not the ones the user saved.
    if layer.instance_id != job.container_id {
        return Err(gone());
    }
    // A node agent thaws what it froze itself (also after a restart of its own).
    if hub.save_images.pause && matches!(layer.location, LayerLocation::HostDir(_)) {
        // A hub that died mid-read left the node paused.
        if let Err(e) = hub.spawner.resume_node(&layer).await {
            tracing::warn!(job.id = %job.id, node = %job.node, error = %e, "cannot resume a node paused by an earlier run");
        }
    }
    Ok(layer)
}

/// Writes the library record of a pushed image and marks the job done, in one transaction; the
/// image's id, or the reason for the user.
async fn complete(
    store: &Store,
    job: &SaveJobRow,
    saved: &SavedImage,
    visibility: Visibility,
    progress: &str,
) -> Result<i64, String> {
    let display_name = display_name(&job.user_name, &job.name, &job.tag);
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
        kind: base.as_ref().map_or(ImageKind::Jupyter, |b| b.kind),
        name: display_name.clone(),
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
        visibility,
        owner_id: Some(job.user_id),
    };
    let pushed = format!("{}@{}", saved.reference, saved.manifest_digest);
    if let Err(e) = images::validate(&fields) {
        return Err(format!(
            "The image was pushed ({pushed}), but it cannot be recorded: {e}"
        ));
    }
    let result = serde_json::to_string(saved).unwrap_or_else(|_| "null".into());
    match store
        .complete_save_job(&job.id, &fields, &result, progress, clock::now())
        .await
    {
        Ok(Some(row)) => Ok(row.id),
        Ok(None) => Err(format!(
            "The image was pushed ({pushed}), but the job had ended meanwhile"
        )),
        Err(DbError::Conflict) => Err(format!(
            "The image was pushed ({pushed}), but an image named {display_name:?} was added to \
             the library meanwhile; delete it and save again"
        )),
        Err(e) => {
            tracing::error!(job.id = %job.id, error = %e, "cannot record a saved image");
            Err(format!(
                "The image was pushed ({pushed}), but the hub could not record it in the library"
            ))
        }
    }
}

/// Pauses the node (through its backend) around the read of its writable layer.
struct NodePause {
    spawner: Arc<dyn Spawner>,
    layer: NodeLayer,
}

#[async_trait]
impl PauseHook for NodePause {
    async fn pause(&self) -> Result<(), String> {
        self.spawner
            .pause_node(&self.layer)
            .await
            .map_err(|e| e.to_string())
    }
    async fn resume(&self) -> Result<(), String> {
        self.spawner
            .resume_node(&self.layer)
            .await
            .map_err(|e| e.to_string())
    }
}

/// A job's API model.
pub fn model(job: &SaveJobRow) -> Value {
    let progress: ByteProgress = serde_json::from_str(&job.progress).unwrap_or_default();
    let state = match job.state.as_str() {
        "reading" => JobState::Reading,
        "compressing" => JobState::Compressing,
        "pushing" => JobState::Pushing,
        "done" => JobState::Done,
        "failed" => JobState::Failed {
            reason: job.reason.clone().unwrap_or_default(),
        },
        "cancelled" => JobState::Cancelled,
        _ => JobState::Queued,
    };
    let result: Option<Value> = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    json!({
        "id": job.id,
        "user": job.user_name,
        "server": job.server_name,
        "node": job.node,
        "name": job.name,
        "tag": job.tag,
        "description": job.description,
        "image": job.image_reference,
        "base_image": job.base_image,
        "state": state_name(&state),
        "reason": job.reason,
        "finished": job.finished.is_some(),
        "percent": percent(&state, &progress),
        "progress": progress,
        "image_id": job.image_id,
        "manifest_digest": result.as_ref().and_then(|r| r.get("manifest_digest").cloned()),
        "result": result,
        "created": clock::iso(job.created),
        "finished_at": clock::iso_json(job.finished),
    })
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
