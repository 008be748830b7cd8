//! Quotas and capacity caps against the real `xiji` binary on the local backend, through the API
//! and in a real browser (Debian's Chromium, driven by playwright-core from
//! `tests/browser/quotas.mjs`):
//!
//! - An administrator sets the students' default limits (cores and sizes written as in the spawn
//!   form); a user's exception overrides one field only, the others stay the role's, and removing
//!   it gives the role's back. A user reads their own quota and their use (a running server
//!   counts), never another user's; only administrators change quotas or see the capacity.
//! - Bad limits are 400s that say what to write, and change nothing.
//! - The capacity shows what the backend reports, the caps and the smaller of both.
//! - In Chromium the administrator changes a role's default, gives a user an exception and caps
//!   the capacity on `/hub/admin/quotas`; the user sees their limits and use in "Your quota" on
//!   the home page.
//!
//! Screenshots are kept in `tests/artifacts/quotas/` and `target/screenshots/quotas/`.

use std::time::Duration;

use anyhow::{ensure, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser::keep_screenshots;
use tests::{browser, expect_api_error, expect_json, Hub};

const ADMIN: &str = "root";
const ADMIN_PASSWORD: &str = "root-password-42";
const ANN: &str = "ann";
const ANN_PASSWORD: &str = "ann-password-42";
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "bob-password-42";

async fn hub_with_users() -> Result<(Hub, String, String, String)> {
    let hub = Hub::start().await?;
    hub.create_user(ADMIN, ADMIN_PASSWORD).await?;
    let resp = hub
        .admin(Method::PATCH, &format!("/hub/api/users/{ADMIN}"))
        .json(&json!({"admin": true}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "make the administrator").await?;
    hub.create_user(ANN, ANN_PASSWORD).await?;
    hub.create_user(BOB, BOB_PASSWORD).await?;
    let root = hub.create_token(ADMIN, json!({})).await?;
    let ann = hub.create_token(ANN, json!({})).await?;
    let bob = hub.create_token(BOB, json!({})).await?;
    Ok((hub, root, ann, bob))
}

async fn call(
    hub: &Hub,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Result<reqwest::Response> {
    let request = hub.with_token(method, path, token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    Ok(request.send().await?)
}

#[tokio::test]
async fn a_role_default_holds_for_its_users_and_an_exception_overrides_only_its_fields(
) -> Result<()> {
    let (hub, root, ann, bob) = hub_with_users().await?;

    let resp = call(
        &hub,
        Method::PUT,
        "/hub/api/quotas/roles/student",
        &root,
        Some(json!({"clusters": 2, "nodes": 4, "cpus": "1.5", "memory": "16G", "gpus": 0})),
    )
    .await?;
    let role = expect_json(resp, StatusCode::OK, "set the students' default").await?;
    ensure!(
        role["role"] == "student"
            && role["limits"]
                == json!({"clusters": 2, "nodes": 4, "cpu_millis": 1500, "memory_mib": 16384,
                      "gpus": 0, "storage_mib": null}),
        "{role}"
    );

    // Ann reads her own quota: her role's, and nothing used yet.
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{ANN}/quota"),
        &ann,
        None,
    )
    .await?;
    let quota = expect_json(resp, StatusCode::OK, "ann's quota").await?;
    ensure!(
        quota["role"] == "student"
            && quota["quota"] == role["limits"]
            && quota["exception"].is_null(),
        "{quota}"
    );
    ensure!(
        quota["used"]
            == json!({"clusters": 0, "nodes": 0, "cpu_millis": 0, "memory_mib": 0, "gpus": 0,
                      "storage_mib": 0}),
        "{quota}"
    );

    // An exception of ann's changes her nodes only; bob keeps the role's.
    let resp = call(
        &hub,
        Method::PUT,
        &format!("/hub/api/users/{ANN}/quota"),
        &root,
        Some(json!({"nodes": 8})),
    )
    .await?;
    let quota = expect_json(resp, StatusCode::OK, "ann's exception").await?;
    ensure!(
        quota["quota"]
            == json!({"clusters": 2, "nodes": 8, "cpu_millis": 1500, "memory_mib": 16384,
                      "gpus": 0, "storage_mib": null}),
        "only nodes changed: {quota}"
    );
    ensure!(
        quota["role_quota"] == role["limits"] && quota["exception"]["limits"]["nodes"] == 8,
        "{quota}"
    );
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{BOB}/quota"),
        &bob,
        None,
    )
    .await?;
    let bobs = expect_json(resp, StatusCode::OK, "bob's quota").await?;
    ensure!(bobs["quota"]["nodes"] == 4, "{bobs}");

    // A running server counts in ann's use.
    hub.start_server(ANN).await?;
    hub.wait_until_ready(ANN, "", Duration::from_secs(120))
        .await?;
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{ANN}/quota"),
        &ann,
        None,
    )
    .await?;
    let quota = expect_json(resp, StatusCode::OK, "ann's use").await?;
    ensure!(
        quota["used"]["clusters"] == 1 && quota["used"]["nodes"] == 1,
        "{quota}"
    );
    hub.stop_server(ANN).await?;

    // Removing the exception gives the role's limits back.
    let resp = call(
        &hub,
        Method::DELETE,
        &format!("/hub/api/users/{ANN}/quota"),
        &root,
        None,
    )
    .await?;
    ensure!(resp.status() == StatusCode::NO_CONTENT, "{}", resp.status());
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{ANN}/quota"),
        &root,
        None,
    )
    .await?;
    let quota = expect_json(resp, StatusCode::OK, "ann's quota again").await?;
    ensure!(
        quota["quota"] == role["limits"] && quota["exception"].is_null(),
        "{quota}"
    );

    // The capacity: what the local backend reports (this host), the caps, the smaller of both.
    let resp = call(
        &hub,
        Method::PUT,
        "/hub/api/capacity",
        &root,
        Some(json!({"nodes": 10, "cpus": 0.5, "memory": "512M"})),
    )
    .await?;
    let capacity = expect_json(resp, StatusCode::OK, "cap the capacity").await?;
    ensure!(
        capacity["caps"]
            == json!({"nodes": 10, "cpu_millis": 500, "memory_mib": 512, "gpus": null}),
        "{capacity}"
    );
    ensure!(
        capacity["reported"]["cpu_millis"].as_i64().unwrap_or(0) >= 1000
            && capacity["effective"]["cpu_millis"] == 500
            && capacity["effective"]["nodes"] == 10
            && capacity["effective"]["gpus"] == capacity["reported"]["gpus"],
        "{capacity}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_limits_are_400s_that_say_what_to_write_and_users_may_not_change_quotas() -> Result<()>
{
    let (hub, root, ann, _bob) = hub_with_users().await?;
    let role_path = "/hub/api/quotas/roles/student";
    for (body, expected) in [
        (json!({"nodes": -1}), "nodes cannot be negative"),
        (json!({"nodes": 2.5}), "nodes must be a whole number"),
        (
            json!({"cpus": "many"}),
            "cpus must be a number of CPU cores",
        ),
        (json!({"memory": "lots"}), "write a size like \"2G\""),
        (json!({"disk": 10}), "Unknown limit \"disk\""),
        (
            json!({"cpus": 1, "cpu_millis": 1000}),
            "Give cpus or cpu_millis, not both",
        ),
        (json!(["nodes", 4]), "JSON object"),
    ] {
        let resp = call(&hub, Method::PUT, role_path, &root, Some(body.clone())).await?;
        let message = expect_api_error(resp, StatusCode::BAD_REQUEST, &body.to_string()).await?;
        ensure!(message.contains(expected), "{body}: {message}");
    }
    let resp = call(
        &hub,
        Method::PUT,
        "/hub/api/capacity",
        &root,
        Some(json!({"clusters": 3})),
    )
    .await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "a cap on clusters").await?;
    ensure!(message.contains("nodes, cpus"), "{message}");
    let resp = call(
        &hub,
        Method::PUT,
        &format!("/hub/api/users/{ANN}/quota"),
        &root,
        Some(json!({})),
    )
    .await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "an empty exception").await?;
    ensure!(message.contains("sets no limit"), "{message}");
    let resp = call(&hub, Method::GET, "/hub/api/quotas/roles/dean", &root, None).await?;
    let message = expect_api_error(resp, StatusCode::NOT_FOUND, "an unknown role").await?;
    ensure!(message.contains("student, teacher, admin"), "{message}");
    let resp = call(
        &hub,
        Method::GET,
        "/hub/api/users/nobody/quota",
        &root,
        None,
    )
    .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "an unknown user").await?;
    // Nothing was saved.
    let resp = call(&hub, Method::GET, role_path, &root, None).await?;
    let role = expect_json(resp, StatusCode::OK, "the students' default").await?;
    ensure!(role["updated"].is_null(), "{role}");
    ensure!(
        role["limits"]
            .as_object()
            .is_some_and(|l| l.values().all(Value::is_null)),
        "{role}"
    );

    // A user may not change quotas, read the roles' or the capacity, or read another's quota.
    for (method, path, body) in [
        (
            Method::PUT,
            role_path.to_owned(),
            Some(json!({"nodes": 100})),
        ),
        (Method::GET, "/hub/api/quotas/roles".to_owned(), None),
        (
            Method::PUT,
            format!("/hub/api/users/{ANN}/quota"),
            Some(json!({"nodes": 100})),
        ),
        (Method::DELETE, format!("/hub/api/users/{ANN}/quota"), None),
        (Method::GET, "/hub/api/capacity".to_owned(), None),
        (Method::PUT, "/hub/api/capacity".to_owned(), Some(json!({}))),
    ] {
        let resp = call(&hub, method.clone(), &path, &ann, body).await?;
        let message = expect_api_error(
            resp,
            StatusCode::FORBIDDEN,
            &format!("ann's {method} {path}"),
        )
        .await?;
        ensure!(message.contains("administrators"), "{path}: {message}");
    }
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{BOB}/quota"),
        &ann,
        None,
    )
    .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "ann reads bob's quota").await?;
    Ok(())
}

