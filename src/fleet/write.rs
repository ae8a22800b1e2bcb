//! A write to the fleet's shared table: one PostgreSQL transaction that
//! holds the fleet-wide write lock from start to commit.
//!
//! # Why a lock
//!
//! Changes are numbered, and replicas catch up by asking for "every change
//! after the last one I applied". That only works if numbers are given out
//! in commit order. Taken from a sequence without a lock, writer A could
//! draw 5 and writer B 6, B commit first, and a replica read 6 and record
//! "applied up to 6"; when A commits, 5 is below that mark and is skipped
//! forever. Under `pg_advisory_xact_lock` one writer at a time draws
//! numbers and commits, and the lock is released only after the commit is
//! visible, so a reader that sees `n + 1` can already see `n`.
//!
//! The numbers come from `keygate_head` (read, then updated, under the
//! lock), not from a PostgreSQL sequence: a sequence value drawn by a
//! transaction that rolls back is gone, leaving a gap; here a rolled-back
//! write gives its numbers back, so the log is `1, 2, 3...` with no gaps.
//!
//! # How a replica writes
//!
//! 1. [`super::SharedTable::begin_write`]: take the lock.
//! 2. [`WriteTxn::since`] from the last number the local copy applied, and
//!    apply what comes back locally (`Keyring::apply_synced`): the local
//!    copy is now exactly the shared state, and stays so while the lock is
//!    held.
//! 3. Decide the write against it (does the key exist? is it Haplo's?),
//!    then [`WriteTxn::append`] the changes and their audit events.
//! 4. [`WriteTxn::commit`]; then apply the changes locally with their
//!    numbers, and answer the admin client.
//!
//! Dropping a `WriteTxn` without committing rolls it back and releases the
//! lock. A commit whose answer is lost (the connection cut at that
//! moment) may or may not have happened; the log decides, and catch-up
//! brings the change (or nothing) to every replica, this one included.

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::database::{query_error, run};
use super::rows::{blocked_users, KeyRows, UserRows};
use super::table::{read_head, read_since, to_i64};
use super::{FleetError, CHANNEL, WRITE_LOCK};
use crate::keys::{AuditEvent, Change};

/// An open write: the fleet write lock is held until [`WriteTxn::commit`]
/// or drop. Keep it short: every other replica's writes wait for it (at
/// most `lock_timeout`, 10 s), and the server ends a session idle in a
/// transaction for 30 s.
pub struct WriteTxn<'a> {
    txn: Transaction<'a>,
    database: &'a str,
    /// The last number given out, including by this transaction.
    head: u64,
}

impl std::fmt::Debug for WriteTxn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTxn")
            .field("database", &self.database)
            .field("head", &self.head)
            .finish()
    }
}

