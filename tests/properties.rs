//! Issue 4: property tests for the three pieces every request goes through.
//!
//! - The request-target validator: whatever it accepts is canonical (the
//!   same string validates to itself) and holds nothing that could be read
//!   two ways; the scope decision on it is exactly Haplo's string rule.
//! - The Basic credential parser: total on arbitrary bytes, and the key is
//!   everything after the first colon of `haplo:`.
//! - Header hygiene: whatever headers a client sends, the only identity and
//!   key-id headers that leave keygate (in any case, `_` or `-` spelling)
//!   are the ones it set itself.
//! - Issue 13: the upstream leg's response framing. Heads with any mix of
//!   framing headers are refused exactly when RFC 9112 6.3 (made strict,
//!   as `proxy::upstream::response` documents) says so; a body decodes the
//!   same whatever the reads' boundaries; a `Content-Length` body is that
//!   many bytes; valid chunked encodings round-trip. The fuzz targets
//!   `upstream_response` and `chunked_roundtrip` check the same with
//!   libFuzzer, which CI does not run.
//!
//! Inputs are built from the fragments attacks are made of (dots, encoded
//! separators, `%25`, `;`, `\`, `?`, `#`, `_`-aliases), mixed with
//! arbitrary bytes, so that proptest reaches the interesting corners often.

use std::net::{IpAddr, Ipv4Addr};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Uri;
use keygate::auth::credentials::parse_basic;
use keygate::config::{Config, ProxySettings};
use keygate::fuzzing::{
    decode_body, parse_response_head, BodyEnd, BodyFraming, FramingError, HeadError,
};
use keygate::keys::{ApiKey, Entry, KeyRecord, UserId};
use keygate::proxy::headers::{rewrite_request, Peer};
use keygate::scope::Scope;
use keygate::target::Target;
use keygate::timestamp::Timestamp;
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// Request-targets and scopes
// ---------------------------------------------------------------------------

/// Pieces of a path segment, weighted toward the ones that make ambiguity.
fn segment_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_~-]{1,4}",
        2 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => "%(2|5|3|0|7|1)[0-9a-fA-F]",
        1 => prop::sample::select(vec![
            "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%3b", "%3B", "%00", "%25",
            "%252e", "%252f", "%25%32%65", "%251", "%250", "%25a", "%u002e", "%", "%4",
            "%zz", ";", "\\",
            "@", ":", "=", "&", "+", "!", "$", "'", "(", ")", "*", ",", "%20", "%23", "%3f",
        ])
        .prop_map(str::to_owned),
        1 => "[\\x21-\\x7e]",
    ]
}

/// A request-target: `/`-separated segments, maybe `?query`, maybe
/// `#fragment`, maybe absolute-form.
fn target_text() -> impl Strategy<Value = String> {
    let segment = prop::collection::vec(segment_piece(), 0..4).prop_map(|p| p.concat());
    let path = prop::collection::vec(segment, 1..6).prop_map(|s| format!("/{}", s.join("/")));
    let query = prop::option::of(prop::collection::vec(segment_piece(), 0..4))
        .prop_map(|q| q.map(|q| format!("?{}", q.concat())).unwrap_or_default());
    let fragment =
        prop::option::weighted(0.1, "#[\\x21-\\x7e]{0,6}").prop_map(Option::unwrap_or_default);
    let prefix = prop::sample::select(vec!["", "", "", "", "http://app.example", "https://h:1"]);
    // Absolute-form may have an empty path (`http://host?q` means `/?q`).
    let empty_path = prop::bool::weighted(0.2);
    (prefix, path, query, fragment, empty_path).prop_map(|(pre, path, q, f, empty)| {
        let path = if empty && !pre.is_empty() { "" } else { &path };
        format!("{pre}{path}{q}{f}")
    })
}

/// The path of a canonical target (before `?`).
fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(p, _)| p)
}

