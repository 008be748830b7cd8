use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting, watching or stopping a server.
#[derive(Debug, thiserror::Error)]
pub enum SpawnerError {
    /// The backend's configuration cannot work (e.g. an empty single-user command).
    #[error("invalid spawner configuration: {0}")]
    Config(String),

    /// The spawn request cannot be served as given (e.g. a user name that is not a safe
    /// directory name).
    #[error("invalid spawn request: {0}")]
    InvalidSpec(String),

    /// The state blob is not one this backend wrote (missing or mistyped fields).
    #[error("invalid spawner state: {0}")]
    InvalidState(String),

    /// A filesystem or socket operation needed for the spawn failed (working directory, log
    /// file, free port).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. `creating working directory /srv/xiji/alice`.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The single-user command could not be launched (not found, not executable).
    #[error("cannot launch `{command}`: {source}")]
    Launch {
        /// The program that was to be executed.
        command: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server exited while starting; the end of its log is attached.
    #[error("the server exited during start-up with status {status}; log {log_file}:\n{log_tail}")]
    ExitedEarly {
        /// Exit status (128 + signal number if killed by a signal).
        status: i32,
        /// The server's log file.
        log_file: PathBuf,
        /// The last lines of that log.
        log_tail: String,
    },

    /// The server's process exited before it answered HTTP.
    #[error("the server exited with status {status} before answering HTTP")]
    ExitedBeforeReady {
        /// Exit status as reported by `poll` (0 if unknown).
        status: i32,
    },

    /// Sending a signal to the server failed for a reason other than its absence.
    #[error("cannot signal process group {pgid}: {source}")]
    Signal {
        /// The process group that was signalled.
        pgid: u32,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server's processes were still alive after SIGKILL.
    #[error("process group {pgid} is still alive after SIGKILL")]
    StopTimeout {
        /// The process group that would not die.
        pgid: u32,
    },

    /// A readiness URL that is not `http://host[:port]/path`.
    #[error("invalid server URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// The server did not answer HTTP with a status below 500 within the timeout.
    #[error("server at {url} did not respond within {timeout:?} (last error: {last_error})")]
    HttpTimeout {
        /// The URL that was polled.
        url: String,
        /// The overall timeout.
        timeout: Duration,
        /// The last connection error or 5xx status seen.
        last_error: String,
    },

    /// Creating the Python environment failed (`python -m venv` or `pip install`).
    #[error("cannot prepare the Python environment at {venv} ({step}): {message}")]
    PythonEnv {
        /// The virtualenv directory.
        venv: PathBuf,
        /// The step that failed, e.g. `pip install`.
        step: String,
        /// What went wrong, with the end of the tool's output.
        message: String,
    },
}

impl SpawnerError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
