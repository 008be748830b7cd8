//! Saving a node on Kubernetes: where the `kubernetes` backend says a node's writable layer is
//! (its container, and the node agent on its Kubernetes node), against the cluster stand-in
//! (`tests/kube/cluster.py`) with the real `xiji-node-agent` running as an agent pod, and a
//! real Docker container standing in for the node's container (its id written into the pod's
//! `containerStatuses`, as containerd would report it).
//!
//! Needs `XIJI_TEST_DOCKER=1` (Docker Engine, root) and the agent binary
//! (`cargo build -p imagebuilder --bin xiji-node-agent`, or `$XIJI_NODE_AGENT_BIN`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use spawner::kubernetes::{
    ApiAccess, KubernetesConfig, KubernetesSpawner, VolumeMapping, VolumeSource,
};
use spawner::{ClusterResources, LayerLocation, Spawner, SpawnerError};
use support::kube_cluster::{echo_server, workspace_root, KubeCluster, KubeClusterOptions};
use support::{init_tracing, StandInHub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NS: &str = "xiji";
/// Clusters go to node-a (the pool); node-b has an agent pod too.
const NODES: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default;node-b:cpu=4,memory=8Gi";

fn docker_enabled() -> bool {
    if std::env::var("XIJI_TEST_DOCKER").as_deref() != Ok("1") {
        eprintln!(
            "NOT RUN: needs XIJI_TEST_DOCKER=1 (tests/setup-docker.sh && . .cache/docker-env.sh)"
        );
        return false;
    }
    let out = Command::new("docker").arg("info").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "XIJI_TEST_DOCKER=1 but Docker Engine does not answer"
    );
    true
}

fn sh(command: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The agent binary: `$XIJI_NODE_AGENT_BIN`, else the workspace's debug build.
fn agent_binary() -> PathBuf {
    let path = std::env::var_os("XIJI_NODE_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/xiji-node-agent"));
    assert!(
        path.is_file(),
        "{} is missing: cargo build -p imagebuilder --bin xiji-node-agent (or set XIJI_NODE_AGENT_BIN)",
        path.display()
    );
    path
}

/// A Docker container removed at the end, whatever happens.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// One HTTP/1.1 request with a bearer token: (status, JSON body or Null).
async fn call(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let payload = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(payload.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response))
        .await
        .expect("the agent answers within 30 s")
        .unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&response[..split])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (
        status,
        serde_json::from_slice(&response[split + 4..]).unwrap_or(Value::Null),
    )
}

