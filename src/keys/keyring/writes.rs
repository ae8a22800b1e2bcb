//! The admin API's writes: create, revoke, rotate, block.
//!
//! Each is decided in two steps. `plan_*` reads the store and works out
//! the [`Change`]s, their audit events and the answer ([`Planned`]),
//! writing nothing; then the changes are applied. A single keygate does
//! both under its writer lock (`create` and the others below). A fleet
//! replica plans under the fleet-wide write lock, after catching its copy
//! up with the shared table, then commits the changes to PostgreSQL first
//! and applies them locally with their sequence numbers
//! ([`Keyring::apply_synced_with`]): the same decision either way, made
//! against a copy that is up to date.

use super::{
    Action, ApiKey, AuditEvent, Blocker, Change, KeyHash, KeyId, KeyRecord, Keyring, NewKey,
    Origin, Rotated, StoreError, UserId, WriteError,
};
use crate::timestamp::Timestamp;

/// A write worked out but not applied: its changes, their audit events, and
/// what the caller answers once they are applied.
#[derive(Debug)]
pub struct Planned<T> {
    /// The changes, in order.
    pub changes: Vec<Change>,
    /// Their audit events.
    pub events: Vec<AuditEvent>,
    /// The answer.
    pub outcome: T,
}

impl<T> Planned<T> {
    pub(super) fn nothing(outcome: T) -> Self {
        Planned {
            changes: Vec::new(),
            events: Vec::new(),
            outcome,
        }
    }
}

impl Keyring {
    /// Applies a plan under the writer lock already held (single node).
    fn commit<T>(&self, writer: &mut super::Writer, plan: Planned<T>) -> Result<T, StoreError> {
        self.publish(writer, &plan.changes, &plan.events)?;
        Ok(plan.outcome)
    }

    /// Plans a write with `plan` and applies it, under the writer lock
    /// (single node): durable and in effect when this returns.
    pub fn write_planned<T>(
        &self,
        plan: impl FnOnce(&Keyring) -> Result<Planned<T>, WriteError>,
    ) -> Result<T, WriteError> {
        let mut writer = self.writer();
        let planned = plan(self)?;
        Ok(self.commit(&mut writer, planned)?)
    }

    /// Creates a key: durable and in effect when this returns. `client` is
    /// the admin client's address, for the audit trail.
    pub fn create(
        &self,
        new: NewKey,
        client: Option<&str>,
    ) -> Result<(ApiKey, KeyRecord), WriteError> {
        let mut writer = self.writer();
        let plan = self.plan_create(new, client)?;
        Ok(self.commit(&mut writer, plan)?)
    }

    /// Revokes a key: refused by every request that starts after this
    /// returns. `None` if no such key.
    pub fn revoke(&self, id: KeyId, client: Option<&str>) -> Result<Option<KeyRecord>, WriteError> {
        let mut writer = self.writer();
        let plan = self.plan_revoke(id, client)?;
        Ok(self.commit(&mut writer, plan)?)
    }

    /// Rotates a key: a new key with the same user, name, scope and expiry;
    /// the old one keeps working for `grace_secs` (revoked at once when 0).
    /// `None` if no such key.
    pub fn rotate(
        &self,
        id: KeyId,
        grace_secs: u64,
        client: Option<&str>,
    ) -> Result<Option<Rotated>, WriteError> {
        let mut writer = self.writer();
        let plan = self.plan_rotate(id, grace_secs, client)?;
        Ok(self.commit(&mut writer, plan)?)
    }

    /// Blocks or unblocks a user as keygate's admin (a block by Haplo
    /// stays in force until Haplo lifts it).
    pub fn set_blocked(
        &self,
        user: &UserId,
        blocked: bool,
        client: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut writer = self.writer();
        let plan = self.plan_block(user, blocked, client);
        self.commit(&mut writer, plan)
    }

    /// A new key whose id the store does not hold. A 96-bit id collision
    /// is practically impossible, but cheap to rule out; the store, not the
    /// snapshot, is asked, since changes may arrive from elsewhere.
    fn fresh_key(&self) -> Result<ApiKey, WriteError> {
        loop {
            let key = ApiKey::generate().map_err(WriteError::Random)?;
            if self.store.key(key.id())?.is_none() {
                return Ok(key);
            }
        }
    }

