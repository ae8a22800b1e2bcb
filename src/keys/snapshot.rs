//! The immutable view of all keys and blocked users that requests read.
//!
//! # Shape
//!
//! The keys are split into [`SHARDS`] shards by their id; each shard is a
//! plain hash set of entries behind an `Arc`. A lookup is one shard pick
//! (arithmetic on the id) and one hash-set probe. An admin write builds the
//! next snapshot beside the current one by copying the one shard it
//! changes (about a thousand pointers at a million keys) and the table of
//! shard pointers; every other shard is shared, so no write copies a
//! million entries. Cloning a snapshot is O(1).
//!
//! The entries themselves, and why they are small, are in `entry.rs`.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::change::{with_block, Blocker, Change};
use super::entry::Entry;
use super::intern::Interner;
use super::pending::Pending;
use super::record::{DecodeError, KeyRow, RowHash};
use super::{BcryptHash, KeyHash, KeyId, KeyRecord, PresentedKey, SecretHash, UserId};
use crate::timestamp::Timestamp;

/// `log2` of the number of shards.
const SHARD_BITS: u32 = 10;
/// Number of shards: at a million keys, about a thousand keys per shard,
/// so an admin write copies about 10 KB of pointers in all.
pub const SHARDS: usize = 1 << SHARD_BITS;

