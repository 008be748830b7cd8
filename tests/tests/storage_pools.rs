//! Storage pools on real filesystems (tests/setup-storage.sh mounts them): a loop-mounted ext4
//! (`local`) and a GlusterFS volume through FUSE (`glusterfs`). A pool is checked when it is
//! added (mount type, nesting, path, name); new work directories go to the active pool with the
//! most free space and stay where they were placed; draining and removing behave as the
//! administrator expects. The local backend's servers run in their placed work directories.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, random_hex, Hub};

/// A mount point tests/setup-storage.sh made, from its variable.
fn mount_point(variable: &str) -> Result<PathBuf> {
    match std::env::var(variable) {
        Ok(v) if !v.is_empty() => Ok(PathBuf::from(v)),
        _ => anyhow::bail!(
            "{variable} is not set: run `tests/setup-storage.sh && . .cache/storage-env.sh` \
             first (as root; or run every test with `tests/run`, which does it)"
        ),
    }
}

/// Folders of this test on the shared mounts, removed at the end.
struct Folders(Vec<PathBuf>);

impl Folders {
    fn make(&mut self, parent: &Path) -> Result<PathBuf> {
        let dir = parent.join(format!("t-{}", random_hex(6)));
        std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        self.0.push(dir.clone());
        Ok(dir)
    }
}

impl Drop for Folders {
    fn drop(&mut self) {
        for dir in &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

async fn pools(hub: &Hub) -> Result<Vec<Value>> {
    let resp = hub
        .admin(Method::GET, "/hub/api/storage-pools")
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "list pools").await?;
    list.as_array()
        .cloned()
        .context("the pool list is not an array")
}

async fn pool_named(hub: &Hub, name: &str) -> Result<Value> {
    pools(hub)
        .await?
        .into_iter()
        .find(|p| p["name"] == name)
        .with_context(|| format!("no pool {name}"))
}

async fn add_pool(hub: &Hub, body: Value) -> Result<reqwest::Response> {
    Ok(hub
        .admin(Method::POST, "/hub/api/storage-pools")
        .json(&body)
        .send()
        .await?)
}

async fn set_state(hub: &Hub, pool: &Value, state: &str) -> Result<Value> {
    let resp = hub
        .admin(
            Method::PATCH,
            &format!("/hub/api/storage-pools/{}", pool["id"]),
        )
        .json(&json!({ "state": state }))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "change a pool's state").await
}

/// The work directory placed for `user` on the pool at `pool_path`: the `work` folder of the pool, then `{id}-{user}`
/// (the id is the hub's; the API does not show it), if there is one.
fn work_dir(pool_path: &Path, user: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir(pool_path.join("work")).ok()?;
    entries.flatten().map(|e| e.path()).find(|p| {
        p.is_dir()
            && p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('-'))
                .is_some_and(|(id, name)| name == user && id.parse::<u64>().is_ok())
    })
}

/// Writes `text` as `name` into the user's server through the contents API.
async fn put_file(hub: &Hub, user: &str, token: &str, name: &str, text: &str) -> Result<()> {
    let resp = hub
        .with_token(
            Method::PUT,
            &format!("/user/{user}/api/contents/{name}"),
            token,
        )
        .json(&json!({"type": "file", "format": "text", "content": text}))
        .send()
        .await?;
    ensure!(
        resp.status().is_success(),
        "writing {name} in {user}'s server: {}",
        resp.status()
    );
    Ok(())
}

/// Fills `dir` with `mib` MiB of zeros (a real write, so every filesystem counts it).
fn fill(dir: &Path, mib: usize) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(dir.join("filler"))?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    Ok(())
}

