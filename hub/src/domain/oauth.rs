//! The OAuth2 provider single-user servers log users in with: authorization codes (with optional
//! PKCE) exchanged for access tokens, as JupyterHub's provider does.

use base64::Engine;
use sha2::{Digest, Sha256};

use super::identity;
use super::tokens::{hash_secret, new_token, random_hex, same_secret};
use super::{HubError, HubResult};
use crate::clock;
use crate::db::{NewCode, NewToken, OAuthClientRow, Store, UserRow};
use crate::rbac::{self, Resource, IDENTIFY_RAW_SCOPES};

/// Lifetime of an authorization code.
const CODE_LIFETIME_MICROS: i64 = 10 * 60 * 1_000_000;

/// A validated authorization request.
pub struct AuthorizeRequest<'a> {
    /// The client.
    pub client_id: &'a str,
    /// Where to send the code (must be the client's registered URI).
    pub redirect_uri: Option<&'a str>,
    /// PKCE challenge.
    pub code_challenge: Option<&'a str>,
    /// PKCE method (`S256` or `plain`).
    pub code_challenge_method: Option<&'a str>,
}

/// Failures of the OAuth endpoints, in RFC 6749's vocabulary.
#[derive(Debug)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unsupported_grant_type`, `access_denied`.
    pub error: &'static str,
    /// What went wrong, for people.
    pub description: String,
}

fn oauth_err(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

/// Looks up and checks the client and redirect URI of an authorization request.
pub async fn client_for(
    store: &Store,
    req: &AuthorizeRequest<'_>,
) -> HubResult<Result<OAuthClientRow, OAuthError>> {
    let Some(client) = store.oauth_client(req.client_id).await? else {
        return Ok(Err(oauth_err(
            "invalid_client",
            format!("Unknown client_id {:?}", req.client_id),
        )));
    };
    if let Some(uri) = req.redirect_uri {
        if uri != client.redirect_uri {
            return Ok(Err(oauth_err(
                "invalid_request",
                "redirect_uri does not match the client's",
            )));
        }
    }
    if let Some(method) = req.code_challenge_method {
        if method != "S256" && method != "plain" {
            return Ok(Err(oauth_err(
                "invalid_request",
                "code_challenge_method must be S256 or plain",
            )));
        }
    }
    Ok(Ok(client))
}

/// Issues a code for a logged-in user, if the user may use the client's server. Returns the code.
pub async fn issue_code(
    store: &Store,
    user: &UserRow,
    session_id: Option<&str>,
    client: &OAuthClientRow,
    req: &AuthorizeRequest<'_>,
) -> HubResult<String> {
    let (Some(owner), Some(server)) = (&client.server_owner, &client.server_name) else {
        return Err(HubError::Forbidden(
            "This client is not a server of this hub".into(),
        ));
    };
    let scopes = identity::user_scopes(store, user).await?;
    let groups = if scopes.needs_groups() {
        store.groups_of(owner).await?
    } else {
        Vec::new()
    };
    let resource = Resource::Server {
        user: owner,
        server_name: server,
        user_groups: &groups,
    };
    if !rbac::check(&scopes, &["access:servers"], &resource).is_allowed() {
        return Err(HubError::Forbidden(format!(
            "{} may not access the server of {owner}",
            user.name
        )));
    }
    let mut granted: Vec<String> = IDENTIFY_RAW_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    granted.push(format!("access:servers!server={owner}/{server}"));
    let code = random_hex(20);
    store
        .insert_code(&NewCode {
            code_hash: &hash_secret(&code),
            client_identifier: &client.identifier,
            user_id: user.id,
            session_id,
            redirect_uri: &client.redirect_uri,
            scopes: &granted,
            code_challenge: req.code_challenge,
            code_challenge_method: req
                .code_challenge
                .map(|_| req.code_challenge_method.unwrap_or("plain")),
            expires_at: clock::now() + CODE_LIFETIME_MICROS,
        })
        .await?;
    Ok(code)
}

/// A token request (`grant_type=authorization_code`).
pub struct TokenRequest<'a> {
    /// Client id.
    pub client_id: &'a str,
    /// Client secret (the server's API token).
    pub client_secret: &'a str,
    /// The code.
    pub code: &'a str,
    /// Must match the code's.
    pub redirect_uri: Option<&'a str>,
    /// PKCE verifier.
    pub code_verifier: Option<&'a str>,
}

/// The access token response.
pub struct Issued {
    /// The token.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Space-separated raw scopes.
    pub scope: String,
}

/// Exchanges a code for an access token.
pub async fn exchange(
    store: &Store,
    req: &TokenRequest<'_>,
    max_age_days: u32,
) -> HubResult<Result<Issued, OAuthError>> {
    let Some(client) = store.oauth_client(req.client_id).await? else {
        return Ok(Err(oauth_err("invalid_client", "Unknown client")));
    };
    if req.client_secret.is_empty()
        || !same_secret(&hash_secret(req.client_secret), &client.secret_hash)
    {
        return Ok(Err(oauth_err(
            "invalid_client",
            "Client authentication failed",
        )));
    }
    let Some(code) = store.take_code(&hash_secret(req.code)).await? else {
        return Ok(Err(oauth_err(
            "invalid_grant",
            "Unknown or already used code",
        )));
    };
    if code.client_identifier != client.identifier || code.expires_at < clock::now() {
        return Ok(Err(oauth_err(
            "invalid_grant",
            "The code is expired or belongs to another client",
        )));
    }
    if req.redirect_uri.is_some_and(|u| u != code.redirect_uri) {
        return Ok(Err(oauth_err(
            "invalid_grant",
            "redirect_uri does not match the authorization request",
        )));
    }
    if let Some(challenge) = &code.code_challenge {
        let Some(verifier) = req.code_verifier else {
            return Ok(Err(oauth_err("invalid_grant", "code_verifier is required")));
        };
        let computed = if code.code_challenge_method.as_deref() == Some("S256") {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()))
        } else {
            verifier.to_owned()
        };
        if !same_secret(&computed, challenge) {
            return Ok(Err(oauth_err(
                "invalid_grant",
                "code_verifier does not match",
            )));
        }
    }
    let scopes: Vec<String> =
        serde_json::from_str(&code.scopes).map_err(crate::db::DbError::from)?;
    let token = new_token();
    let expires_in = i64::from(max_age_days) * 86_400;
    store
        .insert_token(&NewToken {
            hashed: &hash_secret(&token),
            kind: "oauth",
            user_id: Some(code.user_id),
            service_id: None,
            server_id: None,
            scopes: &scopes,
            note: "",
            session_id: code.session_id.as_deref(),
            oauth_client: Some(&client.identifier),
            created: clock::now(),
            expires_at: Some(clock::now() + expires_in * 1_000_000),
        })
        .await?;
    Ok(Ok(Issued {
        access_token: token,
        expires_in,
        scope: scopes.join(" "),
    }))
}
