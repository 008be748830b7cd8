//! The desktop page, its script and stylesheet (embedded), Debian's noVNC files (served from a
//! directory), and the page's messages in English and Chinese.

use std::path::PathBuf;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::DesktopNode;
use crate::domain::HubError;
use crate::web::{set_page_headers, Lang};

const PAGE: &str = include_str!("page.html");
const CLIENT_JS: &str = include_str!("client.js");
const STYLE_CSS: &str = include_str!("desktop.css");

/// Where noVNC's `core/` and `vendor/` are: `$XIJI_NOVNC_DIR`, else Debian's `novnc` package.
pub const NOVNC_DIR_ENV: &str = "XIJI_NOVNC_DIR";
const NOVNC_DEFAULT_DIR: &str = "/usr/share/novnc";

fn novnc_dir() -> PathBuf {
    std::env::var_os(NOVNC_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(NOVNC_DEFAULT_DIR))
}

/// (key, English, Chinese).
type Message = (&'static str, &'static str, &'static str);

const MESSAGES: &[Message] = &[
    ("title", "{node} · {user}'s desktop", "{user} 的桌面 · {node}"),
    ("connecting", "Connecting…", "正在连接…"),
    ("connected", "Connected", "已连接"),
    ("disconnected", "Disconnected", "已断开"),
    ("reconnecting", "Connection lost; reconnecting in {s} s (attempt {n})…", "连接中断，{s} 秒后重新连接（第 {n} 次）…"),
    ("reconnect", "Reconnect now", "立即重新连接"),
    ("fullscreen", "Full screen", "全屏"),
    ("clipboard", "Clipboard", "剪贴板"),
    ("clipboard_help", "Text copied in the desktop appears here. Edit it and press Send to paste it into the desktop.", "在桌面中复制的文字会出现在这里；在此编辑后按“发送”即可粘贴到桌面。"),
    ("send", "Send to desktop", "发送到桌面"),
    ("settings", "Image quality", "画质"),
    ("quality", "Quality (0–9)", "画质（0–9）"),
    ("compression", "Compression (0–9)", "压缩（0–9）"),
    ("quality_help", "Higher quality looks sharper and uses more bandwidth; more compression uses less bandwidth and more CPU.", "画质越高越清晰但占用更多带宽；压缩越高占用带宽越少但更耗 CPU。"),
    ("home", "Home", "首页"),
    ("jupyterlab", "JupyterLab", "JupyterLab"),
    ("language", "中文", "English"),
    ("no_audio", "No sound: VNC desktops carry no audio.", "提示：VNC 桌面不传输声音。"),
    ("novnc_missing", "The hub cannot serve the desktop client (noVNC): ask an administrator to install Debian's novnc package.", "平台无法提供桌面客户端（noVNC）：请联系管理员安装 Debian 的 novnc 软件包。"),
    ("error_title", "The desktop cannot be opened", "无法打开桌面"),
    ("error_403", "You may not open this desktop.", "你无权打开这个桌面。"),
    ("error_404", "There is no desktop here, or it is not yours.", "这里没有桌面，或者它不属于你。"),
    ("error_500", "Something went wrong on the hub. Try again later.", "平台出现错误，请稍后再试。"),
    ("leave_warning", "Closing this page releases the cluster if no other page of it is open.", "如果没有打开该集群的其他页面，关闭此页面将释放集群。"),
];

fn text(lang: Lang, key: &str) -> &'static str {
    MESSAGES
        .iter()
        .find(|m| m.0 == key)
        .map_or("", |m| if lang == Lang::Zh { m.2 } else { m.1 })
}

fn catalogue(lang: Lang) -> serde_json::Map<String, serde_json::Value> {
    MESSAGES
        .iter()
        .map(|m| {
            (
                m.0.to_owned(),
                json!(if lang == Lang::Zh { m.2 } else { m.1 }),
            )
        })
        .collect()
}

