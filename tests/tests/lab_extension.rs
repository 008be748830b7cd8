//! The JupyterLab extension `jupyterlab-xiji` in real JupyterLab on the local backend, in Debian's
//! Chromium (driven by playwright-core from `tests/browser/lab_extension.mjs`):
//!
//! - the wheel `extensions/build.sh` builds is installed beside the JupyterHub 5.5 test venv and
//!   the user's server loads both halves (the prebuilt JupyterLab extension and the server
//!   extension whose handlers call the hub with the server's own token);
//! - the status bar shows the cluster's running time, its cost so far and, once an
//!   administrator gives the user a budget that is used up, the danger style and the time the
//!   cluster will be released;
//! - "Release this cluster…" is in the command palette and the Xiji menu; after the
//!   confirmation the server is stopped and the page goes back to the hub's home page.
//!
//! Screenshots are kept in `tests/artifacts/lab_extension/` and
//! `target/screenshots/lab_extension/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::browser::keep_screenshots;
use tests::{browser, expect_json, required_env, workspace_root, Hub, HubOptions};

const USER: &str = "lena";
const PASSWORD: &str = "lena-password-42";

/// Builds the wheel (a no-op when its sources did not change) and installs it, without its
/// dependencies (the test venv has them), under `prefix`: the Python package in its
/// site-packages, the labextension in `share/jupyter`, the server's config in `etc/jupyter`.
fn install_extension(prefix: &Path) -> Result<PathBuf> {
    let root = workspace_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("extensions/build.sh"))
        .output()
        .context("run extensions/build.sh")?;
    ensure!(
        out.status.success(),
        "extensions/build.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wheel = std::fs::read_dir(root.join("extensions/dist"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("extensions/build.sh wrote no wheel")?;
    let venv = PathBuf::from(required_env("XIJI_TEST_VENV5")?);
    let out = std::process::Command::new(venv.join("bin/python"))
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-index"])
        .arg("--prefix")
        .arg(prefix)
        .arg(&wheel)
        .output()
        .context("pip install the wheel")?;
    ensure!(
        out.status.success(),
        "pip install {}: {}",
        wheel.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let lib = prefix.join("lib");
    for entry in std::fs::read_dir(&lib)?.flatten() {
        let site = entry.path().join("site-packages");
        if site.join("jupyterlab_xiji").is_dir() {
            return Ok(site);
        }
    }
    bail!("no jupyterlab_xiji under {}", lib.display())
}

#[tokio::test]
async fn the_lab_extension_shows_the_clusters_time_cost_and_used_up_budget_and_releases_it(
) -> Result<()> {
    let prefix = tempfile::tempdir()?;
    let site = install_extension(prefix.path())?;
    let path = |p: PathBuf| p.display().to_string();
    let hub = Hub::start_with(HubOptions {
        singleuser_environment: vec![
            ("PYTHONPATH".into(), path(site)),
            (
                "JUPYTER_PATH".into(),
                path(prefix.path().join("share/jupyter")),
            ),
            (
                "JUPYTER_CONFIG_PATH".into(),
                path(prefix.path().join("etc/jupyter")),
            ),
        ],
        ..HubOptions::default()
    })
    .await?;
    hub.create_user(USER, PASSWORD).await?;
    // The cluster holds the automatic release policy (its pages ask before they close), with a
    // grace period longer than the test.
    let resp = hub
        .admin(Method::PUT, "/hub/api/release-policies/default")
        .json(&json!({"policy": "manual", "grace_seconds": 3600}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "the release policies' grace period").await?;
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{USER}/server"))
        .json(&json!({"release_policy": "automatic"}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "start: {}", resp.status());
    hub.wait_until_ready(USER, "", Duration::from_secs(120))
        .await?;
    // Released clusters of a used-up budget wait an hour: the test releases it itself.
    let resp = hub
        .admin(Method::PUT, "/hub/api/budgets/settings")
        .json(&json!({"release_grace_seconds": 3600}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "the budgets' grace period").await?;

    let run = browser::run_script(
        &hub,
        "lab_extension.mjs",
        "lab_extension",
        &[
            ("XIJI_USER", USER),
            ("XIJI_PASSWORD", PASSWORD),
            ("XIJI_ADMIN_TOKEN", hub.admin_token()),
        ],
    )
    .await;
    keep_screenshots(&hub, "lab_extension", &["lab_extension"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in [
        "status-bar",
        "budget-used-up",
        "release-confirm",
        "released",
    ] {
        run.expect_screenshot(name)?;
    }

    // The server is stopped, as the API tells it.
    hub.wait_until_stopped(USER, "", Duration::from_secs(60))
        .await?;
    let model = hub.user(USER).await?;
    ensure!(model["servers"][""].is_null(), "{model}");
    Ok(())
}
