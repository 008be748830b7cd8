//! Project archives through the real hub: a project exported from one hub and imported on
//! another (its own database and pool) has byte-identical files and the same name,
//! description, tags and datasets by reference; archives that try to escape (a `..` path, a
//! symbolic link out), a manifest of an unknown version and a zstd bomb past the user's storage
//! limit are refused with a 400 that says why, leaving no project and no folder behind.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, Hub, HubOptions};

/// `user` with a token of the default role.
async fn user(hub: &Hub, name: &str) -> Result<String> {
    hub.create_user(name, &format!("{name}-password-1")).await?;
    hub.create_token(name, json!({})).await
}

/// A dataset of the token's user holding one file.
async fn dataset(hub: &Hub, token: &str, name: &str, path: &str, content: &str) -> Result<()> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", token)
        .json(&json!({"name": name, "visibility": "public"}))
        .send()
        .await?;
    let d = expect_json(resp, StatusCode::CREATED, "create a dataset").await?;
    let owner = d["owner"].as_str().context("owner")?.to_owned();
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/datasets/{owner}/{name}/uploads"),
            token,
        )
        .json(&json!({"path": path, "size": content.len()}))
        .send()
        .await?;
    let up = expect_json(resp, StatusCode::CREATED, "declare a file").await?;
    let url = up["url"].as_str().context("url")?.to_owned();
    let resp = hub
        .with_token(Method::PATCH, &url, token)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .body(content.to_owned())
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "send the file").await?;
    Ok(())
}

fn projects_root(hub: &Hub) -> PathBuf {
    hub.data_dir().join("storage").join("project")
}

fn project_dir(hub: &Hub, id: i64) -> PathBuf {
    projects_root(hub).join(id.to_string()).join("files")
}

/// Every entry under `dir`: a file's bytes and mode, a folder's mode, a link's target.
fn tree(dir: &Path) -> Result<BTreeMap<String, String>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let rel = path
                .strip_prefix(root)?
                .to_str()
                .context("utf-8")?
                .to_owned();
            let meta = std::fs::symlink_metadata(&path)?;
            let mode = meta.mode() & 0o777;
            if meta.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", std::fs::read_link(&path)?.display()),
                );
            } else if meta.is_dir() {
                out.insert(rel, format!("folder {mode:o}"));
                walk(root, &path, out)?;
            } else {
                let bytes = std::fs::read(&path)?;
                out.insert(rel, format!("file {mode:o} {bytes:?}"));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

/// Names in the pool's project folder (each project's, and any import's leftovers).
fn folders(hub: &Hub) -> Result<Vec<String>> {
    let root = projects_root(hub);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = std::fs::read_dir(root)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    Ok(names)
}

async fn my_projects(hub: &Hub, token: &str) -> Result<Value> {
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects?mine=true", token)
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "list my projects").await
}

async fn import(
    hub: &Hub,
    token: &str,
    query: &str,
    archive: Vec<u8>,
) -> Result<reqwest::Response> {
    Ok(hub
        .with_token(
            Method::POST,
            &format!("/hub/api/projects/import{query}"),
            token,
        )
        .header("Content-Type", "application/zstd")
        .body(archive)
        .send()
        .await?)
}

