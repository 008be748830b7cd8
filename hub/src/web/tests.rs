//! The pages through the hub's whole router, on a fresh SQLite database.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use tower::ServiceExt;

use super::i18n::CATALOGUE;
use super::templates::TEMPLATES;
use crate::config::Config;
use crate::domain::Services;

pub(super) const ADMIN_PASSWORD: &str = "admin-secret-1";

pub(super) struct TestHub {
    pub(super) hub: Arc<Services>,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

pub(super) async fn test_hub(configure: impl FnOnce(&mut Config)) -> TestHub {
    test_hub_with(configure, None).await
}

/// A hub whose backend is `spawner` (e.g. a multi-node backend without Docker), if given.
pub(super) async fn test_hub_with(
    configure: impl FnOnce(&mut Config),
    spawner: Option<Arc<dyn spawner::Spawner>>,
) -> TestHub {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        login_throttle_attempts: 3,
        ..Config::default()
    };
    config.admin.password = Some(ADMIN_PASSWORD.into());
    // Never started here: a command that exists, so no notebook environment is set up.
    config.spawner.local.cmd = vec!["false".into()];
    configure(&mut config);
    let mut hub = crate::app::prepare(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    if let Some(spawner) = spawner {
        Arc::get_mut(&mut hub)
            .expect("nothing else holds the hub yet")
            .spawner = spawner;
    }
    let router = crate::router(Arc::clone(&hub));
    TestHub {
        hub,
        router,
        _dir: dir,
    }
}

/// A browser's cookie jar, enough for these tests (paths ignored).
#[derive(Default, Clone)]
pub(super) struct Jar(pub(super) BTreeMap<String, String>);

impl Jar {
    pub(super) fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub(super) fn take(&mut self, response: &Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, attrs) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

pub(super) fn location(response: &Response) -> &str {
    response
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

pub(super) async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub(super) fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap()
}

impl TestHub {
    pub(super) async fn send(&self, req: Request<Body>) -> Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    pub(super) async fn get(&self, jar: &Jar, uri: &str) -> Response {
        self.get_with(jar, uri, &[]).await
    }

