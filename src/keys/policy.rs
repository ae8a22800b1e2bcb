//! A key's optional policies (SPEC 11): how fast it may be used, from which
//! addresses, and with which methods.
//!
//! A [`Policy`] is a value: validated once when an admin sets it (or when a
//! stored record is read back, through the same constructors), compared to
//! tell what a `PATCH` changed, and carried whole by records, changes and a
//! fleet's shared table. What the request path checks is built from it per
//! key in `access.rs`, together with the rate limiter's state.
//!
//! Every policy is optional, and "not set" is the only way to say
//! "unlimited": an empty address or method list is refused rather than read
//! as "nothing allowed" (a key that admits nothing is a revoked key with
//! extra steps) or as "everything" (a surprise the other way).

mod bucket;
mod methods;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

pub use self::bucket::{Bucket, Exhausted, Remaining};
pub use self::methods::Methods;

/// Most entries in one key's `allow_from`.
pub const MAX_ALLOW_FROM: usize = 256;
/// Fastest accepted rate, in requests per second.
pub const MAX_PER_SECOND: f64 = 1_000_000.0;
/// Slowest accepted rate: one request a day.
pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
/// Largest accepted burst.
pub const MAX_BURST: u32 = 100_000;

/// A key's policies; each is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// A token bucket: how many requests per second, and how many at once.
    pub rate: Option<Rate>,
    /// The client addresses (after `trusted_proxies`) the key may be used
    /// from.
    pub allow_from: Option<AllowFrom>,
    /// The methods the key may use.
    pub methods: Option<Methods>,
}

impl Policy {
    /// Whether no policy is set (the key is limited by its scope only).
    pub fn is_empty(&self) -> bool {
        self.rate.is_none() && self.allow_from.is_none() && self.methods.is_none()
    }

    /// The policies as the admin API and the audit trail show them.
    pub fn view(&self) -> PolicyView {
        PolicyView {
            rate: self.rate.map(|rate| RateView {
                per_second: number(rate.per_second),
                burst: rate.burst,
            }),
            allow_from: self.allow_from.as_ref().map(AllowFrom::to_strings),
            methods: self.methods.map(|m| m.names().collect()),
        }
    }
}

/// A [`Policy`] in the admin API's JSON (SPEC 11); policies that are not
/// set are left out, so a key without any shows SPEC 7's fields only.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    /// `{"per_second": N, "burst": M}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateView>,
    /// Addresses and CIDR blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_from: Option<Vec<String>>,
    /// Method names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<&'static str>>,
}

/// A [`Rate`] in JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RateView {
    /// Requests per second: a whole number when it is one.
    pub per_second: serde_json::Number,
    /// Requests at once.
    pub burst: u32,
}

/// `10.0` as `10`, `0.5` as `0.5`.
fn number(value: f64) -> serde_json::Number {
    if value.fract() == 0.0 && value <= MAX_PER_SECOND {
        // A whole number of at most a million: exact as an integer.
        serde_json::Number::from(value as u64)
    } else {
        serde_json::Number::from_f64(value).unwrap_or_else(|| serde_json::Number::from(0))
    }
}

/// Why a policy was refused. Each names the field at fault, as the admin
/// API's 400 does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// `rate.per_second` out of range or not a number.
    #[error("rate.per_second must be a number from 1/86400 (one a day) to {MAX_PER_SECOND}")]
    PerSecond,
    /// `rate.burst` out of range.
    #[error("rate.burst must be a whole number from 1 to {MAX_BURST}")]
    Burst,
    /// An `allow_from` entry that is not an address or CIDR block.
    #[error("allow_from[{index}]: {reason}")]
    Address {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An empty or too long `allow_from`.
    #[error("allow_from must list 1 to {MAX_ALLOW_FROM} addresses or CIDR blocks (null removes the policy)")]
    AddressCount,
    /// A method this policy cannot name.
    #[error("methods[{index}]: {reason}")]
    Method {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An empty `methods`.
    #[error("methods must list at least one method (null removes the policy)")]
    NoMethods,
}

/// A token bucket's parameters: `per_second` tokens come back each second,
/// up to `burst` held at once; a request takes one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    burst: u32,
}

impl Rate {
    /// A validated rate. Without a burst, the bucket holds one second's
    /// worth of requests (at least one).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, PolicyError> {
        if !per_second.is_finite() || !(MIN_PER_SECOND..=MAX_PER_SECOND).contains(&per_second) {
            return Err(PolicyError::PerSecond);
        }
        // `per_second` is at most a million, so the cast cannot overflow.
        let burst = burst.unwrap_or_else(|| (per_second.ceil() as u32).clamp(1, MAX_BURST));
        if !(1..=MAX_BURST).contains(&burst) {
            return Err(PolicyError::Burst);
        }
        Ok(Rate { per_second, burst })
    }

    /// Requests per second.
    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Requests at once.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds for one token to come back.
    pub(crate) fn interval_nanos(&self) -> u64 {
        // At least 1 µs (a million per second); at most a day.
        (1e9 / self.per_second).round() as u64
    }

    /// The window advertised in `RateLimit-Policy`: the whole seconds a
    /// full bucket takes to refill.
    pub fn window_secs(&self) -> u64 {
        ((f64::from(self.burst) / self.per_second).ceil() as u64).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s, burst {}", self.per_second, self.burst)
    }
}

