//! The upstream's response body, read straight off its connection.
//!
//! [`UpstreamBody`] owns the connection for as long as the response
//! streams: each `poll_frame` first moves the rest of the request body
//! along (if the application answered before reading all of it), then
//! decodes the next piece of the response ([`super::decoder`]), reading
//! from the socket only when the buffer has nothing decodable. When the
//! body ends it hands the connection straight back to the pool, and only
//! when all of these hold: the response was read to its end by its own
//! framing (not by the upstream closing), the request body was written
//! whole, the upstream allowed keep-alive, and nothing beyond the
//! response was received. Anything else (the client going away, a stall,
//! a framing error) drops the body and with it the connection, which
//! closes it.
//!
//! The connection goes back at the moment the last byte is decoded, not
//! when the front end next polls: the front ends stop polling a body of known
//! length as soon as [`Body::is_end_stream`] says it is complete.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::super::body::BodyError;
use super::super::pool::Pool;
use super::connection::Connection;
use super::error::ReadError;
use super::request::{SendError, Sender};
use super::transport::Transport;
use crate::http1::decoder::{Decoded, Decoder, Framing};
use crate::stall::Stall;

/// The upstream's response body and the connection it arrives on.
#[derive(Debug)]
pub struct UpstreamBody {
    /// `None` once the body has ended or failed (and the connection has
    /// gone back to the pool or been closed).
    exchange: Option<Exchange>,
    decoder: Decoder,
    /// Times pauses in the upstream's sending, as `body_timeout_secs`.
    stall: Stall,
    /// A `101` answer: the connection is for the relay, never the pool.
    switched: bool,
    /// The body has returned `Pending` since it last returned data (or
    /// since it began): the front end has had its chance to write out what
    /// it was given.
    waited: bool,
    /// A failure held back for one poll (see [`UpstreamBody::fail`]).
    failed: Option<BodyError>,
}

/// What the body needs to finish the exchange and return the connection.
#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) conn: Connection,
    pub(super) sender: Sender,
    /// The upstream allows another request on this connection.
    pub(super) keep_alive: bool,
    pub(super) pool: Pool,
    /// When the connection was lent: its idle age counts from here.
    pub(super) lent: Instant,
}

impl UpstreamBody {
    /// The body of a response with `framing`, read from `exchange`'s
    /// connection, with `timeout` as the longest pause between reads.
    pub(super) fn new(exchange: Exchange, framing: Framing, timeout: Duration) -> Self {
        let mut body = UpstreamBody {
            exchange: Some(exchange),
            decoder: Decoder::new(framing),
            stall: Stall::new(timeout),
            switched: false,
            waited: false,
            failed: None,
        };
        // No body at all (HEAD, 204, 304, `Content-Length: 0`): the front
        // end will never poll, so the exchange ends here.
        if body.decoder.is_done() {
            body.finish(true);
        }
        body
    }

    /// The (empty) body of a `101 Switching Protocols` answer, holding the
    /// connection for the relay ([`UpstreamBody::take_switched`]). It never
    /// goes back to the pool: it no longer speaks HTTP.
    pub(super) fn switched(exchange: Exchange, timeout: Duration) -> Self {
        UpstreamBody {
            exchange: Some(exchange),
            decoder: Decoder::new(Framing::Length(0)),
            stall: Stall::new(timeout),
            switched: true,
            waited: false,
            failed: None,
        }
    }

    /// The connection of a `101 Switching Protocols` answer, for the relay;
    /// empty for any other response.
    pub(crate) fn take_switched(&mut self) -> Switched {
        let exchange = if self.switched {
            self.exchange.take()
        } else {
            None
        };
        Switched {
            conn: exchange.map(|exchange| exchange.conn),
        }
    }

    /// The exchange is over: the connection goes back to its pool if
    /// everything about it is clean (see the module comment), else it is
    /// dropped, which closes it. `framed` says the body ended by its own
    /// framing rather than by the upstream closing.
    fn finish(&mut self, framed: bool) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        let Exchange {
            conn,
            sender,
            keep_alive,
            pool,
            lent,
        } = exchange;
        if framed && keep_alive && sender.is_done() && conn.read.is_empty() {
            pool.put(conn, lent);
        }
    }

    /// Fails the body: the connection is closed at once. The error itself
    /// is held back for one poll when data was handed over since the last
    /// wait, so that a front end which buffers what it was given until the
    /// body pauses (hyper's HTTP/1.1 server did; keygate's own writes its
    /// buffer out before giving up) still sends what did arrive, and the
    /// `Content-Length` that shows it was cut, rather than nothing at all.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.exchange = None;
        if self.waited {
            return Poll::Ready(Some(Err(error)));
        }
        self.failed = Some(error);
        self.waited = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(error) = this.failed.take() {
            return Poll::Ready(Some(Err(error)));
        }
        let Some(exchange) = this.exchange.as_mut() else {
            return Poll::Ready(None);
        };
        if !exchange.sender.is_done() {
            match exchange.sender.poll_send(cx, &mut exchange.conn.io) {
                Poll::Ready(Err(SendError::Write(error))) => {
                    // The application stopped reading the request but may
                    // still be answering: keep reading; the connection will
                    // not be reused.
                    tracing::debug!(%error, "upstream stopped taking the request body");
                }
                Poll::Ready(Err(SendError::Body(error))) => return this.fail(cx, error),
                Poll::Ready(Err(SendError::Length)) => {
                    return this.fail(cx, ReadError::RequestLength.into())
                }
                Poll::Ready(Ok(())) | Poll::Pending => {}
            }
        }
        loop {
            let Some(exchange) = this.exchange.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut exchange.conn.read) {
                Err(error) => return this.fail(cx, ReadError::Framing(error).into()),
                Ok(Decoded::Data(data)) => {
                    this.waited = false;
                    if this.decoder.is_done() {
                        this.finish(true);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Decoded::Trailers(trailers)) => {
                    this.finish(true);
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                Ok(Decoded::End) => {
                    this.finish(true);
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
            }
            match exchange.conn.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    return match this.decoder.eof() {
                        Ok(()) => {
                            this.finish(false);
                            Poll::Ready(None)
                        }
                        Err(()) => this.fail(cx, ReadError::Truncated.into()),
                    };
                }
                Poll::Ready(Ok(_)) => this.stall.progressed(),
                Poll::Ready(Err(error)) => return this.fail(cx, ReadError::Io(error).into()),
                Poll::Pending if this.stall.pending(cx) => {
                    let timeout = this.stall.timeout();
                    return this.fail(cx, BodyError::Timeout(timeout));
                }
                Poll::Pending => {
                    this.waited = true;
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed.is_none() && (self.exchange.is_none() || self.decoder.is_done())
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

/// The upstream side of a switched (`101`) connection: the transport and
/// whatever the upstream already sent past the `101` head, which belongs
/// to the new protocol.
#[derive(Debug)]
pub(crate) struct Switched {
    conn: Option<Connection>,
}

impl Switched {
    /// The transport and the bytes read ahead of it, if this was a `101`.
    pub(crate) fn into_parts(self) -> Option<(Transport, BytesMut)> {
        self.conn.map(|conn| (conn.io, conn.read))
    }
}
