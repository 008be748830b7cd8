//! Harness for Xiji's end-to-end tests.
//!
//! It builds nothing: it runs the real `xiji` binary (`$XIJI_BIN`, default
//! `<target dir>/debug/xiji`; `tests/run` builds it first) on a free 127.0.0.1 port with a
//! temporary data directory and a generated TOML configuration, and talks to it over HTTP like
//! any client would. Every process a test starts — the hub, the single-user servers it spawns,
//! their kernels, helper clients — carries a per-hub marker in its environment and is killed when
//! the [`Hub`] is dropped, even if the hub itself was killed first.
//!
//! The environment comes from `tests/setup-env.sh` (`. .cache/test-env.sh`); a missing variable
//! fails the test with a message saying so — nothing is skipped silently.

#![allow(clippy::missing_panics_doc)]

pub mod browser;
pub mod docker;
pub mod kernel;
pub mod process;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{json, Value};

pub use kernel::Kernel;

/// How long the hub may take to print "Xiji is running at".
const HUB_START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a single-user server may take to become ready.
pub const SERVER_READY_TIMEOUT: Duration = Duration::from_secs(120);
/// The admin service's token in every generated configuration.
const ADMIN_TOKEN_PREFIX: &str = "xiji-test-admin-token";
/// The first administrator's password.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Reads a variable `tests/setup-env.sh` provides, or fails saying how to get it.
pub fn required_env(name: &str) -> Result<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => bail!(
            "{name} is not set: run `tests/setup-env.sh && . .cache/test-env.sh` first \
             (or run every test with `tests/run`, which does it)"
        ),
    }
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Where screenshots and other test outputs go: `tests/artifacts/` (gitignored).
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts")
}

/// The `xiji` binary under test.
pub fn xiji_bin() -> Result<PathBuf> {
    let path = match std::env::var_os("XIJI_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"));
            let target = if target.is_relative() {
                workspace_root().join(target)
            } else {
                target
            };
            target.join("debug").join("xiji")
        }
    };
    if !path.is_file() {
        bail!(
            "the xiji binary {} does not exist: run `cargo build -p hub` first (tests/run does), \
             or set XIJI_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// Which JupyterHub release the single-user servers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Singleuser {
    /// `jupyterhub` 5.5.x (`$XIJI_TEST_VENV5`), which also holds `jupyterhub-idle-culler`.
    Jupyterhub5,
    /// The newest `jupyterhub` 6.x (`$XIJI_TEST_VENV6`).
    Jupyterhub6,
}

impl Singleuser {
    /// The virtual environment holding this release.
    pub fn venv(self) -> Result<PathBuf> {
        let var = match self {
            Singleuser::Jupyterhub5 => "XIJI_TEST_VENV5",
            Singleuser::Jupyterhub6 => "XIJI_TEST_VENV6",
        };
        let venv = PathBuf::from(required_env(var)?);
        let singleuser = venv.join("bin").join("jupyterhub-singleuser");
        if !singleuser.is_file() {
            bail!(
                "{var}={} has no bin/jupyterhub-singleuser: run tests/setup-env.sh",
                venv.display()
            );
        }
        Ok(venv)
    }
}

/// An external service in the generated configuration.
#[derive(Debug, Clone)]
pub struct Service {
    /// Service name.
    pub name: String,
    /// Its API token.
    pub token: String,
    /// Whether it gets the `admin` role.
    pub admin: bool,
}

/// What the generated configuration contains beyond the defaults.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// Where single-user servers come from.
    pub singleuser: Singleuser,
    /// Extra services (the admin service `test-admin` is always there).
    pub services: Vec<Service>,
    /// Raw TOML appended at the top level (before any table), e.g. `max_body_bytes = 1000`.
    pub top_level_toml: String,
    /// Raw TOML appended at the end (tables such as `[[roles]]`).
    pub tables_toml: String,
    /// `database_url`; `None` = SQLite in the data directory.
    pub database_url: Option<String>,
    /// Raw TOML lines inside `[spawner]`, e.g. `backend = "docker"`.
    pub spawner_toml: String,
    /// Where the hub's temporary directory (configuration, data, log) is made; `None` = the
    /// system's temporary directory.
    pub parent_dir: Option<PathBuf>,
    /// Name `singleuser`'s venv as `[spawner.local] venv` (the hub then uses it as it is and
    /// sets JupyterLab's defaults in it) instead of its `jupyterhub-singleuser` as `cmd`.
    pub singleuser_as_venv: bool,
    /// More variables of the single-user servers' environment (`[spawner.local.environment]`).
    pub singleuser_environment: Vec<(String, String)>,
    /// Variables of the hub's own environment (e.g. secrets handed in as a Kubernetes Secret
    /// would be).
    pub hub_environment: Vec<(String, String)>,
}

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            singleuser: Singleuser::Jupyterhub5,
            services: Vec::new(),
            top_level_toml: String::new(),
            tables_toml: String::new(),
            database_url: None,
            spawner_toml: String::new(),
            parent_dir: None,
            singleuser_as_venv: false,
            singleuser_environment: Vec::new(),
            hub_environment: Vec::new(),
        }
    }
}

