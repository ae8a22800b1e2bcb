//! Fleet mode (SPEC 10, issue 11): keygate replicas that share one key
//! table through PostgreSQL, each serving from its own redb copy.
//!
//! This module owns the PostgreSQL side: keygate's tables and their
//! versions, the numbered change log, the state it leads to, and the
//! notifications that tell replicas to look. It knows nothing of redb or
//! snapshots; the keyring applies what it reads.
//!
//! # The design
//!
//! - **PostgreSQL first.** A write through any replica commits in
//!   PostgreSQL (change log, state, audit, in one transaction), and only
//!   then goes into that replica's redb file and snapshot, through the same
//!   `Keyring` path as every other change. If PostgreSQL is down the write
//!   is refused (`503`) and nothing is written anywhere: no replica ever
//!   holds a change the others cannot get.
//! - **Numbered changes.** Each [`Change`](crate::keys::Change) in the log
//!   has a number, `1, 2, 3...` in commit order with no gaps. A replica
//!   records the last number it applied in the same redb transaction as
//!   the change (`Keyring::apply_synced`), so after a crash or an outage
//!   it asks for "everything after `n`" ([`SharedTable::since`]) and gets
//!   exactly what it lacks: nothing missed, nothing applied twice (changes
//!   carry whole records, so even a replay would be harmless).
//! - **Pushed, then pulled.** A commit sends `NOTIFY keygate_changes, 'n'`
//!   (delivered by the server at commit, in commit order). A replica's
//!   [`Listener`] wakes on it and reads the changes it lacks. Notifications
//!   are lost while a replica is disconnected, which is why they carry
//!   only a number: a replica that reconnects subscribes first, then
//!   catches up from its own last number, and misses nothing.
//! - **One writer at a time.** A write holds a fleet-wide advisory lock
//!   from its start to its commit ([`WriteTxn`]): numbers are drawn and
//!   committed in the same order, without which a reader could see change
//!   6, record it, and skip 5 when it commits later. Under the lock a
//!   replica first catches up, then decides its write against a copy that
//!   is exactly the shared state: two replicas revoking and rotating the
//!   same key at once end in one agreed order everywhere.
//! - **Joining with an empty file.** A new replica copies the state
//!   tables ([`SharedTable::copy`]: every key and block, and the number
//!   they stand at, from one snapshot) instead of replaying the whole log,
//!   then follows the log from that number.
//! - **Last-use times** are not changes: each replica coalesces its own
//!   and merges them by maximum ([`SharedTable::merge_last_used`]), with no
//!   lock and no notification.
//!
//! # What exists, and what comes next
//!
//! Here: [`migrate`] (the versioned schema), [`SharedTable`] (read,
//! append, copy, audit, last-use), [`WriteTxn`] (a write under the lock),
//! [`Listener`] (notifications), each tested against a real PostgreSQL
//! (`tests/fleet_log.rs`), and [`replica`]: the `[store] database`
//! setting's write path (admin writes through [`WriteTxn`], `503` while
//! the database is away), the follower that keeps a keyring in step
//! (listen, catch up, apply; a head check every second for a silent
//! connection), joining by copy, and readiness (`tests/fleet.rs`, three
//! replicas and an outage), last-use times merged at every flush, and
//! Haplo's keys through the same write path, and the audit trail read back
//! from [`SharedTable::audit`] by every replica.
//!
//! One fleet per database: the advisory locks and the notification
//! channel are database-wide, and the tables live in the connection's
//! `search_path` schema.

mod database;
mod listener;
pub mod replica;
mod rows;
pub mod schema;
mod table;
mod write;

pub use database::{CONNECT_TIMEOUT, QUERY_TIMEOUT};
pub use listener::Listener;
pub use schema::{migrate, SCHEMA_VERSION};
pub use table::{SharedTable, TableCopy};
pub use write::WriteTxn;

/// The notification channel; the payload is the new last change number.
pub const CHANNEL: &str = "keygate_changes";

/// The advisory lock every fleet write holds until it commits ("keygate"
/// and 1, as bytes: a value no other application is likely to pick).
pub(crate) const WRITE_LOCK: i64 = i64::from_be_bytes(*b"keygate\x01");

/// The advisory lock a migration holds until it commits.
pub(crate) const MIGRATE_LOCK: i64 = i64::from_be_bytes(*b"keygate\x02");

/// Why the fleet's database could not be used. Every `database` field is
/// the URL through [`crate::haplo::redacted`]; no variant carries a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The connection string could not be understood.
    #[error("invalid fleet database URL {database}: {reason}")]
    BadUrl {
        /// The URL, redacted.
        database: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to the fleet database {database}: {reason}")]
    Connect {
        /// The URL, redacted.
        database: String,
        /// Why (the driver's and the server's words, password removed).
        reason: String,
    },
    /// The server did not answer in time.
    #[error("the fleet database {database} did not answer within {} s ({during})", .after.as_secs())]
    Timeout {
        /// The URL, redacted.
        database: String,
        /// What was being waited for.
        during: &'static str,
        /// How long was waited.
        after: std::time::Duration,
    },
    /// A statement failed (the connection dropped, a lock wait timed out,
    /// permissions, a table missing because [`migrate`] was not run).
    #[error("{during} ({database}): {reason}")]
    Query {
        /// The URL, redacted.
        database: String,
        /// What was being done.
        during: &'static str,
        /// Why (the driver's and the server's words).
        reason: String,
    },
    /// A newer keygate has migrated this database.
    #[error("keygate_schema is version {found}; this keygate knows up to version {known}: upgrade keygate")]
    SchemaTooNew {
        /// The database's version.
        found: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// `keygate_schema` holds something keygate never writes.
    #[error("keygate_schema in {database} is not keygate's: {reason}")]
    SchemaInvalid {
        /// The URL, redacted.
        database: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A change or audit event could not be encoded (a bug, not input).
    #[error("cannot encode a change for the fleet's log: {0}")]
    Encode(String),
    /// Something read back does not decode: written by a newer keygate,
    /// or not by keygate at all.
    #[error("{what} in the fleet database {database} does not decode: {reason}")]
    Corrupt {
        /// The URL, redacted.
        database: String,
        /// Which row.
        what: String,
        /// Why.
        reason: String,
    },
    /// The listening connection ended; notifications may have been missed.
    #[error("listening for changes on {database} ended: {reason}")]
    ListenEnded {
        /// The URL, redacted.
        database: String,
        /// Why.
        reason: String,
    },
}
