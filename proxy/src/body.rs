//! Body types: a streaming wrapper that counts data as route activity, and the one boxed body
//! type every response is turned into.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::table::RouteEntry;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the proxy answers with: a proxied backend body, the fallback's body or a short page.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Streams `inner` frame by frame (nothing is buffered) and touches the route on each data frame.
#[derive(Debug)]
pub(crate) struct ActivityBody<B> {
    inner: B,
    route: Arc<RouteEntry>,
}

impl<B> ActivityBody<B> {
    pub(crate) fn new(inner: B, route: Arc<RouteEntry>) -> Self {
        Self { inner, route }
    }
}

impl<B> Body for ActivityBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if frame.is_data() {
                self.route.touch();
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

/// A complete small body (error pages, 101 responses).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Boxes any body whose errors convert into [`BoxError`].
pub(crate) fn boxed<B>(body: B) -> ResponseBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}
