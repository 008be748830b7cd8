//! A new user's first session in a real browser (Debian's Chromium, driven by playwright-core
//! from `tests/browser/jupyterlab.mjs`): the admin creates the user with a password through the
//! API; the browser logs in at /hub/login, starts the server from /hub/home, lands in JupyterLab
//! through the proxy, creates a notebook, runs `print(6*7)` and sees `42`. Screenshots are kept
//! in `tests/artifacts/browser/`.

use std::time::Duration;

use anyhow::{ensure, Result};
use tests::{browser, Hub};

#[tokio::test]
async fn a_new_user_logs_in_starts_jupyterlab_and_runs_a_notebook_cell_in_chromium() -> Result<()> {
    let hub = Hub::start().await?;
    hub.create_user("bella", "bella-password-42").await?;
    let run = browser::run_script(
        &hub,
        "jupyterlab.mjs",
        "browser",
        &[
            ("XIJI_USER", "bella"),
            ("XIJI_PASSWORD", "bella-password-42"),
        ],
    )
    .await?;
    ensure!(
        run.output.contains("\"ok\":true") && run.output.contains("\"output\":\"42\""),
        "the browser did not report 42:\n{}",
        run.output
    );
    for name in ["login", "home", "started", "jupyterlab", "output"] {
        run.expect_screenshot(name)?;
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
