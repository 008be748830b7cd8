//! The cluster and image pages through the hub's whole router: the spawn form, a running
//! cluster's nodes, the image library's administration and a user's own images. The backend is
//! a stand-in multi-node backend that checks requests with the docker backend's own rules
//! (`ResourceLimits::admit`), so no Docker Engine is needed here (tests/ drives the real one).

use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{json, Value};
use spawner::{
    ClusterRequest, ClusterResources, NodeInfo, ProgressSender, ResourceLimits, SpawnSpec, Spawner,
    SpawnerError, Started,
};

use super::tests::{body_text, form, location, test_hub_with, Jar, TestHub, ADMIN_PASSWORD};
use crate::db::{ImageFields, ImageRow};
use crate::domain::clusters::{self, SizeChoices, SpawnOptions};
use crate::domain::{HubResult, Services};

const GIB: u64 = 1 << 30;

/// A spawn request read and made concrete as a start does: the options to store, and the
/// resources to start.
async fn prepare_options(
    hub: &Services,
    owner_id: i64,
    options: Value,
) -> HubResult<(Value, ClusterResources)> {
    let read = SpawnOptions::read(hub.spawner.as_ref(), options)?;
    let prepared = clusters::prepare(hub, owner_id, read).await?;
    Ok((prepared.user_options, prepared.resources))
}

/// A multi-node backend that validates like the docker backend and starts nothing.
struct StandInClusters {
    limits: ResourceLimits,
}

fn host_limits() -> ResourceLimits {
    ResourceLimits {
        max_nodes: 16,
        host_cpus: 4.0,
        host_memory_bytes: 8 * GIB,
        host_gpus: Some(0),
        min_memory_bytes: 128 << 20,
        min_cpus: 0.1,
        max_storage_bytes: 1024 * GIB,
        default_cpus: 1.0,
        default_memory_bytes: 2 * GIB,
    }
}

#[async_trait::async_trait]
impl Spawner for StandInClusters {
    fn backend_name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> spawner::Capabilities {
        spawner::Capabilities {
            runs_images: true,
            saves_images: true,
            ..spawner::Capabilities::default()
        }
    }

    async fn validate(&self, request: &ClusterRequest) -> Result<ClusterResources, SpawnerError> {
        self.limits.admit(request)
    }

    fn resource_limits(&self) -> Option<ResourceLimits> {
        Some(self.limits.clone())
    }

    async fn start(
        &self,
        _spec: &SpawnSpec,
        _progress: ProgressSender,
    ) -> Result<Started, SpawnerError> {
        Err(SpawnerError::Config(
            "the stand-in backend starts nothing".into(),
        ))
    }

    async fn poll(&self, _state: &Value) -> Result<Option<i32>, SpawnerError> {
        Ok(None)
    }

    async fn stop(&self, _state: &Value, _grace: std::time::Duration) -> Result<(), SpawnerError> {
        Ok(())
    }

    fn url_from_state(&self, state: &Value) -> Option<String> {
        state.get("url").and_then(Value::as_str).map(str::to_owned)
    }

    fn nodes_from_state(&self, state: &Value) -> Vec<NodeInfo> {
        state
            .get("nodes")
            .cloned()
            .and_then(|n| serde_json::from_value(n).ok())
            .unwrap_or_default()
    }
}

async fn cluster_hub() -> TestHub {
    test_hub_with(
        |_| {},
        Some(Arc::new(StandInClusters {
            limits: host_limits(),
        })),
    )
    .await
}

fn fields(name: &str, kind: &str) -> ImageFields {
    let desktop = kind == "desktop";
    ImageFields {
        kind: kind.into(),
        name: name.into(),
        image: "127.0.0.1:5000/xiji/base-notebook".into(),
        tag: "latest".into(),
        start_options: String::new(),
        start_command: if desktop {
            "vncserver :1".into()
        } else {
            String::new()
        },
        vnc_password: desktop.then(|| "Vnc-pw7".into()),
        vnc_port: desktop.then_some(5901),
        description: format!("{name} for tests"),
        needs_gpu: false,
        enabled: true,
        visibility: "library".into(),
        owner_id: None,
    }
}

async fn add_image(t: &TestHub, f: ImageFields) -> ImageRow {
    t.hub
        .store
        .create_image(&f, crate::clock::now())
        .await
        .unwrap()
}

async fn user_jar(t: &TestHub, name: &str) -> Jar {
    t.create_user(name, "a-password-1").await;
    t.login(name, "a-password-1").await
}

fn xsrf(jar: &Jar) -> String {
    jar.get("_xsrf").unwrap().to_owned()
}

