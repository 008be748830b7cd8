//! Server-rendered pages (login, home, tokens, admin, spawn progress, "not running"), in English
//! and Chinese. Handlers are thin: they read the request, call the domain, render a template.
//! Buttons that act on servers, tokens and users call the REST API from the page's script
//! (cookie authentication plus the `X-XSRFToken` header), as JupyterHub's pages do.

mod auth;
mod billing;
mod campus_login;
mod cluster;
#[cfg(test)]
mod cluster_tests;
mod compute_nodes;
mod datasets;
mod home_page;
mod i18n;
mod images;
mod next;
mod pages;
mod projects;
mod quotas;
mod release;
mod spawn;
mod storage_pools;
mod templates;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use minijinja::context;

pub use crate::http::XSRF_FIELD;
pub use i18n::{Lang, LANG_COOKIE};
pub use next::safe_next;

use crate::db::UserRow;
use crate::domain::identity::Caller;
use crate::domain::HubError;
use crate::domain::Services;
use crate::http;

/// The page routes. Everything outside `/hub/` that reaches the hub (no proxy route matched) is
/// redirected under `/hub/`, as JupyterHub does; unknown `/hub/` pages get the 404 page.
pub fn routes(hub: Arc<Services>) -> Router {
    Router::new()
        .route("/", get(pages::root))
        .route("/hub", get(|| async { redirect("/hub/") }))
        .route("/hub/", get(pages::root))
        .route("/hub/login", get(auth::login_page).post(auth::login))
        .route("/hub/logout", get(auth::logout))
        .route("/hub/lang/{code}", get(auth::switch_language))
        .merge(campus_login::routes())
        .route("/hub/home", get(pages::home))
        .route("/hub/token", get(pages::token))
        .route("/hub/admin", get(pages::admin))
        .route("/hub/admin/images", get(images::admin_list))
        .route(
            "/hub/admin/images/new",
            get(images::admin_new).post(images::admin_create),
        )
        .route(
            "/hub/admin/images/{id}",
            get(images::admin_edit).post(images::admin_update),
        )
        .route(
            "/hub/admin/images/{id}/{action}",
            axum::routing::post(images::admin_action),
        )
        .route(
            "/hub/admin/home-page",
            get(home_page::admin_form).post(home_page::admin_save),
        )
        .route("/hub/admin/projects", get(projects::admin_list))
        .route("/hub/admin/quotas", get(quotas::admin_page))
        .route(
            "/hub/admin/release",
            get(release::admin_page).post(release::admin_post),
        )
        .route("/hub/admin/compute-nodes", get(compute_nodes::admin_page))
        .route(
            "/hub/admin/compute-nodes/{action}",
            axum::routing::post(compute_nodes::admin_action),
        )
        .route("/hub/admin/storage", get(storage_pools::admin_list))
        .route(
            "/hub/admin/storage/new",
            axum::routing::post(storage_pools::admin_create),
        )
        .route(
            "/hub/admin/storage/{id}/{action}",
            axum::routing::post(storage_pools::admin_action),
        )
        .route("/hub/usage", get(billing::mine))
        .route("/hub/usage/users/{name}", get(billing::user))
        .route("/hub/usage/groups/{name}", get(billing::group))
        .route("/hub/usage/projects/{owner}/{name}", get(billing::project))
        .route("/hub/admin/usage", get(billing::installation))
        .route("/hub/admin/billing", get(billing::admin))
        .route("/hub/datasets", get(datasets::list))
        .route("/hub/datasets/new", get(datasets::new_form))
        .route("/hub/datasets/{owner}/{name}", get(datasets::show))
        .route("/hub/projects", get(projects::list))
        .route("/hub/projects/new", get(projects::new_form))
        .route("/hub/projects/{owner}/{name}", get(projects::show))
        .route("/hub/images", get(images::mine))
        .route(
            "/hub/images/{id}/{action}",
            axum::routing::post(images::mine_action),
        )
        .route(
            "/hub/spawn/{name}",
            get(spawn::spawn_get).post(spawn::spawn_post),
        )
        .route(
            "/hub/spawn/{name}/{server}",
            get(spawn::spawn_get).post(spawn::spawn_post),
        )
        .route("/hub/spawn-pending/{name}", get(spawn::pending))
        .route("/hub/spawn-pending/{name}/{server}", get(spawn::pending))
        .route("/hub/user/{name}", any(spawn::user_url))
        .route("/hub/user/{name}/", any(spawn::user_url))
        .route("/hub/user/{name}/{*rest}", any(spawn::user_url))
        .route("/hub/user-redirect/", get(spawn::user_redirect))
        .route("/hub/user-redirect/{*rest}", get(spawn::user_redirect))
        .route("/hub/static/{file}", get(templates::static_file))
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&hub),
            render_error_pages,
        ))
        .with_state(hub)
}

