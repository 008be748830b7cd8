//! Connections to backends. Each client connection keeps its own few keep-alive connections to
//! the backends it talks to and drives them inside its own task: a proxied request is read,
//! forwarded, answered and relayed without handing anything to another task or taking a lock
//! another connection could hold. (A shared pool, such as hyper-util's, runs every backend
//! connection in a task of its own, so each request crosses tasks — and often threads — twice.)
//!
//! While a request waits for its response head, the waiting future polls the backend connection;
//! while the response body streams, [`DrivenBody`] does. When the body has been read to its end
//! the connection goes back to its client connection's idle list; a body dropped half-read takes
//! its connection with it (HTTP/1.1 cannot abandon a response and reuse the connection).
//! Websocket upgrades get a connection of their own, run in its own task, since it becomes the
//! tunnel.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ActivityBody;

/// The body of a forwarded request: the client's, counted as route activity.
pub(crate) type ForwardBody = ActivityBody<Incoming>;

type Connection = http1::Connection<TokioIo<TcpStream>, ForwardBody>;

/// Most idle backend connections one client connection keeps (one per backend; a browser's
/// connection can alternate between the nodes of a cluster, which share the proxy's origin).
const MAX_IDLE_PER_CLIENT: usize = 4;

/// Why a backend gave no response.
#[derive(Debug)]
pub(crate) enum BackendError {
    /// No TCP connection: refused, unreachable or timed out.
    Connect(String),
    /// The connection broke, or what came back was not an HTTP response.
    Failed(String),
    /// No response head within the response timeout.
    TimedOut(Duration),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(reason) => write!(f, "cannot connect: {reason}"),
            Self::Failed(reason) => f.write_str(reason),
            Self::TimedOut(limit) => write!(f, "no response within {limit:?}"),
        }
    }
}

/// One HTTP/1.1 connection to a backend, polled by whoever is using it.
struct Backend {
    authority: Authority,
    sender: http1::SendRequest<ForwardBody>,
    /// `None` once it has completed: it is dropped then, which also fails any request still
    /// queued on it (with the request handed back, as it was never written).
    connection: Option<Connection>,
    idle_since: Instant,
}

impl Backend {
    /// Lets the connection make progress (write the request, read the response, notice a
    /// close), registering the caller's waker for its socket.
    fn drive(&mut self, cx: &mut Context<'_>) {
        let Some(connection) = &mut self.connection else {
            return;
        };
        if let Poll::Ready(result) = Pin::new(connection).poll(cx) {
            self.connection = None;
            if let Err(error) = result {
                tracing::debug!(target = %self.authority, %error, "backend connection ended");
            }
        }
    }

    fn closed(&self) -> bool {
        self.connection.is_none()
    }

    /// Open and idle: the last exchange is over, including any request body the backend
    /// answered before reading. (One still sending would wait for a client nobody reads from.)
    fn reusable(&self) -> bool {
        !self.closed() && self.sender.is_ready()
    }
}

/// The backend connections of one client connection.
#[derive(Default)]
pub(crate) struct Backends {
    /// Idle connections, oldest first. Only this client connection's requests use them, one at
    /// a time, so the lock is never contended. Boxed because a connection moves in and out of
    /// request futures, where a pointer is cheaper to move than the connection's state.
    #[allow(clippy::vec_box)]
    idle: Mutex<Vec<Box<Backend>>>,
}

impl Backends {
    fn take(&self, authority: &Authority, idle_timeout: Duration) -> Option<Box<Backend>> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let at = idle.iter().position(|b| &b.authority == authority)?;
        let backend = idle.remove(at);
        (backend.idle_since.elapsed() < idle_timeout).then_some(backend)
    }

    fn put(&self, mut backend: Box<Backend>) {
        if !backend.reusable() {
            return;
        }
        backend.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() >= MAX_IDLE_PER_CLIENT {
            idle.remove(0);
        }
        idle.push(backend);
    }

    /// Sends `req` (origin-form URI, `Host` set) to `authority` on an idle connection of this
    /// client connection, or a new one, and returns the response once its head has arrived.
    /// A reused connection the backend had closed in the meantime is replaced transparently
    /// when the request was not yet sent on it.
    pub(crate) async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: Request<ForwardBody>,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Response<DrivenBody>, BackendError> {
        if let Some(backend) = self.take(authority, idle_timeout) {
            match exchange(backend, req).await {
                Ok((response, backend)) => return Ok(self.driven(response, backend)),
                Err((error, Some(unsent))) => {
                    tracing::debug!(
                        target = %authority,
                        %error,
                        "idle backend connection was closed; reconnecting"
                    );
                    req = unsent;
                }
                Err((error, None)) => return Err(error),
            }
        }
        // Boxed: a cold path whose state would otherwise enlarge every request's future.
        let backend = Box::pin(connect(authority, connect_timeout)).await?;
        match exchange(backend, req).await {
            Ok((response, backend)) => Ok(self.driven(response, backend)),
            Err((error, _)) => Err(error),
        }
    }

    fn driven(
        self: &Arc<Self>,
        response: Response<Incoming>,
        backend: Box<Backend>,
    ) -> Response<DrivenBody> {
        response.map(|inner| DrivenBody {
            inner,
            ended: false,
            backend: Some(backend),
            home: Arc::clone(self),
        })
    }
}

