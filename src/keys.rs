//! API keys: their format, how they are stored, and the snapshot that the
//! request path reads.
//!
//! The pieces, from the bytes on the wire to the bytes on disk:
//!
//! - [`ApiKey`] / [`PresentedKey`]: Haplo's 44-character format, split into a
//!   public 16-character [`KeyId`] and a 28-character secret.
//! - [`SecretHash`]: the one-way BLAKE3 hash of a secret, compared in constant
//!   time. The key itself is never stored.
//! - [`UserId`]: the owner of a key, validated once at the edge.
//! - [`KeyRecord`]: what the store holds for one key.
//! - [`Store`]: the redb file. Only the [`Keyring`] writes to it.
//! - [`Snapshot`]: an immutable, structurally shared view of all keys and
//!   blocked users, holding per key only what the request path reads
//!   ([`Entry`]). The request path reads it without locks or I/O.
//! - [`policy`]: a key's optional rate limit, source addresses and methods
//!   (SPEC 11); [`Access`]: its scope and policies as the request path
//!   checks them.
//! - `intern`: one shared copy of each user and scope for all their keys.
//! - [`Change`]: one change to keys or users, made here or arriving from
//!   elsewhere; stores and snapshots apply lists of them.
//! - [`Keyring`]: commits each list of changes durably, then publishes a new
//!   snapshot with a single atomic swap; also rotation and last-use flushing.
//! - [`AuditEvent`]: the trail of every change, written in the change's own
//!   transaction.

mod access;
mod audit;
mod change;
mod entry;
mod hash;
mod intern;
mod key;
mod keyring;
mod pending;
pub mod policy;
mod record;
mod snapshot;
mod store;
mod user;

pub use access::{Access, Breach, Limits, Quota};
pub use audit::{Action, AuditEvent};
pub use change::{Blocker, Change};
pub use entry::Entry;
pub use hash::{BcryptHash, BcryptHashError, KeyHash};

pub use key::{ApiKey, KeyId, PresentedKey, SecretHash, ID_LEN, KEY_LEN};
pub use keyring::{
    Flushed, HaploBatch, HaploKeyRow, HaploUserRow, ImportReport, KeyUpdate, Keyring, Missing,
    NewKey, Planned, Rotated, Skipped, WriteError,
};
pub use record::{KeyRecord, Origin};
pub use snapshot::{Snapshot, Verified, SHARDS};
pub use store::{AuditFrom, Contents, Store, StoreError, CACHE_BYTES};
pub use user::{UserId, UserIdError};
