//! Login sessions (cookie values stored hashed), and their end with the tokens issued in them.

use super::rows::SessionRow;
use super::{Result, Store};
use crate::clock::Micros;

impl Store {
    /// Stores a login session (cookie value hashed).
    pub async fn insert_session(
        &self,
        hashed: &str,
        session_id: &str,
        user_id: i64,
        now: Micros,
        expires_at: Micros,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO login_sessions (hashed, session_id, user_id, created, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hashed)
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this cookie hash, if not expired.
    pub async fn session(&self, hashed: &str, now: Micros) -> Result<Option<SessionRow>> {
        Ok(sqlx::query_as::<_, SessionRow>(
            "SELECT session_id, user_id, expires_at FROM login_sessions WHERE hashed = $1 AND expires_at > $2",
        )
        .bind(hashed)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Ends a login session and every token issued within it.
    pub async fn delete_session(&self, session_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM login_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ends every login session of a user and the tokens issued within them; how many ended.
    pub async fn delete_sessions_of(&self, user_id: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "DELETE FROM api_tokens WHERE session_id IN \
             (SELECT session_id FROM login_sessions WHERE user_id = $1)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let ended = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(ended)
    }
}
