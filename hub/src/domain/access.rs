//! Who may do what to a user or one of their servers: JupyterHub's scope checks on a resource
//! that has an owner, with the owner's groups read only when the caller's filters need them.
//! A filtered scope that misses is a 404 (the resource's existence is not revealed); holding
//! none of the scopes is a 403.

use crate::db::Store;
use crate::domain::identity::Caller;
use crate::domain::{HubError, HubResult};
use crate::rbac::{self, Access, Resource};

/// The groups of `user` as the caller's scope filters need them (none when no `!group=` filter
/// could match).
/// Whether these scopes administer the installation (storage and compute, quotas, prices and
/// budgets, release policies, the ledger): unfiltered `admin:users`, which the `admin` role has.
pub fn administers_installation(scopes: &crate::rbac::ScopeSet) -> bool {
    scopes.get("admin:users").is_some_and(|g| g.is_unfiltered())
}

pub async fn groups_for(store: &Store, caller: &Caller, user: &str) -> HubResult<Vec<String>> {
    if caller.scopes.needs_groups() {
        Ok(store.groups_of(user).await?)
    } else {
        Ok(Vec::new())
    }
}

/// Checks that the caller holds one of `any_of` on the user `user`.
pub async fn check_user(
    store: &Store,
    caller: &Caller,
    any_of: &[&str],
    user: &str,
) -> HubResult<()> {
    let groups = groups_for(store, caller, user).await?;
    decide(
        caller,
        any_of,
        &Resource::User {
            name: user,
            groups: &groups,
        },
    )
}

/// Checks that the caller holds one of `any_of` on the server `server` (`""`: the default one)
/// of `user`.
pub async fn check_server(
    store: &Store,
    caller: &Caller,
    any_of: &[&str],
    user: &str,
    server: &str,
) -> HubResult<()> {
    let groups = groups_for(store, caller, user).await?;
    decide(
        caller,
        any_of,
        &Resource::Server {
            user,
            server_name: server,
            user_groups: &groups,
        },
    )
}

fn decide(caller: &Caller, any_of: &[&str], resource: &Resource<'_>) -> HubResult<()> {
    match rbac::check(&caller.scopes, any_of, resource) {
        Access::Allowed => Ok(()),
        Access::NotFound => Err(HubError::NotFound(rbac::NOT_FOUND_MESSAGE.into())),
        Access::Forbidden { message } => Err(HubError::Forbidden(message)),
    }
}

/// A user acting on their own things and on what others share with them (datasets,
/// projects), and whether they administer all of them.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The user.
    pub user: crate::db::UserRow,
    /// Administrators read and change everything of this kind.
    pub admin: bool,
}
