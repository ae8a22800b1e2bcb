//! The store's reads: start-up's single pass over every key, and the
//! admin API's lookups, listings and audit pages. Each is one redb read
//! transaction, which never waits for the writer (redb's MVCC), so none of
//! these takes the keyring's writer lock. Writes, and the schema they keep,
//! are in `store.rs`.

use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{
    AuditFrom, Contents, Store, StoreError, AUDIT, KEYS, LAST_USED, META, SYNCED_SEQ, USERS,
};
use crate::keys::audit::AuditEvent;
use crate::keys::record::{decode_stored, DecodeError, KeyRow, Stored};
use crate::keys::{KeyId, KeyRecord, UserId};
use crate::timestamp::Timestamp;

impl Store {
    /// Reads every key and blocked user into records.
    pub fn load(&self) -> Result<Contents, StoreError> {
        let mut contents = Contents::default();
        self.scan_stored(|id, stored, last_used| {
            let mut record = KeyRecord::from_stored(id, stored)?;
            if let Some(used) = last_used {
                record.last_used_at = Some(Timestamp::from_unix(used));
            }
            contents.keys.push(record);
            Ok(())
        })?;
        contents.blocked = self
            .blocked_users()?
            .into_iter()
            .map(|(user, _)| user)
            .collect();
        Ok(contents)
    }

    /// The last fleet sequence number applied to this file (0: none).
    pub fn synced_seq(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let meta = txn.open_table(META).map_err(StoreError::redb)?;
        Ok(meta
            .get(SYNCED_SEQ)
            .map_err(StoreError::redb)?
            .map_or(0, |v| v.value()))
    }

    /// Number of keys stored.
    pub fn key_count(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let keys = txn.open_table(KEYS).map_err(StoreError::redb)?;
        keys.len().map_err(StoreError::redb)
    }

    /// Hands every stored key to `each` as a [`KeyRow`], in id order, with
    /// its last-use time from the `last_used` table if it has one. The row
    /// borrows the page it was read from: nothing is copied unless `each`
    /// copies it.
    pub(crate) fn scan_keys(
        &self,
        mut each: impl FnMut(&KeyRow<'_>) -> Result<(), DecodeError>,
    ) -> Result<(), StoreError> {
        self.scan_stored(|id, stored, used| {
            each(&KeyRow {
                id,
                hash: stored.hash,
                user: stored.user,
                scope: stored.scope,
                expires_at: stored.expires_at,
                last_used_at: used.or(stored.last_used_at),
                policy: &stored.policy,
            })
        })
    }

    /// [`Store::scan_keys`] in redb's own terms: each stored record as
    /// encoded, with the time from `last_used` beside it.
    fn scan_stored(
        &self,
        mut each: impl FnMut(KeyId, &Stored<'_>, Option<i64>) -> Result<(), DecodeError>,
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
            let (id, stored) = stored_key(id.value(), value.value())?;
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
            each(id, &stored, used).map_err(|source| corrupt(id, source))?;
        }
        Ok(())
    }

    /// Users currently blocked, with their block flags (see
    /// [`crate::keys::Blocker`]).
    pub(crate) fn blocked_users(&self) -> Result<Vec<(UserId, u8)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::redb)?;
        let users = txn.open_table(USERS).map_err(StoreError::redb)?;
        let mut blocked = Vec::new();
        for entry in users.iter().map_err(StoreError::redb)? {
            let (user, flag) = entry.map_err(StoreError::redb)?;
            if flag.value() != 0 {
                let user = UserId::parse(user.value()).map_err(|_| StoreError::Corrupt {
                    id: user.value().escape_default().to_string(),
                    source: DecodeError::Invalid("user id in users table"),
                })?;
                blocked.push((user, flag.value()));
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
        let mut record =
            KeyRecord::decode(id, value.value()).map_err(|source| corrupt(id, source))?;
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
            let (id, stored) = stored_key(id.value(), value.value())?;
            if user.is_some_and(|user| user != stored.user) {
                continue;
            }
            if page.len() == limit {
                return Ok((page, true));
            }
            let mut record =
                KeyRecord::from_stored(id, &stored).map_err(|source| corrupt(id, source))?;
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
        self.scan_stored(|id, stored, last_used| {
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

/// One row of the `keys` table, decoded without copying.
fn stored_key<'a>(id: &str, value: &'a [u8]) -> Result<(KeyId, Stored<'a>), StoreError> {
    let parsed = KeyId::parse(id).ok_or_else(|| StoreError::Corrupt {
        id: id.escape_default().to_string(),
        source: DecodeError::Invalid("key id"),
    })?;
    let stored = decode_stored(value).map_err(|source| corrupt(parsed, source))?;
    Ok((parsed, stored))
}

fn corrupt(id: KeyId, source: DecodeError) -> StoreError {
    StoreError::Corrupt {
        id: id.to_string(),
        source,
    }
}
