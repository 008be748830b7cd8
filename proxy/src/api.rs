//! configurable-http-proxy's REST API over a [`RouteTable`], on its own listener.
//!
//! What a CHP client (JupyterHub's `ConfigurableHTTPProxy`, Xiji's own [`ChpClient`]) sees is
//! CHP's behaviour:
//!
//! - `GET /api/routes[?inactive_since=ISO8601]` → 200, `{"/user/alice": {"target": …, …data,
//!   "last_activity": …}}`; a bad date → 400.
//! - `GET /api/routes/{path}` → 200 with that route's object, 404 if there is none.
//! - `POST /api/routes/{path}` with a JSON object holding a string `target` → 201; the other keys
//!   are kept as the route's data. A body that is not JSON or has no string `target` → 400.
//! - `DELETE /api/routes/{path}` → 204, or 404 if there was no such route.
//! - With a token configured, requests without `Authorization: token {token}` get 403 (CHP
//!   never answers 401). Any other path → 404; another method → 405.
//!
//! Route paths are CHP's: without the trailing slash (`/user/alice`, and `/` for the root);
//! the table keeps them as routespecs with the slash (`/user/alice/`).
//!
//! [`ChpClient`]: crate::ChpClient

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value};
use tokio::net::TcpListener;

use crate::metrics::ProxyMetrics;
use crate::table::{Proxy, Route, RouteTable};

/// Largest accepted API request body.
const MAX_BODY: usize = 1024 * 1024;

/// Serves CHP's REST API for `table` until `shutdown` resolves. With `auth_token`, every request
/// must carry `Authorization: token {auth_token}`; without, the API is open (as CHP without
/// `CONFIGPROXY_AUTH_TOKEN`).
///
/// # Errors
/// Only if the listener's local address cannot be read.
pub async fn serve_api(
    listener: TcpListener,
    table: Arc<RouteTable>,
    auth_token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let api = Arc::new(Api { table, auth_token });
    serve_small(
        listener,
        "proxy API",
        move |req| {
            let api = Arc::clone(&api);
            async move { api.handle(req).await }
        },
        shutdown,
    )
    .await
}

/// Serves `GET /metrics` ([`ProxyMetrics`] in Prometheus' text format) until `shutdown`
/// resolves; any other request gets 404.
///
/// # Errors
/// Only if the listener's local address cannot be read.
pub(crate) async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<ProxyMetrics>,
    table: Arc<RouteTable>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_small(
        listener,
        "proxy metrics",
        move |req: Request<Incoming>| {
            let answer = if req.method() == Method::GET && req.uri().path() == "/metrics" {
                let mut response = Response::new(Full::new(Bytes::from(metrics.render(&table))));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            } else {
                text(StatusCode::NOT_FOUND, "Not Found")
            };
            std::future::ready(answer)
        },
        shutdown,
    )
    .await
}

/// Accepts connections on `listener` and answers each request with `handle` until `shutdown`
/// resolves; then closes every connection. For the proxy's small side services.
async fn serve_small<H, F>(
    listener: TcpListener,
    what: &'static str,
    handle: H,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let local_addr = listener.local_addr()?;
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    tracing::info!(address = %local_addr, "{what} listening");
    tokio::pin!(shutdown);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let service = service_fn(move |req| {
            let answer = handle(req);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "{what}: connection ended with an error");
                    }
                }
                _ = stop.wait_for(|stopped| *stopped) => {}
            }
        });
    }
    let _ = stop_tx.send(true);
    tracing::info!(address = %local_addr, "{what} stopped");
    Ok(())
}

struct Api {
    table: Arc<RouteTable>,
    auth_token: Option<String>,
}

