#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point
//! How the proxy uses its connections to backends: each client connection keeps its own
//! keep-alive connection per backend, replaces one the backend has closed without the client
//! noticing, and never reuses one whose response was not read to the end.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use proxy::Proxy;
use serde_json::Map;
use support::{send_on_one_connection, RunningProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How the raw backend answers.
#[derive(Clone, Copy)]
enum Style {
    /// `Content-Length` responses, connection kept open.
    KeepAlive,
    /// Chunked responses (three chunks), connection kept open.
    Chunked,
    /// Answers, then closes the connection a moment later without saying so (as a backend
    /// whose keep-alive timeout ran out does).
    CloseAfterEach,
}

/// A hand-written HTTP/1.1 backend on 127.0.0.1 that counts the connections it accepted. Each
/// response body is `{name} {method} {path} {request body length}`.
async fn raw_backend(name: &'static str, style: Style) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve_raw(stream, name, style));
        }
    });
    (addr, accepted)
}

async fn serve_raw(mut stream: TcpStream, name: &'static str, style: Style) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut request_line = head.lines().next().unwrap().split(' ');
        let method = request_line.next().unwrap().to_owned();
        let path = request_line.next().unwrap().to_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < head_end + length {
            let mut chunk = [0u8; 65536];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + length);
        let body = format!("{name} {method} {path} {length}");
        let response = match style {
            Style::KeepAlive | Style::CloseAfterEach => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            Style::Chunked => {
                let (a, rest) = body.split_at(body.len() / 3);
                let (b, c) = rest.split_at(rest.len() / 2);
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                     {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n{:x}\r\n{c}\r\n0\r\n\r\n",
                    a.len(),
                    b.len(),
                    c.len()
                )
            }
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        if matches!(style, Style::CloseAfterEach) {
            tokio::time::sleep(Duration::from_millis(20)).await;
            return;
        }
    }
}

async fn proxy_to(routes: &[(&str, SocketAddr)]) -> RunningProxy {
    let proxy = RunningProxy::start().await;
    for (prefix, addr) in routes {
        proxy
            .table
            .add_route(prefix, &format!("http://{addr}"), Map::new())
            .await
            .unwrap();
    }
    proxy
}

/// A client connection of our own to `addr`, driven in a task (aborting it drops the connection).
async fn client_connection<B>(
    addr: SocketAddr,
) -> (hyper::client::conn::http1::SendRequest<B>, JoinHandle<()>)
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, driver)
}

fn get(path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(path)
        .header("host", "xiji.test")
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn one_client_connection_uses_one_backend_connection_for_all_its_requests() {
    let (alice, accepted) = raw_backend("alice", Style::KeepAlive).await;
    let proxy = proxy_to(&[("/user/alice/", alice)]).await;
    let requests = (0..20).map(|i| get(&format!("/user/alice/{i}"))).collect();
    let (_, answers) = send_on_one_connection(proxy.addr, requests).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, format!("alice GET /user/alice/{i} 0"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A second client connection gets a backend connection of its own.
    let (_, answers) = send_on_one_connection(proxy.addr, vec![get("/user/alice/x")]).await;
    assert_eq!(answers[0].status, StatusCode::OK);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_bodies_and_chunked_responses_pass_on_a_reused_backend_connection() {
    let (alice, accepted) = raw_backend("alice", Style::Chunked).await;
    let proxy = proxy_to(&[("/user/alice/", alice)]).await;
    let (mut sender, _driver) = client_connection::<Full<Bytes>>(proxy.addr).await;
    for i in 0..6usize {
        let (method, body) = if i % 2 == 0 {
            ("GET", Bytes::new())
        } else {
            ("POST", Bytes::from(vec![b'x'; 1000 * i]))
        };
        let length = body.len();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("/user/alice/{i}"))
            .header("host", "xiji.test")
            .body(Full::new(body))
            .unwrap();
        let response = sender.send_request(req).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, format!("alice {method} /user/alice/{i} {length}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_backend_connection_closed_while_idle_is_replaced_without_the_client_noticing() {
    let (alice, accepted) = raw_backend("alice", Style::CloseAfterEach).await;
    let proxy = proxy_to(&[("/user/alice/", alice)]).await;
    let (mut sender, _driver) = client_connection::<Empty<Bytes>>(proxy.addr).await;
    for i in 0..4 {
        let response = sender
            .send_request(get(&format!("/user/alice/{i}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        let text = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(text, format!("alice GET /user/alice/{i} 0"));
        // Let the backend close its side before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_client_connection_alternating_between_backends_keeps_one_connection_to_each() {
    let (alice, alice_accepted) = raw_backend("alice", Style::KeepAlive).await;
    let (bob, bob_accepted) = raw_backend("bob", Style::KeepAlive).await;
    let proxy = proxy_to(&[("/user/alice/", alice), ("/user/bob/", bob)]).await;
    let requests = (0..10)
        .map(|i| {
            let who = if i % 2 == 0 { "alice" } else { "bob" };
            get(&format!("/user/{who}/{i}"))
        })
        .collect();
    let (_, answers) = send_on_one_connection(proxy.addr, requests).await;
    for (i, answer) in answers.iter().enumerate() {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(answer.body, format!("{who} GET /user/{who}/{i} 0"));
    }
    assert_eq!(alice_accepted.load(Ordering::SeqCst), 1);
    assert_eq!(bob_accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_response_the_client_abandoned_half_read_never_reaches_the_next_client() {
    // A backend streaming a long body slowly: the first client reads the head, then hangs up.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                if n == 0 {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst")
                        .await;
                    tokio::time::sleep(Duration::from_secs(5)).await;
                } else {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond")
                        .await;
                }
            });
        }
    });
    let proxy = proxy_to(&[("/user/alice/", addr)]).await;
    {
        let (mut sender, driver) = client_connection::<Empty<Bytes>>(proxy.addr).await;
        let response = sender.send_request(get("/user/alice/a")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        drop(response);
        drop(sender);
        driver.abort();
    }
    let (_, answers) = send_on_one_connection(proxy.addr, vec![get("/user/alice/b")]).await;
    assert_eq!(answers[0].body, "second");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upload_the_backend_refused_early_does_not_stall_the_client_connection() {
    // The backend answers 413 as soon as it has the head and never reads the 8 MiB body; its
    // connection stays open.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let Ok(n) = stream.read(&mut buf).await else {
                    return;
                };
                let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                let reply: &[u8] = if head.starts_with("POST") {
                    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                let _ = stream.write_all(reply).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let proxy = proxy_to(&[("/user/alice/", addr)]).await;
    let (mut sender, _driver) = client_connection::<Full<Bytes>>(proxy.addr).await;
    let upload = http::Request::post("/user/alice/upload")
        .header("host", "xiji.test")
        .body(Full::new(Bytes::from(vec![b'x'; 8 << 20])))
        .unwrap();
    let refused = tokio::time::timeout(Duration::from_secs(10), sender.send_request(upload))
        .await
        .expect("the refusal arrives");
    assert_eq!(refused.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The client connection then either serves the next request or is closed: it never hangs.
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        sender.ready().await?;
        let req = http::Request::get("/user/alice/next")
            .header("host", "xiji.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        sender.send_request(req).await
    })
    .await
    .expect("the client connection must not stall");
    if let Ok(response) = next {
        assert_eq!(response.status(), StatusCode::OK);
    }
}
