//! Groups: creation (one with members, or many, each all or none), deletion, members and
//! properties. Every change of membership forgets the cached callers (a group can carry roles).

use crate::db::{DbError, GroupRow};
use crate::domain::{names, HubError, HubResult, Services};

/// Looks a group up by name, with JupyterHub's 404 message.
pub async fn group_or_404(hub: &Services, name: &str) -> HubResult<GroupRow> {
    hub.store
        .group(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such group: {name}")))
}

fn exists(name: &str) -> HubError {
    HubError::Conflict(format!("Group {name} already exists"))
}

/// User ids for user names, each once; unknown names are a 400 naming them.
async fn user_ids(hub: &Services, user_names: &[String]) -> HubResult<Vec<i64>> {
    let mut ids = Vec::with_capacity(user_names.len());
    let mut unknown = Vec::new();
    for name in user_names {
        match hub.store.user(&names::normalize_user(name)).await? {
            Some(u) if !ids.contains(&u.id) => ids.push(u.id),
            Some(_) => {}
            None => unknown.push(name.clone()),
        }
    }
    if unknown.is_empty() {
        Ok(ids)
    } else {
        Err(HubError::BadRequest(format!("Unknown users: {unknown:?}")))
    }
}

/// Creates several groups in one transaction: every name is checked first, and one that
/// exists (409) creates none.
pub async fn create_many(hub: &Services, group_names: &[String]) -> HubResult<Vec<GroupRow>> {
    if group_names.is_empty() {
        return Err(HubError::BadRequest(
            "Must specify at least one group to create".into(),
        ));
    }
    for name in group_names {
        names::check_name("group", name)?;
        if hub.store.group(name).await?.is_some() {
            return Err(exists(name));
        }
    }
    let created = hub
        .store
        .create_groups(group_names)
        .await
        .map_err(|e| match e {
            DbError::Conflict => HubError::Conflict(
                "A group was created concurrently, or a name was given twice; nothing was created"
                    .into(),
            ),
            other => other.into(),
        })?;
    tracing::info!(groups = created.len(), "groups created");
    Ok(created)
}

/// Creates a group with these members, in one transaction.
pub async fn create_one(hub: &Services, name: &str, members: &[String]) -> HubResult<GroupRow> {
    names::check_name("group", name)?;
    let ids = user_ids(hub, members).await?;
    let group = hub
        .store
        .create_group_with_members(name, &ids)
        .await
        .map_err(|e| match e {
            DbError::Conflict => exists(name),
            other => other.into(),
        })?;
    hub.invalidate_auth();
    tracing::info!(group.name = %name, members = ids.len(), "group created");
    Ok(group)
}

/// Deletes a group (its memberships and role grants go with it).
pub async fn delete(hub: &Services, name: &str) -> HubResult<()> {
    let group = group_or_404(hub, name).await?;
    hub.store.delete_group(group.id).await?;
    hub.invalidate_auth();
    tracing::info!(group.name = %name, "group deleted");
    Ok(())
}

/// Adds (or, with `add` false, removes) users, in one transaction; unknown users change nothing.
pub async fn change_members(
    hub: &Services,
    group: &GroupRow,
    members: &[String],
    add: bool,
) -> HubResult<()> {
    let ids = user_ids(hub, members).await?;
    if add {
        hub.store.add_group_members(group.id, &ids).await?;
    } else {
        hub.store.remove_group_members(group.id, &ids).await?;
    }
    hub.invalidate_auth();
    Ok(())
}

/// Replaces a group's properties (a JSON object) and returns the group as it is now.
pub async fn set_properties(
    hub: &Services,
    group: &GroupRow,
    properties: &serde_json::Value,
) -> HubResult<GroupRow> {
    if !properties.is_object() {
        return Err(HubError::BadRequest(
            "Group properties must be a JSON object".into(),
        ));
    }
    hub.store.set_group_properties(group.id, properties).await?;
    group_or_404(hub, &group.name).await
}
