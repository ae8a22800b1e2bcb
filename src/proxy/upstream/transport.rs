//! The byte stream under an upstream connection: plain TCP, or TLS over
//! TCP for an `https://` origin, and how one is opened.
//!
//! An enum rather than a boxed `dyn AsyncRead + AsyncWrite`: the match is
//! free next to a syscall and nothing is allocated per connection for a
//! plain upstream. The TLS stream is boxed inside its variant because it
//! is about a kilobyte and a half, and a plain connection should not carry
//! that much dead weight in every idle slot of the pool.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Connection attempts (TCP and TLS) that take longer than this fail.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive probes on upstream connections, so that a silently dead
/// peer does not keep an idle connection in the pool.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// Why a new connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
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
}

/// Where and how to connect: the origin's host and port, and for an
/// `https://` origin the rustls connector and the name to verify.
pub(crate) struct Dialer {
    host: String,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Connects to `host:port`, through TLS with `tls` when it is set.
    pub(crate) fn new(host: String, port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let tls = tls.and_then(|config| {
            let name = ServerName::try_from(host.clone()).ok()?;
            Some((TlsConnector::from(config), name))
        });
        Dialer { host, port, tls }
    }

    /// A new connection: TCP (`TCP_NODELAY`, keep-alive), then TLS for an
    /// `https://` origin.
    pub(crate) async fn connect(&self) -> Result<Transport, ConnectError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tcp_connect(&self.host, self.port))
            .await
            .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))??;
        match &self.tls {
            None => Ok(Transport::Plain(tcp)),
            Some((connector, name)) => {
                let tls =
                    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))?
                        .map_err(ConnectError::Tls)?;
                Ok(Transport::Tls(Box::new(tls)))
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

/// An open connection to the upstream.
#[derive(Debug)]
pub(crate) enum Transport {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(tcp) => tcp.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            // TCP has nothing buffered in user space.
            Transport::Plain(_) => Poll::Ready(Ok(())),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}
