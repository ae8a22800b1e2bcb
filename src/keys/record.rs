//! What the store keeps for one key, and its on-disk encoding.
//!
//! Records are encoded with postcard (compact, schema-less serde) behind a
//! one-byte format version, so a later field can be added without
//! rewriting the table: the decoder reads every version. Version 1 is a
//! keygate key (a BLAKE3 hash); version 2 adds what a key imported from
//! Haplo needs (its bcrypt hash, and no BLAKE3 hash until first use);
//! version 3 is version 2 followed by the key's policies (SPEC 11). Each
//! key is written in the oldest version that holds it, so a store without
//! Haplo keys or policies stays readable by the keygates before them.
//!
//! Start-up decodes a million records, so [`decode_stored`] borrows the
//! strings from the page it reads instead of allocating them: the snapshot
//! keeps only interned copies (see `snapshot.rs`), and the key name and
//! creation time are never copied into memory at all.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::policy::{AllowFrom, Methods, Policy, Rate};
use super::{BcryptHash, KeyHash, KeyId, SecretHash, UserId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// A keygate key.
const FORMAT_V1: u8 = 1;
/// Any key without policies; needed for keys imported from Haplo.
const FORMAT_V2: u8 = 2;
/// Any key; needed for keys with policies.
const FORMAT_V3: u8 = 3;

/// Who owns a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Issued by keygate, and managed through its admin API.
    Keygate,
    /// Imported from (or followed in) a Haplo application. Haplo owns it:
    /// keygate's admin API does not change it.
    Haplo {
        /// The application's id.
        app: u32,
        /// The bcrypt hash Haplo stores for it. Kept after the key's first
        /// use (when keygate's own hash becomes BLAKE3), so that a sync can
        /// tell an unchanged key from one Haplo replaced.
        bcrypt: BcryptHash,
    },
}

/// One key as stored: everything but the key itself.
#[derive(Clone, Debug)]
pub struct KeyRecord {
    /// The public id (also the table key).
    pub id: KeyId,
    /// What the secret part is checked against.
    pub hash: KeyHash,
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
    /// Who owns the key.
    pub origin: Origin,
    /// Rate limit, source addresses and methods, each optional.
    pub policy: Policy,
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
    pub(crate) hash: RowHash<'a>,
    pub(crate) user: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
    /// Validated (policies are rare, and small).
    pub(crate) policy: &'a Policy,
}

/// What a [`KeyRow`]'s secret is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowHash<'a> {
    Blake3([u8; 32]),
    Bcrypt(&'a str),
}

/// A record as encoded in version 1, borrowing its strings from the
/// stored bytes.
#[derive(Serialize, Deserialize)]
struct StoredV1<'a> {
    hash: [u8; 32],
    user: &'a str,
    name: &'a str,
    scope: &'a str,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

/// A record as encoded in version 2.
#[derive(Serialize, Deserialize)]
struct StoredV2<'a> {
    /// `None` for an imported key not yet used: its `haplo.bcrypt` is
    /// then what the secret is checked against.
    blake3: Option<[u8; 32]>,
    user: &'a str,
    name: &'a str,
    scope: &'a str,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    #[serde(borrow)]
    haplo: Option<StoredHaplo<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredHaplo<'a> {
    app: u32,
    bcrypt: &'a str,
}

/// A record as encoded in version 3: version 2, then the policies.
#[derive(Serialize, Deserialize)]
struct StoredV3<'a> {
    #[serde(borrow)]
    base: StoredV2<'a>,
    policy: StoredPolicy,
}

/// A key's policies as encoded (an empty list is no policy).
#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    /// Requests per second and burst.
    rate: Option<(f64, u32)>,
    /// Blocks as address and prefix length.
    allow_from: Vec<(IpAddr, u8)>,
    /// [`Methods`] bits (0: no list).
    methods: u16,
}

impl StoredPolicy {
    fn of(policy: &Policy) -> Self {
        StoredPolicy {
            rate: policy.rate.map(|r| (r.per_second(), r.burst())),
            allow_from: policy
                .allow_from
                .as_ref()
                .map(|list| {
                    list.nets()
                        .iter()
                        .map(|net| (net.addr(), net.prefix_len()))
                        .collect()
                })
                .unwrap_or_default(),
            methods: policy.methods.map_or(0, Methods::bits),
        }
    }

