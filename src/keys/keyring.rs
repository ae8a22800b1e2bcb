//! The keyring: the one writer of the store and publisher of snapshots.
//!
//! Every change follows the same three steps, under one mutex so that
//! snapshots are published in commit order:
//!
//! 1. commit the change, with its audit event, to redb (durable when
//!    `commit` returns);
//! 2. build the next [`Snapshot`] beside the current one (O(log n));
//! 3. swap it in with one atomic store.
//!
//! Only then does the caller answer the admin client, so a 201 or 204 means
//! "durable and in effect": a proxied request that starts afterwards loads
//! the new snapshot. Readers never take the mutex; they `load()` the
//! `ArcSwap`, which is wait-free.
//!
//! The mutex is a `std` one because it is held across blocking redb I/O,
//! never across an `.await`; callers run these methods on the blocking pool.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};

use super::audit::{Action, AuditEvent};
use super::store::AuditFrom;
use super::{ApiKey, KeyId, KeyRecord, Snapshot, Store, StoreError, UserId};
use crate::scope::Scope;
use crate::timestamp::{Clock, Timestamp};

/// What an admin asks for when creating a key.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Owner.
    pub user: UserId,
    /// Description.
    pub name: String,
    /// Path scope.
    pub scope: Scope,
    /// Optional expiry.
    pub expires_at: Option<Timestamp>,
}

/// A rotated key: the new key, and how long the old one still works.
#[derive(Debug)]
pub struct Rotated {
    /// The new key (shown once).
    pub key: ApiKey,
    /// Its record.
    pub record: KeyRecord,
    /// The old key's record as it now stands (`None` if revoked at once).
    pub old: Option<KeyRecord>,
}

/// The store plus the published snapshot.
#[derive(Debug)]
pub struct Keyring {
    current: ArcSwap<Snapshot>,
    store: Mutex<Store>,
    clock: Clock,
}

