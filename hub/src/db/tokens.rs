//! API tokens (stored hashed) of users, services and servers, and the purge of everything that
//! expires: tokens, authorization codes and login sessions.

use super::rows::{NewToken, TokenRow, TOKEN_SELECT};
use super::{Result, Store};
use crate::clock::Micros;

impl Store {
    /// Stores a token (already hashed).
    pub async fn insert_token(&self, t: &NewToken<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO api_tokens (hashed, kind, user_id, service_id, server_id, scopes, note, session_id, \
             oauth_client, created, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
        )
        .bind(t.hashed)
        .bind(t.kind)
        .bind(t.user_id)
        .bind(t.service_id)
        .bind(t.server_id)
        .bind(serde_json::to_string(t.scopes)?)
        .bind(t.note)
        .bind(t.session_id)
        .bind(t.oauth_client)
        .bind(t.created)
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The token with this hash, with its owner's names.
    pub async fn token_by_hash(&self, hashed: &str) -> Result<Option<TokenRow>> {
        Ok(
            sqlx::query_as::<_, TokenRow>(&format!("{TOKEN_SELECT} WHERE t.hashed = $1"))
                .bind(hashed)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A token by id.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<TokenRow>> {
        Ok(
            sqlx::query_as::<_, TokenRow>(&format!("{TOKEN_SELECT} WHERE t.id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A user's tokens.
    pub async fn tokens_of_user(&self, user_id: i64) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as::<_, TokenRow>(&format!(
            "{TOKEN_SELECT} WHERE t.user_id = $1 ORDER BY t.id"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Tokens of a service.
    pub async fn tokens_of_service(&self, service_id: i64) -> Result<Vec<TokenRow>> {
        Ok(sqlx::query_as::<_, TokenRow>(&format!(
            "{TOKEN_SELECT} WHERE t.service_id = $1 ORDER BY t.id"
        ))
        .bind(service_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes a token.
    pub async fn delete_token(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes every token of a login session (logout).
    pub async fn delete_tokens_of_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE session_id = $1")
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes expired tokens, codes and sessions.
    pub async fn purge_expired(&self, now: Micros) -> Result<()> {
        sqlx::query("DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM login_sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a token's use.
    pub async fn touch_token(&self, id: i64, t: Micros) -> Result<()> {
        sqlx::query("UPDATE api_tokens SET last_activity = $1 WHERE id = $2")
            .bind(t)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
