//! Secrets: generation and hashing. Tokens are 128 random bits, so a single SHA-256 is enough to
//! store them safely (no dictionary to attack) and keeps every authenticated request cheap.

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::clock;
use crate::db::{Store, TokenRow};
use crate::domain::{HubError, HubResult, Services};

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// A new API token (32 hex characters, like JupyterHub's `uuid4().hex`).
pub fn new_token() -> String {
    random_hex(16)
}

/// The stored form of a token, code or cookie value.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two secrets' hashes.
pub fn same_secret(a_hash: &str, b_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    a_hash.as_bytes().ct_eq(b_hash.as_bytes()).into()
}

/// JupyterHub's token id: `a<row id>`.
pub fn token_id(id: i64) -> String {
    format!("a{id}")
}

/// Parses `a<row id>`.
pub fn parse_token_id(text: &str) -> Option<i64> {
    text.strip_prefix('a')?.parse().ok()
}

/// A user's own API token by its id (`a123`): a 404 for anyone else's, a server's or an expired
/// one, as for one that does not exist.
pub async fn find_owned(store: &Store, user_id: i64, token_id: &str) -> HubResult<TokenRow> {
    let not_found = || HubError::NotFound(format!("No such token: {token_id}"));
    let id = parse_token_id(token_id).ok_or_else(not_found)?;
    let row = store.token_by_id(id).await?.ok_or_else(not_found)?;
    if row.user_id != Some(user_id)
        || row.kind == "server"
        || row.expires_at.is_some_and(|e| e <= clock::now())
    {
        return Err(not_found());
    }
    Ok(row)
}

/// Revokes a token; a caller resolved through it is forgotten at once.
pub async fn revoke(hub: &Services, token: &TokenRow) -> HubResult<()> {
    hub.store.delete_token(token.id).await?;
    hub.invalidate_auth();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_and_hash_consistently() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_token());
        assert!(same_secret(&hash_secret(&a), &hash_secret(&a)));
        assert!(!same_secret(&hash_secret(&a), &hash_secret("x")));
        assert_eq!(parse_token_id(&token_id(42)), Some(42));
        assert_eq!(parse_token_id("42"), None);
    }
}
