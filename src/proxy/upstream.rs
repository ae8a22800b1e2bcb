//! The pooled HTTP/1.1 client that reaches the application.
//!
//! One hyper-util `Client` per configuration: connections are kept alive
//! and reused across requests. A reload builds a new client (and so a new
//! pool); requests already in flight finish on the old one. `TCP_NODELAY`
//! is set because every request is a small write followed by a wait.
//!
//! `https://` upstreams go through rustls (hyper-rustls), with webpki's
//! roots or the CA file of `proxy.upstream_ca`, and the upstream's host
//! name as SNI. The upstream is always spoken to in HTTP/1.1: HTTP/2
//! towards the application buys nothing on a LAN or loopback hop.

use std::path::Path;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::{BodyError, TimedBody};
use super::refusal::{BadRequest, Refusal, UpstreamCause};
use crate::tls::{self, TlsError};

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connection attempts that take longer than this fail with 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The upstream client.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, TimedBody>,
}

impl Upstream {
    /// A client with keygate's pool settings, trusting `ca` (or webpki's
    /// roots) for `https://` upstreams.
    pub fn new(ca: Option<&Path>) -> Result<Self, TlsError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls::upstream_client_config(ca)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Upstream { client })
    }

    /// Sends a request and waits for the response head, at most `timeout`.
    pub async fn send(
        &self,
        request: Request<TimedBody>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Refusal> {
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_elapsed) => Err(Refusal::GatewayTimeout),
            Ok(Err(error)) => {
                // The client's own body failing (bad chunking, a stall) is
                // the client's fault, not the upstream's: 400, no warning.
                if let Some(body) = client_body_error(&error) {
                    return Err(Refusal::BadRequest(body));
                }
                let cause = classify(&error);
                tracing::warn!(cause = cause.as_str(), error = %ErrorChain(&error), "upstream request failed");
                Err(Refusal::BadGateway(cause))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Whether the request failed because the client's body did.
fn client_body_error(error: &hyper_util::client::legacy::Error) -> Option<BadRequest> {
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        match err.downcast_ref::<BodyError>() {
            Some(BodyError::Timeout(_)) => return Some(BadRequest::BodyTimeout),
            Some(BodyError::Stream(_)) => return Some(BadRequest::Body),
            None => source = err.source(),
        }
    }
    None
}

fn classify(error: &hyper_util::client::legacy::Error) -> UpstreamCause {
    if error.is_connect() {
        return UpstreamCause::Connect;
    }
    let mut source = std::error::Error::source(error);
    while let Some(err) = source {
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            if hyper_err.is_incomplete_message() || hyper_err.is_canceled() || hyper_err.is_closed()
            {
                return UpstreamCause::Closed;
            }
        }
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
