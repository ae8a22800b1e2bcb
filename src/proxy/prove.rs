//! The first use of a key imported from Haplo: proving it with bcrypt.
//!
//! Haplo stores only a bcrypt hash of each key's secret, so the first time
//! an imported key is presented, keygate must run bcrypt once (cost 5:
//! about 2 ms of CPU) before the key takes BLAKE3's fast path for good
//! (`Keyring::prove_bcrypt`). Two rules keep that from hurting everyone
//! else:
//!
//! - bcrypt never runs on a proxy worker's event loop, where 2 ms would
//!   stall every other connection on that worker: it runs on tokio's
//!   blocking pool;
//! - at most [`Slots`]' permits run at once (half the cores, at least
//!   one), so a flood of wrong secrets for imported ids, from however many
//!   addresses, can take at most that share of the CPU. A request waits at
//!   most [`MAX_WAIT`] for a permit, and at most [`MAX_WAITING`] requests
//!   wait at all; beyond either, it gets `503 TEMPORARILY-UNAVAILABLE` with
//!   `Retry-After` rather than a queue without bound. Wrong secrets, and
//!   these 503s, count as failures for the address throttle, so an address
//!   that floods unproven ids is soon refused before it reaches bcrypt.
//!
//! A bcrypt check, once started, runs to its end even if the client goes
//! away, and holds its permit until then: the bound is on CPU, not on
//! requests.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::keys::Keyring;

/// The longest a request waits for a bcrypt permit.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(2);
/// The most requests that wait for a permit at once.
pub(super) const MAX_WAITING: usize = 256;

/// The bcrypt permits shared by every worker.
#[derive(Debug)]
pub(super) struct Slots {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Slots {
    pub(super) fn new() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Slots {
            running: Arc::new(Semaphore::new((cores / 2).max(1))),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// A presented key, copied out of its request for the blocking pool. Its
/// `Debug` never shows it.
pub(super) struct Presented(Box<[u8]>);

impl Presented {
    pub(super) fn copy(key: &[u8]) -> Self {
        Presented(Box::from(key))
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Presented(<redacted>)")
    }
}

/// How proving a key ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Proved {
    /// bcrypt accepted the secret: the key is upgraded.
    Yes,
    /// Wrong secret (or the key is gone).
    No,
    /// No permit in time.
    Busy,
}

/// Proves `presented` with bcrypt on the blocking pool, within the bounds
/// of `slots`.
pub(super) async fn bcrypt(keyring: &Arc<Keyring>, slots: &Slots, presented: Presented) -> Proved {
    if slots.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        return Proved::Busy;
    }
    let permit = tokio::time::timeout(MAX_WAIT, slots.running.clone().acquire_owned()).await;
    slots.waiting.fetch_sub(1, Ordering::AcqRel);
    let Ok(Ok(permit)) = permit else {
        return Proved::Busy;
    };
    let keyring = keyring.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let proven = keyring.prove_bcrypt(&presented.0);
        drop(permit);
        proven
    })
    .await;
    match checked {
        Ok(true) => Proved::Yes,
        Ok(false) => Proved::No,
        // The blocking task panicked or the runtime is shutting down.
        Err(_) => Proved::Busy,
    }
}
