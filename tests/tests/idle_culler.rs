//! The real `jupyterhub-idle-culler` (PyPI, from the JupyterHub 5.5 venv), run as a process with a
//! service token that holds only the scopes its README asks for, stops an idle server and leaves an
//! active one running.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::{expect_status, now_iso, random_hex, required_env, tail, Hub, HubOptions, Service};

#[tokio::test]
async fn the_idle_culler_stops_an_idle_server_and_leaves_an_active_one() -> Result<()> {
    let venv = std::path::PathBuf::from(required_env("XIJI_TEST_VENV5")?);
    let culler = venv.join("bin").join("jupyterhub-idle-culler");
    ensure!(
        culler.is_file(),
        "{} is missing: run tests/setup-env.sh",
        culler.display()
    );
    let culler_token = format!("idle-culler-{}", random_hex(16));
    let hub = Hub::start_with(HubOptions {
        services: vec![Service {
            name: "idle-culler".into(),
            token: culler_token.clone(),
            admin: false,
        }],
        tables_toml: r#"
[[roles]]
name = "idle-culler"
description = "What jupyterhub-idle-culler needs"
scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
services = ["idle-culler"]
"#
        .into(),
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("idle", "idle-password-1").await?;
    hub.create_user("busy", "busy-password-1").await?;
    hub.start_server("idle").await?;
    hub.start_server("busy").await?;

    let timeout_s = 8;
    let log_path = hub.scratch_path("idle-culler.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = hub
        .command(&culler)
        .arg(format!("--url={}/hub/api", hub.base_url()))
        .arg(format!("--timeout={timeout_s}"))
        .arg("--cull-every=2")
        .env("JUPYTERHUB_API_TOKEN", &culler_token)
        .env("PATH", venv.join("bin"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;

    // Keep "busy" active the way its server would report it (and the proxy sees traffic).
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now = now_iso();
            let resp = hub
                .admin(Method::POST, "/hub/api/users/busy/activity")
                .json(&json!({
                    "last_activity": now,
                    "servers": { "": { "last_activity": now } }
                }))
                .send()
                .await?;
            expect_status(resp, StatusCode::OK, "POST activity").await?;
            let idle = hub.user("idle").await?;
            if idle["servers"].get("").is_none() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!("the idle culler exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("the idle server was not culled within 90 s: {idle}");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // At least one more cull round with "busy" active: it must stay.
        let until = Instant::now() + Duration::from_secs(timeout_s + 4);
        while Instant::now() < until {
            let now = now_iso();
            let resp = hub
                .admin(Method::POST, "/hub/api/users/busy/activity")
                .json(&json!({ "servers": { "": { "last_activity": now } } }))
                .send()
                .await?;
            expect_status(resp, StatusCode::OK, "POST activity").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let busy = hub.user("busy").await?;
        ensure!(
            busy["servers"][""]["ready"] == json!(true),
            "the active server was culled or is not ready: {busy}"
        );
        Ok(())
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let culler_log = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("===== idle culler log =====\n{}", tail(&culler_log, 100));
    if let Err(e) = result {
        bail!(
            "{e}\n===== idle culler log =====\n{}",
            tail(&culler_log, 100)
        );
    }
    ensure!(
        culler_log.contains("Culling server idle "),
        "the culler's log does not mention culling idle:\n{culler_log}"
    );
    ensure!(
        !culler_log.contains("Culling server busy"),
        "the culler tried to cull busy:\n{culler_log}"
    );
    Ok(())
}
