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

    /// The spawn request asks for something this backend cannot give (0 nodes, more memory than
    /// the host has, a GPU on a host without one...). The message says what to change; the hub
    /// answers 400 with it.
    #[error("{0}")]
    Rejected(String),

    /// A Docker Engine API call failed.
    #[error("{context}: {source}")]
    Docker {
        /// What was being done, e.g. `creating container xiji-alice-3f2a-node-1`.
        context: String,
        /// The underlying error.
        #[source]
        source: bollard::errors::Error,
    },

    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kubernetes {
        /// What was being done, e.g. `creating pod xiji-alice-3f2a-node-1`.
        context: String,
        /// The underlying error.
        #[source]
        source: kube::Error,
    },

    /// One node of a cluster failed to start; everything created for the cluster was removed.
    #[error("{node} failed to start: {reason}{}", log_suffix(.log_tail))]
    NodeFailed {
        /// The node, e.g. `node-1`.
        node: String,
        /// Why, e.g. `the container exited with status 2`.
        reason: String,
        /// The end of the node's output (may be empty).
        log_tail: String,
    },

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

    /// The server has no node of that name.
    #[error("no node {node:?}; the nodes are: {}", .nodes.join(", "))]
    NoSuchNode {
        /// The name asked for.
        node: String,
        /// The server's nodes, node-0 first.
        nodes: Vec<String>,
    },

    /// The node is recorded but its instance (container) is gone or stopped.
    #[error("{node} is not running: {reason}")]
    NodeNotRunning {
        /// The node, e.g. `node-1`.
        node: String,
        /// What the backend found, e.g. `its container is gone`.
        reason: String,
    },

    /// The backend cannot do this at all (see [`Capabilities`](crate::Capabilities)).
    #[error("the {backend} backend cannot {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked, e.g. `save a node as an image`.
        what: &'static str,
    },

    /// A running node cannot reach the hub's API at the address it was given (after a hub
    /// restart on another address, say): its server runs but cannot serve a user.
    #[error("{node} cannot reach the hub at {url}: {reason}")]
    HubUnreachable {
        /// The node, e.g. `node-1`.
        node: String,
        /// The hub API URL the node was started with.
        url: String,
        /// What the node saw.
        reason: String,
    },
}

fn log_suffix(log_tail: &str) -> String {
    if log_tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its output ends with:\n{}", log_tail.trim_end())
    }
}

impl SpawnerError {
    pub(crate) fn docker(context: impl Into<String>, source: bollard::errors::Error) -> Self {
        Self::Docker {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn kube(context: impl Into<String>, source: kube::Error) -> Self {
        Self::Kubernetes {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
