//! The keyring: the one writer of the store and publisher of snapshots.
//!
//! Every change is a list of [`Change`]s, and follows the same three steps
//! ([`Keyring::apply`]), under one mutex so that snapshots are published in
//! commit order:
//!
//! 1. commit the changes, with their audit events, to redb in one
//!    transaction (durable when `commit` returns);
//! 2. build the next [`Snapshot`] beside the current one with
//!    [`Snapshot::apply`] (copying the shards it touches and the table of
//!    shard pointers, never every key);
//! 3. swap it in with one atomic store.
//!
//! Admin writes, imports and changes synced from elsewhere all take this
//! path, so there is one way to publish a snapshot. Whether a key exists is
//! asked of the store, not the snapshot: once changes can arrive from
//! elsewhere, the snapshot is what requests read, not the authority.
//!
//! Only then does the caller answer the admin client, so a 201 or 204 means
//! "durable and in effect": a proxied request that starts afterwards loads
//! the new snapshot. Readers never take the mutex; they `load()` the
//! `ArcSwap`, which is wait-free.
//!
//! The mutex is a `std` one because it is held across blocking redb I/O,
//! never across an `.await`; callers run these methods on the blocking pool.
//! It also guards the interner that lets entries share their user and scope
//! (`intern.rs`). Reads of the store (the admin API's listings, the audit
//! trail) are redb read transactions and do not take it.
//!
//! Start-up streams the store into the first snapshot (`Store::scan_keys`
//! into a snapshot builder): no intermediate list of records, so peak
//! memory stays close to the snapshot's own size.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};

mod flush;
mod import;
mod update;
mod writes;

pub use self::flush::Flushed;
pub use self::import::{HaploBatch, HaploKeyRow, HaploUserRow, ImportReport, Missing, Skipped};
pub use self::update::KeyUpdate;
pub use self::writes::Planned;

use super::audit::{Action, AuditEvent};
use super::intern::Interner;
use super::snapshot::Builder;
use super::store::AuditFrom;
use super::{
    ApiKey, BcryptHash, Blocker, Change, KeyHash, KeyId, KeyRecord, Origin, PresentedKey,
    SecretHash, Snapshot, Store, StoreError, UserId,
};
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
    /// Optional policies.
    pub policy: crate::keys::policy::Policy,
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
    store: Store,
    writer: Mutex<Writer>,
    clock: Clock,
}

/// What the writer lock guards besides the order of commits.
#[derive(Debug, Default)]
struct Writer {
    interner: Interner,
    /// A key was removed since the interner was last pruned.
    removed: bool,
    /// The last fleet sequence number applied (0: none; see
    /// [`Keyring::apply_synced`]).
    synced: u64,
}

