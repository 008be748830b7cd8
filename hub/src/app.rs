//! The running hub: start-up (its shared context, `domain::Services`, built from the configuration), (database, first admin, services and roles
//! from configuration, re-adoption of running servers), the listener and the background loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use spawner::docker::{DockerConfig, DockerSpawner, NodeAddress};
use spawner::kubernetes::{
    ApiAccess, KubernetesConfig, KubernetesSpawner, Toleration, VolumeMapping, VolumeSource,
};
use spawner::local::{LocalConfig, LocalSpawner};
use spawner::Spawner;

use crate::config::{read_secret_file, Config, ProxyMode};
use crate::db::{AccountRole, ServiceRow, Store, UserUpdate};
use crate::domain::accounts::{self, LoginThrottle};
use crate::domain::identity::AuthCache;
use crate::domain::servers::{self, LiveServers};
use crate::domain::start_queue::StartQueue;
use crate::domain::tokens::{self, hash_secret};
use crate::domain::{names, Services};
use crate::{clock, rbac};

/// Opens the database and prepares everything before listening (running servers are re-adopted
/// by [`run`] once the hub answers, see [`servers::readopt`]).
pub async fn prepare(config: Config, listener_addr: SocketAddr) -> anyhow::Result<Arc<Services>> {
    let store = open_store(&config).await?;
    prepare_with_store(config, store, listener_addr).await
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(Store::connect(&config.database_url()).await?)
}