impl Api {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let uri = req.uri().clone();
        let response = self.dispatch(req).await;
        let status = response.status().as_u16();
        if status < 400 {
            tracing::debug!(%method, path = uri.path(), status, "proxy API");
        } else {
            tracing::info!(%method, path = uri.path(), status, "proxy API");
        }
        response
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(rest) = req.uri().path().strip_prefix("/api/routes") else {
            return text(StatusCode::NOT_FOUND, "Not Found");
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return text(StatusCode::NOT_FOUND, "Not Found");
        }
        let path = rest.to_owned();
        let method = req.method().clone();
        if ![Method::GET, Method::POST, Method::DELETE].contains(&method) {
            return text(StatusCode::METHOD_NOT_ALLOWED, "Method not supported");
        }
        // CHP parses a POST body before checking the token; the order is kept.
        let body = if method == Method::POST {
            let authorized = self.authorized(&req);
            let bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => return text(StatusCode::BAD_REQUEST, "Body not valid JSON"),
            };
            let value: Value = if bytes.is_empty() {
                Value::Object(Map::new())
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(Value::Null) => Value::Object(Map::new()),
                    Ok(value) => value,
                    Err(e) => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            &format!("Body not valid JSON: {e}"),
                        )
                    }
                }
            };
            if !authorized {
                return forbidden();
            }
            Some(value)
        } else {
            if !self.authorized(&req) {
                return forbidden();
            }
            let query = req.uri().query().map(str::to_owned);
            if method == Method::GET {
                return self.get(&path, query.as_deref());
            }
            None
        };
        match body {
            Some(value) => self.post(&path, value).await,
            None => self.delete(&path),
        }
    }

    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(expected) = &self.auth_token else {
            return true;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(token_in);
        given.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()))
    }

    fn get(&self, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
        if !path.is_empty() && path != "/" {
            let route = self.table.route(&routespec(path)).unwrap_or_default();
            return match route {
                Some(route) => json(StatusCode::OK, &Value::Object(chp_object(route))),
                None => empty(StatusCode::NOT_FOUND),
            };
        }
        let param = query.and_then(|q| {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect();
            let find = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, v)| k == name && !v.is_empty())
                    .map(|(_, v)| v.clone())
            };
            find("inactiveSince").or_else(|| find("inactive_since"))
        });
        let before_ms = match param {
            None => None,
            Some(raw) => match parse_iso8601_ms(&raw) {
                Some(ms) => Some(ms),
                None => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        &format!("Invalid datestamp '{raw}' must be ISO8601."),
                    )
                }
            },
        };
        let routes: Map<String, Value> = self
            .table
            .routes_inactive_since(before_ms)
            .into_iter()
            .map(|route| (chp_path(&route.routespec), Value::Object(chp_object(route))))
            .collect();
        json(StatusCode::OK, &Value::Object(routes))
    }

    async fn post(&self, path: &str, body: Value) -> Response<Full<Bytes>> {
        let path = if path.is_empty() { "/" } else { path };
        let Value::Object(mut data) = body else {
            return text(StatusCode::BAD_REQUEST, "Must specify 'target' as string");
        };
        let Some(Value::String(target)) = data.remove("target") else {
            return text(StatusCode::BAD_REQUEST, "Must specify 'target' as string");
        };
        match self.table.add_route(&routespec(path), &target, data).await {
            Ok(()) => {
                tracing::info!(route.path = path, target, "route added");
                empty(StatusCode::CREATED)
            }
            Err(e) => text(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }

    fn delete(&self, path: &str) -> Response<Full<Bytes>> {
        match self
            .table
            .remove(&routespec(if path.is_empty() { "/" } else { path }))
        {
            Ok(true) => {
                tracing::info!(route.path = path, "route removed");
                empty(StatusCode::NO_CONTENT)
            }
            Ok(false) | Err(_) => empty(StatusCode::NOT_FOUND),
        }
    }
}

/// CHP's token extraction: the first `token <non-space>` anywhere in the header.
fn token_in(header: &str) -> Option<&str> {
    let mut rest = header;
    while let Some(at) = rest.find("token") {
        let after = &rest[at + "token".len()..];
        let trimmed = after.trim_start();
        if trimmed.len() < after.len() {
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            if end > 0 {
                return Some(&trimmed[..end]);
            }
        }
        rest = after;
    }
    None
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CHP path (`/user/alice`, `/`) → routespec (`/user/alice/`).
pub(crate) fn routespec(chp_path: &str) -> String {
    let mut spec = if chp_path.starts_with('/') {
        chp_path.to_owned()
    } else {
        format!("/{chp_path}")
    };
    if !spec.ends_with('/') {
        spec.push('/');
    }
    spec
}

/// Routespec (`/user/alice/`) → CHP path (`/user/alice`; `/` stays).
pub(crate) fn chp_path(routespec: &str) -> String {
    let trimmed = routespec.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// `{"target": …, …data, "last_activity": …}`.
fn chp_object(route: Route) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("target".to_owned(), Value::String(route.target));
    object.extend(route.data);
    object
}

/// Parses what JavaScript's `Date.parse` accepts in practice from JupyterHub and the idle
/// culler: RFC 3339 with an offset or `Z`, a date-time without offset (taken as UTC), or a date.
fn parse_iso8601_ms(raw: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Some(t.timestamp_millis());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(raw, format) {
            return Some(t.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn forbidden() -> Response<Full<Bytes>> {
    empty(StatusCode::FORBIDDEN)
}

fn text(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message.to_owned())));
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_as_chp_finds_them() {
        assert_eq!(token_in("token abc"), Some("abc"));
        assert_eq!(token_in("token   abc def"), Some("abc"));
        assert_eq!(token_in("Bearer abc"), None);
        assert_eq!(token_in("token"), None);
        assert_eq!(token_in("tokenabc"), None);
        assert_eq!(token_in("x-token abc"), Some("abc"));
    }

    #[test]
    fn paths_and_routespecs_convert_both_ways() {
        assert_eq!(routespec("/"), "/");
        assert_eq!(routespec("/user/alice"), "/user/alice/");
        assert_eq!(routespec("/user/alice/"), "/user/alice/");
        assert_eq!(chp_path("/"), "/");
        assert_eq!(chp_path("/user/alice/"), "/user/alice");
    }

    #[test]
    fn iso_dates_parse_like_javascript() {
        let z = parse_iso8601_ms("2026-11-24T09:49:24.408Z").unwrap();
        assert_eq!(z, 1_795_513_764_408);
        assert_eq!(parse_iso8601_ms("2026-11-24T09:49:24.408"), Some(z));
        assert_eq!(parse_iso8601_ms("2026-11-24T10:49:24.408+01:00"), Some(z));
        assert!(parse_iso8601_ms("2026-11-24").is_some());
        assert!(parse_iso8601_ms("yesterday").is_none());
    }
}
