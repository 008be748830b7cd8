//! Campus login (`[auth] kind = "oidc"` or `"oauth2"`): the authorization request (`state`,
//! `nonce` with OpenID Connect, PKCE S256; kept here for ten minutes and used once), the code
//! exchange (the `oauth2` crate), and who the provider says the user is: with OpenID Connect the
//! ID token, checked here (signature against the provider's JWKS, refetched once for an unknown
//! `kid` when the provider rotated its keys; issuer, audience, expiry with a minute of leeway,
//! nonce); with plain OAuth2 the provider's user-info endpoint, read with the access token. The
//! claims then make the account: its name, role, groups and quota class, and its `auth_state`.
//! Knows nothing of HTTP servers: the pages in `web::campus_login` carry redirects and cookies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse as _,
    TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::clock;
use crate::config::{AuthKind, OidcConfig};
use crate::db::{AccountRole, Limits, UserRow, UserUpdate};
use crate::domain::quotas::{self, LimitKind};
use crate::domain::{identity, names, HubError, HubResult, Services};

/// How long a started login may take at the provider.
const PENDING_FOR: Duration = Duration::from_secs(600);
/// Most logins waiting at the provider at once; the oldest are dropped beyond it.
const MAX_PENDING: usize = 10_000;
/// Clock skew allowed on `exp`, `iat` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 60;
/// The group property that marks a hub group as filled by campus logins (`manage_groups`).
const CAMPUS_GROUP_PROPERTY: &str = "campus_login";

/// The endpoints named by the provider's discovery document.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
}

/// The token response's `id_token`, beside OAuth2's standard fields.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl ExtraTokenFields for IdTokenField {}

type Tokens = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An OAuth2 client with its authorization and token endpoints set.
type ProviderClient = oauth2::Client<
    BasicErrorResponse,
    Tokens,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// A login sent to the provider and not yet back.
#[derive(Debug)]
struct PendingLogin {
    nonce: String,
    code_verifier: Option<String>,
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

/// What asking the provider again about a user found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refreshed {
    /// Still vouched for and allowed; the account is up to date.
    Kept,
    /// No longer: the user was turned away, for this reason.
    Refused(String),
    /// Nothing to refresh with: no `auth_state` kept, or no refresh token in it.
    NotKept,
}

/// The `auth_state` key that keeps a refresh's refusal until the next successful login.
const REFUSED_KEY: &str = "refused";

/// A quota class with its limits read.
#[derive(Debug, Clone)]
struct QuotaClass {
    name: String,
    groups: Vec<String>,
    limits: Limits,
}

