//! What a batch of changes does to the state tables (`keygate_keys`,
//! `keygate_users`), worked out in memory so that a whole batch is a few
//! array statements rather than one statement per change.
//!
//! A batch is folded per key and per user first: a key upserted then
//! removed in one batch is one row to delete, and PostgreSQL refuses an
//! `INSERT ... ON CONFLICT` that touches the same row twice anyway. Each
//! row written carries the number of the last change that wrote it.

use std::collections::HashMap;

use super::FleetError;
use crate::keys::{Change, KeyId};

/// The `keygate_keys` rows a batch writes and removes.
#[derive(Debug, Default)]
pub(super) struct KeyRows<'a> {
    /// Upserted keys: id, record (the store's encoding), change number.
    pub(super) ids: Vec<&'a str>,
    pub(super) records: Vec<Vec<u8>>,
    pub(super) seqs: Vec<i64>,
    /// Removed keys.
    pub(super) removed: Vec<&'a str>,
}

impl<'a> KeyRows<'a> {
    /// The rows for `changes`, numbered from `first`.
    pub(super) fn fold(changes: &'a [Change], first: u64) -> Result<Self, FleetError> {
        let mut last: HashMap<KeyId, usize> = HashMap::new();
        for (i, change) in changes.iter().enumerate() {
            if let Some(id) = change.key_id() {
                last.insert(id, i);
            }
        }
        let mut order: Vec<usize> = last.into_values().collect();
        // Change order, so statements (and tests) see a stable order.
        order.sort_unstable();
        let mut rows = KeyRows::default();
        for i in order {
            match &changes[i] {
                Change::Upsert(record) => {
                    rows.ids.push(record.id.as_str());
                    rows.records.push(
                        record
                            .encode()
                            .map_err(|e| FleetError::Encode(e.to_string()))?,
                    );
                    rows.seqs.push(seq_of(first, i));
                }
                Change::Remove(id) => rows.removed.push(id.as_str()),
                // Never in `last`: a block is about a user, not a key.
                Change::Block { .. } => {}
            }
        }
        Ok(rows)
    }
}

/// The `keygate_users` rows a batch writes and removes.
#[derive(Debug, Default)]
pub(super) struct UserRows<'a> {
    /// Users still blocked by someone: id, flags, change number.
    pub(super) kept: Vec<&'a str>,
    pub(super) flags: Vec<i16>,
    pub(super) seqs: Vec<i64>,
    /// Users no longer blocked by anyone (no row, as in the redb store).
    pub(super) cleared: Vec<&'a str>,
}

/// The users `changes` block or unblock, each once.
pub(super) fn blocked_users(changes: &[Change]) -> Vec<&str> {
    let mut users: Vec<&str> = changes
        .iter()
        .filter_map(|change| match change {
            Change::Block { user, .. } => Some(user.as_str()),
            _ => None,
        })
        .collect();
    users.sort_unstable();
    users.dedup();
    users
}

impl<'a> UserRows<'a> {
    /// The rows for the blocks in `changes`, numbered from `first`, given
    /// the flags stored for those users (absent: none).
    pub(super) fn fold(changes: &'a [Change], first: u64, stored: &HashMap<&str, u8>) -> Self {
        // Per user: the flags, and the index of the last change to them.
        let mut state: HashMap<&'a str, (u8, usize)> = HashMap::new();
        for (i, change) in changes.iter().enumerate() {
            let Change::Block { user, blocked, by } = change else {
                continue;
            };
            let user = user.as_str();
            let entry = state
                .entry(user)
                .or_insert_with(|| (stored.get(user).copied().unwrap_or(0), i));
            // The store's rule (`keys::change::with_block`, private to
            // `keys`): a user is blocked while any authority's bit is set.
            entry.0 = if *blocked {
                entry.0 | by.bit()
            } else {
                entry.0 & !by.bit()
            };
            entry.1 = i;
        }
        let mut users: Vec<(&'a str, (u8, usize))> = state.into_iter().collect();
        users.sort_unstable_by_key(|(_, (_, i))| *i);
        let mut rows = UserRows::default();
        for (user, (flags, i)) in users {
            if flags == 0 {
                rows.cleared.push(user);
            } else {
                rows.kept.push(user);
                rows.flags.push(i16::from(flags));
                rows.seqs.push(seq_of(first, i));
            }
        }
        rows
    }
}

/// The number of the `i`th change of a batch numbered from `first`.
fn seq_of(first: u64, i: usize) -> i64 {
    super::table::to_i64(first.saturating_add(i as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ApiKey, Blocker, KeyHash, KeyRecord, Origin, UserId};
    use crate::scope::Scope;
    use crate::timestamp::Timestamp;

    fn record(name: &str) -> KeyRecord {
        let key = ApiKey::generate().unwrap();
        KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: UserId::parse("alice").unwrap(),
            name: name.into(),
            scope: Scope::parse("/").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: None,
            last_used_at: None,
            origin: Origin::Keygate,
            policy: Default::default(),
        }
    }

    fn block(user: &str, blocked: bool, by: Blocker) -> Change {
        Change::Block {
            user: UserId::parse(user).unwrap(),
            blocked,
            by,
        }
    }

    #[test]
    fn keys_fold_to_their_last_change_with_its_number() {
        let (a, b, c) = (record("a"), record("b"), record("c"));
        let mut a2 = a.clone();
        a2.name = "a2".into();
        let changes = [
            Change::Upsert(a.clone()),
            Change::Upsert(b.clone()),
            Change::Remove(b.id),
            block("bob", true, Blocker::Admin),
            Change::Upsert(a2.clone()),
            Change::Remove(c.id),
        ];
        let rows = KeyRows::fold(&changes, 10).unwrap();
        assert_eq!(rows.ids, [a.id.as_str()]);
        assert_eq!(rows.records, [a2.encode().unwrap()]);
        assert_eq!(rows.seqs, [14]);
        assert_eq!(rows.removed, [b.id.as_str(), c.id.as_str()]);
    }

    #[test]
    fn blocks_fold_bit_by_bit_from_the_stored_flags() {
        let changes = [
            block("carol", true, Blocker::Admin),
            block("dave", false, Blocker::Admin),
            block("erin", true, Blocker::Haplo),
            block("erin", false, Blocker::Haplo),
            block("carol", false, Blocker::Admin),
        ];
        // carol: Haplo already blocks her; dave: Admin did.
        let stored = HashMap::from([("carol", 2), ("dave", 1)]);
        let rows = UserRows::fold(&changes, 1, &stored);
        assert_eq!(rows.kept, ["carol"]);
        assert_eq!(rows.flags, [2]);
        assert_eq!(rows.seqs, [5]);
        assert_eq!(rows.cleared, ["dave", "erin"]);
        assert_eq!(blocked_users(&changes), ["carol", "dave", "erin"]);
    }
}
