//! Local accounts: argon2id password hashes, the first administrator, login throttling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use super::{HubError, HubResult};
use crate::db::{Store, UserRow, UserUpdate};

/// Shortest accepted password.
pub const MIN_PASSWORD_LEN: usize = 8;

/// argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> HubResult<String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(HubError::BadRequest(format!(
            "Password too short: use at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HubError::BadRequest(format!("Cannot hash password: {e}")))
}

/// Whether `password` matches the stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Sets (or replaces) a user's password.
pub async fn set_password(store: &Store, user: &UserRow, password: &str) -> HubResult<()> {
    let hash = hash_password(password)?;
    store
        .update_user(
            user.id,
            &UserUpdate {
                password_hash: Some(Some(hash)),
                ..Default::default()
            },
        )
        .await?;
    Ok(())
}

/// Checks a user name and password; `None` when they do not match (no hint which part was wrong).
pub async fn authenticate(store: &Store, name: &str, password: &str) -> HubResult<Option<UserRow>> {
    let name = super::names::normalize_user(name);
    let user = store.user(&name).await?;
    // Verify against a dummy hash when the user does not exist, so timing does not reveal it.
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let ok = match &stored {
        Some(hash) => verify_password(password, hash),
        None => {
            if let Some(dummy) = dummy_hash() {
                let _ = verify_password(password, dummy);
            }
            false
        }
    };
    Ok(if ok { user } else { None })
}

fn dummy_hash() -> Option<&'static str> {
    static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("not-a-real-password").ok())
        .as_deref()
}

/// Failed-login throttling per user name and per client address.
pub struct LoginThrottle {
    attempts: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    /// Allows `attempts` failures per key within `window`, then locks the key until the window ends.
    pub fn new(attempts: u32, window: Duration) -> Self {
        Self {
            attempts,
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds to wait if any key is locked.
    pub fn locked_for(&self, keys: &[&str]) -> Option<u64> {
        let failures = self.failures.lock().ok()?;
        keys.iter()
            .filter_map(|k| failures.get(*k))
            .filter(|(n, since)| *n >= self.attempts && since.elapsed() < self.window)
            .map(|(_, since)| (self.window - since.elapsed()).as_secs().max(1))
            .max()
    }

    /// Records a failure for each key.
    pub fn fail(&self, keys: &[&str]) {
        if let Ok(mut failures) = self.failures.lock() {
            if failures.len() > 100_000 {
                let window = self.window;
                failures.retain(|_, (_, since)| since.elapsed() < window);
            }
            for key in keys {
                let entry = failures
                    .entry((*key).to_owned())
                    .or_insert((0, Instant::now()));
                if entry.1.elapsed() >= self.window {
                    *entry = (0, Instant::now());
                }
                entry.0 += 1;
            }
        }
    }

    /// Forgets the failures of a key after a successful login.
    pub fn succeed(&self, key: &str) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(hash_password("short").is_err());
    }

    #[test]
    fn repeated_failures_lock_the_name_and_success_unlocks() {
        let t = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.fail(&["alice"]);
        }
        assert!(t.locked_for(&["alice"]).is_none());
        t.fail(&["alice"]);
        assert!(t.locked_for(&["alice", "1.2.3.4"]).is_some());
        t.succeed("alice");
        assert!(t.locked_for(&["alice"]).is_none());
    }
}