/// The client of one identity provider, shared by every request.
pub struct CampusLogin {
    kind: AuthKind,
    config: OidcConfig,
    secret: String,
    quota_classes: Vec<QuotaClass>,
    http: reqwest::Client,
    discovery: tokio::sync::Mutex<Option<Discovery>>,
    keys: tokio::sync::Mutex<HashMap<String, DecodingKey>>,
    pending: tokio::sync::Mutex<HashMap<String, PendingLogin>>,
    /// A lock per user a refresh is asked for (see [`CampusLogin::refresh`]).
    refreshing: tokio::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for CampusLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CampusLogin")
            .field("kind", &self.kind)
            .field("issuer", &self.config.issuer)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

fn provider_error(what: &str, e: impl std::fmt::Display) -> HubError {
    tracing::warn!(error = %e, "campus login: {what}");
    HubError::Upstream(format!(
        "The identity provider could not be reached or answered wrongly ({what}). Try again in a moment; if it goes on, tell your administrator."
    ))
}

fn refused(why: impl Into<String>) -> HubError {
    let why = why.into();
    tracing::warn!(reason = %why, "campus login refused");
    HubError::Forbidden(why)
}

impl CampusLogin {
    /// A client for this provider; the secret is read now (`client_secret_file`) and the quota
    /// classes' limits checked.
    pub fn new(config: &OidcConfig, kind: AuthKind) -> HubResult<Self> {
        let secret = config
            .secret()
            .map_err(|e| HubError::Internal(e.to_string()))?;
        let quota_classes = config
            .quota_classes
            .iter()
            .map(|c| {
                let limits = quotas::parse_limits(Some(&c.limits), LimitKind::Quota)
                    .map_err(|e| HubError::Internal(format!("quota class {:?}: {e}", c.name)))?;
                Ok(QuotaClass {
                    name: c.name.clone(),
                    groups: c.groups.clone(),
                    limits,
                })
            })
            .collect::<HubResult<Vec<_>>>()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HubError::Internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            kind,
            config: config.clone(),
            secret,
            quota_classes,
            http,
            discovery: tokio::sync::Mutex::new(None),
            keys: tokio::sync::Mutex::new(HashMap::new()),
            pending: tokio::sync::Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The name on the login button.
    pub fn provider_name(&self) -> &str {
        &self.config.provider_name
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

    /// The authorization and token endpoints: from discovery with OpenID Connect, else as
    /// configured.
    async fn endpoints(&self) -> HubResult<(String, String)> {
        match self.kind {
            AuthKind::OAuth2 => Ok((
                self.config.authorize_url.clone(),
                self.config.token_url.clone(),
            )),
            _ => {
                let d = self.discovery().await?;
                Ok((d.authorization_endpoint, d.token_endpoint))
            }
        }
    }

    async fn client(&self) -> HubResult<ProviderClient> {
        let (authorize, token) = self.endpoints().await?;
        Ok(
            oauth2::Client::new(ClientId::new(self.config.client_id.clone()))
                .set_client_secret(ClientSecret::new(self.secret.clone()))
                .set_auth_uri(
                    AuthUrl::new(authorize)
                        .map_err(|e| provider_error("authorization endpoint", e))?,
                )
                .set_token_uri(
                    TokenUrl::new(token).map_err(|e| provider_error("token endpoint", e))?,
                ),
        )
    }

    /// Where logging out sends the browser after Xiji's session ended, if anywhere: with
    /// OpenID Connect the provider's end-session endpoint (RP-initiated logout, coming back to
    /// `back`), with OAuth2 the configured `logout_url` as it is.
    pub async fn sign_out_url(&self, back: &str) -> Option<String> {
        if self.kind == AuthKind::OAuth2 {
            return self.config.logout_url.clone();
        }
        let endpoint = self.discovery().await.ok()?.end_session_endpoint?;
        let mut url = url::Url::parse(&endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", back);
        Some(url.into())
    }

    /// Starts a login: remembers `state`, `nonce` and the PKCE verifier, and returns the
    /// provider's authorization URL.
    pub async fn start(&self, redirect_uri: &str, next: Option<String>) -> HubResult<LoginStart> {
        let client = self.client().await?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned())
            .map_err(|e| provider_error("callback URL", e))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random().secret().clone();
        let mut scopes: Vec<String> = Vec::new();
        if self.kind == AuthKind::Oidc {
            scopes.push("openid".to_owned());
        }
        for s in &self.config.scopes {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_redirect_uri(Cow::Owned(redirect))
            .add_scopes(scopes.into_iter().map(Scope::new));
        if self.config.pkce {
            request = request.set_pkce_challenge(challenge);
        }
        if self.kind == AuthKind::Oidc {
            request = request.add_extra_param("nonce", nonce.clone());
        }
        let (url, state) = request.url();
        let state = state.secret().clone();
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
                code_verifier: self.config.pkce.then(|| verifier.secret().clone()),
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
    /// the caller), used once and young; the code is exchanged, who the user is read (the ID
    /// token checked, or the user-info endpoint asked), then the account is created or updated.
    /// Every refusal is a 403 and creates nothing.
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
        let tokens = self.exchange(&pending, code).await?;
        let claims = match self.kind {
            AuthKind::OAuth2 => self.user_info(&self.config.userinfo_url, &tokens).await?,
            _ => {
                let discovery = self.discovery().await?;
                let id_token = tokens
                    .extra_fields()
                    .id_token
                    .as_deref()
                    .ok_or_else(|| refused("The identity provider sent no ID token."))?;
                self.verify(&discovery, id_token, Some(&pending.nonce))
                    .await?
            }
        };
        let user = self.admit(hub, &claims, &tokens).await?;
        Ok(CampusUser {
            user,
            next: pending.next,
        })
    }

    async fn exchange(&self, pending: &PendingLogin, code: &str) -> HubResult<Tokens> {
        let client = self.client().await?;
        let redirect = RedirectUrl::new(pending.redirect_uri.clone())
            .map_err(|e| provider_error("callback URL", e))?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect));
        if let Some(verifier) = &pending.code_verifier {
            request = request.set_pkce_verifier(PkceCodeVerifier::new(verifier.clone()));
        }
        request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(answer) => refused(format!(
                    "The identity provider refused the sign-in code ({}). Start again from the login page.",
                    answer.error()
                )),
                other => provider_error("token endpoint", other),
            })
    }

