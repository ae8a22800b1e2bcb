//! keygate's own HTTP/1.1 server connection, in place of hyper's.
//!
//! One task per connection runs [`serve`], a plain loop: read a head
//! ([`head`]), call the service, write its response ([`encode`]), and
//! either go round again or close. The request body ([`body`]) reads from
//! the same socket and buffer while the service runs, polled by this same
//! task from inside the service's future; there is no dispatcher, no
//! channel and no second task. Its shape follows the upstream client
//! (`proxy::upstream`): one read buffer per connection, reused across
//! requests, with pipelined bytes left in it for the next head; one write
//! buffer, reused, holding the head and as much of the body as is ready so
//! a small response goes out in one write; and the same strict body
//! decoder (`crate::http1::decoder`).
//!
//! Timers: one `Sleep` per connection, created with it and never
//! re-created. It bounds the wait for each request head, which starts
//! when the connection first has to wait for bytes (at accept, or after a
//! response: keep-alive idle time counts, as with hyper's
//! `header_read_timeout`). It is re-armed lazily: each wait only notes its
//! start, and the sleep, when it fires early for an older deadline, is
//! reset to the current one. A request whose head is already buffered
//! never touches the timer. Writes are bounded by the socket's
//! `WriteTimeout`, body reads by the proxy's own body timeout.
//!
//! Graceful shutdown: a connection waiting for a head closes at once; one
//! inside a request finishes it (answering with `Connection: close` if its
//! head has not gone yet), then closes.
//!
//! A request body not read to its end when the response is complete is
//! drained from what is already buffered (a little, never waiting); if
//! that does not reach its end the connection closes, so leftover body
//! bytes are never parsed as a request.

mod body;
mod encode;
mod head;
mod split;
mod upgrade;
mod write;

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use self::body::{lock, Continue, Shared, SharedSource};
pub(crate) use self::body::{Http1Body, Http1BodyError};
use self::encode::{Exchange, Framing};
use self::head::{Head, HeadError};
// For the differential fuzz target (re-exported by a `fuzzing` module
// when that lands); only the unit tests use it until then.
#[allow(unused_imports)]
// `pub`, not `pub(crate)`: re-exported by `crate::fuzzing` for the
// differential fuzz target.
pub use self::split::{split_requests, End, ParsedRequest};
use self::upgrade::Upgraded;
pub(crate) use self::upgrade::{on_upgrade, OnUpgrade};
use self::write::{close, flush, write_all, write_body};
use super::{stopped, BoxError, ConnSettings, RequestBody};
use crate::http1::decoder::{Decoded, Framing as BodyFraming};

/// Data frames at least this large are written straight from the body's
/// buffer instead of being copied into the write buffer.
const COPY_LIMIT: usize = 16 * 1024;
/// The write buffer is written out once it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// Most body bytes drained (already buffered) from a request whose body
/// the service did not read.
const DRAIN_LIMIT: usize = 64 * 1024;
/// How long a closing connection keeps reading (and discarding) what the
/// client still sends, so that its answer is not lost to a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_LIMIT: usize = 1024 * 1024;

