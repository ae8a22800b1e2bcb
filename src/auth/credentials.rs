//! Reading an API key from request headers, exactly as Haplo does.
//!
//! Order (SPEC 5, Haplo's `authorisation.rb`):
//!
//! 1. `Authorization: Basic <base64>` decoding to `haplo:<key>`. The scheme
//!    is case-insensitive, the username must be exactly `haplo`, and the
//!    split is at the first colon. Any other `Authorization` value (another
//!    user, `Bearer`, bad base64, an empty password) is "no API key".
//! 2. Only when there is no `Authorization` header at all: `X-ONEIS-Key`.
//!    An empty value still counts as a (wrong) key, as in Haplo.
//!
//! Stricter than Haplo: a repeated `Authorization` or `X-ONEIS-Key` header
//! is a 400. Haplo takes the last value, but two credentials in one request
//! are ambiguous, and a proxy and a backend that pick different ones is how
//! smuggling starts.
//!
//! The decoded key lives in a small stack buffer: no allocation per request.

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use http::header::{HeaderMap, AUTHORIZATION};

/// Haplo's legacy key header.
pub const X_ONEIS_KEY: &str = "x-oneis-key";

/// Standard alphabet; padding optional (some clients drop it).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Room for `haplo:` plus a key with plenty to spare; longer credentials
/// are decoded on the heap (they cannot be valid keys, but must still be
/// read to be refused and counted).
const INLINE: usize = 96;

/// A key as presented, borrowed from a header or decoded from Basic.
/// `Debug` is redacted.
pub enum PresentedSecret<'a> {
    /// From `X-ONEIS-Key`, as sent.
    Header(&'a [u8]),
    /// From Basic, decoded into a stack buffer; `start..len` is the key.
    Inline {
        /// Decoded `haplo:<key>`.
        buf: [u8; INLINE],
        /// Where the key starts (after the first colon).
        start: usize,
        /// Decoded length.
        len: usize,
    },
    /// From Basic, too long for the stack buffer.
    Heap {
        /// Decoded `haplo:<key>`.
        decoded: Vec<u8>,
        /// Where the key starts.
        start: usize,
    },
}

impl PresentedSecret<'_> {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            PresentedSecret::Header(bytes) => bytes,
            PresentedSecret::Inline { buf, start, len } => &buf[*start..*len],
            PresentedSecret::Heap { decoded, start } => &decoded[*start..],
        }
    }
}

impl fmt::Debug for PresentedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresentedSecret(<redacted>)")
    }
}

/// A request whose credentials are ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    MultipleAuthorization,
    /// More than one `X-ONEIS-Key` header.
    #[error("more than one X-ONEIS-Key header")]
    MultipleKeyHeaders,
}

/// What the request presented.
#[derive(Debug)]
pub enum Credentials<'a> {
    /// No API key (possibly some other `Authorization`).
    None,
    /// An API key, valid or not.
    Key(PresentedSecret<'a>),
}

impl<'a> Credentials<'a> {
    /// Reads the credentials from request headers.
    pub fn from_headers(headers: &'a HeaderMap) -> Result<Self, CredentialsError> {
        let mut auth = headers.get_all(AUTHORIZATION).iter();
        if let Some(value) = auth.next() {
            if auth.next().is_some() {
                return Err(CredentialsError::MultipleAuthorization);
            }
            return Ok(parse_basic(value.as_bytes()).map_or(Credentials::None, Credentials::Key));
        }
        let mut legacy = headers.get_all(X_ONEIS_KEY).iter();
        match (legacy.next(), legacy.next()) {
            (None, _) => Ok(Credentials::None),
            (Some(value), None) => Ok(Credentials::Key(PresentedSecret::Header(value.as_bytes()))),
            (Some(_), Some(_)) => Err(CredentialsError::MultipleKeyHeaders),
        }
    }

    /// The presented key, if any.
    pub fn secret(&self) -> Option<&PresentedSecret<'a>> {
        match self {
            Credentials::None => None,
            Credentials::Key(secret) => Some(secret),
        }
    }
}

/// `Basic <base64 of haplo:KEY>` to the key, or `None` if this is not a
/// Haplo Basic credential.
pub fn parse_basic(value: &[u8]) -> Option<PresentedSecret<'static>> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = trim_spaces(rest);
    let mut buf = [0u8; INLINE];
    let secret = match BASIC.decode_slice(encoded, &mut buf) {
        Ok(len) => {
            let start = haplo_key_start(&buf[..len])?;
            PresentedSecret::Inline { buf, start, len }
        }
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            let decoded = BASIC.decode(encoded).ok()?;
            let start = haplo_key_start(&decoded)?;
            PresentedSecret::Heap { decoded, start }
        }
        Err(base64::DecodeSliceError::DecodeError(_)) => return None,
    };
    Some(secret)
}

/// Where the password starts in `haplo:<password>`, if the user is exactly
/// `haplo` and the password is not empty (split at the first colon).
fn haplo_key_start(decoded: &[u8]) -> Option<usize> {
    let colon = decoded.iter().position(|&b| b == b':')?;
    (&decoded[..colon] == b"haplo" && colon + 1 < decoded.len()).then_some(colon + 1)
}

fn trim_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn basic(user_pass: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(user_pass)).into_bytes()
    }

    fn key_of(value: &[u8]) -> Option<Vec<u8>> {
        parse_basic(value).map(|s| s.as_bytes().to_vec())
    }

    #[test]
    fn reads_haplo_basic_credentials() {
        assert_eq!(key_of(&basic("haplo:abc")), Some(b"abc".to_vec()));
        let lower = format!("basic  {}", STANDARD.encode("haplo:abc"));
        assert_eq!(key_of(lower.as_bytes()), Some(b"abc".to_vec()));
        let unpadded = format!(
            "Basic {}",
            STANDARD.encode("haplo:ab").trim_end_matches('=')
        );
        assert_eq!(key_of(unpadded.as_bytes()), Some(b"ab".to_vec()));
    }

    #[test]
    fn splits_at_the_first_colon_only() {
        assert_eq!(key_of(&basic("haplo:a:b")), Some(b"a:b".to_vec()));
    }

    #[test]
    fn other_credentials_are_no_key() {
        for v in [
            basic("Haplo:abc"),
            basic("haplox:abc"),
            basic("haplo:"),
            basic("haplo"),
            b"Bearer abc".to_vec(),
            b"Basic !!!".to_vec(),
            b"Basic".to_vec(),
        ] {
            assert!(parse_basic(&v).is_none(), "{}", String::from_utf8_lossy(&v));
        }
    }

    #[test]
    fn long_credentials_are_still_read() {
        let long = format!("haplo:{}", "k".repeat(500));
        assert_eq!(key_of(&basic(&long)).map(|k| k.len()), Some(500));
    }

    #[test]
    fn legacy_header_only_without_authorization() {
        let mut h = HeaderMap::new();
        h.insert(X_ONEIS_KEY, "abc".parse().unwrap());
        let c = Credentials::from_headers(&h).unwrap();
        assert_eq!(c.secret().map(|s| s.as_bytes()), Some(&b"abc"[..]));
        h.insert(AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(Credentials::from_headers(&h).unwrap().secret().is_none());
        h.append(AUTHORIZATION, "Bearer y".parse().unwrap());
        assert_eq!(
            Credentials::from_headers(&h).unwrap_err(),
            CredentialsError::MultipleAuthorization
        );
    }
}