    /// The claims a user-info endpoint gives for the access token.
    async fn user_info(&self, url: &str, tokens: &Tokens) -> HubResult<Map<String, Value>> {
        let response = self
            .http
            .get(url)
            .bearer_auth(tokens.access_token().secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| provider_error("user-info endpoint", e))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(refused(
                "The identity provider did not accept its own access token at the user-info endpoint. Start again from the login page.",
            ));
        }
        if !status.is_success() {
            return Err(provider_error("user-info endpoint", status));
        }
        match response
            .json::<Value>()
            .await
            .map_err(|e| provider_error("user-info answer", e))?
        {
            Value::Object(claims) => Ok(claims),
            _ => Err(provider_error("user-info answer", "not a JSON object")),
        }
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
        nonce: Option<&str>,
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
        // A refreshed ID token answers no authorization request, so it has no nonce to match.
        if nonce.is_some() && claims.get("nonce").and_then(Value::as_str) != nonce {
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
        // What the role, the allowed groups and the quota classes are matched against: the
        // groups and the values of `role_claim` (a string or a list of them).
        let mut values = groups.clone();
        match cfg.role_claim.as_ref().and_then(|c| claims.get(c)) {
            Some(Value::String(v)) => values.push(v.clone()),
            Some(Value::Array(items)) => {
                values.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
        let in_any = |list: &[String]| values.iter().any(|g| list.contains(g));
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
        let mut hub_groups: Vec<String> = Vec::new();
        for g in &groups {
            let mapped = if cfg.group_map.is_empty() {
                Some(g.as_str())
            } else {
                cfg.group_map.get(g).map(String::as_str)
            };
            if let Some(hub_name) = mapped {
                if names::check_name("group", hub_name).is_ok()
                    && !hub_groups.iter().any(|h| h == hub_name)
                {
                    hub_groups.push(hub_name.to_owned());
                }
            }
        }
        Ok(ClaimedIdentity {
            name,
            role,
            groups: hub_groups,
            provider_groups: values,
        })
    }

    /// The quota class the claims name: `quota_class_claim`'s value, else the first class one
    /// of the user's groups is in.
    fn quota_class(&self, claims: &Map<String, Value>, groups: &[String]) -> Option<&QuotaClass> {
        let named = self
            .config
            .quota_class_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str);
        if let Some(name) = named {
            if let Some(class) = self.quota_classes.iter().find(|c| c.name == name) {
                return Some(class);
            }
        }
        self.quota_classes
            .iter()
            .find(|c| c.groups.iter().any(|g| groups.contains(g)))
    }

    /// The user's `auth_state`, as JupyterHub's OAuthenticator builds it: the tokens, the
    /// whole token response and the claims (`oauth_user`).
    fn auth_state(tokens: &Tokens, claims: &Map<String, Value>) -> Value {
        json!({
            "access_token": tokens.access_token().secret(),
            "refresh_token": tokens.refresh_token().map(|t| t.secret()),
            "id_token": tokens.extra_fields().id_token,
            "scope": tokens
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "token_response": serde_json::to_value(tokens).unwrap_or(Value::Null),
            "oauth_user": claims,
        })
    }

    /// Creates the account on first login, else brings its role, groups, quota class and
    /// `auth_state` up to date.
    async fn admit(
        &self,
        hub: &Arc<Services>,
        claims: &Map<String, Value>,
        tokens: &Tokens,
    ) -> HubResult<UserRow> {
        let identity = match self.identity_from(claims) {
            Ok(identity) => identity,
            Err(refusal) => {
                self.turn_away(hub, claims).await;
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
        self.bring_up_to_date(
            hub,
            &user,
            &identity,
            claims,
            Self::auth_state(tokens, claims),
        )
        .await?;
        hub.store.touch_user(user.id, clock::now()).await?;
        hub.store
            .user_by_id(user.id)
            .await?
            .ok_or_else(|| HubError::NotFound("User vanished".into()))
    }

    /// Makes the account what the provider says: role, groups, quota class, `auth_state`.
    async fn bring_up_to_date(
        &self,
        hub: &Services,
        user: &UserRow,
        identity: &ClaimedIdentity,
        claims: &Map<String, Value>,
        state: Value,
    ) -> HubResult<()> {
        hub.store
            .update_user(
                user.id,
                &UserUpdate {
                    admin: Some(identity.role == AccountRole::Admin),
                    account_role: Some(identity.role),
                    ..UserUpdate::default()
                },
            )
            .await?;
        if self.config.manage_groups {
            self.sync_groups(hub, user, &identity.groups).await?;
        }
        let class = self.quota_class(claims, &identity.provider_groups);
        quotas::follow_quota_class(
            &hub.store,
            user,
            class.map(|c| (c.name.as_str(), &c.limits)),
        )
        .await?;
        if let Some(keeper) = &hub.auth_states {
            keeper.save(&hub.store, user.id, &state).await?;
        }
        hub.invalidate_auth();
        Ok(())
    }

    /// Asks the provider again about a user a campus login admitted, with the refresh token
    /// kept in their `auth_state` (JupyterHub's `refresh_user`). Still vouched for and allowed:
    /// role, groups, quota class and tokens are brought up to date. No longer (the provider
    /// refuses the refresh token, or the fresh claims are not allowed here): the user is turned
    /// away as at a refused login (signed out everywhere, clusters released as at logout) and
    /// the refusal kept in `auth_state` until they sign in again. A provider that cannot be
    /// reached is an error and changes nothing.
    pub async fn refresh(&self, hub: &Arc<Services>, user: &UserRow) -> HubResult<Refreshed> {
        let Some(keeper) = &hub.auth_states else {
            return Ok(Refreshed::NotKept);
        };
        // One refresh at a time per user: a provider that rotates refresh tokens takes a second
        // use of the same token as theft and ends the grant. Whoever waited finds the state the
        // first one wrote.
        let asked_at = clock::now();
        let lock = Arc::clone(self.refreshing.lock().await.entry(user.id).or_default());
        let _one_at_a_time = lock.lock().await;
        let state = keeper.load(&hub.store, user.id).await?;
        if hub
            .store
            .auth_state_updated(user.id)
            .await?
            .is_some_and(|t| t >= asked_at)
        {
            return Ok(match state.get(REFUSED_KEY).and_then(Value::as_str) {
                Some(why) => Refreshed::Refused(why.to_owned()),
                None => Refreshed::Kept,
            });
        }
        let refused_before = state
            .get(REFUSED_KEY)
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(refresh_token) = state
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|_| refused_before.is_none())
        else {
            // Nothing to ask with: written again so that it is not due again at once.
            keeper.save(&hub.store, user.id, &state).await?;
            return Ok(refused_before.map_or(Refreshed::NotKept, Refreshed::Refused));
        };
        let client = self.client().await?;
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .request_async(&self.http)
            .await;
        let tokens = match answer {
            Ok(tokens) => tokens,
            Err(RequestTokenError::ServerResponse(answer)) => {
                let why = format!(
                    "The identity provider no longer accepts your sign-in ({}). Sign in again.",
                    answer.error()
                );
                return self.refuse_on_refresh(hub, user, state, why).await;
            }
            Err(other) => return Err(provider_error("token endpoint (refresh)", other)),
        };
        let claims = match self.kind {
            AuthKind::OAuth2 => self.user_info(&self.config.userinfo_url, &tokens).await?,
            _ => {
                let discovery = self.discovery().await?;
                match (
                    &tokens.extra_fields().id_token,
                    &discovery.userinfo_endpoint,
                ) {
                    (Some(id_token), _) => match self.verify(&discovery, id_token, None).await {
                        Ok(claims) => claims,
                        Err(HubError::Forbidden(why)) => {
                            return self.refuse_on_refresh(hub, user, state, why).await
                        }
                        Err(e) => return Err(e),
                    },
                    (None, Some(url)) => self.user_info(url, &tokens).await?,
                    (None, None) => state
                        .get("oauth_user")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default(),
                }
            }
        };
        let identity = match self.identity_from(&claims) {
            Ok(identity) if identity.name == user.name => identity,
            Ok(other) => {
                let why = format!(
                    "The identity provider now names this account {:?}. Sign in again.",
                    other.name
                );
                return self.refuse_on_refresh(hub, user, state, why).await;
            }
            Err(HubError::Forbidden(why)) => {
                return self.refuse_on_refresh(hub, user, state, why).await
            }
            Err(e) => return Err(e),
        };
        let mut fresh = Self::auth_state(&tokens, &claims);
        // A provider that does not rotate refresh tokens sends none: the old one still serves.
        if fresh["refresh_token"].is_null() {
            fresh["refresh_token"] = Value::from(refresh_token);
        }
        self.bring_up_to_date(hub, user, &identity, &claims, fresh)
            .await?;
        tracing::info!(user.name = %user.name, role = %identity.role.as_str(), "campus login refreshed");
        Ok(Refreshed::Kept)
    }

    async fn refuse_on_refresh(
        &self,
        hub: &Arc<Services>,
        user: &UserRow,
        mut state: Value,
        why: String,
    ) -> HubResult<Refreshed> {
        tracing::warn!(user.name = %user.name, reason = %why, "campus login refresh refused");
        self.turn_away_user(hub, user.clone()).await;
        if let (Some(keeper), Some(map)) = (&hub.auth_states, state.as_object_mut()) {
            for key in [
                "access_token",
                "refresh_token",
                "id_token",
                "token_response",
            ] {
                map.remove(key);
            }
            map.insert(REFUSED_KEY.into(), Value::from(why.as_str()));
            keeper.save(&hub.store, user.id, &state).await?;
        }
        Ok(Refreshed::Refused(why))
    }

    /// A known user the provider vouches for but who may no longer sign in (moved out of the
    /// allowed groups).
    async fn turn_away(&self, hub: &Arc<Services>, claims: &Map<String, Value>) {
        let Some(raw) = claims
            .get(&self.config.username_claim)
            .and_then(Value::as_str)
        else {
            return;
        };
        match hub.store.user(&names::normalize_user(raw)).await {
            Ok(Some(user)) => self.turn_away_user(hub, user).await,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "campus login: cannot look the refused user up"),
        }
    }

    /// Signs a refused user out of every browser and lets their running clusters follow the
    /// release policy of logout.
    async fn turn_away_user(&self, hub: &Arc<Services>, user: UserRow) {
        match identity::close_sessions_of(&hub.store, &hub.auth, user.id).await {
            Ok(n) => tracing::info!(user.name = %user.name, sessions = n,
                "campus login refused: the user's sessions ended"),
            Err(e) => {
                tracing::warn!(error = %e, "campus login: cannot end the refused user's sessions")
            }
        }
        crate::domain::release::release_on_logout(hub, user);
    }

    /// Puts the user in each of the provider's groups (creating missing ones, marked as filled
    /// by campus logins) and takes them out of marked groups the provider no longer names.
    /// Groups made by hand are never emptied by a login.
    async fn sync_groups(
        &self,
        hub: &Services,
        user: &UserRow,
        wanted: &[String],
    ) -> HubResult<()> {
        let current = hub.store.groups_of(&user.name).await?;
        for name in wanted {
            if current.contains(name) {
                continue;
            }
            let group = match hub.store.group(name).await? {
                Some(g) => g,
                None => {
                    hub.store
                        .create_group(name, &json!({ CAMPUS_GROUP_PROPERTY: true }))
                        .await?
                }
            };
            hub.store.add_group_members(group.id, &[user.id]).await?;
        }
        for name in current.iter().filter(|g| !wanted.contains(g)) {
            if let Some(group) = hub.store.group(name).await? {
                let from_campus = serde_json::from_str::<Value>(&group.properties)
                    .ok()
                    .and_then(|p| p.get(CAMPUS_GROUP_PROPERTY).and_then(Value::as_bool))
                    .unwrap_or(false);
                if from_campus {
                    hub.store.remove_group_members(group.id, &[user.id]).await?;
                }
            }
        }
        Ok(())
    }
}

/// Most users asked again per run of the refresh loop.
const REFRESH_BATCH: i64 = 200;

/// How often the refresh loop looks for users due: `refresh_age`, at most a minute apart.
pub fn refresh_every(hub: &Services) -> Option<Duration> {
    let age = hub.config.auth.refresh_age;
    (hub.campus.is_some() && hub.auth_states.is_some() && age > 0.0)
        .then(|| Duration::from_secs_f64(age.clamp(1.0, 60.0)))
}

/// The cutoff before which a user's last word from the provider is too old.
fn refresh_cutoff(hub: &Services) -> clock::Micros {
    clock::now() - (hub.config.auth.refresh_age * 1e6) as i64
}

/// The refresh loop's step: asks the provider again about the users signed in (or with a
/// server) whose last word from it is older than `refresh_age`.
pub async fn refresh_due(hub: &Arc<Services>) -> HubResult<()> {
    let Some(campus) = hub.campus.clone() else {
        return Ok(());
    };
    let due = hub
        .store
        .auth_states_due(refresh_cutoff(hub), clock::now(), REFRESH_BATCH)
        .await?;
    for user_id in due {
        let Some(user) = hub.store.user_by_id(user_id).await? else {
            continue;
        };
        if let Err(e) = campus.refresh(hub, &user).await {
            tracing::warn!(user.name = %user.name, error = %e, "campus login refresh failed");
        }
    }
    Ok(())
}

/// Before a start (JupyterHub's `refresh_pre_spawn`): a user whose last word from the provider
/// is older than `refresh_age` is asked about again, and one the provider no longer vouches for
/// (now or at an earlier refresh) may not start anything: 403 with the reason. A provider that
/// cannot be reached does not stop the start.
pub async fn check_before_start(hub: &Arc<Services>, user: &UserRow) -> HubResult<()> {
    let (Some(campus), Some(keeper)) = (hub.campus.clone(), &hub.auth_states) else {
        return Ok(());
    };
    let Some(updated) = hub.store.auth_state_updated(user.id).await? else {
        return Ok(());
    };
    let outcome = if refresh_every(hub).is_some() && updated < refresh_cutoff(hub) {
        match campus.refresh(hub, user).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::warn!(user.name = %user.name, error = %e,
                    "campus login refresh before a start failed; the start goes on");
                return Ok(());
            }
        }
    } else {
        match keeper.load(&hub.store, user.id).await?.get(REFUSED_KEY) {
            Some(Value::String(why)) => Refreshed::Refused(why.clone()),
            _ => Refreshed::Kept,
        }
    };
    match outcome {
        Refreshed::Refused(why) => Err(HubError::Forbidden(why)),
        Refreshed::Kept | Refreshed::NotKept => Ok(()),
    }
}

