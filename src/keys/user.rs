//! The owner of a key: a Haplo uid, an email or a service-user name.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Longest accepted user id, in characters.
const MAX_USER_LEN: usize = 128;

/// A validated user id: 1 to 128 characters from `[A-Za-z0-9._@+-]`.
///
/// The alphabet is narrow on purpose: the id is copied into an upstream
/// header and an access-log line, so it must never need escaping there.
/// `Arc<str>` because the same id is shared by the record, the snapshot's
/// blocked set and every response header built from it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

/// Why a user id was refused.
#[derive(Debug, thiserror::Error)]
#[error("user must be 1 to 128 characters from A-Z a-z 0-9 . _ @ + -")]
pub struct UserIdError(());

impl UserId {
    /// Validates a user id.
    pub fn parse(text: &str) -> Result<Self, UserIdError> {
        let ok = !text.is_empty()
            && text.len() <= MAX_USER_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b));
        if ok {
            Ok(UserId(Arc::from(text)))
        } else {
            Err(UserIdError(()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for UserId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", &self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_haplo_shaped_ids() {
        for ok in [
            "42",
            "alice@example.com",
            "svc.sync-user+1",
            &"a".repeat(128),
        ] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_anything_that_would_need_escaping() {
        for bad in [
            "",
            "a b",
            "a\r\nX-Evil: 1",
            "ü",
            "a/b",
            "a:b",
            &"a".repeat(129),
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