/// An agent pod on `node` as the DaemonSet makes it (its labels, the hostPort), running
/// `command`.
fn agent_pod(
    name: &str,
    node: &str,
    labels: &Value,
    command: Vec<String>,
    port: Option<u16>,
) -> Pod {
    let ports = port.map_or(
        json!([]),
        |p| json!([{"name": "agent", "containerPort": p, "hostPort": p}]),
    );
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "node-agent", "image": "xiji/xiji:test", "command": command,
                "ports": ports,
            }],
        },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_layer_is_its_container_behind_the_agent_of_its_kubernetes_node() {
    init_tracing();
    if !docker_enabled() {
        return;
    }
    let agent_bin = agent_binary();
    // The node's container: a real one, so that the agent has something to find.
    let image = std::env::var("XIJI_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into());
    let docker = Container(sh(&format!("docker run -d {image} sleep 600")));
    let upper = sh(&format!(
        "docker inspect -f '{{{{.GraphDriver.Data.UpperDir}}}}' {}",
        docker.0
    ));

    let cluster = KubeCluster::start(
        NODES,
        KubeClusterOptions {
            namespaces: vec![NS.into()],
            ..KubeClusterOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let mut cfg = KubernetesConfig::new(
        ApiAccess::Url(cluster.url.clone()),
        &image,
        root.join("work"),
    );
    cfg.namespace = NS.into();
    cfg.volumes = vec![VolumeMapping {
        host_path: root.clone(),
        source: VolumeSource::HostPath {
            path: root.display().to_string(),
        },
    }];
    cfg.ready_timeout = Duration::from_secs(60);
    cfg.cmd = vec![
        "python3".into(),
        echo_server().display().to_string(),
        "--ip=0.0.0.0".into(),
        "--port=8888".into(),
    ];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.agent_port = port;
    let token = "a-test-token-for-the-node-agents";
    std::fs::write(root.join("agent-token"), token).unwrap();

    // The agents, as the DaemonSet's pods: the real agent on node-a, a decoy with the same
    // labels on node-b. The stand-in runs pods as local processes on their own 127/8 address
    // and has no hostPort: the agent listens on every address ([::]), so the node's address
    // reaches it as a hostPort would.
    let labels = serde_json::to_value(&cfg.agent_pod_labels).unwrap();
    let client = kube::Client::try_from(kube::Config::new(cluster.url.parse().unwrap())).unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let agent_command = vec![
        agent_bin.display().to_string(),
        "--listen".into(),
        format!("[::]:{port}"),
        "--token-file".into(),
        root.join("agent-token").display().to_string(),
        "--host-proc".into(),
        "/proc".into(),
    ];
    pods.create(
        &PostParams::default(),
        &agent_pod("agent-a", "node-a", &labels, agent_command, Some(port)),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &agent_pod(
            "agent-b",
            "node-b",
            &labels,
            vec!["sleep".into(), "600".into()],
            None,
        ),
    )
    .await
    .unwrap();
    for name in ["agent-a", "agent-b"] {
        cluster
            .wait_pod(NS, name, Duration::from_secs(30), |p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .await;
    }
    let node_a_ip = cluster.get_json("/api/v1/nodes/node-a").await["status"]["addresses"][0]
        ["address"]
        .as_str()
        .unwrap()
        .to_owned();

    // A one-node cluster started by the backend.
    let spawner = KubernetesSpawner::connect(cfg.clone()).await.unwrap();
    let hub = StandInHub::start().await;
    let mut spec = hub.spec_for("alice");
    spec.resources = ClusterResources {
        cpus: Some(0.5),
        memory_bytes: Some(512 * 1024 * 1024),
        ..ClusterResources::single_node()
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let started = spawner.start(&spec, tx).await.unwrap();
    let state = started.state.clone();
    let pod_name = started_pod(&cluster, &state).await;
    let pod = cluster.pod(NS, &pod_name).await.unwrap();
    assert_eq!(pod["spec"]["nodeName"], "node-a");
    let runtime_id = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(runtime_id.starts_with("containerd://"), "{runtime_id}");

    // The layer: the pod's container, behind the agent of its Kubernetes node (its address).
    let agent_url = format!("http://{node_a_ip}:{port}");
    let layer = spawner.node_layer(&state, "node-0").await.unwrap();
    assert_eq!(layer.node, "node-0");
    assert_eq!(layer.instance_id, runtime_id);
    assert_eq!(layer.base_image, image);
    assert_eq!(
        layer.location,
        LayerLocation::NodeAgent {
            agent_url: agent_url.clone(),
            container_id: runtime_id.clone()
        }
    );
    match spawner.node_layer(&state, "node-3").await {
        Err(SpawnerError::NoSuchNode { node, nodes }) => {
            assert_eq!(node, "node-3");
            assert_eq!(nodes, ["node-0"]);
        }
        other => panic!("expected NoSuchNode, got {other:?}"),
    }

    // containerd would report the real container: the kubelet stops reporting, and the pod's
    // status names the Docker container. The backend passes it on, and the agent at that URL
    // finds that container's layer where Docker keeps it.
    cluster.pause_kubelet().await;
    let mut statuses = pod["status"]["containerStatuses"].clone();
    statuses[0]["containerID"] = json!(format!("docker://{}", docker.0));
    pods.patch_status(
        &pod_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"containerStatuses": statuses}})),
    )
    .await
    .unwrap();
    let layer = spawner.node_layer(&state, "node-0").await.unwrap();
    let LayerLocation::NodeAgent {
        agent_url: url,
        container_id,
    } = &layer.location
    else {
        panic!("{layer:?}");
    };
    assert_eq!(url, &agent_url);
    assert_eq!(container_id, &format!("docker://{}", docker.0));
    assert_eq!(layer.instance_id, *container_id);
    let save = json!({
        "container_id": container_id, "base_image": image,
        // Nothing listens there: the job fails in its first step, after the agent found the layer.
        "target": "127.0.0.1:9/xiji-test/never:1", "saved_by": "alice",
    });
    let (status, view) = call("POST", &format!("{url}/v1/saves"), token, Some(&save)).await;
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["layer_dir"], upper.as_str(), "{view}");
    let (status, _) = call(
        "POST",
        &format!("{url}/v1/saves"),
        "not-the-token",
        Some(&save),
    )
    .await;
    assert_eq!(status, 401);
    cluster.resume_kubelet().await;

    // No ready agent on the pod's node: the backend says what to deploy.
    pods.delete("agent-a", &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .wait_pod_gone(NS, "agent-a", Duration::from_secs(30))
        .await;
    match spawner.node_layer(&state, "node-0").await {
        Err(SpawnerError::Config(message)) => {
            assert!(
                message.contains("no ready node agent runs on Kubernetes node node-a"),
                "{message}"
            )
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }

    // A stopped cluster's node is not running.
    spawner.stop(&state, Duration::from_secs(2)).await.unwrap();
    match spawner.node_layer(&state, "node-0").await {
        Err(SpawnerError::NodeNotRunning { node, reason }) => {
            assert_eq!(node, "node-0");
            assert_eq!(reason, "its pod is gone");
        }
        other => panic!("expected NodeNotRunning, got {other:?}"),
    }
}

/// The pod of node-0 of a started cluster.
async fn started_pod(cluster: &KubeCluster, state: &Value) -> String {
    let id = KubernetesSpawner::cluster_id_from_state(state).unwrap();
    cluster
        .pods(NS)
        .await
        .into_iter()
        .find(|p| {
            p["metadata"]["labels"]["xiji.org/cluster"] == id.as_str()
                && p["metadata"]["labels"]["xiji.org/node"] == "node-0"
        })
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
        .expect("node-0's pod")
}

/// Docker's own reading of a container's CPU time (its stats API's
/// `cpu_stats.cpu_usage.total_usage`, nanoseconds), through the Engine's socket.
fn docker_cpu_ns(container: &str) -> u64 {
    let socket = std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(str::to_owned))
        .unwrap_or_else(|| "/var/run/docker.sock".into());
    let stats: Value = serde_json::from_str(&sh(&format!(
        "curl -sf --unix-socket {socket} 'http://docker/containers/{container}/stats?stream=false&one-shot=true'"
    )))
    .unwrap();
    stats["cpu_stats"]["cpu_usage"]["total_usage"]
        .as_u64()
        .unwrap_or_else(|| panic!("no CPU time in Docker's stats: {stats}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_cpu_time_is_read_by_the_agent_of_its_kubernetes_node_and_unknown_without_one() {
    init_tracing();
    if !docker_enabled() {
        return;
    }
    let agent_bin = agent_binary();
    let image = std::env::var("XIJI_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into());
    let docker = Container(sh(&format!("docker run -d {image} sleep 600")));

    let cluster = KubeCluster::start(
        NODES,
        KubeClusterOptions {
            namespaces: vec![NS.into()],
            ..KubeClusterOptions::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let mut cfg = KubernetesConfig::new(
        ApiAccess::Url(cluster.url.clone()),
        &image,
        root.join("work"),
    );
    cfg.namespace = NS.into();
    cfg.volumes = vec![VolumeMapping {
        host_path: root.clone(),
        source: VolumeSource::HostPath {
            path: root.display().to_string(),
        },
    }];
    cfg.ready_timeout = Duration::from_secs(60);
    cfg.cmd = vec![
        "python3".into(),
        echo_server().display().to_string(),
        "--ip=0.0.0.0".into(),
        "--port=8888".into(),
    ];
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    cfg.agent_port = port;
    std::fs::write(
        root.join("agent-token"),
        "a-test-token-for-the-node-agents\n",
    )
    .unwrap();
    cfg.agent_token_file = Some(root.join("agent-token"));

    // The real agent on node-a, a decoy with the same labels (that answers nothing) on node-b.
    let labels = serde_json::to_value(&cfg.agent_pod_labels).unwrap();
    let client = kube::Client::try_from(kube::Config::new(cluster.url.parse().unwrap())).unwrap();
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let agent_command = vec![
        agent_bin.display().to_string(),
        "--listen".into(),
        format!("[::]:{port}"),
        "--token-file".into(),
        root.join("agent-token").display().to_string(),
        "--host-proc".into(),
        "/proc".into(),
    ];
    pods.create(
        &PostParams::default(),
        &agent_pod("agent-a", "node-a", &labels, agent_command, Some(port)),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &agent_pod(
            "agent-b",
            "node-b",
            &labels,
            vec!["sleep".into(), "600".into()],
            None,
        ),
    )
    .await
    .unwrap();
    for name in ["agent-a", "agent-b"] {
        cluster
            .wait_pod(NS, name, Duration::from_secs(30), |p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .await;
    }

    let spawner = KubernetesSpawner::connect(cfg.clone()).await.unwrap();
    let hub = StandInHub::start().await;
    let mut spec = hub.spec_for("alice");
    spec.resources = ClusterResources {
        cpus: Some(0.5),
        memory_bytes: Some(512 * 1024 * 1024),
        ..ClusterResources::single_node()
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let started = spawner.start(&spec, tx).await.unwrap();
    let state = started.state.clone();
    let pod_name = started_pod(&cluster, &state).await;
    let pod = cluster.pod(NS, &pod_name).await.unwrap();
    assert_eq!(pod["spec"]["nodeName"], "node-a");

    // The stand-in's container id names no process the agent can find: no CPU time, no error.
    let usage = spawner.node_usage(&state).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert!(usage[0].running, "{usage:?}");
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");

    // The pod's status names the real container, which burns a second of CPU: the backend's
    // reading comes from the agent on node-a and lies between two of Docker's own.
    cluster.pause_kubelet().await;
    let mut statuses = pod["status"]["containerStatuses"].clone();
    statuses[0]["containerID"] = json!(format!("docker://{}", docker.0));
    pods.patch_status(
        &pod_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"containerStatuses": statuses}})),
    )
    .await
    .unwrap();
    let idle = docker_cpu_ns(&docker.0);
    sh(&format!(
        "docker exec {} sh -c '(while :; do :; done) & p=$!; sleep 1; kill $p'",
        docker.0
    ));
    let before = docker_cpu_ns(&docker.0);
    let usage = spawner.node_usage(&state).await.unwrap();
    let after = docker_cpu_ns(&docker.0);
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].index, 0);
    assert!(usage[0].running, "{usage:?}");
    let cpu_ns = usage[0].cpu_ns.expect("the agent's reading");
    assert!(
        before <= cpu_ns && cpu_ns <= after,
        "Docker read {before} then {after} ns, the backend {cpu_ns} ns"
    );
    assert!(
        cpu_ns >= idle + 100_000_000,
        "a second of busy loop added {} ns",
        cpu_ns - idle
    );

    // A hub without the agents' token does not ask.
    let mut no_token = cfg.clone();
    no_token.agent_token_file = None;
    let tokenless = KubernetesSpawner::connect(no_token).await.unwrap();
    let usage = tokenless.node_usage(&state).await.unwrap();
    assert!(usage[0].running && usage[0].cpu_ns.is_none(), "{usage:?}");

    // The agent of node-a going away: the pod is still metered, without CPU time.
    pods.delete("agent-a", &DeleteParams::default())
        .await
        .unwrap();
    let usage = spawner.node_usage(&state).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert!(usage[0].running, "{usage:?}");
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");
    cluster.resume_kubelet().await;
    cluster
        .wait_pod_gone(NS, "agent-a", Duration::from_secs(30))
        .await;
    let usage = spawner.node_usage(&state).await.unwrap();
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");
    spawner.stop(&state, Duration::from_secs(2)).await.unwrap();
}
