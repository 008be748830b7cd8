//! The `docker` backend against a real Docker Engine and the real `xiji/base-notebook` image.
//!
//! Prepare the engine, registry and image, then run:
//!
//! ```sh
//! tests/setup-docker.sh && . .cache/docker-env.sh
//! cargo test -p spawner --test docker
//! ```
//!
//! Without `XIJI_TEST_DOCKER=1` every test here returns at once (saying so); with it, a Docker
//! Engine that does not work is a failure, never a skip.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] fns

mod support;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use spawner::docker::{
    DockerConfig, DockerSpawner, NodeAddress, HOSTFILE_PATH, LABEL_CLUSTER, LABEL_HUB, WORK_MOUNT,
};
use spawner::{
    wait_for_http_server, ClusterRequest, ClusterResources, ProgressEvent, SpawnSpec, Spawner,
    SpawnerError, Started,
};
use support::StandInHub;
use tokio::sync::mpsc;

const MIB: u64 = 1024 * 1024;

use support::init_tracing;

/// `false` (and a note on stderr) when the Docker tests are not asked for.
fn docker_tests_enabled() -> bool {
    if std::env::var("XIJI_TEST_DOCKER").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "NOT RUN: the Docker Engine tests need XIJI_TEST_DOCKER=1 \
         (tests/setup-docker.sh && . .cache/docker-env.sh)"
    );
    false
}

