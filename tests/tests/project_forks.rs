//! A fork's copy of the files, through the real hub (local backend): the fork answers at once
//! while a task of the hub copies, `GET` of the fork shows the files and bytes copied so far, and
//! the copy is byte-identical with links kept as links, modes, times and hard links; while it
//! copies, the fork cannot be run, exported or forked (409 with a message); a hub killed mid-copy
//! marks the fork failed at start-up and removes what it had copied; a copy that fails leaves no
//! file, and the fork can be deleted; deleting a fork while it is copied stops the copy.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, Hub};

/// `user` with a token of the default role.
async fn user(hub: &Hub, name: &str) -> Result<String> {
    hub.create_user(name, &format!("{name}-password-1")).await?;
    hub.create_token(name, json!({})).await
}

/// A project's folder on the default pool.
fn project_dir(hub: &Hub, id: i64) -> PathBuf {
    hub.data_dir()
        .join("storage")
        .join("project")
        .join(id.to_string())
        .join("files")
}

/// A public project of `token`'s user named `name`; its id.
async fn public_project(hub: &Hub, token: &str, name: &str) -> Result<i64> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", token)
        .json(&json!({"name": name, "visibility": "public"}))
        .send()
        .await?;
    let p = expect_json(resp, StatusCode::CREATED, "create a project").await?;
    p["id"].as_i64().context("id")
}

/// Pseudo-random bytes (xorshift), different for each seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `files` small files (1–16 KiB) in nested folders, and one file of `big_mib` MiB; the bytes.
fn many_files(dir: &Path, files: usize, big_mib: usize) -> Result<u64> {
    let mut total = 0u64;
    for i in 0..files {
        let folder = dir.join(format!("d{}/e{}", i % 20, i % 7));
        std::fs::create_dir_all(&folder)?;
        let len = 1024 + (i * 7919) % (15 * 1024);
        std::fs::write(folder.join(format!("f{i}.bin")), bytes(i as u64, len))?;
        total += len as u64;
    }
    let mut big = std::fs::File::create(dir.join("big.bin"))?;
    let chunk = bytes(99, 1 << 20);
    for _ in 0..big_mib {
        big.write_all(&chunk)?;
    }
    Ok(total + (big_mib as u64) * (1 << 20))
}

/// Everything under `root` as `cp -a` would be compared: kind, mode, modification time, link
/// target or contents' length and a checksum, by path.
fn tree(root: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in std::fs::read_dir(root.join(&rel))? {
            let entry = entry?;
            let path = rel.join(entry.file_name());
            let meta = std::fs::symlink_metadata(root.join(&path))?;
            let what = if meta.file_type().is_symlink() {
                format!(
                    "link -> {}",
                    std::fs::read_link(root.join(&path))?.display()
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o} {}", meta.mode() & 0o7777, meta.mtime())
            } else {
                let data = std::fs::read(root.join(&path))?;
                let sum = data
                    .iter()
                    .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b)));
                format!(
                    "file {:o} {}.{} {} {sum:x} links {}",
                    meta.mode() & 0o7777,
                    meta.mtime(),
                    meta.mtime_nsec(),
                    data.len(),
                    meta.nlink()
                )
            };
            out.insert(path, what);
        }
    }
    Ok(out)
}

async fn post_fork(hub: &Hub, token: &str, original: &str, name: &str) -> Result<Value> {
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/projects/{original}/fork"),
            token,
        )
        .json(&json!({"name": name}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "fork").await
}

async fn get_project(hub: &Hub, token: &str, full: &str) -> Result<Value> {
    let resp = hub
        .with_token(Method::GET, &format!("/hub/api/projects/{full}"), token)
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "the fork").await
}

