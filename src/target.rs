//! Request-target validation: refuse anything that could be read two ways.
//!
//! Haplo checks a key's scope against the raw request-target (Jetty's
//! `getRequestURI()` plus `?query`), with no normalisation. That is only
//! safe if the application reads the path the same way the scope check did.
//! Path-scope bypasses in other proxies (Envoy CVE-2019-9901, Traefik
//! CVE-2025-32431, Caddy GHSA-gx7w-56w6-g48x) all came from a checker and a
//! backend disagreeing about dot-segments, encoded slashes or matrix
//! parameters. keygate does not normalise either: it refuses every target
//! where such a disagreement is possible, and forwards the very bytes it
//! checked.
//!
//! The canonical target is the path, plus `?` and the query when the query
//! is not empty (Haplo's `request_uri`). A trailing `?` with an empty query
//! is dropped, so the string checked and the string forwarded are one.

use http::uri::{PathAndQuery, Uri};

/// Why a request-target was refused. Shown to the client in the 400 body,
/// so the messages describe the rule, never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `*` (OPTIONS) or authority-form (CONNECT).
    #[error("only origin-form and absolute-form request-targets are accepted")]
    UnsupportedForm,
    /// Absolute-form with a scheme other than http or https.
    #[error("absolute-form request-target must use http or https")]
    UnsupportedScheme,
    /// `.` or `..` as a path segment, literally or percent-encoded.
    #[error("dot-segment in path")]
    DotSegment,
    /// `//` somewhere in the path.
    #[error("empty path segment")]
    EmptySegment,
    /// `%2f`, `%5c`, `%3b`, `%00` or another encoded control byte, or a
    /// double-encoded form of one of them or of `.`.
    #[error("encoded '/', '\\', ';' or control byte in path")]
    EncodedSeparator,
    /// A raw `\` or `;` in the path.
    #[error("'\\' or ';' in path")]
    Separator,
    /// A `%` not followed by two hex digits.
    #[error("malformed percent-encoding in path")]
    BadPercent,
    /// Space, control or non-ASCII byte anywhere in the target.
    #[error("control, space or non-ASCII byte in request-target")]
    BadByte,
}

/// A validated request-target in canonical form.
///
/// Holds the `PathAndQuery` from the request itself (a cheap, refcounted
/// clone), or a trimmed copy when an empty query had to be dropped.
#[derive(Debug, Clone)]
pub struct Target {
    path_and_query: PathAndQuery,
}

impl Target {
    /// Validates the target of a request as hyper parsed it.
    ///
    /// hyper has already refused what is not a URI at all; this refuses the
    /// forms and byte sequences that are valid URIs but ambiguous.
    pub fn from_uri(uri: &Uri) -> Result<Self, TargetError> {
        match (uri.scheme_str(), uri.authority()) {
            (None, None) => {}
            (Some("http" | "https"), Some(_)) => {}
            (Some(_), Some(_)) => return Err(TargetError::UnsupportedScheme),
            _ => return Err(TargetError::UnsupportedForm),
        }
        let pq = match uri.path_and_query() {
            Some(pq) => pq,
            // Absolute-form with no path at all (`http://host`) means `/`.
            None if uri.authority().is_some() => return Ok(Target::root()),
            None => return Err(TargetError::UnsupportedForm),
        };
        let path = pq.path();
        if !path.starts_with('/') {
            return Err(TargetError::UnsupportedForm);
        }
        check_path(path.as_bytes())?;
        let query = pq.query();
        if let Some(query) = query {
            check_query(query.as_bytes())?;
        }
        // Rebuild only when the canonical form differs from what arrived:
        // an empty query is dropped (`/p?` is `/p`), and an absolute-form
        // target with no path (`http://h?q`) has the path `/` spelled out,
        // so that the string checked is the string forwarded.
        let spelled_path = pq.as_str().starts_with('/');
        let empty_query = query == Some("");
        if !spelled_path || empty_query {
            let mut canonical = String::with_capacity(pq.as_str().len() + 1);
            canonical.push_str(path);
            if let Some(query) = query.filter(|q| !q.is_empty()) {
                canonical.push('?');
                canonical.push_str(query);
            }
            let rebuilt = PathAndQuery::from_maybe_shared(bytes::Bytes::from(canonical))
                .map_err(|_| TargetError::BadByte)?;
            return Ok(Target {
                path_and_query: rebuilt,
            });
        }
        Ok(Target {
            path_and_query: pq.clone(),
        })
    }

    fn root() -> Self {
        Target {
            path_and_query: PathAndQuery::from_static("/"),
        }
    }

    /// The canonical target: what the scope is checked against and what is
    /// forwarded.
    pub fn as_str(&self) -> &str {
        self.path_and_query.as_str()
    }

    /// The path alone, for logs (which never carry a query).
    pub fn path(&self) -> &str {
        self.path_and_query.path()
    }

    /// The target as a URI component for the upstream request.
    pub fn path_and_query(&self) -> &PathAndQuery {
        &self.path_and_query
    }
}

/// Checks a path (starting with `/`) against every ambiguity rule.
///
/// Public within the crate so that scopes are held to the same rules.
pub(crate) fn check_path(path: &[u8]) -> Result<(), TargetError> {
    // Segments between slashes; the first is the empty string before the
    // leading `/`. An empty segment is allowed only as the last one
    // (`/api/`), since a trailing slash is not ambiguous.
    let mut segments = path.split(|&b| b == b'/').skip(1).peekable();
    while let Some(segment) = segments.next() {
        let is_last = segments.peek().is_none();
        if segment.is_empty() && !is_last {
            return Err(TargetError::EmptySegment);
        }
        check_segment(segment)?;
    }
    Ok(())
}

