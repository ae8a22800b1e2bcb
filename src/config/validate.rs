//! Checks for single config values, each returning the reason in words
//! (the caller adds the key). Kept apart from [`super::Config::from_raw`]
//! so that function reads as the list of settings it builds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderName, Uri};
use ipnet::IpNet;

use super::{canonical_ip, UpstreamOrigin};

/// Lower-cased with `_` read as `-`: the form in which two header names are
/// "the same" for the alias-stripping rule of SPEC 6.
pub fn alias_form(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

pub(super) fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!("{text:?} is not an address such as \"127.0.0.1:8080\" or \"[::1]:8080\"")
    })
}

pub(super) fn parse_upstream(text: &str) -> Result<UpstreamOrigin, String> {
    let uri: Uri = text
        .parse()
        .map_err(|_| format!("{text:?} is not a URL such as \"http://127.0.0.1:8000\""))?;
    let scheme = uri
        .scheme()
        .cloned()
        .ok_or("must start with http:// or https://")?;
    if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
        return Err(format!(
            "scheme {scheme} is not supported; use http:// or https://"
        ));
    }
    let authority = uri.authority().cloned().ok_or("must name a host")?;
    if authority.as_str().contains('@') {
        return Err("must not contain user info".into());
    }
    match uri.path_and_query().map(|pq| pq.as_str()) {
        None | Some("/") | Some("") => {}
        Some(_) => {
            return Err(
                "must be an origin only (scheme, host, port): keygate forwards the request path unchanged".into(),
            )
        }
    }
    Ok(UpstreamOrigin { scheme, authority })
}

/// Headers keygate itself manages or that carry framing or credentials
/// cannot be the identity or key-id header.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "x-oneis-key",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
];

pub(super) fn parse_injected_header(text: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_bytes(text.as_bytes())
        .map_err(|_| format!("{text:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&alias_form(name.as_str()).as_str()) {
        return Err(format!(
            "{text:?} is a header keygate or HTTP itself manages"
        ));
    }
    Ok(name)
}

pub(super) fn parse_net(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(|ip| IpNet::from(canonical_ip(ip)))
        .map_err(|_| format!("{text:?} is not an IP address or CIDR such as \"10.0.0.0/8\""))
}

/// Upgrade protocols that are HTTP itself: switching to one would carry
/// every later request on the connection past keygate's checks (h2c
/// smuggling). `h2` is not a legal upgrade token (RFC 9113 3.1) and `HTTP`
/// is the name in `Upgrade: HTTP/2.0`.
const HTTP_PROTOCOLS: [&str; 3] = ["h2c", "h2", "http"];

/// `proxy.upgrades`: protocol names, compared case-insensitively with the
/// name before any `/version` of each protocol a request offers. Returned
/// in lower case.
pub(super) fn parse_upgrades(names: &[String]) -> Result<Vec<String>, String> {
    names
        .iter()
        .map(|name| {
            if name.contains('/') {
                return Err(format!(
                    "{name:?} must be a protocol name without a version (versions are not compared)"
                ));
            }
            if name.is_empty() || !name.bytes().all(is_tchar) {
                return Err(format!(
                    "{name:?} is not a protocol name such as \"websocket\""
                ));
            }
            let lower = name.to_ascii_lowercase();
            if HTTP_PROTOCOLS.contains(&lower.as_str()) {
                return Err(format!(
                    "{name:?} is never allowed: after an upgrade to HTTP itself (h2c smuggling) \
                     the client speaks straight to the application and no later request is checked"
                ));
            }
            Ok(lower)
        })
        .collect()
}

/// RFC 9110 5.6.2 `tchar`: the bytes of a token.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A whole number within `low..=high`, as the type the setting is used
/// as (the bounds fit it, so the conversion cannot fail in practice).
pub(super) fn within<T: TryFrom<u64>>(value: u64, low: u64, high: u64) -> Result<T, String> {
    let error = || format!("must be between {low} and {high}");
    if !(low..=high).contains(&value) {
        return Err(error());
    }
    T::try_from(value).map_err(|_| error())
}

pub(super) fn positive_secs(secs: u64) -> Result<Duration, String> {
    if secs == 0 || secs > 86_400 {
        Err("must be between 1 and 86400 seconds".into())
    } else {
        Ok(Duration::from_secs(secs))
    }
}