fn test_image() -> String {
    std::env::var("XIJI_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into())
}

/// A configuration whose containers carry their own `org.xiji.hub` label, so tests running in
/// parallel (and `reap_orphans`) never touch each other's clusters.
fn config(instance: &str, work_root: &Path) -> DockerConfig {
    let mut cfg = DockerConfig::new(test_image(), work_root.to_path_buf());
    cfg.instance = instance.to_owned();
    cfg.ready_timeout = Duration::from_secs(120);
    cfg
}

async fn connect(cfg: DockerConfig) -> DockerSpawner {
    match DockerSpawner::connect(cfg).await {
        Ok(spawner) => spawner,
        Err(e) => panic!(
            "XIJI_TEST_DOCKER=1 but Docker Engine is not usable: {e}\n\
             run tests/setup-docker.sh first (it starts dockerd and the registry)"
        ),
    }
}

/// A stand-in hub the containers can reach: it listens on the Docker host's address on the
/// default bridge (`docker0`), which the nodes know as `host.docker.internal`.
async fn reachable_hub() -> StandInHub {
    // What `host-gateway` means to the engine, asked of a throwaway container.
    let (code, out) = docker(&[
        "run",
        "--rm",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--entrypoint",
        "getent",
        &test_image(),
        "ahostsv4",
        "host.docker.internal",
    ]);
    assert_eq!(code, 0, "{out}");
    let gateway = out
        .split_whitespace()
        .next()
        .expect("an address")
        .to_owned();
    StandInHub::start_on(&gateway).await
}

/// The hub's variables for `user`'s default server, rebased onto `host.docker.internal`.
fn docker_config_for(hub: &StandInHub, cfg: &mut DockerConfig) {
    cfg.hub_connect_url = Some(format!("http://host.docker.internal:{}", hub.addr.port()));
}

/// A spec whose resources are what `options` ask for, taken at face value (no limit checked,
/// defaults left to the backend): what a hub that skipped `validate` would hand to `start`.
fn spec(
    hub: &StandInHub,
    user: &str,
    options: serde_json::Value,
    work_dir: Option<PathBuf>,
) -> SpawnSpec {
    let request = ClusterRequest::from_user_options(&options).expect("options read as a request");
    let mut spec = hub.spec_for(user);
    spec.resources = ClusterResources {
        image: request.image,
        nodes: request.nodes.unwrap_or(1),
        cpus: request.cpus,
        memory_bytes: request.memory_bytes,
        gpus: request.gpus.unwrap_or(0),
        storage_bytes: request.storage_bytes,
        pool: request.pool,
    };
    spec.work_dir = work_dir;
    spec
}

/// Runs `docker args…`; returns (exit code, stdout + stderr).
fn docker(args: &[&str]) -> (i32, String) {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("the docker CLI");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// `docker exec -u jovyan <container> sh -c <script>`.
fn exec(container: &str, script: &str) -> (i32, String) {
    docker(&["exec", "-u", "jovyan", container, "sh", "-c", script])
}

/// Names of the containers and networks carrying `org.xiji.hub=<instance>`.
fn labelled(instance: &str) -> (Vec<String>, Vec<String>) {
    let filter = format!("label={LABEL_HUB}={instance}");
    let (_, containers) = docker(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    let (_, networks) = docker(&[
        "network",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ]);
    let lines = |s: String| -> Vec<String> {
        s.lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    (lines(containers), lines(networks))
}

fn container_names(state: &serde_json::Value) -> Vec<String> {
    state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["container_name"].as_str().unwrap().to_owned())
        .collect()
}

async fn start(
    spawner: &DockerSpawner,
    spec: &SpawnSpec,
) -> (Result<Started, SpawnerError>, Vec<ProgressEvent>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let result = spawner.start(spec, tx).await;
    let mut events = Vec::new();
    while let Ok(event) = rx.try_recv() {
        events.push(event);
    }
    (result, events)
}

#[tokio::test]
async fn a_two_node_cluster_runs_mpi_across_nodes_shares_its_work_dir_and_enforces_limits() {
    if !docker_tests_enabled() {
        return;
    }
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("alice-work");
    let instance = "xiji-test-cluster";
    let hub = reachable_hub().await;
    let mut cfg = config(instance, dir.path());
    docker_config_for(&hub, &mut cfg);
    // The hardened profile: no sudo, so no capability at all and no-new-privileges.
    cfg.sudo = false;
    let spawner = connect(cfg.clone()).await;
    let options = json!({"nodes": 2, "cpus": 1, "memory": "512M"});
    let spec = spec(&hub, "alice", options, Some(work.clone()));

    let (started, events) = start(&spawner, &spec).await;
    let started = started.unwrap();
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    for expected in ["Creating node-1", "Starting node-1", "node-1 is ready"] {
        assert!(messages.contains(&expected), "{messages:?}");
    }
    assert!(messages
        .iter()
        .any(|m| m.starts_with("Creating network xiji-alice-")));

    // Two nodes, node-0 at the server's prefix, node-1 under it; both answer HTTP.
    support::assert_two_nodes_answer_at_their_prefixes(&started, "alice").await;
    assert!(hub.seen("GET /hub/api"), "{:?}", hub.requests);
    let state = started.state.clone();
    let names = container_names(&state);
    let (node0, node1) = (names[0].as_str(), names[1].as_str());

    // mpirun across the nodes as jovyan, with the injected hostfile and keys.
    let (code, out) = exec(
        node0,
        &format!("mpirun -np 2 --hostfile {HOSTFILE_PATH} hostname"),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().any(|l| l.trim() == "node-0") && out.lines().any(|l| l.trim() == "node-1"),
        "{out}"
    );
    let (_, hostfile) = exec(node0, &format!("cat {HOSTFILE_PATH}"));
    assert_eq!(hostfile, "node-0 slots=1\nnode-1 slots=1\n");

    // The work directory is shared.
    let (code, out) = exec(
        node1,
        &format!("echo written-on-node-1 > {WORK_MOUNT}/shared.txt"),
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = exec(node0, &format!("cat {WORK_MOUNT}/shared.txt"));
    assert_eq!((code, out.trim()), (0, "written-on-node-1"));
    assert!(work.join("shared.txt").exists());

    // Limits: memory (no swap) and CPU in the cgroup, cgroup v2 or v1.
    let (_, memory) = exec(
        node0,
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    );
    assert_eq!(memory.trim(), (512 * MIB).to_string());
    let (_, cpu) = exec(
        node0,
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || \
         echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)",
    );
    let quota: Vec<u64> = cpu.split_whitespace().map(|n| n.parse().unwrap()).collect();
    assert_eq!(quota[0], quota[1], "one core: quota = period, got {cpu}");
    // A process allocating (and touching) 1 GiB past the 512 MiB limit is killed.
    let (code, out) = exec(
        node0,
        "python3 -c \"b = [b'x' * (64 << 20) for _ in range(16)]; print('survived')\"",
    );
    assert_eq!(code, 137, "expected the OOM killer (SIGKILL): {out}");
    assert!(!out.contains("survived"), "{out}");
    assert_eq!(
        spawner.poll(&state).await.unwrap(),
        None,
        "the node lives on"
    );

    // Hardening (`sudo = false`) and labels.
    let (_, inspect) = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Privileged}} {{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} \
         {{.Config.User}} {{.HostConfig.MemorySwap}} {{index .Config.Labels \"org.xiji.user\"}} \
         {{index .Config.Labels \"org.xiji.node\"}}",
        node1,
    ]);
    assert_eq!(
        inspect.trim(),
        format!(
            "false [ALL] [no-new-privileges] 1000:1000 {} alice node-1",
            512 * MIB
        )
    );

    // A restarted hub finds the cluster from the state blob alone.
    let restarted = connect(cfg).await;
    assert_eq!(restarted.poll(&state).await.unwrap(), None);
    assert_eq!(restarted.url_from_state(&state), Some(started.url.clone()));
    assert_eq!(restarted.nodes_from_state(&state), started.nodes);

    // Stop removes containers and network; the work directory stays.
    restarted
        .stop(&state, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(labelled(instance), (vec![], vec![]));
    assert!(restarted.poll(&state).await.unwrap().is_some());
    assert!(work.join("shared.txt").exists());

    // Started again: the file written on node-1 before is there.
    let (again, _) = start(&spawner, &spec).await;
    let again = again.unwrap();
    let names = container_names(&again.state);
    let (code, out) = exec(&names[0], &format!("cat {WORK_MOUNT}/shared.txt"));
    assert_eq!((code, out.trim()), (0, "written-on-node-1"));
    spawner
        .stop(&again.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(labelled(instance), (vec![], vec![]));
}

#[tokio::test]
async fn a_cluster_whose_second_node_fails_leaves_no_container_or_network() {
    if !docker_tests_enabled() {
        return;
    }
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let instance = "xiji-test-rollback";
    let hub = reachable_hub().await;
    let mut cfg = config(instance, dir.path());
    docker_config_for(&hub, &mut cfg);
    cfg.test_failing_node = Some(1);
    let spawner = connect(cfg).await;
    let spec = spec(
        &hub,
        "bob",
        json!({"nodes": 2, "cpus": 0.5, "memory": "256M"}),
        None,
    );

    let (result, events) = start(&spawner, &spec).await;
    match result {
        Err(SpawnerError::NodeFailed {
            node,
            reason,
            log_tail,
        }) => {
            assert_eq!(node, "node-1");
            assert!(reason.contains("exited with status 3"), "{reason}");
            assert!(log_tail.contains("fails on purpose"), "{log_tail}");
        }
        other => panic!("expected node-1 to fail the cluster, got {other:?}"),
    }
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("Removing the cluster")),
        "{events:?}"
    );
    assert_eq!(labelled(instance), (vec![], vec![]));
    // The default work directory was made for the user, owned by jovyan.
    let meta = std::fs::metadata(dir.path().join("bob")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1000);
}

#[tokio::test]
async fn impossible_requests_are_rejected_before_anything_is_created() {
    if !docker_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = "xiji-test-reject";
    let hub = StandInHub::start().await;
    let spawner = connect(config(instance, dir.path())).await;
    let host = spawner.host().clone();
    assert!(host.cpus >= 1.0 && host.memory_bytes > 0, "{host:?}");

    let too_much_memory = format!("{}M", host.memory_bytes / MIB + 1024);
    let mut cases = vec![
        (json!({"nodes": 0}), "at least 1 node"),
        (json!({"nodes": -1}), "negative"),
        (json!({"cpus": host.cpus + 1.0}), "cores"),
        (json!({"memory": too_much_memory}), "this host has"),
        (json!({"memory": "lots"}), "like \"2G\""),
        (json!({"image": "bad image name"}), "not an image reference"),
    ];
    if host.gpus == Some(0) {
        cases.push((json!({"gpus": 1}), "no GPU"));
    }
    for (options, expected) in cases {
        let request = ClusterRequest::from_user_options(&options);
        let result = match &request {
            Ok(request) => spawner.validate(request).await,
            Err(SpawnerError::Rejected(message)) => Err(SpawnerError::Rejected(message.clone())),
            Err(other) => panic!("{options}: {other}"),
        };
        match &result {
            Err(SpawnerError::Rejected(message)) => {
                assert!(message.contains(expected), "{options}: {message}")
            }
            other => panic!("{options}: expected a rejection, got {other:?}"),
        }
        // What reads as a request but exceeds the limits is refused by `start` too (what does
        // not read cannot reach `start`: it takes typed resources).
        if request.is_ok() {
            let (started, _) = start(&spawner, &spec(&hub, "carol", options.clone(), None)).await;
            assert!(
                matches!(started, Err(SpawnerError::Rejected(_))),
                "{options}"
            );
        }
    }
    assert_eq!(labelled(instance), (vec![], vec![]));
}

#[tokio::test]
async fn reap_orphans_removes_labelled_leftovers_the_hub_does_not_know() {
    if !docker_tests_enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = "xiji-test-reap";
    let spawner = connect(config(instance, dir.path())).await;
    let image = test_image();
    let (code, out) = docker(&["pull", "-q", &image]);
    assert_eq!(code, 0, "{out}");
    // Leftovers of two clusters: one the hub knows, one it does not (a hub killed mid-start).
    for cluster in ["known0000000", "orphan000000"] {
        let name = format!("{instance}-{cluster}");
        let hub_label = format!("{LABEL_HUB}={instance}");
        let cluster_label = format!("{LABEL_CLUSTER}={cluster}");
        let (code, out) = docker(&[
            "network",
            "create",
            "--label",
            &hub_label,
            "--label",
            &cluster_label,
            &name,
        ]);
        assert_eq!(code, 0, "{out}");
        let container = format!("{name}-node-0");
        let (code, out) = docker(&[
            "create",
            "--name",
            &container,
            "--network",
            &name,
            "--label",
            &hub_label,
            "--label",
            &cluster_label,
            &image,
            "sleep",
            "600",
        ]);
        assert_eq!(code, 0, "{out}");
    }

    let known: HashSet<String> = ["known0000000".to_owned()].into();
    let report = spawner.reap_orphans(&known).await.unwrap();
    assert_eq!(
        report.containers,
        vec![format!("{instance}-orphan000000-node-0")]
    );
    assert_eq!(report.networks, vec![format!("{instance}-orphan000000")]);
    assert_eq!(
        labelled(instance),
        (
            vec![format!("{instance}-known0000000-node-0")],
            vec![format!("{instance}-known0000000")]
        )
    );

    // Nothing is known any more (the hub's database lost the row): everything goes.
    let report = spawner.reap_orphans(&HashSet::new()).await.unwrap();
    assert_eq!(report.containers.len(), 1);
    assert_eq!(labelled(instance), (vec![], vec![]));
}

#[tokio::test]
async fn a_node_pulls_its_image_from_the_registry_and_can_be_reached_on_a_loopback_port() {
    if !docker_tests_enabled() {
        return;
    }
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let instance = "xiji-test-pull";
    let hub = reachable_hub().await;
    let mut cfg = config(instance, dir.path());
    docker_config_for(&hub, &mut cfg);
    cfg.node_address = NodeAddress::PublishedOnLoopback;
    let spawner = connect(cfg).await;

    // A tag that only the registry has: the spawner must pull it.
    let image = test_image();
    let (repository, _) = image.rsplit_once(':').unwrap();
    let pulled = format!("{repository}:pull-test");
    for args in [
        vec!["tag", image.as_str(), pulled.as_str()],
        vec!["push", "-q", pulled.as_str()],
        vec!["rmi", pulled.as_str()],
    ] {
        let (code, out) = docker(&args);
        assert_eq!(code, 0, "docker {args:?}: {out}");
    }

    let options = json!({"image": pulled, "cpus": 0.5, "memory": "384M", "storage": "5G"});
    let (started, events) = start(&spawner, &spec(&hub, "dave", options, None)).await;
    let started = started.unwrap();
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages.contains(&format!("Pulling {pulled}").as_str()),
        "{messages:?}"
    );
    if !spawner.host().storage_limit_supported {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("Storage limit not enforced")),
            "{messages:?}"
        );
    }
    assert!(
        started.url.starts_with("http://127.0.0.1:"),
        "{}",
        started.url
    );
    assert_eq!(started.nodes.len(), 1);
    wait_for_http_server(
        &format!("{}/user/dave/api", started.url),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    spawner
        .stop(&started.state, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(labelled(instance), (vec![], vec![]));
    let _ = docker(&["rmi", pulled.as_str()]);
}
