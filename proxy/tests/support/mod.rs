#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err,
    dead_code
)] // test support: a failed setup should panic loudly; not every test file uses every helper
//! Real servers on 127.0.0.1 for the proxy's integration tests: the proxy itself (with an axum
//! "hub" as fallback), echo backends, a websocket echo backend, and small HTTP clients.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::extract::{Extension, Request};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy::{ClientAddr, ProxyConfig, RouteTable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running proxy with the test hub as its fallback.
pub struct RunningProxy {
    pub addr: SocketAddr,
    pub table: Arc<RouteTable>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningProxy {
    pub async fn start() -> Self {
        Self::start_with(ProxyConfig::default()).await
    }

    pub async fn start_with(config: ProxyConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = Arc::new(RouteTable::new());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy::serve(
            listener,
            Arc::clone(&table),
            hub_router(),
            config,
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            addr,
            table,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for `serve` to return.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for RunningProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// The stand-in for the hub: says who it is, which peer it saw, and echoes websockets.
fn hub_router() -> Router {
    Router::new().route("/hub/ws", get(hub_websocket)).fallback(
        |Extension(ClientAddr(peer)): Extension<ClientAddr>, req: Request| async move {
            let body = serde_json::json!({
                "name": "hub",
                "path": req.uri().path_and_query().map(|p| p.as_str().to_owned()),
                "peer": peer.to_string(),
            });
            (StatusCode::NOT_FOUND, axum::Json(body))
        },
    )
}

async fn hub_websocket(ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.on_upgrade(|mut socket| async move {
        while let Some(Ok(message)) = socket.recv().await {
            let reply = match message {
                AxumMessage::Text(text) => AxumMessage::Text(format!("hub: {text}").into()),
                AxumMessage::Close(_) => break,
                other => other,
            };
            if socket.send(reply).await.is_err() {
                break;
            }
        }
    })
}

/// Route data with nothing beside the target.
pub fn no_data() -> serde_json::Map<String, serde_json::Value> {
    serde_json::Map::new()
}

/// Starts an axum app on a fresh port.
pub async fn start_backend(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A backend that answers every request with JSON naming itself, the path and query it got,
/// and every header; it counts requests.
pub async fn start_echo_backend(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().fallback(move |req: Request| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let status = if req.uri().path().ends_with("/missing") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::OK
            };
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into(),
                    )
                })
                .collect();
            let body = serde_json::json!({
                "name": name,
                "path": req.uri().path_and_query().map(|p| p.as_str().to_owned()),
                "headers": headers,
            });
            (status, axum::Json(body))
        }
    });
    (start_backend(app).await, hits)
}

/// A raw websocket echo server (tokio-tungstenite) that records the request path and Host it saw.
pub async fn start_websocket_echo_backend() -> (SocketAddr, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let callback =
                    |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
                        let host = req
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_owned())
                            .unwrap_or_default();
                        record.lock().unwrap().push((req.uri().to_string(), host));
                        Ok(resp)
                    };
                let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                    return;
                };
                while let Some(Ok(message)) = ws.next().await {
                    if message.is_close() {
                        break;
                    }
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A pooled client, like a browser.
pub fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GET `url` with a fresh pooled client.
pub async fn get_url(url: &str) -> Answer {
    send(http::Request::get(url).body(Body::empty()).unwrap()).await
}

pub async fn send(req: http::Request<Body>) -> Answer {
    let response = client().request(req).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// Sends `requests` one after another on one TCP connection we opened ourselves (so the test
/// knows its local address), with hyper's client connection.
pub async fn send_on_one_connection(
    addr: SocketAddr,
    requests: Vec<http::Request<Empty<Bytes>>>,
) -> (SocketAddr, Vec<Answer>) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut answers = Vec::new();
    for req in requests {
        let response = sender.send_request(req).await.unwrap();
        let (parts, body) = response.into_parts();
        answers.push(Answer {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        });
    }
    (local, answers)
}

/// Writes `raw` bytes on a new connection and reads until the server closes it.
pub async fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

/// Status code of the first response in a raw exchange.
pub fn first_status(raw_response: &str) -> u16 {
    raw_response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw_response:?}"))
}

/// `last_activity` of a route, as the hub would read it.
pub async fn last_activity(table: &RouteTable, routespec: &str) -> String {
    use proxy::Proxy;
    table.get_all_routes().await.unwrap()[routespec].data["last_activity"]
        .as_str()
        .unwrap()
        .to_owned()
}
