//! The admin handlers for keys: create, list, show, revoke, rotate, and
//! (`update.rs`) edit in place.
//!
//! Input is validated completely before anything is written: a 400 means
//! the store was not touched. Writes go through the [`Keyring`] on the
//! blocking pool; their success reply is sent only after the keyring has
//! committed and published the change.
//!
//! Listings read the records from the store (the in-memory snapshot keeps
//! only what the request path needs, not names or creation times) and show
//! each key's live last-use time from the snapshot.

mod rotate;
mod update;

use std::sync::Arc;

use crate::server::RequestBody;
use http::Request;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

pub(crate) use self::rotate::rotate;
pub(crate) use self::update::update;
use super::body;
use super::policy::{self, PolicyInput, RateInput};
use super::reply::{Handled, Reply};
use super::text;
use super::writes;
use crate::keys::policy::PolicyView;
use crate::keys::{Entry, KeyId, KeyRecord, Keyring, NewKey, Origin, StoreError, UserId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;
use crate::writes::Writes;

/// Longest key name, in characters.
const MAX_NAME: usize = 200;
/// Default scope (Haplo's default for new keys).
const DEFAULT_SCOPE: &str = "/api/";

/// A key as the admin API shows it: everything but the secret.
#[derive(Debug, Serialize)]
pub(crate) struct KeyView<'a> {
    id: &'a str,
    user: &'a str,
    name: &'a str,
    path: &'a str,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    /// `"haplo"` for a key imported from Haplo (read-only here); absent
    /// for keygate's own keys, which keep SPEC 7's exact fields.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'static str>,
    /// The Haplo application of an imported key.
    #[serde(skip_serializing_if = "Option::is_none")]
    haplo_app: Option<u32>,
    /// `rate`, `allow_from` and `methods`, each only when set.
    #[serde(flatten)]
    policy: PolicyView,
}

impl<'a> KeyView<'a> {
    /// A stored record, with the last use as stored.
    fn of(record: &'a KeyRecord) -> Self {
        KeyView {
            id: record.id.as_str(),
            user: record.user.as_str(),
            name: &record.name,
            path: record.scope.as_str(),
            created_at: record.created_at.to_string(),
            expires_at: record.expires_at.map(|t| t.to_string()),
            last_used_at: record.last_used_at.map(|t| t.to_string()),
            origin: match record.origin {
                Origin::Keygate => None,
                Origin::Haplo { .. } => Some("haplo"),
            },
            haplo_app: match record.origin {
                Origin::Keygate => None,
                Origin::Haplo { app, .. } => Some(app),
            },
            policy: record.policy.view(),
        }
    }

    /// A stored record with its last use as recorded in memory, when the
    /// key is live (which may be newer than the store's copy).
    fn live(record: &'a KeyRecord, entry: Option<&Entry>) -> Self {
        let mut view = Self::of(record);
        if let Some(used) = entry.and_then(Entry::last_used) {
            view.last_used_at = Some(used.to_string());
        }
        view
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    name: String,
    path: Option<String>,
    expires_at: Option<String>,
    rate: Option<RateInput>,
    allow_from: Option<Vec<String>>,
    methods: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    key: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'static str>,
}

/// Validates a create request into a [`NewKey`] plus warnings.
fn validate_new_key(
    input: CreateKey,
    now: Timestamp,
) -> Result<(NewKey, Vec<&'static str>), Reply> {
    let user = UserId::parse(&input.user).map_err(|e| Reply::error(400, e.to_string()))?;
    let name = validate_name(&input.name)?;
    let scope = Scope::parse_new(input.path.as_deref().unwrap_or(DEFAULT_SCOPE))
        .map_err(|e| Reply::error(400, e.to_string()))?;
    let expires_at = input
        .expires_at
        .as_deref()
        .map(|text| validate_expiry(text, now))
        .transpose()?;
    let policy = PolicyInput {
        rate: input.rate,
        allow_from: input.allow_from,
        methods: input.methods,
    }
    .validate()?;
    let mut warnings: Vec<&'static str> = scope.warning().into_iter().collect();
    warnings.extend(policy::warnings(policy.methods));
    Ok((
        NewKey {
            user,
            name,
            scope,
            expires_at,
            policy,
        },
        warnings,
    ))
}

/// A key's name: 1 to 200 characters once trimmed, none of them a
/// terminal control.
fn validate_name(name: &str) -> Result<String, Reply> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(Reply::error(
            400,
            format!("name must be 1 to {MAX_NAME} characters"),
        ));
    }
    // Names are shown in terminals: refuse what would be obeyed there
    // rather than shown (`text` says which characters and why).
    if let Some(c) = name.chars().find(|&c| text::is_display_control(c)) {
        return Err(Reply::error(
            400,
            format!(
                "name must not contain U+{:04X}: control, bidirectional-control and line-separator characters are refused",
                u32::from(c)
            ),
        ));
    }
    Ok(name.to_owned())
}

