//! Keys imported from Haplo that no one has presented yet, and the state of
//! their one bcrypt check.
//!
//! Such a key has only Haplo's bcrypt hash until the right secret arrives.
//! Its [`Entry`](super::Entry) holds the decoy hash, which no secret
//! matches, and the snapshot keeps the bcrypt hash here, beside the
//! entries rather than in them: a snapshot holds a million entries of 88
//! bytes, and a field every key carried for the sake of a few imported,
//! not-yet-used ones would cost every deployment about 16 MB per million
//! keys. Most snapshots have no pending key at all, and the request path
//! looks here only after a hash did not match.
//!
//! When bcrypt accepts a secret, its BLAKE3 hash is set here at once (so
//! the next request is checked with BLAKE3), and the keyring's flush then
//! writes it to the store, which replaces the entry and drops it from
//! this table.

use std::fmt;
use std::sync::OnceLock;

use super::{BcryptHash, SecretHash};

/// One imported key waiting for, or just past, its bcrypt check.
pub(crate) struct Pending {
    bcrypt: BcryptHash,
    /// BLAKE3 of the secret bcrypt accepted; set once.
    proven: OnceLock<SecretHash>,
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("proven", &self.proven.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Pending {
    pub(crate) fn new(bcrypt: BcryptHash) -> Self {
        Pending {
            bcrypt,
            proven: OnceLock::new(),
        }
    }

    /// The bcrypt hash to check a presented secret against.
    pub(crate) fn bcrypt(&self) -> &BcryptHash {
        &self.bcrypt
    }

    /// The BLAKE3 hash of the proven secret, once bcrypt has accepted one.
    pub(crate) fn proven(&self) -> Option<&SecretHash> {
        self.proven.get()
    }

    /// Records that bcrypt accepted the secret hashing to `hash`, if this
    /// is still the bcrypt hash that was checked (the key may have been
    /// replaced while bcrypt ran).
    pub(crate) fn prove(&self, checked: &BcryptHash, hash: SecretHash) {
        if self.bcrypt == *checked {
            let _ = self.proven.set(hash);
        }
    }
}
