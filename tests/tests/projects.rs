//! Projects through the real hub (local backend): a project runs as its runner's named server
//! `project-{id}` working in the project's folder with its datasets linked in; a fork copies the
//! files and keeps only the datasets the forker may read, and changing the fork leaves the
//! original alone; members' roles, strangers, anonymous callers and a server's token get what
//! docs/projects.md says; bad input gets the right 4xx with a message and changes nothing.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{expect_api_error, expect_json, expect_status, Hub, Kernel};

/// `user` with a token of the default role.
async fn user(hub: &Hub, name: &str) -> Result<String> {
    hub.create_user(name, &format!("{name}-password-1")).await?;
    hub.create_token(name, json!({})).await
}

/// A dataset of the token's user holding one file, uploaded as a browser does.
async fn dataset(
    hub: &Hub,
    token: &str,
    name: &str,
    visibility: &str,
    path: &str,
    content: &str,
) -> Result<()> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/datasets", token)
        .json(&json!({"name": name, "visibility": visibility}))
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

/// A project's folder on the default pool.
fn project_dir(hub: &Hub, id: i64) -> std::path::PathBuf {
    hub.data_dir()
        .join("storage")
        .join("project")
        .join(id.to_string())
        .join("files")
}

async fn create_project(hub: &Hub, token: &str, body: Value) -> Result<Value> {
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects", token)
        .json(&body)
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "create a project").await
}

#[tokio::test]
async fn a_project_runs_as_the_runners_named_server_in_the_project_folder_with_its_datasets(
) -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    dataset(
        &hub,
        &alice,
        "weather",
        "private",
        "数据/训练集.csv",
        "t,h\n1,2\n",
    )
    .await?;
    let project = create_project(
        &hub,
        &alice,
        json!({"name": "forecast", "description": "A *model*", "datasets": ["alice/weather"]}),
    )
    .await?;
    let id = project["id"].as_i64().context("id")?;
    ensure!(
        project["server_name"] == json!(format!("project-{id}")),
        "{project}"
    );
    ensure!(project["datasets"] == json!(["alice/weather"]), "{project}");

    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/forecast/run", &alice)
        .json(&json!({}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "run: {}", resp.status());
    let server_name = format!("project-{id}");
    hub.wait_until_ready("alice", &server_name, Duration::from_secs(90))
        .await?;
    // JupyterHub clients see an ordinary named server.
    let model = hub.user("alice").await?;
    ensure!(
        model["servers"][&server_name]["ready"] == json!(true),
        "{model}"
    );

    let prefix = format!("/user/alice/{server_name}/");
    let mut kernel = Kernel::start(&hub, &prefix, &alice).await?;
    let run = kernel
        .execute(
            "import os\nprint(open('datasets/alice/weather/数据/训练集.csv').read().split()[1])\n\
             open('result.txt', 'w').write('42')\nprint(os.getcwd().endswith('files'))",
            Duration::from_secs(60),
        )
        .await?;
    let out = format!("{}{:?}", run.stdout, run.error);
    ensure!(
        out.contains("1,2"),
        "the dataset was not read in the project: {out}"
    );
    ensure!(
        out.contains("True"),
        "the server did not work in the project's folder: {out}"
    );
    let written = std::fs::read_to_string(project_dir(&hub, id).join("result.txt"))?;
    ensure!(written == "42", "result.txt is {written:?}");

    // The project shows who runs it; the owner cannot delete it meanwhile.
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/alice/forecast", &alice)
        .send()
        .await?;
    let p = expect_json(resp, StatusCode::OK, "the project").await?;
    ensure!(p["running"][0]["user"] == json!("alice"), "{p}");
    ensure!(p["running"][0]["url"] == json!(prefix), "{p}");
    let resp = hub
        .with_token(Method::DELETE, "/hub/api/projects/alice/forecast", &alice)
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::CONFLICT, "delete while it runs").await?;
    ensure!(message.contains("stop"), "{message}");

    // An administrator's delete releases the cluster first, then removes the files.
    let resp = hub
        .admin(Method::DELETE, "/hub/api/projects/alice/forecast")
        .send()
        .await;
    // The test's admin token is a service's: projects belong to users, so it is refused.
    let resp = resp?;
    ensure!(resp.status() == StatusCode::FORBIDDEN, "{}", resp.status());
    hub.create_user("root", "root-password-1").await?;
    let resp = hub
        .admin(Method::PATCH, "/hub/api/users/root")
        .json(&json!({"admin": true}))
        .send()
        .await?;
    expect_json(resp, StatusCode::OK, "make root an administrator").await?;
    let root = hub.create_token("root", json!({})).await?;
    let resp = hub
        .with_token(Method::DELETE, "/hub/api/projects/alice/forecast", &root)
        .send()
        .await?;
    expect_status(resp, StatusCode::NO_CONTENT, "the administrator deletes it").await?;
    hub.wait_until_stopped("alice", &server_name, Duration::from_secs(60))
        .await?;
    ensure!(
        !project_dir(&hub, id).exists(),
        "the project's files are still there"
    );
    Ok(())
}

