//! A project's whole life on a Docker cluster, in a real browser (Debian's Chromium, driven by
//! playwright-core from `tests/browser/projects_cluster.mjs`) against the real `xiji` binary: a
//! user creates a project with the library's Jupyter image and another user's public dataset,
//! uploads a notebook that reads the dataset's CSV at its mount path and writes `result.txt` into
//! `/home/jovyan/work`, runs the project with 2 nodes from its page, runs the notebook in node-0's
//! JupyterLab (Run All), stops the cluster and finds `result.txt` in the project's Files card; they
//! make it public; a second user forks it, runs the fork, finds the notebook and `result.txt` in
//! its Files card and in JupyterLab's file browser and writes in it; the original is unchanged.
//! What the browser did is then checked through the API and on the pool's disk, and nothing is
//! left running in Docker.
//!
//! Needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh); without it, the
//! test says so and returns. Screenshots are kept in `tests/artifacts/projects_cluster/` and
//! `target/screenshots/projects_cluster/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::browser::keep_screenshots;
use tests::docker::{self, Instance};
use tests::tail;
use tests::{browser, encode, expect_json, expect_status, Hub};

const OWNER: &str = "ann";
const OWNER_PASSWORD: &str = "ann-password-42";
const FORKER: &str = "ben";
const FORKER_PASSWORD: &str = "ben-password-42";
/// The owner of the public dataset the project attaches.
const DATA_OWNER: &str = "dora";
const DATASET: &str = "rainfall";
/// Where the CSV is in the dataset.
const CSV_PATH: &str = "stations/daily.csv";
const PROJECT: &str = "rain-report";
const FORK: &str = "my-rain-report";
/// The notebook the owner uploads.
const NOTEBOOK: &str = "analysis.ipynb";
/// What the fork's user writes in the fork (from JupyterLab).
const FORK_NOTE: &str = "fork-note.txt";
/// The name the test image has in the hub's library.
const IMAGE_NAME: &str = "Base notebook";

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as [`IMAGE_NAME`].
async fn docker_hub(instance: &Instance) -> Result<Hub> {
    docker::docker_hub(instance, IMAGE_NAME).await
}

/// The station's daily rain: (CSV bytes, the line the notebook must write in `result.txt` on
/// `node`).
fn rain_csv(node: &str) -> (String, String) {
    let days = [3.2, 0.0, 12.5, 7.1, 0.4, 19.8, 2.6];
    let mut csv = "day,station,rain_mm\n".to_owned();
    for (i, mm) in days.iter().enumerate() {
        csv.push_str(&format!("2024-06-{:02},rooftop,{mm:.1}\n", i + 1));
    }
    let total: f64 = days.iter().sum();
    let result = format!(
        "{} days, {total:.1} mm of rain, wettest 2024-06-06, on {node}\n",
        days.len()
    );
    (csv, result)
}

/// The notebook: reads the dataset's CSV at its mount path, writes `result.txt` in the work
/// folder and prints what it wrote.
fn notebook() -> Value {
    let mount = format!("/home/jovyan/datasets/{DATA_OWNER}/{DATASET}");
    let cells = [
        "import csv, socket\n".to_owned()
            + &format!("source = '{mount}/{CSV_PATH}'\n")
            + "rows = list(csv.DictReader(open(source)))\n"
            + "total = sum(float(r['rain_mm']) for r in rows)\n"
            + "wettest = max(rows, key=lambda r: float(r['rain_mm']))['day']",
        "line = f'{len(rows)} days, {total:.1f} mm of rain, wettest {wettest}, on {socket.gethostname()}'\n"
            .to_owned()
            + "import os\n"
            + "with open(os.path.join(os.path.expanduser('~'), 'work', 'result.txt'), 'w') as out:\n"
            + "    out.write(line + '\\n')\n"
            + "print('result.txt:', line)",
    ];
    let source = |code: &str| -> Vec<String> {
        let lines: Vec<&str> = code.split('\n').collect();
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                if i < last {
                    format!("{l}\n")
                } else {
                    (*l).to_owned()
                }
            })
            .collect()
    };
    json!({
        "cells": cells.iter().map(|code| json!({
            "cell_type": "code",
            "execution_count": null,
            "metadata": {},
            "outputs": [],
            "source": source(code),
        })).collect::<Vec<_>>(),
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    })
}

