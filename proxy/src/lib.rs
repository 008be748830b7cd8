//! Xiji's route table and HTTP/1.1 + websocket reverse proxy, run inside the hub's process.
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
//! websocket traffic in either direction; [`Proxy::get_all_routes`] reports it as CHP does.

mod body;
mod config;
mod error;
mod forward;
mod headers;
mod path;
mod server;
mod table;
mod tunnel;

pub use config::ProxyConfig;
pub use error::ProxyError;
pub use server::serve;
pub use table::{Proxy, Route, RouteTable};

/// Extension inserted into every request handed to the fallback: the TCP peer address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::SocketAddr);