/// Why a connection ended early. None of these carry request bytes.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// Reading from the client failed.
    #[error("reading from the client")]
    Read(#[source] io::Error),
    /// Writing to the client failed (or stalled past the write timeout).
    #[error("writing to the client")]
    Write(#[source] io::Error),
    /// A request head was refused with a bare answer.
    #[error("refused a request")]
    Refused(#[source] HeadError),
    /// The response body failed part-way; the response was cut short.
    #[error("the response body failed")]
    Body(#[source] BoxError),
    /// The response body did not match the length its head declared.
    #[error("the response body did not match its content-length")]
    Length,
    /// The client closed the connection while its response was pending.
    #[error("the client closed the connection mid-response")]
    Gone,
}

/// Serves HTTP/1.1 on `io` until the client or the server closes it.
pub(super) async fn serve<I, S, F, B>(
    io: I,
    service: S,
    settings: &ConnSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ConnError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let shared = Arc::new(Mutex::new(Shared::new(io)));
    let timeout = settings.header_timeout;
    let max_head = settings.max_header_bytes;
    let mut sleep = pin!(tokio::time::sleep_until(Instant::now() + timeout));
    let mut stopping = pin!(stopped(stop));
    let mut stop_seen = false;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut seq: u64 = 0;
    loop {
        // ---- the next request head
        let mut waiting_since: Option<Instant> = None;
        let next = poll_fn(|cx| {
            if !stop_seen && stopping.as_mut().poll(cx).is_ready() {
                stop_seen = true;
            }
            if stop_seen {
                return Poll::Ready(Ok(None));
            }
            let mut guard = lock(&shared);
            let conn = &mut *guard;
            loop {
                if !conn.read.is_empty() {
                    if let Some(head) = head::parse(&mut conn.read, max_head, |_, _| {})? {
                        return Poll::Ready(Ok(Some(head)));
                    }
                }
                if conn.eof {
                    return Poll::Ready(Ok(None));
                }
                match conn.poll_fill(cx) {
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(NextError::Read(error))),
                    Poll::Pending => break,
                }
            }
            let due = *waiting_since.get_or_insert_with(Instant::now) + timeout;
            loop {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if Instant::now() >= due {
                    tracing::debug!("no request head within the header timeout");
                    return Poll::Ready(Ok(None));
                }
                sleep.as_mut().reset(due);
            }
        })
        .await;
        let head = match next {
            Ok(Some(head)) => head,
            // Nothing more: the client closed, the header timeout passed,
            // or the server is shutting down.
            Ok(None) => return Ok(()),
            Err(NextError::Read(error)) => return Err(ConnError::Read(error)),
            Err(NextError::Refused(refused)) => {
                buf.clear();
                encode::refusal(&mut buf, refused.status());
                write_all(&shared, &buf).await.map_err(ConnError::Write)?;
                close(&shared, true).await;
                return Err(ConnError::Refused(refused));
            }
        };

        // ---- the request
        seq += 1;
        let Head {
            method,
            uri,
            version,
            headers,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let is_head = method == Method::HEAD;
        let body = {
            lock(&shared).begin(seq, framing, expect_continue);
            if framing == BodyFraming::Length(0) {
                Http1Body::empty()
            } else {
                let source: SharedSource = shared.clone();
                Http1Body::new(source, seq)
            }
        };
        let mut request = Request::new(RequestBody::Http1(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.version_mut() = version;
        *request.headers_mut() = headers;
        let switch = if upgrade && version == Version::HTTP_11 {
            let (tx, slot) = OnUpgrade::pair();
            request.extensions_mut().insert(slot);
            Some(tx)
        } else {
            None
        };

        let mut handling = pin!(service(request));
        let response = poll_fn(|cx| {
            if !stop_seen && stopping.as_mut().poll(cx).is_ready() {
                stop_seen = true;
            }
            if let Poll::Ready(response) = handling.as_mut().poll(cx) {
                return Poll::Ready(Some(response));
            }
            if client_gone(&shared, max_head, cx) {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await;
        let Some(response) = response else {
            // The client hung up: the service's work (an upstream request)
            // is dropped with its future.
            return Ok(());
        };

        // ---- the response
        let (parts, body) = response.into_parts();
        let mut body = pin!(body);
        {
            // Too late for `100 Continue`: the answer is the final one.
            let mut conn = lock(&shared);
            if conn.interim == Continue::Wanted {
                conn.interim = Continue::No;
            }
        }
        buf.clear();
        let exchange = Exchange {
            version,
            head: is_head,
            keep_alive: keep_alive && !stop_seen,
        };
        let (framing, keep_alive) = encode::head(&mut buf, &parts, &body.size_hint(), exchange);
        let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS;
        drop(parts);
        if framing == Framing::None {
            write_all(&shared, &buf).await.map_err(ConnError::Write)?;
            flush(&shared).await.map_err(ConnError::Write)?;
        } else if let Err(error) =
            write_body(&shared, &mut buf, body.as_mut(), framing, max_head).await
        {
            close(&shared, false).await;
            return Err(error);
        }

        // ---- what next
        if switching {
            let taken = {
                let mut conn = lock(&shared);
                let rest = conn.read.split().freeze();
                conn.io.take().map(|io| (io, rest))
            };
            if let (Some(tx), Some((io, rest))) = (switch, taken) {
                let _ = tx.send(Upgraded::new(io, rest));
            }
            return Ok(());
        }
        if !keep_alive {
            let unread = !drain(&shared);
            close(&shared, unread).await;
            return Ok(());
        }
        if !drain(&shared) {
            close(&shared, true).await;
            return Ok(());
        }
    }
}

/// Why waiting for a head failed.
enum NextError {
    Read(io::Error),
    Refused(HeadError),
}

impl From<HeadError> for NextError {
    fn from(error: HeadError) -> Self {
        NextError::Refused(error)
    }
}

/// Whether the client has closed the connection (or it failed), checked
/// while the service or the response body is pending, as hyper does
/// (without its `half_close` option): the work for a client that is gone
/// is dropped rather than finished. Only read once the request body has
/// been read (the body's bytes are its reader's), and only while the
/// buffer holds less than a head's worth of pipelined bytes.
fn client_gone<I: AsyncRead + AsyncWrite + Unpin>(
    shared: &Mutex<Shared<I>>,
    max_head: usize,
    cx: &mut std::task::Context<'_>,
) -> bool {
    let mut conn = lock(shared);
    if conn.eof {
        return true;
    }
    if conn.failed || !conn.decoder.is_done() {
        return false;
    }
    while conn.read.len() < max_head {
        match conn.poll_fill(cx) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
            Poll::Ready(Ok(_)) => {}
            Poll::Pending => return false,
        }
    }
    false
}

/// Whether the request body has been read to its end, draining what of it
/// is already buffered (up to [`DRAIN_LIMIT`]) if the service left it.
fn drain<I: AsyncRead + AsyncWrite + Unpin>(shared: &Mutex<Shared<I>>) -> bool {
    let mut conn = lock(shared);
    if conn.failed {
        return false;
    }
    let mut budget = DRAIN_LIMIT;
    while !conn.decoder.is_done() {
        let conn = &mut *conn;
        match conn.decoder.decode(&mut conn.read) {
            Ok(Decoded::Data(data)) if data.len() <= budget => budget -= data.len(),
            Ok(Decoded::Trailers(_) | Decoded::End) => {}
            Ok(Decoded::Data(_) | Decoded::NeedMore) | Err(_) => return false,
        }
    }
    // A `100 Continue` never sent is never owed.
    conn.interim = Continue::No;
    true
}