/// An expiry: RFC 3339, in the future.
fn validate_expiry(text: &str, now: Timestamp) -> Result<Timestamp, Reply> {
    let at = Timestamp::parse_rfc3339(text)
        .map_err(|e| Reply::error(400, format!("expires_at: {e}")))?;
    if at <= now {
        return Err(Reply::error(400, "expires_at must be in the future"));
    }
    Ok(at)
}

/// `POST /v1/keys`.
pub(crate) async fn create(
    keyring: &Arc<Keyring>,
    writes: &Writes,
    request: Request<RequestBody>,
    client: String,
) -> Handled {
    let input: CreateKey = body::read_json(request).await?;
    let (new, warnings) = validate_new_key(input, keyring.clock().now())?;
    let (key, record) = writes::run(writes, move |keyring| {
        keyring.plan_create(new, Some(&client))
    })
    .await?;
    tracing::info!(key_id = %record.id, user = %record.user, scope = record.scope.as_str(), "key created");
    let created = Created {
        view: KeyView::of(&record),
        key: key.expose(),
        warnings,
    };
    Ok(Reply::json(201, &created).with_location(format!("/v1/keys/{}", record.id)))
}

fn read_failed(error: StoreError) -> Reply {
    tracing::error!(%error, "cannot read the key store");
    Reply::error(500, "the key store could not be read")
}

/// Keys per page when `after` is given without `limit`.
const DEFAULT_PAGE: usize = 1000;
/// The largest `limit` accepted.
const MAX_PAGE: usize = 10_000;

/// `GET /v1/keys[?user=U][&limit=N][&after=ID]`.
///
/// Without `limit` or `after`, every key (SPEC 7), oldest first. With
/// either, one page in id order and, when more follow, `"next"`: the id to
/// pass as `after` for the next page. At a million keys the full listing
/// is about 180 MB of JSON built in memory; pages keep an operator's
/// scripts (and keygate's memory) small.
pub(crate) fn list(keyring: &Keyring, query: Option<&str>) -> Handled {
    let mut user_filter = None;
    let mut limit = None;
    let mut after = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "user" => match UserId::parse(&value) {
                Ok(user) => user_filter = Some(user),
                Err(e) => return Err(Reply::error(400, format!("user: {e}"))),
            },
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_PAGE).contains(&n) => limit = Some(n),
                _ => {
                    return Err(Reply::error(
                        400,
                        format!("limit: must be a whole number from 1 to {MAX_PAGE}"),
                    ))
                }
            },
            "after" => match KeyId::parse(&value) {
                Some(id) => after = Some(id),
                None => return Err(Reply::error(400, "after: not a key id")),
            },
            other => {
                return Err(Reply::error(
                    400,
                    format!(
                        "unknown query parameter {other:?}; only \"user\", \"limit\" and \"after\" are accepted"
                    ),
                ))
            }
        }
    }
    let snapshot = keyring.snapshot();
    #[derive(Serialize)]
    struct List<'a> {
        keys: Vec<KeyView<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    }
    let (records, next) = if limit.is_some() || after.is_some() {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        let (records, more) = keyring
            .keys_page(user_filter.as_ref(), after, limit)
            .map_err(read_failed)?;
        let next = more
            .then(|| records.last().map(|r| r.id.to_string()))
            .flatten();
        (records, next)
    } else {
        let mut records = keyring.keys(user_filter.as_ref()).map_err(read_failed)?;
        records.sort_by_key(|r| (r.created_at, r.id));
        (records, None)
    };
    Ok(Reply::json(
        200,
        &List {
            keys: records
                .iter()
                .map(|r| KeyView::live(r, snapshot.entry(&r.id)))
                .collect(),
            next,
        },
    ))
}

fn parse_id(raw: &str) -> Result<KeyId, Reply> {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    KeyId::parse(&decoded).ok_or_else(no_such_key)
}

/// The 404 for an id that names no key, malformed or not: both get the
/// same answer.
fn no_such_key() -> Reply {
    Reply::error(404, "no key with that id")
}

/// `GET /v1/keys/{id}`.
pub(crate) fn show(keyring: &Keyring, id: &str) -> Handled {
    let id = parse_id(id)?;
    let record = keyring
        .key(id)
        .map_err(read_failed)?
        .ok_or_else(no_such_key)?;
    let snapshot = keyring.snapshot();
    Ok(Reply::json(
        200,
        &KeyView::live(&record, snapshot.entry(&id)),
    ))
}

/// `DELETE /v1/keys/{id}`.
pub(crate) async fn revoke(writes: &Writes, id: &str, client: String) -> Handled {
    let id = parse_id(id)?;
    let record = writes::run(writes, move |keyring| {
        keyring.plan_revoke(id, Some(&client))
    })
    .await?
    .ok_or_else(no_such_key)?;
    tracing::info!(key_id = %record.id, user = %record.user, "key revoked");
    Ok(Reply::no_content())
}
