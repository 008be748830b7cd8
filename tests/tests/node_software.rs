//! What a new user meets in a node: JupyterLab without the "get notified about Jupyter news?"
//! question (local servers from the hub's venv, and the `xiji/base-notebook` image), and
//! software installs that work on a network whose HTTPS goes through an inspecting proxy:
//!
//! - a local server started from a venv the hub was given: its JupyterLab serves the
//!   notification settings with `fetchNews` "false" (the overrides file the hub put in the venv);
//! - a node of the docker backend (real Docker Engine, the image from `XIJI_TEST_DOCKER_IMAGE`):
//!   the hub's CA bundle (the host's, by default) is in the node and named by `PIP_CERT`,
//!   `SSL_CERT_FILE`, …; `pip install` of a small package from the package index and Python's
//!   own HTTPS client work with it; `sudo apt-get install` of a small Debian package works (the
//!   node keeps Docker's default capabilities, never privileged); the node is saved as an image
//!   through the hub, and a new cluster started from it has both, while the saved image itself
//!   holds neither the CA bundle file nor any other injected file.
//!
//! The docker test needs `XIJI_TEST_DOCKER=1` (tests/setup-docker.sh); without it it says so and
//! returns. It needs the package index and the Debian mirror to be reachable from containers.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::{self, docker_out, Instance};
use tests::{expect_json, random_hex, Hub, HubOptions};

/// Where the docker backend puts the CA bundle in every node.
const NODE_CA_BUNDLE: &str = "/etc/xiji/ca-certificates.crt";
/// The host's CA bundle: the hub's default `ca_bundle`.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// A small pure-Python package from the package index, not in the image.
const PYPI_PACKAGE: &str = "termcolor";
/// A small Debian package, not in the image.
const DEBIAN_PACKAGE: &str = "hello";

/// The value of JupyterLab's `fetchNews` setting as a user of the server at `prefix` gets it:
/// the user's own setting, else the default the server serves (overrides applied).
async fn lab_fetch_news(hub: &Hub, prefix: &str, token: &str) -> Result<Value> {
    let path = format!("{prefix}lab/api/settings/@jupyterlab/apputils-extension:notification");
    let resp = hub.with_token(Method::GET, &path, token).send().await?;
    let settings = expect_json(resp, StatusCode::OK, &format!("GET {path}")).await?;
    let mine = &settings["settings"]["fetchNews"];
    Ok(if mine.is_null() {
        settings["schema"]["properties"]["fetchNews"]["default"].clone()
    } else {
        mine.clone()
    })
}

