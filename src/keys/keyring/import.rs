//! Bringing a Haplo application's keys and users into the key table, once
//! (`keygate import haplo`, through `POST /v1/import`) or continually (the
//! `[haplo]` follower).
//!
//! Both hand the keyring a [`HaploBatch`]: every key of the application
//! (id, bcrypt hash, scope, name, user) and every user whose keys Haplo
//! would refuse or accept. The keyring compares it with the store and
//! turns the difference into [`Change`]s, applied through the one path
//! every write takes ([`Keyring::apply`]), in one transaction: all or
//! nothing. So a batch that changes nothing writes nothing, a re-run is
//! idempotent, and a dry run is the same comparison without the apply.
//!
//! A row that cannot be taken (a malformed id or hash, a scope that could
//! never match, an id that belongs to one of keygate's own keys) is
//! skipped with its reason; it never stops the rest.

use serde::{Deserialize, Serialize};

use super::{
    Action, AuditEvent, BcryptHash, Blocker, Change, KeyHash, KeyId, KeyRecord, Keyring, Origin,
    Planned, StoreError, UserId,
};
use crate::keys::policy::Policy;
use crate::scope::Scope;

/// One Haplo application's keys and users, as an importer sends them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaploBatch {
    /// The application's id.
    pub app: u32,
    /// Compare and report, but write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Every key of the application.
    pub keys: Vec<HaploKeyRow>,
    /// Users and whether Haplo refuses their keys (kinds 8 and 16).
    pub users: Vec<HaploUserRow>,
    /// Rows the sender already could not convert, with why; reported with
    /// the keyring's own skips.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

/// One key, converted from Haplo's `api_keys` row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaploKeyRow {
    /// Haplo's `a`: the key id.
    pub id: String,
    /// Haplo's `b`: bcrypt of the secret part.
    pub bcrypt: String,
    /// Haplo's `path`: the scope.
    pub path: String,
    /// Haplo's `name`.
    pub name: String,
    /// The owner: Haplo's user id as a decimal string, or the user's email.
    pub user: String,
}

/// One user's state in Haplo.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaploUserRow {
    /// As in [`HaploKeyRow::user`].
    pub user: String,
    /// Blocked (kind 8) or deleted (kind 16) in Haplo.
    pub blocked: bool,
}

/// A row left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// The key id (Haplo's `a`) or the user, as given.
    pub id: String,
    /// Why it was left out.
    pub reason: String,
}

/// What a batch did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Keys new to keygate.
    pub created: usize,
    /// Keys whose scope, name, user or hash changed.
    pub updated: usize,
    /// Keys already as Haplo has them.
    pub unchanged: usize,
    /// Keys of this application that Haplo no longer has (following only:
    /// a one-off import never removes).
    pub removed: usize,
    /// Users newly blocked because Haplo blocks them.
    pub users_blocked: usize,
    /// Users whose Haplo block was lifted.
    pub users_unblocked: usize,
    /// Rows left out, with why.
    pub skipped: Vec<Skipped>,
    /// Nothing was written.
    pub dry_run: bool,
}

impl ImportReport {
    /// Whether the batch changed (or would change) anything.
    pub fn changed(&self) -> bool {
        self.created + self.updated + self.removed + self.users_blocked + self.users_unblocked > 0
    }
}

/// How a batch treats keys of the application that it does not list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// Keep them (a one-off import).
    Keep,
    /// Remove them: Haplo deleted them (following).
    Remove,
}

impl Keyring {
    /// Applies a Haplo batch: creates, updates and (with
    /// [`Missing::Remove`]) removes keys, and sets Haplo's blocks, all in
    /// one transaction, then publishes them. `client` is recorded in the
    /// audit trail. A dry run compares and reports only.
    pub fn import_haplo(
        &self,
        batch: &HaploBatch,
        missing: Missing,
        client: Option<&str>,
    ) -> Result<ImportReport, StoreError> {
        let mut writer = self.writer();
        let planned = self.plan_import_haplo(batch, missing, client)?;
        self.publish(&mut writer, &planned.changes, &planned.events)?;
        Ok(planned.outcome)
    }

