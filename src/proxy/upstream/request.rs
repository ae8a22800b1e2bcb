//! Writing the forwarded request: its head, serialised straight from the
//! request keygate already rewrote into the connection's reused buffer
//! and written in one write, then its body by the framing chosen for it.
//!
//! Framing is chosen as hyper's client chose it, so the application sees
//! the same messages as before: a `Content-Length` the request carries is
//! kept (and the body held to it); a body known to be empty gets no
//! framing header; a body of known size (an HTTP/2 request with
//! `content-length`) gets a `Content-Length`; an unknown-length body is
//! chunked, except on `GET`, `HEAD` and `CONNECT`, which are sent without
//! a body. Request trailers are dropped: `Trailer` is hop-by-hop and gone
//! by now, and a trailer could otherwise carry an identity header past the
//! header hygiene.
//!
//! [`Sender`] sends the body, and is polled by whoever is waiting on the
//! connection: the exchange while it waits for the response head, then
//! the response body while it streams (an application may answer before
//! it has read the whole request). The connection is only reused once the
//! sender has finished.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request};
use http_body::Body;
use tokio::io::AsyncWrite;

use super::super::body::{BodyError, TimedBody};
use super::transport::Transport;
use crate::server::RequestBody;

/// A client's request body as the upstream leg receives it.
pub(crate) type ClientBody = TimedBody<RequestBody>;

/// How the forwarded request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The request's `Content-Length` could not be used: not a number, or
/// repeated with different values. Both front ends refuse such requests
/// already, so this is a guard, not a path.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request's Content-Length is invalid")]
pub(crate) struct InvalidLength;

/// Serialises `request`'s head into `out` (cleared first) and returns the
/// body's sender. The target is written as the request carries it
/// (origin-form, set by `admit`); header names are hyper's lower-case.
pub(super) fn encode(
    request: Request<ClientBody>,
    out: &mut Vec<u8>,
) -> Result<Sender, InvalidLength> {
    let (parts, body) = request.into_parts();
    let framing = framing(&parts.method, &parts.headers, &body)?;
    out.clear();
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        // Framing headers are written below, once, from `framing`.
        if name == CONTENT_LENGTH || name == TRANSFER_ENCODING {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let declared = parts.headers.contains_key(CONTENT_LENGTH);
    match framing {
        Framing::Length(0) if !declared => {}
        Framing::Length(length) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa(length, &mut [0u8; 20]));
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    let state = match framing {
        Framing::Length(0) => State::Done,
        Framing::Length(remaining) => State::Length(remaining),
        Framing::Chunked => State::Chunked,
    };
    Ok(Sender {
        body,
        state,
        out: Outbox::default(),
    })
}

fn framing(
    method: &Method,
    headers: &http::HeaderMap,
    body: &ClientBody,
) -> Result<Framing, InvalidLength> {
    let mut declared = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let length = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or(InvalidLength)?;
        if declared.is_some_and(|seen| seen != length) {
            return Err(InvalidLength);
        }
        declared = Some(length);
    }
    if let Some(length) = declared {
        return Ok(Framing::Length(length));
    }
    if body.is_end_stream() {
        return Ok(Framing::Length(0));
    }
    if let Some(length) = body.size_hint().exact() {
        return Ok(Framing::Length(length));
    }
    // hyper's rule: these methods almost never carry a body, and an empty
    // chunked one confuses some servers.
    if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
        return Ok(Framing::Length(0));
    }
    Ok(Framing::Chunked)
}

/// `n` in decimal, written into `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Why the request body could not be sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// Writing to the upstream failed.
    #[error("writing the request body")]
    Write(#[source] io::Error),
    /// The client's body failed.
    #[error(transparent)]
    Body(BodyError),
    /// The client's body did not match its `Content-Length` (a guard: the
    /// front ends enforce it).
    #[error("the request body did not match its Content-Length")]
    Length,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// This many bytes still to send.
    Length(u64),
    /// Chunks until the body ends.
    Chunked,
    /// Everything written; flush (TLS holds records until flushed).
    Flush,
    /// Sent.
    Done,
}