/// A `302 Found` to a local path.
pub(crate) fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => PageError::status(StatusCode::BAD_REQUEST).into_response(),
    }
}

/// `/hub/login?next=<path>`.
pub(crate) fn login_url(next: &str) -> String {
    format!("/hub/login?{}", encode_query(&[("next", next)]))
}

/// `a=1&b=2`, form-encoded.
pub(crate) fn encode_query(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// What an error page explains below its title.
#[derive(Debug, Clone)]
pub(crate) enum Detail {
    /// A message from the catalogue.
    Key(&'static str),
    /// A message from the domain (e.g. why a spawn failed).
    Text(String),
}

/// Why a page could not be shown: a redirect to the login page, or an error page (rendered in the
/// page layout and the reader's language by [`render_error_pages`]).
#[derive(Debug, Clone)]
pub(crate) enum PageError {
    /// Not logged in: go to the login page, then back to `next`.
    Login {
        /// Where to return after logging in.
        next: String,
    },
    /// An error page.
    Status {
        /// HTTP status.
        status: StatusCode,
        /// Explanation beyond the status's own text.
        detail: Option<Detail>,
    },
}

impl PageError {
    pub(crate) fn status(status: StatusCode) -> Self {
        PageError::Status {
            status,
            detail: None,
        }
    }

    pub(crate) fn with_key(status: StatusCode, key: &'static str) -> Self {
        PageError::Status {
            status,
            detail: Some(Detail::Key(key)),
        }
    }

    pub(crate) fn with_text(status: StatusCode, text: impl Into<String>) -> Self {
        PageError::Status {
            status,
            detail: Some(Detail::Text(text.into())),
        }
    }

    /// Whether this is an access refusal (404 or 403), not a failure.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            PageError::Status { status, .. }
                if *status == StatusCode::NOT_FOUND || *status == StatusCode::FORBIDDEN
        )
    }
}

impl From<HubError> for PageError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::BadRequest(m) => Self::with_text(StatusCode::BAD_REQUEST, m),
            HubError::NotFound(m) => Self::with_text(StatusCode::NOT_FOUND, m),
            HubError::Conflict(m) => Self::with_text(StatusCode::CONFLICT, m),
            HubError::Forbidden(m) => Self::with_text(StatusCode::FORBIDDEN, m),
            HubError::TooManyRequests(m) => Self::with_text(StatusCode::TOO_MANY_REQUESTS, m),
            HubError::InsufficientStorage(m) => {
                Self::with_text(StatusCode::INSUFFICIENT_STORAGE, m)
            }
            HubError::PayloadTooLarge(m) => Self::with_text(StatusCode::PAYLOAD_TOO_LARGE, m),
            HubError::Upstream(m) => Self::with_text(StatusCode::BAD_GATEWAY, m),
            HubError::Spawner(m) => Self::with_text(StatusCode::INTERNAL_SERVER_ERROR, m),
            HubError::Internal(m) => {
                tracing::error!(error = %m, "hub failure while rendering a page");
                Self::status(StatusCode::INTERNAL_SERVER_ERROR)
            }
            HubError::Db(e) => e.into(),
        }
    }
}

