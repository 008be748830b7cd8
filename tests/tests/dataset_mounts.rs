//! Datasets in clusters, through the real hub: a dataset uploaded through the API is read, byte
//! for byte, at `/home/jovyan/datasets/{owner}/{name}` on every node of a 2-node Docker cluster,
//! where writing fails with "Read-only file system" (for root too) while the work directory stays
//! writable, and a start with empty options mounts it again; a local server finds it through the
//! link in its work folder, and a start without it removes the link; a dataset the user may not
//! read (another's private one, an unknown one, one whose share was taken back) is refused with a
//! 400 naming it, and nothing is left running or recorded.
//!
//! The Docker test needs `XIJI_TEST_DOCKER=1` (tests/run sets it after tests/setup-docker.sh);
//! without it, it says so and returns. The others run on the local backend.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::docker::{self, docker_out, Instance};
use tests::{expect_api_error, expect_json, expect_status, Hub, Kernel};

/// What the tests upload: a CSV with a Chinese name in a folder.
const FILE_PATH: &str = "train/标签.csv";
const FILE_CONTENT: &str = "id,label\n1,猫\n2,狗\n";

/// A hub on the docker backend whose containers carry `instance`'s label, with the test image in
/// its library as Python + MPI.
async fn docker_hub(instance: &Instance) -> Result<Hub> {
    docker::docker_hub(instance, "Python + MPI").await
}

/// `user` (created, with a token of the default role) and their dataset `name` holding
/// [`FILE_CONTENT`] at [`FILE_PATH`], uploaded as a browser does: declared, then sent with
/// tus's `PATCH`. Returns the user's token.
async fn user_with_dataset(hub: &Hub, user: &str, name: &str, visibility: &str) -> Result<String> {
    hub.create_user(user, &format!("{user}-password-1")).await?;
    let token = hub.create_token(user, json!({})).await?;
    add_dataset(hub, &token, user, name, visibility).await?;
    Ok(token)
}

async fn add_dataset(
    hub: &Hub,
    token: &str,
    owner: &str,
    name: &str,
    visibility: &str,
) -> Result<()> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", token)
        .json(&json!({"name": name, "visibility": visibility, "description": "for mounts"}))
        .send()
        .await?;
    let dataset = expect_json(resp, StatusCode::CREATED, "create the dataset").await?;
    ensure!(
        dataset["mount_path"] == json!(format!("/home/jovyan/datasets/{owner}/{name}")),
        "the dataset's mount path: {dataset}"
    );
    let resp = hub
        .with_token(
            Method::POST,
            &format!("/hub/api/datasets/{owner}/{name}/uploads"),
            token,
        )
        .json(&json!({"path": FILE_PATH, "size": FILE_CONTENT.len()}))
        .send()
        .await?;
    let upload = expect_json(resp, StatusCode::CREATED, "declare the upload").await?;
    let id = upload["id"].as_str().context("the upload has no id")?;
    let resp = hub
        .with_token(Method::PATCH, &format!("/hub/api/uploads/{id}"), token)
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .header("Tus-Resumable", "1.0.0")
        .body(FILE_CONTENT)
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "send the file's bytes").await?;
    let resp = hub
        .with_token(
            Method::GET,
            &format!("/hub/api/datasets/{owner}/{name}"),
            token,
        )
        .send()
        .await?;
    let dataset = expect_json(resp, StatusCode::OK, "the dataset").await?;
    ensure!(
        dataset["file_count"] == json!(1),
        "the upload is complete: {dataset}"
    );
    Ok(())
}

/// Asks for `user`'s default server with `options`; the answer's status and body.
async fn ask_start(hub: &Hub, user: &str, options: &Value) -> Result<reqwest::Response> {
    Ok(hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .json(options)
        .send()
        .await?)
}

