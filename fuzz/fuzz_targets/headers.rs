//! Fuzzes header hygiene (SPEC 6): `rewrite_request` on arbitrary headers.
//!
//! The first byte picks the configured identity / key-id header names and
//! whether the request is authenticated and from a trusted proxy; the rest
//! is header lines (`name: value`, one per `\n`). After the rewrite:
//!
//! - every header whose name, lower-cased with `_` read as `-`, equals the
//!   identity or key-id header is the one keygate set (exactly one each,
//!   with the key's values) for an authenticated request, and there is
//!   none for an anonymous one;
//! - `Authorization` and `X-ONEIS-Key` are gone;
//! - no hop-by-hop header is left, and no `_` spelling of one or of
//!   `Content-Length`.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, LazyLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keygate::config::{Config, ProxySettings};
use keygate::keys::{ApiKey, Entry, KeyRecord, UserId};
use keygate::proxy::headers::{rewrite_request, Peer};
use keygate::scope::Scope;
use keygate::timestamp::Timestamp;
use libfuzzer_sys::fuzz_target;

const CONFIGURED: [(&str, &str); 4] = [
    ("X-Haplo-User", "X-Haplo-Api-Key-Id"),
    ("X-Remote-User", "X-Remote-Key"),
    ("X_Remote_User", "x_remote_key_id"),
    ("user", "key"),
];

static SETTINGS: LazyLock<Vec<ProxySettings>> = LazyLock::new(|| {
    CONFIGURED
        .iter()
        .map(|(identity, key_id)| {
            let text = format!(
                "[proxy]\nidentity_header = \"{identity}\"\nkey_id_header = \"{key_id}\"\n"
            );
            Config::parse(&text, None).expect("valid config").proxy
        })
        .collect()
});

static ALICE: LazyLock<Arc<Entry>> = LazyLock::new(|| {
    let key = ApiKey::generate().expect("OS randomness");
    let record = KeyRecord {
        id: key.id(),
        hash: keygate::keys::KeyHash::Blake3(key.secret_hash()),
        user: UserId::parse("alice").expect("valid user"),
        name: "fuzz".to_owned(),
        scope: Scope::parse("/").expect("valid scope"),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
        origin: keygate::keys::Origin::Keygate,
        policy: Default::default(),
    };
    Entry::new(record)
});

const HOP_BY_HOP: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "proxy-authorization",
    "proxy-authenticate",
];

fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, lines)) = data.split_first() else {
        return;
    };
    let configured = usize::from(selector) % CONFIGURED.len();
    let authenticated = selector & 0x10 != 0;
    let trusted = selector & 0x20 != 0;
    let settings = &SETTINGS[configured];

    let mut headers = HeaderMap::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    let peer = Peer::new(IpAddr::V4(Ipv4Addr::LOCALHOST), trusted, "http");
    let identity = authenticated.then_some(&**ALICE);
    rewrite_request(&mut headers, settings, &peer, identity);

    let (identity_name, key_id_name) = CONFIGURED[configured];
    for (wanted, value) in [
        (identity_name, ALICE.user_header()),
        (key_id_name, &ALICE.id_header()),
    ] {
        let values: Vec<&HeaderValue> = headers
            .iter()
            .filter(|(n, _)| folded(n.as_str()) == folded(wanted))
            .map(|(_, v)| v)
            .collect();
        if authenticated {
            assert_eq!(values, [value], "{wanted}: {headers:?}");
        } else {
            assert!(values.is_empty(), "{wanted}: {headers:?}");
        }
    }
    assert!(!headers.contains_key("authorization"), "{headers:?}");
    assert!(!headers.contains_key("x-oneis-key"), "{headers:?}");
    for name in HOP_BY_HOP {
        assert!(!headers.contains_key(name), "{name}: {headers:?}");
    }
    // Nor any `_` spelling of them or of `Content-Length`: an application
    // that reads `_` as `-` would frame the body by it.
    for name in headers.keys().map(|name| name.as_str()) {
        let folded = folded(name);
        assert!(
            !name.contains('_')
                || !(folded == "content-length" || HOP_BY_HOP.contains(&folded.as_str())),
            "{name}: {headers:?}"
        );
    }
});
