//! Starting, watching and stopping users' servers: JupyterHub's spawn sequence over a `Spawner`
//! backend and the proxy's route table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use spawner::{ProgressEvent, SpawnSpec};
use tokio::sync::watch;

use super::clusters::{self, SpawnOptions};
use super::tokens::{hash_secret, new_token};
use super::{names, HubError, HubResult};
use crate::clock;
use crate::db::{BeginSpawn, DbError, Reserve, ServerRow, ServerStatus, SpawnBegun, UserRow};
use crate::domain::Services;

/// Raw scopes of a server's own API token: JupyterHub's `server` role, and stopping itself (the
/// JupyterLab extension's **Release** command ends the cluster with this token).
pub const SERVER_TOKEN_SCOPES: [&str; 3] = [
    "users:activity!user",
    "access:servers!server",
    "delete:servers!server",
];

/// `/user/alice/` or `/user/alice/gpu/`: the server's URL prefix and proxy route.
pub fn service_prefix(user: &str, server: &str) -> String {
    let user = url_quote(user);
    if server.is_empty() {
        format!("/user/{user}/")
    } else {
        format!("/user/{user}/{}/", url_quote(server))
    }
}

/// JupyterHub's OAuth client id of a server.
pub fn client_id(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("jupyterhub-user-{}", url_quote(user))
    } else {
        format!("jupyterhub-user-{}-{}", url_quote(user), url_quote(server))
    }
}

/// `alice/` or `alice/gpu`: the value of a `!server=` filter.
pub fn full_name(user: &str, server: &str) -> String {
    format!("{user}/{server}")
}

/// Percent-encodes like Python's `urllib.parse.quote(s, safe='')` keeping `@~._-`.
pub fn url_quote(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'@');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// The progress of one spawn: the events so far and whether it has ended.
#[derive(Debug, Clone, Default)]
pub struct ProgressLog {
    /// Events in JupyterHub's shape (`progress`, `message`, …).
    pub events: Vec<Value>,
    /// Set once the last event (ready or failed) is in.
    pub done: bool,
    /// Set when the spawn failed.
    pub failed: bool,
}

/// Live, in-memory state of spawns: progress logs for the `/progress` streams.
#[derive(Default)]
pub struct LiveServers {
    progress: Mutex<HashMap<String, watch::Sender<ProgressLog>>>,
}

impl LiveServers {
    fn begin(&self, key: &str) -> watch::Sender<ProgressLog> {
        let first = ProgressLog {
            events: vec![json!({"progress": 0, "message": "Server requested"})],
            done: false,
            failed: false,
        };
        let (tx, _) = watch::channel(first);
        if let Ok(mut map) = self.progress.lock() {
            map.insert(key.to_owned(), tx.clone());
        }
        tx
    }

    /// Subscribes to the progress of a spawn that is under way or has just ended.
    pub fn subscribe(&self, user: &str, server: &str) -> Option<watch::Receiver<ProgressLog>> {
        self.progress
            .lock()
            .ok()?
            .get(&full_name(user, server))
            .map(watch::Sender::subscribe)
    }

    fn forget(&self, key: &str) {
        if let Ok(mut map) = self.progress.lock() {
            map.remove(key);
        }
    }
}

fn push(tx: &watch::Sender<ProgressLog>, event: Value) {
    tx.send_modify(|log| log.events.push(event));
}

fn finish(tx: &watch::Sender<ProgressLog>, event: Value, failed: bool) {
    tx.send_modify(|log| {
        log.events.push(event);
        log.done = true;
        log.failed = failed;
    });
}

/// How a start or stop request ended within the request's patience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished (201 for a start, 204 for a stop).
    Done,
    /// Still going on in the background (202).
    Pending,
}

/// JupyterHub's `pending` of a server row: the transition under way, if any.
pub fn pending_of(row: &ServerRow) -> Option<&'static str> {
    row.status.pending()
}

