//! HTTP/1.1 pieces both legs share: body framing ([`decoder`]) and the
//! error that says a message's framing cannot be trusted.
//!
//! The upstream client (`proxy::upstream`) and the client-facing server
//! (`server::http1`) read bodies off a socket the same way, and a framing
//! bug on either side is a smuggling bug, so there is one decoder with one
//! set of tests rather than two that could drift apart.

pub(crate) mod decoder;

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
