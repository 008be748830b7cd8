//! Shared helpers for the spawner's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod kube_cluster;
pub mod kube_spawner;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use spawner::local::{LocalConfig, LocalSpawner};
use spawner::{ClusterResources, SpawnSpec, Started};

/// The JupyterHub version the stand-in hub announces; the singleuser checks it at start.
pub const HUB_VERSION: &str = "5.5.1";

/// Packages of the shared test venv.
pub fn test_packages() -> Vec<String> {
    vec!["jupyterhub>=5.5,<5.6".into(), "jupyterlab".into()]
}

/// The shared test venv: `$XIJI_TEST_VENV5`, else `<workspace>/.cache/venv5`.
pub fn test_venv_path() -> PathBuf {
    if let Some(path) = std::env::var_os("XIJI_TEST_VENV5") {
        return PathBuf::from(path);
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir.parent().unwrap_or(&manifest_dir);
    workspace.join(".cache").join("venv5")
}

/// The Python used to create the test venv: `$XIJI_TEST_PYTHON`, else `python3`.
pub fn test_python() -> String {
    std::env::var("XIJI_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Creates the shared venv if needed (minutes the first time) and returns its singleuser.
pub async fn singleuser() -> PathBuf {
    LocalSpawner::ensure_python_env(&test_venv_path(), &test_python(), &test_packages())
        .await
        .expect("the test venv with jupyterhub-singleuser")
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "spawner=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A stand-in for the two hub endpoints the singleuser calls by itself: the version check
/// (`GET /hub/api`) and activity (`POST /hub/api/users/{name}/activity`). Records each request.
pub struct StandInHub {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl StandInHub {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1").await
    }

    /// Listens on `ip` (a random port), e.g. the Docker bridge's gateway so containers reach it.
    pub async fn start_on(ip: &str) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, _h: HeaderMap| {
            let seen = seen.clone();
            async move {
                let path = uri.path().to_owned();
                seen.lock().unwrap().push(format!("{method} {path}"));
                let version = [("X-JupyterHub-Version", HUB_VERSION)];
                let known = (method == Method::GET && (path == "/hub/api" || path == "/hub/api/"))
                    || (method == Method::POST
                        && path.starts_with("/hub/api/users/")
                        && path.ends_with("/activity"));
                if known {
                    (
                        axum::http::StatusCode::OK,
                        version,
                        axum::Json(serde_json::json!({"version": HUB_VERSION})),
                    )
                        .into_response()
                } else {
                    (axum::http::StatusCode::NOT_FOUND, version).into_response()
                }
            }
        });
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, requests }
    }

    pub fn seen(&self, request: &str) -> bool {
        self.requests.lock().unwrap().iter().any(|r| r == request)
    }

    /// Every `JUPYTERHUB_*` variable the real hub sets for `user`'s default server, except
    /// `JUPYTERHUB_SERVICE_URL`.
    pub fn spec_for(&self, user: &str) -> SpawnSpec {
        let api = format!("http://{}/hub/api", self.addr);
        let scopes = format!(r#"["access:servers!server={user}/", "access:servers!user={user}"]"#);
        let env: BTreeMap<String, String> = [
            ("JUPYTERHUB_API_TOKEN", "not-a-real-token".to_owned()),
            ("JUPYTERHUB_CLIENT_ID", format!("jupyterhub-user-{user}")),
            ("JUPYTERHUB_API_URL", api.clone()),
            (
                "JUPYTERHUB_ACTIVITY_URL",
                format!("{api}/users/{user}/activity"),
            ),
            ("JUPYTERHUB_BASE_URL", "/".to_owned()),
            ("JUPYTERHUB_SERVICE_PREFIX", format!("/user/{user}/")),
            ("JUPYTERHUB_USER", user.to_owned()),
            ("JUPYTERHUB_SERVER_NAME", String::new()),
            ("JUPYTERHUB_HOST", String::new()),
            (
                "JUPYTERHUB_OAUTH_CALLBACK_URL",
                format!("/user/{user}/oauth_callback"),
            ),
            ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", scopes.clone()),
            ("JUPYTERHUB_OAUTH_SCOPES", scopes),
            ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_owned()),
            ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        SpawnSpec {
            user: user.to_owned(),
            server_name: String::new(),
            service_prefix: format!("/user/{user}/"),
            env,
            resources: ClusterResources::single_node(),
            work_dir: None,
            secret_files: Vec::new(),
            mounts: Vec::new(),
        }
    }
}

/// A spec for a fake server that needs no hub.
pub fn plain_spec(user: &str) -> SpawnSpec {
    SpawnSpec {
        user: user.to_owned(),
        server_name: String::new(),
        service_prefix: format!("/user/{user}/"),
        env: BTreeMap::new(),
        resources: ClusterResources::single_node(),
        work_dir: None,
        secret_files: Vec::new(),
        mounts: Vec::new(),
    }
}

/// A local spawner running `cmd`, with work and log directories under `dir`.
pub fn local_config(cmd: &[&str], dir: &tempfile::TempDir) -> LocalConfig {
    LocalConfig::new(
        cmd.iter().map(|s| (*s).to_owned()).collect(),
        dir.path().join("work"),
        dir.path().join("logs"),
    )
}

/// Live (non-zombie) processes whose process group is `pgid`.
pub fn live_group_members(pgid: i64) -> Vec<i64> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
        if !zombie && fields.get(2).and_then(|g| g.parse::<i64>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

/// Live processes whose command line contains `needle`.
pub fn live_processes_with_cmdline(needle: &str) -> Vec<i64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i64>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .contains(needle)
            && !live_group_members_state_is_zombie(pid)
        {
            found.push(pid);
        }
    }
    found
}

fn live_group_members_state_is_zombie(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let close = s.rfind(')')?;
            s[close + 1..]
                .split_whitespace()
                .next()
                .map(|st| st == "Z" || st == "X")
        })
        .unwrap_or(true)
}

/// `user`'s two-node cluster as the hub routes it: node-0 at the server's URL and prefix,
/// node-1 under that prefix with an OAuth client of its own, and each answering at its prefix.
pub async fn assert_two_nodes_answer_at_their_prefixes(started: &Started, user: &str) {
    assert_eq!(started.nodes.len(), 2);
    assert_eq!(started.nodes[0].name, "node-0");
    assert_eq!(started.nodes[0].url, started.url);
    assert_eq!(started.nodes[0].service_prefix, format!("/user/{user}/"));
    assert_eq!(
        started.nodes[1].service_prefix,
        format!("/user/{user}/node-1/")
    );
    assert_eq!(
        started.nodes[1].oauth_client_id.as_deref(),
        Some(format!("jupyterhub-user-{user}-node-1").as_str())
    );
    for node in &started.nodes {
        spawner::wait_for_http_server(
            &format!("{}{}api", node.url, node.service_prefix),
            std::time::Duration::from_secs(5),
        )
        .await
        .unwrap();
    }
}