/// `docker exec` as `user` in `container`: (whether it succeeded, stdout and stderr).
fn exec_in(container: &str, user: &str, script: &str) -> Result<(bool, String)> {
    let out = std::process::Command::new("docker")
        .args(["exec", "-u", user, container, "sh", "-c", script])
        .output()
        .context("cannot run docker exec")?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// On the node whose container is `container`: the dataset's file reads exactly as uploaded,
/// the folders above it are jovyan's, every write under the mount fails with "Read-only file
/// system" (as jovyan and as root), and the work directory is still writable.
fn check_node(container: &str, node: &str, mount: &str) -> Result<()> {
    let file = format!("{mount}/{FILE_PATH}");
    let content = docker_out(&["exec", "-u", "1000", container, "cat", &file])
        .with_context(|| format!("reading {file} on {node}"))?;
    ensure!(
        content == FILE_CONTENT,
        "{node}: {file} holds {content:?}, not what was uploaded"
    );
    let owners = docker_out(&[
        "exec",
        container,
        "stat",
        "-c",
        "%U %a",
        "/home/jovyan/datasets",
        &mount[..mount.rfind('/').unwrap_or(mount.len())],
    ])?;
    ensure!(
        owners.lines().collect::<Vec<_>>() == ["jovyan 755", "jovyan 755"],
        "{node}: the folders above the mount are {owners:?}"
    );
    for (user, script) in [
        ("1000", format!("echo new > {mount}/new.txt")),
        ("1000", format!("echo changed > '{file}'")),
        ("1000", format!("rm -f '{file}'")),
        ("1000", format!("mkdir {mount}/more")),
        ("0", format!("echo new > {mount}/by-root.txt")),
    ] {
        let (ok, output) = exec_in(container, user, &script)?;
        ensure!(
            !ok && output.contains("Read-only file system"),
            "{node}: `{script}` as uid {user} gave ok={ok}: {output}"
        );
    }
    let content = docker_out(&["exec", "-u", "1000", container, "cat", &file])?;
    ensure!(content == FILE_CONTENT, "{node}: the file changed");
    let (ok, output) = exec_in(
        container,
        "1000",
        &format!("echo {node} > {}/from-{node}.txt", docker::WORK_DIR),
    )?;
    ensure!(ok, "{node}: the work directory is not writable: {output}");
    Ok(())
}

#[tokio::test]
async fn every_node_of_a_cluster_reads_the_dataset_and_cannot_write_it() -> Result<()> {
    if !docker::enabled() {
        return Ok(());
    }
    let instance = Instance::new("xiji-test-ds");
    let hub = docker_hub(&instance).await?;
    user_with_dataset(&hub, "dora", "mnist", "private").await?;
    let mount = "/home/jovyan/datasets/dora/mnist";

    let server = docker::start_cluster(
        &hub,
        "dora",
        json!({"image": "Python + MPI", "nodes": 2, "datasets": ["dora/mnist"]}),
    )
    .await?;
    ensure!(
        server["user_options"]["datasets"] == json!(["dora/mnist"]),
        "the stored options: {server}"
    );
    for node in ["node-0", "node-1"] {
        let container = instance.node_container(node)?;
        check_node(&container, node, mount)?;
    }

    // Started again with empty options: the same dataset again, on fresh nodes.
    hub.stop_server("dora").await?;
    ensure!(instance.containers()?.is_empty(), "stop left containers");
    let resp = ask_start(&hub, "dora", &json!({})).await?;
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "starting with empty options gave {}",
        resp.status()
    );
    let server = docker::wait_cluster_ready(&hub, "dora", Duration::from_secs(300)).await?;
    ensure!(
        server["user_options"]["datasets"] == json!(["dora/mnist"]),
        "the reused options: {server}"
    );
    for node in ["node-0", "node-1"] {
        let container = instance.node_container(node)?;
        check_node(&container, node, mount)?;
        // The work directory outlived the first cluster.
        let earlier = docker_out(&[
            "exec",
            &container,
            "cat",
            &format!("{}/from-{node}.txt", docker::WORK_DIR),
        ])?;
        ensure!(
            earlier.trim() == node,
            "{node}: work file holds {earlier:?}"
        );
    }
    hub.stop_server("dora").await?;
    ensure!(instance.containers()?.is_empty(), "stop left containers");
    ensure!(instance.networks()?.is_empty(), "stop left networks");
    Ok(())
}

