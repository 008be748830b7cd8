//! Users: creation (one or many, all or none), renaming and the other changes an administrator
//! makes, deletion (after stopping the user's servers), and activity reports. Every change that
//! affects who may do what forgets the cached callers.

use std::sync::Arc;

use crate::clock::{self, Micros};
use crate::db::{AccountRole, DbError, ServerStatus, UserRow, UserUpdate};
use crate::domain::{accounts, names, servers, HubError, HubResult, Services};

/// Looks a user up by name, with JupyterHub's 404 message.
pub async fn user_or_404(hub: &Services, name: &str) -> HubResult<UserRow> {
    hub.store
        .user(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}

/// Creates one user (`name` normalised); 409 if it exists.
pub async fn create_one(hub: &Services, name: &str, admin: bool) -> HubResult<UserRow> {
    let name = names::normalize_user(name);
    names::check_name("user", &name)?;
    let row = hub
        .store
        .create_user(&name, admin, clock::now())
        .await
        .map_err(|e| match e {
            DbError::Conflict => HubError::Conflict(format!("User {name} already exists")),
            other => other.into(),
        })?;
    hub.invalidate_auth();
    tracing::info!(user.name = %row.name, admin, "user created");
    Ok(row)
}

/// JupyterHub's bulk creation: the names are normalised and de-duplicated, any invalid one is a
/// 400, names that exist are skipped (409 if all exist), the rest are created in one transaction.
pub async fn create_many(
    hub: &Services,
    requested: &[String],
    admin: bool,
) -> HubResult<Vec<UserRow>> {
    let mut wanted: Vec<String> = Vec::new();
    let mut invalid = Vec::new();
    for name in requested {
        let name = names::normalize_user(name);
        if names::check_name("user", &name).is_err() {
            invalid.push(name);
        } else if !wanted.contains(&name) {
            wanted.push(name);
        }
    }
    if !invalid.is_empty() {
        return Err(HubError::BadRequest(format!(
            "Invalid usernames: {invalid:?}"
        )));
    }
    if wanted.is_empty() {
        return Err(HubError::BadRequest(
            "Must specify at least one user to create".into(),
        ));
    }
    let mut to_create = Vec::new();
    for name in &wanted {
        if hub.store.user(name).await?.is_none() {
            to_create.push(name.clone());
        }
    }
    if to_create.is_empty() {
        return Err(HubError::Conflict(format!(
            "All {} users already exist",
            wanted.len()
        )));
    }
    let rows = hub
        .store
        .create_users(&to_create, admin, clock::now())
        .await
        .map_err(|e| match e {
            DbError::Conflict => {
                HubError::Conflict("A user was created concurrently; retry".into())
            }
            other => other.into(),
        })?;
    hub.invalidate_auth();
    tracing::info!(users = rows.len(), admin, "users created");
    Ok(rows)
}

/// What an administrator changes of a user; `None` keeps it.
#[derive(Debug, Default)]
pub struct UserChange {
    /// A new name (normalised here); only while every server of the user is stopped.
    pub name: Option<String>,
    /// JupyterHub's admin flag.
    pub admin: Option<bool>,
    /// Xiji's account role.
    pub account_role: Option<AccountRole>,
    /// A new local password.
    pub password: Option<String>,
}

/// Applies a change to a user in one transaction and returns the user as it is now.
pub async fn change(hub: &Services, user: &UserRow, change: UserChange) -> HubResult<UserRow> {
    let mut update = UserUpdate {
        admin: change.admin,
        account_role: change.account_role,
        ..UserUpdate::default()
    };
    if let Some(new_name) = change.name {
        let new_name = names::normalize_user(&new_name);
        names::check_name("user", &new_name)?;
        if new_name != user.name {
            if hub.store.user(&new_name).await?.is_some() {
                return Err(HubError::BadRequest(format!(
                    "User {new_name} already exists, username must be unique"
                )));
            }
            let servers = hub
                .store
                .servers_of(&[user.id])
                .await?
                .remove(&user.id)
                .unwrap_or_default();
            if servers.iter().any(|s| s.status != ServerStatus::Stopped) {
                return Err(HubError::BadRequest(
                    "Stop the user's servers before renaming them".into(),
                ));
            }
        }
        update.name = Some(new_name);
    }
    if let Some(password) = change.password {
        update.password_hash = Some(Some(accounts::hash_password(&password)?));
    }
    hub.store
        .update_user(user.id, &update)
        .await
        .map_err(|e| match e {
            DbError::Conflict => HubError::BadRequest("That user name is taken".into()),
            other => other.into(),
        })?;
    hub.invalidate_auth();
    hub.store
        .user_by_id(user.id)
        .await?
        .ok_or_else(|| HubError::NotFound("User vanished".into()))
}

/// Deletes a user after stopping their running servers; 400 for oneself or while a server is
/// starting or stopping.
pub async fn delete(hub: &Arc<Services>, user: &UserRow, by: Option<&UserRow>) -> HubResult<()> {
    if by.is_some_and(|u| u.id == user.id) {
        return Err(HubError::BadRequest("Cannot delete yourself!".into()));
    }
    let rows = hub
        .store
        .servers_of(&[user.id])
        .await?
        .remove(&user.id)
        .unwrap_or_default();
    if let Some(row) = rows.iter().find(|r| r.status.is_transitioning()) {
        return Err(HubError::BadRequest(format!(
            "{}'s server {:?} is pending {}, please wait",
            user.name, row.name, row.status
        )));
    }
    for row in rows.iter().filter(|r| r.status == ServerStatus::Running) {
        servers::stop(hub, user, row).await?;
    }
    super::projects::forget_user(hub, user).await?;
    super::datasets::forget_user(hub, user).await?;
    hub.store.delete_user(user.id).await?;
    hub.invalidate_auth();
    tracing::info!(user.name = %user.name, "user deleted");
    Ok(())
}

/// Records reported activity: of the user, and of named servers of theirs (an unknown server
/// is a 400, before anything is written). The user's time becomes the latest of all.
pub async fn record_activity(
    hub: &Services,
    user: &UserRow,
    user_time: Option<Micros>,
    server_times: &[(String, Micros)],
) -> HubResult<()> {
    let mut rows = Vec::with_capacity(server_times.len());
    for (server_name, t) in server_times {
        let row = hub
            .store
            .server(user.id, server_name)
            .await?
            .ok_or_else(|| {
                HubError::BadRequest(format!(
                    "No such server '{server_name}' for user {}",
                    user.name
                ))
            })?;
        rows.push((row.id, *t));
    }
    let latest = rows.iter().map(|(_, t)| *t).chain(user_time).max();
    for (id, t) in rows {
        hub.store.touch_server(id, t).await?;
    }
    if let Some(t) = latest {
        hub.store.touch_user(user.id, t).await?;
    }
    Ok(())
}