#[tokio::test]
async fn a_fork_copies_the_files_keeps_the_datasets_the_forker_may_read_and_leaves_the_original_alone(
) -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    dataset(&hub, &alice, "open", "public", "a.txt", "a").await?;
    dataset(&hub, &alice, "closed", "private", "b.txt", "b").await?;
    let original = create_project(
        &hub,
        &alice,
        json!({"name": "lab", "visibility": "public", "datasets": ["alice/open", "alice/closed"]}),
    )
    .await?;
    let id = original["id"].as_i64().context("id")?;
    let dir = project_dir(&hub, id);
    std::fs::create_dir_all(dir.join("笔记"))?;
    std::fs::write(dir.join("笔记/run.py"), "print('hi')\n")?;
    std::fs::write(dir.join("big.bin"), vec![7u8; 3 * 1024 * 1024])?;

    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/lab/fork", &bob)
        .json(&json!({}))
        .send()
        .await?;
    let fork = expect_json(resp, StatusCode::CREATED, "fork").await?;
    ensure!(
        fork["owner"] == json!("bob") && fork["name"] == json!("lab"),
        "{fork}"
    );
    ensure!(fork["visibility"] == json!("private"), "{fork}");
    ensure!(fork["forked_from"] == json!("alice/lab"), "{fork}");
    ensure!(fork["datasets"] == json!(["alice/open"]), "{fork}");
    ensure!(
        fork["dropped_datasets"] == json!(["alice/closed"]),
        "{fork}"
    );
    // The files are copied in the background (tests/tests/project_forks.rs): wait for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let resp = hub
            .with_token(Method::GET, "/hub/api/projects/bob/lab", &bob)
            .send()
            .await?;
        let now = expect_json(resp, StatusCode::OK, "the fork").await?;
        if now["fork"]["state"] == json!("done") {
            break;
        }
        ensure!(now["fork"]["state"] == json!("copying"), "{now}");
        ensure!(
            std::time::Instant::now() < deadline,
            "the copy is not done after 60 s: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fork_dir = project_dir(&hub, fork["id"].as_i64().context("id")?);
    ensure!(std::fs::read_to_string(fork_dir.join("笔记/run.py"))? == "print('hi')\n");
    ensure!(std::fs::read(fork_dir.join("big.bin"))? == vec![7u8; 3 * 1024 * 1024]);

    // Changing the fork leaves the original as it was.
    std::fs::write(fork_dir.join("笔记/run.py"), "changed")?;
    ensure!(std::fs::read_to_string(dir.join("笔记/run.py"))? == "print('hi')\n");
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/alice/lab", &bob)
        .send()
        .await?;
    let p = expect_json(resp, StatusCode::OK, "the original").await?;
    ensure!(p["forks"] == json!(1), "{p}");

    // A second fork of the same name needs another name.
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/lab/fork", &bob)
        .json(&json!({}))
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::CONFLICT,
        "a second fork with the same name",
    )
    .await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/lab/fork", &bob)
        .json(&json!({"name": "lab-2"}))
        .send()
        .await?;
    expect_json(resp, StatusCode::CREATED, "a second fork with its own name").await?;
    Ok(())
}

