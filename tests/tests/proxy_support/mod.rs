#![allow(dead_code)] // not every proxy test uses every helper
//! Helpers for the proxy's end-to-end tests: child processes that are always cleaned up, free
//! ports, HTTP polling, and a minimal Jupyter kernel client over the kernel websocket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `$name` if set, else `target/debug/{file}` (built with `cargo build -p hub -p proxy`).
pub fn binary(env_name: &str, file: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env_name).filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            target.join("debug").join(file)
        }
    };
    if !path.is_file() {
        bail!(
            "{} does not exist: run `cargo build -p hub -p proxy` first, or set {env_name}",
            path.display()
        );
    }
    Ok(path)
}

pub fn xiji() -> Result<PathBuf> {
    binary("XIJI_BIN", "xiji")
}

pub fn xiji_proxy() -> Result<PathBuf> {
    binary("XIJI_PROXY_BIN", "xiji-proxy")
}

/// A required environment variable (from `tests/setup-env.sh`).
pub fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run `tests/setup-env.sh && . .cache/test-env.sh`")
    })
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub fn token() -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (seed as u64) ^ u64::from(std::process::id()).rotate_left(32);
    for _ in 0..4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let _ = write!(out, "{x:016x}");
    }
    out
}

/// A child process in its own process group, stopped (SIGTERM, then SIGKILL to the group) when
/// dropped. Output goes to `log`.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc> {
        let file = std::fs::File::create(log)?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGKILL the process only (not its group: children it started keep running).
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL the whole group.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
        let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = killpg(pid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(15));
    }
}

