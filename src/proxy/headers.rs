//! Header hygiene between client and upstream (SPEC 6).
//!
//! The order matters and is the SPEC's:
//!
//! 1. Hop-by-hop headers (`Connection`, `Keep-Alive`, `Proxy-Connection`,
//!    `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, `HTTP2-Settings`,
//!    `Proxy-Authorization`, `Proxy-Authenticate`), and every header the
//!    client named in `Connection`, are removed (except `Host` and
//!    `Content-Length`, which a client must not be able to strip from its
//!    own request that way), and so is every `_` spelling of those fields
//!    and of `Content-Length` (`Transfer_Encoding`: the request is framed
//!    by keygate's own fields, and an application that read `_` as `-`
//!    would frame it by another). An upgrade to a protocol on
//!    `proxy.upgrades` puts its `Upgrade` back afterwards
//!    (`super::upgrade`).
//! 2. Every header whose name, lower-cased with `_` read as `-`, equals the
//!    identity or key-id header is removed: `x_haplo_user` and
//!    `X-HAPLO-USER` are the same header to many frameworks (oauth2-proxy
//!    CVE-2025-64484 was exactly this). The credentials (`Authorization`,
//!    `X-ONEIS-Key`) go too.
//! 3. Client-address headers (`forwarding`): from a peer that is not in
//!    `trusted_proxies`, every one of them is removed in any case and
//!    `_`/`-` spelling: `Forwarded`, `Forwarded-For`, `X-Forwarded` and
//!    every `X-Forwarded-*` (`-For`, `-Proto`, `-Host`, `-Port`, `-Server`,
//!    `-Scheme`, `-Ssl`, `-Prefix`, ...), `X-Real-IP`, `X-Client-IP`,
//!    `True-Client-IP`, `X-Cluster-Client-IP`, `X-Original-Forwarded-For`,
//!    `CF-Connecting-IP`, `Fastly-Client-IP`, `X-ProxyUser-IP`,
//!    `X-Originating-IP`, `X-Remote-IP`, `X-Remote-Addr`, `Client-IP`,
//!    `X-Original-Host` and `X-Host`. From a trusted proxy they are kept,
//!    except in a `_` spelling, which no proxy writes.
//! 4. Target and method overrides (`X-Original-URL`, `X-Rewrite-URL`,
//!    `X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`) are
//!    removed in any spelling, from every peer: an application that
//!    honoured one would serve a path or method the scope check never saw.
//! 5. For an authenticated request only, the identity headers are set.
//! 6. `X-Forwarded-For` gains the peer address and `X-Forwarded-Proto` is
//!    set; client-sent values survive only from trusted proxies.
//!
//! The common request carries none of these, so [`rewrite_request`] first
//! makes one read-only pass over the names and only then pays for removals.
//!
//! Responses need only step 1's exact names, and get it earlier: the
//! upstream client's parser (`upstream::response`) leaves hop-by-hop
//! fields, and those named in `Connection`, out of the response it builds
//! ([`is_hop_by_hop`]), which is cheaper than building them into the map
//! and removing them. Their `_` spellings pass: the response comes from
//! the application keygate trusts, and keygate frames it itself.
//!
//! Also here: which address a request comes from ([`client_address`]),
//! since that reads `X-Forwarded-For` with the same trust rule, and the
//! `Host` check (`host`).

mod forwarding;
mod host;

use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, EXPECT, HOST,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

pub use self::forwarding::{client_address, CLIENT_ADDRESS_HEADERS};
pub(crate) use self::host::check_host;

