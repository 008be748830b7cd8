#![allow(clippy::unwrap_used, clippy::expect_used)] // tests panic on failed setup
//! The standalone proxy: CHP's REST API (status codes, bodies, auth), the default and error
//! targets, host routing, TLS, and `ChpClient` driving it.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use proxy::{ChpClient, Proxy, StandaloneArgs};
use serde_json::{json, Map, Value};
use support::*;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TOKEN: &str = "proxy-api-token-0123456789";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: StandaloneArgs,
}

struct Standalone {
    public: SocketAddr,
    api: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Standalone {
    async fn start(extra: &[&str], token: Option<&str>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let public = listener.local_addr().unwrap();
        let api = api_listener.local_addr().unwrap();
        let mut argv = vec!["xiji-proxy", "--ip", "127.0.0.1"];
        argv.extend_from_slice(extra);
        let args = Cli::parse_from(argv).args;
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(proxy::run_standalone_on(
            args,
            listener,
            api_listener,
            token.map(str::to_owned),
            async move {
                let _ = rx.await;
            },
        ));
        Self {
            public,
            api,
            stop: Some(tx),
        }
    }

    fn api_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.api)
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.public)
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn authed(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    builder.header("Authorization", format!("token {TOKEN}"))
}

#[tokio::test]
async fn the_api_needs_the_token_and_answers_403_without_it() {
    let proxy = Standalone::start(&[], Some(TOKEN)).await;
    let c = http();
    for auth in [None, Some("token wrong"), Some(&*format!("Bearer {TOKEN}"))] {
        let mut req = c.get(proxy.api_url("/api/routes"));
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 403, "{auth:?}");
    }
    let del = c.delete(proxy.api_url("/api/routes/user/x"));
    assert_eq!(del.send().await.unwrap().status(), 403);
    let post = c
        .post(proxy.api_url("/api/routes/user/x"))
        .body(r#"{"target": "http://127.0.0.1:1"}"#);
    assert_eq!(post.send().await.unwrap().status(), 403);
    // CHP parses the body before checking the token.
    let bad = c.post(proxy.api_url("/api/routes/user/x")).body("{nope");
    assert_eq!(bad.send().await.unwrap().status(), 400);
    // Other paths and methods.
    let other = authed(c.get(proxy.api_url("/api/other")));
    assert_eq!(other.send().await.unwrap().status(), 404);
    let put = authed(c.put(proxy.api_url("/api/routes/x")));
    assert_eq!(put.send().await.unwrap().status(), 405);
    let ok = authed(c.get(proxy.api_url("/api/routes")));
    assert_eq!(ok.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn routes_are_added_read_and_deleted_with_chp_status_codes_and_bodies() {
    let proxy = Standalone::start(&[], Some(TOKEN)).await;
    let (alice, _) = start_echo_backend("alice").await;
    let c = http();

    let added = authed(c.post(proxy.api_url("/api/routes/user/alice")))
        .json(&json!({"target": format!("http://{alice}"), "user": "alice", "jupyterhub": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    assert_eq!(added.text().await.unwrap(), "");

    let one: Value = authed(c.get(proxy.api_url("/api/routes/user/alice")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["target"], format!("http://{alice}"));
    assert_eq!(one["user"], "alice");
    assert_eq!(one["jupyterhub"], true);
    let stamp = one["last_activity"].as_str().unwrap();
    assert!(stamp.ends_with('Z') && stamp.len() == 24, "{stamp}");

    let all: Map<String, Value> = authed(c.get(proxy.api_url("/api/routes")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["/user/alice"]);
    assert_eq!(all["/user/alice"], one);

    // Traffic through the public port reaches the target.
    let answer = get_url(&proxy.url("/user/alice/api/status")).await;
    assert_eq!(answer.json()["name"], "alice");

    let missing = authed(c.get(proxy.api_url("/api/routes/user/bob")))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let no_target = authed(c.post(proxy.api_url("/api/routes/user/bob")))
        .json(&json!({"user": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_target.status(), 400);
    assert_eq!(
        no_target.text().await.unwrap(),
        "Must specify 'target' as string"
    );

    let deleted = authed(c.delete(proxy.api_url("/api/routes/user/alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let again = authed(c.delete(proxy.api_url("/api/routes/user/alice")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    // No route, no default target: 404 from the proxy.
    assert_eq!(get_url(&proxy.url("/user/alice/")).await.status, 404);
}

#[tokio::test]
async fn inactive_since_filters_by_traffic_and_bad_dates_get_400() {
    let proxy = Standalone::start(&[], Some(TOKEN)).await;
    let (alice, _) = start_echo_backend("alice").await;
    let (bob, _) = start_echo_backend("bob").await;
    let c = http();
    for (name, addr) in [("alice", alice), ("bob", bob)] {
        let r = authed(c.post(proxy.api_url(&format!("/api/routes/user/{name}"))))
            .json(&json!({"target": format!("http://{addr}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cutoff = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        get_url(&proxy.url("/user/alice/x")).await.status,
        http::StatusCode::OK
    );
    for param in ["inactive_since", "inactiveSince"] {
        let idle: Map<String, Value> =
            authed(c.get(proxy.api_url(&format!("/api/routes?{param}={cutoff}"))))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        assert_eq!(idle.keys().collect::<Vec<_>>(), ["/user/bob"], "{param}");
    }
    let bad = authed(c.get(proxy.api_url("/api/routes?inactive_since=yesterday")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(
        bad.text().await.unwrap(),
        "Invalid datestamp 'yesterday' must be ISO8601."
    );
}

#[tokio::test]
async fn the_default_target_gets_everything_unmatched_and_the_hub_can_replace_it() {
    let (hub, _) = start_echo_backend("hub").await;
    let (other, _) = start_echo_backend("other").await;
    let default = format!("http://{hub}");
    let proxy = Standalone::start(&["--default-target", &default], None).await;
    let answer = get_url(&proxy.url("/hub/home?x=1")).await;
    assert_eq!(answer.json()["name"], "hub");
    assert_eq!(answer.json()["path"], "/hub/home?x=1");
    // An open API (no token): like JupyterHub, the hub registers itself as `/` with data.
    let client = ChpClient::new(&format!("http://{}", proxy.api), None).unwrap();
    let mut data = Map::new();
    data.insert("hub".into(), Value::Bool(true));
    client
        .add_route("/", &format!("http://{other}"), data)
        .await
        .unwrap();
    assert_eq!(
        get_url(&proxy.url("/anything")).await.json()["name"],
        "other"
    );
    let routes = client.get_all_routes().await.unwrap();
    assert_eq!(routes["/"].data["hub"], true);
    assert!(routes["/"].data.contains_key("last_activity"));
}

#[tokio::test]
async fn chp_client_drives_the_standalone_proxy_through_the_proxy_trait() {
    let proxy = Standalone::start(&[], Some(TOKEN)).await;
    let (alice, _) = start_echo_backend("alice").await;
    let client = ChpClient::new(&format!("http://{}/", proxy.api), Some(TOKEN.to_owned())).unwrap();
    let mut data = Map::new();
    data.insert("user".into(), "alice".into());
    data.insert("server_name".into(), "".into());
    client
        .add_route("/user/alice/", &format!("http://{alice}"), data)
        .await
        .unwrap();
    let routes = client.get_all_routes().await.unwrap();
    let route = &routes["/user/alice/"];
    assert_eq!(route.routespec, "/user/alice/");
    assert_eq!(route.target, format!("http://{alice}"));
    assert_eq!(route.data["user"], "alice");
    assert!(route.data["last_activity"].is_string());
    assert_eq!(
        get_url(&proxy.url("/user/alice/lab")).await.json()["name"],
        "alice"
    );
    client.delete_route("/user/alice/").await.unwrap();
    client.delete_route("/user/alice/").await.unwrap();
    assert!(client.get_all_routes().await.unwrap().is_empty());

    let wrong = ChpClient::new(&format!("http://{}", proxy.api), Some("nope".into())).unwrap();
    assert!(wrong.get_all_routes().await.is_err());
}

#[tokio::test]
async fn a_dead_backend_gets_the_error_targets_page_at_once() {
    let pages = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        (
            [("content-type", "text/plain; charset=utf-8")],
            format!("custom page for {}", req.uri()),
        )
    });
    let pages_addr = start_backend(pages).await;
    let error_target = format!("http://{pages_addr}/errors");
    let proxy = Standalone::start(&["--error-target", &error_target], Some(TOKEN)).await;
    // A port nothing listens on.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let c = http();
    authed(c.post(proxy.api_url("/api/routes/user/gone")))
        .json(&json!({"target": format!("http://{dead_addr}")}))
        .send()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let answer = get_url(&proxy.url("/user/gone/lab?a=b")).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(answer.status, 503);
    assert_eq!(
        answer.text(),
        "custom page for /errors/503?url=%2Fuser%2Fgone%2Flab%3Fa%3Db"
    );
    let unrouted = get_url(&proxy.url("/nowhere")).await;
    assert_eq!(unrouted.status, 404);
    assert_eq!(
        unrouted.text(),
        "custom page for /errors/404?url=%2Fnowhere"
    );
    let health = get_url(&proxy.url("/_chp_healthz")).await;
    assert_eq!(health.json(), json!({"status": "OK"}));
}

#[tokio::test]
async fn host_routing_matches_the_host_before_the_path() {
    let proxy = Standalone::start(&["--host-routing"], Some(TOKEN)).await;
    let (alice, _) = start_echo_backend("alice").await;
    let (bob, _) = start_echo_backend("bob").await;
    let c = http();
    for (spec, addr) in [
        ("/alice.example.org/", alice),
        ("/bob.example.org/user/bob", bob),
    ] {
        let r = authed(c.post(proxy.api_url(&format!("/api/routes{spec}"))))
            .json(&json!({"target": format!("http://{addr}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let get_host = |host: &'static str, path: &'static str| {
        let url = proxy.url(path);
        async move {
            send(
                http::Request::get(url)
                    .header("host", host)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
        }
    };
    let a = get_host("Alice.Example.org:8000", "/user/alice/lab").await;
    assert_eq!(a.json()["name"], "alice");
    assert_eq!(a.json()["path"], "/user/alice/lab");
    let b = get_host("bob.example.org", "/user/bob/x").await;
    assert_eq!(b.json()["name"], "bob");
    assert_eq!(
        get_host("bob.example.org", "/user/alice/").await.status,
        404
    );
    assert_eq!(get_host("evil.example.org", "/user/bob/").await.status, 404);
}

#[tokio::test]
async fn tls_on_the_public_port() {
    let dir = tempfile_dir();
    let key = dir.join("key.pem");
    let cert = dir.join("cert.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for the TLS test");
    assert!(made.status.success(), "{made:?}");
    let (alice, _) = start_echo_backend("alice").await;
    let target = format!("http://{alice}");
    let proxy = Standalone::start(
        &[
            "--ssl-key",
            key.to_str().unwrap(),
            "--ssl-cert",
            cert.to_str().unwrap(),
            "--default-target",
            &target,
        ],
        Some(TOKEN),
    )
    .await;
    let c = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let answer: Value = c
        .get(format!("https://{}/hub/x", proxy.public))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["name"], "alice");
    assert_eq!(answer["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        answer["headers"]["x-forwarded-port"],
        proxy.public.port().to_string()
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = http().get(proxy.url("/hub/x")).send().await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "xiji-proxy-tls-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_metrics_port_counts_and_times_routed_requests() {
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let port = metrics_port.to_string();
    let proxy = Standalone::start(&["--metrics-port", &port], Some(TOKEN)).await;
    let (alice, _) = start_echo_backend("alice").await;
    let dead = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let c = http();
    for (path, target) in [("/user/alice", alice), ("/user/dead", dead)] {
        let added = authed(c.post(proxy.api_url(&format!("/api/routes{path}"))))
            .json(&json!({ "target": format!("http://{target}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 201);
    }
    for i in 0..3 {
        let ok = c.get(proxy.url(&format!("/user/alice/{i}"))).send().await;
        assert_eq!(ok.unwrap().status(), 200);
    }
    let down = c.get(proxy.url("/user/dead/")).send().await.unwrap();
    assert_eq!(down.status(), 503);
    // Unrouted requests are not the proxy's to time.
    let unrouted = c.get(proxy.url("/nowhere")).send().await.unwrap();
    assert_eq!(unrouted.status(), 404);

    let scraped = c
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = scraped.text().await.unwrap();
    assert!(
        text.contains("xiji_proxy_responses_total{code=\"2xx\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("xiji_proxy_responses_total{code=\"5xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("xiji_proxy_response_seconds_count 4\n"),
        "{text}"
    );
    assert!(
        text.contains("xiji_proxy_response_seconds_bucket{le=\"+Inf\"} 4\n"),
        "{text}"
    );
    assert!(text.contains("xiji_proxy_routes 2\n"), "{text}");
    let other = c
        .get(format!("http://127.0.0.1:{metrics_port}/other"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
