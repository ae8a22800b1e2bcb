//! What a key may do, as the request path checks it: its scope, and its
//! policies with the rate limiter's live state.
//!
//! Each [`super::Entry`] points at one [`Access`]. Keys without policies
//! (nearly all of them) share one `Access` per distinct scope through the
//! interner, as they shared the scope before policies existed, so the
//! entry stays 88 bytes and such a key pays one null check for having no
//! [`Limits`]. A key with policies has an `Access` of its own, since its
//! rate limiter's state is its own.

use std::net::IpAddr;

use http::Method;

use super::policy::{AllowFrom, Bucket, Exhausted, Methods, Policy, Rate, Remaining};
use crate::scope::Scope;

/// A key's scope and, when it has any, its policies.
#[derive(Debug)]
pub struct Access {
    scope: Scope,
    limits: Option<Box<Limits>>,
}

impl Access {
    /// A scope without policies (shared by every such key).
    pub(crate) fn scope_only(scope: Scope) -> Self {
        Access {
            scope,
            limits: None,
        }
    }

    /// A scope with `policy`, which must not be empty (an empty policy is
    /// [`Access::scope_only`], shared).
    pub(crate) fn with_policy(scope: Scope, policy: &Policy) -> Self {
        Access {
            scope,
            limits: (!policy.is_empty()).then(|| Box::new(Limits::new(policy))),
        }
    }

    /// Which request-targets the key admits.
    #[inline]
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The key's policies, if it has any.
    #[inline]
    pub fn limits(&self) -> Option<&Limits> {
        self.limits.as_deref()
    }

    /// Carries the rate limiter's state over from the same key's previous
    /// access, when both are rate-limited.
    pub(crate) fn carry(&self, old: &Access) {
        if let (Some(new), Some(old)) = (self.rate_bucket(), old.rate_bucket()) {
            new.carry(old);
        }
    }

    fn rate_bucket(&self) -> Option<&Bucket> {
        self.limits
            .as_ref()
            .and_then(|l| l.rate.as_ref())
            .map(|(_, b)| b)
    }
}

/// A key's policies, ready to check.
#[derive(Debug)]
pub struct Limits {
    methods: Option<Methods>,
    allow_from: Option<AllowFrom>,
    rate: Option<(Rate, Bucket)>,
}

/// Which policy refused a request, in the order they are checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    /// The method is not on the key's list.
    Method,
    /// The client address is outside the key's `allow_from`.
    Address,
    /// The key's bucket is empty.
    Rate {
        /// Nanoseconds until a token is back.
        retry_in: u64,
        /// The key's rate.
        rate: Rate,
    },
}

/// A request within a rate-limited key's bucket: what is left of it.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    /// The key's rate.
    pub rate: Rate,
    /// What the request left.
    pub remaining: Remaining,
}

impl Limits {
    fn new(policy: &Policy) -> Self {
        Limits {
            methods: policy.methods,
            allow_from: policy.allow_from.clone(),
            rate: policy.rate.map(|rate| (rate, Bucket::new(&rate))),
        }
    }

    /// Checks a request: the method, then the client address, then (only
    /// for a request that passed both, so a refused request costs no
    /// token) the rate. `now` is read only for a rate-limited key.
    #[inline]
    pub fn check(
        &self,
        method: &Method,
        client: IpAddr,
        now: impl FnOnce() -> u64,
    ) -> Result<Option<Quota>, Breach> {
        if let Some(methods) = self.methods {
            if !methods.allows(method) {
                return Err(Breach::Method);
            }
        }
        if let Some(allow_from) = &self.allow_from {
            if !allow_from.admits(client) {
                return Err(Breach::Address);
            }
        }
        match &self.rate {
            None => Ok(None),
            Some((rate, bucket)) => match bucket.take(now()) {
                Ok(remaining) => Ok(Some(Quota {
                    rate: *rate,
                    remaining,
                })),
                Err(Exhausted { retry_in }) => Err(Breach::Rate {
                    retry_in,
                    rate: *rate,
                }),
            },
        }
    }

    /// The key's rate, if it has one.
    pub fn rate(&self) -> Option<Rate> {
        self.rate.as_ref().map(|(rate, _)| *rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(policy: Policy) -> Access {
        Access::with_policy(Scope::parse("/api/").unwrap(), &policy)
    }

    #[test]
    fn checks_come_in_order_and_refusals_cost_no_token() {
        let access = limits(Policy {
            rate: Some(Rate::new(1.0, Some(1)).unwrap()),
            allow_from: Some(AllowFrom::parse(&["10.0.0.0/8"]).unwrap()),
            methods: Some(Methods::parse(&["GET"]).unwrap()),
        });
        let limits = access.limits().unwrap();
        let inside: IpAddr = "10.1.1.1".parse().unwrap();
        let outside: IpAddr = "192.0.2.1".parse().unwrap();
        let never = || -> u64 { panic!("the clock is read only for the rate") };
        assert_eq!(
            limits.check(&Method::POST, outside, never).unwrap_err(),
            Breach::Method
        );
        assert_eq!(
            limits.check(&Method::GET, outside, never).unwrap_err(),
            Breach::Address
        );
        let quota = limits.check(&Method::GET, inside, || 0).unwrap().unwrap();
        assert_eq!(quota.remaining.tokens, 0);
        assert!(matches!(
            limits.check(&Method::GET, inside, || 0),
            Err(Breach::Rate { .. })
        ));
    }

    #[test]
    fn no_policy_means_no_limits() {
        let access = limits(Policy::default());
        assert!(access.limits().is_none());
    }
}
