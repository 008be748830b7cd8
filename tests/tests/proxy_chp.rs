//! Interop: Xiji's hub drives the real configurable-http-proxy (npm) through its REST API
//! (`[proxy] mode = "external"`): the hub's default route, a server's route added and removed,
//! and a kernel cell run over the websocket through CHP.

mod proxy_support;

use std::time::Duration;

use anyhow::{bail, Result};
use proxy_support::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xiji_runs_a_kernel_through_configurable_http_proxy() -> Result<()> {
    let modules = env("XIJI_TEST_NODE_MODULES")?;
    let dir = scratch("xiji-chp")?;
    let (public, api, hub_port) = (free_port(), free_port(), free_port());
    let proxy_token = token();
    let service_token = token();

    let chp = start_chp_like(
        "configurable-http-proxy",
        format!("{modules}/.bin/configurable-http-proxy"),
        &[],
        (&dir, "chp.log"),
        (public, api),
        &proxy_token,
    )
    .await?;

    let api_url = format!("http://127.0.0.1:{api}");
    let mut hub = start_xiji_external(
        &dir,
        public,
        hub_port,
        &api_url,
        &proxy_token,
        &service_token,
        "xiji.log",
    )?;
    let public_url = format!("http://127.0.0.1:{public}");
    // The hub routes `/` to itself in CHP.
    wait_http(
        &format!("{public_url}/hub/api"),
        Duration::from_secs(60),
        Some(&hub),
    )
    .await?;
    let client = HubApi::new(&public_url, &service_token);
    let routes = || async {
        let all: Value = reqwest::Client::new()
            .get(format!("{api_url}/api/routes"))
            .header("Authorization", format!("token {proxy_token}"))
            .send()
            .await?
            .json()
            .await?;
        Ok::<_, anyhow::Error>(all)
    };
    let outcome = async {
        let all = routes().await?;
        if all["/"]["hub"] != Value::Bool(true) {
            bail!("no hub route: {all}");
        }
        client
            .spawn_and_wait("alice", Duration::from_secs(120))
            .await?;
        let all = routes().await?;
        if all["/user/alice"]["user"] != "alice" {
            bail!("no route for alice: {all}");
        }
        let mut kernel = KernelWs::start(&client, "/user/alice/").await?;
        let out = kernel.run("print(6 * 7)", Duration::from_secs(60)).await?;
        if out.trim() != "42" {
            bail!("cell printed {out:?}");
        }
        kernel.close().await;
        // A stale route (server gone without the hub knowing) is removed by the periodic
        // reconciliation, a route the hub did not make is left alone.
        let foreign = reqwest::Client::new()
            .post(format!("{api_url}/api/routes/services/other"))
            .header("Authorization", format!("token {proxy_token}"))
            .body(r#"{"target": "http://127.0.0.1:9"}"#)
            .send()
            .await?;
        if foreign.status() != 201 {
            bail!("adding a foreign route: {}", foreign.status());
        }
        let stale = reqwest::Client::new()
            .post(format!("{api_url}/api/routes/user/ghost"))
            .header("Authorization", format!("token {proxy_token}"))
            .body(r#"{"target": "http://127.0.0.1:9", "user": "ghost", "server_name": ""}"#)
            .send()
            .await?;
        if stale.status() != 201 {
            bail!("adding a stale route: {}", stale.status());
        }
        client
            .stop_and_wait("alice", Duration::from_secs(60))
            .await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let all = routes().await?;
            let done = all.get("/user/alice").is_none() && all.get("/user/ghost").is_none();
            if done {
                if all.get("/services/other").is_none() || all.get("/").is_none() {
                    bail!("reconciliation removed a route it should keep: {all}");
                }
                break;
            }
            if std::time::Instant::now() > deadline {
                bail!("stale routes were not removed: {all}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    conclude(
        outcome,
        ("xiji", &mut hub, Duration::from_secs(15)),
        ("chp", chp),
        &dir,
    )
}
