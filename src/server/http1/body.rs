//! The connection state a request body reads from, and the body itself.
//!
//! A request body must be readable while the service runs (the proxy
//! streams it upstream from inside its own future, and may keep doing so
//! after its response head has come back), yet its bytes arrive on the
//! same socket and in the same buffer as the next request's head. So the
//! socket and the read buffer live in one [`Shared`] behind an
//! `Arc<Mutex<..>>`: the connection locks it to parse heads and write
//! responses, the body locks it to decode and read. Both are polled by the
//! connection's one task, so the lock is never contended; it is held only
//! inside a poll, never across an `.await`. There is no channel and no
//! second task per connection, and a body-less request (most of them)
//! never touches the `Arc` at all.
//!
//! The body reaches the socket through the object-safe [`Source`] trait,
//! so [`Http1Body`] (a variant of the listener-wide `RequestBody`) is not
//! generic over the socket type. Each body carries the sequence number of
//! its request: once the connection has moved on (or closed), a body kept
//! alive past its response reads nothing, so leftover bytes can never be
//! taken for a body or a body's bytes for a request.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::http1::decoder::{Decoded, Decoder, Framing};
use crate::http1::FramingError;

/// Bytes the read buffer is grown by when it runs out of room.
const READ_CHUNK: usize = 8 * 1024;
/// Below this much free room, the read buffer is grown before a read.
const MIN_SPARE: usize = 1024;
/// The interim answer to `Expect: 100-continue`.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why a request body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Http1BodyError {
    /// The chunked framing is broken.
    #[error("request body framing")]
    Framing(#[source] FramingError),
    /// The client closed the connection before the end its framing
    /// promised.
    #[error("the client closed the connection before the body ended")]
    Truncated,
    /// Reading from the client (or writing `100 Continue`) failed.
    #[error("reading the request body")]
    Io(#[source] io::Error),
    /// The connection has finished with this request (its response was
    /// written) or switched protocols.
    #[error("the request is over")]
    Gone,
}

/// Where an interim `100 Continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    /// Not asked for, already sent, or too late (the response has begun).
    No,
    /// Asked for: sent when the body is first polled.
    Wanted,
    /// This many bytes of it written.
    Writing(usize),
}

/// The socket, its read buffer and the current request body's state.
#[derive(Debug)]
pub(super) struct Shared<I> {
    /// `None` once an upgrade has taken the socket.
    pub(super) io: Option<I>,
    /// Bytes read and not yet consumed: the rest of a head, body bytes, a
    /// pipelined request.
    pub(super) read: BytesMut,
    /// The client has closed its sending side.
    pub(super) eof: bool,
    /// The request the body state belongs to.
    pub(super) seq: u64,
    pub(super) decoder: Decoder,
    /// The body failed; the connection must close.
    pub(super) failed: bool,
    pub(super) interim: Continue,
}

impl<I: AsyncRead + AsyncWrite + Unpin> Shared<I> {
    pub(super) fn new(io: I) -> Self {
        Shared {
            io: Some(io),
            read: BytesMut::with_capacity(READ_CHUNK),
            eof: false,
            seq: 0,
            decoder: Decoder::new(Framing::Length(0)),
            failed: false,
            interim: Continue::No,
        }
    }

