//! Websocket tunnels: after both sides agreed on `101 Switching Protocols`, bytes are copied
//! both ways unchanged (no re-framing) and counted as route activity.

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
/// either side closes or the server shuts down.
pub(crate) fn spawn_tunnel(
    client: OnUpgrade,
    backend: OnUpgrade,
    route: Arc<RouteEntry>,
    mut drain: Drain,
) {
    tokio::spawn(async move {
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
        // Wrapping one side sees traffic in both directions: its reads are client → backend,
        // its writes are backend → client.
        let mut client = ActivityIo {
            inner: TokioIo::new(client),
            route: Arc::clone(&route),
        };
        let mut backend = TokioIo::new(backend);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => match copied {
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
            },
            () = drain.draining() => {}
        }
    });
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
