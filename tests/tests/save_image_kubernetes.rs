//! Saving a node as an image through the real hub on the `kubernetes` backend: the hub asks the
//! backend where the node's layer is (its pod's container, behind the node agent of the pod's
//! Kubernetes node), drives the save through that agent with the token of `[spawner.kubernetes]
//! agent_token_file`, and keeps the job's state in `save_jobs` up to `done` and the image record.
//!
//! Against the Kubernetes stand-in (`tests/kube/cluster.py`), as the spawner's agent tests do
//! (`spawner/tests/kube_agent.rs`): the real `xiji-node-agent` runs as an agent pod on the
//! cluster pod's node, and a real Docker container of the test image stands in for the node's
//! container (its id written into the pod's `containerStatuses`, as containerd would report
//! it). The image goes to our own registry, whence it is pulled and run.
//!
//! Needs `XIJI_TEST_DOCKER=1` (Docker Engine, root, `docker-registry`) and the agent binary
//! (`target/debug/xiji-node-agent`, built by `cargo build --workspace`, or
//! `$XIJI_NODE_AGENT_BIN`).

#[path = "kube_support/mod.rs"]
mod kube_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use kube_support::{kube_cluster, kube_hub, workspace_root, KubeCluster, NAMESPACE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::docker_out;
use tests::registry::{base_image, docker_enabled, wait_job, Registry};
use tests::{expect_json, tail, Hub};

/// One Kubernetes node: the cluster's pod and the agent pod both go there.
const NODES: &str = "node-a:cpu=4,memory=8Gi,labels=xiji.org/pool=default";
/// The node agents' token, in the file both the agent and the hub read.
const TOKEN: &str = "a-test-token-for-the-node-agents";
/// The user's named server that is saved.
const SERVER: &str = "lab";

/// The agent binary: `$XIJI_NODE_AGENT_BIN`, else the workspace's debug build.
fn agent_binary() -> Result<PathBuf> {
    let path = std::env::var_os("XIJI_NODE_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/xiji-node-agent"));
    ensure!(
        path.is_file(),
        "{} is missing: cargo build --workspace (or set XIJI_NODE_AGENT_BIN)",
        path.display()
    );
    Ok(path)
}

/// Docker containers and images of this test, removed on drop whatever happened.
#[derive(Default)]
struct DockerLeftovers {
    containers: Vec<String>,
    images: Vec<String>,
}

impl Drop for DockerLeftovers {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = Command::new("docker")
                .args(["rm", "-f", container])
                .output();
        }
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// Starts the real node agent `agent` as the DaemonSet's pod on `node` (its labels, its hostPort) and
/// waits until the stand-in reports it ready. The stand-in runs pods as local processes and has
/// no hostPort: the agent listens on every address, so the node's address reaches it.
async fn start_agent_pod(
    cluster: &KubeCluster,
    agent: &Path,
    node: &str,
    port: u16,
    token_file: &Path,
) -> Result<()> {
    let command = [
        agent.display().to_string(),
        "--listen".into(),
        format!("[::]:{port}"),
        "--token-file".into(),
        token_file.display().to_string(),
        "--host-proc".into(),
        "/proc".into(),
    ];
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "node-agent-a",
                     "labels": {"app.kubernetes.io/component": "node-agent"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "node-agent", "image": "xiji/xiji:test", "command": command,
                "ports": [{"name": "agent", "containerPort": port, "hostPort": port}],
            }],
        },
    });
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    let (status, body) = cluster.request("POST", &path, Some(&pod)).await;
    ensure!(
        status == 201,
        "creating the agent pod gave {status}: {body}"
    );
    cluster
        .wait_pod(NAMESPACE, "node-agent-a", Duration::from_secs(30), |p| {
            p["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
        })
        .await;
    Ok(())
}

