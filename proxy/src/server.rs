//! The accept loop, per-connection HTTP/1.1 handling and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::body::BoxError;
use crate::config::ProxyConfig;
use crate::forward::{BackendClient, Forwarder};
use crate::table::RouteTable;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// Stop accepting; finish open requests; close websockets.
    Draining,
    /// The grace period is over: drop whatever is left.
    Closed,
}

/// Held by every connection task and tunnel: tells it when to stop, and while any clone lives,
/// `serve` knows work is still in flight.
#[derive(Clone)]
pub(crate) struct Drain {
    phase: watch::Receiver<Phase>,
    _in_flight: mpsc::Sender<()>,
}

impl Drain {
    async fn reached(&mut self, phase: Phase) {
        // An error means `serve` is gone, which is as final as `Closed`.
        let _ = self.phase.wait_for(|current| *current >= phase).await;
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn draining(&mut self) {
        self.reached(Phase::Draining).await;
    }
}

/// Serve until `shutdown` resolves. Requests whose path matches a route are forwarded to its
/// target; all others go to `fallback` (the hub's `axum::Router`, in process). The fallback
/// receives the original request, with hyper's upgrade extension intact (so axum websockets
/// work), its path normalised (see the crate docs), plus a [`ClientAddr`](crate::ClientAddr)
/// extension.
///
/// After `shutdown` resolves the listener is closed, idle connections are closed, open requests
/// get `config.shutdown_grace` to finish and websocket tunnels are closed; then this returns.
///
/// # Errors
/// Only if the listener's local address cannot be read; accept errors are logged and retried.
pub async fn serve<S, B>(
    listener: TcpListener,
    table: Arc<RouteTable>,
    fallback: S,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let local_addr = listener.local_addr()?;
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let (in_flight_tx, mut in_flight_rx) = mpsc::channel::<()>(1);
    let drain = Drain {
        phase: phase_rx,
        _in_flight: in_flight_tx,
    };

    let forwarder = Arc::new(Forwarder {
        table,
        client: backend_client(&config),
        config: config.clone(),
        drain: drain.clone(),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.client_idle_timeout)
        .max_headers(config.max_headers)
        .max_header_size(config.max_header_size);

    tracing::info!(address = %local_addr, "proxy listening");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually one aborted connection; if it is fd exhaustion, back off a little
                    // instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let forwarder = Arc::clone(&forwarder);
        let fallback = fallback.clone();
        let service = service_fn(move |req| {
            let forwarder = Arc::clone(&forwarder);
            let fallback = fallback.clone();
            async move { Ok::<_, Infallible>(forwarder.handle(fallback, peer, req).await) }
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut drain = drain.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => Some(result),
                () = drain.reached(Phase::Draining) => None,
            };
            let result = match finished {
                Some(result) => result,
                None => {
                    connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        result = connection.as_mut() => result,
                        () = drain.reached(Phase::Closed) => Ok(()),
                    }
                }
            };
            if let Err(error) = result {
                // Clients vanish, send garbage or idle out all the time: not worth more than debug.
                tracing::debug!(%peer, %error, "client connection ended with an error");
            }
        });
    }

    tracing::info!(address = %local_addr, "proxy shutting down");
    drop(listener);
    drop(forwarder);
    drop(drain);
    let _ = phase_tx.send(Phase::Draining);
    // `recv` returns `None` once every connection task and tunnel has dropped its `Drain`.
    if tokio::time::timeout(config.shutdown_grace, in_flight_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("closing connections still open after the shutdown grace period");
    }
    let _ = phase_tx.send(Phase::Closed);
    Ok(())
}

fn backend_client(config: &ProxyConfig) -> BackendClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.backend_idle_timeout)
        .pool_max_idle_per_host(config.backend_max_idle_per_host)
        .build(connector)
}
