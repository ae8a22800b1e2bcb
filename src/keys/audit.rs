//! The audit trail: who created, revoked and rotated which key, and who
//! blocked or unblocked which user, from which admin client.
//!
//! Events are appended to the store in the same redb transaction as the
//! change they describe, so the trail can never miss a change nor record
//! one that did not happen. They never hold a key or a secret: only ids,
//! the user, the key's name and scope. Stored as JSON (not on any hot
//! path, and readable with any redb tool), keyed by a sequence number that
//! pages the `GET /v1/audit` listing.

use serde::{Deserialize, Serialize};

use super::KeyRecord;
use crate::timestamp::Timestamp;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A key was created.
    KeyCreated,
    /// A key was revoked.
    KeyRevoked,
    /// A key was rotated: `key_id` is the old key, `new_key_id` the new.
    KeyRotated,
    /// A user was blocked.
    UserBlocked,
    /// A user was unblocked.
    UserUnblocked,
    /// A key was imported from Haplo.
    KeyImported,
    /// A key changed: edited through the admin API (`before` and `after`
    /// hold the fields that changed), or changed in Haplo (scope, name,
    /// user, secret) and synced.
    KeyUpdated,
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When (Unix seconds).
    pub time: i64,
    /// What.
    pub action: Action,
    /// The key concerned (the old one, for a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The new key, for a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_id: Option<String>,
    /// The user concerned.
    pub user: String,
    /// The key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The key's scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Until when the old key of a rotation keeps working (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_until: Option<i64>,
    /// The admin client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// For an edit, the fields it changed as they were; for a creation,
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// For an edit, the fields it changed as they are now; for a creation,
    /// the key's policies, when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
}

impl AuditEvent {
    /// An event about one key.
    pub(crate) fn for_key(
        action: Action,
        record: &KeyRecord,
        at: Timestamp,
        client: Option<&str>,
    ) -> Self {
        AuditEvent {
            time: at.unix(),
            action,
            key_id: Some(record.id.to_string()),
            new_key_id: None,
            user: record.user.to_string(),
            name: Some(record.name.clone()),
            path: Some(record.scope.as_str().to_owned()),
            grace_until: None,
            client: client.map(str::to_owned),
            before: None,
            after: None,
        }
    }

    /// An event about a user.
    pub(crate) fn for_user(blocked: bool, user: &str, at: Timestamp, client: Option<&str>) -> Self {
        AuditEvent {
            time: at.unix(),
            action: if blocked {
                Action::UserBlocked
            } else {
                Action::UserUnblocked
            },
            key_id: None,
            new_key_id: None,
            user: user.to_owned(),
            name: None,
            path: None,
            grace_until: None,
            client: client.map(str::to_owned),
            before: None,
            after: None,
        }
    }
}