    /// Reads what the client has sent into the read buffer. `Ok(0)` is
    /// the end of the stream (and sets [`Shared::eof`]).
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.read.capacity() - self.read.len() < MIN_SPARE {
            self.read.reserve(READ_CHUNK);
        }
        // tokio's `read_buf` fills the spare capacity without initialising
        // it first; the future is two references, free to make per poll.
        let polled = pin!(io.read_buf(&mut self.read)).poll(cx);
        if let Poll::Ready(Ok(0)) = polled {
            self.eof = true;
        }
        polled
    }

    /// Writes whatever is left of a `100 Continue` that has begun.
    pub(super) fn poll_interim(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Continue::Writing(mut done) = self.interim else {
            return Poll::Ready(Ok(()));
        };
        let Some(io) = self.io.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        while done < CONTINUE.len() {
            match Pin::new(&mut *io).poll_write(cx, &CONTINUE[done..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    done += n;
                    self.interim = Continue::Writing(done);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        match Pin::new(io).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.interim = Continue::No;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    /// Starts a new request's body.
    pub(super) fn begin(&mut self, seq: u64, framing: Framing, expect_continue: bool) {
        self.seq = seq;
        self.decoder = Decoder::new(framing);
        self.failed = false;
        self.interim = if expect_continue && !self.decoder.is_done() {
            Continue::Wanted
        } else {
            Continue::No
        };
    }
}

/// What a body needs from the connection, without naming its socket type.
pub(super) trait Source: Send {
    fn poll_body(
        &mut self,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1BodyError>>>;
    fn remaining(&self, seq: u64) -> Option<u64>;
    fn done(&self, seq: u64) -> bool;
}

impl<I: AsyncRead + AsyncWrite + Unpin + Send> Source for Shared<I> {
    fn poll_body(
        &mut self,
        seq: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1BodyError>>> {
        if seq != self.seq || self.io.is_none() {
            return Poll::Ready(Some(Err(Http1BodyError::Gone)));
        }
        if self.failed {
            return Poll::Ready(Some(Err(Http1BodyError::Gone)));
        }
        // The client waits for this before sending the body (RFC 9110
        // 10.1.1); sent on the first read, as hyper does, so a request
        // answered without reading its body never invites it.
        if self.interim == Continue::Wanted {
            self.interim = Continue::Writing(0);
        }
        match self.poll_interim(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(error)) => {
                self.failed = true;
                return Poll::Ready(Some(Err(Http1BodyError::Io(error))));
            }
            Poll::Pending => return Poll::Pending,
        }
        loop {
            match self.decoder.decode(&mut self.read) {
                Err(error) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Http1BodyError::Framing(error))));
                }
                Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Decoded::Trailers(trailers)) => {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                }
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
            }
            if self.eof {
                self.failed = true;
                return Poll::Ready(Some(Err(Http1BodyError::Truncated)));
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Http1BodyError::Io(error))));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn remaining(&self, seq: u64) -> Option<u64> {
        if seq != self.seq {
            return None;
        }
        self.decoder.remaining()
    }

    fn done(&self, seq: u64) -> bool {
        seq == self.seq && self.decoder.is_done()
    }
}

/// The shared state as a body sees it.
pub(super) type SharedSource = Arc<Mutex<dyn Source>>;

/// Locks `mutex`; a panic while it was held cannot leave the buffer in a
/// state worse than a closed connection, so poisoning is ignored.
pub(super) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request body read off an HTTP/1.1 connection by its framing.
pub(crate) struct Http1Body {
    /// `None` for a request without a body.
    source: Option<SharedSource>,
    seq: u64,
    /// The body has ended (cached, so `is_end_stream` need not lock).
    ended: bool,
}

impl fmt::Debug for Http1Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http1Body")
            .field("seq", &self.seq)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Http1Body {
    /// No body at all.
    pub(super) fn empty() -> Self {
        Http1Body {
            source: None,
            seq: 0,
            ended: true,
        }
    }

    /// The body of request `seq`, read from `source`.
    pub(super) fn new(source: SharedSource, seq: u64) -> Self {
        Http1Body {
            source: Some(source),
            seq,
            ended: false,
        }
    }
}

impl Body for Http1Body {
    type Data = Bytes;
    type Error = Http1BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1BodyError>>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let Some(source) = &this.source else {
            return Poll::Ready(None);
        };
        let mut shared = lock(source);
        let polled = shared.poll_body(this.seq, cx);
        if matches!(polled, Poll::Ready(None)) || shared.done(this.seq) {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            None => SizeHint::with_exact(0),
            Some(_) if self.ended => SizeHint::with_exact(0),
            Some(source) => match lock(source).remaining(self.seq) {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}