/// Decodes `%XX` escapes (any case) once; malformed escapes stay as they are.
fn decode_once(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Every way the path of an accepted target could be read two ways.
fn ambiguities(target: &str) -> Vec<String> {
    let mut found = Vec::new();
    let path = path_of(target);
    if !path.starts_with('/') {
        found.push("does not start with '/'".to_owned());
    }
    if path.contains("//") {
        found.push("'//'".to_owned());
    }
    // Encoded separators, as sent and after one decoding (an application
    // that decodes twice must not find one either).
    let lower = path.to_ascii_lowercase();
    let decoded = String::from_utf8_lossy(&decode_once(path)).to_ascii_lowercase();
    for escape in ["%2f", "%5c", "%3b", "%00"] {
        if lower.contains(escape) {
            found.push(escape.to_owned());
        }
        if decoded.contains(escape) {
            found.push(format!("double-encoded {escape}"));
        }
    }
    if path.contains(';') || path.contains('\\') {
        found.push("raw ';' or '\\'".to_owned());
    }
    if !target.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        found.push("space, control or non-ASCII byte".to_owned());
    }
    if target.contains('#') {
        found.push("fragment".to_owned());
    }
    for segment in path.split('/') {
        // Decoded once and twice: an application that decodes either way
        // must not find a dot-segment. (`%2e` inside a longer segment, as in
        // `%2e..` or `%2ex`, decodes to an ordinary name and is accepted.)
        let once = decode_once(segment);
        let twice = decode_once(&String::from_utf8_lossy(&once));
        for decoded in [&once, &twice] {
            if decoded.as_slice() == b"." || decoded.as_slice() == b".." {
                found.push(format!("dot-segment {segment:?}"));
            }
        }
    }
    found
}

/// Validates a target the way keygate does after hyper's parse.
fn validate(text: &str) -> Option<Result<String, keygate::target::TargetError>> {
    let uri: Uri = text.parse().ok()?;
    Some(Target::from_uri(&uri).map(|t| t.as_str().to_owned()))
}

