//! Secrets: generation and hashing. Tokens are 128 random bits, so a single SHA-256 is enough to
//! store them safely (no dictionary to attack) and keeps every authenticated request cheap.

use rand::RngCore;
use sha2::{Digest, Sha256};

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
