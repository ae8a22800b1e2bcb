//! Editing a key in place (`PATCH /v1/keys/{id}`): its name, scope, expiry
//! and policies; never its secret, user or id.
//!
//! Like every admin write it is planned against the store (the authority,
//! not the snapshot) and applied as one [`Change::Upsert`] of the whole
//! record, so a fleet replica and a single node decide it the same way and
//! the change replicates like any other. The audit event holds, for each
//! field that changed and only those, its value before and after.
//!
//! A key imported from Haplo keeps the fields Haplo owns (name, scope,
//! expiry: a later sync would undo an edit here), but its policies are
//! keygate's to set: Haplo has none.

use serde_json::{Map, Value};

use super::{Action, AuditEvent, Change, KeyId, KeyRecord, Keyring, Origin, Planned, WriteError};
use crate::keys::policy::{AllowFrom, Methods, Policy, Rate};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// What a `PATCH` changes. `None`: leave as it is; `Some(None)`: remove
/// (an optional field); `Some(Some(v))`: set to `v`.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    /// A new name.
    pub name: Option<String>,
    /// A new scope.
    pub scope: Option<Scope>,
    /// A new expiry, or none.
    pub expires_at: Option<Option<Timestamp>>,
    /// A new rate limit, or none.
    pub rate: Option<Option<Rate>>,
    /// A new address list, or none.
    pub allow_from: Option<Option<AllowFrom>>,
    /// A new method list, or none.
    pub methods: Option<Option<Methods>>,
}

impl KeyUpdate {
    /// `record` with this update applied.
    fn applied_to(self, record: &KeyRecord) -> KeyRecord {
        let mut new = record.clone();
        if let Some(name) = self.name {
            new.name = name;
        }
        if let Some(scope) = self.scope {
            new.scope = scope;
        }
        if let Some(expires_at) = self.expires_at {
            new.expires_at = expires_at;
        }
        let policy: &mut Policy = &mut new.policy;
        if let Some(rate) = self.rate {
            policy.rate = rate;
        }
        if let Some(allow_from) = self.allow_from {
            policy.allow_from = allow_from;
        }
        if let Some(methods) = self.methods {
            policy.methods = methods;
        }
        new
    }
}

impl Keyring {
    /// Edits a key in place: durable and in effect when this returns.
    /// `None` if no such key (never created, or revoked).
    pub fn update(
        &self,
        id: KeyId,
        update: KeyUpdate,
        client: Option<&str>,
    ) -> Result<Option<KeyRecord>, WriteError> {
        self.write_planned(|keyring| keyring.plan_update(id, update, client))
    }

    /// Works out an edit (nothing, if there is no such key or nothing
    /// changes).
    pub fn plan_update(
        &self,
        id: KeyId,
        update: KeyUpdate,
        client: Option<&str>,
    ) -> Result<Planned<Option<KeyRecord>>, WriteError> {
        let Some(old) = self.store.key(id)? else {
            return Ok(Planned::nothing(None));
        };
        let new = update.applied_to(&old);
        if let Origin::Haplo { app, .. } = old.origin {
            let owned = [
                ("name", old.name != new.name),
                ("path", old.scope != new.scope),
                ("expires_at", old.expires_at != new.expires_at),
            ];
            if let Some((field, _)) = owned.into_iter().find(|(_, changed)| *changed) {
                return Err(WriteError::HaploOwnsField { id, app, field });
            }
        }
        let (before, after) = differences(&old, &new);
        if before.is_empty() {
            return Ok(Planned::nothing(Some(old)));
        }
        let mut event = AuditEvent::for_key(Action::KeyUpdated, &new, self.clock().now(), client);
        event.before = Some(Value::Object(before));
        event.after = Some(Value::Object(after));
        Ok(Planned {
            changes: vec![Change::Upsert(new.clone())],
            events: vec![event],
            outcome: Some(new),
        })
    }
}

/// The fields an admin can edit, as the admin API shows them.
pub(crate) fn editable_fields(record: &KeyRecord) -> [(&'static str, Value); 6] {
    let view = record.policy.view();
    [
        ("name", Value::from(record.name.as_str())),
        ("path", Value::from(record.scope.as_str())),
        (
            "expires_at",
            record
                .expires_at
                .map_or(Value::Null, |t| t.to_string().into()),
        ),
        ("rate", to_json(&view.rate)),
        ("allow_from", to_json(&view.allow_from)),
        ("methods", to_json(&view.methods)),
    ]
}

/// The fields that differ between `old` and `new`: their old values and
/// their new ones, in the same order.
pub(crate) fn differences(
    old: &KeyRecord,
    new: &KeyRecord,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut before = Map::new();
    let mut after = Map::new();
    for ((field, was), (_, now)) in editable_fields(old).into_iter().zip(editable_fields(new)) {
        if was != now {
            before.insert(field.to_owned(), was);
            after.insert(field.to_owned(), now);
        }
    }
    (before, after)
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}
