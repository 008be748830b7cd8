//! The agent's HTTP API. Every request carries `Authorization: Bearer <token>` (401 otherwise);
//! answers are JSON, errors `{"status": N, "message": "..."}`.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/saves` [`SaveSpec`] | 201 [`SaveView`] (200 with the existing job when its `id` is known); 400 bad id or body, 404 no such container here, 409 a save of it under way, 422 not saveable |
//! | `GET /v1/saves/{id}` | 200 [`SaveView`]: state and byte progress; 404 |
//! | `DELETE /v1/saves/{id}` | 202 [`SaveView`]: the job stops between files or upload chunks and ends `cancelled` (a finished job stays as it is) |
//! | `GET /v1/containers/{id}/usage` (`id` as `containerStatuses[].containerID` gives it, URL-encoded) | 200 [`ContainerUsage`]: the container's CPU time from its cgroup; 400 bad id, 404 no process runs in it here |
//!
//! Jobs live in the agent's memory: a finished one is kept for `job_retention`, and an agent
//! that restarts forgets them (its client then reports the save as failed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::freeze::FreezeHook;
use super::locate::{locate, ContainerId, ContainerLocation, HostPaths};
use super::usage::container_usage;
use super::wire::{ContainerUsage, ErrorBody, SaveSpec, SaveView};
use super::AgentError;
use crate::compress::Compression;
use crate::job::{BuilderConfig, ImageBuilder, JobState, JobStatus, NoPause, SaveRequest};
use crate::progress::ByteProgress;
use crate::registry::parse_reference;
use crate::source::WritableLayer;

/// Most jobs (running and finished) the agent keeps.
const MAX_JOBS: usize = 1000;
/// Longest job id a caller may choose.
const MAX_ID_LEN: usize = 64;

/// The agent's settings (from its command line).
#[derive(Clone)]
pub struct AgentConfig {
    /// The bearer token every request must carry.
    pub token: String,
    /// Where the host's `/proc`, filesystem and cgroups are.
    pub host: HostPaths,
    /// Where temporary layer files go (needs room for a compressed layer).
    pub temp_dir: Option<PathBuf>,
    /// Saves running at once; more wait in `queued`.
    pub max_concurrent_jobs: usize,
    /// Registries spoken to over plain HTTP, besides those a request names.
    pub plain_http: Vec<String>,
    /// How long a finished job stays readable.
    pub job_retention: Duration,
    /// Where frozen cgroups are recorded, so that a restarted agent thaws what a killed one
    /// left frozen; `None`: not recorded.
    pub state_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("host", &self.host)
            .field("temp_dir", &self.temp_dir)
            .field("max_concurrent_jobs", &self.max_concurrent_jobs)
            .field("plain_http", &self.plain_http)
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

/// The agent: its settings, its jobs, its slots.
pub struct NodeAgent {
    config: AgentConfig,
    token_hash: [u8; 32],
    slots: Arc<Semaphore>,
    jobs: Mutex<BTreeMap<String, AgentJob>>,
}

/// One save the agent runs or ran.
struct AgentJob {
    container: ContainerId,
    container_id: String,
    target: String,
    layer_dir: String,
    cgroup: String,
    pause: bool,
    frozen: Arc<AtomicBool>,
    status: watch::Receiver<JobStatus>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    /// When the agent first saw it finished (for the retention).
    finished_at: Option<Instant>,
}

impl AgentJob {
    fn view(&self, id: &str) -> SaveView {
        SaveView {
            id: id.to_owned(),
            container_id: self.container_id.clone(),
            target: self.target.clone(),
            layer_dir: self.layer_dir.clone(),
            cgroup: self.cgroup.clone(),
            pause: self.pause,
            frozen: self.frozen.load(Ordering::SeqCst),
            status: self.status.borrow().clone(),
        }
    }

