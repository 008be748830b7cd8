//! The campus login pages (`[auth] kind = "oidc"` or `"oauth2"`), on JupyterHub
//! OAuthenticator's paths so a provider registration made for JupyterHub serves unchanged:
//! `GET /hub/oauth_login` sends the browser to the provider, `GET /hub/oauth_callback` takes it
//! back and opens the normal Xiji session. The request's `state` is also kept in a short-lived
//! cookie on the callback's path, so a callback carried to another browser (login CSRF) is
//! refused.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use minijinja::context;

use super::next::next_from_query;
use super::{encode_query, redirect, PageError, PageRequest};
use crate::domain::campus_login::CampusLogin;
use crate::domain::Services;
use crate::http::{append_cookie, cookie, set_cookie, CookieOptions};

/// The cookie holding the `state` of the login under way.
const STATE_COOKIE: &str = "xiji-oidc-state";
const STATE_COOKIE_PATH: &str = CALLBACK_PATH;
/// Where the provider sends the browser back (JupyterHub's path).
const CALLBACK_PATH: &str = "/hub/oauth_callback";
/// Where the login button leads (JupyterHub's path).
const LOGIN_PATH: &str = "/hub/oauth_login";
/// Where `/hub/logout` sends a campus session once Xiji's part of it ended.
pub(super) const LOGOUT_PATH: &str = "/hub/oauth_logout";
const STATE_COOKIE_SECONDS: i64 = 600;
/// Set on `/hub/` by a campus login: logging out then also ends the provider's session.
pub(super) const CAMPUS_SESSION_COOKIE: &str = "xiji-campus-session";

/// The campus login routes (the paths written out, as the route-listing test reads them; they
/// are the constants above).
pub(super) fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/hub/oauth_login", get(login))
        .route("/hub/oauth_callback", get(callback))
        .route("/hub/oauth_logout", get(logout))
}

/// The login page's "Log in with {provider}" button, when campus login is on.
pub(super) fn button(hub: &Services, next: Option<&str>) -> Option<minijinja::Value> {
    let campus = hub.campus.as_ref()?;
    let href = match next {
        Some(n) => format!("{LOGIN_PATH}?{}", encode_query(&[("next", n)])),
        None => LOGIN_PATH.to_owned(),
    };
    Some(context! {
        name => campus.provider_name(),
        href => href,
    })
}

fn campus(hub: &Services) -> Result<Arc<CampusLogin>, PageError> {
    hub.campus
        .clone()
        .ok_or_else(|| PageError::status(StatusCode::NOT_FOUND))
}

/// Where the provider sends the browser back: the configured URL, else under `public_url`, else
/// on the host this request came to.
fn callback_url(hub: &Services, campus: &CampusLogin, headers: &HeaderMap) -> String {
    match campus.callback_url() {
        Some(url) => url.to_owned(),
        None => format!("{}{CALLBACK_PATH}", public_base(hub, headers)),
    }
}

/// `public_url` without its trailing slash, else `http://{Host}`.
fn public_base(hub: &Services, headers: &HeaderMap) -> String {
    if let Some(public) = &hub.config.public_url {
        return public.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

fn state_cookie(hub: &Services, value: &str, max_age: i64) -> String {
    set_cookie(
        STATE_COOKIE,
        value,
        &CookieOptions {
            path: STATE_COOKIE_PATH,
            max_age: Some(max_age),
            http_only: true,
            secure: hub.config.cookies_secure(),
        },
    )
}

/// `GET /hub/oauth_login?next=…`: to the provider's authorization endpoint.
async fn login(
    State(hub): State<Arc<Services>>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let campus = campus(&hub)?;
    let redirect_uri = callback_url(&hub, &campus, &headers);
    let start = campus.start(&redirect_uri, next_from_query(&query)).await?;
    let mut response = redirect(&start.authorize_url);
    append_cookie(
        &mut response,
        &state_cookie(&hub, &start.state, STATE_COOKIE_SECONDS),
    );
    Ok(response)
}

/// `GET /hub/oauth_callback?state=…&code=…`: checks the sign-in and opens the session.
async fn callback(
    State(hub): State<Arc<Services>>,
    page: PageRequest,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let campus = campus(&hub)?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(error) = param("error") {
        tracing::warn!(error, "campus login: the provider returned an error");
        let description = param("error_description").unwrap_or_default();
        return Err(PageError::with_text(
            StatusCode::FORBIDDEN,
            format!("The identity provider did not sign you in ({error}: {description})."),
        ));
    }
    let (Some(state), Some(code)) = (param("state"), param("code")) else {
        return Err(PageError::with_text(
            StatusCode::BAD_REQUEST,
            "This sign-in link is incomplete (no state or code). Start again from the login page.",
        ));
    };
    if cookie(&headers, STATE_COOKIE) != Some(state) {
        tracing::warn!("campus login refused: state does not match this browser's");
        return Err(PageError::with_text(
            StatusCode::FORBIDDEN,
            "This sign-in was not started in this browser (state mismatch). Start again from the login page.",
        ));
    }
    let signed_in = campus.finish(&hub, state, code).await?;
    let mut response =
        super::auth::start_session(&hub, &page, &signed_in.user, signed_in.next.as_deref()).await?;
    append_cookie(&mut response, &state_cookie(&hub, "", 0));
    append_cookie(
        &mut response,
        &set_cookie(
            CAMPUS_SESSION_COOKIE,
            "1",
            &CookieOptions {
                path: "/hub/",
                max_age: Some(i64::from(hub.config.cookie_max_age_days) * 86_400),
                http_only: true,
                secure: hub.config.cookies_secure(),
            },
        ),
    );
    Ok(response)
}

/// `GET /hub/oauth_logout` (where `/hub/logout` sends a campus session once it is closed): on to
/// the provider's sign-out, which comes back to the login page; without one, straight to the
/// login page.
async fn logout(
    State(hub): State<Arc<Services>>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let campus = campus(&hub)?;
    let back = format!("{}/hub/login", public_base(&hub, &headers));
    Ok(redirect(
        campus
            .sign_out_url(&back)
            .await
            .as_deref()
            .unwrap_or("/hub/login"),
    ))
}
