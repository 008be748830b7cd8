//! Release policies in Chromium (`tests/browser/release_policies.mjs`) on the local backend
//! (jupyterhub-singleuser processes): automatic (the last JupyterLab tab closed → released after
//! the grace period; opened again within it → kept), manual (closed → still running; the home
//! page's Release → released), on logout, and an administrator's forced release whose reason the
//! user sees. The API's own checks (who may set policies and force a release, bad input) are
//! here too. Screenshots are kept in `tests/artifacts/release_policies_*`.
//!
//! The scenarios share the machine's two cores with other tests, so they run one at a time.

use anyhow::{ensure, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{browser, expect_api_error, expect_json, Hub, ADMIN_PASSWORD};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Seconds with no page open before an automatic cluster goes (short, for the test).
const GRACE: u64 = 8;

/// A hub whose default policy is `default`, with the grace period above, and `user` with a
/// password (and, if given, an exception).
async fn hub_with(default: &str, user: &str, exception: Option<&str>) -> Result<Hub> {
    let hub = Hub::start().await?;
    hub.create_user(user, &format!("{user}-password-42"))
        .await?;
    let resp = hub
        .admin(Method::PUT, "/hub/api/release-policies/default")
        .json(&json!({"policy": default, "grace_seconds": GRACE}))
        .send()
        .await?;
    let saved = expect_json(resp, StatusCode::OK, "setting the default policy").await?;
    ensure!(
        saved["policy"] == default && saved["grace_seconds"] == GRACE,
        "{saved}"
    );
    if let Some(policy) = exception {
        let resp = hub
            .admin(
                Method::PUT,
                &format!("/hub/api/users/{user}/release-policy"),
            )
            .json(&json!({"policy": policy}))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, "setting an exception").await?;
    }
    Ok(hub)
}

async fn run(hub: &Hub, mode: &str, user: &str, extra: &[(&str, &str)]) -> Result<Value> {
    let password = format!("{user}-password-42");
    let grace = GRACE.to_string();
    let mut vars = vec![
        ("XIJI_MODE", mode),
        ("XIJI_USER", user),
        ("XIJI_PASSWORD", password.as_str()),
        ("XIJI_ADMIN_TOKEN", hub.admin_token()),
        ("XIJI_GRACE", grace.as_str()),
    ];
    vars.extend_from_slice(extra);
    let name = format!("release_policies_{mode}");
    let outcome = browser::run_script(hub, "release_policies.mjs", &name, &vars).await;
    browser::keep_screenshots(hub, &name, &[&name]);
    let run = outcome?;
    let line = run
        .output
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or("{}");
    let result: Value = serde_json::from_str(line)?;
    ensure!(
        result["ok"] == true,
        "the browser did not finish: {}",
        run.output
    );
    Ok(result)
}

#[tokio::test]
async fn an_automatic_cluster_is_released_a_grace_period_after_its_last_tab_closes_and_kept_when_reopened_within_it(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    // The default stays manual: the user's exception makes their clusters automatic.
    let hub = hub_with("manual", "ada", Some("automatic")).await?;
    let policy = expect_json(
        hub.admin(Method::GET, "/hub/api/users/ada/release-policy")
            .send()
            .await?,
        StatusCode::OK,
        "ada's policy",
    )
    .await?;
    ensure!(
        policy["policy"] == "automatic"
            && policy["exception"] == true
            && policy["manual_release_allowed"] == false,
        "{policy}"
    );
    let result = run(&hub, "automatic", "ada", &[]).await?;
    ensure!(
        result["websockets"].as_u64().unwrap_or(0) >= 1,
        "the proxy counted no websocket of JupyterLab: {result}"
    );
    ensure!(result["kept_after_reopening"] == "running", "{result}");
    let after = result["released_after"].as_f64().unwrap_or(0.0);
    // Released after the grace, not before; the loop looks every 2 s and the stop takes a few.
    ensure!(
        after >= (GRACE - 1) as f64 && after <= (GRACE + 30) as f64,
        "released {after} s after the tab closed (grace {GRACE} s)"
    );
    let releases = expect_json(
        hub.admin(Method::GET, "/hub/api/users/ada/releases")
            .send()
            .await?,
        StatusCode::OK,
        "ada's releases",
    )
    .await?;
    ensure!(releases[0]["cause"] == "automatic", "{releases}");
    Ok(())
}

