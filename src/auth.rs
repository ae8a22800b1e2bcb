//! Authentication: SPEC 5's decision table, in one function.
//!
//! [`credentials`] reads the key from the request, [`Throttle`] counts
//! failures per client address, and [`authenticate`] applies the table:
//!
//! | situation                                   | result                    |
//! |---------------------------------------------|---------------------------|
//! | no key, `anonymous = reject`                | `UNAUTHORISED`            |
//! | no key, `anonymous = forward`               | anonymous                 |
//! | key presented, address throttled            | `THROTTLE`                |
//! | unknown / wrong / expired / malformed key   | `INVALID-API-KEY`, counted|
//! | valid key, target outside its scope         | `INVALID-API-KEY`         |
//! | valid key, user blocked                     | `UNAUTHORISED`            |
//! | valid key, method or address off its policy | `UNAUTHORISED`            |
//! | valid key, over its rate limit              | `RATE-LIMITED` (429)      |
//! | valid key, in scope, user active            | authenticated, count reset|
//! | imported key, first use (bcrypt pending)    | prove with bcrypt, retry  |
//!
//! Everything here is synchronous and allocation-free: it runs on the
//! request path against a snapshot the caller already loaded.

pub mod credentials;
mod throttle;

use std::net::IpAddr;
use std::time::Instant;

pub use self::credentials::{Credentials, CredentialsError, PresentedSecret};
pub use self::throttle::Throttle;

use http::Method;

use crate::config::{Anonymous, ProxySettings};
use crate::keys::{Breach, Entry, Quota, Snapshot, Verified};
use crate::target::Target;
use crate::timestamp::{Clock, Timestamp};

/// Who a request is, once authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// No key, and anonymous requests are forwarded.
    Anonymous,
    /// A valid key, with what is left of its rate limit when it has one.
    Key(&'a Entry, Option<Quota>),
    /// Not authenticated yet: a key imported from Haplo, presented for the
    /// first time, whose secret only bcrypt can prove. The caller runs
    /// bcrypt off the event loop ([`crate::keys::Keyring::prove_bcrypt`])
    /// and then authenticates the request again, which then takes the
    /// ordinary path (scope, blocked user) with the key's new BLAKE3 hash.
    NeedsBcrypt(&'a Entry),
}

/// Why a request was refused. Each maps to one of Haplo's `kind`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No key and `anonymous = "reject"`.
    NoKey,
    /// The client address has too many recent failures.
    Throttled,
    /// Unknown id, wrong secret, expired or malformed.
    InvalidKey,
    /// A valid key used outside its scope.
    OutOfScope,
    /// A valid key whose user is blocked.
    UserBlocked,
    /// A valid key used with a method its policy does not list.
    MethodNotAllowed,
    /// A valid key used from an address outside its policy's list.
    AddressNotAllowed,
    /// A valid key over its rate limit.
    RateLimited(Backoff),
}

/// What a rate-limited refusal tells the client (SPEC 11): when to retry,
/// and the key's policy for the `RateLimit-Policy` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Whole seconds until a request would be admitted (at least 1).
    pub retry_after: u64,
    /// The key's burst.
    pub quota: u32,
    /// The seconds a full burst takes to come back.
    pub window: u64,
}

impl Denied {
    /// Haplo's `kind` for the JSON body.
    pub fn kind(self) -> &'static str {
        match self {
            Denied::NoKey
            | Denied::UserBlocked
            | Denied::MethodNotAllowed
            | Denied::AddressNotAllowed => "UNAUTHORISED",
            Denied::Throttled => "THROTTLE",
            Denied::InvalidKey | Denied::OutOfScope => "INVALID-API-KEY",
            Denied::RateLimited(_) => "RATE-LIMITED",
        }
    }

    /// Haplo's message for the JSON body.
    pub fn message(self) -> &'static str {
        match self {
            Denied::NoKey
            | Denied::UserBlocked
            | Denied::MethodNotAllowed
            | Denied::AddressNotAllowed => "Not authorised",
            Denied::Throttled => "Too many failed API authentication attempts, API usage suspended. Pause requests to wait until restriction lifted.",
            Denied::InvalidKey | Denied::OutOfScope => "Invalid API Key",
            // Haplo has no rate limits; worded like its other messages.
            Denied::RateLimited(_) => "Too many requests with this API key. Pause requests for the time given in Retry-After.",
        }
    }

    /// The finer-grained outcome written to the access log (clients see
    /// only the `kind`; operators see which rule refused).
    pub fn outcome(self) -> &'static str {
        match self {
            Denied::NoKey => "no-key",
            Denied::Throttled => "throttled",
            Denied::InvalidKey => "invalid-key",
            Denied::OutOfScope => "out-of-scope",
            Denied::UserBlocked => "user-blocked",
            Denied::MethodNotAllowed => "method-not-allowed",
            Denied::AddressNotAllowed => "address-not-allowed",
            Denied::RateLimited(_) => "rate-limited",
        }
    }
}

