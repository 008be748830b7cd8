//! Interop: the real JupyterHub 5.5 uses Xiji's standalone proxy as its configurable-http-proxy
//! (`ConfigurableHTTPProxy.should_start = False`, `api_url` at `xiji-proxy`'s API), spawns a
//! server, serves JupyterLab through it and runs a cell over the kernel websocket.

mod proxy_support;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use proxy_support::*;
use serde_json::Value;
use tests::process::is_root;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_runs_a_kernel_through_xiji_proxy() -> Result<()> {
    let venv = env("XIJI_TEST_VENV5")?;
    let dir = scratch("jhub-xiji-proxy")?;
    let (public, api, hub_port) = (free_port(), free_port(), free_port());
    let proxy_token = token();
    let service_token = token();

    let proxy = start_chp_like(
        "xiji-proxy",
        xiji_proxy()?,
        &["--log-level", "info"],
        (&dir, "proxy.log"),
        (public, api),
        &proxy_token,
    )
    .await?;

    let allow_root = if is_root() { "'--allow-root'" } else { "" };
    let config = format!(
        r#"
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.auth_token = "{proxy_token}"
c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.args = [{allow_root}]
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
c.JupyterHub.services = [{{"name": "probe", "api_token": "{service_token}"}}]
c.JupyterHub.load_roles = [{{
    "name": "probe",
    "scopes": ["admin:users", "admin:servers", "access:servers", "proxy"],
    "services": ["probe"],
}}]
"#,
        dir = dir.display(),
    );
    std::fs::write(dir.join("jupyterhub_config.py"), config)?;
    let mut hub_cmd = Command::new(format!("{venv}/bin/jupyterhub"));
    hub_cmd
        .current_dir(&dir)
        .args(["-f", "jupyterhub_config.py"])
        .env(
            "PATH",
            format!("{venv}/bin:{}", std::env::var("PATH").unwrap_or_default()),
        );
    let mut jupyterhub = Proc::spawn("jupyterhub", hub_cmd, &dir.join("jupyterhub.log"))?;
    let public_url = format!("http://127.0.0.1:{public}");
    wait_http(
        &format!("{public_url}/hub/api"),
        Duration::from_secs(60),
        Some(&jupyterhub),
    )
    .await?;

    let api_client = HubApi::new(&public_url, &service_token);
    let outcome = async {
        api_client
            .spawn_and_wait("alice", Duration::from_secs(120))
            .await?;
        // JupyterHub registered itself and the server in Xiji's proxy.
        let routes: Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{api}/api/routes"))
            .header("Authorization", format!("token {proxy_token}"))
            .send()
            .await?
            .json()
            .await?;
        if routes["/"]["hub"] != Value::Bool(true) || routes["/user/alice"]["user"] != "alice" {
            bail!("unexpected routes: {routes}");
        }
        // JupyterLab's page comes through the proxy.
        let lab = api_client
            .req(reqwest::Method::GET, "/user/alice/lab")
            .send()
            .await?;
        let status = lab.status();
        let page = lab.text().await?;
        if status != 200 || !page.contains("JupyterLab") {
            bail!("/user/alice/lab: {status} {}", &page[..page.len().min(300)]);
        }
        // A kernel runs a cell over the websocket through the proxy.
        let mut kernel = KernelWs::start(&api_client, "/user/alice/").await?;
        let out = kernel.run("print(6 * 7)", Duration::from_secs(60)).await?;
        if out.trim() != "42" {
            bail!("cell printed {out:?}");
        }
        kernel.close().await;
        // The traffic moved the route's last_activity.
        let route: Value = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{api}/api/routes/user/alice"))
            .header("Authorization", format!("token {proxy_token}"))
            .send()
            .await?
            .json()
            .await?;
        if !route["last_activity"].is_string() {
            bail!("no last_activity: {route}");
        }
        api_client
            .stop_and_wait("alice", Duration::from_secs(60))
            .await?;
        Ok::<_, anyhow::Error>(())
    }
    .await;
    conclude(
        outcome,
        ("jupyterhub", &mut jupyterhub, Duration::from_secs(30)),
        ("proxy", proxy),
        &dir,
    )
}
