//! Saving a running node as an image, through the real hub on a real Docker Engine and a real
//! Debian `docker-registry` (our own, on a free port, with its access log):
//!
//! - in a running node: a package is `pip install`ed (from a wheel copied in), files are added,
//!   a file of the base image is deleted, a directory is replaced, files are written into the
//!   work directory and `/tmp`;
//! - saved through the JupyterLab extension's server part (`/user/{name}/xiji/save-image`, which
//!   calls the hub with the server's own token), and with the server's token and a user token
//!   directly; the job goes queued → … → done and a private image appears in "My images";
//! - `docker pull` + `docker run` of the result: the package imports, the deleted file is gone,
//!   the replaced directory holds only the new content, the work directory's and `/tmp`'s files
//!   are absent; the registry's log shows that only the new layer and the config were uploaded;
//! - an administrator adds it to the library and another user starts a cluster from it;
//! - bad input: unknown node (404), another user's server (404), a server token on another
//!   server (404/403), names and tags the registry would reject (400), a name used already (409),
//!   a server that is not running (400), a cancel (no image), a registry that is down (a failed
//!   job that says so, no image).
//!
//! Needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh); without it each
//! test says so and returns. With it, a Docker Engine that does not work is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::{docker_out, Instance};
use tests::registry::{base_image, docker_enabled, wait_job, Registry};
use tests::{expect_json, process, Hub, HubOptions};

/// Runs a command; its stdout, or an error with its stderr.
/// `sh -c` inside a container, as `user`.
fn exec(container: &str, user: &str, script: &str) -> Result<String> {
    docker_out(&["exec", "-u", user, container, "sh", "-c", script])
}

/// Containers, networks and images of one test, removed on drop whatever happened.
struct Cleanup {
    instance: Instance,
    images: Vec<String>,
}

impl Cleanup {
    /// The one running container of `user`'s single-node cluster.
    fn node_of(&self, user: &str) -> Result<String> {
        self.instance.user_container(user)
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Containers first: an image still in use cannot be removed.
        self.instance.remove_all();
        for image in &self.images {
            let _ = Command::new("docker").args(["rmi", "-f", image]).output();
        }
    }
}

/// A tiny pure-Python wheel, `xiji_probe` (imports and reports its version).
fn probe_wheel(dir: &Path) -> Result<PathBuf> {
    let script = r#"
import base64, hashlib, sys, zipfile
path = sys.argv[1] + "/xiji_probe-1.0-py3-none-any.whl"
files = {
    "xiji_probe/__init__.py": "VERSION = '1.0'\n",
    "xiji_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: xiji_probe\nVersion: 1.0\n",
    "xiji_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: xiji-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(path, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("xiji_probe-1.0.dist-info/RECORD,,")
    z.writestr("xiji_probe-1.0.dist-info/RECORD", "\n".join(record) + "\n")
print(path)
"#;
    let out = process::output_of("python3", &["-c", script, &dir.display().to_string()])?;
    Ok(PathBuf::from(out.trim()))
}

/// A hub on the docker backend saving into `registry`, with `base` in its library as "Base".
async fn hub_saving_to(cleanup: &Cleanup, registry: &Registry, base: &str) -> Result<Hub> {
    let options = HubOptions {
        spawner_toml: "backend = \"docker\"\nstart_timeout = 300\n".into(),
        top_level_toml: "slow_spawn_timeout = 1\n".into(),
        tables_toml: format!(
            "\n[spawner.docker]\ncpu_overcommit = 8\ninstance = \"{}\"\ndefault_memory_mb = 768\ndefault_cpus = 1.0\n\
             \n[images]\nregistry = \"{}\"\nrepository_prefix = \"saved\"\n",
            cleanup.instance.0, registry.addr
        ),
        ..HubOptions::default()
    };
    let hub = Hub::start_with(options).await?;
    let (repository, tag) = base.rsplit_once(':').context("the base has no tag")?;
    let resp = hub
        .admin(Method::POST, "/hub/api/images")
        .json(&json!({"name": "Base", "image": repository, "tag": tag}))
        .send()
        .await?;
    expect_json(
        resp,
        StatusCode::CREATED,
        "add the base image to the library",
    )
    .await?;
    Ok(hub)
}

async fn start_cluster(hub: &Hub, user: &str, image: &str) -> Result<Value> {
    tests::docker::start_cluster(hub, user, json!({"image": image, "nodes": 1})).await
}

async fn save(hub: &Hub, token: &str, path: &str, body: Value) -> Result<reqwest::Response> {
    Ok(hub
        .with_token(Method::POST, path, token)
        .json(&body)
        .send()
        .await?)
}

/// The status and message of an API error.
async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn my_images(hub: &Hub, token: &str) -> Result<Vec<Value>> {
    let resp = hub
        .with_token(Method::GET, "/hub/api/images?mine=1", token)
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "GET my images").await?;
    Ok(list.as_array().cloned().unwrap_or_default())
}