async fn prepare_with_store(
    config: Config,
    store: Store,
    listener_addr: SocketAddr,
) -> anyhow::Result<Arc<Services>> {
    let secret = match store.setting("secret").await? {
        Some(s) => s,
        None => {
            let s = tokens::random_hex(32);
            store.set_setting("secret", &s).await?;
            s
        }
    };
    ensure_first_admin(&config, &store).await?;
    crate::domain::storage_pools::ensure_default(&store, &config.data_dir)
        .await
        .map_err(|e| anyhow::anyhow!("cannot add the default storage pool: {e}"))?;
    load_services_and_roles(&config, &store).await?;
    let spawner = make_spawner(&config, &store).await?;
    let save_images = crate::domain::save_image::SaveImages::from_config(&config.images)?
        .with_agent_token_file(config.spawner.kubernetes.agent_token_file.as_deref())?;
    let routes = Arc::new(proxy::RouteTable::new());
    let (driven, hub_route_target): (Arc<dyn proxy::Proxy>, Option<String>) =
        match config.proxy.mode {
            ProxyMode::Embedded => (Arc::clone(&routes) as Arc<dyn proxy::Proxy>, None),
            ProxyMode::External => (
                Arc::new(proxy::ChpClient::new(
                    &config.proxy.api_url,
                    config.proxy.token()?,
                )?),
                Some(config.proxy.hub_target(listener_addr)),
            ),
        };
    let start_queue = StartQueue::new(config.spawner.concurrent_starts);
    let meter = crate::domain::metering::Meter::new(config.metering.tz()?);
    let campus = if config.auth.campus() {
        let client =
            crate::domain::campus_login::CampusLogin::new(&config.auth.oidc, config.auth.kind)
                .map_err(|e| anyhow::anyhow!("campus login: {e}"))?;
        Some(Arc::new(client))
    } else {
        None
    };
    let auth_states = match (config.auth.enable_auth_state, config.auth.crypt_key_text()?) {
        (true, Some(keys)) => Some(
            crate::domain::auth_state::AuthStates::from_keys(&keys)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        _ => None,
    };
    let hub = Arc::new(Services {
        throttle: LoginThrottle::new(
            config.login_throttle_attempts,
            Duration::from_secs(config.login_throttle_window),
        ),
        config,
        store,
        spawner,
        proxy: driven,
        hub_route_target,
        routes,
        live: LiveServers::default(),
        start_queue,
        auth: AuthCache::default(),
        local_addr: listener_addr,
        secret,
        save_images,
        release: crate::domain::release::ReleaseWatch::default(),
        meter,
        campus,
        auth_states,
    });
    Ok(hub)
}

async fn make_spawner(config: &Config, store: &Store) -> anyhow::Result<Arc<dyn Spawner>> {
    match config.spawner.backend.as_str() {
        "docker" => return make_docker_spawner(config, store).await,
        "kubernetes" => return make_kubernetes_spawner(config, store).await,
        _ => {}
    }
    let local = &config.spawner.local;
    // A venv the operator named and already filled is used as it is: reinstalling the default
    // packages into it could change its JupyterHub version under them.
    let given = local
        .venv
        .as_ref()
        .map(|v| v.join("bin").join("jupyterhub-singleuser"))
        .filter(|exe| exe.is_file());
    let cmd = if let (true, Some(exe)) = (local.cmd.is_empty(), given) {
        if let Some(venv) = &local.venv {
            // No news prompt in JupyterLab (a venv the operator cannot write keeps it).
            if let Err(e) = LocalSpawner::ensure_lab_overrides(venv).await {
                tracing::warn!(error = %e, "cannot turn JupyterLab's news prompt off");
            }
        }
        vec![exe.display().to_string()]
    } else if local.cmd.is_empty() {
        let venv = config.local_venv();
        println!("Checking the notebook environment in {} (the first start installs it; this takes a few minutes)...", venv.display());
        let singleuser =
            LocalSpawner::ensure_python_env(&venv, &local.python, &local.packages).await?;
        vec![singleuser.display().to_string()]
    } else {
        local.cmd.clone()
    };
    let mut cfg = LocalConfig::new(
        cmd,
        config.data_dir.join("home"),
        config.data_dir.join("logs"),
    );
    cfg.args = local.args.clone();
    cfg.ip = local
        .ip
        .parse()
        .map_err(|e| anyhow::anyhow!("spawner.local.ip {:?}: {e}", local.ip))?;
    Ok(Arc::new(LocalSpawner::new(cfg)))
}

/// Connects to Docker Engine, then removes containers and networks carrying this hub's labels
/// that no stored server knows (left by a hub killed in the middle of a start).
async fn make_docker_spawner(config: &Config, store: &Store) -> anyhow::Result<Arc<dyn Spawner>> {
    let d = &config.spawner.docker;
    let work_root = d
        .work_root
        .clone()
        .unwrap_or_else(|| config.data_dir.join("work"));
    let mut cfg = DockerConfig::new(d.image.clone(), work_root);
    cfg.instance = d.instance.clone();
    if !d.cmd.is_empty() {
        cfg.cmd = d.cmd.clone();
    }
    cfg.hub_connect_url = d.hub_connect_url.clone();
    cfg.environment = d.environment.clone();
    cfg.node_address = match d.node_address.as_str() {
        "loopback" => NodeAddress::PublishedOnLoopback,
        _ => NodeAddress::ContainerIp,
    };
    cfg.ready_timeout = Duration::from_secs_f64(d.ready_timeout.max(1.0));
    cfg.max_nodes = d.max_nodes;
    cfg.default_cpus = d.default_cpus;
    cfg.default_memory_bytes = d.default_memory_mb.saturating_mul(1024 * 1024);
    cfg.max_storage_bytes = d.max_storage_gb.saturating_mul(1024 * 1024 * 1024);
    cfg.pids_limit = (d.pids_limit > 0).then_some(d.pids_limit);
    cfg.gpus = d.gpus;
    cfg.cpu_overcommit = d.cpu_overcommit;
    cfg.sudo = d.sudo;
    // Absolute since the configuration was loaded; read again at each cluster start.
    cfg.ca_bundle = d.ca_bundle_path();
    if let Some(bundle) = &cfg.ca_bundle {
        std::fs::metadata(bundle).map_err(|e| {
            anyhow::anyhow!(
                "spawner.docker.ca_bundle {}: {e} (set it to \"\" to give nodes no CA bundle)",
                bundle.display()
            )
        })?;
        tracing::info!(ca_bundle = %bundle.display(), "nodes get this CA bundle");
    }
    let spawner = DockerSpawner::connect(cfg).await?;
    let known = stored_cluster_ids(store, DockerSpawner::cluster_id_from_state).await?;
    match spawner.reap_orphans(&known).await {
        Ok(report) => tracing::info!(?report, "removed Docker leftovers unknown to the database"),
        Err(e) => tracing::warn!(error = %e, "could not look for Docker leftovers"),
    }
    Ok(Arc::new(spawner))
}

/// Connects to the Kubernetes API server, then removes the objects carrying this hub's labels
/// that no stored server knows (left by a hub killed in the middle of a start).
async fn make_kubernetes_spawner(
    config: &Config,
    store: &Store,
) -> anyhow::Result<Arc<dyn Spawner>> {
    let k = &config.spawner.kubernetes;
    let api = match (&k.api_url, &k.kubeconfig) {
        (Some(url), _) => ApiAccess::Url(url.clone()),
        (None, Some(path)) => ApiAccess::Kubeconfig(path.clone()),
        (None, None) => ApiAccess::Infer,
    };
    let work_root = k
        .work_root
        .clone()
        .unwrap_or_else(|| config.data_dir.join("work"));
    let mut cfg = KubernetesConfig::new(api, k.image.clone(), work_root);
    cfg.namespace = k.namespace.clone();
    cfg.instance = k.instance.clone();
    cfg.image_pull_policy = k.image_pull_policy.clone();
    cfg.image_pull_secrets = k.image_pull_secrets.clone();
    if !k.cmd.is_empty() {
        cfg.cmd = k.cmd.clone();
    }
    cfg.hub_connect_url = k.hub_connect_url.clone();
    cfg.environment = k.environment.clone();
    cfg.gpu_resource = k.gpu_resource.clone();
    cfg.pool_label = k.pool_label.clone();
    cfg.default_pool = k.default_pool.clone();
    cfg.tolerations = k
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
        })
        .collect();
    cfg.runtime_class = k.runtime_class.clone();
    cfg.scheduler_name = k.scheduler_name.clone();
    cfg.volumes = k
        .volumes
        .iter()
        .filter_map(|v| {
            let source = if let Some(claim_name) = &v.claim_name {
                VolumeSource::Claim {
                    claim_name: claim_name.clone(),
                }
            } else if let (Some(server), Some(path)) = (&v.nfs_server, &v.nfs_path) {
                VolumeSource::Nfs {
                    server: server.clone(),
                    path: path.clone(),
                }
            } else {
                VolumeSource::HostPath {
                    path: v.node_path.clone()?,
                }
            };
            Some(VolumeMapping {
                host_path: v.host_path.clone(),
                source,
            })
        })
        .collect();
    cfg.hub_pod_labels = k.hub_pod_labels.clone();
    cfg.ready_timeout = Duration::from_secs_f64(k.ready_timeout.max(1.0));
    cfg.max_nodes = k.max_nodes;
    cfg.default_cpus = k.default_cpus;
    cfg.default_memory_bytes = k.default_memory_mb.saturating_mul(1024 * 1024);
    cfg.max_storage_bytes = k.max_storage_gb.saturating_mul(1024 * 1024 * 1024);
    cfg.sudo = k.sudo;
    cfg.agent_port = k.agent_port;
    cfg.agent_pod_labels = k.agent_pod_labels.clone();
    cfg.agent_token_file = k.agent_token_file.clone();
    cfg.cluster_domain = k.cluster_domain.clone();
    cfg.ca_bundle = k.ca_bundle.clone();
    let spawner = KubernetesSpawner::connect(cfg).await?;
    let known = stored_cluster_ids(store, KubernetesSpawner::cluster_id_from_state).await?;
    match spawner.reap_orphans(&known).await {
        Ok(report) => {
            tracing::info!(
                ?report,
                "removed Kubernetes leftovers unknown to the database"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not look for Kubernetes leftovers"),
    }
    Ok(Arc::new(spawner))
}

/// The cluster ids in the state blobs of every stored server, as `cluster_id` reads them.
async fn stored_cluster_ids(
    store: &Store,
    cluster_id: fn(&serde_json::Value) -> Option<String>,
) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut known = std::collections::HashSet::new();
    for (_, server) in store.active_servers().await? {
        let state = server
            .state
            .as_deref()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        if let Some(id) = state.as_ref().and_then(cluster_id) {
            known.insert(id);
        }
    }
    Ok(known)
}

