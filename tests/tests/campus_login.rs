//! Campus login through OpenID Connect and plain OAuth2, against a real identity provider: npm
//! `oidc-provider` (an OpenID Certified implementation) started from `tests/oidc/provider.mjs` on
//! 127.0.0.1, and the real `xiji` binary with `[auth] kind = "oidc"` or `"oauth2"`. The browser's part is played by a
//! cookie-keeping HTTP client that follows every redirect itself and fills in the provider's
//! login form.
//!
//! - A student signs in with "Log in with Campus", lands on the home page as a new user with the
//!   role and groups from the `groups` claim; a teacher gets the teacher role; a user outside the
//!   allowed groups, or whose token has no user name, is refused with a clear page and no account.
//! - The provider rotates its signing key between two logins: the second still works. A user
//!   moved out of the allowed groups is refused at the next login, signed out everywhere, and
//!   their cluster released.
//! - The quota class follows the claims (an administrator's exception stays theirs); groups an
//!   administrator made by hand are not emptied by a login; `auth_state` is kept encrypted and
//!   shown to administrators only; local passwords are for administrators only.
//! - Plain OAuth2 (on PostgreSQL): who the user is comes from the user-info endpoint; local
//!   logins can be turned off.
//! - In Chromium (`tests/browser/campus_login.mjs`): click "Log in with Campus", sign in on the
//!   provider's page, land on the home page as a new student, start a server and reach
//!   JupyterLab, log out (also from the provider). Screenshots in `tests/artifacts/campus_login/`.
//! - While the provider is down, a login answers 502 saying so.
//! - Tampering: a wrong `state`, a replayed code, an ID token signed by another key (under the
//!   provider's key id, or under an unknown one), an expired token and a wrong audience are each
//!   refused with a 403 page and no account made.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tests::{browser as chromium, required_env, workspace_root, Hub, HubOptions};

const CLIENT_SECRET: &str = "xiji-client-secret";

/// The identity provider, killed when dropped.
struct Provider {
    child: Option<Child>,
    port: u16,
    redirect_uri: String,
    log: PathBuf,
}

impl Provider {
    async fn start(hub: &Hub, port: u16) -> Result<Provider> {
        let mut p = Provider {
            child: None,
            port,
            redirect_uri: hub.url("/hub/oauth_callback"),
            log: hub.scratch_path("oidc-provider.log"),
        };
        p.launch(hub).await?;
        Ok(p)
    }

    fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self, hub: &Hub) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = hub
            .command("node")
            .arg(workspace_root().join("tests/oidc/provider.mjs"))
            .env(
                "XIJI_TEST_NODE_MODULES",
                required_env("XIJI_TEST_NODE_MODULES")?,
            )
            .env("PORT", self.port.to_string())
            .env("REDIRECT_URI", &self.redirect_uri)
            .env(
                "POST_LOGOUT_URI",
                self.redirect_uri
                    .replace("/hub/oauth_callback", "/hub/login"),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run node")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the identity provider did not start:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts the provider: it comes back with a new signing key (a key rotation).
    async fn rotate_keys(&mut self, hub: &Hub) -> Result<()> {
        self.stop();
        self.launch(hub).await
    }

    async fn kid(&self) -> Result<String> {
        let v: Value = reqwest::get(format!("{}/control/kid", self.issuer()))
            .await?
            .json()
            .await?;
        Ok(v["kid"].as_str().unwrap_or_default().to_owned())
    }

    /// Changes a user's groups at the provider.
    async fn set_groups(&self, user: &str, groups: &[&str]) -> Result<()> {
        self.control("/control/groups", json!({ "user": user, "groups": groups }))
            .await
    }

    async fn control(&self, path: &str, body: Value) -> Result<()> {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.issuer()))
            .json(&body)
            .send()
            .await?;
        ensure!(r.status().is_success(), "control {path}: {}", r.status());
        Ok(())
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The `auth_state` key of the test hubs (64 hex digits, as `openssl rand -hex 32` writes it).
const CRYPT_KEY: &str = "6a3f0c9e1b7d5a2c4e8f0a1b3c5d7e9f2a4b6c8d0e1f3a5b7c9d1e3f5a7b9c0d";

