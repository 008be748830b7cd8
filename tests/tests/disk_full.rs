//! A hub whose disk fills up keeps answering: every request gets a response (a 500 in
//! JupyterHub's error body when it could not write), nothing half-written is kept, and once space
//! is freed the hub works again without a restart. The hub's data directory and log are on a
//! small tmpfs the test mounts (so it runs as root, as CI does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::process::is_root;
use tests::{expect_json, Hub, HubOptions};

/// A tmpfs mounted on a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("xiji-small-disk-")
            .tempdir()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .context("cannot run mount")?;
        ensure!(status.success(), "mount -t tmpfs failed: {status}");
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes zeros to `name` until the filesystem is full.
    fn fill(&self, name: &str) -> Result<PathBuf> {
        let path = self.path().join(name);
        let mut file = std::fs::File::create(&path)?;
        let chunk = vec![0u8; 1 << 20];
        loop {
            match file.write_all(&chunk).and_then(|()| file.sync_all()) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => {
                    return Ok(path)
                }
                Err(e) => return Err(e).context("filling the small disk"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn create_users(hub: &Hub, names: &[String]) -> Result<(StatusCode, Value)> {
    let resp = hub
        .admin(Method::POST, "/hub/api/users")
        .json(&json!({ "usernames": names }))
        .send()
        .await
        .context("POST /hub/api/users got no response")?;
    let status = resp.status();
    let body = resp
        .json::<Value>()
        .await
        .context("a body that is not JSON")?;
    Ok((status, body))
}

async fn user_names(hub: &Hub) -> Result<Vec<String>> {
    let resp = hub.admin(Method::GET, "/hub/api/users").send().await?;
    let users = expect_json(resp, StatusCode::OK, "GET /hub/api/users").await?;
    Ok(users
        .as_array()
        .context("the user list is not an array")?
        .iter()
        .filter_map(|u| u["name"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test]
async fn a_full_disk_gives_500s_keeps_no_partial_writes_and_the_hub_recovers_when_space_returns(
) -> Result<()> {
    if !is_root() {
        eprintln!("skipped: mounting the small tmpfs needs root");
        return Ok(());
    }
    let disk = SmallDisk::mount("48m")?;
    let hub = Hub::start_with(HubOptions {
        parent_dir: Some(disk.path().to_path_buf()),
        ..HubOptions::default()
    })
    .await?;
    let (status, _) = create_users(&hub, &["before".into()]).await?;
    ensure!(status == StatusCode::CREATED, "creating a user: {status}");

    let fill = disk.fill("fill")?;
    // Enough requests that the log, on the same full disk, has long stopped taking lines.
    for i in 0..40 {
        let names = vec![format!("full{i}a"), format!("full{i}b")];
        let (status, body) = create_users(&hub, &names).await?;
        ensure!(
            status == StatusCode::INTERNAL_SERVER_ERROR,
            "creating users on a full disk gave {status}: {body}"
        );
        ensure!(
            body["status"] == 500 && body["message"].is_string(),
            "not JupyterHub's error body: {body}"
        );
        let resp = hub
            .admin(Method::GET, "/hub/api/users")
            .send()
            .await
            .with_context(|| format!("GET /hub/api/users got no response on a full disk ({i})"))?;
        let status = resp.status();
        ensure!(
            status == StatusCode::OK || status == StatusCode::INTERNAL_SERVER_ERROR,
            "listing users on a full disk gave {status}"
        );
    }

    std::fs::remove_file(&fill)?;
    // Every pooled database connection is used many times over: one left unusable by a failed
    // commit would fail some of these.
    for i in 0..30 {
        let names = vec![format!("after{i}a"), format!("after{i}b")];
        let (status, body) = create_users(&hub, &names).await?;
        if status != StatusCode::CREATED {
            bail!(
                "after space was freed, creating users ({i}) gave {status}: {body}\n{}",
                tests::tail(&hub.log(), 20)
            );
        }
    }
    let names = user_names(&hub).await?;
    ensure!(
        names.iter().any(|n| n == "before"),
        "the earlier user is gone: {names:?}"
    );
    ensure!(
        !names.iter().any(|n| n.starts_with("full")),
        "users from the failed requests were kept: {names:?}"
    );
    ensure!(
        names.iter().filter(|n| n.starts_with("after")).count() == 60,
        "not every user created after recovery is listed: {names:?}"
    );
    drop(hub);
    drop(disk);
    Ok(())
}