/// Who the provider says the user is.
#[derive(Debug)]
struct ClaimedIdentity {
    name: String,
    role: AccountRole,
    /// The hub groups they belong in (after `group_map`).
    groups: Vec<String>,
    /// The provider's own group names and `role_claim`'s values (for the quota classes).
    provider_groups: Vec<String>,
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
        CampusLogin::new(&cfg, AuthKind::Oidc).unwrap()
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

    #[test]
    fn a_group_map_renames_provider_groups_and_keeps_only_those_it_names() {
        let c = login(|c| {
            c.group_map = [
                ("cn=ml-101,ou=courses".to_owned(), "ml-101".to_owned()),
                ("cn=teachers".to_owned(), "staff".to_owned()),
            ]
            .into();
            c.teacher_groups = vec!["cn=teachers".into()];
        });
        let id = c
            .identity_from(&claims(json!({
                "preferred_username": "tom",
                "groups": ["cn=ml-101,ou=courses", "cn=teachers", "cn=printers"],
            })))
            .unwrap();
        assert_eq!(id.groups, ["ml-101", "staff"]);
        assert_eq!(
            id.role,
            AccountRole::Teacher,
            "roles read the provider's names"
        );
        let plain = login(|_| {});
        let id = plain
            .identity_from(&claims(json!({
                "preferred_username": "ann",
                "groups": ["ml-101", "not a/valid group", "ml-101"],
            })))
            .unwrap();
        assert_eq!(
            id.groups,
            ["ml-101"],
            "invalid names and repeats are dropped"
        );
    }

