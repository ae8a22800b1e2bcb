//! Wall-clock instants as whole Unix seconds, shown as RFC 3339 UTC.
//!
//! Everything keygate records (creation, expiry, last use) has second
//! precision, so a plain `i64` is the stored form: it is what the redb record
//! holds, what the request path compares, and it cannot carry a time zone
//! that would need normalising. Only the admin API's JSON turns it into text.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Seconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(i64);

/// Why an RFC 3339 string was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("not an RFC 3339 time such as 2030-01-31T12:00:00Z")]
pub struct TimestampError(());

impl Timestamp {
    /// The current time. Reads the system clock (a vDSO call, no syscall).
    pub fn now() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// A timestamp from Unix seconds.
    pub const fn from_unix(secs: i64) -> Self {
        Timestamp(secs)
    }

    /// Unix seconds.
    pub const fn unix(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `secs` seconds, saturating.
    pub fn plus_secs(self, secs: u64) -> Self {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(secs))
    }

    /// Parses an RFC 3339 time with any offset; sub-second digits are dropped.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| Timestamp(t.unix_timestamp()))
            .map_err(|_| TimestampError(()))
    }
}

/// Where keygate reads "now" for key expiry and record times.
///
/// The system clock in production; a manual clock that tests move forward,
/// so that expiry and rotation grace periods are tested without sleeping.
/// An enum-like struct rather than a trait: there are exactly two clocks.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<Manual>>,
}

#[derive(Debug)]
struct Manual {
    start: i64,
    now: AtomicI64,
}

/// The instant [`Clock::ticks`] counts from on the system clock.
static EPOCH: OnceLock<Instant> = OnceLock::new();

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock that stands still at `start` until [`Clock::advance`]d.
    pub fn manual(start: Timestamp) -> Self {
        Clock {
            manual: Some(Arc::new(Manual {
                start: start.0,
                now: AtomicI64::new(start.0),
            })),
        }
    }

    /// Now, by this clock.
    #[inline]
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => Timestamp::now(),
            Some(manual) => Timestamp(manual.now.load(Ordering::Relaxed)),
        }
    }

    /// Monotonic nanoseconds, for rate limits: `at` on a line that starts
    /// with the process (system clock), or the seconds a manual clock has
    /// been moved forward, so that tests drive rate limits by hand too.
    #[inline]
    pub fn ticks(&self, at: Instant) -> u64 {
        match &self.manual {
            None => {
                let epoch = *EPOCH.get_or_init(Instant::now);
                u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
            }
            Some(manual) => {
                let secs = manual.now.load(Ordering::Relaxed) - manual.start;
                u64::try_from(secs)
                    .unwrap_or(0)
                    .saturating_mul(1_000_000_000)
            }
        }
    }

    /// Moves a manual clock forward (no effect on the system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(manual) = &self.manual {
            manual.now.fetch_add(secs, Ordering::Relaxed);
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with a `Z` suffix, e.g. `2026-11-26T14:27:10Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(t) => {
                let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
                let (h, mi, s) = (t.hour(), t.minute(), t.second());
                write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
            }
            // Outside time's range (year ±9999): show the raw number rather
            // than invent a date.
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_unix(1_700_000_000).to_string(),
            "2023-11-14T22:13:20Z"
        );
    }

    #[test]
    fn parses_offsets_into_utc() {
        let t = Timestamp::parse_rfc3339("2023-11-15T00:13:20+02:00").unwrap();
        assert_eq!(t, Timestamp::from_unix(1_700_000_000));
        assert!(Timestamp::parse_rfc3339("2023-11-15").is_err());
        assert!(Timestamp::parse_rfc3339("tomorrow").is_err());
    }
}
