//! Following the shared table: the `LISTEN` loop that keeps a replica's
//! local copy in step, with its backoff, and joining (taking the fleet's
//! state whole, or seeding an empty shared table) before the first
//! change is applied. See [`super`] for how it fits with writes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{blocking, connect, FleetWriteError, Replica, BATCH, MAX_BACKOFF, SAFETY_POLL};
use crate::fleet::{Listener, SharedTable};
use crate::keys::{Blocker, Change};

/// Keeps `replica`'s local copy in step with the shared table until `stop`
/// resolves.
pub async fn follow(replica: Arc<Replica>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    let status = replica.status.clone();
    let mut delay = Duration::ZERO;
    let mut logged_down = false;
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
        }
        let ended = tokio::select! {
            () = &mut stop => return,
            ended = follow_session(&replica) => ended,
        };
        let error = match ended {
            Ok(never) => match never {},
            Err(error) => error.to_string(),
        };
        // A session that got connected resets the backoff and the log.
        let was_up = status.cut_off_for() == Duration::ZERO && status.ready();
        if was_up {
            logged_down = false;
            delay = Duration::ZERO;
        }
        if !logged_down {
            tracing::warn!(%error, "cut off from the fleet database; serving the local copy until it returns");
            logged_down = true;
        }
        status.failed(error);
        delay = (delay * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
    }
}

/// One connected stretch: join if needed, then apply every change as it is
/// notified (or seen by the safety poll). Returns only with the error that
/// ended it.
async fn follow_session(
    replica: &Arc<Replica>,
) -> Result<std::convert::Infallible, FleetWriteError> {
    let url = replica.database.expose();
    let mut listener = Listener::connect(url).await?;
    let mut table = connect(&replica.database).await?;
    join(replica, &mut table).await?;
    catch_up(replica, &table).await?;
    if replica.status.cut_off_for() > Duration::ZERO || !replica.status.ready() {
        tracing::info!("following the fleet database");
    }
    replica.status.connected();
    loop {
        tokio::select! {
            notified = listener.next() => { notified?; }
            () = tokio::time::sleep(SAFETY_POLL) => {
                if table.head().await? <= replica.keyring.synced_seq() {
                    continue;
                }
            }
        }
        catch_up(replica, &table).await?;
    }
}

/// Applies every change after the local copy's last.
async fn catch_up(replica: &Arc<Replica>, table: &SharedTable) -> Result<(), FleetWriteError> {
    loop {
        let changes = table.since(replica.keyring.synced_seq(), BATCH).await?;
        let done = changes.len() < BATCH;
        if !changes.is_empty() {
            let keyring = replica.keyring.clone();
            blocking(move || keyring.apply_synced(&changes)).await??;
        }
        if done {
            return Ok(());
        }
    }
}

/// A file that has never synced: take the shared state whole, or, if the
/// shared table is empty, seed it with this file's keys and blocks.
async fn join(replica: &Arc<Replica>, table: &mut SharedTable) -> Result<(), FleetWriteError> {
    if replica.keyring.synced_seq() > 0 {
        return Ok(());
    }
    let _writes = replica.writer.lock().await;
    let local = {
        let keyring = replica.keyring.clone();
        blocking(move || keyring.keys(None)).await??
    };
    let snapshot = replica.keyring.snapshot();
    let local_blocks: Vec<Change> = snapshot
        .blocked_users_by(Blocker::Admin)
        .map(|user| Change::Block {
            user: user.clone(),
            blocked: true,
            by: Blocker::Admin,
        })
        .chain(
            snapshot
                .blocked_users_by(Blocker::Haplo)
                .map(|user| Change::Block {
                    user: user.clone(),
                    blocked: true,
                    by: Blocker::Haplo,
                }),
        )
        .collect();
    drop(snapshot);
    let mut txn = table.begin_write().await?;
    if txn.head() == 0 && !(local.is_empty() && local_blocks.is_empty()) {
        let mut changes: Vec<Change> = local.into_iter().map(Change::Upsert).collect();
        changes.extend(local_blocks);
        let first = txn.head() + 1;
        txn.append(&changes, &[]).await?;
        txn.commit().await?;
        let numbered: Vec<(u64, Change)> = (first..).zip(changes).collect();
        tracing::info!(
            keys = numbered.len(),
            "seeded the fleet database with this store's keys"
        );
        let keyring = replica.keyring.clone();
        blocking(move || keyring.apply_synced(&numbered)).await??;
        return Ok(());
    }
    drop(txn);
    let copy = table.copy().await?;
    // The shared state replaces this file's: keys it does not have go.
    let mut changes: Vec<Change> = Vec::new();
    let shared: std::collections::HashSet<_> = copy.keys.iter().map(|k| k.id).collect();
    for record in &local {
        if !shared.contains(&record.id) {
            changes.push(Change::Remove(record.id));
        }
    }
    changes.extend(copy.keys.into_iter().map(Change::Upsert));
    for (user, flags) in copy.users {
        for by in Blocker::all_in(flags) {
            changes.push(Change::Block {
                user: user.clone(),
                blocked: true,
                by,
            });
        }
    }
    let seq = copy.seq;
    if seq == 0 {
        return Ok(());
    }
    let keyring = replica.keyring.clone();
    let count = changes.len();
    blocking(move || {
        // One batch, numbered at the copy's sequence number; then the
        // snapshot in start-up's compact shape (see `rebuild_snapshot`).
        let numbered: Vec<(u64, Change)> = changes.into_iter().map(|c| (seq, c)).collect();
        keyring.apply_synced(&numbered)?;
        drop(numbered);
        keyring.rebuild_snapshot()
    })
    .await??;
    tracing::info!(changes = count, seq, "copied the fleet's key table");
    Ok(())
}
