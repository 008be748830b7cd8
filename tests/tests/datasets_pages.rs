//! The datasets pages in a real browser (Debian's Chromium, driven by playwright-core from
//! `tests/browser/datasets*.mjs`) against the real `xiji` binary: a new user creates a dataset
//! with a cover, drops a folder of 50 files on the page, browses it and makes it public; a
//! second user finds it by a word of its description, stars it, starts a 2-node cluster with it
//! from the home page's spawn form (the dataset's box ticked) and, in node-1's JupyterLab, reads
//! the dropped CSV at the dataset's mount path while writing beside it fails with "Read-only
//! file system"; the pages speak Chinese; uploads survive a broken connection and a reload, and
//! an upload over the storage limit shows the hub's 413 message. What the browser did is then
//! checked through the API (the bytes of the files, the star, the visibility, the cluster's
//! options) and Docker (nothing left running).
//!
//! The cluster step needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh):
//! the story's hub then runs the docker backend with the test image in its library. Without it,
//! the pages are tested on the local backend and the test says that the cluster step did not run.
//!
//! Screenshots are kept in `tests/artifacts/<test>/`, copied into the hub's temporary folder and
//! into `target/screenshots/<test>/`.

use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser::keep_screenshots;
use tests::docker::{self, Instance};
use tests::{browser, encode, expect_api_error, expect_json, Hub};
use tests::{HubOptions, Singleuser};

const OWNER: &str = "ann";
const OWNER_PASSWORD: &str = "ann-password-42";
const READER: &str = "ben";
const READER_PASSWORD: &str = "ben-password-42";
/// A name in Chinese: the pages and the API must carry it in URLs unchanged.
const DATASET: &str = "气象-2024";

/// The name the test image has in the library of the cluster step's hub.
const IMAGE_NAME: &str = "Python + MPI";
/// Where the dropped training CSV is in the dataset.
const CSV_PATH: &str = "数据/训练集.csv";

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as [`IMAGE_NAME`].
async fn docker_hub(instance: &Instance) -> Result<Hub> {
    docker::docker_hub(instance, IMAGE_NAME).await
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Bytes that do not repeat (a linear congruential sequence), so no layer can shortcut them.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The training CSV: about 10 MiB, so it goes in two chunks.
fn training_csv() -> Vec<u8> {
    let mut csv = b"time,temperature,humidity\n".to_vec();
    let mut i: u64 = 0;
    while csv.len() < 10 * 1024 * 1024 {
        let _ = writeln!(
            csv,
            "2024-01-{:02}T{:02}:00:00Z,{}.{},{}",
            1 + (i / 24) % 28,
            i % 24,
            (i * 7) % 35,
            i % 10,
            40 + (i * 13) % 55
        );
        i += 1;
    }
    csv
}

/// What the owner drops: 数据/ (训练集.csv, 测试集.csv and 46 small files in 数据/图像/) and two
/// files beside it: 50 files. Answers (path in the dataset, bytes) of each.
fn make_drop(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = vec![
        (CSV_PATH.to_owned(), training_csv()),
        (
            "数据/测试集.csv".to_owned(),
            b"time,temperature,humidity\n2024-02-01T00:00:00Z,3.5,71\n".to_vec(),
        ),
        (
            "README.md".to_owned(),
            "# 气象数据\n\nRooftop station, hourly.\n"
                .as_bytes()
                .to_vec(),
        ),
        ("labels.txt".to_owned(), b"sunny\ncloudy\nrain\n".to_vec()),
    ];
    for i in 1..=46u64 {
        let size = 1000 + usize::try_from(i * 997 % 50_000)?;
        files.push((format!("数据/图像/img-{i:02}.bin"), noise(size, i)));
    }
    for (path, bytes) in &files {
        write(&dir.join(path), bytes)?;
    }
    Ok(files)
}

/// `GET path` as the user of `token` (datasets belong to users: a service's token may not).
async fn get_bytes(hub: &Hub, token: &str, path: &str) -> Result<Vec<u8>> {
    let resp = hub.with_token(Method::GET, path, token).send().await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {path}: {}",
        resp.status()
    );
    Ok(resp.bytes().await?.to_vec())
}