/// The addresses and CIDR blocks a key may be used from, IPv4 and IPv6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowFrom(Box<[IpNet]>);

impl AllowFrom {
    /// Parses a list of addresses (`203.0.113.7`, `2001:db8::1`) and CIDR
    /// blocks (`10.0.0.0/8`, `2001:db8::/48`). A block with host bits set
    /// (`10.1.2.3/8`) is refused rather than silently widened: its author
    /// meant something, and keygate cannot tell what.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, PolicyError> {
        let nets = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let text = entry.as_ref().trim();
                if text.contains('/') {
                    text.parse::<IpNet>().map_err(|_| PolicyError::Address {
                        index,
                        reason: format!("{text:?} is not a CIDR block"),
                    })
                } else {
                    text.parse::<IpAddr>()
                        .map(IpNet::from)
                        .map_err(|_| PolicyError::Address {
                            index,
                            reason: format!(
                                "{text:?} is not an IPv4 or IPv6 address or CIDR block"
                            ),
                        })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_nets(nets)
    }

    /// Builds the list from parsed (or stored) blocks: 1 to
    /// [`MAX_ALLOW_FROM`] of them, none with host bits set.
    pub(crate) fn from_nets(nets: Vec<IpNet>) -> Result<Self, PolicyError> {
        if nets.is_empty() || nets.len() > MAX_ALLOW_FROM {
            return Err(PolicyError::AddressCount);
        }
        for (index, net) in nets.iter().enumerate() {
            if net.trunc() != *net {
                return Err(PolicyError::Address {
                    index,
                    reason: format!("{net} has host bits set; the block is {}", net.trunc()),
                });
            }
        }
        Ok(AllowFrom(nets.into_iter().map(canonical_net).collect()))
    }

    /// Whether `client` is in one of the blocks. `client` is canonical (an
    /// IPv4-mapped IPv6 address already turned into IPv4).
    #[inline]
    pub fn admits(&self, client: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&client))
    }

    /// The blocks, as given (addresses as /32 or /128 blocks).
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// The blocks as text, a lone address without its prefix length.
    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|net| {
                if net.prefix_len() == net.max_prefix_len() {
                    net.addr().to_string()
                } else {
                    net.to_string()
                }
            })
            .collect()
    }
}

/// `::ffff:10.0.0.0/104` is `10.0.0.0/8`: clients are matched as canonical
/// addresses (see [`crate::config::canonical_ip`]), so blocks are too.
fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bounded_and_default_their_burst() {
        assert_eq!(Rate::new(10.0, None).unwrap().burst(), 10);
        assert_eq!(Rate::new(0.5, None).unwrap().burst(), 1);
        assert_eq!(Rate::new(2.5, Some(7)).unwrap().burst(), 7);
        assert_eq!(Rate::new(0.0, None), Err(PolicyError::PerSecond));
        assert_eq!(Rate::new(-1.0, None), Err(PolicyError::PerSecond));
        assert_eq!(Rate::new(f64::NAN, None), Err(PolicyError::PerSecond));
        assert_eq!(Rate::new(2e6, None), Err(PolicyError::PerSecond));
        assert_eq!(Rate::new(1.0, Some(0)), Err(PolicyError::Burst));
        assert_eq!(Rate::new(1.0, Some(MAX_BURST + 1)), Err(PolicyError::Burst));
        let rate = Rate::new(10.0, Some(20)).unwrap();
        assert_eq!(rate.interval_nanos(), 100_000_000);
        assert_eq!(rate.window_secs(), 2);
        // The slowest rate with the largest burst still fits the bucket's
        // nanosecond arithmetic.
        let slow = Rate::new(MIN_PER_SECOND, Some(MAX_BURST)).unwrap();
        assert!(slow
            .interval_nanos()
            .checked_mul(u64::from(MAX_BURST))
            .is_some());
    }

    #[test]
    fn allow_from_parses_addresses_and_blocks() {
        let list = AllowFrom::parse(&["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"]).unwrap();
        assert!(list.admits("203.0.113.200".parse().unwrap()));
        assert!(!list.admits("203.0.114.1".parse().unwrap()));
        assert!(list.admits("2001:db8:0:ffff::1".parse().unwrap()));
        assert!(!list.admits("2001:db9::1".parse().unwrap()));
        assert!(list.admits("198.51.100.7".parse().unwrap()));
        assert!(!list.admits("198.51.100.8".parse().unwrap()));
        assert_eq!(
            list.to_strings(),
            ["203.0.113.0/24", "2001:db8::/48", "198.51.100.7"]
        );
    }

    #[test]
    fn allow_from_names_the_bad_entry() {
        let error = AllowFrom::parse(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "allow_from[1]: \"10.0.0.0/33\" is not a CIDR block"
        );
        let error = AllowFrom::parse(&["10.1.2.3/8"]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "allow_from[0]: 10.1.2.3/8 has host bits set; the block is 10.0.0.0/8"
        );
        assert!(AllowFrom::parse(&["example.com"]).is_err());
        assert_eq!(
            AllowFrom::parse::<&str>(&[]),
            Err(PolicyError::AddressCount)
        );
    }

    #[test]
    fn mapped_blocks_match_canonical_clients() {
        let list = AllowFrom::parse(&["::ffff:10.0.0.0/104"]).unwrap();
        assert!(list.admits("10.9.8.7".parse().unwrap()));
        assert_eq!(list.to_strings(), ["10.0.0.0/8"]);
    }
}