/// The settings both kinds of provider share: the claims, the roles, groups, quota classes.
fn provider_settings(secret_dir: &tempfile::TempDir) -> Result<String> {
    let secret_file = secret_dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{CLIENT_SECRET}\n"))?;
    Ok(format!(
        r#"provider_name = "Campus"
client_id = "xiji"
client_secret_file = "{}"
scopes = ["openid", "profile", "groups"]
username_claim = "preferred_username"
groups_claim = "groups"
admin_groups = ["it-staff"]
teacher_groups = ["teachers"]
allowed_groups = ["students", "teachers"]
manage_groups = true

[[{{section}}.quota_classes]]
name = "course"
groups = ["ml-101"]
limits = {{ cpus = 2, memory = "4G" }}
"#,
        secret_file.display()
    ))
}

/// The `[auth]` table: kind, local logins, and `auth_state` under a key file.
fn auth_table(kind: &str, local_logins: &str, secret_dir: &tempfile::TempDir) -> Result<String> {
    let key_file = secret_dir.path().join("crypt-key");
    std::fs::write(&key_file, format!("{CRYPT_KEY}\n"))?;
    Ok(format!(
        "[auth]\nkind = \"{kind}\"\n{local_logins}enable_auth_state = true\ncrypt_key_file = \"{}\"\n",
        key_file.display()
    ))
}

/// A hub with OpenID Connect login against the provider that will listen on `port`.
async fn start_hub(port: u16, secret_dir: &tempfile::TempDir) -> Result<Hub> {
    start_hub_with(port, secret_dir, "").await
}

/// The same, with more lines in `[auth]`.
async fn start_hub_with(port: u16, secret_dir: &tempfile::TempDir, auth: &str) -> Result<Hub> {
    let tables = format!(
        "{}\n[auth.oidc]\nissuer = \"http://127.0.0.1:{port}\"\n{}",
        auth_table("oidc", auth, secret_dir)?,
        provider_settings(secret_dir)?.replace("{section}", "auth.oidc"),
    );
    Hub::start_with(HubOptions {
        tables_toml: tables,
        ..HubOptions::default()
    })
    .await
}

/// A browser: keeps cookies, follows nothing by itself.
fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Where a walk through the redirects ended.
#[derive(Debug)]
struct Landing {
    url: String,
    status: StatusCode,
    body: String,
    /// Whether the provider showed its login form on the way.
    asked_for_password: bool,
}

fn location(from: &str, resp: &reqwest::Response) -> Result<String> {
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .context("a redirect without Location")?
        .to_str()?;
    Ok(url::Url::parse(from)?.join(to)?.to_string())
}

/// Follows redirects from `url`, signing in at the provider's login page as `user`; stops at the
/// first page that is not a redirect, or (with `stop_at_callback`) at the hub's callback URL.
async fn walk(
    client: &reqwest::Client,
    url: &str,
    user: &str,
    stop_at_callback: bool,
) -> Result<Landing> {
    let mut url = url.to_owned();
    let mut signed_in = false;
    for _ in 0..20 {
        if stop_at_callback && url.contains("/hub/oauth_callback") {
            return Ok(Landing {
                url,
                status: StatusCode::FOUND,
                body: String::new(),
                asked_for_password: signed_in,
            });
        }
        let resp = client.get(&url).send().await?;
        if resp.status().is_redirection() {
            url = location(&url, &resp)?;
            continue;
        }
        if resp.status() == StatusCode::OK && url.contains("/interaction/") && !signed_in {
            // The provider's login form: `prompt=login`, any password.
            let resp = client
                .post(&url)
                .form(&[("prompt", "login"), ("login", user), ("password", "any")])
                .send()
                .await?;
            ensure!(
                resp.status().is_redirection(),
                "the provider's login form answered {}",
                resp.status()
            );
            signed_in = true;
            url = location(&url, &resp)?;
            continue;
        }
        let status = resp.status();
        let body = resp.text().await?;
        return Ok(Landing {
            url,
            status,
            body,
            asked_for_password: signed_in,
        });
    }
    bail!("more than 20 redirects from {url}")
}

/// A whole campus login as `user` in a fresh browser.
async fn campus_login(hub: &Hub, user: &str) -> Result<(reqwest::Client, Landing)> {
    let client = browser()?;
    let landing = walk(&client, &hub.url("/hub/oauth_login"), user, false).await?;
    Ok((client, landing))
}