/// A running `xiji` with its temporary data directory. Dropping it kills everything it started.
pub struct Hub {
    child: Option<Child>,
    /// Where the hub listens, e.g. `127.0.0.1:41234` (kept across restarts).
    addr: Option<String>,
    base_url: String,
    admin_token: String,
    marker: String,
    root: Option<tempfile::TempDir>,
    root_path: PathBuf,
    config_path: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    client: reqwest::Client,
    /// Byte offset in the log where the current run's output starts.
    run_log_offset: u64,
    /// Started as the README says (no configuration, no flags, in its own directory) rather
    /// than with a generated configuration.
    as_in_readme: bool,
    /// Variables set in the hub's environment.
    environment: Vec<(String, String)>,
}

impl Hub {
    /// Starts a hub with the default options (single-user servers from JupyterHub 5.5).
    pub async fn start() -> Result<Hub> {
        Self::start_with(HubOptions::default()).await
    }

    /// Starts a hub with these options.
    pub async fn start_with(options: HubOptions) -> Result<Hub> {
        let venv = options.singleuser.venv()?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("xiji-e2e-");
        let root = match &options.parent_dir {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        let root_path = root.path().to_path_buf();
        let marker = format!(
            "{}-{}",
            std::process::id(),
            root_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let admin_token = format!("{ADMIN_TOKEN_PREFIX}-{}", random_hex(16));
        let data_dir = root_path.join("data");
        let config_path = root_path.join("xiji.toml");
        let log_path = root_path.join("hub.log");

        let mut toml = String::new();
        toml.push_str("log = \"info,hub=debug\"\n");
        if let Some(url) = &options.database_url {
            toml.push_str(&format!("database_url = {}\n", toml_str(url)));
        }
        toml.push_str(&options.top_level_toml);
        toml.push('\n');
        toml.push_str("\n[admin]\nusername = \"admin\"\n");
        toml.push_str(&format!("password = {}\n", toml_str(ADMIN_PASSWORD)));
        toml.push_str("\n[spawner]\npoll_interval = 2.0\n");
        toml.push_str(&options.spawner_toml);
        toml.push('\n');
        toml.push_str("\n[spawner.local]\n");
        // `cmd` by default: the hub leaves the venv alone then.
        let singleuser = venv.join("bin").join("jupyterhub-singleuser");
        if options.singleuser_as_venv {
            toml.push_str(&format!(
                "venv = {}\n",
                toml_str(&venv.display().to_string())
            ));
        } else {
            toml.push_str(&format!(
                "cmd = [{}]\n",
                toml_str(&singleuser.display().to_string())
            ));
        }
        toml.push_str("\n[spawner.local.environment]\n");
        toml.push_str(&format!(
            "{} = {}\n",
            process::MARKER_VAR,
            toml_str(&marker)
        ));
        for (key, value) in &options.singleuser_environment {
            toml.push_str(&format!("{} = {}\n", toml_str(key), toml_str(value)));
        }
        let mut services = vec![Service {
            name: "test-admin".into(),
            token: admin_token.clone(),
            admin: true,
        }];
        services.extend(options.services.iter().cloned());
        for s in &services {
            toml.push_str(&format!(
                "\n[[services]]\nname = {}\napi_token = {}\nadmin = {}\n",
                toml_str(&s.name),
                toml_str(&s.token),
                s.admin
            ));
        }
        toml.push_str(&options.tables_toml);
        std::fs::write(&config_path, toml)?;

        let client = test_client()?;
        let mut hub = Hub {
            child: None,
            addr: None,
            base_url: String::new(),
            admin_token,
            marker,
            root: Some(root),
            root_path,
            config_path,
            data_dir,
            log_path,
            client,
            run_log_offset: 0,
            as_in_readme: false,
            environment: options.hub_environment.clone(),
        };
        hub.launch().await?;
        Ok(hub)
    }

    /// Starts `xiji` as the README's first command does: no configuration file and no flags,
    /// in a fresh directory of its own, so its data lands in the relative `./xiji-data`. Only
    /// the port comes from `XIJI_BIND` (a free one, not 8000). The notebook environment it
    /// would create on its first start is the JupyterHub 5.5 test venv, linked in as
    /// `./xiji-data/venv`, to spare minutes of downloads. No admin service token exists: log in
    /// with [`Hub::first_admin_password`].
    pub async fn start_as_in_readme() -> Result<Hub> {
        let venv = Singleuser::Jupyterhub5.venv()?;
        let root = tempfile::Builder::new().prefix("xiji-readme-").tempdir()?;
        let root_path = root.path().to_path_buf();
        let marker = format!("{}-readme", std::process::id());
        let data_dir = root_path.join("xiji-data");
        std::fs::create_dir_all(&data_dir)?;
        std::os::unix::fs::symlink(&venv, data_dir.join("venv"))?;
        let client = test_client()?;
        let mut hub = Hub {
            child: None,
            addr: None,
            base_url: String::new(),
            admin_token: String::new(),
            marker,
            config_path: root_path.join("xiji.toml"),
            log_path: root_path.join("hub.log"),
            data_dir,
            root: Some(root),
            root_path,
            client,
            run_log_offset: 0,
            as_in_readme: true,
            environment: Vec::new(),
        };
        hub.launch().await?;
        Ok(hub)
    }

    /// The first administrator's generated password, as the hub printed it on its first start.
    pub fn first_admin_password(&self) -> Option<String> {
        self.log().lines().find_map(|line| {
            line.trim()
                .strip_prefix("password:")
                .map(|p| p.trim().to_owned())
        })
    }

    /// Starts the `xiji` process and waits for "Xiji is running at".
    async fn launch(&mut self) -> Result<()> {
        let bin = xiji_bin()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        self.run_log_offset = log.metadata()?.len();
        let bind = self.addr.clone().unwrap_or_else(|| "127.0.0.1:0".into());
        let mut cmd = Command::new(&bin);
        // The hub reads XIJI_* variables; only the ones set here may reach it.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("XIJI_") {
                cmd.env_remove(&key);
            }
        }
        if self.as_in_readme {
            cmd.current_dir(&self.root_path).env("XIJI_BIND", &bind);
        } else {
            cmd.arg("--config")
                .arg(&self.config_path)
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--bind")
                .arg(&bind);
        }
        cmd.envs(self.environment.iter().map(|(k, v)| (k, v)));
        cmd.env(process::MARKER_VAR, &self.marker)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        process::own_process_group(&mut cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        self.child = Some(child);

        let deadline = Instant::now() + HUB_START_TIMEOUT;
        loop {
            let text = self.run_log();
            if let Some(line) = text.lines().find(|l| l.contains("Xiji is running at")) {
                let url = line
                    .split("Xiji is running at")
                    .nth(1)
                    .map(str::trim)
                    .unwrap_or_default()
                    .trim_end_matches('/')
                    .to_owned();
                let addr = url
                    .strip_prefix("http://")
                    .context("the hub printed a URL that is not http://")?
                    .to_owned();
                self.base_url = url;
                self.addr = Some(addr);
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "xiji exited with {status} before it was running; its output:\n{}",
                        self.run_log()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "xiji did not print \"Xiji is running at\" within {HUB_START_TIMEOUT:?}; its output:\n{}",
                    self.run_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The log of the current run of the hub (since the last start).
    pub fn run_log(&self) -> String {
        let text = std::fs::read(&self.log_path).unwrap_or_default();
        let start = usize::try_from(self.run_log_offset)
            .unwrap_or(0)
            .min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// The hub's whole log, all runs.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.addr.as_deref().unwrap_or_default()
    }

    /// `base_url` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `ws://127.0.0.1:PORT` + `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// The admin service's API token.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The hub's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The per-hub marker every process this hub started carries in `XIJI_TEST_RUN`.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// A client that does not follow redirects and sends no credentials.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to `path` (e.g. `/hub/api/users`) with the admin service's token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.with_token(method, path, &self.admin_token)
    }

    /// A request to `path` with `token`.
    pub fn with_token(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("Authorization", format!("token {token}"))
    }

    /// Creates user `name` (not an admin) with `password`; returns the user model.
    pub async fn create_user(&self, name: &str, password: &str) -> Result<Value> {
        let path = format!("/hub/api/users/{}", encode(name));
        let resp = self.admin(Method::POST, &path).send().await?;
        expect_status(resp, StatusCode::CREATED, "create user").await?;
        let resp = self
            .admin(Method::PATCH, &path)
            .json(&json!({ "password": password }))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, "set password").await
    }

    /// A new API token of `user` with `body` (e.g. `{"expires_in": 1}`); returns the token.
    pub async fn create_token(&self, user: &str, body: Value) -> Result<String> {
        let resp = self
            .admin(
                Method::POST,
                &format!("/hub/api/users/{}/tokens", encode(user)),
            )
            .json(&body)
            .send()
            .await?;
        let model = expect_json(resp, StatusCode::CREATED, "create token").await?;
        model["token"]
            .as_str()
            .map(str::to_owned)
            .context("the new token model has no `token`")
    }

    /// The user model as the admin sees it.
    pub async fn user(&self, name: &str) -> Result<Value> {
        let resp = self
            .admin(Method::GET, &format!("/hub/api/users/{}", encode(name)))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, "get user").await
    }

    /// Asks for `user`'s default server; waits until it is ready and returns its server model.
    pub async fn start_server(&self, user: &str) -> Result<Value> {
        let resp = self
            .admin(
                Method::POST,
                &format!("/hub/api/users/{}/server", encode(user)),
            )
            .send()
            .await?;
        let status = resp.status();
        if status != StatusCode::CREATED && status != StatusCode::ACCEPTED {
            bail!(
                "starting {user}'s server: {status} {}",
                resp.text().await.unwrap_or_default()
            );
        }
        self.wait_until_ready(user, "", SERVER_READY_TIMEOUT).await
    }

    /// Asks for every user's default server at once (one request each, all in flight together,
    /// with `body` as the `user_options`), as a class pressing Start does.
    pub async fn start_servers_together(&self, users: &[String], body: &Value) -> Result<()> {
        let requests = users.iter().map(|user| async move {
            let resp = self
                .admin(
                    Method::POST,
                    &format!("/hub/api/users/{}/server", encode(user)),
                )
                .json(body)
                .send()
                .await?;
            let status = resp.status();
            if status != StatusCode::CREATED && status != StatusCode::ACCEPTED {
                bail!(
                    "starting {user}'s server gave {status}: {}",
                    resp.text().await.unwrap_or_default()
                );
            }
            Ok(())
        });
        for result in futures_util::future::join_all(requests).await {
            result?;
        }
        Ok(())
    }

    /// Waits until every user's default server is ready; fails at once when one has failed (it
    /// is then neither pending nor ready).
    pub async fn wait_all_ready(&self, users: &[String], timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut waiting = 0;
            for user in users {
                let model = self.user(user).await?;
                let server = &model["servers"][""];
                if server["ready"] == json!(true) {
                    continue;
                }
                if server.is_null() || server["pending"].is_null() {
                    bail!("{user}'s server failed to start: {model}");
                }
                waiting += 1;
            }
            if waiting == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{waiting} of {} servers were not ready within {timeout:?}",
                    users.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Polls `GET /hub/api/users/{user}` until `servers[server_name].ready`; returns that server.
    pub async fn wait_until_ready(
        &self,
        user: &str,
        server_name: &str,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let model = self.user(user).await?;
            let server = &model["servers"][server_name];
            if server["ready"] == json!(true) {
                return Ok(server.clone());
            }
            last = model;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!(
            "{user}'s server {server_name:?} was not ready within {timeout:?}; last model: {last}"
        )
    }

    /// Stops `user`'s default server through the API and waits (≤ 60 s) until it is gone.
    pub async fn stop_server(&self, user: &str) -> Result<()> {
        let resp = self
            .admin(
                Method::DELETE,
                &format!("/hub/api/users/{}/server", encode(user)),
            )
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!("stopping {user}'s server gave {}", resp.status());
        }
        self.wait_until_stopped(user, "", Duration::from_secs(60))
            .await
    }

    /// The events of the progress stream of `user`'s server `server_name` (`""`: the default
    /// one), read until the stream ends (≤ 300 s).
    pub async fn progress_events(&self, user: &str, server_name: &str) -> Result<Vec<Value>> {
        use futures_util::StreamExt as _;
        let path = if server_name.is_empty() {
            format!("/hub/api/users/{}/server/progress", encode(user))
        } else {
            format!(
                "/hub/api/users/{}/servers/{}/progress",
                encode(user),
                encode(server_name)
            )
        };
        let resp = self.admin(Method::GET, &path).send().await?;
        if resp.status() != StatusCode::OK {
            bail!("{path} gave {}", resp.status());
        }
        let mut stream = resp.bytes_stream();
        let mut text = String::new();
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
        while let Some(chunk) = tokio::time::timeout_at(deadline, stream.next())
            .await
            .context("the progress stream did not end")?
        {
            text.push_str(&String::from_utf8_lossy(&chunk?));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                for data in block.lines().filter_map(|l| l.strip_prefix("data:")) {
                    events.push(serde_json::from_str::<Value>(data.trim())?);
                }
            }
        }
        Ok(events)
    }

