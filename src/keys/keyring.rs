//! The keyring: the one writer of the store and publisher of snapshots.
//!
//! Every change follows the same three steps, under one mutex so that
//! snapshots are published in commit order:
//!
//! 1. commit the change to redb (durable when `commit` returns);
//! 2. build the next [`Snapshot`] beside the current one (O(log n));
//! 3. swap it in with one atomic store.
//!
//! Only then does the caller answer the admin client, so a 201 or 204 means
//! "durable and in effect": a proxied request that starts afterwards loads
//! the new snapshot. Readers never take the mutex; they `load()` the
//! `ArcSwap`, which is wait-free.
//!
//! The mutex is a `std` one because it is held across blocking redb I/O,
//! never across an `.await`; the admin API calls these methods from
//! `spawn_blocking`.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};

use super::{ApiKey, KeyId, KeyRecord, Snapshot, Store, StoreError, UserId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

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

/// The store plus the published snapshot.
#[derive(Debug)]
pub struct Keyring {
    current: ArcSwap<Snapshot>,
    store: Mutex<Store>,
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
    /// Opens the store and loads the first snapshot.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let store = Store::open(path)?;
        let contents = store.load()?;
        let snapshot = Snapshot::from_records(contents.keys, contents.blocked);
        Ok(Keyring {
            current: ArcSwap::from_pointee(snapshot),
            store: Mutex::new(store),
        })
    }

    /// The current snapshot. Wait-free; do not hold the guard across
    /// `.await` (take what you need, or `Guard::into_inner` for an `Arc`).
    #[inline]
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    fn writer(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves redb consistent (the open
        // transaction aborts on drop), so a poisoned lock is safe to reuse.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a key: durable and in effect when this returns.
    pub fn create(&self, new: NewKey) -> Result<(ApiKey, KeyRecord), CreateError> {
        let store = self.writer();
        let current = self.current.load_full();
        // A 96-bit id collision is practically impossible, but cheap to rule
        // out: the snapshot under the writer lock is the store's state.
        let key = loop {
            let key = ApiKey::generate().map_err(CreateError::Random)?;
            if current.get(&key.id()).is_none() {
                break key;
            }
        };
        let record = KeyRecord {
            id: key.id(),
            hash: key.secret_hash(),
            user: new.user,
            name: new.name,
            scope: new.scope,
            created_at: Timestamp::now(),
            expires_at: new.expires_at,
            last_used_at: None,
        };
        store.insert_key(&record)?;
        self.current
            .store(Arc::new(current.with_key(record.clone())));
        Ok((key, record))
    }

    /// Revokes a key: refused by every request that starts after this
    /// returns. `None` if no such key.
    pub fn revoke(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let store = self.writer();
        let current = self.current.load_full();
        let Some(record) = current.get(&id).cloned() else {
            return Ok(None);
        };
        store.remove_key(id)?;
        self.current.store(Arc::new(current.without_key(&id)));
        Ok(Some(record))
    }

    /// Blocks or unblocks a user.
    pub fn set_blocked(&self, user: &UserId, blocked: bool) -> Result<(), StoreError> {
        let store = self.writer();
        let current = self.current.load_full();
        store.set_blocked(user, blocked)?;
        self.current
            .store(Arc::new(current.with_blocked(user, blocked)));
        Ok(())
    }
}
