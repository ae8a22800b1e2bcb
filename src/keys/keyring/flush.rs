//! What the keyring learns on the request path and writes later, in
//! batches: last-use times, and the BLAKE3 hashes of keys imported from
//! Haplo once bcrypt has proven them.
//!
//! Both are recorded in memory first (atomics and a once-cell on the
//! entry), so the request path never waits for the store, and written by
//! the periodic flush. A crash between the two loses only what the next
//! use records again: a last-use time, or one more bcrypt check.

use super::{Change, KeyHash, KeyId, Keyring, PresentedKey, SecretHash, StoreError};
use crate::timestamp::Timestamp;

/// What a flush wrote.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Keys written (last-use times and upgraded hashes).
    pub written: usize,
    /// The last-use times written.
    pub uses: Vec<(KeyId, Timestamp)>,
}

impl Keyring {
    /// Writes every last-use time recorded since the previous flush, in one
    /// transaction, and the BLAKE3 hashes of imported keys proven since
    /// then (see [`Keyring::prove_bcrypt`]). Returns how many keys were
    /// written.
    ///
    /// The scan for unwritten uses (every key: about 0.1 s at a million)
    /// runs before the writer lock is taken, so admin writes only wait for
    /// the batch commit itself. After revocations, it also lets the interner
    /// forget users and scopes that no key has any more.
    pub fn flush_last_used(&self) -> Result<usize, StoreError> {
        self.flush().map(|flushed| flushed.written)
    }

    /// [`Keyring::flush_last_used`], also returning the last-use times it
    /// wrote (a fleet replica merges them into the shared table).
    pub fn flush(&self) -> Result<Flushed, StoreError> {
        let scanned = self.current.load_full();
        let mut batch: Vec<(KeyId, Timestamp)> = Vec::new();
        for entry in scanned.entries() {
            if let Some(at) = entry.unpersisted_use() {
                batch.push((entry.id(), at));
            }
        }
        let upgraded: Vec<(KeyId, SecretHash)> = scanned
            .pending_keys()
            .filter_map(|(id, pending)| pending.proven().map(|hash| (*id, *hash)))
            .collect();
        drop(scanned);
        let mut writer = self.writer();
        if writer.removed {
            // A snapshot still held elsewhere may keep an entry (and its
            // user) alive a little longer; such a user is kept until the
            // next prune, which is harmless.
            writer.interner.prune();
            writer.removed = false;
        }
        let upgrades = self.upgrades(&upgraded)?;
        self.publish(&mut writer, &upgrades, &[])?;
        if batch.is_empty() {
            return Ok(Flushed {
                written: upgrades.len(),
                uses: batch,
            });
        }
        self.store.record_last_used(&batch)?;
        // Mark on the entries now published: they are the same `Arc`s
        // unless a key changed meanwhile, and a changed key carries its
        // times over (see `Snapshot::apply`).
        let current = self.current.load_full();
        for (id, at) in &batch {
            if let Some(entry) = current.entry(id) {
                entry.mark_persisted(*at);
            }
        }
        Ok(Flushed {
            written: batch.len() + upgrades.len(),
            uses: batch,
        })
    }

    /// The stored records of keys proven with bcrypt, with their BLAKE3
    /// hash in place of the bcrypt one. A key replaced or removed since it
    /// was proven (a sync, an import) is left as the store has it.
    fn upgrades(&self, proven: &[(KeyId, SecretHash)]) -> Result<Vec<Change>, StoreError> {
        let current = self.current.load_full();
        let mut changes = Vec::with_capacity(proven.len());
        for (id, hash) in proven {
            // Under the writer lock, so the snapshot in force is the store:
            // a key replaced since it was proven has a new pending state.
            let same_key = current
                .pending(id)
                .and_then(|pending| pending.proven())
                .is_some_and(|proven| proven.matches(hash));
            if !same_key {
                continue;
            }
            if let Some(mut record) = self.store.key(*id)? {
                if matches!(record.hash, KeyHash::Bcrypt(_)) {
                    record.hash = KeyHash::Blake3(*hash);
                    changes.push(Change::Upsert(record));
                }
            }
        }
        Ok(changes)
    }

    /// Proves a presented key against its bcrypt hash, for a key imported
    /// from Haplo and not yet used. Slow by design (bcrypt's cost): callers
    /// run it on the blocking pool, a bounded number at a time. On success
    /// the key's entry is upgraded in memory at once, so the request that
    /// asked (and every later one) is checked with BLAKE3; the store learns
    /// the new hash at the next flush. Returns whether the key is proven
    /// (also when another request proved it meanwhile).
    pub fn prove_bcrypt(&self, presented: &[u8]) -> bool {
        let Some(key) = PresentedKey::parse(presented) else {
            return false;
        };
        let bcrypt = {
            let snapshot = self.current.load();
            match snapshot.pending(&key.id()) {
                // Not an imported key waiting for bcrypt (any more): the
                // caller's next check decides.
                None => return snapshot.entry(&key.id()).is_some(),
                Some(pending) if pending.proven().is_some() => return true,
                Some(pending) => pending.bcrypt().clone(),
            }
        };
        if !bcrypt.verify(key.secret()) {
            return false;
        }
        // The snapshot may have been swapped while bcrypt ran; record the
        // proof on the state in force now, if it is still for this hash.
        if let Some(pending) = self.current.load().pending(&key.id()) {
            pending.prove(&bcrypt, key.secret_hash());
        }
        true
    }
}
