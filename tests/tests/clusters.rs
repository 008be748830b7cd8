//! Virtual clusters through the real hub on a real Docker Engine: a cluster started through the
//! REST API serves every node through the proxy, is re-adopted by a hub restarted after SIGTERM or
//! SIGKILL and stays usable (a new kernel on node-1 runs a cell), is stopped with the reason when
//! its nodes cannot reach the restarted hub, and a hub
//! killed in the middle of a 3-node start leaves, once started again, no container, no network
//! and no half-started server behind; in Chromium, node-1's JupyterLab opens from the home page
//! and runs a cell on node-1.
//!
//! Needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh); without it each
//! test says so and returns. With it, a Docker Engine that does not work is a failure.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::{self, wait_cluster_ready, Instance};
use tests::{browser, expect_json, Hub, Kernel};

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as Python + MPI.
async fn docker_hub(instance: &Instance) -> Result<Hub> {
    docker::docker_hub(instance, "Python + MPI").await
}

async fn start_cluster(hub: &Hub, user: &str, nodes: u32) -> Result<()> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(&json!({"image": "Python + MPI", "nodes": nodes}))
        .send()
        .await?;
    let status = resp.status();
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting a {nodes}-node cluster gave {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    Ok(())
}

/// GET `{node url}api/status` through the proxy with the user's token: 200 and JSON.
async fn node_answers(hub: &Hub, node_url: &str, token: &str) -> Result<()> {
    let resp = hub
        .with_token(Method::GET, &format!("{node_url}api/status"), token)
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, &format!("GET {node_url}api/status")).await?;
    Ok(())
}