impl<'a> WriteTxn<'a> {
    /// Starts the transaction and waits for the write lock.
    pub(super) async fn begin(
        client: &'a mut Client,
        database: &'a str,
    ) -> Result<WriteTxn<'a>, FleetError> {
        // READ COMMITTED whatever the server's default: each statement must
        // see what committed before it started, and the lock is taken in
        // the first one. Under REPEATABLE READ the snapshot would be taken
        // before the lock wait and miss the writer that held it.
        let start = client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start();
        let txn = run(database, "starting a write", start).await?;
        let lock = txn.execute_typed(
            "SELECT pg_advisory_xact_lock($1)",
            &[(&WRITE_LOCK, Type::INT8)],
        );
        // The head is read by a statement of its own, after the lock: under
        // READ COMMITTED it then sees the last writer's commit (a statement
        // that also took the lock would not). Pipelined behind the lock
        // (`biased`: sent in this order), it runs the moment the lock is
        // granted, costing no round trip while the lock is held.
        let (_, head) = tokio::try_join!(
            biased;
            run(database, "taking the fleet write lock", lock),
            read_head(&txn, database),
        )?;
        Ok(WriteTxn {
            txn,
            database,
            head,
        })
    }

    /// The number of the last change, committed before the lock was taken
    /// or appended by this transaction.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Up to `limit` changes numbered above `after`, in order, this
    /// transaction's own included. Under the lock, reading until it
    /// returns fewer than `limit` brings a copy up to [`WriteTxn::head`].
    pub async fn since(&self, after: u64, limit: usize) -> Result<Vec<(u64, Change)>, FleetError> {
        read_since(&self.txn, self.database, after, limit).await
    }

    /// Appends `changes` to the log, numbered from [`WriteTxn::head`] + 1
    /// in order, applies them to the shared state, adds `events` to the
    /// audit trail, and queues the notification of the new head (sent at
    /// commit). Returns the number of the last change (the head unchanged
    /// when `changes` is empty). Visible to others at commit.
    pub async fn append(
        &mut self,
        changes: &[Change],
        events: &[AuditEvent],
    ) -> Result<u64, FleetError> {
        let encoded = changes
            .iter()
            .map(Change::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FleetError::Encode(e.to_string()))?;
        let events = events
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FleetError::Encode(e.to_string()))?;
        let first = self.head + 1;
        let keys = KeyRows::fold(changes, first)?;
        let users = UserRows::fold(changes, first, &self.stored_flags(changes).await?);
        let last = self.head + changes.len() as u64;
        let (base, head, payload) = (to_i64(self.head), to_i64(last), last.to_string());

        let log: Params<'_> = &[(&base, Type::INT8), (&encoded, Type::BYTEA_ARRAY)];
        let upserts: Params<'_> = &[
            (&keys.ids, Type::TEXT_ARRAY),
            (&keys.records, Type::BYTEA_ARRAY),
            (&keys.seqs, Type::INT8_ARRAY),
        ];
        let removes: Params<'_> = &[(&keys.removed, Type::TEXT_ARRAY)];
        let blocks: Params<'_> = &[
            (&users.kept, Type::TEXT_ARRAY),
            (&users.flags, Type::INT2_ARRAY),
            (&users.seqs, Type::INT8_ARRAY),
        ];
        let unblocks: Params<'_> = &[(&users.cleared, Type::TEXT_ARRAY)];
        let audit: Params<'_> = &[(&events, Type::TEXT_ARRAY)];
        let notify: Params<'_> = &[
            (&head, Type::INT8),
            (&CHANNEL, Type::TEXT),
            (&payload, Type::TEXT),
        ];
        let any = !changes.is_empty();
        // Pipelined: all sent at once and run by the server one after the
        // other, so the lock is held for one round trip here, not seven.
        // `biased` polls them in this order, and tokio-postgres sends a
        // statement when it is first polled. The order matters little:
        // each statement writes rows no other one touches.
        tokio::try_join!(
            biased;
            self.execute(any, "appending to the change log", LOG, log),
            self.execute(!keys.ids.is_empty(), "writing keys", UPSERT_KEYS, upserts),
            self.execute(!keys.removed.is_empty(), "removing keys", REMOVE_KEYS, removes),
            self.execute(!users.kept.is_empty(), "writing user blocks", UPSERT_USERS, blocks),
            self.execute(!users.cleared.is_empty(), "clearing user blocks", REMOVE_USERS, unblocks),
            self.execute(!events.is_empty(), "appending to the audit trail", AUDIT, audit),
            self.execute(any, "advancing keygate_head", ADVANCE, notify),
        )?;
        self.head = last;
        Ok(last)
    }

    /// Commits. Returns the number of the last change.
    pub async fn commit(self) -> Result<u64, FleetError> {
        run(self.database, "committing", self.txn.commit()).await?;
        Ok(self.head)
    }

    /// The stored block flags of the users `changes` block or unblock: one
    /// statement, and none when no change is a block. Read under the lock,
    /// so no other writer moves them before this transaction commits.
    async fn stored_flags<'c>(
        &self,
        changes: &'c [Change],
    ) -> Result<HashMap<&'c str, u8>, FleetError> {
        let users = blocked_users(changes);
        if users.is_empty() {
            return Ok(HashMap::new());
        }
        let db = self.database;
        let rows = run(
            db,
            "reading user blocks",
            self.txn.query_typed(
                "SELECT user_id, flags FROM keygate_users WHERE user_id = ANY($1::text[])",
                &[(&users, Type::TEXT_ARRAY)],
            ),
        )
        .await?;
        let mut stored = HashMap::with_capacity(rows.len());
        for row in &rows {
            let read = |e: tokio_postgres::Error| query_error(db, "reading user blocks", &e);
            let user: &str = row.try_get(0).map_err(read)?;
            let flags: i16 = row.try_get(1).map_err(read)?;
            let flags = u8::try_from(flags).map_err(|_| FleetError::Corrupt {
                database: db.to_owned(),
                what: format!("user {user:?}"),
                reason: format!("block flags {flags} out of range"),
            })?;
            // Keyed by the change's own string, which outlives the row.
            if let Some(name) = users.iter().find(|name| **name == user) {
                stored.insert(*name, flags);
            }
        }
        Ok(stored)
    }

    /// Runs `sql` if `needed`.
    async fn execute(
        &self,
        needed: bool,
        during: &'static str,
        sql: &str,
        params: Params<'_>,
    ) -> Result<(), FleetError> {
        if needed {
            run(self.database, during, self.txn.execute_typed(sql, params)).await?;
        }
        Ok(())
    }
}

/// Typed parameters of one statement.
type Params<'p> = &'p [(&'p (dyn ToSql + Sync), Type)];

/// The changes, numbered from `$1 + 1` (WITH ORDINALITY counts from 1).
const LOG: &str = "INSERT INTO keygate_changes (seq, change) \
     SELECT $1 + t.n, t.change FROM unnest($2::bytea[]) WITH ORDINALITY AS t(change, n)";

const UPSERT_KEYS: &str = "INSERT INTO keygate_keys (id, record, seq) \
     SELECT * FROM unnest($1::text[], $2::bytea[], $3::int8[]) \
     ON CONFLICT (id) DO UPDATE SET record = excluded.record, seq = excluded.seq";

/// A removed key's last-use time goes with it, as in the redb store.
const REMOVE_KEYS: &str = "WITH gone AS (DELETE FROM keygate_keys WHERE id = ANY($1::text[])) \
     DELETE FROM keygate_last_used WHERE id = ANY($1::text[])";

const UPSERT_USERS: &str = "INSERT INTO keygate_users (user_id, flags, seq) \
     SELECT * FROM unnest($1::text[], $2::int2[], $3::int8[]) \
     ON CONFLICT (user_id) DO UPDATE SET flags = excluded.flags, seq = excluded.seq";

const REMOVE_USERS: &str = "DELETE FROM keygate_users WHERE user_id = ANY($1::text[])";

const AUDIT: &str = "INSERT INTO keygate_audit (event) \
     SELECT t.event::jsonb FROM unnest($1::text[]) WITH ORDINALITY AS t(event, n) ORDER BY t.n";

/// The new head, and its notification: NOTIFY is queued now and sent by
/// the server at commit, only if it commits, in commit order. Several
/// appends in one transaction notify several heads; listeners keep the
/// highest.
const ADVANCE: &str =
    "WITH advanced AS (UPDATE keygate_head SET seq = $1) SELECT pg_notify($2, $3)";
