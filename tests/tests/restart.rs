//! Restarting the hub does not disturb running servers: after the hub is killed (SIGKILL) or
//! stopped (SIGTERM) and started again on the same data directory and port, a server whose kernel
//! was busy still runs as the same process, is listed as ready, is reachable through the proxy,
//! and its kernel finishes the busy cell and answers the next one.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_json, process, Hub, Kernel};

async fn kernel_state(hub: &Hub, token: &str, id: &str) -> Result<Value> {
    let resp = hub
        .with_token(Method::GET, &format!("/user/alice/api/kernels/{id}"), token)
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "GET the kernel").await
}

async fn a_busy_server_survives_a_hub_restart(signal: Signal) -> Result<()> {
    let mut hub = Hub::start().await?;
    hub.create_user("alice", "alice-password-1").await?;
    let token = hub.create_token("alice", json!({})).await?;
    let server = hub.start_server("alice").await?;
    let pid = server_pid(&hub).await?;
    ensure!(
        process::is_alive(pid),
        "the server's pid {pid} ({server}) is not a live process"
    );

    let mut kernel = Kernel::start(&hub, "/user/alice/", &token).await?;
    let run = kernel.execute("x = 6", Duration::from_secs(60)).await?;
    ensure!(run.status == "ok", "x = 6 gave {run:?}");
    // A cell that is still running while the hub restarts.
    kernel
        .send_execute("import time; time.sleep(12); x = x * 7")
        .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while kernel_state(&hub, &token, &kernel.id).await?["execution_state"] != json!("busy") {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the kernel never got busy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let old_addr = hub.addr().to_owned();
    match signal {
        Signal::SIGKILL => hub.kill().await?,
        _ => hub.terminate().await?,
    }
    drop(kernel); // its websocket went through the old hub's proxy
    ensure!(
        process::is_alive(pid),
        "the server process {pid} died with the hub"
    );
    hub.restart().await?;
    ensure!(
        hub.addr() == old_addr,
        "the hub moved from {old_addr} to {}",
        hub.addr()
    );

    // Listed as ready, same process, reachable through the proxy.
    let server = hub
        .wait_until_ready("alice", "", Duration::from_secs(30))
        .await?;
    ensure!(server["url"] == json!("/user/alice/"), "{server}");
    let new_pid = server_pid(&hub).await?;
    ensure!(
        new_pid == pid,
        "the server's pid changed from {pid} to {new_pid}: it was restarted, not re-adopted"
    );
    ensure!(process::is_alive(pid), "the server process {pid} is gone");
    let resp = hub
        .with_token(Method::GET, "/user/alice/api/status", &token)
        .send()
        .await?;
    expect_json(
        resp,
        StatusCode::OK,
        "GET /user/alice/api/status after the restart",
    )
    .await?;
    let listed = hub
        .admin(Method::GET, "/hub/api/users?state=ready")
        .send()
        .await?;
    let listed = expect_json(listed, StatusCode::OK, "GET /hub/api/users?state=ready").await?;
    ensure!(
        listed
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u["name"] == json!("alice"))),
        "alice is not listed among ready users: {listed}"
    );

    // The kernel is the same one, still busy with the cell started before the restart...
    let state = kernel_state(&hub, &token, &kernel_id_of(&hub, &token).await?).await?;
    ensure!(
        state["execution_state"] == json!("busy"),
        "after the restart the kernel is {state}"
    );
    // ...and answers the next cell once that one is done, over a websocket through the new proxy.
    let id = state["id"]
        .as_str()
        .context("kernel without id")?
        .to_owned();
    let mut kernel = Kernel::connect(&hub, "/user/alice/", &token, &id).await?;
    let run = kernel.execute("print(x)", Duration::from_secs(60)).await?;
    ensure!(
        run.status == "ok" && run.stdout == "42\n",
        "print(x) gave {run:?}"
    );
    kernel.close().await?;
    Ok(())
}

/// The id of alice's only kernel.
async fn kernel_id_of(hub: &Hub, token: &str) -> Result<String> {
    let resp = hub
        .with_token(Method::GET, "/user/alice/api/kernels", token)
        .send()
        .await?;
    let kernels = expect_json(resp, StatusCode::OK, "GET /user/alice/api/kernels").await?;
    let kernels = kernels.as_array().context("kernels is not a list")?;
    ensure!(kernels.len() == 1, "expected one kernel, got {kernels:?}");
    Ok(kernels[0]["id"].as_str().unwrap_or_default().to_owned())
}

/// The single-user process's pid, from the server's state (needs `admin:server_state`).
async fn server_pid(hub: &Hub) -> Result<u32> {
    let user = hub.user("alice").await?;
    let pid = user["servers"][""]["state"]["pid"]
        .as_u64()
        .with_context(|| format!("no pid in the server's state: {user}"))?;
    Ok(u32::try_from(pid)?)
}

#[tokio::test]
async fn a_server_with_a_busy_kernel_survives_the_hub_being_killed() -> Result<()> {
    a_busy_server_survives_a_hub_restart(Signal::SIGKILL).await
}

#[tokio::test]
async fn a_server_with_a_busy_kernel_survives_the_hub_being_stopped() -> Result<()> {
    a_busy_server_survives_a_hub_restart(Signal::SIGTERM).await
}