/// Polls `url` until it answers 2xx (or `timeout`).
pub async fn wait_http(url: &str, timeout: Duration, proc: Option<&Proc>) -> Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).timeout(Duration::from_secs(2)).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{url} did not answer within {timeout:?}; log:\n{}",
                proc.map(Proc::log_tail).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A configurable-http-proxy-compatible proxy (`program`: CHP or `xiji-proxy`, with `extra`
/// options) on 127.0.0.1:`public` with its REST API on `api`, started and answering its health
/// check; its log is `{dir}/{log}`.
pub async fn start_chp_like(
    name: &str,
    program: impl AsRef<std::ffi::OsStr>,
    extra: &[&str],
    (dir, log): (&Path, &str),
    (public, api): (u16, u16),
    token: &str,
) -> Result<Proc> {
    let mut command = Command::new(program);
    command
        .args(["--ip", "127.0.0.1", "--port", &public.to_string()])
        .args(["--api-ip", "127.0.0.1", "--api-port", &api.to_string()])
        .args(extra)
        .env("CONFIGPROXY_AUTH_TOKEN", token);
    let proxy = Proc::spawn(name, command, &dir.join(log))?;
    wait_http(
        &format!("http://127.0.0.1:{public}/_chp_healthz"),
        Duration::from_secs(30),
        Some(&proxy),
    )
    .await?;
    Ok(proxy)
}

/// Ends a test: on failure prints the hub's and the proxy's logs and the error; stops the hub
/// (with `grace`), then the proxy; removes the scratch directory if the test passed.
pub fn conclude(
    outcome: Result<()>,
    (hub_name, hub, grace): (&str, &mut Proc, Duration),
    (proxy_name, proxy): (&str, Proc),
    dir: &Path,
) -> Result<()> {
    if let Err(e) = &outcome {
        eprintln!(
            "{hub_name} log:\n{}\n{proxy_name} log:\n{}",
            hub.log_tail(),
            proxy.log_tail()
        );
        eprintln!("{e:#}");
    }
    hub.stop(grace);
    drop(proxy);
    if outcome.is_ok() {
        let _ = std::fs::remove_dir_all(dir);
    }
    outcome
}

/// A JupyterHub-API client with a token.
pub struct HubApi {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl HubApi {
    pub fn new(base: &str, token: &str) -> HubApi {
        HubApi {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token))
    }

    /// Creates `user` (if needed), starts its default server and waits until it is ready.
    pub async fn spawn_and_wait(&self, user: &str, timeout: Duration) -> Result<()> {
        let _ = self
            .req(reqwest::Method::POST, &format!("/hub/api/users/{user}"))
            .send()
            .await?;
        let started = self
            .req(
                reqwest::Method::POST,
                &format!("/hub/api/users/{user}/server"),
            )
            .send()
            .await?;
        if !(started.status().is_success()) {
            bail!(
                "start: {} {}",
                started.status(),
                started.text().await.unwrap_or_default()
            );
        }
        let deadline = Instant::now() + timeout;
        loop {
            let model: Value = self
                .req(reqwest::Method::GET, &format!("/hub/api/users/{user}"))
                .send()
                .await?
                .json()
                .await?;
            if model["servers"][""]["ready"] == json!(true) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server of {user} was not ready in {timeout:?}: {model}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn stop_and_wait(&self, user: &str, timeout: Duration) -> Result<()> {
        let _ = self
            .req(
                reqwest::Method::DELETE,
                &format!("/hub/api/users/{user}/server"),
            )
            .send()
            .await?;
        let deadline = Instant::now() + timeout;
        loop {
            let model: Value = self
                .req(reqwest::Method::GET, &format!("/hub/api/users/{user}"))
                .send()
                .await?
                .json()
                .await?;
            if model["servers"].get("").is_none() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server of {user} did not stop in {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A kernel of a single-user server with its websocket open (Jupyter messaging as JSON text).
pub struct KernelWs {
    ws: Ws,
    session: String,
    pub id: String,
}

impl KernelWs {
    /// Starts a kernel at `{base}{prefix}api/kernels` and opens its channels websocket.
    pub async fn start(api: &HubApi, prefix: &str) -> Result<KernelWs> {
        let created = api
            .req(reqwest::Method::POST, &format!("{prefix}api/kernels"))
            .json(&json!({"name": "python3"}))
            .send()
            .await?;
        let status = created.status();
        let body = created.text().await?;
        if status.as_u16() != 201 {
            bail!("starting a kernel: {status} {body}");
        }
        let model: Value = serde_json::from_str(&body)?;
        let id = model["id"].as_str().context("kernel id")?.to_owned();
        let ws_url = format!(
            "{}{prefix}api/kernels/{id}/channels",
            api.base.replacen("http", "ws", 1),
        );
        let mut request = ws_url.into_client_request()?;
        request.headers_mut().insert(
            "Authorization",
            HeaderValue::from_str(&format!("token {}", api.token))?,
        );
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async(request),
        )
        .await
        .context("websocket connect timed out")??;
        Ok(KernelWs {
            ws,
            session: token()[..16].to_owned(),
            id,
        })
    }

    /// Runs `code`; returns what it printed on stdout.
    pub async fn run(&mut self, code: &str, timeout: Duration) -> Result<String> {
        let msg_id = token()[..24].to_owned();
        let message = json!({
            "header": {
                "msg_id": msg_id, "username": "test", "session": self.session,
                "msg_type": "execute_request", "version": "5.3",
                "date": "2026-01-01T00:00:00.000000Z"
            },
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {
                "code": code, "silent": false, "store_history": false,
                "user_expressions": {}, "allow_stdin": false, "stop_on_error": true
            }
        });
        self.ws.send(Message::text(message.to_string())).await?;
        let deadline = Instant::now() + timeout;
        let mut stdout = String::new();
        let mut replied = false;
        let mut idle = false;
        while !(replied && idle) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, self.ws.next())
                .await
                .context("no answer from the kernel in time")?
                .context("the kernel websocket closed")??;
            let Message::Text(text) = frame else {
                continue;
            };
            let msg: Value = serde_json::from_str(text.as_str())?;
            if msg["parent_header"]["msg_id"] != json!(msg_id) {
                continue;
            }
            match msg["header"]["msg_type"].as_str().unwrap_or("") {
                "stream" => stdout.push_str(msg["content"]["text"].as_str().unwrap_or("")),
                "execute_reply" => {
                    if msg["content"]["status"] != json!("ok") {
                        bail!("execution failed: {}", msg["content"]);
                    }
                    replied = true;
                }
                "status" if msg["content"]["execution_state"] == json!("idle") => idle = true,
                "error" => bail!("execution error: {}", msg["content"]),
                _ => {}
            }
        }
        Ok(stdout)
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A fresh scratch directory under the system temp dir, removed by the caller (or left for
/// debugging on failure).
pub fn scratch(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xiji-{name}-{}", &token()[..12]));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The Xiji hub in external-proxy mode: it listens on `hub_port` and drives the proxy whose API
/// is `api_url`. Its `svc` service holds `service_token` (admin).
pub fn start_xiji_external(
    dir: &Path,
    public_port: u16,
    hub_port: u16,
    api_url: &str,
    proxy_token: &str,
    service_token: &str,
    log_name: &str,
) -> Result<Proc> {
    let venv = env("XIJI_TEST_VENV5")?;
    let config = format!(
        r#"
[spawner]
poll_interval = 2

[spawner.local]
venv = "{venv}"

[[services]]
name = "svc"
api_token = "{service_token}"
admin = true

[proxy]
mode = "external"
api_url = "{api_url}"
auth_token = "{proxy_token}"
hub_bind = "127.0.0.1:{hub_port}"
check_routes_interval = 2
"#
    );
    std::fs::write(dir.join("xiji.toml"), config)?;
    let mut cmd = Command::new(xiji()?);
    cmd.current_dir(dir)
        .args(["--config", "xiji.toml", "--data-dir", "data"])
        .args(["--bind", &format!("127.0.0.1:{public_port}")])
        .env("XIJI_ADMIN_PASSWORD", "admin-password-123")
        .env_remove("CONFIGPROXY_AUTH_TOKEN");
    Proc::spawn("xiji", cmd, &dir.join(log_name))
}
