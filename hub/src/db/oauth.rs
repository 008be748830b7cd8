//! OAuth clients (looked up with the server they belong to) and authorization codes (stored
//! hashed, each taken once).

use super::rows::{CodeRow, NewCode, OAuthClientRow};
use super::{Result, Store};

impl Store {
    /// An OAuth client by its identifier.
    pub async fn oauth_client(&self, identifier: &str) -> Result<Option<OAuthClientRow>> {
        Ok(sqlx::query_as::<_, OAuthClientRow>(
            "SELECT c.identifier, c.description, c.secret_hash, c.redirect_uri, c.server_id, c.service_id, \
             s.name AS server_name, u.name AS server_owner \
             FROM oauth_clients c LEFT JOIN servers s ON s.id = c.server_id LEFT JOIN users u ON u.id = s.user_id \
             WHERE c.identifier = $1",
        )
        .bind(identifier)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Stores an authorization code (hashed).
    pub async fn insert_code(&self, c: &NewCode<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO oauth_codes (code_hash, client_identifier, user_id, session_id, redirect_uri, scopes, \
             code_challenge, code_challenge_method, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.code_hash)
        .bind(c.client_identifier)
        .bind(c.user_id)
        .bind(c.session_id)
        .bind(c.redirect_uri)
        .bind(serde_json::to_string(c.scopes)?)
        .bind(c.code_challenge)
        .bind(c.code_challenge_method)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes and returns a code: each code is used once.
    pub async fn take_code(&self, code_hash: &str) -> Result<Option<CodeRow>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query_as::<_, CodeRow>(
            "SELECT client_identifier, user_id, session_id, redirect_uri, scopes, code_challenge, \
             code_challenge_method, expires_at FROM oauth_codes WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM oauth_codes WHERE code_hash = $1")
            .bind(code_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row)
    }
}
