//! The per-address failure throttle (Haplo's `KLoginAttemptThrottle`).
//!
//! An address with `max_failures` counted failures is refused until
//! `window` has passed since its latest counted failure; a forwarded request
//! clears its count. Memory is bounded by `max_tracked` entries, split over
//! shards so concurrent failures rarely contend:
//!
//! - when a shard is full, entries whose window has passed are dropped;
//! - if it is still full, the entry with the fewest failures in a sample is
//!   evicted, but only if it has no more than the newcomer's single
//!   failure; otherwise the newcomer is not recorded. Addresses that are
//!   being throttled have the most failures, so a flood of fresh addresses
//!   can never push an attacker out of the table.
//!
//! IPv6 addresses are counted per /64: a single host normally controls a
//! whole /64, so counting single addresses would let it rotate freely.
//!
//! The common case (no failures anywhere) costs one relaxed atomic load:
//! `tracked` is zero and the shards are never locked. Locks are `std`
//! mutexes held for a few map operations, never across `.await`.
//!
//! Addresses are hashed once per call, with a randomly keyed SipHash (the
//! addresses are the attacker's to choose), and that one hash picks the
//! shard and places the entry in it ([`Keyed`]): std's `HashMap` would
//! otherwise hash the same address again for each lookup, three SipHash
//! runs per refused key where one will do.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::config::{canonical_ip, ThrottleLimits};

const SHARDS: usize = 16;
/// Entries examined when choosing one to evict from a full shard.
const EVICTION_SAMPLE: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    latest: Instant,
}

impl Failures {
    fn expired(&self, limits: &ThrottleLimits, now: Instant) -> bool {
        now.saturating_duration_since(self.latest) >= limits.window
    }
}

/// An address with its keyed hash. Equality is the address's, so two
/// addresses whose hashes collide are still two entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Keyed {
    hash: u64,
    addr: IpAddr,
}

impl Hash for Keyed {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The shards' hasher: hands back the hash [`Keyed`] already carries.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `Keyed` is hashed here, through `write_u64`; this keeps any
        // other use correct, if slower.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
}

type Shard = HashMap<Keyed, Failures, BuildHasherDefault<PassThrough>>;

/// Failure counts per client address.
#[derive(Debug)]
pub struct Throttle {
    shards: Box<[Mutex<Shard>]>,
    /// Entries across all shards; lets the success path skip locking.
    tracked: AtomicUsize,
    hasher: RandomState,
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

impl Throttle {
    /// An empty throttle.
    pub fn new() -> Self {
        Throttle {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            tracked: AtomicUsize::new(0),
            hasher: RandomState::new(),
        }
    }

    /// The key an address is counted under: IPv4 as is, IPv6 by /64,
    /// with its hash.
    fn key(&self, addr: IpAddr) -> Keyed {
        let addr = match canonical_ip(addr) {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        };
        Keyed {
            hash: self.hasher.hash_one(addr),
            addr,
        }
    }

    fn shard(&self, key: &Keyed) -> MutexGuard<'_, Shard> {
        // Bits the map does not use: it places entries by the low bits and
        // tags them with the top seven, so a shard choice from either would
        // leave part of each shard's table empty.
        let index = (key.hash >> 40) as usize % SHARDS;
        // Counts are plain numbers: a panic mid-update cannot break them.
        self.shards[index]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether requests with a key from `addr` are refused right now.
    pub fn is_throttled(&self, addr: IpAddr, limits: &ThrottleLimits, now: Instant) -> bool {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let key = self.key(addr);
        let shard = self.shard(&key);
        shard
            .get(&key)
            .is_some_and(|f| f.count >= limits.max_failures && !f.expired(limits, now))
    }

