//! The body of a request as a listener hands it up: keygate's own
//! [`Http1Body`] for HTTP/1.1, or an h2 receive stream for HTTP/2.
//!
//! Neither protocol is served by hyper (see [`super::http1`] and
//! [`super::http2`]). One concrete enum covers both
//! rather than a boxed body: there is no allocation per request, and the
//! match costs nothing next to the I/O.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::http1::{Http1Body, Http1BodyError};

/// A request body from either protocol.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// HTTP/1.1, read by keygate's connection.
    Http1(Http1Body),
    /// HTTP/2, read from the h2 stream.
    Http2(Http2Body),
}

/// A request body's failure, from either protocol.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestBodyError {
    /// The HTTP/1.1 body failed (framing, a cut or a failed read).
    #[error(transparent)]
    Http1(#[from] Http1BodyError),
    /// The HTTP/2 stream was reset or its connection failed.
    #[error(transparent)]
    Http2(#[from] h2::Error),
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Http1(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(RequestBodyError::Http1))),
            RequestBody::Http2(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(RequestBodyError::Http2))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Http1(body) => body.is_end_stream(),
            RequestBody::Http2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Http1(body) => body.size_hint(),
            RequestBody::Http2(body) => body.size_hint(),
        }
    }
}

/// An HTTP/2 request body. Flow-control capacity is handed back to the
/// client as each chunk is read, so the client can send no faster than the
/// upstream takes the body: nothing is buffered beyond the stream window.
#[derive(Debug)]
pub(crate) struct Http2Body {
    recv: h2::RecvStream,
    /// The declared `content-length`, which the h2 crate has already
    /// checked the DATA frames against. The upstream leg uses it to send
    /// a length rather than chunks.
    length: Option<u64>,
    data_done: bool,
}

impl Http2Body {
    pub(crate) fn new(recv: h2::RecvStream, headers: &HeaderMap) -> Self {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Http2Body {
            recv,
            length,
            data_done: false,
        }
    }
}

impl Body for Http2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = self.get_mut();
        if !this.data_done {
            match this.recv.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    // The bytes are ours now; the client may send more.
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => this.data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        match this.recv.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.recv.is_end_stream() {
            return SizeHint::with_exact(0);
        }
        match self.length {
            Some(length) => SizeHint::with_exact(length),
            None => SizeHint::default(),
        }
    }
}
