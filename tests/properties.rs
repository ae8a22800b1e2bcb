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
