//! Websocket tunnels: after both sides agreed on `101 Switching Protocols`, bytes are copied
//! both ways unchanged (no re-framing) and counted as route activity. Where the kernel can do the
//! copying ([`crate::splice`]), it does, and the tunnel's task only watches for activity and for
//! either side closing.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::server::Drain;
use crate::table::RouteEntry;

/// Joins the client's and the backend's upgraded connections and copies between them until
/// either side closes or the server shuts down. `kernel_splice` lets the kernel do the copying
/// when it can.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    route: Arc<RouteEntry>,
    drain: Drain,
    kernel_splice: bool,
) {
    // Counted from the upgrade on: the page that asked for it is open. Dropped however the
    // task ends.
    let open = route.open_websockets.hold();
    tokio::spawn(async move {
        let _open = open;
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(
                    route.path = %route.routespec,
                    target = %route.target_url,
                    %error,
                    "websocket upgrade did not complete"
                );
                return;
            }
        };
        #[cfg(target_os = "linux")]
        if let Some(kernel) = crate::splice::kernel().filter(|_| kernel_splice) {
            match spliced::Tunnel::new(client, backend).await {
                Ok(tunnel) => tunnel.run(kernel, &route, drain).await,
                Err(spliced::Unspliced::Both(client, backend)) => {
                    copy(TokioIo::new(client), TokioIo::new(backend), &route, drain).await;
                }
                Err(spliced::Unspliced::Backend(client, backend)) => {
                    copy(client, TokioIo::new(backend), &route, drain).await;
                }
            }
            return;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = kernel_splice;
        copy(TokioIo::new(client), TokioIo::new(backend), &route, drain).await;
    });
}

/// Copies in user space, touching the route whenever bytes move.
async fn copy<C, B>(client: C, mut backend: B, route: &Arc<RouteEntry>, mut drain: Drain)
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    // Wrapping one side sees traffic in both directions: its reads are client → backend,
    // its writes are backend → client.
    let mut client = ActivityIo {
        inner: client,
        route: Arc::clone(route),
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => {
            log_end(route, copied);
        }
        () = drain.draining() => {}
    }
}

fn log_end(route: &RouteEntry, result: io::Result<(u64, u64)>) {
    match result {
        Ok((up, down)) => tracing::debug!(
            route.path = %route.routespec,
            target = %route.target_url,
            bytes.up = up,
            bytes.down = down,
            "websocket closed"
        ),
        Err(error) => tracing::debug!(
            route.path = %route.routespec,
            target = %route.target_url,
            %error,
            "websocket ended with an error"
        ),
    }
}

/// An I/O object that touches its route whenever bytes move.
struct ActivityIo<T> {
    inner: T,
    route: Arc<RouteEntry>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.route.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.route.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(target_os = "linux")]
mod spliced {
    //! A tunnel whose bytes the kernel moves. Its task wakes only to look at the byte counts
    //! (route activity) and when a side closes: then, once the kernel has passed on everything
    //! that side sent, the other side's sending half is shut down, as `copy_bidirectional`
    //! does.

    use std::io::{self, Read};
    use std::net::Shutdown;
    use std::os::fd::AsFd;
    use std::sync::Arc;
    use std::time::Duration;

    use hyper::upgrade::{Parts, Upgraded};
    use hyper_util::rt::TokioIo;
    use socket2::SockRef;
    use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use crate::server::Drain;
    use crate::splice::{counts, received, watch, Counts, KernelSplice};
    use crate::table::RouteEntry;

    /// How often the byte counts are read for route activity.
    const ACTIVITY_POLL: Duration = Duration::from_secs(1);
    /// How long a closed side's last bytes may take to be passed on before the other side is
    /// shut down anyway.
    const DRAIN_LIMIT: Duration = Duration::from_secs(2);

    /// The two sockets of a tunnel, in user space's hands until [`Tunnel::run`] splices them.
    pub(super) struct Tunnel {
        client: TcpStream,
        backend: TcpStream,
    }

    /// Connections that cannot be spliced, for copying.
    pub(super) enum Unspliced {
        /// The client's is not plain TCP (TLS).
        Both(Upgraded, Upgraded),
        /// The backend's is not plain TCP; the client's early bytes were passed on.
        Backend(TcpStream, Upgraded),
    }

    impl Tunnel {
        /// The plain TCP sockets under both upgraded connections, with any bytes their HTTP
        /// connections had read past the handshake already passed on.
        pub(super) async fn new(client: Upgraded, backend: Upgraded) -> Result<Self, Unspliced> {
            let Parts {
                io: client,
                read_buf: client_early,
                ..
            } = match client.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => parts,
                Err(client) => return Err(Unspliced::Both(client, backend)),
            };
            let mut client = client.into_inner();
            // A failed write here ends the tunnel as a failed copy would: the sockets close.
            let Parts {
                io: backend,
                read_buf: backend_early,
                ..
            } = match backend.downcast::<TokioIo<TcpStream>>() {
                Ok(parts) => parts,
                Err(backend) => {
                    let mut backend = TokioIo::new(backend);
                    let _ = backend.write_all(&client_early).await;
                    return Err(Unspliced::Backend(client, backend.into_inner()));
                }
            };
            let mut backend = backend.into_inner();
            let _ = backend.write_all(&client_early).await;
            let _ = client.write_all(&backend_early).await;
            Ok(Self { client, backend })
        }

