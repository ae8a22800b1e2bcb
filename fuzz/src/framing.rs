//! A model of how keygate's upstream client must frame a response body,
//! written from the doc of `proxy::upstream::response` (RFC 9112 6.3, made
//! strict) rather than from its code, so the two can disagree.
//!
//! httparse splits the head into lines (the same parser, same default
//! configuration, so the same head length); everything after that is
//! decided here independently.

use keygate::fuzzing::{BodyFraming, FramingError};

/// Trailer names that must never reach the client (lower-case).
pub const FORBIDDEN_TRAILERS: [&str; 8] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "te",
    "upgrade",
    "host",
    "keep-alive",
];

/// What the model says about a complete response head.
#[derive(Debug)]
pub struct Model {
    /// The head's length, final CRLF included.
    pub len: usize,
    /// The status code httparse read.
    pub status: u16,
    /// Every framing error that applies (keygate reports the first it
    /// meets, which depends on line order); empty when the head is fine.
    pub errors: Vec<FramingError>,
    /// A header name or value the `http` crate refuses: keygate may report
    /// a parse error instead of (or before) a framing one.
    pub invalid_field: bool,
    /// The framing, when `errors` is empty.
    pub framing: BodyFraming,
    /// Whether the connection may be reused, when `errors` is empty.
    pub keep_alive: bool,
}

/// The model's verdict on the head at the start of `stream`, or `None`
/// when httparse finds no complete, acceptable head there.
pub fn model(stream: &[u8], head_request: bool) -> Option<Model> {
    let mut fields = [httparse::EMPTY_HEADER; 100];
    let mut response = httparse::Response::new(&mut fields);
    let len = match response.parse(stream) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    let status = response.code.unwrap_or(0);
    let http10 = response.version == Some(0);

    let mut errors = Vec::new();
    let mut invalid_field = false;
    let mut lengths: Vec<u64> = Vec::new();
    let mut length_header = false;
    let mut te = false;
    let mut codings: Vec<Vec<u8>> = Vec::new();
    let (mut close, mut keep_alive_token) = (false, false);
    for field in response.headers.iter() {
        if http::HeaderName::from_bytes(field.name.as_bytes()).is_err()
            || http::HeaderValue::from_bytes(field.value).is_err()
        {
            invalid_field = true;
        }
        let name = field.name.to_ascii_lowercase();
        let parts = field.value.split(|&b| b == b',').map(ows_trim);
        match name.as_str() {
            "content-length" => {
                length_header = true;
                for part in parts {
                    let digits =
                        !part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit);
                    if !digits {
                        errors.push(FramingError::InvalidContentLength);
                        continue;
                    }
                    let n = std::str::from_utf8(part).ok()?.parse::<u64>().ok()?;
                    lengths.push(n);
                }
            }
            "transfer-encoding" => {
                te = true;
                codings.extend(parts.filter(|c| !c.is_empty()).map(<[u8]>::to_vec));
            }
            "connection" => {
                for token in parts {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            _ => {}
        }
    }
    if lengths.windows(2).any(|w| w[0] != w[1]) {
        errors.push(FramingError::InvalidContentLength);
    }
    if te {
        if length_header {
            errors.push(FramingError::LengthAndChunked);
        }
        if http10 {
            errors.push(FramingError::TransferEncodingInHttp10);
        }
        if !(codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked")) {
            errors.push(FramingError::UnsupportedTransferEncoding);
        }
    }

    let keep_alive = !close && (!http10 || keep_alive_token);
    let bodiless = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let (framing, keep_alive) = if bodiless {
        (BodyFraming::Length(0), keep_alive)
    } else if te {
        (BodyFraming::Chunked, keep_alive)
    } else if let Some(&n) = lengths.first() {
        (BodyFraming::Length(n), keep_alive)
    } else {
        (BodyFraming::Close, false)
    };
    Some(Model {
        len,
        status,
        errors,
        invalid_field,
        framing,
        keep_alive,
    })
}

/// `value` without spaces and tabs at either end.
fn ows_trim(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |at| at + 1);
    &value[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framing(head: &str) -> (Vec<FramingError>, BodyFraming, bool) {
        let m = model(head.as_bytes(), false).expect("complete head");
        (m.errors, m.framing, m.keep_alive)
    }

    #[test]
    fn the_model_reads_rfc_9112() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
            (vec![], BodyFraming::Length(5), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n"),
            (vec![], BodyFraming::Close, false)
        );
        assert_eq!(
            framing("HTTP/1.0 204 No\r\nConnection: keep-alive\r\n\r\n"),
            (vec![], BodyFraming::Length(0), true)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n").0,
            vec![FramingError::LengthAndChunked]
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").0,
            vec![FramingError::UnsupportedTransferEncoding]
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").0,
            vec![FramingError::InvalidContentLength]
        );
    }
}
