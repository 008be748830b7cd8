//! Saves a running container as a new OCI image — without a container daemon.
//!
//! The builder reads the container's writable layer (the overlay upper directory) itself, so
//! the same code works on a Docker host and, as a node agent, on a Kubernetes node:
//!
//! 1. **Locate** the writable layer: [`docker_container_from_inspect`] (Docker's overlay2
//!    driver) or [`WritableLayer::from_pid`] (any overlay-rooted container, through
//!    `/proc/<pid>/mountinfo`), or [`WritableLayer::at`] for a known path.
//! 2. **Scan and write** an OCI layer tar ([`scan_layer`], [`LayerScan::write_tar`]): overlay
//!    deletion markers become `.wh.<name>` / `.wh..wh..opq` whiteouts; modes, owners, times,
//!    symlinks, hard links, long names and extended attributes are kept; excluded paths
//!    ([`ExcludeRules`], e.g. the work directory, `/tmp`, caches) are left out; a size cap
//!    fails early with [`Error::SizeCapExceeded`].
//! 3. **Compress** (gzip, parallel gzip, or zstd: [`Compression`]) into a temporary file while
//!    hashing the uncompressed (diff_id) and compressed (digest) bytes in the same pass
//!    ([`write_layer_file`]).
//! 4. **Push** with `oci-client`: the base image's manifest and config are fetched
//!    (OCI or Docker schema 2; an index resolves to linux/amd64), the config gets the new
//!    `rootfs.diff_ids` entry, a history entry and labels, the manifest the new layer. Base
//!    layers are never uploaded again: present ones are skipped, others are cross-repository
//!    mounted; only the new layer goes up, in chunks, then the config, then the manifest.
//!
//! # For the hub and the JupyterLab extension
//!
//! ```no_run
//! # async fn demo(inspect_json: &str) -> imagebuilder::Result<()> {
//! use imagebuilder::{docker_container_from_inspect, BuilderConfig, ImageBuilder, SaveRequest};
//!
//! // Once, from the hub's configuration (serde-friendly):
//! let builder = ImageBuilder::new(BuilderConfig::default());
//!
//! // Per click on "Save image":
//! let container = docker_container_from_inspect(inspect_json)?;
//! let mut request = SaveRequest::new(
//!     container.writable_layer(),
//!     container.image.clone(),                   // the base: what the node runs
//!     "127.0.0.1:5000/users/alice/my-env:v1",    // the new image
//!     "alice",
//! );
//! request.description = Some("numpy and my tools".into());
//! let job = builder.start(request)?;             // returns at once
//!
//! // Progress for the API (serialises as {"state": "pushing", "progress": {...}, ...}):
//! let status = job.status();
//! // or: let mut updates = job.subscribe(); updates.changed().await
//! # let _ = status;
//! // job.cancel() stops it; no tag is pushed unless everything succeeded.
//! let saved = job.wait().await?;
//! println!("{}@{}", saved.reference, saved.manifest_digest);
//! # Ok(()) }
//! ```
//!
//! Jobs wait in [`JobState::Queued`] while [`BuilderConfig::max_concurrent_jobs`] others run,
//! then go through `reading` → `compressing` → `pushing` → `done` (or `failed` with a reason
//! for the user, or `cancelled`). The hub keeps the [`SaveJob`] handles (e.g. in a map by job
//! id), records [`SavedImage`] in its image library when done, and decides who may save which
//! node; this crate knows nothing of users' rights or HTTP.

pub mod agent;
mod compress;
mod error;
mod exclude;
mod image;
mod job;
mod layer;
mod progress;
mod registry;
mod source;

pub use compress::{
    write_layer_file, write_layer_file_streaming, Compression, LayerChunk, LayerFile,
};
pub use error::{human_bytes, Error, Result};
pub use exclude::{ExcludeRules, DEFAULT_EXCLUDES, WORK_DIR};
pub use image::{
    extend_config, extend_manifest, manifest_media_type, select_linux_amd64, sha256_digest,
    BaseImage, Descriptor, LayerRecord, SaveMetadata, DOCKER_CONFIG, DOCKER_LAYER_GZIP,
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, LABEL_BASE_DIGEST, LABEL_BASE_IMAGE, LABEL_SAVED_BY,
    OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
pub use job::{
    BuilderConfig, ImageBuilder, JobState, JobStatus, NoPause, PauseHook, SaveJob, SaveRequest,
    SavedImage,
};
pub use layer::{
    scan_layer, LayerOptions, LayerScan, TarSummary, DEFAULT_SIZE_CAP, OPAQUE_MARKER,
    WHITEOUT_PREFIX,
};
pub use progress::{ByteProgress, Signals};
pub use registry::{parse_reference, BlobTransfer, RegistryAuth, RegistryConfig, RegistrySession};
pub use source::{
    docker_container_from_inspect, parse_mountinfo, upper_dir_from_mountinfo, DockerContainer,
    MountInfoEntry, WritableLayer,
};
pub use tokio_util::sync::CancellationToken;
