//! Body types for both directions of the proxy.
//!
//! - [`TimedBody`] wraps a client's upload (over either protocol) and
//!   fails it when no frame arrives within the body timeout, so a stalled
//!   client cannot hold a connection forever. (The upstream's response
//!   body times itself: see [`super::upstream::UpstreamBody`].)
//! - [`ResponseBody`] is what the client receives: the upstream's streamed
//!   body or one of keygate's own JSON refusals. It counts the bytes sent
//!   and writes the access-log line when the body ends (or is dropped, if
//!   the client goes away), so `duration_ms` and `bytes` cover the whole
//!   response.
//!
//! Both are concrete enums/structs rather than boxed trait objects: there
//! is no allocation per request for the body plumbing.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project_lite::pin_project;

use super::log::PendingLog;
use super::upstream::{ReadError, UpstreamBody};
use crate::server::RequestBodyError;
use crate::stall::Stall;

/// A body that failed part-way.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client's HTTP/1.1 body failed (framing, a cut or a failed
    /// read).
    #[error("body stream failed: {0}")]
    Stream(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The client's HTTP/2 stream was reset, or its connection failed.
    #[error("HTTP/2 body stream failed: {0}")]
    Http2(#[from] h2::Error),
    /// No data within the body timeout.
    #[error("no body data for {0:?}")]
    Timeout(Duration),
    /// The upstream's response body failed part-way.
    #[error("upstream response body failed: {0}")]
    Upstream(#[from] ReadError),
}

impl From<RequestBodyError> for BodyError {
    fn from(error: RequestBodyError) -> Self {
        match error {
            RequestBodyError::Http1(error) => BodyError::Stream(Box::new(error)),
            RequestBodyError::Http2(error) => BodyError::Http2(error),
        }
    }
}

/// A client's body ([`RequestBody`](crate::server::RequestBody)) with an
/// idle timeout between frames (see [`Stall`]).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    stall: Stall,
}

impl<B> TimedBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, timeout: Duration) -> Self {
        TimedBody {
            inner,
            stall: Stall::new(timeout),
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.stall.progressed();
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending if this.stall.pending(cx) => {
                Poll::Ready(Some(Err(BodyError::Timeout(this.stall.timeout()))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    #[project = SourceProj]
    #[derive(Debug)]
    enum Source {
        Upstream { #[pin] body: UpstreamBody },
        Local { #[pin] body: Full<Bytes> },
    }
}

impl Source {
    fn is_end_stream(&self) -> bool {
        match self {
            Source::Upstream { body } => body.is_end_stream(),
            Source::Local { body } => body.is_end_stream(),
        }
    }
}

pin_project! {
    /// The body sent to the client.
    #[derive(Debug)]
    pub struct ResponseBody {
        #[pin]
        source: Source,
        log: Option<PendingLog>,
    }
}

impl ResponseBody {
    /// The upstream's body, streamed.
    pub fn upstream(body: UpstreamBody, log: Option<PendingLog>) -> Self {
        ResponseBody {
            source: Source::Upstream { body },
            log,
        }
    }

    /// A body keygate wrote itself.
    pub fn local(bytes: Bytes, log: Option<PendingLog>) -> Self {
        ResponseBody {
            source: Source::Local {
                body: Full::new(bytes),
            },
            log,
        }
    }

    /// Attaches the access-log line to write when the body ends.
    pub fn with_log(mut self, log: Option<PendingLog>) -> Self {
        self.log = log;
        self
    }
}

impl From<Bytes> for ResponseBody {
    fn from(bytes: Bytes) -> Self {
        ResponseBody::local(bytes, None)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut this = self.project();
        let polled = match this.source.as_mut().project() {
            SourceProj::Upstream { body } => body.poll_frame(cx),
            SourceProj::Local { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
        };
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(log), Some(data)) = (this.log.as_mut(), frame.data_ref()) {
                    log.add_bytes(data.len());
                }
                // The front end stops polling once `is_end_stream` says so (a body
                // of known length), so the end is noticed here, not at
                // `Ready(None)`.
                this.source.as_ref().get_ref().is_end_stream()
            }
            Poll::Ready(None) => true,
            Poll::Ready(Some(Err(_))) => {
                if let Some(log) = this.log.as_mut() {
                    log.set_aborted();
                }
                true
            }
            Poll::Pending => false,
        };
        if ended {
            if let Some(log) = this.log.take() {
                log.finish();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.source.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream { body } => body.size_hint(),
            Source::Local { body } => body.size_hint(),
        }
    }
}