/// The IPv4 address of the `docker0` bridge, which every container can reach the host on.
fn docker_bridge_address() -> Option<std::net::IpAddr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        if ifa.interface_name != "docker0" {
            return None;
        }
        ifa.address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in().map(|v4| std::net::IpAddr::V4(v4.ip())))
    })
}

/// The setting that records the address of the containers' hub listener, so that a restarted hub
/// listens where running nodes expect it.
const CONTAINER_LISTENER_SETTING: &str = "spawner.docker.hub_bind";

/// With the docker backend: a listener containers reach the hub's API on (`spawner.docker.
/// hub_bind`, default the `docker0` address on a port chosen at the first start and reused after,
/// as nodes keep the URL they were started with); sets `hub_connect_url` from it.
async fn bind_container_listener(
    config: &mut Config,
    store: &Store,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    if config.spawner.backend != "docker" {
        return Ok(None);
    }
    let d = &mut config.spawner.docker;
    let listener = match (d.hub_bind, &d.hub_connect_url) {
        (Some(addr), _) => tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("spawner.docker.hub_bind {addr}: {e}"))?,
        (None, Some(_)) => return Ok(None),
        (None, None) => {
            let ip = docker_bridge_address().ok_or_else(|| {
                anyhow::anyhow!(
                    "the docker backend needs an address containers reach the hub on: no docker0 \
                     bridge found; set spawner.docker.hub_bind (and hub_connect_url if it differs)"
                )
            })?;
            bind_recorded_or_new(store, ip).await?
        }
    };
    let bound = listener.local_addr()?;
    if d.hub_connect_url.is_none() {
        d.hub_connect_url = Some(format!("http://{bound}"));
    }
    tracing::info!(listen = %bound, "hub API listener for containers");
    Ok(Some(listener))
}

