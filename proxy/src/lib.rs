//! Xiji's route table and HTTP/1.1 + websocket reverse proxy: run inside the hub's process
//! (embedded, the default) or on its own (`xiji-proxy`, [`run_standalone`]) behind
//! configurable-http-proxy's REST API ([`serve_api`]), which the hub then drives with
//! [`ChpClient`].
//!
//! The hub owns an `Arc<RouteTable>`, drives it through the [`Proxy`] trait (JupyterHub's
//! add/delete/get routes) and runs [`serve`] on the public listener with its own axum router as
//! the fallback for every request no route matches.
//!
//! Routing follows configurable-http-proxy: the longest routespec that is a whole-segment prefix
//! of the request path wins (`/user/alice/` matches `/user/alice` and `/user/alice/lab`, not
//! `/user/alicex`), and the full original path and query are forwarded, after the target's own
//! path if it has one. Before routing, the path is normalised (duplicate slashes collapsed,
//! percent escapes canonicalised) and refused with 400 if it holds `.`/`..` segments, backslashes
//! or encoded slashes; the normalised path is what the backend or the fallback receives, so what
//! was routed is what is served. Matching is case-sensitive.
//!
//! Each route keeps a `last_activity` clock, moved by successful requests, by body data and by
//! websocket traffic in either direction; [`Proxy::get_all_routes`] reports it as CHP does,
//! with the route's open websockets (`open_websockets`, an addition CHP does not have).

mod api;
mod backend;
mod body;
mod client;
mod config;
mod connections;
mod error;
mod forward;
mod headers;
mod metrics;
mod pages;
mod path;
mod server;
#[cfg(target_os = "linux")]
pub mod splice;
mod standalone;
mod table;
mod tunnel;
pub mod vnc;

pub use api::serve_api;
pub use client::ChpClient;
pub use config::ProxyConfig;
pub use connections::{ConnectionGuard, OpenConnections, OPEN_WEBSOCKETS_KEY};
pub use error::ProxyError;
pub use metrics::ProxyMetrics;
pub use server::{serve, Fallback, FallbackBody};
pub use standalone::{
    run as run_standalone, run_on as run_standalone_on, StandaloneArgs, AUTH_TOKEN_ENV,
};
pub use table::{Proxy, Route, RouteTable};

/// Installs a `tracing` subscriber writing to stderr at `level` (`info`, `debug`, or a full
/// filter such as `proxy=debug,info`). Does nothing if one is already installed. A line that
/// cannot be written (a full disk) is lost rather than reported on stderr, which would panic the
/// request that logged it.
pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_on_stderr())
        .log_internal_errors(false)
        .try_init();
}

/// Whether log lines on standard error may carry ANSI colours: only on a terminal, and not when
/// `NO_COLOR` is set to a non-empty value (no-color.org). A log file or a pipe gets plain text.
pub fn colour_on_stderr() -> bool {
    use std::io::IsTerminal;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Normalises a raw request path the way the proxy does before routing: `Ok` with the path that
/// is both routed and forwarded, or `Err` with the reason it is refused (the proxy answers 400).
/// Exposed for property tests.
///
/// # Errors
/// The reason the path is refused.
pub fn normalize_request_path(raw: &str) -> Result<String, &'static str> {
    path::normalize_path(raw).map_err(path::PathRejection::reason)
}

/// Extension inserted into every request handed to the fallback: the TCP peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);
