#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)] // tests panic on failed setup
//! The proxy against real servers on 127.0.0.1: routing, forwarding, streaming, websockets,
//! failures, path safety and activity.

mod support;

use std::hash::Hasher;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use proxy::{Proxy, ProxyConfig};
use serde_json::Map;
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn requests_go_to_the_longest_matching_route_with_path_and_query_intact() {
    let proxy = RunningProxy::start().await;
    let (users, _) = start_echo_backend("users").await;
    let (alice, _) = start_echo_backend("alice").await;
    let (named, _) = start_echo_backend("alice-named").await;
    for (spec, addr) in [
        ("/user/", users),
        ("/user/alice/", alice),
        ("/user/alice/named/", named),
    ] {
        proxy
            .table
            .add_route(spec, &format!("http://{addr}"), no_data())
            .await
            .unwrap();
    }

    for (path, backend) in [
        ("/user/alice/lab?x=1&y=%2F", "alice"),
        ("/user/alice", "alice"),
        ("/user/alice/", "alice"),
        ("/user/alice/named/api/status", "alice-named"),
        ("/user/alicex", "users"),
        ("/user/bob/tree", "users"),
    ] {
        let answer = get_url(&proxy.url(path)).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let json = answer.json();
        assert_eq!(json["name"], backend, "{path}");
        assert_eq!(
            json["path"], path,
            "the backend must see the full path and query"
        );
    }
}

