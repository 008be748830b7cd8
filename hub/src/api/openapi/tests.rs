//! The OpenAPI document against the hub's real router: every `/hub/api` route JupyterHub does not
//! have is documented, every documented operation is routed, and the document is served without
//! authentication.
//!
//! Routes are enumerated from the source (`.route("/hub/api…"` in `hub/src`; a route whose path is
//! not a literal fails the test) and confirmed by the router itself: a probe of each path and
//! method without credentials tells a routed operation (any answer) from the API's fallback (404
//! `Not Found`) and from a method the path does not have (405).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

use super::DOCUMENT;
use crate::config::Config;

/// JupyterHub 5.5.1's REST API, as `(method, path below /hub/api)`: the paths of its OpenAPI
/// document, plus the routes it has that its document lacks (progress streams, `POST /groups`,
/// `POST`/`DELETE /services/{name}`) and two spellings its URL patterns accept (`/hub/api`
/// without the slash; an empty server name, the default server).
const JUPYTERHUB_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/info"),
    ("GET", "/user"),
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{name}"),
    ("POST", "/users/{name}"),
    ("DELETE", "/users/{name}"),
    ("PATCH", "/users/{name}"),
    ("POST", "/users/{name}/activity"),
    ("POST", "/users/{name}/server"),
    ("DELETE", "/users/{name}/server"),
    ("POST", "/users/{name}/servers/{server_name}"),
    ("DELETE", "/users/{name}/servers/{server_name}"),
    ("GET", "/users/{name}/shared"),
    ("GET", "/users/{name}/shared/{owner}/{server_name}"),
    ("DELETE", "/users/{name}/shared/{owner}/{server_name}"),
    ("GET", "/users/{name}/tokens"),
    ("POST", "/users/{name}/tokens"),
    ("GET", "/users/{name}/tokens/{token_id}"),
    ("DELETE", "/users/{name}/tokens/{token_id}"),
    ("GET", "/groups"),
    ("GET", "/groups/{name}"),
    ("POST", "/groups/{name}"),
    ("DELETE", "/groups/{name}"),
    ("GET", "/groups/{name}/shared"),
    ("GET", "/groups/{name}/shared/{owner}/{server_name}"),
    ("DELETE", "/groups/{name}/shared/{owner}/{server_name}"),
    ("POST", "/groups/{name}/users"),
    ("DELETE", "/groups/{name}/users"),
    ("PUT", "/groups/{name}/properties"),
    ("GET", "/shares/{owner}"),
    ("GET", "/shares/{owner}/{server_name}"),
    ("POST", "/shares/{owner}/{server_name}"),
    ("PATCH", "/shares/{owner}/{server_name}"),
    ("DELETE", "/shares/{owner}/{server_name}"),
    ("GET", "/share-codes/{owner}"),
    ("GET", "/share-codes/{owner}/{server_name}"),
    ("POST", "/share-codes/{owner}/{server_name}"),
    ("DELETE", "/share-codes/{owner}/{server_name}"),
    ("GET", "/services"),
    ("GET", "/services/{name}"),
    ("GET", "/proxy"),
    ("POST", "/proxy"),
    ("PATCH", "/proxy"),
    ("POST", "/authorizations/token"),
    ("GET", "/authorizations/token/{token}"),
    ("GET", "/authorizations/cookie/{cookie_name}/{cookie_value}"),
    ("GET", "/oauth2/authorize"),
    ("POST", "/oauth2/token"),
    ("POST", "/shutdown"),
    // Routes JupyterHub has outside its document.
    ("GET", "/users/{name}/server/progress"),
    ("GET", "/users/{name}/servers/{server_name}/progress"),
    ("POST", "/groups"),
    ("POST", "/services/{name}"),
    ("DELETE", "/services/{name}"),
    // Spellings JupyterHub's URL patterns accept.
    ("GET", ""),
    ("POST", "/users/{name}/servers/"),
    ("DELETE", "/users/{name}/servers/"),
];

