//! Serialising a response head, and choosing the body's framing.
//!
//! The head goes into the connection's one reused write buffer and out in
//! the same write as the start of the body, as hyper does. The framing is
//! chosen the way hyper chooses it, so clients see what they saw before:
//!
//! - no body for `HEAD`, 1xx, 204 and 304 (a `Content-Length` the service
//!   set is kept on `HEAD` and 304; 1xx and 204 never carry one);
//! - else the service's `Content-Length` if it set one, or the body's
//!   exact `size_hint`;
//! - else chunked on HTTP/1.1, and on HTTP/1.0 until the connection closes.
//!
//! `Transfer-Encoding` from the service is dropped (the connection frames
//! the body itself); `Connection: close` from it closes the connection
//! after the response. A `Date` is added when the service set none,
//! formatted at most once a second per thread
//! ([`crate::server::date`]).

use http::header::{self, HeaderValue};
use http::response::Parts;
use http::{StatusCode, Version};
use http_body::SizeHint;

/// How the response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// No body is written (HEAD, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked (HTTP/1.1).
    Chunked,
    /// Until the connection closes (HTTP/1.0 with no known length).
    Close,
}

/// What the connection knows when it writes a response head.
#[derive(Debug, Clone, Copy)]
pub(super) struct Exchange {
    /// The request's version, which the answer uses.
    pub(super) version: Version,
    /// The request was `HEAD`.
    pub(super) head: bool,
    /// The connection may stay open after this response (the request, the
    /// server and the state of the connection allow it).
    pub(super) keep_alive: bool,
}

/// Writes the head of a response to `exchange` into `buf` (which is not
/// cleared first). Returns the body's framing and whether the connection
/// stays open after the response.
pub(super) fn head(
    buf: &mut Vec<u8>,
    parts: &Parts,
    hint: &SizeHint,
    exchange: Exchange,
) -> (Framing, bool) {
    let status = parts.status;
    let http10 = exchange.version == Version::HTTP_10;
    buf.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    match parts.extensions.get::<hyper::ext::ReasonPhrase>() {
        Some(reason) => buf.extend_from_slice(reason.as_bytes()),
        None => buf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    buf.extend_from_slice(b"\r\n");

    let mut keep_alive = exchange.keep_alive;
    let mut said_close = false;
    let mut said_keep_alive = false;
    for value in parts.headers.get_all(header::CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.eq_ignore_ascii_case(b"close") {
                said_close = true;
                keep_alive = false;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                said_keep_alive = true;
            }
        }
    }
    let no_length = status.is_informational() || status == StatusCode::NO_CONTENT;
    let bodiless = exchange.head || no_length || status == StatusCode::NOT_MODIFIED;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());

    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING || (no_length && name == header::CONTENT_LENGTH) {
            continue;
        }
        field(buf, name.as_str().as_bytes(), value.as_bytes());
    }

    let framing = if status == StatusCode::SWITCHING_PROTOCOLS {
        Framing::None
    } else if bodiless {
        if exchange.head && declared.is_none() {
            if let Some(n) = hint.exact().filter(|&n| n > 0) {
                length(buf, n);
            }
        }
        Framing::None
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = hint.exact() {
        length(buf, n);
        Framing::Length(n)
    } else if http10 {
        keep_alive = false;
        Framing::Close
    } else {
        field(buf, b"transfer-encoding", b"chunked");
        Framing::Chunked
    };

    if status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive && !said_close && !http10 {
            field(buf, b"connection", b"close");
        } else if keep_alive && http10 && !said_keep_alive {
            field(buf, b"connection", b"keep-alive");
        }
    }
    if !parts.headers.contains_key(header::DATE) {
        date(buf);
    }
    buf.extend_from_slice(b"\r\n");
    (framing, keep_alive)
}

/// A bare answer of the connection's own (a refused head): no body,
/// `Connection: close`.
pub(super) fn refusal(buf: &mut Vec<u8>, status: StatusCode) {
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(status.as_str().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    buf.extend_from_slice(b"\r\ncontent-length: 0\r\nconnection: close\r\n");
    date(buf);
    buf.extend_from_slice(b"\r\n");
}

fn field(buf: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(value);
    buf.extend_from_slice(b"\r\n");
}

fn length(buf: &mut Vec<u8>, n: u64) {
    let value = HeaderValue::from(n);
    field(buf, b"content-length", value.as_bytes());
}

/// The size line of a chunk of `n` bytes.
pub(super) fn chunk_size(buf: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[at..]);
    buf.extend_from_slice(b"\r\n");
}

fn date(buf: &mut Vec<u8>) {
    crate::server::date::with_now(|date| {
        buf.extend_from_slice(b"date: ");
        buf.extend_from_slice(date.as_bytes());
        buf.extend_from_slice(b"\r\n");
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(
        response: http::Response<()>,
        hint: SizeHint,
        exchange: Exchange,
    ) -> (String, Framing, bool) {
        let (parts, ()) = response.into_parts();
        let mut buf = Vec::new();
        let (framing, keep_alive) = head(&mut buf, &parts, &hint, exchange);
        (String::from_utf8(buf).unwrap(), framing, keep_alive)
    }

    const KEEP: Exchange = Exchange {
        version: Version::HTTP_11,
        head: false,
        keep_alive: true,
    };

    #[test]
    fn an_exact_size_becomes_a_content_length_and_else_chunked() {
        let (text, framing, keep) = encode(http::Response::new(()), SizeHint::with_exact(5), KEEP);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.contains("content-length: 5\r\n") && text.contains("date: "),
            "{text}"
        );
        assert_eq!((framing, keep), (Framing::Length(5), true));
        let (text, framing, _) = encode(http::Response::new(()), SizeHint::default(), KEEP);
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(framing, Framing::Chunked);
    }

    #[test]
    fn http10_answers_in_kind() {
        let old = Exchange {
            version: Version::HTTP_10,
            ..KEEP
        };
        let (text, framing, keep) = encode(http::Response::new(()), SizeHint::default(), old);
        assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
        assert_eq!((framing, keep), (Framing::Close, false));
        let (text, _, keep) = encode(http::Response::new(()), SizeHint::with_exact(0), old);
        assert!(
            text.contains("connection: keep-alive\r\n") && keep,
            "{text}"
        );
    }

    #[test]
    fn bodiless_answers_and_connection_close() {
        let mut response = http::Response::new(());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert("content-length", HeaderValue::from_static("3"));
        response
            .headers_mut()
            .insert("connection", HeaderValue::from_static("close"));
        let (text, framing, keep) = encode(response, SizeHint::with_exact(3), KEEP);
        assert!(!text.contains("content-length"), "{text}");
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert_eq!((framing, keep), (Framing::None, false));
        let head = Exchange {
            head: true,
            keep_alive: false,
            ..KEEP
        };
        let (text, framing, _) = encode(http::Response::new(()), SizeHint::with_exact(7), head);
        assert!(
            text.contains("content-length: 7\r\nconnection: close\r\n"),
            "{text}"
        );
        assert_eq!(framing, Framing::None);
    }

    #[test]
    fn chunk_sizes_are_lower_case_hex() {
        let mut buf = Vec::new();
        chunk_size(&mut buf, 0);
        chunk_size(&mut buf, 4095);
        assert_eq!(buf, b"0\r\nfff\r\n");
    }
}
