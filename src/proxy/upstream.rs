//! The pooled HTTP/1.1 client that reaches the application.
//!
//! One hyper-util `Client` for the life of the process: connections are
//! kept alive and reused across requests (the pool is keyed by scheme and
//! authority, so a reload that changes the upstream simply starts using new
//! connections). `TCP_NODELAY` is set because every request is a small
//! write followed by a wait for the answer.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::TimedBody;
use super::refusal::{Refusal, UpstreamCause};

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Connection attempts that take longer than this fail with 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The upstream client.
#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, TimedBody>,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    /// A client with keygate's pool settings.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Upstream { client }
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
                let cause = classify(&error);
                tracing::warn!(cause = cause.as_str(), error = %ErrorChain(&error), "upstream request failed");
                Err(Refusal::BadGateway(cause))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }
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
