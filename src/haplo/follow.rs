//! `[haplo]`: keeping keygate's key table in step with a running Haplo
//! application, by polling its tables.
//!
//! Every `poll_secs` the follower asks Haplo's database for the tables'
//! [`Fingerprint`] (one small query). Only when it differs from the one of
//! the table last applied does it read the rows and hand them to the
//! keyring as a batch ([`Keyring::import_haplo`] with
//! [`Missing::Remove`]): keys created, changed or deleted in Haplo's UI,
//! and users blocked, deleted or re-activated there, take effect at the
//! edge within one poll. A poll that finds no change writes nothing and
//! rebuilds nothing; a batch that does change something goes through the
//! one path every write takes ([`Writes`]: one transaction and one
//! snapshot swap, after PostgreSQL in a fleet).
//!
//! When the database is away, keygate keeps serving the table it last
//! applied: it is in redb, so across restarts too. The follower logs once
//! when the database goes away and once when it comes back (not once per
//! attempt), retries with a backoff doubling up to [`MAX_BACKOFF`], and
//! [`SyncStatus`] tells `/readyz` and the metrics how old the last good
//! sync is.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{to_batch, Fingerprint, HaploError, Source};
use crate::config::HaploFollow;
use crate::fleet::replica::FleetWriteError;
use crate::keys::{ImportReport, Keyring, Missing, WriteError};
use crate::writes::Writes;

/// The longest wait between attempts while the database is away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the audit trail records as the client of a sync.
const SYNC_CLIENT: &str = "haplo-sync";

/// How the follower is doing, for `/readyz` and the metrics.
#[derive(Debug)]
pub struct SyncStatus {
    started: Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last_good: Option<Instant>,
    /// Why the latest attempt failed; `None` after a good one.
    error: Option<String>,
}

impl SyncStatus {
    /// A follower that has not synced yet.
    pub fn new() -> Self {
        SyncStatus {
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long since the last good sync (since start, if none yet): the
    /// age of the table keygate serves, as far as Haplo is concerned.
    pub fn age(&self) -> Duration {
        self.state().last_good.unwrap_or(self.started).elapsed()
    }

    /// Whether a sync has succeeded since start.
    pub fn ever_synced(&self) -> bool {
        self.state().last_good.is_some()
    }

    /// Why the latest attempt failed (no password in it), if it did.
    pub fn error(&self) -> Option<String> {
        self.state().error.clone()
    }

    fn good(&self) {
        let mut state = self.state();
        state.last_good = Some(Instant::now());
        state.error = None;
    }

    fn failed(&self, error: String) {
        self.state().error = Some(error);
    }
}

impl Default for SyncStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Haplo(#[from] HaploError),
    #[error("cannot apply Haplo's keys: {0}")]
    Write(#[from] FleetWriteError),
}

/// Follows `follow`'s application until `stop` resolves, applying its
/// changes through `writes` (this store, or a fleet's shared table first:
/// in a fleet every replica follows, and under the fleet lock all but the
/// first to see a change find nothing left to do).
pub async fn run(
    writes: Writes,
    follow: HaploFollow,
    status: Arc<SyncStatus>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut follower = Follower {
        writes,
        follow,
        source: None,
        applied: None,
    };
    let mut delay = Duration::ZERO;
    let mut down = false;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
        }
        match follower.poll().await {
            Ok(report) => {
                if down {
                    tracing::info!(database = %follower.follow.database, "Haplo's database is reachable again");
                    down = false;
                }
                if let Some(report) = report.filter(ImportReport::changed) {
                    tracing::info!(
                        app = follower.follow.app_id,
                        created = report.created,
                        updated = report.updated,
                        removed = report.removed,
                        users_blocked = report.users_blocked,
                        users_unblocked = report.users_unblocked,
                        skipped = report.skipped.len(),
                        "applied changes from Haplo"
                    );
                }
                status.good();
                delay = follower.follow.poll;
            }
            Err(error) => {
                let message = error.to_string();
                if !down {
                    tracing::warn!(error = %message, "cannot sync keys from Haplo; serving the last table until it can");
                    down = true;
                }
                status.failed(message);
                // A failed connection is not reused.
                follower.source = None;
                delay =
                    (delay * 2).clamp(follower.follow.poll, MAX_BACKOFF.max(follower.follow.poll));
            }
        }
    }
}

struct Follower {
    writes: Writes,
    follow: HaploFollow,
    source: Option<Source>,
    /// The fingerprint of the table last applied.
    applied: Option<Fingerprint>,
}

impl Follower {
    /// One poll: the fingerprint, and the rows only if it changed. Returns
    /// the report of a batch applied, or `None` when nothing changed.
    async fn poll(&mut self) -> Result<Option<ImportReport>, PollError> {
        let app = self.follow.app_id;
        let source = match &mut self.source {
            Some(source) if !source.is_closed() => source,
            _ => self
                .source
                .insert(Source::connect(self.follow.database.expose()).await?),
        };
        let fingerprint = source.fingerprint(app).await?;
        if self.applied.as_ref() == Some(&fingerprint) {
            return Ok(None);
        }
        let table = source.read(app).await?;
        let batch = to_batch(&table, app, self.follow.user_field);
        let report = self
            .writes
            .run(move |keyring: &Keyring| {
                keyring
                    .plan_import_haplo(&batch, Missing::Remove, Some(SYNC_CLIENT))
                    .map_err(WriteError::Store)
            })
            .await?;
        // The rows' own fingerprint, from the read's snapshot: a change
        // made since the fingerprint above is caught by the next poll.
        self.applied = Some(table.fingerprint);
        Ok(Some(report))
    }
}
