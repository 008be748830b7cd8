//! Bad input gets the right 4xx with JupyterHub's JSON error body `{"status", "message"}` and a
//! clear message — never a 5xx: malformed JSON, unknown users/servers/tokens, missing, bad and
//! expired tokens, scope escalation, oversized bodies, and names with `/`, `..`, control
//! characters, great length or unicode. Where JupyterHub 5.5 answers differently the test says so.

use std::time::Duration;

use anyhow::{bail, ensure, Result};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tests::{encode, expect_api_error, expect_json, Hub, HubOptions};

async fn hub_with_alice_and_bob() -> Result<Hub> {
    let hub = Hub::start_with(HubOptions {
        top_level_toml: "max_body_bytes = 20000\n".into(),
        ..HubOptions::default()
    })
    .await?;
    hub.create_user("alice", "alice-password-1").await?;
    hub.create_user("bob", "bob-password-1").await?;
    Ok(hub)
}

#[tokio::test]
async fn malformed_json_and_wrong_types_get_400_saying_what_is_wrong() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let cases: &[(Method, &str, &str)] = &[
        (Method::POST, "/hub/api/users", "{\"usernames\": ["),
        (Method::POST, "/hub/api/users", "not json at all"),
        (Method::POST, "/hub/api/users", "{\"usernames\": \"carol\"}"),
        (Method::POST, "/hub/api/users", "{\"usernames\": [1, 2]}"),
        (Method::PATCH, "/hub/api/users/alice", "[1, 2"),
        (
            Method::PATCH,
            "/hub/api/users/alice",
            "{\"admin\": \"yes\"}",
        ),
        (
            Method::PATCH,
            "/hub/api/users/alice",
            "{\"no_such_key\": 1}",
        ),
        (
            Method::POST,
            "/hub/api/users/alice/tokens",
            "{\"expires_in\": \"soon\"}",
        ),
        (
            Method::POST,
            "/hub/api/users/alice/tokens",
            "{\"scopes\": \"read:users\"}",
        ),
        (
            Method::POST,
            "/hub/api/users/alice/tokens",
            "{\"scopes\": [\"no:such:scope\"]}",
        ),
        (
            Method::POST,
            "/hub/api/users/alice/activity",
            "{\"last_activity\": \"yesterday\"}",
        ),
        (
            Method::POST,
            "/hub/api/users/alice/activity",
            "{\"last_activity\": \"2999-01-01T00:00:00Z\"}",
        ),
        (Method::POST, "/hub/api/groups", "{\"groups\": [1]}"),
        (Method::POST, "/hub/api/groups/g1", "{\"users\": \"alice\"}"),
        (Method::PUT, "/hub/api/groups/g1/properties", "{"),
    ];
    // g1 must exist for the last case.
    let resp = hub.admin(Method::POST, "/hub/api/groups/g1").send().await?;
    ensure!(
        resp.status() == StatusCode::CREATED,
        "creating g1: {}",
        resp.status()
    );
    for (method, path, body) in cases {
        let resp = hub
            .admin(method.clone(), path)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let what = format!("{method} {path} {body}");
        expect_api_error(resp, StatusCode::BAD_REQUEST, &what).await?;
    }
    // The message of malformed JSON names the problem.
    let resp = hub
        .admin(Method::POST, "/hub/api/users")
        .body("{\"usernames\": [")
        .send()
        .await?;
    let message = expect_api_error(resp, StatusCode::BAD_REQUEST, "truncated JSON").await?;
    ensure!(
        message.contains("JSON"),
        "the message does not say the JSON is bad: {message}"
    );
    // Pagination values that are not integers: 400, as JupyterHub.
    for query in ["limit=abc", "offset=1.5", "limit=", "state=sleepy"] {
        let resp = hub
            .admin(Method::GET, &format!("/hub/api/users?{query}"))
            .send()
            .await?;
        expect_api_error(
            resp,
            StatusCode::BAD_REQUEST,
            &format!("GET /hub/api/users?{query}"),
        )
        .await?;
    }
    Ok(())
}

