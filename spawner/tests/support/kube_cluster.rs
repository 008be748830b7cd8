//! The Kubernetes cluster stand-in (`tests/kube/cluster.py`) for tests: an API server, a
//! scheduler, a kubelet running containers as local processes and a garbage collector.
//!
//! Shared by the spawner's tests (`support::kube_cluster`) and the hub-level tests
//! (`tests/tests/kube_support`, which includes this file by path), so it uses only what both
//! crates have: std, tokio, serde_json, nix and tempfile. Talk to the API with kube-rs at
//! [`KubeCluster::url`]; the helpers here cover what the API cannot do (kill a container's
//! process, make a node not Ready, pause the kubelet) and a few plain reads.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the stand-in may take to print `READY`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What else the stand-in is started with.
#[derive(Debug, Clone, Default)]
pub struct KubeClusterOptions {
    /// Serve `scheduling.volcano.sh/v1beta1` and gang-schedule pods of `schedulerName: volcano`.
    pub volcano: bool,
    /// Directories where containers' executables are looked up first (e.g. a venv's `bin`).
    pub bin_dirs: Vec<PathBuf>,
    /// Images whose reference starts with one of these fail to pull (`ErrImagePull`).
    pub fail_pull: Vec<String>,
    /// Namespaces to create besides `default`, `kube-system`, `kube-public`, `kube-node-lease`.
    pub namespaces: Vec<String>,
    /// Anything else for `cluster.py` (see its `--help`).
    pub extra_args: Vec<String>,
}

/// A running stand-in; stopped (with every container process it started) on drop.
pub struct KubeCluster {
    /// The API server, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    process: Child,
    state: tempfile::TempDir,
}

/// The workspace's root (both crates using this file live one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The Python with kmock and kubernetes-validate: `$XIJI_KUBE_PYTHON`, else
/// `<workspace>/.cache/kube-venv/bin/python` (made by `tests/setup-env.sh`).
pub fn kube_python() -> PathBuf {
    match std::env::var_os("XIJI_KUBE_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => workspace_root().join(".cache/kube-venv/bin/python"),
    }
}

/// `tests/kube/echo_server.py`: a process that serves its own address, arguments and
/// environment as JSON on `--ip`/`--port`, for pods of tests.
pub fn echo_server() -> PathBuf {
    workspace_root().join("tests/kube/echo_server.py")
}

impl KubeCluster {
    /// Starts `cluster.py --port 0 --nodes <nodes>` and waits (bounded) until it serves.
    /// `nodes`: `"node-a:cpu=4,memory=16Gi,pods=110,gpu=0;node-b:cpu=8,gpu=2,labels=k=v"`.
    pub fn start(nodes: &str, opts: KubeClusterOptions) -> KubeCluster {
        let state = tempfile::Builder::new()
            .prefix("kube-standin-")
            .tempdir()
            .expect("a state directory for the stand-in");
        let log = std::fs::File::create(state.path().join("cluster.log")).expect("the log file");
        let mut command = Command::new(kube_python());
        command
            .arg(workspace_root().join("tests/kube/cluster.py"))
            .args(["--port", "0", "--nodes", nodes, "--log-level", "INFO"])
            .arg("--state-dir")
            .arg(state.path().join("state"));
        if opts.volcano {
            command.arg("--volcano");
        }
        for dir in &opts.bin_dirs {
            command.arg("--bin-dir").arg(dir);
        }
        for prefix in &opts.fail_pull {
            command.args(["--fail-pull", prefix]);
        }
        if !opts.namespaces.is_empty() {
            command.args(["--namespaces", &opts.namespaces.join(",")]);
        }
        command.args(&opts.extra_args);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut process = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", kube_python().display()));
        let stdout = process.stdout.take().expect("the stand-in's stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Reads READY, then drains whatever else comes so the pipe never fills.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("READY ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let mut cluster = KubeCluster {
            url: String::new(),
            process,
            state,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => cluster.url = url,
            Err(_) => panic!(
                "the Kubernetes stand-in did not get ready within {START_TIMEOUT:?}:\n{}",
                cluster.log()
            ),
        }
        cluster
    }

    /// The stand-in's log (its stderr): requests, bindings, processes started and stopped.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("cluster.log")).unwrap_or_default()
    }

    /// Where pods' working directories, logs and volumes are.
    pub fn state_dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    /// `host:port` of the API server.
    pub fn authority(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// One plain HTTP request to the stand-in: (status, JSON body or Null).
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.request_as(method, path, "application/json", body)
            .await
    }

