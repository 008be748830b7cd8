//! The `kubernetes` backend's compute nodes against the cluster stand-in (`tests/kube/cluster.py`:
//! an API server, kube-scheduler's filters and a kubelet that runs each pod's command as a
//! process): what each node has and can hand out, its conditions and version, what this hub's
//! running pods request on it, and a node put into a compute pool and taken out by its label,
//! read back through the API, with the capacity admission uses following.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use spawner::kubernetes::{ApiAccess, KubernetesConfig, KubernetesSpawner};
use spawner::{Capacity, ComputeNode, Spawner, SpawnerError};
use support::kube_cluster::{echo_server, KubeCluster, KubeClusterOptions};

/// The namespace of the tests' pods.
const NS: &str = "xiji";
/// A small node and a large one in no pool, a GPU node, a cordoned one.
const NODES: &str = "node-a:cpu=4,memory=16Gi,labels=xiji.org/pool=default;\
    node-b:cpu=8,memory=32Gi;\
    node-gpu:cpu=16,memory=64Gi,gpu=4,labels=xiji.org/pool=gpu+nvidia.com/gpu.product=NVIDIA-A100-SXM4-80GB;\
    node-c:cpu=2,memory=4Gi,unschedulable=true,labels=xiji.org/pool=default";
const MIB: u64 = 1024;

fn start() -> KubeCluster {
    KubeCluster::start(
        NODES,
        KubeClusterOptions {
            namespaces: vec![NS.into()],
            ..KubeClusterOptions::default()
        },
    )
}

fn config(cluster: &KubeCluster) -> KubernetesConfig {
    let mut cfg = KubernetesConfig::new(
        ApiAccess::Url(cluster.url.clone()),
        "registry.example/xiji/base-notebook:test",
        "/nonexistent/work".into(),
    );
    cfg.namespace = NS.into();
    cfg
}

fn client(cluster: &KubeCluster) -> kube::Client {
    kube::Client::try_from(kube::Config::new(cluster.url.parse().unwrap())).unwrap()
}

fn by_name<'a>(nodes: &'a [ComputeNode], name: &str) -> &'a ComputeNode {
    nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no {name} in {nodes:#?}"))
}

fn resources(nodes: u64, cpu_millis: u64, memory_mib: u64, gpus: u64) -> Capacity {
    Capacity {
        nodes: Some(nodes),
        cpu_millis: Some(cpu_millis),
        memory_mib: Some(memory_mib),
        gpus: Some(gpus),
    }
}

/// A pod of hub instance `hub` on `node` running the stand-in's echo server, requesting `cpu`
/// and `memory`.
fn pod(name: &str, hub: &str, node: &str, cpu: &str, memory: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"xiji.org/hub": hub, "xiji.org/node": "node-0"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 2,
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{
                "name": "notebook",
                "image": "registry.example/xiji/base-notebook:test",
                "command": ["python3"],
                "args": [echo_server().display().to_string(), "--ip=0.0.0.0", "--port=8888"],
                "ports": [{"containerPort": 8888}],
                "resources": {
                    "requests": {"cpu": cpu, "memory": memory},
                    "limits": {"cpu": cpu, "memory": memory},
                },
            }],
        },
    }))
    .unwrap()
}

/// The spawner's capacity once `check` holds; the inventory refreshes on its own (≤ 20 s).
async fn capacity_when(spawner: &KubernetesSpawner, check: impl Fn(&Capacity) -> bool) -> Capacity {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let capacity = spawner.capacity();
        if check(&capacity) {
            return capacity;
        }
        assert!(
            Instant::now() < deadline,
            "the capacity did not follow: {capacity:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_nodes_report_what_they_have_their_conditions_and_version_and_what_xijis_pods_request()
{
    let cluster = start();
    let client = client(&cluster);
    // The kubelet's reservations: node-a hands out less than it has.
    Api::<Node>::all(client.clone())
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"cpu": "3500m", "memory": "15Gi"}}})),
        )
        .await
        .unwrap();
    let spawner = KubernetesSpawner::connect(config(&cluster)).await.unwrap();

    let nodes = spawner.compute_nodes().await.unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node-a", "node-b", "node-c", "node-gpu"]);

    let a = by_name(&nodes, "node-a");
    assert_eq!(a.pool.as_deref(), Some("default"));
    assert!(a.schedulable);
    assert_eq!(a.capacity, resources(110, 4000, 16 * MIB, 0));
    assert_eq!(a.allocatable, resources(110, 3500, 15 * MIB, 0));
    assert_eq!(a.used, resources(0, 0, 0, 0));
    assert_eq!(a.version, "v1.33.2");
    assert!(a.platform.starts_with("linux/"), "{}", a.platform);
    assert_eq!(
        a.labels.get("kubernetes.io/hostname").map(String::as_str),
        Some("node-a")
    );
    let kinds: Vec<(&str, &str)> = a
        .conditions
        .iter()
        .map(|c| (c.kind.as_str(), c.status.as_str()))
        .collect();
    assert!(kinds.contains(&("Ready", "True")), "{kinds:?}");
    assert!(kinds.contains(&("MemoryPressure", "False")), "{kinds:?}");
    let ready = a.conditions.iter().find(|c| c.kind == "Ready").unwrap();
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));

    let b = by_name(&nodes, "node-b");
    assert_eq!(b.pool, None);
    assert!(!b.schedulable, "a node in no pool takes no clusters");
    assert_eq!(b.capacity, resources(110, 8000, 32 * MIB, 0));

    let c = by_name(&nodes, "node-c");
    assert!(!c.schedulable, "a cordoned node takes no clusters");

    let gpu = by_name(&nodes, "node-gpu");
    assert_eq!(gpu.pool.as_deref(), Some("gpu"));
    assert_eq!(gpu.allocatable.gpus, Some(4));
    assert_eq!(gpu.gpu_model.as_deref(), Some("NVIDIA-A100-SXM4-80GB"));

    // Admission's capacity: node-a's allocatable and node-gpu's, not node-b's nor node-c's.
    assert_eq!(
        spawner.capacity(),
        resources(220, 3500 + 16_000, 15 * MIB + 64 * MIB, 4)
    );

    // This hub's running pod counts on its node; another hub's does not.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.create(
        &PostParams::default(),
        &pod("ours", "xiji", "node-a", "1500m", "2Gi"),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("theirs", "other-hub", "node-a", "1", "1Gi"),
    )
    .await
    .unwrap();
    for name in ["ours", "theirs"] {
        cluster
            .wait_pod(NS, name, Duration::from_secs(30), |p| {
                p["status"]["phase"] == "Running"
            })
            .await;
    }
    let nodes = spawner.compute_nodes().await.unwrap();
    let a = by_name(&nodes, "node-a");
    assert_eq!(a.used, resources(1, 1500, 2 * MIB, 0));
    assert_eq!(a.xiji_nodes, 1);
    assert_eq!(by_name(&nodes, "node-b").xiji_nodes, 0);

    // Gone once deleted.
    pods.delete("ours", &DeleteParams::default()).await.unwrap();
    cluster
        .wait_pod_gone(NS, "ours", Duration::from_secs(30))
        .await;
    let nodes = spawner.compute_nodes().await.unwrap();
    assert_eq!(by_name(&nodes, "node-a").used, resources(0, 0, 0, 0));
}