#[tokio::test]
async fn unknown_users_servers_tokens_groups_and_paths_get_404() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let cases: &[(Method, &str)] = &[
        (Method::GET, "/hub/api/users/nobody"),
        (Method::PATCH, "/hub/api/users/nobody"),
        (Method::DELETE, "/hub/api/users/nobody"),
        (Method::POST, "/hub/api/users/nobody/server"),
        (Method::DELETE, "/hub/api/users/nobody/server"),
        (Method::GET, "/hub/api/users/nobody/tokens"),
        (Method::POST, "/hub/api/users/nobody/activity"),
        (Method::DELETE, "/hub/api/users/alice/servers/nosuch"),
        (Method::GET, "/hub/api/users/alice/servers/nosuch/progress"),
        (Method::GET, "/hub/api/users/alice/tokens/a999999"),
        (Method::GET, "/hub/api/users/alice/tokens/not-an-id"),
        (Method::DELETE, "/hub/api/users/alice/tokens/a999999"),
        (Method::GET, "/hub/api/groups/nogroup"),
        (Method::DELETE, "/hub/api/groups/nogroup"),
        (Method::GET, "/hub/api/services/noservice"),
        (Method::GET, "/hub/api/no/such/endpoint"),
    ];
    for (method, path) in cases {
        let body = if *method == Method::PATCH {
            "{\"admin\": true}"
        } else {
            ""
        };
        let resp = hub.admin(method.clone(), path).body(body).send().await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, &format!("{method} {path}")).await?;
    }
    // Activity for a server alice does not have: 400 (JupyterHub's answer).
    let resp = hub
        .admin(Method::POST, "/hub/api/users/alice/activity")
        .json(&json!({ "servers": { "nosuch": { "last_activity": tests::now_iso() } } }))
        .send()
        .await?;
    expect_api_error(
        resp,
        StatusCode::BAD_REQUEST,
        "activity of an unknown server",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn missing_bad_deleted_and_expired_tokens_get_403() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let resp = hub.client().get(hub.url("/hub/api/users")).send().await?;
    let message = expect_api_error(resp, StatusCode::FORBIDDEN, "no token").await?;
    ensure!(
        message.contains("credentials"),
        "unclear message: {message}"
    );
    for header in [
        "token not-a-real-token",
        "Bearer not-a-real-token",
        "token",
        "tokennot-a-real-token",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
    ] {
        let resp = hub
            .client()
            .get(hub.url("/hub/api/user"))
            .header("Authorization", header)
            .send()
            .await?;
        expect_api_error(
            resp,
            StatusCode::FORBIDDEN,
            &format!("Authorization: {header}"),
        )
        .await?;
    }
    // A token in the URL is not read by the hub API (JupyterHub 5).
    let token = hub.create_token("alice", json!({})).await?;
    let resp = hub
        .client()
        .get(hub.url(&format!("/hub/api/user?token={token}")))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "?token= on the API").await?;

    // Expired: works at first, refused once expires_in has passed.
    let short = hub
        .create_token("alice", json!({ "expires_in": 1 }))
        .await?;
    let resp = hub
        .with_token(Method::GET, "/hub/api/user", &short)
        .send()
        .await?;
    let me = expect_json(resp, StatusCode::OK, "a fresh token").await?;
    ensure!(me["name"] == json!("alice"), "{me}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let resp = hub
        .with_token(Method::GET, "/hub/api/user", &short)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "an expired token").await?;

    // Deleted: refused at once.
    let resp = hub
        .with_token(Method::GET, "/hub/api/user", &token)
        .send()
        .await?;
    let model = expect_json(resp, StatusCode::OK, "GET /hub/api/user").await?;
    let id = model["token_id"].as_str().unwrap_or_default().to_owned();
    let resp = hub
        .admin(Method::DELETE, &format!("/hub/api/users/alice/tokens/{id}"))
        .send()
        .await?;
    ensure!(
        resp.status() == StatusCode::NO_CONTENT,
        "deleting the token: {}",
        resp.status()
    );
    let resp = hub
        .with_token(Method::GET, "/hub/api/user", &token)
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "a deleted token").await?;
    Ok(())
}

