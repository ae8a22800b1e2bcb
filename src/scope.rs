//! A key's path scope, with Haplo's semantics (`app/models/api_key.rb`).
//!
//! - `/api/` is a plain string prefix of the canonical request-target (path
//!   plus `?query`). There is no segment boundary: `/api/test` admits
//!   `/api/testing`, which is why the admin API warns about a prefix that
//!   does not end in `/`.
//! - `=/exact/path` admits only that exact target: not `/exact/path/`, not
//!   `/exact/path?x=1`.
//!
//! Scopes are validated when a key is created: one that no accepted
//! request-target could ever match is refused there, rather than stored as a
//! key that silently admits nothing.
//!
//! Stored scopes are read back with [`Scope::parse`]; a rule added later
//! goes in [`Scope::parse_new`] instead, which only new keys pass through,
//! so that a store written before the rule still opens. Such a key admits
//! nothing, as it always did; refusing to start over it would be worse.

use std::fmt;

use crate::target::{check_path, TargetError};

/// Longest accepted scope, in bytes.
const MAX_SCOPE_LEN: usize = 1024;

/// A validated path scope.
#[derive(Clone, PartialEq, Eq)]
pub struct Scope {
    /// The scope as written, including a leading `=` for exact scopes.
    text: Box<str>,
    exact: bool,
}

/// Why a scope was refused at key creation.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    /// Does not start with `/` or `=/`.
    #[error("path must start with '/' (a prefix) or '=/' (an exact path)")]
    NoLeadingSlash,
    /// `=/` alone: Haplo's rule makes it admit nothing.
    #[error("path '=/' admits no request; use '/' to admit everything")]
    AdmitsNothing,
    /// Longer than 1024 bytes.
    #[error("path is longer than 1024 bytes")]
    TooLong,
    /// Would never match a request-target keygate accepts.
    #[error("path can never match an accepted request: {0}")]
    Unmatchable(TargetError),
    /// Contains `#`, which starts a URL fragment: clients never send one,
    /// and the URI parser cuts it off if they do, so no request-target has
    /// a `#` to match.
    #[error("path can never match an accepted request: '#' starts a URL fragment, which is never part of a request-target")]
    Fragment,
}

impl Scope {
    /// Parses and validates a scope.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        if text.len() > MAX_SCOPE_LEN {
            return Err(ScopeError::TooLong);
        }
        let (exact, path) = match text.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if !path.starts_with('/') {
            return Err(ScopeError::NoLeadingSlash);
        }
        if exact && path == "/" {
            return Err(ScopeError::AdmitsNothing);
        }
        let (path_part, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        if let Some(query) = query {
            if !query.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return Err(ScopeError::Unmatchable(TargetError::BadByte));
            }
        }
        if exact || query.is_some() {
            check_path(path_part.as_bytes()).map_err(ScopeError::Unmatchable)?;
            if exact && query == Some("") {
                // Targets never end in a bare `?` once canonical.
                return Err(ScopeError::Unmatchable(TargetError::BadByte));
            }
        } else {
            // A prefix may end part-way through a segment (`/api/.well`)
            // or even an escape (`/api/%4`), so it is valid when some valid
            // target starts with it: try completing it with a few endings
            // that finish any partial segment or escape.
            let mut last = None;
            let fits = ["0", "x", "1x", "41x"].iter().any(|ending| {
                let mut completed = String::with_capacity(path_part.len() + ending.len());
                completed.push_str(path_part);
                completed.push_str(ending);
                match check_path(completed.as_bytes()) {
                    Ok(()) => true,
                    Err(error) => {
                        last.get_or_insert(error);
                        false
                    }
                }
            });
            if !fits {
                return Err(ScopeError::Unmatchable(
                    last.unwrap_or(TargetError::BadByte),
                ));
            }
        }
        Ok(Scope {
            text: text.into(),
            exact,
        })
    }

    /// Parses and validates the scope of a new key: [`Scope::parse`], and
    /// the rules added since keys were first stored (the module doc says
    /// why they are not in `parse`).
    pub fn parse_new(text: &str) -> Result<Self, ScopeError> {
        if text.contains('#') {
            return Err(ScopeError::Fragment);
        }
        Self::parse(text)
    }

    /// Whether the canonical request-target is inside this scope.
    #[inline]
    pub fn admits(&self, target: &str) -> bool {
        if self.exact {
            &self.text[1..] == target
        } else {
            target.starts_with(&*self.text)
        }
    }

    /// A prefix scope that does not end in `/` also admits siblings
    /// (`/api/test` admits `/api/testing`); the admin API says so.
    pub fn warning(&self) -> Option<&'static str> {
        if !self.exact && !self.text.ends_with('/') && !self.text.contains('?') {
            Some("path is a plain prefix: without a trailing '/' it also admits longer names (\"/api/test\" admits \"/api/testing\")")
        } else {
            None
        }
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        Scope::parse(s).unwrap()
    }

    #[test]
    fn prefix_is_a_plain_string_prefix() {
        let s = scope("/api/test");
        assert!(s.admits("/api/test"));
        assert!(s.admits("/api/testing"));
        assert!(s.admits("/api/test/x?y=1"));
        assert!(!s.admits("/api/tes"));
        assert!(!s.admits("/API/test"));
        assert!(s.warning().is_some());
        assert!(scope("/api/").warning().is_none());
    }

    #[test]
    fn prefix_covers_the_query_too() {
        let s = scope("/api/x?mode=read");
        assert!(s.admits("/api/x?mode=read&y=1"));
        assert!(!s.admits("/api/x?mode=write"));
    }

    #[test]
    fn exact_scope_admits_only_its_target() {
        let s = scope("=/api/test2");
        assert!(s.admits("/api/test2"));
        assert!(!s.admits("/api/test2/"));
        assert!(!s.admits("/api/test2/something"));
        assert!(!s.admits("/api/test2?x=1"));
    }

    #[test]
    fn refuses_scopes_that_never_match() {
        assert!(matches!(Scope::parse("=/"), Err(ScopeError::AdmitsNothing)));
        assert!(matches!(
            Scope::parse("api/"),
            Err(ScopeError::NoLeadingSlash)
        ));
        assert!(matches!(Scope::parse(""), Err(ScopeError::NoLeadingSlash)));
        for bad in [
            "//api/",
            "/api/../x",
            "/api/%2f",
            "/a b/",
            "/api;x/",
            "=/api/./x",
        ] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        for fragment in ["/#", "/api/#", "/api/x#y", "=/api/x#y", "/api/x?a=#b"] {
            assert!(
                matches!(Scope::parse_new(fragment), Err(ScopeError::Fragment)),
                "{fragment}"
            );
            // Still readable from a store written before the rule.
            assert!(Scope::parse(fragment).is_ok(), "{fragment}");
        }
        for ok in [
            "/",
            "/api/.well",
            "/api/..x",
            "=/api/x?y=1",
            "/%251",
            "/api/%4",
            "/api/%",
        ] {
            assert!(Scope::parse_new(ok).is_ok(), "{ok}");
        }
    }
}
