//! The accept loop shared by the proxy and admin listeners.
//!
//! It owns what every listener needs and nothing more: accept, set
//! `TCP_NODELAY`, hand the connection to hyper with a timer (hyper enforces
//! the header-read timeout only when it has one), and on shutdown stop
//! accepting, ask every connection to finish its current request, and wait
//! for them within a deadline.
//!
//! Draining follows mini-redis rather than hyper-util's `GracefulShutdown`:
//! each connection task holds a clone of one `mpsc::Sender`, and the loop
//! waits until every clone is gone. That works for any connection type
//! hyper has (including upgradeable HTTP/1, which `GracefulShutdown` does
//! not accept), and it is all the machinery there is.
//!
//! hyper's HTTP/1 connection is used directly rather than hyper-util's
//! auto-detecting one: the auto builder first waits for 24 bytes to tell
//! HTTP/1 from an HTTP/2 preface, with no timer, so a client that connects
//! and sends nothing would never meet the header timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Per-connection HTTP settings, read when the connection is accepted (so a
/// reload applies to new connections).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnSettings {
    /// Deadline for each request head. hyper starts this timer as soon as
    /// it waits for the next head, so it also bounds keep-alive idle time
    /// and a connection that never sends anything.
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
    S: HttpService<Incoming, ResBody = B> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone; `recv` returns `None` once all
    // are gone, which is how the drain knows it is done.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
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
        let mut stop = stop_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(settings.header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                // `map(drop)`: the watch's read guard must not live
                // across the `.await` below (it is not `Send`).
                () = async { stop.wait_for(|stop| *stop).await.map(drop).unwrap_or(()) } => {
                    // Finish the request in progress (if any), then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(listener = name, %peer, %error, "connection ended with an error");
            }
            drop(alive);
        });
    }
    drop(listener);
    tracing::debug!(listener = name, "stopped accepting; draining connections");
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!(
            listener = name,
            grace_secs = grace.as_secs(),
            "connections still open after the grace period; closing them"
        );
    }
}