#[tokio::test]
async fn a_token_gets_no_more_than_its_owner_holds() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let alice = hub.create_token("alice", json!({})).await?;
    // Asking for a token with scopes or roles alice does not hold: 400 "Not assigning…", as
    // JupyterHub 5.5 answers (not 403: the request is allowed, its content is refused).
    for body in [
        json!({ "scopes": ["admin:users"] }),
        json!({ "scopes": ["read:users"] }),
        json!({ "scopes": ["read:users!user=bob"] }),
        json!({ "roles": ["admin"] }),
    ] {
        let resp = hub
            .with_token(Method::POST, "/hub/api/users/alice/tokens", &alice)
            .json(&body)
            .send()
            .await?;
        let message = expect_api_error(
            resp,
            StatusCode::BAD_REQUEST,
            &format!("alice asks for {body}"),
        )
        .await?;
        ensure!(
            message.contains("Not assigning"),
            "unclear message for {body}: {message}"
        );
    }
    // Admin actions with alice's token: 403 naming the scope that is needed.
    let cases: &[(Method, &str, serde_json::Value)] = &[
        (Method::POST, "/hub/api/users/mallory", json!(null)),
        (
            Method::PATCH,
            "/hub/api/users/alice",
            json!({ "admin": true }),
        ),
        (
            Method::POST,
            "/hub/api/users",
            json!({ "usernames": ["mallory"] }),
        ),
        (Method::GET, "/hub/api/users", json!(null)),
        (Method::POST, "/hub/api/groups/staff", json!(null)),
        (Method::GET, "/hub/api/proxy", json!(null)),
    ];
    for (method, path, body) in cases {
        let mut req = hub.with_token(method.clone(), path, &alice);
        if !body.is_null() {
            req = req.json(body);
        }
        let message = expect_api_error(
            req.send().await?,
            StatusCode::FORBIDDEN,
            &format!("alice: {method} {path}"),
        )
        .await?;
        ensure!(
            message.contains("requires"),
            "unclear message for {method} {path}: {message}"
        );
    }
    // Another user's resources: 404, not 403 (JupyterHub does not reveal whether bob exists).
    for path in ["/hub/api/users/bob", "/hub/api/users/bob/tokens"] {
        let resp = hub.with_token(Method::GET, path, &alice).send().await?;
        expect_api_error(resp, StatusCode::NOT_FOUND, &format!("alice: GET {path}")).await?;
    }
    // A narrow token cannot mint a wider one for its owner.
    let narrow = hub
        .create_token("alice", json!({ "scopes": ["read:users:name!user=alice"] }))
        .await?;
    let resp = hub
        .with_token(Method::POST, "/hub/api/users/alice/tokens", &narrow)
        .json(&json!({}))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::FORBIDDEN, "a narrow token mints a token").await?;
    Ok(())
}

#[tokio::test]
async fn bodies_over_max_body_bytes_get_413() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let names: Vec<String> = (0..3000).map(|i| format!("user{i:05}")).collect();
    let big = json!({ "usernames": names }).to_string();
    ensure!(big.len() > 20000, "the test body is too small");
    let resp = hub
        .admin(Method::POST, "/hub/api/users")
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await?;
    let message =
        expect_api_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "a 40 kB bulk create").await?;
    ensure!(
        message.to_lowercase().contains("large"),
        "unclear message: {message}"
    );
    // Without Content-Length (chunked), the hub stops reading at the limit.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(String::from_utf8_lossy(c).into_owned()))
        .collect();
    let resp = hub
        .admin(Method::PATCH, "/hub/api/users/alice")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "a chunked 40 kB PATCH").await?;
    // Nothing was created. (A new connection: the hub may close one whose body it did not read.)
    let resp = reqwest::Client::new()
        .get(hub.url("/hub/api/users/user00001"))
        .header("Authorization", format!("token {}", hub.admin_token()))
        .send()
        .await?;
    expect_api_error(resp, StatusCode::NOT_FOUND, "a user from the refused body").await?;
    Ok(())
}

#[tokio::test]
async fn names_that_could_change_a_path_get_400_and_unicode_names_work() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let long = "a".repeat(300);
    let bad_names = [
        "a/b",
        "..",
        ".",
        "../etc",
        "a\u{7}b",
        "tab\tname",
        "new\nline",
        "nul\0byte",
        "a\\b",
        "a?b",
        "a#b",
        " padded",
        long.as_str(),
    ];
    for name in bad_names {
        // One at a time through the URL, percent-encoded and sent as is (a URL parser would
        // resolve `%2E%2E`)...
        let resp = hub
            .raw_request("POST", &format!("/hub/api/users/{}", encode(name)), b"")
            .await?;
        let message = resp.expect_api_error(400, &format!("POST /users/{name:?}"))?;
        // (The proxy refuses `%2F` and dot segments in any path before the hub sees them.)
        let lower = message.to_lowercase();
        ensure!(
            lower.contains("name") || lower.contains("path"),
            "unclear message for {name:?}: {message}"
        );
        // ...and in a bulk create.
        let resp = hub
            .admin(Method::POST, "/hub/api/users")
            .json(&json!({ "usernames": [name] }))
            .send()
            .await?;
        expect_api_error(
            resp,
            StatusCode::BAD_REQUEST,
            &format!("bulk create {name:?}"),
        )
        .await?;
        // Groups follow the same rules.
        let resp = hub
            .admin(Method::POST, "/hub/api/groups")
            .json(&json!({ "groups": [name] }))
            .send()
            .await?;
        expect_api_error(resp, StatusCode::BAD_REQUEST, &format!("group {name:?}")).await?;
    }
    // Server names: 1-30 of [a-z0-9-_.], no `..`.
    for server in [
        "..",
        "../x",
        "a/b",
        "UPPER",
        "x".repeat(31).as_str(),
        "sp ace",
        "\u{7}",
    ] {
        let target = format!("/hub/api/users/alice/servers/{}", encode(server));
        let resp = hub.raw_request("POST", &target, b"").await?;
        resp.expect_api_error(400, &format!("server {server:?}"))?;
    }
    // Literal dot segments in the request target, which browsers and URL parsers never send.
    for target in [
        "/hub/api/users/../users/alice",
        "/hub/api/users/./alice",
        "/hub/api/users/alice/..",
        "/user/alice/../../hub/api/users",
    ] {
        let resp = hub.raw_request("GET", target, b"").await?;
        ensure!(
            resp.status == 400 || resp.status == 404,
            "GET {target}: {} {}",
            resp.status,
            resp.body
        );
        if target.starts_with("/hub/api/") {
            resp.expect_api_error(resp.status, &format!("GET {target}"))?;
        }
    }
    // A very long URL: a 4xx, not a 5xx.
    let resp = hub
        .admin(
            Method::GET,
            &format!("/hub/api/users/{}", "x".repeat(20000)),
        )
        .send()
        .await?;
    ensure!(
        resp.status().is_client_error(),
        "a 20 kB path got {}",
        resp.status()
    );

    // Unicode names are names: created, found, normalised to lower case like JupyterHub.
    for (given, stored) in [("张三", "张三"), ("Zoë", "zoë"), ("ÅSA", "åsa")] {
        let resp = hub
            .admin(Method::POST, &format!("/hub/api/users/{}", encode(given)))
            .send()
            .await?;
        let model = expect_json(resp, StatusCode::CREATED, &format!("create {given}")).await?;
        ensure!(model["name"] == json!(stored), "{given} became {model}");
        let resp = hub
            .admin(Method::GET, &format!("/hub/api/users/{}", encode(stored)))
            .send()
            .await?;
        expect_json(resp, StatusCode::OK, &format!("GET {stored}")).await?;
    }
    Ok(())
}