    /// Counts one failure for `addr`.
    pub fn record_failure(&self, addr: IpAddr, limits: &ThrottleLimits, now: Instant) {
        let key = self.key(addr);
        let mut shard = self.shard(&key);
        let capacity = (limits.max_tracked / SHARDS).max(1);
        if !shard.contains_key(&key)
            && shard.len() >= capacity
            && !self.make_room(&mut shard, limits, now, capacity)
        {
            // Full of addresses with more failures than this one: they
            // matter more, so this single failure goes unrecorded.
            return;
        }
        match shard.entry(key) {
            Entry::Occupied(mut slot) => {
                let failures = slot.get_mut();
                // A window that has passed starts a fresh count.
                failures.count = if failures.expired(limits, now) {
                    1
                } else {
                    failures.count.saturating_add(1)
                };
                failures.latest = now;
            }
            Entry::Vacant(slot) => {
                slot.insert(Failures {
                    count: 1,
                    latest: now,
                });
                self.tracked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Clears `addr`'s count after a successful request.
    pub fn clear(&self, addr: IpAddr) {
        if self.tracked.load(Ordering::Relaxed) == 0 {
            return;
        }
        let key = self.key(addr);
        if self.shard(&key).remove(&key).is_some() {
            self.tracked.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Addresses currently remembered (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// Addresses refused right now (walks every shard; not for the hot path).
    pub fn throttled(&self, limits: &ThrottleLimits, now: Instant) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|p| p.into_inner());
                shard
                    .values()
                    .filter(|f| f.count >= limits.max_failures && !f.expired(limits, now))
                    .count()
            })
            .sum()
    }

    /// Frees one slot in a full shard for a newcomer with one failure.
    /// Returns `false` when every candidate has more failures than that.
    fn make_room(
        &self,
        shard: &mut Shard,
        limits: &ThrottleLimits,
        now: Instant,
        capacity: usize,
    ) -> bool {
        let before = shard.len();
        shard.retain(|_, f| !f.expired(limits, now));
        let mut room = shard.len() < capacity;
        if !room {
            let victim = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, f)| (f.count, f.latest))
                .filter(|(_, f)| f.count <= 1)
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                shard.remove(&victim);
                room = true;
            }
        }
        self.tracked
            .fetch_sub(before - shard.len(), Ordering::Relaxed);
        room
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn addresses_whose_hashes_collide_are_still_counted_apart() {
        let mut shard = Shard::default();
        let one = Keyed {
            hash: 7,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        };
        let two = Keyed {
            hash: 7,
            addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        };
        let latest = Instant::now();
        shard.insert(one, Failures { count: 5, latest });
        shard.insert(two, Failures { count: 1, latest });
        assert_eq!(shard.len(), 2);
        assert_eq!(shard[&one].count, 5);
    }

    fn limits(max: u32, max_tracked: usize) -> ThrottleLimits {
        ThrottleLimits {
            max_failures: max,
            window: Duration::from_secs(300),
            max_tracked,
        }
    }

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn throttles_after_max_failures_until_the_window_passes() {
        let t = Throttle::new();
        let l = limits(3, 1000);
        let start = Instant::now();
        for i in 0..3 {
            assert!(!t.is_throttled(v4(1), &l, start), "after {i}");
            t.record_failure(v4(1), &l, start + Duration::from_secs(i));
        }
        let last = start + Duration::from_secs(2);
        assert!(t.is_throttled(v4(1), &l, last));
        assert!(t.is_throttled(v4(1), &l, last + Duration::from_secs(299)));
        assert!(!t.is_throttled(v4(1), &l, last + Duration::from_secs(300)));
        assert!(!t.is_throttled(v4(2), &l, last));
    }

    #[test]
    fn a_success_clears_the_count() {
        let t = Throttle::new();
        let l = limits(2, 1000);
        let now = Instant::now();
        t.record_failure(v4(1), &l, now);
        t.clear(v4(1));
        t.record_failure(v4(1), &l, now);
        assert!(!t.is_throttled(v4(1), &l, now));
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let t = Throttle::new();
        let l = limits(2, 1000);
        let now = Instant::now();
        t.record_failure("2001:db8::1".parse().unwrap(), &l, now);
        t.record_failure("2001:db8::2".parse().unwrap(), &l, now);
        assert!(t.is_throttled("2001:db8::ffff".parse().unwrap(), &l, now));
        assert!(!t.is_throttled("2001:db8:0:1::1".parse().unwrap(), &l, now));
    }

    #[test]
    fn a_tiny_table_still_keeps_a_throttled_address() {
        let t = Throttle::new();
        let l = limits(3, 16); // one slot per shard
        let now = Instant::now();
        for _ in 0..3 {
            t.record_failure(v4(7), &l, now);
        }
        for n in 1_000..5_000 {
            t.record_failure(v4(n), &l, now);
        }
        assert!(t.tracked() <= 16);
        assert!(t.is_throttled(v4(7), &l, now));
    }

    #[test]
    fn memory_is_bounded_and_throttled_addresses_survive_a_flood() {
        let t = Throttle::new();
        let l = limits(5, 1600);
        let now = Instant::now();
        for _ in 0..5 {
            t.record_failure(v4(7), &l, now);
        }
        for n in 1_000..200_000 {
            t.record_failure(v4(n), &l, now);
        }
        assert!(t.tracked() <= 1600, "{}", t.tracked());
        assert!(t.is_throttled(v4(7), &l, now));
    }
}
