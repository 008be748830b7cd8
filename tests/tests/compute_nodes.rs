//! Compute nodes and compute pools against the real `xiji` binary, through the API and in a real
//! browser (Debian's Chromium, driven by playwright-core from `tests/browser/compute_nodes.mjs`):
//!
//! - On the docker backend (real Docker Engine) the API and the page list the engine's host with
//!   the CPUs and memory `docker info` reports, in the pool `default`, ready; a running 1-node
//!   cluster shows in what Xiji uses (its container's CPU and memory limits) and is gone from it
//!   after the stop.
//! - Adding the host to another pool or taking it out is a 409 that says why (the backend has one
//!   host, always in `default`); an unknown machine or pool is a 404, a bad pool name a 400;
//!   never a 5xx.
//! - Pools: `default` exists; one is defined, refused twice and with a bad name, removed; a pool
//!   a machine is in cannot be removed (409 naming it).
//! - Only administrators: a user's token gets 403 from every operation, their browser 403 from
//!   the page.
//! - On the local backend the hub's own host is listed from `/proc`.
//!
//! The Kubernetes backend's nodes are proved at the spawner's level against the cluster stand-in
//! (`spawner/tests/kubernetes_nodes.rs`). Screenshots are kept in `tests/artifacts/compute_nodes/`
//! and `target/screenshots/compute_nodes/`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::{self, Instance};
use tests::{expect_api_error, expect_json, expect_status, Hub};

const USER: &str = "ann";
const USER_PASSWORD: &str = "ann-password-42";

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as Python + MPI.
async fn docker_hub(instance: &Instance) -> Result<Hub> {
    docker::docker_hub_on_real_cpus(instance, "Python + MPI").await
}

/// What `docker info` says of the engine's host: name, CPUs, memory in MiB, version.
fn docker_host() -> Result<(String, u64, u64, String)> {
    let out = docker::docker_out(&[
        "info",
        "--format",
        "{{.Name}}|{{.NCPU}}|{{.MemTotal}}|{{.ServerVersion}}",
    ])?;
    let fields: Vec<&str> = out.trim().split('|').collect();
    ensure!(fields.len() == 4, "docker info said {out:?}");
    Ok((
        fields[0].to_owned(),
        fields[1].parse()?,
        fields[2].parse::<u64>()? / (1024 * 1024),
        fields[3].to_owned(),
    ))
}

async fn nodes(hub: &Hub) -> Result<Vec<Value>> {
    let resp = hub
        .admin(Method::GET, "/hub/api/compute-nodes")
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "list the compute nodes").await?;
    list.as_array()
        .cloned()
        .context("the compute nodes are not a list")
}

