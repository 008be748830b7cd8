//! A class that presses Start at once: 20 users' servers (local backend, real
//! `jupyterhub-singleuser`) requested within a second all become ready and none fails, because
//! starts are admitted to their start-up phase a few at a time (one node per CPU core by default)
//! while the rest wait in order, each told its place in its progress stream; the readiness
//! timeout counts from each server's own launch. Prints how long the class took next to one
//! start alone.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::StreamExt as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{Hub, HubOptions};

const CLASS_SIZE: usize = 20;

/// The events of a spawn's progress stream, read until it ends.
async fn progress_events(hub: &Hub, user: &str) -> Result<Vec<Value>> {
    let resp = hub
        .admin(
            Method::GET,
            &format!("/hub/api/users/{user}/server/progress"),
        )
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "progress gave {}",
        resp.status()
    );
    let mut stream = resp.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while let Some(chunk) = tokio::time::timeout_at(deadline.into(), stream.next())
        .await
        .context("the progress stream did not end")?
    {
        text.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            for data in block.lines().filter_map(|l| l.strip_prefix("data:")) {
                events.push(serde_json::from_str::<Value>(data.trim())?);
            }
        }
    }
    Ok(events)
}

#[tokio::test]
async fn twenty_users_pressing_start_at_once_all_get_a_ready_server() -> Result<()> {
    let hub = Hub::start_with(HubOptions {
        top_level_toml: "slow_spawn_timeout = 0.5\n".into(),
        ..HubOptions::default()
    })
    .await?;
    let users: Vec<String> = (0..CLASS_SIZE).map(|i| format!("student{i:02}")).collect();
    for user in &users {
        hub.create_user(user, "class-password-1").await?;
    }
    // One start alone, for the comparison printed at the end.
    let alone = Instant::now();
    hub.create_user("teacher", "class-password-1").await?;
    hub.start_server("teacher").await?;
    let alone = alone.elapsed();

    let began = Instant::now();
    hub.start_servers_together(&users, &json!({})).await?;
    let last = users.last().context("no users")?.clone();
    let watch_last = {
        let hub = &hub;
        async move { progress_events(hub, &last).await }
    };
    let (ready, events) = tokio::join!(
        hub.wait_all_ready(&users, Duration::from_secs(600)),
        watch_last
    );
    ready?;
    let class = began.elapsed();
    let events = events?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < CLASS_SIZE - 1 {
        let positions: Vec<u64> = events
            .iter()
            .filter_map(|e| e["queue_position"].as_u64())
            .collect();
        ensure!(
            !positions.is_empty(),
            "the last of {CLASS_SIZE} starts on {cores} cores was never told its place: {events:?}"
        );
        ensure!(
            positions.windows(2).all(|w| w[1] < w[0]),
            "its place only moves forward: {positions:?}"
        );
    }
    ensure!(
        events.last().is_some_and(|e| e["ready"] == json!(true)),
        "the last start's stream ends ready: {events:?}"
    );
    println!(
        "{CLASS_SIZE} servers started at once on {cores} cores: all ready in {:.1} s; one \
         alone took {:.1} s ({:.1} s for {CLASS_SIZE} one after another)",
        class.as_secs_f64(),
        alone.as_secs_f64(),
        alone.as_secs_f64() * CLASS_SIZE as f64
    );
    Ok(())
}
