//! The fleet's shared table over one connection: reading the change log,
//! copying the whole state, the audit trail and last-use times; writes go
//! through a [`WriteTxn`] (`write.rs`).
//!
//! Every read is one statement sent without a separate prepare
//! (`query_typed`), so one round trip, bounded by
//! [`super::QUERY_TIMEOUT`]. After a timeout or a closed connection the
//! [`SharedTable`] should be dropped and a new one connected.

use std::collections::HashMap;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient, IsolationLevel, Row};

use super::database::{self, configure, describe, query_error, run};
use super::schema::migrate_in;
use super::{FleetError, WriteTxn};
use crate::keys::{AuditEvent, Change, KeyId, KeyRecord, UserId};
use crate::timestamp::Timestamp;

/// How many keys [`SharedTable::copy`] reads per statement: bounded
/// memory for the rows in flight, and few round trips (100 for a million
/// keys).
const COPY_PAGE: i64 = 10_000;

/// An open connection to the fleet's tables.
///
/// Not `Clone`: [`SharedTable::begin_write`] and [`SharedTable::copy`] run
/// transactions, which need the connection to themselves.
pub struct SharedTable {
    client: Client,
    /// The URL through [`crate::haplo::redacted`], for errors.
    database: String,
}

impl std::fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTable")
            .field("database", &self.database)
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

/// The whole shared state at one sequence number, for a replica whose file
/// is empty: after applying it, the replica follows the log from `seq`.
#[derive(Debug, Clone)]
pub struct TableCopy {
    /// The last change the state includes.
    pub seq: u64,
    /// Every key, in id order, with the latest last-use time any replica
    /// reported.
    pub keys: Vec<KeyRecord>,
    /// Every blocked user and who blocks them (the store's flags: see
    /// [`crate::keys::Blocker::all_in`]), in id order.
    pub users: Vec<(UserId, u8)>,
}

impl SharedTable {
    /// Connects to `url`, within [`super::CONNECT_TIMEOUT`] (or the URL's
    /// `connect_timeout`). The connection is driven by a task spawned on
    /// the current runtime; it ends when the table is dropped. Does not
    /// migrate: call [`SharedTable::migrate`] once at start.
    pub async fn connect(url: &str) -> Result<SharedTable, FleetError> {
        let connected = database::connect(url).await?;
        let database = connected.database;
        let name = database.clone();
        let driver = connected.driver;
        tokio::spawn(async move {
            if let Err(e) = driver.await {
                tracing::warn!(database = %name, error = %describe(&e), "connection to the fleet database ended");
            }
        });
        configure(&connected.client, &database).await?;
        Ok(SharedTable {
            client: connected.client,
            database,
        })
    }

    /// The URL this table was connected to, password hidden.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Whether the connection has ended (server gone, network cut): the
    /// caller then connects a new table.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// [`super::migrate`] over this connection, errors naming the database.
    pub async fn migrate(&mut self) -> Result<u32, FleetError> {
        migrate_in(&mut self.client, &self.database).await
    }

    /// The number of the last committed change (0 for none). One small
    /// statement: a follower can poll it as a safety net for a
    /// notification connection that went silent.
    pub async fn head(&self) -> Result<u64, FleetError> {
        read_head(&self.client, &self.database).await
    }

    /// Up to `limit` committed changes numbered above `after`, in order.
    pub async fn since(&self, after: u64, limit: usize) -> Result<Vec<(u64, Change)>, FleetError> {
        read_since(&self.client, &self.database, after, limit).await
    }

    /// Appends `changes` to the log and applies them to the shared state,
    /// with `events` in the audit trail, in one transaction under the
    /// fleet write lock; returns the number of the last change. For a
    /// write that must first see every earlier one, use
    /// [`SharedTable::begin_write`].
    pub async fn append(
        &mut self,
        changes: &[Change],
        events: &[AuditEvent],
    ) -> Result<u64, FleetError> {
        if changes.is_empty() && events.is_empty() {
            return self.head().await;
        }
        let mut txn = self.begin_write().await?;
        txn.append(changes, events).await?;
        txn.commit().await
    }

