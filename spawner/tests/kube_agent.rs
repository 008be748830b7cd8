//! Saving a node on Kubernetes: where the `kubernetes` backend says a node's writable layer is
//! (its container, and the node agent on its Kubernetes node), against the cluster stand-in
//! (`tests/kube/cluster.py`) with the real `xiji-node-agent` running as an agent pod, and a
//! real Docker container standing in for the node's container (its id written into the pod's
//! `containerStatuses`, as containerd would report it).
//!
//! Needs `XIJI_TEST_DOCKER=1` (Docker Engine, root) and the agent binary
//! (`cargo build -p imagebuilder --bin xiji-node-agent`, or `$XIJI_NODE_AGENT_BIN`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

#[path = "../../imagebuilder/tests/docker_support/mod.rs"]
mod docker_support;
mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use docker_support::{docker_cpu_ns, docker_engine_enabled, docker_inspect, sh};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use spawner::kubernetes::KubernetesSpawner;
use spawner::{ClusterResources, LayerLocation, Spawner, SpawnerError};
use support::kube_cluster::{http_request, workspace_root, KubeCluster, KubeClusterOptions};
use support::kube_spawner::{KubeSetup, Server, NS};
use support::{init_tracing, StandInHub};

/// Clusters go to node-a (the pool); node-b has an agent pod too.
const NODES: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default;node-b:cpu=4,memory=8Gi";
/// The node agents' token, in the file the agents and the backend read.
const TOKEN: &str = "a-test-token-for-the-node-agents";

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

/// A one-node cluster started by the backend on node-a of the stand-in, with the node agents
/// as the DaemonSet's pods: the real agent on node-a, a decoy with the same labels (that
/// answers nothing) on node-b. The stand-in runs pods as local processes on their own 127/8
/// address and has no hostPort: the agent listens on every address ([::]), so the node's
/// address reaches it as a hostPort would. Besides, a real Docker container to stand in for the
/// node's container ([`AgentBench::report_the_docker_container`]).
struct AgentBench {
    /// The node's container to be: a real one, so that the agent has something to find.
    docker: Container,
    /// The image of the cluster and of `docker`.
    image: String,
    setup: KubeSetup,
    pods: Api<Pod>,
    spawner: KubernetesSpawner,
    state: Value,
    /// node-0's pod, its name and as first read.
    pod_name: String,
    pod: Value,
    /// node-a's address, where its agent listens at `setup.cfg.agent_port`.
    node_a_ip: String,
    _hub: StandInHub,
}

impl AgentBench {
    async fn start() -> Self {
        let agent_bin = agent_binary();
        let image = std::env::var("XIJI_TEST_DOCKER_IMAGE")
            .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into());
        let docker = Container(
            sh(&format!("docker run -d {image} sleep 600"))
                .trim()
                .to_owned(),
        );
        let mut setup = KubeSetup::new(NODES, KubeClusterOptions::default(), Server::Echo);
        setup.cfg.image = image.clone();
        let port = docker_support::free_port();
        setup.cfg.agent_port = port;
        let token_file = setup.root.join("agent-token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        setup.cfg.agent_token_file = Some(token_file.clone());

        let labels = serde_json::to_value(&setup.cfg.agent_pod_labels).unwrap();
        let pods = Api::<Pod>::namespaced(setup.client(), NS);
        let agent_command = vec![
            agent_bin.display().to_string(),
            "--listen".into(),
            format!("[::]:{port}"),
            "--token-file".into(),
            token_file.display().to_string(),
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
            setup
                .cluster
                .wait_pod(NS, name, Duration::from_secs(30), |p| {
                    p["status"]["conditions"].as_array().is_some_and(|c| {
                        c.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .await;
        }
        let node_a_ip = setup.cluster.get_json("/api/v1/nodes/node-a").await["status"]["addresses"]
            [0]["address"]
            .as_str()
            .unwrap()
            .to_owned();

        let spawner = setup.spawner().await;
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
        let pod_name = started_pod(&setup.cluster, &state).await;
        let pod = setup.cluster.pod(NS, &pod_name).await.unwrap();
        assert_eq!(pod["spec"]["nodeName"], "node-a");
        Self {
            docker,
            image,
            setup,
            pods,
            spawner,
            state,
            pod_name,
            pod,
            node_a_ip,
            _hub: hub,
        }
    }

    /// What containerd would report of the real container: the kubelet stops reporting, and
    /// node-0's pod's status names the Docker container.
    async fn report_the_docker_container(&self) {
        self.setup.cluster.pause_kubelet().await;
        let mut statuses = self.pod["status"]["containerStatuses"].clone();
        statuses[0]["containerID"] = json!(format!("docker://{}", self.docker.0));
        self.pods
            .patch_status(
                &self.pod_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"containerStatuses": statuses}})),
            )
            .await
            .unwrap();
    }
}