/// Haplo's rule, on the canonical string (`app/models/api_key.rb`).
fn haplo_admits(scope: &str, target: &str) -> bool {
    match scope.strip_prefix('=') {
        Some(exact) => target == exact,
        None => target.starts_with(scope),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn an_accepted_target_is_canonical_and_unambiguous(text in target_text()) {
        if let Some(Ok(canonical)) = validate(&text) {
            let again = validate(&canonical);
            prop_assert_eq!(
                again.as_ref().and_then(|r| r.as_ref().ok()),
                Some(&canonical),
                "re-validating {:?} (from {:?})", canonical, text
            );
            let found = ambiguities(&canonical);
            prop_assert!(found.is_empty(), "{:?} (from {:?}): {:?}", canonical, text, found);
            // An empty query is dropped: a `?` always starts a non-empty one.
            prop_assert!(
                canonical.split_once('?').is_none_or(|(_, q)| !q.is_empty()),
                "{:?}", canonical
            );
        }
    }

    #[test]
    fn an_accepted_origin_form_target_is_forwarded_as_sent(text in target_text()) {
        // Origin-form, no fragment, no empty query: nothing to canonicalise,
        // so what was checked is byte for byte what was received.
        let plain = text.starts_with('/')
            && !text.contains('#')
            && text.split_once('?').is_none_or(|(_, q)| !q.is_empty());
        if let (true, Some(Ok(canonical))) = (plain, validate(&text)) {
            prop_assert_eq!(canonical, text);
        }
    }

    #[test]
    fn the_scope_decision_is_haplos_string_rule(
        text in target_text(),
        cut in 0usize..64,
        exact in any::<bool>(),
        other in target_text(),
    ) {
        let Some(Ok(target)) = validate(&text) else { return Ok(()) };
        // Scopes that are prefixes of the target (so they often match), the
        // target itself, and unrelated ones.
        let mut end = cut.min(target.len());
        while !target.is_char_boundary(end) { end -= 1; }
        let candidates = [
            target[..end].to_owned(),
            format!("={}", &target[..end]),
            format!("={target}"),
            target.clone(),
            if exact { format!("={}", path_of(&other)) } else { path_of(&other).to_owned() },
        ];
        for scope_text in candidates {
            if let Ok(scope) = Scope::parse(&scope_text) {
                prop_assert_eq!(
                    scope.admits(&target),
                    haplo_admits(&scope_text, &target),
                    "scope {:?} on {:?}", scope_text, target
                );
            }
        }
    }

    #[test]
    fn a_scope_equal_to_an_accepted_target_admits_it(text in target_text()) {
        if let Some(Ok(target)) = validate(&text) {
            // `=/` alone admits nothing by design (SPEC 4).
            let exact = (target != "/").then(|| format!("={target}"));
            for scope_text in exact.into_iter().chain([target.clone()]) {
                let scope = Scope::parse(&scope_text);
                prop_assert!(scope.is_ok(), "{:?}: {:?}", scope_text, scope.err());
                prop_assert!(scope.unwrap().admits(&target), "{:?}", scope_text);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Basic credentials
// ---------------------------------------------------------------------------

fn scheme() -> impl Strategy<Value = String> {
    "[bB][aA][sS][iI][cC]"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn parse_basic_never_panics_on_arbitrary_bytes(value in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_basic(&value);
    }

    #[test]
    fn parse_basic_never_panics_on_basic_with_arbitrary_bytes(
        scheme in scheme(),
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut value = format!("{scheme} ").into_bytes();
        value.extend_from_slice(&tail);
        let _ = parse_basic(&value);
    }

    #[test]
    fn parse_basic_never_panics_on_base64_of_arbitrary_bytes(
        scheme in scheme(),
        decoded in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let value = format!("{scheme} {}", STANDARD.encode(&decoded));
        let key = parse_basic(value.as_bytes()).map(|k| k.as_bytes().to_vec());
        // Only `haplo:` plus a non-empty password is a key.
        let expected = decoded
            .strip_prefix(b"haplo:")
            .filter(|p| !p.is_empty())
            .map(<[u8]>::to_vec);
        prop_assert_eq!(key, expected);
    }

    #[test]
    fn the_key_is_everything_after_the_first_colon(
        scheme in scheme(),
        password in prop::collection::vec(prop_oneof![Just(b':'), any::<u8>()], 1..300),
        padded in any::<bool>(),
        spaces in 1usize..4,
        trailing in "[ \t]{0,3}",
    ) {
        let mut decoded = b"haplo:".to_vec();
        decoded.extend_from_slice(&password);
        let encoded = if padded { STANDARD.encode(&decoded) } else { STANDARD_NO_PAD.encode(&decoded) };
        let value = format!("{scheme}{}{encoded}{trailing}", " ".repeat(spaces));
        let key = parse_basic(value.as_bytes()).map(|k| k.as_bytes().to_vec());
        prop_assert_eq!(key, Some(password));
    }

    #[test]
    fn any_other_user_is_no_key(
        user in prop::collection::vec(any::<u8>(), 0..12).prop_filter("not haplo", |u| u != b"haplo"),
        password in prop::collection::vec(any::<u8>(), 0..60),
    ) {
        // The user ends at the first colon, so a user with a colon in it is
        // really a shorter user; only exactly `haplo` before it is a key.
        let mut decoded = user.clone();
        decoded.push(b':');
        decoded.extend_from_slice(&password);
        let real_user = decoded.split(|&b| b == b':').next().unwrap_or_default();
        let value = format!("Basic {}", STANDARD.encode(&decoded));
        if real_user != b"haplo" {
            prop_assert!(parse_basic(value.as_bytes()).is_none(), "{:?}", decoded);
        }
    }
}

// ---------------------------------------------------------------------------
// Header hygiene
// ---------------------------------------------------------------------------

/// `name`, lower-cased with `_` read as `-`.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// A spelling of `name`: each letter in either case, each `-` maybe `_`,
/// maybe with a character more or less (near-misses that must survive).
fn spelling(name: &'static str) -> impl Strategy<Value = String> {
    let n = name.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(any::<bool>(), n),
        0u8..6,
    )
        .prop_map(move |(upper, underscore, mutate)| {
            let mut out: String = name
                .chars()
                .zip(upper.iter().zip(&underscore))
                .map(|(c, (&u, &s))| match c {
                    '-' | '_' if s => '_',
                    '-' | '_' => '-',
                    c if u => c.to_ascii_uppercase(),
                    c => c.to_ascii_lowercase(),
                })
                .collect();
            match mutate {
                0 => out.push('s'),
                1 => {
                    out.pop();
                }
                _ => {}
            }
            out
        })
}

/// Identity and key-id header names as an operator might configure them.
const CONFIGURED: [(&str, &str); 3] = [
    ("X-Haplo-User", "X-Haplo-Api-Key-Id"),
    ("X-Remote-User", "X-Remote-Key"),
    ("X_Remote_User", "x_remote_key_id"),
];

fn settings(identity: &str, key_id: &str) -> ProxySettings {
    let text = format!("[proxy]\nidentity_header = \"{identity}\"\nkey_id_header = \"{key_id}\"\n");
    Config::parse(&text, None)
        .expect("test config is valid")
        .proxy
}

fn entry(user: &str) -> std::sync::Arc<Entry> {
    let key = ApiKey::generate().expect("OS randomness");
    let record = KeyRecord {
        id: key.id(),
        hash: keygate::keys::KeyHash::Blake3(key.secret_hash()),
        user: UserId::parse(user).expect("valid user"),
        name: "property".to_owned(),
        scope: Scope::parse("/").expect("valid scope"),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
        origin: keygate::keys::Origin::Keygate,
        policy: Default::default(),
    };
    Entry::new(record)
}

/// Arbitrary header lines: aliases of every configured name (and
/// near-misses), credentials, hop-by-hop headers, random names, and
/// `Connection` naming any of them.
fn header_lines() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        3 => spelling("x-haplo-user"),
        3 => spelling("x-haplo-api-key-id"),
        2 => spelling("x-remote-user"),
        2 => spelling("x-remote-key"),
        2 => spelling("x-remote-key-id"),
        1 => spelling("x-oneis-key"),
        1 => prop::sample::select(vec![
            "authorization", "connection", "keep-alive", "te", "trailer", "upgrade",
            "transfer-encoding", "proxy-authorization", "host", "content-length", "forwarded",
            "x-forwarded-for",
        ]).prop_map(str::to_owned),
        2 => "[a-zA-Z0-9!#$%&'*+.^_`|~-]{1,20}",
    ];
    let value = prop_oneof![
        3 => prop::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..24),
        1 => prop::collection::vec(
            prop_oneof![
                spelling("x-haplo-user"),
                spelling("x-haplo-api-key-id"),
                spelling("x-remote-user"),
                spelling("x-remote-key"),
                Just("close".to_owned()),
                Just(" , ".to_owned()),
            ],
            1..4,
        )
        .prop_map(|names| names.join(", ").into_bytes()),
    ];
    prop::collection::vec((name, value), 0..24)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn only_keygates_own_identity_headers_leave_it(
        lines in header_lines(),
        configured in 0usize..CONFIGURED.len(),
        authenticated in any::<bool>(),
        trusted in any::<bool>(),
    ) {
        let (identity_name, key_id_name) = CONFIGURED[configured];
        let settings = settings(identity_name, key_id_name);
        let mut headers = HeaderMap::new();
        for (name, value) in &lines {
            if let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value))
            {
                headers.append(name, value);
            }
        }
        let peer = Peer::new(IpAddr::V4(Ipv4Addr::LOCALHOST), trusted, "http");
        let alice = entry("alice");
        let identity = authenticated.then_some(&*alice);
        rewrite_request(&mut headers, &settings, &peer, identity);

        for (wanted, value) in [
            (identity_name, alice.user_header()),
            (key_id_name, &alice.id_header()),
        ] {
            let values: Vec<&HeaderValue> = headers
                .iter()
                .filter(|(n, _)| folded(n.as_str()) == folded(wanted))
                .map(|(_, v)| v)
                .collect();
            if authenticated {
                prop_assert_eq!(&values, &[value], "{} after {:?}", wanted, lines);
            } else {
                prop_assert!(values.is_empty(), "{} {:?} after {:?}", wanted, values, lines);
            }
        }
        // The credentials never leave either.
        prop_assert!(!headers.contains_key("authorization"), "{:?}", headers);
        prop_assert!(!headers.contains_key("x-oneis-key"), "{:?}", headers);
    }
}