#[tokio::test]
async fn a_local_server_finds_the_dataset_through_the_link_in_its_work_folder() -> Result<()> {
    let hub = Hub::start().await?;
    let token = user_with_dataset(&hub, "lin", "corpus", "private").await?;
    let resp = ask_start(&hub, "lin", &json!({"datasets": ["lin/corpus"]})).await?;
    ensure!(
        resp.status() == StatusCode::CREATED || resp.status() == StatusCode::ACCEPTED,
        "starting gave {}",
        resp.status()
    );
    hub.wait_until_ready("lin", "", Duration::from_secs(120))
        .await?;

    let mut kernel = Kernel::start(&hub, "/user/lin/", &token).await?;
    let code = format!(
        "import os\n\
         link = os.path.join(os.getcwd(), 'datasets/lin/corpus')\n\
         print(os.path.islink(link))\n\
         print(os.path.expanduser('~') == os.getcwd())\n\
         print(open(os.path.join(link, {FILE_PATH:?}), encoding='utf-8').read(), end='')"
    );
    let run = kernel.execute(&code, Duration::from_secs(60)).await?;
    ensure!(
        run.status == "ok" && run.stdout == format!("True\nTrue\n{FILE_CONTENT}"),
        "reading through the link gave {run:?}"
    );
    // Jupyter's file API sees it too.
    let resp = hub
        .with_token(
            Method::GET,
            &format!(
                "/user/lin/api/contents/datasets/lin/corpus/{}?content=1",
                FILE_PATH
                    .split('/')
                    .map(tests::encode)
                    .collect::<Vec<_>>()
                    .join("/")
            ),
            &token,
        )
        .send()
        .await?;
    let model = expect_json(resp, StatusCode::OK, "the file through Jupyter's API").await?;
    ensure!(
        model["content"] == json!(FILE_CONTENT),
        "Jupyter's API gave {model}"
    );
    kernel.close().await?;
    hub.stop_server("lin").await?;

    // Started again without it: the link is gone.
    let resp = ask_start(&hub, "lin", &json!({"datasets": []})).await?;
    ensure!(resp.status().is_success(), "restart gave {}", resp.status());
    hub.wait_until_ready("lin", "", Duration::from_secs(120))
        .await?;
    let mut kernel = Kernel::start(&hub, "/user/lin/", &token).await?;
    let run = kernel
        .execute(
            "import os; print(os.path.lexists('datasets/lin/corpus'))",
            Duration::from_secs(60),
        )
        .await?;
    ensure!(
        run.status == "ok" && run.stdout == "False\n",
        "the link after a start without the dataset: {run:?}"
    );
    kernel.close().await?;
    hub.stop_server("lin").await?;
    Ok(())
}

/// `user` has no server, running, pending or recorded.
async fn nothing_started(hub: &Hub, user: &str) -> Result<()> {
    let model = hub.user(user).await?;
    ensure!(
        model["servers"]
            .as_object()
            .is_none_or(serde_json::Map::is_empty)
            && model["pending"].is_null()
            && model["server"].is_null(),
        "{user} has a server after a refused start: {model}"
    );
    Ok(())
}

#[tokio::test]
async fn a_dataset_the_user_may_not_read_is_refused_with_a_400_naming_it() -> Result<()> {
    let hub = Hub::start().await?;
    let dora = user_with_dataset(&hub, "dora", "secret", "private").await?;
    hub.create_user("erin", "erin-password-1").await?;

    for wanted in ["dora/secret", "dora/nothing", "nobody/at-all"] {
        let resp = ask_start(&hub, "erin", &json!({"datasets": ["erin/none", wanted]})).await?;
        let message = expect_api_error(resp, StatusCode::BAD_REQUEST, wanted).await?;
        // The first one erin may not read is named (erin/none does not exist either).
        ensure!(
            message.contains("erin/none"),
            "the refusal names the dataset: {message}"
        );
        let resp = ask_start(&hub, "erin", &json!({"datasets": [wanted]})).await?;
        let message = expect_api_error(resp, StatusCode::BAD_REQUEST, wanted).await?;
        ensure!(
            message.contains(wanted),
            "the refusal names {wanted}: {message}"
        );
        ensure!(
            !message.contains(hub.data_dir().to_string_lossy().as_ref()),
            "{message}"
        );
        nothing_started(&hub, "erin").await?;
    }
    for (bad, says) in [
        (json!({"datasets": "not-a-name"}), "owner/name"),
        (json!({"datasets": [1]}), "owner/name"),
        (json!({"datasets": {"dora": "secret"}}), "owner/name"),
    ] {
        let resp = ask_start(&hub, "erin", &bad).await?;
        let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "bad datasets").await?;
        ensure!(message.contains(says), "{bad}: {message}");
    }
    nothing_started(&hub, "erin").await?;

    // Shared with erin, it starts; the share taken back, a start with the same (reused)
    // options is refused again, naming it.
    let resp = hub
        .with_token(
            Method::PUT,
            "/hub/api/datasets/dora/secret/shares/user/erin",
            &dora,
        )
        .json(&json!({"access": "read"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "share with erin").await?;
    let resp = ask_start(&hub, "erin", &json!({"datasets": ["dora/secret"]})).await?;
    ensure!(
        resp.status().is_success(),
        "a shared dataset: {}",
        resp.status()
    );
    hub.wait_until_ready("erin", "", Duration::from_secs(120))
        .await?;
    hub.stop_server("erin").await?;
    let resp = hub
        .with_token(
            Method::DELETE,
            "/hub/api/datasets/dora/secret/shares/user/erin",
            &dora,
        )
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "unshare").await?;
    let resp = ask_start(&hub, "erin", &json!({})).await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "after the unshare").await?;
    ensure!(message.contains("dora/secret"), "{message}");
    let model = hub.user("erin").await?;
    ensure!(
        model["pending"].is_null() && model["server"].is_null(),
        "erin's server after the refused restart: {model}"
    );
    Ok(())
}