/// Escapes text for HTML element content and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside `<script type="application/json">`.
fn script_json(v: &serde_json::Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The desktop page of `node`: everything the script needs is in a JSON block; nothing secret.
///
/// `warn_on_leave`: the cluster is released once its last page closes (release policy
/// `automatic`), so the page asks before it is closed.
pub fn page(lang: Lang, node: &DesktopNode, here: &str, warn_on_leave: bool) -> Response {
    let title = text(lang, "title")
        .replace("{node}", &node.node)
        .replace("{user}", &node.user);
    let config = json!({
        "lang": lang.code(),
        "websocket": format!("{}{}websockify", super::DESKTOP_ROOT, node.prefix),
        "user": node.user,
        "server": node.server_name,
        "node": node.node,
        "image": node.image_name,
        "lab": format!("{}lab", node.prefix),
        "home": "/hub/home",
        "language_url": format!(
            "/hub/lang/{}?{}",
            lang.other().code(),
            crate::web::encode_query(&[("next", here)])
        ),
        "messages": catalogue(lang),
        "warn_on_leave": warn_on_leave,
    });
    let html = PAGE
        .replace("{{html_lang}}", lang.html_lang())
        .replace("{{title}}", &escape(&title))
        .replace("{{v}}", env!("CARGO_PKG_VERSION"))
        .replace("{{config}}", &script_json(&config));
    with_page_headers((StatusCode::OK, html).into_response())
}

/// A short error page in the reader's language (status 403, 404 or 500).
pub fn error_page(lang: Lang, e: &HubError) -> Response {
    let (status, key) = match e {
        HubError::Forbidden(_) => (StatusCode::FORBIDDEN, "error_403"),
        HubError::NotFound(_) | HubError::BadRequest(_) => (StatusCode::NOT_FOUND, "error_404"),
        other => {
            tracing::error!(error = %other, "desktop page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "error_500")
        }
    };
    let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
        String::new()
    } else {
        format!("<p class=\"detail\">{}</p>", escape(&e.to_string()))
    };
    let html = format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><title>{} · {}</title>\
         <link rel=\"stylesheet\" href=\"/hub/desktop-static/app/desktop.css\"></head>\
         <body class=\"error\"><main><h1>{} {}</h1><p>{}</p>{detail}\
         <p><a href=\"/hub/home\">{}</a></p></main></body></html>",
        lang.html_lang(),
        status.as_u16(),
        escape(text(lang, "error_title")),
        status.as_u16(),
        escape(text(lang, "error_title")),
        escape(text(lang, key)),
        escape(text(lang, "home")),
    );
    with_page_headers((status, html).into_response())
}

fn with_page_headers(mut response: Response) -> Response {
    // The page's own policy: noVNC draws the remote screen from `blob:` images.
    set_page_headers(
        response.headers_mut(),
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; \
         script-src 'self'; connect-src 'self'; form-action 'self'; \
         frame-ancestors 'self'; base-uri 'none'; object-src 'none'",
    );
    response
}

fn asset(content_type: &'static str, body: Vec<u8>, max_age: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(max_age));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// `GET /hub/desktop-static/app/{file}`: the page's own script and stylesheet.
pub async fn app_file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "client.js" => asset(
            "text/javascript; charset=utf-8",
            CLIENT_JS.as_bytes().to_vec(),
            "no-cache",
        ),
        "desktop.css" => asset(
            "text/css; charset=utf-8",
            STYLE_CSS.as_bytes().to_vec(),
            "no-cache",
        ),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether `path` is one of noVNC's module files: `core/…` or `vendor/…`, `.js`, plain segments.
fn novnc_path_ok(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    matches!(segments.first(), Some(&"core" | &"vendor"))
        && path.ends_with(".js")
        && segments.iter().all(|s| {
            !s.is_empty()
                && !s.starts_with('.')
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        })
}

/// `GET /hub/desktop-static/novnc/{path}`: noVNC's ES modules (`core/rfb.js` and what it
/// imports).
pub async fn novnc_file(Path(path): Path<String>) -> Response {
    if !novnc_path_ok(&path) {
        return StatusCode::NOT_FOUND.into_response();
    }
    let dir = novnc_dir();
    match tokio::fs::read(dir.join(&path)).await {
        Ok(body) => asset(
            "text/javascript; charset=utf-8",
            body,
            "public, max-age=3600",
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !dir.join("core/rfb.js").is_file() {
                tracing::error!(
                    dir = %dir.display(),
                    "noVNC is missing: install Debian's novnc package or set {NOVNC_DIR_ENV}"
                );
            }
            StatusCode::NOT_FOUND.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, path, "cannot read a noVNC file");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_novnc_modules_are_served() {
        assert!(novnc_path_ok("core/rfb.js"));
        assert!(novnc_path_ok("vendor/pako/lib/zlib/inflate.js"));
        for bad in [
            "app/ui.js",
            "core/../../etc/passwd.js",
            "core/.hidden.js",
            "core//rfb.js",
            "core/rfb.html",
            "core/r%2fb.js",
        ] {
            assert!(!novnc_path_ok(bad), "{bad}");
        }
    }

    #[test]
    fn every_message_has_both_languages() {
        for (key, en, zh) in MESSAGES {
            assert!(!en.is_empty() && !zh.is_empty(), "{key}");
        }
    }

    #[test]
    fn page_config_cannot_close_its_script_block() {
        let v = json!({"user": "</script><script>alert(1)</script>"});
        assert!(!script_json(&v).contains("</script>"));
    }
}
