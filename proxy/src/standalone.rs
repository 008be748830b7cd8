//! The standalone proxy (`xiji-proxy`, `xiji proxy`): the same [`serve`](crate::serve) as the
//! embedded one, with CHP's REST API on a second listener and CHP's command-line options.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{serve_api, serve_metrics};
use crate::config::ProxyConfig;
use crate::error::ProxyError;
use crate::metrics::ProxyMetrics;
use crate::pages::{ErrorPages, NotFound};
use crate::server::serve_on_threads;
use crate::table::{Proxy, RouteTable};

/// The environment variable holding the API token, as for CHP.
pub const AUTH_TOKEN_ENV: &str = "CONFIGPROXY_AUTH_TOKEN";

/// Options of the standalone proxy; the names are configurable-http-proxy's.
#[derive(Debug, Clone, clap::Args)]
pub struct StandaloneArgs {
    /// Public-facing IP of the proxy.
    #[arg(long, default_value = "0.0.0.0")]
    pub ip: IpAddr,
    /// Public-facing port of the proxy.
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Inward-facing IP for the REST API.
    #[arg(long = "api-ip", default_value = "127.0.0.1")]
    pub api_ip: IpAddr,
    /// Inward-facing port for the REST API [default: port + 1].
    #[arg(long = "api-port")]
    pub api_port: Option<u16>,
    /// Where every request no other route matches goes (a route for `/`), e.g. the hub.
    #[arg(long = "default-target")]
    pub default_target: Option<String>,
    /// Where error pages come from: `{error-target}/{code}?url={path}`.
    #[arg(long = "error-target")]
    pub error_target: Option<String>,
    /// TLS private key (PEM) for the public listener.
    #[arg(long = "ssl-key", requires = "ssl_cert")]
    pub ssl_key: Option<PathBuf>,
    /// TLS certificate chain (PEM) for the public listener.
    #[arg(long = "ssl-cert", requires = "ssl_key")]
    pub ssl_cert: Option<PathBuf>,
    /// Do not add `X-Forwarded-*` headers.
    #[arg(long = "no-x-forward")]
    pub no_x_forward: bool,
    /// Route by host: routespecs start with the host name (`/example.org/user/alice`).
    #[arg(long = "host-routing")]
    pub host_routing: bool,
    /// Milliseconds to wait for a backend's response headers (0: forever).
    #[arg(long, default_value_t = 300_000)]
    pub timeout: u64,
    /// Address of the metrics server (Prometheus' text format at `/metrics`).
    #[arg(long = "metrics-ip", default_value = "127.0.0.1")]
    pub metrics_ip: IpAddr,
    /// Port of the metrics server; without it there is none.
    #[arg(long = "metrics-port")]
    pub metrics_port: Option<u16>,
    /// Threads serving the public listener, each with its own connections [default: one per
    /// CPU].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Copy websocket tunnels in user space even where the kernel could splice them.
    #[arg(long = "no-kernel-splice")]
    pub no_kernel_splice: bool,
    /// Log level: error, warn, info, debug or trace (or a `tracing` filter).
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
}

impl StandaloneArgs {
    /// The proxy settings these options give.
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            x_forward: !self.no_x_forward,
            host_routing: self.host_routing,
            error_target: self.error_target.clone(),
            health_check: true,
            response_timeout: (self.timeout > 0).then(|| Duration::from_millis(self.timeout)),
            kernel_splice: !self.no_kernel_splice,
            ..ProxyConfig::default()
        }
    }

    fn api_addr(&self) -> Result<SocketAddr, ProxyError> {
        let port = match self.api_port {
            Some(port) => port,
            None => self.port.checked_add(1).ok_or_else(|| {
                ProxyError::Startup("--port 65535 needs an explicit --api-port".to_owned())
            })?,
        };
        Ok(SocketAddr::new(self.api_ip, port))
    }
}

