//! Role-based access control, as JupyterHub 5.5.1: scope definitions, default roles,
//! expansion of raw scopes into a [`ScopeSet`], filter-aware intersection, and access
//! decisions. Pure: no HTTP, no SQL, no I/O.
//!
//! How the hub uses it:
//!
//! - **Caller's scopes.** A user's (or service's) scopes are
//!   `catalog.expand(&raw_role_scopes, &Owner::user(name))` (roles of the user and of their
//!   groups), plus shares. A token's are [`ScopeCatalog::token_scopes`] with that set as the
//!   owner's scopes and the token's [`Client`] (server or service OAuth client, else
//!   [`Client::Hub`]); log `discarded` once as a warning.
//! - **Token creation.** Validate with `catalog.check_scopes_exist(&scopes, Some("token"))`,
//!   then [`ScopeCatalog::check_token_scopes`]; either error → 400 with its text. No scopes
//!   and no roles means the `token` role, i.e. `["inherit"]`.
//! - **Server token at spawn.** [`server_token_request`], then
//!   [`ScopeCatalog::resolve_requested_scopes`] against the user's raw role scopes plus
//!   `inherit`; store `allowed`.
//! - **OAuth authorize.** Requested scopes plus [`IDENTIFY_RAW_SCOPES`] plus the client's
//!   [`access_scopes`], resolved against the user's raw role scopes plus `inherit` and those
//!   same required scopes; the token stores `allowed`.
//! - **Handlers.** `check(&scopes, &["read:users", "read:users:name"], &Resource::User{..})`
//!   → [`Access`]: 200 / 404 [`NOT_FOUND_MESSAGE`] / 403 with the message.
//! - **Lists.** [`list_filter`] → all, or names/groups to push into SQL; an error is a 403.
//! - **Models.** [`user_model_keys`], [`group_model_keys`], [`service_model_keys`],
//!   [`server_state_visible`] say which keys to keep.
//! - **`GET /hub/api/user`.** `scopes` is `set.to_sorted_strings()` of the caller's set; the
//!   model itself is built from that set plus [`identify_scopes`] of the caller.

mod access;
mod definitions;
mod expand;
mod intersect;
mod roles;
mod scope_set;

pub use access::{
    check, group_model_keys, list_filter, server_state_visible, service_model_keys,
    user_model_keys, Access, Forbidden, ListFilter, ListKind, Resource, NOT_FOUND_MESSAGE,
};
pub use definitions::{BuiltinScope, CustomScopeDefinition, ScopeCatalog, BUILTIN_SCOPES};
pub use expand::{
    access_scopes, has_inherit, identify_scopes, Client, Entity, Owner, TokenScopes,
    IDENTIFY_RAW_SCOPES, SELF_SCOPES,
};
pub use intersect::{intersect, server_token_request, ResolvedScopes};
pub use roles::{
    default_role, validate_role, validate_role_name, DefaultRole, ADMIN_ROLE_SCOPES, DEFAULT_ROLES,
    SERVER_ROLE_SCOPES,
};
pub use scope_set::{FilterKind, Filters, Grant, ScopeSet};

/// Invalid scopes, roles or scope requests. Messages follow JupyterHub's, so the API can answer
/// 400 with the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RbacError {
    /// A scope name that is neither built in nor a configured custom scope; `context` is
    /// `for <who>` or empty.
    #[error("Scope '{scope}' {context} does not exist")]
    UnknownScope {
        /// The whole scope string.
        scope: String,
        /// `for token`, `for role <name>`, or empty.
        context: String,
    },
    /// The draft scope `all`, long since renamed `inherit`.
    #[error("Draft scope 'all' is now called 'inherit'")]
    DraftScopeAll,
    /// A filter other than `!user=`, `!server=`, `!group=`, `!service=`, `!user`, `!server`
    /// or `!service`.
    #[error("Scope filter {filter} '!{filter}' in scope '{scope}' {context} does not exist")]
    UnknownFilter {
        /// The filter after `!`.
        filter: String,
        /// The whole scope string.
        scope: String,
        /// `for token`, `for role <name>`, or empty.
        context: String,
    },
    /// A filter without a value, e.g. `read:users!user=`.
    #[error("Empty string is not a valid filter: {scope}")]
    EmptyFilterValue {
        /// The whole scope string.
        scope: String,
    },
    /// A role name that does not match JupyterHub's pattern.
    #[error(
        "Invalid role name: '{name}'. Role names must:\n - be 3-255 characters\n - contain only \
         lowercase ascii letters, numbers, and URL unreserved special characters '-.~_'\n - \
         start with a letter\n - end with letter or number\n"
    )]
    InvalidRoleName {
        /// The rejected name.
        name: String,
    },
    /// Configuration that changes the `admin` role's scopes.
    #[error("Cannot override admin role admin.scopes = {scopes}")]
    AdminRoleOverride {
        /// The configured scopes, as a Python-style list.
        scopes: String,
    },
    /// A custom scope name outside `custom:[a-z0-9][a-z0-9_-*:]+[a-z0-9_*]`.
    #[error(
        "Invalid scope name: '{scope}'. Custom scopes must start with `custom:` and contain only \
         lowercase ascii letters, numbers, hyphen, underscore, colon, and asterisk; the part \
         after `custom:` must start with a letter or number and not end with a hyphen or colon"
    )]
    InvalidCustomScopeName {
        /// The rejected name.
        scope: String,
    },
    /// A custom scope with the name of a built-in scope.
    #[error("Cannot redefine scope {scope}")]
    ScopeRedefined {
        /// The scope name.
        scope: String,
    },
    /// A custom scope's subscope that is not a custom scope defined alongside it.
    #[error("subscope {subscope} of {scope} must be a custom scope defined with it")]
    InvalidCustomSubscope {
        /// The custom scope.
        scope: String,
        /// The offending subscope.
        subscope: String,
    },
    /// Scopes requested for a token that its owner does not hold.
    #[error("Not assigning requested scopes {} not held by {owner}", scopes.join(","))]
    ScopesNotHeld {
        /// The expanded scopes not held, sorted.
        scopes: Vec<String>,
        /// `User <name>` or `Service <name>`.
        owner: String,
    },
}