/// The value of the input with this id.
fn input_value<'a>(html: &'a str, id: &str) -> &'a str {
    let tag_start = html
        .find(&format!(r#"id="{id}""#))
        .unwrap_or_else(|| panic!("no #{id}"));
    let tag = &html[html[..tag_start].rfind('<').unwrap()..];
    let tag = &tag[..tag.find('>').unwrap()];
    let v = tag.find(r#"value=""#).unwrap() + 7;
    &tag[v..v + tag[v..].find('"').unwrap()]
}

#[tokio::test]
async fn the_limits_the_form_shows_are_those_the_backend_enforces() {
    let t = cluster_hub().await;
    let sizes = clusters::size_choices(&t.hub).unwrap();
    assert_eq!(
        sizes,
        SizeChoices {
            max_nodes: 16,
            default_cpus: 1.0,
            min_cpus: 0.1,
            max_cpus: 4.0,
            default_memory_bytes: 2 * GIB,
            min_memory_bytes: 128 << 20,
            max_memory_bytes: 8 * GIB,
            max_gpus: Some(0),
            max_storage_bytes: Some(1024 * GIB),
        }
    );
    // The bounds are the backend's own: it takes each one and refuses one step beyond.
    let takes = |options: Value| {
        let hub = Arc::clone(&t.hub);
        async move {
            match ClusterRequest::from_user_options(&options) {
                Ok(request) => hub.spawner.validate(&request).await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let mib = |bytes: u64| format!("{}M", bytes >> 20);
    let (cpus, memory) = (sizes.min_cpus, mib(sizes.min_memory_bytes));
    assert!(takes(serde_json::json!({"cpus": sizes.max_cpus})).await);
    assert!(!takes(serde_json::json!({"cpus": sizes.max_cpus + 0.01})).await);
    assert!(takes(serde_json::json!({"cpus": cpus, "memory": &memory})).await);
    assert!(!takes(serde_json::json!({"cpus": cpus - 0.01, "memory": &memory})).await);
    assert!(takes(serde_json::json!({"memory": mib(sizes.max_memory_bytes)})).await);
    assert!(!takes(serde_json::json!({"memory": mib(sizes.max_memory_bytes + (1 << 20))})).await);
    let nodes = |n: u32| serde_json::json!({"nodes": n, "cpus": cpus, "memory": &memory});
    assert!(takes(nodes(sizes.max_nodes)).await);
    assert!(!takes(nodes(sizes.max_nodes + 1)).await);
    assert!(!takes(serde_json::json!({"gpus": 1})).await);
}

#[tokio::test]
async fn the_home_page_offers_enabled_library_images_and_the_sizes_within_the_hosts_limits() {
    let t = cluster_hub().await;
    let desktop = add_image(&t, fields("A desktop", "desktop")).await;
    let python = add_image(&t, fields("Python + MPI", "jupyter")).await;
    let mut gpu = fields("CUDA", "jupyter");
    gpu.needs_gpu = true;
    let gpu = add_image(&t, gpu).await;
    let mut off = fields("Old", "jupyter");
    off.enabled = false;
    let off = add_image(&t, off).await;
    let bob = user_jar(&t, "bob").await;
    let html = body_text(t.get(&bob, "/hub/home").await).await;
    for needle in [
        r#"id="spawn-form""#,
        r#"action="/hub/spawn/bob""#,
        r#"form="spawn-form""#,
        r#"id="start""#,
        r#"id="progress-bar""#,
        "Python + MPI for tests",
        "1 to 16",
        "0.1 to 4 cores",
        "128M to 8G",
        "This host has no GPU.",
    ] {
        assert!(html.contains(needle), "{needle} missing: {html}");
    }
    // Jupyter images come first, and the first that can start is chosen; a GPU image cannot
    // start on this host.
    let at = |id: i64| html.find(&format!(r#"id="spawn-image-{id}""#)).unwrap();
    assert!(at(gpu.id) < at(python.id) && at(python.id) < at(desktop.id));
    assert!(html.contains(&format!(
        r#"id="spawn-image-{}" data-needs-gpu="false" checked"#,
        python.id
    )));
    assert!(html.contains(&format!(
        r#"id="spawn-image-{}" data-needs-gpu="true" disabled"#,
        gpu.id
    )));
    assert!(!html.contains(&format!(r#"id="spawn-image-{}""#, off.id)));
    // The backend's defaults.
    assert_eq!(input_value(&html, "spawn-nodes"), "1");
    assert_eq!(input_value(&html, "spawn-cpus"), "1");
    assert_eq!(input_value(&html, "spawn-memory"), "2G");
    assert_eq!(input_value(&html, "spawn-gpus"), "0");
    // Chinese too.
    let mut zh = bob.clone();
    zh.0.insert("xiji-lang".into(), "zh".into());
    let html = body_text(t.get(&zh, "/hub/home").await).await;
    assert!(html.contains("每节点 CPU 核数") && html.contains("本机没有 GPU。"));
}

#[tokio::test]
async fn the_local_backend_shows_only_the_start_button() {
    let t = super::tests::test_hub(|_| {}).await;
    let jar = t.login("admin", ADMIN_PASSWORD).await;
    let html = body_text(t.get(&jar, "/hub/home").await).await;
    assert!(html.contains(r#"id="start""#) && html.contains(r#"id="spawn-form""#));
    for absent in ["spawn-nodes", "spawn-image-", "spawn-memory"] {
        assert!(!html.contains(absent), "{absent}: {html}");
    }
}

#[tokio::test]
async fn an_impossible_request_is_refused_next_to_the_form_with_the_values_as_typed() {
    let t = cluster_hub().await;
    let python = add_image(&t, fields("Python", "jupyter")).await;
    let mut gpu = fields("CUDA", "jupyter");
    gpu.needs_gpu = true;
    let gpu = add_image(&t, gpu).await;
    let bob = user_jar(&t, "bob").await;
    let id = python.id.to_string();
    let gpu_id = gpu.id.to_string();
    for (image, nodes, memory, gpus, message) in [
        (id.as_str(), "0", "2G", "0", "at least 1 node"),
        (id.as_str(), "3", "4G", "0", "at most 2.67G per node"),
        (id.as_str(), "2", "1G", "1", "this host has no GPU"),
        (gpu_id.as_str(), "1", "1G", "0", "needs a GPU"),
        ("9999", "1", "1G", "0", "No image 9999"),
    ] {
        let r = t
            .post_form(
                &bob,
                "/hub/spawn/bob",
                form(&[
                    ("_xsrf", &xsrf(&bob)),
                    ("image", image),
                    ("nodes", nodes),
                    ("cpus", "1"),
                    ("memory", memory),
                    ("gpus", gpus),
                    ("storage", ""),
                ]),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{message}");
        let html = body_text(r).await;
        let error_at = html.find(r#"id="spawn-error""#).expect("the error box");
        let form_at = html.find(r#"id="spawn-form""#).unwrap();
        assert!(error_at > form_at, "the message is in the form");
        let error = &html[error_at..error_at + html[error_at..].find("</div>").unwrap()];
        assert!(
            error.contains("Cannot start:") && error.contains(message),
            "{message}: {error}"
        );
        assert_eq!(input_value(&html, "spawn-nodes"), nodes);
        assert_eq!(input_value(&html, "spawn-memory"), memory);
        assert_eq!(input_value(&html, "spawn-gpus"), gpus);
        assert!(html.contains(r#"id="start""#));
    }
    // Nothing was started.
    let user = t.hub.store.user("bob").await.unwrap().unwrap();
    assert!(t.hub.store.server(user.id, "").await.unwrap().is_none());
    // The form needs the XSRF token like every form.
    let r = t
        .post_form(&bob, "/hub/spawn/bob", form(&[("nodes", "1")]))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_spawn_page_asks_for_options_first_and_preselects_a_wanted_image() {
    let t = cluster_hub().await;
    add_image(&t, fields("Python", "jupyter")).await;
    let r_image = add_image(&t, fields("R", "jupyter")).await;
    let bob = user_jar(&t, "bob").await;
    let r = t.get(&bob, "/hub/spawn/bob?next=%2Fuser%2Fbob%2Flab").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = body_text(r).await;
    assert!(
        html.contains(r#"action="/hub/spawn/bob?next=%2Fuser%2Fbob%2Flab""#),
        "{html}"
    );
    let html = body_text(
        t.get(&bob, &format!("/hub/spawn/bob?image={}", r_image.id))
            .await,
    )
    .await;
    assert!(html.contains(&format!(
        r#"id="spawn-image-{}" data-needs-gpu="false" checked"#,
        r_image.id
    )));
    // The home page too (the images page's Start links).
    let html = body_text(
        t.get(&bob, &format!("/hub/home?image={}", r_image.id))
            .await,
    )
    .await;
    assert!(html.contains(&format!(
        r#"id="spawn-image-{}" data-needs-gpu="false" checked"#,
        r_image.id
    )));
}

/// A server row as a running 2-node cluster from `image` would leave it.
async fn running_cluster(t: &TestHub, user: &str, image: &ImageRow) {
    let user = t.hub.store.user(user).await.unwrap().unwrap();
    let state = json!({
        "url": "http://10.0.0.2:8888",
        "nodes": [
            {"name": "node-0", "url": "http://10.0.0.2:8888", "service_prefix": format!("/user/{}/", user.name), "oauth_client_id": null},
            {"name": "node-1", "url": "http://10.0.0.3:8888", "service_prefix": format!("/user/{}/node-1/", user.name), "oauth_client_id": null},
        ],
    });
    let options = json!({
        "image": crate::domain::images::reference(image),
        "image_id": image.id,
        "image_name": image.name,
        "nodes": "2",
        "cpus": "1.5",
        "memory": "3G",
    });
    let db = sqlx::SqlitePool::connect(&t.hub.config.database_url())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO servers (user_id, name, status, state, user_options) \
         VALUES (?, '', 'running', ?, ?)",
    )
    .bind(user.id)
    .bind(state.to_string())
    .bind(options.to_string())
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
}

#[tokio::test]
async fn a_running_cluster_lists_its_nodes_with_their_jupyterlab_and_desktop_links() {
    let t = cluster_hub().await;
    let desktop = add_image(&t, fields("Xfce desktop", "desktop")).await;
    let bob = user_jar(&t, "bob").await;
    running_cluster(&t, "bob", &desktop).await;
    let html = body_text(t.get(&bob, "/hub/home").await).await;
    for needle in [
        r#"id="cluster""#,
        r#"id="open-node-0" href="/user/bob/lab""#,
        r#"id="open-node-1" href="/user/bob/node-1/lab""#,
        r#"id="desktop-node-0" href="/user/bob/desktop/""#,
        r#"id="desktop-node-1" href="/user/bob/node-1/desktop/""#,
        r#"id="save-image-node-1" data-node="node-1" data-api="/hub/api/users/bob/server/save-image""#,
        "Xfce desktop",
        "2 node(s) × 1.5 CPU cores, 3G memory, 0 GPU(s) each",
    ] {
        assert!(html.contains(needle), "{needle} missing: {html}");
    }
    // The form waits, hidden, for the next start.
    assert!(html.contains(r#"<div class="js-spawn-options" hidden>"#));
    // A Jupyter image has no desktop link.
    let t = cluster_hub().await;
    let python = add_image(&t, fields("Python", "jupyter")).await;
    let bob = user_jar(&t, "bob").await;
    running_cluster(&t, "bob", &python).await;
    let html = body_text(t.get(&bob, "/hub/home").await).await;
    assert!(html.contains(r#"id="open-node-1""#) && !html.contains("desktop-node-"));
    // The admin page's server column lists the nodes too.
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let html = body_text(t.get(&admin, "/hub/admin").await).await;
    assert!(
        html.contains(r#"href="/user/bob/node-1/lab""#) && html.contains("Python"),
        "{html}"
    );
}

#[tokio::test]
async fn only_library_administrators_open_the_image_pages() {
    let t = cluster_hub().await;
    let image = add_image(&t, fields("Python", "jupyter")).await;
    let bob = user_jar(&t, "bob").await;
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let edit = format!("/hub/admin/images/{}", image.id);
    for page in ["/hub/admin/images", "/hub/admin/images/new", edit.as_str()] {
        assert_eq!(
            t.get(&bob, page).await.status(),
            StatusCode::FORBIDDEN,
            "{page}"
        );
        assert_eq!(t.get(&admin, page).await.status(), StatusCode::OK, "{page}");
    }
    for action in ["disable", "delete", "approve"] {
        let r = t
            .post_form(
                &bob,
                &format!("{edit}/{action}"),
                form(&[("_xsrf", &xsrf(&bob))]),
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(
        t.hub.store.image(image.id).await.unwrap().unwrap(),
        image,
        "unchanged"
    );
    // Not logged in: the login page first.
    let r = t.get(&Jar::default(), "/hub/admin/images").await;
    assert!(location(&r).starts_with("/hub/login?next="));
    // Only administrators see the link.
    let html = body_text(t.get(&admin, "/hub/admin").await).await;
    assert!(html.contains(r#"id="admin-nav-images""#));
    let html = body_text(t.get(&bob, "/hub/home").await).await;
    assert!(!html.contains("/hub/admin/images") && html.contains(r#"id="nav-images""#));
    // Without the XSRF token, even an administrator is refused.
    let r = t
        .post_form(&admin, &format!("{edit}/disable"), String::new())
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn administrators_add_edit_disable_and_delete_images_from_the_forms() {
    let t = cluster_hub().await;
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let token = xsrf(&admin);
    // A refused form comes back with the reason and the values.
    let r = t
        .post_form(
            &admin,
            "/hub/admin/images/new",
            form(&[
                ("_xsrf", &token),
                ("kind", "jupyter"),
                ("name", "Python"),
                ("image", "Not/A Valid Name"),
                ("tag", "latest"),
            ]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = body_text(r).await;
    assert!(
        html.contains(r#"id="image-error""#) && html.contains("Invalid image name"),
        "{html}"
    );
    assert_eq!(input_value(&html, "image-image"), "Not/A Valid Name");
    // Added.
    let r = t
        .post_form(
            &admin,
            "/hub/admin/images/new",
            form(&[
                ("_xsrf", &token),
                ("kind", "jupyter"),
                ("name", "Python + MPI"),
                ("image", "127.0.0.1:5000/xiji/base-notebook"),
                ("tag", ""),
                ("description", "Python, OpenMPI"),
                ("enabled", "1"),
            ]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=added");
    let row = t
        .hub
        .store
        .image_by_name("Python + MPI")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.tag.as_str(), row.enabled, row.needs_gpu),
        ("latest", 1, 0)
    );
    let html = body_text(t.get(&admin, "/hub/admin/images?done=added").await).await;
    assert!(html.contains("The image was added.") && html.contains(r#"id="image-table""#));
    // Disabled, then enabled again.
    let base = format!("/hub/admin/images/{}", row.id);
    let r = t
        .post_form(
            &admin,
            &format!("{base}/disable"),
            form(&[("_xsrf", &token)]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=disabled");
    assert_eq!(t.hub.store.image(row.id).await.unwrap().unwrap().enabled, 0);
    let html = body_text(t.get(&admin, "/hub/admin/images").await).await;
    assert!(html.contains(&format!(r#"id="enable-image-{}""#, row.id)));
    t.post_form(
        &admin,
        &format!("{base}/enable"),
        form(&[("_xsrf", &token)]),
    )
    .await;
    assert_eq!(t.hub.store.image(row.id).await.unwrap().unwrap().enabled, 1);
    // Edited: needs a GPU from now on.
    let r = t
        .post_form(
            &admin,
            &base,
            form(&[
                ("_xsrf", &token),
                ("kind", "jupyter"),
                ("name", "Python + MPI"),
                ("image", "127.0.0.1:5000/xiji/base-notebook"),
                ("tag", "v2"),
                ("needs_gpu", "1"),
                ("enabled", "1"),
            ]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=saved");
    let changed = t.hub.store.image(row.id).await.unwrap().unwrap();
    assert_eq!((changed.tag.as_str(), changed.needs_gpu), ("v2", 1));
    // Deleted.
    let r = t
        .post_form(
            &admin,
            &format!("{base}/delete"),
            form(&[("_xsrf", &token)]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=deleted");
    assert!(t.hub.store.image(row.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_vnc_password_is_never_written_into_a_page_and_an_empty_field_keeps_it() {
    let t = cluster_hub().await;
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let token = xsrf(&admin);
    let desktop_form = |password: &'static str, port: &'static str| {
        form(&[
            ("_xsrf", &token),
            ("kind", "desktop"),
            ("name", "Desktop"),
            ("image", "127.0.0.1:5000/xiji/desktop"),
            ("tag", "latest"),
            ("start_command", "vncserver :1"),
            ("vnc_password", password),
            ("vnc_port", port),
            ("enabled", "1"),
        ])
    };
    // A refused form does not echo the password either.
    let r = t
        .post_form(
            &admin,
            "/hub/admin/images/new",
            desktop_form("Secr3t-a", "x"),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = body_text(r).await;
    assert!(
        html.contains("The VNC port must be a whole number"),
        "{html}"
    );
    assert!(!html.contains("Secr3t-a"));
    let r = t
        .post_form(
            &admin,
            "/hub/admin/images/new",
            desktop_form("Secr3t-a", "5901"),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=added");
    let row = t.hub.store.image_by_name("Desktop").await.unwrap().unwrap();
    assert_eq!(row.vnc_password.as_deref(), Some("Secr3t-a"));
    let edit = format!("/hub/admin/images/{}", row.id);
    for page in ["/hub/admin/images", edit.as_str()] {
        let html = body_text(t.get(&admin, page).await).await;
        assert!(!html.contains("Secr3t-a"), "{page} shows the password");
        assert!(
            html.contains(">set<") || html.contains("A password is set."),
            "{page}: {html}"
        );
    }
    let html = body_text(t.get(&admin, &edit).await).await;
    assert_eq!(input_value(&html, "image-vnc-password"), "");
    // Saved with the field empty: kept.
    t.post_form(&admin, &edit, desktop_form("", "5902")).await;
    let row = t.hub.store.image(row.id).await.unwrap().unwrap();
    assert_eq!(
        (row.vnc_password.as_deref(), row.vnc_port),
        (Some("Secr3t-a"), Some(5902))
    );
    // Replaced.
    t.post_form(&admin, &edit, desktop_form("N3w-pass", "5902"))
        .await;
    let row = t.hub.store.image(row.id).await.unwrap().unwrap();
    assert_eq!(row.vnc_password.as_deref(), Some("N3w-pass"));
    // The users' pages never show it.
    let bob = user_jar(&t, "bob").await;
    for page in ["/hub/images", "/hub/home"] {
        let html = body_text(t.get(&bob, page).await).await;
        assert!(
            html.contains("Desktop") && !html.contains("N3w-pass"),
            "{page}"
        );
    }
}

#[tokio::test]
async fn users_ask_for_their_images_to_join_the_library_and_administrators_approve_or_reject() {
    let t = cluster_hub().await;
    let bob = user_jar(&t, "bob").await;
    let bob_id = t.hub.store.user("bob").await.unwrap().unwrap().id;
    let own = |name: &str| {
        let mut f = fields(name, "jupyter");
        f.visibility = "private".into();
        f.owner_id = Some(bob_id);
        f.image = format!("127.0.0.1:5000/xiji/saved/bob-{}", name.to_lowercase());
        f
    };
    let first = add_image(&t, own("First")).await;
    let second = add_image(&t, own("Second")).await;
    let library = add_image(&t, fields("Python", "jupyter")).await;
    let html = body_text(t.get(&bob, "/hub/images").await).await;
    for needle in [
        format!(r#"id="request-my-image-{}""#, first.id),
        format!(r#"id="delete-my-image-{}""#, first.id),
        format!(
            r#"id="start-image-{}" href="/hub/home?image={}#spawn-form""#,
            library.id, library.id
        ),
        r#"id="save-image-help""#.to_owned(),
    ] {
        assert!(html.contains(&needle), "{needle} missing: {html}");
    }
    let bob_token = xsrf(&bob);
    for image in [&first, &second] {
        let r = t
            .post_form(
                &bob,
                &format!("/hub/images/{}/request", image.id),
                form(&[("_xsrf", &bob_token)]),
            )
            .await;
        assert_eq!(location(&r), "/hub/images?done=requested");
    }
    let row = t.hub.store.image(first.id).await.unwrap().unwrap();
    assert_eq!(row.visibility, "requested");
    let html = body_text(t.get(&bob, "/hub/images").await).await;
    assert!(html.contains("Waiting for approval"));
    assert!(html.contains(&format!(r#"id="withdraw-my-image-{}""#, first.id)));
    // Another user cannot touch bob's images.
    let carol = user_jar(&t, "carol").await;
    let r = t
        .post_form(
            &carol,
            &format!("/hub/images/{}/delete", first.id),
            form(&[("_xsrf", &xsrf(&carol))]),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The administrator sees the requests first, and approves one and rejects the other.
    let admin = t.login("admin", ADMIN_PASSWORD).await;
    let html = body_text(t.get(&admin, "/hub/admin/images").await).await;
    let requests = &html[html.find(r#"id="image-requests""#).unwrap()..];
    let requests = &requests[..requests.find("</section>").unwrap()];
    assert!(requests.contains("First") && requests.contains("Second") && requests.contains("bob"));
    let token = xsrf(&admin);
    let r = t
        .post_form(
            &admin,
            &format!("/hub/admin/images/{}/approve", first.id),
            form(&[("_xsrf", &token)]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=approved");
    let r = t
        .post_form(
            &admin,
            &format!("/hub/admin/images/{}/reject", second.id),
            form(&[("_xsrf", &token)]),
        )
        .await;
    assert_eq!(location(&r), "/hub/admin/images?done=rejected");
    let first = t.hub.store.image(first.id).await.unwrap().unwrap();
    let second = t.hub.store.image(second.id).await.unwrap().unwrap();
    assert_eq!(
        (first.visibility.as_str(), second.visibility.as_str()),
        ("library", "private")
    );
    // Approved: everyone may start it; rejected: bob may ask again or delete it.
    let html = body_text(t.get(&carol, "/hub/home").await).await;
    assert!(html.contains(&format!(r#"id="spawn-image-{}""#, first.id)));
    assert!(!html.contains(&format!(r#"id="spawn-image-{}""#, second.id)));
    let html = body_text(t.get(&bob, "/hub/images").await).await;
    assert!(html.contains(&format!(r#"id="request-my-image-{}""#, second.id)));
    let r = t
        .post_form(
            &bob,
            &format!("/hub/images/{}/delete", second.id),
            form(&[("_xsrf", &bob_token)]),
        )
        .await;
    assert_eq!(location(&r), "/hub/images?done=deleted");
    assert!(t.hub.store.image(second.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_saved_image_is_offered_to_its_owner_at_once_and_to_others_once_published() {
    let t = cluster_hub().await;
    let python = add_image(&t, fields("Python", "jupyter")).await;
    let alice_jar = user_jar(&t, "alice").await;
    let bob_jar = user_jar(&t, "bob").await;
    let alice = t.hub.store.user("alice").await.unwrap().unwrap();
    let bob = t.hub.store.user("bob").await.unwrap().unwrap();
    let mut saved = fields("alice/env:v1", "jupyter");
    saved.image = "127.0.0.1:5000/saved/alice/env".into();
    saved.tag = "v1".into();
    saved.visibility = "private".into();
    saved.owner_id = Some(alice.id);
    let mine = add_image(&t, saved).await;
    let choice = format!(r#"id="spawn-image-{}""#, mine.id);

    // The owner's spawn form offers it at once, marked as private, after the library.
    let html = body_text(t.get(&alice_jar, "/hub/home").await).await;
    assert!(html.contains(&choice), "{html}");
    assert!(html.contains(r#"data-private="true""#));
    let at = |id: i64| html.find(&format!(r#"id="spawn-image-{id}""#)).unwrap();
    assert!(at(python.id) < at(mine.id));
    // Its Start link on "My images" preselects it.
    let html = body_text(t.get(&alice_jar, "/hub/images").await).await;
    assert!(html.contains(&format!(
        r#"id="start-my-image-{}" href="/hub/home?image={}#spawn-form""#,
        mine.id, mine.id
    )));
    let html = body_text(
        t.get(&alice_jar, &format!("/hub/home?image={}", mine.id))
            .await,
    )
    .await;
    assert!(html.contains(&format!(
        r#"id="spawn-image-{}" data-needs-gpu="false" checked"#,
        mine.id
    )));
    // Another user's form does not.
    let html = body_text(t.get(&bob_jar, "/hub/home").await).await;
    assert!(
        !html.contains(&choice) && !html.contains("alice/env"),
        "{html}"
    );

    // A spawn request resolves it for its owner by id, name and reference…
    let reference = crate::domain::images::reference(&mine);
    for wanted in [json!(mine.id), json!("alice/env:v1"), json!(reference)] {
        let (options, _) = prepare_options(&t.hub, alice.id, json!({ "image": wanted }))
            .await
            .unwrap();
        assert_eq!(options["image"], json!(reference), "{wanted}");
        assert_eq!(options["image_id"], json!(mine.id));
    }
    // …and for anyone else it does not exist: a 400 like an unknown image's.
    for wanted in [json!(mine.id), json!("alice/env:v1"), json!(reference)] {
        match prepare_options(&t.hub, bob.id, json!({ "image": wanted })).await {
            Err(crate::domain::HubError::BadRequest(m)) => {
                assert!(
                    m.starts_with("No image ") || m.contains("is not an image you may start"),
                    "{m}"
                );
            }
            other => panic!("{wanted}: {other:?}"),
        }
    }

    // Published to the library: everyone's.
    let mut published = ImageFields::of(&mine);
    published.visibility = "library".into();
    t.hub
        .store
        .update_image(mine.id, &published, crate::clock::now())
        .await
        .unwrap();
    let html = body_text(t.get(&bob_jar, "/hub/home").await).await;
    assert!(html.contains(&choice));
    let (options, _) = prepare_options(&t.hub, bob.id, json!({"image": mine.id}))
        .await
        .unwrap();
    assert_eq!(options["image_id"], json!(mine.id));
}

/// A dataset of `owner` named `name`, `public` or `private`.
async fn add_dataset(t: &TestHub, owner: &str, name: &str, visibility: &str) {
    let user = t.hub.store.user(owner).await.unwrap().unwrap();
    let viewer = crate::domain::datasets::Viewer { user, admin: false };
    let request = crate::domain::datasets::DatasetRequest {
        name: Some(name.into()),
        visibility: Some(visibility.into()),
        ..Default::default()
    };
    crate::domain::datasets::create(&t.hub, &viewer, request)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_spawn_form_offers_the_datasets_the_owner_may_read_ticked_as_last_time() {
    let t = cluster_hub().await;
    add_image(&t, fields("Python", "jupyter")).await;
    let bob = user_jar(&t, "bob").await;
    t.create_user("carol", "a-password-1").await;
    add_dataset(&t, "bob", "mine", "private").await;
    add_dataset(&t, "carol", "open", "public").await;
    add_dataset(&t, "carol", "secret", "private").await;

    let html = body_text(t.get(&bob, "/hub/home").await).await;
    let section = &html[html.find(r#"id="spawn-datasets""#).expect("the datasets")..];
    let section = &section[..section.find("</fieldset>").unwrap()];
    assert!(
        section.contains(r#"name="dataset" value="bob/mine""#),
        "{section}"
    );
    assert!(
        section.contains(r#"name="dataset" value="carol/open""#),
        "{section}"
    );
    assert!(!section.contains("carol/secret"), "{section}");
    assert!(
        !section.contains("checked"),
        "nothing ticked yet: {section}"
    );
    assert!(section.contains("~/datasets/owner/name"), "{section}");
    assert!(section.contains(r#"name="datasets_offered""#));
    let mut zh = bob.clone();
    zh.0.insert("xiji-lang".into(), "zh".into());
    let html = body_text(t.get(&zh, "/hub/home").await).await;
    assert!(html.contains("<legend>数据集</legend>") && html.contains("以只读方式"));

    // A stopped server's last options tick their datasets again.
    let user = t.hub.store.user("bob").await.unwrap().unwrap();
    let db = sqlx::SqlitePool::connect(&t.hub.config.database_url())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO servers (user_id, name, status, user_options) VALUES (?, '', 'stopped', ?)",
    )
    .bind(user.id)
    .bind(json!({"nodes": "1", "datasets": ["carol/open", "carol/secret"]}).to_string())
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    let html = body_text(t.get(&bob, "/hub/spawn/bob").await).await;
    assert!(
        html.contains(r#"name="dataset" value="carol/open" id="spawn-dataset-2" checked"#),
        "{html}"
    );
    assert!(!html.contains(r#"value="bob/mine" id="spawn-dataset-1" checked"#));
}

#[tokio::test]
async fn a_dataset_the_owner_may_not_read_is_refused_before_anything_is_written() {
    let t = cluster_hub().await;
    let python = add_image(&t, fields("Python", "jupyter")).await;
    let bob = user_jar(&t, "bob").await;
    t.create_user("carol", "a-password-1").await;
    add_dataset(&t, "carol", "secret", "private").await;
    let bob_row = t.hub.store.user("bob").await.unwrap().unwrap();

    for wanted in ["carol/secret", "nobody/nothing"] {
        // The spawn form: a 400 next to the form.
        let r = t
            .post_form(
                &bob,
                "/hub/spawn/bob",
                form(&[
                    ("_xsrf", &xsrf(&bob)),
                    ("image", &python.id.to_string()),
                    ("nodes", "1"),
                    ("datasets_offered", "1"),
                    ("dataset", wanted),
                ]),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{wanted}");
        let html = body_text(r).await;
        let error_at = html.find(r#"id="spawn-error""#).expect("the error box");
        let error = &html[error_at..error_at + html[error_at..].find("</div>").unwrap()];
        assert!(error.contains(&format!("&quot;{wanted}&quot;")), "{error}");

        // The API's way in (the domain's start): the same 400.
        let options = SpawnOptions::read(
            t.hub.spawner.as_ref(),
            json!({"image": "Python", "datasets": [wanted]}),
        )
        .unwrap();
        match crate::domain::servers::start(&t.hub, &bob_row, "", Some(options)).await {
            Err(crate::domain::HubError::BadRequest(message)) => {
                assert!(message.contains(wanted), "{message}");
            }
            other => panic!("{wanted}: {other:?}"),
        }
    }
    // Nothing was written: no server row, no token of a server.
    assert!(t.hub.store.server(bob_row.id, "").await.unwrap().is_none());
    // A list that is not one of owner/name strings is refused where the options are read.
    for bad in [json!({"datasets": 3}), json!({"datasets": ["mnist"]})] {
        assert!(matches!(
            SpawnOptions::read(t.hub.spawner.as_ref(), bad),
            Err(crate::domain::HubError::BadRequest(_))
        ));
    }
}