    /// Polls until `user` has no active server named `server_name`.
    pub async fn wait_until_stopped(
        &self,
        user: &str,
        server_name: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let model = self.user(user).await?;
            if model["servers"].get(server_name).is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        bail!("{user}'s server {server_name:?} still exists after {timeout:?}")
    }

    /// Sends one HTTP/1.1 request with `target` exactly as given — no URL parser resolves `..`
    /// or re-encodes anything — with the admin token, and reads the whole answer.
    pub async fn raw_request(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<RawResponse> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.addr()).await?;
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: token {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr(),
            self.admin_token,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer))
            .await
            .context("no complete answer within 30 s")??;
        RawResponse::parse(&answer)
    }

    /// The OS process id of the hub, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM to the hub and waits (≤ 30 s) for it to exit.
    pub async fn terminate(&mut self) -> Result<()> {
        self.signal_and_wait(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30))
            .await
    }

    /// Sends SIGKILL to the hub (only the hub's own process) and reaps it.
    pub async fn kill(&mut self) -> Result<()> {
        self.signal_and_wait(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(10))
            .await
    }

    async fn signal_and_wait(
        &mut self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("the hub is not running");
        };
        process::signal_pid(child.id(), signal)?;
        let deadline = Instant::now() + timeout;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the hub did not exit within {timeout:?} after {signal}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The hub's configuration file (edit it between [`Hub::terminate`] and [`Hub::restart`]).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Starts the hub again on the same port, data directory and configuration.
    pub async fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the hub is still running; terminate or kill it first");
        }
        self.launch().await
    }

    /// The logs of the single-user servers (`{data_dir}/logs/*.log`), each as (file name, text).
    pub fn server_logs(&self) -> Vec<(String, String)> {
        let mut logs = Vec::new();
        if let Ok(entries) = std::fs::read_dir(self.data_dir.join("logs")) {
            for entry in entries.flatten() {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                logs.push((entry.file_name().to_string_lossy().into_owned(), text));
            }
        }
        logs.sort();
        logs
    }

    /// Runs `program` with the marker in its environment so that it is cleaned up with the hub.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env(process::MARKER_VAR, &self.marker);
        process::own_process_group(&mut cmd);
        cmd
    }

    /// A file in this hub's temporary directory (for helper logs).
    pub fn scratch_path(&self, name: &str) -> PathBuf {
        self.root_path.join(name)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::kill_group(child.id());
            let _ = child.wait();
        }
        process::kill_marked(&self.marker);
        // Servers carry the marker only where the generated configuration gives it to them.
        process::kill_inside(&self.root_path);
        // libtest shows this only when the test fails.
        eprintln!("===== xiji log ({}) =====", self.log_path.display());
        eprintln!("{}", tail(&self.log(), 300));
        for (name, text) in self.server_logs() {
            eprintln!("===== single-user log {name} =====");
            eprintln!("{}", tail(&text, 80));
        }
        if std::env::var_os("XIJI_TEST_KEEP").is_some() {
            if let Some(root) = self.root.take() {
                eprintln!("kept {}", root.keep().display());
            }
        }
    }
}