/// The target generator is only useful if it lands on both sides of the
/// validator often: check that, so the properties above cannot pass by
/// testing nothing.
#[test]
fn the_target_generator_reaches_both_accepted_and_refused_targets() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = target_text();
    let (mut accepted, mut refused, mut unparsable, mut dotted) = (0, 0, 0, 0);
    for _ in 0..4000 {
        let text = strategy.new_tree(&mut runner).expect("a value").current();
        match validate(&text) {
            Some(Ok(canonical)) => {
                accepted += 1;
                if canonical.contains('.') || canonical.to_ascii_lowercase().contains("%2e") {
                    dotted += 1;
                }
            }
            Some(Err(_)) => refused += 1,
            None => unparsable += 1,
        }
    }
    assert!(
        accepted >= 400 && refused >= 400 && dotted >= 100,
        "accepted {accepted}, refused {refused}, unparsable {unparsable}, with dots {dotted}"
    );
}

/// Found by the `target_scope` fuzz target: a prefix scope is validated by
/// completing it with `0`, which turns an escaped `%` followed by one hex
/// digit (`%251`) into an escape of a control byte (`%2510` decodes to
/// `%10`). These targets are accepted, so a key scoped to exactly them must
/// be creatable.
#[test]
fn every_accepted_target_is_also_an_acceptable_prefix_scope() {
    for target in ["/%251", "/e/%251", "/a/%25a%250", "/api/x%25f"] {
        assert_eq!(validate(target), Some(Ok(target.to_owned())), "{target}");
        let scope = Scope::parse(target);
        assert!(scope.is_ok(), "prefix scope {target:?}: {:?}", scope.err());
    }
}