    /// Works out what a Haplo batch changes, writing nothing: the changes
    /// and their audit events (none for a dry run), and the report. The
    /// caller serialises writes (see `writes.rs`); a fleet replica applies
    /// the plan through the shared table like any admin write.
    pub fn plan_import_haplo(
        &self,
        batch: &HaploBatch,
        missing: Missing,
        client: Option<&str>,
    ) -> Result<Planned<ImportReport>, StoreError> {
        let now = self.clock().now();
        let mut report = ImportReport {
            skipped: batch.skipped.clone(),
            dry_run: batch.dry_run,
            ..ImportReport::default()
        };
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let mut listed = std::collections::HashSet::new();
        for row in &batch.keys {
            let new = match convert(row) {
                Ok(new) => new,
                Err(reason) => {
                    report.skipped.push(Skipped {
                        id: row.id.clone(),
                        reason,
                    });
                    continue;
                }
            };
            if !listed.insert(new.id) {
                report.skipped.push(Skipped {
                    id: row.id.clone(),
                    reason: "the same id appears twice in the batch".into(),
                });
                continue;
            }
            let (action, record) = match self.store.key(new.id)? {
                None => {
                    report.created += 1;
                    let record = KeyRecord {
                        id: new.id,
                        hash: KeyHash::Bcrypt(new.bcrypt.clone()),
                        user: new.user,
                        name: new.name,
                        scope: new.scope,
                        created_at: now,
                        expires_at: None,
                        last_used_at: None,
                        origin: Origin::Haplo {
                            app: batch.app,
                            bcrypt: new.bcrypt,
                        },
                        // Haplo has no policies; an operator may add them
                        // here, and a later sync keeps them (`..old` below).
                        policy: Policy::default(),
                    };
                    (Action::KeyImported, record)
                }
                Some(old) => {
                    let old_bcrypt = match &old.origin {
                        Origin::Haplo { app, bcrypt } if app == &batch.app => bcrypt.clone(),
                        Origin::Haplo { app, .. } => {
                            report.skipped.push(Skipped {
                                id: row.id.clone(),
                                reason: format!(
                                    "the id belongs to a key of Haplo application {app}"
                                ),
                            });
                            continue;
                        }
                        Origin::Keygate => {
                            report.skipped.push(Skipped {
                                id: row.id.clone(),
                                reason: "the id belongs to one of keygate's own keys".into(),
                            });
                            continue;
                        }
                    };
                    let same_secret = old_bcrypt == new.bcrypt;
                    if same_secret
                        && old.user == new.user
                        && old.name == new.name
                        && old.scope == new.scope
                    {
                        report.unchanged += 1;
                        continue;
                    }
                    report.updated += 1;
                    let record = KeyRecord {
                        // A key already proven keeps its BLAKE3 hash while
                        // its secret is the same.
                        hash: if same_secret {
                            old.hash.clone()
                        } else {
                            KeyHash::Bcrypt(new.bcrypt.clone())
                        },
                        user: new.user,
                        name: new.name,
                        scope: new.scope,
                        origin: Origin::Haplo {
                            app: batch.app,
                            bcrypt: new.bcrypt,
                        },
                        ..old
                    };
                    (Action::KeyUpdated, record)
                }
            };
            events.push(AuditEvent::for_key(action, &record, now, client));
            changes.push(Change::Upsert(record));
        }
        if missing == Missing::Remove {
            for old in self.store.keys(None)? {
                let ours = matches!(&old.origin, Origin::Haplo { app, .. } if app == &batch.app);
                if ours && !listed.contains(&old.id) {
                    report.removed += 1;
                    events.push(AuditEvent::for_key(Action::KeyRevoked, &old, now, client));
                    changes.push(Change::Remove(old.id));
                }
            }
        }
        let snapshot = self.snapshot();
        for row in &batch.users {
            let Ok(user) = UserId::parse(&row.user) else {
                report.skipped.push(Skipped {
                    id: row.user.clone(),
                    reason: "not a valid keygate user id".into(),
                });
                continue;
            };
            let blocked_by_haplo = snapshot
                .blocked_by(user.as_str())
                .any(|b| b == Blocker::Haplo);
            if blocked_by_haplo == row.blocked {
                continue;
            }
            if row.blocked {
                report.users_blocked += 1;
            } else {
                report.users_unblocked += 1;
            }
            events.push(AuditEvent::for_user(
                row.blocked,
                user.as_str(),
                now,
                client,
            ));
            changes.push(Change::Block {
                user,
                blocked: row.blocked,
                by: Blocker::Haplo,
            });
        }
        if missing == Missing::Remove {
            // A user Haplo blocked who owns no key there any more is no
            // longer Haplo's to block.
            let listed: std::collections::HashSet<&str> =
                batch.users.iter().map(|u| u.user.as_str()).collect();
            for user in snapshot.blocked_users_by(Blocker::Haplo) {
                if !listed.contains(user.as_str()) {
                    report.users_unblocked += 1;
                    events.push(AuditEvent::for_user(false, user.as_str(), now, client));
                    changes.push(Change::Block {
                        user: user.clone(),
                        blocked: false,
                        by: Blocker::Haplo,
                    });
                }
            }
        }
        drop(snapshot);
        if batch.dry_run {
            changes.clear();
            events.clear();
        }
        Ok(Planned {
            changes,
            events,
            outcome: report,
        })
    }
}

/// A row, validated.
struct NewKey {
    id: KeyId,
    bcrypt: BcryptHash,
    user: UserId,
    name: String,
    scope: Scope,
}

/// Longest key name kept, in characters (as the admin API's limit).
const MAX_NAME: usize = 200;

/// Validates one row, or says why it cannot be taken.
fn convert(row: &HaploKeyRow) -> Result<NewKey, String> {
    let id = KeyId::parse(&row.id)
        .ok_or_else(|| "not a Haplo key id (16 characters from A-Z a-z 0-9 _ -)".to_owned())?;
    let bcrypt = BcryptHash::parse(&row.bcrypt).map_err(|e| e.to_string())?;
    let user = UserId::parse(&row.user).map_err(|e| e.to_string())?;
    let scope = Scope::parse_new(&row.path).map_err(|e| format!("path: {e}"))?;
    Ok(NewKey {
        id,
        bcrypt,
        user,
        name: clean_name(&row.name),
        scope,
    })
}

/// Haplo's name for a key, made safe to print: characters that would
/// reorder or break a terminal line (refused by keygate's own admin API)
/// become U+FFFD, and it is cut to [`MAX_NAME`] characters. The key is
/// kept either way: a name is a label, not a reason to lose a key.
fn clean_name(name: &str) -> String {
    let cleaned: String = name
        .trim()
        .chars()
        .map(|c| {
            if crate::admin::text::is_display_control(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .take(MAX_NAME)
        .collect();
    if cleaned.is_empty() {
        "(unnamed in Haplo)".to_owned()
    } else {
        cleaned
    }
}
