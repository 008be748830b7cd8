//! What the Docker Engine tests share: whether they run (`XIJI_TEST_DOCKER=1`), the containers
//! and networks of one test's hub (its own `org.xiji.hub` label, removed on drop), and waiting
//! for a user's cluster to be ready.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{expect_json, random_hex, tail, Hub, HubOptions};

/// The user's persistent work directory in every node (the product's contract, docs/docker.md).
pub const WORK_DIR: &str = "/home/jovyan/work";

/// Whether the Docker tests run; says so when they do not.
pub fn enabled() -> bool {
    if std::env::var("XIJI_TEST_DOCKER").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "NOT RUN: needs XIJI_TEST_DOCKER=1 (tests/setup-docker.sh && . .cache/docker-env.sh)"
    );
    false
}

/// Runs `docker args…`; its standard output, or an error with its status and output.
pub fn docker_out(args: &[&str]) -> Result<String> {
    crate::process::output_of("docker", args)
}

/// Runs `docker command ids…` when there are ids; failures are ignored (cleanup).
fn remove(ids: Result<Vec<String>>, command: &[&str]) {
    if let Ok(ids) = ids {
        if !ids.is_empty() {
            let args: Vec<&str> = command
                .iter()
                .copied()
                .chain(ids.iter().map(String::as_str))
                .collect();
            let _ = docker_out(&args);
        }
    }
}

fn ids(args: &[&str]) -> Result<Vec<String>> {
    Ok(docker_out(args)?
        .split_whitespace()
        .map(str::to_owned)
        .collect())
}

/// The containers and networks labelled with one test's hub instance (`[spawner.docker]
/// instance`); removed on drop whatever happened, so a failed test leaves nothing running.
pub struct Instance(pub String);

impl Instance {
    /// A fresh instance name with this prefix, e.g. `xiji-test-3fa2c1`.
    pub fn new(prefix: &str) -> Self {
        Self(format!("{prefix}-{}", random_hex(6)))
    }

    fn filter(&self) -> String {
        format!("label=org.xiji.hub={}", self.0)
    }

    /// Ids of its containers, running or not.
    pub fn containers(&self) -> Result<Vec<String>> {
        ids(&["ps", "-a", "-q", "--filter", &self.filter()])
    }

    /// Ids of its networks.
    pub fn networks(&self) -> Result<Vec<String>> {
        ids(&["network", "ls", "-q", "--filter", &self.filter()])
    }

    /// Removes its containers (running or not), then its networks.
    pub fn remove_all(&self) {
        remove(self.containers(), &["rm", "-f"]);
        remove(self.networks(), &["network", "rm"]);
    }

    /// The one running container whose name contains `user` (a one-node cluster of theirs).
    pub fn user_container(&self, user: &str) -> Result<String> {
        let found = ids(&[
            "ps",
            "-q",
            "--filter",
            &self.filter(),
            "--filter",
            &format!("name={user}"),
        ])?;
        match found.as_slice() {
            [id] => Ok(id.clone()),
            _ => bail!("expected one container of {user}, got {found:?}"),
        }
    }

    /// The one running container of a node, e.g. `node-1`.
    pub fn node_container(&self, node: &str) -> Result<String> {
        let found = ids(&[
            "ps",
            "-q",
            "--filter",
            &self.filter(),
            "--filter",
            &format!("label=org.xiji.node={node}"),
        ])?;
        match found.as_slice() {
            [id] => Ok(id.clone()),
            [] => bail!("no container for {node}"),
            _ => bail!("more than one container for {node}"),
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Starts `user`'s default server as a cluster with `options` (image, nodes, sizes) through the
/// API and returns its model once ready (≤ 300 s).
pub async fn start_cluster(hub: &Hub, user: &str, options: Value) -> Result<Value> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(&options)
        .send()
        .await?;
    let status = resp.status();
    anyhow::ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "starting {user}'s cluster with {options} gave {status}: {}",
        resp.text().await.unwrap_or_default()
    );
    wait_cluster_ready(hub, user, Duration::from_secs(300)).await
}

/// The user's default server's model once it is ready; an error with the hub's log if it
/// stops first or `timeout` passes.
pub async fn wait_cluster_ready(hub: &Hub, user: &str, timeout: Duration) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let model = hub.user(user).await?;
        let server = &model["servers"][""];
        if server["ready"] == json!(true) {
            return Ok(server.clone());
        }
        if server.is_null() && model["pending"].is_null() {
            bail!(
                "{user}'s cluster stopped before it was ready; hub log:\n{}",
                tail(&hub.log(), 40)
            );
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{user}'s cluster not ready within {timeout:?}: {model}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as `library_name`. Its CPU is overcommitted eightfold (so that a few test
/// clusters fit a 2-core machine) and a start answers 202 after a second.
pub async fn docker_hub(instance: &Instance, library_name: &str) -> Result<Hub> {
    start_docker_hub(
        instance,
        library_name,
        "cpu_overcommit = 8\n",
        "slow_spawn_timeout = 1\n",
    )
    .await
}

/// The same with the host's real CPU count as capacity (no overcommit), for what reports it.
pub async fn docker_hub_on_real_cpus(instance: &Instance, library_name: &str) -> Result<Hub> {
    start_docker_hub(instance, library_name, "", "").await
}

async fn start_docker_hub(
    instance: &Instance,
    library_name: &str,
    docker_lines: &str,
    top_level: &str,
) -> Result<Hub> {
    let options = HubOptions {
        spawner_toml: "backend = \"docker\"\nstart_timeout = 300\n".into(),
        top_level_toml: top_level.into(),
        tables_toml: format!(
            "\n[spawner.docker]\n{docker_lines}instance = \"{}\"\ndefault_memory_mb = 512\ndefault_cpus = 0.5\n",
            instance.0
        ),
        ..HubOptions::default()
    };
    let hub = Hub::start_with(options).await?;
    add_library_image(&hub, library_name).await?;
    Ok(hub)
}

/// Adds the test image (`XIJI_TEST_DOCKER_IMAGE`) to the hub's library under `name`.
pub async fn add_library_image(hub: &Hub, name: &str) -> Result<()> {
    let image = crate::registry::base_image();
    let (repository, tag) = image
        .rsplit_once(':')
        .context("XIJI_TEST_DOCKER_IMAGE has no tag")?;
    let resp = hub
        .admin(Method::POST, "/hub/api/images")
        .json(&json!({"name": name, "image": repository, "tag": tag}))
        .send()
        .await?;
    expect_json(
        resp,
        StatusCode::CREATED,
        "add the test image to the library",
    )
    .await?;
    Ok(())
}
