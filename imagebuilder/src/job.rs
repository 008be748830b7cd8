//! Saves as background jobs: states, byte progress, cancellation, the optional pause.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::compress::{is_upload_stopped, write_layer_file_streaming, Compression, LayerFile};
use crate::error::{Error, Result};
use crate::image::{extend_config, extend_manifest, sha256_digest, LayerRecord, SaveMetadata};
use crate::layer::{scan_layer, LayerOptions};
use crate::progress::{ByteProgress, Signals};
use crate::registry::{parse_reference, BlobTransfer, RegistryConfig, RegistrySession, CHUNK_SIZE};
use crate::source::WritableLayer;

/// Pauses the container while its writable layer is read, for a consistent snapshot (the
/// hub implements it with `docker pause` or the cgroup freezer). Resume is always called
/// after a successful pause, whatever happens next.
#[async_trait]
pub trait PauseHook: Send + Sync {
    /// Freezes the container's processes.
    async fn pause(&self) -> std::result::Result<(), String>;
    /// Thaws them.
    async fn resume(&self) -> std::result::Result<(), String>;
}

/// The default: the container keeps running while it is read (files written meanwhile may be
/// caught half-way, as with `docker commit --pause=false`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPause;

#[async_trait]
impl PauseHook for NoPause {
    async fn pause(&self) -> std::result::Result<(), String> {
        Ok(())
    }
    async fn resume(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Builder-wide settings (from the hub's configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuilderConfig {
    /// Registry hosts, credentials, plain HTTP.
    pub registry: RegistryConfig,
    /// Exclusions and size cap.
    pub layer: LayerOptions,
    /// Layer compression.
    pub compression: Compression,
    /// Where temporary layer files go (default: the system's temporary directory). It needs
    /// room for the compressed layer.
    pub temp_dir: Option<PathBuf>,
    /// Saves running at once; more wait in `queued`. Default 1.
    pub max_concurrent_jobs: usize,
}

impl Default for BuilderConfig {
    fn default() -> Self {
        Self {
            registry: RegistryConfig::default(),
            layer: LayerOptions::default(),
            compression: Compression::default(),
            temp_dir: None,
            max_concurrent_jobs: 1,
        }
    }
}

/// One save: which container, onto which base, to which name.
#[derive(Clone)]
pub struct SaveRequest {
    /// The container's writable layer.
    pub source: WritableLayer,
    /// The image the container runs (`registry/repo:tag` or `…@sha256:…`), pulled for its
    /// manifest and config.
    pub base_image: String,
    /// The new image, `registry/repo:tag`, on any registry the builder can push to.
    pub target_image: String,
    /// The user saving it (history entry, `org.xiji.saved-by`).
    pub saved_by: String,
    /// A description (history comment, `org.opencontainers.image.description`).
    pub description: Option<String>,
    /// Extra labels.
    pub labels: BTreeMap<String, String>,
    /// Paths to exclude besides the configured ones (e.g. this node's dataset mounts).
    pub extra_excludes: Vec<String>,
    /// Pause while reading (default: no pause).
    pub pause: Arc<dyn PauseHook>,
}

impl SaveRequest {
    /// A request with no description, labels, extra exclusions or pause.
    pub fn new(
        source: WritableLayer,
        base_image: impl Into<String>,
        target_image: impl Into<String>,
        saved_by: impl Into<String>,
    ) -> Self {
        Self {
            source,
            base_image: base_image.into(),
            target_image: target_image.into(),
            saved_by: saved_by.into(),
            description: None,
            labels: BTreeMap::new(),
            extra_excludes: Vec::new(),
            pause: Arc::new(NoPause),
        }
    }
}

impl std::fmt::Debug for SaveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaveRequest")
            .field("source", &self.source)
            .field("base_image", &self.base_image)
            .field("target_image", &self.target_image)
            .field("saved_by", &self.saved_by)
            .finish_non_exhaustive()
    }
}