/// Starts a user's server. Errors: 400 (named servers off, bad name, already running/pending),
/// or the spawn's own failure when it fails within `slow_spawn_timeout`.
pub async fn start(
    hub: &Arc<Services>,
    user: &UserRow,
    server_name: &str,
    options: Option<SpawnOptions>,
) -> HubResult<Outcome> {
    // A project's server is a named server whatever the named-server settings say: projects run
    // as `project-{id}`, and only for those who may run them (checked below).
    let for_project = super::projects::is_project_server(server_name);
    if !server_name.is_empty() && !for_project {
        if !hub.config.allow_named_servers {
            return Err(HubError::BadRequest(
                "Named servers are not enabled.".into(),
            ));
        }
        names::check_server_name(server_name)?;
        clusters::check_server_name_is_not_a_node(server_name)?;
        let limit = hub.config.named_server_limit_per_user;
        if limit > 0 && hub.store.server(user.id, server_name).await?.is_none() {
            let count = hub.store.count_named_servers(user.id).await?;
            if count >= i64::from(limit) {
                return Err(HubError::BadRequest(format!(
                    "User {} already has the maximum of {limit} named servers.  One must be deleted before a new server can be created",
                    user.name
                )));
            }
        }
    }
    let existing = hub.store.server(user.id, server_name).await?;
    let log_name = if server_name.is_empty() {
        user.name.clone()
    } else {
        full_name(&user.name, server_name)
    };
    if let Some(row) = &existing {
        if let Some(pending) = pending_of(row) {
            return Err(HubError::BadRequest(format!(
                "{log_name} is pending {pending}"
            )));
        }
        if row.status == ServerStatus::Running {
            return Err(HubError::BadRequest(format!(
                "{log_name} is already running"
            )));
        }
    }
    // A campus user the identity provider no longer vouches for starts nothing.
    super::campus_login::check_before_start(hub, user).await?;
    // An empty body reuses the options of the previous start, as JupyterHub does.
    let options = match options {
        Some(given) if !given.is_empty() => given,
        _ => {
            let previous = existing
                .as_ref()
                .and_then(|r| serde_json::from_str(&r.user_options).ok())
                .unwrap_or(Value::Null);
            SpawnOptions::read(hub.spawner.as_ref(), previous)?
        }
    };
    let prepared = clusters::prepare(hub, user.id, options).await?;
    // The release policy it chose (or its user's), refused before anything is written.
    let release_policy =
        super::release::policy_for_start(&hub.store, user.id, &prepared.user_options).await?;
    // Datasets the owner may not read (any more) are refused here, before anything is written.
    let mounts = super::datasets::mounts_for(hub, user, &prepared.datasets).await?;
    // A project's server (`project-{id}`) works in the project's folder.
    let work_dir = match super::projects::work_dir_for_server(hub, user, server_name).await? {
        Some(dir) => Some(dir),
        None => super::storage_pools::work_dir(hub, user).await?,
    };
    // A desktop image's nodes start its VNC server: command and port of its record, the
    // password as a secret file.
    let desktop = crate::domain::desktops::launch_of(prepared.image.as_ref());
    let token = new_token();
    let token_hash = hash_secret(&token);
    let prefix = service_prefix(&user.name, server_name);
    let client = client_id(&user.name, server_name);
    let scopes: Vec<String> = SERVER_TOKEN_SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let redirect_uri = format!("{prefix}oauth_callback");
    let node_clients = clusters::node_clients(&prefix, &client, prepared.resources.nodes);
    let options_text = prepared.user_options.to_string();
    let description = format!("Server at {prefix}");
    let now = clock::now();
    // The cluster's reservation, decided with the server's row; admitted at once, its ledger
    // opens in the same transaction.
    let project_id = super::projects::project_id_of_server(server_name);
    // A used-up budget (the user's, a group's or the project's) refuses the start.
    let budget_warning = super::budgets::check_start(hub, user, project_id).await?;
    let image_ref = prepared.resources.image.clone().unwrap_or_default();
    let run = super::metering::new_run_key(now);
    let run_meta = super::metering::RunMeta {
        run: run.clone(),
        user_id: user.id,
        user_name: user.name.clone(),
        project_id,
        server_name: server_name.to_owned(),
        image: image_ref.clone(),
        nodes: i64::from(prepared.resources.nodes),
        size: super::admission::node_size(&prepared.resources),
    };
    let prices = hub.store.price_versions().await?;
    let open_rows = super::metering::open_rows(&run_meta, hub.meter.tz(), &prices, now);
    let wait = super::admission::wants_to_wait(&prepared.user_options);
    let capacity = super::admission::backend_capacity(&hub.spawner.capacity());
    let begin = BeginSpawn {
        user_id: user.id,
        server_name,
        user_options: &options_text,
        token_hash: &token_hash,
        token_scopes: &scopes,
        client_id: &client,
        client_description: &description,
        redirect_uri: &redirect_uri,
        node_clients: &node_clients,
        reserve: Some(Reserve {
            project_id,
            image: &image_ref,
            nodes: run_meta.nodes,
            size: run_meta.size,
            run: &run,
            wait,
            capacity,
            open_rows: &open_rows,
        }),
        now,
    };
    let started_at = begin.now;
    let (server_id, admission) = match hub.store.begin_spawn(&begin).await {
        Ok(SpawnBegun::Begun {
            server_id,
            admission,
        }) => (server_id, admission),
        Ok(SpawnBegun::Refused(refusal)) => {
            tracing::info!(user.name = %user.name, server.name = %server_name, ?refusal, "start refused");
            return Err(super::admission::refusal_error(refusal));
        }
        Err(DbError::Conflict) => {
            return Err(HubError::BadRequest(format!(
                "{log_name} is already running or pending"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    hub.invalidate_auth();
    if let Err(e) = super::release::hold_for_start(hub, server_id, now, release_policy).await {
        tracing::error!(error = %e, "could not record the start's release policy");
    }
    let key = full_name(&user.name, server_name);
    let progress = hub.live.begin(&key);
    let mut env = BTreeMap::new();
    let api_url = format!("{}hub/api", hub.internal_url());
    let access_scopes = json!([
        format!(
            "access:servers!server={}",
            full_name(&user.name, server_name)
        ),
        format!("access:servers!user={}", user.name)
    ])
    .to_string();
    for (k, v) in [
        ("JUPYTERHUB_API_TOKEN", token.clone()),
        ("JPY_API_TOKEN", token.clone()),
        ("JUPYTERHUB_CLIENT_ID", client.clone()),
        ("JUPYTERHUB_API_URL", api_url.clone()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api_url}/users/{}/activity", url_quote(&user.name)),
        ),
        ("JUPYTERHUB_BASE_URL", "/".to_owned()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        ("JUPYTERHUB_USER", user.name.clone()),
        ("JUPYTERHUB_SERVER_NAME", server_name.to_owned()),
        ("JUPYTERHUB_HOST", String::new()),
        ("JUPYTERHUB_OAUTH_CALLBACK_URL", redirect_uri.clone()),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", access_scopes.clone()),
        ("JUPYTERHUB_OAUTH_SCOPES", access_scopes),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_owned()),
        ("JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED", "0".to_owned()),
        (
            "JUPYTERHUB_PUBLIC_URL",
            hub.config.public_url.clone().unwrap_or_default(),
        ),
        (
            "JUPYTERHUB_PUBLIC_HUB_URL",
            hub.config
                .public_url
                .as_ref()
                .map(|u| format!("{}/hub/", u.trim_end_matches('/')))
                .unwrap_or_default(),
        ),
    ] {
        env.insert(k.to_owned(), v);
    }
    let mut secret_files = Vec::new();
    if let Some(desktop) = &desktop {
        env.extend(desktop.env());
        secret_files = desktop.secret_files(&hub.secret, server_id, started_at);
    }
    if hub.spawner.capabilities().runs_on_hub_host {
        for (k, v) in &hub.config.spawner.local.environment {
            env.insert(k.clone(), v.clone());
        }
    }
    let spec = SpawnSpec {
        user: user.name.clone(),
        server_name: server_name.to_owned(),
        service_prefix: prefix,
        env,
        resources: prepared.resources.clone(),
        work_dir,
        secret_files,
        mounts,
    };
    tracing::info!(user.name = %user.name, server.name = %server_name, "spawn requested");
    if let Some(warning) = budget_warning {
        push(
            &progress,
            json!({"progress": 0, "budget_warning": true, "message": warning}),
        );
    }
    if let Some(crate::db::Admission::Queued { position }) = admission {
        push(&progress, queue_event(position));
    }
    let task = tokio::spawn(run_spawn(
        Arc::clone(hub),
        server_id,
        spec,
        prepared.resources.nodes,
        progress,
    ));
    let patience = Duration::from_secs_f64(hub.config.slow_spawn_timeout.max(0.0));
    match tokio::time::timeout(patience, task).await {
        Ok(Ok(Ok(()))) => Ok(Outcome::Done),
        Ok(Ok(Err(SpawnFailure::Refused(message)))) => Err(HubError::BadRequest(message)),
        Ok(Ok(Err(SpawnFailure::Failed(message)))) => Err(HubError::Spawner(message)),
        Ok(Err(join)) => Err(HubError::Spawner(format!("Spawn task failed: {join}"))),
        Err(_) => Ok(Outcome::Pending),
    }
}

/// Why a spawn ended without a server.
enum SpawnFailure {
    /// The backend refused the request as it was given ([`spawner::SpawnerError::Rejected`]):
    /// its message says what to change, and a request still waiting for the answer gets a 400.
    Refused(String),
    /// Anything else.
    Failed(String),
}

/// The spawn itself, in the background: launch, save state, wait for HTTP, route, mark ready.
/// On failure everything is undone and the progress stream ends with `failed`.
async fn run_spawn(
    hub: Arc<Services>,
    server_id: i64,
    spec: SpawnSpec,
    nodes: u32,
    progress: watch::Sender<ProgressLog>,
) -> Result<(), SpawnFailure> {
    // A start that waits in line for capacity hears its place until it is admitted (or is
    // cancelled: then its reservation is gone and the start ends here).
    if let Err(message) = super::admission::wait_for_turn(&hub, server_id, |position| {
        push(&progress, queue_event(position));
    })
    .await
    {
        return fail_spawn(&hub, server_id, &spec, Vec::new(), &progress, message)
            .await
            .map_err(SpawnFailure::Failed);
    }
    // Held until the server is ready or has failed; the timeouts below count from here.
    let admission = hub.start_queue.admit(nodes, &progress).await;
    let started_at = std::time::Instant::now();
    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<ProgressEvent>();
    let forward = {
        let progress = progress.clone();
        tokio::spawn(async move {
            while let Some(ev) = events_rx.recv().await {
                push(
                    &progress,
                    json!({"progress": ev.progress.min(99), "message": ev.message}),
                );
            }
        })
    };
    let start_timeout = Duration::from_secs_f64(hub.config.spawner.start_timeout.max(0.1));
    let launched = tokio::time::timeout(start_timeout, hub.spawner.start(&spec, events_tx)).await;
    // Every route added, so that a failure removes exactly those.
    let mut routed: Vec<String> = Vec::new();
    let mut refused = false;
    let result: Result<(), String> = async {
        let started = match launched {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => {
                refused = matches!(e, spawner::SpawnerError::Rejected(_));
                return Err(e.to_string());
            }
            Err(_) => {
                return Err(format!(
                    "Spawner start timed out after {} seconds",
                    start_timeout.as_secs_f64()
                ))
            }
        };
        hub.store
            .set_server_launched(server_id, &started.url, &started.state)
            .await
            .map_err(|e| e.to_string())?;
        let check = format!(
            "{}{}api",
            started.url.trim_end_matches('/'),
            spec.service_prefix
        );
        let http_timeout = Duration::from_secs_f64(hub.config.spawner.http_timeout.max(0.1));
        if let Err(e) =
            spawner::wait_until_ready(hub.spawner.as_ref(), &started.state, &check, http_timeout)
                .await
        {
            let _ = hub.spawner.stop(&started.state, hub.stop_grace()).await;
            return Err(format!("Server at {} didn't respond: {e}", started.url));
        }
        for (path, target) in clusters::routes(&spec.service_prefix, &started.url, &started.nodes) {
            if let Err(e) = hub
                .proxy
                .add_route(&path, &target, route_data(&spec.user, &spec.server_name))
                .await
            {
                let _ = hub.spawner.stop(&started.state, hub.stop_grace()).await;
                return Err(format!("Adding the proxy route {path} failed: {e}"));
            }
            routed.push(path);
        }
        hub.store
            .set_server_status(server_id, ServerStatus::Running)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
    .await;
    drop(admission);
    forward.abort();
    let key = full_name(&spec.user, &spec.server_name);
    match &result {
        Ok(()) => {
            tracing::info!(user.name = %spec.user, server.name = %spec.server_name,
                elapsed_ms = started_at.elapsed().as_millis() as u64, "server ready");
            let url = spec.service_prefix.clone();
            finish(
                &progress,
                json!({"progress": 100, "ready": true, "message": format!("Server ready at {url}"),
                       "html_message": format!("Server ready at <a href=\"{url}\">{url}</a>"), "url": url}),
                false,
            );
        }
        Err(message) => {
            fail_spawn_cleanup(&hub, server_id, &spec, routed, &progress, message).await;
        }
    }
    // Keep the finished log a little while for late progress subscribers.
    let live = Arc::clone(&hub);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        if live.live.subscribe_is_same(&key, &progress) {
            live.live.forget(&key);
        }
    });
    result.map_err(|message| {
        if refused {
            SpawnFailure::Refused(message)
        } else {
            SpawnFailure::Failed(message)
        }
    })
}

/// The progress event of a start waiting in line.
fn queue_event(position: i64) -> Value {
    json!({
        "progress": 0,
        "queue_position": position,
        "message": format!("Waiting for free capacity: number {position} in line"),
    })
}

/// Undoes a spawn that failed: routes, reservation (its ledger closed), token, client, row;
/// the progress stream ends with `failed`.
async fn fail_spawn_cleanup(
    hub: &Arc<Services>,
    server_id: i64,
    spec: &SpawnSpec,
    mut routed: Vec<String>,
    progress: &watch::Sender<ProgressLog>,
    message: &str,
) {
    tracing::warn!(user.name = %spec.user, server.name = %spec.server_name, error = %message, "spawn failed");
    routed.push(spec.service_prefix.clone());
    for path in &routed {
        let _ = hub.proxy.delete_route(path).await;
    }
    if let Err(e) = super::metering::close_run(hub, server_id, None).await {
        tracing::error!(error = %e, "could not release the failed spawn's reservation");
    }
    if let Err(e) = hub.store.finish_stop(server_id).await {
        tracing::error!(error = %e, "could not record the failed spawn");
    }
    hub.invalidate_auth();
    finish(
        progress,
        json!({"progress": 100, "failed": true, "message": format!("Spawn failed: {message}")}),
        true,
    );
}

/// Ends a spawn that failed before it launched anything.
async fn fail_spawn(
    hub: &Arc<Services>,
    server_id: i64,
    spec: &SpawnSpec,
    routed: Vec<String>,
    progress: &watch::Sender<ProgressLog>,
    message: String,
) -> Result<(), String> {
    fail_spawn_cleanup(hub, server_id, spec, routed, progress, &message).await;
    Err(message)
}

impl LiveServers {
    fn subscribe_is_same(&self, key: &str, tx: &watch::Sender<ProgressLog>) -> bool {
        self.progress
            .lock()
            .ok()
            .and_then(|m| m.get(key).map(|t| t.same_channel(tx)))
            .unwrap_or(false)
    }
}

/// Stops a user's server. 204-like `Done` when stopped (or not running), `Pending` after
/// `slow_stop_timeout`; 400 when a spawn is pending.
pub async fn stop(hub: &Arc<Services>, user: &UserRow, server: &ServerRow) -> HubResult<Outcome> {
    match server.status {
        ServerStatus::Stopped => return Ok(Outcome::Done),
        ServerStatus::Stopping => return Ok(Outcome::Pending),
        ServerStatus::Spawning => {
            // A start still waiting in line for capacity is withdrawn; its spawn task sees
            // that and cleans up.
            if hub.store.cancel_queued(server.id).await? {
                hub.meter.queue_changed.notify_waiters();
                tracing::info!(user.name = %user.name, server.name = %server.name, "waiting start cancelled");
                return Ok(Outcome::Pending);
            }
            let name = if server.name.is_empty() {
                user.name.clone()
            } else {
                full_name(&user.name, &server.name)
            };
            return Err(HubError::BadRequest(format!(
                "{name} is pending {}, please wait",
                server.status
            )));
        }
        ServerStatus::Running => {}
    }
    hub.store
        .set_server_status(server.id, ServerStatus::Stopping)
        .await?;
    let task = tokio::spawn(run_stop(Arc::clone(hub), user.name.clone(), server.clone()));
    let patience = Duration::from_secs_f64(hub.config.slow_stop_timeout.max(0.0));
    match tokio::time::timeout(patience, task).await {
        Ok(Ok(Ok(()))) => Ok(Outcome::Done),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(join)) => Err(HubError::Spawner(format!("Stop task failed: {join}"))),
        Err(_) => Ok(Outcome::Pending),
    }
}

async fn run_stop(hub: Arc<Services>, user: String, server: ServerRow) -> HubResult<()> {
    for path in route_paths(&hub, &user, &server) {
        if let Err(e) = hub.proxy.delete_route(&path).await {
            tracing::warn!(route.path = %path, error = %e, "could not delete route");
        }
    }
    if let Some(state) = server
        .state
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    {
        if let Err(e) = hub.spawner.stop(&state, hub.stop_grace()).await {
            tracing::error!(user.name = %user, server.name = %server.name, error = %e, "stopping failed");
            hub.store
                .set_server_status(server.id, ServerStatus::Running)
                .await?;
            return Err(HubError::Spawner(format!(
                "Stopping the server failed: {e}"
            )));
        }
    }
    super::metering::close_run(&hub, server.id, server.state.as_deref()).await?;
    hub.store.finish_stop(server.id).await?;
    hub.invalidate_auth();
    hub.live.forget(&full_name(&user, &server.name));
    tracing::info!(user.name = %user, server.name = %server.name, "server stopped");
    Ok(())
}

/// The data the hub keeps beside a server's routes (the proxy adds `last_activity`).
fn route_data(user: &str, server_name: &str) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("user".into(), Value::String(user.to_owned()));
    data.insert("server_name".into(), Value::String(server_name.to_owned()));
    data
}

/// The routes a launched server should have: `(path, target)` per node, or the server's one.
fn server_routes(hub: &Services, user: &str, server: &ServerRow) -> Vec<(String, String)> {
    let Some(url) = server.url.as_deref() else {
        return Vec::new();
    };
    let nodes = clusters::nodes_of(hub.spawner.as_ref(), server.state.as_deref());
    clusters::routes(&service_prefix(user, &server.name), url, &nodes)
}

/// Every route path a server may have: its prefix and its nodes'.
fn route_paths(hub: &Services, user: &str, server: &ServerRow) -> Vec<String> {
    let prefix = service_prefix(user, &server.name);
    let mut paths: Vec<String> = server_routes(hub, user, server)
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| *p != prefix)
        .collect();
    paths.insert(0, prefix);
    paths
}

