//! The admin handlers for users: show and block/unblock.

use std::sync::Arc;

use crate::server::RequestBody;
use http::Request;
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use super::body;
use super::reply::{Handled, Reply};
use super::writes;
use crate::keys::{Blocker, Keyring, Snapshot, UserId};
use crate::writes::Writes;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetUser {
    blocked: bool,
}

#[derive(Serialize)]
struct UserView<'a> {
    user: &'a str,
    /// Whether the user's keys are refused.
    blocked: bool,
    /// Who blocks them, shown only when Haplo does (otherwise SPEC 7's
    /// exact fields): `"haplo"` (blocked or deleted in the Haplo
    /// application keygate imports from) and/or `"admin"` (this API).
    /// Unblocking here lifts only the admin's block.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    blocked_by: Vec<&'static str>,
}

impl<'a> UserView<'a> {
    fn of(user: &'a UserId, snapshot: &Snapshot) -> Self {
        UserView {
            user: user.as_str(),
            blocked: snapshot.is_blocked(user.as_str()),
            blocked_by: if snapshot
                .blocked_by(user.as_str())
                .any(|b| b == Blocker::Haplo)
            {
                snapshot
                    .blocked_by(user.as_str())
                    .map(Blocker::as_str)
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

fn parse_user(raw: &str) -> Result<UserId, Reply> {
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Reply::error(400, "user is not valid UTF-8"))?;
    UserId::parse(&decoded).map_err(|e| Reply::error(400, e.to_string()))
}

/// `GET /v1/users/{user}`.
pub(crate) fn show(keyring: &Keyring, raw: &str) -> Handled {
    let user = parse_user(raw)?;
    let snapshot = keyring.snapshot();
    #[derive(Serialize)]
    struct Shown<'a> {
        #[serde(flatten)]
        view: UserView<'a>,
        keys: usize,
    }
    Ok(Reply::json(
        200,
        &Shown {
            view: UserView::of(&user, &snapshot),
            keys: snapshot
                .entries()
                .filter(|e| e.user() == user.as_str())
                .count(),
        },
    ))
}

/// `PUT /v1/users/{user}`.
pub(crate) async fn set(
    keyring: &Arc<Keyring>,
    writes: &Writes,
    raw: &str,
    request: Request<RequestBody>,
    client: String,
) -> Handled {
    let user = parse_user(raw)?;
    let input: SetUser = body::read_json(request).await?;
    let target = user.clone();
    let blocked = input.blocked;
    writes::run(writes, move |keyring| {
        Ok(keyring.plan_block(&target, blocked, Some(&client)))
    })
    .await?;
    tracing::info!(user = %user, blocked, "user updated");
    Ok(Reply::json(200, &UserView::of(&user, &keyring.snapshot())))
}
