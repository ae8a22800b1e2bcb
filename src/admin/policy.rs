//! A key's policies as the admin API receives them (SPEC 11), turned into
//! validated [`Policy`] parts; shared by `POST /v1/keys` and
//! `PATCH /v1/keys/{id}`.
//!
//! Every mistake is a 400 that names the field (`rate.burst`,
//! `allow_from[2]`, `methods[0]`), found before anything is written.

use serde::{Deserialize, Deserializer};

use super::reply::Reply;
use crate::keys::policy::{AllowFrom, Methods, Policy, Rate};

/// `"rate": {"per_second": N, "burst": M}` (`burst` optional).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateInput {
    per_second: f64,
    burst: Option<u32>,
}

impl RateInput {
    pub(crate) fn validate(self) -> Result<Rate, Reply> {
        Rate::new(self.per_second, self.burst).map_err(|e| Reply::error(400, e.to_string()))
    }
}

/// The policies of a new key (absent or `null`: not set).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyInput {
    pub(crate) rate: Option<RateInput>,
    pub(crate) allow_from: Option<Vec<String>>,
    pub(crate) methods: Option<Vec<String>>,
}

impl PolicyInput {
    /// The validated policy.
    pub(crate) fn validate(self) -> Result<Policy, Reply> {
        Ok(Policy {
            rate: self.rate.map(RateInput::validate).transpose()?,
            allow_from: self.allow_from.as_deref().map(allow_from).transpose()?,
            methods: self.methods.as_deref().map(methods).transpose()?,
        })
    }
}

/// A validated `allow_from` list.
pub(crate) fn allow_from(entries: &[String]) -> Result<AllowFrom, Reply> {
    AllowFrom::parse(entries).map_err(|e| Reply::error(400, e.to_string()))
}

/// A validated `methods` list.
pub(crate) fn methods(names: &[String]) -> Result<Methods, Reply> {
    Methods::parse(names).map_err(|e| Reply::error(400, e.to_string()))
}

/// What the admin is told about a policy that is valid but probably not
/// what was meant.
pub(crate) fn warnings(methods: Option<Methods>) -> Option<&'static str> {
    methods
        .filter(|m| m.get_without_head())
        .map(|_| "methods lists GET but not HEAD: HEAD requests with this key will be refused")
}

/// For `PATCH` bodies: a field that is present (even as `null`) becomes
/// `Some(..)`, so that `null` (remove) and absent (leave alone) differ.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
