//! The redb key store: keys, users, last-use times, the audit trail and a
//! schema version.
//!
//! Tables:
//!
//! | table       | key            | value                                 |
//! |-------------|----------------|---------------------------------------|
//! | `meta`      | `"schema"`     | schema version (`u64`)                |
//! | `meta`      | `"synced_seq"` | last fleet change applied (`u64`)     |
//! | `keys`      | key id (`str`) | versioned record ([`KeyRecord`])      |
//! | `users`     | user id        | block flags: 1 admin, 2 Haplo (absent = active) |
//! | `last_used` | key id         | Unix seconds of the latest use        |
//! | `audit`     | sequence `u64` | JSON [`AuditEvent`]                   |
//!
//! Every change is one transaction ([`Store::apply`]) committed with redb's
//! default `Durability::Immediate`, and carries its audit events: when a method
//! returns `Ok`, the change and its record survive a `kill -9` or a power
//! cut. Last-use times live in their own table so that recording them is
//! a small batched write, never a rewrite of key records. redb takes a
//! file lock, so a second process (a second `keygate serve`) gets a clear
//! "already open" error instead of a corrupted file. The store is read in
//! full only at start-up; the request path reads the in-memory
//! [`super::Snapshot`], and the admin API reads what the snapshot does not
//! keep (key names, creation times) from here.
//!
//! redb's page cache is bounded to [`CACHE_BYTES`] (redb's default is
//! 1 GiB): start-up reads every page once, and an unbounded cache would
//! keep the whole file in memory after that (about 170 MB at a million
//! keys) for pages that are read again only by admin listings. A write
//! touches a handful of B-tree pages, which stay cached; the rest come from
//! the OS page cache. Start-up reads the `keys` and `last_used` tables
//! side by side (both are ordered by key id) and hands each record to the
//! caller as it is decoded, so no list of a million records is ever built.
//!
//! This file opens the store and writes it; the reads are in `store/read.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::audit::AuditEvent;
use super::change::{with_block, Change};
use super::record::DecodeError;
use super::{KeyId, KeyRecord, UserId};
use crate::timestamp::Timestamp;

mod read;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The `meta` entry holding the last fleet sequence number applied.
const SYNCED_SEQ: &str = "synced_seq";
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const USERS: TableDefinition<&str, u8> = TableDefinition::new("users");
const LAST_USED: TableDefinition<&str, i64> = TableDefinition::new("last_used");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// redb's page cache (read cache plus write buffer), in bytes.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The schema this build reads and writes. Tables added since version 1
/// (`last_used`, `audit`) are created on open; no record changed shape.
const SCHEMA_VERSION: u64 = 1;