    async fn get_with(&self, jar: &Jar, uri: &str, headers: &[(&str, &str)]) -> Response {
        let mut req = Request::get(uri).header(header::COOKIE, jar.header());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    pub(super) async fn post_form(&self, jar: &Jar, uri: &str, body: String) -> Response {
        self.send(
            Request::post(uri)
                .header(header::COOKIE, jar.header())
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// Opens the login page (which sets the XSRF cookie) and returns the jar.
    async fn visit_login(&self) -> Jar {
        let mut jar = Jar::default();
        let page = self.get(&jar, "/hub/login").await;
        assert_eq!(page.status(), StatusCode::OK);
        jar.take(&page);
        assert!(jar.get("_xsrf").is_some(), "the login page sets _xsrf");
        jar
    }

    async fn try_login(
        &self,
        jar: &Jar,
        user: &str,
        password: &str,
        next: Option<&str>,
    ) -> Response {
        let xsrf = jar.get("_xsrf").unwrap_or_default().to_owned();
        let uri = match next {
            Some(n) => format!("/hub/login?{}", form(&[("next", n)])),
            None => "/hub/login".to_owned(),
        };
        self.post_form(
            jar,
            &uri,
            form(&[("_xsrf", &xsrf), ("username", user), ("password", password)]),
        )
        .await
    }

    pub(super) async fn login(&self, user: &str, password: &str) -> Jar {
        let mut jar = self.visit_login().await;
        let response = self.try_login(&jar, user, password, None).await;
        assert_eq!(response.status(), StatusCode::FOUND);
        jar.take(&response);
        jar
    }

    pub(super) async fn create_user(&self, name: &str, password: &str) {
        let user = self
            .hub
            .store
            .create_user(name, false, crate::clock::now())
            .await
            .unwrap();
        crate::domain::accounts::set_password(&self.hub.store, &user, password)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_login_page_has_the_form_and_its_xsrf_token_matches_the_cookie() {
    let t = test_hub(|_| {}).await;
    let jar = t.visit_login().await;
    let xsrf = jar.get("_xsrf").unwrap();
    let html = body_text(t.get(&jar, "/hub/login").await).await;
    assert!(html.contains(r#"name="username""#), "{html}");
    assert!(html.contains(r#"name="password""#));
    assert!(html.contains(r#"id="login""#));
    assert!(html.contains(&format!(r#"name="_xsrf" value="{xsrf}""#)));
}

#[tokio::test]
async fn a_good_password_sets_jupyterhubs_cookies_which_the_api_accepts_with_xsrf() {
    let t = test_hub(|_| {}).await;
    let mut jar = t.visit_login().await;
    let response = t.try_login(&jar, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(location(&response), "/hub/home");
    let cookies = set_cookies(&response);
    let login = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-hub-login="))
        .unwrap();
    for attr in ["Path=/hub/", "HttpOnly", "SameSite=Lax"] {
        assert!(login.contains(attr), "{login} lacks {attr}");
    }
    assert!(
        !login.contains("Secure"),
        "no Secure without https: {login}"
    );
    let session = cookies
        .iter()
        .find(|c| c.starts_with("jupyterhub-session-id="))
        .unwrap();
    assert!(session.contains("Path=/;"), "{session}");
    jar.take(&response);

    let me = t.get(&jar, "/hub/api/user").await;
    assert_eq!(me.status(), StatusCode::OK);
    let me: serde_json::Value = serde_json::from_str(&body_text(me).await).unwrap();
    assert_eq!(me["name"], "admin");
    assert!(me["session_id"].is_string());

    // What the page script does: cookie plus X-XSRFToken equal to the _xsrf cookie.
    let xsrf = jar.get("_xsrf").unwrap().to_owned();
    let create = |with_header: bool| {
        let mut req = Request::post("/hub/api/users/admin/tokens")
            .header(header::COOKIE, jar.header())
            .header(header::CONTENT_TYPE, "application/json");
        if with_header {
            req = req.header("X-XSRFToken", xsrf.as_str());
        }
        req.body(Body::from(r#"{"note":"from the page"}"#)).unwrap()
    };
    assert_eq!(t.send(create(true)).await.status(), StatusCode::CREATED);
    assert_eq!(t.send(create(false)).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let t = test_hub(|c| c.public_url = Some("https://xiji.example.edu/".into())).await;
    let jar = t.visit_login().await;
    let response = t.try_login(&jar, "admin", ADMIN_PASSWORD, None).await;
    let cookies = set_cookies(&response);
    assert!(
        cookies
            .iter()
            .filter(|c| c.starts_with("jupyterhub-"))
            .all(|c| c.contains("; Secure")),
        "{cookies:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_gets_a_generic_message_and_repeated_failures_are_locked_out() {
    let t = test_hub(|_| {}).await;
    let jar = t.visit_login().await;
    for (user, password) in [("admin", "wrong-password"), ("nobody", "whatever-pass")] {
        let response = t.try_login(&jar, user, password, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(set_cookies(&response)
            .iter()
            .all(|c| !c.starts_with("jupyterhub-hub-login")));
        let html = body_text(response).await;
        assert!(html.contains("Invalid username or password."), "{html}");
    }
    // Attempts 2 and 3 for admin: the third failure locks the name.
    for _ in 0..2 {
        let r = t.try_login(&jar, "admin", "wrong-password", None).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let locked = t.try_login(&jar, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key(header::RETRY_AFTER));
    let html = body_text(locked).await;
    assert!(html.contains("Too many failed sign-in attempts"), "{html}");
    // Names are case-insensitive, so is the lock.
    let locked = t.try_login(&jar, "ADMIN", ADMIN_PASSWORD, None).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn failures_from_one_address_lock_that_address_for_every_name() {
    let t = test_hub(|_| {}).await;
    t.create_user("alice", "alice-password").await;
    let jar = t.visit_login().await;
    let xsrf = jar.get("_xsrf").unwrap().to_owned();
    let attempt = |user: &str, password: &str| {
        let mut req = Request::post("/hub/login")
            .header(header::COOKIE, jar.header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form(&[
                ("_xsrf", &xsrf),
                ("username", user),
                ("password", password),
            ])))
            .unwrap();
        req.extensions_mut()
            .insert(proxy::ClientAddr("10.1.2.3:5555".parse().unwrap()));
        req
    };
    for name in ["u1", "u2", "u3"] {
        assert_eq!(
            t.send(attempt(name, "bad-password")).await.status(),
            StatusCode::FORBIDDEN
        );
    }
    let locked = t.send(attempt("alice", "alice-password")).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    // Another address is not affected.
    let ok = t.try_login(&jar, "alice", "alice-password", None).await;
    assert_eq!(ok.status(), StatusCode::FOUND);
}

#[tokio::test]
async fn a_form_post_without_the_matching_xsrf_token_is_refused_with_403() {
    let t = test_hub(|_| {}).await;
    let body = form(&[("username", "admin"), ("password", ADMIN_PASSWORD)]);
    // No cookie, no field.
    let r = t
        .post_form(&Jar::default(), "/hub/login", body.clone())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = body_text(r).await;
    assert!(html.contains("_xsrf"), "{html}");
    assert!(html.contains("<html"), "an HTML page: {html}");
    // A cookie but a different field.
    let jar = t.visit_login().await;
    let forged = form(&[
        ("_xsrf", "0123456789abcdef0123456789abcdef"),
        ("username", "admin"),
        ("password", ADMIN_PASSWORD),
    ]);
    let r = t.post_form(&jar, "/hub/login", forged).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The field but no cookie.
    let xsrf = jar.get("_xsrf").unwrap().to_owned();
    let r = t
        .post_form(
            &Jar::default(),
            "/hub/login",
            form(&[
                ("_xsrf", &xsrf),
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
            ]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The start button's form on the "not running" page is protected the same way.
    let mut jar = t.login("admin", ADMIN_PASSWORD).await;
    jar.0.remove("_xsrf");
    let r = t.post_form(&jar, "/hub/spawn/admin", String::new()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn next_is_followed_only_to_paths_on_this_site() {
    let t = test_hub(|_| {}).await;
    let cases = [
        ("/user/admin/lab?x=1", "/user/admin/lab?x=1"),
        ("/hub/token", "/hub/token"),
        ("//evil.example/", "/hub/home"),
        ("https://evil.example/", "/hub/home"),
        ("/\\evil.example/", "/hub/home"),
        ("javascript:alert(1)", "/hub/home"),
    ];
    for (next, expected) in cases {
        let jar = t.visit_login().await;
        let r = t.try_login(&jar, "admin", ADMIN_PASSWORD, Some(next)).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{next}");
        assert_eq!(location(&r), expected, "next={next}");
    }
    // Already logged in: the login page goes straight on, with the same rule.
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let r = t.get(&jar, "/hub/login?next=%2F%2Fevil.example").await;
    assert_eq!(location(&r), "/hub/home");
    let r = t.get(&jar, "/hub/login?next=%2Fhub%2Ftoken").await;
    assert_eq!(location(&r), "/hub/token");
}

#[tokio::test]
async fn logout_ends_the_session_and_clears_the_cookies() {
    let t = test_hub(|_| {}).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(t.get(&jar, "/hub/api/user").await.status(), StatusCode::OK);
    let r = t.get(&jar, "/hub/logout").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/hub/login");
    let cleared = set_cookies(&r);
    for name in ["jupyterhub-hub-login=", "jupyterhub-session-id="] {
        assert!(
            cleared
                .iter()
                .any(|c| c.starts_with(name) && c.contains("Max-Age=0")),
            "{name} not cleared: {cleared:?}"
        );
    }
    // The old cookie no longer works anywhere.
    assert_eq!(
        t.get(&jar, "/hub/api/user").await.status(),
        StatusCode::FORBIDDEN
    );
    let home = t.get(&jar, "/hub/home").await;
    assert_eq!(home.status(), StatusCode::FOUND);
    assert!(location(&home).starts_with("/hub/login"));
}

#[tokio::test]
async fn pages_redirect_to_login_with_next_and_the_root_goes_home() {
    let t = test_hub(|_| {}).await;
    let anon = Jar::default();
    for page in ["/hub/home", "/hub/token", "/hub/admin", "/hub/spawn/admin"] {
        let r = t.get(&anon, page).await;
        assert_eq!(r.status(), StatusCode::FOUND, "{page}");
        assert_eq!(
            location(&r),
            format!("/hub/login?{}", form(&[("next", page)])),
            "{page}"
        );
    }
    for root in ["/", "/hub/"] {
        let r = t.get(&anon, root).await;
        assert_eq!(location(&r), "/hub/login?next=%2Fhub%2Fhome", "{root}");
    }
    assert_eq!(location(&t.get(&anon, "/hub").await), "/hub/");
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    for root in ["/", "/hub/"] {
        assert_eq!(location(&t.get(&jar, root).await), "/hub/home", "{root}");
    }
}

#[tokio::test]
async fn only_admins_open_the_admin_page() {
    let t = test_hub(|_| {}).await;
    t.create_user("bob", "bob-password").await;
    let bob = t.login("bob", "bob-password").await;
    let r = t.get(&bob, "/hub/admin").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = body_text(r).await;
    assert!(
        html.contains("Access denied") && html.contains("<html"),
        "{html}"
    );
    assert!(
        !html.contains(r#"href="/hub/admin""#),
        "no admin link for bob"
    );

    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let r = t.get(&admin, "/hub/admin").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = body_text(r).await;
    assert!(html.contains(r#"data-user="bob""#), "{html}");
    assert!(html.contains(r#"data-user="admin""#));
    assert!(html.contains(r#"href="/hub/admin""#));
    let filtered = body_text(t.get(&admin, "/hub/admin?filter=bo").await).await;
    assert!(filtered.contains(r#"data-user="bob""#) && !filtered.contains(r#"data-user="admin""#));
}

#[tokio::test]
async fn the_admin_page_is_paginated() {
    let t = test_hub(|_| {}).await;
    let names: Vec<String> = (0..60).map(|i| format!("user{i:03}")).collect();
    t.hub
        .store
        .create_users(&names, false, crate::clock::now())
        .await
        .unwrap();
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let first = body_text(t.get(&admin, "/hub/admin").await).await;
    assert_eq!(first.matches("<tr data-user=").count(), 50);
    assert!(first.contains(r#"id="page-next""#) && !first.contains(r#"id="page-prev""#));
    let second = body_text(t.get(&admin, "/hub/admin?offset=50").await).await;
    assert_eq!(second.matches("<tr data-user=").count(), 11);
    assert!(second.contains(r#"id="page-prev""#) && !second.contains(r#"id="page-next""#));
}

#[tokio::test]
async fn the_language_follows_the_browser_and_the_switch_link_remembers_a_choice() {
    let t = test_hub(|_| {}).await;
    let anon = Jar::default();
    let zh = body_text(
        t.get_with(
            &anon,
            "/hub/login",
            &[("accept-language", "zh-CN,zh;q=0.9,en;q=0.8")],
        )
        .await,
    )
    .await;
    assert!(zh.contains(r#"<html lang="zh-CN">"#), "{zh}");
    assert!(zh.contains("用户名"));
    assert!(
        zh.contains(r#"href="/hub/lang/en?next=%2Fhub%2Flogin""#),
        "{zh}"
    );
    let en = body_text(
        t.get_with(&anon, "/hub/login", &[("accept-language", "en-US,en")])
            .await,
    )
    .await;
    assert!(en.contains(r#"<html lang="en">"#));
    assert!(en.contains("Username"));

    let r = t.get(&anon, "/hub/lang/zh?next=%2Fhub%2Flogin").await;
    assert_eq!(location(&r), "/hub/login");
    let mut jar = Jar::default();
    jar.take(&r);
    assert_eq!(jar.get("xiji-lang"), Some("zh"));
    let chosen = body_text(
        t.get_with(&jar, "/hub/login", &[("accept-language", "en-US")])
            .await,
    )
    .await;
    assert!(chosen.contains(r#"<html lang="zh-CN">"#));
    // The switch never sends anyone off-site.
    let r = t.get(&anon, "/hub/lang/en?next=%2F%2Fevil.example").await;
    assert_eq!(location(&r), "/hub/home");
    assert_eq!(
        t.get(&anon, "/hub/lang/fr").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn every_page_renders_in_both_languages() {
    let t = test_hub(|_| {}).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    for lang in ["en", "zh"] {
        let mut jar = jar.clone();
        jar.0.insert("xiji-lang".into(), lang.into());
        for (page, marker) in [
            ("/hub/home", r#"id="start""#),
            ("/hub/token", r#"id="token-form""#),
            ("/hub/admin", r#"id="user-table""#),
            ("/hub/no-such-page", "404"),
        ] {
            let r = t.get(&jar, page).await;
            let status = r.status();
            let csp = r
                .headers()
                .get(header::CONTENT_SECURITY_POLICY)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            let html = body_text(r).await;
            assert!(
                status == StatusCode::OK || page == "/hub/no-such-page",
                "{page} {lang}: {status}"
            );
            assert!(html.contains(marker), "{page} {lang}: {html}");
            assert!(html.contains("</html>"), "{page} {lang}");
            assert!(csp.contains("default-src 'self'"), "{page}: {csp}");
        }
    }
}

#[tokio::test]
async fn the_home_page_shows_the_server_buttons_and_progress_bar() {
    let t = test_hub(|_| {}).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let html = body_text(t.get(&jar, "/hub/home").await).await;
    for id in [
        r#"id="start""#,
        r#"id="stop""#,
        r#"id="open""#,
        r#"id="progress-bar""#,
        r#"href="/user/admin/""#,
        r#"data-progress="/hub/api/users/admin/server/progress""#,
        r#"id="add-server-form""#,
    ] {
        assert!(html.contains(id), "{id} missing: {html}");
    }
    let t = test_hub(|c| c.allow_named_servers = false).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let html = body_text(t.get(&jar, "/hub/home").await).await;
    assert!(!html.contains(r#"id="add-server-form""#));
}

#[tokio::test]
async fn unknown_hub_pages_get_an_html_404_and_other_paths_move_under_hub() {
    let t = test_hub(|_| {}).await;
    let anon = Jar::default();
    let r = t.get(&anon, "/hub/nowhere").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let html = body_text(r).await;
    assert!(
        html.contains("Page not found") && html.contains("<html"),
        "{html}"
    );
    let r = t.get(&anon, "/user/alice/lab?a=1").await;
    assert_eq!(location(&r), "/hub/user/alice/lab?a=1");
    // The API keeps its JSON errors.
    let r = t.get(&anon, "/hub/api/nowhere").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(body_text(r).await.starts_with('{'));
    // Static files are embedded.
    let css = t.get(&anon, "/hub/static/xiji.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert_eq!(
        t.get(&anon, "/hub/static/nothing.js").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_stopped_server_gets_a_503_page_with_a_start_button_or_json_for_api_calls() {
    let t = test_hub(|_| {}).await;
    t.create_user("bob", "bob-password").await;
    let bob = t.login("bob", "bob-password").await;
    let r = t.get(&bob, "/hub/user/bob/lab/tree/x.ipynb").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let html = body_text(r).await;
    assert!(html.contains(r#"id="start""#), "{html}");
    assert!(
        html.contains(r#"action="/hub/spawn/bob?next=%2Fuser%2Fbob%2Flab%2Ftree%2Fx.ipynb""#),
        "{html}"
    );
    // API calls get JSON, whatever the method and even without a login.
    for (jar, method, uri) in [
        (&bob, "GET", "/hub/user/bob/api/kernels"),
        (&Jar::default(), "POST", "/user/bob/api/sessions"),
        (&Jar::default(), "POST", "/hub/user/bob/api/sessions"),
    ] {
        let r = t
            .send(
                Request::builder()
                    .method(method)
                    .uri(uri)
                    .header(header::COOKIE, jar.header())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}"
        );
        let body: serde_json::Value = serde_json::from_str(&body_text(r).await).unwrap();
        assert_eq!(body["status"], 503);
    }
    // Someone else's server: no access, as JupyterHub (404).
    let r = t.get(&bob, "/hub/user/admin/lab").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Not logged in: the login page first.
    let r = t.get(&Jar::default(), "/hub/user/bob/lab").await;
    assert!(location(&r).starts_with("/hub/login?next=%2Fhub%2Fuser%2Fbob%2Flab"));
}

#[tokio::test]
async fn a_ready_server_without_a_route_is_retried_a_few_times_then_an_error_page() {
    let t = test_hub(|_| {}).await;
    // A server row marked ready, with no route (as if the proxy had not caught up).
    let user = t.hub.store.user("admin").await.unwrap().unwrap();
    let db = sqlx::SqlitePool::connect(&t.hub.config.database_url())
        .await
        .unwrap();
    sqlx::query("INSERT INTO servers (user_id, name, status) VALUES (?, '', 'running')")
        .bind(user.id)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let r = t.get(&jar, "/hub/user/admin/lab?a=b").await;
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(location(&r), "/user/admin/lab?a=b&redirects=1");
    let r = t.get(&jar, "/hub/user/admin/lab?redirects=4").await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body_text(r).await.contains("Redirect loop"));
    // The spawn page sends a running server's owner straight to it.
    let r = t.get(&jar, "/hub/spawn/admin").await;
    assert_eq!(location(&r), "/user/admin/");
}

#[tokio::test]
async fn what_users_typed_is_escaped_in_the_pages() {
    let t = test_hub(|_| {}).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let xsrf = jar.get("_xsrf").unwrap().to_owned();
    let r = t
        .send(
            Request::post("/hub/api/users/admin/tokens")
                .header(header::COOKIE, jar.header())
                .header("X-XSRFToken", xsrf.as_str())
                .body(Body::from(r#"{"note":"<script>alert('x')</script>"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let html = body_text(t.get(&jar, "/hub/token").await).await;
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
        "{html}"
    );
    // The failed login echoes the name, escaped.
    let jar = t.visit_login().await;
    let html = body_text(t.try_login(&jar, "\"><b>x", "wrong-password", None).await).await;
    assert!(html.contains("value=\"&quot;&gt;&lt;b&gt;x\""), "{html}");
}

#[tokio::test]
async fn users_cannot_start_or_watch_someone_elses_server() {
    let t = test_hub(|_| {}).await;
    t.create_user("bob", "bob-password").await;
    let bob = t.login("bob", "bob-password").await;
    for page in ["/hub/spawn/admin", "/hub/spawn-pending/admin"] {
        let r = t.get(&bob, page).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{page}");
    }
    let r = t.get(&bob, "/hub/spawn/nobody").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Every message key the templates and the script use is in the catalogue.
#[test]
fn every_message_key_used_by_templates_and_script_exists() {
    let keys: std::collections::BTreeSet<&str> = CATALOGUE.iter().map(|m| m.0).collect();
    let mut used = std::collections::BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (name, source) in TEMPLATES {
        for (i, _) in source.match_indices("t.") {
            let before = source[..i].chars().last().unwrap_or(' ');
            if before.is_ascii_alphanumeric() || before == '_' || before == '.' {
                continue;
            }
            let key = ident(&source[i + 2..]);
            if !key.is_empty() {
                used.insert((name.to_string(), key));
            }
        }
    }
    let script = include_str!("../../static/xiji.js");
    for (i, _) in script.match_indices("t('") {
        let before = script[..i].chars().last().unwrap_or(' ');
        if before.is_ascii_alphanumeric() || before == '_' || before == '.' {
            continue;
        }
        let key = ident(&script[i + 3..]);
        if !key.ends_with('_') {
            used.insert(("xiji.js".into(), key));
        }
    }
    // Keys built from a prefix.
    for status in ["running", "pending", "stopping", "stopped"] {
        used.insert(("status".into(), format!("status_{status}")));
    }
    for role in ["student", "teacher", "admin"] {
        used.insert(("role".into(), format!("role_{role}")));
    }
    for visibility in crate::domain::images::VISIBILITIES {
        used.insert(("image".into(), format!("visibility_{visibility}")));
    }
    for kind in crate::domain::images::KINDS {
        used.insert(("image".into(), format!("image_kind_{kind}")));
    }
    for done in super::images::DONE {
        used.insert(("image".into(), format!("image_done_{done}")));
    }
    used.insert(("image".into(), "image_vnc_port_invalid".into()));
    for code in [400, 403, 404, 429, 500, 503] {
        used.insert(("error".into(), format!("error_{code}_title")));
        used.insert(("error".into(), format!("error_{code}_text")));
    }
    assert!(used.len() > 60, "the scan found too little: {used:?}");
    let missing: Vec<_> = used
        .iter()
        .filter(|(_, k)| !keys.contains(k.as_str()))
        .collect();
    assert!(missing.is_empty(), "missing message keys: {missing:?}");
}
