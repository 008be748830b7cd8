//! The page templates and static files, embedded in the binary so it runs from any directory.

use std::sync::OnceLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minijinja::{AutoEscape, Environment, Output, UndefinedBehavior};
use sha2::{Digest, Sha256};

use super::i18n::Lang;
use super::PageError;

/// (name, source) of every template.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("logo.html", include_str!("../../templates/logo.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    (
        "upload_card.html",
        include_str!("../../templates/upload_card.html"),
    ),
    ("login.html", include_str!("../../templates/login.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("server.html", include_str!("../../templates/server.html")),
    (
        "spawn_pending.html",
        include_str!("../../templates/spawn_pending.html"),
    ),
    (
        "not_running.html",
        include_str!("../../templates/not_running.html"),
    ),
    ("token.html", include_str!("../../templates/token.html")),
    ("admin.html", include_str!("../../templates/admin.html")),
    (
        "admin_nav.html",
        include_str!("../../templates/admin_nav.html"),
    ),
    (
        "admin_images.html",
        include_str!("../../templates/admin_images.html"),
    ),
    (
        "admin_image_form.html",
        include_str!("../../templates/admin_image_form.html"),
    ),
    (
        "my_images.html",
        include_str!("../../templates/my_images.html"),
    ),
    (
        "admin_storage.html",
        include_str!("../../templates/admin_storage.html"),
    ),
    (
        "admin_compute_nodes.html",
        include_str!("../../templates/admin_compute_nodes.html"),
    ),
    (
        "admin_release.html",
        include_str!("../../templates/admin_release.html"),
    ),
    (
        "release_notice.html",
        include_str!("../../templates/release_notice.html"),
    ),
    (
        "admin_quotas.html",
        include_str!("../../templates/admin_quotas.html"),
    ),
    (
        "quota_card.html",
        include_str!("../../templates/quota_card.html"),
    ),
    (
        "admin_home_page.html",
        include_str!("../../templates/admin_home_page.html"),
    ),
    (
        "admin_projects.html",
        include_str!("../../templates/admin_projects.html"),
    ),
    ("spawn.html", include_str!("../../templates/spawn.html")),
    (
        "spawn_form.html",
        include_str!("../../templates/spawn_form.html"),
    ),
    ("cluster.html", include_str!("../../templates/cluster.html")),
    ("usage.html", include_str!("../../templates/usage.html")),
    (
        "admin_billing.html",
        include_str!("../../templates/admin_billing.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    (
        "datasets.html",
        include_str!("../../templates/datasets.html"),
    ),
    ("dataset.html", include_str!("../../templates/dataset.html")),
    (
        "dataset_new.html",
        include_str!("../../templates/dataset_new.html"),
    ),
    (
        "dataset_fields.html",
        include_str!("../../templates/dataset_fields.html"),
    ),
    (
        "projects.html",
        include_str!("../../templates/projects.html"),
    ),
    ("project.html", include_str!("../../templates/project.html")),
    (
        "project_new.html",
        include_str!("../../templates/project_new.html"),
    ),
    (
        "project_fields.html",
        include_str!("../../templates/project_fields.html"),
    ),
];

/// (name, content type, bytes) of every static file.
const STATIC_FILES: &[(&str, &str, &[u8])] = &[
    (
        "xiji.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/xiji.css"),
    ),
    (
        "xiji.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/xiji.js"),
    ),
    (
        "uploads.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/uploads.js"),
    ),
    (
        "datasets.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/datasets.js"),
    ),
    (
        "project_files.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/project_files.js"),
    ),
    (
        "projects.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/projects.js"),
    ),
    (
        "admin_projects.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/admin_projects.js"),
    ),
    (
        "admin_quotas.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/admin_quotas.js"),
    ),
    (
        "billing_admin.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/billing_admin.js"),
    ),
    (
        "spawn_cost.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/spawn_cost.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/favicon.svg"),
    ),
];

fn environment() -> &'static Result<Environment<'static>, minijinja::Error> {
    static ENV: OnceLock<Result<Environment<'static>, minijinja::Error>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // A misspelt variable or message key is an error, not a silent blank.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Escape what HTML needs (`& < > " '`), leaving `/` readable in URLs.
        env.set_formatter(|out, state, value| {
            if state.auto_escape() == AutoEscape::Html && !value.is_safe() {
                if let Some(text) = value.as_str() {
                    return write_html_escaped(out, text);
                }
            }
            minijinja::escape_formatter(out, state, value)
        });
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(env)
    })
}

fn write_html_escaped(out: &mut Output<'_>, text: &str) -> Result<(), minijinja::Error> {
    let mut last = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&text[last..i])?;
        out.write_str(entity)?;
        last = i + 1;
    }
    out.write_str(&text[last..])?;
    Ok(())
}

/// Renders a template (HTML-escaped by its `.html` name).
pub(crate) fn render(name: &str, ctx: minijinja::Value) -> Result<String, minijinja::Error> {
    match environment() {
        Ok(env) => env.get_template(name)?.render(ctx),
        Err(e) => Err(minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("the embedded templates do not load: {e}"),
        )),
    }
}

/// The catalogue of a language as JSON for the page's script, safe inside `<script>`.
pub(crate) fn messages_json(lang: Lang) -> minijinja::Value {
    static EN: OnceLock<String> = OnceLock::new();
    static ZH: OnceLock<String> = OnceLock::new();
    let cell = match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    };
    let json = cell.get_or_init(|| {
        serde_json::to_string(lang.messages())
            .unwrap_or_else(|_| "{}".to_owned())
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    });
    minijinja::Value::from_safe_string(json.clone())
}

/// A short hash of the static files, appended to their URLs so browsers never use stale ones.
pub(crate) fn assets_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, _, bytes) in STATIC_FILES {
            hasher.update(name.as_bytes());
            hasher.update(bytes);
        }
        hex::encode(&hasher.finalize()[..6])
    })
}

/// `GET /hub/static/{file}`.
pub(crate) async fn static_file(
    Path(file): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let Some((_, content_type, bytes)) = STATIC_FILES.iter().find(|(name, _, _)| *name == file)
    else {
        return Err(PageError::status(StatusCode::NOT_FOUND));
    };
    let versioned = query.iter().any(|(k, v)| k == "v" && v == assets_version());
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (StatusCode::OK, *bytes).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}
