//! The node agent (`xiji-node-agent`, the real binary) against a real Docker container and a
//! real Debian `docker-registry`: the agent finds the container by its id through `/proc` and
//! its cgroup alone (no Docker API), saves its writable layer with the container frozen during
//! the read, and the pushed image holds the container's files; a wrong token is refused, an
//! unknown container is a 404 that says so, a cancel leaves no tag and the container running.
//!
//! Runs when `XIJI_TEST_DOCKER=1` (set by `tests/setup-docker.sh`'s env file); then a missing
//! Docker or registry is a failure, not a skip. Needs root (the agent reads Docker's layer
//! directories and writes the freezer), as the agent does on a node.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod docker_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use docker_support::{
    docker_cpu_ns, docker_inspect, docker_tests_enabled, free_port, sh, unique, DockerCleanup,
    Registry,
};
use imagebuilder::agent::{AgentClient, SaveSpec};
use imagebuilder::{Compression, Error, JobState, LayerOptions, RegistryConfig};
use serde_json::{json, Value};

/// The agent binary, listening on a free loopback port.
struct Agent {
    child: Child,
    url: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let token = hex::encode(rand::random::<[u8; 24]>());
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_xiji-node-agent"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(&token_file)
            .args(["--host-proc", "/proc"])
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--temp-dir")
            .arg(dir.path())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the agent did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Agent {
            child,
            url,
            token,
            _dir: dir,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
    }

    /// A request of `path` with no body, with the agent's token.
    async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.request(method, path).send().await.unwrap()
    }

    /// `POST /v1/saves` of `body`, with the agent's token.
    async fn post_save(&self, body: &impl serde::Serialize) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/v1/saves")
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, id: &str) -> Value {
        let resp = self
            .send(reqwest::Method::GET, &format!("/v1/saves/{id}"))
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-layer base image of the host's own binaries, pushed to `registry` as
/// `xiji/agent-base:1`, and a container of it named `prefix…` that sleeps: the base, the
/// container's name and its id.
fn sleeping_container(
    registry: &Registry,
    cleanup: &mut DockerCleanup,
    prefix: &str,
) -> (String, String, String) {
    let rootfs = docker_support::host_rootfs(
        &["sh", "sleep", "cat", "mkdir", "head", "base64", "sha256sum"],
        &["etc", "tmp", "dev", "proc", "sys"],
    );
    let base = format!("{}/xiji/agent-base:1", registry.addr);
    cleanup.images.push(base.clone());
    sh(&format!(
        "tar -C {} -c . | docker import - {base} > /dev/null && docker push -q {base} > /dev/null",
        rootfs.path().display()
    ));
    let name = unique(prefix);
    cleanup.containers.push(name.clone());
    let container = sh(&format!("docker run -d --name {name} {base} sleep 3600"))
        .trim()
        .to_owned();
    assert_eq!(container.len(), 64, "{container}");
    (base, name, container)
}

/// A request without a token, and one with a wrong token, are refused with 401 and a
/// `WWW-Authenticate: Bearer` challenge.
async fn assert_refused_without_the_token(request: impl Fn() -> reqwest::RequestBuilder) {
    for token in [None, Some("wrong-token-wrong-token")] {
        let mut request = request();
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), 401, "token {token:?}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["status"], 401);
    }
}

/// The agent's answer about container `unknown`, which runs nowhere: a 404 that says so.
async fn assert_no_such_container(resp: reqwest::Response, unknown: &str) {
    assert_eq!(resp.status(), 404);
    let error: Value = resp.json().await.unwrap();
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(unknown) && message.contains("no process on this machine"),
        "{message}"
    );
}

/// The freezer state of a cgroup directory, as the kernel says it: `FROZEN`/`THAWED`
/// (v1 `freezer.state`) or `frozen 1`/`frozen 0` (v2 `cgroup.events`), as "FROZEN"/"THAWED".
fn freezer_state(cgroup: &Path) -> String {
    if let Ok(state) = std::fs::read_to_string(cgroup.join("freezer.state")) {
        return state.trim().to_owned();
    }
    let events = std::fs::read_to_string(cgroup.join("cgroup.events")).unwrap();
    if events.lines().any(|l| l.trim() == "frozen 1") {
        "FROZEN".into()
    } else {
        "THAWED".into()
    }
}