impl From<crate::db::DbError> for PageError {
    fn from(e: crate::db::DbError) -> Self {
        tracing::error!(error = %e, "database failure while rendering a page");
        Self::status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Marker left on an error response for [`render_error_pages`].
#[derive(Debug, Clone)]
struct ErrorPage(Option<Detail>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next } => redirect(&login_url(&next)),
            PageError::Status { status, detail } => {
                let mut response = (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    status.canonical_reason().unwrap_or("Error"),
                )
                    .into_response();
                response.extensions_mut().insert(ErrorPage(detail));
                response
            }
        }
    }
}

/// Turns [`PageError`] responses into HTML error pages in the reader's language.
async fn render_error_pages(
    State(hub): State<Arc<Services>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers().clone();
    let method = req.method().clone();
    let here = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/hub/".to_owned());
    let mut response = next.run(req).await;
    let Some(ErrorPage(detail)) = response.extensions_mut().remove::<ErrorPage>() else {
        return response;
    };
    let status = response.status();
    let page = match PageRequest::build(&hub, &headers, &here).await {
        Ok(p) => p,
        Err(_) => PageRequest::anonymous(&headers, &here),
    };
    let code = status.as_u16();
    let known = [400, 403, 404, 429, 500, 503];
    let family = if known.contains(&code) {
        code
    } else if code >= 500 {
        500
    } else {
        400
    };
    let detail_text = match detail {
        Some(Detail::Key(k)) => Some(page.lang.text(k).to_owned()),
        Some(Detail::Text(t)) => Some(t),
        None => None,
    };
    // A refused login links back to the form.
    let back = (method == Method::POST && here.starts_with("/hub/login")).then(|| here.clone());
    let mut rendered = page.render_with_status(
        status,
        "error.html",
        context! {
            page => "error",
            code => code,
            title_key => format!("error_{family}_title"),
            text_key => format!("error_{family}_text"),
            detail => detail_text,
            back => back,
        },
    );
    for cookie in response.headers().get_all(header::SET_COOKIE) {
        rendered
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    rendered
}

/// Anything no route matched. Outside `/hub/`: GETs are redirected under `/hub/` (where
/// `/hub/user/…` explains a stopped server); other methods on `/user/…` get the JSON "not
/// running" answer an API client understands.
async fn fallback(method: Method, OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path();
    if path == "/hub" || path.starts_with("/hub/") {
        return PageError::status(StatusCode::NOT_FOUND).into_response();
    }
    if let Some(rest) = path.strip_prefix("/user/") {
        if !matches!(method, Method::GET | Method::HEAD) {
            let name = rest.split('/').next().unwrap_or_default();
            return spawn::not_running_json(path, &spawn::spawn_path(name, ""));
        }
    }
    if !matches!(method, Method::GET | Method::HEAD) {
        return PageError::status(StatusCode::NOT_FOUND).into_response();
    }
    let target = uri.path_and_query().map_or(path, |p| p.as_str());
    redirect(&format!("/hub{target}"))
}

/// Everything a page needs to know about the request: language, the logged-in user, the XSRF
/// token, and where it is.
pub(crate) struct PageRequest {
    /// The reader's language.
    pub lang: Lang,
    /// The logged-in caller, if any.
    pub caller: Option<Arc<Caller>>,
    /// The XSRF token for forms and API calls from the page.
    pub xsrf: String,
    /// Whether `xsrf` is new and must be set as a cookie.
    new_xsrf: bool,
    /// Path and query of the request.
    pub here: String,
    /// Whether cookies carry `Secure`.
    secure: bool,
    /// The budget banner: the user's most pressing budget past its warning threshold.
    budget_banner: Option<minijinja::Value>,
    /// The administrators' footer in the reader's language, as safe HTML (`None`: built-in).
    footer_html: Option<String>,
}

impl FromRequestParts<Arc<Services>> for PageRequest {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Services>) -> Result<Self, PageError> {
        let here = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| parts.uri.path().to_owned());
        PageRequest::build(hub, &parts.headers, &here).await
    }
}

impl PageRequest {
    async fn build(hub: &Services, headers: &HeaderMap, here: &str) -> Result<Self, PageError> {
        let mut page = PageRequest::anonymous(headers, here);
        page.secure = hub.config.cookies_secure();
        page.caller = http::session_caller(hub, headers).await?;
        page.footer_html = home_page::footer_html(hub, page.lang).await;
        if let Some(user) = page.user() {
            page.budget_banner = billing::banner(hub, user).await;
        }
        Ok(page)
    }

