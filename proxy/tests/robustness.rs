#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failed setup
//! Robustness: malformed and hostile HTTP is refused, and thousands of clients that vanish
//! mid-request or mid-websocket leave no task or file descriptor behind.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy::{Proxy, ProxyConfig};
use serde_json::Map;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_close() {
    let proxy = RunningProxy::start().await;
    let (alice, hits) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), Map::new())
        .await
        .unwrap();
    let cases: [(&[u8], &[u16]); 8] = [
        (b"GARBAGE\r\n\r\n", &[400]),
        (b"GET /user/alice/ HTTP/9.9\r\nHost: x\r\n\r\n", &[400, 505]),
        (b"GET /user/alice/ HTTP/1.1\r\nHost x\r\n\r\n", &[400]),
        (b"GET /user/alice/ HTTP/1.1\r\nHo st: x\r\n\r\n", &[400]),
        (b"GET /user/alice/\x01 HTTP/1.1\r\nHost: x\r\n\r\n", &[400]),
        // Two Content-Lengths that disagree.
        (
            b"POST /user/alice/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
            &[400],
        ),
        // Transfer-Encoding that is not chunked-last.
        (
            b"POST /user/alice/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            &[400, 501],
        ),
        // Invalid chunk size.
        (
            b"POST /user/alice/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
            &[200, 400, 502],
        ),
    ];
    for (raw, allowed) in cases {
        let answer = raw_exchange(proxy.addr, raw).await;
        let status = first_status(&answer);
        assert!(
            allowed.contains(&status),
            "{:?} got {status}",
            String::from_utf8_lossy(raw)
        );
    }
    // None of the refused heads reached the backend (the bad chunk may, but is cut off).
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) <= 1);
}

#[tokio::test]
async fn oversized_heads_get_431() {
    let proxy = RunningProxy::start().await;
    let big = "a".repeat(70 * 1024);
    let raw = format!("GET /user/alice/ HTTP/1.1\r\nHost: x\r\nCookie: {big}\r\n\r\n");
    let answer = raw_exchange(proxy.addr, raw.as_bytes()).await;
    assert_eq!(
        first_status(&answer),
        431,
        "{}",
        &answer[..answer.len().min(200)]
    );
    let mut many = String::from("GET /user/alice/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw_exchange(proxy.addr, many.as_bytes()).await;
    assert_eq!(first_status(&answer), 431);
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_are_refused_or_never_smuggle() {
    let proxy = RunningProxy::start().await;
    let (alice, hits) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), Map::new())
        .await
        .unwrap();
    // CL.TE and TE.CL: a second request hidden in the body must never be seen as a request.
    for raw in [
        &b"POST /user/alice/a HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /user/alice/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &b"POST /user/alice/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGET /user/alice/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\nx=\r\n0\r\n\r\n"[..],
        &b"POST /user/alice/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"[..],
    ] {
        let answer = raw_exchange(proxy.addr, raw).await;
        assert!(
            !answer.contains("smuggled"),
            "a smuggled request was answered: {answer}"
        );
        let statuses = answer.matches("HTTP/1.1 ").count();
        assert!(statuses <= 1, "more than one answer: {answer}");
    }
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) <= 2);
}

/// Opens a websocket through the proxy with a raw handshake and returns the stream after 101.
async fn raw_websocket(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(
            b"GET /user/ws/echo HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    head.starts_with(b"HTTP/1.1 101").then_some(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_vanishing_clients_leak_no_tasks_or_fds() {
    let proxy = RunningProxy::start_with(ProxyConfig::default()).await;
    let (alice, _) = start_echo_backend("alice").await;
    let (ws, _) = start_websocket_echo_backend().await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), Map::new())
        .await
        .unwrap();
    proxy
        .table
        .add_route("/user/ws/", &format!("http://{ws}"), Map::new())
        .await
        .unwrap();
    // Warm up: let every lazy thing start.
    for _ in 0..8 {
        assert_eq!(get_url(&proxy.url("/user/alice/warm")).await.status, 200);
    }
    let mut warm_ws = raw_websocket(proxy.addr).await.unwrap();
    warm_ws.shutdown().await.ok();
    drop(warm_ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds_before = open_fds();
    let tasks_before = alive_tasks();

    const CLIENTS: usize = 10_000;
    const AT_ONCE: usize = 100;
    let addr = proxy.addr;
    let started = Instant::now();
    let mut websockets_opened = 0usize;
    for batch in 0..CLIENTS / AT_ONCE {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..AT_ONCE {
            let kind = (batch * AT_ONCE + i) % 4;
            set.spawn(async move {
                match kind {
                    // Half a request head.
                    0 => {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        let _ = s.write_all(b"GET /user/alice/x HTTP/1.1\r\nHost: x\r\nX-Half: ").await;
                        false
                    }
                    // A head, then part of the promised body.
                    1 => {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        let _ = s
                            .write_all(b"POST /user/alice/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\npartial")
                            .await;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        false
                    }
                    // A whole request, gone before reading the answer.
                    2 => {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        let _ = s.write_all(b"GET /user/alice/x HTTP/1.1\r\nHost: x\r\n\r\n").await;
                        false
                    }
                    // A websocket, gone mid-frame.
                    _ => match raw_websocket(addr).await {
                        Some(mut s) => {
                            // A masked text frame header promising 100 bytes, then 3 of them.
                            let _ = s.write_all(&[0x81, 0xE4, 1, 2, 3, 4, b'a', b'b', b'c']).await;
                            true
                        }
                        None => false,
                    },
                }
            });
        }
        while let Some(result) = set.join_next().await {
            if result.unwrap() {
                websockets_opened += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "too slow: {batch} batches"
        );
    }
    assert!(
        websockets_opened >= CLIENTS / 4 * 9 / 10,
        "{websockets_opened}"
    );

    // Everything the clients left behind is torn down soon (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(30);
    let slack = 16;
    loop {
        let (fds, tasks) = (open_fds(), alive_tasks());
        if fds <= fds_before + slack && tasks <= tasks_before + slack {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: fds {fds_before} -> {fds}, tasks {tasks_before} -> {tasks}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And the proxy still works.
    assert_eq!(get_url(&proxy.url("/user/alice/after")).await.status, 200);
}