/// Runs the standalone proxy until SIGINT or SIGTERM: binds both listeners, adds the default
/// route, serves. The API token comes from `CONFIGPROXY_AUTH_TOKEN`; without it the API is open
/// (a warning is logged), as with CHP.
///
/// # Errors
/// If an address cannot be bound, the TLS files cannot be used or an option is invalid.
pub async fn run(args: StandaloneArgs) -> Result<(), ProxyError> {
    let token = std::env::var(AUTH_TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let shutdown = async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    };
    let public = SocketAddr::new(args.ip, args.port);
    let listener = TcpListener::bind(public)
        .await
        .map_err(|e| ProxyError::Startup(format!("cannot listen on {public}: {e}")))?;
    let api_addr = args.api_addr()?;
    let api_listener = TcpListener::bind(api_addr)
        .await
        .map_err(|e| ProxyError::Startup(format!("cannot listen on {api_addr}: {e}")))?;
    run_on(args, listener, api_listener, token, shutdown).await
}

/// [`run`] on listeners the caller bound, with an explicit token and shutdown signal (for tests
/// and embedding).
///
/// # Errors
/// If the TLS files cannot be used or an option is invalid.
pub async fn run_on(
    args: StandaloneArgs,
    listener: TcpListener,
    api_listener: TcpListener,
    auth_token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ProxyError> {
    let mut config = args.proxy_config();
    let metrics_listener = match args.metrics_port {
        Some(port) => {
            let address = SocketAddr::new(args.metrics_ip, port);
            let listener = TcpListener::bind(address).await.map_err(|e| {
                ProxyError::Startup(format!("cannot listen on {address} for metrics: {e}"))
            })?;
            config.metrics = Some(Arc::new(ProxyMetrics::new()));
            Some(listener)
        }
        None => None,
    };
    let tls = match (&args.ssl_key, &args.ssl_cert) {
        (Some(key), Some(cert)) => Some(tls_acceptor(key, cert)?),
        _ => None,
    };
    let table = Arc::new(RouteTable::new());
    if let Some(target) = &args.default_target {
        table
            .add_route("/", target, serde_json::Map::new())
            .await
            .map_err(|e| ProxyError::Startup(format!("--default-target: {e}")))?;
    }
    if auth_token.is_none() {
        tracing::warn!("REST API is not authenticated: set {AUTH_TOKEN_ENV} to require a token");
    }
    let public = listener
        .local_addr()
        .map_err(|e| ProxyError::Startup(e.to_string()))?;
    let api = api_listener
        .local_addr()
        .map_err(|e| ProxyError::Startup(e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(proxy = %format!("{scheme}://{public}"), api = %format!("http://{api}"), "xiji-proxy running");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let api_task = tokio::spawn(serve_api(
        api_listener,
        Arc::clone(&table),
        auth_token,
        wait_stop(stop_rx.clone()),
    ));
    let metrics_task = match (metrics_listener, &config.metrics) {
        (Some(listener), Some(metrics)) => Some(tokio::spawn(serve_metrics(
            listener,
            Arc::clone(metrics),
            Arc::clone(&table),
            wait_stop(stop_rx.clone()),
        ))),
        _ => None,
    };
    let fallback = NotFound(Arc::new(ErrorPages::new(&config)));
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let proxy_task = tokio::spawn(serve_on_threads(
        listener,
        threads,
        tls,
        table,
        fallback,
        config,
        wait_stop(stop_rx),
    ));
    shutdown.await;
    let _ = stop_tx.send(true);
    for task in [Some(api_task), Some(proxy_task), metrics_task]
        .into_iter()
        .flatten()
    {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with an error"),
            Err(e) => tracing::warn!(error = %e, "listener task failed"),
        }
    }
    Ok(())
}

fn tls_acceptor(key: &Path, cert: &Path) -> Result<TlsAcceptor, ProxyError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let startup =
        |what: &str, e: &dyn std::fmt::Display| ProxyError::Startup(format!("{what}: {e}"));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| startup(&format!("--ssl-cert {}", cert.display()), &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| startup(&format!("--ssl-cert {}", cert.display()), &e))?;
    if certs.is_empty() {
        return Err(ProxyError::Startup(format!(
            "--ssl-cert {}: no certificate found",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| startup(&format!("--ssl-key {}", key.display()), &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| startup("TLS", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| startup("--ssl-cert/--ssl-key", &e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