/// The one node listed, once its Xiji use is `nodes` (the backend reads it live; ≤ 30 s).
async fn host_using(hub: &Hub, nodes_used: u64) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = nodes(hub).await?;
        ensure!(list.len() == 1, "one host expected: {list:#?}");
        if list[0]["used"]["nodes"] == json!(nodes_used) {
            return Ok(list[0].clone());
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the host never showed {nodes_used} running nodes: {:#}",
            list[0]
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_docker_host_is_listed_with_its_real_cpus_and_memory_and_a_running_cluster_counts_in_its_use(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-compute");
    let hub = docker_hub(&instance).await?;
    let (name, cpus, memory_mib, version) = docker_host()?;

    let host = host_using(&hub, 0).await?;
    ensure!(host["name"] == name, "{host:#}");
    ensure!(
        host["pool"] == "default"
            && host["pool_defined"] == true
            && host["status"] == "ready"
            && host["schedulable"] == true,
        "{host:#}"
    );
    ensure!(
        host["capacity"]["cpu_millis"] == json!(cpus * 1000)
            && host["capacity"]["memory_mib"] == json!(memory_mib),
        "docker info says {cpus} CPUs and {memory_mib} MiB: {host:#}"
    );
    ensure!(
        host["allocatable"] == host["capacity"],
        "no overcommit configured: {host:#}"
    );
    ensure!(
        host["version"] == format!("Docker {version}")
            && host["platform"]
                .as_str()
                .is_some_and(|p| p.starts_with("linux/")),
        "{host:#}"
    );
    ensure!(
        host["used"] == json!({"nodes": 0, "cpu_millis": 0, "memory_mib": 0, "gpus": 0})
            && host["xiji_nodes"] == 0,
        "{host:#}"
    );

    // The capacity admission uses is the host's.
    let resp = hub.admin(Method::GET, "/hub/api/capacity").send().await?;
    let capacity = expect_json(resp, StatusCode::OK, "the capacity").await?;
    ensure!(
        capacity["reported"]["cpu_millis"] == host["allocatable"]["cpu_millis"]
            && capacity["reported"]["memory_mib"] == host["allocatable"]["memory_mib"],
        "{capacity:#}"
    );

    hub.create_user(USER, USER_PASSWORD).await?;
    docker::start_cluster(
        &hub,
        USER,
        json!({"image": "Python + MPI", "nodes": 1, "cpus": 0.5, "memory": "512M"}),
    )
    .await?;
    let host = host_using(&hub, 1).await?;
    ensure!(
        host["used"] == json!({"nodes": 1, "cpu_millis": 500, "memory_mib": 512, "gpus": 0})
            && host["xiji_nodes"] == 1,
        "a 0.5-core 512M node runs: {host:#}"
    );
    let resp = hub
        .admin(Method::GET, "/hub/api/compute-pools")
        .send()
        .await?;
    let pools = expect_json(resp, StatusCode::OK, "list the pools").await?;
    ensure!(
        pools
            == json!([{"name": "default", "description": "", "created": null,
                          "nodes": [name], "xiji_nodes": 1}]),
        "{pools:#}"
    );

    // The administrator's page, in Chromium, with the cluster running.
    let run = tests::browser::run_script(
        &hub,
        "compute_nodes.mjs",
        "compute_nodes",
        &[
            ("XIJI_ADMIN", "admin"),
            ("XIJI_ADMIN_PASSWORD", tests::ADMIN_PASSWORD),
            ("XIJI_HOST", &name),
        ],
    )
    .await;
    tests::browser::keep_screenshots(&hub, "compute_nodes", &["compute_nodes"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    run.expect_screenshot("compute-nodes-en")?;
    run.expect_screenshot("compute-nodes-zh")?;

    // The pool the browser defined and removed is gone; the refusal it saw changed nothing.
    let resp = hub
        .admin(Method::GET, "/hub/api/compute-pools")
        .send()
        .await?;
    let pools = expect_json(resp, StatusCode::OK, "list the pools").await?;
    ensure!(pools.as_array().map(Vec::len) == Some(1), "{pools:#}");
    ensure!(host_using(&hub, 1).await?["pool"] == "default");

    hub.stop_server(USER).await?;
    let host = host_using(&hub, 0).await?;
    ensure!(host["used"]["cpu_millis"] == 0, "{host:#}");
    Ok(())
}

#[tokio::test]
async fn adding_or_removing_the_docker_host_is_refused_with_a_reason_and_pools_are_managed(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-compute");
    let hub = docker_hub(&instance).await?;
    let (name, ..) = docker_host()?;
    let post = |path: &str, body: Value| hub.admin(Method::POST, path).json(&body).send();

    // Pools: default is there; gpu is defined once.
    let resp = post(
        "/hub/api/compute-pools",
        json!({"name": "gpu", "description": "A100 nodes"}),
    )
    .await?;
    let gpu = expect_json(resp, StatusCode::CREATED, "define gpu").await?;
    ensure!(
        gpu["name"] == "gpu" && gpu["description"] == "A100 nodes" && gpu["created"].is_string(),
        "{gpu:#}"
    );
    let resp = post("/hub/api/compute-pools", json!({"name": "gpu"})).await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "define gpu again").await?;
    ensure!(message.contains("exists already"), "{message}");
    for bad in ["GPU", "gpu_a100", "-gpu", ""] {
        let resp = post("/hub/api/compute-pools", json!({"name": bad})).await?;
        let message = expect_api_error(resp, StatusCode::BAD_REQUEST, bad).await?;
        ensure!(message.contains("lower-case letters"), "{message}");
    }
    let resp = post(
        "/hub/api/compute-pools",
        json!({"name": "x", "color": "red"}),
    )
    .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "an unknown field").await?;

    // The one host cannot move; asking for where it is already changes nothing.
    let resp = post(
        "/hub/api/compute-nodes",
        json!({"name": name, "pool": "gpu"}),
    )
    .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "move the host to gpu").await?;
    ensure!(
        message.contains("docker") && message.contains("\"default\""),
        "{message}"
    );
    let resp = post(
        "/hub/api/compute-nodes",
        json!({"name": name, "pool": "default"}),
    )
    .await?;
    let host = expect_json(resp, StatusCode::OK, "the host into default").await?;
    ensure!(
        host["name"] == name && host["pool"] == "default",
        "{host:#}"
    );
    let resp = hub
        .admin(Method::DELETE, &format!("/hub/api/compute-nodes/{name}"))
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "take the host out").await?;
    ensure!(message.contains("one host"), "{message}");

    // Unknown machines and pools, bad names.
    let resp = post(
        "/hub/api/compute-nodes",
        json!({"name": "node-nowhere", "pool": "gpu"}),
    )
    .await?;
    let message = expect_api_error(resp, StatusCode::NOT_FOUND, "an unknown machine").await?;
    ensure!(
        message.contains("node-nowhere") && message.contains(&name),
        "the 404 names the machines there are: {message}"
    );
    let resp = hub
        .admin(Method::DELETE, "/hub/api/compute-nodes/node-nowhere")
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "take out an unknown machine").await?;
    let resp = post(
        "/hub/api/compute-nodes",
        json!({"name": name, "pool": "cpu"}),
    )
    .await?;
    let message = expect_api_error(resp, StatusCode::NOT_FOUND, "an unknown pool").await?;
    ensure!(message.contains("define it first"), "{message}");
    let resp = post(
        "/hub/api/compute-nodes",
        json!({"name": name, "pool": "Bad Pool"}),
    )
    .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "a bad pool name").await?;
    let resp = post("/hub/api/compute-nodes", json!({"pool": "gpu"})).await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "no machine name").await?;

    // A pool machines are in stays; an empty one goes, once.
    let resp = hub
        .admin(Method::DELETE, "/hub/api/compute-pools/default")
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "remove default").await?;
    ensure!(message.contains(&name), "the 409 names the host: {message}");
    let resp = hub
        .admin(Method::DELETE, "/hub/api/compute-pools/gpu")
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "remove gpu").await?;
    let resp = hub
        .admin(Method::DELETE, "/hub/api/compute-pools/gpu")
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "remove gpu again").await?;
    let resp = hub
        .admin(Method::GET, "/hub/api/compute-pools")
        .send()
        .await?;
    let pools = expect_json(resp, StatusCode::OK, "the pools").await?;
    ensure!(
        pools
            .as_array()
            .is_some_and(|p| p.len() == 1 && p[0]["name"] == "default"),
        "{pools:#}"
    );
    Ok(())
}

