//! Kept-alive HTTP/1.1 connections to the upstream.
//!
//! keygate talks to exactly one origin, so the pool is one LIFO stack of
//! idle connections rather than hyper-util's general pool (keyed by origin,
//! with a connector service, a checkout future and a task spawned per
//! request to watch each connection become idle again). Profiling put that
//! machinery at about 12% of keygate's CPU per request; this is the part of
//! it a single-origin proxy needs:
//!
//! - [`Pool::checkout`] pops the most recently used idle connection (warm
//!   in every cache, least likely to have been closed by the upstream), or
//!   connects a new one (TCP, `TCP_NODELAY`, keep-alive, then TLS for an
//!   `https://` origin, then hyper's HTTP/1.1 handshake).
//! - A [`Lease`] travels with the response body and hands the connection
//!   back only when that body was read to its end; a body cut short leaves
//!   the connection mid-message, so it is dropped (hyper closes it).
//! - Idle connections older than [`IDLE_TIMEOUT`] are dropped when seen, and
//!   at most [`MAX_IDLE`] are kept per worker. Age is counted from when a
//!   connection was last lent, with the instant the request already took,
//!   so the pool itself never reads the clock.
//!
//! Each connection is driven by its own task, on the worker thread that
//! opened it; the [`SendRequest`] handles are what the pool stores, one
//! stack per worker ([`crate::worker::index`]), so a request only ever uses
//! a connection its own thread drives: no wake-up crosses threads. A reload builds a new pool; leases on the old
//! one keep it alive until their bodies end.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::body::TimedBody;
use crate::config::UpstreamOrigin;
use crate::server::RequestBody;

/// How long an idle connection is kept.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept at most, per worker; beyond this many requests in
/// flight at once on one worker, connections are closed after their
/// response.
pub(super) const MAX_IDLE: usize = 1024;
/// Connection attempts (TCP and TLS) that take longer than this fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive probes on upstream connections, so that a silently dead
/// peer does not keep an idle connection in the pool.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// A handle to send one request on one upstream connection.
pub(super) type Sender = SendRequest<TimedBody<RequestBody>>;

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum ConnectError {
    #[error("resolving the upstream host")]
    Resolve(#[source] io::Error),
    #[error("the upstream host resolved to no address")]
    NoAddress,
    #[error("connecting to {addr}")]
    Tcp {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("TLS handshake")]
    Tls(#[source] io::Error),
    #[error("HTTP/1.1 handshake")]
    Handshake(#[source] hyper::Error),
}

/// The idle connections to one origin, and how to make new ones.
#[derive(Debug, Clone)]
pub(super) struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    /// One stack per worker thread.
    idle: Box<[Mutex<VecDeque<Idle>>]>,
    host: String,
    port: u16,
    /// Set for an `https://` origin: rustls with the upstream's roots, and
    /// the host name to send as SNI and verify the certificate against.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

struct Idle {
    sender: Sender,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("since", &self.since).finish()
    }
}

impl Pool {
    /// An empty pool for `origin`; `tls` is the client config for an
    /// `https://` origin (ignored for `http://`).
    pub(super) fn new(
        origin: &UpstreamOrigin,
        tls: Option<Arc<rustls::ClientConfig>>,
        workers: usize,
    ) -> Self {
        let host = origin.host().to_owned();
        let tls = tls.and_then(|config| {
            let name = ServerName::try_from(host.clone()).ok()?;
            Some((TlsConnector::from(config), name))
        });
        Pool {
            shared: Arc::new(Shared {
                idle: (0..workers.max(1))
                    .map(|_| Mutex::new(VecDeque::new()))
                    .collect(),
                port: origin.port(),
                host,
                tls,
            }),
        }
    }

    /// A connection ready for a request: a pooled one if any is still
    /// open, else a new one. The flag says whether it was pooled (a pooled
    /// connection may have been closed by the upstream in the meantime, so
    /// a request it never sent may be retried).
    pub(super) async fn checkout(&self, now: Instant) -> Result<(Sender, bool), ConnectError> {
        while let Some(mut sender) = self.take(now) {
            // Usually ready at once; a connection handed back the moment
            // its last response body ended may need its task to run first.
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    /// A lease on `sender`, lent at `now`, to hand it back once its
    /// response has ended.
    pub(super) fn lease(&self, sender: Sender, now: Instant) -> Lease {
        Lease {
            sender,
            pool: self.clone(),
            lent: now,
        }
    }

    fn take(&self, now: Instant) -> Option<Sender> {
        let mut idle = self.lock();
        while let Some(entry) = idle.pop_back() {
            if !entry.sender.is_closed() && now.duration_since(entry.since) < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    fn put(&self, sender: Sender, since: Instant) {
        if sender.is_closed() {
            return;
        }
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
            idle.push_back(Idle { sender, since });
        }
    }

    /// This worker's stack. Uncontended: only its own thread takes it.
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle>> {
        let stacks = &self.shared.idle;
        let stack = &stacks[crate::worker::index() % stacks.len()];
        // The queue holds no invariant a panic could break half-way.
        stack.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn connect(&self) -> Result<Sender, ConnectError> {
        let shared = &*self.shared;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tcp_connect(&shared.host, shared.port))
            .await
            .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))??;
        match &shared.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))?
                        .map_err(ConnectError::Tls)?;
                handshake(tls).await
            }
        }
    }
}

/// Resolves `host` and connects to the first address that answers.
async fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    // An IP literal is parsed without a DNS lookup.
    for addr in tokio::net::lookup_host((host, port))
        .await
        .map_err(ConnectError::Resolve)?
    {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Both are best effort: a socket without them still works.
                let _ = stream.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                return Ok(stream);
            }
            Err(source) => last = Some(ConnectError::Tcp { addr, source }),
        }
    }
    Err(last.unwrap_or(ConnectError::NoAddress))
}

/// hyper's HTTP/1.1 handshake over `io`, with the connection driven by its
/// own task (which also carries a `101 Switching Protocols` over to the
/// upgraded stream).
async fn handshake<T>(io: T) -> Result<Sender, ConnectError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// A connection lent to one request. [`Lease::release`] hands it back to
/// the pool; dropping the lease instead closes the connection.
#[derive(Debug)]
pub(crate) struct Lease {
    sender: Sender,
    pool: Pool,
    /// When the connection was lent: its idle age counts from here.
    lent: Instant,
}

impl Lease {
    /// The response on this connection was read to its end: the connection
    /// can carry another request.
    pub(crate) fn release(self) {
        self.pool.put(self.sender, self.lent);
    }
}