use crate::auth::credentials::X_ONEIS_KEY;
use crate::config::ProxySettings;
use crate::http1::trim;
use crate::keys::Entry;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// How many headers [`HOP_BY_HOP`] lists.
const HOPS: usize = 10;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1,
/// plus the non-standard ones proxies are known to honour).
/// `HTTP2-Settings` only ever comes with `Upgrade: h2c` (RFC 7540 3.2.1),
/// which keygate never relays, so it goes even when not named in
/// `Connection`.
const HOP_BY_HOP: [HeaderName; HOPS] = [
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

/// The same list as a `static`, for the removal loop: iterating a `const`
/// array builds and drops ten `HeaderName`s every time, while a membership
/// test against the `const` compiles to plain comparisons (measured both
/// ways; each is the faster one for its use).
static HOP_BY_HOP_LIST: [HeaderName; HOPS] = HOP_BY_HOP;

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

/// Whether `name` and `target` are the same once lower-cased with `_` read
/// as `-` (either side may use either spelling). Both are already lower
/// case: header names arrive lower-cased (`http::HeaderName`).
fn is_alias(name: &str, target: &str) -> bool {
    let dash = |b: u8| if b == b'_' { b'-' } else { b };
    name.len() == target.len()
        && name
            .bytes()
            .zip(target.bytes())
            .all(|(a, b)| dash(a) == dash(b))
}

/// Removes hop-by-hop headers and those named in `Connection`.
///
/// One read-only pass over the names finds which hop-by-hop headers are
/// there (comparisons, no hashing); only those are removed. Nearly every
/// response carries just `Connection`, so this costs one hashed removal
/// instead of eleven lookups (callgrind: this function and the map's
/// hashing were 6% of a forwarded request's instructions).
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = [false; HOPS];
    for name in headers.keys() {
        if let Some(at) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present[at] = true;
        }
    }
    if present == [false; HOPS] {
        return;
    }
    // Names listed in Connection, collected first: HeaderMap cannot be
    // mutated while its values are borrowed. No allocation unless the
    // client sent a Connection header naming something beyond the
    // hop-by-hop headers, which go anyway.
    let mut named: Vec<HeaderName> = Vec::new();
    for value in headers.get_all(CONNECTION) {
        // Split as bytes: a value with one non-ASCII option still names
        // the fields in its other options (as the upstream leg reads it).
        for token in value.as_bytes().split(|&b| b == b',').map(trim) {
            if token.is_empty() {
                continue;
            }
            // `keep-alive` and the other hop-by-hop names go anyway; not
            // making a `HeaderName` of them saves an allocation each.
            if !names_a_field(token) {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                if may_be_named_away(&name) {
                    named.push(name);
                }
            }
        }
    }
    for name in named {
        headers.remove(name);
    }
    for (name, present) in HOP_BY_HOP_LIST.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// Rewrites a client's request headers for the upstream.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    settings: &ProxySettings,
    peer: &Peer,
    identity: Option<&Entry>,
) {
    if !settings.forward_credentials {
        headers.remove(AUTHORIZATION);
    }
    // One read-only pass first: most requests carry nothing else to strip,
    // and a scan of a handful of names is cheaper than a dozen hashed
    // removals that find nothing.
    if headers
        .keys()
        .any(|name| must_strip(name, settings, peer.trusted))
    {
        strip(headers, settings, peer.trusted);
    }

    if let Some(entry) = identity {
        headers.insert(
            settings.identity_header.clone(),
            entry.user_header().clone(),
        );
        headers.insert(settings.key_id_header.clone(), entry.id_header());
    }

    forwarding::set_forwarded(headers, peer);
}

/// Whether `name` is one [`strip`] removes from a peer that is `trusted`
/// (or not). (`Forwarded`, `X-Forwarded-For` and `-Proto` from an
/// untrusted peer are `set_forwarded`'s business, not a reason to run
/// `strip`.)
fn must_strip(name: &HeaderName, settings: &ProxySettings, trusted: bool) -> bool {
    HOP_BY_HOP.contains(name) || name == EXPECT || is_stripped_alias(name, settings, trusted)
}

/// The names [`strip`] removes one by one, beyond the hop-by-hop fields and
/// `Expect`: a spelling of a framing field, of the identity, key-id or
/// credential header, or of an override, and the client-address headers
/// this peer may not send. [`must_strip`] and [`strip`] both read this, so
/// the pre-scan and the removal cannot disagree.
fn is_stripped_alias(name: &HeaderName, settings: &ProxySettings, trusted: bool) -> bool {
    forwarding::must_strip(name, trusted)
        || is_framing_alias(name)
        || is_credential_alias(name, settings)
        || is_override(name)
        || is_alias(name.as_str(), settings.identity_header.as_str())
        || is_alias(name.as_str(), settings.key_id_header.as_str())
}

