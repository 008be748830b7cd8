//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can stop a save. The `Display` text is meant for the person who asked for
/// the save (the hub shows it as the job's failure reason); it never carries credentials.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `docker inspect` output could not be used to find the writable layer.
    #[error("cannot find the container's writable layer in `docker inspect` output: {0}")]
    DockerInspect(String),

    /// `/proc/<pid>/mountinfo` has no overlay mount at the container's root, or it is malformed.
    #[error("cannot find the container's writable layer in its mountinfo: {0}")]
    MountInfo(String),

    /// The writable layer directory is missing or not a directory.
    #[error("the container's writable layer {path} is not a readable directory: {source}")]
    UpperDir {
        /// The directory that was expected.
        path: PathBuf,
        /// Why it could not be used.
        source: std::io::Error,
    },

    /// The overlay mount uses a feature whose upper directory alone does not describe the
    /// changes (metadata-only copy-up, redirected directories); saving it would produce a wrong
    /// image.
    #[error("{path}: the overlay mount uses {feature}, which this image builder cannot save")]
    UnsupportedOverlay {
        /// The path inside the container.
        path: String,
        /// The overlay feature (`metacopy`, `redirect_dir`).
        feature: &'static str,
    },

    /// The changes are larger than the configured cap.
    #[error(
        "the changes to save are {}, over the {} limit; the largest are: {largest}. \
         Move large data to the work directory or a dataset, or delete it, and save again",
        human_bytes(*.size), human_bytes(*.limit)
    )]
    SizeCapExceeded {
        /// Bytes of file content found so far.
        size: u64,
        /// The configured cap.
        limit: u64,
        /// The largest files, for the message (`/path (1.2 GiB), ...`).
        largest: String,
    },

    /// Reading the writable layer or writing the temporary layer file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path when there is one.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },

    /// An image reference (`registry/repository:tag`) could not be parsed.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The base image's manifest or config is not something this builder understands.
    #[error("the base image {reference} cannot be extended: {reason}")]
    UnsupportedBaseImage {
        /// The base image.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The registry refused a request or could not be reached.
    #[error("registry error while {action}: {message}")]
    Registry {
        /// What the builder was doing (`fetching the base image's manifest`, …).
        action: String,
        /// The registry's or the transport's message.
        message: String,
    },

    /// The pause hook could not pause or resume the container.
    #[error("cannot {action} the container: {message}")]
    Pause {
        /// `pause` or `resume`.
        action: &'static str,
        /// The hook's message.
        message: String,
    },

    /// A save run by a node agent failed there (the agent's reason, written for the user), or
    /// the agent could not be asked.
    #[error("{0}")]
    Agent(String),

    /// The job was cancelled; nothing was tagged in the registry.
    #[error("the save was cancelled")]
    Cancelled,

    /// A background task panicked or was aborted.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// A registry error.
    pub(crate) fn registry(action: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Registry {
            action: action.into(),
            message: err.to_string(),
        }
    }
}

/// A crate-wide result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `1.5 GiB`, `20.0 MiB`, `512 B`: sizes in messages.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
