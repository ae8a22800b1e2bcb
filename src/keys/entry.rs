//! One key as the request path sees it.
//!
//! A snapshot holds a million keys, so an [`Entry`] holds only what the
//! request path reads: the id, the secret hash, the expiry, the last-use
//! times, and pointers to the key's user and its [`Access`] (scope and
//! policies), which are shared by every key that has them (see `intern.rs`
//! and `access.rs`). The key's name and creation
//! time stay in the store, where the admin API reads them. The key-id
//! header value is built per request from the inline id (one 16-byte
//! allocation) rather than kept per key (about 100 bytes each). The user-id
//! header value is kept, once per user, and cloned by reference count.
//!
//! # Last use
//!
//! Each entry holds the key's last-use time as an atomic: the request path
//! records a use with one relaxed load (and a store at most once a second
//! per key), no lock and no I/O. Entries are shared between snapshots
//! (`Arc`), so the time survives every swap; the keyring writes the times
//! to the store in batches.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use http::HeaderValue;

use super::access::{Access, Limits};
use super::intern::{Interner, User};
use super::record::{DecodeError, KeyRow, RowHash};
use super::{KeyHash, KeyId, KeyRecord, SecretHash};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// `expires_at` of a key that never expires.
const NEVER: i64 = i64::MAX;

/// One key as the request path sees it.
pub struct Entry {
    pub(super) id: KeyId,
    /// BLAKE3 of the secret; for a key imported from Haplo and not yet
    /// proven, the decoy hash that no secret produces (its bcrypt hash is
    /// in the snapshot's `pending` table, not here: every key would pay
    /// for the room, and an entry is 88 bytes).
    hash: SecretHash,
    user: Arc<User>,
    access: Arc<Access>,
    /// Unix seconds from which the key is refused ([`NEVER`]: no expiry).
    expires_at: i64,
    /// Latest use, Unix seconds (0: never).
    last_used: AtomicI64,
    /// The latest use already written to the store.
    persisted: AtomicI64,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("id", &self.id)
            .field("user", &self.user.id())
            .field("scope", &self.scope().as_str())
            .field("limits", &self.access.limits().is_some())
            .field("expires_at", &self.expires_at())
            .field("last_used", &self.last_used())
            .finish_non_exhaustive()
    }
}

impl Entry {
    fn build(
        id: KeyId,
        hash: SecretHash,
        user: Arc<User>,
        access: Arc<Access>,
        expires_at: Option<Timestamp>,
        last_used: Option<Timestamp>,
    ) -> Arc<Self> {
        let used = last_used.map_or(0, Timestamp::unix);
        Arc::new(Entry {
            id,
            hash,
            user,
            access,
            expires_at: expires_at.map_or(NEVER, Timestamp::unix),
            last_used: AtomicI64::new(used),
            persisted: AtomicI64::new(used),
        })
    }

    /// A stand-alone entry for a record, with its own copies of the user and
    /// scope (tests and benches; the keyring shares them between keys).
    pub fn new(record: KeyRecord) -> Arc<Self> {
        Self::interned(&record, &mut Interner::default())
    }

    /// An entry for a record, sharing its user and scope through `interner`.
    pub(crate) fn interned(record: &KeyRecord, interner: &mut Interner) -> Arc<Self> {
        let hash = match &record.hash {
            KeyHash::Blake3(hash) => *hash,
            KeyHash::Bcrypt(_) => SecretHash::decoy(),
        };
        Self::build(
            record.id,
            hash,
            interner.user_of(&record.user),
            interner.access_of(&record.scope, &record.policy),
            record.expires_at,
            record.last_used_at,
        )
    }

    /// An entry straight from a store's row, validating its user and scope
    /// (once per distinct value) through `interner`.
    pub(crate) fn from_row(
        row: &KeyRow<'_>,
        interner: &mut Interner,
    ) -> Result<Arc<Self>, DecodeError> {
        let user = interner
            .user(row.user)
            .map_err(|_| DecodeError::Invalid("user"))?;
        let access = interner
            .access(row.scope, row.policy)
            .map_err(|_| DecodeError::Invalid("scope"))?;
        let hash = match row.hash {
            RowHash::Blake3(bytes) => SecretHash::from_bytes(bytes),
            // Validated by the snapshot builder, which keeps it.
            RowHash::Bcrypt(_) => SecretHash::decoy(),
        };
        Ok(Self::build(
            row.id,
            hash,
            user,
            access,
            row.expires_at.map(Timestamp::from_unix),
            row.last_used_at.map(Timestamp::from_unix),
        ))
    }

    /// The key's id.
    #[inline]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Whether a presented secret's BLAKE3 hash is this key's, in
    /// constant time. Never true for a key still waiting for bcrypt.
    #[inline]
    pub(crate) fn matches(&self, presented: &SecretHash) -> bool {
        self.hash.matches(presented)
    }

    /// The key's owner.
    #[inline]
    pub fn user(&self) -> &str {
        self.user.id()
    }

    /// The owner's id, ready to be the identity header's value (shared by
    /// all the owner's keys: cloning it is a reference-count increment).
    #[inline]
    pub fn user_header(&self) -> &HeaderValue {
        self.user.header()
    }

    /// The key id as the key-id header's value. Built on each call (a
    /// 16-byte copy) rather than kept per key.
    #[inline]
    pub fn id_header(&self) -> HeaderValue {
        // The id was validated to the key alphabet.
        HeaderValue::from_bytes(self.id.as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }

    /// Which request-targets the key admits.
    #[inline]
    pub fn scope(&self) -> &Scope {
        self.access.scope()
    }

    /// The key's policies, if it has any (most keys have none).
    #[inline]
    pub fn limits(&self) -> Option<&Limits> {
        self.access.limits()
    }

    /// When the key stops working, if ever.
    pub fn expires_at(&self) -> Option<Timestamp> {
        (self.expires_at != NEVER).then(|| Timestamp::from_unix(self.expires_at))
    }

    /// Whether the key has expired at `now`. A key is refused from the
    /// second its expiry is reached.
    #[inline]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        now.unix() >= self.expires_at
    }

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

    /// Carries the last-use times and the rate limiter's state recorded on
    /// `old` (the same key's previous entry) over to this one.
    pub(super) fn carry_uses(&self, old: &Entry) {
        self.access.carry(&old.access);
        self.last_used
            .fetch_max(old.last_used.load(Ordering::Relaxed), Ordering::Relaxed);
        self.persisted
            .fetch_max(old.persisted.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_stays_88_bytes() {
        // A million keys are a million entries (plus their `Arc` headers):
        // every 8 bytes here cost about 16 MB of resident memory at that
        // scale, through the allocator's size classes. Rare per-key state
        // (bcrypt for imported keys) lives beside the entries instead.
        assert!(std::mem::size_of::<Entry>() <= 88);
    }
}