// ---------------------------------------------------------------------------
// Upstream response framing (issue 13)
// ---------------------------------------------------------------------------

/// A response head built from the lines framing attacks are made of.
fn response_head() -> impl Strategy<Value = (String, bool)> {
    let version = prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]);
    let status = prop::sample::select(vec![200u16, 204, 304, 101, 404, 100]);
    let line = prop_oneof![
        Just("Content-Length: 5".to_owned()),
        Just("Content-Length: 5, 5".to_owned()),
        Just("content-length: 7".to_owned()),
        Just("Content-Length: +5".to_owned()),
        Just("Content-Length: 05".to_owned()),
        Just("Content-Length:".to_owned()),
        Just("Transfer-Encoding: chunked".to_owned()),
        Just("transfer-encoding: CHUNKED".to_owned()),
        Just("Transfer-Encoding: gzip, chunked".to_owned()),
        Just("Transfer-Encoding: chunked, chunked".to_owned()),
        Just("Transfer-Encoding: ,".to_owned()),
        Just("Transfer-Encoding: identity".to_owned()),
        Just("Connection: close".to_owned()),
        Just("Connection: keep-alive".to_owned()),
        Just("Connection: Keep-Alive, Upgrade".to_owned()),
        "X-[a-z]{1,3}: [ -~]{0,6}",
    ];
    (
        version,
        status,
        prop::collection::vec(line, 0..5),
        any::<bool>(),
    )
        .prop_map(|(version, status, lines, head_request)| {
            let mut head = format!("{version} {status} X\r\n");
            for line in lines {
                head.push_str(&line);
                head.push_str("\r\n");
            }
            head.push_str("\r\n");
            (head, head_request)
        })
}

/// The model the `upstream_response` fuzz target checks against, written
/// from `proxy::upstream::response`'s doc rather than its code. One copy
/// serves both checks, so the property test and the fuzzer cannot come to
/// hold the parser to different readings. (Its `len`, `status` and
/// `invalid_field` serve the fuzz target only.)
#[allow(dead_code)]
#[path = "../fuzz/src/framing.rs"]
mod framing;

/// What RFC 9112 6.3, made strict, says of `head`: every framing error that
/// applies, or the framing and whether the connection is reused.
fn framing_model(head: &str, head_request: bool) -> Result<(BodyFraming, bool), Vec<FramingError>> {
    let model =
        framing::model(head.as_bytes(), head_request).expect("the generator makes whole heads");
    if model.errors.is_empty() {
        Ok((model.framing, model.keep_alive))
    } else {
        Err(model.errors)
    }
}