/// Cleans up after a server that died on its own.
async fn reap(hub: &Arc<Services>, user: &str, server: &ServerRow, why: &str) {
    tracing::warn!(user.name = %user, server.name = %server.name, reason = why, "server is gone; cleaning up");
    for path in route_paths(hub, user, server) {
        let _ = hub.proxy.delete_route(&path).await;
    }
    // Its nodes' real stop times close the ledger, while the backend still knows them.
    if let Err(e) = super::metering::close_run(hub, server.id, server.state.as_deref()).await {
        tracing::error!(error = %e, "could not release a dead server's reservation");
    }
    if let Err(e) = hub.store.finish_stop(server.id).await {
        tracing::error!(error = %e, "could not record a dead server");
    }
    hub.invalidate_auth();
}

/// At start-up: every server the database says is active is polled; live ones answer HTTP and are
/// routed again (re-adopted), dead ones are cleaned up.
pub async fn readopt(hub: &Arc<Services>) -> HubResult<()> {
    let active = hub.store.active_servers().await?;
    let mut tasks = Vec::new();
    for (user, server) in active {
        let hub = Arc::clone(hub);
        tasks.push(tokio::spawn(async move {
            let state = server.state.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok());
            let (Some(state), Some(url)) = (state, server.url.clone()) else {
                reap(&hub, &user, &server, "it never finished launching").await;
                return;
            };
            match hub.spawner.poll(&state).await {
                Ok(None) => {}
                Ok(Some(code)) => return reap(&hub, &user, &server, &format!("exited with status {code}")).await,
                Err(e) => return reap(&hub, &user, &server, &format!("poll failed: {e}")).await,
            }
            let prefix = service_prefix(&user, &server.name);
            let check = format!("{}{}api", url.trim_end_matches('/'), prefix);
            let timeout = Duration::from_secs_f64(hub.config.spawner.http_timeout.max(0.1));
            if let Err(e) = spawner::wait_for_http_server(&check, timeout).await {
                let _ = hub.spawner.stop(&state, hub.stop_grace()).await;
                return reap(&hub, &user, &server, &format!("not answering: {e}")).await;
            }
            // A server that answers but cannot reach the hub cannot open a kernel: it is not
            // usable, and calling it ready would hide that.
            if let Err(e) = hub.spawner.check_hub_reachable(&state).await {
                tracing::error!(
                    user.name = %user,
                    server.name = %server.name,
                    error = %e,
                    "a running server cannot reach the hub after the restart; stopping it \
                     (its work directory is kept)"
                );
                let _ = hub.spawner.stop(&state, hub.stop_grace()).await;
                return reap(&hub, &user, &server, &format!("unusable: {e}")).await;
            }
            for (path, target) in server_routes(&hub, &user, &server) {
                if let Err(e) = hub.proxy.add_route(&path, &target, route_data(&user, &server.name)).await {
                    tracing::error!(route.path = %path, error = %e, "could not route a re-adopted server");
                    return;
                }
            }
            if let Err(e) = hub.store.set_server_status(server.id, ServerStatus::Running).await {
                tracing::error!(error = %e, "could not mark a re-adopted server ready");
            }
            tracing::info!(user.name = %user, server.name = %server.name, "re-adopted running server");
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// One round of liveness polling of ready servers.
pub async fn poll_once(hub: &Arc<Services>) -> HubResult<()> {
    for (user, server) in hub.store.active_servers().await? {
        if server.status != ServerStatus::Running {
            continue;
        }
        let Some(state) = server
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
        else {
            continue;
        };
        match hub.spawner.poll(&state).await {
            Ok(None) => {}
            Ok(Some(code)) => {
                reap(hub, &user, &server, &format!("exited with status {code}")).await
            }
            Err(e) => tracing::warn!(user.name = %user, error = %e, "poll failed"),
        }
    }
    Ok(())
}

/// Copies the proxy's traffic-based `last_activity` into users and servers.
pub async fn sync_proxy_activity(hub: &Arc<Services>) -> HubResult<()> {
    let routes = hub
        .proxy
        .get_all_routes()
        .await
        .map_err(|e| HubError::Spawner(e.to_string()))?;
    for route in routes.values() {
        let (Some(user), Some(server), Some(t)) = (
            route.data.get("user").and_then(Value::as_str),
            route.data.get("server_name").and_then(Value::as_str),
            route
                .data
                .get("last_activity")
                .and_then(Value::as_str)
                .and_then(clock::parse_iso),
        ) else {
            continue;
        };
        if let Some(u) = hub.store.user(user).await? {
            if let Some(s) = hub.store.server(u.id, server).await? {
                hub.store.touch_server(s.id, t).await?;
            }
            hub.store.touch_user(u.id, t).await?;
        }
    }
    Ok(())
}

/// Makes the route table match the ready servers: adds missing routes, removes stale ones. With
/// an external proxy, also keeps its default route `/` pointing at the hub. Routes the hub did
/// not make (no `user` in their data) are left alone, as JupyterHub leaves other routes in CHP.
pub async fn check_routes(hub: &Arc<Services>) -> HubResult<()> {
    let routes = hub
        .proxy
        .get_all_routes()
        .await
        .map_err(|e| HubError::Spawner(e.to_string()))?;
    if let Some(target) = &hub.hub_route_target {
        if routes
            .get("/")
            .is_none_or(|r| r.target != *target || r.data.get("hub") != Some(&Value::Bool(true)))
        {
            let mut data = serde_json::Map::new();
            data.insert("hub".into(), Value::Bool(true));
            data.insert("jupyterhub".into(), Value::Bool(true));
            hub.proxy
                .add_route("/", target, data)
                .await
                .map_err(|e| HubError::Spawner(e.to_string()))?;
            tracing::info!(target = %target, "routed / to the hub");
        }
    }
    // Servers starting or stopping keep whatever route they have: a spawn adds its route just
    // before it is marked running.
    let mut wanted = std::collections::BTreeSet::new();
    for (user, server) in hub.store.active_servers().await? {
        wanted.extend(route_paths(hub, &user, &server));
        if server.status != ServerStatus::Running {
            continue;
        }
        for (path, target) in server_routes(hub, &user, &server) {
            if routes.get(&path).is_some_and(|r| r.target == target) {
                continue;
            }
            hub.proxy
                .add_route(&path, &target, route_data(&user, &server.name))
                .await
                .map_err(|e| HubError::Spawner(e.to_string()))?;
        }
    }
    for (spec, route) in &routes {
        if !wanted.contains(spec) && route.data.contains_key("user") {
            // Pending spawns route themselves when ready; only routes of servers that are gone go.
            hub.proxy
                .delete_route(spec)
                .await
                .map_err(|e| HubError::Spawner(e.to_string()))?;
        }
    }
    Ok(())
}
