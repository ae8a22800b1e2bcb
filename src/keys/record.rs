//! What the store keeps for one key, and its on-disk encoding.
//!
//! Records are encoded with postcard (compact, schema-less serde) behind a
//! one-byte format version, so a later field can be added as version 2
//! without rewriting the table: the decoder reads both.
//!
//! Start-up decodes a million records, so [`decode_stored`] borrows the
//! strings from the page it reads instead of allocating them: the snapshot
//! keeps only interned copies (see `snapshot.rs`), and the key name and
//! creation time are never copied into memory at all.

use serde::{Deserialize, Serialize};

use super::{KeyId, SecretHash, UserId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// Current record format.
const FORMAT_V1: u8 = 1;

/// One key as stored: everything but the key itself.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// The public id (also the table key).
    pub id: KeyId,
    /// BLAKE3 of the secret part.
    pub hash: SecretHash,
    /// The key's owner.
    pub user: UserId,
    /// A short description chosen by the admin.
    pub name: String,
    /// Which request-targets the key admits.
    pub scope: Scope,
    /// When the key was created.
    pub created_at: Timestamp,
    /// When the key stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When the key last authenticated a request, if known.
    pub last_used_at: Option<Timestamp>,
}

impl KeyRecord {
    /// Whether the key has expired at `now`. A key is refused from the
    /// second its `expires_at` is reached.
    #[inline]
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// Why a stored record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A format byte this build does not know (written by a newer keygate).
    #[error("unknown record format {0}")]
    UnknownFormat(u8),
    /// The bytes do not decode.
    #[error("undecodable record: {0}")]
    Postcard(#[from] postcard::Error),
    /// A field decoded but fails validation.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// One key as a store hands it to the loader: what the snapshot needs,
/// borrowing its strings from wherever the backend read them, and not yet
/// validated (the loader validates each distinct user and scope once).
/// It is the storage seam's row: redb's encoding ([`StoredV1`]) ends where
/// a `KeyRow` begins, and a second backend only has to produce these.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyRow<'a> {
    pub(crate) id: KeyId,
    pub(crate) hash: [u8; 32],
    pub(crate) user: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
}

/// A record as encoded, borrowing its strings from the stored bytes. Not
/// validated: [`KeyRecord::decode`] and the snapshot's interner validate
/// the user and scope.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredV1<'a> {
    pub(crate) hash: [u8; 32],
    pub(crate) user: &'a str,
    pub(crate) name: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
}

/// Decodes a record read from the `keys` table without copying it.
pub(crate) fn decode_stored(bytes: &[u8]) -> Result<StoredV1<'_>, DecodeError> {
    let (&format, body) = bytes
        .split_first()
        .ok_or(DecodeError::Invalid("empty record"))?;
    if format != FORMAT_V1 {
        return Err(DecodeError::UnknownFormat(format));
    }
    Ok(postcard::from_bytes(body)?)
}

impl KeyRecord {
    /// Encodes the record for the `keys` table.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let stored = StoredV1 {
            hash: *self.hash.as_bytes(),
            user: self.user.as_str(),
            name: &self.name,
            scope: self.scope.as_str(),
            created_at: self.created_at.unix(),
            expires_at: self.expires_at.map(Timestamp::unix),
            last_used_at: self.last_used_at.map(Timestamp::unix),
        };
        let mut out = vec![FORMAT_V1];
        out.extend_from_slice(&postcard::to_stdvec(&stored)?);
        Ok(out)
    }

    /// Decodes a record read from the `keys` table under `id`.
    pub(crate) fn decode(id: KeyId, bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_stored(id, &decode_stored(bytes)?)
    }

    /// Validates and copies a decoded record.
    pub(crate) fn from_stored(id: KeyId, stored: &StoredV1<'_>) -> Result<Self, DecodeError> {
        Ok(KeyRecord {
            id,
            hash: SecretHash::from_bytes(stored.hash),
            user: UserId::parse(stored.user).map_err(|_| DecodeError::Invalid("user"))?,
            name: stored.name.to_owned(),
            scope: Scope::parse(stored.scope).map_err(|_| DecodeError::Invalid("scope"))?,
            created_at: Timestamp::from_unix(stored.created_at),
            expires_at: stored.expires_at.map(Timestamp::from_unix),
            last_used_at: stored.last_used_at.map(Timestamp::from_unix),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::ApiKey;

    #[test]
    fn round_trips() {
        let key = ApiKey::generate().unwrap();
        let record = KeyRecord {
            id: key.id(),
            hash: key.secret_hash(),
            user: UserId::parse("alice").unwrap(),
            name: "deploy bot".into(),
            scope: Scope::parse("=/api/x").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: Some(Timestamp::from_unix(2)),
            last_used_at: None,
        };
        let back = KeyRecord::decode(record.id, &record.encode().unwrap()).unwrap();
        assert!(back.hash.matches(&key.secret_hash()));
        assert_eq!(back.user, record.user);
        assert_eq!(back.scope, record.scope);
        assert_eq!(back.expires_at, record.expires_at);
        assert!(matches!(
            KeyRecord::decode(record.id, &[9, 0]),
            Err(DecodeError::UnknownFormat(9))
        ));
    }
}
