//! Handing a switched (`101`) connection to whoever asked for it.
//!
//! A request that offers an upgrade (`Connection: upgrade` and `Upgrade`)
//! carries a [`OnUpgrade`] slot in its extensions; [`on_upgrade`] takes it
//! out, like `hyper::upgrade::on`. When the service answers `101`, the
//! connection writes that head, then sends the socket and the bytes it had
//! already read past the request (the new protocol's first bytes) down a
//! oneshot and ends; any other answer drops the sender, and the future
//! resolves to an error. Requests that do not offer an upgrade (nearly
//! all) get no slot and no allocation; HTTP/2 requests never upgrade.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::Request;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use super::body::lock;

/// Any client socket (plain or TLS, with the write timeout).
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's side of a switched connection.
pub(crate) struct Upgraded {
    io: Box<dyn Io>,
    /// Bytes the client sent right behind its request, already read.
    read_ahead: Bytes,
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("read_ahead", &self.read_ahead.len())
            .finish_non_exhaustive()
    }
}

impl Upgraded {
    pub(super) fn new<I: AsyncRead + AsyncWrite + Send + Unpin + 'static>(
        io: I,
        read_ahead: Bytes,
    ) -> Self {
        Upgraded {
            io: Box::new(io),
            read_ahead,
        }
    }
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read_ahead.is_empty() {
            let n = this.read_ahead.len().min(buf.remaining());
            buf.put_slice(&this.read_ahead[..n]);
            this.read_ahead.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Why there is no upgraded connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// The request did not offer an upgrade, or was not HTTP/1.1 (or its
    /// slot was already taken).
    #[error("the request cannot be upgraded")]
    NotUpgradable,
    /// The connection ended without switching: the answer was not `101`,
    /// or writing it failed.
    #[error("the connection did not switch protocols")]
    NotSwitched,
}

/// The client's half of a protocol switch: resolves once the `101` has
/// been written.
#[derive(Clone)]
pub(crate) struct OnUpgrade {
    /// Shared only so the slot can live in `http::Extensions` (which wants
    /// `Clone + Sync`); taken by the first poll.
    rx: Option<Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>>,
}

impl fmt::Debug for OnUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnUpgrade")
            .field("upgradable", &self.rx.is_some())
            .finish()
    }
}

impl OnUpgrade {
    /// A slot for a request that offers an upgrade, and its sender.
    pub(super) fn pair() -> (oneshot::Sender<Upgraded>, OnUpgrade) {
        let (tx, rx) = oneshot::channel();
        let slot = OnUpgrade {
            rx: Some(Arc::new(Mutex::new(Some(rx)))),
        };
        (tx, slot)
    }
}

impl Future for OnUpgrade {
    type Output = Result<Upgraded, UpgradeError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = &self.rx else {
            return Poll::Ready(Err(UpgradeError::NotUpgradable));
        };
        let mut slot = lock(slot);
        let Some(rx) = slot.as_mut() else {
            return Poll::Ready(Err(UpgradeError::NotUpgradable));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(result) => {
                *slot = None;
                Poll::Ready(result.map_err(|_| UpgradeError::NotSwitched))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The client's half of `request`'s protocol switch (taken out of the
/// request; a second call gets one that fails).
pub(crate) fn on_upgrade<B>(request: &mut Request<B>) -> OnUpgrade {
    request
        .extensions_mut()
        .remove::<OnUpgrade>()
        .unwrap_or(OnUpgrade { rx: None })
}
