//! A change to the key table, whatever made it.
//!
//! keygate's own admin writes, a batch imported from Haplo, and changes
//! synced from elsewhere (Haplo's tables followed by poll, or a fleet's
//! shared table) are all lists of [`Change`]s. The store applies a list in
//! one transaction ([`super::Store::apply`]) and the snapshot applies the
//! same list in one step ([`super::Snapshot::apply`]), so there is one way
//! to publish a snapshot, and a change reads the same whether it was made
//! here or arrived from outside.
//!
//! Changes carry whole records rather than edits: applying one twice is
//! the same as applying it once, which is what a replica catching up after
//! a gap, or a re-run import, needs.

use super::{KeyId, KeyRecord, UserId};

/// One change to keys or users.
#[derive(Debug, Clone)]
pub enum Change {
    /// A key created, or replaced as a whole (a rotation's grace period,
    /// an import, an edit synced from elsewhere). A replaced key keeps its
    /// recorded last-use time unless the record brings a later one.
    Upsert(KeyRecord),
    /// A key revoked or deleted. Removing a key that is not there is not
    /// an error: it is already in the state the change asks for.
    Remove(KeyId),
    /// A user blocked (`true`) or unblocked, by one authority. A user is
    /// blocked while any authority blocks them: an admin's block survives
    /// Haplo re-activating the user, and the other way round.
    Block {
        /// The user.
        user: UserId,
        /// Whether this authority refuses their keys.
        blocked: bool,
        /// Who blocks or unblocks.
        by: Blocker,
    },
}

/// Who blocked a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// keygate's admin API.
    Admin,
    /// A Haplo application (the user is blocked or deleted there).
    Haplo,
}

impl Blocker {
    /// This authority's bit in a user's block flags (as stored).
    pub(crate) fn bit(self) -> u8 {
        match self {
            Blocker::Admin => 1,
            Blocker::Haplo => 2,
        }
    }

    /// The authorities whose bits are set in `flags`.
    pub fn all_in(flags: u8) -> impl Iterator<Item = Blocker> {
        [Blocker::Admin, Blocker::Haplo]
            .into_iter()
            .filter(move |b| flags & b.bit() != 0)
    }

    /// A name for the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocker::Admin => "admin",
            Blocker::Haplo => "haplo",
        }
    }
}

/// `flags` with `by`'s bit set or cleared.
pub(crate) fn with_block(flags: u8, by: Blocker, blocked: bool) -> u8 {
    if blocked {
        flags | by.bit()
    } else {
        flags & !by.bit()
    }
}

impl Change {
    /// The key this change is about, if it is about a key.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Change::Upsert(record) => Some(record.id),
            Change::Remove(id) => Some(*id),
            Change::Block { .. } => None,
        }
    }
}