#[tokio::test]
async fn garbage_requests_never_get_a_5xx() -> Result<()> {
    let hub = hub_with_alice_and_bob().await?;
    let alice = hub.create_token("alice", json!({})).await?;
    let paths = [
        "/hub/api/users",
        "/hub/api/users/alice",
        "/hub/api/users/alice/server",
        "/hub/api/users/alice/servers/x",
        "/hub/api/users/alice/servers/x/progress",
        "/hub/api/users/alice/tokens",
        "/hub/api/users/alice/tokens/a1",
        "/hub/api/users/alice/activity",
        "/hub/api/users/%00",
        "/hub/api/users/%ff%fe",
        "/hub/api/users/%2e%2e%2f%2e%2e",
        "/hub/api/groups",
        "/hub/api/groups/g/users",
        "/hub/api/groups/g/properties",
        "/hub/api/user",
        "/hub/api/proxy",
        "/hub/api/info",
        "/hub/api/services",
        "/hub/api/oauth2/token",
        "/hub/api/oauth2/authorize",
        "/hub/api/%",
        "/hub/api/users?limit=-5&offset=-1",
        "/hub/api/users?limit=99999999999999999999",
        "/hub/api/users?state=ready&state=active",
    ];
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "\"string\"",
        "12345678901234567890123",
        "{\"usernames\": null, \"admin\": null}",
        "{\"name\": \"../../x\"}",
        "{\"users\": [\"../x\"], \"groups\": [\"\\u0000\"]}",
        "{\"scopes\": [\"admin:users!user=\"], \"expires_in\": -1}",
        "{\"expires_in\": 1e308}",
        "{\"last_activity\": 12, \"servers\": []}",
        "\u{feff}{}",
        "\u{0}\u{1}\u{2}",
    ];
    let methods = [
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
    ];
    let mut failures = Vec::new();
    for path in paths {
        for method in &methods {
            for body in bodies {
                for token in [hub.admin_token(), alice.as_str()] {
                    let resp = hub
                        .with_token(method.clone(), path, token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_server_error() {
                        failures.push(format!("{method} {path} {body:?} -> {status} {text}"));
                    } else if status.is_client_error()
                        && !path.starts_with("/hub/api/oauth2")
                        && serde_json::from_str::<serde_json::Value>(&text)
                            .map(|v| {
                                v["status"] != json!(status.as_u16()) || !v["message"].is_string()
                            })
                            .unwrap_or(true)
                    {
                        failures.push(format!(
                            "{method} {path} {body:?} -> {status} without a JSON error: {text}"
                        ));
                    }
                }
            }
        }
        // The hub must still answer after each batch.
        let resp = hub.admin(Method::GET, "/hub/api/").send().await?;
        if resp.status() != StatusCode::OK {
            bail!("the hub stopped answering after {path}: {}", resp.status());
        }
    }
    ensure!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
