//! The upstream leg: a single-origin HTTP/1.1 client made for forwarding.
//!
//! keygate forwards every request to one application, in HTTP/1.1 over
//! kept-alive connections from [`Pool`] (HTTP/2 towards the application
//! buys nothing on a LAN or loopback hop). hyper's client was general
//! machinery for this one job: a dispatch channel and a spawned task per
//! connection, a `HeaderMap` rebuilt for the wire, a body channel. Here the
//! request's own future does the work, on the worker thread that already
//! runs it:
//!
//! 1. check out a connection ([`Pool::checkout`]);
//! 2. serialise the head into the connection's reused buffer and write it
//!    in one write ([`request`]);
//! 3. send the body while waiting for the response head, parsed with
//!    httparse ([`response`]); informational (1xx) answers are skipped;
//! 4. hand the client a response whose body reads the rest straight off
//!    the connection ([`UpstreamBody`]) and returns it to the pool when the
//!    exchange ended cleanly.
//!
//! Both front ends (keygate's HTTP/1.1 server and the h2 server) call
//! [`Upstream::send`] the same way. `https://` upstreams go through rustls
//! with webpki's roots or the CA file of `proxy.upstream_ca`, and the
//! upstream's host name as SNI.
//!
//! A request is written to at most one connection that may have received
//! it: a pooled connection found closed before the request was written is
//! replaced; once any byte of the request may have reached the
//! application, a failure is a 502 and never a second send.

mod body;
mod connection;
pub(crate) mod error;
mod request;
pub(crate) mod response;
mod transport;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use tokio::io::AsyncWrite;

pub(crate) use self::body::Switched;
pub use self::body::UpstreamBody;
pub(crate) use self::connection::Connection;
pub use self::error::{FramingError, ReadError};
pub(crate) use self::transport::{ConnectError, Dialer};

use self::body::Exchange;
use self::error::ExchangeError;
use self::request::{ClientBody, SendError};
use self::response::Head;
use super::pool::Pool;
use super::refusal::Refusal;
use crate::config::UpstreamOrigin;
use crate::tls::{self, TlsError};

/// Informational (1xx) answers skipped before a final one; an upstream
/// sending more is broken.
const MAX_INFORMATIONAL: usize = 16;

/// The upstream client for one configuration.
#[derive(Debug, Clone)]
pub struct Upstream {
    pool: Pool,
}

impl Upstream {
    /// A client for `origin`, trusting `ca` (or webpki's roots) when the
    /// origin is `https://`, with a share of idle connections for each of
    /// `workers` worker threads.
    pub fn new(
        origin: &UpstreamOrigin,
        ca: Option<&std::path::Path>,
        workers: usize,
    ) -> Result<Self, TlsError> {
        let tls = if origin.scheme == http::uri::Scheme::HTTPS {
            let mut config = tls::upstream_client_config(ca)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Some(Arc::new(config))
        } else {
            None
        };
        Ok(Upstream {
            pool: Pool::new(origin, tls, workers),
        })
    }

