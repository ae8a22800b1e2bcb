//! Kept-alive HTTP/1.1 connections to the upstream.
//!
//! keygate talks to exactly one origin, so the pool is one LIFO stack of
//! idle connections per worker thread rather than a general pool keyed by
//! origin:
//!
//! - [`Pool::checkout`] pops the most recently used idle connection (warm
//!   in every cache, least likely to have been closed by the upstream)
//!   that still looks open ([`Connection::is_open`]), or connects a new
//!   one (TCP, `TCP_NODELAY`, keep-alive, then TLS for an `https://`
//!   origin).
//! - A connection comes back through [`Pool::put`] only from the response
//!   body, once the exchange on it ended cleanly (see
//!   [`super::upstream::UpstreamBody`]); anything else drops it, which
//!   closes it.
//! - Idle connections older than [`IDLE_TIMEOUT`] are dropped when seen, and
//!   at most [`MAX_IDLE`] are kept per worker. Age is counted from when a
//!   connection was last lent, with the instant the request already took,
//!   so the pool itself never reads the clock.
//!
//! There is no task per connection: an idle connection is a socket and two
//! buffers in a stack, and whether the upstream closed it meanwhile is
//! found out when it is next taken. The stacks are per worker
//! ([`crate::worker::index`]), so a request only ever uses a connection
//! registered with its own thread's event loop: no wake-up crosses threads.
//! A reload builds a new pool; bodies streaming on the old one keep it
//! alive until they end.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::upstream::{ConnectError, Connection, Dialer};
use crate::config::UpstreamOrigin;

/// How long an idle connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept at most, per worker; beyond this many requests in
/// flight at once on one worker, connections are closed after their
/// response.
pub(super) const MAX_IDLE: usize = 1024;

/// The idle connections to one origin, and how to make new ones.
#[derive(Debug, Clone)]
pub(crate) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// One stack per worker thread.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    dialer: Dialer,
}

#[derive(Debug)]
struct Idle {
    conn: Connection,
    since: Instant,
}

impl Pool {
    /// An empty pool for `origin`; `tls` is the client config for an
    /// `https://` origin (ignored for `http://`).
    pub(super) fn new(
        origin: &UpstreamOrigin,
        tls: Option<Arc<rustls::ClientConfig>>,
        workers: usize,
    ) -> Self {
        Pool {
            shared: Arc::new(Shared {
                idle: (0..workers.max(1))
                    .map(|_| Mutex::new(VecDeque::new()))
                    .collect(),
                dialer: Dialer::new(origin.host().to_owned(), origin.port(), tls),
            }),
        }
    }

    /// A connection ready for a request: a pooled one that still looks
    /// open, else a new one. The flag says whether it was pooled (a
    /// pooled connection may have been closed by the upstream just now, so
    /// a request found unsent on it may go to another).
    pub(super) async fn checkout(&self, now: Instant) -> Result<(Connection, bool), ConnectError> {
        if let Some(conn) = self.take(now) {
            return Ok((conn, true));
        }
        // Boxed: dialling (a TLS handshake, for `https://`) is the rare
        // path, and its state is over 1 KB. Inline, it would sit in every
        // request's future, which is moved whole when a stream's task is
        // spawned.
        let io = Box::pin(self.shared.dialer.connect()).await?;
        Ok((Connection::new(io), false))
    }

    fn take(&self, now: Instant) -> Option<Connection> {
        let mut idle = self.lock();
        while let Some(mut entry) = idle.pop_back() {
            if now.duration_since(entry.since) < IDLE_TIMEOUT && entry.conn.is_open() {
                return Some(entry.conn);
            }
        }
        None
    }

    /// Hands back `conn`, lent at `since`, after a clean exchange.
    pub(super) fn put(&self, conn: Connection, since: Instant) {
        let mut idle = self.lock();
        // The front holds the connections lent longest ago: expire from
        // there (the order is by lending time, so roughly by idleness).
        while idle
            .front()
            .is_some_and(|entry| since.duration_since(entry.since) >= IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < MAX_IDLE {
            idle.push_back(Idle { conn, since });
        }
    }

    /// This worker's stack. Uncontended: only its own thread takes it.
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let stacks = &self.shared.idle;
        let stack = &stacks[crate::worker::index() % stacks.len()];
        // The queue holds no invariant a panic could break half-way.
        stack.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use http::uri::{Authority, Scheme};
    use tokio::net::TcpListener;

    use super::{Pool, IDLE_TIMEOUT};
    use crate::config::UpstreamOrigin;

    /// A pool towards a listener that accepts and holds every connection
    /// (so pooled ones stay open), and the count of connections accepted.
    async fn pool() -> (Pool, tokio::sync::watch::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (count, accepted) = tokio::sync::watch::channel(0);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                count.send_replace(held.len());
            }
        });
        let origin = UpstreamOrigin {
            scheme: Scheme::HTTP,
            authority: Authority::try_from(addr.to_string()).unwrap(),
        };
        (Pool::new(&origin, None, 1), accepted)
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_until_its_idle_timeout_then_replaced() {
        let (pool, accepted) = pool().await;
        let lent = Instant::now();
        let (conn, pooled) = pool.checkout(lent).await.unwrap();
        assert!(!pooled, "an empty pool dials");
        pool.put(conn, lent);

        // Just inside the timeout: the same connection comes back.
        let almost = lent + IDLE_TIMEOUT - Duration::from_millis(1);
        let (conn, pooled) = pool.checkout(almost).await.unwrap();
        assert!(
            pooled,
            "a connection idle for less than the timeout is reused"
        );
        pool.put(conn, lent);

        // At the timeout: it is dropped and a new one is dialled.
        let (_conn, pooled) = pool.checkout(lent + IDLE_TIMEOUT).await.unwrap();
        assert!(!pooled, "a connection idle for the timeout is not reused");
        let mut accepted = accepted;
        accepted.wait_for(|n| *n == 2).await.unwrap();
        assert!(pool.lock().is_empty(), "the expired one was dropped");
    }

    #[tokio::test]
    async fn handing_a_connection_back_expires_the_stale_ones() {
        let (pool, _accepted) = pool().await;
        let start = Instant::now();
        let (stale, _) = pool.checkout(start).await.unwrap();
        let (fresh, _) = pool.checkout(start).await.unwrap();
        pool.put(stale, start);
        assert_eq!(pool.lock().len(), 1);
        pool.put(fresh, start + IDLE_TIMEOUT);
        assert_eq!(pool.lock().len(), 1, "the stale connection was expired");
        let (_conn, pooled) = pool.checkout(start + IDLE_TIMEOUT).await.unwrap();
        assert!(pooled, "the fresh one is lent");
        assert_eq!(pool.lock().len(), 0);
    }
}