    #[test]
    fn the_quota_class_is_the_one_the_claim_names_else_the_first_a_group_is_in() {
        use crate::config::QuotaClassConfig;
        let c = login(|c| {
            c.quota_class_claim = Some("tier".into());
            c.quota_classes = vec![
                QuotaClassConfig {
                    name: "gpu-lab".into(),
                    groups: vec!["gpu-research".into()],
                    limits: json!({"gpus": 2, "memory": "64G"}),
                },
                QuotaClassConfig {
                    name: "course".into(),
                    groups: vec!["ml-101".into(), "gpu-research".into()],
                    limits: json!({"cpus": 4}),
                },
            ];
        });
        let class = |v: serde_json::Value, groups: &[&str]| {
            let groups: Vec<String> = groups.iter().map(|g| (*g).to_owned()).collect();
            c.quota_class(&claims(v), &groups).map(|q| q.name.clone())
        };
        assert_eq!(class(json!({}), &["ml-101"]).as_deref(), Some("course"));
        assert_eq!(
            class(json!({}), &["ml-101", "gpu-research"]).as_deref(),
            Some("gpu-lab"),
            "the first class in order wins"
        );
        assert_eq!(
            class(json!({"tier": "course"}), &["gpu-research"]).as_deref(),
            Some("course")
        );
        assert_eq!(
            class(json!({"tier": "gold"}), &[]),
            None,
            "an unknown class is none"
        );
        let gpu = c
            .quota_classes
            .iter()
            .find(|q| q.name == "gpu-lab")
            .unwrap();
        assert_eq!(gpu.limits.gpus, Some(2));
        assert_eq!(gpu.limits.memory_mib, Some(64 * 1024));
    }