/// Headers with which some frameworks let a request name a different
/// target or method than the one it was sent with (Symfony and IIS honour
/// `X-Original-URL` / `X-Rewrite-URL`; Rails, Express and Spring honour
/// method overrides). keygate checks the key's scope against the
/// request-target it received, so an application that believed one of
/// these would serve a path or method the key never admitted. They go in
/// every spelling, from every peer.
const OVERRIDES: [&str; 5] = [
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

fn is_override(name: &HeaderName) -> bool {
    OVERRIDES
        .iter()
        .any(|target| is_alias(name.as_str(), target))
}

/// Whether `name` is a `_` spelling of `Content-Length` or of a hop-by-hop
/// field (`transfer_encoding`, `Keep_Alive`, ...). No client has reason to
/// send one, and an application that reads `_` as `-` (CGI's `HTTP_*`
/// variables do) would frame the body, or manage the connection, by a
/// field keygate neither framed the request by nor removed: a
/// `Transfer_Encoding: chunked` beside keygate's own `Content-Length` is a
/// request smuggled past the scope check.
fn is_framing_alias(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.contains('_')
        && (is_alias(name, CONTENT_LENGTH.as_str())
            || HOP_BY_HOP.iter().any(|hop| is_alias(name, hop.as_str())))
}

/// Whether `name` is a spelling of `X-ONEIS-Key` that goes: every
/// spelling, or with `forward_credentials` every spelling but the exact
/// header (which a stock Haplo reads again).
fn is_credential_alias(name: &HeaderName, settings: &ProxySettings) -> bool {
    is_alias(name.as_str(), X_ONEIS_KEY)
        && !(settings.forward_credentials && name.as_str() == X_ONEIS_KEY)
}

/// Removes hop-by-hop headers and the `_` spellings of framing fields,
/// `Expect`, every spelling of the identity, key-id and legacy credential
/// headers and of the target and method overrides, and the client-address
/// headers this peer may not send.
fn strip(headers: &mut HeaderMap, settings: &ProxySettings, trusted: bool) {
    remove_hop_by_hop(headers);
    // The front end already answered `Expect: 100-continue` to the client when the
    // body was first read; the upstream must not see it again.
    headers.remove(EXPECT);

    // The credential header goes in every spelling too: a framework that
    // reads `X_ONEIS_Key` as `X-ONEIS-Key` must not receive the key. So do
    // client-address headers, for the same reason.
    let aliases: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_stripped_alias(name, settings, trusted))
        .cloned()
        .collect();
    for name in aliases {
        headers.remove(name);
    }
}

/// Whether `name` is a hop-by-hop header, which never crosses keygate.
/// The upstream client's response parser uses this to keep such fields
/// out of the response it hands over (`upstream::response`).
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Whether a `Connection` option (any case) names a field beyond the
/// hop-by-hop ones, which go anyway; `close` is an option, not a name.
/// Both legs read `Connection` by this rule and [`may_be_named_away`].
pub(crate) fn names_a_field(option: &[u8]) -> bool {
    !option.eq_ignore_ascii_case(b"close")
        && !HOP_BY_HOP
            .iter()
            .any(|hop| hop.as_str().as_bytes().eq_ignore_ascii_case(option))
}

