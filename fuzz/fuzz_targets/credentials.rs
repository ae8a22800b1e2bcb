//! Fuzzes reading an API key from request headers (SPEC 5).
//!
//! The input is used twice:
//!
//! 1. as one `Authorization` value for `parse_basic`, which must never
//!    panic and must return a key exactly when the value is
//!    `Basic <base64 of "haplo:" PASSWORD>` with a non-empty PASSWORD, the
//!    key being all of PASSWORD (the split is at the first colon);
//! 2. as header lines (`name: value`, one per `\n`) for
//!    `Credentials::from_headers`, which must apply SPEC 5's order: a
//!    repeated credential header is an error, any `Authorization` hides
//!    `X-ONEIS-Key`, and `X-ONEIS-Key` is taken as sent.
//!
//! The expected answers are computed here independently of keygate's code.

#![no_main]

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine as _};
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use keygate::auth::credentials::{parse_basic, Credentials, CredentialsError};
use libfuzzer_sys::fuzz_target;

/// Standard alphabet, padding optional (as SPEC 5 and common clients).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// The key a Haplo Basic credential carries, if `value` is one.
fn expected_key(value: &[u8]) -> Option<Vec<u8>> {
    let space = value.iter().position(|&b| b == b' ')?;
    if !value[..space].eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = BASE64.decode(trim(&value[space..])).ok()?;
    let password = decoded.strip_prefix(b"haplo:")?;
    (!password.is_empty()).then(|| password.to_vec())
}

fn headers_from(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

fuzz_target!(|data: &[u8]| {
    let key = parse_basic(data).map(|k| k.as_bytes().to_vec());
    assert_eq!(
        key,
        expected_key(data),
        "parse_basic({:?})",
        String::from_utf8_lossy(data)
    );

    let headers = headers_from(data);
    let auth: Vec<&HeaderValue> = headers.get_all(AUTHORIZATION).iter().collect();
    let legacy: Vec<&HeaderValue> = headers.get_all("x-oneis-key").iter().collect();
    let got =
        Credentials::from_headers(&headers).map(|c| c.secret().map(|s| s.as_bytes().to_vec()));
    let want = match (auth.as_slice(), legacy.as_slice()) {
        ([_, _, ..], _) => Err(CredentialsError::MultipleAuthorization),
        ([value], _) => Ok(expected_key(value.as_bytes())),
        ([], []) => Ok(None),
        ([], [value]) => Ok(Some(value.as_bytes().to_vec())),
        ([], [_, _, ..]) => Err(CredentialsError::MultipleKeyHeaders),
    };
    assert_eq!(got, want, "from_headers({headers:?})");
});
