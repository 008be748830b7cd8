//! A server's status: the one place its words are spelled, in each of the three vocabularies the
//! hub speaks (the database's, JupyterHub's `pending`, and the pages').

use std::fmt;

/// Where a server is in its life, as stored in `servers.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerStatus {
    /// Not running; no route, token or client.
    Stopped,
    /// A start is under way (JupyterHub's `pending: "spawn"`).
    Spawning,
    /// Running and routed.
    Running,
    /// A stop is under way (JupyterHub's `pending: "stop"`).
    Stopping,
}

impl ServerStatus {
    /// The word stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Stopped => "stopped",
            ServerStatus::Spawning => "spawn",
            ServerStatus::Running => "running",
            ServerStatus::Stopping => "stop",
        }
    }

    /// The stored word back; `None` for a word this hub never writes.
    pub fn from_db(word: &str) -> Option<Self> {
        [
            ServerStatus::Stopped,
            ServerStatus::Spawning,
            ServerStatus::Running,
            ServerStatus::Stopping,
        ]
        .into_iter()
        .find(|s| s.as_str() == word)
    }

    /// JupyterHub's `pending` field of the server model: the transition under way, if any.
    pub const fn pending(self) -> Option<&'static str> {
        match self {
            ServerStatus::Spawning => Some("spawn"),
            ServerStatus::Stopping => Some("stop"),
            ServerStatus::Stopped | ServerStatus::Running => None,
        }
    }

    /// The pages' word (`running`, `pending`, `stopping`, `stopped`): the CSS class and the key
    /// of the status's label in the message catalogue (`status_{word}`).
    pub const fn shown(self) -> &'static str {
        match self {
            ServerStatus::Running => "running",
            ServerStatus::Spawning => "pending",
            ServerStatus::Stopping => "stopping",
            ServerStatus::Stopped => "stopped",
        }
    }

    /// Anything but stopped: the server holds a row's token, client, maybe a route.
    pub const fn is_active(self) -> bool {
        !matches!(self, ServerStatus::Stopped)
    }

    /// A start or stop is under way.
    pub const fn is_transitioning(self) -> bool {
        matches!(self, ServerStatus::Spawning | ServerStatus::Stopping)
    }
}

impl fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for ServerStatus {
    type Error = String;

    fn try_from(word: String) -> Result<Self, String> {
        ServerStatus::from_db(&word).ok_or_else(|| format!("unknown server status {word:?}"))
    }
}

/// Tests compare a row's status with the stored word.
#[cfg(test)]
impl PartialEq<&str> for ServerStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::ServerStatus;

    #[test]
    fn every_status_reads_back_from_its_stored_word_and_nothing_else_does() {
        for s in [
            ServerStatus::Stopped,
            ServerStatus::Spawning,
            ServerStatus::Running,
            ServerStatus::Stopping,
        ] {
            assert_eq!(ServerStatus::from_db(s.as_str()), Some(s));
        }
        assert_eq!(ServerStatus::from_db("ready"), None);
        assert!(ServerStatus::try_from("check".to_owned()).is_err());
    }
}
