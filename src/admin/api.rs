//! The admin handlers for keys and users.
//!
//! Input is validated completely before anything is written: a 400 means
//! the store was not touched. Writes go through the [`Keyring`] on the
//! blocking pool; their success reply is sent only after the keyring has
//! committed and published the change.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::reply::Reply;
use crate::keys::{KeyId, KeyRecord, Keyring, NewKey, UserId};
use crate::scope::Scope;
use crate::timestamp::Timestamp;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;
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
}

impl<'a> KeyView<'a> {
    fn of(record: &'a KeyRecord) -> Self {
        KeyView {
            id: record.id.as_str(),
            user: record.user.as_str(),
            name: &record.name,
            path: record.scope.as_str(),
            created_at: record.created_at.to_string(),
            expires_at: record.expires_at.map(|t| t.to_string()),
            last_used_at: record.last_used_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    user: String,
    name: String,
    path: Option<String>,
    expires_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct Created<'a> {
    #[serde(flatten)]
    view: KeyView<'a>,
    key: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<&'static str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetUser {
    blocked: bool,
}

/// Reads and parses a JSON body, or the 4xx to send instead.
async fn read_json<T: DeserializeOwned>(request: Request<Incoming>) -> Result<T, Reply> {
    let body = Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                Reply::error(413, format!("request body is larger than {MAX_BODY} bytes"))
            } else {
                Reply::error(400, "request body could not be read")
            }
        })?
        .to_bytes();
    parse_json(&body)
}

fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Reply> {
    if body.is_empty() {
        return Err(Reply::error(400, "a JSON body is required"));
    }
    // serde_path_to_error names the field at fault ("user: invalid type:
    // integer `42`, expected a string"), not only a line and column.
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body: {path}: {}", e.inner())
        };
        Reply::error(400, message)
    })
}

/// Validates a create request into a [`NewKey`] plus warnings.
fn validate_new_key(
    input: CreateKey,
    now: Timestamp,
) -> Result<(NewKey, Vec<&'static str>), Reply> {
    let user = UserId::parse(&input.user).map_err(|e| Reply::error(400, e.to_string()))?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Reply::error(
            400,
            format!("name must be 1 to {MAX_NAME} characters with no control characters"),
        ));
    }
    let scope = Scope::parse(input.path.as_deref().unwrap_or(DEFAULT_SCOPE))
        .map_err(|e| Reply::error(400, e.to_string()))?;
    let expires_at = match input.expires_at.as_deref() {
        None => None,
        Some(text) => {
            let at = Timestamp::parse_rfc3339(text)
                .map_err(|e| Reply::error(400, format!("expires_at: {e}")))?;
            if at <= now {
                return Err(Reply::error(400, "expires_at must be in the future"));
            }
            Some(at)
        }
    };
    let warnings = scope.warning().into_iter().collect();
    Ok((
        NewKey {
            user,
            name: name.to_owned(),
            scope,
            expires_at,
        },
        warnings,
    ))
}

/// `POST /v1/keys`.
pub(crate) async fn create_key(keyring: &Arc<Keyring>, request: Request<Incoming>) -> Reply {
    let input: CreateKey = match read_json(request).await {
        Ok(input) => input,
        Err(reply) => return reply,
    };
    let (new, warnings) = match validate_new_key(input, Timestamp::now()) {
        Ok(valid) => valid,
        Err(reply) => return reply,
    };
    let keyring = keyring.clone();
    match tokio::task::spawn_blocking(move || keyring.create(new)).await {
        Ok(Ok((key, record))) => {
            tracing::info!(key_id = %record.id, user = %record.user, scope = record.scope.as_str(), "key created");
            let created = Created {
                view: KeyView::of(&record),
                key: key.expose(),
                warnings,
            };
            Reply::json(201, &created).with_location(format!("/v1/keys/{}", record.id))
        }
        Ok(Err(error)) => write_failed(&error),
        Err(join) => write_failed(&join),
    }
}

