//! The home page's administration and the projects' administration, through the API and in a
//! real browser (Debian's Chromium, driven by playwright-core from `tests/browser/home_page.mjs`)
//! against the real `xiji` binary on the local backend:
//!
//! - `PUT /hub/api/home-page` is refused to a user who is not an administrator (403) and a title
//!   over 200 characters is a 400 that saves nothing; anyone signed in reads the texts.
//! - An administrator writes the title, content and footer in English and in Chinese from
//!   `/hub/admin/home-page`; a user sees them on the home page in both languages (the footer on
//!   other pages too), with the public project and dataset they starred in the "popular" lists
//!   (a private project is not there).
//! - The administrator finds a project that a user is running in `/hub/admin/projects` and
//!   deletes it ("release and delete"): the cluster is stopped and the project is gone.
//!
//! Screenshots are kept in `tests/artifacts/home_page/` and `target/screenshots/home_page/`.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::browser::keep_screenshots;
use tests::{browser, expect_api_error, expect_json, Hub};

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "root-password-42";
const OWNER: &str = "ann";
const OWNER_PASSWORD: &str = "ann-password-42";
const READER: &str = "ben";
const READER_PASSWORD: &str = "ben-password-42";
const PROJECT: &str = "rain-model";
const PRIVATE_PROJECT: &str = "diary";
const DOOMED: &str = "old-course";
const DATASET: &str = "weather";

#[tokio::test]
async fn an_admin_writes_the_home_page_in_both_languages_users_see_it_and_a_running_project_is_released_and_deleted(
) -> Result<()> {
    let hub = Hub::start().await?;
    hub.create_user(ADMIN, ADMIN_PASSWORD).await?;
    let resp = hub
        .admin(Method::PATCH, &format!("/hub/api/users/{ADMIN}"))
        .json(&json!({"admin": true}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "make the administrator").await?;
    hub.create_user(OWNER, OWNER_PASSWORD).await?;
    hub.create_user(READER, READER_PASSWORD).await?;
    let root = hub.create_token(ADMIN, json!({})).await?;
    let ann = hub.create_token(OWNER, json!({})).await?;
    let ben = hub.create_token(READER, json!({})).await?;

    // The API: readers read, only administrators write, and too long is a 400.
    let texts = json!({"en": {"title": "Hacked"}, "zh": {}});
    let resp = hub
        .with_token(Method::PUT, "/hub/api/home-page", &ben)
        .json(&texts)
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::FORBIDDEN, "a user's PUT").await?;
    ensure!(message.contains("administrators"), "{message}");
    let too_long = json!({"en": {"title": "t".repeat(201)}, "zh": {"title": "欢迎"}});
    let resp = hub
        .with_token(Method::PUT, "/hub/api/home-page", &root)
        .json(&too_long)
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::BAD_REQUEST, "a title of 201 characters").await?;
    ensure!(
        message.contains("English title") && message.contains("at most 200"),
        "{message}"
    );
    let resp = hub
        .with_token(Method::GET, "/hub/api/home-page", &ben)
        .send()
        .await?;
    let page = expect_json(resp, StatusCode::OK, "a user's GET").await?;
    ensure!(
        page["en"]["title"] == "" && page["zh"]["title"] == "" && page["updated"].is_null(),
        "nothing was saved: {page}"
    );

    // A public project and dataset that ben stars, a private project, and one that ann runs.
    for (path, body) in [
        (
            "/hub/api/datasets",
            json!({"name": DATASET, "visibility": "public", "description": "Hourly rain and wind"}),
        ),
        (
            "/hub/api/projects",
            json!({"name": PROJECT, "visibility": "public", "description": "A **rainfall** model"}),
        ),
        ("/hub/api/projects", json!({"name": PRIVATE_PROJECT})),
        ("/hub/api/projects", json!({"name": DOOMED})),
    ] {
        let resp = hub
            .with_token(Method::POST, path, &ann)
            .json(&body)
            .send()
            .await?;
        expect_json(resp, StatusCode::CREATED, path).await?;
    }
    for path in [
        format!("/hub/api/projects/{OWNER}/{PROJECT}/star"),
        format!("/hub/api/datasets/{OWNER}/{DATASET}/star"),
    ] {
        let resp = hub.with_token(Method::PUT, &path, &ben).send().await?;
        ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/projects/{OWNER}/{DOOMED}/run"),
            &ann,
        )
        .json(&json!({}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "run: {}", resp.status());
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/projects/{OWNER}/{DOOMED}"),
            &ann,
        )
        .send()
        .await?;
    let doomed = expect_json(resp, StatusCode::OK, "the running project").await?;
    let server = doomed["server_name"]
        .as_str()
        .context("server_name")?
        .to_owned();
    hub.wait_until_ready(OWNER, &server, Duration::from_secs(120))
        .await?;

    let run = browser::run_script(
        &hub,
        "home_page.mjs",
        "home_page",
        &[
            ("XIJI_ADMIN", ADMIN),
            ("XIJI_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("XIJI_READER", READER),
            ("XIJI_READER_PASSWORD", READER_PASSWORD),
            ("XIJI_PROJECT", &format!("{OWNER}/{PROJECT}")),
            (
                "XIJI_PRIVATE_PROJECT",
                &format!("{OWNER}/{PRIVATE_PROJECT}"),
            ),
            ("XIJI_DATASET", &format!("{OWNER}/{DATASET}")),
            ("XIJI_DOOMED", &format!("{OWNER}/{DOOMED}")),
            ("XIJI_RUNNER", OWNER),
        ],
    )
    .await;
    keep_screenshots(&hub, "home_page", &["home_page"]);
    // Whatever the browser did, nothing is left running.
    let model = hub.user(OWNER).await?;
    if !model["servers"][&server].is_null() {
        let _ = hub
            .admin(
                Method::DELETE,
                &format!("/hub/api/users/{OWNER}/servers/{server}"),
            )
            .send()
            .await;
        hub.wait_until_stopped(OWNER, &server, Duration::from_secs(60))
            .await?;
    }
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in [
        "admin-home-page-saved",
        "home-en",
        "home-zh",
        "footer-elsewhere",
        "admin-projects",
        "admin-projects-deleted",
    ] {
        run.expect_screenshot(name)?;
    }

    // What the browser did, as the API tells it.
    let resp = hub
        .with_token(Method::GET, "/hub/api/home-page", &ben)
        .send()
        .await?;
    let page = expect_json(resp, StatusCode::OK, "the saved texts").await?;
    ensure!(
        page["en"]["title"] == "Welcome to the physics cluster",
        "{page}"
    );
    ensure!(page["zh"]["title"] == "欢迎使用物理系计算平台", "{page}");
    ensure!(page["updated_by"] == ADMIN, "{page}");
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/projects/{OWNER}/{DOOMED}"),
            &ann,
        )
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "the deleted project").await?;
    let model = hub.user(OWNER).await?;
    ensure!(
        model["servers"][&server].is_null(),
        "the project's cluster was released: {model}"
    );
    Ok(())
}