/// The methods a route may have.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A path template with its parameters' names dropped: `/users/{}/servers/{}`.
fn shape(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut in_param = false;
    for c in template.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// A concrete path for a template: each parameter gets a plausible value.
fn concrete(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        let value = match &rest[start + 1..end] {
            "name" | "owner" => "probe-user",
            "server" | "server_name" => "probe-server",
            "id" => "1",
            _ => "probe",
        };
        out.push_str(value);
        rest = &rest[(end + 1).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn hub_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path literal passed to `.route(` in the hub's source that starts with `/hub/api`.
fn api_route_literals() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&hub_src(), &mut files);
    let mut found = BTreeSet::new();
    for file in files {
        if file.ends_with("api/openapi/tests.rs") {
            continue; // this file names them
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for other in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !text.contains(other),
                "{} uses {other}: teach this test to find the routes it adds",
                file.display()
            );
        }
        for (at, _) in text.match_indices(".route(") {
            let after = text[at + ".route(".len()..].trim_start();
            let literal = after.strip_prefix('"').unwrap_or_else(|| {
                panic!(
                    "{}: a route whose path is not a string literal; write the path out so \
                     this test sees it",
                    file.display()
                )
            });
            let end = literal.find('"').unwrap();
            let path = &literal[..end];
            if path.starts_with("/hub/api") {
                found.insert(path.to_owned());
            }
        }
    }
    found
}

/// `(method, path shape)` of operations.
type Operations = BTreeSet<(String, String)>;

/// `(method, shape)` of every operation in the document under `/hub/api`, and the full paths of
/// the operations whose path item names another server (the desktops, under `/hub`).
fn documented(doc: &Value) -> (Operations, Vec<(Method, String)>) {
    let mut api = BTreeSet::new();
    let mut elsewhere = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let base = item["servers"][0]["url"].as_str();
        for method in METHODS.iter().chain([&Method::HEAD, &Method::OPTIONS]) {
            let key = method.as_str().to_ascii_lowercase();
            if item.get(&key).is_none() {
                continue;
            }
            match base {
                None => {
                    api.insert((method.as_str().to_owned(), shape(path)));
                }
                Some(base) => elsewhere.push((method.clone(), format!("{base}{path}"))),
            }
        }
    }
    (api, elsewhere)
}

async fn test_router() -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.admin.password = Some("admin-secret-1".into());
    config.spawner.local.cmd = vec!["false".into()];
    let hub = crate::app::prepare(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    (crate::router(Arc::clone(&hub)), dir)
}

/// What the router does with `method path`, without credentials.
#[derive(Debug, PartialEq)]
enum Probe {
    /// The API's fallback: no such path.
    NoPath,
    /// The path exists, the method does not.
    NoMethod,
    /// Routed to a handler, which answered this status.
    Routed(StatusCode),
}

async fn probe(router: &axum::Router, method: &Method, path: &str) -> Probe {
    let request = Request::builder()
        .method(method.clone())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status == StatusCode::NOT_FOUND && json["message"] == "Not Found" {
        Probe::NoPath
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        Probe::NoMethod
    } else {
        Probe::Routed(status)
    }
}

#[tokio::test]
async fn every_api_route_jupyterhub_lacks_is_documented_and_every_documented_operation_is_routed() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    let (documented_api, documented_elsewhere) = documented(&doc);
    let (router, _dir) = test_router().await;

    // The router's /hub/api operations: the source's route paths, each probed with every method.
    let literals = api_route_literals();
    assert!(
        literals.len() > 20,
        "found only {literals:?} in the source: has the router moved?"
    );
    let mut routed: BTreeMap<(String, String), String> = BTreeMap::new();
    for literal in &literals {
        if literal.contains("{*") {
            continue; // the fallback for unknown paths
        }
        let mut any = false;
        for method in &METHODS {
            match probe(&router, method, &concrete(literal)).await {
                Probe::NoPath => {
                    panic!("{literal} is in the source but the router answers its fallback 404")
                }
                Probe::NoMethod => {}
                Probe::Routed(_) => {
                    any = true;
                    let below = literal.strip_prefix("/hub/api").unwrap_or(literal);
                    routed.insert((method.as_str().to_owned(), shape(below)), literal.clone());
                }
            }
        }
        assert!(any, "{literal} answers 405 to every method");
    }

    let jupyterhub: Operations = JUPYTERHUB_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), shape(p)))
        .collect();
    let undocumented: Vec<String> = routed
        .iter()
        .filter(|(op, _)| !jupyterhub.contains(*op) && !documented_api.contains(*op))
        .map(|((method, _), literal)| format!("{method} {literal}"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes JupyterHub does not have are missing from hub/openapi/xiji.json: {undocumented:?}"
    );

    // Every documented operation reaches a handler.
    for (method, path) in &documented_api {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let full = format!("/hub/api{}", concrete(path));
        let outcome = probe(&router, &method, &full).await;
        assert!(
            matches!(outcome, Probe::Routed(_)),
            "{method} {path} is documented but the router gives {outcome:?}"
        );
    }
    assert!(
        !documented_elsewhere.is_empty(),
        "the desktops are documented"
    );
    for (method, full) in &documented_elsewhere {
        let outcome = probe(&router, method, &concrete(full)).await;
        assert!(
            matches!(outcome, Probe::Routed(s) if s != StatusCode::NOT_FOUND),
            "{method} {full} is documented but the router gives {outcome:?}"
        );
    }

    // And the check itself tells a missing route: a made-up path is the fallback.
    assert_eq!(
        probe(&router, &Method::GET, "/hub/api/no-such-route").await,
        Probe::NoPath
    );
}