/// Whether a field named in `Connection` is removed with it: any but
/// `Host` and `Content-Length`, which routing and framing depend on.
pub(crate) fn may_be_named_away(name: &HeaderName) -> bool {
    *name != HOST && *name != CONTENT_LENGTH
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
    fn underscore_spellings_of_framing_and_hop_by_hop_fields_are_framing_aliases() {
        for name in [
            "content_length",
            "transfer_encoding",
            "keep_alive",
            "proxy_connection",
            "proxy_authorization",
            "proxy_authenticate",
            "http2_settings",
        ] {
            assert!(is_framing_alias(&HeaderName::from_static(name)), "{name}");
        }
        // The fields themselves are hop-by-hop removal's or framing's
        // business, and fields that merely resemble them stay.
        for name in [
            "content-length",
            "transfer-encoding",
            "content_type",
            "transfer_encodings",
            "x_content_length",
        ] {
            assert!(!is_framing_alias(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn each_hop_by_hop_header_goes_alone_or_named_in_any_case() {
        for hop in &HOP_BY_HOP {
            let mut h = HeaderMap::new();
            h.insert(HOST, "a".parse().unwrap());
            h.append(hop.clone(), "1".parse().unwrap());
            h.append(hop.clone(), "2".parse().unwrap());
            remove_hop_by_hop(&mut h);
            assert_eq!(h.len(), 1, "{hop} left behind: {h:?}");
            assert!(h.contains_key(HOST));
        }
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "Keep-Alive, X-B".parse().unwrap());
        h.insert(KEEP_ALIVE, "timeout=5".parse().unwrap());
        h.insert("x-b", "1".parse().unwrap());
        h.insert("x-c", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-c"]);
    }

    #[test]
    fn a_non_ascii_connection_option_does_not_hide_the_others() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_bytes(b"x-foo, \x80caf\xc3\xa9").unwrap(),
        );
        h.insert("x-foo", "1".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn end_to_end_headers_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "a".parse().unwrap());
        h.append("x-a", "1".parse().unwrap());
        h.append("x-a", "2".parse().unwrap());
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before);
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

    /// A client-address header name in a random spelling, an
    /// `x-forwarded-*` name, or any header name at all.
    fn any_name() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let listed = prop::sample::select(CLIENT_ADDRESS_HEADERS.to_vec());
        prop_oneof![
            (listed, any::<u64>(), any::<u64>()).prop_map(|(name, unders, upper)| {
                name.char_indices()
                    .map(|(i, c)| match c {
                        '-' if unders >> (i % 64) & 1 == 1 => '_',
                        c if upper >> (i % 64) & 1 == 1 => c.to_ascii_uppercase(),
                        c => c,
                    })
                    .collect()
            }),
            "[xX][-_][fF]orwarded[-_][a-zA-Z_-]{1,12}",
            "[a-zA-Z0-9_-]{1,16}",
        ]
    }

    #[test]
    fn a_framing_alias_alone_is_enough_to_be_stripped() {
        // Nothing else in this head would make `rewrite_request` strip:
        // the read-only pre-scan must see the alias by itself.
        let settings = crate::config::Config::defaults().proxy;
        let peer = Peer::new(IpAddr::from([127, 0, 0, 1]), true, "http");
        for name in ["transfer_encoding", "content_length"] {
            let mut headers = HeaderMap::new();
            headers.insert(HOST, HeaderValue::from_static("app.example"));
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static("chunked"),
            );
            rewrite_request(&mut headers, &settings, &peer, None);
            assert!(!headers.contains_key(name), "{name}: {headers:?}");
            assert!(headers.contains_key(HOST));
        }
    }

    proptest::proptest! {
        #[test]
        fn only_keygates_client_address_headers_leave_an_untrusted_peer(
            names in proptest::collection::vec(any_name(), 0..16),
            trusted in proptest::prelude::any::<bool>(),
        ) {
            let settings = crate::config::Config::defaults().proxy;
            let mut headers = HeaderMap::new();
            for name in &names {
                if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
                    headers.append(name, HeaderValue::from_static("203.0.113.66"));
                }
            }
            let peer = Peer::new(IpAddr::from([127, 0, 0, 1]), trusted, "http");
            rewrite_request(&mut headers, &settings, &peer, None);
            for (name, value) in &headers {
                let folded = crate::config::alias_form(name.as_str());
                let listed = CLIENT_ADDRESS_HEADERS.contains(&folded.as_str())
                    || folded.starts_with("x-forwarded-");
                if !listed {
                    continue;
                }
                // From anyone: never an underscore spelling.
                proptest::prop_assert!(!name.as_str().contains('_'), "{name} kept");
                if !trusted {
                    // From an untrusted peer: only keygate's own two.
                    let ours = (name == forwarding::X_FORWARDED_FOR && value == "127.0.0.1")
                        || (name == forwarding::X_FORWARDED_PROTO && value == "http");
                    proptest::prop_assert!(ours, "{name}: {value:?} kept");
                }
            }
        }
    }
}