fn file_url(owner: &str, name: &str, path: &str) -> String {
    let quoted: Vec<String> = path.split('/').map(encode).collect();
    format!(
        "/hub/api/datasets/{}/{}/files/{}",
        encode(owner),
        encode(name),
        quoted.join("/")
    )
}

#[tokio::test]
async fn a_user_publishes_a_dropped_folder_and_another_stars_it_and_reads_it_on_node_1_of_a_cluster_in_chromium(
) -> Result<()> {
    // Declared before the hub, so it is dropped after it: whatever happens, the containers and
    // networks of the story's cluster are removed.
    let instance = docker::enabled().then(|| Instance::new("xiji-test-dsp"));
    let hub = match &instance {
        Some(instance) => docker_hub(instance).await?,
        None => Hub::start().await?,
    };
    hub.create_user(OWNER, OWNER_PASSWORD).await?;
    hub.create_user(READER, READER_PASSWORD).await?;
    let drop_dir = hub.scratch_path("drop");
    let dropped = make_drop(&drop_dir)?;
    ensure!(dropped.len() == 50, "{} files to drop", dropped.len());
    let pick_dir = hub.scratch_path("pick").join("notes");
    let picked = [
        ("notes/a.md", "# notes\n".as_bytes().to_vec()),
        (
            "notes/说明.txt",
            "数据来自楼顶气象站。\n".as_bytes().to_vec(),
        ),
    ];
    for (path, bytes) in &picked {
        write(&hub.scratch_path("pick").join(path), bytes)?;
    }
    let cover = hub.scratch_path("cover.png");

    let run = browser::run_script(
        &hub,
        "datasets.mjs",
        "datasets_pages",
        &[
            ("XIJI_OWNER", OWNER),
            ("XIJI_OWNER_PASSWORD", OWNER_PASSWORD),
            ("XIJI_READER", READER),
            ("XIJI_READER_PASSWORD", READER_PASSWORD),
            ("XIJI_DATASET", DATASET),
            ("XIJI_DROP", &drop_dir.display().to_string()),
            ("XIJI_PICK_FOLDER", &pick_dir.display().to_string()),
            ("XIJI_COVER", &cover.display().to_string()),
        ],
    )
    .await;
    keep_screenshots(&hub, "datasets_pages", &["datasets_pages"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in [
        "list-empty",
        "new-form",
        "created",
        "uploading",
        "uploaded",
        "folder",
        "public",
        "search",
        "starred",
        "zh-list",
        "zh-dataset",
        "zh-new",
    ] {
        run.expect_screenshot(name)?;
    }

    // What the browser did, as the API tells the owner.
    let token = hub.create_token(OWNER, json!({})).await?;
    let dataset_path = format!("/hub/api/datasets/{}/{}", encode(OWNER), encode(DATASET));
    let resp = hub
        .with_token(Method::GET, &dataset_path, &token)
        .send()
        .await?;
    let dataset = expect_json(resp, StatusCode::OK, "the dataset").await?;
    ensure!(dataset["visibility"] == "public", "{dataset}");
    ensure!(dataset["stars"] == 1, "{dataset}");
    ensure!(dataset["has_cover"] == true, "{dataset}");
    ensure!(
        dataset["tags"] == json!(["weather", "csv", "教学"]),
        "{dataset}"
    );
    ensure!(dataset["license"] == "CC-BY-4.0", "{dataset}");
    // 50 dropped + 2 picked − labels.txt.
    ensure!(dataset["file_count"] == 51, "{dataset}");
    let cover_bytes = get_bytes(&hub, &token, &format!("{dataset_path}/cover")).await?;
    ensure!(
        cover_bytes.starts_with(b"\x89PNG\r\n\x1a\n") && cover_bytes == std::fs::read(&cover)?,
        "the cover is not the PNG the browser sent"
    );
    for (path, bytes) in dropped
        .iter()
        .filter(|(p, _)| p.as_str() != "labels.txt" && p.as_str() != "README.md")
        .map(|(p, b)| (p.clone(), b.clone()))
        .chain(picked.iter().map(|(p, b)| ((*p).to_owned(), b.clone())))
        .chain(std::iter::once((
            "docs/README.md".to_owned(),
            std::fs::read(drop_dir.join("README.md"))?,
        )))
    {
        let got = get_bytes(&hub, &token, &file_url(OWNER, DATASET, &path)).await?;
        ensure!(
            got == bytes,
            "{path}: {} bytes arrived, {} were sent",
            got.len(),
            bytes.len()
        );
    }
    let resp = hub
        .with_token(Method::GET, &file_url(OWNER, DATASET, "labels.txt"), &token)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "the deleted file").await?;
    let resp = hub
        .with_token(Method::GET, &format!("{dataset_path}/shares"), &token)
        .send()
        .await?;
    let shares = expect_json(resp, StatusCode::OK, "the shares").await?;
    ensure!(
        shares == json!([]),
        "the share was not taken back: {shares}"
    );

    // ---- The reader starts a 2-node cluster with it from the pages and reads it on node-1 ----
    let Some(instance) = &instance else {
        eprintln!(
            "NOT RUN: the cluster step (a 2-node cluster started from the pages with the dataset, \
             node-1 reading it) needs XIJI_TEST_DOCKER=1"
        );
        return Ok(());
    };
    let dataset_name = format!("{OWNER}/{DATASET}");
    let csv = training_csv();
    let (csv_dir, csv_file) = CSV_PATH.rsplit_once('/').context("the CSV's folder")?;
    let resp = hub
        .with_token(
            Method::GET,
            &format!("{dataset_path}/tree?path={}", encode(csv_dir)),
            &token,
        )
        .send()
        .await?;
    let tree = expect_json(resp, StatusCode::OK, "the CSV's folder").await?;
    let csv_sha256 = tree["entries"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["name"] == csv_file))
        .and_then(|e| e["sha256"].as_str())
        .with_context(|| format!("no sha256 of {CSV_PATH} in {tree}"))?
        .to_owned();

    let run = browser::run_script(
        &hub,
        "datasets_cluster.mjs",
        "datasets_pages_cluster",
        &[
            ("XIJI_USER", READER),
            ("XIJI_PASSWORD", READER_PASSWORD),
            ("XIJI_DATASET", &dataset_name),
            ("XIJI_IMAGE", IMAGE_NAME),
            ("XIJI_CSV", CSV_PATH),
            (
                "XIJI_CSV_LOCAL",
                &drop_dir.join(CSV_PATH).display().to_string(),
            ),
        ],
    )
    .await;
    keep_screenshots(
        &hub,
        "datasets_pages",
        &["datasets_pages", "datasets_pages_cluster"],
    );
    let run = run.with_context(|| format!("hub log:\n{}", tests::tail(&hub.log(), 40)))?;
    for name in [
        "cluster-spawn-form",
        "cluster-starting",
        "cluster-ready",
        "cluster-notebook-output",
    ] {
        run.expect_screenshot(name)?;
    }
    let report: Value = run
        .output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ok"] == true)
        .with_context(|| format!("the browser did not report: {}", run.output))?;

    // What the page asked for: the ticked dataset, 2 nodes, the library's image.
    let sent = &report["sent"];
    ensure!(
        sent["datasets"] == json!([dataset_name]) && sent["nodes"] == "2",
        "the spawn form sent {sent}"
    );
    // node-1 read the bytes that were dropped: its host name, their size and sha256 (the hub's
    // record of the upload, which the script also checked against the file on disk), and the
    // CSV's first lines.
    let read = report["read"].as_str().context("no read output")?;
    let mut lines = read.lines();
    let first = lines.next().unwrap_or_default();
    ensure!(
        first == format!("node-1 {} {csv_sha256}", csv.len()),
        "node-1 printed {first:?}; the CSV is {} bytes, sha256 {csv_sha256}",
        csv.len()
    );
    let head: Vec<&str> = std::str::from_utf8(&csv)?.lines().take(3).collect();
    let shown: Vec<&str> = lines.take(3).collect();
    ensure!(
        shown == head,
        "node-1 printed the lines {shown:?}, the CSV starts with {head:?}"
    );
    let write = report["write"].as_str().context("no write output")?;
    ensure!(
        write.starts_with("refused:") && write.contains("Read-only file system"),
        "writing on node-1 printed {write:?}"
    );

    // The hub agrees: the reader's server is a 2-node cluster started with the dataset.
    let server =
        docker::wait_cluster_ready(&hub, READER, std::time::Duration::from_secs(10)).await?;
    ensure!(
        server["user_options"]["datasets"] == json!([dataset_name]),
        "the cluster's stored options: {server}"
    );
    let nodes = server["nodes"].as_array().map_or(0, Vec::len);
    ensure!(nodes == 2, "the cluster has {nodes} nodes: {server}");
    ensure!(
        instance.containers()?.len() == 2,
        "containers of the story: {:?}",
        instance.containers()?
    );
    hub.stop_server(READER).await?;
    ensure!(
        instance.containers()?.is_empty() && instance.networks()?.is_empty(),
        "the stop left containers {:?} and networks {:?}",
        instance.containers()?,
        instance.networks()?
    );
    Ok(())
}

