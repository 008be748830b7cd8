//! One request: normalise the path, then forward it to its route's target or hand it to the
//! fallback.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use futures_util::FutureExt;
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::backend::{send_upgrade, BackendError, Backends};
use crate::body::{boxed, full, ActivityBody, ResponseBody};
use crate::config::ProxyConfig;
use crate::headers::{add_forwarded_headers, is_websocket_upgrade, strip_hop_by_hop};
use crate::pages::{health, json_error, page, wants_json, ErrorPages};
use crate::path::normalize_path_cow;
use crate::server::Drain;
use crate::table::{RouteEntry, RouteTable};
use crate::tunnel::spawn_tunnel;
use crate::ClientAddr;

/// What every connection shares.
pub(crate) struct Forwarder {
    pub(crate) table: Arc<RouteTable>,
    pub(crate) config: ProxyConfig,
    /// Handed to websocket tunnels so they end on shutdown and are waited for.
    pub(crate) drain: Drain,
    /// 502/503/504 pages (from the error target, if configured).
    pub(crate) errors: Arc<ErrorPages>,
}

impl Forwarder {
    /// Answers one request; never fails (errors become 4xx/5xx pages).
    pub(crate) async fn handle<S, B>(
        &self,
        fallback: S,
        backends: &Arc<Backends>,
        peer: SocketAddr,
        https: bool,
        mut req: Request<Incoming>,
    ) -> Response<ResponseBody>
    where
        S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let normalized = match normalize_path_cow(req.uri().path()) {
            Ok(Cow::Borrowed(_)) => None,
            Ok(Cow::Owned(path)) => Some(path),
            Err(rejection) => {
                tracing::debug!(path = req.uri().path(), %rejection, "request path refused");
                if wants_json(&req) {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        &format!("Bad request path: {}", rejection.reason()),
                    );
                }
                return page(
                    StatusCode::BAD_REQUEST,
                    "Bad request path",
                    rejection.reason(),
                );
            }
        };
        if let Some(path) = normalized {
            match with_path(req.uri(), &path) {
                Some(uri) => *req.uri_mut() = uri,
                None => return page(StatusCode::BAD_REQUEST, "Bad request", "malformed URL"),
            }
        }
        // Now normal: what is routed is what is forwarded.
        let path = req.uri().path();

        if self.config.health_check && path == "/_chp_healthz" {
            return health();
        }
        let route = if self.config.host_routing {
            host_of(&req).and_then(|host| {
                // `host` has no `/`, so it is one segment in front of the normalised path.
                let mut key = String::with_capacity(host.len() + 1 + path.len());
                key.push('/');
                key.push_str(&host);
                key.push_str(path);
                self.table.lookup(&key)
            })
        } else {
            self.table.lookup(path)
        };
        match route {
            Some(route) => {
                let started = self.config.metrics.is_some().then(Instant::now);
                let response = self.forward(backends, route, peer, https, req).await;
                if let (Some(metrics), Some(started)) = (&self.config.metrics, started) {
                    metrics.record(response.status(), started.elapsed());
                }
                response
            }
            None => {
                req.extensions_mut().insert(ClientAddr(peer));
                // Boxed, like every path but the proxied one, so that the future of a proxied
                // request stays small (hyper moves it several times per request).
                match Box::pin(fallback.oneshot(req)).await {
                    Ok(response) => response.map(boxed),
                    Err(never) => match never {},
                }
            }
        }
    }

    async fn forward(
        &self,
        backends: &Arc<Backends>,
        route: Arc<RouteEntry>,
        peer: SocketAddr,
        https: bool,
        mut req: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let websocket = is_websocket_upgrade(req.headers());
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

        let (mut parts, body) = req.into_parts();
        let Some(path_and_query) = backend_path(&route, &parts.uri) else {
            return page(StatusCode::BAD_REQUEST, "Bad request", "malformed URL");
        };
        // Kept for error pages (`?url=` of the error target): the path and query as routed.
        let original_uri = std::mem::replace(&mut parts.uri, Uri::from(path_and_query));
        let original_url = original_uri
            .path_and_query()
            .map_or("/", PathAndQuery::as_str);
        parts.version = Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers, websocket);
        if !parts.headers.contains_key(http::header::HOST) {
            // An HTTP/1.0 client may send none; HTTP/1.1 needs one.
            if let Ok(host) = http::HeaderValue::from_str(route.target.authority.as_str()) {
                parts.headers.insert(http::header::HOST, host);
            }
        }
        if self.config.x_forward {
            add_forwarded_headers(&mut parts.headers, peer, https);
        }
        let backend_req = Request::from_parts(parts, ActivityBody::new(body, Arc::clone(&route)));
        let authority = &route.target.authority;

        if let Some(client_upgrade) = client_upgrade {
            let sent = Box::pin(send_upgrade(
                authority,
                backend_req,
                self.config.connect_timeout,
            ));
            let mut response = match within(self.config.response_timeout, sent).await {
                Ok(response) => response,
                Err(error) => return Box::pin(self.failure(error, &route, original_url)).await,
            };
            if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                return self.relay(response, route);
            }
            route.touch();
            tracing::debug!(
                route.path = %route.routespec,
                target = %route.target_url,
                "websocket upgraded"
            );
            let backend_upgrade = hyper::upgrade::on(&mut response);
            spawn_tunnel(
                client_upgrade,
                backend_upgrade,
                Arc::clone(&route),
                self.drain.clone(),
                self.config.kernel_splice,
            );
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, full(bytes::Bytes::new()));
        }

        let sent = backends.send(
            authority,
            backend_req,
            self.config.connect_timeout,
            self.config.backend_idle_timeout,
        );
        let response = match within(self.config.response_timeout, sent).await {
            Ok(response) => response,
            // Boxed, as every cold path here: hyper moves the request's future several times,
            // so its size costs on every request.
            Err(error) => return Box::pin(self.failure(error, &route, original_url)).await,
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // A 101 we did not ask for cannot be tunnelled.
            return page(
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                "The server at this address switched protocols unasked.",
            );
        }
        self.relay(response, route)
    }

    /// The page for a request the backend gave no response to: 503 (no connection), 502
    /// (broken answer) or 504 (too slow).
    async fn failure(
        &self,
        error: BackendError,
        route: &RouteEntry,
        original_url: &str,
    ) -> Response<ResponseBody> {
        let (status, title, text) = match &error {
            BackendError::Connect(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Service Unavailable",
                "The server at this address is not reachable. It may be stopped or still \
                 starting; try again in a moment.",
            ),
            BackendError::Failed(_) => (
                StatusCode::BAD_GATEWAY,
                "Bad Gateway",
                "The server at this address closed the connection without a valid answer.",
            ),
            BackendError::TimedOut(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "Gateway Timeout",
                "The server at this address did not answer in time.",
            ),
        };
        tracing::warn!(
            route.path = %route.routespec,
            target = %route.target_url,
            %error,
            "no response from the backend"
        );
        self.errors.render(status, original_url, title, text).await
    }

    /// The backend's response for the client: hop-by-hop headers removed, and its body counted
    /// as activity when the request succeeded.
    fn relay<B>(&self, mut response: Response<B>, route: Arc<RouteEntry>) -> Response<ResponseBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
        B::Error: Into<crate::body::BoxError>,
    {
        let status = response.status();
        tracing::debug!(
            route.path = %route.routespec,
            target = %route.target_url,
            status = status.as_u16(),
            "proxied"
        );
        strip_hop_by_hop(response.headers_mut(), false);
        // CHP counts a request as activity only when it succeeded: a browser tab that keeps
        // getting redirects or errors does not keep an idle server alive.
        if status.as_u16() < 300 {
            route.touch();
            response.map(|body| boxed(ActivityBody::new(body, route)))
        } else {
            response.map(boxed)
        }
    }
}

