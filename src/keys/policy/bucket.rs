//! A key's rate limiter: a token bucket kept as one atomic number.
//!
//! This is the generic cell rate algorithm (GCRA), the token bucket's
//! exact equivalent: instead of a token count and a refill time, it keeps
//! one "theoretical arrival time" (TAT), the moment the bucket would be
//! full again. A request at `now` is admitted when taking its token would
//! not push the TAT more than `burst` intervals past `now`; admitting it
//! moves the TAT one interval on. One `AtomicU64` per key, updated with a
//! compare-and-swap, so every worker thread shares one bucket per key
//! without a lock, and memory is 8 bytes per rate-limited key whatever the
//! traffic (no per-address state).
//!
//! Time is a count of nanoseconds on a monotonic line the caller supplies
//! ([`crate::timestamp::Clock::ticks`]), so tests drive it by hand.

use std::sync::atomic::{AtomicU64, Ordering};

use super::Rate;

/// One key's bucket.
#[derive(Debug)]
pub struct Bucket {
    /// Nanoseconds per token.
    interval: u64,
    /// `burst` intervals: how far past `now` the TAT may run.
    capacity: u64,
    /// When the bucket is full again (0: full from the start).
    tat: AtomicU64,
}

/// What an admitted request leaves in the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remaining {
    /// Whole tokens left.
    pub tokens: u64,
    /// Nanoseconds until the bucket is full again.
    pub full_in: u64,
}

/// A refused request: how long until a token is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    /// Nanoseconds until the next request would be admitted.
    pub retry_in: u64,
}

impl Bucket {
    /// A full bucket for `rate`.
    pub fn new(rate: &Rate) -> Self {
        let interval = rate.interval_nanos().max(1);
        Bucket {
            interval,
            // Bounded by `Rate`'s limits: at most a day times 100,000.
            capacity: interval.saturating_mul(u64::from(rate.burst())),
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now`, or says how long until one is back.
    #[inline]
    pub fn take(&self, now: u64) -> Result<Remaining, Exhausted> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let ahead = next - now;
            if ahead > self.capacity {
                return Err(Exhausted {
                    retry_in: ahead - self.capacity,
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(Remaining {
                        tokens: (self.capacity - ahead) / self.interval,
                        full_in: ahead,
                    })
                }
                Err(actual) => tat = actual,
            }
        }
    }

    /// Carries the state of `old` (the same key's bucket before its entry
    /// was rebuilt) into this one, so that an unrelated change to the key
    /// does not hand it a full bucket.
    pub(crate) fn carry(&self, old: &Bucket) {
        self.tat
            .fetch_max(old.tat.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn bucket(per_second: f64, burst: u32) -> Bucket {
        Bucket::new(&Rate::new(per_second, Some(burst)).unwrap())
    }

    #[test]
    fn a_full_bucket_admits_exactly_its_burst() {
        let b = bucket(1.0, 3);
        let now = 50 * SECOND;
        assert_eq!(b.take(now).map(|r| r.tokens), Ok(2));
        assert_eq!(b.take(now).map(|r| r.tokens), Ok(1));
        assert_eq!(
            b.take(now),
            Ok(Remaining {
                tokens: 0,
                full_in: 3 * SECOND
            })
        );
        assert_eq!(b.take(now), Err(Exhausted { retry_in: SECOND }));
        // One nanosecond early is still too early; on the dot is in.
        assert_eq!(b.take(now + SECOND - 1), Err(Exhausted { retry_in: 1 }));
        assert_eq!(b.take(now + SECOND).map(|r| r.tokens), Ok(0));
        assert!(b.take(now + SECOND).is_err());
    }

    #[test]
    fn tokens_come_back_at_the_rate_up_to_the_burst() {
        let b = bucket(10.0, 5);
        for _ in 0..5 {
            assert!(b.take(0).is_ok());
        }
        assert!(b.take(0).is_err());
        // 250 ms: two tokens back (one every 100 ms), not three.
        let t = SECOND / 4;
        assert!(b.take(t).is_ok());
        assert!(b.take(t).is_ok());
        assert_eq!(
            b.take(t),
            Err(Exhausted {
                retry_in: SECOND / 20
            })
        );
        // A long pause refills to the burst and no further.
        let t = 100 * SECOND;
        for left in (0..5).rev() {
            assert_eq!(b.take(t).map(|r| r.tokens), Ok(left));
        }
        assert!(b.take(t).is_err());
    }

    #[test]
    fn refused_requests_take_nothing() {
        let b = bucket(1.0, 1);
        assert!(b.take(0).is_ok());
        for _ in 0..1000 {
            assert!(b.take(SECOND / 2).is_err());
        }
        assert!(
            b.take(SECOND).is_ok(),
            "hammering did not push the refill back"
        );
    }

    #[test]
    fn carrying_keeps_an_empty_bucket_empty() {
        let old = bucket(1.0, 2);
        assert!(old.take(0).is_ok() && old.take(0).is_ok());
        let new = bucket(1.0, 2);
        new.carry(&old);
        assert!(new.take(0).is_err());
    }

    #[test]
    fn threads_share_one_bucket_without_losing_tokens() {
        let b = std::sync::Arc::new(bucket(1.0, 1000));
        let admitted: u64 = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).filter(|_| b.take(SECOND).is_ok()).count())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap() as u64)
            .sum();
        assert_eq!(admitted, 1000);
    }
}