/// Binds the address recorded at an earlier start if it is on `ip`, else a free port on `ip`,
/// and records what it bound.
async fn bind_recorded_or_new(
    store: &Store,
    ip: std::net::IpAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    let recorded = store
        .setting(CONTAINER_LISTENER_SETTING)
        .await?
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .filter(|a| a.ip() == ip);
    if let Some(addr) = recorded {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => tracing::warn!(
                listen = %addr,
                error = %e,
                "cannot listen for containers where the last run did; running clusters started \
                 then cannot reach the hub and will be stopped"
            ),
        }
    }
    let addr = SocketAddr::new(ip, 0);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening for containers on {addr}: {e}"))?;
    store
        .set_setting(
            CONTAINER_LISTENER_SETTING,
            &listener.local_addr()?.to_string(),
        )
        .await?;
    Ok(listener)
}

/// Creates the first administrator on first start; prints generated credentials once.
async fn ensure_first_admin(config: &Config, store: &Store) -> anyhow::Result<()> {
    if store.setting("initialized").await?.is_some() {
        return Ok(());
    }
    let name = names::normalize_user(&config.admin.username);
    names::check_name("user", &name).map_err(|e| anyhow::anyhow!("admin.username: {e}"))?;
    let (password, generated) = match (&config.admin.password, &config.admin.password_file) {
        (Some(p), _) => (p.clone(), false),
        (None, Some(file)) => (read_secret_file(file)?, false),
        (None, None) => (tokens::random_hex(9), true),
    };
    let user = match store.user(&name).await? {
        Some(u) => u,
        None => store.create_user(&name, true, clock::now()).await?,
    };
    store
        .update_user(
            user.id,
            &UserUpdate {
                admin: Some(true),
                account_role: Some(AccountRole::Admin),
                ..Default::default()
            },
        )
        .await?;
    accounts::set_password(store, &user, &password)
        .await
        .map_err(|e| anyhow::anyhow!("admin password: {e}"))?;
    store
        .set_setting("initialized", &clock::iso(clock::now()))
        .await?;
    if generated {
        println!("First administrator created (shown only this once):");
        println!("    user name: {name}");
        println!("    password:  {password}");
    } else {
        println!("First administrator created: {name} (password from the configuration)");
    }
    Ok(())
}

