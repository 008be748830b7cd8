//! What every HTTP face of the hub (`api`, `web`, `desktop`) reads from a request the same way:
//! cookies, the caller (API token, else the login cookie), and XSRF protection.
//!
//! XSRF is a double submit: the `_xsrf` cookie (Path=/hub/) must equal the `_xsrf` field of a
//! form post, or, for the pages' calls to the REST API, the `X-XSRFToken` header.

use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::domain::identity::{self, Caller};
use crate::domain::{tokens, HubResult, Services};

/// Name of the hub's login cookie (JupyterHub's).
pub const LOGIN_COOKIE: &str = "jupyterhub-hub-login";
/// Name of the session-id cookie (JupyterHub's).
pub const SESSION_COOKIE: &str = "jupyterhub-session-id";
/// Name of the XSRF cookie.
pub const XSRF_COOKIE: &str = "_xsrf";
/// Name of the hidden form field carrying the XSRF token.
pub const XSRF_FIELD: &str = "_xsrf";
/// The header the pages' API calls carry the XSRF token in.
const XSRF_HEADER: &str = "x-xsrftoken";

/// Reads a cookie's value from the request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Attributes of a cookie the hub sets.
pub struct CookieOptions<'a> {
    /// `Path=`.
    pub path: &'a str,
    /// `Max-Age=` in seconds; `None` for a browser-session cookie.
    pub max_age: Option<i64>,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
}

/// A `Set-Cookie` value; every cookie is `SameSite=Lax`.
pub fn set_cookie(name: &str, value: &str, options: &CookieOptions<'_>) -> String {
    let mut cookie = format!("{name}={value}; Path={}; SameSite=Lax", options.path);
    if let Some(age) = options.max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if options.http_only {
        cookie.push_str("; HttpOnly");
    }
    if options.secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// Appends a `Set-Cookie` header (a value that is not a valid header is dropped).
pub fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The token in `Authorization: token X` or `Bearer X` (case-insensitive), as JupyterHub reads it.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    if (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty()
        && !token.contains(char::is_whitespace)
    {
        Some(token)
    } else {
        None
    }
}

/// Why a request's caller could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// A cookie-authenticated unsafe request without the matching XSRF header.
    #[error("'_xsrf' argument missing from POST")]
    Xsrf,
    /// The lookup failed.
    #[error(transparent)]
    Hub(#[from] crate::domain::HubError),
}

/// The caller of an API-style request: API token first, then the login cookie (with the XSRF
/// header checked on unsafe methods). `None` when neither is present or valid.
pub async fn resolve_caller(
    hub: &Services,
    parts: &Parts,
) -> Result<Option<Arc<Caller>>, CallerError> {
    if let Some(token) = bearer_token(&parts.headers) {
        return Ok(identity::caller_for_token(&hub.store, &hub.auth, token).await?);
    }
    let Some(caller) = session_caller(hub, &parts.headers).await? else {
        return Ok(None);
    };
    if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let expected = cookie(&parts.headers, XSRF_COOKIE);
        let given = parts.headers.get(XSRF_HEADER).and_then(|v| v.to_str().ok());
        if expected.is_none() || expected != given {
            return Err(CallerError::Xsrf);
        }
    }
    Ok(Some(caller))
}

/// The caller of the login cookie, if it names a live session.
pub async fn session_caller(hub: &Services, headers: &HeaderMap) -> HubResult<Option<Arc<Caller>>> {
    match cookie(headers, LOGIN_COOKIE) {
        Some(value) => identity::caller_for_session(&hub.store, &hub.auth, value).await,
        None => Ok(None),
    }
}

/// The XSRF cookie, if it looks like one this hub issued.
pub fn xsrf_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, XSRF_COOKIE)
        .filter(|v| (16..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A fresh XSRF token.
pub fn new_xsrf_token() -> String {
    tokens::random_hex(16)
}

/// Whether a form post's `_xsrf` field equals the cookie (compared in constant time).
pub fn xsrf_form_matches(headers: &HeaderMap, given: &str) -> bool {
    let expected = cookie(headers, XSRF_COOKIE).unwrap_or_default();
    let same: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
    !expected.is_empty() && same
}