#[tokio::test]
async fn an_exported_project_imported_on_another_hub_has_the_same_files_and_record() -> Result<()> {
    let a = Hub::start().await?;
    let alice = user(&a, "alice").await?;
    dataset(&a, &alice, "ref-data", "labels.csv", "id,label\n1,cat\n").await?;
    let resp = a
        .with_token(Method::POST, "/hub/api/projects", &alice)
        .json(&json!({
            "name": "蛋白质-折叠",
            "description": "# Folding\n\nProteins, **folded**.",
            "tags": ["ml", "生物"],
            "datasets": ["alice/ref-data"],
        }))
        .send()
        .await?;
    let original = expect_json(resp, StatusCode::CREATED, "create a project").await?;
    let dir = project_dir(&a, original["id"].as_i64().context("id")?);
    std::fs::create_dir_all(dir.join("data/深层"))?;
    std::fs::write(dir.join("README.md"), "# notes\n")?;
    let binary: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(dir.join("data/weights.bin"), &binary)?;
    std::fs::write(dir.join("data/深层/空.txt"), "")?;
    std::fs::write(dir.join("run.sh"), "#!/bin/sh\necho hi\n")?;
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755))?;
    std::os::unix::fs::symlink("data/weights.bin", dir.join("latest"))?;
    // A link leaving the project is left out of the archive.
    std::os::unix::fs::symlink("/etc/passwd", dir.join("outside"))?;
    let mut expected = tree(&dir)?;
    ensure!(expected.remove("outside").is_some());

    let resp = a
        .with_token(
            Method::GET,
            "/hub/api/projects/alice/%E8%9B%8B%E7%99%BD%E8%B4%A8-%E6%8A%98%E5%8F%A0/export?include_datasets=true",
            &alice,
        )
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK, "export: {}", resp.status());
    ensure!(resp.headers()["content-type"] == "application/zstd");
    let disposition = resp.headers()["content-disposition"].to_str()?.to_owned();
    ensure!(
        disposition.starts_with("attachment;") && disposition.contains(".tar.zst"),
        "{disposition}"
    );
    let archive = resp.bytes().await?.to_vec();

    // Another hub: its own database and pool; alice has a dataset of the same name there.
    let b = Hub::start().await?;
    let alice_b = user(&b, "alice").await?;
    dataset(&b, &alice_b, "ref-data", "other.csv", "x\n").await?;
    let resp = import(&b, &alice_b, "", archive.clone()).await?;
    let imported = expect_json(resp, StatusCode::CREATED, "import the project").await?;
    ensure!(imported["name"] == original["name"], "{imported}");
    ensure!(imported["description"] == original["description"]);
    ensure!(imported["tags"] == original["tags"]);
    ensure!(
        imported["datasets"] == json!(["alice/ref-data"]),
        "{imported}"
    );
    ensure!(imported["visibility"] == "private");
    ensure!(imported["dropped_datasets"] == json!([]));
    ensure!(imported["datasets_not_imported"] == json!(["alice/ref-data"]));
    ensure!(imported["image_not_found"].is_null());
    let got = tree(&project_dir(&b, imported["id"].as_i64().context("id")?))?;
    ensure!(
        got == expected,
        "files differ:\n{got:#?}\nexpected\n{expected:#?}"
    );

    // The same name again is a 409 and leaves nothing; another name works.
    let before = folders(&b)?;
    let resp = import(&b, &alice_b, "", archive.clone()).await?;
    let m = expect_api_error(resp, StatusCode::CONFLICT, "import a name taken").await?;
    ensure!(m.contains("already has a project"), "{m}");
    ensure!(folders(&b)? == before);
    let archive_again = archive.clone();
    let resp = import(&b, &alice_b, "?name=copy-2", archive).await?;
    let copy = expect_json(resp, StatusCode::CREATED, "import under another name").await?;
    ensure!(copy["name"] == "copy-2");
    ensure!(my_projects(&b, &alice_b).await?["total"] == 2);

    // A hub where the included dataset does not exist: it becomes a new private dataset of the
    // importer holding the archive's files with their sha256, attached to the project; a second
    // import names the next one ref-data-2.
    let c = Hub::start().await?;
    let carol = user(&c, "carol").await?;
    let resp = import(&c, &carol, "", archive_again.clone()).await?;
    let imported = expect_json(resp, StatusCode::CREATED, "import with its dataset").await?;
    ensure!(
        imported["datasets_imported"] == json!(["carol/ref-data"]),
        "{imported}"
    );
    ensure!(
        imported["datasets"] == json!(["carol/ref-data"]),
        "{imported}"
    );
    ensure!(imported["dropped_datasets"] == json!([]), "{imported}");
    let ds = expect_json(
        c.with_token(Method::GET, "/hub/api/datasets/carol/ref-data", &carol)
            .send()
            .await?,
        StatusCode::OK,
        "the imported dataset",
    )
    .await?;
    ensure!(
        ds["visibility"] == "private" && ds["file_count"] == 1,
        "{ds}"
    );
    let got = c
        .with_token(
            Method::GET,
            "/hub/api/datasets/carol/ref-data/files/labels.csv",
            &carol,
        )
        .send()
        .await?
        .text()
        .await?;
    ensure!(got == "id,label\n1,cat\n", "{got:?}");
    let tree = expect_json(
        c.with_token(Method::GET, "/hub/api/datasets/carol/ref-data/tree", &carol)
            .send()
            .await?,
        StatusCode::OK,
        "the imported dataset's files",
    )
    .await?;
    let sha = tree["entries"][0]["sha256"].as_str().context("sha256")?;
    ensure!(sha == hex_sha256(b"id,label\n1,cat\n"), "{tree}");
    let resp = import(&c, &carol, "?name=again", archive_again).await?;
    let again = expect_json(resp, StatusCode::CREATED, "import again").await?;
    ensure!(
        again["datasets_imported"] == json!(["carol/ref-data-2"]),
        "{again}"
    );
    Ok(())
}

