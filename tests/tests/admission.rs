//! Admission through the real hub: a start over its user's quota is refused with a 403 that
//! names the limit and leaves nothing behind; a start that does not fit the capacity is refused
//! with a 409, or, if it waits, hears its place in line in its progress stream, can be cancelled,
//! and starts as soon as a cluster stops.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_json, Hub, HubOptions};

async fn hub() -> Result<Hub> {
    Hub::start_with(HubOptions {
        top_level_toml: "allow_named_servers = true\nslow_spawn_timeout = 0.5\n".into(),
        ..HubOptions::default()
    })
    .await
}

async fn put(hub: &Hub, path: &str, body: Value) -> Result<Value> {
    let resp = hub.admin(Method::PUT, path).json(&body).send().await?;
    expect_json(resp, StatusCode::OK, path).await
}

async fn start(hub: &Hub, user: &str, body: Value) -> Result<(StatusCode, String)> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(&body)
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

#[tokio::test]
async fn a_start_over_the_quota_gets_a_403_naming_the_limit_and_leaves_nothing_behind() -> Result<()>
{
    let hub = hub().await?;
    hub.create_user("alice", "alice-password-1").await?;
    put(
        &hub,
        "/hub/api/quotas/roles/student",
        json!({"clusters": 1}),
    )
    .await?;
    hub.start_server("alice").await?;

    let resp = hub
        .admin(Method::POST, "/hub/api/users/alice/servers/second")
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::FORBIDDEN, "{}", resp.status());
    let body: Value = resp.json().await?;
    let message = body["message"].as_str().unwrap_or_default();
    ensure!(
        message.contains("quota of clusters at once") && message.contains("1 cluster too many"),
        "{body}"
    );
    let user = hub.user("alice").await?;
    ensure!(
        user["servers"].get("second").is_none(),
        "a refused start left {user}"
    );

    // A user's exception raises their limit alone.
    put(&hub, "/hub/api/users/alice/quota", json!({"clusters": 2})).await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/users/alice/servers/second")
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "{}",
        resp.status()
    );
    hub.wait_until_ready("alice", "second", Duration::from_secs(90))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_waiting_start_hears_its_place_in_line_can_be_cancelled_and_starts_when_capacity_frees_up(
) -> Result<()> {
    let hub = hub().await?;
    for user in ["alice", "bob", "carol"] {
        hub.create_user(user, &format!("{user}-password-1")).await?;
    }
    put(&hub, "/hub/api/capacity", json!({"nodes": 1})).await?;
    hub.start_server("alice").await?;

    // Not waiting: a 409 that says what is short and how to wait.
    let (status, text) = start(&hub, "bob", json!({})).await?;
    ensure!(status == StatusCode::CONFLICT, "{status} {text}");
    ensure!(
        text.contains("Not enough free nodes") && text.contains("wait"),
        "{text}"
    );

    // Waiting: 202, number 1 in line; carol number 2.
    let (status, text) = start(&hub, "bob", json!({"wait": true})).await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {text}");
    // Read to its end below, from its first event (the hub keeps them).
    let bob_events = hub.progress_events("bob", "");
    let (status, text) = start(&hub, "carol", json!({"wait": true})).await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {text}");
    let resp = hub
        .admin(Method::GET, "/hub/api/reservations")
        .send()
        .await?;
    let reservations = expect_json(resp, StatusCode::OK, "GET /reservations").await?;
    let states: Vec<(String, String)> = reservations["reservations"]
        .as_array()
        .context("reservations")?
        .iter()
        .map(|r| {
            (
                r["user"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    ensure!(
        states
            == [
                ("alice".to_owned(), "admitted".to_owned()),
                ("bob".to_owned(), "queued".to_owned()),
                ("carol".to_owned(), "queued".to_owned())
            ],
        "{reservations}"
    );

    // Carol cancels: her start ends, her place is gone.
    let resp = hub
        .admin(Method::DELETE, "/hub/api/users/carol/server")
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::ACCEPTED,
        "cancel: {}",
        resp.status()
    );
    hub.wait_until_stopped("carol", "", Duration::from_secs(30))
        .await?;

    // Alice stops: bob is admitted and his server starts.
    let (events, stopped) = tokio::join!(bob_events, hub.stop_server("alice"));
    stopped?;
    let events = events?;
    hub.wait_until_ready("bob", "", Duration::from_secs(90))
        .await?;
    let positions: Vec<i64> = events
        .iter()
        .filter_map(|e| e["queue_position"].as_i64())
        .collect();
    ensure!(
        positions.first() == Some(&1),
        "bob's place in line: {events:?}"
    );
    ensure!(
        events.last().is_some_and(|e| e["ready"] == json!(true)),
        "bob's start did not end ready: {events:?}"
    );
    ensure!(hub.user("carol").await?["servers"].get("").is_none());
    Ok(())
}

#[tokio::test]
async fn a_start_chooses_its_release_policy_among_those_its_user_may_choose() -> Result<()> {
    let hub = hub().await?;
    for user in ["alice", "bob", "carol"] {
        hub.create_user(user, &format!("{user}-password-1")).await?;
    }
    // The default stays manual; carol's exception forbids manual release.
    put(
        &hub,
        "/hub/api/release-policies/default",
        json!({"policy": "manual", "grace_seconds": 5}),
    )
    .await?;
    put(
        &hub,
        "/hub/api/users/carol/release-policy",
        json!({"policy": "automatic"}),
    )
    .await?;

    let (status, text) = start(&hub, "carol", json!({"release_policy": "manual"})).await?;
    ensure!(status == StatusCode::BAD_REQUEST, "{status} {text}");
    ensure!(text.contains("Manual release is not allowed"), "{text}");
    let (status, text) = start(&hub, "alice", json!({"release_policy": "sometimes"})).await?;
    ensure!(
        status == StatusCode::BAD_REQUEST && text.contains("automatic, manual, on_logout"),
        "{status} {text}"
    );
    ensure!(hub.user("alice").await?["servers"].get("").is_none());

    // Alice chooses automatic for this start: nobody opens it, so it goes after the grace
    // period; bob's start keeps the default (manual) and runs on.
    let (status, text) = start(&hub, "alice", json!({"release_policy": "automatic"})).await?;
    ensure!(status.is_success(), "{status} {text}");
    hub.start_server("bob").await?;
    hub.wait_until_ready("alice", "", Duration::from_secs(90))
        .await?;
    hub.wait_until_stopped("alice", "", Duration::from_secs(60))
        .await?;
    ensure!(
        hub.user("bob").await?["servers"][""]["ready"] == json!(true),
        "bob's manual cluster was released"
    );
    Ok(())
}