/// What containerd would report of `container`: the kubelet stops reporting, and node-0's pod's
/// status names the Docker container. The pod's node, as the scheduler bound it.
async fn report_container(cluster: &KubeCluster, container: &str) -> Result<String> {
    let pods = cluster.pods(NAMESPACE).await;
    let pod = pods
        .iter()
        .find(|p| p["metadata"]["labels"]["xiji.org/node"] == "node-0")
        .with_context(|| format!("no pod of node-0: {pods:#?}"))?;
    let name = pod["metadata"]["name"]
        .as_str()
        .context("a pod without a name")?;
    cluster.pause_kubelet().await;
    let mut statuses = pod["status"]["containerStatuses"].clone();
    ensure!(
        statuses[0].is_object(),
        "node-0's pod reports no container: {pod}"
    );
    statuses[0]["containerID"] = json!(format!("docker://{container}"));
    let (status, body) = cluster
        .request_as(
            "PATCH",
            &format!("/api/v1/namespaces/{NAMESPACE}/pods/{name}/status"),
            "application/merge-patch+json",
            Some(&json!({"status": {"containerStatuses": statuses}})),
        )
        .await;
    ensure!(
        status == 200,
        "patching {name}'s status gave {status}: {body}"
    );
    Ok(pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The user's named server's model once it is ready (bounded).
async fn wait_named_ready(hub: &Hub, user: &str, server: &str, timeout: Duration) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let model = hub.user(user).await?;
        if model["servers"][server]["ready"] == json!(true) {
            return Ok(model["servers"][server].clone());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{user}'s server {server} not ready within {timeout:?}: {model}\nhub log:\n{}",
                tail(&hub.log(), 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_kubernetes_node_saved_through_the_hub_and_its_node_agent_holds_the_users_changes(
) -> Result<()> {
    if !docker_enabled()? {
        return Ok(());
    }
    let agent = agent_binary()?;
    let mut leftovers = DockerLeftovers::default();
    let registry = Registry::start()?;
    let base = registry.push(&base_image(), "xiji/base-notebook:latest")?;
    leftovers.images.push(base.clone());

    let cluster = kube_cluster(NODES)?;
    let root = tempfile::tempdir()?;
    let token_file = root.path().join("agent-token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let hub = kube_hub(
        &cluster,
        root.path(),
        60,
        &format!(
            "agent_port = {port}\nagent_token_file = \"{}\"\n\n\
             [images]\nregistry = \"{}\"\nrepository_prefix = \"saved\"\n",
            token_file.display(),
            registry.addr
        ),
    )
    .await?;
    let (repository, tag) = base.rsplit_once(':').context("the base has no tag")?;
    let resp = hub
        .admin(Method::POST, "/hub/api/images")
        .json(&json!({"name": "Base", "image": repository, "tag": tag}))
        .send()
        .await?;
    expect_json(
        resp,
        StatusCode::CREATED,
        "add the base image to the library",
    )
    .await?;
    hub.create_user("nia", "nia-password-1").await?;
    let nia = hub.create_token("nia", json!({})).await?;

    // A one-node cluster of the base image, through the API.
    let resp = hub
        .admin(
            Method::POST,
            &format!("/hub/api/users/nia/servers/{SERVER}"),
        )
        .json(&json!({"image": "Base", "nodes": 1}))
        .send()
        .await?;
    let status = resp.status();
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting nia's server gave {status}: {}",
        resp.text().await?
    );
    wait_named_ready(&hub, "nia", SERVER, Duration::from_secs(60))
        .await
        .with_context(|| format!("stand-in log:\n{}", tail(&cluster.log(), 40)))?;

    // The node's container: a real one of the same image, with the user's change in it; the
    // pod's status names it, and the agent of the pod's node runs.
    let container = docker_out(&["run", "-d", &base, "sleep", "600"])?
        .trim()
        .to_owned();
    leftovers.containers.push(container.clone());
    docker_out(&[
        "exec",
        "-u",
        "root",
        &container,
        "sh",
        "-c",
        "mkdir -p /opt/xiji-test && echo saved-on-kubernetes > /opt/xiji-test/added.txt",
    ])?;
    start_agent_pod(&cluster, &agent, "node-a", port, &token_file).await?;
    let node = report_container(&cluster, &container).await?;
    ensure!(node == "node-a", "node-0's pod went to {node:?}");

    // The save, through the hub's API as the user.
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/users/nia/servers/{SERVER}/save-image"),
            &nia,
        )
        .json(&json!({"name": "kube-env", "tag": "v1", "description": "saved on kubernetes"}))
        .send()
        .await?;
    let job = expect_json(resp, StatusCode::ACCEPTED, "POST …/servers/lab/save-image").await?;
    ensure!(
        job["node"] == "node-0" && job["server"] == SERVER && job["base_image"] == base.as_str(),
        "the job saves something else: {job}"
    );
    let id = job["id"].as_str().context("no job id")?.to_owned();
    let (states, job) = wait_job(&hub, &nia, &id).await?;
    ensure!(
        job["state"] == "done",
        "the save ended {} ({states:?}): {job}\nhub log:\n{}\nstand-in log:\n{}",
        job["state"],
        tail(&hub.log(), 30),
        tail(&cluster.log(), 20)
    );
    let reference = format!("{}/saved/nia/kube-env:v1", registry.addr);
    ensure!(job["image"] == reference.as_str(), "{job}");
    let image_id = job["image_id"].as_i64().context("no image_id")?;

    // In the user's images, private to them.
    let resp = hub
        .with_token(Method::GET, "/hub/api/images?mine=1", &nia)
        .send()
        .await?;
    let mine = expect_json(resp, StatusCode::OK, "GET nia's images").await?;
    ensure!(
        mine.as_array()
            .into_iter()
            .flatten()
            .any(|i| i["id"] == image_id
                && i["visibility"] == "private"
                && i["reference"] == reference.as_str()
                && i["description"] == "saved on kubernetes"),
        "the saved image is not among nia's private images: {mine}"
    );

    // Pulled from the registry, the image holds the change, saved by nia from node-0.
    docker_out(&["rmi", "-f", &reference]).ok();
    leftovers.images.push(reference.clone());
    docker_out(&["pull", &reference])?;
    let added = docker_out(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        &reference,
        "/opt/xiji-test/added.txt",
    ])?;
    ensure!(
        added.trim() == "saved-on-kubernetes",
        "the image holds {added:?}"
    );
    let labels = docker_out(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.xiji.saved-by\"}} {{index .Config.Labels \"org.xiji.saved-node\"}}",
        &reference,
    ])?;
    ensure!(
        labels.trim() == "nia node-0",
        "the image's labels: {labels}"
    );
    cluster.resume_kubelet().await;
    Ok(())
}