/// `sent`, limited to `limit` if there is one. (A plain function rather than an `async fn`, so
/// the future is stored once rather than as an argument and again inside the timeout.)
fn within<T>(
    limit: Option<Duration>,
    sent: impl Future<Output = Result<T, BackendError>>,
) -> impl Future<Output = Result<T, BackendError>> {
    match limit {
        Some(limit) => Either::Left(
            tokio::time::timeout(limit, sent)
                .map(move |result| result.unwrap_or(Err(BackendError::TimedOut(limit)))),
        ),
        None => Either::Right(sent),
    }
}

/// The request's host name for host routing: from `Host` (or the absolute URI), lower-cased,
/// without port; `None` if absent or not a plain host name.
fn host_of<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(http::uri::Authority::as_str))?;
    let authority: http::uri::Authority = raw.parse().ok()?;
    let host = authority.host().to_ascii_lowercase();
    let plain = !host.is_empty()
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        })
        && host != "."
        && host != "..";
    plain.then_some(host)
}

/// `uri` with its path replaced by `path` (query kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

/// The origin-form path and query sent to the backend: `{target path}{request path}?{query}`
/// (CHP's prepend-path and include-prefix defaults).
fn backend_path(route: &RouteEntry, request_uri: &Uri) -> Option<PathAndQuery> {
    if route.target.path_prefix.is_empty() {
        // Already validated when the request was parsed: reused without a copy.
        return Some(
            request_uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
    }
    let request = request_uri
        .path_and_query()
        .map_or("/", PathAndQuery::as_str);
    PathAndQuery::try_from(format!("{}{request}", route.target.path_prefix)).ok()
}