/// A save spec of `container` onto `base`: single-threaded gzip at level 9 so that the read of
/// the large file lasts a few seconds, long enough to look at the frozen cgroup meanwhile.
fn spec(container: &str, base: &str, target: &str) -> SaveSpec {
    serde_json::from_value(json!({
        "container_id": format!("docker://{container}"),
        "base_image": base,
        "target": target,
        "saved_by": "alice",
        "description": "saved through the node agent",
        "layer": LayerOptions::default(),
        "compression": Compression::gzip(9),
        "registry": RegistryConfig::default(),
        "pause": true,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_agent_saves_a_container_it_finds_through_proc_frozen_while_read() {
    if !docker_tests_enabled() {
        return;
    }
    let registry = Registry::start();
    let mut cleanup = DockerCleanup::default();
    let (base, name, container) = sleeping_container(&registry, &mut cleanup, "agent-node-");
    // A small file to find in the image, and 60 MiB of base64 text: gzip -9 on one thread
    // takes seconds over it.
    sh(&format!(
        "docker exec {name} sh -c 'mkdir -p /opt/data && echo agent-was-here > /opt/agent.txt && \
         head -c 45000000 /dev/urandom | base64 > /opt/data/big.txt'"
    ));
    let big_sha = sh(&format!("docker exec {name} sha256sum /opt/data/big.txt"));
    let agent = Agent::start();

    // --- who may ask, and about what -------------------------------------------------------
    let body = json!({
        "container_id": format!("docker://{container}"),
        "base_image": base, "target": format!("{}/saved/x:1", registry.addr), "saved_by": "alice",
    });
    assert_refused_without_the_token(|| {
        reqwest::Client::new()
            .post(format!("{}/v1/saves", agent.url))
            .json(&body)
    })
    .await;
    let unknown = "ab".repeat(32);
    let resp = agent
        .post_save(&json!({
            "container_id": format!("containerd://{unknown}"),
            "base_image": base, "target": format!("{}/saved/x:1", registry.addr), "saved_by": "alice",
        }))
        .await;
    assert_no_such_container(resp, &unknown).await;
    let resp = agent
        .post_save(&json!({
            "container_id": "docker://abc", "base_image": base,
            "target": format!("{}/saved/x:1", registry.addr), "saved_by": "alice",
        }))
        .await;
    assert_eq!(resp.status(), 400);
    let resp = agent.send(reqwest::Method::GET, "/v1/saves/nope").await;
    assert_eq!(resp.status(), 404);

    // --- a save over the raw API, frozen while read ---------------------------------------
    let target = format!("{}/saved/alice/env:v1", registry.addr);
    cleanup.images.push(target.clone());
    let mut save = spec(&container, &base, &target);
    save.id = Some("hub-job-1".into());
    let resp = agent.post_save(&save).await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["id"], "hub-job-1");
    // The layer found through /proc and the cgroup is the one Docker reports.
    let upper = docker_inspect(&name, "{{.GraphDriver.Data.UpperDir}}");
    assert_eq!(created["layer_dir"], upper.as_str());
    let cgroup = PathBuf::from(created["cgroup"].as_str().unwrap());
    assert!(
        cgroup.to_string_lossy().contains(&container),
        "{}",
        cgroup.display()
    );
    // (Not checked here: the freezer's state right after the answer; the job may already be
    // reading, frozen. It is checked while the job reads, and after it ends.)

    // A second save of the same container meanwhile is refused; the same id answers the job.
    let mut other = spec(&container, &base, &format!("{}/saved/x:2", registry.addr));
    other.id = Some("hub-job-other".into());
    let resp = agent.post_save(&other).await;
    assert_eq!(resp.status(), 409);
    let resp = agent.post_save(&save).await;
    assert_eq!(resp.status(), 200, "the same id answers the job");

    let mut states: Vec<String> = Vec::new();
    let mut seen_frozen_while_compressing = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        assert!(
            Instant::now() < deadline,
            "the save did not end: {states:?}"
        );
        let view = agent.get("hub-job-1").await;
        let state = view["state"].as_str().unwrap().to_owned();
        if state == "compressing" {
            let kernel = freezer_state(&cgroup);
            if kernel == "FROZEN" {
                assert_eq!(view["frozen"], true, "{view}");
                // Docker knows nothing of it: it is not a `docker pause`.
                assert_eq!(docker_inspect(&name, "{{.State.Paused}}"), "false");
                seen_frozen_while_compressing = true;
            }
        }
        if states.last() != Some(&state) {
            states.push(state.clone());
        }
        if view["state"] == "done" || view["state"] == "failed" || view["state"] == "cancelled" {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["state"], "done", "{done}");
    assert!(
        states.contains(&"compressing".to_owned()),
        "states: {states:?}"
    );
    assert!(
        seen_frozen_while_compressing,
        "the container's cgroup was never seen frozen during the read ({states:?})"
    );
    assert_eq!(freezer_state(&cgroup), "THAWED", "thawed after the save");
    assert_eq!(done["frozen"], false);
    assert_eq!(docker_inspect(&name, "{{.State.Paused}}"), "false");
    assert_eq!(docker_inspect(&name, "{{.State.Running}}"), "true");
    let progress = &done["progress"];
    assert!(
        progress["bytes_read"].as_u64().unwrap() >= 45_000_000,
        "{progress}"
    );
    assert_eq!(progress["bytes_pushed"], progress["push_total"]);
    let manifest_digest = done["image"]["manifest_digest"]
        .as_str()
        .unwrap()
        .to_owned();

    // The image, pulled and run: the container's files are in it, byte for byte.
    sh(&format!("docker pull -q {target} > /dev/null"));
    let found = sh(&format!(
        "docker run --rm {target} sh -c 'cat /opt/agent.txt; sha256sum /opt/data/big.txt'"
    ));
    assert!(found.starts_with("agent-was-here\n"), "{found}");
    assert!(found.ends_with(&big_sha), "{found} vs {big_sha}");
    let labels = sh(&format!(
        "docker image inspect -f '{{{{json .Config.Labels}}}}' {target}"
    ));
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["org.xiji.saved-by"], "alice");
    assert_eq!(labels["org.xiji.base-image"], base.as_str());

    // --- the hub's client: asking again for job 1 picks up its result ---------------------
    let client = AgentClient::new(&agent.url, &agent.token).unwrap();
    let again = client.start(&save).await.unwrap();
    assert_eq!(again.status().state, JobState::Done);
    let saved = again.wait().await.unwrap();
    assert_eq!(saved.manifest_digest, manifest_digest);

    // --- a cancel through the client: no tag, the container thawed and running ------------
    let target2 = format!("{}/saved/alice/env:cancelled", registry.addr);
    let mut save2 = spec(&container, &base, &target2);
    save2.id = Some("hub-job-2".into());
    let job = client.start(&save2).await.unwrap();
    let mut updates = job.subscribe();
    let deadline = Instant::now() + Duration::from_secs(120);
    while updates.borrow().state != JobState::Compressing {
        assert!(Instant::now() < deadline, "never compressing");
        assert!(
            !updates.borrow().state.is_finished(),
            "{:?}",
            updates.borrow()
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), updates.changed()).await;
    }
    assert_eq!(freezer_state(&cgroup), "FROZEN");
    job.cancel();
    let result = tokio::time::timeout(Duration::from_secs(120), job.wait())
        .await
        .expect("the cancelled save ended");
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(agent.get("hub-job-2").await["state"], "cancelled");
    assert_eq!(freezer_state(&cgroup), "THAWED", "thawed after the cancel");
    assert_eq!(docker_inspect(&name, "{{.State.Running}}"), "true");
    assert_eq!(
        sh(&format!("docker exec {name} cat /opt/agent.txt")),
        "agent-was-here\n",
        "the container still answers"
    );
    assert_eq!(
        registry.manifest_status("saved/alice/env:cancelled"),
        "404",
        "a cancelled save tags nothing"
    );
    assert_eq!(registry.manifest_status("saved/alice/env:v1"), "200");

    // A DELETE of a finished job leaves it as it is.
    let resp = agent
        .send(reqwest::Method::DELETE, "/v1/saves/hub-job-1")
        .await;
    assert_eq!(resp.status(), 202);
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["state"], "done");

    // A container that is gone: the client's start says so.
    sh(&format!("docker rm -f {name} > /dev/null"));
    let mut gone = spec(&container, &base, &format!("{}/saved/x:3", registry.addr));
    gone.id = Some("hub-job-3".into());
    let Err(err) = client.start(&gone).await else {
        panic!("a save of a removed container started");
    };
    assert!(
        err.to_string().contains("no process on this machine"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_agent_reads_a_containers_cpu_time_from_its_cgroup_as_docker_does() {
    if !docker_tests_enabled() {
        return;
    }
    let registry = Registry::start();
    let mut cleanup = DockerCleanup::default();
    let (_, name, container) = sleeping_container(&registry, &mut cleanup, "agent-usage-");
    let agent = Agent::start();
    let client = AgentClient::new(&agent.url, &agent.token).unwrap();
    let kube_id = format!("docker://{container}");

    // The raw API: the id as Kubernetes gives it, URL-encoded.
    let path = format!("/v1/containers/docker%3A%2F%2F{container}/usage");
    let resp = agent.send(reqwest::Method::GET, &path).await;
    assert_eq!(resp.status(), 200);
    let first: Value = resp.json().await.unwrap();
    let first_ns = first["cpu_ns"].as_u64().unwrap();
    let read_at = chrono::DateTime::parse_from_rfc3339(first["read_at"].as_str().unwrap()).unwrap();
    assert!(
        (chrono::Utc::now() - read_at.to_utc()).num_seconds().abs() < 60,
        "{first}"
    );

    // A second of busy loop in the container: the agent's reading grows by (about) that, and
    // lies between two readings of Docker's own around it.
    sh(&format!(
        "docker exec {name} sh -c '(while :; do :; done) & p=$!; sleep 1; kill $p'"
    ));
    let docker_before = docker_cpu_ns(&container);
    let usage = client
        .usage(&kube_id)
        .await
        .unwrap()
        .expect("the container's usage");
    let docker_after = docker_cpu_ns(&container);
    assert!(
        usage.cpu_ns >= first_ns + 100_000_000,
        "a second of busy loop added {} ns",
        usage.cpu_ns - first_ns
    );
    assert!(
        docker_before <= usage.cpu_ns && usage.cpu_ns <= docker_after,
        "Docker read {docker_before} then {docker_after} ns, the agent {} ns",
        usage.cpu_ns
    );
    // The bare id names the same container.
    let bare = client.usage(&container).await.unwrap().unwrap();
    assert!(bare.cpu_ns >= usage.cpu_ns);

    // Who may ask, and about what.
    assert_refused_without_the_token(|| reqwest::Client::new().get(format!("{}{path}", agent.url)))
        .await;
    let Err(err) = AgentClient::new(&agent.url, "wrong-token-wrong-token")
        .unwrap()
        .usage(&kube_id)
        .await
    else {
        panic!("a wrong token was accepted");
    };
    assert!(err.to_string().contains("refused the hub's token"), "{err}");
    let unknown = "cd".repeat(32);
    let resp = agent
        .send(
            reqwest::Method::GET,
            &format!("/v1/containers/containerd%3A%2F%2F{unknown}/usage"),
        )
        .await;
    assert_no_such_container(resp, &unknown).await;
    let resp = agent
        .send(reqwest::Method::GET, "/v1/containers/abc/usage")
        .await;
    assert_eq!(resp.status(), 400);

    // A container that is gone has no usage here.
    sh(&format!("docker rm -f {name} > /dev/null"));
    assert_eq!(client.usage(&kube_id).await.unwrap(), None);
}
