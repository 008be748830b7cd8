//! Users: look-up with JupyterHub's messages.

use crate::db::UserRow;
use crate::domain::{HubError, HubResult, Services};

/// Looks a user up by name, with JupyterHub's 404 message.
pub async fn user_or_404(hub: &Services, name: &str) -> HubResult<UserRow> {
    hub.store
        .user(name)
        .await?
        .ok_or_else(|| HubError::NotFound(format!("No such user: {name}")))
}