#[tokio::test]
async fn a_manual_cluster_keeps_running_with_its_tab_closed_until_the_user_clicks_release(
) -> Result<()> {
    let _serial = SERIAL.lock().await;
    // The default is automatic: the user's exception allows manual release.
    let hub = hub_with("automatic", "ben", Some("manual")).await?;
    let result = run(&hub, "manual", "ben", &[]).await?;
    ensure!(result["after_grace"] == "running", "{result}");
    ensure!(result["button"] == "Release", "{result}");
    ensure!(result["after_release"] == "stopped", "{result}");
    // The user's own Release is a plain stop: nothing to tell them about.
    let releases = expect_json(
        hub.admin(Method::GET, "/hub/api/users/ben/releases")
            .send()
            .await?,
        StatusCode::OK,
        "ben's releases",
    )
    .await?;
    ensure!(releases == json!([]), "{releases}");
    Ok(())
}

#[tokio::test]
async fn an_on_logout_cluster_is_released_when_its_user_logs_out() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let hub = hub_with("on_logout", "cleo", None).await?;
    let result = run(&hub, "on_logout", "cleo", &[]).await?;
    ensure!(
        result["released_after"].as_f64().unwrap_or(99.0) < 30.0,
        "{result}"
    );
    let releases = expect_json(
        hub.admin(Method::GET, "/hub/api/users/cleo/releases")
            .send()
            .await?,
        StatusCode::OK,
        "cleo's releases",
    )
    .await?;
    ensure!(releases[0]["cause"] == "on_logout", "{releases}");
    Ok(())
}

#[tokio::test]
async fn an_administrator_forces_a_release_with_a_reason_the_user_sees() -> Result<()> {
    let _serial = SERIAL.lock().await;
    let hub = hub_with("manual", "dora", None).await?;
    hub.start_server("dora").await?;

    // Only administrators (admin:servers) may force a release, and only with a reason.
    let dora = hub
        .create_token("dora", json!({"scopes": ["servers!user=dora"]}))
        .await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/users/dora/server/release", &dora)
        .json(&json!({"reason": "mine"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "a user forcing a release").await?;
    let resp = hub
        .with_token(Method::PUT, "/hub/api/release-policies/default", &dora)
        .json(&json!({"policy": "manual"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "a user setting the default").await?;
    for (body, what) in [
        (json!({"reason": "  "}), "an empty reason"),
        (
            json!({"reason": "x".repeat(501)}),
            "a reason of 501 characters",
        ),
        (json!({}), "no reason"),
    ] {
        let resp = hub
            .admin(Method::POST, "/hub/api/users/dora/server/release")
            .json(&body)
            .send()
            .await?;
        expect_api_error(resp, StatusCode::BAD_REQUEST, what).await?;
    }
    let resp = hub
        .admin(Method::PUT, "/hub/api/release-policies/default")
        .json(&json!({"policy": "sometimes"}))
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "an unknown policy").await?;
    ensure!(
        message.contains("automatic, manual, on_logout"),
        "{message}"
    );
    let resp = hub
        .admin(Method::PUT, "/hub/api/release-policies/default")
        .json(&json!({"policy": "automatic", "grace_seconds": 1}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "a grace period of 1 s").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/users/dora/servers/nope/release")
        .json(&json!({"reason": "x"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "a server dora does not have").await?;
    ensure!(
        hub.user("dora").await?["servers"][""]["ready"] == true,
        "a refused release changed the server"
    );

    let reason = "The GPU nodes are serviced tonight; please start again tomorrow.";
    let result = run(
        &hub,
        "forced",
        "dora",
        &[
            ("XIJI_ADMIN_USER", "admin"),
            ("XIJI_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("XIJI_REASON", reason),
        ],
    )
    .await?;
    ensure!(result["reason_shown"] == reason, "{result}");
    let releases = expect_json(
        hub.with_token(Method::GET, "/hub/api/users/dora/releases", &dora)
            .send()
            .await?,
        StatusCode::OK,
        "dora's releases, read with her own token",
    )
    .await?;
    ensure!(
        releases[0]["cause"] == "forced"
            && releases[0]["reason"] == reason
            && releases[0]["released_by"] == "admin",
        "{releases}"
    );
    // The server's progress stream says it too.
    let resp = hub
        .admin(Method::GET, "/hub/api/users/dora/server/progress")
        .send()
        .await?;
    let text = resp.text().await?;
    ensure!(text.contains(reason), "the progress stream: {text}");
    // Nothing left to release.
    let resp = hub
        .admin(Method::POST, "/hub/api/users/dora/server/release")
        .json(&json!({"reason": "again"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "releasing a stopped server").await?;
    Ok(())
}
