//! The accept loop shared by the proxy and admin listeners.
//!
//! It owns what every listener needs and nothing more: accept, set
//! `TCP_NODELAY`, hand the connection to hyper with a timer (hyper enforces
//! the header-read timeout only when it has one), watch it for graceful
//! shutdown, and on shutdown stop accepting and let connections finish
//! within a deadline (hyper-util's `server_graceful` pattern).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-connection HTTP settings, read when the connection is accepted (so a
/// reload applies to new connections).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    /// Deadline for each request head; also bounds keep-alive idle time,
    /// since hyper starts the timer as soon as it waits for the next head.
    pub(crate) header_timeout: Duration,
}

/// Serves `listener` until `shutdown` resolves, then drains for at most
/// `grace`. `connection` builds the service for each accepted peer.
pub(crate) async fn serve<S, B>(
    name: &'static str,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    mut connection: impl FnMut(SocketAddr) -> (ConnSettings, S),
) where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let (settings, service) = connection(peer);
        let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_timeout)
            .keep_alive(true);
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(listener = name, %peer, error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::debug!(listener = name, "stopped accepting; draining connections");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(listener = name, grace_secs = grace.as_secs(), "connections still open after the grace period; closing them");
    }
}