/// Polls the fork until its copy is no longer `copying` (≤ 120 s); every state seen, in order.
async fn wait_for_copy(hub: &Hub, token: &str, full: &str) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let p = get_project(hub, token, full).await?;
        let fork = p["fork"].clone();
        seen.push(fork.clone());
        if fork["state"] != json!("copying") {
            return Ok(seen);
        }
        ensure!(
            Instant::now() < deadline,
            "the copy is not over after 120 s: {fork}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_fork_answers_at_once_reports_its_progress_and_copies_files_links_modes_and_times(
) -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    let id = public_project(&hub, &alice, "lab").await?;
    let dir = project_dir(&hub, id);
    let bytes_total = many_files(&dir, 3000, 256)?;
    std::fs::create_dir_all(dir.join("笔记/empty"))?;
    std::fs::write(dir.join("笔记/run.py"), "print('hi')\n")?;
    std::fs::set_permissions(
        dir.join("笔记/run.py"),
        std::fs::Permissions::from_mode(0o751),
    )?;
    std::fs::write(dir.join("secret.txt"), "only mine")?;
    std::fs::set_permissions(
        dir.join("secret.txt"),
        std::fs::Permissions::from_mode(0o400),
    )?;
    std::fs::write(dir.join("empty.txt"), "")?;
    std::fs::hard_link(dir.join("笔记/run.py"), dir.join("run-again.py"))?;
    symlink("笔记/run.py", dir.join("relative-link"))?;
    symlink("/etc/hostname", dir.join("absolute-link"))?;
    symlink("nowhere", dir.join("dangling-link"))?;
    std::fs::set_permissions(
        dir.join("笔记/empty"),
        std::fs::Permissions::from_mode(0o700),
    )?;
    // Five links, the hard link once more: 3000 + 1 big + run.py, secret, empty, run-again.
    let files_total = 3000 + 1 + 4 + 3;
    let bytes_total = bytes_total + 12 + 9;

    let started = Instant::now();
    let fork = post_fork(&hub, &bob, "alice/lab", "lab").await?;
    let answered = started.elapsed();
    ensure!(fork["fork"]["state"] == json!("copying"), "{fork}");
    ensure!(fork["forked_from"] == json!("alice/lab"), "{fork}");
    let seen = wait_for_copy(&hub, &bob, "bob/lab").await?;
    let copied = started.elapsed();
    let last = seen.last().context("no state")?;
    ensure!(last["state"] == json!("done"), "{last}");
    ensure!(
        last["files_done"] == json!(files_total) && last["files_total"] == json!(files_total),
        "{last}"
    );
    ensure!(
        last["bytes_done"] == json!(bytes_total) && last["bytes_total"] == json!(bytes_total),
        "{last}"
    );
    // Progress: the totals were known while the bytes were being copied.
    let under_way = seen.iter().find(|f| {
        f["state"] == json!("copying")
            && f["files_total"] == json!(files_total)
            && f["bytes_done"].as_i64() < Some(bytes_total as i64)
    });
    ensure!(
        under_way.is_some(),
        "no progress was seen during the copy (answer after {answered:?}, done after {copied:?}): \
         {seen:?}"
    );
    ensure!(
        answered < copied / 2,
        "the fork's answer ({answered:?}) waited for the copy ({copied:?})"
    );

    let fork_dir = project_dir(&hub, fork["id"].as_i64().context("id")?);
    let (want, got) = (tree(&dir)?, tree(&fork_dir)?);
    ensure!(
        want.len() == got.len(),
        "{} entries, not {}",
        got.len(),
        want.len()
    );
    for (path, what) in &want {
        ensure!(
            got.get(path) == Some(what),
            "{}: {what} became {:?}",
            path.display(),
            got.get(path)
        );
    }
    ensure!(
        std::fs::metadata(fork_dir.join("run-again.py"))?.ino()
            == std::fs::metadata(fork_dir.join("笔记/run.py"))?.ino(),
        "the hard link is two files"
    );
    // The fork is the forker's own now: it runs (its work folder is the copy).
    let resp = hub
        .with_token(
            Method::GET,
            "/hub/api/projects/bob/lab/tree?path=笔记",
            &bob,
        )
        .send()
        .await?;
    let listing = expect_json(resp, StatusCode::OK, "the fork's files").await?;
    ensure!(listing.to_string().contains("run.py"), "{listing}");
    Ok(())
}

