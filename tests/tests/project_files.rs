//! A project's files through the API of the real hub: resumable uploads (the datasets' tus
//! protocol) land in the project's folder, byte for byte, resumed after a cut; editors may
//! upload, move and delete, viewers may only read, strangers see nothing; a path that would
//! leave the folder (traversal, a link on the way), an existing path or a wrong offset gets the
//! right 4xx with a message and changes nothing.

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, Hub};

async fn user(hub: &Hub, name: &str) -> Result<String> {
    hub.create_user(name, &format!("{name}-password-1")).await?;
    hub.create_token(name, json!({})).await
}

/// The folder `/home/jovyan/work` is on the nodes of project `id` (default pool).
fn files_of(hub: &Hub, id: i64) -> std::path::PathBuf {
    hub.data_dir()
        .join("storage")
        .join("project")
        .join(id.to_string())
        .join("files")
}

/// alice's project `lab`; its folder.
async fn lab(hub: &Hub, alice: &str) -> Result<std::path::PathBuf> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", alice)
        .json(&json!({"name": "lab"}))
        .send()
        .await?;
    let project = expect_json(resp, StatusCode::CREATED, "create the project").await?;
    Ok(files_of(hub, project["id"].as_i64().context("id")?))
}

async fn declare(hub: &Hub, token: &str, path: &str, size: usize) -> Result<reqwest::Response> {
    Ok(hub
        .with_token(Method::POST, "/hub/api/projects/alice/lab/uploads", token)
        .json(&json!({"path": path, "size": size}))
        .send()
        .await?)
}

