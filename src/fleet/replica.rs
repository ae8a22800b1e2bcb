//! One replica of a fleet: its writes, and the follower that keeps its
//! local copy in step with the shared table.
//!
//! **Writes** ([`Replica::write`]): take the fleet write lock
//! ([`super::WriteTxn`]), bring the local copy up to the shared head (so the
//! decision is made against every earlier write, from any replica), plan
//! the write against that copy ([`Keyring`]'s `plan_*`), append it to the
//! shared table and commit; only then apply it locally with its sequence
//! numbers, so it is in effect on this replica before the admin API
//! answers. Every other replica learns of it through `NOTIFY`. If
//! PostgreSQL cannot be reached, nothing is written anywhere and the
//! caller answers 503.
//!
//! **Following** ([`follow`]): a `LISTEN` connection wakes the follower
//! on every commit; it reads the changes after the last one it applied and
//! applies them ([`Keyring::apply_synced`]: one transaction and one
//! snapshot swap per batch, the sequence number recorded with them, so
//! nothing is applied twice or missed across a reconnect or a restart). A
//! check of the head every [`SAFETY_POLL`] covers a notification lost
//! without the connection noticing. While PostgreSQL is away the replica
//! serves its local copy, says how long it has been cut off
//! ([`FleetStatus`]), retries with a backoff up to [`MAX_BACKOFF`] and logs
//! once per change of state.
//!
//! **Joining**: a replica whose file has never synced takes the shared
//! state whole ([`SharedTable::copy`]) before it reports ready; if the
//! shared table is empty and the file is not (a single keygate becoming
//! the first replica), the file's keys and blocks seed the shared table.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use super::{FleetError, SharedTable};
use crate::config::DatabaseUrl;
use crate::keys::{AuditEvent, AuditFrom, Change, KeyId, Keyring, Planned, StoreError, WriteError};
use crate::timestamp::Timestamp;

pub use self::follow::follow;

mod follow;

/// How often the follower checks the head even without a notification.
pub const SAFETY_POLL: Duration = Duration::from_secs(1);
/// The longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Changes read per statement while catching up.
const BATCH: usize = 1_000;

/// A write that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum FleetWriteError {
    /// The write was refused or failed locally (as on a single node).
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The fleet's database could not be used: nothing was written.
    #[error("the fleet database is unavailable, nothing was written: {0}")]
    Unavailable(#[from] FleetError),
    /// A blocking task failed (a panic, or the runtime shutting down).
    #[error("a background task failed: {0}")]
    Task(String),
    /// The replica has not joined the fleet yet (its copy of the shared
    /// table is still being made): a write now could be decided against
    /// this file's old keys.
    #[error("this replica is still joining the fleet; nothing was written")]
    Joining,
}

impl From<StoreError> for FleetWriteError {
    fn from(error: StoreError) -> Self {
        FleetWriteError::Write(WriteError::Store(error))
    }
}

/// How the replica's link to the shared table is doing, for `/readyz` and
/// the metrics.
#[derive(Debug)]
pub struct FleetStatus {
    state: Mutex<LinkState>,
}

#[derive(Debug)]
struct LinkState {
    /// Since when the replica has been unable to reach the shared table
    /// (`None` while it can).
    cut_off_since: Option<Instant>,
    /// Whether the local copy has ever been in step (a file that synced
    /// before counts: it serves from the moment it starts).
    has_copy: bool,
    error: Option<String>,
}