#[tokio::test]
async fn viewers_open_editors_run_strangers_get_404_and_tokens_without_the_scope_get_403(
) -> Result<()> {
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let viewer = user(&hub, "vera").await?;
    let editor = user(&hub, "ed").await?;
    let stranger = user(&hub, "sam").await?;
    create_project(&hub, &alice, json!({"name": "secret"})).await?;
    for (who, role) in [("vera", "viewer"), ("ed", "editor")] {
        let resp = hub
            .with_token(
                Method::PUT,
                &format!("/hub/api/projects/alice/secret/members/{who}"),
                &alice,
            )
            .json(&json!({"role": role}))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, "add a member").await?;
    }
    let get = |token: &str| {
        hub.with_token(Method::GET, "/hub/api/projects/alice/secret", token)
            .send()
    };
    let p = expect_json(get(&viewer).await?, StatusCode::OK, "the viewer opens it").await?;
    ensure!(p["access"] == json!("read"), "{p}");
    let p = expect_json(get(&editor).await?, StatusCode::OK, "the editor opens it").await?;
    ensure!(p["access"] == json!("edit"), "{p}");
    expect_api_error(get(&stranger).await?, StatusCode::NOT_FOUND, "a stranger").await?;
    let resp = hub
        .client()
        .get(hub.url("/hub/api/projects/alice/secret"))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "anonymous").await?;
    let server_token = hub
        .create_token("alice", json!({"roles": ["server"]}))
        .await?;
    expect_api_error(
        get(&server_token).await?,
        StatusCode::FORBIDDEN,
        "a server's token",
    )
    .await?;

    // The viewer may not run it; nor start its server under the JupyterHub API.
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/secret/run", &viewer)
        .json(&json!({}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "the viewer runs it").await?;
    let resp = hub
        .with_token(
            Method::POST,
            "/hub/api/users/sam/servers/project-1",
            &stranger,
        )
        .json(&json!({}))
        .send()
        .await?;
    let message = expect_api_error(
        resp,
        StatusCode::BAD_REQUEST,
        "a stranger names a project's server",
    )
    .await?;
    ensure!(message.contains("project"), "{message}");
    // Only the owner changes it.
    let resp = hub
        .with_token(Method::PATCH, "/hub/api/projects/alice/secret", &editor)
        .json(&json!({"visibility": "public"}))
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::FORBIDDEN,
        "the editor changes its settings",
    )
    .await?;
    // The editor runs it, as their own named server.
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/secret/run", &editor)
        .json(&json!({}))
        .send()
        .await?;
    ensure!(
        resp.status().is_success(),
        "the editor runs it: {}",
        resp.status()
    );
    hub.wait_until_ready("ed", "project-1", Duration::from_secs(90))
        .await?;
    let resp = hub
        .with_token(
            Method::DELETE,
            "/hub/api/users/ed/servers/project-1",
            &editor,
        )
        .send()
        .await?;
    ensure!(resp.status().is_success(), "stop: {}", resp.status());
    hub.wait_until_stopped("ed", "project-1", Duration::from_secs(60))
        .await?;
    Ok(())
}

#[tokio::test]
async fn bad_project_input_gets_the_right_4xx_with_a_message_and_changes_nothing() -> Result<()> {
    const BAD: StatusCode = StatusCode::BAD_REQUEST;
    let hub = Hub::start().await?;
    let alice = user(&hub, "alice").await?;
    let bob = user(&hub, "bob").await?;
    dataset(&hub, &bob, "mine", "private", "x", "x").await?;
    create_project(&hub, &alice, json!({"name": "p"})).await?;
    for (body, status, what) in [
        (json!({"name": "../x"}), BAD, "a bad name"),
        (json!({"name": ""}), BAD, "an empty name"),
        (json!({}), BAD, "no name"),
        (
            json!({"name": "q", "image": "no-such-image"}),
            BAD,
            "an unknown image",
        ),
        (
            json!({"name": "q", "datasets": ["bob/mine"]}),
            BAD,
            "another's private dataset",
        ),
        (
            json!({"name": "q", "datasets": ["nobody/none"]}),
            BAD,
            "an unknown dataset",
        ),
        (
            json!({"name": "q", "visibility": "secret"}),
            BAD,
            "an unknown visibility",
        ),
        (
            json!({"name": "q", "colour": "red"}),
            BAD,
            "an unknown field",
        ),
        (
            json!({"name": "p"}),
            StatusCode::CONFLICT,
            "a duplicate name",
        ),
    ] {
        let resp = hub
            .with_token(Method::POST, "/hub/api/projects", &alice)
            .json(&body)
            .send()
            .await?;
        let message = expect_api_error(resp, status, what).await?;
        ensure!(!message.is_empty(), "{what}: empty message");
    }
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects?owner=alice", &alice)
        .send()
        .await?;
    let page = expect_json(resp, StatusCode::OK, "alice's projects").await?;
    ensure!(page["total"] == json!(1), "something was created: {page}");
    let resp = hub
        .with_token(Method::GET, "/hub/api/projects/alice/nope", &alice)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "an unknown project").await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/projects/alice/p/run", &alice)
        .json(&json!({"colour": "red"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "an unknown size").await?;
    let resp = hub
        .with_token(
            Method::PUT,
            "/hub/api/projects/alice/p/members/alice",
            &alice,
        )
        .json(&json!({"role": "editor"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "the owner as a member").await?;
    let resp = hub
        .with_token(Method::PUT, "/hub/api/projects/alice/p/members/bob", &alice)
        .json(&json!({"role": "king"}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::BAD_REQUEST, "an unknown role").await?;
    Ok(())
}
