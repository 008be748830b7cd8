//! The hub's domain: accounts, tokens, groups, servers, OAuth, images, storage pools…, as
//! functions over its context ([`Services`]).
//! Nothing here knows about HTTP; handlers in `api/` and `web/` call into it.

pub mod access;
pub mod accounts;
pub mod admission;
pub mod auth_state;
pub mod billing;
pub mod budgets;
pub mod campus_login;
pub mod clusters;
pub mod compute_nodes;
pub mod dataset_files;
pub mod datasets;
pub mod desktops;
pub mod groups;
pub mod home_page;
pub mod identity;
pub mod images;
pub mod markdown;
pub mod metering;
pub mod names;
pub mod oauth;
pub mod project_archive;
pub mod project_files;
pub mod project_forks;
pub mod project_transfer;
pub mod project_uploads;
pub mod projects;
pub mod quotas;
pub mod release;
pub mod save_image;
pub mod servers;
mod services;
pub mod start_queue;
pub mod storage_pools;
pub mod tokens;
pub mod users;

use crate::db::DbError;
pub use services::Services;

/// What can go wrong in a domain operation; the API maps each variant to a status code.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The input is invalid; the message says what to change.
    #[error("{0}")]
    BadRequest(String),
    /// The named thing does not exist (or the caller may not know that it does).
    #[error("{0}")]
    NotFound(String),
    /// The thing exists already, or is in a state that forbids the operation.
    #[error("{0}")]
    Conflict(String),
    /// The caller is known but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts; try again later.
    #[error("{0}")]
    TooManyRequests(String),
    /// No storage can take the data (every pool full, draining or missing).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The request is larger than the caller may store.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A service the hub depends on (the campus identity provider) could not be reached or
    /// answered nonsense; the message says which and that trying again later may work.
    #[error("{0}")]
    Upstream(String),
    /// The hub failed (a file it could not write, a task that died). The text is for the hub's
    /// log: the API answers a generic 500.
    #[error("{0}")]
    Internal(String),
    /// The backend failed to start or stop a server. The text is for the hub's log: the API
    /// answers a generic 500.
    #[error("{0}")]
    Spawner(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Result of a domain operation.
pub type HubResult<T> = Result<T, HubError>;