        pub(super) async fn run(
            self,
            kernel: &KernelSplice,
            route: &Arc<RouteEntry>,
            mut drain: Drain,
        ) {
            let Self {
                mut client,
                mut backend,
            } = self;
            // The kernel hands a spliced socket's queued segments on whole, even one user space
            // has read part of: each receive queue is emptied first.
            let drained = async {
                Ok::<_, io::Error>(
                    empty_queue(&client, &mut backend).await?
                        && empty_queue(&backend, &mut client).await?,
                )
            };
            match drained.await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!("the websocket is too busy to splice; copying it");
                    return super::copy(client, backend, route, drain).await;
                }
                Err(_) => return,
            }
            // What each side had received and user space had already passed on, and what had
            // been written into each: the kernel accounts for everything after.
            let before = (counts(client.as_fd()), counts(backend.as_fd()));
            let (Ok(client_before), Ok(backend_before)) = before else {
                return;
            };
            if let Err(error) = kernel.join(client.as_fd(), backend.as_fd()) {
                tracing::debug!(%error, "cannot splice the websocket; copying it");
                super::copy(client, backend, route, drain).await;
                return;
            }
            // Watched for reading only: a tokio socket also wakes its thread each time the
            // kernel's sending frees buffer space, that is for every message.
            let (Ok(client), Ok(backend)) = (watch(client), watch(backend)) else {
                return;
            };
            let mut client_open = true;
            let mut backend_open = true;
            let mut seen = client_before.received + backend_before.received;
            let mut poll = tokio::time::interval(ACTIVITY_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while client_open || backend_open {
                let side = tokio::select! {
                    ready = client.readable(), if client_open => {
                        let side = after_ready(ready, (&client, client_before), (&backend, backend_before)).await;
                        client_open = side == Side::Open;
                        side
                    }
                    ready = backend.readable(), if backend_open => {
                        let side = after_ready(ready, (&backend, backend_before), (&client, client_before)).await;
                        backend_open = side == Side::Open;
                        side
                    }
                    _ = poll.tick() => {
                        let now = received_by(&client) + received_by(&backend);
                        if now != seen {
                            seen = now;
                            route.touch();
                        }
                        Side::Open
                    }
                    () = drain.draining() => Side::Failed,
                };
                if side == Side::Failed {
                    break;
                }
            }
            let (up, down) = (received_by(&client), received_by(&backend));
            if up + down != seen {
                route.touch();
            }
            tracing::debug!(
                route.path = %route.routespec,
                target = %route.target_url,
                bytes.up = up.saturating_sub(consumed(client_before)),
                bytes.down = down.saturating_sub(consumed(backend_before)),
                "spliced websocket closed"
            );
        }
    }

    /// What a readiness event on one side of a spliced tunnel meant.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Side {
        /// Nothing to act on: the side is still open.
        Open,
        /// The peer finished sending; its last bytes were passed on and the other side's
        /// sending half is shut down.
        Finished,
        /// The connection failed (or bytes reached user space, which only happens once the
        /// other socket is gone), or the proxy is shutting down: the tunnel ends.
        Failed,
    }

    /// Acts on a readiness event on `from`.
    async fn after_ready(
        ready: io::Result<AsyncFdReadyGuard<'_, std::net::TcpStream>>,
        (from, from_before): (&Watched, Counts),
        (to, to_before): (&Watched, Counts),
    ) -> Side {
        let Ok(mut ready) = ready else {
            return Side::Failed;
        };
        let mut byte = [0u8; 1];
        match ready.try_io(|socket| socket.get_ref().read(&mut byte)) {
            Ok(Ok(0)) => {
                pass_on_and_shut(from, from_before, to, to_before).await;
                Side::Finished
            }
            Ok(Ok(_) | Err(_)) => Side::Failed,
            // Would block: the readiness was cleared; wait for the next.
            Err(_) => Side::Open,
        }
    }

    type Watched = AsyncFd<std::net::TcpStream>;

    /// Most bytes passed on in user space while emptying a receive queue before splicing; a
    /// side that keeps sending more is left to the user-space copy.
    const DRAIN_MAX: usize = 4 << 20;

    /// Reads everything waiting in `from`'s receive queue and writes it to `to`: `true` once
    /// the queue is empty (or at its end), `false` after [`DRAIN_MAX`] bytes.
    async fn empty_queue(from: &TcpStream, to: &mut TcpStream) -> io::Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut passed = 0;
        // Through the socket itself: tokio's `try_read` would answer from its own idea of
        // readiness without asking the kernel.
        let socket = SockRef::from(from);
        loop {
            match (&*socket).read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    to.write_all(&buf[..n]).await?;
                    passed += n;
                    if passed > DRAIN_MAX {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// What a socket had received and user space had read (and passed on) before the splice.
    fn consumed(before: Counts) -> u64 {
        before.received.saturating_sub(before.unread)
    }

    fn received_by(socket: &Watched) -> u64 {
        received(socket.as_fd()).unwrap_or(0)
    }

    /// `from` has finished sending: once the kernel has written everything `from` received
    /// since the splice into `to` (or after [`DRAIN_LIMIT`]), shuts down `to`'s sending half.
    async fn pass_on_and_shut(
        from: &Watched,
        from_before: Counts,
        to: &Watched,
        to_before: Counts,
    ) {
        let consumed = consumed(from_before);
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        while let (Ok(from_now), Ok(to_now)) = (counts(from.as_fd()), counts(to.as_fd())) {
            // The count of received bytes includes the FIN's sequence number.
            let owed = from_now.received.saturating_sub(consumed + 1);
            let passed = to_now.written.saturating_sub(to_before.written);
            if passed >= owed || tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = to.get_ref().shutdown(Shutdown::Write);
    }
}