/// Writes configured services (with their tokens) and roles into the database.
async fn load_services_and_roles(config: &Config, store: &Store) -> anyhow::Result<()> {
    let mut service_ids = std::collections::BTreeMap::new();
    for s in &config.services {
        let id = store
            .upsert_service(&ServiceRow {
                id: 0,
                name: s.name.clone(),
                admin: i64::from(s.admin),
                url: s.url.clone(),
                info: serde_json::to_string(&s.info)?,
                display: i64::from(s.display),
            })
            .await?;
        service_ids.insert(s.name.clone(), id);
        let token = match (&s.api_token, &s.api_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(read_secret_file(f)?),
            _ => None,
        };
        // Configured tokens are the only tokens a service has: replace what was there.
        for old in store.tokens_of_service(id).await? {
            store.delete_token(old.id).await?;
        }
        if let Some(token) = token {
            if token.len() < 8 {
                anyhow::bail!(
                    "service {}: api_token must be at least 8 characters",
                    s.name
                );
            }
            store
                .insert_token(&crate::db::NewToken {
                    hashed: &hash_secret(&token),
                    kind: "api",
                    user_id: None,
                    service_id: Some(id),
                    server_id: None,
                    scopes: &["inherit".to_owned()],
                    note: "from the configuration",
                    session_id: None,
                    oauth_client: None,
                    created: clock::now(),
                    expires_at: None,
                })
                .await?;
        }
    }
    let names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
    store.delete_services_except(&names).await?;

    let mut role_names = Vec::new();
    for role in &config.roles {
        rbac::validate_role(rbac::ScopeCatalog::builtin(), &role.name, &role.scopes)
            .map_err(|e| anyhow::anyhow!("role {}: {e}", role.name))?;
        let id = store
            .upsert_role(&role.name, &role.description, &role.scopes)
            .await?;
        let mut users = Vec::new();
        for name in &role.users {
            let name = names::normalize_user(name);
            let user = match store.user(&name).await? {
                Some(u) => u,
                None => store.create_user(&name, false, clock::now()).await?,
            };
            users.push(user.id);
        }
        let mut groups = Vec::new();
        for name in &role.groups {
            let group = match store.group(name).await? {
                Some(g) => g,
                None => store.create_group(name, &serde_json::json!({})).await?,
            };
            groups.push(group.id);
        }
        let mut services = Vec::new();
        for name in &role.services {
            match service_ids.get(name) {
                Some(id) => services.push(*id),
                None => anyhow::bail!("role {}: unknown service {name}", role.name),
            }
        }
        store
            .set_role_holders(id, &users, &groups, &services)
            .await?;
        role_names.push(role.name.clone());
    }
    store.delete_roles_except(&role_names).await?;
    Ok(())
}