#[tokio::test]
async fn a_pool_is_added_only_on_a_mount_of_its_declared_type_and_never_inside_another(
) -> Result<()> {
    let local = mount_point("XIJI_TEST_POOL_LOCAL")?;
    let gluster = mount_point("XIJI_TEST_POOL_GLUSTER")?;
    let mut folders = Folders(Vec::new());
    let local_dir = folders.make(&local)?;
    let gluster_dir = folders.make(&gluster)?;
    let hub = Hub::start().await?;

    // The first start made the default pool under the data directory.
    let listed = pools(&hub).await?;
    ensure!(listed.len() == 1, "one pool at first start: {listed:?}");
    let default = &listed[0];
    ensure!(
        default["name"] == "default"
            && default["fs_type"] == "local"
            && default["state"] == "active",
        "{default}"
    );
    let default_path = PathBuf::from(default["path"].as_str().unwrap_or_default());
    ensure!(
        default_path.ends_with("storage") && default_path.is_dir(),
        "{default}"
    );
    ensure!(default["size_bytes"].as_u64().unwrap_or(0) > 0, "{default}");

    let refused = [
        (
            json!({"name": "g", "path": local_dir, "fs_type": "glusterfs"}),
            "not a GlusterFS volume",
        ),
        (
            json!({"name": "l", "path": gluster_dir, "fs_type": "local"}),
            "type fuse.glusterfs), not a filesystem of this machine",
        ),
        (
            json!({"name": "n", "path": gluster_dir, "fs_type": "nfs"}),
            "not an NFS mount",
        ),
        (
            json!({"name": "m", "path": local_dir.join("missing"), "fs_type": "local"}),
            "mount the filesystem and create the folder first",
        ),
        (
            json!({"name": "r", "path": "pools/a", "fs_type": "local"}),
            "must be an absolute path",
        ),
        (
            json!({"name": "a/b", "path": local_dir, "fs_type": "local"}),
            "Invalid pool name",
        ),
        (
            json!({"name": "x", "path": local_dir, "fs_type": "ntfs"}),
            "Unknown pool type \"ntfs\": use local, nfs, glusterfs",
        ),
        (
            json!({"name": "x", "path": local_dir, "fs_type": "local", "capacity_bytes": 10}),
            "at least 1 MiB",
        ),
        (json!({"name": "x"}), "Unknown pool type"),
    ];
    for (body, expected) in refused {
        let message = expect_api_error(
            add_pool(&hub, body.clone()).await?,
            StatusCode::BAD_REQUEST,
            "bad pool",
        )
        .await?;
        ensure!(message.contains(expected), "{body}: {message}");
    }
    // Inside the default pool, or holding it: pools cannot nest.
    let inside = default_path.join("inner");
    std::fs::create_dir_all(&inside)?;
    let message = expect_api_error(
        add_pool(
            &hub,
            json!({"name": "in", "path": inside, "fs_type": "local"}),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "a pool inside a pool",
    )
    .await?;
    ensure!(
        message.contains("is inside the pool \"default\""),
        "{message}"
    );
    let holder = default_path.parent().context("the data directory")?;
    let message = expect_api_error(
        add_pool(
            &hub,
            json!({"name": "out", "path": holder, "fs_type": "local"}),
        )
        .await?,
        StatusCode::BAD_REQUEST,
        "a pool around a pool",
    )
    .await?;
    ensure!(message.contains("pools cannot nest"), "{message}");
    ensure!(pools(&hub).await?.len() == 1, "nothing was added");

    // The right types are taken, and the mount is reported as found.
    let resp = add_pool(
        &hub,
        json!({"name": "ext4-a", "path": local_dir, "fs_type": "local"}),
    )
    .await?;
    let ext4 = expect_json(resp, StatusCode::CREATED, "add the ext4 pool").await?;
    ensure!(ext4["mount"]["mounted_type"] == "ext4", "{ext4}");
    ensure!(
        ext4["state"] == "active" && ext4["problem"].is_null(),
        "{ext4}"
    );
    let resp = add_pool(
        &hub,
        json!({"name": "gluster", "path": gluster_dir, "fs_type": "glusterfs"}),
    )
    .await?;
    let volume = expect_json(resp, StatusCode::CREATED, "add the GlusterFS pool").await?;
    ensure!(
        volume["mount"]["mounted_type"] == "fuse.glusterfs",
        "{volume}"
    );
    ensure!(
        volume["free_bytes"].as_u64() > ext4["free_bytes"].as_u64(),
        "the GlusterFS volume is the larger one: {volume} {ext4}"
    );
    // Names and paths are unique.
    for body in [
        json!({"name": "ext4-a", "path": gluster_dir, "fs_type": "glusterfs"}),
        json!({"name": "other", "path": local_dir, "fs_type": "local"}),
    ] {
        expect_api_error(
            add_pool(&hub, body).await?,
            StatusCode::CONFLICT,
            "a taken name or path",
        )
        .await?;
    }

    // Only administrators see or change pools.
    hub.create_user("student", "student-password-1").await?;
    let token = hub.create_token("student", json!({})).await?;
    for (method, body) in [
        (Method::GET, None),
        (Method::POST, Some(json!({"name": "s"}))),
    ] {
        let mut request = hub.with_token(method, "/hub/api/storage-pools", &token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        expect_api_error(request.send().await?, StatusCode::FORBIDDEN, "a student").await?;
    }

    // An empty pool is removed; an unknown one is a 404.
    let resp = hub
        .admin(
            Method::DELETE,
            &format!("/hub/api/storage-pools/{}", ext4["id"]),
        )
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "remove an empty pool").await?;
    for method in [Method::GET, Method::DELETE, Method::PATCH] {
        let resp = hub
            .admin(
                method.clone(),
                &format!("/hub/api/storage-pools/{}", ext4["id"]),
            )
            .json(&json!({}))
            .send()
            .await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, "a removed pool").await?;
    }
    Ok(())
}