/// One HTTP/1.1 request with a bearer token: (status, JSON body or Null).
async fn call(method: &str, url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(a, p)| (a, format!("/{p}")));
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (status, bytes) = http_request(authority, method, &path, &headers, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
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
    if !docker_engine_enabled() {
        return;
    }
    let bench = AgentBench::start().await;
    let (spawner, state, cluster) = (&bench.spawner, &bench.state, &bench.setup.cluster);
    let upper = docker_inspect(&bench.docker.0, "{{.GraphDriver.Data.UpperDir}}");
    let runtime_id = bench.pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(runtime_id.starts_with("containerd://"), "{runtime_id}");

    // The layer: the pod's container, behind the agent of its Kubernetes node (its address).
    let agent_url = format!("http://{}:{}", bench.node_a_ip, bench.setup.cfg.agent_port);
    let layer = spawner.node_layer(state, "node-0").await.unwrap();
    assert_eq!(layer.node, "node-0");
    assert_eq!(layer.instance_id, runtime_id);
    assert_eq!(layer.base_image, bench.image);
    assert_eq!(
        layer.location,
        LayerLocation::NodeAgent {
            agent_url: agent_url.clone(),
            container_id: runtime_id.clone()
        }
    );
    match spawner.node_layer(state, "node-3").await {
        Err(SpawnerError::NoSuchNode { node, nodes }) => {
            assert_eq!(node, "node-3");
            assert_eq!(nodes, ["node-0"]);
        }
        other => panic!("expected NoSuchNode, got {other:?}"),
    }

    // containerd would report the real container. The backend passes it on, and the agent at
    // that URL finds that container's layer where Docker keeps it.
    bench.report_the_docker_container().await;
    let layer = spawner.node_layer(state, "node-0").await.unwrap();
    let LayerLocation::NodeAgent {
        agent_url: url,
        container_id,
    } = &layer.location
    else {
        panic!("{layer:?}");
    };
    assert_eq!(url, &agent_url);
    assert_eq!(container_id, &format!("docker://{}", bench.docker.0));
    assert_eq!(layer.instance_id, *container_id);
    let save = json!({
        "container_id": container_id, "base_image": bench.image,
        // Nothing listens there: the job fails in its first step, after the agent found the layer.
        "target": "127.0.0.1:9/xiji-test/never:1", "saved_by": "alice",
    });
    let (status, view) = call("POST", &format!("{url}/v1/saves"), TOKEN, Some(&save)).await;
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
    bench
        .pods
        .delete("agent-a", &DeleteParams::default())
        .await
        .unwrap();
    cluster
        .wait_pod_gone(NS, "agent-a", Duration::from_secs(30))
        .await;
    match spawner.node_layer(state, "node-0").await {
        Err(SpawnerError::Config(message)) => {
            assert!(
                message.contains("no ready node agent runs on Kubernetes node node-a"),
                "{message}"
            )
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }

    // A stopped cluster's node is not running.
    spawner.stop(state, Duration::from_secs(2)).await.unwrap();
    match spawner.node_layer(state, "node-0").await {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_cpu_time_is_read_by_the_agent_of_its_kubernetes_node_and_unknown_without_one() {
    init_tracing();
    if !docker_engine_enabled() {
        return;
    }
    let bench = AgentBench::start().await;
    let (spawner, state, cluster) = (&bench.spawner, &bench.state, &bench.setup.cluster);
    let docker = &bench.docker;

    // The stand-in's container id names no process the agent can find: no CPU time, no error.
    let usage = spawner.node_usage(state).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert!(usage[0].running, "{usage:?}");
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");

    // The pod's status names the real container, which burns a second of CPU: the backend's
    // reading comes from the agent on node-a and lies between two of Docker's own.
    bench.report_the_docker_container().await;
    let idle = docker_cpu_ns(&docker.0);
    sh(&format!(
        "docker exec {} sh -c '(while :; do :; done) & p=$!; sleep 1; kill $p'",
        docker.0
    ));
    let before = docker_cpu_ns(&docker.0);
    let usage = spawner.node_usage(state).await.unwrap();
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
    let mut no_token = bench.setup.cfg.clone();
    no_token.agent_token_file = None;
    let tokenless = KubernetesSpawner::connect(no_token).await.unwrap();
    let usage = tokenless.node_usage(state).await.unwrap();
    assert!(usage[0].running && usage[0].cpu_ns.is_none(), "{usage:?}");

    // The agent of node-a going away: the pod is still metered, without CPU time.
    bench
        .pods
        .delete("agent-a", &DeleteParams::default())
        .await
        .unwrap();
    let usage = spawner.node_usage(state).await.unwrap();
    assert_eq!(usage.len(), 1);
    assert!(usage[0].running, "{usage:?}");
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");
    cluster.resume_kubelet().await;
    cluster
        .wait_pod_gone(NS, "agent-a", Duration::from_secs(30))
        .await;
    let usage = spawner.node_usage(state).await.unwrap();
    assert_eq!(usage[0].cpu_ns, None, "{usage:?}");
    spawner.stop(state, Duration::from_secs(2)).await.unwrap();
}
