//! What can go wrong on the upstream leg, and whose fault it was.
//!
//! Two types, because a failure means different things before and after
//! the response head: [`ExchangeError`] ends the request before anything
//! was sent to the client, so it becomes one of keygate's own answers
//! (502, or 400 when the client's own body failed); [`ReadError`] happens
//! while the response body streams, when the status line has already gone
//! out, so all that is left is to cut the client's response short.
//!
//! Neither carries header values, targets or bodies: nothing a client sent
//! (an `Authorization`, a query string) can end up in a log line through
//! them.

use std::io;

use super::super::body::BodyError;
use super::super::refusal::{BadRequest, UpstreamCause};
use super::transport::ConnectError;
pub use crate::http1::FramingError;

/// Why a response head never arrived.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// No connection could be made.
    #[error("connecting")]
    Connect(#[from] ConnectError),
    /// Writing the request failed.
    #[error("writing the request")]
    Write(#[source] io::Error),
    /// Reading the response failed.
    #[error("reading the response head")]
    Read(#[source] io::Error),
    /// The upstream closed the connection before a complete response head.
    #[error("the connection closed before a complete response head")]
    Closed,
    /// The response head is not HTTP/1.x.
    #[error("invalid response head")]
    Parse(#[source] httparse::Error),
    /// More header lines than [`crate::http1::fields::MAX_HEADERS`], or a head
    /// longer than [`super::response::MAX_HEAD_BYTES`].
    #[error("response head too large")]
    HeadTooLarge,
    /// A status code httparse accepted but `http` does not (`000`-`099`).
    #[error("invalid response status")]
    Status,
    /// More informational (1xx) responses than anyone sends.
    #[error("too many informational responses")]
    TooManyInformational,
    /// The response head's framing cannot be trusted.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// The client's request body failed (malformed, cut short, or stalled)
    /// while it was being sent: the client's fault, not the upstream's.
    #[error("the client's request body failed")]
    ClientBody(#[source] BodyError),
    /// The client's request body did not match its `Content-Length` (a
    /// guard: both front ends enforce it).
    #[error("the request body did not match its Content-Length")]
    RequestLength,
}

impl ExchangeError {
    /// What the client is told: the upstream's cause for a 502, or the
    /// reason for a 400 when the client's own body failed.
    pub(crate) fn blame(&self) -> Result<UpstreamCause, BadRequest> {
        match self {
            ExchangeError::Connect(_) => Ok(UpstreamCause::Connect),
            ExchangeError::Write(_) | ExchangeError::Read(_) | ExchangeError::Closed => {
                Ok(UpstreamCause::Closed)
            }
            ExchangeError::Parse(_)
            | ExchangeError::HeadTooLarge
            | ExchangeError::Status
            | ExchangeError::TooManyInformational
            | ExchangeError::Framing(_) => Ok(UpstreamCause::Other),
            ExchangeError::ClientBody(BodyError::Timeout(_)) => Err(BadRequest::BodyTimeout),
            ExchangeError::ClientBody(_) | ExchangeError::RequestLength => Err(BadRequest::Body),
        }
    }
}

/// Why a response body stopped before its end. The client's response is
/// cut short and the upstream connection closed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading from the upstream failed.
    #[error("reading the response body")]
    Io(#[source] io::Error),
    /// The upstream closed the connection before the end its framing
    /// promised (fewer bytes than `Content-Length`, no last chunk).
    #[error("the upstream closed the connection before the body ended")]
    Truncated,
    /// The body's chunked framing is broken.
    #[error("response body framing")]
    Framing(#[source] FramingError),
    /// The client's request body did not match its `Content-Length` (a
    /// guard: both front ends enforce it before keygate sees the body).
    #[error("the request body did not match its Content-Length")]
    RequestLength,
}
