//! Client-address headers: which address a request comes from, and which
//! headers claiming one reach the upstream (SPEC 5 and 6, issue 14).
//!
//! Frameworks believe a long list of headers about the client (its address,
//! scheme, host, port) when they sit behind a proxy, and each of them is a
//! way to lie to the application about who is calling: to pass an address
//! allow-list, to pick another tenant, to make a redirect point elsewhere.
//! keygate writes `X-Forwarded-For` and `X-Forwarded-Proto` itself, and
//! lets the rest of the family through only from `trusted_proxies`:
//!
//! - from a peer that is **not** trusted, every header in
//!   [`CLIENT_ADDRESS_HEADERS`], and every `X-Forwarded-*`, is removed, in
//!   any case and with `_` or `-` in any place;
//! - from a **trusted** peer they are kept, except their `_` spellings
//!   (`X_Forwarded_For`, `X-Forwarded_Proto`): no real proxy writes those,
//!   and a framework that folds `_` into `-` (CGI, Rack, WSGI, PHP) would
//!   read them as a second, client-written copy of the real header, the
//!   bypass behind oauth2-proxy's CVE-2025-64484;
//! - then `X-Forwarded-For` gains the peer address and `X-Forwarded-Proto`
//!   is set (kept from a trusted peer that sent one).

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, FORWARDED};

use super::Peer;
use crate::config::{canonical_ip, ProxySettings};

pub(super) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(super) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Client-address headers, lower case with `-`, besides the whole
/// `x-forwarded-*` family (matched by prefix, so `X-Forwarded-Prefix` and
/// Traefik's `X-Forwarded-Tls-Client-Cert` go too). Keep in step with the
/// README's list and [`is_listed`].
pub const CLIENT_ADDRESS_HEADERS: [&str; 17] = [
    "forwarded",
    "forwarded-for",
    "x-forwarded",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-proxyuser-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "client-ip",
    "x-original-host",
    "x-host",
];

/// How a client-address header was spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    /// With `-` only: what a proxy writes.
    Dashed,
    /// With at least one `_` where the header has `-`.
    Underscored,
}

/// Whether `name` is a header `strip` must remove for a peer that
/// is `trusted` (or not). `Forwarded`, `X-Forwarded-For` and
/// `X-Forwarded-Proto` from an untrusted peer are left to
/// [`set_forwarded`], which replaces them anyway: a request that carries
/// only those does not pay for the strip pass, nor for removing what is
/// about to be set again.
pub(super) fn must_strip(name: &HeaderName, trusted: bool) -> bool {
    match spelling(name.as_str()) {
        None => false,
        Some(Spelling::Underscored) => true,
        Some(Spelling::Dashed) => {
            !trusted
                && !matches!(
                    name.as_str(),
                    "x-forwarded-for" | "x-forwarded-proto" | "forwarded"
                )
        }
    }
}

/// Whether `name` (lower case, as hyper gives it) is a client-address
/// header, and how it was spelled. Cheap for the headers most requests
/// carry: one jump on the length, then a compare or two that mostly fail
/// on the first byte; nothing is copied or scanned unless the name matches.
fn spelling(name: &str) -> Option<Spelling> {
    let name = name.as_bytes();
    if !is_listed(name) {
        return None;
    }
    Some(if name.contains(&b'_') {
        Spelling::Underscored
    } else {
        Spelling::Dashed
    })
}

/// Whether `name`, with `_` read as `-`, is in [`CLIENT_ADDRESS_HEADERS`]
/// or starts `x-forwarded-`.
fn is_listed(name: &[u8]) -> bool {
    let listed = match name.len() {
        6 => folds_to(name, b"x-host"),
        9 => {
            folds_to(name, b"forwarded")
                || folds_to(name, b"x-real-ip")
                || folds_to(name, b"client-ip")
        }
        11 => {
            folds_to(name, b"x-forwarded")
                || folds_to(name, b"x-client-ip")
                || folds_to(name, b"x-remote-ip")
        }
        13 => folds_to(name, b"forwarded-for") || folds_to(name, b"x-remote-addr"),
        14 => folds_to(name, b"true-client-ip") || folds_to(name, b"x-proxyuser-ip"),
        15 => folds_to(name, b"x-original-host"),
        16 => {
            folds_to(name, b"cf-connecting-ip")
                || folds_to(name, b"fastly-client-ip")
                || folds_to(name, b"x-originating-ip")
        }
        19 => folds_to(name, b"x-cluster-client-ip"),
        24 => folds_to(name, b"x-original-forwarded-for"),
        _ => false,
    };
    listed || (name.len() > 12 && folds_to(&name[..12], b"x-forwarded-"))
}