#[tokio::test]
async fn a_local_servers_jupyterlab_asks_no_jupyter_news_question() -> Result<()> {
    let hub = Hub::start_with(HubOptions {
        singleuser_as_venv: true,
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("nora", "nora-password-1").await?;
    let token = hub.create_token("nora", json!({})).await?;
    hub.start_server("nora").await?;
    let fetch_news = lab_fetch_news(&hub, "/user/nora/", &token).await?;
    ensure!(
        fetch_news == json!("false"),
        "JupyterLab would ask about Jupyter news: fetchNews is {fetch_news}"
    );
    Ok(())
}

/// `sh -c script` in `container` as jovyan, with the node's environment.
fn as_jovyan(container: &str, script: &str) -> Result<String> {
    docker_out(&["exec", "-u", "jovyan", container, "sh", "-c", script])
}

async fn start_cluster(hub: &Hub, user: &str, image: &str) -> Result<Value> {
    tests::docker::start_cluster(hub, user, json!({"image": image, "nodes": 1})).await
}

/// Removes the saved image from the engine at the end, whatever happened.
struct SavedImage(Option<String>);

impl Drop for SavedImage {
    fn drop(&mut self) {
        if let Some(reference) = &self.0 {
            let _ = docker_out(&["rmi", "-f", reference]);
        }
    }
}

#[tokio::test]
async fn a_node_installs_from_pypi_through_the_hosts_ca_and_with_sudo_apt_and_its_saved_image_keeps_both(
) -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let host_bundle = std::fs::read(HOST_CA_BUNDLE)
        .with_context(|| format!("the host has no CA bundle at {HOST_CA_BUNDLE}"))?;
    let image = tests::registry::base_image();
    let (repository, tag) = image
        .rsplit_once(':')
        .context("XIJI_TEST_DOCKER_IMAGE has no tag")?;
    let instance = Instance::new("xiji-test");
    let mut saved = SavedImage(None);
    let hub = Hub::start_with(HubOptions {
        spawner_toml: "backend = \"docker\"\nstart_timeout = 300\n".into(),
        top_level_toml: "slow_spawn_timeout = 1\n".into(),
        tables_toml: format!(
            "\n[spawner.docker]\ncpu_overcommit = 8\ninstance = \"{}\"\ndefault_memory_mb = 1024\ndefault_cpus = 1.0\n\
             \n[images]\nauto_approve = true\nrepository_prefix = \"xiji-test-saved\"\n",
            instance.0
        ),
        ..HubOptions::default()
    })
    .await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/images")
        .json(&json!({"name": "Base", "image": repository, "tag": tag}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "add the base image").await?;
    hub.create_user("ivy", "ivy-password-1").await?;
    let token = hub.create_token("ivy", json!({})).await?;
    start_cluster(&hub, "ivy", "Base").await?;
    let node = instance.user_container("ivy")?;

    // No news question in the image's JupyterLab either.
    let fetch_news = lab_fetch_news(&hub, "/user/ivy/", &token).await?;
    ensure!(
        fetch_news == json!("false"),
        "the image's JupyterLab would ask about Jupyter news: fetchNews is {fetch_news}"
    );

    // The host's CA bundle is in the node, named by the tools' variables, in no label.
    let in_node = as_jovyan(&node, &format!("sha256sum < {NODE_CA_BUNDLE}"))?;
    let on_host = tests::process::output_of("sha256sum", &[HOST_CA_BUNDLE])?;
    ensure!(
        in_node.split_whitespace().next() == on_host.split_whitespace().next(),
        "the node's CA bundle is not the host's"
    );
    ensure!(!host_bundle.is_empty(), "the host's CA bundle is empty");
    let injected = as_jovyan(&node, &format!("test -L {NODE_CA_BUNDLE} || echo injected"))?;
    ensure!(
        injected.trim() == "injected",
        "the node's CA bundle is the image's link, not the injected file"
    );
    let inspect: Value = serde_json::from_str(&docker_out(&["inspect", &node])?)?;
    let env = inspect[0]["Config"]["Env"].to_string();
    for var in [
        "PIP_CERT",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "CONDA_SSL_VERIFY",
        "NODE_EXTRA_CA_CERTS",
    ] {
        ensure!(
            env.contains(&format!("{var}={NODE_CA_BUNDLE}")),
            "{var} does not name the CA bundle: {env}"
        );
    }
    let host_config = &inspect[0]["HostConfig"];
    ensure!(
        host_config["Privileged"] == json!(false)
            && host_config["CapDrop"].as_array().is_none_or(Vec::is_empty)
            && host_config["CapAdd"].as_array().is_none_or(Vec::is_empty)
            && !host_config["SecurityOpt"]
                .to_string()
                .contains("no-new-privileges"),
        "not Docker's default capability set: {host_config}"
    );

    // pip and Python's HTTPS client reach the package index with it.
    as_jovyan(
        &node,
        &format!(
            "set -e; pip install --no-cache-dir --disable-pip-version-check -q {PYPI_PACKAGE}; \
             python -c 'import {PYPI_PACKAGE}'; \
             python -c 'import urllib.request; urllib.request.urlopen(\"https://pypi.org/simple/\", timeout=60)'"
        ),
    )
    .with_context(|| format!("pip install {PYPI_PACKAGE} in the node"))?;

    // jovyan installs a Debian package with sudo.
    let who = as_jovyan(&node, "sudo -n id -u")?;
    ensure!(who.trim() == "0", "sudo gave uid {who}");
    as_jovyan(
        &node,
        &format!(
            "set -e; sudo -n apt-get update -qq; \
             sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends {DEBIAN_PACKAGE} > /dev/null; {DEBIAN_PACKAGE}"
        ),
    )
    .with_context(|| format!("sudo apt-get install {DEBIAN_PACKAGE} in the node"))?;

    // Saved through the hub, started again: both are there.
    let name = format!("tools-{}", random_hex(4));
    let resp = hub
        .with_token(Method::POST, "/hub/api/users/ivy/server/save-image", &token)
        .json(&json!({"name": name, "tag": "v1"}))
        .send()
        .await?;
    let job = expect_json(resp, StatusCode::ACCEPTED, "save the node").await?;
    let id = job["id"].as_str().context("no job id")?.to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let job = loop {
        let resp = hub
            .with_token(Method::GET, &format!("/hub/api/save-jobs/{id}"), &token)
            .send()
            .await?;
        let job = expect_json(resp, StatusCode::OK, "GET the save job").await?;
        if job["finished"] == json!(true) {
            break job;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the save did not finish within 600 s: {job}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    ensure!(
        job["state"] == "done",
        "the save ended {}: {job}",
        job["state"]
    );
    let reference = job["image"].as_str().context("no image")?.to_owned();
    saved.0 = Some(reference.clone());

    hub.stop_server("ivy").await?;
    start_cluster(&hub, "ivy", &format!("ivy/{name}:v1")).await?;
    let node = instance.user_container("ivy")?;
    as_jovyan(
        &node,
        &format!("set -e; python -c 'import {PYPI_PACKAGE}'; {DEBIAN_PACKAGE}"),
    )
    .context("the new cluster's node lacks what was installed")?;
    let injected = as_jovyan(&node, &format!("test -L {NODE_CA_BUNDLE} || echo injected"))?;
    ensure!(
        injected.trim() == "injected",
        "the new node has no CA bundle of its own"
    );

    // The saved image has the image's own link to the system bundle, not the injected file.
    let checks = docker_out(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        &reference,
        "-c",
        &format!(
            "echo ca: $(readlink {NODE_CA_BUNDLE}); \
             test -e /etc/xiji/ssh/id_ed25519 && echo key-present || echo key-gone; \
             test -e /etc/xiji/hostfile && echo hostfile-present || echo hostfile-gone"
        ),
    ])?;
    for want in [
        "ca: /etc/ssl/certs/ca-certificates.crt",
        "key-gone",
        "hostfile-gone",
    ] {
        ensure!(
            checks.contains(want),
            "{want:?} missing in the saved image's checks:\n{checks}"
        );
    }
    Ok(())
}