async fn user_exists(hub: &Hub, name: &str) -> Result<bool> {
    let resp = hub
        .admin(Method::GET, &format!("/hub/api/users/{name}"))
        .send()
        .await?;
    match resp.status() {
        StatusCode::OK => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        s => bail!("GET user {name}: {s}"),
    }
}

async fn role_of(hub: &Hub, name: &str) -> Result<String> {
    let v: Value = hub
        .admin(Method::GET, &format!("/hub/api/users/{name}/quota"))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["role"].as_str().unwrap_or_default().to_owned())
}

async fn quota_of(hub: &Hub, name: &str) -> Result<Value> {
    Ok(hub
        .admin(Method::GET, &format!("/hub/api/users/{name}/quota"))
        .send()
        .await?
        .json()
        .await?)
}

/// Waits up to 30 s for `check` to hold.
async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if check().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sorted_groups(hub: &Hub, name: &str) -> Result<Vec<String>> {
    let model = hub.user(name).await?;
    let mut groups: Vec<String> = serde_json::from_value(model["groups"].clone())?;
    groups.sort();
    Ok(groups)
}

/// Asks for `user`'s default server; the answer's status and body.
async fn ask_to_start(hub: &Hub, user: &str) -> Result<(StatusCode, String)> {
    let resp = hub
        .admin(Method::POST, &format!("/hub/api/users/{user}/server"))
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

/// Gives `user` a local password (as an administrator does).
async fn set_password(hub: &Hub, user: &str, password: &str) -> Result<()> {
    let resp = hub
        .admin(Method::PATCH, &format!("/hub/api/users/{user}"))
        .json(&json!({ "password": password }))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "{user}'s password: {}",
        resp.status()
    );
    Ok(())
}

/// Posts the local login form as `user` in a fresh browser; the answer, not followed.
async fn local_login(hub: &Hub, user: &str, password: &str) -> Result<(StatusCode, String)> {
    let client = browser()?;
    let page = client.get(hub.url("/hub/login")).send().await?;
    let xsrf = page
        .cookies()
        .find(|c| c.name() == "_xsrf")
        .map(|c| c.value().to_owned())
        .context("no _xsrf cookie on the login page")?;
    let resp = client
        .post(hub.url("/hub/login"))
        .form(&[("username", user), ("password", password), ("_xsrf", &xsrf)])
        .send()
        .await?;
    Ok((resp.status(), resp.text().await?))
}

/// Whether this browser's session still opens the home page.
async fn signed_in(client: &reqwest::Client, hub: &Hub) -> Result<bool> {
    Ok(client.get(hub.url("/hub/home")).send().await?.status() == StatusCode::OK)
}

/// `auth_state` is kept encrypted: no file of the hub's data holds `secret` in plain text.
fn nowhere_plain(hub: &Hub, secret: &str) -> Result<()> {
    ensure!(
        secret.len() > 16,
        "a token too short to look for: {secret:?}"
    );
    for entry in std::fs::read_dir(hub.data_dir())? {
        let path = entry?.path();
        if path.is_file() {
            let bytes = std::fs::read(&path)?;
            ensure!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds the access token in plain text",
                path.display()
            );
        }
    }
    Ok(())
}

fn expect_home(landing: &Landing, who: &str) -> Result<()> {
    ensure!(
        landing.status == StatusCode::OK && landing.url.ends_with("/hub/home"),
        "{who} did not land on the home page: {} {}\n{}",
        landing.status,
        landing.url,
        landing.body
    );
    Ok(())
}

fn expect_refused(landing: &Landing, what: &str, says: &str) -> Result<()> {
    ensure!(
        landing.status == StatusCode::FORBIDDEN && landing.body.contains(says),
        "{what}: expected a 403 page saying {says:?}, got {} at {}:\n{}",
        landing.status,
        landing.url,
        landing.body
    );
    Ok(())
}

