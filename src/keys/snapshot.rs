//! The immutable view of all keys and blocked users that requests read.
//!
//! Both maps are persistent HAMTs (`imbl`): cloning a snapshot is O(1) and
//! inserting or removing one key is O(log n) with structural sharing, so the
//! keyring can build the next snapshot beside the current one without
//! copying a million entries per admin write. Each entry also carries the
//! header values the proxy injects, built once here rather than per request.

use std::sync::Arc;

use http::HeaderValue;

use super::{KeyId, KeyRecord, PresentedKey, SecretHash, UserId};
use crate::timestamp::Timestamp;

/// One key as the request path sees it.
#[derive(Debug)]
pub struct Entry {
    /// The stored record.
    pub record: KeyRecord,
    /// The user id, ready to be the identity header's value.
    pub user_header: HeaderValue,
    /// The key id, ready to be the key-id header's value.
    pub id_header: HeaderValue,
}

impl Entry {
    fn new(record: KeyRecord) -> Arc<Self> {
        // Both strings were validated to a header-safe alphabet.
        let user_header = HeaderValue::from_str(record.user.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let id_header = HeaderValue::from_str(record.id.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Arc::new(Entry {
            record,
            user_header,
            id_header,
        })
    }
}

/// The result of checking a presented key against a snapshot.
#[derive(Debug)]
pub enum Verified<'a> {
    /// The key exists, its secret matches, and it has not expired.
    Valid(&'a Entry),
    /// Unknown id, wrong secret, malformed or expired: all one answer.
    Invalid,
}

/// All keys and blocked users at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    keys: imbl::HashMap<KeyId, Arc<Entry>>,
    blocked: imbl::HashSet<UserId>,
}

impl Snapshot {
    /// Builds the first snapshot from the store's contents.
    pub fn from_records(
        keys: impl IntoIterator<Item = KeyRecord>,
        blocked: impl IntoIterator<Item = UserId>,
    ) -> Self {
        Snapshot {
            keys: keys.into_iter().map(|r| (r.id, Entry::new(r))).collect(),
            blocked: blocked.into_iter().collect(),
        }
    }

    /// Verifies a presented key.
    ///
    /// Every path hashes the presented secret and compares it in constant
    /// time, against the stored hash or a decoy, so an unknown id costs the
    /// same work as a wrong secret and timing does not reveal which ids
    /// exist.
    pub fn verify(&self, presented: &[u8], now: Timestamp) -> Verified<'_> {
        let Some(key) = PresentedKey::parse(presented) else {
            let _ = SecretHash::decoy().matches(&SecretHash::of(presented));
            return Verified::Invalid;
        };
        let hash = key.secret_hash();
        match self.keys.get(&key.id()) {
            Some(entry) if entry.record.hash.matches(&hash) && !entry.record.is_expired(now) => {
                Verified::Valid(entry)
            }
            Some(_) => Verified::Invalid,
            None => {
                let _ = SecretHash::decoy().matches(&hash);
                Verified::Invalid
            }
        }
    }

    /// Whether a user is blocked. Free when nobody is.
    #[inline]
    pub fn is_blocked(&self, user: &UserId) -> bool {
        !self.blocked.is_empty() && self.blocked.contains(user)
    }

    /// One key by id.
    pub fn get(&self, id: &KeyId) -> Option<&KeyRecord> {
        self.keys.get(id).map(|e| &e.record)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values().map(|e| &e.record)
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Number of blocked users.
    pub fn blocked_count(&self) -> usize {
        self.blocked.len()
    }

    /// This snapshot with one key added or replaced.
    pub(crate) fn with_key(&self, record: KeyRecord) -> Self {
        let mut next = self.clone();
        next.keys.insert(record.id, Entry::new(record));
        next
    }

    /// This snapshot with one key removed.
    pub(crate) fn without_key(&self, id: &KeyId) -> Self {
        let mut next = self.clone();
        next.keys.remove(id);
        next
    }

    /// This snapshot with a user's blocked flag set.
    pub(crate) fn with_blocked(&self, user: &UserId, blocked: bool) -> Self {
        let mut next = self.clone();
        if blocked {
            next.blocked.insert(user.clone());
        } else {
            next.blocked.remove(user);
        }
        next
    }
}
