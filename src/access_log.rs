//! The access log: one JSON line per proxied request (SPEC 8).
//!
//! Fields: `time`, `client`, `method`, `path` (never the query), `status`,
//! `outcome`, `user`, `key_id`, `duration_ms`, `bytes` (response body bytes
//! sent). There is no field that could hold a key, a secret, an
//! `Authorization` value or a query string; the type below is the whole
//! vocabulary.
//!
//! Lines are formatted on the request's task but written by a dedicated
//! thread (`tracing-appender`'s non-blocking writer, in lossless mode), so a
//! slow stdout never stalls the proxy and the hot path makes no syscall.

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};

use crate::timestamp::Timestamp;

/// Longest path written; longer ones are cut (a log line has to stay a
/// line, and a hostile client controls the path).
const MAX_PATH: usize = 512;

/// Where access-log lines go.
#[derive(Debug, Clone)]
pub struct AccessLog {
    writer: Option<NonBlocking>,
}

/// Keeps the writer thread alive; dropping it flushes what is queued.
#[derive(Debug)]
pub struct AccessLogGuard(#[allow(dead_code)] Option<WorkerGuard>);

impl AccessLog {
    /// A log that writes nowhere.
    pub fn disabled() -> (Self, AccessLogGuard) {
        (AccessLog { writer: None }, AccessLogGuard(None))
    }

    /// A log to stdout.
    pub fn stdout() -> (Self, AccessLogGuard) {
        Self::to_writer(std::io::stdout())
    }

    /// A log to any writer (tests pass a channel-backed one).
    pub fn to_writer(writer: impl Write + Send + 'static) -> (Self, AccessLogGuard) {
        let (writer, guard) = NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("keygate-access-log")
            .finish(writer);
        (
            AccessLog {
                writer: Some(writer),
            },
            AccessLogGuard(Some(guard)),
        )
    }

    /// Whether lines are written at all (skip building them if not).
    pub fn is_enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// Writes one line.
    pub fn write(&self, line: &Line<'_>) {
        let Some(writer) = &self.writer else {
            return;
        };
        let mut bytes = Vec::with_capacity(256);
        if serde_json::to_writer(&mut bytes, line).is_ok() {
            bytes.push(b'\n');
            // One write call is one line for the worker thread.
            let _ = writer.clone().write_all(&bytes);
        }
    }
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    /// When the request arrived (RFC 3339 UTC).
    #[serde(serialize_with = "as_display")]
    pub time: Timestamp,
    /// The client address (after trusted-proxy resolution).
    pub client: IpAddr,
    /// The HTTP method.
    pub method: &'a str,
    /// The path, without the query, cut at 512 bytes.
    #[serde(serialize_with = "truncated")]
    pub path: &'a str,
    /// The status sent to the client.
    pub status: u16,
    /// `forwarded`, `anonymous`, or why the request was refused.
    pub outcome: &'a str,
    /// The authenticated user, if any.
    pub user: Option<&'a str>,
    /// The key id used, if any (never the secret).
    pub key_id: Option<&'a str>,
    /// From request arrival to the end of the response body.
    #[serde(serialize_with = "as_millis")]
    pub duration_ms: Duration,
    /// Response body bytes sent.
    pub bytes: u64,
}

fn as_display<S: serde::Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    // Three decimals (microsecond resolution) are plenty and keep lines short.
    s.serialize_f64((d.as_secs_f64() * 1_000_000.0).round() / 1000.0)
}

fn truncated<S: serde::Serializer>(path: &&str, s: S) -> Result<S::Ok, S::Error> {
    let mut end = path.len().min(MAX_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    s.serialize_str(&path[..end])
}
