//! HTTP/2 connections, served on the h2 crate directly.
//!
//! hyper's HTTP/2 server gives a connection two ways to end, graceful
//! (GOAWAY `NO_ERROR`) or dropped, and forgets a stream the moment its
//! client resets it. A gateway needs more, so this module drives h2 itself
//! and owns four rules (issue 14 of the outside probe):
//!
//! - **Upstream work is bounded by the stream limit.** Each stream holds
//!   one of the connection's `max_concurrent_streams` slots from before it
//!   is handled until its upstream exchange has ended, even when the client
//!   resets the stream first: a reset stops counting for h2 at once, but
//!   keygate lets the upstream request it already sent run to its end (or
//!   its timeout) and only then frees the slot. Streams opened meanwhile
//!   wait for a slot. So one connection never has more upstream requests in
//!   flight than its stream limit, however fast it opens and resets
//!   streams (Go's net/http answered CVE-2023-44487 the same way).
//! - **Resetting streams faster than a sane client is cut off.** Every
//!   stream the client resets before its response ended takes a token
//!   from a bucket holding `max_concurrent_streams` tokens and refilled at
//!   that many per [`RESET_WINDOW`]; a reset that finds the bucket empty
//!   gets GOAWAY `ENHANCE_YOUR_CALM`. A browser abandoning a full page of
//!   streams stays inside it; the batch-then-reset pattern does not. The
//!   h2 crate's own limits stay on for the other shapes of the attack:
//!   resets of streams not yet accepted (the classic rapid reset) and
//!   streams the client makes us reset (CVE-2025-8671, "MadeYouReset").
//! - **Idle connections close.** A connection with no stream open for the
//!   header timeout gets GOAWAY `NO_ERROR` and is closed, as HTTP/1.1
//!   keep-alive is; answering PINGs does not keep it open, and neither does
//!   a header block that never finishes (it is not a stream until it does).
//! - **Dead peers are noticed.** A PING every `keep_alive` interval must be
//!   answered within the same interval.
//!
//! Each stream runs as its own task ([`stream`]), as hyper's do.

mod stream;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::{Ping, PingPong, Reason};
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify, Semaphore};

use super::{stopped, BoxError, ConnSettings, RequestBody};

/// The period over which a connection may reset as many streams as its
/// stream limit.
pub(crate) const RESET_WINDOW: Duration = Duration::from_secs(10);

/// Streams the client may reset before keygate has accepted them; beyond
/// this h2 sends GOAWAY `ENHANCE_YOUR_CALM` (CVE-2023-44487).
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
/// Streams the client may make keygate reset (protocol errors on a stream)
/// before h2 sends GOAWAY `ENHANCE_YOUR_CALM` (CVE-2025-8671).
const MAX_LOCAL_ERROR_RESETS: usize = 256;

// Windows and buffers as hyper chose them for servers: the protocol's 64
// KiB default windows throttle uploads over any real round trip.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME_SIZE: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// Serves one HTTP/2 connection until it ends, or until `stop` asks it to
/// finish (GOAWAY, then the open streams complete).
pub(crate) async fn serve<I, S, F, B>(
    io: I,
    service: S,
    settings: &ConnSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), h2::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    let limits = settings.http2;
    let header_list = u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX);
    let handshake = h2::server::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(header_list)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .handshake::<_, Bytes>(io);
    let mut conn = tokio::select! {
        handshake = tokio::time::timeout(settings.header_timeout, handshake) => match handshake {
            Ok(conn) => conn?,
            Err(_elapsed) => return Ok(()),
        },
        () = stopped(stop) => return Ok(()),
    };

    let shared = Arc::new(Shared::new(limits.max_concurrent_streams));
    let keep_alive = keep_alive(conn.ping_pong(), limits.keep_alive);
    tokio::pin!(keep_alive);
    let ending = loop {
        tokio::select! {
            biased;
            () = stopped(stop) => break Ending::Shutdown,
            () = shared.calm.notified() => break Ending::Calm,
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    stream::spawn(&service, request, respond, shared.open(), settings.write_timeout);
                }
                Some(Err(error)) => return Err(error),
                None => return Ok(()),
            },
            () = shared.idle(settings.header_timeout) => break Ending::Idle,
            () = &mut keep_alive => break Ending::Unanswered,
        }
    };
    match ending {
        // Finish what was asked for, refuse the rest.
        Ending::Shutdown => conn.graceful_shutdown(),
        Ending::Calm => {
            tracing::info!("HTTP/2 client reset streams too fast; sent ENHANCE_YOUR_CALM");
            conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
        }
        // No stream is open, so nothing is lost by closing at once.
        Ending::Idle | Ending::Unanswered => conn.abrupt_shutdown(Reason::NO_ERROR),
    }
    // Drive the connection until h2 has said goodbye: it sends the GOAWAY,
    // lets streams below its last id finish, then ends.
    while let Some(accepted) = conn.accept().await {
        let (request, respond) = accepted?;
        stream::spawn(
            &service,
            request,
            respond,
            shared.open(),
            settings.write_timeout,
        );
    }
    Ok(())
}