/// Where a job is. Serialises as `{"state": "pushing"}`, `{"state": "failed", "reason": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a free slot.
    Queued,
    /// Fetching the base image and scanning the writable layer.
    Reading,
    /// Writing the compressed layer.
    Compressing,
    /// Uploading to the registry.
    Pushing,
    /// The image is in the registry.
    Done,
    /// Stopped by an error; no manifest was pushed.
    Failed {
        /// For the user.
        reason: String,
    },
    /// Stopped on request; no manifest was pushed.
    Cancelled,
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed { .. } | JobState::Cancelled
        )
    }
}

/// A job's state and progress, as published to watchers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The state.
    #[serde(flatten)]
    pub state: JobState,
    /// Byte counters.
    pub progress: ByteProgress,
    /// The result, once done.
    pub image: Option<SavedImage>,
}

/// What was pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedImage {
    /// The new image's reference, as requested.
    pub reference: String,
    /// `sha256:` of the manifest: `reference@digest` pins it.
    pub manifest_digest: String,
    /// The manifest's media type.
    pub manifest_media_type: String,
    /// `sha256:` of the config (the image id Docker shows).
    pub config_digest: String,
    /// The new layer's compressed digest.
    pub layer_digest: String,
    /// The new layer's uncompressed digest.
    pub layer_diff_id: String,
    /// Compressed size of the new layer.
    pub layer_size: u64,
    /// Uncompressed size of the new layer.
    pub layer_uncompressed_size: u64,
    /// Files, directories, links and whiteouts in the new layer.
    pub layer_entries: u64,
    /// Container paths that could not be saved (sockets, `.wh.*` names).
    pub skipped_paths: Vec<String>,
    /// Base layers already in the target repository.
    pub base_layers_present: usize,
    /// Base layers cross-repository mounted.
    pub base_layers_mounted: usize,
    /// Base layers downloaded and uploaded again.
    pub base_layers_copied: usize,
    /// Wall time of the whole save, in milliseconds.
    pub duration_ms: u64,
}

/// Starts saves. Cheap to clone; clones share the concurrency limit.
#[derive(Clone)]
pub struct ImageBuilder {
    config: Arc<BuilderConfig>,
    slots: Arc<Semaphore>,
}

