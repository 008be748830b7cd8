//! Xiji's hub: a JupyterHub-compatible hub. `app` runs it; `api` and `web` are the HTTP faces;
//! `domain` holds the rules; `db` the storage; `rbac` JupyterHub's scopes.

pub mod api;
pub mod app;
pub mod clock;
pub mod config;
pub mod db;
pub mod desktop;
pub mod domain;
pub mod error;
pub mod http;
mod jobs;
pub mod rbac;
pub mod web;

use std::sync::Arc;

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The whole HTTP surface of the hub (the proxy hands it every request without a user route).
pub fn router(hub: Arc<domain::Services>) -> axum::Router {
    axum::Router::new()
        .merge(api::routes(Arc::clone(&hub)))
        .merge(web::routes(Arc::clone(&hub)))
        .merge(desktop::routes(Arc::clone(&hub)))
        .layer(axum::middleware::map_response(add_hub_headers))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// A handler that panicked answers 500 in JupyterHub's error body, like any other internal
/// failure, instead of dropping the client's connection without a response.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "request handler panicked");
    error::ApiError::internal().into_response()
}

async fn add_hub_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-jupyterhub-version"),
        HeaderValue::from_static(api::JUPYTERHUB_VERSION),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'self'; report-uri /hub/security/csp-report"),
        );
    }
    response
}

#[cfg(test)]
mod layering_tests;
