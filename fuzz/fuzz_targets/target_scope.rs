//! Fuzzes request-target validation and the scope rule (SPEC 4).
//!
//! The input is split at its first `\n`: before it a scope, after it a
//! request-target. For every target hyper could hand to keygate (one that
//! parses as a `Uri`) that `Target::from_uri` accepts:
//!
//! - validating its canonical form again yields the same string;
//! - the canonical path holds nothing that could be read two ways: no
//!   dot-segment (decoded once or twice), no `//`, no `%2f` `%5c` `%3b`
//!   `%00` in any case (as sent or after one decoding), no raw `;` or `\`,
//!   no byte outside printable ASCII, no fragment;
//! - an origin-form target with no fragment and no empty query is
//!   forwarded exactly as received;
//! - for every scope `Scope::parse` accepts, `admits` is Haplo's rule on
//!   the canonical string: `starts_with` for a prefix, equality for `=`.
//!
//! `Scope::parse` and `Target::from_uri` must never panic on any input.

#![no_main]

use http::Uri;
use keygate::scope::Scope;
use keygate::target::Target;
use libfuzzer_sys::fuzz_target;

fn decode_once(text: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' && i + 2 < text.len() {
            if let (Some(h), Some(l)) = (hex(text[i + 1]), hex(text[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(text[i]);
        i += 1;
    }
    out
}

fn assert_unambiguous(canonical: &str) {
    let path = canonical.split_once('?').map_or(canonical, |(p, _)| p);
    assert!(path.starts_with('/'), "{canonical:?}");
    assert!(!path.contains("//"), "{canonical:?}");
    assert!(!path.contains(';') && !path.contains('\\'), "{canonical:?}");
    assert!(!canonical.contains('#'), "{canonical:?}");
    assert!(
        canonical.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "{canonical:?}"
    );
    let lower = path.to_ascii_lowercase();
    let decoded = String::from_utf8_lossy(&decode_once(path.as_bytes())).to_ascii_lowercase();
    for escape in ["%2f", "%5c", "%3b", "%00"] {
        assert!(!lower.contains(escape), "{escape} in {canonical:?}");
        assert!(
            !decoded.contains(escape),
            "double-encoded {escape} in {canonical:?}"
        );
    }
    for segment in path.split('/') {
        let once = decode_once(segment.as_bytes());
        let twice = decode_once(&once);
        for d in [once, twice] {
            assert!(
                d != b"." && d != b"..",
                "dot-segment {segment:?} in {canonical:?}"
            );
        }
    }
    if let Some((_, query)) = canonical.split_once('?') {
        assert!(!query.is_empty(), "empty query kept in {canonical:?}");
    }
}

fn haplo_admits(scope: &str, target: &str) -> bool {
    match scope.strip_prefix('=') {
        Some(exact) => target == exact,
        None => target.starts_with(scope),
    }
}

fuzz_target!(|data: &[u8]| {
    let (scope_bytes, target_bytes) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let scope_text = std::str::from_utf8(scope_bytes).ok();
    let scope = scope_text.and_then(|s| Scope::parse(s).ok());

    let Ok(uri) = Uri::try_from(target_bytes) else {
        return;
    };
    let Ok(target) = Target::from_uri(&uri) else {
        return;
    };
    let canonical = target.as_str();
    let again = Target::from_uri(&canonical.parse::<Uri>().expect("canonical target parses"))
        .expect("canonical target validates");
    assert_eq!(again.as_str(), canonical);
    assert_unambiguous(canonical);

    // (Bytes after a `#` are dropped by `Uri` unread, so only a target
    // without a fragment is all ASCII.)
    let plain = target_bytes.starts_with(b"/")
        && !target_bytes.contains(&b'#')
        && !target_bytes.ends_with(b"?");
    if plain {
        assert_eq!(
            canonical.as_bytes(),
            target_bytes,
            "an origin-form target was changed"
        );
    }

    if let (Some(scope), Some(scope_text)) = (scope, scope_text) {
        assert_eq!(
            scope.admits(canonical),
            haplo_admits(scope_text, canonical),
            "scope {scope_text:?} on {canonical:?}"
        );
    }
    // A scope equal to the target always admits it (except `=/`, which by
    // design admits nothing).
    if canonical != "/" {
        let exact = Scope::parse(&format!("={canonical}")).expect("an exact scope of a target");
        assert!(exact.admits(canonical), "={canonical}");
    }
    let prefix = Scope::parse(canonical).expect("a prefix scope of a target");
    assert!(prefix.admits(canonical), "{canonical}");
});
