//! The redb key store: keys, users, last-use times, the audit trail and a
//! schema version.
//!
//! Tables:
//!
//! | table       | key            | value                                 |
//! |-------------|----------------|---------------------------------------|
//! | `meta`      | `"schema"`     | schema version (`u64`)                |
//! | `keys`      | key id (`str`) | versioned record ([`KeyRecord`])      |
//! | `users`     | user id        | `1` when blocked (absent = active)    |
//! | `last_used` | key id         | Unix seconds of the latest use        |
//! | `audit`     | sequence `u64` | JSON [`AuditEvent`]                   |
//!
//! Every change is one transaction committed with redb's default
//! `Durability::Immediate`, and carries its audit event: when a method
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

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use super::audit::AuditEvent;
use super::record::{decode_stored, DecodeError, StoredV1};
use super::{KeyId, KeyRecord, UserId};
use crate::timestamp::Timestamp;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
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

    /// Reads every key and blocked user into records.
    pub fn load(&self) -> Result<Contents, StoreError> {
        let mut contents = Contents::default();
        self.scan_keys(|id, stored, last_used| {
            let mut record = KeyRecord::from_stored(id, stored)?;
            if let Some(used) = last_used {
                record.last_used_at = Some(Timestamp::from_unix(used));
            }
            contents.keys.push(record);
            Ok(())
        })?;
        contents.blocked = self.blocked_users()?;
        Ok(contents)
    }

    /// Number of keys stored.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        keys.len().map_err(StoreError::redb)
    }

    /// Hands every stored key to `each`, in id order, with its last-use
    /// time from the `last_used` table if it has one. The record borrows
    /// the page it was read from: nothing is copied unless `each` copies it.
    pub(crate) fn scan_keys(
        &self,
        mut each: impl FnMut(KeyId, &StoredV1<'_>, Option<i64>) -> Result<(), DecodeError>,
    ) -> Result<(), StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let last_used_table = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
        // Both tables are ordered by key id: walk them side by side rather
        // than looking each key up or collecting the times in a map.
        let mut times = last_used_table.iter().map_err(StoreError::redb)?;
        let mut next_time = move || -> Result<Option<(KeyId, i64)>, StoreError> {
            for entry in times.by_ref() {
                let (id, at) = entry.map_err(StoreError::redb)?;
                // A malformed id matches no key: skip it.
                if let Some(id) = KeyId::parse(id.value()) {
                    return Ok(Some((id, at.value())));
                }
            }
            Ok(None)
        };
        let mut pending = next_time()?;
        let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        for entry in keys.iter().map_err(StoreError::redb)? {
            let (id, value) = entry.map_err(StoreError::redb)?;
            let id_text = id.value();
            let corrupt = |source| StoreError::Corrupt {
                id: id_text.escape_default().to_string(),
                source,
            };
            let id =
                KeyId::parse(id_text).ok_or_else(|| corrupt(DecodeError::Invalid("key id")))?;
            // `KeyId` orders as the table does (bytewise).
            let mut used = None;
            while let Some((used_id, at)) = pending {
                if used_id > id {
                    break;
                }
                if used_id == id {
                    used = Some(at);
                }
                pending = next_time()?;
            }
            let stored = decode_stored(value.value()).map_err(corrupt)?;
            each(id, &stored, used).map_err(corrupt)?;
        }
        Ok(())
    }

    /// Users currently blocked.
    pub(crate) fn blocked_users(&self) -> Result<Vec<UserId>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let users = txn.open_table(USERS).map_err(StoreError::redb)?;
        let mut blocked = Vec::new();
        for entry in users.iter().map_err(StoreError::redb)? {
            let (user, flag) = entry.map_err(StoreError::redb)?;
            if flag.value() == 1 {
                let user = UserId::parse(user.value()).map_err(|_| StoreError::Corrupt {
                    id: user.value().escape_default().to_string(),
                    source: DecodeError::Invalid("user id in users table"),
                })?;
                blocked.push(user);
            }
        }
        Ok(blocked)
    }

    /// One key's full record, with its stored last-use time.
    pub fn key(&self, id: KeyId) -> Result<Option<KeyRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        let Some(value) = keys.get(id.as_str()).map_err(StoreError::redb)? else {
            return Ok(None);
        };
        let corrupt = |source| StoreError::Corrupt {
            id: id.to_string(),
            source,
        };
        let mut record = KeyRecord::decode(id, value.value()).map_err(corrupt)?;
        let last_used = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
        if let Some(at) = last_used.get(id.as_str()).map_err(StoreError::redb)? {
            record.last_used_at = Some(Timestamp::from_unix(at.value()));
        }
        Ok(Some(record))
    }

    /// Up to `limit` keys (only `user`'s when given) in id order, starting
    /// after the id `after`, each with its stored last-use time; and
    /// whether more follow. A page decodes only the records it returns (and
    /// those of other users it passes over), so listing a million keys a
    /// page at a time never holds them all in memory.
    pub fn keys_page(
        &self,
        user: Option<&str>,
        after: Option<KeyId>,
        limit: usize,
    ) -> Result<(Vec<KeyRecord>, bool), StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        let last_used = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
        let start = match &after {
            Some(after) => Bound::Excluded(after.as_str()),
            None => Bound::Unbounded,
        };
        let mut page = Vec::new();
        for entry in keys
            .range::<&str>((start, Bound::Unbounded))
            .map_err(StoreError::redb)?
        {
            let (id, value) = entry.map_err(StoreError::redb)?;
            let id_text = id.value();
            let corrupt = |source| StoreError::Corrupt {
                id: id_text.escape_default().to_string(),
                source,
            };
            let id =
                KeyId::parse(id_text).ok_or_else(|| corrupt(DecodeError::Invalid("key id")))?;
            let stored = decode_stored(value.value()).map_err(corrupt)?;
            if user.is_some_and(|user| user != stored.user) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            let mut record = KeyRecord::from_stored(id, &stored).map_err(corrupt)?;
            if let Some(at) = last_used.get(id.as_str()).map_err(StoreError::redb)? {
                record.last_used_at = Some(Timestamp::from_unix(at.value()));
            }
            page.push(record);
        }
        Ok((page, false))
    }

    /// Every key's full record (only `user`'s when given), in id order.
    pub fn keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let mut records = Vec::new();
        self.scan_keys(|id, stored, last_used| {
            if user.is_some_and(|user| user != stored.user) {
                return Ok(());
            }
            let mut record = KeyRecord::from_stored(id, stored)?;
            if let Some(used) = last_used {
                record.last_used_at = Some(Timestamp::from_unix(used));
            }
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    }

    fn append_audit(txn: &WriteTransaction, event: &AuditEvent) -> Result<(), StoreError> {
        let mut audit = txn.open_table(AUDIT).map_err(StoreError::redb)?;
        let next = audit
            .last()
            .map_err(StoreError::redb)?
            .map_or(1, |(seq, _)| seq.value() + 1);
        let bytes = serde_json::to_vec(event)?;
        audit
            .insert(next, bytes.as_slice())
            .map_err(StoreError::redb)?;
        Ok(())
    }

    fn put_key(txn: &WriteTransaction, record: &KeyRecord) -> Result<(), StoreError> {
        let bytes = record.encode()?;
        let mut keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        keys.insert(record.id.as_str(), bytes.as_slice())
            .map_err(StoreError::redb)?;
        Ok(())
    }

    fn delete_key(txn: &WriteTransaction, id: KeyId) -> Result<bool, StoreError> {
        let mut keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        let existed = keys
            .remove(id.as_str())
            .map_err(StoreError::redb)?
            .is_some();
        let mut last_used = txn.open_table(LAST_USED).map_err(StoreError::redb)?;
        last_used.remove(id.as_str()).map_err(StoreError::redb)?;
        Ok(existed)
    }

    /// Durably inserts a new key record, with its audit event.
    pub fn insert_key(&self, record: &KeyRecord, event: &AuditEvent) -> Result<(), StoreError> {
        self.write(|txn| {
            Self::put_key(txn, record)?;
            Self::append_audit(txn, event)
        })
    }

    /// Durably removes a key, with its audit event; `false` if there was none.
    pub fn remove_key(&self, id: KeyId, event: &AuditEvent) -> Result<bool, StoreError> {
        self.write(|txn| {
            let existed = Self::delete_key(txn, id)?;
            if existed {
                Self::append_audit(txn, event)?;
            }
            Ok(existed)
        })
    }

    /// Durably rotates a key in one transaction: the new key is inserted,
    /// and the old one is either updated (a grace period) or removed.
    pub fn rotate_key(
        &self,
        old: &KeyRecord,
        old_kept: bool,
        new: &KeyRecord,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            Self::put_key(txn, new)?;
            if old_kept {
                Self::put_key(txn, old)?;
            } else {
                Self::delete_key(txn, old.id)?;
            }
            Self::append_audit(txn, event)
        })
    }

    /// Durably records whether a user is blocked, with its audit event.
    pub fn set_blocked(
        &self,
        user: &UserId,
        blocked: bool,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        self.write(|txn| {
            {
                let mut users = txn.open_table(USERS).map_err(StoreError::redb)?;
                if blocked {
                    users.insert(user.as_str(), 1u8).map_err(StoreError::redb)?;
                } else {
                    users.remove(user.as_str()).map_err(StoreError::redb)?;
                }
            }
            Self::append_audit(txn, event)
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

    /// Audit events in order, from `from`, at most `limit` of them, each
    /// with its sequence number.
    pub fn audit(
        &self,
        from: AuditFrom,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let audit = txn.open_table(AUDIT).map_err(StoreError::redb)?;
        let start = match from {
            AuditFrom::After(seq) => seq.saturating_add(1),
            AuditFrom::Since(_) => 0,
        };
        let mut events = Vec::new();
        for entry in audit.range(start..).map_err(StoreError::redb)? {
            let (seq, bytes) = entry.map_err(StoreError::redb)?;
            let event: AuditEvent = serde_json::from_slice(bytes.value())?;
            if let AuditFrom::Since(at) = from {
                if event.time < at.unix() {
                    continue;
                }
            }
            events.push((seq.value(), event));
            if events.len() >= limit {
                break;
            }
        }
        Ok(events)
    }
}
