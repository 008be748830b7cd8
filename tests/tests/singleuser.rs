//! The real `jupyterhub-singleuser` (JupyterLab) of JupyterHub 5.5 and of the newest 6.x works
//! through Xiji: spawned by the hub, reached through its proxy with a token, the OAuth redirect
//! chain for a browser, and code run on a kernel over the proxied websocket.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::{expect_json, Hub, HubOptions, Kernel, Singleuser};

async fn jupyterlab_works_through_the_proxy(
    singleuser: Singleuser,
    version_prefix: &str,
) -> Result<()> {
    let hub = Hub::start_with(HubOptions {
        singleuser,
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("alice", "alice-password-1").await?;
    let token = hub.create_token("alice", json!({ "note": "e2e" })).await?;
    let server = hub.start_server("alice").await?;
    ensure!(
        server["url"] == json!("/user/alice/"),
        "server model: {server}"
    );

    // The server's REST API through the proxy, with a token.
    let resp = hub
        .with_token(Method::GET, "/user/alice/api/status", &token)
        .send()
        .await?;
    let version = resp
        .headers()
        .get("x-jupyterhub-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let status = expect_json(resp, StatusCode::OK, "GET /user/alice/api/status").await?;
    ensure!(
        status.get("started").is_some(),
        "not a Jupyter status: {status}"
    );
    ensure!(
        version.starts_with(version_prefix),
        "the single-user server says it is JupyterHub {version:?}, expected {version_prefix}*"
    );

    // The same API without credentials: 403, not a redirect (JupyterHub's behaviour for APIs).
    let resp = hub
        .client()
        .get(hub.url("/user/alice/api/contents"))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::FORBIDDEN,
        "anonymous API call: {}",
        resp.status()
    );

    // A browser without a cookie: the server sends it to the hub's OAuth endpoint, which sends it
    // to the login page with `next` pointing back to the authorization.
    let resp = hub.client().get(hub.url("/user/alice/lab")).send().await?;
    ensure!(
        resp.status() == StatusCode::FOUND,
        "GET /user/alice/lab: {}",
        resp.status()
    );
    let authorize = location(&resp)?;
    let authorize_url = url::Url::parse(&hub.url("/"))?.join(&authorize)?;
    ensure!(
        authorize_url.path() == "/hub/api/oauth2/authorize",
        "the server redirected to {authorize}"
    );
    let query: std::collections::HashMap<_, _> = authorize_url.query_pairs().into_owned().collect();
    ensure!(
        query.get("client_id").map(String::as_str) == Some("jupyterhub-user-alice"),
        "{authorize}"
    );
    ensure!(
        query.get("response_type").map(String::as_str) == Some("code"),
        "{authorize}"
    );
    ensure!(
        query.get("redirect_uri").map(String::as_str) == Some("/user/alice/oauth_callback"),
        "{authorize}"
    );
    let resp = hub.client().get(authorize_url.as_str()).send().await?;
    ensure!(
        resp.status().is_redirection(),
        "GET {authorize}: {}",
        resp.status()
    );
    let login = url::Url::parse(&hub.url("/"))?.join(&location(&resp)?)?;
    ensure!(
        login.path() == "/hub/login",
        "the hub redirected to {login}"
    );
    let next = login
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .context("the login redirect has no next")?;
    ensure!(
        next.starts_with("/hub/api/oauth2/authorize?"),
        "next after login is {next}"
    );
    let resp = hub.client().get(login.as_str()).send().await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "GET {login}: {}",
        resp.status()
    );

    // The same browser logs in on that page and follows the redirects with its cookies: the hub
    // authorizes, the server exchanges the code, and JupyterLab's page is served.
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()?;
    let page = browser.get(hub.url("/user/alice/lab")).send().await?;
    ensure!(
        page.url().path() == "/hub/login",
        "a browser without cookies ended at {}",
        page.url()
    );
    let login_url = page.url().clone();
    let html = page.text().await?;
    let xsrf = hidden_input(&html, "_xsrf").context("the login page has no _xsrf field")?;
    let lab = browser
        .post(login_url.as_str())
        .form(&[
            ("username", "alice"),
            ("password", "alice-password-1"),
            ("_xsrf", xsrf.as_str()),
        ])
        .send()
        .await?;
    ensure!(
        lab.status() == StatusCode::OK && lab.url().path() == "/user/alice/lab",
        "after logging in the browser is at {} ({})",
        lab.url(),
        lab.status()
    );
    let html = lab.text().await?;
    ensure!(
        html.contains("jupyter-config-data"),
        "not JupyterLab's page: {}",
        &html[..html.len().min(500)]
    );

    // Code on a kernel, over the websocket through the proxy.
    let mut kernel = Kernel::start(&hub, "/user/alice/", &token).await?;
    let run = kernel
        .execute("print(6*7)", Duration::from_secs(60))
        .await?;
    ensure!(
        run.status == "ok" && run.stdout == "42\n",
        "print(6*7) gave {run:?}"
    );
    let run = kernel
        .execute("import sys; sys.prefix", Duration::from_secs(30))
        .await?;
    ensure!(run.result.is_some(), "no execute_result: {run:?}");
    kernel.close().await?;
    Ok(())
}

/// The `value` of `<input name="{name}" value="...">` in a page.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind("<input")?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value = tag.split("value=\"").nth(1)?.split('"').next()?;
    Some(value.replace("&amp;", "&"))
}

fn location(resp: &reqwest::Response) -> Result<String> {
    Ok(resp
        .headers()
        .get("location")
        .context("a redirect without Location")?
        .to_str()?
        .to_owned())
}

#[tokio::test]
async fn jupyterlab_of_jupyterhub_5_5_works_through_the_proxy() -> Result<()> {
    jupyterlab_works_through_the_proxy(Singleuser::Jupyterhub5, "5.5.").await
}

#[tokio::test]
async fn jupyterlab_of_jupyterhub_6_works_through_the_proxy() -> Result<()> {
    jupyterlab_works_through_the_proxy(Singleuser::Jupyterhub6, "6.").await
}