/// Why the accept loop stopped.
enum Ending {
    /// The server is shutting down.
    Shutdown,
    /// The client reset streams faster than the reset rule allows.
    Calm,
    /// No stream was open for the header timeout.
    Idle,
    /// A keep-alive PING went unanswered.
    Unanswered,
}

/// Sends a PING every `interval` and resolves when one is not answered
/// within the next `interval`. Never resolves otherwise.
async fn keep_alive(ping: Option<PingPong>, interval: Duration) {
    let Some(mut ping) = ping else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(interval).await;
        if ping.send_ping(Ping::opaque()).is_err() {
            // The connection is failing; accept reports why.
            return std::future::pending().await;
        }
        match tokio::time::timeout(interval, std::future::poll_fn(|cx| ping.poll_pong(cx))).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_)) => return std::future::pending().await,
            Err(_elapsed) => return,
        }
    }
}

/// What a connection's streams share with its accept loop.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Streams whose task is still running (including a reset stream whose
    /// upstream exchange is still finishing).
    open: AtomicUsize,
    /// Woken when `open` falls to zero.
    went_idle: Notify,
    /// One permit per stream limit; held from before a stream is handled
    /// until its upstream exchange has ended.
    pub(crate) slots: Arc<Semaphore>,
    /// The reset rule's bucket.
    resets: Mutex<Bucket>,
    /// Woken when the reset rule is broken.
    calm: Notify,
}

impl Shared {
    fn new(max_streams: u32) -> Self {
        let max_streams = max_streams.max(1);
        Shared {
            open: AtomicUsize::new(0),
            went_idle: Notify::new(),
            slots: Arc::new(Semaphore::new(max_streams as usize)),
            resets: Mutex::new(Bucket::new(f64::from(max_streams), RESET_WINDOW)),
            calm: Notify::new(),
        }
    }

    /// Counts a stream as open until the returned guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::AcqRel);
        OpenStream {
            shared: self.clone(),
        }
    }

    /// The client reset a stream before its response ended.
    pub(crate) fn reset_by_client(&self) {
        let allowed = match self.resets.lock() {
            Ok(mut bucket) => bucket.take(Instant::now()),
            // A poisoned lock means a panic elsewhere; fail closed.
            Err(_) => false,
        };
        if !allowed {
            self.calm.notify_one();
        }
    }

    /// Resolves once no stream has been open for `timeout`.
    async fn idle(&self, timeout: Duration) {
        loop {
            if self.open.load(Ordering::Acquire) == 0 {
                tokio::select! {
                    () = tokio::time::sleep(timeout) => {
                        if self.open.load(Ordering::Acquire) == 0 {
                            return;
                        }
                    }
                    // A stream ended meanwhile (one opened: the accept
                    // loop would have restarted this future).
                    () = self.went_idle.notified() => {}
                }
            } else {
                self.went_idle.notified().await;
            }
        }
    }
}

/// A stream counted as open; see [`Shared::open`].
#[derive(Debug)]
pub(crate) struct OpenStream {
    shared: Arc<Shared>,
}

impl OpenStream {
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.shared.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.went_idle.notify_one();
        }
    }
}

/// A token bucket: `capacity` tokens, refilled at `capacity` per `period`.
#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    updated: Option<Instant>,
}

impl Bucket {
    fn new(capacity: f64, period: Duration) -> Self {
        Bucket {
            capacity,
            per_second: capacity / period.as_secs_f64(),
            tokens: capacity,
            updated: None,
        }
    }

    /// Takes a token at `now`; `false` when there was none.
    fn take(&mut self, now: Instant) -> bool {
        if let Some(updated) = self.updated {
            let refill = now.saturating_duration_since(updated).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.updated = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_bucket_allows_its_capacity_then_refills_over_the_window() {
        let start = Instant::now();
        let mut bucket = Bucket::new(100.0, RESET_WINDOW);
        assert!((0..100).all(|_| bucket.take(start)));
        assert!(!bucket.take(start), "the 101st reset at once");
        // A tenth of the window later, a tenth of the capacity is back.
        let later = start + RESET_WINDOW / 10;
        assert!((0..10).all(|_| bucket.take(later)));
        assert!(!bucket.take(later));
    }
}