#[tokio::test]
async fn a_node_put_into_a_pool_is_labelled_and_joins_the_capacity_and_leaves_it_when_taken_out() {
    let cluster = start();
    let client = client(&cluster);
    let spawner = KubernetesSpawner::connect(config(&cluster)).await.unwrap();
    let before = spawner.capacity();
    assert_eq!(before, resources(220, 20_000, 80 * MIB, 4));

    spawner.set_node_pool("node-b", Some("gpu")).await.unwrap();
    let node = Api::<Node>::all(client.clone())
        .get("node-b")
        .await
        .unwrap();
    assert_eq!(
        node.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("xiji.org/pool"))
            .map(String::as_str),
        Some("gpu"),
        "the node carries the pool label"
    );
    assert_eq!(
        spawner.capacity(),
        resources(330, 28_000, 112 * MIB, 4),
        "node-b's 8 cores and 32 GiB join the capacity"
    );
    let b = spawner.compute_nodes().await.unwrap();
    let b = by_name(&b, "node-b");
    assert_eq!(b.pool.as_deref(), Some("gpu"));
    assert!(b.schedulable);

    // Taken out: the label is gone, the other labels stay, the capacity is what it was.
    spawner.set_node_pool("node-b", None).await.unwrap();
    let node = Api::<Node>::all(client.clone())
        .get("node-b")
        .await
        .unwrap();
    let labels = node.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("xiji.org/pool"), "{labels:?}");
    assert_eq!(
        labels.get("kubernetes.io/hostname").map(String::as_str),
        Some("node-b")
    );
    assert_eq!(spawner.capacity(), before);

    // A label changed by someone else (kubectl) reaches the capacity through the background
    // refresh alone.
    Api::<Node>::all(client.clone())
        .patch(
            "node-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"xiji.org/pool": "default"}}})),
        )
        .await
        .unwrap();
    capacity_when(&spawner, |c| c.cpu_millis == Some(28_000)).await;
    // So does a node that stops being Ready.
    cluster.set_node_ready("node-gpu", false).await;
    let without_gpu = capacity_when(&spawner, |c| c.gpus == Some(0)).await;
    assert_eq!(without_gpu, resources(220, 12_000, 48 * MIB, 0));

    // An unknown node, a bad pool name.
    match spawner.set_node_pool("node-x", Some("gpu")).await {
        Err(SpawnerError::NoSuchNode { node, nodes }) => {
            assert_eq!(node, "node-x");
            assert_eq!(nodes, ["node-a", "node-b", "node-c", "node-gpu"]);
        }
        other => panic!("expected NoSuchNode, got {other:?}"),
    }
    match spawner.set_node_pool("node-x", None).await {
        Err(SpawnerError::NoSuchNode { .. }) => {}
        other => panic!("expected NoSuchNode, got {other:?}"),
    }
    match spawner.set_node_pool("node-b", Some("Bad Pool")).await {
        Err(SpawnerError::Rejected(message)) => {
            assert!(message.contains("lower-case"), "{message}")
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn connecting_fails_clearly_when_the_api_server_cannot_be_reached() {
    // A port nothing listens on: a freed ephemeral port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = KubernetesConfig::new(
        ApiAccess::Url(format!("http://127.0.0.1:{port}")),
        "registry.example/xiji/base-notebook:test",
        "/nonexistent/work".into(),
    );
    let started = Instant::now();
    let error = match KubernetesSpawner::connect(cfg).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to nothing"),
    };
    assert!(
        error.contains("listing the Kubernetes nodes"),
        "the error says what failed: {error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}
