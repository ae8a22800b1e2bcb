//! Parsing a request head with httparse and reading its framing strictly.
//!
//! The head is parsed in place from the connection's read buffer (see
//! [`crate::http1::fields`]); once complete, that
//! part of the buffer is frozen and every header value is a slice of it, so
//! a head costs one pre-sized `HeaderMap` and no copy per value, as in
//! hyper and in the upstream client's response parser.
//!
//! Framing (RFC 9112 6) is decided here and nowhere else, so the live
//! connection and [`super::split`] (the fuzzing oracle) cannot disagree:
//!
//! - `Transfer-Encoding` must hold exactly one coding, `chunked` (any
//!   case), over all its lines, and never on HTTP/1.0;
//! - `Content-Length` must be 1 to 19 digits; several lines must agree, and
//!   a comma list is refused;
//! - both together are refused (RFC 9112 6.1 would let a server read the
//!   chunked framing and close; a gateway cannot know how the next reader
//!   frames it, see `SECURITY.md`);
//! - otherwise there is no body.
//!
//! httparse itself refuses obs-fold, whitespace before a colon, bare CR,
//! and NUL or other control bytes in names and values.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use crate::http1::decoder::Framing;
use crate::http1::fields::{self, Fields};
use crate::http1::{parse_length, range, trim, FramingError};

/// Headers the proxy adds to a forwarded request (see `parse`).
const FORWARDING_HEADROOM: usize = 4;

/// A parsed request head and what it says about the connection.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// How the body is delimited: a length (0 for none) or chunked.
    pub(crate) framing: Framing,
    /// The request allows another one after it on this connection.
    pub(crate) keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub(crate) expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field: the service may
    /// switch protocols with a `101`.
    pub(crate) upgrade: bool,
}

/// Why a request head was refused. Each becomes a bare answer and the
/// connection closes. No variant carries request bytes: a target or a
/// header value (an `Authorization`) never reaches a log through these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// The head is longer than the listener's `max_header_bytes`, or has
    /// more than [`fields::MAX_HEADERS`] fields.
    #[error("request head too large")]
    TooLarge,
    /// The request line alone is longer than the head limit.
    #[error("request target too long")]
    TargetTooLong,
    /// Not an HTTP/1.x request head httparse accepts.
    #[error("malformed request head")]
    Malformed,
    /// The request framing cannot be trusted.
    #[error(transparent)]
    Framing(#[from] FramingError),
}

impl HeadError {
    /// The status of the bare answer.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::TargetTooLong => StatusCode::URI_TOO_LONG,
            HeadError::Malformed | HeadError::Framing(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Parses the request head at the start of `buf`, if it has all arrived,
/// taking it out of `buf` (the body and anything pipelined stay). The head
/// may be at most `max` bytes. `each` sees every field in the order
/// received, with its name lower-cased (the fuzzing oracle records them;
/// the connection passes a no-op).
pub(crate) fn parse(
    buf: &mut BytesMut,
    max: usize,
    mut each: impl FnMut(&HeaderName, &[u8]),
) -> Result<Option<Head>, HeadError> {
    let mut fields = Fields::new();
    let (len, method, target, version) = {
        let mut room = fields::room();
        let mut request = httparse::Request::new(&mut []);
        let len = match request.parse_with_uninit_headers(buf, &mut room) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= max => return Err(too_large(buf, max)),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        if len > max {
            return Err(too_large(buf, max));
        }
        let method = Method::from_bytes(request.method.unwrap_or("").as_bytes())
            .map_err(|_| HeadError::Malformed)?;
        let target = range(buf, request.path.unwrap_or("").as_bytes());
        let version = match request.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        fields::record(&mut fields, buf, request.headers);
        (len, method, target, version)
    };
    let head = buf.split_to(len).freeze();
    let uri =
        Uri::from_maybe_shared(head.slice(target.0..target.1)).map_err(|_| HeadError::Malformed)?;

    // Room for the four headers a forwarded request gains (identity, key
    // id, X-Forwarded-For and -Proto): a map sized to the fields alone
    // grew, rehashing, on most requests.
    let mut headers = HeaderMap::with_capacity(fields.len() + FORWARDING_HEADROOM);
    let mut facts = Facts::default();
    for field in &fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| HeadError::Malformed)?;
        let value: Bytes = head.slice(field.value.0..field.value.1);
        // A repeated `Content-Length` is refused unless it repeats the same
        // length (`note`); the service then sees it once, as from hyper.
        let repeat = name == header::CONTENT_LENGTH && facts.content_length.is_some();
        facts.note(&name, &value)?;
        if repeat {
            continue;
        }
        each(&name, &value);
        let value = HeaderValue::from_maybe_shared(value).map_err(|_| HeadError::Malformed)?;
        headers.append(name, value);
    }
    let (framing, keep_alive) = facts.framing(version)?;
    // After a CONNECT the client may send tunnel bytes at once, before it
    // has seen the answer: never read them as requests (hyper closes too).
    let keep_alive = keep_alive && method != Method::CONNECT;
    Ok(Some(Head {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive,
        expect_continue: facts.expect_continue && version == Version::HTTP_11,
        upgrade: facts.upgrade_token && facts.upgrade_field,
    }))
}