#[tokio::test]
async fn a_fork_being_copied_gets_409_and_a_restart_fails_it_leaving_no_files_to_delete(
) -> Result<()> {
    let mut hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    let id = public_project(&hub, &alice, "lab").await?;
    many_files(&project_dir(&hub, id), 4000, 1024)?;

    let fork = post_fork(&hub, &bob, "alice/lab", "lab").await?;
    let fork_id = fork["id"].as_i64().context("id")?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/bob/lab/run", &bob)
        .json(&json!({}))
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::CONFLICT, "running a fork being copied").await?;
    ensure!(message.contains("still being copied"), "{message}");
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/bob/lab/export", &bob)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "exporting a fork being copied").await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/bob/lab/fork", &bob)
        .json(&json!({"name": "lab-again"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "forking a fork being copied").await?;
    // Nor through JupyterHub's own API, by its server name.
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/users/bob/servers/project-{fork_id}"),
            &bob,
        )
        .json(&json!({}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::CONFLICT, "starting the fork's server").await?;

    let now = get_project(&hub, &bob, "bob/lab").await?;
    ensure!(
        now["fork"]["state"] == json!("copying"),
        "the copy ended before the hub could be killed; make the project bigger: {now}"
    );
    hub.kill().await?;
    hub.restart().await?;

    // Start-up fails it (once the hub answers, the recovery may still be under way).
    let seen = wait_for_copy(&hub, &bob, "bob/lab").await?;
    let last = seen.last().context("no state")?;
    ensure!(last["state"] == json!("failed"), "{last}");
    let why = last["message"].as_str().unwrap_or_default();
    ensure!(why.contains("restarted"), "{last}");
    ensure!(
        !project_dir(&hub, fork_id).exists(),
        "a failed fork keeps files"
    );
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/bob/lab/run", &bob)
        .json(&json!({}))
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "running a failed fork").await?;
    ensure!(message.contains("failed"), "{message}");
    let resp = hub
        .with_token(Method::DELETE, "/hub/api/projects/bob/lab", &bob)
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete the failed fork").await?;
    ensure!(!project_dir(&hub, fork_id)
        .parent()
        .context("parent")?
        .exists());
    // The original is whole and can be forked again.
    let again = post_fork(&hub, &bob, "alice/lab", "lab").await?;
    ensure!(again["fork"]["state"] == json!("copying"), "{again}");
    Ok(())
}

#[tokio::test]
async fn a_copy_that_fails_leaves_no_file_and_deleting_a_fork_being_copied_stops_it() -> Result<()>
{
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    let id = public_project(&hub, &alice, "lab").await?;
    let dir = project_dir(&hub, id);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("a.txt"), "copied first")?;
    // Folders nested deeper than a copy goes.
    let deep: PathBuf = std::iter::repeat_n("d", 300).collect();
    std::fs::create_dir_all(dir.join(&deep))?;

    let fork = post_fork(&hub, &bob, "alice/lab", "deep").await?;
    let fork_id = fork["id"].as_i64().context("id")?;
    let seen = wait_for_copy(&hub, &bob, "bob/deep").await?;
    let last = seen.last().context("no state")?;
    ensure!(last["state"] == json!("failed"), "{last}");
    let why = last["message"].as_str().unwrap_or_default();
    ensure!(why.contains("deep"), "{last}");
    ensure!(
        !project_dir(&hub, fork_id).exists(),
        "a failed fork keeps files"
    );
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/bob/deep/tree", &bob)
        .send()
        .await?;
    let listing = expect_json(resp, StatusCode::OK, "the failed fork's files").await?;
    ensure!(!listing.to_string().contains("a.txt"), "{listing}");
    let resp = hub
        .with_token(Method::DELETE, "/hub/api/projects/bob/deep", &bob)
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete the failed fork").await?;

    // A big project's fork deleted while it is copied: the copy stops, nothing is left.
    std::fs::remove_dir_all(dir.join("d"))?;
    many_files(&dir, 2000, 1024)?;
    let fork = post_fork(&hub, &bob, "alice/lab", "big").await?;
    let fork_id = fork["id"].as_i64().context("id")?;
    let resp = hub
        .with_token(Method::DELETE, "/hub/api/projects/bob/big", &bob)
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "delete a fork being copied").await?;
    let folder = project_dir(&hub, fork_id);
    let folder = folder.parent().context("parent")?;
    for _ in 0..10 {
        ensure!(!folder.exists(), "the deleted fork's folder came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/bob/big", &bob)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "the deleted fork").await?;
    Ok(())
}