/// `dora`'s public dataset holding the CSV, uploaded as a browser does (declared, then sent with
/// tus's `PATCH`).
async fn public_dataset(hub: &Hub, token: &str, csv: &str) -> Result<()> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", token)
        .json(&json!({"name": DATASET, "visibility": "public", "description": "Daily rain on the rooftop."}))
        .send()
        .await?;
    let dataset = expect_json(resp, StatusCode::CREATED, "create the dataset").await?;
    ensure!(
        dataset["mount_path"] == json!(format!("/home/jovyan/datasets/{DATA_OWNER}/{DATASET}")),
        "the dataset's mount path: {dataset}"
    );
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/datasets/{DATA_OWNER}/{DATASET}/uploads"),
            token,
        )
        .json(&json!({"path": CSV_PATH, "size": csv.len()}))
        .send()
        .await?;
    let upload = expect_json(resp, StatusCode::CREATED, "declare the CSV").await?;
    let url = upload["url"].as_str().context("the upload has no url")?;
    let resp = hub
        .with_token(Method::PATCH, url, token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(csv.to_owned())
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "send the CSV").await?;
    Ok(())
}

/// The project `owner/name` as `token`'s user sees it.
async fn project(hub: &Hub, token: &str, owner: &str, name: &str) -> Result<Value> {
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/projects/{}/{}", encode(owner), encode(name)),
            token,
        )
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, &format!("the project {owner}/{name}")).await
}

/// A project file's bytes through the API.
async fn file(hub: &Hub, token: &str, owner: &str, name: &str, path: &str) -> Result<Vec<u8>> {
    let resp = hub
        .with_token(
            Method::GET,
            &format!(
                "/hub/api/projects/{}/{}/files/{}",
                encode(owner),
                encode(name),
                encode(path)
            ),
            token,
        )
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {path} of {owner}/{name}: {}",
        resp.status()
    );
    Ok(resp.bytes().await?.to_vec())
}

/// The names in the top folder of a project's files, through the API.
async fn top_names(hub: &Hub, token: &str, owner: &str, name: &str) -> Result<BTreeSet<String>> {
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/projects/{}/{}/tree", encode(owner), encode(name)),
            token,
        )
        .send()
        .await?;
    let tree = expect_json(resp, StatusCode::OK, "the files").await?;
    Ok(tree["items"]
        .as_array()
        .with_context(|| format!("no items in {tree}"))?
        .iter()
        .filter_map(|e| e["name"].as_str().map(str::to_owned))
        .collect())
}

/// The names in `dir` on the disk, hidden ones too (JupyterLab's checkpoints).
fn names_on_disk(dir: &Path) -> Result<BTreeSet<String>> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// Stops `user`'s server `server` (whatever the browser did) and waits until it is gone.
async fn stop(hub: &Hub, user: &str, server: &str) -> Result<()> {
    if hub.user(user).await?["servers"].get(server).is_none() {
        return Ok(());
    }
    let resp = hub
        .admin(
            Method::DELETE,
            &format!("/hub/api/users/{user}/servers/{server}"),
        )
        .send()
        .await?;
    ensure!(resp.status().is_success(), "stop: {}", resp.status());
    hub.wait_until_stopped(user, server, Duration::from_secs(60))
        .await
}