fn hex_sha256(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .map(|mut i| i.write_all(bytes))
                .transpose()?;
            child.wait_with_output()
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Builds an archive with Python's tarfile and the zstd command: `kind` says which.
const BUILD: &str = r#"
import io, json, subprocess, sys, tarfile
kind, out = sys.argv[1], sys.argv[2]
manifest = {
    "format": "xiji-project", "version": 1,
    "project": {"name": "evil", "description": "", "tags": [], "image": None,
                "visibility": "private", "datasets": [],
                "created": "2026-09-21T14:13:20.123456Z",
                "exported_at": "2026-11-18T11:06:40.654321Z", "exported_from": ""},
    "files": 1, "bytes": 5,
}
if kind == "version":
    manifest["version"] = 2
class Zeros(io.RawIOBase):
    def __init__(self, n): self.left = n
    def readable(self): return True
    def readinto(self, b):
        n = min(len(b), self.left); b[:n] = bytes(n); self.left -= n; return n
raw = io.BytesIO()
with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
    data = json.dumps(manifest).encode()
    info = tarfile.TarInfo("project.json"); info.size = len(data)
    t.addfile(info, io.BytesIO(data))
    d = tarfile.TarInfo("files"); d.type = tarfile.DIRTYPE; d.mode = 0o755
    t.addfile(d)
    if kind == "traversal":
        info = tarfile.TarInfo("files/../../evil.txt"); info.size = 5
        t.addfile(info, io.BytesIO(b"evil\n"))
    elif kind == "symlink":
        link = tarfile.TarInfo("files/out"); link.type = tarfile.SYMTYPE
        link.linkname = "../../../../etc"
        t.addfile(link)
    elif kind == "bomb":
        info = tarfile.TarInfo("files/zeros.bin"); info.size = 64 << 20
        t.addfile(info, Zeros(64 << 20))
    else:
        info = tarfile.TarInfo("files/a.txt"); info.size = 5
        t.addfile(info, io.BytesIO(b"fine\n"))
zst = subprocess.run(["zstd", "-q", "-19", "-c"], input=raw.getvalue(), check=True,
                     stdout=subprocess.PIPE).stdout
open(out, "wb").write(zst)
"#;

fn build(dir: &Path, kind: &str) -> Result<Vec<u8>> {
    let out = dir.join(format!("{kind}.tar.zst"));
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(BUILD)
        .arg(kind)
        .arg(&out)
        .status()?;
    ensure!(status.success(), "building the {kind} archive");
    Ok(std::fs::read(out)?)
}

#[tokio::test]
async fn malicious_archives_are_refused_with_a_400_and_leave_nothing_behind() -> Result<()> {
    // 8 MiB of storage per user: the bomb's 64 MiB of zeros (a few KB compressed) is past it.
    let hub = Hub::start_with(HubOptions {
        tables_toml: "\n[datasets]\nuser_limit_gb = 0.0078125\n".into(),
        ..HubOptions::default()
    })
    .await?;
    let token = user(&hub, "mallory").await?;
    let work = tempfile::tempdir()?;
    let before = folders(&hub)?;
    for (kind, message) in [
        ("traversal", "\"files/../../evil.txt\" is refused"),
        ("symlink", "symbolic link \"files/out\""),
        ("version", "version 2 of the project format"),
        ("bomb", "more than the 8.0 MiB you may still store"),
    ] {
        let archive = build(work.path(), kind)?;
        if kind == "bomb" {
            ensure!(
                archive.len() < 100_000,
                "the bomb is {} bytes",
                archive.len()
            );
        }
        let resp = import(&hub, &token, "", archive).await?;
        let m = expect_api_error(resp, StatusCode::BAD_REQUEST, kind).await?;
        ensure!(m.contains(message), "the {kind} archive: {m}");
        ensure!(
            folders(&hub)? == before,
            "the {kind} archive left {:?}",
            folders(&hub)?
        );
        ensure!(
            my_projects(&hub, &token).await?["total"] == 0,
            "the {kind} archive left a project"
        );
    }
    ensure!(!work.path().join("evil.txt").exists());
    // A well-formed archive of the same shape is taken.
    let resp = import(&hub, &token, "", build(work.path(), "fine")?).await?;
    let p = expect_json(resp, StatusCode::CREATED, "import a fine archive").await?;
    let dir = project_dir(&hub, p["id"].as_i64().context("id")?);
    ensure!(std::fs::read(dir.join("a.txt"))? == b"fine\n");
    Ok(())
}

#[tokio::test]
async fn a_projects_folder_is_listed_and_downloaded_without_leaving_it() -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", &alice)
        .json(&json!({"name": "digits"}))
        .send()
        .await?;
    let p = expect_json(resp, StatusCode::CREATED, "create a project").await?;
    let dir = project_dir(&hub, p["id"].as_i64().context("id")?);
    std::fs::create_dir_all(dir.join("data/raw"))?;
    std::fs::create_dir_all(dir.join("b-folder"))?;
    std::fs::write(dir.join("data/weights.bin"), vec![7u8; 70_000])?;
    std::fs::write(dir.join("a.txt"), "hello\n")?;
    std::os::unix::fs::symlink("data/weights.bin", dir.join("latest"))?;
    std::os::unix::fs::symlink("/etc", dir.join("escape"))?;

    let get = |path: String| hub.with_token(Method::GET, &path, &alice).send();
    let base = "/hub/api/projects/alice/digits";
    let resp = get(format!("{base}/tree")).await?;
    let page = expect_json(resp, StatusCode::OK, "list the top").await?;
    let names: Vec<(String, String)> = page["items"]
        .as_array()
        .context("items")?
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or("").to_owned(),
                e["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("folder", "b-folder"),
        ("folder", "data"),
        ("file", "a.txt"),
        ("link", "escape"),
        ("link", "latest"),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
    .collect();
    ensure!(names == want, "{names:?}");
    ensure!(page["total"] == 5);
    ensure!(page["items"][3]["target"] == "/etc");
    let resp = get(format!("{base}/tree?path=data&limit=1&offset=1")).await?;
    let page = expect_json(resp, StatusCode::OK, "a page of data").await?;
    ensure!(page["items"][0]["path"] == "data/weights.bin", "{page}");
    ensure!(page["items"][0]["size"] == 70_000);
    ensure!(page["total"] == 2);

    let resp = get(format!("{base}/files/data/weights.bin")).await?;
    ensure!(resp.status() == StatusCode::OK);
    ensure!(resp.headers()["content-disposition"]
        .to_str()?
        .starts_with("attachment"));
    ensure!(resp.bytes().await?.to_vec() == vec![7u8; 70_000]);
    // A link inside the project is followed; one leaving it is not, nor a path through it.
    let resp = get(format!("{base}/files/latest")).await?;
    ensure!(resp.status() == StatusCode::OK);
    ensure!(resp.bytes().await?.len() == 70_000);
    for path in ["files/escape/passwd", "tree?path=escape"] {
        let resp = get(format!("{base}/{path}")).await?;
        let m = expect_api_error(resp, StatusCode::BAD_REQUEST, path).await?;
        ensure!(m.contains("pointing outside the project"), "{m}");
    }
    let resp = get(format!("{base}/tree?path=data/../..")).await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "a path climbing out").await?;
    let resp = get(format!("{base}/files/nothing")).await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "a missing file").await?;
    // A stranger does not see the private project.
    let resp = hub
        .with_token(Method::GET, &format!("{base}/tree"), &bob)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "a stranger's listing").await?;
    Ok(())
}