    /// Starts a write: a transaction holding the fleet write lock, so no
    /// other replica commits a change until this one commits or is
    /// dropped. See [`WriteTxn`].
    pub async fn begin_write(&mut self) -> Result<WriteTxn<'_>, FleetError> {
        WriteTxn::begin(&mut self.client, &self.database).await
    }

    /// The whole current state and the number of the last change it
    /// includes, read from one snapshot (a read-only, repeatable-read
    /// transaction), so state and number agree however many replicas
    /// write meanwhile.
    pub async fn copy(&mut self) -> Result<TableCopy, FleetError> {
        let db = self.database.as_str();
        let txn = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true);
        let txn = run(db, "starting the copy", txn.start()).await?;
        let seq = read_head(&txn, db).await?;
        let mut keys = Vec::new();
        // Pages by id rather than one statement, so the driver never holds
        // a million rows at once; the snapshot makes the pages consistent.
        let mut after = String::new();
        loop {
            let rows = run(
                db,
                "copying keys",
                txn.query_typed(
                    "SELECT k.id, k.record, l.at FROM keygate_keys k \
                     LEFT JOIN keygate_last_used l ON l.id = k.id \
                     WHERE k.id > $1 ORDER BY k.id LIMIT $2",
                    &[(&after, Type::TEXT), (&COPY_PAGE, Type::INT8)],
                ),
            )
            .await?;
            for row in &rows {
                keys.push(key_from(row, db)?);
            }
            match keys.last() {
                Some(last) if rows.len() as i64 == COPY_PAGE => after = last.id.to_string(),
                _ => break,
            }
        }
        let rows = run(
            db,
            "copying users",
            txn.query_typed(
                "SELECT user_id, flags FROM keygate_users ORDER BY user_id",
                &[],
            ),
        )
        .await?;
        let users = rows
            .iter()
            .map(|row| user_from(row, db))
            .collect::<Result<Vec<_>, _>>()?;
        run(db, "ending the copy", txn.commit()).await?;
        Ok(TableCopy { seq, keys, users })
    }

    /// Up to `limit` audit events numbered above `after`, in order.
    pub async fn audit(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEvent)>, FleetError> {
        let db = self.database.as_str();
        let rows = run(
            db,
            "reading the audit trail",
            self.client.query_typed(
                "SELECT seq, event::text FROM keygate_audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[(&to_i64(after), Type::INT8), (&to_i64(limit), Type::INT8)],
            ),
        )
        .await?;
        rows.iter()
            .map(|row| {
                let seq = seq_from(row, db, "an audit event")?;
                let text: String = row
                    .try_get(1)
                    .map_err(|e| query_error(db, "reading the audit trail", &e))?;
                let event = serde_json::from_str(&text).map_err(|e| FleetError::Corrupt {
                    database: db.to_owned(),
                    what: format!("audit event {seq}"),
                    reason: e.to_string(),
                })?;
                Ok((seq, event))
            })
            .collect()
    }

    /// Merges last-use times into the shared table, keeping the later of
    /// the stored and the given time for each key (so replicas may report
    /// in any order). Keys no longer in the table are skipped. Needs no
    /// write lock: a merge by maximum gives the same result in any order.
    pub async fn merge_last_used(&self, used: &[(KeyId, Timestamp)]) -> Result<(), FleetError> {
        // One row per key: PostgreSQL refuses to update a row twice in one
        // INSERT ... ON CONFLICT.
        let mut latest: HashMap<KeyId, i64> = HashMap::with_capacity(used.len());
        for (id, at) in used {
            let at = at.unix();
            latest
                .entry(*id)
                .and_modify(|seen| *seen = (*seen).max(at))
                .or_insert(at);
        }
        if latest.is_empty() {
            return Ok(());
        }
        let (ids, times): (Vec<&str>, Vec<i64>) =
            latest.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
        run(
            &self.database,
            "merging last-use times",
            self.client.execute_typed(
                "INSERT INTO keygate_last_used (id, at) \
                 SELECT u.id, u.at FROM unnest($1::text[], $2::int8[]) AS u(id, at) \
                 JOIN keygate_keys k ON k.id = u.id \
                 ON CONFLICT (id) DO UPDATE SET at = greatest(keygate_last_used.at, excluded.at)",
                &[(&ids, Type::TEXT_ARRAY), (&times, Type::INT8_ARRAY)],
            ),
        )
        .await?;
        Ok(())
    }
}

