//! Entry points for the fuzz targets (`fuzz/`) and the property tests
//! (`tests/properties.rs`) into code that is otherwise private: the upstream
//! leg's response-head parser and body decoder, and (after the merge of the
//! server codec) the client leg's request splitter.
//!
//! This module exists only for those harnesses. It is `#[doc(hidden)]`, it
//! is not an API, and nothing here is stable: the wrappers are as thin as
//! possible so that what the harnesses test is the production code, and the
//! result types are plain data (no `Bytes` tricks) so properties can compare
//! them with `==`.

use bytes::BytesMut;
use http::HeaderMap;

use crate::http1::decoder::{Decoded, Decoder, Framing};
use crate::proxy::upstream::error::ExchangeError;
use crate::proxy::upstream::response;
pub use crate::proxy::FramingError;

// ---------------------------------------------------------------------------
// Upstream leg: response head and body framing
// ---------------------------------------------------------------------------

/// How a response body is delimited (the upstream decoder's `Framing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0 for no body: HEAD, 1xx, 204, 304).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

impl From<Framing> for BodyFraming {
    fn from(framing: Framing) -> Self {
        match framing {
            Framing::Length(n) => BodyFraming::Length(n),
            Framing::Chunked => BodyFraming::Chunked,
            Framing::Close => BodyFraming::Close,
        }
    }
}

impl From<BodyFraming> for Framing {
    fn from(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked,
            BodyFraming::Close => Framing::Close,
        }
    }
}

/// A response head as keygate's upstream client parsed it.
#[derive(Debug)]
pub struct ResponseHead {
    /// The head's length in bytes, final CRLF included.
    pub len: usize,
    /// The status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// The header fields.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may be reused after the body.
    pub keep_alive: bool,
}

/// Why a response head was refused (the classes of `ExchangeError` that
/// parsing can produce).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// httparse refused the head.
    Parse,
    /// Too many header lines, or too many bytes.
    TooLarge,
    /// A status code outside 100-999.
    Status,
    /// Contradictory or invalid framing headers.
    Framing(FramingError),
}

/// Parses the response head at the start of `input` with keygate's
/// upstream parser. `Ok(None)`: the head is incomplete.
pub fn parse_response_head(
    input: &[u8],
    head_request: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut buf = BytesMut::from(input);
    let head = match response::parse(&mut buf, head_request) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(ExchangeError::Parse(_)) => return Err(HeadError::Parse),
        Err(ExchangeError::HeadTooLarge) => return Err(HeadError::TooLarge),
        Err(ExchangeError::Status) => return Err(HeadError::Status),
        Err(ExchangeError::Framing(error)) => return Err(HeadError::Framing(error)),
        // Parsing produces no other variant (they come from I/O).
        Err(other) => unreachable!("response::parse returned {other:?}"),
    };
    Ok(Some(ResponseHead {
        len: input.len() - buf.len(),
        status: head.status.as_u16(),
        version: u8::from(head.version != http::Version::HTTP_10),
        headers: head.headers,
        framing: head.framing.into(),
        keep_alive: head.keep_alive,
    }))
}

/// How decoding a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEnd {
    /// The framing said the body ended; these bytes followed it (the next
    /// response's, on a kept-alive connection).
    Ended {
        /// Everything after the body.
        rest: Vec<u8>,
    },
    /// The input ran out and the decoder accepted that as the end (a
    /// close-delimited body).
    Eof,
    /// The input ran out before the end the framing promised.
    Truncated,
    /// The framing is broken.
    Error(FramingError),
}

/// A body decoded to its end (or failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBody {
    /// The body's data, all pieces concatenated.
    pub data: Vec<u8>,
    /// The trailer fields, in order, names lower-cased (empty when none).
    pub trailers: Vec<(String, Vec<u8>)>,
    /// How it ended.
    pub end: BodyEnd,
}

/// Decodes a body with `framing` from `pieces` fed to keygate's decoder one
/// after the other, as separate reads would deliver them, then EOF.
///
/// This is the loop `UpstreamBody` runs, minus the socket: decode until
/// `NeedMore`, append the next piece, repeat. It panics (so a fuzzer reports
/// it) if the decoder breaks its own contract: an empty `Data`, or a
/// different answer when asked again after the end.
pub fn decode_body(framing: BodyFraming, pieces: &[&[u8]]) -> DecodedBody {
    let mut decoder = Decoder::new(framing.into());
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut trailers = Vec::new();
    let mut next = 0;
    let end = loop {
        match decoder.decode(&mut buf) {
            Err(error) => break BodyEnd::Error(error),
            Ok(Decoded::Data(piece)) => {
                assert!(!piece.is_empty(), "the decoder returned empty data");
                data.extend_from_slice(&piece);
            }
            Ok(Decoded::Trailers(map)) => {
                assert!(!map.is_empty(), "the decoder returned empty trailers");
                assert!(trailers.is_empty(), "the decoder returned trailers twice");
                trailers = map
                    .iter()
                    .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
                    .collect();
            }
            Ok(Decoded::End) => {
                assert!(decoder.is_done());
                assert_eq!(decoder.remaining(), Some(0));
                // Asking again after the end changes nothing.
                let before = buf.len();
                assert_eq!(decoder.decode(&mut buf), Ok(Decoded::End));
                assert_eq!(
                    buf.len(),
                    before,
                    "the decoder consumed bytes after the end"
                );
                let mut rest = buf.to_vec();
                for piece in &pieces[next..] {
                    rest.extend_from_slice(piece);
                }
                break BodyEnd::Ended { rest };
            }
            Ok(Decoded::NeedMore) => match pieces.get(next) {
                Some(piece) => {
                    buf.extend_from_slice(piece);
                    next += 1;
                }
                None => {
                    break match decoder.eof() {
                        Ok(()) => BodyEnd::Eof,
                        Err(()) => BodyEnd::Truncated,
                    }
                }
            },
        }
    };
    DecodedBody {
        data,
        trailers,
        end,
    }
}

// ---------------------------------------------------------------------------
// Client leg: the HTTP/1.1 server codec (issue 13, item 3)
// ---------------------------------------------------------------------------

/// The server codec's own split of a byte stream into requests: the same
/// head parser and body decoder as a live connection, run over a complete
/// buffer (see `server/http1/split.rs`).
pub use crate::server::{split_requests, End, ParsedRequest};