#[tokio::test]
async fn an_import_cut_off_by_the_hub_stopping_leaves_nothing_after_a_restart() -> Result<()> {
    let mut hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", &alice)
        .json(&json!({"name": "big"}))
        .send()
        .await?;
    let original = expect_json(resp, StatusCode::CREATED, "create a project").await?;
    let dir = project_dir(&hub, original["id"].as_i64().context("id")?);
    // Incompressible bytes, so the archive is long enough to be cut in the middle.
    let noise: Vec<u8> = (0..4_000_000u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.join("noise.bin"), &noise)?;
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/alice/big/export", &alice)
        .send()
        .await?;
    ensure!(resp.status() == StatusCode::OK, "export: {}", resp.status());
    let archive = resp.bytes().await?.to_vec();
    let before = folders(&hub)?;

    // Half the archive, then the connection stays open: the import waits for the rest.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    tx.send(Ok(archive[..archive.len() / 2].to_vec())).await?;
    let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let request = hub
        .with_token(Method::POST, "/hub/api/projects/import?name=cut", &alice)
        .header("Content-Type", "application/zstd")
        .body(body)
        .send();
    let pending = tokio::spawn(request);
    let mut started = false;
    for _ in 0..200 {
        if folders(&hub)?.len() > before.len() {
            started = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    ensure!(started, "the import never placed its folder");
    hub.kill().await?;
    drop(tx);
    let _ = pending.await;
    hub.restart().await?;
    ensure!(
        folders(&hub)? == before,
        "left behind: {:?}",
        folders(&hub)?
    );
    let mine = my_projects(&hub, &alice).await?;
    ensure!(mine["total"] == 1, "{mine}");
    // The name is free: the same import, whole, works.
    let resp = import(&hub, &alice, "?name=cut", archive).await?;
    expect_json(resp, StatusCode::CREATED, "import again").await?;
    Ok(())
}
