//! Campus login through OpenID Connect (`[auth] kind = "oidc"`): the authorization request
//! (`state`, `nonce`, PKCE S256, kept here for ten minutes and used once), the code exchange, the
//! ID token's checks (signature against the provider's JWKS, refetched once for an unknown `kid`
//! when the provider rotated its keys; issuer, audience, expiry with a minute of leeway, nonce),
//! and what the claims make of the account: its name, role and groups. Knows nothing of HTTP
//! servers: the pages in `web::campus_login` carry the redirects and cookies.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::clock;
use crate::config::OidcConfig;
use crate::db::{AccountRole, UserRow, UserUpdate};
use crate::domain::{names, HubError, HubResult, Services};

/// How long a started login may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Most logins waiting at the provider at once; the oldest are dropped beyond it.
const MAX_PENDING: usize = 10_000;
/// Clock skew allowed on `exp`, `iat` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 60;

/// The endpoints named by the provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
}

/// A login sent to the provider and not yet back.
#[derive(Debug)]
struct PendingLogin {
    nonce: String,
    code_verifier: String,
    redirect_uri: String,
    next: Option<String>,
    started: Instant,
}

/// Where to send the browser to start a login, and the `state` to bind to it (in a cookie).
#[derive(Debug)]
pub struct LoginStart {
    /// The provider's authorization URL with every parameter.
    pub authorize_url: String,
    /// The request's `state`.
    pub state: String,
}

/// A login the provider vouched for.
#[derive(Debug)]
pub struct CampusUser {
    /// The account, created or brought up to date.
    pub user: UserRow,
    /// Where the user was going before signing in.
    pub next: Option<String>,
}