/// The number of the last change given out, as `client` sees it.
pub(super) async fn read_head(
    client: &impl GenericClient,
    database: &str,
) -> Result<u64, FleetError> {
    let row = run(
        database,
        "reading the last change number",
        client.query_typed_one("SELECT seq FROM keygate_head", &[]),
    )
    .await?;
    seq_from(&row, database, "keygate_head")
}

/// Up to `limit` changes numbered above `after`, as `client` sees them.
pub(super) async fn read_since(
    client: &impl GenericClient,
    database: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, Change)>, FleetError> {
    let rows = run(
        database,
        "reading changes",
        client.query_typed(
            "SELECT seq, change FROM keygate_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[(&to_i64(after), Type::INT8), (&to_i64(limit), Type::INT8)],
        ),
    )
    .await?;
    rows.iter()
        .map(|row| {
            let seq = seq_from(row, database, "a change")?;
            let bytes: &[u8] = row
                .try_get(1)
                .map_err(|e| query_error(database, "reading changes", &e))?;
            let change = Change::decode(bytes).map_err(|e| FleetError::Corrupt {
                database: database.to_owned(),
                what: format!("change {seq}"),
                reason: e.to_string(),
            })?;
            Ok((seq, change))
        })
        .collect()
}

/// A count or number for a `bigint` parameter; nothing keygate counts
/// comes near `i64::MAX`, and saturating keeps a comparison meaning "all".
pub(super) fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// Column 0 of `row` as a sequence number.
fn seq_from(row: &Row, database: &str, what: &str) -> Result<u64, FleetError> {
    let seq: i64 = row
        .try_get(0)
        .map_err(|e| query_error(database, "reading a sequence number", &e))?;
    u64::try_from(seq).map_err(|_| FleetError::Corrupt {
        database: database.to_owned(),
        what: what.to_owned(),
        reason: format!("negative sequence number {seq}"),
    })
}

/// One `keygate_keys` row (joined with its last-use time) as a record.
fn key_from(row: &Row, database: &str) -> Result<KeyRecord, FleetError> {
    let read = |e: tokio_postgres::Error| query_error(database, "copying keys", &e);
    let text: &str = row.try_get(0).map_err(read)?;
    let bytes: &[u8] = row.try_get(1).map_err(read)?;
    let used: Option<i64> = row.try_get(2).map_err(read)?;
    let corrupt = |reason: String| FleetError::Corrupt {
        database: database.to_owned(),
        what: format!("key {text:?}"),
        reason,
    };
    let id = KeyId::parse(text).ok_or_else(|| corrupt("not a key id".into()))?;
    let mut record = KeyRecord::decode(id, bytes).map_err(|e| corrupt(e.to_string()))?;
    // Records carry the last use known when they were written; the merged
    // times from every replica are usually later. `None` sorts first.
    record.last_used_at = record.last_used_at.max(used.map(Timestamp::from_unix));
    Ok(record)
}

/// One `keygate_users` row as a user and their block flags.
fn user_from(row: &Row, database: &str) -> Result<(UserId, u8), FleetError> {
    let read = |e: tokio_postgres::Error| query_error(database, "copying users", &e);
    let text: &str = row.try_get(0).map_err(read)?;
    let flags: i16 = row.try_get(1).map_err(read)?;
    let corrupt = |reason: &str| FleetError::Corrupt {
        database: database.to_owned(),
        what: format!("user {text:?}"),
        reason: reason.to_owned(),
    };
    let user = UserId::parse(text).map_err(|_| corrupt("not a user id"))?;
    let flags = u8::try_from(flags).map_err(|_| corrupt("block flags out of range"))?;
    Ok((user, flags))
}
