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

use serde::{Deserialize, Serialize};

use super::record::DecodeError;
use super::{KeyId, KeyRecord, UserId};

/// The format byte of an encoded change.
const CHANGE_V1: u8 = 1;

/// One change to keys or users.
///
/// Nearly every change is an `Upsert`, so the variants' size difference is
/// not waste: boxing the record would cost an allocation per key of a
/// million-key import, to shrink the rare `Remove` and `Block`.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
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

/// A change as encoded: a record travels in the store's own encoding
/// ([`KeyRecord::encode`]), so a replica decodes it exactly as it would
/// read it back from its own file.
#[derive(Serialize, Deserialize)]
enum Encoded<'a> {
    Upsert {
        id: &'a str,
        record: &'a [u8],
    },
    Remove {
        id: &'a str,
    },
    Block {
        user: &'a str,
        blocked: bool,
        by: u8,
    },
}

impl Change {
    /// Encodes the change for a shared change log (a fleet's PostgreSQL):
    /// a format byte, then postcard.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let record;
        let encoded = match self {
            Change::Upsert(r) => {
                record = r.encode()?;
                Encoded::Upsert {
                    id: r.id.as_str(),
                    record: &record,
                }
            }
            Change::Remove(id) => Encoded::Remove { id: id.as_str() },
            Change::Block { user, blocked, by } => Encoded::Block {
                user: user.as_str(),
                blocked: *blocked,
                by: by.bit(),
            },
        };
        let mut out = vec![CHANGE_V1];
        out.extend_from_slice(&postcard::to_stdvec(&encoded)?);
        Ok(out)
    }

    /// Decodes a change written by [`Change::encode`], validating it as
    /// the store validates what it reads.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (&format, body) = bytes
            .split_first()
            .ok_or(DecodeError::Invalid("empty change"))?;
        if format != CHANGE_V1 {
            return Err(DecodeError::UnknownFormat(format));
        }
        let id = |text: &str| KeyId::parse(text).ok_or(DecodeError::Invalid("key id"));
        Ok(match postcard::from_bytes::<Encoded<'_>>(body)? {
            Encoded::Upsert { id: key, record } => {
                Change::Upsert(KeyRecord::decode(id(key)?, record)?)
            }
            Encoded::Remove { id: key } => Change::Remove(id(key)?),
            Encoded::Block { user, blocked, by } => Change::Block {
                user: UserId::parse(user).map_err(|_| DecodeError::Invalid("user"))?,
                blocked,
                by: match by {
                    1 => Blocker::Admin,
                    2 => Blocker::Haplo,
                    _ => return Err(DecodeError::Invalid("blocker")),
                },
            },
        })
    }

    /// The key this change is about, if it is about a key.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Change::Upsert(record) => Some(record.id),
            Change::Remove(id) => Some(*id),
            Change::Block { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{ApiKey, KeyHash, Origin};
    use crate::scope::Scope;
    use crate::timestamp::Timestamp;

    #[test]
    fn changes_round_trip_through_their_encoding() {
        let key = ApiKey::generate().unwrap();
        let record = KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: UserId::parse("alice").unwrap(),
            name: "n".into(),
            scope: Scope::parse("/api/").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: Some(Timestamp::from_unix(9)),
            last_used_at: None,
            origin: Origin::Keygate,
            policy: Default::default(),
        };
        let user = UserId::parse("bob").unwrap();
        for change in [
            Change::Upsert(record.clone()),
            Change::Remove(key.id()),
            Change::Block {
                user: user.clone(),
                blocked: true,
                by: Blocker::Haplo,
            },
        ] {
            let back = Change::decode(&change.encode().unwrap()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{change:?}"));
        }
        assert!(matches!(
            Change::decode(&[9]),
            Err(DecodeError::UnknownFormat(9))
        ));
        assert!(Change::decode(&[]).is_err());
    }
}
