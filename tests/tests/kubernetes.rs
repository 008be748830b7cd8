//! Virtual clusters through the real hub on the `kubernetes` backend, against the Kubernetes
//! stand-in (`tests/kube/cluster.py`: the kmock API emulator, with this test's scheduler, kubelet
//! and garbage collector; each pod's command runs as a real `jupyterhub-singleuser` process on a
//! loopback address of its own). The whole path runs through the backend as a user sees it:
//! start through the REST API → progress per node → ready → a proxy route per node → a kernel
//! runs a cell on node-0 and on node-1 → a hub restart re-adopts the cluster → stop leaves no
//! object behind. A cluster that cannot be placed is refused with the reason and leaves nothing;
//! a pod that stays Unschedulable rolls the whole cluster back with the scheduler's message; a
//! cluster started from the spawn form in Chromium runs on the compute pool the user chose.

#[path = "kube_support/mod.rs"]
mod kube_support;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use kube_support::{kube_cluster, kube_hub, KubeCluster, NAMESPACE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser::keep_screenshots;
use tests::docker::wait_cluster_ready;
use tests::{browser, expect_json, tail, Hub, Kernel};

/// Two Kubernetes nodes in the compute pool `default`, 4 cores and 8 GiB each.
const NODES: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default;\
                     node-b:cpu=4,memory=8Gi,labels=xiji.org/pool=default";
/// The kinds a cluster is made of, as API paths in the namespace.
const KINDS: [&str; 5] = [
    "/api/v1/namespaces/xiji/pods",
    "/api/v1/namespaces/xiji/services",
    "/api/v1/namespaces/xiji/secrets",
    "/api/v1/namespaces/xiji/configmaps",
    "/apis/networking.k8s.io/v1/namespaces/xiji/networkpolicies",
];

/// Every object of this hub's clusters still in the namespace, as `kind/name`.
async fn objects_left(cluster: &KubeCluster) -> Vec<String> {
    let mut left = Vec::new();
    for path in KINDS {
        let list = cluster
            .get_json(&format!("{path}?labelSelector=xiji.org%2Fhub%3Dxiji"))
            .await;
        for item in list["items"].as_array().into_iter().flatten() {
            let kind = path.rsplit('/').next().unwrap_or(path);
            left.push(format!(
                "{kind}/{}",
                item["metadata"]["name"].as_str().unwrap_or("?")
            ));
        }
    }
    left
}

async fn wait_no_objects(cluster: &KubeCluster, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = objects_left(cluster).await;
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("objects left after {timeout:?}: {left:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asks for `user`'s default server: the status and the body.
async fn start(hub: &Hub, user: &str, options: Value) -> Result<(StatusCode, String)> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(&options)
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

/// GET `{prefix}api/status` through the proxy with the user's token: 200 and JSON.
async fn node_answers(hub: &Hub, prefix: &str, token: &str) -> Result<()> {
    let resp = hub
        .with_token(Method::GET, &format!("{prefix}api/status"), token)
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, &format!("GET {prefix}api/status")).await?;
    Ok(())
}

/// A kernel on the node at `prefix` runs a cell that says where it runs.
async fn cell_runs_on(hub: &Hub, prefix: &str, token: &str, node: &str) -> Result<()> {
    let mut kernel = Kernel::start(hub, prefix, token).await?;
    let run = kernel
        .execute(
            "import os; print(os.environ['XIJI_NODE'], 6 * 7)",
            Duration::from_secs(60),
        )
        .await?;
    ensure!(
        run.stdout.trim() == format!("{node} 42"),
        "the cell on {prefix} printed {:?}",
        run.stdout
    );
    kernel.close().await
}

#[tokio::test]
async fn a_two_node_cluster_on_kubernetes_serves_jupyterlab_survives_a_hub_restart_and_leaves_nothing(
) -> Result<()> {
    let cluster = kube_cluster(NODES)?;
    let work = tempfile::tempdir()?;
    let mut hub = kube_hub(&cluster, work.path(), 120, "").await?;
    hub.create_user("kim", "kim-password-1").await?;
    let token = hub.create_token("kim", json!({})).await?;

    let (status, body) = start(&hub, "kim", json!({"nodes": 2, "cpus": 1, "memory": "1G"})).await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "start gave {status}: {body}"
    );
    // The progress stream tells each node's way through the scheduler and the kubelet.
    let events = hub.progress_events("kim", "").await?;
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    for node in ["node-0", "node-1"] {
        for step in ["placed on", "pulling", "started", "ready"] {
            ensure!(
                messages
                    .iter()
                    .any(|m| m.contains(node) && m.to_lowercase().contains(step)),
                "no progress event says {node} {step}: {messages:#?}"
            );
        }
    }

    let server = wait_cluster_ready(&hub, "kim", Duration::from_secs(120))
        .await
        .with_context(|| format!("stand-in log:\n{}", tail(&cluster.log(), 40)))?;
    let prefixes: Vec<String> = server["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["url"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        prefixes == ["/user/kim/", "/user/kim/node-1/"],
        "the cluster lists nodes {prefixes:?}: {server}"
    );

    // One pod per node, bound to the stand-in's nodes, each serving through the proxy.
    let pods = cluster.pods(NAMESPACE).await;
    ensure!(pods.len() == 2, "expected 2 pods: {pods:#?}");
    for prefix in &prefixes {
        node_answers(&hub, prefix, &token).await?;
    }
    cell_runs_on(&hub, "/user/kim/", &token, "node-0").await?;
    cell_runs_on(&hub, "/user/kim/node-1/", &token, "node-1").await?;

    // A restarted hub finds the cluster again from its state blob and reaps nothing of it.
    hub.terminate().await?;
    hub.restart().await?;
    wait_cluster_ready(&hub, "kim", Duration::from_secs(60)).await?;
    ensure!(
        cluster.pods(NAMESPACE).await.len() == 2,
        "the restart changed the pods"
    );
    cell_runs_on(&hub, "/user/kim/node-1/", &token, "node-1").await?;

    hub.stop_server("kim").await?;
    hub.wait_until_stopped("kim", "", Duration::from_secs(60))
        .await?;
    wait_no_objects(&cluster, Duration::from_secs(30)).await?;
    ensure!(
        cluster.processes().await.is_empty(),
        "a pod's process still runs: {:?}",
        cluster.processes().await
    );
    Ok(())
}

#[tokio::test]
async fn a_cluster_that_cannot_be_placed_or_names_an_unknown_pool_is_refused_with_the_reason(
) -> Result<()> {
    let cluster = kube_cluster(NODES)?;
    let work = tempfile::tempdir()?;
    let hub = kube_hub(&cluster, work.path(), 20, "").await?;
    hub.create_user("lee", "lee-password-1").await?;

    // Three nodes of 3 cores: each Kubernetes node holds only one.
    let (status, body) = start(&hub, "lee", json!({"nodes": 3, "cpus": 3, "memory": "1G"})).await?;
    let said = if status.is_client_error() {
        body
    } else {
        // Accepted, then failed: the reason is in the progress stream.
        let events = hub.progress_events("lee", "").await?;
        events
            .iter()
            .filter_map(|e| e["message"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let model = hub.user("lee").await?;
    ensure!(
        model["servers"][""].is_null(),
        "an impossible cluster is still there: {model}"
    );
    ensure!(
        said.contains("3 nodes") && said.to_lowercase().contains("cpu"),
        "the refusal does not say why (the nodes and the CPU they need): {said}"
    );
    wait_no_objects(&cluster, Duration::from_secs(30)).await?;

    // A compute pool nobody defined is refused by name before anything is made.
    let (status, body) = start(&hub, "lee", json!({"pool": "gpu"})).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && body.contains(r#"no compute pool \"gpu\""#),
        "an undefined pool gave {status}: {body}"
    );
    // A defined pool without machines: the backend says nothing there can run it.
    let resp = hub
        .admin(Method::POST, "/hub/api/compute-pools")
        .json(&json!({"name": "gpu"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "define the pool gpu").await?;
    let (status, body) = start(&hub, "lee", json!({"pool": "gpu"})).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && body.contains("gpu"),
        "a pool without machines gave {status}: {body}"
    );
    // A project's run chooses its pool the same way.
    let lee = hub.create_token("lee", json!({})).await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", &lee)
        .json(&json!({"name": "survey"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "create lee's project").await?;
    for (pool, says) in [("nope", r#"no compute pool \"nope\""#), ("gpu", "gpu")] {
        let resp = hub
            .with_token(Method::POST, "/hub/api/projects/lee/survey/run", &lee)
            .json(&json!({"pool": pool}))
            .send()
            .await?;
        let status = resp.status();
        let body = resp.text().await?;
        ensure!(
            status == StatusCode::BAD_REQUEST && body.contains(says),
            "a project run on the pool {pool} gave {status}: {body}"
        );
    }
    wait_no_objects(&cluster, Duration::from_secs(30)).await?;
    Ok(())
}

#[tokio::test]
async fn a_cluster_started_from_the_form_runs_on_the_compute_pool_the_user_chose() -> Result<()> {
    let cluster = kube_cluster(NODES)?;
    let root = tempfile::tempdir()?;
    let hub = kube_hub(&cluster, root.path(), 120, "").await?;
    hub.create_user("mia", "mia-password-1").await?;

    // The administrator defines the pool `gpu` and puts node-b into it by its name.
    let resp = hub
        .admin(Method::POST, "/hub/api/compute-pools")
        .json(&json!({"name": "gpu"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "define the pool gpu").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/compute-nodes")
        .json(&json!({"name": "node-b", "pool": "gpu"}))
        .send()
        .await?;
    let status = resp.status();
    ensure!(
        status.is_success(),
        "putting node-b into gpu gave {status}: {}",
        resp.text().await?
    );
    let node = cluster.get_json("/api/v1/nodes/node-b").await;
    ensure!(
        node["metadata"]["labels"]["xiji.org/pool"] == json!("gpu"),
        "node-b does not carry the pool label: {}",
        node["metadata"]["labels"]
    );

    let run = browser::run_script(
        &hub,
        "kubernetes_pool.mjs",
        "kubernetes_pool",
        &[
            ("XIJI_USER", "mia"),
            ("XIJI_USER_PASSWORD", "mia-password-1"),
            ("XIJI_POOL", "gpu"),
        ],
    )
    .await;
    keep_screenshots(&hub, "kubernetes", &["kubernetes_pool"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    run.expect_screenshot("lab")?;

    let model = hub.user("mia").await?;
    ensure!(
        model["servers"][""]["user_options"]["pool"] == json!("gpu"),
        "the start did not ask for the pool: {model}"
    );
    let pods = cluster.pods(NAMESPACE).await;
    let placed: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    ensure!(
        placed == ["node-b"],
        "the cluster's pod went to {placed:?}, not to the gpu pool's node-b"
    );
    hub.stop_server("mia").await?;
    wait_no_objects(&cluster, Duration::from_secs(60)).await?;
    Ok(())
}
