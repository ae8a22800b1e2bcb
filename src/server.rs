//! The accept loop shared by the proxy and admin listeners.
//!
//! It owns what every listener needs and nothing more: a cap on open
//! connections, accept, `TCP_NODELAY`, the TLS handshake (under the header
//! timeout, so a silent client cannot park a handshake), HTTP/1.1 or HTTP/2
//! by ALPN, and on shutdown: stop accepting, ask every connection to
//! finish what it is doing, and wait for them within a deadline.
//!
//! Draining follows mini-redis rather than hyper-util's `GracefulShutdown`:
//! each connection task holds a clone of one `mpsc::Sender`, and the loop
//! waits until every clone is gone. That works for every connection type
//! (upgradeable HTTP/1 included), and it is all the machinery there is.
//!
//! HTTP/1.1 is keygate's own connection ([`http1`]); HTTP/2 is the h2
//! crate driven by
//! [`http2`], which owns the rules hyper's HTTP/2 server cannot express
//! (upstream work bounded by the stream limit, a reset-rate rule with
//! GOAWAY `ENHANCE_YOUR_CALM`, an idle deadline). Both hand the same
//! service a `Request<RequestBody>`. There is no protocol sniffing: over
//! TLS, ALPN says which protocol the client speaks; plain connections are
//! HTTP/1.1 only (an auto-detecting server would first have to wait for 24
//! bytes to tell the two apart).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};

use prometheus_client::metrics::gauge::Gauge;

pub(crate) use self::body::{Http2Body, RequestBody, RequestBodyError};
pub(crate) use self::http1::{on_upgrade, OnUpgrade};
pub use self::http1::{split_requests, End, ParsedRequest};
use self::write_timeout::WriteTimeout;
use crate::config::Http2Limits;
use crate::tls::Tls;

mod body;
mod date;
mod http1;
mod http2;
mod write_timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-connection HTTP settings, read when the connection is accepted (so a
/// reload applies to new connections).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    /// Deadline for the TLS handshake and for each request head. The head
    /// timer starts as soon as the connection waits for the next request,
    /// so it also bounds keep-alive idle time and a connection that never
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
/// builds the settings and the service for each accepted peer (its `bool`
/// says whether the connection is TLS); the service is called once per
/// request, and its future is the whole of that request's handling.
pub(crate) async fn serve<S, F, B>(
    listener: TcpListener,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()>,
    mut connection: impl FnMut(SocketAddr, bool) -> (ConnSettings, S),
) where
    S: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
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
                            http2::serve(stream, service, &settings, &mut stop)
                                .await
                                .map_err(BoxError::from)
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

async fn serve_http1<I, S, F, B>(
    io: I,
    service: S,
    settings: &ConnSettings,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<RequestBody>) -> F + Send + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    http1::serve(io, service, settings, stop)
        .await
        .map_err(BoxError::from)
}