    fn is_finished(&self) -> bool {
        self.status.borrow().state.is_finished()
    }
}

impl NodeAgent {
    /// An agent with these settings.
    pub fn new(config: AgentConfig) -> Arc<Self> {
        let token_hash = Sha256::digest(config.token.as_bytes()).into();
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent_jobs.max(1))),
            token_hash,
            config,
            jobs: Mutex::default(),
        })
    }

    /// The HTTP API.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/v1/saves", post(create_save))
            .route("/v1/saves/{id}", get(read_save).delete(cancel_save))
            .route("/v1/containers/{id}/usage", get(read_usage))
            .fallback(not_found)
            .layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                require_token,
            ))
            .with_state(Arc::clone(self))
    }

    /// Cancels every running job and waits (at most `grace`) until each has ended, so that no
    /// container stays frozen when the agent stops.
    pub async fn shutdown(&self, grace: Duration) {
        let tasks: Vec<_> = match self.jobs.lock() {
            Ok(mut jobs) => jobs
                .values_mut()
                .filter_map(|job| {
                    job.cancel.cancel();
                    job.task.take()
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("saves still running when the agent stopped");
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Hashes first: the comparison then takes the same time whatever the length given.
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        given.ct_eq(&self.token_hash).into()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<String, AgentJob>>, AgentError> {
        self.jobs
            .lock()
            .map_err(|_| AgentError::Internal("the job table is unusable".into()))
    }

    /// Forgets finished jobs past their retention.
    fn prune(&self, jobs: &mut BTreeMap<String, AgentJob>) {
        let now = Instant::now();
        for job in jobs.values_mut() {
            if job.finished_at.is_none() && job.is_finished() {
                job.finished_at = Some(now);
            }
        }
        let retention = self.config.job_retention;
        jobs.retain(|_, job| {
            job.finished_at
                .is_none_or(|t| now.duration_since(t) < retention)
        });
    }

    /// Starts a save (or answers the job of the same id); `true` when it is new.
    fn start(self: &Arc<Self>, spec: SaveSpec) -> Result<(SaveView, bool), AgentError> {
        let container = ContainerId::parse(&spec.container_id)?;
        for reference in [&spec.base_image, &spec.target] {
            parse_reference(reference).map_err(|e| AgentError::BadRequest(e.to_string()))?;
        }
        let id = match &spec.id {
            Some(id) => {
                let valid = !id.is_empty()
                    && id.len() <= MAX_ID_LEN
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !valid {
                    return Err(AgentError::BadRequest(format!(
                        "a job id is 1 to {MAX_ID_LEN} letters, digits, '-' or '_', not {id:?}"
                    )));
                }
                id.clone()
            }
            None => hex::encode(rand::random::<[u8; 12]>()),
        };
        {
            let mut jobs = self.lock()?;
            self.prune(&mut jobs);
            if let Some(job) = jobs.get(&id) {
                if job.container == container && job.target == spec.target {
                    return Ok((job.view(&id), false));
                }
                return Err(AgentError::Conflict(format!(
                    "job {id} exists already, for another container or image"
                )));
            }
            if let Some((other, _)) = jobs
                .iter()
                .find(|(_, job)| job.container.id == container.id && !job.is_finished())
            {
                return Err(AgentError::Conflict(format!(
                    "a save of container {container} is under way (job {other})"
                )));
            }
            if jobs.len() >= MAX_JOBS {
                return Err(AgentError::Conflict(format!(
                    "the agent holds {MAX_JOBS} jobs already; try again later"
                )));
            }
        }
        // Reading /proc takes a moment, outside the lock.
        let location = locate(&container, &self.config.host)?;
        if spec.pause {
            if let Err(why) = &location.freezer {
                return Err(AgentError::Unprocessable(format!(
                    "container {container} cannot be frozen while it is read: {why}"
                )));
            }
        }
        let (status_tx, status_rx) = watch::channel(JobStatus {
            state: JobState::Queued,
            progress: ByteProgress::default(),
            image: None,
        });
        let cancel = CancellationToken::new();
        let frozen = Arc::new(AtomicBool::new(false));
        let mut job = AgentJob {
            container: container.clone(),
            container_id: spec.container_id.clone(),
            target: spec.target.clone(),
            layer_dir: location.layer_dir.display().to_string(),
            cgroup: location
                .freezer
                .as_ref()
                .map(|f| f.dir().display().to_string())
                .unwrap_or_default(),
            pause: spec.pause,
            frozen: Arc::clone(&frozen),
            status: status_rx,
            cancel: cancel.clone(),
            task: None,
            finished_at: None,
        };
        let mut jobs = self.lock()?;
        // Checked again: another request may have started the same meanwhile.
        if jobs.contains_key(&id)
            || jobs
                .values()
                .any(|j| j.container.id == container.id && !j.is_finished())
        {
            return Err(AgentError::Conflict(format!(
                "a save of container {container} is under way"
            )));
        }
        tracing::info!(
            job.id = %id,
            container.id = %container,
            container.pid = location.pid,
            layer.dir = %location.layer_dir.display(),
            image.target = %spec.target,
            pause = spec.pause,
            "save started"
        );
        let agent = Arc::clone(self);
        let span = tracing::info_span!("agent_save", job.id = %id);
        job.task = Some(tokio::spawn(tracing::Instrument::instrument(
            async move { agent.run(spec, location, status_tx, cancel, frozen).await },
            span,
        )));
        let view = job.view(&id);
        jobs.insert(id, job);
        Ok((view, true))
    }

    /// One save: a slot, then the builder, its status forwarded to the job's watchers.
    async fn run(
        &self,
        spec: SaveSpec,
        location: ContainerLocation,
        status: watch::Sender<JobStatus>,
        cancel: CancellationToken,
        frozen: Arc<AtomicBool>,
    ) {
        let end = |state: JobState| {
            status.send_modify(|s| s.state = state);
        };
        let _slot = tokio::select! {
            slot = Arc::clone(&self.slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(e) => return end(JobState::Failed { reason: format!("internal error: {e}") }),
            },
            () = cancel.cancelled() => return end(JobState::Cancelled),
        };
        let builder = ImageBuilder::new(self.builder_config(&spec));
        let mut request = SaveRequest::new(
            WritableLayer::at(&location.layer_dir),
            spec.base_image.clone(),
            spec.target.clone(),
            spec.saved_by.clone(),
        );
        request.description = spec.description.clone();
        request.labels = spec.labels.clone();
        request.extra_excludes = spec.extra_excludes.clone();
        request.pause = match (&location.freezer, spec.pause) {
            (Ok(freezer), true) => Arc::new(FreezeHook::new(
                freezer.clone(),
                frozen,
                self.config.state_dir.as_deref(),
            )),
            // Without a freezer a paused save was refused when asked for.
            _ => Arc::new(NoPause),
        };
        let job = match builder.start(request) {
            Ok(job) => job,
            Err(e) => {
                return end(JobState::Failed {
                    reason: e.to_string(),
                })
            }
        };
        let mut updates = job.subscribe();
        let mut cancelled = false;
        loop {
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = updates.borrow_and_update().clone();
                    status.send_replace(current);
                }
                () = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    job.cancel();
                }
            }
        }
        let last = updates.borrow().clone();
        let result = job.wait().await;
        let state = match &result {
            Ok(_) => JobState::Done,
            Err(crate::Error::Cancelled) => JobState::Cancelled,
            Err(e) => JobState::Failed {
                reason: e.to_string(),
            },
        };
        match &result {
            Ok(image) => {
                tracing::info!(manifest.digest = %image.manifest_digest, "save done")
            }
            Err(e) => tracing::info!(outcome = %e, "save ended"),
        }
        status.send_replace(JobStatus {
            state,
            progress: last.progress,
            image: result.ok(),
        });
    }

    /// The builder settings of one request: the request's exclusions, size cap, compression
    /// (on at most this machine's cores) and registries, the agent's temporary directory.
    fn builder_config(&self, spec: &SaveSpec) -> BuilderConfig {
        let cores = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1);
        let compression = match spec.compression {
            None => Compression::default(),
            Some(Compression::Gzip {
                level,
                threads,
                block_size,
            }) => Compression::Gzip {
                level,
                threads: threads.clamp(1, cores),
                block_size,
            },
            Some(Compression::Zstd { level, threads }) => Compression::Zstd {
                level,
                threads: threads.min(u32::try_from(cores).unwrap_or(1)),
            },
        };
        let mut registry = spec.registry.clone();
        for host in &self.config.plain_http {
            if !registry.plain_http.contains(host) {
                registry.plain_http.push(host.clone());
            }
        }
        let mut layer = spec.layer.clone();
        layer.excludes = layer.excludes.with(spec.extra_excludes.iter().cloned());
        BuilderConfig {
            registry,
            layer,
            compression,
            temp_dir: self.config.temp_dir.clone(),
            max_concurrent_jobs: 1,
        }
    }

    fn view(&self, id: &str) -> Result<SaveView, AgentError> {
        let mut jobs = self.lock()?;
        self.prune(&mut jobs);
        jobs.get(id)
            .map(|job| job.view(id))
            .ok_or_else(|| no_such_job(id))
    }

    fn cancel(&self, id: &str) -> Result<SaveView, AgentError> {
        let jobs = self.lock()?;
        let job = jobs.get(id).ok_or_else(|| no_such_job(id))?;
        if !job.is_finished() {
            tracing::info!(job.id = %id, "save cancel requested");
            job.cancel.cancel();
        }
        Ok(job.view(id))
    }
}