async fn patch(
    hub: &Hub,
    token: &str,
    url: &str,
    offset: usize,
    body: Vec<u8>,
) -> Result<reqwest::Response> {
    Ok(hub
        .with_token(Method::PATCH, url, token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(body)
        .send()
        .await?)
}

/// Declares and sends a whole file; answers the last answer's JSON-less headers' sha256.
async fn upload(hub: &Hub, token: &str, path: &str, content: &[u8]) -> Result<()> {
    let up = expect_json(
        declare(hub, token, path, content.len()).await?,
        StatusCode::CREATED,
        "declare",
    )
    .await?;
    if content.is_empty() {
        ensure!(up["complete"] == true, "{up}");
        return Ok(());
    }
    let url = up["url"].as_str().context("url")?.to_owned();
    expect_status(
        patch(hub, token, &url, 0, content.to_vec()).await?,
        StatusCode::NO_CONTENT,
        "send",
    )
    .await?;
    Ok(())
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn an_upload_into_a_project_lands_in_its_folder_byte_for_byte_after_a_resume() -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let files = lab(&hub, &alice).await?;

    // 3 MiB in two pieces, with the offset asked between them (what a resuming page does).
    let content = noise(3 * 1024 * 1024 + 17, 1);
    let resp = declare(&hub, &alice, "notebooks/读数据.ipynb", content.len()).await?;
    ensure!(resp.headers().get("location").is_some(), "no Location");
    let up = expect_json(resp, StatusCode::CREATED, "declare").await?;
    ensure!(up["project"] == "alice/lab" && up["offset"] == 0, "{up}");
    let url = up["url"].as_str().context("url")?.to_owned();
    ensure!(url.starts_with("/hub/api/uploads/p"), "{url}");
    let half = 1024 * 1024 + 5;
    expect_status(
        patch(&hub, &alice, &url, 0, content[..half].to_vec()).await?,
        StatusCode::NO_CONTENT,
        "first piece",
    )
    .await?;
    ensure!(
        !files.join("notebooks").exists(),
        "a partial file is visible"
    );
    let head = hub
        .with_token(Method::HEAD, &url, &alice)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await?;
    ensure!(head.status() == StatusCode::OK, "HEAD: {}", head.status());
    ensure!(
        head.headers()["upload-offset"] == half.to_string().as_str(),
        "{:?}",
        head.headers()
    );
    // A wrong offset changes nothing.
    let msg = expect_api_error(
        patch(&hub, &alice, &url, 7, content[7..].to_vec()).await?,
        StatusCode::CONFLICT,
        "wrong offset",
    )
    .await?;
    ensure!(msg.contains(&half.to_string()), "{msg}");
    let listed: Value = expect_json(
        hub.with_token(Method::GET, "/hub/api/projects/alice/lab/uploads", &alice)
            .send()
            .await?,
        StatusCode::OK,
        "unfinished",
    )
    .await?;
    ensure!(listed[0]["offset"] == half as u64, "{listed}");
    let resp = patch(&hub, &alice, &url, half, content[half..].to_vec()).await?;
    let sha = resp
        .headers()
        .get("x-xiji-sha256")
        .context("no sha256")?
        .to_str()?
        .to_owned();
    expect_status(resp, StatusCode::NO_CONTENT, "last piece").await?;
    ensure!(sha.len() == 64, "{sha}");
    ensure!(
        std::fs::read(files.join("notebooks/读数据.ipynb"))? == content,
        "bytes differ"
    );
    // The upload is gone; the tree and a download show the file.
    let resp = hub.with_token(Method::HEAD, &url, &alice).send().await?;
    ensure!(resp.status() == StatusCode::NOT_FOUND, "{}", resp.status());
    let tree: Value = expect_json(
        hub.with_token(
            Method::GET,
            "/hub/api/projects/alice/lab/tree?path=notebooks",
            &alice,
        )
        .send()
        .await?,
        StatusCode::OK,
        "tree",
    )
    .await?;
    ensure!(tree["items"][0]["size"] == content.len() as u64, "{tree}");
    let got = hub
        .with_token(
            Method::GET,
            "/hub/api/projects/alice/lab/files/notebooks/%E8%AF%BB%E6%95%B0%E6%8D%AE.ipynb",
            &alice,
        )
        .send()
        .await?
        .bytes()
        .await?;
    ensure!(got.as_ref() == content.as_slice(), "download differs");

    // A 0-byte file is complete at once; an existing path is a 409 before any byte.
    upload(&hub, &alice, "empty.txt", b"").await?;
    ensure!(
        std::fs::metadata(files.join("empty.txt"))?.len() == 0,
        "no empty file"
    );
    let msg = expect_api_error(
        declare(&hub, &alice, "empty.txt", 3).await?,
        StatusCode::CONFLICT,
        "existing",
    )
    .await?;
    ensure!(msg.contains("exists already"), "{msg}");
    // Two uploads to one path: the second is told to resume the first.
    let first = expect_json(
        declare(&hub, &alice, "twice.bin", 10).await?,
        StatusCode::CREATED,
        "first",
    )
    .await?;
    expect_api_error(
        declare(&hub, &alice, "twice.bin", 10).await?,
        StatusCode::CONFLICT,
        "twice",
    )
    .await?;
    // More than declared: 400, nothing kept.
    let url = first["url"].as_str().context("url")?;
    expect_api_error(
        patch(&hub, &alice, url, 0, vec![1; 11]).await?,
        StatusCode::BAD_REQUEST,
        "too much",
    )
    .await?;
    // Given up: the path is free again and nothing is left in the folder.
    expect_status(
        hub.with_token(Method::DELETE, url, &alice).send().await?,
        StatusCode::NO_CONTENT,
        "give up",
    )
    .await?;
    ensure!(!files.join("twice.bin").exists(), "given up but there");
    let left: Vec<_> =
        std::fs::read_dir(files.parent().context("root")?.join("uploads"))?.collect();
    ensure!(left.is_empty(), "upload bytes left: {left:?}");
    Ok(())
}

#[tokio::test]
async fn editors_change_a_projects_files_viewers_read_them_and_strangers_see_nothing() -> Result<()>
{
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let editor = user(&hub, "eve").await?;
    let viewer = user(&hub, "vic").await?;
    let stranger = user(&hub, "sam").await?;
    let files = lab(&hub, &alice).await?;
    for (who, role) in [("eve", "editor"), ("vic", "viewer")] {
        let resp = hub
            .with_token(
                Method::PUT,
                &format!("/hub/api/projects/alice/lab/members/{who}"),
                &alice,
            )
            .json(&json!({"role": role}))
            .send()
            .await?;
        ensure!(
            resp.status().is_success(),
            "member {who}: {}",
            resp.status()
        );
    }
    upload(&hub, &editor, "data/a.csv", b"x,y\n1,2\n").await?;
    expect_api_error(
        declare(&hub, &viewer, "b.csv", 3).await?,
        StatusCode::FORBIDDEN,
        "viewer uploads",
    )
    .await?;
    expect_api_error(
        declare(&hub, &stranger, "b.csv", 3).await?,
        StatusCode::NOT_FOUND,
        "stranger uploads",
    )
    .await?;
    let got = hub
        .with_token(
            Method::GET,
            "/hub/api/projects/alice/lab/files/data/a.csv",
            &viewer,
        )
        .send()
        .await?;
    ensure!(
        got.status() == StatusCode::OK,
        "viewer reads: {}",
        got.status()
    );
    // An upload of the editor's is not the viewer's nor the stranger's to see.
    let up = expect_json(
        declare(&hub, &editor, "c.bin", 4).await?,
        StatusCode::CREATED,
        "declare",
    )
    .await?;
    let url = up["url"].as_str().context("url")?.to_owned();
    for token in [&viewer, &stranger] {
        let resp = patch(&hub, token, &url, 0, vec![0; 4]).await?;
        ensure!(
            resp.status() == StatusCode::NOT_FOUND,
            "someone else's upload: {}",
            resp.status()
        );
    }

    // Moves and deletes: the editor may, the viewer may not.
    let mv = |token: &str, from: &str, to: &str| {
        hub.with_token(Method::POST, "/hub/api/projects/alice/lab/move", token)
            .json(&json!({"from": from, "to": to}))
    };
    expect_api_error(
        mv(&viewer, "data", "d").send().await?,
        StatusCode::FORBIDDEN,
        "viewer moves",
    )
    .await?;
    let moved = expect_json(
        mv(&editor, "data", "raw/data").send().await?,
        StatusCode::OK,
        "move",
    )
    .await?;
    ensure!(moved["to"] == "raw/data", "{moved}");
    ensure!(
        files.join("raw/data/a.csv").is_file() && !files.join("data").exists(),
        "not moved"
    );
    expect_api_error(
        mv(&editor, "raw", "raw/inner").send().await?,
        StatusCode::BAD_REQUEST,
        "into itself",
    )
    .await?;
    expect_api_error(
        mv(&editor, "nothing", "x").send().await?,
        StatusCode::NOT_FOUND,
        "missing",
    )
    .await?;
    upload(&hub, &editor, "other.csv", b"1").await?;
    expect_api_error(
        mv(&editor, "other.csv", "raw").send().await?,
        StatusCode::CONFLICT,
        "onto a folder",
    )
    .await?;
    let del = |token: &str, path: &str| {
        hub.with_token(
            Method::DELETE,
            &format!("/hub/api/projects/alice/lab/files/{path}"),
            token,
        )
    };
    expect_api_error(
        del(&viewer, "raw").send().await?,
        StatusCode::FORBIDDEN,
        "viewer deletes",
    )
    .await?;
    expect_status(
        del(&editor, "raw").send().await?,
        StatusCode::NO_CONTENT,
        "delete a folder",
    )
    .await?;
    ensure!(!files.join("raw").exists(), "not deleted");
    expect_api_error(
        del(&editor, "raw").send().await?,
        StatusCode::NOT_FOUND,
        "deleted twice",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn paths_that_would_leave_the_project_are_refused_and_change_nothing() -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let files = lab(&hub, &alice).await?;
    // What a notebook could leave behind: a link to a folder outside the project.
    let outside = hub.data_dir().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("keep.txt"), b"keep")?;
    std::os::unix::fs::symlink(&outside, files.join("escape"))?;

    for bad in ["../x.txt", "/etc/x", "a/../../x", "a\\b", "a\u{1}b", ""] {
        let msg = expect_api_error(
            declare(&hub, &alice, bad, 1).await?,
            StatusCode::BAD_REQUEST,
            bad,
        )
        .await?;
        ensure!(!msg.is_empty(), "{bad}");
    }
    let msg = expect_api_error(
        declare(&hub, &alice, "escape/new.txt", 1).await?,
        StatusCode::CONFLICT,
        "through a link",
    )
    .await?;
    ensure!(msg.contains("link"), "{msg}");
    let msg = expect_api_error(
        hub.with_token(Method::POST, "/hub/api/projects/alice/lab/move", &alice)
            .json(&json!({"from": "escape/keep.txt", "to": "mine.txt"}))
            .send()
            .await?,
        StatusCode::CONFLICT,
        "move out through a link",
    )
    .await?;
    ensure!(msg.contains("link"), "{msg}");
    expect_api_error(
        hub.with_token(
            Method::DELETE,
            "/hub/api/projects/alice/lab/files/escape/keep.txt",
            &alice,
        )
        .send()
        .await?,
        StatusCode::CONFLICT,
        "delete through a link",
    )
    .await?;
    // Deleting the link removes the link, not what it points to.
    expect_status(
        hub.with_token(
            Method::DELETE,
            "/hub/api/projects/alice/lab/files/escape",
            &alice,
        )
        .send()
        .await?,
        StatusCode::NO_CONTENT,
        "delete the link",
    )
    .await?;
    ensure!(
        std::fs::read(outside.join("keep.txt"))? == b"keep",
        "the outside changed"
    );
    ensure!(!outside.join("new.txt").exists(), "written outside");
    // A file where a folder is needed.
    upload(&hub, &alice, "plain", b"1").await?;
    expect_api_error(
        declare(&hub, &alice, "plain/inner.txt", 1).await?,
        StatusCode::CONFLICT,
        "file as folder",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn an_upload_whose_every_byte_reached_the_disk_is_finished_by_the_next_offset_request(
) -> Result<()> {
    let mut hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let files = lab(&hub, &alice).await?;
    let up = expect_json(
        declare(&hub, &alice, "model.bin", 6).await?,
        StatusCode::CREATED,
        "declare",
    )
    .await?;
    let id = up["id"].as_str().context("id")?.to_owned();
    let url = up["url"].as_str().context("url")?.to_owned();
    // The hub stopped after the last bytes were written and before the file was put in place.
    hub.kill().await?;
    std::fs::write(
        files.parent().context("root")?.join("uploads").join(&id),
        b"abcdef",
    )?;
    hub.restart().await?;
    let head = hub
        .with_token(Method::HEAD, &url, &alice)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await?;
    ensure!(head.status() == StatusCode::OK, "HEAD: {}", head.status());
    ensure!(
        head.headers()["upload-offset"] == "6",
        "{:?}",
        head.headers()
    );
    ensure!(
        head.headers().contains_key("x-xiji-sha256"),
        "not finished: {:?}",
        head.headers()
    );
    ensure!(
        std::fs::read(files.join("model.bin"))? == b"abcdef",
        "not in place"
    );
    let again = hub.with_token(Method::HEAD, &url, &alice).send().await?;
    ensure!(
        again.status() == StatusCode::NOT_FOUND,
        "{}",
        again.status()
    );
    Ok(())
}