#[tokio::test]
async fn new_work_directories_go_to_the_freest_active_pool_and_stay_where_they_were_placed(
) -> Result<()> {
    let local = mount_point("XIJI_TEST_POOL_LOCAL")?;
    let gluster = mount_point("XIJI_TEST_POOL_GLUSTER")?;
    let mut folders = Folders(Vec::new());
    let local_dir = folders.make(&local)?;
    let gluster_dir = folders.make(&gluster)?;
    let hub = Hub::start().await?;
    let resp = add_pool(
        &hub,
        json!({"name": "ext4-a", "path": local_dir, "fs_type": "local"}),
    )
    .await?;
    expect_status(resp, StatusCode::CREATED, "add the ext4 pool").await?;
    let resp = add_pool(
        &hub,
        json!({"name": "gluster", "path": gluster_dir, "fs_type": "glusterfs"}),
    )
    .await?;
    expect_status(resp, StatusCode::CREATED, "add the GlusterFS pool").await?;
    // Only the two test pools take data.
    let default = pool_named(&hub, "default").await?;
    ensure!(set_state(&hub, &default, "draining").await?["state"] == "draining");

    for name in ["ada", "bob", "cyd", "dan"] {
        hub.create_user(name, &format!("{name}-password-1")).await?;
    }
    let ada_token = hub.create_token("ada", json!({})).await?;

    // The GlusterFS volume has the most free space: ada's work directory goes there, and her
    // server runs in it.
    hub.start_server("ada").await?;
    let ada_dir =
        work_dir(&gluster_dir, "ada").context("ada's work directory is not on the volume")?;
    put_file(&hub, "ada", &ada_token, "notes.txt", "on GlusterFS").await?;
    ensure!(
        std::fs::read_to_string(ada_dir.join("notes.txt"))? == "on GlusterFS",
        "the server did not write into its placed work directory"
    );
    let volume = pool_named(&hub, "gluster").await?;
    ensure!(volume["contents"] == json!({"work": 1}), "{volume}");

    // Once it is no longer the freer pool, the next one goes to the ext4 pool.
    let ext4 = pool_named(&hub, "ext4-a").await?;
    let to_fill = (volume["free_bytes"].as_u64().unwrap_or(0)
        - ext4["free_bytes"].as_u64().unwrap_or(0))
        / (1 << 20)
        + 16;
    fill(&gluster_dir, usize::try_from(to_fill)?)?;
    let (volume, ext4) = (
        pool_named(&hub, "gluster").await?,
        pool_named(&hub, "ext4-a").await?,
    );
    ensure!(
        volume["free_bytes"].as_u64() < ext4["free_bytes"].as_u64(),
        "after filling: {volume} {ext4}"
    );
    hub.start_server("bob").await?;
    ensure!(
        work_dir(&local_dir, "bob").is_some(),
        "bob is not on ext4-a"
    );
    ensure!(pool_named(&hub, "ext4-a").await?["contents"] == json!({"work": 1}));

    // A draining pool takes nothing new, though it is the freer one.
    let ext4 = set_state(&hub, &ext4, "draining").await?;
    ensure!(ext4["state"] == "draining", "{ext4}");
    hub.start_server("cyd").await?;
    ensure!(
        work_dir(&gluster_dir, "cyd").is_some(),
        "cyd is not on the volume"
    );

    // A placed work directory stays where it was placed: ada starts again on the volume.
    hub.stop_server("ada").await?;
    hub.start_server("ada").await?;
    let resp = hub
        .with_token(Method::GET, "/user/ada/api/contents/notes.txt", &ada_token)
        .send()
        .await?;
    let file = expect_json(resp, StatusCode::OK, "ada's file after a restart").await?;
    ensure!(file["content"] == "on GlusterFS", "{file}");

    // A pool that holds something cannot be removed.
    let resp = hub
        .admin(
            Method::DELETE,
            &format!("/hub/api/storage-pools/{}", ext4["id"]),
        )
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "remove a pool in use").await?;
    ensure!(message.contains("still holds 1"), "{message}");

    // With every pool draining, a new work directory has nowhere to go: 507, said plainly.
    let volume = pool_named(&hub, "gluster").await?;
    set_state(&hub, &volume, "draining").await?;
    let resp = hub
        .admin(Method::POST, "/hub/api/users/dan/server")
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::INSUFFICIENT_STORAGE, "no active pool").await?;
    ensure!(
        message.contains("No storage pool takes new data"),
        "{message}"
    );
    // Users placed before still start.
    hub.stop_server("bob").await?;
    hub.start_server("bob").await?;
    Ok(())
}

