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

    /// When a user's auth state was last written (a login or a refresh), if one is kept.
    pub async fn auth_state_updated(&self, user_id: i64) -> Result<Option<Micros>> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT updated FROM auth_states WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Users whose auth state was last written before `cutoff` and who are still about: signed
    /// in somewhere (a session not expired at `now`) or with a server not stopped. Oldest first,
    /// at most `limit`.
    pub async fn auth_states_due(
        &self,
        cutoff: Micros,
        now: Micros,
        limit: i64,
    ) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT a.user_id FROM auth_states a WHERE a.updated < $1 AND (\
             EXISTS (SELECT 1 FROM login_sessions s WHERE s.user_id = a.user_id AND s.expires_at > $2) \
             OR EXISTS (SELECT 1 FROM servers v WHERE v.user_id = a.user_id AND v.status <> 'stopped')) \
             ORDER BY a.updated, a.user_id LIMIT $3",
        )
        .bind(cutoff)
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
