//! Haplo's rows as a batch for the keyring: which user each key acts as,
//! which keys cannot be taken, and which users Haplo refuses.
//!
//! The rules are Haplo's own (`haplo-database.md`):
//!
//! - a key acts as its `user_id`, named in keygate by the decimal id (the
//!   default) or by the user's email (`user_field = "email"`);
//! - Haplo accepts API-key requests only for kinds 0 (user), 3 (super-user)
//!   and 6 (service user); kinds 8 (blocked) and 16 (deleted) keep their
//!   keys but are refused, so those users arrive blocked and their keys
//!   work again if Haplo re-activates them;
//! - a key of a group (kinds 1 and 17), of a missing user, or (with
//!   `email`) of a user with no email cannot act as anyone: skipped, with
//!   the reason.
//!
//! Whether an id, hash or scope is well-formed is the keyring's call (see
//! `keys::keyring::import`), so both one-off imports and the follower get
//! the same checks.

use std::collections::HashMap;
use std::str::FromStr;

use super::{HaploTable, HaploUser};
use crate::keys::{HaploBatch, HaploKeyRow, HaploUserRow, Skipped};

/// How a Haplo user is named in keygate (the identity header's value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserField {
    /// The numeric user id, as a decimal string.
    #[default]
    Id,
    /// The user's email address.
    Email,
}

impl FromStr for UserField {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "id" => Ok(UserField::Id),
            "email" => Ok(UserField::Email),
            other => Err(format!(
                "user_field must be \"id\" or \"email\", not {other:?}"
            )),
        }
    }
}

/// Kinds whose keys Haplo refuses (blocked, deleted).
const REFUSED_KINDS: [i32; 2] = [8, 16];
/// Kinds that are groups, whose keys cannot act as anyone.
const GROUP_KINDS: [i32; 2] = [1, 17];

/// Converts application `app`'s rows into a batch (not a dry run).
pub fn to_batch(table: &HaploTable, app: u32, field: UserField) -> HaploBatch {
    let users: HashMap<i32, &HaploUser> = table.users.iter().map(|u| (u.id, u)).collect();
    let mut batch = HaploBatch {
        app,
        dry_run: false,
        keys: Vec::with_capacity(table.keys.len()),
        users: Vec::new(),
        skipped: Vec::new(),
    };
    let mut named: HashMap<i32, String> = HashMap::new();
    for key in &table.keys {
        let skip = |reason: String| Skipped {
            id: key.a.clone(),
            reason,
        };
        let Some(user) = users.get(&key.user_id) else {
            batch
                .skipped
                .push(skip(format!("its user {} does not exist", key.user_id)));
            continue;
        };
        if GROUP_KINDS.contains(&user.kind) {
            batch
                .skipped
                .push(skip(format!("it belongs to group {}, not a user", user.id)));
            continue;
        }
        let name = match field {
            UserField::Id => user.id.to_string(),
            UserField::Email => match &user.email {
                Some(email) if !email.is_empty() => email.clone(),
                _ => {
                    batch
                        .skipped
                        .push(skip(format!("its user {} has no email", user.id)));
                    continue;
                }
            },
        };
        named.entry(user.id).or_insert_with(|| name.clone());
        batch.keys.push(HaploKeyRow {
            id: key.a.clone(),
            bcrypt: key.b.clone(),
            path: key.path.clone(),
            name: key.name.clone(),
            user: name,
        });
    }
    // Every user who owns a key, with whether Haplo refuses them; ordered
    // by id, so equal tables give equal batches.
    let mut owners: Vec<(i32, String)> = named.into_iter().collect();
    owners.sort_unstable();
    for (id, name) in owners {
        let blocked = users
            .get(&id)
            .is_some_and(|u| REFUSED_KINDS.contains(&u.kind));
        batch.users.push(HaploUserRow {
            user: name,
            blocked,
        });
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::haplo::{Fingerprint, HaploKey};

    fn key(a: &str, user_id: i32) -> HaploKey {
        HaploKey {
            a: a.into(),
            b: "$2a$05$x".into(),
            path: "/api/".into(),
            name: "n".into(),
            user_id,
        }
    }

    fn user(id: i32, kind: i32, email: Option<&str>) -> HaploUser {
        HaploUser {
            id,
            kind,
            email: email.map(str::to_owned),
        }
    }

    fn table() -> HaploTable {
        HaploTable {
            keys: vec![
                key("active", 130),
                key("blocked", 131),
                key("deleted", 132),
                key("service", 133),
                key("group", 4),
                key("orphan", 999),
            ],
            users: vec![
                user(4, 1, None),
                user(130, 0, Some("a@example.org")),
                user(131, 8, Some("b@example.org")),
                user(132, 16, Some("c@example.org")),
                user(133, 6, None),
            ],
            fingerprint: Fingerprint {
                keys: 6,
                keys_digest: String::new(),
                users: 5,
                users_digest: String::new(),
            },
        }
    }

    #[test]
    fn users_by_id_with_haplos_blocks_and_skips() {
        let batch = to_batch(&table(), 4000, UserField::Id);
        let ids: Vec<_> = batch
            .keys
            .iter()
            .map(|k| (k.id.as_str(), k.user.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("active", "130"),
                ("blocked", "131"),
                ("deleted", "132"),
                ("service", "133")
            ]
        );
        let users: Vec<_> = batch
            .users
            .iter()
            .map(|u| (u.user.as_str(), u.blocked))
            .collect();
        assert_eq!(
            users,
            [("130", false), ("131", true), ("132", true), ("133", false)]
        );
        let skipped: Vec<_> = batch.skipped.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(skipped, ["group", "orphan"]);
    }

    #[test]
    fn users_by_email_skip_keys_of_users_without_one() {
        let batch = to_batch(&table(), 4000, UserField::Email);
        assert_eq!(batch.keys[0].user, "a@example.org");
        assert!(batch
            .skipped
            .iter()
            .any(|s| s.id == "service" && s.reason.contains("no email")));
        assert_eq!("email".parse::<UserField>(), Ok(UserField::Email));
        assert!("name".parse::<UserField>().is_err());
    }
}
