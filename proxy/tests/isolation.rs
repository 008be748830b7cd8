#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failed setup
//! Isolation: whatever a client writes in the path, a request reaches a user's server only if the
//! path that server receives is under that user's prefix. Hand-picked tricks plus property tests
//! (proptest) of the normalisation and of the whole proxy.

mod support;

use std::net::SocketAddr;

use proptest::prelude::*;
use proxy::Proxy;
use serde_json::Map;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request with `raw_target` as the request-target, exactly as written.
async fn raw_get(addr: SocketAddr, raw_target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {raw_target} HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut out),
    )
    .await
    .expect("the proxy did not answer")
    .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Which backend answered and the path it received, if a user backend answered.
fn reached(body: &str) -> Option<(String, String)> {
    let start = body.find('{')?;
    let json: serde_json::Value = serde_json::from_str(body[start..].trim()).ok()?;
    let name = json["name"].as_str()?.to_owned();
    if name == "hub" {
        return None;
    }
    Some((name, json["path"].as_str()?.to_owned()))
}

/// The user whose prefix the path lies under (`/user/{name}` or `/user/{name}/…`).
fn owner_of(path: &str) -> Option<&str> {
    let path = path.split('?').next()?;
    let rest = path.strip_prefix("/user/")?;
    Some(rest.split('/').next().unwrap_or(rest))
}

async fn two_users() -> RunningProxy {
    let proxy = RunningProxy::start().await;
    let (alice, _) = start_echo_backend("alice").await;
    let (bob, _) = start_echo_backend("bob").await;
    for (spec, addr) in [("/user/alice/", alice), ("/user/bob/", bob)] {
        proxy
            .table
            .add_route(spec, &format!("http://{addr}"), Map::new())
            .await
            .unwrap();
    }
    proxy
}

#[tokio::test]
async fn path_tricks_never_reach_another_users_server() {
    let proxy = two_users().await;
    let tricks = [
        "/user/alice/../bob/",
        "/user/alice/..%2fbob/",
        "/user/alice/%2e%2e/bob/",
        "/user/alice/%2E%2E/bob/api",
        "/user/alice/.%2e/bob/",
        "/user/alice/%2e./bob/",
        "/user/alice/./../bob/",
        "/user/alice/..\\bob/",
        "/user/alice\\..\\bob/",
        "/user/alice/%5c../bob",
        "/user/alice%2f..%2fbob/",
        "/user/alice%2F..%2Fbob/",
        "/user//alice/../bob/",
        "//user/alice/../bob/",
        "/user/alice/%252e%252e/bob/",
        "/user/Bob/",
        "/USER/bob/",
        "/user/BOB/x",
        "/user/bo%62/x",
        "/user/alice;/../bob/",
        "/user/alice/..;/bob/",
        "http://example.org/user/alice/../bob/",
        "/user/alice/%00/../bob",
        "/user/alice/%c0%ae%c0%ae/bob/",
    ];
    for trick in tricks {
        let (status, body) = raw_get(proxy.addr, trick).await;
        if let Some((name, path)) = reached(&body) {
            assert_eq!(
                owner_of(&path),
                Some(name.as_str()),
                "{trick} reached {name} with {path}"
            );
            assert!(
                !(name == "bob" && trick.contains("alice")),
                "{trick} got from alice's prefix to bob: {path} ({status})"
            );
        }
    }
    // Legitimate spellings of bob's own prefix still reach bob.
    for ok in ["/user/bob/", "//user//bob//lab", "/user/%62ob/x"] {
        let (_, body) = raw_get(proxy.addr, ok).await;
        assert_eq!(reached(&body).map(|r| r.0).as_deref(), Some("bob"), "{ok}");
    }
}

fn piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "/", "//", "user", "alice", "bob", "Bob", "%62ob", ".", "..", "%2e", "%2E", "%2e%2e",
        ".%2e", "%2f", "%2F", "\\", "%5c", "%5C", "%25", "%252e", ";", "..;", "?", "#", "%00", "~",
        "a.b", "%", "%4", "é", "%c3%a9", "%C0%AE",
    ])
}

fn raw_path() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 1..10).prop_map(|pieces| {
        let mut p = String::from("/");
        for piece in pieces {
            p.push_str(piece);
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The normalisation is idempotent, and what it accepts has no dot segment, backslash or
    /// extra separator even for a backend that percent-decodes everything.
    #[test]
    fn normalised_paths_are_stable_and_hold_no_traversal(raw in raw_path()) {
        if let Ok(path) = proxy::normalize_request_path(&raw) {
            prop_assert_eq!(proxy::normalize_request_path(&path), Ok(path.clone()));
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"));
            let decoded = percent_encoding::percent_decode_str(&path).decode_utf8_lossy();
            prop_assert_eq!(decoded.matches('/').count(), path.matches('/').count());
            for segment in decoded.split('/') {
                prop_assert!(segment != "." && segment != "..", "{} -> {}", raw, path);
                prop_assert!(!segment.contains('\\'));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// End to end: a generated request reaches a user's server only with a path under that
    /// user's own prefix.
    #[test]
    fn generated_requests_reach_only_the_owner_of_the_path(raw in raw_path()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let proxy = two_users().await;
            let target = raw.replace(' ', "%20");
            let (_, body) = raw_get(proxy.addr, &target).await;
            if let Some((name, path)) = reached(&body) {
                assert_eq!(owner_of(&path), Some(name.as_str()), "{raw} reached {name} as {path}");
            }
        });
    }
}