#[tokio::test]
async fn campus_users_sign_in_with_the_role_and_groups_from_their_claims_and_others_are_refused(
) -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let mut hub = start_hub(port, &secrets).await?;
    let mut provider = Provider::start(&hub, port).await?;

    // The login page offers the provider, in both languages; the local form stays.
    let page = hub
        .client()
        .get(hub.url("/hub/login"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(page.contains("Log in with Campus"), "{page}");
    ensure!(page.contains("id=\"login-form\""), "{page}");
    let page = hub
        .client()
        .get(hub.url("/hub/login"))
        .header("Cookie", "xiji-lang=zh")
        .send()
        .await?
        .text()
        .await?;
    ensure!(page.contains("使用Campus登录"), "{page}");

    // A student: a new account with the student role and the course groups, signed in.
    ensure!(!user_exists(&hub, "ann").await?);
    let (ann, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann")?;
    let model = hub.user("ann").await?;
    ensure!(model["admin"] == json!(false), "{model}");
    let mut groups: Vec<String> = serde_json::from_value(model["groups"].clone())?;
    groups.sort();
    ensure!(groups == ["ml-101", "students"], "{model}");
    ensure!(role_of(&hub, "ann").await? == "student");
    // Her quota class comes from the course group.
    let quota = quota_of(&hub, "ann").await?;
    ensure!(
        quota["exception"]["quota_class"] == "course"
            && quota["quota"]["cpu_millis"] == 2000
            && quota["quota"]["memory_mib"] == 4096,
        "{quota}"
    );
    // Her auth_state: the provider's tokens and claims, for administrators only, encrypted at
    // rest; her own view of herself is JupyterHub's user model without it.
    let state = model["auth_state"].clone();
    ensure!(
        state["oauth_user"]["preferred_username"] == "ann"
            && state["id_token"]
                .as_str()
                .is_some_and(|t| t.split('.').count() == 3)
            && state["token_response"]["token_type"].is_string(),
        "{model}"
    );
    let access_token = state["access_token"]
        .as_str()
        .context("no access token in auth_state")?
        .to_owned();
    hub.terminate().await?;
    nowhere_plain(&hub, &access_token)?;
    hub.restart().await?;
    let ann_token = hub.create_token("ann", json!({})).await?;
    let own: Value = hub
        .with_token(Method::GET, "/hub/api/user", &ann_token)
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        own["name"] == "ann" && own.get("auth_state").is_none(),
        "{own}"
    );
    let other = hub
        .with_token(Method::GET, "/hub/api/users/ann", &ann_token)
        .send()
        .await?
        .json::<Value>()
        .await?;
    ensure!(other.get("auth_state").is_none(), "{other}");
    let after_restart = hub.user("ann").await?;
    ensure!(
        after_restart["auth_state"]["access_token"] == access_token.as_str(),
        "the restarted hub cannot read the auth_state: {after_restart}"
    );
    // A local password is for administrators only once campus login is on.
    set_password(&hub, "ann", "ann-local-password").await?;
    let (status, body) = local_login(&hub, "ann", "ann-local-password").await?;
    ensure!(
        status == StatusCode::FORBIDDEN && body.contains("administrators only"),
        "a student signed in with a local password: {status}\n{body}"
    );
    set_password(&hub, "admin", "admin-local-password").await?;
    let (status, _) = local_login(&hub, "admin", "admin-local-password").await?;
    ensure!(
        status == StatusCode::FOUND,
        "the administrator's local login: {status}"
    );
    // The session is Xiji's normal one: the API answers with the cookie.
    let me: Value = ann
        .get(hub.url("/hub/home"))
        .send()
        .await?
        .text()
        .await
        .map(|t| json!(t.contains("ann")))?;
    ensure!(me == json!(true), "ann's home page does not name her");

    // While the provider's session lasts, signing in again asks for no password.
    let landing = walk(&ann, &hub.url("/hub/oauth_login"), "ann", false).await?;
    expect_home(&landing, "ann again")?;
    ensure!(
        !landing.asked_for_password,
        "the provider forgot ann's session"
    );

    // Logging out ends the Xiji session and, after the provider's confirmation, the provider's.
    let landing = walk(&ann, &hub.url("/hub/logout"), "ann", false).await?;
    ensure!(
        landing.status == StatusCode::OK && landing.body.contains("op.logoutForm"),
        "logout did not reach the provider's sign-out page: {landing:?}"
    );
    let xsrf = landing
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("no xsrf on the provider's sign-out page")?;
    let action = url::Url::parse(&landing.url)?.join("/session/end/confirm")?;
    let resp = ann
        .post(action.as_str())
        .form(&[("xsrf", xsrf), ("logout", "yes")])
        .send()
        .await?;
    ensure!(
        resp.status().is_redirection(),
        "sign-out confirm: {}",
        resp.status()
    );
    let back = location(action.as_str(), &resp)?;
    ensure!(
        back == hub.url("/hub/login"),
        "the provider sent the browser to {back}"
    );
    let resp = ann.get(hub.url("/hub/home")).send().await?;
    ensure!(
        resp.status().is_redirection(),
        "the Xiji session survived the logout: {}",
        resp.status()
    );
    // The provider's session is over too: the next campus login asks for a password again.
    let landing = walk(&ann, &hub.url("/hub/oauth_login"), "ann", false).await?;
    expect_home(&landing, "ann signing in again")?;
    ensure!(
        landing.asked_for_password,
        "the provider's session outlived the logout"
    );

    // A teacher gets the teacher role. An exception an administrator sets is not replaced by
    // the quota class at the next login.
    let (_, landing) = campus_login(&hub, "tom").await?;
    expect_home(&landing, "tom")?;
    ensure!(role_of(&hub, "tom").await? == "teacher");
    let resp = hub
        .admin(Method::PUT, "/hub/api/users/tom/quota")
        .json(&json!({"cpus": 8}))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "tom's exception: {}",
        resp.status()
    );
    let (tom, landing) = campus_login(&hub, "tom").await?;
    expect_home(&landing, "tom again")?;
    let quota = quota_of(&hub, "tom").await?;
    ensure!(
        quota["exception"]["quota_class"].is_null()
            && quota["exception"]["limits"]["cpu_millis"] == 8000,
        "the login replaced the administrator's exception: {quota}"
    );

    // Outside the allowed groups: refused, no account.
    let (_, landing) = campus_login(&hub, "eve").await?;
    expect_refused(&landing, "eve", "not allowed to sign in")?;
    ensure!(!user_exists(&hub, "eve").await?, "eve got an account");

    // No user name in the token: refused, no account.
    let (_, landing) = campus_login(&hub, "anon").await?;
    expect_refused(
        &landing,
        "a token without a user name",
        "did not send your user name",
    )?;
    ensure!(!user_exists(&hub, "anon").await?, "anon got an account");

    // The provider rotates its key between two logins: the next login still works.
    let old_kid = provider.kid().await?;
    provider.rotate_keys(&hub).await?;
    ensure!(
        provider.kid().await? != old_kid,
        "the provider kept its key"
    );
    let (_, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann after the key rotation")?;

    // Moved out of the allowed groups: refused at the next login, and tom's running cluster
    // follows the release policy of logout; groups follow the provider.
    let resp = hub
        .admin(Method::PUT, "/hub/api/release-policies/default")
        .json(&json!({"policy": "on_logout", "grace_seconds": 60}))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::OK,
        "release policy: {}",
        resp.status()
    );
    hub.start_server("tom").await?;
    hub.wait_until_ready("tom", "", Duration::from_secs(120))
        .await?;
    provider.set_groups("tom", &["alumni"]).await?;
    let (_, landing) = campus_login(&hub, "tom").await?;
    expect_refused(
        &landing,
        "tom out of the allowed groups",
        "not allowed to sign in",
    )?;
    hub.wait_until_stopped("tom", "", Duration::from_secs(60))
        .await
        .context("tom's cluster was not released after the refusal")?;
    ensure!(
        !signed_in(&tom, &hub).await?,
        "tom's open session survived the refusal"
    );
    let releases: Value = hub
        .admin(Method::GET, "/hub/api/users/tom/releases")
        .send()
        .await?
        .json()
        .await?;
    ensure!(releases[0]["cause"] == "on_logout", "{releases}");
    // A group an administrator filled by hand is not emptied by a login; the provider's
    // groups and the quota class follow the claims.
    for (method, path, body) in [
        (Method::POST, "/hub/api/groups/helpers", json!({})),
        (
            Method::POST,
            "/hub/api/groups/helpers/users",
            json!({"users": ["ann"]}),
        ),
    ] {
        let resp = hub.admin(method, path).json(&body).send().await?;
        ensure!(resp.status().is_success(), "{path}: {}", resp.status());
    }
    provider.set_groups("ann", &["students"]).await?;
    let (_, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann with fewer groups")?;
    let groups = sorted_groups(&hub, "ann").await?;
    ensure!(groups == ["helpers", "students"], "{groups:?}");
    let quota = quota_of(&hub, "ann").await?;
    ensure!(
        quota["exception"].is_null(),
        "the course class stayed: {quota}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plain_oauth2_provider_signs_users_in_from_its_user_info_endpoint_with_local_logins_off_on_postgres(
) -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let issuer = format!("http://127.0.0.1:{port}");
    // The client secret and the auth_state key come from the environment, as a Kubernetes
    // Secret hands them in (docs/campus-login.md), not from files.
    let settings = provider_settings(&secrets)?
        .replace("{section}", "auth.oauth2")
        .lines()
        .filter(|l| !l.starts_with("client_secret_file"))
        .collect::<Vec<_>>()
        .join("\n");
    let tables = format!(
        "[auth]\nkind = \"oauth2\"\nlocal_logins = \"off\"\nenable_auth_state = true\n\
         [auth.oauth2]\nauthorize_url = \"{issuer}/auth\"\ntoken_url = \"{issuer}/token\"\n\
         userinfo_url = \"{issuer}/me\"\nlogout_url = \"{issuer}/session/end\"\n{settings}\n",
    );
    let hub = Hub::start_with(HubOptions {
        tables_toml: tables,
        database_url: Some(tests::new_postgres_database("campus")?),
        hub_environment: vec![
            ("OAUTH_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("JUPYTERHUB_CRYPT_KEY".into(), CRYPT_KEY.into()),
        ],
        ..HubOptions::default()
    })
    .await?;
    let _provider = Provider::start(&hub, port).await?;

    // Only the provider's button: no password form, and a posted password is refused.
    let page = hub
        .client()
        .get(hub.url("/hub/login"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        page.contains("Log in with Campus") && !page.contains("id=\"login-form\""),
        "{page}"
    );
    let (status, body) = local_login(&hub, "admin", "any-password").await?;
    ensure!(
        status == StatusCode::FORBIDDEN && body.contains("turned off"),
        "a local login with local logins off: {status}\n{body}"
    );

    // Who ann is comes from the user-info endpoint: her role, groups and quota class.
    let (ann, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann")?;
    ensure!(role_of(&hub, "ann").await? == "student");
    let groups = sorted_groups(&hub, "ann").await?;
    ensure!(groups == ["ml-101", "students"], "{groups:?}");
    let model = hub.user("ann").await?;
    let state = &model["auth_state"];
    ensure!(
        state["oauth_user"]["sub"] == "ann"
            && state["oauth_user"]["preferred_username"] == "ann"
            && state["oauth_user"].get("aud").is_none()
            && state["access_token"].is_string(),
        "auth_state does not hold the user-info answer: {model}"
    );
    let quota = quota_of(&hub, "ann").await?;
    ensure!(quota["exception"]["quota_class"] == "course", "{quota}");
    let (_, landing) = campus_login(&hub, "tom").await?;
    expect_home(&landing, "tom")?;
    ensure!(role_of(&hub, "tom").await? == "teacher");
    let (_, landing) = campus_login(&hub, "eve").await?;
    expect_refused(&landing, "eve", "not allowed to sign in")?;
    ensure!(!user_exists(&hub, "eve").await?, "eve got an account");

    // Logging out ends the session and goes on to the provider's sign-out page as configured.
    let resp = ann.get(hub.url("/hub/logout")).send().await?;
    let next = location(&hub.url("/hub/logout"), &resp)?;
    ensure!(next == hub.url("/hub/oauth_logout"), "{next}");
    let resp = ann.get(&next).send().await?;
    ensure!(
        location(&next, &resp)? == format!("{issuer}/session/end"),
        "logout went to {:?}",
        resp.headers().get("location")
    );
    ensure!(
        !signed_in(&ann, &hub).await?,
        "the session survived the logout"
    );
    Ok(())
}

#[tokio::test]
async fn between_logins_the_provider_is_asked_again_and_users_it_no_longer_vouches_for_are_turned_away(
) -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let hub = start_hub_with(port, &secrets, "refresh_age = 1\n").await?;
    let mut provider = Provider::start(&hub, port).await?;
    let (ann, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann")?;
    let (tom, landing) = campus_login(&hub, "tom").await?;
    expect_home(&landing, "tom")?;
    let state = hub.user("ann").await?["auth_state"].clone();
    ensure!(
        state["refresh_token"].is_string(),
        "no refresh token: {state}"
    );

    // ann leaves the course at the provider: without signing in again, her groups and quota
    // class follow, and she stays signed in.
    provider.set_groups("ann", &["students"]).await?;
    eventually("ann's groups follow the provider", || async {
        Ok(sorted_groups(&hub, "ann").await? == ["students"])
    })
    .await?;
    let quota = quota_of(&hub, "ann").await?;
    ensure!(
        quota["exception"].is_null(),
        "the course class stayed: {quota}"
    );
    ensure!(signed_in(&ann, &hub).await?, "ann was signed out");
    let refreshed = hub.user("ann").await?["auth_state"].clone();
    ensure!(
        refreshed["access_token"] != state["access_token"],
        "the tokens were not renewed"
    );

    // tom is moved out of the allowed groups: signed out without trying to sign in, and his
    // starts are refused with the reason.
    provider.set_groups("tom", &["alumni"]).await?;
    eventually("tom is signed out", || async {
        Ok(!signed_in(&tom, &hub).await?)
    })
    .await?;
    let (status, body) = ask_to_start(&hub, "tom").await?;
    ensure!(
        status == StatusCode::FORBIDDEN && body.contains("not allowed"),
        "tom's start: {status} {body}"
    );

    // The provider forgets every grant (a restart): ann's refresh token is refused, she is signed
    // out and may start nothing until she signs in again.
    provider.rotate_keys(&hub).await?;
    eventually("ann is signed out", || async {
        Ok(!signed_in(&ann, &hub).await?)
    })
    .await?;
    let (status, body) = ask_to_start(&hub, "ann").await?;
    ensure!(
        status == StatusCode::FORBIDDEN && body.contains("Sign in again"),
        "ann's start: {status} {body}"
    );
    let (_, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann signing in again")?;
    let (status, body) = ask_to_start(&hub, "ann").await?;
    ensure!(
        status == StatusCode::CREATED || status == StatusCode::ACCEPTED,
        "ann's start after signing in again: {status} {body}"
    );
    hub.wait_until_ready("ann", "", Duration::from_secs(120))
        .await?;
    hub.stop_server("ann").await?;
    Ok(())
}

#[tokio::test]
async fn with_pkce_turned_off_a_provider_that_requires_it_refuses_and_the_page_says_why(
) -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let mut hub = start_hub_with(port, &secrets, "").await?;
    let _provider = Provider::start(&hub, port).await?;
    // The provider requires PKCE: with it turned off, the request is refused and the hub shows
    // the provider's answer, making no account.
    let with_pkce = std::fs::read_to_string(hub.config_path())?;
    hub.terminate().await?;
    std::fs::write(
        hub.config_path(),
        with_pkce.replace("[auth.oidc]\n", "[auth.oidc]\npkce = false\n"),
    )?;
    hub.restart().await?;
    let client = browser()?;
    let landing = walk(&client, &hub.url("/hub/oauth_login"), "ann", false).await?;
    ensure!(
        landing.status == StatusCode::FORBIDDEN
            && landing.body.contains("did not sign you in")
            && landing.body.contains("PKCE"),
        "a login without PKCE: {landing:?}"
    );
    ensure!(!user_exists(&hub, "ann").await?, "an account was made");
    // With PKCE (the default) the same user gets in.
    hub.terminate().await?;
    std::fs::write(hub.config_path(), with_pkce)?;
    hub.restart().await?;
    let (_, landing) = campus_login(&hub, "ann").await?;
    expect_home(&landing, "ann with PKCE")?;
    Ok(())
}

/// Starts a login as `user` and stops at the hub's callback URL (with the provider's code).
async fn callback_url_for(hub: &Hub, client: &reqwest::Client, user: &str) -> Result<String> {
    let landing = walk(client, &hub.url("/hub/oauth_login"), user, true).await?;
    ensure!(
        landing.url.contains("/hub/oauth_callback?") && landing.url.contains("code="),
        "the provider did not send the browser back with a code: {landing:?}"
    );
    Ok(landing.url)
}

fn with_param(url: &str, name: &str, value: &str) -> Result<String> {
    let mut u = url::Url::parse(url)?;
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    Ok(u.to_string())
}

fn param(url: &str, name: &str) -> Result<String> {
    url::Url::parse(url)?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .context("no such parameter")
}

#[tokio::test]
async fn tampered_campus_logins_are_refused_and_make_no_account() -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let hub = start_hub(port, &secrets).await?;
    // The provider is not up yet: the login says so (502), and nothing else breaks.
    let client = browser()?;
    let resp = client.get(hub.url("/hub/oauth_login")).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    ensure!(
        status == StatusCode::BAD_GATEWAY && body.contains("could not be reached"),
        "a login while the provider is down: {status}\n{body}"
    );
    let provider = Provider::start(&hub, port).await?;

    // A wrong state: refused before the code is used.
    let client = browser()?;
    let callback = callback_url_for(&hub, &client, "sam").await?;
    let forged = with_param(&callback, "state", "forged-state")?;
    let landing = walk(&client, &forged, "sam", false).await?;
    expect_refused(&landing, "a wrong state", "state")?;
    ensure!(
        !user_exists(&hub, "sam").await?,
        "a wrong state made an account"
    );

    // A replayed code: used once by its own login, then sent again with a new login's state.
    let (client, landing) = campus_login(&hub, "sue").await?;
    expect_home(&landing, "sue")?;
    let used = browser()?;
    let first = callback_url_for(&hub, &used, "ray").await?;
    let landing = walk(&used, &first, "ray", false).await?;
    expect_home(&landing, "ray")?;
    let again = callback_url_for(&hub, &client, "ray2").await?;
    let replay = with_param(&again, "code", &param(&first, "code")?)?;
    let landing = walk(&client, &replay, "ray2", false).await?;
    expect_refused(&landing, "a replayed code", "refused the sign-in code")?;
    ensure!(
        !user_exists(&hub, "ray2").await?,
        "a replayed code made an account"
    );

    // ID tokens changed at the provider's token endpoint, each for a new user.
    let now = chrono::Utc::now().timestamp();
    let cases = [
        (
            "kim",
            json!({"key": "foreign-same-kid"}),
            "signature is wrong",
        ),
        ("lee", json!({"key": "foreign-new-kid"}), "does not publish"),
        (
            "max",
            json!({"claims": {"exp": now - 600, "iat": now - 1200}}),
            "expired",
        ),
        (
            "ned",
            json!({"claims": {"aud": "other-app"}}),
            "another application",
        ),
        (
            "oli",
            json!({"claims": {"nonce": "not-this-login"}}),
            "nonce",
        ),
        (
            "pat",
            json!({"claims": {"preferred_username": null}}),
            "did not send your user name",
        ),
    ];
    for (user, tamper, says) in cases {
        provider.control("/control/tamper", tamper.clone()).await?;
        let (_, landing) = campus_login(&hub, user).await?;
        expect_refused(&landing, &format!("tampering {tamper}"), says)?;
        ensure!(
            !user_exists(&hub, user).await?,
            "tampering {tamper} made an account"
        );
    }

    // The same flow untouched still signs in.
    let (_, landing) = campus_login(&hub, "uma").await?;
    expect_home(&landing, "uma")?;
    Ok(())
}

#[tokio::test]
async fn a_campus_user_signs_in_in_chromium_starts_a_server_and_logs_out_at_the_provider_too(
) -> Result<()> {
    let port = free_port()?;
    let secrets = tempfile::tempdir()?;
    let hub = start_hub(port, &secrets).await?;
    let _provider = Provider::start(&hub, port).await?;
    ensure!(!user_exists(&hub, "ann").await?);
    let run = chromium::run_script(
        &hub,
        "campus_login.mjs",
        "campus_login",
        &[("XIJI_USER", "ann")],
    )
    .await?;
    ensure!(run.output.contains("\"ok\":true"), "{}", run.output);
    for name in [
        "login",
        "provider",
        "home",
        "jupyterlab",
        "provider-logout",
        "logged-out",
    ] {
        run.expect_screenshot(name)?;
    }
    ensure!(role_of(&hub, "ann").await? == "student");
    let server = hub
        .wait_until_ready("ann", "", Duration::from_secs(5))
        .await?;
    ensure!(server["url"] == json!("/user/ann/"), "{server}");
    Ok(())
}