/// Which limit an incomplete head over `max` bytes broke: the request
/// line (no line end yet) or the head as a whole.
fn too_large(buf: &[u8], max: usize) -> HeadError {
    let window = &buf[..buf.len().min(max)];
    // Leading empty lines are skipped by httparse; they are not the line.
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    if window[start..].contains(&b'\n') {
        HeadError::TooLarge
    } else {
        HeadError::TargetTooLong
    }
}

/// What the head's fields say about framing and the connection.
#[derive(Debug, Default)]
struct Facts {
    content_length: Option<u64>,
    /// A `Transfer-Encoding` line was present.
    transfer_encoding: bool,
    /// The `Transfer-Encoding` lines hold exactly one coding, `chunked`.
    chunked_only: bool,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    upgrade_field: bool,
    expect_continue: bool,
}

impl Facts {
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), FramingError> {
        if name == header::CONTENT_LENGTH {
            let length = parse_length(trim(value)).ok_or(FramingError::InvalidContentLength)?;
            match self.content_length {
                Some(seen) if seen != length => return Err(FramingError::InvalidContentLength),
                _ => self.content_length = Some(length),
            }
        } else if name == header::TRANSFER_ENCODING {
            // Exactly one coding, `chunked`, over all the lines together:
            // `chunked, chunked` on one line, `chunked` on two lines, and an
            // empty value are all refused (a second reader may count them
            // differently).
            let first = !self.transfer_encoding;
            self.transfer_encoding = true;
            let mut codings = 0;
            let mut chunked = true;
            for coding in value.split(|&b| b == b',').map(trim) {
                // An empty list element (`chunked,`) too: RFC 9110 would
                // skip it, hyper refuses it, and a gateway takes the
                // stricter reading.
                codings += 1;
                chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
            self.chunked_only = first && codings == 1 && chunked;
        } else if name == header::CONNECTION {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    self.upgrade_token = true;
                }
            }
        } else if name == header::UPGRADE {
            self.upgrade_field = true;
        } else if name == header::EXPECT {
            self.expect_continue = trim(value).eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    /// The body's framing and whether the connection may stay open.
    fn framing(&self, version: Version) -> Result<(Framing, bool), FramingError> {
        let keep_alive = !self.close && (version == Version::HTTP_11 || self.keep_alive);
        if self.transfer_encoding {
            if version == Version::HTTP_10 {
                return Err(FramingError::TransferEncodingInHttp10);
            }
            if !self.chunked_only {
                return Err(FramingError::UnsupportedTransferEncoding);
            }
            if self.content_length.is_some() {
                return Err(FramingError::LengthAndChunked);
            }
            return Ok((Framing::Chunked, keep_alive));
        }
        Ok((
            Framing::Length(self.content_length.unwrap_or(0)),
            keep_alive,
        ))
    }
}