/// The HTTP client of a test hub: no redirects followed (tests check them), a 60 s timeout.
fn test_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Percent-encodes one path segment (`.` and `..` too, which URL parsers would otherwise resolve).
pub fn encode(segment: &str) -> String {
    if segment == "." || segment == ".." {
        return segment.replace('.', "%2E");
    }
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Checks the status; returns the body text.
pub async fn expect_status(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<String> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status != want {
        bail!("{what}: expected {want}, got {status}: {text}");
    }
    Ok(text)
}

/// Checks the status; returns the body as JSON.
pub async fn expect_json(resp: reqwest::Response, want: StatusCode, what: &str) -> Result<Value> {
    let text = expect_status(resp, want, what).await?;
    serde_json::from_str(&text).with_context(|| format!("{what}: the body is not JSON: {text}"))
}

/// A fresh, empty PostgreSQL database on the test server (`XIJI_TEST_PG_URL`), named
/// `xiji_{prefix}_{random}`, as a URL for `HubOptions::database_url`.
pub fn new_postgres_database(prefix: &str) -> Result<String> {
    let base = required_env("XIJI_TEST_PG_URL")?;
    let name = format!("xiji_{prefix}_{}", random_hex(8));
    let status = Command::new("psql")
        .arg(&base)
        .args(["-q", "-c", &format!("CREATE DATABASE {name}")])
        .status()
        .context("running psql")?;
    if !status.success() {
        bail!("psql could not create {name}");
    }
    let mut url = url::Url::parse(&base)?;
    url.set_path(&name);
    Ok(url.to_string())
}

/// `n` random bytes as hex, from the kernel's random source.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok();
    if !ok {
        // Good enough for unique names in tests.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        buf = nanos
            .to_le_bytes()
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The current time as JupyterHub writes it (ISO 8601, UTC, `Z`).
pub fn now_iso() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Fails unless `resp` is a JupyterHub error: status `want`, JSON `{"status": want, "message": …}`
/// with a non-empty message. Returns the message.
pub async fn expect_api_error(
    resp: reqwest::Response,
    want: StatusCode,
    what: &str,
) -> Result<String> {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = resp.text().await.unwrap_or_default();
    if status != want {
        bail!("{what}: expected {want}, got {status}: {text}");
    }
    if !content_type.starts_with("application/json") {
        bail!("{what}: the error is {content_type:?}, not JSON: {text}");
    }
    let body: Value = serde_json::from_str(&text)
        .with_context(|| format!("{what}: the error body is not JSON: {text}"))?;
    if body["status"] != json!(want.as_u16()) {
        bail!("{what}: the body's status is not {}: {text}", want.as_u16());
    }
    let message = body["message"].as_str().unwrap_or_default();
    if message.trim().is_empty() {
        bail!("{what}: the error has no message: {text}");
    }
    Ok(message.to_owned())
}

/// An HTTP answer read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: String,
}

impl RawResponse {
    fn parse(answer: &[u8]) -> Result<RawResponse> {
        let text = String::from_utf8_lossy(answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .with_context(|| format!("not an HTTP answer: {text:?}"))?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no status line: {head:?}"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            let mut out = String::new();
            let mut rest = body;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if size == 0 || after.len() < size {
                    break;
                }
                out.push_str(&after[..size]);
                rest = after[size..].trim_start_matches("\r\n");
            }
            out
        } else {
            body.to_owned()
        };
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Fails unless this is a JupyterHub error with status `want`; returns the message.
    pub fn expect_api_error(&self, want: u16, what: &str) -> Result<String> {
        if self.status != want {
            bail!(
                "{what}: expected {want}, got {}: {}",
                self.status,
                self.body
            );
        }
        let body: Value = serde_json::from_str(&self.body)
            .with_context(|| format!("{what}: the error body is not JSON: {}", self.body))?;
        if body["status"] != json!(want) || !body["message"].is_string() {
            bail!("{what}: not a JupyterHub error body: {}", self.body);
        }
        Ok(body["message"].as_str().unwrap_or_default().to_owned())
    }
}
