//! The immutable view of all keys and blocked users that requests read.
//!
//! Both maps are persistent HAMTs (`imbl`): cloning a snapshot is O(1) and
//! inserting or removing one key is O(log n) with structural sharing, so the
//! keyring can build the next snapshot beside the current one without
//! copying a million entries per admin write. Each entry also carries the
//! header values the proxy injects, built once here rather than per request.
//!
//! Each entry also holds the key's last-use time as an atomic: the request
//! path records a use with one relaxed load (and a store at most once a
//! second per key), no lock and no I/O. Entries are shared between
//! snapshots (`Arc`), so the time survives every swap; the keyring writes
//! the times to the store in batches.

use std::sync::atomic::{AtomicI64, Ordering};
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
    /// Latest use, Unix seconds (0: never).
    last_used: AtomicI64,
    /// The latest use already written to the store.
    persisted: AtomicI64,
}

impl Entry {
    /// Records a use at `now`. Lock-free; stores only when the second
    /// changed, so a busy key does not bounce its cache line on every
    /// request.
    #[inline]
    pub fn touch(&self, now: Timestamp) {
        let now = now.unix();
        if self.last_used.load(Ordering::Relaxed) < now {
            self.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// The latest use, live (including uses not yet written to the store).
    pub fn last_used(&self) -> Option<Timestamp> {
        match self.last_used.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Timestamp::from_unix(at)),
        }
    }

    /// The latest use if it has not been written to the store yet.
    pub(crate) fn unpersisted_use(&self) -> Option<Timestamp> {
        let used = self.last_used.load(Ordering::Relaxed);
        (used > self.persisted.load(Ordering::Relaxed)).then(|| Timestamp::from_unix(used))
    }

    /// Marks a use as written to the store.
    pub(crate) fn mark_persisted(&self, at: Timestamp) {
        self.persisted.fetch_max(at.unix(), Ordering::Relaxed);
    }

    /// An entry for a record, with header values built once.
    pub fn new(record: KeyRecord) -> Arc<Self> {
        let used = record.last_used_at.map_or(0, Timestamp::unix);
        // Both strings were validated to a header-safe alphabet.
        let user_header = HeaderValue::from_str(record.user.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let id_header = HeaderValue::from_str(record.id.as_str())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        Arc::new(Entry {
            record,
            user_header,
            id_header,
            last_used: AtomicI64::new(used),
            persisted: AtomicI64::new(used),
        })
    }

    /// A new entry for an updated record of the same key, keeping the
    /// last-use times recorded on this one.
    fn updated(&self, record: KeyRecord) -> Arc<Self> {
        let entry = Entry::new(record);
        entry
            .last_used
            .fetch_max(self.last_used.load(Ordering::Relaxed), Ordering::Relaxed);
        entry
            .persisted
            .fetch_max(self.persisted.load(Ordering::Relaxed), Ordering::Relaxed);
        entry
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

    /// One key's entry (record plus live last-use time) by id.
    pub fn entry(&self, id: &KeyId) -> Option<&Entry> {
        self.keys.get(id).map(|e| &**e)
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRecord> {
        self.keys.values().map(|e| &e.record)
    }

    /// Every key's entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.keys.values().map(|e| &**e)
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
        let entry = match self.keys.get(&record.id) {
            Some(old) => old.updated(record),
            None => Entry::new(record),
        };
        next.keys.insert(entry.record.id, entry);
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
