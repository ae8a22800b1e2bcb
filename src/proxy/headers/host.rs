//! The `Host` rule (SPEC 6, issue 14): which host a request names.
//!
//! Haplo picks the application (the tenant) by host name, so the host is as
//! much a security input as the path: a value that one parser reads as
//! `evil.com` and another as `app.example` is a way into someone else's
//! tenant. keygate therefore forwards only a host that every parser reads
//! the same way, and answers anything else `400 BAD-REQUEST`.
//!
//! The rule is RFC 3986's `host [ ":" port ]`, made stricter on purpose:
//!
//! - a **reg-name** is 1 to 253 bytes of `A-Z a-z 0-9 - . _ ~` only: no
//!   percent-encoding (`%65vil.com`) and no sub-delims (`! $ & ' ( ) * + ,
//!   ; =`), which RFC 3986 allows but no DNS name contains;
//! - a reg-name whose last label is numeric (`127.1`, `1.2.3.256`,
//!   `2130706433`, `0x7f.0.0.1`) must be exactly a dotted-quad **IPv4**
//!   address: URL parsers read such names as IPv4 in their short, octal or
//!   hex forms, and no real top-level domain is numeric;
//! - an **IP literal** is `[` IPv6 `]`: no IPvFuture (`[v1.x]`) and no zone
//!   id (`[fe80::1%25eth0]`);
//! - the **port**, when there is a `:`, is 1 to 5 digits worth at most
//!   65535 (`host:` with an empty port is refused, though RFC 3986 allows
//!   it);
//! - **userinfo** (`alice@app.example`) is never allowed.
//!
//! The rule applies to the `Host` header and to the authority of the
//! request-target (absolute-form in HTTP/1.1, `:authority` in HTTP/2, both
//! found in `request.uri().authority()`). http's `Authority` type accepts
//! userinfo and percent-encoding, so the check reads its string, not its
//! parsed parts. Case is left alone: the value is forwarded byte for byte.

use std::net::{Ipv4Addr, Ipv6Addr};

use http::header::HOST;
use http::uri::Authority;
use http::{Request, Version};

use crate::proxy::refusal::BadRequest;

/// Longest reg-name: the longest DNS name in text form.
const MAX_REG_NAME: usize = 253;

/// Exactly one valid `Host`, agreeing with an absolute-form target's
/// authority; or, in HTTP/2, a valid `:authority` alone.
pub(crate) fn check_host<B>(request: &Request<B>) -> Result<(), BadRequest> {
    let mut hosts = request.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadRequest::MultipleHost);
    }
    let authority = request.uri().authority();
    let invalid = host.is_some_and(|h| !is_valid_authority(h.as_bytes()))
        || authority.is_some_and(|a| !is_valid_authority(a.as_str().as_bytes()));
    if invalid {
        return Err(BadRequest::InvalidHost);
    }
    match (host, authority) {
        (None, None) => Err(BadRequest::MissingHost),
        // HTTP/2 carries the host in `:authority`; HTTP/1.1 must send Host
        // even with an absolute-form target (RFC 9112 3.2).
        (None, Some(_)) if request.version() == Version::HTTP_2 => Ok(()),
        (None, Some(_)) => Err(BadRequest::MissingHost),
        (Some(_), None) => Ok(()),
        (Some(host), Some(authority)) => {
            let same = host
                .to_str()
                .ok()
                .and_then(|h| h.parse::<Authority>().ok())
                .is_some_and(|h| h == *authority);
            if same {
                Ok(())
            } else {
                Err(BadRequest::HostMismatch)
            }
        }
    }
}

/// Whether `value` is `host [ ":" port ]` under the rule in the module doc.
pub(crate) fn is_valid_authority(value: &[u8]) -> bool {
    let (host, port) = if value.first() == Some(&b'[') {
        let Some(close) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, rest) = value.split_at(close + 1);
        match rest {
            [] => (literal, None),
            [b':', port @ ..] => (literal, Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().position(|&b| b == b':') {
            None => (value, None),
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
        }
    };
    port.is_none_or(is_valid_port) && is_valid_host(host)
}

/// 1 to 5 digits, at most 65535.
fn is_valid_port(port: &[u8]) -> bool {
    (1..=5).contains(&port.len())
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= u32::from(u16::MAX)
}

fn is_valid_host(host: &[u8]) -> bool {
    if let Some(literal) = host.strip_prefix(b"[") {
        // `Ipv6Addr`'s parser takes neither a zone id nor IPvFuture.
        return literal
            .strip_suffix(b"]")
            .and_then(|inner| std::str::from_utf8(inner).ok())
            .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok());
    }
    let reg_name = (1..=MAX_REG_NAME).contains(&host.len())
        && host
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !reg_name {
        return false;
    }
    if looks_numeric(host) {
        // `Ipv4Addr`'s parser takes exactly four decimal parts, each at
        // most 255, without leading zeros.
        return std::str::from_utf8(host).is_ok_and(|h| h.parse::<Ipv4Addr>().is_ok());
    }
    true
}

/// Whether a URL parser would read `host` as an IPv4 address: its last
/// label (ignoring one trailing dot) is decimal digits or starts `0x`.
fn looks_numeric(host: &[u8]) -> bool {
    let host = host.strip_suffix(b".").unwrap_or(host);
    let last = host.rsplit(|&b| b == b'.').next().unwrap_or(host);
    (!last.is_empty() && last.iter().all(u8::is_ascii_digit))
        || last.starts_with(b"0x")
        || last.starts_with(b"0X")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hosts_and_ports_are_valid() {
        for ok in [
            "a",
            "app.example",
            "App-1_x~.Example.",
            "app.example:0",
            "app.example:65535",
            "app.example:00443",
            "127.0.0.1",
            "255.255.255.255:1",
            "[::1]",
            "[::1]:8080",
            "[2001:db8::ffff:1.2.3.4]",
            "1a.example",
            "example.1a",
        ] {
            assert!(is_valid_authority(ok.as_bytes()), "{ok}");
        }
        assert!(is_valid_authority("a".repeat(253).as_bytes()));
    }

    #[test]
    fn anything_a_parser_could_misread_is_not() {
        for bad in [
            "",
            ":80",
            "app.example:",
            "app.example:65536",
            "app.example:999999",
            "app.example:80:1",
            "app.example:+1",
            "a@app.example",
            "a:b@app.example",
            "%65vil.com",
            "a b",
            "a/b",
            "a?b",
            "a#b",
            "a\\b",
            "a,b",
            "a;b",
            "a=b",
            "a*b",
            "é.example",
            "127.1",
            "1.2.3.256",
            "01.2.3.4",
            "1.2.3.4.",
            "2130706433",
            "0x7f.0.0.1",
            "a.0x7f",
            "app.123",
            "[::1",
            "::1",
            "[::1]x",
            "[::1]:",
            "[]",
            "[fe80::1%25eth0]",
            "[fe80::1%eth0]",
            "[v1.fe]",
            "[1.2.3.4]",
            "[app.example]",
        ] {
            assert!(!is_valid_authority(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_valid_authority("a".repeat(254).as_bytes()));
    }
}
