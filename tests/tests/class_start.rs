//! A class that presses Start at once: 20 users' servers (local backend, real
//! `jupyterhub-singleuser`) requested within a second all become ready and none fails, because
//! starts are admitted to their start-up phase a few at a time (one node per CPU core by default)
//! while the rest wait in order, each told its place in its progress stream; the readiness
//! timeout counts from each server's own launch. Prints how long the class took next to one
//! start alone.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use tests::{Hub, HubOptions};

const CLASS_SIZE: usize = 20;

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
        async move { hub.progress_events(&last, "").await }
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
