//! Web desktops through the real hub on a real Docker Engine: a desktop image added to the
//! library through the API, a 2-node cluster started with it; in Chromium
//! (`tests/browser/desktop.mjs`) each node's desktop is opened from `{node url}desktop/`, drawn
//! (screenshot, pixel variance), typed into (a file appears in that node, checked here with
//! `docker exec`), and node-0's connection is dropped server-side and comes back by itself;
//! another logged-in user gets 404 on the page and a refused websocket. Here, without a
//! browser: anonymous and other users' websockets are refused, cross-origin websockets too, an
//! administrator's is accepted, and the owner's websocket speaks RFB with security type None
//! (the password stays in the hub). The record has no VNC password: the cluster's own is a file
//! only jovyan can read in each node, and appears nowhere in `docker inspect` (environment,
//! labels, command) nor in the hub's log.
//!
//! Needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh, which builds
//! `xiji/desktop` through images/build.sh); without it the test says so and returns. With it, a
//! Docker Engine, image, noVNC or browser that does not work is a failure.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser;
use tests::docker::{self, docker_out, wait_cluster_ready, Instance};
use tests::{expect_json, random_hex, Hub, HubOptions};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn desktop_image() -> String {
    std::env::var("XIJI_TEST_DESKTOP_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/desktop:latest".into())
}

fn novnc_present() -> Result<()> {
    let dir = std::env::var("XIJI_NOVNC_DIR").unwrap_or_else(|_| "/usr/share/novnc".into());
    ensure!(
        PathBuf::from(&dir).join("core/rfb.js").is_file(),
        "noVNC is not in {dir}: run images/desktop/build.sh (it installs Debian's novnc) or set \
         XIJI_NOVNC_DIR"
    );
    Ok(())
}

