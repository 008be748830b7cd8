//! Users' `auth_state` (JupyterHub's name): what the identity provider gave at a user's last
//! campus login — its tokens and the claims — kept encrypted with Fernet under the
//! installation's key(s), as JupyterHub's `CryptKeeper` keeps it, so a key JupyterHub used
//! (`JUPYTERHUB_CRYPT_KEY`) serves here unchanged. Kept only with `[auth] enable_auth_state`;
//! administrators read it through `GET /hub/api/users/{name}` (scope `admin:auth_state`).

use fernet::{Fernet, MultiFernet};
use serde_json::Value;

use super::{HubError, HubResult};
use crate::clock;
use crate::db::Store;

/// Encrypts and decrypts `auth_state`; `None` in [`super::Services`] when it is not enabled.
pub struct AuthStates {
    fernet: MultiFernet,
}

impl std::fmt::Debug for AuthStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStates").finish_non_exhaustive()
    }
}

/// One 32-byte key as JupyterHub accepts it: 44 characters of URL-safe base64, 64 hex digits,
/// or 32 raw characters.
fn parse_key(text: &str) -> Option<[u8; 32]> {
    use base64::Engine as _;
    let bytes = match text.len() {
        44 => base64::engine::general_purpose::URL_SAFE
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(text))
            .ok()?,
        64 => hex::decode(text).ok()?,
        _ => text.as_bytes().to_vec(),
    };
    bytes.try_into().ok()
}

impl AuthStates {
    /// The keeper for `keys`: one or more keys separated by `;`, the first encrypting.
    pub fn from_keys(keys: &str) -> HubResult<Self> {
        use base64::Engine as _;
        let mut fernets = Vec::new();
        for (i, text) in keys.split(';').map(str::trim).enumerate() {
            if text.is_empty() {
                continue;
            }
            let key = parse_key(text).ok_or_else(|| {
                HubError::Internal(format!(
                    "auth_state key {}: must be 32 bytes, written as 64 hex digits or 44 characters of base64 (e.g. `openssl rand -hex 32`)",
                    i + 1
                ))
            })?;
            let encoded = base64::engine::general_purpose::URL_SAFE.encode(key);
            let fernet = Fernet::new(&encoded)
                .ok_or_else(|| HubError::Internal(format!("auth_state key {}: unusable", i + 1)))?;
            fernets.push(fernet);
        }
        if fernets.is_empty() {
            return Err(HubError::Internal("auth_state: no key given".into()));
        }
        Ok(Self {
            fernet: MultiFernet::new(fernets),
        })
    }

    /// `state` as a Fernet token over its JSON text (JupyterHub's format).
    pub fn encrypt(&self, state: &Value) -> String {
        self.fernet.encrypt(state.to_string().as_bytes())
    }

    /// The state in a token; `None` when no key opens it (a key since removed) or it is not
    /// JSON.
    pub fn decrypt(&self, token: &str) -> Option<Value> {
        let plain = self.fernet.decrypt(token).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// Stores a user's state (`Value::Null` forgets it).
    pub async fn save(&self, store: &Store, user_id: i64, state: &Value) -> HubResult<()> {
        let token = (!state.is_null()).then(|| self.encrypt(state));
        store
            .set_encrypted_auth_state(user_id, token.as_deref(), clock::now())
            .await?;
        Ok(())
    }

    /// A user's state; `Value::Null` when none is kept or it cannot be read any more.
    pub async fn load(&self, store: &Store, user_id: i64) -> HubResult<Value> {
        let Some(token) = store.encrypted_auth_state(user_id).await? else {
            return Ok(Value::Null);
        };
        Ok(self.decrypt(&token).unwrap_or_else(|| {
            tracing::warn!(
                user.id = user_id,
                "auth_state cannot be decrypted with the configured keys"
            );
            Value::Null
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn a_state_comes_back_as_it_went_in_and_is_not_readable_without_the_key() {
        let keeper = AuthStates::from_keys(HEX).unwrap();
        let state = json!({"access_token": "at-secret", "oauth_user": {"groups": ["ml-101"]}});
        let token = keeper.encrypt(&state);
        assert!(!token.contains("at-secret"));
        assert_eq!(keeper.decrypt(&token), Some(state));
        let other = AuthStates::from_keys(&"ab".repeat(32)).unwrap();
        assert_eq!(other.decrypt(&token), None);
    }

    #[test]
    fn keys_rotate_the_first_encrypts_and_the_others_still_decrypt() {
        let old = AuthStates::from_keys(HEX).unwrap();
        let token = old.encrypt(&json!({"a": 1}));
        use base64::Engine as _;
        let new_key = base64::engine::general_purpose::URL_SAFE.encode([7u8; 32]);
        let rotated = AuthStates::from_keys(&format!("{new_key};{HEX}")).unwrap();
        assert_eq!(rotated.decrypt(&token), Some(json!({"a": 1})));
        let fresh = rotated.encrypt(&json!({"b": 2}));
        assert_eq!(old.decrypt(&fresh), None, "the first key encrypts");
    }

    #[test]
    fn keys_of_the_wrong_size_are_refused_with_the_way_to_make_one() {
        for bad in ["", "short", &"zz".repeat(32), "abc;"] {
            let err = AuthStates::from_keys(bad).unwrap_err().to_string();
            assert!(
                err.contains("32 bytes") || err.contains("no key"),
                "{bad}: {err}"
            );
        }
    }
}
