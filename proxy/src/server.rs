//! The accept loop, per-connection HTTP/1.1 handling and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::backend::Backends;
use crate::body::BoxError;
use crate::config::ProxyConfig;
use crate::forward::Forwarder;
use crate::pages::ErrorPages;
use crate::table::RouteTable;

/// What [`serve`] hands every request no route matches to: the hub's `axum::Router`, or the
/// standalone proxy's 404 page. Every cloneable `tower::Service` of this shape is one.
pub trait Fallback<B>:
    tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S, B> Fallback<B> for S
where
    S: tower::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
}

/// The body of a [`Fallback`]'s responses.
pub trait FallbackBody:
    http_body::Body<Data = bytes::Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> FallbackBody for B
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
}

/// The number of request headers hyper accepts when not told otherwise.
const HYPER_MAX_HEADERS: usize = 100;

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
    S: Fallback<B>,
    B: FallbackBody,
{
    serve_with_tls(listener, None, table, fallback, config, shutdown).await
}

/// [`serve`], with TLS on the listener when `tls` is given (the handshake runs in the
/// connection's own task, limited by `client_idle_timeout`).
pub(crate) async fn serve_with_tls<S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    table: Arc<RouteTable>,
    fallback: S,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Fallback<B>,
    B: FallbackBody,
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
        errors: Arc::new(ErrorPages::new(&config)),
        config: config.clone(),
        drain: drain.clone(),
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(config.client_idle_timeout)
        .max_header_size(config.max_header_size);
    // hyper's own limit is 100 headers, kept in an array on the stack; naming any limit (even
    // 100) makes it build a vector of that size for every request head instead.
    if config.max_headers != HYPER_MAX_HEADERS {
        http.max_headers(config.max_headers);
    }
    let https = tls.is_some();

    tracing::info!(address = %local_addr, tls = https, "proxy listening");
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
        // This connection's own connections to backends (see `backend`).
        let backends = Arc::new(Backends::default());
        let service = service_fn(move |req| {
            let forwarder = Arc::clone(&forwarder);
            let fallback = fallback.clone();
            let backends = Arc::clone(&backends);
            async move {
                Ok::<_, Infallible>(
                    forwarder
                        .handle(fallback, &backends, peer, https, req)
                        .await,
                )
            }
        });
        let http = http.clone();
        let drain = drain.clone();
        match &tls {
            None => {
                tokio::spawn(drive(http, TokioIo::new(stream), service, drain, peer));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let handshake_limit = config.client_idle_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_limit, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            drive(http, TokioIo::new(stream), service, drain, peer).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        }
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

/// [`serve_with_tls`] on `threads` threads, each running its own single-threaded runtime that
/// accepts from the same listening socket (the first idle thread takes a new connection) and
/// then keeps that connection, its backend connections and its websocket tunnels to itself —
/// nginx's worker model. No task, waker or timer is shared between threads, so a request costs
/// no cross-thread hand-over; only the route table is shared. Returns once every thread has
/// drained after `shutdown`.
///
/// # Errors
/// If a thread or its runtime cannot be started, or the listener cannot be shared.
pub(crate) async fn serve_on_threads<S, B>(
    listener: TcpListener,
    threads: usize,
    tls: Option<TlsAcceptor>,
    table: Arc<RouteTable>,
    fallback: S,
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: Fallback<B>,
    B: FallbackBody,
{
    let listener = listener.into_std()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads.max(1));
    for index in 0..threads.max(1) {
        let listener = listener.try_clone()?;
        let (tls, table, fallback, config) = (
            tls.clone(),
            Arc::clone(&table),
            fallback.clone(),
            config.clone(),
        );
        let mut stop = stop_rx.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("xiji-proxy-{index}"))
            .spawn(move || {
                let served = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|runtime| {
                        runtime.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            let stopped = async move {
                                let _ = stop.wait_for(|stopped| *stopped).await;
                            };
                            serve_with_tls(listener, tls, table, fallback, config, stopped).await
                        })
                    });
                let _ = done_tx.send(served);
            })?;
        workers.push(done_rx);
    }
    drop(listener);
    // A worker that ends early (its runtime or listener failed) ends the whole proxy.
    let first_end = futures_util::future::select_all(workers.iter_mut());
    let early = tokio::select! {
        () = shutdown => None,
        (ended, index, _) = first_end => Some((index, ended)),
    };
    let _ = stop_tx.send(true);
    let mut result = Ok(());
    if let Some((index, ended)) = early {
        workers.remove(index);
        if let Ok(Err(error)) = ended {
            result = Err(error);
        }
    }
    for worker in workers {
        if let Ok(Err(error)) = worker.await {
            if result.is_ok() {
                result = Err(error);
            }
        }
    }
    result
}

/// Serves one client connection until it ends or the server drains.
async fn drive<I, Svc>(
    http: http1::Builder,
    io: I,
    service: Svc,
    mut drain: Drain,
    peer: std::net::SocketAddr,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<Incoming, ResBody = crate::body::ResponseBody>,
{
    let connection = http.serve_connection(io, service).with_upgrades();
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
}
