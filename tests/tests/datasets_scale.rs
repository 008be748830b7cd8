//! The datasets page at scale, in a real browser (Debian's Chromium, driven by playwright-core
//! from `tests/browser/datasets_scale.mjs`) against the real `xiji` binary: a user drops ONE
//! folder of 5,000 small files (in a few subfolders, some with Chinese names) on their dataset's
//! page with Chromium's own drag and drop, and the page uploads every one of them without an
//! error (a known failure of other dataset hubs beyond about 1,000 files); its overall bar says
//! so, and the file tree pages through the biggest folder, 100 names a page, to the last one.
//! What the browser did is then checked through the API: exactly the 5,000 files, each with its
//! size, a sample with its sha256, nothing left unfinished.
//!
//! The browser reports how long each phase took and what the page spent it on; the test prints
//! it. Screenshots are kept in `tests/artifacts/datasets_scale/`, copied into the hub's temporary
//! folder and into `target/screenshots/datasets_scale/`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser::keep_screenshots;
use tests::{browser, encode, expect_json, Hub};

const USER: &str = "lin";
const PASSWORD: &str = "lin-password-42";
const DATASET: &str = "street-scenes";
/// The folder dropped, itself: the dataset's files are all below `街景/`.
const TOP: &str = "街景";
/// The folder paged through in the browser, and how its files are named.
const BIG_FOLDER: &str = "街景/images";
const BIG_COUNT: usize = 3_000;
const BIG_PREFIX: &str = "img-";
const BIG_DIGITS: usize = 4;
const BIG_SUFFIX: &str = ".jpg";
const FILES: usize = 5_000;

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

/// The dataset's paths of the drop: 3,000 images in `街景/images/`, 1,200 notes in `街景/标注/`
/// (Chinese names), 750 logs in `街景/logs/2024/`, and 50 files in `街景/` itself.
fn drop_paths() -> Vec<String> {
    let mut paths = Vec::with_capacity(FILES);
    for i in 0..BIG_COUNT {
        paths.push(format!(
            "{BIG_FOLDER}/{BIG_PREFIX}{i:0width$}{BIG_SUFFIX}",
            width = BIG_DIGITS
        ));
    }
    for i in 0..1_200 {
        paths.push(format!("{TOP}/标注/标注-{i:04}.txt"));
    }
    for i in 0..750 {
        paths.push(format!("{TOP}/logs/2024/camera-{i:03}.log"));
    }
    for i in 0..50 {
        paths.push(format!("{TOP}/说明-{i:02}.md"));
    }
    paths
}

/// Writes the drop below `dir` (the path's first folder, `街景/`, is what is dropped): small
/// files of 40 B to 4 KiB, each different. Answers each path's size.
fn make_drop(dir: &Path) -> Result<BTreeMap<String, u64>> {
    let mut sizes = BTreeMap::new();
    for (i, path) in drop_paths().into_iter().enumerate() {
        let index = u64::try_from(i)?;
        let mut bytes = format!("{path}\n").into_bytes();
        bytes.extend(noise(usize::try_from(index * 7919 % 4057)?, index));
        let file = dir.join(&path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
        sizes.insert(path, u64::try_from(bytes.len())?);
    }
    Ok(sizes)
}

/// sha256 (hex) of a file, by coreutils' `sha256sum`.
fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    ensure!(
        out.status.success(),
        "sha256sum {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let word = text.split_whitespace().next().unwrap_or_default();
    ensure!(word.len() == 64, "not a sha256: {text}");
    Ok(word.to_owned())
}

/// Every file of the dataset, as the API's tree lists them (pages of 1,000), by path.
async fn list_all(hub: &Hub, token: &str, dataset: &str) -> Result<BTreeMap<String, Value>> {
    let mut files = BTreeMap::new();
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        let mut offset = 0;
        loop {
            let resp = hub
                .with_token(
                    Method::GET,
                    &format!(
                        "{dataset}/tree?path={}&offset={offset}&limit=1000",
                        encode(&folder)
                    ),
                    token,
                )
                .send()
                .await?;
            let page = expect_json(resp, StatusCode::OK, &format!("the tree of /{folder}")).await?;
            let entries = page["entries"].as_array().cloned().unwrap_or_default();
            for e in &entries {
                let path = e["path"]
                    .as_str()
                    .context("an entry without a path")?
                    .to_owned();
                if e["type"] == "dir" {
                    folders.push(path);
                } else {
                    ensure!(
                        files.insert(path.clone(), e.clone()).is_none(),
                        "{path} is listed twice"
                    );
                }
            }
            offset += entries.len();
            if entries.is_empty() || offset >= page["total"].as_u64().unwrap_or(0).try_into()? {
                break;
            }
        }
    }
    Ok(files)
}