/// A chunked body that is sometimes valid and often not: sizes, extensions,
/// line ends (bare LF, bare CR), data and trailers in any order.
fn chunked_fragments() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        3 => prop::sample::select(vec![
            "0", "1", "5", "a", "F", "10", "0000000000000003", "fffffffffffffffff",
            "\r\n", "\r\n", "\n", "\r", ";x=y", " ;a", "\t", "hello", "abc",
            "0\r\n\r\n", "0\r\nT: v\r\n\r\n", "0\r\nContent-Length: 1\r\n\r\n", "-1", "0x5",
            "Bad Name: v\r\n", ":\r\n",
        ])
        .prop_map(|f| f.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 1..8),
    ];
    prop::collection::vec(fragment, 0..16).prop_map(|f| f.concat())
}

/// Valid chunks: the data of each, the size's spelling (leading zeros,
/// upper case), an optional extension; then trailers and a suffix.
#[allow(clippy::type_complexity)]
fn chunked_parts() -> impl Strategy<
    Value = (
        Vec<(Vec<u8>, usize, bool, Option<&'static str>)>,
        Vec<(&'static str, String)>,
        Vec<u8>,
    ),
> {
    let chunk = (
        prop::collection::vec(any::<u8>(), 1..64),
        0usize..8,
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![
            ";a=b",
            " ; n=\"q;\"",
            "\t;x",
            ";\u{e9}",
        ])),
    );
    let trailer = (
        prop::sample::select(vec![
            "x-sum",
            "Server-Timing",
            "Content-Length",
            "Connection",
            "etag",
        ]),
        "v[a-z0-9 ;=]{0,8}z",
    );
    (
        prop::collection::vec(chunk, 0..6),
        prop::collection::vec(trailer, 0..4),
        prop::collection::vec(any::<u8>(), 0..16),
    )
}