    /// Validates the stored policies with the constructors the admin API
    /// uses, so a record cannot hold what an admin could not set.
    fn validate(self) -> Result<Policy, DecodeError> {
        let invalid = |_| DecodeError::Invalid("policy");
        let rate = match self.rate {
            Some((per_second, burst)) => Some(Rate::new(per_second, Some(burst)).map_err(invalid)?),
            None => None,
        };
        let allow_from = if self.allow_from.is_empty() {
            None
        } else {
            let nets = self
                .allow_from
                .into_iter()
                .map(|(addr, len)| {
                    IpNet::new(addr, len).map_err(|_| DecodeError::Invalid("policy"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(AllowFrom::from_nets(nets).map_err(invalid)?)
        };
        Ok(Policy {
            rate,
            allow_from,
            methods: Methods::from_bits(self.methods).map_err(invalid)?,
        })
    }
}

/// A stored record of any version, borrowing its strings from the stored
/// bytes. Not validated: [`KeyRecord::decode`] and the snapshot's interner
/// validate the user and scope.
pub(crate) struct Stored<'a> {
    pub(crate) hash: RowHash<'a>,
    pub(crate) user: &'a str,
    pub(crate) name: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) created_at: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) last_used_at: Option<i64>,
    /// The Haplo application and bcrypt hash of an imported key.
    pub(crate) haplo: Option<(u32, &'a str)>,
    /// The key's policies (empty before version 3).
    pub(crate) policy: Policy,
}

/// Decodes a record read from the `keys` table without copying it.
pub(crate) fn decode_stored(bytes: &[u8]) -> Result<Stored<'_>, DecodeError> {
    let (&format, body) = bytes
        .split_first()
        .ok_or(DecodeError::Invalid("empty record"))?;
    match format {
        FORMAT_V1 => {
            let v1: StoredV1<'_> = postcard::from_bytes(body)?;
            Ok(Stored {
                hash: RowHash::Blake3(v1.hash),
                user: v1.user,
                name: v1.name,
                scope: v1.scope,
                created_at: v1.created_at,
                expires_at: v1.expires_at,
                last_used_at: v1.last_used_at,
                haplo: None,
                policy: Policy::default(),
            })
        }
        FORMAT_V2 => from_v2(postcard::from_bytes(body)?, Policy::default()),
        FORMAT_V3 => {
            let v3: StoredV3<'_> = postcard::from_bytes(body)?;
            from_v2(v3.base, v3.policy.validate()?)
        }
        other => Err(DecodeError::UnknownFormat(other)),
    }
}

/// A version 2 body (alone, or the start of version 3) with `policy`.
fn from_v2(v2: StoredV2<'_>, policy: Policy) -> Result<Stored<'_>, DecodeError> {
    let haplo = v2.haplo.map(|h| (h.app, h.bcrypt));
    let hash = match (v2.blake3, haplo) {
        (Some(hash), _) => RowHash::Blake3(hash),
        (None, Some((_, bcrypt))) => RowHash::Bcrypt(bcrypt),
        (None, None) => return Err(DecodeError::Invalid("hash")),
    };
    Ok(Stored {
        hash,
        user: v2.user,
        name: v2.name,
        scope: v2.scope,
        created_at: v2.created_at,
        expires_at: v2.expires_at,
        last_used_at: v2.last_used_at,
        haplo,
        policy,
    })
}

impl KeyRecord {
    /// Encodes the record for the `keys` table in the oldest version that
    /// holds it: 1 for a keygate key, 2 for a key from Haplo, 3 for a key
    /// with policies.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        let common = (
            self.user.as_str(),
            self.name.as_str(),
            self.scope.as_str(),
            self.created_at.unix(),
            self.expires_at.map(Timestamp::unix),
            self.last_used_at.map(Timestamp::unix),
        );
        let (user, name, scope, created_at, expires_at, last_used_at) = common;
        match (&self.hash, &self.origin) {
            (KeyHash::Blake3(hash), Origin::Keygate) if self.policy.is_empty() => {
                let stored = StoredV1 {
                    hash: *hash.as_bytes(),
                    user,
                    name,
                    scope,
                    created_at,
                    expires_at,
                    last_used_at,
                };
                let mut out = vec![FORMAT_V1];
                out.extend_from_slice(&postcard::to_stdvec(&stored)?);
                Ok(out)
            }
            (hash, origin) => {
                let haplo = match origin {
                    Origin::Haplo { app, bcrypt } => Some(StoredHaplo {
                        app: *app,
                        bcrypt: bcrypt.as_str(),
                    }),
                    Origin::Keygate => None,
                };
                let base = StoredV2 {
                    blake3: hash.blake3().map(|h| *h.as_bytes()),
                    user,
                    name,
                    scope,
                    created_at,
                    expires_at,
                    last_used_at,
                    haplo,
                };
                if self.policy.is_empty() {
                    let mut out = vec![FORMAT_V2];
                    out.extend_from_slice(&postcard::to_stdvec(&base)?);
                    return Ok(out);
                }
                let stored = StoredV3 {
                    base,
                    policy: StoredPolicy::of(&self.policy),
                };
                let mut out = vec![FORMAT_V3];
                out.extend_from_slice(&postcard::to_stdvec(&stored)?);
                Ok(out)
            }
        }
    }

    /// Decodes a record read from the `keys` table under `id`.
    pub(crate) fn decode(id: KeyId, bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_stored(id, &decode_stored(bytes)?)
    }

