//! Splitting a message body out of a byte stream by its framing (RFC 9112
//! 6): a `Content-Length`, chunked, or everything until the peer closes.
//! Shared by both legs: the upstream client reads response bodies with it,
//! and keygate's HTTP/1.1 server reads request bodies with it, so one set
//! of strict chunked rules (and their tests) guards both.
//!
//! Sans-I/O on purpose: [`Decoder::decode`] takes the bytes read so far and
//! hands back data as `Bytes` split off the read buffer (no copy), so the
//! framing rules can be tested exhaustively without sockets, and the body
//! types that own a socket only decide when to read.
//!
//! Chunked framing is parsed strictly, since the connection is reused
//! after it and a misread boundary would hand one response's bytes to the
//! next request: hex sizes of at most 16 digits, CRLF line ends only (no
//! bare LF, no bare CR), extensions skipped but bounded with the size line
//! to [`MAX_CHUNK_LINE`], chunk data followed by exactly CRLF, and the
//! trailer section parsed by httparse and bounded to
//! [`MAX_TRAILER_BYTES`] and [`MAX_TRAILERS`] fields.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::FramingError;

/// Longest chunk-size line, extensions included.
pub(crate) const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section.
pub(crate) const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Most trailer fields.
pub(crate) const MAX_TRAILERS: usize = 32;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes (0 for no body at all: HEAD, 204, 304).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body data, in order.
    Data(Bytes),
    /// The trailer fields of a chunked body (never empty); the body has
    /// ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    NeedMore,
}

/// The decoding state of one message body.
#[derive(Debug)]
pub(crate) struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data, this many bytes left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkEnd,
    /// After the last chunk: the trailer section, then the final CRLF.
    Trailers,
    /// Until the peer closes.
    Close,
    /// The body has ended.
    Done,
}

impl Decoder {
    /// A decoder for a body with `framing`.
    pub(crate) fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the body has ended.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The bytes still to come, when known.
    pub(crate) fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body out of `buf`: data, the end, or a
    /// request for more bytes. Bytes after the end of the body stay in
    /// `buf`.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FramingError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::Length(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take(remaining, buf.len());
                    self.state = match remaining - n as u64 {
                        0 => State::Done,
                        left => State::Length(left),
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(line) = line_end(buf, MAX_CHUNK_LINE)? else {
                        // Refuse a byte no size line may hold when it
                        // arrives, not once the line ends (or reaches its
                        // bound): what is here is the line so far, perhaps
                        // with its CR.
                        if !buf.is_empty() {
                            chunk_size(buf.strip_suffix(b"\r").unwrap_or(buf))?;
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    let size = chunk_size(&buf[..line])?;
                    let _ = buf.split_to(line + 2);
                    self.state = match size {
                        0 => State::Trailers,
                        n => State::ChunkData(n),
                    };
                }
                State::ChunkData(remaining) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = take(remaining, buf.len());
                    self.state = match remaining - n as u64 {
                        0 => State::ChunkEnd,
                        left => State::ChunkData(left),
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::ChunkEnd => {
                    if buf.len() < 2 {
                        // A lone byte that already cannot start CRLF is an
                        // error now, not after waiting for the next one.
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(FramingError::InvalidChunkEnd);
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(FramingError::InvalidChunkEnd);
                    }
                    let _ = buf.split_to(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some((len, trailers)) = trailers(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let _ = buf.split_to(len);
                    self.state = State::Done;
                    if !trailers.is_empty() {
                        return Ok(Decoded::Trailers(trailers));
                    }
                }
            }
        }
    }

    /// The peer closed the connection: the end of a close-delimited
    /// body, and a truncation of any other.
    pub(crate) fn eof(&mut self) -> Result<(), ()> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(()),
        }
    }
}

/// `min(remaining, available)`, as a buffer length.
fn take(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

/// Where the CRLF ending the line at the start of `buf` is, if it has
/// arrived. A bare LF or CR, or no line end within `limit` bytes, is an
/// error.
fn line_end(buf: &[u8], limit: usize) -> Result<Option<usize>, FramingError> {
    let window = &buf[..buf.len().min(limit + 2)];
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(at) if window[at] == b'\n' => Err(FramingError::InvalidChunkSize),
        Some(at) => match window.get(at + 1) {
            Some(b'\n') => Ok(Some(at)),
            Some(_) => Err(FramingError::InvalidChunkSize),
            None => Ok(None),
        },
        None if buf.len() > limit => Err(FramingError::ChunkLineTooLong),
        None => Ok(None),
    }
}

/// The size in a chunk-size line (without its CRLF):
/// `1*HEXDIG *( BWS ";" chunk-ext )`. Extensions are skipped; they may hold
/// any visible character, space or tab.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(FramingError::InvalidChunkSize);
    }
    let mut size: u64 = 0;
    for &b in &line[..digits] {
        // `is_ascii_hexdigit` held, and 16 digits fit a u64.
        let digit = (b as char).to_digit(16).unwrap_or(0);
        size = (size << 4) | u64::from(digit);
    }
    let rest = &line[digits..];
    let rest_start = rest
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(rest.len());
    let rest = &rest[rest_start..];
    if !rest.is_empty() {
        let valid = rest[0] == b';'
            && rest
                .iter()
                .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80);
        if !valid {
            return Err(FramingError::InvalidChunkSize);
        }
    }
    Ok(size)
}

/// Field names a trailer may not carry to the client: framing, routing
/// and connection management belong to the head (RFC 9110 6.5.1), and the
/// client's message is framed by keygate's front end, not by these.
const FORBIDDEN_TRAILERS: [HeaderName; 8] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
    http::header::TRAILER,
    http::header::CONNECTION,
    http::header::TE,
    http::header::UPGRADE,
    http::header::HOST,
    HeaderName::from_static("keep-alive"),
];

/// The trailer section at the start of `buf` and its length (final CRLF
/// included), once all of it has arrived.
fn trailers(buf: &[u8]) -> Result<Option<(usize, HeaderMap)>, FramingError> {
    // The common case: no trailers at all.
    if buf.starts_with(b"\r\n") {
        return Ok(Some((2, HeaderMap::new())));
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let window = &buf[..buf.len().min(MAX_TRAILER_BYTES)];
    match httparse::parse_headers(window, &mut fields) {
        Ok(httparse::Status::Complete((len, fields))) => {
            // httparse takes a bare LF as a line end; this framing does not
            // (a reader that disagrees would end the message elsewhere).
            if !crlf_only(&window[..len]) {
                return Err(FramingError::InvalidTrailers);
            }
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields.iter() {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| FramingError::InvalidTrailers)?;
                if FORBIDDEN_TRAILERS.contains(&name) {
                    continue;
                }
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| FramingError::InvalidTrailers)?;
                map.append(name, value);
            }
            Ok(Some((len, map)))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_TRAILER_BYTES => {
            Err(FramingError::ChunkLineTooLong)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(FramingError::ChunkLineTooLong),
        Err(_) => Err(FramingError::InvalidTrailers),
    }
}

/// Whether every LF in `bytes` ends a CRLF.
fn crlf_only(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .enumerate()
        .all(|(at, &b)| b != b'\n' || (at > 0 && bytes[at - 1] == b'\r'))
}

#[cfg(test)]
mod tests;
