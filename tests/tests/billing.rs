//! Billing against the real hub, on SQLite and PostgreSQL: ledger rows written into the hub's
//! database with SQL (the meter writes them in a real run; here their sizes and costs are chosen)
//! are reported per user, group, project and installation, per day and per project adding up to
//! the total, in JSON and CSV alike, to whom may see them; a used-up budget refuses a start with
//! a 403 that says so and releases a running server after its grace period; the usage page draws
//! its chart in Chromium.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, random_hex, Hub, HubOptions};

/// Runs SQL in the hub's database (its SQLite file, or the PostgreSQL database).
fn sql(hub: &Hub, database_url: Option<&str>, statement: &str) -> Result<String> {
    let output = match database_url {
        Some(url) => std::process::Command::new("psql")
            .args([
                url,
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                statement,
            ])
            .output(),
        None => std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 10000"])
            .arg(hub.data_dir().join("xiji.sqlite"))
            .arg(statement)
            .output(),
    }
    .context("running the database's client")?;
    ensure!(
        output.status.success(),
        "{statement}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// One ledger row: `secs` seconds of one node of 2 CPUs, 1 GiB and `gpus` GPUs on `day`,
/// costing `cost` millionths.
#[allow(clippy::too_many_arguments)]
fn ledger_row(
    hub: &Hub,
    db: Option<&str>,
    user: &str,
    project: Option<i64>,
    day: &str,
    start_s: i64,
    secs: i64,
    gpus: i64,
    cost: i64,
) -> Result<()> {
    let project = project.map_or("NULL".to_owned(), |p| p.to_string());
    sql(
        hub,
        db,
        &format!(
            "INSERT INTO usage_ledger (idem_key, run, user_id, user_name, project_id, server_name, image, \
             node, cpu_millis, memory_mib, gpus, start_s, end_s, day, cpu_mcs, mib_s, gpu_s, cpu_used_ms, \
             price_id, cost_micros, kind, recorded) SELECT '{key}', 'test-run', id, name, {project}, '', 'img', \
             0, 2000, 1024, {gpus}, {start_s}, {end_s}, '{day}', {cpu_mcs}, {mib_s}, {gpu_s}, {used}, \
             (SELECT MIN(id) FROM prices), {cost}, 'checkpoint', 0 FROM users WHERE name = '{user}'",
            key = random_hex(12),
            end_s = start_s + secs,
            cpu_mcs = 2000 * secs,
            mib_s = 1024 * secs,
            gpu_s = gpus * secs,
            used = 500 * secs,
        ),
    )?;
    Ok(())
}

async fn get_json(hub: &Hub, token: &str, path: &str, what: &str) -> Result<Value> {
    let resp = hub.with_token(Method::GET, path, token).send().await?;
    expect_json(resp, StatusCode::OK, what).await
}

async fn get_csv(hub: &Hub, token: &str, path: &str) -> Result<String> {
    let resp = hub.with_token(Method::GET, path, token).send().await?;
    ensure!(resp.status() == StatusCode::OK, "{path}: {}", resp.status());
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ensure!(ct.starts_with("text/csv"), "{path}: {ct}");
    Ok(resp.text().await?)
}

fn micros(v: &Value) -> i64 {
    v["cost_micros"].as_i64().unwrap_or(i64::MIN)
}

fn sum(lines: &Value) -> i64 {
    lines
        .as_array()
        .map(|a| a.iter().map(micros).sum())
        .unwrap_or(i64::MIN)
}

/// `12.345678` → 12345678.
fn csv_micros(text: &str) -> Result<i64> {
    let (whole, frac) = text.split_once('.').context("a decimal")?;
    Ok(whole.parse::<i64>()? * 1_000_000 + frac.parse::<i64>()?)
}

/// The CSV's `total` line's cost, and the sum of its day lines' costs.
fn csv_totals(csv: &str) -> Result<(i64, i64)> {
    let mut lines = csv.lines();
    let header = lines.next().context("a header")?;
    ensure!(header.ends_with(",cost"), "{header}");
    let mut days = 0;
    let mut total = None;
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let cost = csv_micros(cells.last().context("cells")?)?;
        if cells[0] == "total" {
            total = Some(cost);
        } else {
            days += cost;
        }
    }
    Ok((total.context("no total line")?, days))
}

async fn reports_add_up_and_are_shown_to_whom_they_concern(
    database_url: Option<String>,
) -> Result<()> {
    let db = database_url.clone();
    let hub = Hub::start_with(HubOptions {
        database_url,
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("alice", "alice-password-1").await?;
    hub.create_user("bob", "bob-password-12").await?;
    let alice = hub.create_token("alice", json!({})).await?;
    let bob = hub.create_token("bob", json!({})).await?;
    let admin = hub.admin_token().to_owned();
    let resp = hub
        .admin(Method::POST, "/hub/api/groups/physics")
        .json(&json!({"users": ["alice"]}))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::CREATED,
        "group: {}",
        resp.status()
    );
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", &alice)
        .json(&json!({"name": "thesis"}))
        .send()
        .await?;
    let project = expect_json(resp, StatusCode::CREATED, "create a project").await?;
    let project_id = project["id"].as_i64().context("project id")?;

    // March 2026: alice on three days, in and out of her project; bob once; April is outside.
    let base = 1_772_323_200; // 2026-03-01T00:00:00Z
    let rows = [
        (
            "alice",
            Some(project_id),
            "2026-03-01",
            0,
            3600,
            0,
            2_200_000,
        ),
        ("alice", None, "2026-03-01", 7200, 1800, 1, 6_100_001),
        (
            "alice",
            Some(project_id),
            "2026-03-02",
            86_400,
            60,
            0,
            36_667,
        ),
        (
            "alice",
            Some(project_id),
            "2026-03-31",
            30 * 86_400,
            7,
            0,
            3,
        ),
        ("bob", None, "2026-03-02", 86_400, 600, 0, 366_666),
        ("bob", None, "2026-04-01", 31 * 86_400, 600, 0, 366_666),
    ];
    for (user, project, day, offset, secs, gpus, cost) in rows {
        ledger_row(
            &hub,
            db.as_deref(),
            user,
            project,
            day,
            base + offset,
            secs,
            gpus,
            cost,
        )?;
    }
    let alice_total = 2_200_000 + 6_100_001 + 36_667 + 3;

    let report = get_json(
        &hub,
        &alice,
        "/hub/api/users/alice/usage?month=2026-03",
        "alice's usage",
    )
    .await?;
    ensure!(micros(&report["total"]) == alice_total, "{report:#}");
    ensure!(
        report["days"].as_array().map(Vec::len) == Some(31),
        "a line per day of March"
    );
    ensure!(
        sum(&report["days"]) == alice_total,
        "days add up: {report:#}"
    );
    ensure!(
        sum(&report["projects"]) == alice_total,
        "projects add up: {report:#}"
    );
    let total = &report["total"];
    ensure!(
        total["cpu_millicore_seconds"] == json!(2000 * (3600 + 1800 + 60 + 7)),
        "{total}"
    );
    ensure!(total["gpu_seconds"] == json!(1800), "{total}");
    ensure!(
        total["efficiency"]
            .as_f64()
            .is_some_and(|e| (e - 0.25).abs() < 1e-9),
        "used / reserved: {total}"
    );
    let in_project = report["projects"]
        .as_array()
        .and_then(|p| p.iter().find(|l| l["label"] == json!("alice/thesis")))
        .context("alice/thesis's line")?;
    ensure!(micros(in_project) == 2_200_000 + 36_667 + 3, "{in_project}");

    // The CSV says the same, to the millionth.
    let csv = get_csv(&hub, &alice, "/hub/api/users/alice/usage.csv?month=2026-03").await?;
    let (csv_total, csv_days) = csv_totals(&csv)?;
    ensure!(csv_total == alice_total && csv_days == alice_total, "{csv}");

    // A range of days, the project, the group, the installation.
    let range = get_json(
        &hub,
        &alice,
        "/hub/api/users/alice/usage?from=2026-03-02&to=2026-03-02",
        "one day",
    )
    .await?;
    ensure!(micros(&range["total"]) == 36_667, "{range:#}");
    let project = get_json(
        &hub,
        &alice,
        "/hub/api/projects/alice/thesis/usage?month=2026-03",
        "the project's usage",
    )
    .await?;
    ensure!(
        micros(&project["total"]) == 2_200_000 + 36_667 + 3,
        "{project:#}"
    );
    let by_query = get_json(
        &hub,
        &alice,
        "/hub/api/usage?project=alice/thesis&month=2026-03",
        "?project=",
    )
    .await?;
    ensure!(by_query["total"] == project["total"], "{by_query:#}");
    let csv = get_csv(
        &hub,
        &alice,
        "/hub/api/projects/alice/thesis/usage.csv?month=2026-03",
    )
    .await?;
    ensure!(
        csv_totals(&csv)? == (micros(&project["total"]), micros(&project["total"])),
        "{csv}"
    );
    let group = get_json(
        &hub,
        &admin,
        "/hub/api/groups/physics/usage?month=2026-03",
        "the group's usage",
    )
    .await?;
    ensure!(
        micros(&group["total"]) == alice_total && sum(&group["users"]) == alice_total,
        "{group:#}"
    );
    let all = get_json(
        &hub,
        &admin,
        "/hub/api/usage?month=2026-03",
        "the installation's usage",
    )
    .await?;
    let all_total = alice_total + 366_666;
    ensure!(micros(&all["total"]) == all_total, "{all:#}");
    for list in ["days", "projects", "users"] {
        ensure!(sum(&all[list]) == all_total, "{list} add up: {all:#}");
    }
    let csv = get_csv(&hub, &admin, "/hub/api/usage.csv?month=2026-03").await?;
    ensure!(csv_totals(&csv)? == (all_total, all_total), "{csv}");

    // Who may see what.
    let resp = hub
        .with_token(Method::GET, "/hub/api/users/alice/usage", &bob)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "bob reads alice's usage").await?;
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/alice/thesis/usage", &bob)
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::NOT_FOUND,
        "bob reads alice's project's usage",
    )
    .await?;
    let resp = hub
        .with_token(Method::GET, "/hub/api/groups/physics/usage", &alice)
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::FORBIDDEN,
        "a student reads her group's usage",
    )
    .await?;
    let resp = hub
        .with_token(Method::GET, "/hub/api/usage", &alice)
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::FORBIDDEN,
        "a user reads the installation's usage",
    )
    .await?;
    let resp = hub
        .with_token(
            Method::GET,
            "/hub/api/users/alice/usage?month=March",
            &alice,
        )
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::BAD_REQUEST, "a month that is not one").await?;
    ensure!(message.contains("2026-03"), "{message}");

    // Prices: only from now on, and administrators only.
    let resp = hub
        .with_token(Method::POST, "/hub/api/prices", &alice)
        .json(&json!({"cpu_core_hour": 1, "memory_gib_hour": 1, "gpu_hour": 1}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "a user sets prices").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/prices")
        .json(&json!({"cpu_core_hour": "2", "memory_gib_hour": 0.25, "gpu_hour": 20, "effective_from": "2020-01-01T00:00:00Z"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "a price from the past").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/prices")
        .json(&json!({"cpu_core_hour": "2", "memory_gib_hour": 0.25, "gpu_hour": 20, "note": "new term"}))
        .send()
        .await?;
    let price = expect_json(resp, StatusCode::CREATED, "a new price").await?;
    ensure!(
        price["cpu_core_hour_micros"] == json!(2_000_000)
            && price["memory_gib_hour_micros"] == json!(250_000),
        "{price}"
    );
    let prices = get_json(&hub, &alice, "/hub/api/prices", "prices").await?;
    ensure!(prices["current"] == price["id"], "{prices:#}");
    let resp = hub
        .admin(Method::DELETE, &format!("/hub/api/prices/{}", price["id"]))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "deleting the price in force").await?;
    Ok(())
}

#[tokio::test]
async fn reports_add_up_and_are_shown_to_whom_they_concern_on_sqlite() -> Result<()> {
    reports_add_up_and_are_shown_to_whom_they_concern(None).await
}

#[tokio::test]
async fn reports_add_up_and_are_shown_to_whom_they_concern_on_postgres() -> Result<()> {
    reports_add_up_and_are_shown_to_whom_they_concern(Some(tests::new_postgres_database(
        "billing",
    )?))
    .await
}

/// Today in the hub's time zone, as the hub says it (the default period ends today).
async fn today(hub: &Hub, token: &str, user: &str) -> Result<String> {
    let report = get_json(
        hub,
        token,
        &format!("/hub/api/users/{user}/usage"),
        "today's usage",
    )
    .await?;
    Ok(report["to"].as_str().context("to")?.to_owned())
}

#[tokio::test]
async fn a_used_up_budget_refuses_a_start_and_releases_a_running_server_after_its_grace_period(
) -> Result<()> {
    let hub = Hub::start().await?;
    hub.create_user("carol", "carol-password-1").await?;
    let carol = hub.create_token("carol", json!({})).await?;
    let resp = hub
        .admin(Method::PUT, "/hub/api/budgets/settings")
        .json(&json!({"release_grace_seconds": 3}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "budget settings").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/budgets")
        .json(&json!({"kind": "user", "target": "carol", "limit": "1.5"}))
        .send()
        .await?;
    let budget = expect_json(resp, StatusCode::OK, "carol's budget").await?;
    ensure!(
        budget["state"] == json!("ok") && budget["limit_micros"] == json!(1_500_000),
        "{budget}"
    );

    hub.start_server("carol").await?;
    hub.wait_until_ready("carol", "", Duration::from_secs(90))
        .await?;
    let live = get_json(
        &hub,
        &carol,
        "/hub/api/users/carol/usage/live",
        "live usage",
    )
    .await?;
    ensure!(
        live["running"] == json!(true) && live["budget"]["state"] == json!("ok"),
        "{live:#}"
    );

    // 1.3 units of 1.5: a warning, the server keeps running.
    let day = today(&hub, &carol, "carol").await?;
    let now = chrono::Utc::now().timestamp();
    ledger_row(&hub, None, "carol", None, &day, now - 100, 10, 0, 1_300_000)?;
    let live = get_json(
        &hub,
        &carol,
        "/hub/api/users/carol/usage/live",
        "live usage",
    )
    .await?;
    ensure!(
        live["budget"]["state"] == json!("warning")
            && live["budget"]["percent"].as_i64() >= Some(86),
        "{live:#}"
    );
    // A start past the warning threshold hears it in its progress stream.
    hub.stop_server("carol").await?;
    // The stream is read while the start is under way (a ready server's stream says only
    // "ready").
    let (events, started) = tokio::join!(
        async {
            // Until the start has begun, the stream is a 400.
            let mut tries = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                match hub.progress_events("carol", "").await {
                    Err(_) if tries < 30 => tries += 1,
                    other => break other,
                }
            }
        },
        hub.with_token(Method::POST, "/hub/api/users/carol/server", &carol)
            .send()
    );
    ensure!(started?.status().is_success());
    let events = events?;
    ensure!(
        events.iter().any(|e| e["budget_warning"] == json!(true)
            && e["message"].as_str().is_some_and(|m| m.contains("% used"))),
        "no budget warning in the progress stream: {events:#?}"
    );

    // Used up: a start is refused with the reason, the running server goes after the grace period.
    ledger_row(&hub, None, "carol", None, &day, now - 90, 10, 0, 300_000)?;
    let live = get_json(
        &hub,
        &carol,
        "/hub/api/users/carol/usage/live",
        "live usage",
    )
    .await?;
    ensure!(
        live["budget"]["state"] == json!("exceeded") && live["budget"]["release_at"].is_string(),
        "{live:#}"
    );
    let resp = hub
        .with_token(Method::POST, "/hub/api/users/carol/servers/second", &carol)
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::FORBIDDEN, "a start over budget").await?;
    ensure!(
        message.contains("budget") && message.contains("used up"),
        "{message}"
    );
    let stopped_by = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let user = hub.user("carol").await?;
        if user["servers"].as_object().is_none_or(|s| s.is_empty()) {
            break;
        }
        if std::time::Instant::now() > stopped_by {
            bail!("carol's server still runs a minute after her budget ran out: {user:#}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        hub.log().contains("its budget is used up"),
        "the release is logged"
    );
    Ok(())
}

#[tokio::test]
async fn the_usage_page_draws_the_months_cost_per_day_and_resource_in_chromium() -> Result<()> {
    // The docker backend, for the spawn form's sizes (no cluster is started).
    let hub = Hub::start_with(HubOptions {
        spawner_toml: "backend = \"docker\"\n".into(),
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("dora", "dora-password-1").await?;
    let dora = hub.create_token("dora", json!({})).await?;
    // Prices of the spawn form's projection: 2 a core-hour, 0.25 a GiB-hour, 20 a GPU-hour.
    let resp = hub
        .admin(Method::POST, "/hub/api/prices")
        .json(&json!({"cpu_core_hour": 2, "memory_gib_hour": "0.25", "gpu_hour": 20}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "prices").await?;
    let base = 1_772_323_200; // 2026-03-01T00:00:00Z
    for (day, offset, secs, gpus, cost) in [
        ("2026-03-03", 2 * 86_400, 7200, 0, 4_400_000),
        ("2026-03-09", 8 * 86_400, 3600, 1, 12_200_000),
        ("2026-03-20", 19 * 86_400, 5400, 0, 3_300_000),
    ] {
        ledger_row(
            &hub,
            None,
            "dora",
            None,
            day,
            base + offset,
            secs,
            gpus,
            cost,
        )?;
    }
    // 80 % of this month's budget is used: the banner warns.
    let day = today(&hub, &dora, "dora").await?;
    let now = chrono::Utc::now().timestamp();
    ledger_row(&hub, None, "dora", None, &day, now - 100, 10, 0, 8_500_000)?;
    let resp = hub
        .admin(Method::POST, "/hub/api/budgets")
        .json(&json!({"kind": "user", "target": "dora", "limit": 10}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "dora's budget").await?;
    let march = get_json(
        &hub,
        &dora,
        "/hub/api/users/dora/usage?month=2026-03",
        "March",
    )
    .await?;
    // The page shows exact units with at least two decimals.
    let total = micros(&march["total"]);
    let shown = format!("{}.{:02}", total / 1_000_000, (total % 1_000_000) / 10_000);

    let run = tests::browser::run_script(
        &hub,
        "billing.mjs",
        "billing",
        &[
            ("XIJI_USER", "dora"),
            ("XIJI_PASSWORD", "dora-password-1"),
            ("XIJI_ADMIN", "admin"),
            ("XIJI_ADMIN_PASSWORD", tests::ADMIN_PASSWORD),
            ("XIJI_TOTAL", &shown),
        ],
    )
    .await;
    tests::browser::keep_screenshots(&hub, "billing", &["billing"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in ["usage-chart", "spawn-cost", "admin-billing"] {
        run.expect_screenshot(name)?;
    }
    Ok(())
}