/// Sends a websocket upgrade request on a new connection of its own, run in its own task with
/// upgrades enabled (after `101` it becomes the backend half of the tunnel).
pub(crate) async fn send_upgrade(
    authority: &Authority,
    req: Request<ForwardBody>,
    connect_timeout: Duration,
) -> Result<Response<Incoming>, BackendError> {
    let stream = open(authority, connect_timeout).await?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| BackendError::Failed(error_chain(&e)))?;
    let target = authority.clone();
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%target, %error, "backend websocket connection ended");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| BackendError::Failed(error_chain(&e)))
}

async fn open(authority: &Authority, connect_timeout: Duration) -> Result<TcpStream, BackendError> {
    // `Authority::host` keeps an IPv6 address's brackets, which the resolver does not take.
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect((host, port))).await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(BackendError::Connect(error.to_string())),
        Err(_) => {
            return Err(BackendError::Connect(format!(
                "no answer within {connect_timeout:?}"
            )))
        }
    };
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "could not set TCP_NODELAY on a backend connection");
    }
    Ok(stream)
}

async fn connect(
    authority: &Authority,
    connect_timeout: Duration,
) -> Result<Box<Backend>, BackendError> {
    let stream = open(authority, connect_timeout).await?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| BackendError::Failed(error_chain(&e)))?;
    Ok(Box::new(Backend {
        authority: authority.clone(),
        sender,
        connection: Some(connection),
        idle_since: Instant::now(),
    }))
}

type Exchanged =
    Result<(Response<Incoming>, Box<Backend>), (BackendError, Option<Request<ForwardBody>>)>;

/// One request/response-head exchange on `backend`, driving the connection meanwhile. On
/// failure the request comes back when it was never written, so another connection can take it.
async fn exchange(mut backend: Box<Backend>, req: Request<ForwardBody>) -> Exchanged {
    // After the previous response the connection needs a poll to become idle again.
    let ready = poll_fn(|cx| {
        backend.drive(cx);
        backend.sender.poll_ready(cx)
    })
    .await;
    if let Err(error) = ready {
        return Err((BackendError::Failed(error_chain(&error)), Some(req)));
    }
    if backend.closed() {
        // It closed (the backend's keep-alive ran out) before taking the request.
        return Err((
            BackendError::Failed("the backend closed the connection".to_owned()),
            Some(req),
        ));
    }
    let mut sent = pin!(backend.sender.try_send_request(req));
    let answered = poll_fn(|cx| {
        if let Poll::Ready(result) = sent.as_mut().poll(cx) {
            return Poll::Ready(Some(result));
        }
        backend.drive(cx);
        if backend.closed() {
            // Completing dropped the connection, which answers every request it still held.
            return match sent.as_mut().poll(cx) {
                Poll::Ready(result) => Poll::Ready(Some(result)),
                Poll::Pending => Poll::Ready(None),
            };
        }
        Poll::Pending
    })
    .await;
    match answered {
        Some(Ok(response)) => Ok((response, backend)),
        Some(Err(mut error)) => {
            let unsent = error.take_message();
            Err((
                BackendError::Failed(error_chain(&error.into_error())),
                unsent,
            ))
        }
        None => Err((
            BackendError::Failed("the backend closed the connection".to_owned()),
            None,
        )),
    }
}

/// An error and its causes, `: `-separated (hyper's own message alone is often just "error
/// sending request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A backend response body that drives its connection while it streams, and hands the
/// connection back to its client connection once read to the end.
pub(crate) struct DrivenBody {
    inner: Incoming,
    /// The body's last frame has been read (a chunked body only knows at its end).
    ended: bool,
    backend: Option<Box<Backend>>,
    home: Arc<Backends>,
}

impl Body for DrivenBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(backend) = &mut this.backend {
            backend.drive(cx);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        let last = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if last && !this.ended {
            this.ended = true;
            // One more turn lets the connection finish the exchange (and the request body, if
            // the backend answered before reading all of it) and say whether it is idle.
            if let Some(backend) = &mut this.backend {
                backend.drive(cx);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for DrivenBody {
    fn drop(&mut self) {
        if let Some(backend) = self.backend.take() {
            if self.ended || self.inner.is_end_stream() {
                self.home.put(backend);
            }
        }
    }
}