    /// Works out a key's creation. The caller serialises writes.
    pub fn plan_create(
        &self,
        new: NewKey,
        client: Option<&str>,
    ) -> Result<Planned<(ApiKey, KeyRecord)>, WriteError> {
        let key = self.fresh_key()?;
        let now = self.clock().now();
        let record = KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: new.user,
            name: new.name,
            scope: new.scope,
            created_at: now,
            expires_at: new.expires_at,
            last_used_at: None,
            origin: Origin::Keygate,
            policy: new.policy,
        };
        let mut event = AuditEvent::for_key(Action::KeyCreated, &record, now, client);
        if !record.policy.is_empty() {
            event.after = serde_json::to_value(record.policy.view()).ok();
        }
        Ok(Planned {
            events: vec![event],
            changes: vec![Change::Upsert(record.clone())],
            outcome: (key, record),
        })
    }

    /// Works out a key's revocation (nothing, if there is no such key).
    pub fn plan_revoke(
        &self,
        id: KeyId,
        client: Option<&str>,
    ) -> Result<Planned<Option<KeyRecord>>, WriteError> {
        let Some(record) = self.store.key(id)? else {
            return Ok(Planned::nothing(None));
        };
        owned_here(&record)?;
        Ok(Planned {
            events: vec![AuditEvent::for_key(
                Action::KeyRevoked,
                &record,
                self.clock().now(),
                client,
            )],
            changes: vec![Change::Remove(id)],
            outcome: Some(record),
        })
    }

    /// Works out a key's rotation (nothing, if there is no such key).
    pub fn plan_rotate(
        &self,
        id: KeyId,
        grace_secs: u64,
        client: Option<&str>,
    ) -> Result<Planned<Option<Rotated>>, WriteError> {
        let Some(old) = self.store.key(id)? else {
            return Ok(Planned::nothing(None));
        };
        owned_here(&old)?;
        let key = self.fresh_key()?;
        let now = self.clock().now();
        let record = KeyRecord {
            id: key.id(),
            hash: KeyHash::Blake3(key.secret_hash()),
            user: old.user.clone(),
            name: old.name.clone(),
            scope: old.scope.clone(),
            created_at: now,
            expires_at: old.expires_at,
            last_used_at: None,
            origin: Origin::Keygate,
            // Rotation replaces the secret, nothing else.
            policy: old.policy.clone(),
        };
        let kept = (grace_secs > 0).then(|| {
            let until = now.plus_secs(grace_secs);
            let mut kept = old.clone();
            // Never extend a key past its own expiry.
            kept.expires_at = Some(old.expires_at.map_or(until, |at| at.min(until)));
            kept
        });
        let mut event = AuditEvent::for_key(Action::KeyRotated, &old, now, client);
        event.new_key_id = Some(record.id.to_string());
        event.grace_until = kept
            .as_ref()
            .and_then(|k| k.expires_at)
            .map(Timestamp::unix);
        // The kept key's live last-use times carry over (`Snapshot::apply`).
        let old_change = match &kept {
            Some(kept) => Change::Upsert(kept.clone()),
            None => Change::Remove(id),
        };
        Ok(Planned {
            changes: vec![old_change, Change::Upsert(record.clone())],
            events: vec![event],
            outcome: Some(Rotated {
                key,
                record,
                old: kept,
            }),
        })
    }

    /// Works out an admin block or unblock.
    pub fn plan_block(&self, user: &UserId, blocked: bool, client: Option<&str>) -> Planned<()> {
        Planned {
            events: vec![AuditEvent::for_user(
                blocked,
                user.as_str(),
                self.clock().now(),
                client,
            )],
            changes: vec![Change::Block {
                user: user.clone(),
                blocked,
                by: Blocker::Admin,
            }],
            outcome: (),
        }
    }
}

/// Refuses a change through keygate's admin API to a key Haplo owns.
fn owned_here(record: &KeyRecord) -> Result<(), WriteError> {
    match record.origin {
        Origin::Keygate => Ok(()),
        Origin::Haplo { app, .. } => Err(WriteError::OwnedByHaplo { id: record.id, app }),
    }
}