#[tokio::test]
async fn an_administrator_adds_drains_and_removes_a_glusterfs_pool_in_chromium() -> Result<()> {
    let local = mount_point("XIJI_TEST_POOL_LOCAL")?;
    let gluster = mount_point("XIJI_TEST_POOL_GLUSTER")?;
    let mut folders = Folders(Vec::new());
    let local_dir = folders.make(&local)?;
    let gluster_dir = folders.make(&gluster)?;
    let hub = Hub::start().await?;
    let run = tests::browser::run_script(
        &hub,
        "storage_pools.mjs",
        "storage_pools",
        &[
            ("XIJI_USER", "admin"),
            ("XIJI_PASSWORD", tests::ADMIN_PASSWORD),
            ("XIJI_POOL_GLUSTER", &gluster_dir.display().to_string()),
            ("XIJI_POOL_LOCAL", &local_dir.display().to_string()),
        ],
    )
    .await?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in ["pools", "added", "refused", "drained", "removed", "chinese"] {
        run.expect_screenshot(name)?;
    }
    // What the browser did is what the API reports: only the default pool is left.
    let names: Vec<Value> = pools(&hub)
        .await?
        .into_iter()
        .map(|p| p["name"].clone())
        .collect();
    ensure!(names == [json!("default")], "{names:?}");
    Ok(())
}
