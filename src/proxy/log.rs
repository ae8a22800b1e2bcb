//! The record of one request (its access-log line and its metrics), carried
//! until its response ends.
//!
//! A [`PendingLog`] is created when keygate knows the status, travels inside
//! the [`super::body::ResponseBody`], and is completed exactly once: when
//! the body ends, or when it is dropped before that. The outcome becomes
//! `incomplete` when the body failed mid-stream, or when it was dropped
//! after some of it was sent (the client went away); a body dropped before
//! any byte was sent (an empty body is never polled) keeps its outcome.
//! Completing it counts the request in the metrics and, when the access
//! log is on, writes the line.

use std::net::IpAddr;
use std::time::Instant;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, StatusCode, Uri};

use std::sync::Arc;

use crate::access_log::{AccessLog, Line};
use crate::keys::KeyId;
use crate::metrics::Metrics;
use crate::timestamp::Timestamp;

/// The path to log: from the validated target, or the raw URI when the
/// target was refused. Both are refcounted clones, and only `path()` (never
/// the query) is ever read from them.
#[derive(Debug)]
pub(crate) enum LogPath {
    Target(PathAndQuery),
    Raw(Uri),
}

impl LogPath {
    fn path(&self) -> &str {
        match self {
            LogPath::Target(pq) => pq.path(),
            LogPath::Raw(uri) => uri.path(),
        }
    }
}

/// What is known about a request when it arrives.
#[derive(Debug)]
pub(crate) struct RequestInfo {
    pub(crate) time: Timestamp,
    pub(crate) started: Instant,
    pub(crate) client: IpAddr,
    pub(crate) method: Method,
    pub(crate) path: LogPath,
}

/// Who a request was made as, for its log line: the user's shared header
/// value (a reference-count clone) and the key id, copied inline. Moved,
/// not cloned, from the request's authentication to its log line.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) user: HeaderValue,
    pub(crate) key_id: KeyId,
}

impl Caller {
    /// The caller a verified key stands for.
    pub(crate) fn of(entry: &crate::keys::Entry) -> Self {
        Caller {
            user: entry.user_header().clone(),
            key_id: entry.id(),
        }
    }
}

/// An access-log line waiting for the end of its response body.
#[derive(Debug)]
pub struct PendingLog {
    log: AccessLog,
    metrics: Arc<Metrics>,
    info: RequestInfo,
    status: StatusCode,
    outcome: &'static str,
    caller: Option<Caller>,
    bytes: u64,
    written: bool,
}

impl PendingLog {
    /// A record for a request that ended (or will end) with `status`.
    pub(crate) fn new(
        log: &AccessLog,
        metrics: &Arc<Metrics>,
        info: RequestInfo,
        status: StatusCode,
        outcome: &'static str,
        caller: Option<Caller>,
    ) -> Self {
        PendingLog {
            log: log.clone(),
            metrics: metrics.clone(),
            info,
            status,
            outcome,
            caller,
            bytes: 0,
            written: false,
        }
    }

    pub(crate) fn add_bytes(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    pub(crate) fn set_aborted(&mut self) {
        self.outcome = "incomplete";
    }

    /// Writes the line now.
    pub(crate) fn finish(mut self) {
        self.write();
    }

    fn write(&mut self) {
        if self.written {
            return;
        }
        self.written = true;
        let duration = self.info.started.elapsed();
        self.metrics.request(self.outcome, duration);
        if !self.log.is_enabled() {
            return;
        }
        let line = Line {
            time: self.info.time,
            client: self.info.client,
            method: self.info.method.as_str(),
            path: self.info.path.path(),
            status: self.status.as_u16(),
            outcome: self.outcome,
            user: self.caller.as_ref().and_then(|c| c.user.to_str().ok()),
            key_id: self.caller.as_ref().map(|c| c.key_id.as_str()),
            duration_ms: duration,
            bytes: self.bytes,
        };
        self.log.write(&line);
    }
}

impl Drop for PendingLog {
    fn drop(&mut self) {
        if !self.written {
            // Dropped before the body ended: the client went away, or the
            // body was never polled because it was empty.
            if self.bytes > 0 {
                self.set_aborted();
            }
            self.write();
        }
    }
}
