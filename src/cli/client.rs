//! A minimal admin API client over hyper's HTTP/1.1 connection API.
//!
//! One connection per command is all the CLI needs, so there is no pool:
//! connect, send one request, read the JSON answer. The whole call (connect
//! included) has one deadline: a server that accepts and never answers, or
//! answers a byte at a time, must not hang a health check. Errors say what
//! to check ("is keygate serve running?") rather than only what failed.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// A CLI failure, shown on stderr as one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The config file could not be used.
    #[error("{0}")]
    Config(String),
    /// The command was given nothing to do.
    #[error("{0}")]
    Usage(String),
    /// `--admin` is not an http:// URL.
    #[error("--admin must be an http:// URL such as http://127.0.0.1:8081, not {0:?}")]
    BadUrl(String),
    /// Nothing answered.
    #[error("cannot reach the admin API at {url}: {source} (is `keygate serve` running?)")]
    Connect {
        /// The admin URL.
        url: String,
        /// Why.
        source: std::io::Error,
    },
    /// The exchange failed part-way.
    #[error("admin API at {url} failed: {source}")]
    Http {
        /// The admin URL.
        url: String,
        /// Why.
        source: hyper::Error,
    },
    /// No complete answer within the deadline.
    #[error("admin API at {url} did not answer within {}", humantime::format_duration(*.after))]
    Timeout {
        /// The admin URL.
        url: String,
        /// The deadline (`--timeout`).
        after: Duration,
    },
    /// The API answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// The HTTP status.
        status: StatusCode,
        /// The API's `error` text.
        message: String,
    },
}

/// A client for one admin API base URL.
#[derive(Debug)]
pub struct AdminClient {
    url: String,
    authority: String,
    token: Option<String>,
    /// The deadline for each call, connect to last body byte.
    timeout: Duration,
}

impl AdminClient {
    /// A client for `base` (e.g. `http://127.0.0.1:8081`) whose calls each
    /// give up after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Result<Self, ClientError> {
        let uri: Uri = base
            .parse()
            .map_err(|_| ClientError::BadUrl(base.to_owned()))?;
        if uri.scheme_str() != Some("http") || !matches!(uri.path(), "" | "/") {
            return Err(ClientError::BadUrl(base.to_owned()));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::BadUrl(base.to_owned()))?;
        let authority = if authority.port().is_some() {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(AdminClient {
            url: base.trim_end_matches('/').to_owned(),
            authority,
            token,
            timeout,
        })
    }

    /// This client with a deadline of at least `timeout`.
    pub fn with_timeout_at_least(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.max(timeout);
        self
    }

    /// Sends one request; returns the JSON body of a 2xx answer (or `null`
    /// for 204), or the API's error, or [`ClientError::Timeout`] if the
    /// whole exchange took longer than the client's timeout.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .unwrap_or_else(|_elapsed| {
                Err(ClientError::Timeout {
                    url: self.url.clone(),
                    after: self.timeout,
                })
            })
    }

    /// One request and its whole answer, with no deadline of its own.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ClientError> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|source| ClientError::Connect {
                url: self.url.clone(),
                source,
            })?;
        let http_err = |source| ClientError::Http {
            url: self.url.clone(),
            source,
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http_err)?;
        tokio::spawn(connection);

        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let bytes = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|_| ClientError::BadUrl(format!("{}{path}", self.url)))?;
        let response = sender.send_request(request).await.map_err(http_err)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http_err)?
            .to_bytes();
        let json: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
        };
        if status.is_success() {
            Ok(json)
        } else {
            let message = json["error"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("unexpected answer {json}"));
            Err(ClientError::Api { status, message })
        }
    }
}
