//! Sending a request to the application and classifying what went wrong.
//!
//! The upstream is always spoken to in HTTP/1.1 over kept-alive
//! connections from [`Pool`]: HTTP/2 towards the application buys nothing
//! on a LAN or loopback hop. `https://` upstreams go through rustls with
//! webpki's roots or the CA file of `proxy.upstream_ca`, and the upstream's
//! host name as SNI.
//!
//! A request that a pooled connection never sent (the upstream had closed
//! it while idle) is retried on another connection; a request that may
//! have reached the application is never sent twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;

use super::body::{BodyError, TimedBody};
use super::pool::{ConnectError, Lease, Pool};
use super::refusal::{BadRequest, Refusal, UpstreamCause};
use crate::config::UpstreamOrigin;
use crate::server::RequestBody;
use crate::tls::{self, TlsError};

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
    /// `now` is when the request was sent (the pool ages connections with
    /// it). The lease hands the connection back once the response body
    /// ends.
    pub(crate) async fn send(
        &self,
        request: Request<TimedBody<RequestBody>>,
        timeout: Duration,
        now: Instant,
    ) -> Result<(Response<Incoming>, Lease), Refusal> {
        match tokio::time::timeout(timeout, self.round_trip(request, now)).await {
            Err(_elapsed) => Err(Refusal::GatewayTimeout),
            Ok(Ok(sent)) => Ok(sent),
            Ok(Err(Failure::Connect(error))) => {
                tracing::warn!(cause = "connect", error = %ErrorChain(&error), "upstream request failed");
                Err(Refusal::BadGateway(UpstreamCause::Connect))
            }
            Ok(Err(Failure::Request(error))) => {
                // The client's own body failing (bad chunking, a stall) is
                // the client's fault, not the upstream's: 400, no warning.
                if let Some(body) = client_body_error(&error) {
                    return Err(Refusal::BadRequest(body));
                }
                let cause = classify(&error);
                tracing::warn!(cause = cause.as_str(), error = %ErrorChain(&error), "upstream request failed");
                Err(Refusal::BadGateway(cause))
            }
        }
    }

    async fn round_trip(
        &self,
        mut request: Request<TimedBody<RequestBody>>,
        now: Instant,
    ) -> Result<(Response<Incoming>, Lease), Failure> {
        loop {
            let (mut sender, pooled) = self.pool.checkout(now).await.map_err(Failure::Connect)?;
            match sender.try_send_request(request).await {
                Ok(response) => return Ok((response, self.pool.lease(sender, now))),
                Err(mut failed) => match failed.take_message() {
                    // Never written: the pooled connection was closed under
                    // us. Each retry uses up a pooled connection, and a new
                    // connection is never retried, so this ends.
                    Some(unsent) if pooled => request = unsent,
                    _ => return Err(Failure::Request(failed.into_error())),
                },
            }
        }
    }
}

enum Failure {
    Connect(ConnectError),
    Request(hyper::Error),
}

/// Whether the request failed because the client's body did.
fn client_body_error(error: &hyper::Error) -> Option<BadRequest> {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        match err.downcast_ref::<BodyError>() {
            Some(BodyError::Timeout(_)) => return Some(BadRequest::BodyTimeout),
            Some(BodyError::Stream(_) | BodyError::Http2(_)) => return Some(BadRequest::Body),
            None => source = err.source(),
        }
    }
    None
}

fn classify(error: &hyper::Error) -> UpstreamCause {
    if error.is_incomplete_message() || error.is_canceled() || error.is_closed() {
        return UpstreamCause::Closed;
    }
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if err.downcast_ref::<std::io::Error>().is_some() {
            return UpstreamCause::Closed;
        }
        source = err.source();
    }
    UpstreamCause::Other
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
