//! A new user's first session in a real browser (Debian's Chromium, driven by playwright-core
//! from `tests/browser/jupyterlab.mjs`): the admin creates the user with a password through the
//! API; the browser logs in at /hub/login, starts the server from /hub/home, lands in JupyterLab
//! through the proxy, creates a notebook, runs `print(6*7)` and sees `42`. Screenshots are kept
//! in `tests/artifacts/browser/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tests::{artifacts_dir, required_env, tail, workspace_root, Hub};

/// The browser run, including JupyterLab's first load on a busy 2-core machine.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::test]
async fn a_new_user_logs_in_starts_jupyterlab_and_runs_a_notebook_cell_in_chromium() -> Result<()> {
    let node_modules = PathBuf::from(required_env("XIJI_TEST_NODE_MODULES")?);
    ensure!(
        node_modules
            .join("playwright-core")
            .join("package.json")
            .is_file(),
        "{} has no playwright-core: run tests/setup-env.sh",
        node_modules.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        PathBuf::from(&chromium).is_file(),
        "no Chromium at {chromium}: run tests/setup-env.sh (it installs Debian's chromium)"
    );
    let script = workspace_root().join("tests/browser/jupyterlab.mjs");
    let artifacts = artifacts_dir().join("browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts)?;

    let hub = Hub::start().await?;
    hub.create_user("bella", "bella-password-42").await?;

    let log_path = hub.scratch_path("browser.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = hub
        .command("node")
        .arg(&script)
        .env("XIJI_URL", hub.base_url())
        .env("XIJI_USER", "bella")
        .env("XIJI_PASSWORD", "bella-password-42")
        .env("XIJI_ARTIFACTS", &artifacts)
        .env("XIJI_TEST_NODE_MODULES", &node_modules)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot run node: is Node.js on PATH? (tests/setup-env.sh needs it too)")?;
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the browser run took more than {BROWSER_TIMEOUT:?}:\n{}",
                tail(&std::fs::read_to_string(&log_path).unwrap_or_default(), 100)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    eprintln!("===== browser =====\n{output}");
    ensure!(
        status.success(),
        "the browser run failed ({status}); screenshots in {}:\n{}",
        artifacts.display(),
        tail(&output, 60)
    );
    ensure!(
        output.contains("\"ok\":true") && output.contains("\"output\":\"42\""),
        "the browser did not report 42:\n{output}"
    );
    for name in ["login", "home", "started", "jupyterlab", "output"] {
        let found = std::fs::read_dir(&artifacts)?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(name));
        ensure!(found, "no {name} screenshot in {}", artifacts.display());
    }
    // The server the browser started is the one the API reports as ready.
    let server = hub
        .wait_until_ready("bella", "", Duration::from_secs(5))
        .await?;
    ensure!(
        server["url"] == serde_json::json!("/user/bella/"),
        "{server}"
    );
    Ok(())
}
