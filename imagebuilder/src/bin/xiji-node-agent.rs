//! `xiji-node-agent`: saves containers of this machine as images for a hub on another one
//! (a DaemonSet on every Kubernetes node). See `docs/saving-images.md`, "On Kubernetes: the
//! node agent".

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use imagebuilder::agent::{thaw_recorded, AgentConfig, HostPaths, NodeAgent};

/// Saves this machine's containers as OCI images, for the Xiji hub.
#[derive(Debug, Parser)]
#[command(name = "xiji-node-agent", version)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "0.0.0.0:8585", env = "XIJI_AGENT_LISTEN")]
    listen: SocketAddr,
    /// File holding the bearer token every request must carry (trailing newline ignored).
    #[arg(long, env = "XIJI_AGENT_TOKEN_FILE")]
    token_file: PathBuf,
    /// The host's /proc (the agent needs the host's PID namespace).
    #[arg(long, default_value = "/proc")]
    host_proc: PathBuf,
    /// Where the host's filesystem is seen: a container's writable layer (a host path from its
    /// mountinfo) is read below it. `/` when the host's container storage
    /// (/var/lib/containerd) is mounted into the agent at the same path.
    #[arg(long, default_value = "/")]
    host_root: PathBuf,
    /// The host's cgroup filesystem (for freezing a container while it is read).
    #[arg(long, default_value = "/sys/fs/cgroup")]
    host_cgroup: PathBuf,
    /// Registry host (`host[:port]`) spoken to over plain HTTP; repeatable. Loopback registries
    /// always are.
    #[arg(long = "plain-http", value_name = "HOST")]
    plain_http: Vec<String>,
    /// Where temporary layer files go (needs room for a compressed layer); default: the
    /// system's temporary directory.
    #[arg(long)]
    temp_dir: Option<PathBuf>,
    /// Saves running at once on this machine; more wait in `queued`.
    #[arg(long, default_value_t = 1)]
    max_concurrent_jobs: usize,
    /// Minutes a finished job stays readable.
    #[arg(long, default_value_t = 60)]
    job_retention_minutes: u64,
    /// A directory that outlives the agent's process (an emptyDir): frozen cgroups are recorded
    /// there, so a restarted agent thaws what a killed one left frozen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading the token file {}", args.token_file.display()))?
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    if token.trim().len() < 16 {
        bail!(
            "the token in {} is shorter than 16 characters",
            args.token_file.display()
        );
    }
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the state directory {}", dir.display()))?;
        let thawed = thaw_recorded(dir);
        if thawed > 0 {
            tracing::warn!(
                containers = thawed,
                "thawed containers a previous run left frozen"
            );
        }
    }
    let agent = NodeAgent::new(AgentConfig {
        token,
        host: HostPaths {
            proc: args.host_proc,
            root: args.host_root,
            cgroup: args.host_cgroup,
        },
        temp_dir: args.temp_dir,
        max_concurrent_jobs: args.max_concurrent_jobs,
        plain_http: args.plain_http,
        job_retention: Duration::from_secs(args.job_retention_minutes.saturating_mul(60)),
        state_dir: args.state_dir,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, "node agent ready");
    axum::serve(listener, agent.router())
        .with_graceful_shutdown(stopped())
        .await
        .context("serving")?;
    // Every running save is cancelled and awaited: no container stays frozen.
    agent.shutdown(Duration::from_secs(20)).await;
    tracing::info!("node agent stopped");
    Ok(())
}

/// SIGTERM (Kubernetes stopping the pod) or SIGINT.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot watch for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