/// An admin write failed, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The OS random source failed.
    #[error("cannot read OS randomness: {0}")]
    Random(getrandom::Error),
    /// The key belongs to a Haplo application: Haplo, not keygate's admin
    /// API, changes it.
    #[error("key {id} belongs to Haplo application {app}; change it in Haplo")]
    OwnedByHaplo {
        /// The key.
        id: KeyId,
        /// The application.
        app: u32,
    },
    /// An edit to a field of a key from Haplo that Haplo owns (its name,
    /// scope or expiry; its policies are keygate's).
    #[error("the {field} of key {id} comes from Haplo application {app}; change it in Haplo (rate, allow_from and methods can be set here)")]
    HaploOwnsField {
        /// The key.
        id: KeyId,
        /// The application.
        app: u32,
        /// The field.
        field: &'static str,
    },
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
        let synced = store.synced_seq()?;
        let (snapshot, interner) = Self::load(&store)?;
        Ok(Keyring {
            current: ArcSwap::from_pointee(snapshot),
            store,
            writer: Mutex::new(Writer {
                interner,
                removed: false,
                synced,
            }),
            clock,
        })
    }

    /// The first snapshot, streamed from the store into a builder sized for
    /// it: no list of records, and shard tables allocated once.
    fn load(store: &Store) -> Result<(Snapshot, Interner), StoreError> {
        let mut interner = Interner::default();
        let mut builder = Builder::with_capacity(usize::try_from(store.key_count()?).unwrap_or(0));
        store.scan_keys(|row| builder.insert_row(row, &mut interner))?;
        Ok((builder.finish(store.blocked_users()?), interner))
    }

    /// Rebuilds the snapshot from the store, as at start-up. After a batch
    /// that touched most of a large table (a fleet replica copying or
    /// seeding a million keys), the snapshot grown change by change holds
    /// its shard tables at up to twice their size and the batch's garbage
    /// stays mapped (measured: 333 MB resident at a million keys, against
    /// 178 MB for the same file opened fresh); a rebuild gives it start-up's
    /// compact shape. Keys' live last-use times not yet flushed are lost,
    /// so call it only when there are none to speak of.
    pub fn rebuild_snapshot(&self) -> Result<(), StoreError> {
        let mut writer = self.writer();
        let (snapshot, interner) = Self::load(&self.store)?;
        self.current.store(Arc::new(snapshot));
        writer.interner = interner;
        writer.removed = false;
        Ok(())
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

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding the lock leaves redb consistent (the open
        // transaction aborts on drop) and the interner usable, so a
        // poisoned lock is safe to reuse.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write transactions committed since open (tests assert that the
    /// request path never writes).
    pub fn store_writes(&self) -> u64 {
        self.store.writes()
    }

    /// One key's full record as stored (name, creation time...), for the
    /// admin API. The last-use time is the stored one; the snapshot's
    /// entry has the live one.
    pub fn key(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.store.key(id)
    }

    /// One page of full records in id order (see [`Store::keys_page`]).
    pub fn keys_page(
        &self,
        user: Option<&UserId>,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<(Vec<KeyRecord>, bool), StoreError> {
        self.store.keys_page(user.map(UserId::as_str), after, limit)
    }

    /// Every key's full record (only `user`'s when given), in id order.
    pub fn keys(&self, user: Option<&UserId>) -> Result<Vec<KeyRecord>, StoreError> {
        self.store.keys(user.map(UserId::as_str))
    }

    /// Applies `changes` durably, with `events` in the audit trail, then
    /// publishes the snapshot with them: the one way keys change, whether
    /// the change was made here (an admin write), imported in a batch, or
    /// synced from elsewhere. In effect for every request that starts after
    /// this returns.
    pub fn apply(&self, changes: &[Change], events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut writer = self.writer();
        self.publish(&mut writer, changes, events)
    }

    /// [`Keyring::apply`] under a writer lock already held.
    fn publish(
        &self,
        writer: &mut Writer,
        changes: &[Change],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.publish_at(writer, changes, events, None)
    }

    /// [`Keyring::publish`], recording fleet sequence number `synced` with
    /// the changes when given.
    fn publish_at(
        &self,
        writer: &mut Writer,
        changes: &[Change],
        events: &[AuditEvent],
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        if changes.is_empty() && events.is_empty() && synced.is_none() {
            return Ok(());
        }
        self.store.apply_at(changes, events, synced)?;
        if let Some(seq) = synced {
            writer.synced = seq;
        }
        let current = self.current.load_full();
        self.current
            .store(Arc::new(current.apply(changes, &mut writer.interner)));
        if changes.iter().any(|c| matches!(c, Change::Remove(_))) {
            writer.removed = true;
        }
        Ok(())
    }

    /// Applies changes from a fleet's shared change log, each with its
    /// sequence number, in order: the same path as every local write (one
    /// transaction, then one snapshot swap), with the last sequence number
    /// recorded in that transaction. Changes at or below the number already
    /// applied are skipped, so a batch that overlaps what a replica has
    /// (a reconnect, a notification for changes it already fetched) applies
    /// nothing twice. Returns the sequence number the copy now stands at.
    pub fn apply_synced(&self, batch: &[(u64, Change)]) -> Result<u64, StoreError> {
        self.apply_synced_with(batch, &[])
    }

    /// [`Keyring::apply_synced`] with audit events to record locally too (a
    /// replica's own write, whose events the shared table also holds).
    pub fn apply_synced_with(
        &self,
        batch: &[(u64, Change)],
        events: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        let mut writer = self.writer();
        let applied = writer.synced;
        let fresh: Vec<Change> = batch
            .iter()
            .filter(|(seq, _)| *seq > applied)
            .map(|(_, change)| change.clone())
            .collect();
        let Some(last) = batch
            .iter()
            .map(|(seq, _)| *seq)
            .filter(|seq| *seq > applied)
            .max()
        else {
            return Ok(applied);
        };
        self.publish_at(&mut writer, &fresh, events, Some(last))?;
        Ok(last)
    }

    /// The last fleet sequence number applied to this replica's copy.
    pub fn synced_seq(&self) -> u64 {
        self.writer().synced
    }

    /// The audit trail from `from`, at most `limit` events.
    pub fn audit(
        &self,
        from: AuditFrom,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, StoreError> {
        self.store.audit(from, limit)
    }
}
