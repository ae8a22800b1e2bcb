//! The accept loop shared by the proxy and admin listeners.
//!
//! It owns what every listener needs and nothing more: a cap on open
//! connections, accept, `TCP_NODELAY`, the TLS handshake (under the header
//! timeout, so a silent client cannot park a handshake), HTTP/1.1 or HTTP/2
//! by ALPN, hyper's timer (hyper enforces its header-read timeout only when
//! it has one), and on shutdown: stop accepting, ask every connection to
//! finish what it is doing, and wait for them within a deadline.
//!
//! Draining follows mini-redis rather than hyper-util's `GracefulShutdown`:
//! each connection task holds a clone of one `mpsc::Sender`, and the loop
//! waits until every clone is gone. That works for every connection type
//! (upgradeable HTTP/1 included), and it is all the machinery there is.
//!
//! hyper's HTTP/1 and HTTP/2 connections are used directly rather than
//! hyper-util's auto-detecting one: the auto builder first waits for 24
//! bytes to tell HTTP/1 from an HTTP/2 preface, with no timer, so a client
//! that connects and sends nothing would never meet the header timeout.
//! Over TLS, ALPN already says which protocol the client speaks; plain
//! connections are HTTP/1.1 only.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::HttpService;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use prometheus_client::metrics::gauge::Gauge;

use self::write_timeout::WriteTimeout;
use crate::config::Http2Limits;
use crate::tls::Tls;

mod write_timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-connection HTTP settings, read when the connection is accepted (so a
/// reload applies to new connections).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    /// Deadline for the TLS handshake and for each request head. hyper
    /// starts the head timer as soon as it waits for the next request, so
    /// it also bounds keep-alive idle time and a connection that never
    /// sends anything.
    pub(crate) header_timeout: Duration,
    /// Cap on a request head (HTTP/1) or header list (HTTP/2).
    pub(crate) max_header_bytes: usize,
    /// HTTP/2 limits, when HTTP/2 is offered (TLS listeners only).
    pub(crate) http2: Http2Limits,
    /// A write to the client that makes no progress for this long ends the
    /// connection (a client that stopped reading).
    pub(crate) write_timeout: Duration,
}

/// What a listener serves, besides its service.
#[derive(Debug)]
pub(crate) struct ListenerOptions {
    /// A name for logs.
    pub(crate) name: &'static str,
    /// TLS termination, if any.
    pub(crate) tls: Option<Arc<Tls>>,
    /// One permit per open connection; at the cap, new connections wait in
    /// the kernel's accept queue instead of being accepted. Shared by every
    /// worker accepting on the same socket, so the cap is per process.
    pub(crate) slots: Arc<Semaphore>,
    /// How long a shutdown waits for connections to finish.
    pub(crate) grace: Duration,
    /// Counts open connections, when this listener is measured.
    pub(crate) open_connections: Option<Gauge>,
}

/// Serves `listener` until `shutdown` resolves, then drains. `connection`
/// builds the settings and service for each accepted peer; its `bool` says
/// whether the connection is TLS.
pub(crate) async fn serve<S, B>(
    listener: TcpListener,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()>,
    mut connection: impl FnMut(SocketAddr, bool) -> (ConnSettings, S),
) where
    S: HttpService<Incoming, ResBody = B> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let name = options.name;
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all
    // are gone, which is how the drain knows it is done.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = options.slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE/ENFILE: back off briefly rather than spin.
                tracing::warn!(listener = name, %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (settings, service) = connection(peer, options.tls.is_some());
        let stream = WriteTimeout::new(stream, settings.write_timeout);
        let mut stop = stop_rx.clone();
        let alive = alive_tx.clone();
        let tls = options.tls.clone();
        let open = options.open_connections.clone();
        if let Some(open) = &open {
            open.inc();
        }
        tokio::spawn(async move {
            let result = match tls {
                None => serve_http1(stream, service, &settings, &mut stop).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        settings.header_timeout,
                        tls.acceptor().accept(stream),
                    );
                    let stream = tokio::select! {
                        handshake = handshake => match handshake {
                            Ok(Ok(stream)) => Some(stream),
                            Ok(Err(error)) => {
                                tracing::debug!(listener = name, %peer, %error, "TLS handshake failed");
                                None
                            }
                            Err(_elapsed) => None,
                        },
                        () = stopped(&mut stop) => None,
                    };
                    match stream {
                        None => Ok(()),
                        Some(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                            serve_http2(stream, service, &settings, &mut stop).await
                        }
                        Some(stream) => serve_http1(stream, service, &settings, &mut stop).await,
                    }
                }
            };
            if let Err(error) = result {
                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
            }
            if let Some(open) = open {
                open.dec();
            }
            drop(alive);
            drop(slot);
        });
    }
    drop(listener);
    tracing::debug!(listener = name, "stopped accepting; draining connections");
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(options.grace, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            grace_secs = options.grace.as_secs(),
            "connections still open after the grace period; closing them"
        );
    }
}

/// Resolves once shutdown has begun. Its own function so that the watch's
/// read guard (not `Send`) never lives across an `.await` of the caller.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn serve_http1<I, S, B>(
    io: I,
    service: S,
    settings: &ConnSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(stop) => {
            // Finish the request in progress (if any), then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

async fn serve_http2<I, S, B>(
    io: I,
    service: S,
    settings: &ConnSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let limits = settings.http2;
    let header_list = u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX);
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(header_list)
        .keep_alive_interval(limits.keep_alive)
        .keep_alive_timeout(limits.keep_alive)
        // Rapid-reset (CVE-2023-44487) and error floods: a peer that makes
        // us reset many streams, or resets many itself before we accept
        // them, is disconnected rather than served.
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(256))
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => result,
        () = stopped(stop) => {
            // Sends GOAWAY, lets open streams finish, then closes.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}
