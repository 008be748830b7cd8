//! Session survival: with the standalone proxy, a kernel websocket opened through it keeps
//! working while the hub is SIGKILLed and started again.

mod proxy_support;

use std::time::Duration;

use anyhow::{bail, Result};
use proxy_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_websocket_survives_a_hub_kill_and_restart() -> Result<()> {
    let dir = scratch("proxy-survival")?;
    let (public, api, hub_port) = (free_port(), free_port(), free_port());
    let proxy_token = token();
    let service_token = token();

    let proxy = start_chp_like(
        "xiji-proxy",
        xiji_proxy()?,
        &[],
        (&dir, "proxy.log"),
        (public, api),
        &proxy_token,
    )
    .await?;
    let api_url = format!("http://127.0.0.1:{api}");
    let public_url = format!("http://127.0.0.1:{public}");
    let mut hub = start_xiji_external(
        &dir,
        public,
        hub_port,
        &api_url,
        &proxy_token,
        &service_token,
        "xiji-1.log",
    )?;
    wait_http(
        &format!("{public_url}/hub/api"),
        Duration::from_secs(60),
        Some(&hub),
    )
    .await?;
    let client = HubApi::new(&public_url, &service_token);
    let outcome = async {
        client
            .spawn_and_wait("alice", Duration::from_secs(120))
            .await?;
        let mut kernel = KernelWs::start(&client, "/user/alice/").await?;
        let first = kernel
            .run("x = 20\nprint(x + 1)", Duration::from_secs(60))
            .await?;
        if first.trim() != "21" {
            bail!("before: {first:?}");
        }

        hub.kill_hard();
        // The hub is gone: its pages fail, the open websocket does not.
        let hub_down = reqwest::Client::new()
            .get(format!("{public_url}/hub/api"))
            .send()
            .await?;
        if hub_down.status() != 503 {
            bail!("/hub/api with the hub down: {}", hub_down.status());
        }
        for i in 0..5 {
            let out = kernel
                .run("x += 1\nprint(x)", Duration::from_secs(30))
                .await?;
            if out.trim() != (21 + i).to_string() {
                bail!("while the hub is down, run {i}: {out:?}");
            }
        }

        let restarted = start_xiji_external(
            &dir,
            public,
            hub_port,
            &api_url,
            &proxy_token,
            &service_token,
            "xiji-2.log",
        )?;
        hub = restarted;
        wait_http(
            &format!("{public_url}/hub/api"),
            Duration::from_secs(60),
            Some(&hub),
        )
        .await?;
        let after = kernel.run("print(x * 2)", Duration::from_secs(30)).await?;
        if after.trim() != "50" {
            bail!("after the restart: {after:?}");
        }
        // The restarted hub still knows the server and can stop it.
        kernel.close().await;
        client
            .stop_and_wait("alice", Duration::from_secs(60))
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    conclude(
        outcome,
        ("xiji", &mut hub, Duration::from_secs(15)),
        ("proxy", proxy),
        &dir,
    )
}