/// A hub on the docker backend whose containers carry `instance`'s label, with the desktop
/// image in its library as "Xfce desktop" (no VNC password: every cluster gets its own).
async fn desktop_hub(instance: &Instance) -> Result<Hub> {
    let image = desktop_image();
    let (repository, tag) = image
        .rsplit_once(':')
        .context("XIJI_TEST_DESKTOP_IMAGE has no tag")?;
    let pulled = Command::new("docker")
        .args(["image", "inspect", &image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success()
        || Command::new("docker")
            .args(["pull", &image])
            .status()?
            .success();
    ensure!(
        pulled,
        "the desktop image {image} is neither local nor pullable: run images/desktop/build.sh"
    );
    let hub = Hub::start_with(HubOptions {
        spawner_toml: "backend = \"docker\"\nstart_timeout = 300\n".into(),
        top_level_toml: "slow_spawn_timeout = 1\n".into(),
        tables_toml: format!(
            "\n[spawner.docker]\ncpu_overcommit = 8\ninstance = \"{}\"\ndefault_memory_mb = 768\ndefault_cpus = 0.5\n",
            instance.0
        ),
        ..HubOptions::default()
    })
    .await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/images")
        .json(&json!({
            "kind": "desktop",
            "name": "Xfce desktop",
            "image": repository,
            "tag": tag,
            "start_command": "xiji-desktop-vnc",
            "vnc_port": 5901,
        }))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "add the desktop image").await?;
    Ok(hub)
}

/// Starts `user`'s default server as an `nodes`-node cluster of the desktop image; its nodes'
/// URLs once ready.
async fn start_desktop_cluster(hub: &Hub, user: &str, nodes: u32) -> Result<Vec<String>> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(&json!({"image": "Xfce desktop", "nodes": nodes}))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "starting {user}'s desktop cluster gave {}: {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    let server = wait_cluster_ready(hub, user, Duration::from_secs(300)).await?;
    Ok(server["nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|n| n["url"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// The VNC password the hub gave a desktop node (its secret file, read as jovyan), and that
/// file's owner and mode (`jovyan 400`).
fn cluster_vnc_password(container: &str) -> Result<(String, String)> {
    let file = "/etc/xiji/secrets/vnc-password";
    let password = docker_out(&["exec", "-u", "jovyan", container, "cat", file])?
        .trim()
        .to_owned();
    let mode = docker_out(&["exec", container, "stat", "-c", "%U %a", file])?
        .trim()
        .to_owned();
    Ok((password, mode))
}

/// Opens a websocket to `path` with extra headers; `Ok(status)` of the refusal, or the stream.
async fn websocket(
    hub: &Hub,
    path: &str,
    headers: &[(&str, String)],
) -> Result<
    std::result::Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        u16,
    >,
> {
    let mut request = hub.ws_url(path).into_client_request()?;
    for (name, value) in headers {
        request.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
            value.parse()?,
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(Ok(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Ok(Err(response.status().as_u16()))
        }
        Err(e) => Err(e.into()),
    }
}

async fn read_at_least(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    inbox: &mut Vec<u8>,
    n: usize,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while inbox.len() < n {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .context("no RFB data from the bridge within 20 s")?;
        match next {
            Some(Ok(Message::Binary(b))) => inbox.extend_from_slice(&b),
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("websocket failed: {e}"),
            None => bail!("websocket closed after {} bytes", inbox.len()),
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_cluster_of_a_desktop_image_opens_each_node_as_a_desktop_only_for_its_owner() -> Result<()>
{
    if !docker::enabled() {
        return Ok(());
    }
    novnc_present()?;
    let instance = Instance::new("xiji-test");
    let hub = desktop_hub(&instance).await?;
    hub.create_user("erin", "erin-password-1").await?;
    hub.create_user("frank", "frank-password-1").await?;
    let frank_token = hub.create_token("frank", json!({})).await?;
    let erin_token = hub.create_token("erin", json!({})).await?;

    let urls = start_desktop_cluster(&hub, "erin", 2).await?;
    ensure!(
        urls == ["/user/erin/", "/user/erin/node-1/"],
        "nodes {urls:?}"
    );
    // The cluster's VNC password: a file only jovyan reads, in no container's definition.
    let mut password = String::new();
    for k in 0..2 {
        let container = instance.node_container(&format!("node-{k}"))?;
        let (node_password, mode) = cluster_vnc_password(&container)?;
        ensure!(
            mode == "jovyan 400",
            "node-{k}'s password file is {mode}, not jovyan's alone"
        );
        ensure!(
            password.is_empty() || password == node_password,
            "the nodes of one cluster have different passwords"
        );
        password = node_password;
        let inspect = docker_out(&["inspect", &container])?;
        let definition: Value = serde_json::from_str(&inspect)?;
        for field in ["Env", "Labels", "Cmd", "Entrypoint"] {
            let value = definition[0]["Config"][field].to_string();
            ensure!(
                !value.contains(&password),
                "node-{k}'s {field} holds the VNC password: {value}"
            );
        }
        ensure!(
            !inspect.contains(&password) && !inspect.contains("XIJI_VNC_PASSWORD="),
            "`docker inspect` of node-{k} shows the VNC password"
        );
    }
    ensure!(
        password.len() == 8,
        "not a cluster's own password: {} characters",
        password.len()
    );
    ensure!(
        !hub.log().contains(&password),
        "the hub logged the VNC password"
    );

    // `{node url}desktop/` is the node's Jupyter server, which sends the browser to the hub.
    for url in &urls {
        let resp = hub
            .client()
            .get(hub.url(&format!("{url}desktop/")))
            .send()
            .await?;
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        ensure!(
            resp.status().is_redirection() && location.ends_with(&format!("/hub/desktop{url}")),
            "{url}desktop/ gave {} to {location:?}",
            resp.status()
        );
    }

    // Refusals, without a browser.
    let ws_path = "/hub/desktop/user/erin/websockify";
    let anonymous = websocket(&hub, ws_path, &[]).await?;
    ensure!(
        matches!(anonymous, Err(403)),
        "an anonymous websocket must be refused with 403, got {:?}",
        anonymous.as_ref().err()
    );
    let other = websocket(
        &hub,
        ws_path,
        &[("authorization", format!("token {frank_token}"))],
    )
    .await?;
    ensure!(
        matches!(other, Err(404)),
        "another user's websocket must get 404, got {:?}",
        other.as_ref().err()
    );
    let resp = hub
        .with_token(Method::GET, "/hub/desktop/user/erin/node-1/", &frank_token)
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::NOT_FOUND,
        "another user's desktop page must be 404, got {}",
        resp.status()
    );
    let cross = websocket(
        &hub,
        ws_path,
        &[
            ("authorization", format!("token {erin_token}")),
            ("origin", "http://evil.example".into()),
        ],
    )
    .await?;
    ensure!(
        matches!(cross, Err(403)),
        "a cross-origin websocket must be refused, got {:?}",
        cross.as_ref().err()
    );
    // An administrator (the admin service: `access:servers` unfiltered) may open it.
    let admin = websocket(
        &hub,
        "/hub/desktop/user/erin/node-1/websockify",
        &[("authorization", format!("token {}", hub.admin_token()))],
    )
    .await?;
    ensure!(
        admin.is_ok(),
        "an administrator's websocket was refused with {:?}",
        admin.as_ref().err()
    );
    drop(admin);
    // The owner's websocket: the bridge has done VNC authentication; the browser is offered None.
    let mut ws = websocket(
        &hub,
        ws_path,
        &[("authorization", format!("token {erin_token}"))],
    )
    .await?
    .map_err(|s| anyhow::anyhow!("the owner's websocket was refused with {s}"))?;
    let mut inbox = Vec::new();
    read_at_least(&mut ws, &mut inbox, 12).await?;
    ensure!(
        &inbox[..12] == b"RFB 003.008\n",
        "banner {:?}",
        &inbox[..12]
    );
    ws.send(Message::Binary(b"RFB 003.008\n".to_vec().into()))
        .await?;
    read_at_least(&mut ws, &mut inbox, 14).await?;
    ensure!(
        inbox[12..14] == [1, 1],
        "security types {:?}",
        &inbox[12..14]
    );
    ws.send(Message::Binary(vec![1u8].into())).await?;
    read_at_least(&mut ws, &mut inbox, 18).await?;
    ensure!(
        inbox[14..18] == [0, 0, 0, 0],
        "security result {:?}",
        &inbox[14..18]
    );
    ws.send(Message::Binary(vec![1u8].into())).await?; // ClientInit, shared
    read_at_least(&mut ws, &mut inbox, 18 + 24).await?;
    let width = u16::from_be_bytes([inbox[18], inbox[19]]);
    let height = u16::from_be_bytes([inbox[20], inbox[21]]);
    ensure!(width > 0 && height > 0, "ServerInit gave {width}x{height}");
    ws.close(None).await?;

    // The browser.
    let proof = format!("/tmp/xiji-desktop-proof-{}", random_hex(4));
    let nodes: Vec<Value> = urls
        .iter()
        .enumerate()
        .map(|(k, url)| {
            Ok(json!({
                "url": url,
                "container": instance.node_container(&format!("node-{k}"))?,
                "proof": format!("{proof}-node-{k}"),
            }))
        })
        .collect::<Result<_>>()?;
    let nodes_json = Value::Array(nodes.clone()).to_string();
    let run = browser::run_script(
        &hub,
        "desktop.mjs",
        "desktop",
        &[
            ("XIJI_USER", "erin"),
            ("XIJI_PASSWORD", "erin-password-1"),
            ("XIJI_OTHER_USER", "frank"),
            ("XIJI_OTHER_PASSWORD", "frank-password-1"),
            ("XIJI_NODES", &nodes_json),
        ],
    )
    .await?;
    let artifacts = run.artifacts;

    // Each file is in its own node only (the work directory is shared; /tmp is not).
    for (k, node) in nodes.iter().enumerate() {
        let container = node["container"].as_str().unwrap_or_default();
        let mine = format!("{proof}-node-{k}");
        let content = docker_out(&["exec", container, "cat", &mine])?;
        ensure!(
            content.trim() == format!("typed-in-node-{k}"),
            "node-{k}'s {mine} says {content:?}"
        );
        let theirs = format!("{proof}-node-{}", 1 - k);
        let absent = Command::new("docker")
            .args(["exec", container, "test", "!", "-e", &theirs])
            .status()?;
        ensure!(absent.success(), "node-{k} has the other node's file");
    }
    for shot in ["desktop-node-0.png", "desktop-node-1.png"] {
        let size = std::fs::metadata(artifacts.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        ensure!(size > 10_000, "{shot} is missing or tiny ({size} bytes)");
    }

    hub.stop_server("erin").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark: Xiji's bridge (through the hub's public listener, as browsers use it) against
// Debian's websockify in front of the same node's VNC server. Run by tests/bench/desktop_bridge.sh
// (XIJI_BENCH_DESKTOP=1); otherwise it says NOT RUN and returns.

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An RFB client over a websocket, with Raw encoding only (so sizes are exact).
struct Rfb {
    ws: Ws,
    inbox: Vec<u8>,
    width: u16,
    height: u16,
    bytes: u64,
}

fn vnc_auth(password: &str, challenge: &[u8]) -> Vec<u8> {
    use des::cipher::{BlockEncrypt, KeyInit};
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let cipher = des::Des::new(&key.into());
    let mut out = challenge.to_vec();
    for block in out.chunks_exact_mut(8) {
        cipher.encrypt_block(block.into());
    }
    out
}

impl Rfb {
    async fn connect(url: &str, headers: &[(&str, String)], password: &str) -> Result<Rfb> {
        let mut request = url.into_client_request()?;
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "binary".parse()?);
        for (name, value) in headers {
            request.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes())?,
                value.parse()?,
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("websocket {url}"))?;
        let mut rfb = Rfb {
            ws,
            inbox: Vec::new(),
            width: 0,
            height: 0,
            bytes: 0,
        };
        rfb.take(12).await?;
        rfb.send(b"RFB 003.008\n".to_vec()).await?;
        let count = rfb.take(1).await?[0];
        let types = rfb.take(usize::from(count)).await?;
        if types.contains(&1) {
            rfb.send(vec![1]).await?;
        } else if types.contains(&2) {
            rfb.send(vec![2]).await?;
            let challenge = rfb.take(16).await?;
            rfb.send(vnc_auth(password, &challenge)).await?;
        } else {
            bail!("{url} offers security types {types:?}");
        }
        ensure!(
            rfb.take(4).await? == [0, 0, 0, 0],
            "{url}: authentication failed"
        );
        rfb.send(vec![1]).await?; // ClientInit: shared
        let init = rfb.take(24).await?;
        rfb.width = u16::from_be_bytes([init[0], init[1]]);
        rfb.height = u16::from_be_bytes([init[2], init[3]]);
        ensure!(init[4] == 32, "expected 32 bits per pixel, got {}", init[4]);
        let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
        rfb.take(usize::try_from(name_len)?).await?;
        // SetEncodings: Raw only.
        rfb.send(vec![2, 0, 0, 1, 0, 0, 0, 0]).await?;
        Ok(rfb)
    }

    async fn send(&mut self, data: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(data.into())).await?;
        Ok(())
    }

    async fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.inbox.len() < n {
            let next = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .context("no data for 30 s")?;
            match next {
                Some(Ok(Message::Binary(b))) => {
                    self.bytes += b.len() as u64;
                    self.inbox.extend_from_slice(&b);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("websocket failed: {e}"),
                None => bail!("websocket closed"),
            }
        }
        Ok(self.inbox.drain(..n).collect())
    }

    /// Asks for a non-incremental update of a region and reads it whole.
    async fn frame(&mut self, w: u16, h: u16) -> Result<()> {
        let mut req = vec![3, 0, 0, 0, 0, 0];
        req.extend_from_slice(&w.to_be_bytes());
        req.extend_from_slice(&h.to_be_bytes());
        self.send(req).await?;
        loop {
            let kind = self.take(1).await?[0];
            match kind {
                0 => {
                    let head = self.take(3).await?;
                    let rects = u16::from_be_bytes([head[1], head[2]]);
                    for _ in 0..rects {
                        let r = self.take(12).await?;
                        let (rw, rh) = (
                            u16::from_be_bytes([r[4], r[5]]),
                            u16::from_be_bytes([r[6], r[7]]),
                        );
                        let encoding = i32::from_be_bytes([r[8], r[9], r[10], r[11]]);
                        ensure!(encoding == 0, "unexpected encoding {encoding}");
                        self.take(usize::from(rw) * usize::from(rh) * 4).await?;
                    }
                    return Ok(());
                }
                2 => {} // Bell
                3 => {
                    let head = self.take(7).await?;
                    let len = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
                    self.take(usize::try_from(len)?).await?;
                }
                other => bail!("unexpected server message {other}"),
            }
        }
    }
}

struct Measured {
    bytes_per_s: f64,
    full_frames_per_s: f64,
    rtt_p50_ms: f64,
    rtt_p99_ms: f64,
}

async fn measure(
    url: &str,
    headers: &[(&str, String)],
    password: &str,
    seconds: f64,
) -> Result<Measured> {
    let mut rfb = Rfb::connect(url, headers, password).await?;
    // Warm-up.
    for _ in 0..3 {
        rfb.frame(rfb.width, rfb.height).await?;
    }
    let mut rtts = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        rfb.frame(16, 16).await?;
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    rtts.sort_by(f64::total_cmp);
    let start_bytes = rfb.bytes;
    let start = Instant::now();
    let mut frames = 0u32;
    while start.elapsed().as_secs_f64() < seconds {
        rfb.frame(rfb.width, rfb.height).await?;
        frames += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let pick = |q: f64| {
        let i = ((rtts.len() as f64 - 1.0) * q).round() as usize;
        rtts[i.min(rtts.len() - 1)]
    };
    Ok(Measured {
        bytes_per_s: (rfb.bytes - start_bytes) as f64 / elapsed,
        full_frames_per_s: f64::from(frames) / elapsed,
        rtt_p50_ms: pick(0.5),
        rtt_p99_ms: pick(0.99),
    })
}

#[tokio::test]
async fn bench_bridge_against_websockify() -> Result<()> {
    if std::env::var("XIJI_BENCH_DESKTOP").as_deref() != Ok("1") {
        eprintln!("NOT RUN: a benchmark; run tests/bench/desktop_bridge.sh");
        return Ok(());
    }
    ensure!(
        docker::enabled(),
        "the benchmark needs XIJI_TEST_DOCKER=1 and Docker"
    );
    let seconds: f64 = std::env::var("XIJI_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let websockify = std::env::var("WEBSOCKIFY").unwrap_or_else(|_| "websockify".into());
    let instance = Instance::new("xiji-bench");
    let hub = desktop_hub(&instance).await?;
    hub.create_user("bench", "bench-password-1").await?;
    let token = hub.create_token("bench", json!({})).await?;
    start_desktop_cluster(&hub, "bench", 1).await?;
    let container = instance.node_container("node-0")?;
    let (password, _) = cluster_vnc_password(&container)?;
    let ip = docker_out(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &container,
    ])?
    .trim()
    .to_owned();
    // Wait for the VNC server (started in the background by the node's entry point).
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect((ip.as_str(), 5901))
        .await
        .is_err()
    {
        ensure!(Instant::now() < deadline, "no VNC server at {ip}:5901");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let log = std::fs::File::create(hub.scratch_path("websockify.log"))?;
    let mut child = Command::new(&websockify)
        .arg(format!("127.0.0.1:{port}"))
        .arg(format!("{ip}:5901"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot run {websockify}: install Debian's websockify"))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("websockify did not listen on {port}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let xiji_url = hub.ws_url("/hub/desktop/user/bench/websockify");
    let auth = [("authorization", format!("token {token}"))];
    let ws_url = format!("ws://127.0.0.1:{port}/websockify");
    // Alternate the two, twice each, so drift on a shared machine hits both.
    let mut xiji = Vec::new();
    let mut wsfy = Vec::new();
    for _ in 0..2 {
        xiji.push(measure(&xiji_url, &auth, "", seconds).await?);
        wsfy.push(measure(&ws_url, &[], &password, seconds).await?);
    }
    let _ = child.kill();
    let _ = child.wait();
    let best = |runs: &[Measured]| Measured {
        bytes_per_s: runs.iter().map(|m| m.bytes_per_s).fold(0.0, f64::max),
        full_frames_per_s: runs.iter().map(|m| m.full_frames_per_s).fold(0.0, f64::max),
        rtt_p50_ms: runs.iter().map(|m| m.rtt_p50_ms).fold(f64::MAX, f64::min),
        rtt_p99_ms: runs.iter().map(|m| m.rtt_p99_ms).fold(f64::MAX, f64::min),
    };
    let (x, w) = (best(&xiji), best(&wsfy));
    println!("desktop bridge benchmark: 1 node, raw encoding, best of 2 runs of {seconds} s each");
    println!(
        "{:<28} {:>12} {:>12} {:>12} {:>12}",
        "", "MB/s", "frames/s", "rtt p50 ms", "rtt p99 ms"
    );
    for (name, m) in [("xiji bridge (via hub)", &x), ("websockify (Debian)", &w)] {
        println!(
            "{name:<28} {:>12.1} {:>12.1} {:>12.3} {:>12.3}",
            m.bytes_per_s / 1e6,
            m.full_frames_per_s,
            m.rtt_p50_ms,
            m.rtt_p99_ms
        );
    }
    println!(
        "ratio xiji/websockify: throughput {:.2}x, round trip p50 {:.2}x, p99 {:.2}x (throughput: higher is better; round trip: lower is better)",
        x.bytes_per_s / w.bytes_per_s,
        x.rtt_p50_ms / w.rtt_p50_ms,
        x.rtt_p99_ms / w.rtt_p99_ms
    );
    Ok(())
}