    /// Sends a request (origin-form target, `Host` set) and waits for the
    /// response head, at most `timeout` including any connection set-up.
    /// The response body then allows pauses of at most `body_timeout`.
    /// `now` is when the request was sent (the pool ages connections with
    /// it).
    pub(crate) async fn send(
        &self,
        request: Request<ClientBody>,
        timeout: Duration,
        body_timeout: Duration,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, Refusal> {
        let exchange = self.exchange(request, body_timeout, now);
        match tokio::time::timeout(timeout, exchange).await {
            // Dropping the exchange closes its connection: a late answer
            // can never be read as a later request's.
            Err(_elapsed) => Err(Refusal::GatewayTimeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => match error.blame() {
                // The client's own body failing (bad chunking, a stall) is
                // the client's fault, not the upstream's: 400, no warning.
                Err(bad_request) => Err(Refusal::BadRequest(bad_request)),
                Ok(cause) => {
                    tracing::warn!(cause = cause.as_str(), error = %ErrorChain(&error), "upstream request failed");
                    Err(Refusal::BadGateway(cause))
                }
            },
        }
    }

    async fn exchange(
        &self,
        request: Request<ClientBody>,
        body_timeout: Duration,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, ExchangeError> {
        let head_request = request.method() == Method::HEAD;
        let (mut conn, mut pooled) = self.pool.checkout(now).await?;
        let mut sender =
            request::encode(request, &mut conn.head).map_err(|_| ExchangeError::RequestLength)?;
        loop {
            match write_head(&mut conn).await {
                Ok(()) => break,
                // Not one byte was taken: the upstream had closed this
                // pooled connection. Each retry uses up a pooled
                // connection, and a new one is never retried, so this ends.
                Err(HeadWrite::Unsent(_)) if pooled => {
                    let head = std::mem::take(&mut conn.head);
                    (conn, pooled) = self.pool.checkout(now).await?;
                    conn.head = head;
                }
                Err(HeadWrite::Unsent(error) | HeadWrite::Partial(error)) => {
                    return Err(ExchangeError::Write(error))
                }
            }
        }

        let mut informational = 0;
        let head: Head = poll_fn(|cx| {
            if !sender.is_done() {
                match sender.poll_send(cx, &mut conn.io) {
                    // The application may have stopped reading to answer
                    // early (a 413, say): its answer is still wanted.
                    Poll::Ready(Err(SendError::Write(error))) => {
                        tracing::debug!(%error, "upstream stopped taking the request body");
                    }
                    Poll::Ready(Err(SendError::Body(error))) => {
                        return Poll::Ready(Err(ExchangeError::ClientBody(error)))
                    }
                    Poll::Ready(Err(SendError::Length)) => {
                        return Poll::Ready(Err(ExchangeError::RequestLength))
                    }
                    Poll::Ready(Ok(())) | Poll::Pending => {}
                }
            }
            loop {
                if !conn.read.is_empty() {
                    if let Some(head) = response::parse(&mut conn.read, head_request)? {
                        if head.status.is_informational()
                            && head.status != StatusCode::SWITCHING_PROTOCOLS
                        {
                            informational += 1;
                            if informational > MAX_INFORMATIONAL {
                                return Poll::Ready(Err(ExchangeError::TooManyInformational));
                            }
                            continue;
                        }
                        return Poll::Ready(Ok(head));
                    }
                }
                match ready!(conn.poll_fill(cx)) {
                    Ok(0) => return Poll::Ready(Err(ExchangeError::Closed)),
                    Ok(_) => {}
                    Err(error) => return Poll::Ready(Err(ExchangeError::Read(error))),
                }
            }
        })
        .await?;

        let Head {
            status,
            version,
            headers,
            reason,
            framing,
            keep_alive,
        } = head;
        let exchange = Exchange {
            conn,
            sender,
            keep_alive,
            pool: self.pool.clone(),
            lent: now,
        };
        let body = if status == StatusCode::SWITCHING_PROTOCOLS {
            UpstreamBody::switched(exchange, body_timeout)
        } else {
            UpstreamBody::new(exchange, framing, body_timeout)
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        if let Some(reason) = reason {
            response.extensions_mut().insert(reason);
        }
        Ok(response)
    }
}

/// Why a request head could not be written.
enum HeadWrite {
    /// Nothing of it was written.
    Unsent(std::io::Error),
    /// Some of it may have reached the upstream.
    Partial(std::io::Error),
}

/// Writes the head serialised in `conn.head` (one write, unless the socket
/// takes only part of it) and flushes it.
async fn write_head(conn: &mut Connection) -> Result<(), HeadWrite> {
    let Connection { io, head, .. } = conn;
    let mut written = 0;
    poll_fn(|cx| {
        while written < head.len() {
            match ready!(Pin::new(&mut *io).poll_write(cx, &head[written..])) {
                Ok(0) => {
                    let error = std::io::ErrorKind::WriteZero.into();
                    return Poll::Ready(Err(match written {
                        0 => HeadWrite::Unsent(error),
                        _ => HeadWrite::Partial(error),
                    }));
                }
                Ok(n) => written += n,
                Err(error) if written == 0 => return Poll::Ready(Err(HeadWrite::Unsent(error))),
                Err(error) => return Poll::Ready(Err(HeadWrite::Partial(error))),
            }
        }
        Pin::new(&mut *io)
            .poll_flush(cx)
            .map_err(HeadWrite::Partial)
    })
    .await
}

/// Displays an error with its sources, for one log field.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}
