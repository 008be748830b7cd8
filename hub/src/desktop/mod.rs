//! Web desktops: any node of a cluster whose library image is a `desktop` opens as a Linux
//! desktop in the browser.
//!
//! A node's desktop lives at `/hub/desktop{node prefix}` (e.g. `/hub/desktop/user/alice/node-1/`);
//! the desktop image's Jupyter server redirects `{node prefix}desktop/` there. The page is our
//! noVNC client (`client.js`, Debian's noVNC core served from `XIJI_NOVNC_DIR`, default
//! `/usr/share/novnc`); its websocket, `…/websockify`, is accepted only for the server's owner or
//! a caller holding `access:servers`/`admin:servers` on it, and is then bridged to the node's VNC
//! port by [`proxy::vnc`], which answers the VNC password itself: browsers are offered no
//! authentication and never see the password. See docs/desktops.md.

mod assets;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::clock;
use crate::domain::desktops::{self, DesktopNode};
use crate::domain::identity::Caller;
use crate::domain::release;
use crate::domain::HubError;
use crate::domain::Services;
use crate::web::Lang;

/// Where desktop pages live: `{DESKTOP_ROOT}{node prefix}`.
pub const DESKTOP_ROOT: &str = "/hub/desktop";

/// How long connecting to and authenticating with a node's VNC server may take.
const VNC_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// The desktop routes (merged into the hub's router).
pub fn routes(hub: Arc<Services>) -> Router {
    Router::new()
        .route("/hub/desktop/{*rest}", get(desktop))
        .route("/hub/desktop-static/app/{file}", get(assets::app_file))
        .route("/hub/desktop-static/novnc/{*path}", get(assets::novnc_file))
        .with_state(hub)
}

/// `GET /hub/desktop/{prefix}`: the page; `…/websockify`: the VNC websocket; a prefix without its
/// trailing `/` is redirected to it.
async fn desktop(State(hub): State<Arc<Services>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(DESKTOP_ROOT) else {
        return plain(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(prefix) = rest.strip_suffix("websockify") {
        return websocket(hub, req, prefix.to_owned()).await;
    }
    if !rest.ends_with('/') {
        let query = req
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        return crate::web::redirect(&format!("{path}/{query}"));
    }
    page(hub, req, rest.to_owned()).await
}

async fn caller_of(
    hub: &Services,
    req: Request,
) -> Result<(Option<Arc<Caller>>, Request), Response> {
    let (parts, body) = req.into_parts();
    let caller = crate::http::resolve_caller(hub, &parts)
        .await
        .map_err(|e| crate::error::ApiError::from(e).into_response())?;
    Ok((caller, Request::from_parts(parts, body)))
}

async fn page(hub: Arc<Services>, req: Request, prefix: String) -> Response {
    let lang = Lang::choose(req.headers());
    let here = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let (caller, _req) = match caller_of(&hub, req).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let Some(caller) = caller else {
        return crate::web::redirect(&crate::web::login_url(&here));
    };
    match desktops::find(&hub, &caller, &prefix).await {
        Ok(node) => {
            let warn =
                match release::warns_before_closing(&hub, node.user_id, &node.server_name).await {
                    Ok(warn) => warn,
                    Err(e) => return assets::error_page(lang, &e),
                };
            assets::page(lang, &node, &here, warn)
        }
        Err(e) => assets::error_page(lang, &e),
    }
}

async fn websocket(hub: Arc<Services>, req: Request, prefix: String) -> Response {
    let upgrade = match proxy::vnc::check_upgrade(req.headers()) {
        Ok(u) => u,
        Err(e) => return plain(e.status(), &e.to_string()),
    };
    if !same_origin(req.headers()) {
        tracing::info!(desktop = %prefix, "desktop websocket from another origin refused");
        return plain(StatusCode::FORBIDDEN, "Cross-origin websocket refused");
    }
    let (caller, mut req) = match caller_of(&hub, req).await {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let Some(caller) = caller else {
        return plain(StatusCode::FORBIDDEN, "Missing or invalid credentials.");
    };
    let node = match desktops::find(&hub, &caller, &prefix).await {
        Ok(node) => node,
        Err(e) => return error_status(&e),
    };
    let upstream = match proxy::vnc::connect(
        &node.vnc_address,
        node.vnc_password.as_deref(),
        VNC_CONNECT_TIMEOUT,
    )
    .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(desktop = %prefix, vnc = %node.vnc_address, error = %e, "desktop VNC connection failed");
            return plain(e.status(), &e.to_string());
        }
    };
    let who = caller
        .user()
        .map_or_else(|| "a service".to_owned(), |u| u.name.clone());
    tracing::info!(desktop = %prefix, caller = %who, vnc = %node.vnc_address, "desktop connected");
    let options = proxy::vnc::BridgeOptions {
        label: prefix.clone(),
        on_activity: Some(activity_hook(&hub, &node)),
        // An open desktop is an open page of the cluster (release policies).
        open: Some(Arc::new(hub.release.desktop_opened(node.server_id))),
        ..proxy::vnc::BridgeOptions::default()
    };
    match proxy::vnc::accept(upgrade, req.extensions_mut(), upstream, options) {
        Ok(response) => response.map(|()| Body::empty()),
        Err(e) => plain(e.status(), &e.to_string()),
    }
}

/// Desktop traffic counts as use of the server (the idle culler sees it), as proxied traffic
/// does.
fn activity_hook(hub: &Arc<Services>, node: &DesktopNode) -> proxy::vnc::ActivityHook {
    let hub = Arc::downgrade(hub);
    let (server_id, user_id) = (node.server_id, node.user_id);
    Arc::new(move || {
        let Some(hub) = hub.upgrade() else { return };
        tokio::spawn(async move {
            let now = clock::now();
            if let Err(e) = hub.store.touch_server(server_id, now).await {
                tracing::debug!(error = %e, server.id = server_id, "desktop activity not recorded");
            }
            let _ = hub.store.touch_user(user_id, now).await;
        });
    })
}

/// A websocket's `Origin`, when sent, must be the page's own host (browsers always send it; a
/// page on another site must not ride the user's cookie into their desktop).
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .split_once("://")
        .map_or("", |(_, rest)| rest.trim_end_matches('/'));
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

fn error_status(e: &HubError) -> Response {
    let status = match e {
        HubError::NotFound(_) => StatusCode::NOT_FOUND,
        HubError::Forbidden(_) => StatusCode::FORBIDDEN,
        HubError::BadRequest(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let text = if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(error = %e, "desktop lookup failed");
        "Internal Server Error".to_owned()
    } else {
        e.to_string()
    };
    plain(status, &text)
}

fn plain(status: StatusCode, text: &str) -> Response {
    let mut response = (status, text.to_owned()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websockets_from_other_origins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.example:8000"));
        assert!(same_origin(&h), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://hub.example:8000"),
        );
        assert!(same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example:8000"),
        );
        assert!(!same_origin(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://hub.example:8001"),
        );
        assert!(!same_origin(&h));
    }
}
