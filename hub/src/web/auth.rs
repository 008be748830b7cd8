//! Login, logout, the language switch, and the XSRF check of form posts (cookies and the double
//! submit itself are in `crate::http`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Extension;
use bytes::Bytes;
use minijinja::context;

use super::i18n::{Lang, LANG_COOKIE};
use super::next::{next_from_query, safe_next};
use super::{redirect, PageError, PageRequest};
use crate::clock;
use crate::config::LocalLogins;
use crate::db::UserRow;
use crate::domain::Services;
use crate::domain::{accounts, identity, names};
use crate::http::{
    self, append_cookie, cookie, set_cookie, CookieOptions, LOGIN_COOKIE, SESSION_COOKIE,
    XSRF_FIELD,
};

/// Checks a form post's `_xsrf` field against the cookie, in constant time; 403 otherwise.
pub(crate) fn check_xsrf(
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), PageError> {
    let given = form.get(XSRF_FIELD).map(String::as_str).unwrap_or_default();
    if !http::xsrf_form_matches(headers, given) {
        tracing::warn!("form post refused: _xsrf missing or wrong");
        return Err(PageError::with_key(StatusCode::FORBIDDEN, "xsrf_failed"));
    }
    Ok(())
}

/// Parses a form body (`application/x-www-form-urlencoded`); a later duplicate key wins.
pub(crate) fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, PageError> {
    parse_form_pairs(body).map(|pairs| pairs.into_iter().collect())
}

/// A form body as its pairs, in order (a field may repeat).
pub(crate) fn parse_form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|_| PageError::status(StatusCode::BAD_REQUEST))
}

fn render_login(
    hub: &Services,
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
            campus_login => super::campus_login::button(hub, next),
            local_logins => match hub.config.auth.local_logins() {
                LocalLogins::Everyone => "everyone",
                LocalLogins::Admins => "admins",
                LocalLogins::Off => "off",
            },
        },
    )
}

/// `GET /hub/login`: the form, or straight on when already logged in.
pub(crate) async fn login_page(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let next = next_from_query(&query);
    if page.user().is_some() {
        return redirect(next.as_deref().unwrap_or("/hub/home"));
    }
    render_login(&hub, &page, StatusCode::OK, next.as_deref(), "", None)
}

/// `POST /hub/login`: checks XSRF, the throttle and the password; opens a session.
pub(crate) async fn login(
    State(hub): State<Arc<Services>>,
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
            &hub,
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
    // The form again with a 403 and why.
    let refuse = |username: &str, message: String| {
        render_login(
            &hub,
            &page,
            StatusCode::FORBIDDEN,
            next.as_deref(),
            username,
            Some(message),
        )
    };
    let local_logins = hub.config.auth.local_logins();
    if local_logins == LocalLogins::Off {
        tracing::warn!(user.name = %username, "local login refused: local logins are off");
        return Ok(refuse("", page.lang.text("login_local_off").to_owned()));
    }
    let user = if username.is_empty() || password.is_empty() {
        None
    } else {
        accounts::authenticate(&hub.store, username, password).await?
    };
    let Some(user) = user else {
        hub.throttle.fail(&keys);
        tracing::warn!(user.name = %username, "login failed");
        return Ok(refuse(username, page.lang.text("login_invalid").to_owned()));
    };
    hub.throttle.succeed(&name_key);
    if local_logins == LocalLogins::Admins && !user.is_admin() {
        tracing::warn!(user.name = %user.name, "local login refused: local logins are for administrators");
        let provider = hub
            .campus
            .as_ref()
            .map(|c| c.provider_name().to_owned())
            .unwrap_or_default();
        let message = page
            .lang
            .text("login_local_admins_only")
            .replace("{provider}", &provider);
        return Ok(refuse(username, message));
    }
    start_session(&hub, &page, &user, next.as_deref()).await
}

/// Opens a session for a user who proved who they are (password or campus login): the login and
/// session cookies, then on to `next` or the home page.
pub(crate) async fn start_session(
    hub: &Services,
    page: &PageRequest,
    user: &UserRow,
    next: Option<&str>,
) -> Result<Response, PageError> {
    let (login_cookie, session_id) =
        identity::open_session(&hub.store, user, hub.config.cookie_max_age_days).await?;
    hub.store.touch_user(user.id, clock::now()).await?;
    tracing::info!(user.name = %user.name, "logged in");
    let secure = hub.config.cookies_secure();
    let max_age = Some(i64::from(hub.config.cookie_max_age_days) * 86_400);
    let mut response = redirect(next.unwrap_or("/hub/home"));
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
    State(hub): State<Arc<Services>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(value) = cookie(&headers, LOGIN_COOKIE) {
        if let Some(caller) = identity::caller_for_session(&hub.store, &hub.auth, value).await? {
            if let Some(session_id) = &caller.session_id {
                identity::close_session(&hub.store, &hub.auth, session_id).await?;
            }
            tracing::info!(user.name = %caller.principal.name(), "logged out");
            if let Some(user) = caller.user() {
                // Clusters holding the on-logout policy go now.
                crate::domain::release::release_on_logout(&hub, user.clone());
            }
        }
    }
    let secure = hub.config.cookies_secure();
    // A campus session also ends at the identity provider.
    let campus = cookie(&headers, super::campus_login::CAMPUS_SESSION_COOKIE).is_some();
    let mut response = redirect(if campus {
        super::campus_login::LOGOUT_PATH
    } else {
        "/hub/login"
    });
    let mut cleared = vec![(LOGIN_COOKIE, "/hub/"), (SESSION_COOKIE, "/")];
    if campus {
        cleared.push((super::campus_login::CAMPUS_SESSION_COOKIE, "/hub/"));
    }
    for (name, path) in cleared {
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
    State(hub): State<Arc<Services>>,
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
