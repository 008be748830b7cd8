//! Benchmark: time from `start` to every node answering HTTP, for clusters of 1, 2 and 4 nodes,
//! against the same containers started directly with `docker run` (same image, command, limits
//! and network layout). Reports the backend's overhead as a ratio.
//!
//! ```sh
//! tests/setup-docker.sh && . .cache/docker-env.sh
//! cargo run -p spawner --example docker_bench -- [rounds]     # default 3 rounds
//! ```
//!
//! Needs root (work directories are handed to uid 1000) and a Docker Engine; the stand-in hub
//! listens on the Docker host's bridge address, as the real hub would.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool, not library code

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use spawner::docker::{DockerConfig, DockerSpawner};
use spawner::{wait_for_http_server, ClusterResources, SpawnSpec, Spawner};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Answers the two calls a single-user server makes to its hub by itself.
async fn stand_in_hub(ip: &str) -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        (
            [("X-JupyterHub-Version", "5.5.1")],
            axum::Json(serde_json::json!({"version": "5.5.1"})),
        )
    });
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn hub_env(user: &str, api: &str) -> BTreeMap<String, String> {
    let prefix = format!("/user/{user}/");
    [
        ("JUPYTERHUB_API_TOKEN", "bench-token".to_owned()),
        ("JUPYTERHUB_CLIENT_ID", format!("jupyterhub-user-{user}")),
        ("JUPYTERHUB_API_URL", api.to_owned()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api}/users/{user}/activity"),
        ),
        ("JUPYTERHUB_BASE_URL", "/".to_owned()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", String::new()),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL",
            format!("{prefix}oauth_callback"),
        ),
        (
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
            format!(r#"["access:servers!server={user}/"]"#),
        ),
        (
            "JUPYTERHUB_OAUTH_SCOPES",
            format!(r#"["access:servers!server={user}/"]"#),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The same cluster by hand: a network and `docker run` per node, then HTTP readiness.
async fn docker_run_cluster(
    image: &str,
    nodes: usize,
    cpus: f64,
    api: &str,
    work: &str,
) -> Duration {
    let begin = Instant::now();
    let net = format!("xiji-bench-direct-{}", std::process::id());
    docker(&["network", "create", &net]);
    let mut urls = Vec::new();
    for k in 0..nodes {
        let user = "bench";
        let prefix = if k == 0 {
            "/user/bench/".to_owned()
        } else {
            format!("/user/bench/node-{k}/")
        };
        let mut env = hub_env(user, api);
        env.insert("JUPYTERHUB_SERVICE_PREFIX".into(), prefix.clone());
        env.insert(
            "JUPYTERHUB_SERVICE_URL".into(),
            format!("http://0.0.0.0:8888{prefix}"),
        );
        let name = format!("{net}-node-{k}");
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &format!("node-{k}"),
            "--network",
            &net,
            "--network-alias",
            &format!("node-{k}"),
            "--cpus",
            &cpus.to_string(),
            "--memory",
            "512m",
            "--memory-swap",
            "512m",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            "1000:1000",
            "--add-host",
            "host.docker.internal:host-gateway",
            "-v",
            &format!("{work}:/home/jovyan/work"),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for (key, value) in env {
            args.push("-e".into());
            args.push(format!("{key}={value}"));
        }
        args.extend(
            [
                image,
                "jupyterhub-singleuser",
                "--ip=0.0.0.0",
                "--port=8888",
            ]
            .map(str::to_owned),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs);
        let ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            &name,
        ]);
        urls.push(format!("http://{ip}:8888{prefix}api"));
    }
    for url in &urls {
        wait_for_http_server(url, Duration::from_secs(120))
            .await
            .unwrap();
    }
    let elapsed = begin.elapsed();
    for k in 0..nodes {
        docker(&["rm", "-f", &format!("{net}-node-{k}")]);
    }
    docker(&["network", "rm", &net]);
    elapsed
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let image = std::env::var("XIJI_TEST_DOCKER_IMAGE")
        .unwrap_or_else(|_| "127.0.0.1:5000/xiji/base-notebook:latest".into());
    let gateway = docker(&[
        "run",
        "--rm",
        "--add-host",
        "host.docker.internal:host-gateway",
        "--entrypoint",
        "getent",
        &image,
        "ahostsv4",
        "host.docker.internal",
    ]);
    let gateway = gateway.split_whitespace().next().unwrap().to_owned();
    let hub = stand_in_hub(&gateway).await;
    let api = format!("http://host.docker.internal:{}/hub/api", hub.port());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("bench");
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(1000), Some(1000)).unwrap();

    let mut cfg = DockerConfig::new(image.clone(), dir.path().to_path_buf());
    cfg.instance = "xiji-bench".into();
    let spawner = DockerSpawner::connect(cfg).await.unwrap();
    let host_cpus = spawner.host().cpus;

    println!("| nodes | docker run (median) | spawner start (median) | ratio |");
    println!("| ---: | ---: | ---: | ---: |");
    for nodes in [1_usize, 2, 4] {
        let cpus = (host_cpus / nodes as f64).min(1.0);
        let mut direct = Vec::new();
        let mut ours = Vec::new();
        for _ in 0..rounds {
            direct
                .push(docker_run_cluster(&image, nodes, cpus, &api, work.to_str().unwrap()).await);
            let spec = SpawnSpec {
                user: "bench".into(),
                server_name: String::new(),
                service_prefix: "/user/bench/".into(),
                env: hub_env("bench", &api),
                resources: ClusterResources {
                    image: None,
                    nodes: u32::try_from(nodes).unwrap(),
                    cpus: Some(cpus),
                    memory_bytes: Some(512 << 20),
                    gpus: 0,
                    storage_bytes: None,
                    pool: None,
                },
                work_dir: Some(work.clone()),
                secret_files: Vec::new(),
                mounts: Vec::new(),
            };
            let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
            let begin = Instant::now();
            let started = spawner.start(&spec, tx).await.unwrap();
            ours.push(begin.elapsed());
            spawner
                .stop(&started.state, Duration::from_secs(2))
                .await
                .unwrap();
        }
        direct.sort();
        ours.sort();
        let (d, o) = (direct[rounds / 2], ours[rounds / 2]);
        println!(
            "| {nodes} | {:.2} s | {:.2} s | {:.2} |",
            d.as_secs_f64(),
            o.as_secs_f64(),
            o.as_secs_f64() / d.as_secs_f64()
        );
    }
}
