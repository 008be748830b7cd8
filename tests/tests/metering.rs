//! Metering against the real hub, on SQLite and PostgreSQL: a server held for a minute is billed
//! a minute (±1 s) in the append-only ledger, also when the hub is killed (SIGKILL) for 30 s in
//! the middle and started again: the rows still follow each other without gap or overlap, and
//! the restart wrote the missed seconds from the backend's own account of the node.

use std::time::Duration;

use anyhow::{ensure, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::add_library_image;
use tests::{expect_json, Hub, HubOptions};
use tokio::time::Instant;

async fn ledger(hub: &Hub, user: &str) -> Result<Vec<Value>> {
    let resp = hub
        .admin(Method::GET, &format!("/hub/api/ledger?user={user}"))
        .send()
        .await?;
    let rows = expect_json(resp, StatusCode::OK, "GET the ledger").await?;
    Ok(rows.as_array().cloned().unwrap_or_default())
}

fn seconds(rows: &[Value]) -> i64 {
    rows.iter()
        .map(|r| r["seconds"].as_i64().unwrap_or(0))
        .sum()
}

/// Holds alice's server (`start_body`: its `user_options`; `nodes` nodes) for a minute with the
/// hub SIGKILLed for 30 s in the middle, then checks each node's bill.
async fn a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill(
    options: HubOptions,
    start_body: Value,
    nodes: i64,
) -> Result<()> {
    let mut hub = Hub::start_with(options).await?;
    hub.create_user("alice", "alice-password-1").await?;

    if let Some(image) = start_body["image"].as_str() {
        add_library_image(&hub, image).await?;
    }
    let asked = Instant::now();
    let resp = hub
        .admin(Method::POST, "/hub/api/users/alice/server")
        .json(&start_body)
        .send()
        .await?;
    let answered = Instant::now();
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "start: {}",
        resp.status()
    );
    hub.wait_until_ready("alice", "", Duration::from_secs(90))
        .await?;

    // Checkpoints are written while it runs.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before_kill = ledger(&hub, "alice").await?;
    ensure!(
        before_kill.iter().any(|r| r["kind"] == json!("checkpoint")),
        "no checkpoint after 10 s: {before_kill:?}"
    );
    hub.kill().await?;
    tokio::time::sleep(Duration::from_secs(30)).await;
    hub.restart().await?;
    hub.wait_until_ready("alice", "", Duration::from_secs(60))
        .await?;
    let until = answered + Duration::from_secs(60);
    tokio::time::sleep_until(until).await;

    let stop_asked = Instant::now();
    let resp = hub
        .admin(Method::DELETE, "/hub/api/users/alice/server")
        .send()
        .await?;
    let stop_answered = Instant::now();
    ensure!(
        resp.status() == StatusCode::NO_CONTENT,
        "stop: {}",
        resp.status()
    );

    let rows = ledger(&hub, "alice").await?;
    let shortest = (stop_asked - answered).as_secs_f64();
    let longest = (stop_answered - asked).as_secs_f64();
    for node in 0..nodes {
        let mine: Vec<Value> = rows
            .iter()
            .filter(|r| r["node"] == json!(node))
            .cloned()
            .collect();
        let billed = seconds(&mine) as f64;
        ensure!(
            billed >= shortest - 1.0 && billed <= longest + 1.0,
            "node-{node} billed {billed} s for a server held between {shortest:.1} and {longest:.1} s: {mine:#?}"
        );
        // One run, its intervals back to back from the opening row to the closing one, and
        // the seconds the hub was down written at its restart.
        let mut kinds: Vec<&str> = mine.iter().filter_map(|r| r["kind"].as_str()).collect();
        kinds.dedup();
        ensure!(
            kinds.first() == Some(&"open") && kinds.last() == Some(&"close"),
            "node-{node}: {kinds:?}"
        );
        let recovered: i64 = mine
            .iter()
            .filter(|r| r["kind"] == json!("recovered"))
            .map(|r| r["seconds"].as_i64().unwrap_or(0))
            .sum();
        ensure!(
            recovered >= 29,
            "node-{node}: the restart wrote {recovered} s for 30 s without a hub"
        );
        for pair in mine.windows(2) {
            ensure!(
                pair[0]["end"] == pair[1]["start"] && pair[0]["run"] == pair[1]["run"],
                "a gap or overlap between {} and {}",
                pair[0],
                pair[1]
            );
        }
        // The units are the seconds times what the node reserved, and every row is priced.
        for r in &mine {
            let s = r["seconds"].as_i64().unwrap_or(0);
            let size = |k: &str| r[k].as_i64().unwrap_or(-1);
            ensure!(
                r["cpu_millicore_seconds"] == json!(size("cpu_millis") * s),
                "{r}"
            );
            ensure!(
                r["memory_mib_seconds"] == json!(size("memory_mib") * s),
                "{r}"
            );
            ensure!(r["price_id"].as_i64().unwrap_or(0) > 0, "{r}");
            ensure!(r["day"].as_str().is_some_and(|d| d.len() == 10), "{r}");
        }
    }
    ensure!(
        rows.iter()
            .all(|r| r["node"].as_i64().is_some_and(|n| n < nodes)),
        "rows of nodes the cluster did not have: {rows:#?}"
    );
    Ok(())
}

