//! Header hygiene between client and upstream (SPEC 6).
//!
//! The order matters and is the SPEC's:
//!
//! 1. Hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-Connection`,
//!    `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `HTTP2-Settings`,
//!    `Proxy-Authorization`, `Proxy-Authenticate`), and every header the
//!    client named in `Connection`, are removed (except `Host` and
//!    `Content-Length`, which a client must not be able to strip from its
//!    own request that way). An upgrade to a protocol on
//!    `proxy.upgrades` puts its `Upgrade` back afterwards
//!    (`super::upgrade`).
//! 2. Every header whose name, lower-cased with `_` read as `-`, equals the
//!    identity or key-id header is removed: `x_haplo_user` and
//!    `X-HAPLO-USER` are the same header to many frameworks (oauth2-proxy
//!    CVE-2025-64484 was exactly this). The credentials (`Authorization`,
//!    `X-ONEIS-Key`) go too.
//! 3. For an authenticated request only, the identity headers are set.
//! 4. `X-Forwarded-For` gains the peer address and `X-Forwarded-Proto` is
//!    set; client-sent values (and `Forwarded`) survive only from trusted
//!    proxies.
//!
//! Also here: which address a request comes from, since that reads
//! `X-Forwarded-For` with the same trust rule, and the `Host` check
//! (`host`: exactly one, a plain host and port, agreeing with an
//! absolute-form target).

mod host;

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, EXPECT,
    FORWARDED, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING,
    UPGRADE,
};

pub(crate) use self::host::check_host;

use crate::auth::credentials::X_ONEIS_KEY;
use crate::config::{canonical_ip, ProxySettings};
use crate::keys::Entry;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1,
/// plus the non-standard ones proxies are known to honour).
/// `HTTP2-Settings` only ever comes with `Upgrade: h2c` (RFC 7540 3.2.1),
/// which keygate never relays, so it goes even when not named in
/// `Connection`.
const HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HTTP2_SETTINGS,
    PROXY_AUTHORIZATION,
    PROXY_AUTHENTICATE,
];

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The TCP peer.
    pub addr: IpAddr,
    /// Whether the peer is a trusted proxy.
    pub trusted: bool,
    /// `http` or `https`, for `X-Forwarded-Proto`.
    pub proto: &'static str,
    /// `addr` as a header value, made once per connection rather than
    /// formatted for every request.
    addr_value: HeaderValue,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: IpAddr, trusted: bool, proto: &'static str) -> Self {
        let addr_value = HeaderValue::try_from(addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Peer {
            addr,
            trusted,
            proto,
            addr_value,
        }
    }
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

/// Whether `name` and `target` are the same once lower-cased with `_` read
/// as `-` (either side may use either spelling). Both are already lower
/// case: hyper lower-cases header names.
fn is_alias(name: &str, target: &str) -> bool {
    let dash = |b: u8| if b == b'_' { b'-' } else { b };
    name.len() == target.len()
        && name
            .bytes()
            .zip(target.bytes())
            .all(|(a, b)| dash(a) == dash(b))
}

/// Removes hop-by-hop headers and those named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Names listed in Connection, collected first: HeaderMap cannot be
    // mutated while its values are borrowed. No allocation unless the
    // client sent a Connection header naming something.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if token.is_empty() {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                if name != HOST && name != CONTENT_LENGTH {
                    named.push(name);
                }
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Rewrites a client's request headers for the upstream.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    settings: &ProxySettings,
    peer: &Peer,
    identity: Option<&Entry>,
) {
    headers.remove(AUTHORIZATION);
    // One read-only pass first: most requests carry nothing else to strip,
    // and a scan of a handful of names is cheaper than a dozen hashed
    // removals that find nothing.
    if headers.keys().any(|name| must_strip(name, settings)) {
        strip(headers, settings);
    }

    if let Some(entry) = identity {
        headers.insert(
            settings.identity_header.clone(),
            entry.user_header().clone(),
        );
        headers.insert(settings.key_id_header.clone(), entry.id_header());
    }

    set_forwarded(headers, peer);
}

/// Whether `name` is one [`strip`] removes. (`Forwarded` from an untrusted
/// peer is [`set_forwarded`]'s business, not a reason to run `strip`.)
fn must_strip(name: &HeaderName, settings: &ProxySettings) -> bool {
    HOP_BY_HOP.contains(name)
        || name == EXPECT
        || is_alias(name.as_str(), settings.identity_header.as_str())
        || is_alias(name.as_str(), settings.key_id_header.as_str())
        || is_alias(name.as_str(), X_ONEIS_KEY)
}

/// Removes hop-by-hop headers, `Expect`, and every spelling of the identity,
/// key-id and legacy credential headers.
fn strip(headers: &mut HeaderMap, settings: &ProxySettings) {
    remove_hop_by_hop(headers);
    // hyper already answered `Expect: 100-continue` to the client when the
    // body was first read; the upstream must not see it again.
    headers.remove(EXPECT);

    let identity_name = settings.identity_header.as_str();
    let key_id_name = settings.key_id_header.as_str();
    // The credential header goes in every spelling too: a framework that
    // reads `X_ONEIS_Key` as `X-ONEIS-Key` must not receive the key.
    let aliases: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            is_alias(name, identity_name)
                || is_alias(name, key_id_name)
                || is_alias(name, X_ONEIS_KEY)
        })
        .cloned()
        .collect();
    for name in aliases {
        headers.remove(name);
    }
}

fn set_forwarded(headers: &mut HeaderMap, peer: &Peer) {
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

/// Rewrites the upstream's response headers for the client: hop-by-hop
/// headers describe the upstream connection, not ours.
pub fn rewrite_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_ignore_case_and_underscores() {
        assert!(is_alias("x-haplo-user", "x-haplo-user"));
        assert!(is_alias("x_haplo_user", "x-haplo-user"));
        assert!(is_alias("x_haplo-user", "x-haplo-user"));
        assert!(!is_alias("x-haplo-users", "x-haplo-user"));
        assert!(!is_alias("x-haplo-usex", "x-haplo-user"));
        // A configured name with underscores matches the dashed spelling.
        assert!(is_alias("x-remote-user", "x_remote_user"));
    }

    #[test]
    fn connection_cannot_strip_host_or_length() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "a".parse().unwrap());
        h.insert(CONTENT_LENGTH, "3".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert(
            CONNECTION,
            "host, content-length, x-a, keep-alive".parse().unwrap(),
        );
        remove_hop_by_hop(&mut h);
        assert!(h.contains_key(HOST) && h.contains_key(CONTENT_LENGTH));
        assert!(!h.contains_key("x-a") && !h.contains_key(CONNECTION));
    }
}