/// The request body on its way upstream.
#[derive(Debug)]
pub(super) struct Sender {
    body: ClientBody,
    state: State,
    out: Outbox,
}

impl Sender {
    /// Whether the whole body has been written.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Sends as much of the body as the client has given and the upstream
    /// takes; `Ready(Ok)` once all of it was written and flushed.
    pub(super) fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut Transport,
    ) -> Poll<Result<(), SendError>> {
        loop {
            if !self.out.is_empty() {
                ready!(self.out.poll_write(cx, io)).map_err(SendError::Write)?;
            }
            match self.state {
                State::Done => return Poll::Ready(Ok(())),
                State::Flush => {
                    ready!(Pin::new(&mut *io).poll_flush(cx)).map_err(SendError::Write)?;
                    self.state = State::Done;
                    return Poll::Ready(Ok(()));
                }
                State::Length(_) | State::Chunked => {}
            }
            let frame = match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Poll::Ready(Err(SendError::Body(error))),
                None => {
                    match self.state {
                        State::Chunked => self.out.tail = b"0\r\n\r\n",
                        _ => return Poll::Ready(Err(SendError::Length)),
                    }
                    self.state = State::Flush;
                    continue;
                }
            };
            // Trailers are dropped (see the module comment).
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let len = data.len() as u64;
            match self.state {
                State::Length(remaining) => {
                    let left = remaining.checked_sub(len).ok_or(SendError::Length);
                    let left = match left {
                        Ok(left) => left,
                        Err(error) => return Poll::Ready(Err(error)),
                    };
                    self.out.data = data;
                    // Done at the declared length, without waiting for the
                    // client's body to say so: the application may answer
                    // as soon as it has the last byte.
                    self.state = if left == 0 {
                        State::Flush
                    } else {
                        State::Length(left)
                    };
                }
                _ => {
                    self.out.chunk(data);
                    if self.body.is_end_stream() {
                        self.out.tail = b"\r\n0\r\n\r\n";
                        self.state = State::Flush;
                    }
                }
            }
        }
    }
}

/// Bytes queued for one vectored write: a chunk-size line, data, and a
/// fixed tail (a chunk's CRLF and perhaps the last chunk). Data is never
/// copied into a buffer.
#[derive(Debug, Default)]
struct Outbox {
    line: [u8; 18],
    line_at: usize,
    line_end: usize,
    data: Bytes,
    tail: &'static [u8],
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.line_at == self.line_end && self.data.is_empty() && self.tail.is_empty()
    }

    /// Queues `data` as one chunk (its CRLF goes in the tail).
    fn chunk(&mut self, data: Bytes) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut n = data.len() as u64;
        let mut digits = [0u8; 16];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = HEX[(n & 0xf) as usize];
            n >>= 4;
            if n == 0 {
                break;
            }
        }
        let count = digits.len() - at;
        self.line[..count].copy_from_slice(&digits[at..]);
        self.line[count..count + 2].copy_from_slice(b"\r\n");
        self.line_at = 0;
        self.line_end = count + 2;
        self.data = data;
        self.tail = b"\r\n";
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, io: &mut Transport) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let slices = [
                IoSlice::new(&self.line[self.line_at..self.line_end]),
                IoSlice::new(&self.data),
                IoSlice::new(self.tail),
            ];
            let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let line = (self.line_end - self.line_at).min(n);
            self.line_at += line;
            n -= line;
            let data = self.data.len().min(n);
            let _ = self.data.split_to(data);
            n -= data;
            self.tail = &self.tail[n.min(self.tail.len())..];
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_chunk_lines() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(
            itoa(u64::MAX, &mut [0; 20]),
            u64::MAX.to_string().as_bytes()
        );
        let mut out = Outbox::default();
        out.chunk(Bytes::from(vec![0u8; 0x1a2b]));
        assert_eq!(&out.line[..out.line_end], b"1a2b\r\n");
        out.chunk(Bytes::from_static(b"x"));
        assert_eq!(&out.line[..out.line_end], b"1\r\n");
    }
}