    /// Validates and copies a decoded record.
    pub(crate) fn from_stored(id: KeyId, stored: &Stored<'_>) -> Result<Self, DecodeError> {
        let bcrypt =
            |text: &str| BcryptHash::parse(text).map_err(|_| DecodeError::Invalid("bcrypt hash"));
        Ok(KeyRecord {
            id,
            hash: match stored.hash {
                RowHash::Blake3(bytes) => KeyHash::Blake3(SecretHash::from_bytes(bytes)),
                RowHash::Bcrypt(text) => KeyHash::Bcrypt(bcrypt(text)?),
            },
            user: UserId::parse(stored.user).map_err(|_| DecodeError::Invalid("user"))?,
            name: stored.name.to_owned(),
            scope: Scope::parse(stored.scope).map_err(|_| DecodeError::Invalid("scope"))?,
            created_at: Timestamp::from_unix(stored.created_at),
            expires_at: stored.expires_at.map(Timestamp::from_unix),
            last_used_at: stored.last_used_at.map(Timestamp::from_unix),
            origin: match stored.haplo {
                Some((app, text)) => Origin::Haplo {
                    app,
                    bcrypt: bcrypt(text)?,
                },
                None => Origin::Keygate,
            },
            policy: stored.policy.clone(),
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
            hash: KeyHash::Blake3(key.secret_hash()),
            user: UserId::parse("alice").unwrap(),
            name: "deploy bot".into(),
            scope: Scope::parse("=/api/x").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: Some(Timestamp::from_unix(2)),
            last_used_at: None,
            origin: Origin::Keygate,
            policy: Policy::default(),
        };
        let encoded = record.encode().unwrap();
        assert_eq!(
            encoded[0], FORMAT_V1,
            "a keygate key stays readable by older builds"
        );
        let back = KeyRecord::decode(record.id, &encoded).unwrap();
        assert!(back.hash.blake3().unwrap().matches(&key.secret_hash()));
        assert_eq!(back.user, record.user);
        assert_eq!(back.scope, record.scope);
        assert_eq!(back.expires_at, record.expires_at);
        assert!(matches!(
            KeyRecord::decode(record.id, &[9, 0]),
            Err(DecodeError::UnknownFormat(9))
        ));
    }

    #[test]
    fn imported_keys_round_trip_before_and_after_their_upgrade() {
        let key = ApiKey::generate().unwrap();
        let bcrypt =
            BcryptHash::parse("$2a$05$abcdefghijklmnopqrstuu5a7tXDgqzOMWeLYoTBQ0mOg4bcAyv8C")
                .unwrap();
        let mut record = KeyRecord {
            id: key.id(),
            hash: KeyHash::Bcrypt(bcrypt.clone()),
            user: UserId::parse("1234").unwrap(),
            name: "from haplo".into(),
            scope: Scope::parse("/api/").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: None,
            last_used_at: None,
            origin: Origin::Haplo {
                app: 4000,
                bcrypt: bcrypt.clone(),
            },
            policy: Policy::default(),
        };
        let back = KeyRecord::decode(record.id, &record.encode().unwrap()).unwrap();
        assert!(matches!(&back.hash, KeyHash::Bcrypt(b) if *b == bcrypt));
        assert_eq!(back.origin, record.origin);
        record.hash = KeyHash::Blake3(key.secret_hash());
        let back = KeyRecord::decode(record.id, &record.encode().unwrap()).unwrap();
        assert!(back.hash.blake3().unwrap().matches(&key.secret_hash()));
        assert_eq!(back.origin, record.origin, "the bcrypt hash is kept");
    }

    #[test]
    fn policies_round_trip_in_version_3_and_only_then() {
        let key = ApiKey::generate().unwrap();
        let policy = Policy {
            rate: Some(Rate::new(2.5, Some(7)).unwrap()),
            allow_from: Some(AllowFrom::parse(&["10.0.0.0/8", "2001:db8::/64"]).unwrap()),
            methods: Some(Methods::parse(&["GET", "HEAD"]).unwrap()),
        };
        let record = KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: UserId::parse("alice").unwrap(),
            name: "reader".into(),
            scope: Scope::parse("/api/").unwrap(),
            created_at: Timestamp::from_unix(1),
            expires_at: None,
            last_used_at: None,
            origin: Origin::Keygate,
            policy: policy.clone(),
        };
        let encoded = record.encode().unwrap();
        assert_eq!(encoded[0], FORMAT_V3);
        let back = KeyRecord::decode(record.id, &encoded).unwrap();
        assert_eq!(back.policy, policy);
        assert_eq!(back.name, "reader");
        // Only the policies need version 3.
        let mut plain = back.clone();
        plain.policy = Policy::default();
        assert_eq!(plain.encode().unwrap()[0], FORMAT_V1);
        // A stored policy an admin could not have set does not load.
        let mut bad = encoded.clone();
        let last = bad.len() - 1;
        bad[last] = 0xff;
        assert!(KeyRecord::decode(record.id, &bad).is_err());
    }
}
