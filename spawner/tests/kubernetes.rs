//! The `kubernetes` backend against the cluster stand-in (`tests/kube/cluster.py`: an API
//! server, kube-scheduler's filters, a kubelet that runs each pod's command as a process on its
//! own loopback address, a garbage collector), with the shared test venv's real
//! `jupyterhub-singleuser` as the nodes' server where the server matters and a small echo server
//! where only the pods' life does.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use spawner::kubernetes::KubernetesSpawner;
use spawner::{
    wait_for_http_server, ClusterRequest, ClusterResources, ProgressEvent, SpawnSpec, Spawner,
    SpawnerError,
};
use support::kube_cluster::KubeClusterOptions;
use support::kube_spawner::{KubeSetup, Server, NS};
use support::{assert_two_nodes_answer_at_their_prefixes, init_tracing, singleuser, StandInHub};
use tokio::sync::mpsc;

/// Two compute nodes of the default pool.
const TWO_NODES: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default;\
                         node-b:cpu=4,memory=8Gi,labels=xiji.org/pool=default";
/// One compute node.
const ONE_NODE: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default";
const GIB: u64 = 1024 * 1024 * 1024;

fn resources(nodes: u32, cpus: f64, memory_gib: u64) -> ClusterResources {
    ClusterResources {
        image: None,
        nodes,
        cpus: Some(cpus),
        memory_bytes: Some(memory_gib * GIB),
        gpus: 0,
        storage_bytes: None,
        pool: None,
    }
}

fn spec_with(hub: &StandInHub, user: &str, resources: ClusterResources) -> SpawnSpec {
    let mut spec = hub.spec_for(user);
    spec.resources = resources;
    spec
}

/// Starts `user`'s cluster of `resources`, its progress unread.
async fn start(
    spawner: &KubernetesSpawner,
    hub: &StandInHub,
    user: &str,
    resources: ClusterResources,
) -> Result<spawner::Started, SpawnerError> {
    let (tx, _rx) = mpsc::unbounded_channel();
    spawner.start(&spec_with(hub, user, resources), tx).await
}

fn drain(rx: &mut mpsc::UnboundedReceiver<ProgressEvent>) -> Vec<ProgressEvent> {
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    events
}

fn cluster_selector(state: &Value) -> String {
    let id = KubernetesSpawner::cluster_id_from_state(state).expect("a cluster id");
    format!("xiji.org/cluster={id}")
}

fn node_failure(result: Result<spawner::Started, SpawnerError>) -> (String, String, String) {
    match result {
        Err(SpawnerError::NodeFailed {
            node,
            reason,
            log_tail,
        }) => (node, reason, log_tail),
        Err(other) => panic!("expected a node failure, got {other:?}"),
        Ok(started) => panic!("expected a failure, the cluster started: {started:?}"),
    }
}