    fn anonymous(headers: &HeaderMap, here: &str) -> Self {
        let (xsrf, new_xsrf) = match http::xsrf_cookie(headers) {
            Some(token) => (token.to_owned(), false),
            None => (http::new_xsrf_token(), true),
        };
        PageRequest {
            lang: Lang::choose(headers),
            caller: None,
            xsrf,
            new_xsrf,
            here: here.to_owned(),
            secure: false,
            budget_banner: None,
            footer_html: None,
        }
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> Option<&UserRow> {
        self.caller.as_ref().and_then(|c| c.user())
    }

    /// The logged-in user, or a redirect to the login page that comes back here.
    pub fn require_user(&self) -> Result<(&UserRow, &Caller), PageError> {
        match &self.caller {
            Some(caller) => match caller.user() {
                Some(user) => Ok((user, caller)),
                None => Err(self.to_login()),
            },
            None => Err(self.to_login()),
        }
    }

    fn to_login(&self) -> PageError {
        PageError::Login {
            next: self.here.clone(),
        }
    }

    /// Renders a page with status 200.
    pub fn render(&self, template: &str, ctx: minijinja::Value) -> Response {
        self.render_with_status(StatusCode::OK, template, ctx)
    }

    /// Renders a page in the layout, with the security headers every page carries.
    pub fn render_with_status(
        &self,
        status: StatusCode,
        template: &str,
        ctx: minijinja::Value,
    ) -> Response {
        let user = self.user().map(|u| {
            context! {
                name => u.name.clone(),
                admin => u.is_admin(),
                can_admin => self.caller.as_ref().is_some_and(|c| can_admin(c)),
                library_admin => self
                    .caller
                    .as_ref()
                    .is_some_and(|c| crate::domain::images::is_library_admin(&c.scopes)),
            }
        });
        let base = context! {
            html_lang => self.lang.html_lang(),
            lang => self.lang.code(),
            other_lang => self.lang.other().code(),
            t => self.lang.messages(),
            messages_json => templates::messages_json(self.lang),
            user => user,
            xsrf => self.xsrf.clone(),
            xsrf_field => XSRF_FIELD,
            here => self.here.clone(),
            lang_switch_url => format!(
                "/hub/lang/{}?{}",
                self.lang.other().code(),
                encode_query(&[("next", &self.here)])
            ),
            static_url => "/hub/static",
            v => templates::assets_version(),
            min_password => crate::domain::accounts::MIN_PASSWORD_LEN,
            budget_banner => self.budget_banner.clone(),
            site_footer => self.footer_html.clone().map(minijinja::Value::from_safe_string),
        };
        let html = match templates::render(template, context! { ..ctx, ..base }) {
            Ok(html) => html,
            Err(e) => {
                tracing::error!(template, error = %e, "template failed");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "Internal Server Error",
                )
                    .into_response();
            }
        };
        let mut response = (status, html).into_response();
        set_page_headers(
            response.headers_mut(),
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'self'; base-uri 'none'; \
             object-src 'none'",
        );
        self.add_xsrf_cookie(&mut response);
        response
    }

    /// Sets the XSRF cookie on a response if this request did not have one.
    pub fn add_xsrf_cookie(&self, response: &mut Response) {
        if self.new_xsrf {
            let cookie = http::set_cookie(
                http::XSRF_COOKIE,
                &self.xsrf,
                &http::CookieOptions {
                    path: "/hub/",
                    max_age: None,
                    http_only: false,
                    secure: self.secure,
                },
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }
}

/// Whether a caller may open the admin page (JupyterHub's `admin-ui` scope).
pub(crate) fn can_admin(caller: &Caller) -> bool {
    crate::rbac::check(&caller.scopes, &["admin-ui"], &crate::rbac::Resource::Hub).is_allowed()
}

/// The headers of every HTML page: its type, the content security policy `csp`, no caching,
/// no sniffing, and the referrer kept to this site.
pub(crate) fn set_page_headers(headers: &mut HeaderMap, csp: &'static str) {
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}