fn local_hub(database_url: Option<String>) -> HubOptions {
    HubOptions {
        database_url,
        tables_toml: "\n[metering]\ncheckpoint_interval = 2\n".into(),
        ..HubOptions::default()
    }
}

fn docker_hub(instance: &tests::docker::Instance) -> HubOptions {
    HubOptions {
        spawner_toml: "backend = \"docker\"\nstart_timeout = 300\n".into(),
        tables_toml: format!(
            "\n[metering]\ncheckpoint_interval = 2\n\n[spawner.docker]\ncpu_overcommit = 8\ninstance = \"{}\"\ndefault_memory_mb = 512\ndefault_cpus = 0.5\n",
            instance.0
        ),
        ..HubOptions::default()
    }
}

#[tokio::test]
async fn a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill_on_sqlite() -> Result<()> {
    a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill(local_hub(None), json!({}), 1)
        .await
}

#[tokio::test]
async fn a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill_on_postgres() -> Result<()>
{
    let url = tests::new_postgres_database("metering")?;
    a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill(
        local_hub(Some(url)),
        json!({}),
        1,
    )
    .await
}

/// The case: a 2-node cluster (0.5 cores, 512 MiB each) held for a minute bills 120
/// node-seconds times its sizes, the hub SIGKILLed for 30 s in the middle.
#[tokio::test]
async fn a_two_node_docker_cluster_held_for_a_minute_bills_two_node_minutes_across_a_hub_sigkill(
) -> Result<()> {
    if !tests::docker::enabled() {
        return Ok(());
    }
    let instance = tests::docker::Instance::new("xiji-meter");
    a_server_held_for_a_minute_bills_a_minute_across_a_hub_sigkill(
        docker_hub(&instance),
        json!({"image": "Python + MPI", "nodes": 2}),
        2,
    )
    .await
}

/// A 2-node Docker cluster whose containers are stopped while the hub is dead is billed up to
/// their real stop time (`State.FinishedAt`), not up to the hub's restart, and reserves what it
/// asked for: 2 × 0.5 cores and 2 × 512 MiB for each of those seconds.
#[tokio::test]
async fn nodes_that_stop_while_the_hub_is_dead_are_billed_up_to_their_real_stop_time() -> Result<()>
{
    if !tests::docker::enabled() {
        return Ok(());
    }
    let instance = tests::docker::Instance::new("xiji-meter");
    let mut hub = Hub::start_with(docker_hub(&instance)).await?;
    hub.create_user("alice", "alice-password-1").await?;
    add_library_image(&hub, "Python + MPI").await?;
    let asked = Instant::now();
    tests::docker::start_cluster(&hub, "alice", json!({"image": "Python + MPI", "nodes": 2}))
        .await?;
    let ready = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    hub.kill().await?;
    let containers = [
        instance.node_container("node-0")?,
        instance.node_container("node-1")?,
    ];
    let stopping = Instant::now();
    for id in &containers {
        tests::docker::docker_out(&["stop", "-t", "0", id])?;
    }
    let stopped = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    hub.restart().await?;
    hub.wait_until_stopped("alice", "", Duration::from_secs(60))
        .await?;

    let rows = ledger(&hub, "alice").await?;
    for node in 0..2 {
        let mine: Vec<Value> = rows
            .iter()
            .filter(|r| r["node"] == json!(node))
            .cloned()
            .collect();
        let billed = seconds(&mine) as f64;
        let longest = (stopped - asked).as_secs_f64() + 1.0;
        let shortest = (stopping - ready).as_secs_f64() - 1.0;
        ensure!(
            billed <= longest && billed >= shortest,
            "node-{node} billed {billed} s; its container ran at most {longest:.1} s (the hub was down 20 s more): {mine:#?}"
        );
        for r in &mine {
            let s = r["seconds"].as_i64().unwrap_or(0);
            ensure!(
                r["cpu_millis"] == json!(500) && r["memory_mib"] == json!(512),
                "{r}"
            );
            ensure!(r["cpu_millicore_seconds"] == json!(500 * s), "{r}");
            ensure!(r["memory_mib_seconds"] == json!(512 * s), "{r}");
        }
    }
    Ok(())
}