/// `GET /v1/keys[?user=U]`.
pub(crate) fn list_keys(keyring: &Keyring, query: Option<&str>) -> Reply {
    let mut user_filter = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match &*name {
            "user" => match UserId::parse(&value) {
                Ok(user) => user_filter = Some(user),
                Err(e) => return Reply::error(400, format!("user: {e}")),
            },
            other => {
                return Reply::error(
                    400,
                    format!("unknown query parameter {other:?}; only \"user\" is accepted"),
                )
            }
        }
    }
    let snapshot = keyring.snapshot();
    let mut records: Vec<&KeyRecord> = snapshot
        .keys()
        .filter(|r| user_filter.as_ref().is_none_or(|u| &r.user == u))
        .collect();
    records.sort_by_key(|r| (r.created_at, r.id));
    #[derive(Serialize)]
    struct List<'a> {
        keys: Vec<KeyView<'a>>,
    }
    Reply::json(
        200,
        &List {
            keys: records.into_iter().map(KeyView::of).collect(),
        },
    )
}

fn parse_id(raw: &str) -> Result<KeyId, Reply> {
    let decoded = percent_decode_str(raw).decode_utf8_lossy();
    KeyId::parse(&decoded).ok_or_else(|| Reply::error(404, "no key with that id"))
}

/// `GET /v1/keys/{id}`.
pub(crate) fn show_key(keyring: &Keyring, id: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let snapshot = keyring.snapshot();
    match snapshot.get(&id) {
        Some(record) => Reply::json(200, &KeyView::of(record)),
        None => Reply::error(404, "no key with that id"),
    }
}

/// `DELETE /v1/keys/{id}`.
pub(crate) async fn revoke_key(keyring: &Arc<Keyring>, id: &str) -> Reply {
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(reply) => return reply,
    };
    let keyring = keyring.clone();
    match tokio::task::spawn_blocking(move || keyring.revoke(id)).await {
        Ok(Ok(Some(record))) => {
            tracing::info!(key_id = %record.id, user = %record.user, "key revoked");
            Reply::no_content()
        }
        Ok(Ok(None)) => Reply::error(404, "no key with that id"),
        Ok(Err(error)) => write_failed(&error),
        Err(join) => write_failed(&join),
    }
}

fn parse_user(raw: &str) -> Result<UserId, Reply> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Reply::error(400, "user is not valid UTF-8"))?;
    UserId::parse(&decoded).map_err(|e| Reply::error(400, e.to_string()))
}

#[derive(Serialize)]
struct UserView<'a> {
    user: &'a str,
    blocked: bool,
}

/// `GET /v1/users/{user}`.
pub(crate) fn show_user(keyring: &Keyring, raw: &str) -> Reply {
    let user = match parse_user(raw) {
        Ok(user) => user,
        Err(reply) => return reply,
    };
    let snapshot = keyring.snapshot();
    #[derive(Serialize)]
    struct Shown<'a> {
        #[serde(flatten)]
        view: UserView<'a>,
        keys: usize,
    }
    Reply::json(
        200,
        &Shown {
            view: UserView {
                user: user.as_str(),
                blocked: snapshot.is_blocked(&user),
            },
            keys: snapshot.keys().filter(|r| r.user == user).count(),
        },
    )
}

/// `PUT /v1/users/{user}`.
pub(crate) async fn set_user(
    keyring: &Arc<Keyring>,
    raw: &str,
    request: Request<Incoming>,
) -> Reply {
    let user = match parse_user(raw) {
        Ok(user) => user,
        Err(reply) => return reply,
    };
    let input: SetUser = match read_json(request).await {
        Ok(input) => input,
        Err(reply) => return reply,
    };
    let keyring = keyring.clone();
    let target = user.clone();
    match tokio::task::spawn_blocking(move || keyring.set_blocked(&target, input.blocked)).await {
        Ok(Ok(())) => {
            tracing::info!(user = %user, blocked = input.blocked, "user updated");
            Reply::json(
                200,
                &UserView {
                    user: user.as_str(),
                    blocked: input.blocked,
                },
            )
        }
        Ok(Err(error)) => write_failed(&error),
        Err(join) => write_failed(&join),
    }
}

/// A failed write: logged in full, reported without detail.
fn write_failed(error: &dyn std::fmt::Display) -> Reply {
    tracing::error!(%error, "admin write failed; nothing was changed");
    Reply::error(500, "the store could not be written; nothing was changed")
}