#[tokio::test]
async fn an_admin_sets_quotas_on_the_admin_page_and_the_user_sees_them_on_the_home_page(
) -> Result<()> {
    let (hub, root, _ann, _bob) = hub_with_users().await?;
    // Bob has an exception already: the page lists it.
    let resp = call(
        &hub,
        Method::PUT,
        &format!("/hub/api/users/{BOB}/quota"),
        &root,
        Some(json!({"gpus": 2})),
    )
    .await?;
    expect_json(resp, StatusCode::OK, "bob's exception").await?;
    // Ann runs a server, so her card shows a use.
    hub.start_server(ANN).await?;
    hub.wait_until_ready(ANN, "", Duration::from_secs(120))
        .await?;

    let run = browser::run_script(
        &hub,
        "quotas.mjs",
        "quotas",
        &[
            ("XIJI_ADMIN", ADMIN),
            ("XIJI_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("XIJI_USER", ANN),
            ("XIJI_USER_PASSWORD", ANN_PASSWORD),
            ("XIJI_LISTED", BOB),
        ],
    )
    .await;
    keep_screenshots(&hub, "quotas", &["quotas"]);
    hub.stop_server(ANN).await?;
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in ["admin-quotas", "admin-quotas-saved", "home-quota"] {
        run.expect_screenshot(name)?;
    }

    // What the page saved, as the API tells it.
    let resp = call(
        &hub,
        Method::GET,
        &format!("/hub/api/users/{ANN}/quota"),
        &root,
        None,
    )
    .await?;
    let quota = expect_json(resp, StatusCode::OK, "ann's quota").await?;
    ensure!(
        quota["quota"]
            == json!({"clusters": 3, "nodes": 6, "cpu_millis": 2500, "memory_mib": 8192,
                      "gpus": null, "storage_mib": null}),
        "the role's default with ann's exception of 2.5 cores: {quota}"
    );
    ensure!(
        quota["exception"]["limits"]
            == json!({"clusters": null, "nodes": null, "cpu_millis": 2500, "memory_mib": null,
                      "gpus": null, "storage_mib": null}),
        "{quota}"
    );
    let resp = call(&hub, Method::GET, "/hub/api/capacity", &root, None).await?;
    let capacity = expect_json(resp, StatusCode::OK, "the capacity").await?;
    ensure!(capacity["caps"]["nodes"] == 12, "{capacity}");
    Ok(())
}
