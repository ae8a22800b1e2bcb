//! The HTTP/1.1 server's request splitting as a pure function, for the
//! differential fuzz target: the same head parser ([`super::head`]) and
//! body decoder (`crate::http1::decoder`) as the live connection, run
//! over one complete buffer.
//!
//! It answers: given these bytes from a client, which requests would the
//! service be handed, with which bodies, and how would the connection
//! end, if every answer were a 200 that keeps the connection open?
//! Upgrade requests are ordinary requests here, since a 200 does not
//! switch protocols.

#![allow(dead_code)] // until the fuzz target's `fuzzing` module re-exports it

use bytes::BytesMut;

use super::head;
use crate::http1::decoder::{Decoded, Decoder};

/// The head limit the split assumes (keygate's default
/// `proxy.max_header_bytes`).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// One request as the HTTP/1.1 server hands it to its service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    /// The method, as sent.
    pub method: Vec<u8>,
    /// The target as the service sees it (`http::Uri` printed: an
    /// origin-form target byte for byte, an absolute-form scheme and host
    /// as `http` writes them).
    pub target: Vec<u8>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// In the order received; names lower-cased.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body after de-chunking (trailers dropped).
    pub body: Vec<u8>,
}

/// How the input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every byte belonged to a complete request.
    Clean,
    /// The last request (head or body) was cut short.
    Incomplete,
    /// The server would refuse the next request (and close).
    Refused,
    /// The last request closed the connection (Connection: close, or
    /// HTTP/1.0 without keep-alive); later bytes are ignored.
    Closed,
}

/// Splits `input` into the requests the server would hand its service, as
/// if it all arrived at once and every response were a 200 that keeps the
/// connection open.
///
/// A request whose body turns out to be malformed (a bad chunk) is not
/// listed, and the split ends [`End::Refused`]: the live server has handed
/// the service its head by then, but the body fails and the connection
/// closes.
pub fn split_requests(input: &[u8]) -> (Vec<ParsedRequest>, End) {
    let mut buf = BytesMut::from(input);
    let mut requests = Vec::new();
    loop {
        if only_empty_lines(&buf) {
            // httparse skips empty lines before a request line; at the end
            // of the input they are no request at all (hyper agrees).
            return (requests, End::Clean);
        }
        let mut headers = Vec::new();
        let head = match head::parse(&mut buf, MAX_HEAD_BYTES, |name, value| {
            headers.push((name.as_str().as_bytes().to_vec(), value.to_vec()));
        }) {
            Ok(Some(head)) => head,
            Ok(None) => return (requests, End::Incomplete),
            Err(_) => return (requests, End::Refused),
        };
        let mut decoder = Decoder::new(head.framing);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
                Ok(Decoded::Trailers(_) | Decoded::End) => break,
                Ok(Decoded::NeedMore) => return (requests, End::Incomplete),
                Err(_) => return (requests, End::Refused),
            }
        }
        requests.push(ParsedRequest {
            method: head.method.as_str().as_bytes().to_vec(),
            target: head.uri.to_string().into_bytes(),
            version: u8::from(head.version == http::Version::HTTP_11),
            headers,
            body,
        });
        if !head.keep_alive {
            return (requests, End::Closed);
        }
    }
}

/// Whether `bytes` is nothing but line ends (CRLF or LF), as may precede
/// a request line, perhaps with the CR of one more.
fn only_empty_lines(mut bytes: &[u8]) -> bool {
    loop {
        bytes = match bytes {
            [] | [b'\r'] => return true,
            [b'\r', b'\n', rest @ ..] | [b'\n', rest @ ..] => rest,
            _ => return false,
        };
    }
}

#[cfg(test)]
mod tests;