/// One path segment: bytes, percent-encoding, and dot-segment detection.
fn check_segment(segment: &[u8]) -> Result<(), TargetError> {
    // Dots counted whether literal (`.`), encoded (`%2e`) or double-encoded
    // (`%252e`); `other` says whether anything else is in the segment.
    let mut dots = 0usize;
    let mut other = false;
    let mut double_encoded = false;
    let mut i = 0;
    while i < segment.len() {
        let b = segment[i];
        match b {
            b'.' => {
                dots += 1;
                i += 1;
            }
            b'%' => {
                let value = percent_byte(segment, i)?;
                i += 3;
                match value {
                    b'.' => dots += 1,
                    b'/' | b'\\' | b';' => return Err(TargetError::EncodedSeparator),
                    v if v < 0x20 || v == 0x7f => return Err(TargetError::EncodedSeparator),
                    b'%' => {
                        double_encoded = true;
                        other = true;
                    }
                    _ => other = true,
                }
            }
            b'\\' | b';' => return Err(TargetError::Separator),
            0x21..=0x7e => {
                other = true;
                i += 1;
            }
            _ => return Err(TargetError::BadByte),
        }
    }
    if !other && (dots == 1 || dots == 2) {
        return Err(TargetError::DotSegment);
    }
    if double_encoded {
        check_decoded_once(segment)?;
    }
    Ok(())
}

/// A segment with an escaped `%` (`%25`) decodes to another escape. An
/// application that decodes twice would see what that escape hides, so the
/// segment is refused when one decoding leaves an escape of `.`, `/`, `\`,
/// `;`, `%` or a control byte, however the first layer was spelled
/// (`%252e`, `%25%32%65`, `%252%65` are all `%2e` after one decoding).
fn check_decoded_once(segment: &[u8]) -> Result<(), TargetError> {
    let decoded: Vec<u8> = percent_encoding::percent_decode(segment).collect();
    for (i, &b) in decoded.iter().enumerate() {
        if b != b'%' {
            continue;
        }
        if let Some(value) = hex_pair(decoded.get(i + 1..i + 3)) {
            if matches!(
                value,
                b'.' | b'/' | b'\\' | b';' | b'%' | 0x00..=0x1f | 0x7f
            ) {
                return Err(TargetError::EncodedSeparator);
            }
        }
    }
    Ok(())
}

/// The byte encoded by the `%XX` at `at`, or `BadPercent`.
fn percent_byte(bytes: &[u8], at: usize) -> Result<u8, TargetError> {
    hex_pair(bytes.get(at + 1..at + 3)).ok_or(TargetError::BadPercent)
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let pair = pair?;
    let hi = (pair[0] as char).to_digit(16)?;
    let lo = (pair[1] as char).to_digit(16)?;
    u8::try_from(hi * 16 + lo).ok()
}

/// The query is opaque to keygate but must still be plain printable ASCII.
fn check_query(query: &[u8]) -> Result<(), TargetError> {
    if query.iter().all(|b| (0x21..=0x7e).contains(b)) {
        Ok(())
    } else {
        Err(TargetError::BadByte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(target: &str) -> Result<String, TargetError> {
        let uri: Uri = target.parse().expect("test targets are URIs");
        Target::from_uri(&uri).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn accepts_ordinary_targets_unchanged() {
        for t in [
            "/",
            "/api/",
            "/api/x?a=1&b=%2F",
            "/api/%20x",
            "/a/.well-known/x",
            "/a/...",
            "/a/.x",
            "/a/..x",
        ] {
            assert_eq!(check(t).as_deref(), Ok(t), "{t}");
        }
    }

    #[test]
    fn drops_an_empty_query() {
        assert_eq!(check("/api/x?").as_deref(), Ok("/api/x"));
    }

    #[test]
    fn absolute_form_yields_its_path() {
        assert_eq!(
            check("http://h.example/api/x?q=1").as_deref(),
            Ok("/api/x?q=1")
        );
        assert_eq!(check("http://h.example").as_deref(), Ok("/"));
        assert_eq!(
            check("ftp://h.example/x"),
            Err(TargetError::UnsupportedScheme)
        );
    }

    #[test]
    fn refuses_dot_segments_in_every_spelling() {
        for t in [
            "/api/../x",
            "/api/./x",
            "/api/..",
            "/api/.",
            "/api/%2e%2e/x",
            "/api/%2E./x",
            "/api/.%2E/x",
            "/api/%2e/x",
        ] {
            assert_eq!(check(t), Err(TargetError::DotSegment), "{t}");
        }
        // Double-encoded dots are refused before a second decoding could
        // turn them into dot-segments.
        assert_eq!(
            check("/api/%252e%252e/x"),
            Err(TargetError::EncodedSeparator)
        );
    }

    #[test]
    fn refuses_empty_segments_and_separators() {
        assert_eq!(check("//api/x"), Err(TargetError::EmptySegment));
        assert_eq!(check("/api//x"), Err(TargetError::EmptySegment));
        for t in [
            "/api/%2fx",
            "/api/%2Fx",
            "/api/%5cx",
            "/api/%3bx",
            "/api/%00x",
            "/api/%0ax",
            "/api/%252fx",
        ] {
            assert_eq!(check(t), Err(TargetError::EncodedSeparator), "{t}");
        }
        assert_eq!(check("/api/x;a=b"), Err(TargetError::Separator));
        assert_eq!(check("/api/%zz"), Err(TargetError::BadPercent));
        assert_eq!(check("/api/%4"), Err(TargetError::BadPercent));
    }

    #[test]
    fn refuses_other_forms() {
        assert_eq!(check("*"), Err(TargetError::UnsupportedForm));
        assert_eq!(check("example.com:443"), Err(TargetError::UnsupportedForm));
    }
}