fn refusal(result: Result<impl std::fmt::Debug, SpawnerError>) -> String {
    match result {
        Err(SpawnerError::Rejected(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_two_node_cluster_starts_node_by_node_answers_is_re_adopted_and_stops_leaving_nothing() {
    init_tracing();
    let singleuser = singleuser().await;
    let hub = StandInHub::start().await;
    let mut setup = KubeSetup::new(
        TWO_NODES,
        KubeClusterOptions::default(),
        Server::Singleuser(&singleuser),
    );
    // Every node pulls, so every node reports it.
    setup.cfg.image_pull_policy = "Always".into();
    let spawner = setup.spawner().await;
    let spec = spec_with(&hub, "alice", resources(2, 1.0, 1));

    let (tx, mut rx) = mpsc::unbounded_channel();
    let started = spawner.start(&spec, tx).await.unwrap();
    let state = started.state.clone();

    let events = drain(&mut rx);
    let said = |what: &dyn Fn(&str) -> bool| events.iter().any(|e| what(&e.message));
    for node in ["node-0", "node-1"] {
        assert!(
            said(&|m| m.starts_with(&format!("{node} is placed on node-"))),
            "{node} scheduled: {events:#?}"
        );
        assert!(
            said(&|m| m.starts_with(&format!("{node}: Pulling image"))),
            "{node} pulling: {events:#?}"
        );
        assert!(
            said(&|m| m.starts_with(&format!("{node}: Successfully pulled image"))),
            "{node} pulled: {events:#?}"
        );
        assert!(
            said(&|m| m.starts_with(&format!("{node} started on node-"))),
            "{node} started: {events:#?}"
        );
        assert!(
            said(&|m| m == format!("{node} is ready")),
            "{node} ready: {events:#?}"
        );
    }
    assert!(events.windows(2).all(|w| w[0].progress <= w[1].progress));
    assert!(events.iter().all(|e| e.progress < 100));

    // Both nodes answer at their own address and prefix.
    assert_two_nodes_answer_at_their_prefixes(&started, "alice").await;
    assert_ne!(started.nodes[0].url, started.nodes[1].url);
    for node in &started.nodes {
        assert!(node.url.starts_with("http://127."), "{}", node.url);
    }
    assert!(hub.seen("GET /hub/api"), "{:?}", hub.requests);
    assert_eq!(spawner.poll(&state).await.unwrap(), None);
    assert_eq!(state["backend"], "kubernetes");
    assert_eq!(state["namespace"], NS);
    let selector = cluster_selector(&state);
    let objects = setup.objects(&selector).await;
    assert_eq!(
        objects.len(),
        2 + 4,
        "2 pods, owner, secret, service, policy: {objects:?}"
    );

    // The hub restarts: a new spawner with only the stored blob.
    let restarted = setup.spawner().await;
    assert_eq!(restarted.poll(&state).await.unwrap(), None);
    assert_eq!(restarted.url_from_state(&state), Some(started.url.clone()));
    assert_eq!(restarted.nodes_from_state(&state), started.nodes);
    let usage = restarted.node_usage(&state).await.unwrap();
    assert_eq!(usage.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    for (k, node) in usage.iter().enumerate() {
        assert_eq!(node.index as usize, k);
        assert!(node.running, "{node:?}");
        let started_at = node.started_at.expect("a start time");
        assert!(
            now - started_at < 120_000_000 && started_at <= now,
            "{node:?}"
        );
        assert_eq!(node.finished_at, None);
    }

    restarted
        .stop(&state, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(setup.objects(&selector).await, Vec::<String>::new());
    assert_eq!(setup.processes().await, Vec::<Value>::new());
    for node in &started.nodes {
        let authority = node.url.trim_start_matches("http://");
        assert!(
            tokio::net::TcpStream::connect(authority).await.is_err(),
            "{authority} still answers"
        );
    }
    assert!(restarted.poll(&state).await.unwrap().is_some());
    assert!(spawner.poll(&state).await.unwrap().is_some());
    assert_eq!(restarted.node_usage(&state).await.unwrap(), Vec::new());
    // Stopping again is harmless.
    restarted
        .stop(&state, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cluster_that_cannot_fit_is_refused_before_anything_is_made() {
    init_tracing();
    let hub = StandInHub::start().await;
    let setup = KubeSetup::new(TWO_NODES, KubeClusterOptions::default(), Server::Echo);
    let spawner = setup.spawner().await;
    let request = |nodes, cpus, pool: Option<&str>| ClusterRequest {
        nodes: Some(nodes),
        cpus: Some(cpus),
        memory_bytes: Some(GIB),
        pool: pool.map(Into::into),
        ..ClusterRequest::default()
    };

    // No node is that large.
    let message = refusal(spawner.validate(&request(1, 8.0, None)).await);
    assert_eq!(
        message,
        "8 CPU cores per node is more than any compute node offers (4): ask for at most 4 \
         cores per node"
    );
    // The pool, idle, holds 2 of these.
    let message = refusal(spawner.validate(&request(3, 3.0, None)).await);
    assert!(
        message.contains("even when it is idle (at most 2 do)"),
        "{message}"
    );
    let message = refusal(spawner.validate(&request(1, 1.0, Some("gpu"))).await);
    assert!(
        message.starts_with("no compute node of pool gpu"),
        "{message}"
    );
    // What a spawn form offers per node.
    let limits = spawner.resource_limits().unwrap();
    assert_eq!(limits.host_cpus, 4.0);
    assert_eq!(limits.host_memory_bytes, 8 * GIB);

    // Another of this hub's pods takes 3 of node-a's or node-b's 4 CPUs: 2 nodes of 3 CPU
    // fit the pool but not its free room now.
    setup.occupy(NS, "another-cluster", "3", true).await;
    assert!(spawner.validate(&request(2, 3.0, None)).await.is_ok());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let message = refusal(
        spawner
            .start(&spec_with(&hub, "bob", resources(2, 3.0, 1)), tx)
            .await,
    );
    assert_eq!(
        message,
        "the cluster needs 2 nodes of 3 CPU / 1G; only 1 fit now on the compute pools: try \
         again when other clusters have stopped, or ask for fewer or smaller nodes"
    );
    assert!(drain(&mut rx).is_empty());
    assert_eq!(
        setup.objects("xiji.org/hub=xiji").await,
        ["pod/another-cluster"]
    );
}

#[tokio::test]
async fn a_pod_left_unschedulable_rolls_the_whole_cluster_back_with_the_schedulers_reason() {
    init_tracing();
    let hub = StandInHub::start().await;
    let mut setup = KubeSetup::new(ONE_NODE, KubeClusterOptions::default(), Server::Echo);
    setup.cfg.ready_timeout = Duration::from_secs(4);
    let spawner = setup.spawner().await;
    // A pod Xiji's admission has not counted takes 3 of the node's 4 CPUs: what a start racing
    // this one for the same node looks like to the scheduler.
    setup.occupy("default", "racer", "3", false).await;

    let (tx, mut rx) = mpsc::unbounded_channel();
    let began = Instant::now();
    let (node, reason, _) = node_failure(
        spawner
            .start(&spec_with(&hub, "carol", resources(2, 1.0, 1)), tx)
            .await,
    );
    assert!(began.elapsed() < Duration::from_secs(15));
    // One node of 1 CPU fits beside the racer; the other cannot be placed.
    assert_eq!(node, "node-1", "{reason}");
    assert!(
        reason.starts_with("it was not placed on any compute node within 4s: 0/1 nodes are available: 1 Insufficient cpu."),
        "{reason}"
    );
    let events = drain(&mut rx);
    assert!(
        events.iter().any(|e| e.message.starts_with(
            "node-1 waits for room on a compute node: 0/1 nodes are available: 1 Insufficient cpu."
        )),
        "{events:#?}"
    );
    assert!(events
        .iter()
        .any(|e| e.message == "Deleting the cluster's pods and objects"));
    setup.assert_nothing_of_the_hub_left().await;
    assert_eq!(setup.processes().await, Vec::<Value>::new());
}

#[tokio::test]
async fn of_two_starts_racing_for_one_nodes_room_one_runs_and_the_other_leaves_nothing() {
    init_tracing();
    let hub = StandInHub::start().await;
    let mut setup = KubeSetup::new(ONE_NODE, KubeClusterOptions::default(), Server::Echo);
    setup.cfg.ready_timeout = Duration::from_secs(4);
    let spawner = setup.spawner().await;
    let (a, b) = tokio::join!(
        start(&spawner, &hub, "dave", resources(1, 3.0, 1)),
        start(&spawner, &hub, "erin", resources(1, 3.0, 1))
    );
    let (started, failed) = match (a, b) {
        (Ok(started), Err(e)) | (Err(e), Ok(started)) => (started, e),
        (a, b) => panic!("one start must win: {a:?} {b:?}"),
    };
    // Refused by the admission (it saw the winner's pod), or admitted alongside it and then
    // left Unschedulable by the scheduler.
    let message = failed.to_string();
    assert!(
        message.contains("only 0 fit now") || message.contains("1 Insufficient cpu"),
        "{message}"
    );
    assert_eq!(
        setup.objects("xiji.org/hub=xiji").await.len(),
        5,
        "only the winner's pod, owner, secret, service and policy"
    );
    assert_eq!(spawner.poll(&started.state).await.unwrap(), None);
    setup.stop_leaving_nothing(&spawner, &started.state).await;
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_start_with_the_pull_error() {
    init_tracing();
    let hub = StandInHub::start().await;
    let setup = KubeSetup::new(
        TWO_NODES,
        KubeClusterOptions {
            fail_pull: vec!["registry.invalid/".into()],
            ..KubeClusterOptions::default()
        },
        Server::Echo,
    );
    let spawner = setup.spawner().await;
    let mut wanted = resources(2, 1.0, 1);
    wanted.image = Some("registry.invalid/xiji/missing:1".into());
    let began = Instant::now();
    let (node, reason, _) = node_failure(start(&spawner, &hub, "frank", wanted).await);
    assert!(began.elapsed() < Duration::from_secs(20), "failed at once");
    assert!(node.starts_with("node-"), "{node}");
    assert!(reason.starts_with("its image cannot be pulled"), "{reason}");
    assert!(
        reason.contains("registry.invalid/xiji/missing:1"),
        "{reason}"
    );
    setup.assert_nothing_of_the_hub_left().await;
}

#[tokio::test]
async fn a_node_whose_server_exits_fails_the_start_with_its_status_and_log() {
    init_tracing();
    let hub = StandInHub::start().await;
    let setup = KubeSetup::new(
        ONE_NODE,
        KubeClusterOptions::default(),
        Server::Command(&[
            "sh",
            "-c",
            "echo 'xiji test: the server cannot start' >&2; exit 3",
        ]),
    );
    let spawner = setup.spawner().await;
    let (node, reason, log_tail) =
        node_failure(start(&spawner, &hub, "grace", resources(1, 1.0, 1)).await);
    assert_eq!(node, "node-0");
    assert!(
        reason.starts_with("its container exited with status 3"),
        "{reason}"
    );
    assert!(
        log_tail.contains("xiji test: the server cannot start"),
        "{log_tail:?}"
    );
    setup.assert_nothing_of_the_hub_left().await;
}

#[tokio::test]
async fn a_cluster_with_a_killed_node_is_reported_gone() {
    init_tracing();
    let hub = StandInHub::start().await;
    let setup = KubeSetup::new(TWO_NODES, KubeClusterOptions::default(), Server::Echo);
    let spawner = setup.spawner().await;
    let started = start(&spawner, &hub, "heidi", resources(2, 1.0, 1))
        .await
        .unwrap();
    assert_eq!(spawner.poll(&started.state).await.unwrap(), None);
    let pod = started.state["nodes"][1]["pod"]
        .as_str()
        .unwrap()
        .to_owned();
    setup.cluster.kill_pod(NS, &pod).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = spawner.poll(&started.state).await.unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the killed node is still reported running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 137);
    let usage = spawner.node_usage(&started.state).await.unwrap();
    assert!(usage[0].running);
    assert!(!usage[1].running);
    assert!(usage[1].finished_at.unwrap() >= usage[1].started_at.unwrap());
    setup.stop_leaving_nothing(&spawner, &started.state).await;
}

#[tokio::test]
async fn deleting_a_clusters_owner_deletes_all_of_it() {
    init_tracing();
    let hub = StandInHub::start().await;
    let setup = KubeSetup::new(TWO_NODES, KubeClusterOptions::default(), Server::Echo);
    let spawner = setup.spawner().await;
    let started = start(&spawner, &hub, "ivan", resources(2, 1.0, 1))
        .await
        .unwrap();
    let selector = cluster_selector(&started.state);
    let owner = started.state["owner"].as_str().unwrap();
    let owner_uid = started.state["owner_uid"].as_str().unwrap();
    // Every other object names the owner.
    let client = setup.client();
    let secret = Api::<Secret>::namespaced(client.clone(), NS)
        .get(started.state["objects"]["secret"].as_str().unwrap())
        .await
        .unwrap();
    let service = Api::<Service>::namespaced(client.clone(), NS)
        .get(started.state["objects"]["service"].as_str().unwrap())
        .await
        .unwrap();
    for references in [
        secret.metadata.owner_references,
        service.metadata.owner_references,
    ] {
        assert_eq!(references.unwrap()[0].uid, owner_uid);
    }

    Api::<ConfigMap>::namespaced(client, NS)
        .delete(owner, &DeleteParams::background())
        .await
        .unwrap();
    setup
        .wait_no_objects(&selector, Duration::from_secs(30))
        .await;
    assert_eq!(spawner.poll(&started.state).await.unwrap(), Some(0));
    assert_eq!(setup.processes().await, Vec::<Value>::new());
    spawner
        .stop(&started.state, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test]
async fn orphaned_clusters_of_this_hub_are_reaped_and_nothing_else() {
    init_tracing();
    let setup = KubeSetup::new(ONE_NODE, KubeClusterOptions::default(), Server::Echo);
    let spawner = setup.spawner().await;
    let client = setup.client();
    let labels = |hub: &str, cluster: &str| {
        BTreeMap::from([
            ("xiji.org/hub".to_owned(), hub.to_owned()),
            ("xiji.org/cluster".to_owned(), cluster.to_owned()),
        ])
    };
    let config_map = |name: &str, hub: &str, cluster: &str| ConfigMap {
        metadata: kube::core::ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(hub, cluster)),
            ..Default::default()
        },
        ..Default::default()
    };
    let maps = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let post = PostParams::default();
    // A start whose hub died: its owner, its secret and a running pod.
    maps.create(&post, &config_map("orphan", "xiji", "0123456789ab"))
        .await
        .unwrap();
    let secret = Secret {
        metadata: kube::core::ObjectMeta {
            name: Some("orphan".into()),
            labels: Some(labels("xiji", "0123456789ab")),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&post, &secret)
        .await
        .unwrap();
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan-node-0", "labels": labels("xiji", "0123456789ab")},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "notebook", "image": "busybox", "command": ["sleep", "600"]}]},
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), NS)
        .create(&post, &pod)
        .await
        .unwrap();
    setup
        .cluster
        .wait_pod(NS, "orphan-node-0", Duration::from_secs(10), |p| {
            p["status"]["phase"] == "Running"
        })
        .await;
    // A cluster the hub knows, and another hub's.
    maps.create(&post, &config_map("known", "xiji", "aaaaaaaaaaaa"))
        .await
        .unwrap();
    maps.create(&post, &config_map("foreign", "other", "bbbbbbbbbbbb"))
        .await
        .unwrap();

    let known = HashSet::from(["aaaaaaaaaaaa".to_owned()]);
    let report = spawner.reap_orphans(&known).await.unwrap();
    assert_eq!(report.clusters, ["0123456789ab"]);
    assert_eq!(
        setup.objects("xiji.org/cluster=0123456789ab").await,
        Vec::<String>::new()
    );
    assert_eq!(setup.processes().await, Vec::<Value>::new());
    let mut left = setup.objects("xiji.org/hub").await;
    left.sort();
    assert_eq!(left, ["configmap/foreign", "configmap/known"]);
    // Nothing more to reap.
    assert!(spawner
        .reap_orphans(&known)
        .await
        .unwrap()
        .clusters
        .is_empty());
}

/// The spawner contract's checks, as every backend passes them (the `local` backend's
/// `a_singleuser_server_starts_answers_survives_a_hub_restart_and_stops_completely` makes them
/// against a child process).
mod contract {
    use super::*;

    /// A server starts with monotonic progress, answers at its URL and prefix, reached the
    /// hub, is running to `poll`, is found again from its state blob alone by a restarted hub,
    /// stops completely (its port closed, `poll` says gone to both), and stopping it again is
    /// harmless.
    pub async fn a_server_starts_answers_survives_a_hub_restart_and_stops_completely(
        spawner: &dyn Spawner,
        restarted: &dyn Spawner,
        hub: &StandInHub,
        spec: &SpawnSpec,
    ) {
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
        let started = spawner.start(spec, progress_tx).await.unwrap();
        let state = started.state.clone();
        assert!(started.url.starts_with("http://"), "{}", started.url);
        let events = drain(&mut progress_rx);
        assert!(!events.is_empty());
        assert!(events.windows(2).all(|w| w[0].progress <= w[1].progress));

        let api = format!("{}{}api", started.url, spec.service_prefix);
        wait_for_http_server(&api, Duration::from_secs(90))
            .await
            .unwrap();
        assert_eq!(spawner.poll(&state).await.unwrap(), None);
        assert!(hub.seen("GET /hub/api"), "{:?}", hub.requests);

        assert_eq!(restarted.poll(&state).await.unwrap(), None);
        assert_eq!(restarted.url_from_state(&state), Some(started.url.clone()));

        restarted
            .stop(&state, Duration::from_secs(15))
            .await
            .unwrap();
        assert!(restarted.poll(&state).await.unwrap().is_some());
        assert!(spawner.poll(&state).await.unwrap().is_some());
        let authority = started.url.trim_start_matches("http://");
        assert!(
            tokio::net::TcpStream::connect(authority).await.is_err(),
            "{authority} still open"
        );
        restarted
            .stop(&state, Duration::from_secs(1))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_singleuser_server_starts_answers_survives_a_hub_restart_and_stops_completely() {
        init_tracing();
        let singleuser = singleuser().await;
        let hub = StandInHub::start().await;
        let setup = KubeSetup::new(
            ONE_NODE,
            KubeClusterOptions::default(),
            Server::Singleuser(&singleuser),
        );
        let spawner = setup.spawner().await;
        let restarted = setup.spawner().await;
        let mut spec = hub.spec_for("alice");
        spec.resources = ClusterResources::single_node();
        a_server_starts_answers_survives_a_hub_restart_and_stops_completely(
            &spawner, &restarted, &hub, &spec,
        )
        .await;
        setup.assert_nothing_of_the_hub_left().await;
    }
}

#[tokio::test]
async fn with_volcano_the_cluster_is_one_pod_group_bound_whole_or_deleted_whole() {
    init_tracing();
    let hub = StandInHub::start().await;
    let mut setup = KubeSetup::new(
        ONE_NODE,
        KubeClusterOptions {
            volcano: true,
            ..KubeClusterOptions::default()
        },
        Server::Echo,
    );
    setup.cfg.ready_timeout = Duration::from_secs(4);
    let spawner = setup.spawner().await;
    let groups = format!("/apis/scheduling.volcano.sh/v1beta1/namespaces/{NS}/podgroups");

    let started = start(&spawner, &hub, "judy", resources(2, 1.0, 1))
        .await
        .unwrap();
    let list = setup.cluster.get_json(&groups).await;
    let group = &list["items"][0];
    assert_eq!(group["spec"]["minMember"], 2, "{list}");
    assert_eq!(
        group["metadata"]["name"],
        started.state["objects"]["pod_group"]
    );
    let pod = setup
        .cluster
        .pod(NS, started.state["nodes"][1]["pod"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(pod["spec"]["schedulerName"], "volcano");
    spawner
        .stop(&started.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(setup.cluster.get_json(&groups).await["items"], json!([]));

    // Someone else's pod leaves room for one node of 2 CPUs, not two: Volcano binds neither,
    // and at the deadline the whole cluster goes, its pod group with it.
    setup.occupy("default", "racer", "2", false).await;
    let (node, reason, _) = node_failure(start(&spawner, &hub, "judy", resources(2, 2.0, 1)).await);
    assert_eq!(node, "node-0");
    assert!(
        reason.starts_with(
            "it was not placed on any compute node within 4s: 0/1 nodes are unavailable"
        ),
        "{reason}"
    );
    assert!(reason.contains("; node-1: it was not placed"), "{reason}");
    assert_eq!(setup.cluster.get_json(&groups).await["items"], json!([]));
    setup.assert_nothing_of_the_hub_left().await;
}

#[tokio::test]
async fn a_start_the_hub_gives_up_on_deletes_its_cluster() {
    init_tracing();
    let hub = StandInHub::start().await;
    // A server that never answers: the start waits until the hub's own timeout drops it.
    let setup = KubeSetup::new(
        TWO_NODES,
        KubeClusterOptions::default(),
        Server::Command(&["sleep", "600"]),
    );
    let spawner = setup.spawner().await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let spec = spec_with(&hub, "ken", resources(2, 1.0, 1));
    let gave_up = tokio::time::timeout(Duration::from_secs(3), spawner.start(&spec, tx)).await;
    assert!(gave_up.is_err(), "the start cannot finish: {gave_up:?}");
    assert!(
        drain(&mut rx)
            .iter()
            .any(|e| e.message.starts_with("node-1 started on node-")),
        "the pods ran"
    );
    setup
        .wait_no_objects("xiji.org/hub=xiji", Duration::from_secs(20))
        .await;
    assert_eq!(setup.processes().await, Vec::<Value>::new());
}