impl From<Breach> for Denied {
    fn from(breach: Breach) -> Self {
        match breach {
            Breach::Method => Denied::MethodNotAllowed,
            Breach::Address => Denied::AddressNotAllowed,
            Breach::Rate { retry_in, rate } => Denied::RateLimited(Backoff {
                retry_after: retry_in.div_ceil(1_000_000_000).max(1),
                quota: rate.burst(),
                window: rate.window_secs(),
            }),
        }
    }
}

/// A refusal, with the key when it was valid (out of scope, user blocked,
/// a policy) so that the access log can say whose key was refused.
#[derive(Debug, Clone, Copy)]
pub struct Denial<'a> {
    /// Which rule refused the request.
    pub reason: Denied,
    /// The verified key, for refusals that come after verification.
    pub key: Option<&'a Entry>,
}

impl From<Denied> for Denial<'_> {
    fn from(reason: Denied) -> Self {
        Denial { reason, key: None }
    }
}

/// Everything [`authenticate`] reads besides the request itself.
#[derive(Debug)]
pub struct AuthContext<'a> {
    /// The current key snapshot.
    pub snapshot: &'a Snapshot,
    /// The current settings.
    pub settings: &'a ProxySettings,
    /// The failure throttle.
    pub throttle: &'a Throttle,
    /// The request's method, for a key's method policy.
    pub method: &'a Method,
    /// The client address (after trusted-proxy resolution).
    pub client: IpAddr,
    /// Wall-clock now, for key expiry.
    pub now: Timestamp,
    /// Monotonic now, for the throttle window.
    pub instant: Instant,
    /// The clock rate limits read ([`Clock::ticks`] of `instant`).
    pub clock: &'a Clock,
}

/// Applies SPEC 5 to one request.
pub fn authenticate<'a>(
    cx: &AuthContext<'a>,
    presented: Option<&PresentedSecret<'_>>,
    target: &Target,
) -> Result<Identity<'a>, Denial<'a>> {
    let Some(presented) = presented else {
        return match cx.settings.anonymous {
            Anonymous::Forward => Ok(Identity::Anonymous),
            Anonymous::Reject => Err(Denied::NoKey.into()),
        };
    };
    let limits = &cx.settings.throttle;
    if cx.throttle.is_throttled(cx.client, limits, cx.instant) {
        return Err(Denied::Throttled.into());
    }
    let entry = match cx.snapshot.verify(presented.as_bytes(), cx.now) {
        Verified::Valid(entry) => entry,
        Verified::Invalid => {
            cx.throttle.record_failure(cx.client, limits, cx.instant);
            return Err(Denied::InvalidKey.into());
        }
        Verified::NeedsBcrypt(entry) => return Ok(Identity::NeedsBcrypt(entry)),
    };
    if !entry.scope().admits(target.as_str()) {
        return Err(Denial {
            reason: Denied::OutOfScope,
            key: Some(entry),
        });
    }
    if cx.snapshot.is_blocked(entry.user()) {
        return Err(Denial {
            reason: Denied::UserBlocked,
            key: Some(entry),
        });
    }
    // SPEC 11's policies, only for a key that has any: the method, the
    // address, then the rate (a refused request takes no token).
    let quota = match entry.limits() {
        None => None,
        Some(limits) => limits
            .check(cx.method, cx.client, || cx.clock.ticks(cx.instant))
            .map_err(|breach| Denial {
                reason: breach.into(),
                key: Some(entry),
            })?,
    };
    cx.throttle.clear(cx.client);
    Ok(Identity::Key(entry, quota))
}