/// The result of checking a presented key against a snapshot.
#[derive(Debug)]
pub enum Verified<'a> {
    /// The key exists, its secret matches, and it has not expired.
    Valid(&'a Entry),
    /// Unknown id, wrong secret, malformed or expired: all one answer.
    Invalid,
    /// A key imported from Haplo and not yet used: only bcrypt (slow, so
    /// not here) can tell whether the secret is right.
    NeedsBcrypt(&'a Entry),
}

/// An entry in a shard's set, hashed and compared by its id so that the set
/// is searched with a [`KeyId`] and the id is stored once.
#[derive(Clone, Debug)]
struct Slot(Arc<Entry>);

impl Borrow<KeyId> for Slot {
    #[inline]
    fn borrow(&self) -> &KeyId {
        &self.0.id
    }
}

impl Hash for Slot {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Slot {}

type Shard = HashSet<Slot>;

/// Which shard holds `id`. Ids are server-chosen random characters, so a
/// multiplicative mix of their bytes spreads them evenly.
#[inline]
fn shard_of(id: &KeyId) -> usize {
    let bytes = id.as_bytes();
    let mut low = [0u8; 8];
    let mut high = [0u8; 8];
    low.copy_from_slice(&bytes[..8]);
    high.copy_from_slice(&bytes[8..]);
    let mixed = (u64::from_le_bytes(low) ^ u64::from_le_bytes(high).rotate_left(29))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // The top SHARD_BITS bits: always below SHARDS.
    (mixed >> (64 - SHARD_BITS)) as usize
}

/// All keys and blocked users at one moment.
#[derive(Clone)]
pub struct Snapshot {
    shards: Arc<[Arc<Shard>]>,
    len: usize,
    /// Blocked users and who blocks them ([`Blocker`] bits).
    blocked: imbl::HashMap<UserId, u8>,
    /// Keys imported from Haplo still waiting for their bcrypt check (see
    /// `pending.rs`); empty in most deployments.
    pending: imbl::HashMap<KeyId, Arc<Pending>>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Builder::with_capacity(0).finish(Vec::new())
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("keys", &self.len)
            .field("blocked", &self.blocked.len())
            .finish()
    }
}

/// Builds the first snapshot one entry at a time, without an intermediate
/// list of records.
pub(crate) struct Builder {
    shards: Vec<Shard>,
    len: usize,
    pending: imbl::HashMap<KeyId, Arc<Pending>>,
}

impl Builder {
    /// A builder sized for about `keys` keys.
    pub(crate) fn with_capacity(keys: usize) -> Self {
        let per_shard = keys / SHARDS;
        // Room for the shards that draw more than the average, so that
        // loading does not grow (and copy) tables.
        let per_shard = if per_shard == 0 {
            0
        } else {
            per_shard + per_shard / 8 + 8
        };
        Builder {
            shards: (0..SHARDS)
                .map(|_| Shard::with_capacity(per_shard))
                .collect(),
            len: 0,
            pending: imbl::HashMap::new(),
        }
    }

    /// Adds the key a store's row describes.
    pub(crate) fn insert_row(
        &mut self,
        row: &KeyRow<'_>,
        interner: &mut Interner,
    ) -> Result<(), DecodeError> {
        if let RowHash::Bcrypt(text) = row.hash {
            let bcrypt =
                BcryptHash::parse(text).map_err(|_| DecodeError::Invalid("bcrypt hash"))?;
            self.pending.insert(row.id, Arc::new(Pending::new(bcrypt)));
        }
        self.insert(Entry::from_row(row, interner)?);
        Ok(())
    }

    /// Adds an entry (replacing one with the same id).
    pub(crate) fn insert(&mut self, entry: Arc<Entry>) {
        let shard = shard_of(&entry.id);
        if let Some(set) = self.shards.get_mut(shard) {
            if set.replace(Slot(entry)).is_none() {
                self.len += 1;
            }
        }
    }

    /// The snapshot, with its blocked users and their block flags.
    pub(crate) fn finish(self, blocked: impl IntoIterator<Item = (UserId, u8)>) -> Snapshot {
        let empty = Arc::new(Shard::default());
        Snapshot {
            shards: self
                .shards
                .into_iter()
                .map(|set| {
                    if set.is_empty() {
                        // Untouched shards share one empty set.
                        empty.clone()
                    } else {
                        Arc::new(set)
                    }
                })
                .collect(),
            len: self.len,
            blocked: blocked.into_iter().collect(),
            pending: self.pending,
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from records (tests and benches; the keyring
    /// builds its first snapshot straight from the store).
    pub fn from_records(
        keys: impl IntoIterator<Item = KeyRecord>,
        blocked: impl IntoIterator<Item = UserId>,
    ) -> Self {
        let keys = keys.into_iter();
        let mut interner = Interner::default();
        let mut builder = Builder::with_capacity(keys.size_hint().0);
        for record in keys {
            if let KeyHash::Bcrypt(bcrypt) = &record.hash {
                builder
                    .pending
                    .insert(record.id, Arc::new(Pending::new(bcrypt.clone())));
            }
            builder.insert(Entry::interned(&record, &mut interner));
        }
        builder.finish(blocked.into_iter().map(|user| (user, Blocker::Admin.bit())))
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
        match self.entry(&key.id()) {
            Some(entry) if entry.matches(&hash) => {
                if entry.is_expired(now) {
                    Verified::Invalid
                } else {
                    Verified::Valid(entry)
                }
            }
            // Only a key imported from Haplo and not yet presented can
            // still be right; most snapshots have none.
            Some(entry) if !self.pending.is_empty() => match self.pending.get(&key.id()) {
                Some(_) if entry.is_expired(now) => Verified::Invalid,
                Some(pending) => match pending.proven() {
                    Some(proven) if proven.matches(&hash) => Verified::Valid(entry),
                    Some(_) => Verified::Invalid,
                    None => Verified::NeedsBcrypt(entry),
                },
                None => Verified::Invalid,
            },
            Some(_) => Verified::Invalid,
            None => {
                let _ = SecretHash::decoy().matches(&hash);
                Verified::Invalid
            }
        }
    }

    /// The bcrypt state of a key imported from Haplo and not yet written
    /// back with its BLAKE3 hash.
    pub(crate) fn pending(&self, id: &KeyId) -> Option<&Arc<Pending>> {
        self.pending.get(id)
    }

    /// Every key waiting for (or just past) its bcrypt check.
    pub(crate) fn pending_keys(&self) -> impl Iterator<Item = (&KeyId, &Arc<Pending>)> {
        self.pending.iter()
    }

    /// Whether a user is blocked. Free when nobody is.
    #[inline]
    pub fn is_blocked(&self, user: &str) -> bool {
        !self.blocked.is_empty() && self.blocked.contains_key(user)
    }

    /// The users `by` blocks.
    pub fn blocked_users_by(&self, by: Blocker) -> impl Iterator<Item = &UserId> {
        self.blocked
            .iter()
            .filter(move |(_, flags)| **flags & by.bit() != 0)
            .map(|(user, _)| user)
    }

    /// Who blocks a user (empty when nobody does).
    pub fn blocked_by(&self, user: &str) -> impl Iterator<Item = Blocker> {
        Blocker::all_in(self.blocked.get(user).copied().unwrap_or(0))
    }

    /// One key's entry (what the request path reads, plus the live
    /// last-use time) by id.
    #[inline]
    pub fn entry(&self, id: &KeyId) -> Option<&Entry> {
        self.shards
            .get(shard_of(id))
            .and_then(|shard| shard.get(id))
            .map(|slot| &*slot.0)
    }

    /// Every key's entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|slot| &*slot.0))
    }

    /// Number of keys.
    pub fn key_count(&self) -> usize {
        self.len
    }

    /// Number of blocked users.
    pub fn blocked_count(&self) -> usize {
        self.blocked.len()
    }

    /// This snapshot with `changes` applied in order: the one way a
    /// snapshot changes, for local commits and synced changes alike.
    ///
    /// Each shard that a change touches is copied once, however many
    /// changes touch it, and the table of shard pointers once; every other
    /// shard is shared. So a single admin write copies about a thousand
    /// pointers at a million keys, and a batch (an import, a sync) costs
    /// in proportion to the shards it touches, never a rebuild. A replaced
    /// key's live last-use times carry over to its new entry.
    // `Slot` hashes and compares only the entry's id, which never changes;
    // the interior mutability is the last-use atomics.
    #[allow(clippy::mutable_key_type)]
    pub(crate) fn apply(&self, changes: &[Change], interner: &mut Interner) -> Self {
        let mut touched: HashMap<usize, Shard> = HashMap::new();
        let mut len = self.len;
        let mut blocked = self.blocked.clone();
        let mut pending = self.pending.clone();
        for change in changes {
            match change {
                Change::Upsert(record) => {
                    match &record.hash {
                        // A proof already made for the same bcrypt hash
                        // stays (an unchanged re-import while it is in
                        // flight); a new hash starts over.
                        KeyHash::Bcrypt(bcrypt) => {
                            if pending.get(&record.id).is_none_or(|p| p.bcrypt() != bcrypt) {
                                pending.insert(record.id, Arc::new(Pending::new(bcrypt.clone())));
                            }
                        }
                        KeyHash::Blake3(_) => {
                            pending.remove(&record.id);
                        }
                    }
                    let entry = Entry::interned(record, interner);
                    let index = shard_of(&entry.id);
                    let shard = touched
                        .entry(index)
                        .or_insert_with(|| self.shard_copy(index));
                    if let Some(old) = shard.get(&entry.id) {
                        entry.carry_uses(&old.0);
                    }
                    if shard.replace(Slot(entry)).is_none() {
                        len += 1;
                    }
                }
                Change::Remove(id) => {
                    pending.remove(id);
                    let index = shard_of(id);
                    let present = match touched.get(&index) {
                        Some(shard) => shard.contains(id),
                        None => self.shards.get(index).is_some_and(|s| s.contains(id)),
                    };
                    if present {
                        let shard = touched
                            .entry(index)
                            .or_insert_with(|| self.shard_copy(index));
                        shard.remove(id);
                        len = len.saturating_sub(1);
                    }
                }
                Change::Block {
                    user,
                    blocked: block,
                    by,
                } => {
                    let flags = blocked.get(user).copied().unwrap_or(0);
                    match with_block(flags, *by, *block) {
                        0 => {
                            blocked.remove(user);
                        }
                        flags => {
                            blocked.insert(user.clone(), flags);
                        }
                    }
                }
            }
        }
        let shards = if touched.is_empty() {
            self.shards.clone()
        } else {
            let mut shards: Vec<Arc<Shard>> = self.shards.to_vec();
            for (index, shard) in touched {
                if let Some(slot) = shards.get_mut(index) {
                    *slot = Arc::new(shard);
                }
            }
            shards.into()
        };
        Snapshot {
            shards,
            len,
            blocked,
            pending,
        }
    }

    /// A copy of shard `index`, to change.
    // See `apply`.
    #[allow(clippy::mutable_key_type)]
    fn shard_copy(&self, index: usize) -> Shard {
        self.shards
            .get(index)
            .map(|shard| Shard::clone(shard))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ApiKey, KeyHash, Origin};
    use crate::scope::Scope;

    fn record(key: &ApiKey, user: &str) -> KeyRecord {
        KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: UserId::parse(user).unwrap(),
            name: "n".into(),
            scope: Scope::parse("/api/").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: Some(Timestamp::from_unix(100)),
            last_used_at: None,
            origin: Origin::Keygate,
            policy: Default::default(),
        }
    }

    #[test]
    fn entries_share_users_and_survive_swaps() {
        let keys: Vec<ApiKey> = (0..3000).map(|_| ApiKey::generate().unwrap()).collect();
        let snapshot = Snapshot::from_records(keys.iter().map(|k| record(k, "alice")), []);
        assert_eq!(snapshot.key_count(), 3000);
        assert_eq!(snapshot.entries().count(), 3000);
        let a = snapshot.entry(&keys[0].id()).unwrap();
        let b = snapshot.entry(&keys[1].id()).unwrap();
        // Shared, not copied: the same user and scope values.
        assert!(std::ptr::eq(a.user_header(), b.user_header()));
        assert!(std::ptr::eq(a.scope(), b.scope()));
        assert_eq!(a.id_header(), keys[0].id().as_str());
        assert_eq!(a.user_header(), "alice");
        assert_eq!(a.expires_at(), Some(Timestamp::from_unix(100)));
        assert!(a.is_expired(Timestamp::from_unix(100)));
        assert!(!a.is_expired(Timestamp::from_unix(99)));

        let now = Timestamp::from_unix(50);
        assert!(matches!(
            snapshot.verify(keys[2].expose().as_bytes(), now),
            Verified::Valid(_)
        ));
        a.touch(now);

        // Replace key 0, remove key 1, add one: the others are untouched.
        let extra = ApiKey::generate().unwrap();
        let mut interner = Interner::default();
        let next = snapshot.apply(
            &[
                Change::Upsert(record(&keys[0], "bob")),
                Change::Remove(keys[1].id()),
                Change::Upsert(record(&extra, "carol")),
            ],
            &mut interner,
        );
        assert_eq!(next.key_count(), 3000);
        assert_eq!(snapshot.key_count(), 3000);
        assert!(next.entry(&keys[1].id()).is_none());
        assert!(snapshot.entry(&keys[1].id()).is_some());
        let replaced = next.entry(&keys[0].id()).unwrap();
        assert_eq!(replaced.user(), "bob");
        assert_eq!(replaced.last_used(), Some(now));
        // An untouched key is the same entry in both snapshots.
        let same = keys[2].id();
        assert!(std::ptr::eq(
            snapshot.entry(&same).unwrap(),
            next.entry(&same).unwrap()
        ));
        assert_eq!(next.entries().count(), 3000);
        // Removing what is not there changes nothing.
        let again = next.apply(&[Change::Remove(keys[1].id())], &mut interner);
        assert_eq!(again.key_count(), 3000);
        // Blocking shares every shard.
        let alice = UserId::parse("alice").unwrap();
        let blocking = next.apply(
            &[Change::Block {
                user: alice.clone(),
                blocked: true,
                by: Blocker::Admin,
            }],
            &mut interner,
        );
        assert!(blocking.is_blocked("alice") && !next.is_blocked("alice"));
        assert!(std::ptr::eq(
            blocking.entry(&same).unwrap(),
            next.entry(&same).unwrap()
        ));
        let unblocked = blocking.apply(
            &[
                Change::Block {
                    user: alice.clone(),
                    blocked: true,
                    by: Blocker::Haplo,
                },
                Change::Block {
                    user: alice.clone(),
                    blocked: false,
                    by: Blocker::Admin,
                },
            ],
            &mut interner,
        );
        assert!(unblocked.is_blocked("alice"), "Haplo still blocks");
        let unblocked = unblocked.apply(
            &[Change::Block {
                user: alice,
                blocked: false,
                by: Blocker::Haplo,
            }],
            &mut interner,
        );
        assert!(!unblocked.is_blocked("alice"));
    }

    #[test]
    fn shards_are_balanced() {
        let mut counts = vec![0usize; SHARDS];
        for _ in 0..(SHARDS * 64) {
            counts[shard_of(&ApiKey::generate().unwrap().id())] += 1;
        }
        let max = counts.iter().copied().max().unwrap();
        let min = counts.iter().copied().min().unwrap();
        assert!(max < 128 && min > 20, "min {min} max {max}");
    }
}
