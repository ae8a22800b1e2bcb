//! `POST /v1/keys/{id}/rotate`: a new key with the old one's user, name,
//! scope, expiry and policies; the old key keeps working for the grace
//! period, never past its own expiry.

use crate::server::RequestBody;
use http::Request;
use serde::{Deserialize, Serialize};

use super::{no_such_key, parse_id, Created, KeyView};
use crate::admin::reply::{Handled, Reply};
use crate::admin::{body, writes};
use crate::writes::Writes;

/// Longest rotation grace period: a year.
const MAX_GRACE_SECS: u64 = 366 * 86_400;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    grace_secs: Option<u64>,
}

/// `POST /v1/keys/{id}/rotate`: body optional, `{"grace_secs": N}`.
pub(crate) async fn rotate(
    writes: &Writes,
    id: &str,
    request: Request<RequestBody>,
    client: String,
) -> Handled {
    let id = parse_id(id)?;
    let bytes = body::read(request).await?;
    let input: Rotate = if bytes.iter().all(u8::is_ascii_whitespace) {
        Rotate::default()
    } else {
        body::parse_json(&bytes)?
    };
    let grace = input.grace_secs.unwrap_or(0);
    if grace > MAX_GRACE_SECS {
        return Err(Reply::error(
            400,
            format!("grace_secs must be at most {MAX_GRACE_SECS} (a year)"),
        ));
    }
    let rotated = writes::run(writes, move |keyring| {
        keyring.plan_rotate(id, grace, Some(&client))
    })
    .await?
    .ok_or_else(no_such_key)?;
    tracing::info!(old_key_id = %id, key_id = %rotated.record.id, grace_secs = grace, "key rotated");
    #[derive(Serialize)]
    struct Old {
        id: String,
        expires_at: Option<String>,
        revoked: bool,
    }
    #[derive(Serialize)]
    struct RotatedView<'a> {
        #[serde(flatten)]
        created: Created<'a>,
        old: Old,
    }
    let view = RotatedView {
        created: Created {
            view: KeyView::of(&rotated.record),
            key: rotated.key.expose(),
            warnings: Vec::new(),
        },
        old: Old {
            id: id.to_string(),
            expires_at: rotated
                .old
                .as_ref()
                .and_then(|o| o.expires_at)
                .map(|t| t.to_string()),
            revoked: rotated.old.is_none(),
        },
    };
    Ok(Reply::json(201, &view).with_location(format!("/v1/keys/{}", rotated.record.id)))
}