/// Whether `name` equals `listed` (lower case, `-` only) once each `_` in
/// `name` is read as `-`.
fn folds_to(name: &[u8], listed: &[u8]) -> bool {
    name.len() == listed.len()
        && name
            .iter()
            .zip(listed)
            .all(|(&n, &l)| n == l || (n == b'_' && l == b'-'))
}

/// The client address: the TCP peer, or, when the peer is a trusted proxy,
/// the right-most address in `X-Forwarded-For` that is not itself trusted.
pub fn client_address(peer: &Peer, headers: &HeaderMap, settings: &ProxySettings) -> IpAddr {
    if !peer.trusted {
        return peer.addr;
    }
    let mut client = peer.addr;
    // Later headers are later hops; within one, entries run left to right.
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
    for hop in hops {
        match parse_hop(hop.trim()) {
            Some(ip) if settings.is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            // An unreadable hop was written by whoever is beyond the last
            // trusted proxy: stop at the nearest address we can vouch for.
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, tolerating `[v6]:port` and
/// `v4:port` forms that some proxies write.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical_ip(ip));
    }
    if let Ok(sa) = hop.parse::<std::net::SocketAddr>() {
        return Some(canonical_ip(sa.ip()));
    }
    None
}

/// Sets `X-Forwarded-For` and `X-Forwarded-Proto` for the upstream.
pub(super) fn set_forwarded(headers: &mut HeaderMap, peer: &Peer) {
    if peer.trusted {
        let previous: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let value = if previous.is_empty() {
            Some(peer.addr_value.clone())
        } else {
            HeaderValue::try_from(format!("{}, {}", previous.join(", "), peer.addr)).ok()
        };
        if let Some(value) = value {
            headers.insert(X_FORWARDED_FOR, value);
        }
        if !headers.contains_key(X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(peer.proto));
        }
    } else {
        headers.remove(FORWARDED);
        headers.insert(X_FORWARDED_FOR, peer.addr_value.clone());
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(peer.proto));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_and_the_x_forwarded_family_match_in_any_spelling() {
        for name in CLIENT_ADDRESS_HEADERS.iter().copied().chain([
            "x-forwarded-for",
            "x-forwarded-prefix",
            "x-forwarded-a",
        ]) {
            assert_eq!(spelling(name), Some(Spelling::Dashed), "{name}");
            if name.contains('-') {
                let under = name.replace('-', "_");
                assert_eq!(spelling(&under), Some(Spelling::Underscored), "{under}");
                let once = name.replacen('-', "_", 1);
                assert_eq!(spelling(&once), Some(Spelling::Underscored), "{once}");
            }
        }
        let long = format!("x_forwarded_{}", "y".repeat(40));
        assert_eq!(spelling(&long), Some(Spelling::Underscored));
        // Found by the property in `headers`: a `_` after the dashed prefix.
        assert_eq!(spelling("x-forwarded-_"), Some(Spelling::Underscored));
    }

    #[test]
    fn ordinary_and_near_miss_names_do_not() {
        for name in [
            "x-forwarded-",
            "x_forwarded_",
            "x-forwarde",
            "forwardeds",
            "x-real-ips",
            "x-request-id",
            "cookie",
            "content-type",
            "connection",
            "cache-control",
            "x-haplo-user",
            "x_custom_header",
            "true-client",
            "host",
            "x",
        ] {
            assert_eq!(spelling(name), None, "{name}");
        }
    }

    #[test]
    fn the_untrusted_fast_path_leaves_what_set_forwarded_replaces() {
        for (name, untrusted, trusted) in [
            ("forwarded", false, false),
            ("x-forwarded-for", false, false),
            ("x-forwarded-proto", false, false),
            ("x_forwarded_for", true, true),
            ("x-real-ip", true, false),
            ("x-forwarded-host", true, false),
            ("x-request-id", false, false),
        ] {
            let header = HeaderName::from_static(name);
            assert_eq!(must_strip(&header, false), untrusted, "{name} untrusted");
            assert_eq!(must_strip(&header, true), trusted, "{name} trusted");
        }
    }
}
