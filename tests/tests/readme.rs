//! The README's first command, as a new user runs it: `xiji` with no configuration and no flags
//! in a fresh directory (its data in the relative `./xiji-data`), the printed administrator's
//! password, and in Chromium: log in, press Start on the home page, land in JupyterLab, run a
//! cell. A relative data directory once broke exactly this (the server, started in the user's
//! home, could not find the relative venv path).

use anyhow::{ensure, Context, Result};
use tests::{browser, Hub};

#[tokio::test]
async fn the_readme_first_run_logs_in_starts_and_runs_a_cell_with_the_printed_password(
) -> Result<()> {
    let hub = Hub::start_as_in_readme().await?;
    let log = hub.log();
    ensure!(
        log.contains("First administrator created (shown only this once):")
            && log.contains("user name: admin"),
        "the first start must print the administrator's credentials:\n{log}"
    );
    let password = hub
        .first_admin_password()
        .context("no password: line in the hub's output")?;
    ensure!(
        hub.data_dir().join("xiji.sqlite").is_file(),
        "the database must be in ./xiji-data"
    );
    let run = browser::run_script(
        &hub,
        "jupyterlab.mjs",
        "readme",
        &[("XIJI_USER", "admin"), ("XIJI_PASSWORD", &password)],
    )
    .await?;
    ensure!(
        run.output.contains("\"ok\":true") && run.output.contains("\"output\":\"42\""),
        "the browser did not report 42:\n{}",
        run.output
    );
    run.expect_screenshot("jupyterlab")?;
    Ok(())
}