impl ImageBuilder {
    /// A builder with these settings.
    pub fn new(config: BuilderConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.max_concurrent_jobs.max(1)));
        Self {
            config: Arc::new(config),
            slots,
        }
    }

    /// The settings.
    pub fn config(&self) -> &BuilderConfig {
        &self.config
    }

    /// Starts a save in the background (on the current Tokio runtime) and returns its handle.
    /// The reference syntax is checked at once; everything else is reported by the job.
    pub fn start(&self, request: SaveRequest) -> Result<SaveJob> {
        parse_reference(&request.base_image)?;
        parse_reference(&request.target_image)?;
        let cancel = CancellationToken::new();
        let signals = Signals::with_cancel(cancel.clone());
        let (status_tx, status_rx) = watch::channel(JobStatus {
            state: JobState::Queued,
            progress: ByteProgress::default(),
            image: None,
        });
        let status_tx = Arc::new(status_tx);
        let builder = self.clone();
        let span = tracing::info_span!(
            "save_image",
            image.target = %request.target_image,
            image.base = %request.base_image,
            user.name = %request.saved_by
        );
        let task = {
            let signals = signals.clone();
            let status_tx = Arc::clone(&status_tx);
            async move {
                let result = builder.run(request, &signals, &status_tx).await;
                let final_state = match &result {
                    Ok(_) => JobState::Done,
                    Err(Error::Cancelled) => JobState::Cancelled,
                    Err(e) => JobState::Failed {
                        reason: e.to_string(),
                    },
                };
                match &result {
                    Ok(image) => tracing::info!(
                        manifest.digest = %image.manifest_digest,
                        layer.size = image.layer_size,
                        duration_ms = image.duration_ms,
                        "image saved"
                    ),
                    Err(Error::Cancelled) => tracing::info!("image save cancelled"),
                    Err(e) => tracing::warn!(error = %e, "image save failed"),
                }
                let image = result.as_ref().ok().cloned();
                status_tx.send_modify(|s| {
                    s.state = final_state;
                    s.progress = signals.snapshot();
                    s.image = image;
                });
                result
            }
        };
        let handle = tokio::spawn(task.instrument(span));
        Ok(SaveJob {
            status: status_rx,
            cancel,
            handle: Some(handle),
        })
    }

    async fn run(
        &self,
        request: SaveRequest,
        signals: &Signals,
        status: &watch::Sender<JobStatus>,
    ) -> Result<SavedImage> {
        let _slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.map_err(|e| Error::Internal(e.to_string()))?,
            () = signals.cancel_token().cancelled() => return Err(Error::Cancelled),
        };
        let started = Instant::now();
        // Publish the counters while the work runs.
        let publisher = {
            let signals = signals.clone();
            let status = status.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let progress = signals.snapshot();
                    status.send_if_modified(|s| {
                        let changed = s.progress != progress;
                        s.progress = progress;
                        changed
                    });
                }
            }
        };
        tokio::select! {
            result = self.save(request, signals, status, started) => result,
            () = publisher => Err(Error::Internal("the progress publisher stopped".into())),
        }
    }

    async fn save(
        &self,
        request: SaveRequest,
        signals: &Signals,
        status: &watch::Sender<JobStatus>,
        started: Instant,
    ) -> Result<SavedImage> {
        let set_state = |state: JobState| {
            status.send_modify(|s| {
                s.state = state;
                s.progress = signals.snapshot();
            });
        };
        let base_ref = parse_reference(&request.base_image)?;
        let target_ref = parse_reference(&request.target_image)?;
        let registry = RegistrySession::new(&self.config.registry, &[&base_ref, &target_ref])?;

        set_state(JobState::Reading);
        // The base first: a registry that is down or a missing base fails in a second, before
        // minutes of compression.
        let base = cancellable(signals, registry.fetch_base(&base_ref)).await?;
        cancellable(
            signals,
            registry.check_target(&target_ref, &base.manifest_digest),
        )
        .await?;

        let mut layer_options = self.config.layer.clone();
        layer_options.excludes = layer_options.excludes.with(request.extra_excludes.clone());
        let temp_dir = self
            .config
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let compression = self.config.compression;

        request
            .pause
            .pause()
            .await
            .map_err(|message| Error::Pause {
                action: "pause",
                message,
            })?;
        // Three things at once: the layer is written (a blocking thread) while its compressed
        // bytes are uploaded as they come, and the base layers are checked and mounted.
        let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel(4);
        let compress = {
            let upper = request.source.upper_dir.clone();
            let signals = signals.clone();
            let status = status.clone();
            tokio::task::spawn_blocking(move || -> Result<_> {
                let scan = scan_layer(&upper, &layer_options, &signals)?;
                status.send_modify(|s| {
                    s.state = JobState::Compressing;
                    s.progress = signals.snapshot();
                });
                let skipped = scan.skipped().to_vec();
                let file = write_layer_file_streaming(
                    &scan,
                    &compression,
                    &temp_dir,
                    &signals,
                    chunk_tx,
                    CHUNK_SIZE,
                )?;
                signals.set_push_total(file.size);
                status.send_modify(|s| {
                    s.state = JobState::Pushing;
                    s.progress = signals.snapshot();
                });
                Ok((file, skipped))
            })
        };
        let compress_then_resume = async {
            let written = compress
                .await
                .map_err(|e| Error::Internal(format!("the layer writer stopped: {e}")))
                .and_then(|r| r);
            let resumed = request
                .pause
                .resume()
                .await
                .map_err(|message| Error::Pause {
                    action: "resume",
                    message,
                });
            (written, resumed)
        };
        let upload = registry.push_layer_stream(&target_ref, chunk_rx, signals);
        let base_layers = registry.ensure_base_layers(&base_ref, &base.layers, &target_ref);
        let ((written, resumed), uploaded, base_layers) =
            tokio::join!(compress_then_resume, upload, base_layers);
        if signals.is_cancelled() {
            return Err(Error::Cancelled);
        }
        // Report the cause: when the upload failed, the writer only saw it hang up.
        let (layer, skipped): (LayerFile, Vec<String>) = match (written, &uploaded) {
            (Err(e), Err(_)) if is_upload_stopped(&e) => return Err(uploaded.err().unwrap_or(e)),
            (written, _) => written?,
        };
        let (pushed_digest, pushed_size) = uploaded?;
        let transfers = base_layers?;
        resumed?;
        if pushed_digest != layer.digest || pushed_size != layer.size {
            return Err(Error::Internal(format!(
                "uploaded {pushed_digest} ({pushed_size} bytes) but wrote {} ({} bytes)",
                layer.digest, layer.size
            )));
        }
        tracing::info!(
            layer.size = layer.size,
            layer.uncompressed_size = layer.uncompressed_size,
            layer.entries = layer.tar.entries,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "new layer written and uploaded"
        );
        set_state(JobState::Pushing);

        let record = LayerRecord {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
        };
        let meta = SaveMetadata {
            created: Utc::now(),
            saved_by: request.saved_by.clone(),
            comment: request.description.clone(),
            labels: request.labels.clone(),
        };
        let config = extend_config(&base, &record, &meta)?;
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| Error::Internal(format!("cannot serialise the config: {e}")))?;
        let config_digest = sha256_digest(&config_bytes);
        let config_size = config_bytes.len() as u64;
        cancellable(
            signals,
            registry.push_blob(&target_ref, config_bytes, &config_digest),
        )
        .await?;
        let (manifest, manifest_media_type) =
            extend_manifest(&base, &config_digest, config_size, &record, &compression)?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| Error::Internal(format!("cannot serialise the manifest: {e}")))?;
        let manifest_digest = sha256_digest(&manifest_bytes);
        // The last point of no return: nothing is tagged before this.
        if signals.is_cancelled() {
            return Err(Error::Cancelled);
        }
        registry
            .push_manifest(&target_ref, manifest_bytes, &manifest_media_type)
            .await?;

        let count = |kind: BlobTransfer| transfers.iter().filter(|t| **t == kind).count();
        Ok(SavedImage {
            reference: request.target_image.clone(),
            manifest_digest,
            manifest_media_type,
            config_digest,
            layer_digest: layer.digest.clone(),
            layer_diff_id: layer.diff_id.clone(),
            layer_size: layer.size,
            layer_uncompressed_size: layer.uncompressed_size,
            layer_entries: layer.tar.entries,
            skipped_paths: skipped,
            base_layers_present: count(BlobTransfer::Present),
            base_layers_mounted: count(BlobTransfer::Mounted),
            base_layers_copied: count(BlobTransfer::Copied),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Runs `future` unless the job is cancelled first.
async fn cancellable<T>(
    signals: &Signals,
    future: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        result = future => result,
        () = signals.cancel_token().cancelled() => Err(Error::Cancelled),
    }
}

/// A running (or finished) save.
pub struct SaveJob {
    status: watch::Receiver<JobStatus>,
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<SavedImage>>>,
}

impl SaveJob {
    /// A job whose work is done by `handle` (e.g. a node agent followed over HTTP), which
    /// publishes to `status` and stops when `cancel` fires.
    pub(crate) fn from_parts(
        status: watch::Receiver<JobStatus>,
        cancel: CancellationToken,
        handle: JoinHandle<Result<SavedImage>>,
    ) -> Self {
        Self {
            status,
            cancel,
            handle: Some(handle),
        }
    }

    /// The current state and progress.
    pub fn status(&self) -> JobStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every state change and progress update (every 200 ms at most).
    pub fn subscribe(&self) -> watch::Receiver<JobStatus> {
        self.status.clone()
    }

    /// Asks the job to stop. Between files and between upload chunks the job notices, removes
    /// its temporary file and ends `cancelled`; the image's tag is never pushed then. Blobs
    /// already uploaded stay in the registry unreferenced until its garbage collection.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// A token that cancels this job (to wire to a hub-wide shutdown, for example).
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Waits for the end and returns the result.
    pub async fn wait(mut self) -> Result<SavedImage> {
        match self.handle.take() {
            Some(handle) => handle
                .await
                .map_err(|e| Error::Internal(format!("the save task ended abnormally: {e}")))?,
            None => Err(Error::Internal("the job was already awaited".into())),
        }
    }
}
