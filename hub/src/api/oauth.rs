//! `/hub/api/oauth2/authorize` and `/hub/api/oauth2/token`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, RawForm, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::json;
use crate::domain::identity::{self, Principal};
use crate::domain::oauth::{self, AuthorizeRequest, OAuthError, TokenRequest};
use crate::domain::Services;
use crate::error::ApiError;
use crate::http::{cookie, LOGIN_COOKIE};

fn oauth_error(e: OAuthError) -> Response {
    let status = if e.error == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    json(
        status,
        json!({"error": e.error, "error_description": e.description}),
    )
}

/// `GET /hub/api/oauth2/authorize`: logged-in users are sent back to the server with a code;
/// others to the login page first.
pub async fn authorize(
    State(hub): State<Arc<Services>>,
    Query(q): Query<HashMap<String, String>>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let client_id = q.get("client_id").map(String::as_str).unwrap_or_default();
    if q.get("response_type").is_some_and(|t| t != "code") {
        return Ok(oauth_error(OAuthError {
            error: "unsupported_response_type",
            description: "Only response_type=code is supported".into(),
        }));
    }
    let req = AuthorizeRequest {
        client_id,
        redirect_uri: q.get("redirect_uri").map(String::as_str),
        code_challenge: q.get("code_challenge").map(String::as_str),
        code_challenge_method: q.get("code_challenge_method").map(String::as_str),
    };
    let client = match oauth::client_for(&hub.store, &req).await? {
        Ok(c) => c,
        Err(e) => return Ok(oauth_error(e)),
    };
    let caller = match cookie(&parts.headers, LOGIN_COOKIE) {
        Some(c) => identity::caller_for_session(&hub.store, &hub.auth, c).await?,
        None => None,
    };
    let Some(caller) = caller else {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/hub/");
        let next = serde_urlencoded::to_string([("next", here)]).unwrap_or_default();
        return Ok(Redirect::to(&format!("/hub/login?{next}")).into_response());
    };
    let Principal::User(user) = &caller.principal else {
        return Err(ApiError::missing_credentials());
    };
    let code = oauth::issue_code(
        &hub.store,
        user,
        caller.session_id.as_deref(),
        &client,
        &req,
    )
    .await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = q.get("state") {
        params.push(("state", state));
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    let sep = if client.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok((
        StatusCode::FOUND,
        [(
            header::LOCATION,
            format!("{}{sep}{query}", client.redirect_uri),
        )],
    )
        .into_response())
}

/// `POST /hub/api/oauth2/token`: code → access token.
pub async fn token(
    State(hub): State<Arc<Services>>,
    RawForm(form): RawForm,
) -> Result<Response, ApiError> {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&form)
        .map_err(|e| ApiError::bad_request(format!("Invalid form body: {e}")))?;
    let get = |k: &str| form.get(k).map(String::as_str);
    if get("grant_type") != Some("authorization_code") {
        return Ok(oauth_error(OAuthError {
            error: "unsupported_grant_type",
            description: "Only grant_type=authorization_code is supported".into(),
        }));
    }
    let (Some(client_id), Some(code)) = (get("client_id"), get("code")) else {
        return Ok(oauth_error(OAuthError {
            error: "invalid_request",
            description: "client_id and code are required".into(),
        }));
    };
    let req = TokenRequest {
        client_id,
        client_secret: get("client_secret").unwrap_or_default(),
        code,
        redirect_uri: get("redirect_uri"),
        code_verifier: get("code_verifier"),
    };
    match oauth::exchange(&hub.store, &req, hub.config.cookie_max_age_days).await? {
        Ok(issued) => Ok(json(
            StatusCode::OK,
            json!({"access_token": issued.access_token, "token_type": "Bearer",
                   "expires_in": issued.expires_in, "scope": issued.scope}),
        )),
        Err(e) => Ok(oauth_error(e)),
    }
}
