//! Users' encrypted `auth_state`: what the identity provider gave at their last campus login, as
//! a Fernet token (the domain encrypts and decrypts; the store never sees it plain).

use super::{Result, Store};
use crate::clock::Micros;

impl Store {
    /// A user's encrypted auth state, if one is kept.
    pub async fn encrypted_auth_state(&self, user_id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT encrypted FROM auth_states WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Replaces a user's encrypted auth state (`None` forgets it).
    pub async fn set_encrypted_auth_state(
        &self,
        user_id: i64,
        encrypted: Option<&str>,
        now: Micros,
    ) -> Result<()> {
        match encrypted {
            Some(token) => {
                sqlx::query(
                    "INSERT INTO auth_states (user_id, encrypted, updated) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET encrypted = excluded.encrypted, \
                     updated = excluded.updated",
                )
                .bind(user_id)
                .bind(token)
                .bind(now)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM auth_states WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }
}