impl FleetStatus {
    /// The status of a replica whose file has synced before (`has_copy`)
    /// or not.
    pub fn new(has_copy: bool) -> Self {
        FleetStatus {
            state: Mutex::new(LinkState {
                cut_off_since: Some(Instant::now()),
                has_copy,
                error: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the replica may serve: it has a copy of the shared table.
    pub fn ready(&self) -> bool {
        self.state().has_copy
    }

    /// How long the replica has been cut off from the shared table (zero
    /// while connected).
    pub fn cut_off_for(&self) -> Duration {
        self.state()
            .cut_off_since
            .map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Why the latest attempt failed (no password in it), while cut off.
    pub fn error(&self) -> Option<String> {
        self.state().error.clone()
    }

    fn connected(&self) {
        let mut state = self.state();
        state.cut_off_since = None;
        state.has_copy = true;
        state.error = None;
    }

    fn failed(&self, error: String) {
        let mut state = self.state();
        state.cut_off_since.get_or_insert_with(Instant::now);
        state.error = Some(error);
    }
}

/// A replica: the keyring it keeps, and its connection for writes.
#[derive(Debug)]
pub struct Replica {
    keyring: Arc<Keyring>,
    database: DatabaseUrl,
    /// One connection for writes, opened on first use and after a failure.
    /// Writes on one replica queue here; across replicas, on the lock.
    writer: AsyncMutex<Option<SharedTable>>,
    status: Arc<FleetStatus>,
}

impl Replica {
    /// A replica of the fleet at `database`, keeping `keyring`.
    pub fn new(keyring: Arc<Keyring>, database: DatabaseUrl) -> Self {
        let has_copy = keyring.synced_seq() > 0;
        Replica {
            keyring,
            database,
            writer: AsyncMutex::new(None),
            status: Arc::new(FleetStatus::new(has_copy)),
        }
    }

    /// The link's status.
    pub fn status(&self) -> &Arc<FleetStatus> {
        &self.status
    }

    /// The keyring this replica keeps.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Merges this replica's last-use times into the shared table (latest
    /// wins; no lock, no notification: they are not changes). Best effort:
    /// a failure is logged and the next flush brings newer times.
    pub async fn merge_last_used(&self, used: &[(KeyId, Timestamp)]) {
        if used.is_empty() {
            return;
        }
        let mut slot = self.writer.lock().await;
        let merged = async {
            let table = match &mut *slot {
                Some(table) if !table.is_closed() => table,
                _ => slot.insert(connect(&self.database).await?),
            };
            table.merge_last_used(used).await
        }
        .await;
        if let Err(error) = merged {
            tracing::debug!(%error, "cannot merge last-use times into the fleet database; the next flush will");
            *slot = None;
        }
    }

    /// The fleet's audit trail from PostgreSQL: events after a sequence
    /// number, or at or after a time, at most `limit`.
    pub async fn audit(
        &self,
        from: AuditFrom,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, FleetError> {
        let mut slot = self.writer.lock().await;
        let result = async {
            let table = match &mut *slot {
                Some(table) if !table.is_closed() => table,
                _ => slot.insert(connect(&self.database).await?),
            };
            match from {
                AuditFrom::After(seq) => table.audit(seq, limit).await,
                AuditFrom::Since(at) => {
                    // By time: page through in order, keeping events at or
                    // after `at` (the trail is in time order too).
                    let mut found = Vec::new();
                    let mut after = 0;
                    loop {
                        let page = table.audit(after, BATCH).await?;
                        let done = page.len() < BATCH;
                        after = page.last().map_or(after, |(seq, _)| *seq);
                        found.extend(page.into_iter().filter(|(_, e)| e.time >= at.unix()));
                        if found.len() >= limit || done {
                            found.truncate(limit);
                            return Ok(found);
                        }
                    }
                }
            }
        }
        .await;
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Makes a write fleet-wide: `plan` decides it against a local copy
    /// brought up to date under the fleet write lock; it is committed to
    /// the shared table, then applied here. Durable and in effect on this
    /// replica when this returns.
    pub async fn write<T, P>(&self, plan: P) -> Result<T, FleetWriteError>
    where
        T: Send + 'static,
        P: FnOnce(&Keyring) -> Result<Planned<T>, WriteError> + Send + 'static,
    {
        if !self.status.ready() {
            return Err(FleetWriteError::Joining);
        }
        let mut slot = self.writer.lock().await;
        let result = self.write_on(&mut slot, plan).await;
        if let Err(FleetWriteError::Unavailable(_)) = &result {
            // A failed connection is not reused.
            *slot = None;
        }
        result
    }

    async fn write_on<T, P>(
        &self,
        slot: &mut Option<SharedTable>,
        plan: P,
    ) -> Result<T, FleetWriteError>
    where
        T: Send + 'static,
        P: FnOnce(&Keyring) -> Result<Planned<T>, WriteError> + Send + 'static,
    {
        let table = match slot {
            Some(table) if !table.is_closed() => table,
            _ => slot.insert(connect(&self.database).await?),
        };
        let mut txn = table.begin_write().await?;
        // Catch up under the lock: no other replica can commit meanwhile,
        // so the plan sees every earlier write.
        loop {
            let missed = txn.since(self.keyring.synced_seq(), BATCH).await?;
            let done = missed.len() < BATCH;
            if !missed.is_empty() {
                let keyring = self.keyring.clone();
                blocking(move || keyring.apply_synced(&missed)).await??;
            }
            if done {
                break;
            }
        }
        let keyring = self.keyring.clone();
        let planned = blocking(move || plan(&keyring)).await??;
        if planned.changes.is_empty() {
            return Ok(planned.outcome);
        }
        let first = txn.head() + 1;
        txn.append(&planned.changes, &planned.events).await?;
        txn.commit().await?;
        let numbered: Vec<(u64, Change)> = (first..).zip(planned.changes).collect();
        let keyring = self.keyring.clone();
        let events = planned.events;
        blocking(move || keyring.apply_synced_with(&numbered, &events)).await??;
        Ok(planned.outcome)
    }
}

/// A connection to the shared table, its schema migrated: a write may come
/// before the follower's first connection has created the tables.
async fn connect(database: &DatabaseUrl) -> Result<SharedTable, FleetError> {
    let mut table = SharedTable::connect(database.expose()).await?;
    table.migrate().await?;
    Ok(table)
}

/// Runs `work` on the blocking pool (redb fsyncs, bcrypt-free planning).
async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, FleetWriteError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FleetWriteError::Task(e.to_string()))
}
