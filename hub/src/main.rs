//! `xiji`: runs the hub. Configuration: defaults → TOML file → `XIJI_*` environment → flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use hub::config::{Config, Overrides};

/// Xiji: a JupyterHub-compatible compute hub for universities.
#[derive(Debug, Parser)]
#[command(name = "xiji", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file (every key: docs/configuration.md).
    #[arg(long, short, env = "XIJI_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8000 or 0.0.0.0:8000.
    #[arg(long, env = "XIJI_BIND", global = true)]
    bind: Option<SocketAddr>,
    /// Directory for the SQLite database, logs, users' folders and the notebook venv.
    #[arg(long, env = "XIJI_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://USER:PASS@HOST/DB.
    #[arg(long, env = "XIJI_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Public URL users reach, e.g. https://xiji.example.edu/.
    #[arg(long, env = "XIJI_PUBLIC_URL", global = true)]
    public_url: Option<String>,
    /// User name of the first administrator (created on first start).
    #[arg(long, env = "XIJI_ADMIN_USERNAME", global = true)]
    admin_username: Option<String>,
    /// File holding the first administrator's password.
    #[arg(long, env = "XIJI_ADMIN_PASSWORD_FILE", global = true)]
    admin_password_file: Option<PathBuf>,
    /// Log filter, e.g. info or hub=debug,info.
    #[arg(long, env = "XIJI_LOG", global = true)]
    log: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (the default).
    Serve,
    /// Run Xiji's proxy on its own, with configurable-http-proxy's REST API (the same as the
    /// `xiji-proxy` binary); for `[proxy] mode = "external"` or JupyterHub.
    Proxy(Box<proxy::StandaloneArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Proxy(args)) = cli.command {
        proxy::init_logging(&args.log_level);
        return Ok(proxy::run_standalone(*args).await?);
    }
    let overrides = Overrides {
        bind: cli.bind,
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        public_url: cli.public_url,
        admin_username: cli.admin_username,
        admin_password: std::env::var("XIJI_ADMIN_PASSWORD").ok(),
        admin_password_file: cli.admin_password_file,
        log: cli.log,
    };
    let config = Config::load(cli.config.as_deref(), overrides)?;
    // A log that cannot be written (a full disk) loses lines; it must not fail the request that
    // logged them, as tracing-subscriber's fallback report to stderr would then panic.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(proxy::colour_on_stderr())
        .log_internal_errors(false)
        .init();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => hub::app::run(config).await,
        Command::Proxy(_) => Ok(()),
    }
}