/// A store failure. Messages name the file, never a key's secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The folder for the store could not be created.
    #[error("cannot create the store folder {}: {source}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the file.
    #[error("store {} is already open in another process (is another keygate running?)", path.display())]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be opened or created.
    #[error("cannot open store {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: redb::DatabaseError,
    },
    /// Written by a different schema version.
    #[error("store {} has schema version {found}, this keygate reads version {SCHEMA_VERSION}", path.display())]
    Schema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// A record did not decode.
    #[error("store record for key {id} is unreadable: {source}")]
    Corrupt {
        /// The key id of the record.
        id: String,
        /// Why.
        source: DecodeError,
    },
    /// Any other redb failure.
    #[error("store error: {0}")]
    Redb(#[from] redb::Error),
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(#[from] postcard::Error),
    /// An audit event could not be encoded or decoded.
    #[error("audit event: {0}")]
    Audit(#[from] serde_json::Error),
}

impl StoreError {
    fn redb(err: impl Into<redb::Error>) -> Self {
        StoreError::Redb(err.into())
    }
}

/// Everything the store holds, as read at start-up.
#[derive(Debug, Default)]
pub struct Contents {
    /// All keys (with their last-use times merged in).
    pub keys: Vec<KeyRecord>,
    /// Users currently blocked.
    pub blocked: Vec<UserId>,
}

/// Which audit events to list.
#[derive(Debug, Clone, Copy)]
pub enum AuditFrom {
    /// Events after this sequence number.
    After(u64),
    /// Events at or after this time.
    Since(Timestamp),
}

/// An open redb key store.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// Write transactions committed since open: lets tests prove that the
    /// request path never writes.
    writes: AtomicU64,
}

impl Store {
    /// Opens the store at `path`, creating it (and its folder) if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| match source {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen {
                    path: path.to_owned(),
                },
                source => StoreError::Open {
                    path: path.to_owned(),
                    source,
                },
            })?;
        let store = Store {
            db,
            writes: AtomicU64::new(0),
        };
        store.init_schema(path)?;
        store.writes.store(0, Ordering::Relaxed);
        Ok(store)
    }

    /// Write transactions committed since open.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Runs `change` in one write transaction and commits it durably.
    fn write<T>(
        &self,
        change: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::redb)?;
        let value = change(&txn)?;
        txn.commit().map_err(StoreError::redb)?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(value)
    }

    /// Stamps a new file with the schema version, or checks an old one's.
    fn init_schema(&self, path: &Path) -> Result<(), StoreError> {
        self.write(|txn| {
            let mut meta = txn.open_table(META).map_err(StoreError::redb)?;
            let found = meta
                .get("schema")
                .map_err(StoreError::redb)?
                .map(|v| v.value());
            match found {
                Some(SCHEMA_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::Schema {
                        path: path.to_owned(),
                        found,
                    })
                }
                None => {
                    meta.insert("schema", SCHEMA_VERSION)
                        .map_err(StoreError::redb)?;
                }
            }
            // Create every table so that readers never meet a missing one.
            txn.open_table(KEYS).map_err(StoreError::redb)?;
            txn.open_table(USERS).map_err(StoreError::redb)?;
            txn.open_table(LAST_USED).map_err(StoreError::redb)?;
            txn.open_table(AUDIT).map_err(StoreError::redb)?;
            Ok(())
        })
    }

    /// Durably applies `changes` and appends `events` to the audit trail,
    /// all in one transaction: every change keygate makes, and every
    /// change that arrives from elsewhere, is written here.
    pub fn apply(&self, changes: &[Change], events: &[AuditEvent]) -> Result<(), StoreError> {
        self.apply_at(changes, events, None)
    }

    /// [`Store::apply`], also recording (in the same transaction) that the
    /// store holds a fleet's shared table up to sequence number `synced`:
    /// after a crash the file and its sequence number agree, so a replica
    /// catches up from exactly where its copy stands.
    pub fn apply_at(
        &self,
        changes: &[Change],
        events: &[AuditEvent],
        synced: Option<u64>,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            if let Some(seq) = synced {
                let mut meta = txn.open_table(META).map_err(StoreError::redb)?;
                meta.insert(SYNCED_SEQ, seq).map_err(StoreError::redb)?;
            }
            let mut keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
            let mut last_used = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
            let mut users = txn.open_table(USERS).map_err(StoreError::redb)?;
            for change in changes {
                match change {
                    Change::Upsert(record) => {
                        let bytes = record.encode()?;
                        keys.insert(record.id.as_str(), bytes.as_slice())
                            .map_err(StoreError::redb)?;
                    }
                    Change::Remove(id) => {
                        keys.remove(id.as_str()).map_err(StoreError::redb)?;
                        last_used.remove(id.as_str()).map_err(StoreError::redb)?;
                    }
                    Change::Block { user, blocked, by } => {
                        let flags = users
                            .get(user.as_str())
                            .map_err(StoreError::redb)?
                            .map_or(0, |v| v.value());
                        match with_block(flags, *by, *blocked) {
                            0 => {
                                users.remove(user.as_str()).map_err(StoreError::redb)?;
                            }
                            flags => {
                                users
                                    .insert(user.as_str(), flags)
                                    .map_err(StoreError::redb)?;
                            }
                        }
                    }
                }
            }
            let mut audit = txn.open_table(AUDIT).map_err(StoreError::redb)?;
            let next = audit
                .last()
                .map_err(StoreError::redb)?
                .map_or(1, |(seq, _)| seq.value() + 1);
            for (seq, event) in (next..).zip(events) {
                let bytes = serde_json::to_vec(event)?;
                audit
                    .insert(seq, bytes.as_slice())
                    .map_err(StoreError::redb)?;
            }
            Ok(())
        })
    }

    /// Durably records last-use times, all in one transaction.
    pub fn record_last_used(&self, batch: &[(KeyId, Timestamp)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
            let mut last_used = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
            for (id, at) in batch {
                // A key revoked since it was used has nothing to update.
                if keys.get(id.as_str()).map_err(StoreError::redb)?.is_some() {
                    last_used
                        .insert(id.as_str(), at.unix())
                        .map_err(StoreError::redb)?;
                }
            }
            Ok(())
        })
    }
}
