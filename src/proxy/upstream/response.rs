//! Parsing the upstream's response head with httparse (the parser hyper
//! itself uses), and reading its framing strictly.
//!
//! The head is parsed in place from the connection's read buffer; once
//! complete, that part of the buffer is frozen and every header value is a
//! slice of it, so a response head costs one `HeaderMap` and no copy per
//! value. Names are matched against `http`'s standard names (no allocation
//! for the common ones).
//!
//! The head handed on holds only end-to-end fields: hop-by-hop ones and
//! those named in `Connection` are left out as the map is built (but for
//! a `101`'s first `Upgrade`), so the proxy never builds and then removes
//! them.
//!
//! Framing follows RFC 9112 6.3, made strict because the connection is
//! reused after the body: `Transfer-Encoding` with `Content-Length`, a
//! transfer coding other than exactly `chunked`, chunking in HTTP/1.0, and
//! a `Content-Length` that is not digits or is repeated with different
//! values are all errors (502, connection closed), never a guess.

use bytes::BytesMut;
use http::header::{HeaderMap, HeaderName, HeaderValue, UPGRADE};
use http::{StatusCode, Version};

use super::error::{ExchangeError, FramingError};
use crate::http1::decoder::Framing;
use crate::http1::fields::{self, Fields};
use crate::http1::{parse_length, range, trim};
use crate::proxy::headers::{is_hop_by_hop, may_be_named_away, names_a_field};

/// Longest response head (hyper's client default buffer limit).
pub(crate) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// A parsed response head.
#[derive(Debug)]
pub(crate) struct Head {
    pub(crate) status: StatusCode,
    pub(crate) version: Version,
    pub(crate) headers: HeaderMap,
    /// A reason phrase other than the status's canonical one, kept so the
    /// client sees what the application wrote (hyper's server writes it).
    pub(super) reason: Option<hyper::ext::ReasonPhrase>,
    /// How the body is delimited.
    pub(crate) framing: Framing,
    /// Whether the connection may carry another request after this
    /// response (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`; never for a close-delimited body).
    pub(crate) keep_alive: bool,
}

/// Parses the response head at the start of `buf`, if it has all arrived,
/// taking it out of `buf`. `head_request` says the request was `HEAD`
/// (whose response never has a body, whatever its headers say).
pub(crate) fn parse(buf: &mut BytesMut, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    let mut fields = Fields::new();
    let (len, status, version, reason) = {
        let mut room = fields::room();
        let mut response = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            buf,
            &mut room,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ExchangeError::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ExchangeError::HeadTooLarge),
            Err(error) => return Err(ExchangeError::Parse(error)),
        };
        if len > MAX_HEAD_BYTES {
            return Err(ExchangeError::HeadTooLarge);
        }
        let code = response.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| ExchangeError::Status)?;
        let version = match response.version {
            Some(0) => Version::HTTP_10,
            _ => Version::HTTP_11,
        };
        let reason = response
            .reason
            .filter(|reason| Some(*reason) != status.canonical_reason())
            .map(|reason| range(buf, reason.as_bytes()));
        fields::record(&mut fields, buf, response.headers);
        (len, status, version, reason)
    };
    let head = buf.split_to(len).freeze();

    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut facts = Facts::default();
    // Options in `Connection` that name a field (rare: nearly every
    // upstream sends only `keep-alive` or `close`).
    let named = connection_options(&head, &fields).any(names_a_field);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut upgrade_relayed = false;
    for field in &fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| ExchangeError::Parse(httparse::Error::HeaderName))?;
        let value = head.slice(field.value.0..field.value.1);
        facts.note(&name, &value)?;
        // Hop-by-hop fields describe the upstream connection, not the
        // client's, and stay here. A 101's first `Upgrade` names the
        // protocol the relay switches to, so it goes on; only that one,
        // since the relay checks that one against the client's offer and a
        // second line could name another protocol past it.
        let relayed_upgrade = switching && name == UPGRADE && !upgrade_relayed;
        upgrade_relayed |= relayed_upgrade;
        let hop = !relayed_upgrade
            && (is_hop_by_hop(&name)
                || (named
                    && may_be_named_away(&name)
                    && connection_options(&head, &fields)
                        .any(|option| option.eq_ignore_ascii_case(name.as_str().as_bytes()))));
        if hop {
            continue;
        }
        let value = HeaderValue::from_maybe_shared(value)
            .map_err(|_| ExchangeError::Parse(httparse::Error::HeaderValue))?;
        headers.append(name, value);
    }
    let reason = reason
        .and_then(|(start, end)| hyper::ext::ReasonPhrase::try_from(head.slice(start..end)).ok());
    let (framing, keep_alive) = facts.framing(status, version, head_request)?;
    Ok(Some(Head {
        status,
        version,
        headers,
        reason,
        framing,
        keep_alive,
    }))
}

/// The options of every `Connection` field in `head`, in order.
fn connection_options<'a>(head: &'a [u8], fields: &'a Fields) -> impl Iterator<Item = &'a [u8]> {
    fields
        .iter()
        .filter(|field| head[field.name.0..field.name.1].eq_ignore_ascii_case(b"connection"))
        .flat_map(|field| head[field.value.0..field.value.1].split(|&b| b == b','))
        .map(trim)
        .filter(|option| !option.is_empty())
}

/// What the head's headers say about framing and the connection.
#[derive(Debug, Default)]
struct Facts {
    content_length: Option<u64>,
    /// A `Transfer-Encoding` line was present.
    transfer_encoding: bool,
    /// Its codings, all lines together, are exactly `chunked`.
    chunked_only: bool,
    /// `Transfer-Encoding` codings seen so far.
    codings: usize,
    close: bool,
    keep_alive: bool,
}

impl Facts {
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), FramingError> {
        if name == http::header::CONTENT_LENGTH {
            for part in value.split(|&b| b == b',') {
                let length = parse_length(trim(part)).ok_or(FramingError::InvalidContentLength)?;
                match self.content_length {
                    Some(seen) if seen != length => return Err(FramingError::InvalidContentLength),
                    _ => self.content_length = Some(length),
                }
            }
        } else if name == http::header::TRANSFER_ENCODING {
            self.transfer_encoding = true;
            for coding in value.split(|&b| b == b',').map(trim) {
                if coding.is_empty() {
                    continue;
                }
                self.codings += 1;
                self.chunked_only = self.codings == 1 && coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == http::header::CONNECTION {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        }
        Ok(())
    }

    /// The body's framing and whether the connection stays open.
    fn framing(
        &self,
        status: StatusCode,
        version: Version,
        head_request: bool,
    ) -> Result<(Framing, bool), FramingError> {
        // Checked for every response, bodiless or not: a head whose framing
        // is contradictory says the upstream is confused about framing.
        if self.transfer_encoding {
            if self.content_length.is_some() {
                return Err(FramingError::LengthAndChunked);
            }
            if version == Version::HTTP_10 {
                return Err(FramingError::TransferEncodingInHttp10);
            }
            if !self.chunked_only {
                return Err(FramingError::UnsupportedTransferEncoding);
            }
        }
        let keep_alive = !self.close && (version == Version::HTTP_11 || self.keep_alive);
        let bodiless = head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        Ok(if bodiless {
            (Framing::Length(0), keep_alive)
        } else if self.transfer_encoding {
            (Framing::Chunked, keep_alive)
        } else if let Some(length) = self.content_length {
            (Framing::Length(length), keep_alive)
        } else {
            (Framing::Close, false)
        })
    }
}

#[cfg(test)]
mod tests;