/// The OpenID Connect client of one provider, shared by every request.
pub struct CampusLogin {
    config: OidcConfig,
    secret: String,
    http: reqwest::Client,
    discovery: Mutex<Option<Discovery>>,
    keys: Mutex<HashMap<String, DecodingKey>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

impl std::fmt::Debug for CampusLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampusLogin")
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn provider_error(what: &str, e: impl std::fmt::Display) -> HubError {
    tracing::warn!(error = %e, "campus login: {what}");
    HubError::Internal(format!(
        "The identity provider could not be reached ({what})"
    ))
}

fn refused(why: impl Into<String>) -> HubError {
    let why = why.into();
    tracing::warn!(reason = %why, "campus login refused");
    HubError::Forbidden(why)
}

impl CampusLogin {
    /// A client for this provider; the secret is read now (`client_secret_file`).
    pub fn new(config: &OidcConfig) -> HubResult<Self> {
        let secret = config
            .secret()
            .map_err(|e| HubError::Internal(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HubError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            config: config.clone(),
            secret,
            http,
            discovery: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The name on the login button.
    pub fn provider_name(&self) -> &str {
        &self.config.provider_name
    }

    /// The client id at the provider.
    pub fn client_id(&self) -> &str {
        &self.config.client_id
    }

    /// The configured redirect URI, if any (else the pages derive it from the request).
    pub fn callback_url(&self) -> Option<&str> {
        self.config.callback_url.as_deref()
    }

    async fn discovery(&self) -> HubResult<Discovery> {
        let mut cached = self.discovery.lock().await;
        if let Some(d) = cached.as_ref() {
            return Ok(d.clone());
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| provider_error("discovery", e))?
            .json()
            .await
            .map_err(|e| provider_error("discovery document", e))?;
        if d.issuer.trim_end_matches('/') != self.config.issuer.trim_end_matches('/') {
            return Err(provider_error(
                "discovery",
                format!("issuer {:?} is not the configured one", d.issuer),
            ));
        }
        *cached = Some(d.clone());
        Ok(d)
    }

    /// The provider's end-session endpoint, when it has one.
    pub async fn end_session_endpoint(&self) -> Option<String> {
        self.discovery().await.ok()?.end_session_endpoint
    }

    /// Starts a login: remembers `state`, `nonce` and the PKCE verifier, and returns the
    /// provider's authorization URL.
    pub async fn start(&self, redirect_uri: &str, next: Option<String>) -> HubResult<LoginStart> {
        let discovery = self.discovery().await?;
        let state = random_token();
        let nonce = random_token();
        let code_verifier = random_token();
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(
            self.config
                .scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned(),
        );
        let mut url = url::Url::parse(&discovery.authorization_endpoint)
            .map_err(|e| provider_error("authorization endpoint", e))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let mut pending = self.pending.lock().await;
        pending.retain(|_, p| p.started.elapsed() < PENDING_FOR);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            state.clone(),
            PendingLogin {
                nonce,
                code_verifier,
                redirect_uri: redirect_uri.to_owned(),
                next,
                started: Instant::now(),
            },
        );
        Ok(LoginStart {
            authorize_url: url.into(),
            state,
        })
    }

    /// Finishes a login: `state` must be one this hub started (and the browser's, checked by
    /// the caller), used once and young; the code is exchanged and the ID token checked; then
    /// the account is created or updated. Every refusal is a 403 and creates nothing.
    pub async fn finish(
        &self,
        hub: &Arc<Services>,
        state: &str,
        code: &str,
    ) -> HubResult<CampusUser> {
        let pending = self
            .pending
            .lock()
            .await
            .remove(state)
            .filter(|p| p.started.elapsed() < PENDING_FOR)
            .ok_or_else(|| {
                refused("This sign-in was not started here or has expired (unknown state). Start again from the login page.")
            })?;
        let discovery = self.discovery().await?;
        let id_token = self.exchange(&discovery, &pending, code).await?;
        let claims = self.verify(&discovery, &id_token, &pending.nonce).await?;
        let user = self.admit(hub, &claims).await?;
        Ok(CampusUser {
            user,
            next: pending.next,
        })
    }

    async fn exchange(
        &self,
        discovery: &Discovery,
        pending: &PendingLogin,
        code: &str,
    ) -> HubResult<String> {
        #[derive(Deserialize)]
        struct TokenResponse {
            id_token: Option<String>,
        }
        let response = self
            .http
            .post(&discovery.token_endpoint)
            .basic_auth(&self.config.client_id, Some(&self.secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", pending.redirect_uri.as_str()),
                ("code_verifier", pending.code_verifier.as_str()),
            ])
            .send()
            .await
            .map_err(|e| provider_error("token endpoint", e))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let error = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| status.to_string());
            return Err(refused(format!(
                "The identity provider refused the sign-in code ({error}). Start again from the login page."
            )));
        }
        let tokens: TokenResponse = response
            .json()
            .await
            .map_err(|e| provider_error("token response", e))?;
        tokens
            .id_token
            .ok_or_else(|| refused("The identity provider sent no ID token."))
    }

    /// The decoding key for `kid`, fetching the JWKS when it is not known yet (once per call:
    /// a rotated key appears there; a forged one never does).
    async fn key(&self, jwks_uri: &str, kid: &str) -> HubResult<Option<DecodingKey>> {
        let mut keys = self.keys.lock().await;
        if let Some(k) = keys.get(kid) {
            return Ok(Some(k.clone()));
        }
        let set: JwkSet = self
            .http
            .get(jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| provider_error("JWKS", e))?
            .json()
            .await
            .map_err(|e| provider_error("JWKS document", e))?;
        keys.clear();
        for jwk in &set.keys {
            if let (Some(id), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) {
                keys.insert(id.clone(), key);
            }
        }
        tracing::info!(keys = keys.len(), "campus login: provider keys fetched");
        Ok(keys.get(kid).cloned())
    }