fn node_urls(server: &Value) -> Vec<String> {
    server["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["url"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A ready 2-node cluster, its nodes served through the proxy, then the hub stopped with `signal`
/// and started again: the cluster is re-adopted, and a new kernel on node-1 runs a cell (node-1's
/// server reaches the restarted hub, which it needs to open the kernel).
async fn a_cluster_stays_usable_after_a_hub_restart(signal: Signal) -> Result<()> {
    let instance = Instance::new("xiji-test");
    let mut hub = docker_hub(&instance).await?;
    hub.create_user("carol", "carol-password-1").await?;
    let token = hub.create_token("carol", json!({})).await?;
    start_cluster(&hub, "carol", 2).await?;
    let server = wait_cluster_ready(&hub, "carol", Duration::from_secs(240)).await?;
    let urls = node_urls(&server);
    ensure!(
        urls == ["/user/carol/", "/user/carol/node-1/"],
        "the cluster lists nodes {urls:?}: {server}"
    );
    for url in &urls {
        node_answers(&hub, url, &token).await?;
    }
    ensure!(instance.containers()?.len() == 2, "expected 2 containers");

    match signal {
        Signal::SIGKILL => hub.kill().await?,
        _ => hub.terminate().await?,
    }
    hub.restart().await?;
    let server = wait_cluster_ready(&hub, "carol", Duration::from_secs(60)).await?;
    for url in node_urls(&server) {
        node_answers(&hub, &url, &token).await?;
    }
    ensure!(
        instance.containers()?.len() == 2,
        "a restarted hub must keep the running cluster's containers"
    );
    let mut kernel = Kernel::start(&hub, "/user/carol/node-1/", &token)
        .await
        .context("a new kernel on node-1 after the restart")?;
    let run = kernel
        .execute(
            "import socket; print(socket.gethostname())",
            Duration::from_secs(60),
        )
        .await?;
    ensure!(
        run.status == "ok" && run.stdout.trim() == "node-1",
        "the cell on node-1 gave {run:?}"
    );
    kernel.close().await?;

    hub.stop_server("carol").await?;
    ensure!(instance.containers()?.is_empty(), "stop left containers");
    ensure!(instance.networks()?.is_empty(), "stop left networks");
    Ok(())
}

#[tokio::test]
async fn a_cluster_stays_usable_after_the_hub_is_stopped_with_sigterm_and_started_again(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    a_cluster_stays_usable_after_a_hub_restart(Signal::SIGTERM).await
}

#[tokio::test]
async fn a_cluster_stays_usable_after_the_hub_is_killed_with_sigkill_and_started_again(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    a_cluster_stays_usable_after_a_hub_restart(Signal::SIGKILL).await
}

#[tokio::test]
async fn five_users_starting_two_node_clusters_at_once_all_get_them() -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-test");
    let hub = docker_hub(&instance).await?;
    let users: Vec<String> = (0..5).map(|i| format!("team{i}")).collect();
    for user in &users {
        hub.create_user(user, "team-password-1").await?;
    }
    let began = std::time::Instant::now();
    hub.start_servers_together(&users, &json!({"image": "Python + MPI", "nodes": 2}))
        .await?;
    hub.wait_all_ready(&users, Duration::from_secs(600)).await?;
    println!(
        "5 two-node clusters started at once: all ready in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    ensure!(
        instance.containers()?.len() == 10,
        "expected 10 containers, found {:?}",
        instance.containers()?
    );
    for user in &users {
        let resp = hub
            .admin(Method::DELETE, &format!("/hub/api/users/{user}/server"))
            .send()
            .await?;
        ensure!(resp.status().is_success(), "stop gave {}", resp.status());
    }
    for user in &users {
        hub.wait_until_stopped(user, "", Duration::from_secs(120))
            .await?;
    }
    Ok(())
}

/// The address the hub listens on for containers, from its log.
fn container_listener(hub: &Hub) -> Result<String> {
    let log = hub.run_log();
    let line = log
        .lines()
        .find(|l| l.contains("hub API listener for containers"))
        .context("the hub did not log its listener for containers")?;
    line.split("listen=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .context("no listen= in the listener's log line")
}

#[tokio::test]
async fn a_restarted_hub_that_its_nodes_cannot_reach_stops_the_cluster_and_says_why() -> Result<()>
{
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-test");
    let mut hub = docker_hub(&instance).await?;
    hub.create_user("dave", "dave-password-1").await?;
    start_cluster(&hub, "dave", 2).await?;
    wait_cluster_ready(&hub, "dave", Duration::from_secs(240)).await?;
    let listener = container_listener(&hub)?;
    hub.terminate().await?;
    // Something else takes the address the nodes were given: it accepts connections and closes
    // them without answering, so a node asking it for the hub gets no hub.
    let squatter = std::net::TcpListener::bind(&listener)
        .with_context(|| format!("taking {listener} while the hub is down"))?;
    let squatting = std::thread::spawn(move || {
        for _ in 0..20 {
            match squatter.accept() {
                Ok((stream, _)) => drop(stream),
                Err(_) => return,
            }
        }
    });
    hub.restart().await?;
    ensure!(
        container_listener(&hub)? != listener,
        "the hub cannot listen where another program does"
    );
    hub.wait_until_stopped("dave", "", Duration::from_secs(60))
        .await
        .context("a cluster whose nodes cannot reach the hub must not be kept as ready")?;
    let log = hub.run_log();
    ensure!(
        log.contains("cannot reach the hub at") && log.contains(&listener),
        "the hub must say which node could not reach it, and where:\n{}",
        tests::tail(&log, 40)
    );
    ensure!(
        instance.containers()?.is_empty(),
        "the unusable cluster's containers were left"
    );
    drop(squatting);
    Ok(())
}

#[tokio::test]
async fn a_hub_killed_during_a_three_node_start_leaves_nothing_behind_after_it_restarts(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-test");
    let mut hub = docker_hub(&instance).await?;
    hub.create_user("dave", "dave-password-1").await?;
    start_cluster(&hub, "dave", 3).await?;
    // Kill the hub as soon as the start has created something.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while instance.containers()?.is_empty() && instance.networks()?.is_empty() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the start created no container or network within 120 s:\n{}",
            tests::tail(&hub.log(), 40)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hub.kill().await?;
    ensure!(
        !(instance.containers()?.is_empty() && instance.networks()?.is_empty()),
        "nothing was left to clean up: the kill came too late to prove anything"
    );

    hub.restart().await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (containers, networks) = (instance.containers()?, instance.networks()?);
        if containers.is_empty() && networks.is_empty() {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "60 s after the restart, containers {containers:?} and networks {networks:?} remain"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The database agrees: no server is running or pending, and the proxy routes none.
    let model = hub.user("dave").await?;
    ensure!(
        model["pending"].is_null() && model["server"].is_null(),
        "after the restart dave's server is {model}"
    );
    let routes = expect_json(
        hub.admin(Method::GET, "/hub/api/proxy").send().await?,
        StatusCode::OK,
        "GET /proxy",
    )
    .await?;
    ensure!(
        routes.get("/user/dave/").is_none(),
        "a route to the dead cluster remains: {routes}"
    );
    // And the user can start a cluster again.
    start_cluster(&hub, "dave", 3).await?;
    let server = wait_cluster_ready(&hub, "dave", Duration::from_secs(300)).await?;
    ensure!(node_urls(&server).len() == 3, "{server}");
    ensure!(instance.containers()?.len() == 3);
    Ok(())
}

#[tokio::test]
async fn node_one_of_a_cluster_opens_in_jupyterlab_in_chromium_and_runs_a_cell_there() -> Result<()>
{
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-test");
    let hub = docker_hub(&instance).await?;
    hub.create_user("erin", "erin-password-1").await?;
    start_cluster(&hub, "erin", 2).await?;
    wait_cluster_ready(&hub, "erin", Duration::from_secs(240)).await?;
    let run = browser::run_script(
        &hub,
        "cluster_node.mjs",
        "cluster-node",
        &[
            ("XIJI_USER", "erin"),
            ("XIJI_PASSWORD", "erin-password-1"),
            ("XIJI_NODE", "1"),
        ],
    )
    .await?;
    ensure!(
        run.output.contains("\"output\":\"node-1\""),
        "the browser did not report node-1's host name:\n{}",
        run.output
    );
    run.expect_screenshot("output")?;
    Ok(())
}