#[tokio::test]
async fn a_folder_of_5000_small_files_dropped_in_chromium_uploads_without_an_error_and_its_tree_pages_to_the_last_page(
) -> Result<()> {
    let hub = Hub::start().await?;
    hub.create_user(USER, PASSWORD).await?;
    let token = hub.create_token(USER, json!({})).await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", &token)
        .json(&json!({"name": DATASET, "description": "Street scenes, one camera a folder."}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "create the dataset").await?;
    let drop_dir = hub.scratch_path("drop");
    let sizes = make_drop(&drop_dir)?;
    ensure!(sizes.len() == FILES, "{} files to drop", sizes.len());

    let hub_pid = hub.pid().map(|p| p.to_string()).unwrap_or_default();
    let run = browser::run_script(
        &hub,
        "datasets_scale.mjs",
        "datasets_scale",
        &[
            ("XIJI_HUB_PID", &hub_pid),
            ("XIJI_USER", USER),
            ("XIJI_PASSWORD", PASSWORD),
            ("XIJI_DATASET", &format!("{USER}/{DATASET}")),
            ("XIJI_DROP", &drop_dir.join(TOP).display().to_string()),
            ("XIJI_FILES", &FILES.to_string()),
            ("XIJI_BIG_FOLDER", BIG_FOLDER),
            ("XIJI_BIG_COUNT", &BIG_COUNT.to_string()),
            ("XIJI_BIG_PREFIX", BIG_PREFIX),
            ("XIJI_BIG_DIGITS", &BIG_DIGITS.to_string()),
            ("XIJI_BIG_SUFFIX", BIG_SUFFIX),
        ],
    )
    .await;
    keep_screenshots(&hub, "datasets_scale", &["datasets_scale"]);
    let run = run.with_context(|| format!("hub log:\n{}", tests::tail(&hub.log(), 40)))?;
    let report: Value = run
        .output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ok"] == true)
        .with_context(|| format!("the browser did not report: {}", run.output))?;
    eprintln!("the browser's report: {report:#}");
    for name in ["uploading", "uploaded", "tree-first-page", "tree-last-page"] {
        run.expect_screenshot(name)?;
    }

    // What the browser did, as the API tells the owner: exactly the files dropped, each with its
    // size, and the dataset's counts.
    let dataset_path = format!("/hub/api/datasets/{}/{}", encode(USER), encode(DATASET));
    let listed = list_all(&hub, &token, &dataset_path).await?;
    let extra: Vec<&String> = listed.keys().filter(|p| !sizes.contains_key(*p)).collect();
    let missing: Vec<&String> = sizes.keys().filter(|p| !listed.contains_key(*p)).collect();
    ensure!(
        listed.len() == FILES && extra.is_empty() && missing.is_empty(),
        "the API lists {} files; not dropped: {:?}; missing: {:?}",
        listed.len(),
        &extra[..extra.len().min(5)],
        &missing[..missing.len().min(5)]
    );
    let wrong: Vec<String> = sizes
        .iter()
        .filter(|(path, size)| listed[*path]["size"] != json!(size))
        .map(|(path, size)| format!("{path}: {} (sent {size})", listed[path]["size"]))
        .collect();
    ensure!(
        wrong.is_empty(),
        "{} files have the wrong size: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    // A sample's sha256 (one file in 250, every folder, the Chinese names among them) against
    // the files on disk, and the bytes of a few downloaded.
    for (i, path) in sizes.keys().enumerate().filter(|(i, _)| i % 250 == 0) {
        let want = sha256_file(&drop_dir.join(path))?;
        ensure!(
            listed[path]["sha256"] == json!(want),
            "{path}: sha256 {} listed, {want} on disk",
            listed[path]["sha256"]
        );
        if i % 1000 == 0 {
            let quoted: Vec<String> = path.split('/').map(encode).collect();
            let resp = hub
                .with_token(
                    Method::GET,
                    &format!("{dataset_path}/files/{}", quoted.join("/")),
                    &token,
                )
                .send()
                .await?;
            ensure!(
                resp.status() == StatusCode::OK,
                "GET {path}: {}",
                resp.status()
            );
            ensure!(
                resp.bytes().await? == std::fs::read(drop_dir.join(path))?,
                "{path}: the bytes downloaded are not the file dropped"
            );
        }
    }
    let total: u64 = sizes.values().sum();
    let resp = hub
        .with_token(Method::GET, &dataset_path, &token)
        .send()
        .await?;
    let dataset = expect_json(resp, StatusCode::OK, "the dataset").await?;
    ensure!(
        dataset["file_count"] == json!(FILES) && dataset["size_bytes"] == json!(total),
        "{dataset} (want {FILES} files, {total} bytes)"
    );
    let resp = hub
        .with_token(Method::GET, &format!("{dataset_path}/uploads"), &token)
        .send()
        .await?;
    let unfinished = expect_json(resp, StatusCode::OK, "the unfinished uploads").await?;
    ensure!(
        unfinished == json!([]),
        "uploads left unfinished: {unfinished}"
    );
    Ok(())
}
