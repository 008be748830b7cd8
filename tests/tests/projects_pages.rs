//! The projects pages in a real browser (Debian's Chromium, driven by playwright-core from
//! `tests/browser/projects.mjs`) against the real `xiji` binary on the local backend: a user
//! creates a project with a public dataset attached, finds it in the list, runs it with 1 node
//! and sees the link to the ready server and who runs it; a second user finds it once it is
//! public, stars it and forks it, landing on the fork's page that says "forked from"; the pages
//! speak Chinese. What the browser did is then checked through the API, and the server stopped.
//!
//! Screenshots are kept in `tests/artifacts/projects_pages/` and `target/screenshots/projects_pages/`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::browser::keep_screenshots;
use tests::{browser, expect_json, Hub};

const OWNER: &str = "ann";
const OWNER_PASSWORD: &str = "ann-password-42";
const READER: &str = "ben";
const READER_PASSWORD: &str = "ben-password-42";
const PROJECT: &str = "rain-model";
const FORK: &str = "my-rain";
const DATASET: &str = "weather";

#[tokio::test]
async fn a_user_creates_and_runs_a_project_and_another_stars_and_forks_it_in_chromium() -> Result<()>
{
    let hub = Hub::start().await?;
    hub.create_user(OWNER, OWNER_PASSWORD).await?;
    hub.create_user(READER, READER_PASSWORD).await?;
    let ann = hub.create_token(OWNER, json!({})).await?;
    let ben = hub.create_token(READER, json!({})).await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", &ann)
        .json(&json!({"name": DATASET, "visibility": "public"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "create the dataset").await?;

    let dataset = format!("{OWNER}/{DATASET}");
    let run = browser::run_script(
        &hub,
        "projects.mjs",
        "projects_pages",
        &[
            ("XIJI_OWNER", OWNER),
            ("XIJI_OWNER_PASSWORD", OWNER_PASSWORD),
            ("XIJI_READER", READER),
            ("XIJI_READER_PASSWORD", READER_PASSWORD),
            ("XIJI_PROJECT", PROJECT),
            ("XIJI_FORK", FORK),
            ("XIJI_DATASET", &dataset),
        ],
    )
    .await;
    keep_screenshots(&hub, "projects_pages", &["projects_pages"]);
    // The project's server is stopped whatever the browser did.
    let project_path = format!("/hub/api/projects/{OWNER}/{PROJECT}");
    let project = match hub
        .with_token(Method::GET, &project_path, &ann)
        .send()
        .await
    {
        Ok(resp) => expect_json(resp, StatusCode::OK, "the project").await.ok(),
        Err(_) => None,
    };
    if let Some(server) = project.as_ref().and_then(|p| p["server_name"].as_str()) {
        let resp = hub
            .admin(
                Method::DELETE,
                &format!("/hub/api/users/{OWNER}/servers/{server}"),
            )
            .send()
            .await?;
        ensure!(resp.status().is_success(), "stop: {}", resp.status());
        hub.wait_until_stopped(OWNER, server, Duration::from_secs(60))
            .await?;
    }
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in [
        "list-empty",
        "new-form",
        "created",
        "list",
        "running",
        "delete-refused",
        "search",
        "starred",
        "fork",
        "zh-list",
        "zh-project",
        "zh-new",
    ] {
        run.expect_screenshot(name)?;
    }

    // What the browser did, as the API tells it.
    let project = project.context("the project")?;
    ensure!(project["visibility"] == "public", "{project}");
    ensure!(project["stars"] == 1, "{project}");
    ensure!(project["forks"] == 1, "{project}");
    ensure!(project["datasets"] == json!([dataset]), "{project}");
    ensure!(project["tags"] == json!(["weather", "教学"]), "{project}");
    ensure!(project["last_options"]["nodes"] == "1", "{project}");
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/projects/{READER}/{FORK}"),
            &ben,
        )
        .send()
        .await?;
    let fork = expect_json(resp, StatusCode::OK, "the fork").await?;
    ensure!(
        fork["forked_from"] == json!(format!("{OWNER}/{PROJECT}")),
        "{fork}"
    );
    ensure!(fork["visibility"] == "private", "{fork}");
    ensure!(fork["datasets"] == json!([dataset]), "{fork}");
    Ok(())
}
