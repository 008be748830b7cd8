//! Login, logout, the language switch, cookies and XSRF protection of form posts.
//!
//! XSRF is a double submit: the `_xsrf` cookie (Path=/hub/) must equal the `_xsrf` field of a
//! form post — or, for the page's calls to the REST API, the `X-XSRFToken` header, which is what
//! the API's cookie authentication checks.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use minijinja::context;
use subtle::ConstantTimeEq;

use super::i18n::{Lang, LANG_COOKIE};
use super::next::{next_from_query, safe_next};
use super::{redirect, PageError, PageRequest};
use crate::api::{cookie, LOGIN_COOKIE, SESSION_COOKIE, XSRF_COOKIE};
use crate::app::Hub;
use crate::clock;
use crate::domain::{accounts, identity, names, tokens};

/// Name of the hidden form field carrying the XSRF token.
pub const XSRF_FIELD: &str = "_xsrf";

/// Attributes of a cookie the pages set.
pub(crate) struct CookieOptions<'a> {
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
pub(crate) fn set_cookie(name: &str, value: &str, options: &CookieOptions<'_>) -> String {
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

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The XSRF cookie, if it looks like one this hub issued.
pub(crate) fn xsrf_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, XSRF_COOKIE)
        .filter(|v| (16..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A fresh XSRF token.
pub(crate) fn new_xsrf_token() -> String {
    tokens::random_hex(16)
}

/// Checks a form post's `_xsrf` field against the cookie, in constant time; 403 otherwise.
pub(crate) fn check_xsrf(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), PageError> {
    let expected = cookie(headers, XSRF_COOKIE).unwrap_or_default();
    let given = form.get(XSRF_FIELD).map(String::as_str).unwrap_or_default();
    let same: bool = expected.as_bytes().ct_eq(given.as_bytes()).into();
    if expected.is_empty() || !same {
        tracing::warn!("form post refused: _xsrf missing or wrong");
        return Err(PageError::with_key(StatusCode::FORBIDDEN, "xsrf_failed"));
    }
    Ok(())
}

/// Parses a form body (`application/x-www-form-urlencoded`); a later duplicate key wins.
pub(crate) fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, PageError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|pairs| pairs.into_iter().collect())
        .map_err(|_| PageError::status(StatusCode::BAD_REQUEST))
}

fn render_login(
    page: &PageRequest,
    status: StatusCode,
    next: Option<&str>,
    username: &str,
    error: Option<String>,
) -> Response {
    let action = match next {
        Some(n) => format!("/hub/login?{}", super::encode_query(&[("next", n)])),
        None => "/hub/login".to_owned(),
    };
    page.render_with_status(
        status,
        "login.html",
        context! {
            page => "login",
            action => action,
            username => username,
            error => error,
        },
    )
}

/// `GET /hub/login`: the form, or straight on when already logged in.
pub(crate) async fn login_page(
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let next = next_from_query(&query);
    if page.user().is_some() {
        return redirect(next.as_deref().unwrap_or("/hub/home"));
    }
    render_login(&page, StatusCode::OK, next.as_deref(), "", None)
}

/// `POST /hub/login`: checks XSRF, the throttle and the password; opens a session.
pub(crate) async fn login(
    State(hub): State<Arc<Hub>>,
    page: PageRequest,
    client: Option<Extension<proxy::ClientAddr>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let form = parse_form(&body)?;
    check_xsrf(&headers, &form)?;
    let next = next_from_query(&query).or_else(|| {
        form.get("next")
            .and_then(|n| safe_next(n))
            .map(str::to_owned)
    });
    let username = form.get("username").map(|s| s.trim()).unwrap_or_default();
    let password = form.get("password").map(String::as_str).unwrap_or_default();
    let name_key = format!("user:{}", names::normalize_user(username));
    let addr_key = client.map(|Extension(a)| format!("addr:{}", a.0.ip()));
    let mut keys = vec![name_key.as_str()];
    if let Some(a) = &addr_key {
        keys.push(a.as_str());
    }
    if let Some(seconds) = hub.throttle.locked_for(&keys) {
        tracing::warn!(user.name = %username, "login refused: throttled");
        let message = page
            .lang
            .text("login_locked")
            .replace("{seconds}", &seconds.to_string());
        let mut response = render_login(
            &page,
            StatusCode::TOO_MANY_REQUESTS,
            next.as_deref(),
            username,
            Some(message),
        );
        if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    let user = if username.is_empty() || password.is_empty() {
        None
    } else {
        accounts::authenticate(&hub.store, username, password).await?
    };
    let Some(user) = user else {
        hub.throttle.fail(&keys);
        tracing::warn!(user.name = %username, "login failed");
        let message = page.lang.text("login_invalid").to_owned();
        return Ok(render_login(
            &page,
            StatusCode::FORBIDDEN,
            next.as_deref(),
            username,
            Some(message),
        ));
    };
    hub.throttle.succeed(&name_key);
    let (login_cookie, session_id) =
        identity::open_session(&hub.store, &user, hub.config.cookie_max_age_days).await?;
    hub.store.touch_user(user.id, clock::now()).await?;
    tracing::info!(user.name = %user.name, "logged in");
    let secure = hub.config.cookies_secure();
    let max_age = Some(i64::from(hub.config.cookie_max_age_days) * 86_400);
    let mut response = redirect(next.as_deref().unwrap_or("/hub/home"));
    append_cookie(
        &mut response,
        &set_cookie(
            LOGIN_COOKIE,
            &login_cookie,
            &CookieOptions {
                path: "/hub/",
                max_age,
                http_only: true,
                secure,
            },
        ),
    );
    append_cookie(
        &mut response,
        &set_cookie(
            SESSION_COOKIE,
            &session_id,
            &CookieOptions {
                path: "/",
                max_age,
                http_only: true,
                secure,
            },
        ),
    );
    page.add_xsrf_cookie(&mut response);
    Ok(response)
}

/// `GET /hub/logout`: ends the session (revoking its OAuth tokens), clears the cookies.
pub(crate) async fn logout(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(value) = cookie(&headers, LOGIN_COOKIE) {
        if let Some(caller) = identity::caller_for_session(&hub.store, &hub.auth, value).await? {
            if let Some(session_id) = &caller.session_id {
                identity::close_session(&hub.store, &hub.auth, session_id).await?;
            }
            tracing::info!(user.name = %caller.principal.name(), "logged out");
        }
    }
    let secure = hub.config.cookies_secure();
    let mut response = redirect("/hub/login");
    for (name, path) in [(LOGIN_COOKIE, "/hub/"), (SESSION_COOKIE, "/")] {
        append_cookie(
            &mut response,
            &set_cookie(
                name,
                "",
                &CookieOptions {
                    path,
                    max_age: Some(0),
                    http_only: true,
                    secure,
                },
            ),
        );
    }
    Ok(response)
}

/// `GET /hub/lang/{code}?next=…`: remembers the language in a cookie and goes back.
pub(crate) async fn switch_language(
    State(hub): State<Arc<Hub>>,
    Path(code): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let lang = Lang::from_code(&code).ok_or_else(|| PageError::status(StatusCode::NOT_FOUND))?;
    let next = next_from_query(&query);
    let mut response = redirect(next.as_deref().unwrap_or("/hub/home"));
    append_cookie(
        &mut response,
        &set_cookie(
            LANG_COOKIE,
            lang.code(),
            &CookieOptions {
                path: "/hub/",
                max_age: Some(365 * 86_400),
                http_only: false,
                secure: hub.config.cookies_secure(),
            },
        ),
    );
    Ok(response)
}