/// Runs the hub until SIGINT/SIGTERM. Running servers are left running (they are re-adopted at the
/// next start), like JupyterHub with `cleanup_servers = False`.
///
/// With `[proxy] mode = "external"` the hub listens on `proxy.hub_bind` only (behind the external
/// proxy, whose default route it keeps pointing at itself) and serves no user traffic itself.
pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let container_listener = bind_container_listener(&mut config, &store).await?;
    let external = config.proxy.mode == ProxyMode::External;
    let bind = if external {
        config.proxy.hub_bind
    } else {
        config.bind
    };
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    if external {
        ensure_external_proxy(&config, addr).await?;
    }
    let hub = prepare_with_store(config, store, addr).await?;
    let router = crate::router(Arc::clone(&hub));
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    if let Some(listener) = container_listener {
        // Hub only: no user routes on the address containers can reach.
        let mut stopping = stopping.clone();
        let router = crate::router(Arc::clone(&hub));
        tokio::spawn(async move {
            let stopped = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let table = Arc::new(proxy::RouteTable::new());
            if let Err(e) = proxy::serve(
                listener,
                table,
                router,
                proxy::ProxyConfig::default(),
                stopped,
            )
            .await
            {
                tracing::error!(error = %e, "the containers' hub listener failed");
            }
        });
    }
    let shutdown = async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down; servers keep running");
        let _ = stopping_tx.send(true);
    };
    // Serving starts before re-adoption, which checks that running servers reach the hub.
    let serving = tokio::spawn(proxy::serve(
        listener,
        Arc::clone(&hub.routes),
        router,
        proxy::ProxyConfig {
            kernel_splice: hub.config.proxy.kernel_splice,
            ..proxy::ProxyConfig::default()
        },
        shutdown,
    ));
    // Runs a killed hub left open are metered up to their nodes' real stop times first.
    crate::domain::metering::recover(&hub).await?;
    servers::readopt(&hub).await?;
    // After re-adoption: a save whose node still runs goes on, others end failed.
    crate::domain::save_image::recover(&hub).await?;
    // A fork's copy runs in this process: one left under way by the last is failed and emptied.
    crate::domain::project_forks::recover(&hub).await?;
    // An import cut off by the last process's end leaves a hidden project: removed.
    crate::domain::project_transfer::sweep_interrupted(&hub).await?;
    if external {
        if let Err(e) = servers::check_routes(&hub).await {
            tracing::warn!(error = %e, "could not reconcile the external proxy's routes");
        }
    }
    crate::jobs::spawn_all(&hub);
    let shown = match (&hub.config.public_url, external) {
        (Some(u), _) => u.clone(),
        (None, true) => format!("http://{}/", hub.config.bind),
        (None, false) => hub.internal_url(),
    };
    println!("Xiji is running at {shown}");
    tracing::info!(listen = %addr, "listening");
    serving.await??;
    hub.store.close().await;
    Ok(())
}

/// With an external proxy: if its API does not answer and `proxy.start` is on, starts it
/// (detached, so it outlives the hub) and waits until the API answers.
async fn ensure_external_proxy(config: &Config, hub_addr: SocketAddr) -> anyhow::Result<()> {
    let settings = &config.proxy;
    let token = settings.token()?;
    let client = proxy::ChpClient::new(&settings.api_url, token.clone())?;
    if client.is_reachable().await {
        tracing::info!(api_url = %settings.api_url, "using the running external proxy");
        return Ok(());
    }
    if !settings.start {
        tracing::warn!(
            api_url = %settings.api_url,
            "the external proxy's API does not answer; routes are added once it does"
        );
        return Ok(());
    }
    let api = url::Url::parse(&settings.api_url)?;
    let api_host = api
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("proxy.api_url has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let api_port = api
        .port_or_known_default()
        .ok_or_else(|| anyhow::anyhow!("proxy.api_url has no port"))?;
    let mut argv = if settings.command.is_empty() {
        vec![
            std::env::current_exe()?.display().to_string(),
            "proxy".to_owned(),
        ]
    } else {
        settings.command.clone()
    };
    argv.extend([
        "--ip".to_owned(),
        config.bind.ip().to_string(),
        "--port".to_owned(),
        config.bind.port().to_string(),
        "--api-ip".to_owned(),
        api_host,
        "--api-port".to_owned(),
        api_port.to_string(),
        "--default-target".to_owned(),
        settings.hub_target(hub_addr),
    ]);
    if settings.command.is_empty() && !settings.kernel_splice {
        argv.push("--no-kernel-splice".to_owned());
    }
    let logs = config.data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("proxy.log"))?;
    let mut command = std::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a Ctrl-C or SIGTERM meant for the hub leaves the proxy running.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    match &token {
        Some(t) => command.env(proxy::AUTH_TOKEN_ENV, t),
        None => command.env_remove(proxy::AUTH_TOKEN_ENV),
    };
    let mut child = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the proxy ({}): {e}", argv[0]))?;
    let pid = child.id();
    tracing::info!(pid, command = %argv.join(" "), "started the external proxy");
    // Reap it if it exits while the hub runs.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while tokio::time::Instant::now() < deadline {
        if client.is_reachable().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "the proxy started (pid {pid}) but its API at {} did not answer within 15 s; see {}",
        settings.api_url,
        logs.join("proxy.log").display()
    )
}