/// Split points for feeding `len` bytes in three reads.
fn splits(len: usize, a: usize, b: usize) -> (usize, usize) {
    let (x, y) = (a % (len + 1), b % (len + 1));
    (x.min(y), x.max(y))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn response_framing_is_refused_exactly_when_rfc_9112_says((head, head_request) in response_head()) {
        let parsed = parse_response_head(head.as_bytes(), head_request);
        match (parsed, framing_model(&head, head_request)) {
            (Ok(Some(parsed)), Ok(want)) => {
                prop_assert_eq!((parsed.framing, parsed.keep_alive), want, "{}", head);
                prop_assert_eq!(parsed.len, head.len());
            }
            (Err(HeadError::Framing(error)), Err(errors)) => {
                prop_assert!(errors.contains(&error), "{:?} not in {:?}: {}", error, errors, head);
            }
            (parsed, want) => prop_assert!(false, "{:?} but the model says {:?}: {}", parsed, want, head),
        }
    }

    #[test]
    fn a_chunked_body_decodes_the_same_whatever_the_reads(
        body in chunked_fragments(),
        a in any::<usize>(),
        b in any::<usize>(),
    ) {
        let (x, y) = splits(body.len(), a, b);
        let whole = decode_body(BodyFraming::Chunked, &[&body]);
        let three = decode_body(BodyFraming::Chunked, &[&body[..x], &body[x..y], &body[y..]]);
        prop_assert_eq!(&three, &whole, "split at {}, {}", x, y);
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        prop_assert_eq!(&decode_body(BodyFraming::Chunked, &bytes), &whole, "byte by byte");
        prop_assert!(whole.data.len() <= body.len());
        prop_assert!(whole.end != BodyEnd::Eof);
        if let BodyEnd::Ended { rest } = &whole.end {
            prop_assert!(whole.data.len() + rest.len() + 5 <= body.len());
            prop_assert!(body.ends_with(rest));
        }
    }

    #[test]
    fn a_content_length_body_is_exactly_that_long(
        body in prop::collection::vec(any::<u8>(), 0..64),
        length in 0u64..80,
        a in any::<usize>(),
        b in any::<usize>(),
    ) {
        let (x, y) = splits(body.len(), a, b);
        let decoded =
            decode_body(BodyFraming::Length(length), &[&body[..x], &body[x..y], &body[y..]]);
        match usize::try_from(length).expect("small") {
            n if n <= body.len() => {
                prop_assert_eq!(&decoded.data[..], &body[..n]);
                prop_assert_eq!(decoded.end, BodyEnd::Ended { rest: body[n..].to_vec() });
            }
            _ => {
                prop_assert_eq!(&decoded.data, &body);
                prop_assert_eq!(decoded.end, BodyEnd::Truncated);
            }
        }
    }

    #[test]
    fn valid_chunked_encodings_round_trip(
        (chunks, trailers, suffix) in chunked_parts(),
        a in any::<usize>(),
        b in any::<usize>(),
    ) {
        let mut wire = Vec::new();
        let mut data = Vec::new();
        let size_line = |wire: &mut Vec<u8>, size: usize, zeros: usize, upper: bool, ext: Option<&str>| {
            let digits = if upper { format!("{size:X}") } else { format!("{size:x}") };
            wire.extend(std::iter::repeat_n(b'0', zeros.min(16 - digits.len())));
            wire.extend_from_slice(digits.as_bytes());
            wire.extend_from_slice(ext.unwrap_or("").as_bytes());
            wire.extend_from_slice(b"\r\n");
        };
        for (piece, zeros, upper, ext) in &chunks {
            size_line(&mut wire, piece.len(), *zeros, *upper, *ext);
            wire.extend_from_slice(piece);
            wire.extend_from_slice(b"\r\n");
            data.extend_from_slice(piece);
        }
        size_line(&mut wire, 0, 2, false, None);
        let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
        for (name, value) in &trailers {
            wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            let lower = name.to_ascii_lowercase();
            if !["content-length", "connection"].contains(&lower.as_str()) {
                kept.push((lower, value.clone().into_bytes()));
            }
        }
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&suffix);

        let (x, y) = splits(wire.len(), a, b);
        let decoded = decode_body(BodyFraming::Chunked, &[&wire[..x], &wire[x..y], &wire[y..]]);
        prop_assert_eq!(&decoded.data, &data);
        prop_assert_eq!(&decoded.end, &BodyEnd::Ended { rest: suffix.clone() });
        // A HeaderMap groups values by name: compare per name, in order.
        let grouped = |fields: &[(String, Vec<u8>)]| {
            let mut map = std::collections::BTreeMap::<String, Vec<Vec<u8>>>::new();
            for (name, value) in fields {
                map.entry(name.clone()).or_default().push(value.clone());
            }
            map
        };
        prop_assert_eq!(grouped(&decoded.trailers), grouped(&kept));
    }
}

/// The chunked-fragment and response-head generators are only useful if
/// they reach every outcome often: bodies that end, fail and run short;
/// heads that are accepted and refused for framing.
#[test]
fn the_framing_generators_reach_every_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut ended, mut failed, mut short) = (0, 0, 0);
    let bodies = chunked_fragments();
    for _ in 0..2000 {
        let body = bodies.new_tree(&mut runner).expect("a value").current();
        match decode_body(BodyFraming::Chunked, &[&body]).end {
            BodyEnd::Ended { .. } => ended += 1,
            BodyEnd::Error(_) => failed += 1,
            BodyEnd::Truncated => short += 1,
            BodyEnd::Eof => unreachable!(),
        }
    }
    assert!(
        ended >= 100 && failed >= 100 && short >= 100,
        "ended {ended}, failed {failed}, short {short}"
    );
    let (mut accepted, mut refused) = (0, 0);
    let heads = response_head();
    for _ in 0..2000 {
        let (head, head_request) = heads.new_tree(&mut runner).expect("a value").current();
        match parse_response_head(head.as_bytes(), head_request) {
            Ok(Some(_)) => accepted += 1,
            Err(HeadError::Framing(_)) => refused += 1,
            other => panic!("{other:?}: {head}"),
        }
    }
    assert!(
        accepted >= 300 && refused >= 300,
        "accepted {accepted}, refused {refused}"
    );
}