/// Creating a key failed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The OS random source failed.
    #[error("cannot read OS randomness: {0}")]
    Random(getrandom::Error),
    /// The store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Keyring {
    /// Opens the store and loads the first snapshot, on the system clock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Clock::system())
    }

    /// Opens the store with a given clock (tests move a manual one).
    pub fn open_with_clock(path: &Path, clock: Clock) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        let contents = store.load()?;
        let snapshot = Snapshot::from_records(contents.keys, contents.blocked);
        Ok(Keyring {
            current: ArcSwap::from_pointee(snapshot),
            store: Mutex::new(store),
            clock,
        })
    }

    /// The current snapshot. Wait-free; do not hold the guard across
    /// `.await` (take what you need, or `Guard::into_inner` for an `Arc`).
    #[inline]
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The clock that decides expiry.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn writer(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves redb consistent (the open
        // transaction aborts on drop), so a poisoned lock is safe to reuse.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write transactions committed since open (tests assert that the
    /// request path never writes).
    pub fn store_writes(&self) -> u64 {
        self.writer().writes()
    }

    fn fresh_key(current: &Snapshot) -> Result<ApiKey, CreateError> {
        // A 96-bit id collision is practically impossible, but cheap to rule
        // out: the snapshot under the writer lock is the store's state.
        loop {
            let key = ApiKey::generate().map_err(CreateError::Random)?;
            if current.get(&key.id()).is_none() {
                return Ok(key);
            }
        }
    }

    /// Creates a key: durable and in effect when this returns. `client` is
    /// the admin client's address, for the audit trail.
    pub fn create(
        &self,
        new: NewKey,
        client: Option<&str>,
    ) -> Result<(ApiKey, KeyRecord), CreateError> {
        let store = self.writer();
        let current = self.current.load_full();
        let key = Self::fresh_key(&current)?;
        let now = self.clock.now();
        let record = KeyRecord {
            id: key.id(),
            hash: key.secret_hash(),
            user: new.user,
            name: new.name,
            scope: new.scope,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
        };
        store.insert_key(
            &record,
            &AuditEvent::for_key(Action::KeyCreated, &record, now, client),
        )?;
        self.current
            .store(Arc::new(current.with_key(record.clone())));
        Ok((key, record))
    }

    /// Revokes a key: refused by every request that starts after this
    /// returns. `None` if no such key.
    pub fn revoke(&self, id: KeyId, client: Option<&str>) -> Result<Option<KeyRecord>, StoreError> {
        let store = self.writer();
        let current = self.current.load_full();
        let Some(record) = current.get(&id).cloned() else {
            return Ok(None);
        };
        let event = AuditEvent::for_key(Action::KeyRevoked, &record, self.clock.now(), client);
        store.remove_key(id, &event)?;
        self.current.store(Arc::new(current.without_key(&id)));
        Ok(Some(record))
    }

    /// Rotates a key: a new key with the same user, name, scope and expiry;
    /// the old one keeps working for `grace_secs` (revoked at once when 0).
    /// `None` if no such key.
    pub fn rotate(
        &self,
        id: KeyId,
        grace_secs: u64,
        client: Option<&str>,
    ) -> Result<Option<Rotated>, CreateError> {
        let store = self.writer();
        let current = self.current.load_full();
        let Some(old) = current.get(&id).cloned() else {
            return Ok(None);
        };
        let key = Self::fresh_key(&current)?;
        let now = self.clock.now();
        let record = KeyRecord {
            id: key.id(),
            hash: key.secret_hash(),
            user: old.user.clone(),
            name: old.name.clone(),
            scope: old.scope.clone(),
            created_at: now,
            expires_at: old.expires_at,
            last_used_at: None,
        };
        let kept = (grace_secs > 0).then(|| {
            let until = now.plus_secs(grace_secs);
            let mut kept = old.clone();
            // Never extend a key past its own expiry.
            kept.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
            kept
        });
        let mut event = AuditEvent::for_key(Action::KeyRotated, &old, now, client);
        event.new_key_id = Some(record.id.to_string());
        event.grace_until = kept
            .as_ref()
            .and_then(|k| k.expires_at)
            .map(Timestamp::unix);
        store.rotate_key(
            kept.as_ref().unwrap_or(&old),
            kept.is_some(),
            &record,
            &event,
        )?;
        let next = match &kept {
            Some(kept) => current.with_key(kept.clone()),
            None => current.without_key(&id),
        };
        self.current.store(Arc::new(next.with_key(record.clone())));
        Ok(Some(Rotated {
            key,
            record,
            old: kept,
        }))
    }

    /// Blocks or unblocks a user.
    pub fn set_blocked(
        &self,
        user: &UserId,
        blocked: bool,
        client: Option<&str>,
    ) -> Result<(), StoreError> {
        let store = self.writer();
        let current = self.current.load_full();
        let event = AuditEvent::for_user(blocked, user.as_str(), self.clock.now(), client);
        store.set_blocked(user, blocked, &event)?;
        self.current
            .store(Arc::new(current.with_blocked(user, blocked)));
        Ok(())
    }

    /// Writes every last-use time recorded since the previous flush, in one
    /// transaction. Returns how many keys were written.
    ///
    /// The scan for unwritten uses (every key: about 0.1 s at a million)
    /// runs before the writer lock is taken, so admin writes only wait for
    /// the batch commit itself.
    pub fn flush_last_used(&self) -> Result<usize, StoreError> {
        let scanned = self.current.load_full();
        let batch: Vec<(KeyId, Timestamp)> = scanned
            .entries()
            .filter_map(|e| e.unpersisted_use().map(|at| (e.record.id, at)))
            .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let store = self.writer();
        store.record_last_used(&batch)?;
        // Mark on the entries now published: they are the same `Arc`s
        // unless a key changed meanwhile, and a changed key carries its
        // times over (see `Snapshot::with_key`).
        let current = self.current.load_full();
        for (id, at) in &batch {
            if let Some(entry) = current.entry(id) {
                entry.mark_persisted(*at);
            }
        }
        Ok(batch.len())
    }

    /// The audit trail from `from`, at most `limit` events.
    pub fn audit(
        &self,
        from: AuditFrom,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, StoreError> {
        self.writer().audit(from, limit)
    }
}
