//! Our own Docker registry for the tests that save images (Debian's `docker-registry`, on a
//! free port, with its access log; never the shared one on :5000), whether those tests run, and
//! waiting for a save job to finish.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::docker::docker_out;
use crate::{expect_json, process, Hub};

/// Whether the tests that save images run (`XIJI_TEST_DOCKER=1`; says so when they do not).
/// With it, a Docker Engine that does not answer or a missing `docker-registry` is an error.
pub fn docker_enabled() -> Result<bool> {
    if std::env::var("XIJI_TEST_DOCKER").as_deref() != Ok("1") {
        eprintln!(
            "NOT RUN: needs XIJI_TEST_DOCKER=1 (tests/setup-docker.sh && . .cache/docker-env.sh)"
        );
        return Ok(false);
    }
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .context("XIJI_TEST_DOCKER=1 but the docker CLI cannot run")?;
    ensure!(
        out.status.success(),
        "XIJI_TEST_DOCKER=1 but Docker Engine does not answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let which = Command::new("sh")
        .args(["-c", "command -v docker-registry"])
        .output()?;
    ensure!(
        which.status.success(),
        "XIJI_TEST_DOCKER=1 but docker-registry is not installed (tests/setup-docker.sh installs it)"
    );
    Ok(true)
}

/// The image the Docker tests run (`XIJI_TEST_DOCKER_IMAGE`, made by tests/setup-docker.sh).
pub fn base_image() -> String {
    std::env::var("XIJI_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into())
}

/// Our own `docker-registry` (never the shared one on :5000), with its access log.
pub struct Registry {
    child: Option<Child>,
    /// `127.0.0.1:port`.
    pub addr: String,
    config: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with an empty store in a temporary folder and waits until it answers.
    pub fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("xiji-save-registry-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = dir.path().join("registry.log");
        let mut registry = Registry {
            child: None,
            addr,
            config,
            log,
            _dir: dir,
        };
        registry.launch()?;
        Ok(registry)
    }

    /// Starts the registry process (again, after [`Registry::stop`]) and waits until it answers.
    pub fn launch(&mut self) -> Result<()> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.child = Some(
            Command::new("docker-registry")
                .arg("serve")
                .arg(&self.config)
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .context("cannot start docker-registry")?,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            ensure!(
                std::time::Instant::now() < deadline,
                "the registry did not start: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Stops the registry process (its store stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pulls `image` and pushes it here as `name` (`repository:tag`); the local tag made for
    /// that, `{addr}/{name}`, which is now the image's reference in this registry.
    pub fn push(&self, image: &str, name: &str) -> Result<String> {
        let reference = format!("{}/{name}", self.addr);
        docker_out(&["pull", image])?;
        docker_out(&["tag", image, &reference])?;
        docker_out(&["push", &reference])?;
        Ok(reference)
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Digests of blobs whose upload into `repo` completed (`PUT …/blobs/uploads/…?digest=`).
    pub fn uploaded_digests(&self, repo: &str) -> Vec<String> {
        let prefix = format!("\"PUT /v2/{repo}/blobs/uploads/");
        self.log_text()
            .lines()
            .filter_map(|line| {
                let request = &line[line.find(&prefix)?..];
                let digest = request.split("digest=").nth(1)?;
                let digest: String = digest
                    .chars()
                    .take_while(|c| !matches!(c, ' ' | '&' | '"'))
                    .collect();
                Some(digest.replace("%3A", ":").replace("%3a", ":"))
            })
            .collect()
    }

    /// The layer digests of `repo:tag`'s manifest.
    pub fn layers(&self, repo: &str, tag: &str) -> Result<Vec<String>> {
        let text = process::output_of(
            "curl",
            &[
                "-fsS",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json",
                &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
            ],
        )?;
        let manifest: Value = serde_json::from_str(&text)?;
        Ok(manifest["layers"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|d| d["digest"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The HTTP status of `repo:tag`'s manifest.
    pub fn manifest_status(&self, repo: &str, tag: &str) -> Result<String> {
        process::output_of(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
                &format!("http://{}/v2/{repo}/manifests/{tag}", self.addr),
            ],
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls a job until it has finished; every state seen on the way, and the last model.
pub async fn wait_job(hub: &Hub, token: &str, id: &str) -> Result<(Vec<String>, Value)> {
    let mut states: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        let resp = hub
            .with_token(Method::GET, &format!("/hub/api/save-jobs/{id}"), token)
            .send()
            .await?;
        let job = expect_json(resp, StatusCode::OK, "GET the save job").await?;
        let state = job["state"].as_str().unwrap_or_default().to_owned();
        if states.last() != Some(&state) {
            states.push(state);
        }
        if job["finished"] == json!(true) {
            return Ok((states, job));
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the save did not finish within 600 s: {job}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