#[tokio::test]
async fn a_notebook_run_on_a_2_node_project_cluster_writes_its_result_into_the_project_and_a_fork_runs_it_too_in_chromium(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    // Declared before the hub, so it is dropped after it: whatever happens, the containers and
    // networks of the story's clusters are removed.
    let instance = Instance::new("xiji-test-pjc");
    let hub = docker_hub(&instance).await?;
    hub.create_user(OWNER, OWNER_PASSWORD).await?;
    hub.create_user(FORKER, FORKER_PASSWORD).await?;
    hub.create_user(DATA_OWNER, "dora-password-42").await?;
    let ann = hub.create_token(OWNER, json!({})).await?;
    let ben = hub.create_token(FORKER, json!({})).await?;
    let dora = hub.create_token(DATA_OWNER, json!({})).await?;
    let (csv, result) = rain_csv("node-0");
    public_dataset(&hub, &dora, &csv).await?;
    let notebook_path = hub.scratch_path("upload").join(NOTEBOOK);
    std::fs::create_dir_all(notebook_path.parent().context("a folder")?)?;
    let notebook_bytes = serde_json::to_vec_pretty(&notebook())?;
    std::fs::write(&notebook_path, &notebook_bytes)?;

    // Where the browser keeps the original's notebook as it is before the fork.
    let kept_notebook = hub.scratch_path("original-notebook.ipynb");
    let dataset = format!("{DATA_OWNER}/{DATASET}");
    let run = browser::run_script(
        &hub,
        "projects_cluster.mjs",
        "projects_cluster",
        &[
            ("XIJI_OWNER", OWNER),
            ("XIJI_OWNER_PASSWORD", OWNER_PASSWORD),
            ("XIJI_FORKER", FORKER),
            ("XIJI_FORKER_PASSWORD", FORKER_PASSWORD),
            ("XIJI_PROJECT", PROJECT),
            ("XIJI_FORK", FORK),
            ("XIJI_DATASET", &dataset),
            ("XIJI_IMAGE", IMAGE_NAME),
            ("XIJI_NOTEBOOK", &notebook_path.display().to_string()),
            ("XIJI_RESULT", result.trim_end()),
            ("XIJI_FORK_NOTE", FORK_NOTE),
            ("XIJI_KEEP_NOTEBOOK", &kept_notebook.display().to_string()),
        ],
    )
    .await;
    keep_screenshots(&hub, "projects_cluster", &["projects_cluster"]);
    // The clusters are stopped whatever the browser did.
    let original = project(&hub, &ann, OWNER, PROJECT).await;
    let fork = project(&hub, &ben, FORKER, FORK).await;
    for (user, p) in [(OWNER, &original), (FORKER, &fork)] {
        if let Some(server) = p.as_ref().ok().and_then(|p| p["server_name"].as_str()) {
            stop(&hub, user, server).await?;
        }
    }
    let run = run.with_context(|| format!("hub log:\n{}", tail(&hub.log(), 60)))?;
    for name in [
        "new-form",
        "created",
        "uploaded",
        "run-form",
        "running",
        "lab-notebook",
        "lab-output",
        "stopped",
        "files-result",
        "public",
        "fork-copied",
        "fork-running",
        "fork-lab-files",
        "fork-lab-written",
        "fork-files",
        "original-files",
    ] {
        run.expect_screenshot(name)?;
    }
    let report: Value = run
        .output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["ok"] == true)
        .with_context(|| format!("the browser did not report: {}", run.output))?;

    // The page asked for 2 nodes of the project's image, and node-0 wrote what the notebook
    // computes from the dataset's CSV.
    let original = original?;
    let fork = fork?;
    ensure!(original["last_options"]["nodes"] == "2", "{original}");
    ensure!(original["image"]["name"] == IMAGE_NAME, "{original}");
    ensure!(original["datasets"] == json!([dataset]), "{original}");
    ensure!(original["visibility"] == "public", "{original}");
    ensure!(original["forks"] == 1, "{original}");
    ensure!(
        report["output"].as_str() == Some(format!("result.txt: {}", result.trim_end()).as_str()),
        "the notebook printed {}; expected the line {result:?}",
        report["output"]
    );
    let written = file(&hub, &ann, OWNER, PROJECT, "result.txt").await?;
    ensure!(
        written == result.as_bytes(),
        "the original's result.txt is {:?}, the notebook writes {result:?}",
        String::from_utf8_lossy(&written)
    );
    // The notebook was not changed by the fork's user: its bytes are those the owner left.
    let original_notebook = file(&hub, &ann, OWNER, PROJECT, NOTEBOOK).await?;
    ensure!(
        serde_json::from_slice::<Value>(&original_notebook).is_ok(),
        "the original's notebook is no longer JSON"
    );
    let kept = std::fs::read(&kept_notebook)
        .context("the browser did not keep the original's notebook before the fork")?;
    ensure!(
        kept == original_notebook,
        "the original's notebook changed after the fork"
    );

    // The fork: the original's files at the time, plus what its user wrote; the original has
    // none of that.
    ensure!(
        fork["forked_from"] == json!(format!("{OWNER}/{PROJECT}")),
        "{fork}"
    );
    ensure!(fork["visibility"] == "private", "{fork}");
    ensure!(fork["datasets"] == json!([dataset]), "{fork}");
    ensure!(fork["image"]["name"] == IMAGE_NAME, "{fork}");
    let fork_names = top_names(&hub, &ben, FORKER, FORK).await?;
    for name in [NOTEBOOK, "result.txt", FORK_NOTE] {
        ensure!(
            fork_names.contains(name),
            "the fork's files lack {name}: {fork_names:?}"
        );
    }
    let fork_note = file(&hub, &ben, FORKER, FORK, FORK_NOTE).await?;
    ensure!(
        String::from_utf8_lossy(&fork_note).contains(FORKER),
        "{FORK_NOTE} in the fork: {:?}",
        String::from_utf8_lossy(&fork_note)
    );
    let fork_result = file(&hub, &ben, FORKER, FORK, "result.txt").await?;
    ensure!(
        String::from_utf8_lossy(&fork_result).contains("changed in the fork"),
        "the fork's result.txt was not changed: {:?}",
        String::from_utf8_lossy(&fork_result)
    );
    // The original lists what its owner left (the notebook, result.txt and JupyterLab's
    // checkpoints), nothing the fork's user wrote.
    let original_names = top_names(&hub, &ann, OWNER, PROJECT).await?;
    let owner_left: BTreeSet<String> = report["owner_files"]
        .as_array()
        .context("no owner_files in the report")?
        .iter()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    ensure!(
        owner_left.contains(NOTEBOOK) && owner_left.contains("result.txt"),
        "the owner left {owner_left:?}"
    );
    ensure!(
        original_names == owner_left,
        "the original's files are {original_names:?}; its owner left {owner_left:?}"
    );

    // On the pool's disk too: the two folders are apart, and the original has nothing of the
    // fork's (not even a hidden checkpoint).
    let on_disk = |p: &Value| -> Result<PathBuf> {
        let id = p["id"].as_i64().context("a project's id")?;
        Ok(hub
            .data_dir()
            .join("storage")
            .join("project")
            .join(id.to_string())
            .join("files"))
    };
    let original_dir = on_disk(&original)?;
    let fork_dir = on_disk(&fork)?;
    ensure!(
        std::fs::read(original_dir.join("result.txt"))? == result.as_bytes(),
        "the original's result.txt on the disk"
    );
    ensure!(
        std::fs::read(fork_dir.join(FORK_NOTE))? == fork_note,
        "the fork's note on the disk"
    );
    // The uploaded notebook belongs to the nodes' user (jovyan), as what they wrote does: JupyterLab
    // could save it.
    for name in [NOTEBOOK, "result.txt"] {
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(original_dir.join(name))?);
        ensure!(
            uid == 1000,
            "{name} in the original belongs to uid {uid}, not jovyan's 1000"
        );
    }
    let disk_names = names_on_disk(&original_dir)?;
    ensure!(
        !disk_names.contains(FORK_NOTE) && !disk_names.iter().any(|n| n.starts_with("Untitled")),
        "the original's folder holds {disk_names:?}"
    );

    ensure!(
        instance.containers()?.is_empty() && instance.networks()?.is_empty(),
        "the stops left containers {:?} and networks {:?}",
        instance.containers()?,
        instance.networks()?
    );
    Ok(())
}
