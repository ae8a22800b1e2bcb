//! HTTP/1.1 pieces both legs share: body framing ([`decoder`]) and the
//! error that says a message's framing cannot be trusted.
//!
//! The upstream client (`proxy::upstream`) and the client-facing server
//! (`server::http1`) read bodies off a socket the same way, and a framing
//! bug on either side is a smuggling bug, so there is one decoder with one
//! set of tests rather than two that could drift apart.

pub(crate) mod decoder;
pub(crate) mod fields;

/// Why a message's framing could not be trusted (an upstream response's,
/// or a client request's). The connection is closed after any of these:
/// its byte stream can no longer be split into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Both `Transfer-Encoding` and `Content-Length`: the classic
    /// request-smuggling shape. RFC 9112 6.1 lets a server read such a
    /// request as chunked and close after it; keygate refuses it from
    /// either side instead, since whatever reads the message next may
    /// frame it by the other field.
    #[error("both Transfer-Encoding and Content-Length")]
    LengthAndChunked,
    /// `Transfer-Encoding` other than exactly `chunked`.
    #[error("Transfer-Encoding is not exactly chunked")]
    UnsupportedTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 response, which has no chunking.
    #[error("Transfer-Encoding in an HTTP/1.0 message")]
    TransferEncodingInHttp10,
    /// A `Content-Length` that is not a decimal number, or several that
    /// disagree.
    #[error("Content-Length is invalid or repeated with different values")]
    InvalidContentLength,
    /// A chunk-size line that is not hex digits (with optional extensions)
    /// ended by CRLF, or one larger than a `u64`.
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    /// A chunk-size line (with its extensions) or the trailer section
    /// longer than its limit.
    #[error("chunk size line or trailer section too long")]
    ChunkLineTooLong,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    InvalidChunkEnd,
    /// A malformed trailer section.
    #[error("invalid trailer section")]
    InvalidTrailers,
}

/// A `Content-Length` value: 1 to 19 decimal digits (so it fits a u64).
/// Both legs read the field the same way, so a length one of them accepts
/// the other cannot read differently.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// `value` without optional whitespace (space, tab) at either end.
pub(crate) fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |at| at + 1);
    &value[start..end]
}

/// Where `part` (a slice of `buf`, as httparse hands them out) lies within
/// `buf`, so the head can be kept as one `Bytes` and sliced without copies.
pub(crate) fn range(buf: &[u8], part: &[u8]) -> (usize, usize) {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    (start, start + part.len())
}