#[tokio::test]
async fn only_administrators_see_or_change_compute_nodes_and_pools() -> Result<()> {
    let hub = Hub::start().await?;
    hub.create_user(USER, USER_PASSWORD).await?;
    let token = hub.create_token(USER, json!({})).await?;
    let host = nodes(&hub).await?;
    let name = host[0]["name"].as_str().unwrap_or_default().to_owned();
    for (method, path, body) in [
        (Method::GET, "/hub/api/compute-nodes".to_owned(), None),
        (
            Method::POST,
            "/hub/api/compute-nodes".to_owned(),
            Some(json!({"name": name, "pool": "default"})),
        ),
        (
            Method::DELETE,
            format!("/hub/api/compute-nodes/{name}"),
            None,
        ),
        (Method::GET, "/hub/api/compute-pools".to_owned(), None),
        (
            Method::POST,
            "/hub/api/compute-pools".to_owned(),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::DELETE,
            "/hub/api/compute-pools/default".to_owned(),
            None,
        ),
    ] {
        let request = hub.with_token(method.clone(), &path, &token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let message = expect_api_error(
            request.send().await?,
            StatusCode::FORBIDDEN,
            &format!("{method} {path} as a user"),
        )
        .await?;
        ensure!(message.contains("administrators"), "{message}");
    }
    // Nothing changed.
    let resp = hub
        .admin(Method::GET, "/hub/api/compute-pools")
        .send()
        .await?;
    let pools = expect_json(resp, StatusCode::OK, "the pools").await?;
    ensure!(pools.as_array().map(Vec::len) == Some(1), "{pools:#}");

    // The page: a user's session gets 403, an anonymous browser the login page.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let resp = browser
        .get(hub.url("/hub/admin/compute-nodes"))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::FOUND
            && resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .is_some_and(|l| l.starts_with("/hub/login")),
        "anonymous: {}",
        resp.status()
    );
    let login = browser.get(hub.url("/hub/login")).send().await?;
    let xsrf = login
        .cookies()
        .find(|c| c.name() == "_xsrf")
        .map(|c| c.value().to_owned())
        .context("no _xsrf cookie on the login page")?;
    let resp = browser
        .post(hub.url("/hub/login"))
        .form(&[
            ("username", USER),
            ("password", USER_PASSWORD),
            ("_xsrf", &xsrf),
        ])
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::FOUND,
        "login: {}",
        resp.status()
    );
    let resp = browser
        .get(hub.url("/hub/admin/compute-nodes"))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::FORBIDDEN,
        "a user opened the page: {}",
        resp.status()
    );
    Ok(())
}

#[tokio::test]
async fn the_local_backend_lists_the_hubs_own_host_from_proc() -> Result<()> {
    let hub = Hub::start().await?;
    let list = nodes(&hub).await?;
    ensure!(list.len() == 1, "{list:#?}");
    let host = &list[0];
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .context("no MemTotal")?
        .parse()?;
    let cpus = std::thread::available_parallelism()?.get() as u64;
    ensure!(
        host["name"] == hostname.trim()
            && host["pool"] == "default"
            && host["status"] == "ready"
            && host["capacity"]["cpu_millis"] == json!(cpus * 1000)
            && host["capacity"]["memory_mib"] == json!(mem_kib / 1024)
            && host["version"]
                .as_str()
                .is_some_and(|v| v.starts_with("Linux ")),
        "{host:#}"
    );
    Ok(())
}