    async fn verify(
        &self,
        discovery: &Discovery,
        id_token: &str,
        nonce: &str,
    ) -> HubResult<Map<String, Value>> {
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| refused("The ID token is malformed."))?;
        let allowed = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ];
        if !allowed.contains(&header.alg) {
            return Err(refused(format!(
                "The ID token's algorithm {:?} is not accepted.",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| refused("The ID token names no signing key."))?;
        let key = self.key(&discovery.jwks_uri, &kid).await?.ok_or_else(|| {
            refused("The ID token is signed by a key the provider does not publish.")
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[discovery.issuer.as_str()]);
        validation.set_audience(&[self.config.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                refused(match e.kind() {
                    ErrorKind::InvalidSignature => "The ID token's signature is wrong.".to_owned(),
                    ErrorKind::ExpiredSignature => "The ID token has expired.".to_owned(),
                    ErrorKind::InvalidAudience => {
                        "The ID token was issued for another application (audience).".to_owned()
                    }
                    ErrorKind::InvalidIssuer => {
                        "The ID token was issued by another provider (issuer).".to_owned()
                    }
                    other => format!("The ID token is not valid ({other:?})."),
                })
            })?;
        let claims = data.claims;
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        let now = chrono::Utc::now().timestamp();
        if iat > now + LEEWAY_SECONDS as i64 {
            return Err(refused("The ID token was issued in the future."));
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(refused("The ID token's nonce does not match this sign-in."));
        }
        Ok(claims)
    }

    /// The user name, role and groups the claims give, checked against the allowed lists.
    fn identity_from(&self, claims: &Map<String, Value>) -> HubResult<ClaimedIdentity> {
        let cfg = &self.config;
        let raw = claims
            .get(&cfg.username_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| {
                refused(format!(
                    "The identity provider did not send your user name (claim {:?}); ask your administrator.",
                    cfg.username_claim
                ))
            })?;
        let name = names::normalize_user(raw);
        names::check_name("user", &name).map_err(|_| {
            refused(format!(
                "The user name {raw:?} from the identity provider is not valid here."
            ))
        })?;
        let groups: Vec<String> = cfg
            .groups_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let in_any = |list: &[String]| groups.iter().any(|g| list.contains(g));
        let role = if in_any(&cfg.admin_groups) {
            AccountRole::Admin
        } else if in_any(&cfg.teacher_groups) {
            AccountRole::Teacher
        } else {
            AccountRole::Student
        };
        let open = cfg.allowed_users.is_empty() && cfg.allowed_groups.is_empty();
        let allowed = open
            || cfg
                .allowed_users
                .iter()
                .any(|u| names::normalize_user(u) == name)
            || in_any(&cfg.allowed_groups)
            || role == AccountRole::Admin;
        if !allowed {
            return Err(refused(format!(
                "{name} is not allowed to sign in to this hub (not in an allowed group)."
            )));
        }
        Ok(ClaimedIdentity { name, role, groups })
    }

    /// Creates the account on first login, else brings its role (and groups) up to date.
    async fn admit(&self, hub: &Arc<Services>, claims: &Map<String, Value>) -> HubResult<UserRow> {
        let identity = match self.identity_from(claims) {
            Ok(identity) => identity,
            Err(refusal) => {
                self.release_refused(hub, claims).await;
                return Err(refusal);
            }
        };
        let admin = identity.role == AccountRole::Admin;
        let user = match hub.store.user(&identity.name).await? {
            Some(u) => u,
            None => {
                let u = crate::domain::users::create_one(hub, &identity.name, admin).await?;
                tracing::info!(user.name = %u.name, "campus login: account created");
                u
            }
        };
        hub.store
            .update_user(
                user.id,
                &UserUpdate {
                    admin: Some(admin),
                    account_role: Some(identity.role),
                    ..UserUpdate::default()
                },
            )
            .await?;
        if self.config.manage_groups {
            self.sync_groups(hub, &user, &identity.groups).await?;
        }
        hub.invalidate_auth();
        hub.store.touch_user(user.id, clock::now()).await?;
        hub.store
            .user_by_id(user.id)
            .await?
            .ok_or_else(|| HubError::NotFound("User vanished".into()))
    }

    /// A known user the provider vouches for but who may no longer sign in (moved out of the
    /// allowed groups): their running clusters follow the release policy of logout.
    async fn release_refused(&self, hub: &Arc<Services>, claims: &Map<String, Value>) {
        let Some(raw) = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
        else {
            return;
        };
        match hub.store.user(&names::normalize_user(raw)).await {
            Ok(Some(user)) => crate::domain::release::release_on_logout(hub, user),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "campus login: cannot look the refused user up"),
        }
    }

    /// Makes the user's groups exactly the provider's valid group names (creating missing ones).
    async fn sync_groups(
        &self,
        hub: &Services,
        user: &UserRow,
        wanted: &[String],
    ) -> HubResult<()> {
        let current = hub.store.groups_of(&user.name).await?;
        for name in wanted {
            if current.contains(name) || names::check_name("group", name).is_err() {
                continue;
            }
            let group = match hub.store.group(name).await? {
                Some(g) => g,
                None => {
                    hub.store
                        .create_group(name, &Value::Object(Map::new()))
                        .await?
                }
            };
            hub.store.add_group_members(group.id, &[user.id]).await?;
        }
        for name in current.iter().filter(|g| !wanted.contains(g)) {
            if let Some(group) = hub.store.group(name).await? {
                hub.store.remove_group_members(group.id, &[user.id]).await?;
            }
        }
        Ok(())
    }
}

/// Who the provider says the user is.
#[derive(Debug)]
struct ClaimedIdentity {
    name: String,
    role: AccountRole,
    groups: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn login(edit: impl FnOnce(&mut OidcConfig)) -> CampusLogin {
        let mut cfg = OidcConfig {
            issuer: "https://id.example.edu".into(),
            client_id: "xiji".into(),
            client_secret: Some("s".into()),
            groups_claim: Some("groups".into()),
            admin_groups: vec!["it-staff".into()],
            teacher_groups: vec!["teachers".into()],
            ..OidcConfig::default()
        };
        edit(&mut cfg);
        CampusLogin::new(&cfg).unwrap()
    }

    fn claims(v: serde_json::Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_groups_claim_gives_the_role_admins_first_then_teachers_else_students() {
        let c = login(|_| {});
        for (groups, role) in [
            (json!(["teachers", "it-staff"]), AccountRole::Admin),
            (json!(["ml-101", "teachers"]), AccountRole::Teacher),
            (json!(["ml-101"]), AccountRole::Student),
            (json!("teachers"), AccountRole::Student),
        ] {
            let id = c
                .identity_from(&claims(
                    json!({"preferred_username": "Ann", "groups": groups.clone()}),
                ))
                .unwrap();
            assert_eq!(id.role, role, "{groups}");
            assert_eq!(id.name, "ann");
        }
    }

    #[test]
    fn allowed_users_and_groups_refuse_everyone_else_but_admins() {
        let c = login(|c| {
            c.allowed_users = vec!["Guest".into()];
            c.allowed_groups = vec!["students".into()];
        });
        let who = |name: &str, groups: serde_json::Value| {
            c.identity_from(&claims(
                json!({"preferred_username": name, "groups": groups}),
            ))
        };
        assert!(who("ann", json!(["students"])).is_ok());
        assert!(who("guest", json!([])).is_ok());
        assert!(who("root", json!(["it-staff"])).is_ok());
        let err = who("eve", json!(["visitors"])).unwrap_err().to_string();
        assert!(err.contains("not allowed"), "{err}");
    }

    #[test]
    fn a_missing_or_unusable_user_name_is_refused() {
        let c = login(|_| {});
        for bad in [
            json!({}),
            json!({"preferred_username": ""}),
            json!({"preferred_username": 7}),
        ] {
            let err = c.identity_from(&claims(bad.clone())).unwrap_err();
            assert!(matches!(err, HubError::Forbidden(_)), "{bad}: {err}");
        }
        let err = c
            .identity_from(&claims(json!({"preferred_username": "a/b"})))
            .unwrap_err();
        assert!(matches!(err, HubError::Forbidden(_)), "{err}");
    }
}