/// The tests of this file one at a time: each runs clusters and a registry on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Our registry holding the base image (so its log shows every blob a save uploads), and the
/// cleanup of this test's containers and images.
fn registry_with_base() -> Result<(Registry, Cleanup, String)> {
    let registry = Registry::start()?;
    let mut cleanup = Cleanup {
        instance: Instance::new("xiji-test"),
        images: Vec::new(),
    };
    let base = registry.push(&base_image(), "xiji/base-notebook:latest")?;
    cleanup.images.push(base.clone());
    Ok((registry, cleanup, base))
}

#[tokio::test]
async fn a_node_saved_through_the_hub_runs_with_its_changes_and_starts_as_a_cluster() -> Result<()>
{
    if !docker_enabled()? {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let (mut registry, mut cleanup, base) = registry_with_base()?;
    let base_layers = registry.layers("xiji/base-notebook", "latest")?;
    ensure!(!base_layers.is_empty(), "the base has no layers");

    let hub = hub_saving_to(&cleanup, &registry, &base).await?;
    hub.create_user("erin", "erin-password-1").await?;
    hub.create_user("frank", "frank-password-1").await?;
    let erin = hub.create_token("erin", json!({})).await?;
    let frank = hub.create_token("frank", json!({})).await?;
    start_cluster(&hub, "erin", "Base").await?;
    let node = cleanup.node_of("erin")?;

    // --- changes in the running node ---------------------------------------------------
    let scratch = tempfile::tempdir()?;
    let wheel = probe_wheel(scratch.path())?;
    docker_out(&["cp", &wheel.display().to_string(), &format!("{node}:/tmp/")])?;
    // As the user: the image's venv belongs to jovyan.
    exec(
        &node,
        "jovyan",
        "/opt/venv/bin/pip install --no-index --no-deps /tmp/xiji_probe-1.0-py3-none-any.whl \
         && /opt/venv/bin/python -c 'import xiji_probe'",
    )?;
    exec(
        &node,
        "root",
        "set -e; mkdir -p /opt/xiji-test && echo added > /opt/xiji-test/added.txt \
         && rm /usr/bin/nano \
         && rm -rf /usr/share/doc/git && mkdir /usr/share/doc/git \
         && echo new > /usr/share/doc/git/only.txt \
         && echo scratch > /tmp/scratch.txt",
    )?;
    exec(
        &node,
        "jovyan",
        &format!("echo mine > {}/in-work.txt", tests::docker::WORK_DIR),
    )?;

    // --- bad input first (nothing may be listed afterwards) -----------------------------
    let path = "/hub/api/users/erin/server/save-image";
    let (status, message) =
        error_of(save(&hub, &erin, path, json!({"name": "env", "node": "node-7"})).await?).await;
    ensure!(
        status == 404 && message.contains("node-7") && message.contains("node-0"),
        "unknown node: {status} {message}"
    );
    let (status, message) = error_of(save(&hub, &frank, path, json!({"name": "env"})).await?).await;
    ensure!(status == 404, "another user's server: {status} {message}");
    for (body, rule) in [
        (json!({"name": "My Env"}), "lower-case"),
        (json!({"name": "a/b"}), "lower-case"),
        (json!({"name": ""}), "name"),
        (json!({"name": "env", "tag": "-v1"}), "Invalid tag"),
        (json!({"name": "env", "tag": "v:1"}), "Invalid tag"),
        (json!({"name": "env", "colour": "red"}), "unknown field"),
    ] {
        let (status, message) = error_of(save(&hub, &erin, path, body.clone()).await?).await;
        ensure!(
            status == 400 && message.contains(rule),
            "{body}: {status} {message}"
        );
    }
    let (status, message) = error_of(
        save(
            &hub,
            &frank,
            "/hub/api/users/frank/server/save-image",
            json!({"name": "env"}),
        )
        .await?,
    )
    .await;
    ensure!(status == 404, "frank has no server: {status} {message}");

    // --- save 1: through the extension's server part, which uses the server's token ------
    let resp = hub
        .with_token(Method::POST, "/user/erin/xiji/save-image", &erin)
        .json(&json!({"name": "my-env", "tag": "v1", "description": "probe, files, no nano"}))
        .send()
        .await?;
    let job = expect_json(
        resp,
        StatusCode::ACCEPTED,
        "POST /user/erin/xiji/save-image (the extension's handler)",
    )
    .await?;
    ensure!(
        job["node"] == "node-0" && job["user"] == "erin",
        "the extension saved another node: {job}"
    );
    let id = job["id"].as_str().context("no job id")?.to_owned();
    // Its progress, read through the extension as the browser does.
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/user/erin/xiji/save-jobs/{id}"),
            &erin,
        )
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "GET the job through the extension").await?;
    let (states, job) = wait_job(&hub, &erin, &id).await?;
    ensure!(
        job["state"] == "done",
        "the save ended {}: {job}\nhub log:\n{}",
        job["state"],
        tests::tail(&hub.log(), 30)
    );
    ensure!(
        states.last().map(String::as_str) == Some("done"),
        "{states:?}"
    );
    let reference = format!("{}/saved/erin/my-env:v1", registry.addr);
    ensure!(job["image"] == reference.as_str(), "{job}");
    let image_id = job["image_id"].as_i64().context("no image_id")?;
    let mine = my_images(&hub, &erin).await?;
    ensure!(
        mine.iter().any(|i| i["id"] == image_id
            && i["visibility"] == "private"
            && i["reference"] == reference.as_str()
            && i["description"] == "probe, files, no nano"),
        "the saved image is not among erin's private images: {mine:?}"
    );

    // Only the new layer and the config went up; every base layer was mounted or skipped.
    let uploaded = registry.uploaded_digests("saved/erin/my-env");
    ensure!(
        uploaded.len() == 2,
        "expected 2 uploads (layer, config) into saved/erin/my-env, got {uploaded:?}"
    );
    for layer in &base_layers {
        ensure!(
            !uploaded.contains(layer),
            "base layer {layer} was uploaded again"
        );
    }
    ensure!(
        job["result"]["base_layers_copied"] == 0,
        "base layers were copied: {}",
        job["result"]
    );

    // The image runs with the changes.
    docker_out(&["rmi", "-f", &reference]).ok();
    docker_out(&["pull", &reference])?;
    cleanup.images.push(reference.clone());
    let checks = docker_out(&[
        "run",
        "--rm",
        "--entrypoint",
        "bash",
        &reference,
        "-c",
        "python -c 'import xiji_probe; print(\"probe\", xiji_probe.VERSION)'; \
             test -e /usr/bin/nano && echo nano-present || echo nano-gone; \
             echo git-doc: $(ls -A /usr/share/doc/git); \
             cat /opt/xiji-test/added.txt; \
             echo work: $(ls -A /home/jovyan/work); \
             test -e /tmp/scratch.txt && echo tmp-present || echo tmp-gone; \
             test -e /etc/xiji/ssh/id_ed25519 && echo key-present || echo key-gone",
    ])?;
    for want in [
        "probe 1.0",
        "nano-gone",
        "git-doc: only.txt\n",
        "added",
        "work:\n",
        "tmp-gone",
        "key-gone",
    ] {
        ensure!(
            checks.contains(want),
            "{want:?} missing in the image's checks:\n{checks}"
        );
    }
    let inspect = docker_out(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"org.xiji.saved-by\"}}",
        &reference,
    ])?;
    ensure!(inspect.trim() == "erin", "saved-by label: {inspect}");

    // --- save 2: the server's own token, directly; save 3: cancelled ---------------------
    let server_token = exec(&node, "jovyan", "printf %s \"$JUPYTERHUB_API_TOKEN\"")?;
    ensure!(
        !server_token.is_empty(),
        "the node has no JUPYTERHUB_API_TOKEN"
    );
    let (status, message) = error_of(
        save(
            &hub,
            &server_token,
            "/hub/api/users/frank/server/save-image",
            json!({"name": "x"}),
        )
        .await?,
    )
    .await;
    ensure!(
        status == 404,
        "server token on another user's server: {status} {message}"
    );
    let (status, message) = error_of(
        save(
            &hub,
            &server_token,
            "/hub/api/users/erin/servers/other/save-image",
            json!({"name": "x"}),
        )
        .await?,
    )
    .await;
    ensure!(
        status == 404,
        "server token on a server erin does not have: {status} {message}"
    );
    let (status, message) =
        error_of(save(&hub, &erin, path, json!({"name": "my-env", "tag": "v1"})).await?).await;
    ensure!(status == 409, "a used name: {status} {message}");
    let resp = save(
        &hub,
        &server_token,
        "/hub/api/users/erin/server/save-image",
        json!({"name": "my-env", "tag": "v2"}),
    )
    .await?;
    let job2 = expect_json(resp, StatusCode::ACCEPTED, "save with the server's token").await?;
    let id2 = job2["id"].as_str().context("no job id")?.to_owned();
    // A second save of the same node while one runs is refused (unless the first is done).
    let resp = save(&hub, &erin, path, json!({"name": "other", "tag": "v1"})).await?;
    let mut expected_names = vec!["erin/my-env:v1".to_owned(), "erin/my-env:v2".to_owned()];
    if resp.status() == StatusCode::ACCEPTED {
        let other: Value = resp.json().await?;
        let other_id = other["id"].as_str().context("no job id")?.to_owned();
        let (_, other) = wait_job(&hub, &erin, &other_id).await?;
        ensure!(other["state"] == "done", "{other}");
        expected_names.push("erin/other:v1".to_owned());
    } else {
        let (status, message) = error_of(resp).await;
        ensure!(
            status == 409 && message.contains("under way"),
            "a second save of a busy node: {status} {message}"
        );
    }
    let (_, job2) = wait_job(&hub, &server_token, &id2).await?;
    ensure!(job2["state"] == "done", "save 2 ended {job2}");
    // The server's token sees its server's jobs; frank sees none of erin's.
    let resp = hub
        .with_token(Method::GET, "/hub/api/users/erin/save-jobs", &server_token)
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "list with the server's token").await?;
    ensure!(
        list.as_array().map(Vec::len) == Some(expected_names.len()),
        "{list}"
    );
    let resp = hub
        .with_token(Method::GET, &format!("/hub/api/save-jobs/{id2}"), &frank)
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::NOT_FOUND,
        "frank read erin's job: {}",
        resp.status()
    );

    // Enough data that the save takes seconds, so the cancel lands while it runs.
    exec(
        &node,
        "root",
        "head -c 300000000 /dev/urandom > /opt/xiji-big.bin",
    )?;
    let resp = save(&hub, &erin, path, json!({"name": "cancelled", "tag": "v1"})).await?;
    let job3 = expect_json(resp, StatusCode::ACCEPTED, "save 3").await?;
    let id3 = job3["id"].as_str().context("no job id")?.to_owned();
    let resp = hub
        .with_token(Method::DELETE, &format!("/hub/api/save-jobs/{id3}"), &erin)
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::ACCEPTED,
        "cancel gave {}",
        resp.status()
    );
    let (_, job3) = wait_job(&hub, &erin, &id3).await?;
    ensure!(
        job3["state"] == "cancelled",
        "the cancelled save ended {job3}"
    );
    ensure!(
        registry.manifest_status("saved/erin/cancelled", "v1")? == "404",
        "a cancelled save left a tag"
    );
    let mut names: Vec<String> = my_images(&hub, &erin)
        .await?
        .iter()
        .filter_map(|i| i["name"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    expected_names.sort();
    ensure!(names == expected_names, "erin's images: {names:?}");

    // --- into the library, and a cluster from it ----------------------------------------
    let resp = hub
        .with_token(Method::PATCH, &format!("/hub/api/images/{image_id}"), &erin)
        .json(&json!({"visibility": "library"}))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::FORBIDDEN,
        "a user approved their own image"
    );
    let resp = hub
        .admin(Method::PATCH, &format!("/hub/api/images/{image_id}"))
        .json(&json!({"visibility": "library"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "approve the image").await?;
    start_cluster(&hub, "frank", "erin/my-env:v1").await?;
    let franks = cleanup.node_of("frank")?;
    let out = exec(
        &franks,
        "jovyan",
        "python -c 'import xiji_probe; print(xiji_probe.VERSION)'; cat /opt/xiji-test/added.txt",
    )?;
    ensure!(
        out.contains("1.0") && out.contains("added"),
        "frank's node: {out}"
    );

    // --- a server that is not running, a registry that is down ---------------------------
    hub.stop_server("erin").await?;
    let (status, message) = error_of(save(&hub, &erin, path, json!({"name": "late"})).await?).await;
    ensure!(
        status == 400 && message.contains("not running"),
        "a stopped server: {status} {message}"
    );
    registry.stop();
    let resp = save(
        &hub,
        &frank,
        "/hub/api/users/frank/server/save-image",
        json!({"name": "offline"}),
    )
    .await?;
    let job4 = expect_json(resp, StatusCode::ACCEPTED, "save with the registry down").await?;
    let id4 = job4["id"].as_str().context("no job id")?.to_owned();
    let (_, job4) = wait_job(&hub, &frank, &id4).await?;
    let reason = job4["reason"].as_str().unwrap_or_default();
    ensure!(
        job4["state"] == "failed" && reason.contains("registry"),
        "with the registry down the save ended {job4}"
    );
    ensure!(
        my_images(&hub, &frank).await?.is_empty(),
        "a failed save listed an image"
    );
    Ok(())
}

#[tokio::test]
async fn chromium_saves_the_environment_from_jupyterlab_and_the_image_starts_as_a_cluster(
) -> Result<()> {
    if !docker_enabled()? {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let (registry, mut cleanup, base) = registry_with_base()?;
    let hub = hub_saving_to(&cleanup, &registry, &base).await?;
    hub.create_user("gina", "gina-password-1").await?;
    let gina = hub.create_token("gina", json!({})).await?;
    start_cluster(&hub, "gina", "Base").await?;
    let node = cleanup.node_of("gina")?;
    exec(
        &node,
        "root",
        "mkdir -p /opt/gina && echo from-the-browser > /opt/gina/note.txt",
    )?;

    let run = tests::browser::run_script(
        &hub,
        "save_image.mjs",
        "save-image",
        &[
            ("XIJI_USER", "gina"),
            ("XIJI_PASSWORD", "gina-password-1"),
            ("XIJI_IMAGE_NAME", "lab-env"),
            ("XIJI_IMAGE_TAG", "v1"),
        ],
    )
    .await?;
    ensure!(
        run.output.contains("\"ok\":true"),
        "the browser did not report the save; screenshots in {}:\n{}",
        run.artifacts.display(),
        tests::tail(&run.output, 40)
    );

    // The image is in gina's "My images"; an administrator adds it to the library; a new
    // cluster starts from it with the node's change in place.
    let mine = my_images(&hub, &gina).await?;
    let image = mine
        .iter()
        .find(|i| i["name"] == "gina/lab-env:v1")
        .with_context(|| format!("the saved image is not in gina's images: {mine:?}"))?;
    ensure!(image["visibility"] == "private", "{image}");
    let id = image["id"].as_i64().context("no id")?;
    let resp = hub
        .admin(Method::PATCH, &format!("/hub/api/images/{id}"))
        .json(&json!({"visibility": "library"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "approve the image").await?;
    hub.stop_server("gina").await?;
    start_cluster(&hub, "gina", "gina/lab-env:v1").await?;
    let node = cleanup.node_of("gina")?;
    let note = exec(&node, "jovyan", "cat /opt/gina/note.txt")?;
    ensure!(
        note.trim() == "from-the-browser",
        "the new cluster's node: {note}"
    );
    cleanup
        .images
        .push(format!("{}/saved/gina/lab-env:v1", registry.addr));
    Ok(())
}

/// Polls a job until the hub has written that it is compressing and has uploaded part of the new
/// layer: a save caught mid-way, with a half-pushed blob in the registry.
async fn wait_compressing(hub: &Hub, token: &str, id: &str) -> Result<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let resp = hub
            .with_token(Method::GET, &format!("/hub/api/save-jobs/{id}"), token)
            .send()
            .await?;
        let job = expect_json(resp, StatusCode::OK, "GET the save job").await?;
        ensure!(
            job["finished"] == json!(false),
            "the save ended before it could be interrupted: {job}"
        );
        if job["state"] == "compressing" && job["progress"]["bytes_pushed"].as_u64() > Some(0) {
            return Ok(job);
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the save did not start compressing within 300 s: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_saved_image_is_usable_by_its_owner_at_once_and_a_save_outlives_a_killed_hub(
) -> Result<()> {
    if !docker_enabled()? {
        return Ok(());
    }
    let _serial = SERIAL.lock().await;
    let (registry, mut cleanup, base) = registry_with_base()?;
    let mut hub = hub_saving_to(&cleanup, &registry, &base).await?;
    hub.create_user("hana", "hana-password-1").await?;
    hub.create_user("ivan", "ivan-password-1").await?;
    let hana = hub.create_token("hana", json!({})).await?;
    let ivan = hub.create_token("ivan", json!({})).await?;
    start_cluster(&hub, "hana", "Base").await?;
    let node = cleanup.node_of("hana")?;
    exec(
        &node,
        "root",
        "mkdir -p /opt/hana && echo own > /opt/hana/note.txt",
    )?;
    let path = "/hub/api/users/hana/server/save-image";
    let resp = save(&hub, &hana, path, json!({"name": "own-env", "tag": "v1"})).await?;
    let job = expect_json(resp, StatusCode::ACCEPTED, "save own-env").await?;
    let id = job["id"].as_str().context("no job id")?.to_owned();
    let (_, job) = wait_job(&hub, &hana, &id).await?;
    ensure!(job["state"] == "done", "the save ended {job}");
    let image_id = job["image_id"].as_i64().context("no image_id")?;
    let reference = format!("{}/saved/hana/own-env:v1", registry.addr);
    cleanup.images.push(reference.clone());
    ensure!(
        my_images(&hub, &hana)
            .await?
            .iter()
            .any(|i| i["id"] == image_id && i["visibility"] == "private"),
        "the saved image is not hana's private image"
    );

    // --- private: another user gets the "no such image" 400 of an unknown image -----------
    let start_as = |token: &str, user: &str, image: Value| {
        hub.with_token(
            Method::POST,
            &format!("/hub/api/users/{user}/server"),
            token,
        )
        .json(&json!({"image": image, "nodes": 1}))
    };
    let (status, unknown) = error_of(start_as(&ivan, "ivan", json!(999_999)).send().await?).await;
    ensure!(status == 400, "an unknown image: {status} {unknown}");
    let (status, message) = error_of(start_as(&ivan, "ivan", json!(image_id)).send().await?).await;
    ensure!(
        status == 400
            && message.replace(&image_id.to_string(), "N") == unknown.replace("999999", "N"),
        "ivan starting hana's private image by id: {status} {message} (unknown: {unknown})"
    );
    for wanted in ["hana/own-env:v1", reference.as_str()] {
        let (status, message) =
            error_of(start_as(&ivan, "ivan", json!(wanted)).send().await?).await;
        ensure!(
            status == 400 && message.contains("not an image you may start"),
            "ivan starting hana's private image as {wanted}: {status} {message}"
        );
    }
    let ivan_user = hub.user("ivan").await?;
    ensure!(
        ivan_user["servers"]
            .as_object()
            .is_none_or(|s| s.is_empty()),
        "ivan got a server: {ivan_user}"
    );

    // --- usable by its owner at once, unpublished -----------------------------------------
    hub.stop_server("hana").await?;
    let resp = start_as(&hana, "hana", json!(image_id)).send().await?;
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "hana starting her own saved image: {} {}",
        resp.status(),
        resp.text().await.unwrap_or_default()
    );
    tests::docker::wait_cluster_ready(&hub, "hana", Duration::from_secs(300)).await?;
    let node = cleanup.node_of("hana")?;
    let note = exec(&node, "jovyan", "cat /opt/hana/note.txt")?;
    ensure!(note.trim() == "own", "hana's node from her image: {note}");

    // --- a save interrupted by a killed hub is resumed, and done means pullable -----------
    // A few hundred MB of fresh, incompressible data: the save takes seconds.
    exec(
        &node,
        "root",
        "head -c 400000000 /dev/urandom > /opt/hana/big.bin && sha256sum /opt/hana/big.bin > /opt/hana/big.sum",
    )?;
    let resp = save(&hub, &hana, path, json!({"name": "big", "tag": "v1"})).await?;
    let job = expect_json(resp, StatusCode::ACCEPTED, "save big").await?;
    let big = job["id"].as_str().context("no job id")?.to_owned();
    let seen = wait_compressing(&hub, &hana, &big).await?;
    hub.kill().await?;
    hub.restart().await?;
    let (states, job) = wait_job(&hub, &hana, &big).await?;
    ensure!(
        job["state"] == "done",
        "a save whose node still runs should resume after the hub restarted; it ended {job} \
         (states {states:?}, at the kill {seen})\nhub log:\n{}",
        tests::tail(&hub.log(), 30)
    );
    let big_ref = format!("{}/saved/hana/big:v1", registry.addr);
    cleanup.images.push(big_ref.clone());
    let big_id = job["image_id"].as_i64().context("done without image_id")?;
    ensure!(
        my_images(&hub, &hana)
            .await?
            .iter()
            .any(|i| i["id"] == big_id),
        "the resumed save's image is not listed"
    );
    docker_out(&["pull", &big_ref])?;
    let check = docker_out(&[
        "run",
        "--rm",
        "--entrypoint",
        "sha256sum",
        &big_ref,
        "-c",
        "/opt/hana/big.sum",
    ])?;
    ensure!(check.contains("OK"), "the resumed image's file: {check}");
    docker_out(&["rmi", "-f", &big_ref]).ok();

    // --- a save whose node is gone when the hub comes back ends failed, with no record -----
    let resp = save(&hub, &hana, path, json!({"name": "gone", "tag": "v1"})).await?;
    let job = expect_json(resp, StatusCode::ACCEPTED, "save gone").await?;
    let gone = job["id"].as_str().context("no job id")?.to_owned();
    wait_compressing(&hub, &hana, &gone).await?;
    hub.kill().await?;
    docker_out(&["rm", "-f", &node])?;
    hub.restart().await?;
    let (_, job) = wait_job(&hub, &hana, &gone).await?;
    let reason = job["reason"].as_str().unwrap_or_default();
    ensure!(
        job["state"] == "failed"
            && reason.contains("hub restarted during the save")
            && job["image_id"].is_null(),
        "a save whose node is gone ended {job}"
    );
    ensure!(
        !my_images(&hub, &hana)
            .await?
            .iter()
            .any(|i| i["name"] == "hana/gone:v1"),
        "a failed save has a library record"
    );
    ensure!(
        registry.manifest_status("saved/hana/gone", "v1")? == "404",
        "a save interrupted while compressing left a tag"
    );
    // The jobs are listed after the restarts, newest first.
    let resp = hub
        .with_token(Method::GET, "/hub/api/users/hana/save-jobs", &hana)
        .send()
        .await?;
    let list = expect_json(resp, StatusCode::OK, "list hana's jobs").await?;
    let ids: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|j| j["id"].as_str()).collect())
        .unwrap_or_default();
    ensure!(ids == [gone.as_str(), big.as_str(), id.as_str()], "{list}");
    Ok(())
}