    #[test]
    fn a_quota_class_with_unreadable_limits_stops_the_hub_with_its_name() {
        use crate::config::QuotaClassConfig;
        let cfg = OidcConfig {
            issuer: "https://id.example.edu".into(),
            client_id: "xiji".into(),
            client_secret: Some("s".into()),
            quota_classes: vec![QuotaClassConfig {
                name: "big".into(),
                groups: vec![],
                limits: json!({"cpus": "lots"}),
            }],
            ..OidcConfig::default()
        };
        let err = CampusLogin::new(&cfg, AuthKind::Oidc)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"big\"") && err.contains("cpus"), "{err}");
    }

    #[test]
    fn a_role_claim_counts_like_groups_for_roles_and_admission_but_makes_no_hub_group() {
        let c = login(|c| {
            c.role_claim = Some("affiliation".into());
            c.teacher_groups = vec!["faculty".into()];
            c.allowed_groups = vec!["student".into(), "faculty".into()];
        });
        let id = c
            .identity_from(&claims(json!({
                "preferred_username": "tom",
                "groups": ["ml-101"],
                "affiliation": ["faculty", "member"],
            })))
            .unwrap();
        assert_eq!(id.role, AccountRole::Teacher);
        assert_eq!(id.groups, ["ml-101"]);
        let id = c
            .identity_from(&claims(
                json!({"preferred_username": "ann", "affiliation": "student"}),
            ))
            .unwrap();
        assert_eq!(id.role, AccountRole::Student);
        let err = c
            .identity_from(&claims(
                json!({"preferred_username": "eve", "affiliation": "alum"}),
            ))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed"), "{err}");
    }
}
