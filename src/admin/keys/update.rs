//! `PATCH /v1/keys/{id}`: edit a key in place (SPEC 11).
//!
//! A JSON merge patch in spirit: a field left out stays as it is, `null`
//! removes an optional one (`expires_at`, `rate`, `allow_from`,
//! `methods`), a value replaces it. `name` and `path` cannot be removed.
//! The secret never changes; rotate the key for that. The whole body is
//! validated before anything is written, and a 200 means the edit is
//! durable and in effect, as a 201 does for a creation.

use crate::server::RequestBody;
use http::Request;
use serde::{Deserialize, Serialize};

use super::{no_such_key, parse_id, validate_expiry, validate_name, KeyView};
use crate::admin::policy::{self, present, RateInput};
use crate::admin::reply::{Handled, Reply};
use crate::admin::{body, writes};
use crate::keys::{KeyUpdate, Keyring};
use crate::scope::Scope;
use crate::writes::Writes;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    path: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    rate: Option<Option<RateInput>>,
    #[serde(default, deserialize_with = "present")]
    allow_from: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    methods: Option<Option<Vec<String>>>,
}

/// Validates a patch into a [`KeyUpdate`], with the warnings its new
/// values deserve.
fn validate(patch: Patch, keyring: &Keyring) -> Result<(KeyUpdate, Vec<&'static str>), Reply> {
    let required = |field: &str| Reply::error(400, format!("{field} cannot be removed (null)"));
    let mut warnings = Vec::new();
    let name = match patch.name {
        None => None,
        Some(None) => return Err(required("name")),
        Some(Some(name)) => Some(validate_name(&name)?),
    };
    let scope = match patch.path {
        None => None,
        Some(None) => return Err(required("path")),
        Some(Some(path)) => {
            let scope = Scope::parse_new(&path).map_err(|e| Reply::error(400, e.to_string()))?;
            warnings.extend(scope.warning());
            Some(scope)
        }
    };
    let now = keyring.clock().now();
    let expires_at = match patch.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => Some(Some(validate_expiry(&text, now)?)),
    };
    let rate = match patch.rate {
        None => None,
        Some(rate) => Some(rate.map(RateInput::validate).transpose()?),
    };
    let allow_from = match patch.allow_from {
        None => None,
        Some(list) => Some(list.as_deref().map(policy::allow_from).transpose()?),
    };
    let methods = match patch.methods {
        None => None,
        Some(list) => Some(list.as_deref().map(policy::methods).transpose()?),
    };
    warnings.extend(policy::warnings(methods.flatten()));
    Ok((
        KeyUpdate {
            name,
            scope,
            expires_at,
            rate,
            allow_from,
            methods,
        },
        warnings,
    ))
}

/// `PATCH /v1/keys/{id}`.
pub(crate) async fn update(
    keyring: &Keyring,
    writes: &Writes,
    id: &str,
    request: Request<RequestBody>,
    client: String,
) -> Handled {
    let id = parse_id(id)?;
    let patch: Patch = body::read_json(request).await?;
    let (update, warnings) = validate(patch, keyring)?;
    let record = writes::run(writes, move |keyring| {
        keyring.plan_update(id, update, Some(&client))
    })
    .await?
    .ok_or_else(no_such_key)?;
    tracing::info!(key_id = %record.id, user = %record.user, "key updated");
    #[derive(Serialize)]
    struct Updated<'a> {
        #[serde(flatten)]
        view: KeyView<'a>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        warnings: Vec<&'static str>,
    }
    let snapshot = keyring.snapshot();
    Ok(Reply::json(
        200,
        &Updated {
            view: KeyView::live(&record, snapshot.entry(&record.id)),
            warnings,
        },
    ))
}
