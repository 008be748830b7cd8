//! Settings for [`serve`](crate::serve).

use std::sync::Arc;
use std::time::Duration;

use crate::metrics::ProxyMetrics;

/// How the proxy treats clients and backends. `ProxyConfig::default()` suits a hub serving a
/// few thousand users.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Longest wait for a TCP connection to a backend. A refused connection fails at once
    /// (503) whatever this is.
    pub connect_timeout: Duration,
    /// Longest wait for a backend's response headers once the request is sent (504 after it).
    /// `None` waits forever. Response bodies and websockets are not limited.
    pub response_timeout: Option<Duration>,
    /// How long a client connection may sit between requests (or take to send one request's
    /// headers) before it is closed.
    pub client_idle_timeout: Duration,
    /// How long an idle keep-alive connection to a backend is reused. Each client connection
    /// keeps its own (a few, one per backend it talks to); one idle for longer is replaced by a
    /// new one at the next request, and all of them close with their client connection.
    pub backend_idle_timeout: Duration,
    /// Largest request head (request line plus headers) in bytes; larger gets 431.
    pub max_header_size: usize,
    /// Most request headers; more gets 431.
    pub max_headers: usize,
    /// Add `X-Forwarded-For/-Proto/-Host/-Port` to forwarded requests (CHP's `--no-x-forward`
    /// turns this off).
    pub x_forward: bool,
    /// Route by host as well as path (CHP's `--host-routing`): a request for
    /// `http://example.org/user/alice/` is looked up as `/example.org/user/alice/`, so routespecs
    /// start with the host name. The path forwarded to the backend is the request's own.
    pub host_routing: bool,
    /// Where error pages come from (CHP's `--error-target`): when the proxy itself answers 404
    /// (standalone, no route), 502, 503 or 504, it fetches `{error_target}{code}?url={request
    /// path}` and relays that page's body and `Content-Type` with its own status code. `None`
    /// (or a failing error target) gives a short built-in HTML page.
    pub error_target: Option<String>,
    /// Answer `GET /_chp_healthz` with `{"status": "OK"}` before routing, as CHP does.
    pub health_check: bool,
    /// After `shutdown` resolves, how long open requests and websocket tunnels get to finish.
    pub shutdown_grace: Duration,
    /// Where routed requests are counted and timed (see [`ProxyMetrics`]); `None` skips it.
    pub metrics: Option<Arc<ProxyMetrics>>,
    /// Let the kernel move a websocket tunnel's bytes when it can (Linux, with the privilege to
    /// load eBPF programs; see [`crate::splice`]); otherwise, or when `false`, they are copied in
    /// user space.
    pub kernel_splice: bool,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Some(Duration::from_secs(300)),
            client_idle_timeout: Duration::from_secs(60),
            backend_idle_timeout: Duration::from_secs(60),
            // Tornado's limit; JupyterHub deployments can carry many `jupyterhub-user-*` cookies.
            max_header_size: 64 * 1024,
            max_headers: 100,
            x_forward: true,
            host_routing: false,
            error_target: None,
            health_check: false,
            shutdown_grace: Duration::from_secs(10),
            metrics: None,
            kernel_splice: true,
        }
    }
}