    /// [`KubeCluster::request`] with a body of another type, e.g.
    /// `application/json-patch+json`.
    pub async fn request_as(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let (status, bytes) = self.raw_request(method, path, content_type, body).await;
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn raw_request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> (u16, Vec<u8>) {
        http_request(
            self.authority(),
            method,
            path,
            &[
                ("Accept", "application/json"),
                ("Content-Type", content_type),
            ],
            body,
        )
        .await
    }

    /// GET a path of the API, panicking unless it answers 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The pods of a namespace.
    pub async fn pods(&self, namespace: &str) -> Vec<Value> {
        let list = self
            .get_json(&format!("/api/v1/namespaces/{namespace}/pods"))
            .await;
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// A pod, if it exists.
    pub async fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        let (status, body) = self
            .request(
                "GET",
                &format!("/api/v1/namespaces/{namespace}/pods/{name}"),
                None,
            )
            .await;
        (status == 200).then_some(body)
    }

    /// The events of a namespace, oldest first.
    pub async fn events(&self, namespace: &str) -> Vec<Value> {
        let list = self
            .get_json(&format!("/api/v1/namespaces/{namespace}/events"))
            .await;
        list["items"].as_array().cloned().unwrap_or_default()
    }

    /// Waits (bounded) until the pod satisfies `ready`; returns it, or panics with its state.
    pub async fn wait_pod(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let pod = self.pod(namespace, name).await;
            if let Some(pod) = &pod {
                if ready(pod) {
                    return pod.clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "pod {namespace}/{name} not as expected within {timeout:?}: {}",
                    serde_json::to_string_pretty(&pod).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until the pod no longer exists.
    pub async fn wait_pod_gone(&self, namespace: &str, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pod(namespace, name).await.is_some() {
            assert!(
                Instant::now() < deadline,
                "pod {namespace}/{name} still there after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn control(&self, action: &str) -> Value {
        let (status, body) = self
            .request("POST", &format!("/_test/{action}"), None)
            .await;
        assert_eq!(status, 200, "/_test/{action}: {body}");
        body
    }

    /// Kills the processes of a pod's containers with SIGKILL (the kubelet then reports them
    /// terminated with exit code 137).
    pub async fn kill_pod(&self, namespace: &str, name: &str) {
        self.control(&format!("kill?ns={namespace}&pod={name}"))
            .await;
    }

    /// Sends `signal` (e.g. "TERM") to one container's process group.
    pub async fn signal_container(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        signal: &str,
    ) {
        self.control(&format!(
            "kill?ns={namespace}&pod={pod}&container={container}&signal={signal}"
        ))
        .await;
    }

    /// Makes a node Ready or not (not Ready: condition False, the `not-ready` NoSchedule taint,
    /// its pods not Ready).
    pub async fn set_node_ready(&self, node: &str, ready: bool) {
        self.control(&format!("node?name={node}&ready={ready}"))
            .await;
    }

    /// The kubelet stops acting and reporting (processes keep running, deleted pods stay
    /// Terminating) until [`KubeCluster::resume_kubelet`].
    pub async fn pause_kubelet(&self) {
        self.control("pause-kubelet").await;
    }

    pub async fn resume_kubelet(&self) {
        self.control("resume-kubelet").await;
    }

    /// From now on, images starting with `prefix` fail to pull.
    pub async fn fail_pull(&self, prefix: &str) {
        self.control(&format!("fail-pull?prefix={prefix}")).await;
    }

    /// The containers' processes now running: `namespace`, `pod`, `uid`, `container`, `pid`,
    /// `ip`, `node`.
    pub async fn processes(&self) -> Vec<Value> {
        self.get_json("/_test/processes")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for KubeCluster {
    fn drop(&mut self) {
        // SIGTERM lets it stop its containers' processes (their own process groups) first.
        let group = Pid::from_raw(self.process.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.process.wait();
    }
}

/// One HTTP/1.1 request to `authority` with `headers` and a JSON `body`, over a connection of
/// its own (no client library, so that nothing is hidden): the status and the body (de-chunked).
pub async fn http_request(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .unwrap_or_else(|e| panic!("connecting to {authority}: {e}"));
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .unwrap_or_else(|_| panic!("{authority} answers within 30 s"))
        .unwrap_or_else(|e| panic!("reading {authority}'s answer: {e}"));
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let mut body = response[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, body)
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&body[start..(start + size).min(body.len())]);
        body = &body[(start + size + 2).min(body.len())..];
    }
    out
}