#[tokio::test]
async fn uploads_go_on_after_a_broken_connection_and_a_reload_and_the_limit_shows_the_hubs_413(
) -> Result<()> {
    let hub = Hub::start_with(HubOptions {
        singleuser: Singleuser::Jupyterhub5,
        // About 76 MiB per user.
        tables_toml: "\n[datasets]\nuser_limit_gb = 0.08\n".into(),
        ..HubOptions::default()
    })
    .await?;
    let user = "cai";
    let password = "cai-password-42";
    hub.create_user(user, password).await?;
    let token = hub.create_token(user, json!({})).await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", &token)
        .json(&json!({"name": "sensors", "description": "Raw sensor dumps."}))
        .send()
        .await?;
    let dataset: Value = expect_json(resp, StatusCode::CREATED, "create the dataset").await?;
    ensure!(dataset["owner"] == user, "{dataset}");

    // 9 + 24 + 30 MiB fit in the limit; each is cut off in its second chunk (the page's chunks
    // grow from 8 MiB to 16 MiB), before the last one even when the whole chunk arrives.
    let broken = noise(9 * 1024 * 1024 + 123, 7);
    let reloaded = noise(24 * 1024 * 1024 + 5, 8);
    let broken_path = hub.scratch_path("broken.bin");
    let forgotten = noise(30 * 1024 * 1024 + 77, 9);
    let reloaded_path = hub.scratch_path("reloaded.bin");
    let forgotten_path = hub.scratch_path("forgotten.bin");
    let too_big_path = hub.scratch_path("too-big.bin");
    write(&broken_path, &broken)?;
    write(&reloaded_path, &reloaded)?;
    write(&forgotten_path, &forgotten)?;
    // Sparse: the browser only declares its size, which the hub refuses before any byte.
    let too_big_size: u64 = 90 * 1024 * 1024;
    std::fs::File::create(&too_big_path)?.set_len(too_big_size)?;

    let run = browser::run_script(
        &hub,
        "datasets_uploads.mjs",
        "datasets_uploads",
        &[
            ("XIJI_USER", user),
            ("XIJI_PASSWORD", password),
            ("XIJI_DATASET", &format!("{user}/sensors")),
            ("XIJI_BROKEN", &broken_path.display().to_string()),
            ("XIJI_RELOADED", &reloaded_path.display().to_string()),
            ("XIJI_FORGOTTEN", &forgotten_path.display().to_string()),
            ("XIJI_TOO_BIG", &too_big_path.display().to_string()),
        ],
    )
    .await;
    keep_screenshots(&hub, "datasets_uploads", &["datasets_uploads"]);
    let run = run?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in ["retrying", "resume-offered", "resumed", "over-limit"] {
        run.expect_screenshot(name)?;
    }
    for (path, bytes) in [
        ("broken.bin", &broken),
        ("reloaded.bin", &reloaded),
        ("forgotten.bin", &forgotten),
    ] {
        let got = get_bytes(&hub, &token, &file_url(user, "sensors", path)).await?;
        ensure!(
            &got == bytes,
            "{path}: {} bytes arrived, {} were sent",
            got.len(),
            bytes.len()
        );
    }

    // The page showed the hub's own message: the API gives the same one for the same file.
    let shown = run
        .output
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| v["limit_message"].as_str().map(str::to_owned))
        .context("the browser did not report the message it showed")?;
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/datasets/{user}/sensors/uploads"),
            &token,
        )
        .json(&json!({"path": "too-big.bin", "size": too_big_size}))
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "over the limit").await?;
    ensure!(
        shown == message,
        "the page showed {shown:?}, the hub says {message:?}"
    );
    Ok(())
}