#[tokio::test]
async fn unmatched_requests_reach_the_fallback_with_the_client_address() {
    let proxy = RunningProxy::start().await;
    let (alice, hits) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();

    let requests = ["/hub/home?next=%2Fuser", "/user/alicex/lab", "/"]
        .into_iter()
        .map(|p| {
            http::Request::get(p)
                .header("host", proxy.addr.to_string())
                .body(Empty::<Bytes>::new())
                .unwrap()
        })
        .collect();
    let (local, answers) = send_on_one_connection(proxy.addr, requests).await;
    for (answer, path) in answers
        .iter()
        .zip(["/hub/home?next=%2Fuser", "/user/alicex/lab", "/"])
    {
        let json = answer.json();
        assert_eq!(json["name"], "hub");
        assert_eq!(json["path"], path);
        assert_eq!(json["peer"], local.to_string());
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_fallback_sees_the_normalised_path() {
    let proxy = RunningProxy::start().await;
    let answer = get_url(&proxy.url("//hub//%61pi/?q=1")).await;
    assert_eq!(answer.json()["path"], "/hub/api/?q=1");
}

#[tokio::test]
async fn forwarded_requests_keep_host_add_x_forwarded_and_drop_hop_by_hop_headers() {
    let proxy = RunningProxy::start().await;
    let (alice, _) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();

    let req = http::Request::get(proxy.url("/user/alice/api"))
        .header("host", "hub.example.org:8443")
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("te", "trailers")
        .header("cookie", "jupyterhub-session-id=abc")
        .body(Body::empty())
        .unwrap();
    let answer = send(req).await;
    let headers = &answer.json()["headers"];
    assert_eq!(headers["host"], "hub.example.org:8443");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-forwarded-host"], "hub.example.org:8443");
    assert_eq!(headers["x-forwarded-port"], "8443");
    assert_eq!(headers["cookie"], "jupyterhub-session-id=abc");
    for hop in ["x-hop", "keep-alive", "proxy-authorization", "te"] {
        assert!(headers.get(hop).is_none(), "{hop} was forwarded");
    }
    assert!(answer.headers.get("transfer-encoding").is_none() || !answer.body.is_empty());
}

#[tokio::test]
async fn x_forward_can_be_turned_off() {
    let proxy = RunningProxy::start_with(ProxyConfig {
        x_forward: false,
        ..ProxyConfig::default()
    })
    .await;
    let (alice, _) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();
    let headers = get_url(&proxy.url("/user/alice/")).await.json()["headers"].clone();
    assert!(headers.get("x-forwarded-for").is_none());
}

#[tokio::test]
async fn a_target_path_is_prepended_to_the_forwarded_path() {
    let proxy = RunningProxy::start().await;
    let (backend, _) = start_echo_backend("svc").await;
    proxy
        .table
        .add_route(
            "/services/x/",
            &format!("http://{backend}/base/"),
            no_data(),
        )
        .await
        .unwrap();
    let json = get_url(&proxy.url("/services/x/api?q")).await.json();
    assert_eq!(json["path"], "/base/services/x/api?q");
}

#[tokio::test]
async fn a_client_keeps_its_connection_across_proxied_requests() {
    let proxy = RunningProxy::start().await;
    let (alice, hits) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();
    let requests = (0..5)
        .map(|i| {
            http::Request::get(format!("/user/alice/{i}"))
                .header("host", "x")
                .body(Empty::<Bytes>::new())
                .unwrap()
        })
        .collect();
    let (_, answers) = send_on_one_connection(proxy.addr, requests).await;
    assert!(answers.iter().all(|a| a.status == StatusCode::OK));
    assert_eq!(hits.load(Ordering::SeqCst), 5);
}

const CHUNK: usize = 64 * 1024;
const LARGE_BODY_CHUNKS: u64 = 3_200; // 200 MiB

/// Chunk `i` of a large generated body: a fixed pseudo-random block stamped with its index, so
/// reordered, lost or repeated chunks change the hash.
fn generated_chunk(base: &Bytes, i: u64) -> Bytes {
    let mut chunk = base.to_vec();
    chunk[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(chunk)
}

fn base_block() -> Bytes {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    (0..CHUNK)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

fn generated_body_hash() -> (u64, u64) {
    let base = base_block();
    let mut hasher = std::hash::DefaultHasher::new();
    for i in 0..LARGE_BODY_CHUNKS {
        hasher.write(&generated_chunk(&base, i));
    }
    (hasher.finish(), LARGE_BODY_CHUNKS * CHUNK as u64)
}

fn generated_body() -> Body {
    let base = base_block();
    Body::from_stream(
        futures_util::stream::iter(0..LARGE_BODY_CHUNKS)
            .map(move |i| Ok::<_, std::io::Error>(generated_chunk(&base, i))),
    )
}

async fn hash_body(body: Body) -> (u64, u64) {
    let mut hasher = std::hash::DefaultHasher::new();
    let mut len = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        len += chunk.len() as u64;
        hasher.write(&chunk);
    }
    (hasher.finish(), len)
}

#[tokio::test]
async fn a_200_mib_body_streams_through_in_both_directions_byte_for_byte() {
    let proxy = RunningProxy::start().await;
    let app = Router::new()
        .route(
            "/user/alice/upload",
            post(|body: Body| async move {
                let (hash, len) = hash_body(body).await;
                format!("{hash} {len}")
            }),
        )
        .route("/user/alice/download", get(|| async { generated_body() }));
    let backend = start_backend(app).await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();
    let expected = generated_body_hash();

    let upload = send(
        http::Request::post(proxy.url("/user/alice/upload"))
            .body(generated_body())
            .unwrap(),
    )
    .await;
    assert_eq!(upload.status, StatusCode::OK);
    assert_eq!(upload.text(), format!("{} {}", expected.0, expected.1));

    let response = client()
        .request(
            http::Request::get(proxy.url("/user/alice/download"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let downloaded = hash_body(Body::new(response.into_body())).await;
    assert_eq!(downloaded, expected);
}

#[tokio::test]
async fn response_bytes_reach_the_client_before_the_backend_finishes() {
    let proxy = RunningProxy::start().await;
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let release_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
    let app = Router::new().route(
        "/user/alice/events",
        get(move || {
            let release_rx = std::sync::Arc::clone(&release_rx);
            async move {
                let rx = release_rx.lock().await.take().unwrap();
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(Bytes::from_static(b"first;"))
                });
                let rest = futures_util::stream::once(async move {
                    let _ = rx.await;
                    Ok::<_, std::io::Error>(Bytes::from_static(b"last"))
                });
                Body::from_stream(first.chain(rest))
            }
        }),
    );
    let backend = start_backend(app).await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();

    let response = client()
        .request(
            http::Request::get(proxy.url("/user/alice/events"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk must arrive while the backend is still sending")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    release_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"last");
}

#[tokio::test]
async fn websocket_messages_echo_through_the_proxy_with_the_clients_host() {
    let proxy = RunningProxy::start().await;
    let (backend, seen) = start_websocket_echo_backend().await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();

    let url = format!(
        "ws://{}/user/alice/api/kernels/k1/channels?session_id=s",
        proxy.addr
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));
    let big = vec![7u8; 1 << 20];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
    ws.close(None).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(
            "/user/alice/api/kernels/k1/channels?session_id=s".to_owned(),
            proxy.addr.to_string()
        )]
    );
}

#[tokio::test]
async fn websocket_upgrades_to_the_fallback_keep_working() {
    let proxy = RunningProxy::start().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/hub/ws", proxy.addr))
        .await
        .unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hub: ping")
    );
}

/// A message (and its echo) moves the route's `last_activity`: at once when the proxy copies the
/// tunnel, within the splice's one-second activity poll when the kernel moves the bytes.
async fn websocket_traffic_moves_last_activity(config: ProxyConfig) {
    let proxy = RunningProxy::start_with(config).await;
    let (backend, _) = start_websocket_echo_backend().await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/user/alice/ws", proxy.addr))
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let before = last_activity(&proxy.table, "/user/alice/").await;
    ws.send(Message::text("typing")).await.unwrap();
    ws.next().await.unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_millis(2_500);
    loop {
        let after = last_activity(&proxy.table, "/user/alice/").await;
        if after > before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{after} should be later than {before}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn websocket_traffic_moves_last_activity_when_spliced() {
    websocket_traffic_moves_last_activity(ProxyConfig::default()).await;
}

#[tokio::test]
async fn websocket_traffic_moves_last_activity_when_copied() {
    websocket_traffic_moves_last_activity(ProxyConfig {
        kernel_splice: false,
        ..ProxyConfig::default()
    })
    .await;
}

#[tokio::test]
async fn successful_requests_move_last_activity_and_errors_do_not() {
    let proxy = RunningProxy::start().await;
    let (alice, _) = start_echo_backend("alice").await;
    let mut data = Map::new();
    data.insert("user".into(), "alice".into());
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), data)
        .await
        .unwrap();
    let added = last_activity(&proxy.table, "/user/alice/").await;
    let route = &proxy.table.get_all_routes().await.unwrap()["/user/alice/"];
    assert_eq!(route.data["user"], "alice");
    assert_eq!(route.target, format!("http://{alice}"));

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let answer = get_url(&proxy.url("/user/alice/missing")).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(last_activity(&proxy.table, "/user/alice/").await, added);

    get_url(&proxy.url("/user/alice/api/status")).await;
    let after = last_activity(&proxy.table, "/user/alice/").await;
    assert!(after > added, "{after} should be later than {added}");
}

#[tokio::test]
async fn a_dead_backend_gets_a_503_page_at_once() {
    let proxy = RunningProxy::start().await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    proxy
        .table
        .add_route(
            "/user/alice/",
            &format!("http://127.0.0.1:{port}"),
            no_data(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = get_url(&proxy.url("/user/alice/lab")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(answer.text().contains("not reachable"), "{}", answer.text());
    assert_eq!(answer.headers["content-type"], "text/html; charset=utf-8");
}

#[tokio::test]
async fn a_slow_backend_times_out_with_504_without_delaying_other_routes() {
    let proxy = RunningProxy::start_with(ProxyConfig {
        response_timeout: Some(Duration::from_millis(1_500)),
        ..ProxyConfig::default()
    })
    .await;
    let slow = start_backend(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "too late"
    }))
    .await;
    let (fast, _) = start_echo_backend("fast").await;
    proxy
        .table
        .add_route("/user/slow/", &format!("http://{slow}"), no_data())
        .await
        .unwrap();
    proxy
        .table
        .add_route("/user/fast/", &format!("http://{fast}"), no_data())
        .await
        .unwrap();

    let slow_url = proxy.url("/user/slow/");
    let slow_request = tokio::spawn(async move { get_url(&slow_url).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(
            get_url(&proxy.url("/user/fast/")).await.status,
            StatusCode::OK
        );
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    let slow_answer = slow_request.await.unwrap();
    assert_eq!(slow_answer.status, StatusCode::GATEWAY_TIMEOUT);
}

#[tokio::test]
async fn path_traversal_is_refused_with_400_and_never_reaches_a_backend() {
    let proxy = RunningProxy::start().await;
    let (alice, alice_hits) = start_echo_backend("alice").await;
    let (bob, bob_hits) = start_echo_backend("bob").await;
    for (spec, addr) in [("/user/alice/", alice), ("/user/bob/", bob)] {
        proxy
            .table
            .add_route(spec, &format!("http://{addr}"), no_data())
            .await
            .unwrap();
    }
    for path in [
        "/user/alice/../bob/",
        "/user/alice/./x",
        "/user/alice/%2e%2e/bob/",
        "/user/alice/%2E%2e/bob/",
        "/user/alice/.%2e/bob",
        "/user/alice/..%2Fbob/",
        "/user/alice%2F..%2Fbob/",
        "/user/alice/%5C..%5Cbob",
        "/user/alice/..\\bob",
        "/hub/../user/bob/",
        "/user/alice/%zz",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let response = raw_exchange(proxy.addr, raw.as_bytes()).await;
        assert_eq!(first_status(&response), 400, "{path}: {response}");
    }
    assert_eq!(alice_hits.load(Ordering::SeqCst), 0);
    assert_eq!(bob_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn routes_are_case_sensitive() {
    let proxy = RunningProxy::start().await;
    let (alice, _) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();
    assert_eq!(
        get_url(&proxy.url("/user/Alice/")).await.json()["name"],
        "hub"
    );
    assert_eq!(
        get_url(&proxy.url("/user/%61lice/")).await.json()["name"],
        "alice"
    );
}

/// Property: for many generated request paths, whatever answers (a backend or the hub), the path
/// it received lies under the route that was chosen, and never contains a dot segment.
#[tokio::test]
async fn generated_paths_are_always_forwarded_under_the_route_that_matched() {
    let proxy = RunningProxy::start().await;
    let mut backends = Vec::new();
    for (spec, name) in [
        ("/user/alice/", "alice"),
        ("/user/alice/srv/", "alice-srv"),
        ("/user/bob/", "bob"),
        ("/services/x/", "svc"),
    ] {
        let (addr, _) = start_echo_backend(name).await;
        proxy
            .table
            .add_route(spec, &format!("http://{addr}"), no_data())
            .await
            .unwrap();
        backends.push((spec.trim_end_matches('/'), name));
    }
    let pieces = [
        "/", "//", "user", "alice", "bob", "srv", "services", "x", "alicex", "%61lice", ".", "..",
        "%2e", "%2E%2e", "%2f", "%5c", "lab", "%20", "~", "a.b",
    ];
    let mut state = 0x1234_5678_9ABC_DEF1u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let client = client();
    let mut forwarded = 0;
    for _ in 0..400 {
        // Start near a route half of the time, so many paths are forwarded.
        let starts = [
            "/",
            "/user/alice",
            "/user/alice/srv",
            "/user/bob",
            "/services/x",
            "/user",
        ];
        let mut path = String::from(starts[(next() % starts.len() as u64) as usize]);
        for _ in 0..(next() % 6) {
            path.push_str(pieces[(next() % pieces.len() as u64) as usize]);
        }
        let req = http::Request::get(proxy.url(&path))
            .body(Body::empty())
            .unwrap();
        let response = client.request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        if status == StatusCode::BAD_REQUEST {
            continue;
        }
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let seen = json["path"].as_str().unwrap();
        let decoded = percent_encoding::percent_decode_str(seen).decode_utf8_lossy();
        assert!(
            !decoded.split('/').any(|s| s == "." || s == ".."),
            "{path} reached {seen}"
        );
        let expected = proxy.table.route_for_path(&path);
        match backends.iter().find(|(_, name)| json["name"] == *name) {
            Some((prefix, _)) => {
                forwarded += 1;
                let route = expected.expect("a backend answered, so a route matched");
                assert_eq!(route.routespec.trim_end_matches('/'), *prefix);
                assert!(
                    seen.starts_with(prefix),
                    "{path} → {seen} not under {prefix}"
                );
                let rest = &seen[prefix.len()..];
                assert!(
                    rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'),
                    "{path} → {seen} not under {prefix}"
                );
            }
            None => assert_eq!(json["name"], "hub", "{path}"),
        }
    }
    assert!(
        forwarded > 20,
        "only {forwarded} generated paths reached a backend"
    );
}

#[tokio::test]
async fn content_length_with_transfer_encoding_cannot_smuggle_a_second_request() {
    let proxy = RunningProxy::start().await;
    let (alice, hits) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();
    // A front end honouring Content-Length would read "0\r\n\r\nGET /user/alice/smuggled…" as
    // this request's body; one honouring chunked would see a second request. The proxy must
    // take chunked, forward one request and close the connection, never parsing the rest.
    let smuggled = "GET /user/alice/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let raw = format!(
        "POST /user/alice/upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\
         Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let response = raw_exchange(proxy.addr, raw.as_bytes()).await;
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert!(!response.contains("smuggled"), "{response}");
    assert!(hits.load(Ordering::SeqCst) <= 1);

    let conflicting = "POST /user/alice/ HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
                       Content-Length: 30\r\n\r\nabc";
    let response = raw_exchange(proxy.addr, conflicting.as_bytes()).await;
    assert_eq!(first_status(&response), 400, "{response}");
}

#[tokio::test]
async fn a_malformed_request_line_gets_400() {
    let proxy = RunningProxy::start().await;
    let response = raw_exchange(proxy.addr, b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(first_status(&response), 400, "{response}");
    let response = raw_exchange(
        proxy.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(first_status(&response), 400, "{response}");
}

#[tokio::test]
async fn one_hundred_thousand_routes_are_added_quickly_and_still_route_correctly() {
    let proxy = RunningProxy::start().await;
    let (even, _) = start_echo_backend("even").await;
    let (odd, _) = start_echo_backend("odd").await;
    let (even, odd) = (format!("http://{even}"), format!("http://{odd}"));

    let started = Instant::now();
    for i in 0..100_000u32 {
        let target = if i % 2 == 0 { &even } else { &odd };
        let mut data = Map::new();
        data.insert("user".into(), format!("u{i}").into());
        proxy
            .table
            .add_route(&format!("/user/u{i}/"), target, data)
            .await
            .unwrap();
    }
    let adding = started.elapsed();
    assert_eq!(proxy.table.len(), 100_000);
    assert!(adding < Duration::from_secs(20), "adding took {adding:?}");

    let started = Instant::now();
    for i in (0..100_000u32).step_by(7) {
        let route = proxy
            .table
            .route_for_path(&format!("/user/u{i}/lab/tree/notebook.ipynb"))
            .unwrap();
        assert_eq!(route.routespec, format!("/user/u{i}/"));
    }
    assert!(proxy.table.route_for_path("/user/u100000/").is_none());
    let looking_up = started.elapsed();
    assert!(
        looking_up < Duration::from_secs(5),
        "lookups took {looking_up:?}"
    );

    for i in [0u32, 1, 4_242, 99_999] {
        let json = get_url(&proxy.url(&format!("/user/u{i}/api"))).await.json();
        assert_eq!(json["name"], if i % 2 == 0 { "even" } else { "odd" });
    }
    let all = proxy.table.get_all_routes().await.unwrap();
    assert_eq!(all.len(), 100_000);
    assert_eq!(all["/user/u77/"].data["user"], "u77");
}

#[tokio::test]
async fn deleted_routes_fall_back_to_the_hub() {
    let proxy = RunningProxy::start().await;
    let (alice, _) = start_echo_backend("alice").await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{alice}"), no_data())
        .await
        .unwrap();
    assert_eq!(
        get_url(&proxy.url("/user/alice/")).await.json()["name"],
        "alice"
    );
    proxy.table.delete_route("/user/alice/").await.unwrap();
    proxy.table.delete_route("/user/alice/").await.unwrap();
    assert_eq!(
        get_url(&proxy.url("/user/alice/")).await.json()["name"],
        "hub"
    );
}

#[tokio::test]
async fn shutdown_closes_open_websockets_and_serve_returns() {
    let proxy = RunningProxy::start_with(ProxyConfig {
        shutdown_grace: Duration::from_secs(2),
        ..ProxyConfig::default()
    })
    .await;
    let (backend, _) = start_websocket_echo_backend().await;
    proxy
        .table
        .add_route("/user/alice/", &format!("http://{backend}"), no_data())
        .await
        .unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/user/alice/ws", proxy.addr))
            .await
            .unwrap();
    let addr = proxy.addr;
    let started = Instant::now();
    proxy.stop().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let next = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .unwrap();
    assert!(!matches!(next, Some(Ok(Message::Text(_)))));
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