#[tokio::test]
async fn the_document_is_served_without_authentication_with_the_hubs_version() {
    let (router, _dir) = test_router().await;
    let response = router
        .oneshot(
            Request::get("/hub/api/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served["info"]["version"], env!("CARGO_PKG_VERSION"));
    let mut written: Value = serde_json::from_str(DOCUMENT).unwrap();
    written["info"]["version"] = served["info"]["version"].clone();
    assert_eq!(served, written);
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Follows a `#/components/...` reference.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(target) => doc
            .pointer(target.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {target}")),
        None => value,
    }
}

#[test]
fn each_api_operation_says_its_scopes_shows_an_example_body_and_answers_jupyterhubs_errors() {
    let doc: Value = serde_json::from_str(DOCUMENT).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut all_refs = Vec::new();
    refs(&doc, &mut all_refs);
    for target in all_refs {
        resolve(&doc, &serde_json::json!({ "$ref": target }));
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(schemes["token"]["name"], "Authorization");
    assert_eq!(schemes["token"]["in"], "header");

    let error = "#/components/schemas/Error";
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let api = item.get("servers").is_none();
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let what = format!("{method} {path}");
            let description = op["description"].as_str().unwrap_or("");
            let open = op["security"].as_array().is_some_and(Vec::is_empty);
            assert!(
                description.contains("Scopes:")
                    || (open && description.contains("No authentication")),
                "{what}: say which scopes it needs (\"Scopes: …\") or that it needs none"
            );
            if let Some(body) = op.get("requestBody") {
                let content = body["content"].as_object().unwrap();
                assert!(!content.is_empty(), "{what}: say what the body is");
                for (media_type, media) in content {
                    if media_type == "application/json" {
                        assert!(
                            media.get("example").is_some() || media.get("examples").is_some(),
                            "{what}: give an example body"
                        );
                    } else {
                        // Raw bytes (an upload's chunk, an image): no example to show.
                        assert_eq!(
                            media["schema"]["format"], "binary",
                            "{what} {media_type}: a body other than JSON is raw bytes"
                        );
                    }
                }
            }
            if !api {
                continue;
            }
            for (status, response) in op["responses"].as_object().unwrap() {
                if !status.starts_with('4') && !status.starts_with('5') {
                    continue;
                }
                let response = resolve(&doc, response);
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], error,
                    "{what} {status}: JupyterHub's error body"
                );
            }
        }
    }
    assert!(operations >= 15, "{operations} operations");
}

/// Where JupyterHub 5.5.1's own document is, if this machine has it (it is JupyterHub's, kept
/// outside the repository): `XIJI_CONFORMANCE_SPEC`, else where tests/conformance/schemathesis.sh
/// looks.
fn jupyterhub_spec() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::env::var_os("XIJI_CONFORMANCE_SPEC")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            root.join("../shared/conformance/rest-api-5.5.1.yml"),
            root.join(".cache/conformance/rest-api-5.5.1.yml"),
        ])
        .find(|p| p.is_file())
}

#[test]
fn the_list_of_jupyterhubs_routes_matches_its_openapi_document_where_available() {
    let listed: Operations = JUPYTERHUB_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(listed.len(), JUPYTERHUB_ROUTES.len(), "no duplicates");
    let Some(spec) = jupyterhub_spec() else {
        eprintln!("JupyterHub's REST API document is not on this machine; set XIJI_CONFORMANCE_SPEC to compare");
        return;
    };
    // Its paths are two-space-indented keys, its methods four-space-indented ones.
    let text = std::fs::read_to_string(&spec).unwrap();
    let mut in_paths = false;
    let mut path = String::new();
    let mut from_spec = BTreeSet::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end().trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ") {
            let m = m.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                from_spec.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    assert!(
        from_spec.len() > 40,
        "read only {from_spec:?} from {}",
        spec.display()
    );
    let missing: Vec<_> = from_spec.difference(&listed).collect();
    assert!(missing.is_empty(), "JupyterHub's document has {missing:?}");
}
