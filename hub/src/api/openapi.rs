//! `GET /hub/api/openapi.json`: the OpenAPI 3 document of what Xiji adds to JupyterHub's REST
//! API (`hub/openapi/xiji.json`, written by hand and embedded in the binary). No authentication,
//! like `GET /hub/api/`. The tests below keep the document and the router in step.

use std::sync::OnceLock;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// The document as written.
pub const DOCUMENT: &str = include_str!("../../openapi/xiji.json");

/// The document with `info.version` set to this hub's version, serialised once.
fn served() -> &'static str {
    static SERVED: OnceLock<String> = OnceLock::new();
    SERVED.get_or_init(|| match serde_json::from_str::<Value>(DOCUMENT) {
        Ok(mut doc) => {
            if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
                info.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
            }
            doc.to_string()
        }
        // The tests parse the document; should it ever be broken, serve it as written.
        Err(e) => {
            tracing::error!(error = %e, "the embedded OpenAPI document is not valid JSON");
            DOCUMENT.to_owned()
        }
    })
}

/// `GET /hub/api/openapi.json`.
pub async fn document() -> Response {
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        served(),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