fn no_such_job(id: &str) -> AgentError {
    AgentError::NotFound(format!(
        "no save job {id} on this agent (it never ran here, ended too long ago, or the agent \
         restarted since)"
    ))
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = Json(ErrorBody {
            status: status.as_u16(),
            message: self.to_string(),
        });
        let mut response = (status, body).into_response();
        if matches!(self, AgentError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

async fn require_token(
    State(agent): State<Arc<NodeAgent>>,
    request: Request,
    next: Next,
) -> Response {
    if agent.authorized(request.headers()) {
        next.run(request).await
    } else {
        AgentError::Unauthorized.into_response()
    }
}

async fn create_save(
    State(agent): State<Arc<NodeAgent>>,
    body: Result<Json<SaveSpec>, JsonRejection>,
) -> Result<(StatusCode, Json<SaveView>), AgentError> {
    let Json(spec) = body.map_err(|e| AgentError::BadRequest(e.body_text()))?;
    let (view, new) = agent.start(spec)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

async fn read_save(
    State(agent): State<Arc<NodeAgent>>,
    Path(id): Path<String>,
) -> Result<Json<SaveView>, AgentError> {
    agent.view(&id).map(Json)
}

async fn cancel_save(
    State(agent): State<Arc<NodeAgent>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<SaveView>), AgentError> {
    agent
        .cancel(&id)
        .map(|view| (StatusCode::ACCEPTED, Json(view)))
}

async fn read_usage(
    State(agent): State<Arc<NodeAgent>>,
    Path(id): Path<String>,
) -> Result<Json<ContainerUsage>, AgentError> {
    let container = ContainerId::parse(&id)?;
    let host = agent.config.host.clone();
    // Reading /proc and the cgroup files blocks.
    tokio::task::spawn_blocking(move || container_usage(&container, &host))
        .await
        .map_err(|e| AgentError::Internal(format!("reading the CPU time failed: {e}")))?
        .map(Json)
}

async fn not_found() -> AgentError {
    AgentError::NotFound(
        "no such endpoint (the API is /v1/saves and /v1/containers/{id}/usage)".into(),
    )
}
