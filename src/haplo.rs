//! Haplo's own API keys, read from a running Haplo application's PostgreSQL
//! database (SPEC 9).
//!
//! This module owns the *reading* and nothing else: it connects, reads the
//! rows of one application's `a<ID>.api_keys` and `a<ID>.users` tables as
//! they are, and tells cheaply whether they changed. It knows nothing of
//! keygate's own key types; turning rows into keygate records (and refusing
//! malformed ones) is the importer's job, so a bad row in Haplo's table
//! shows up here as a row, not as an error that hides the good ones.
//!
//! - [`Source`]: one connection, [`Source::read`] (one read-only,
//!   repeatable-read transaction) and [`Source::fingerprint`] (one small
//!   query, for polling).
//! - [`read_app`]: connect, read, disconnect, for a one-off import.
//! - [`follow`]: `[haplo]`'s poller, which keeps keygate's table in step.
//! - [`to_batch`]: the rows as a batch for the keyring (who each key acts
//!   as, which users Haplo refuses, which keys cannot act as anyone).
//! - [`redacted`]: a database URL with its password replaced by `***`.
//!   Every error and log line that names the database goes through it.
//!
//! # What is read, and what is not
//!
//! Exactly `a, b, path, name, user_id` of `api_keys` and `id, kind, email`
//! of `users`, named column by column. `users.password`, `recovery_token`
//! and `otp_identifier` are never read: a role granted `SELECT` on only
//! those eight columns (and nothing else) is enough for keygate, and the
//! tests run the reader under such a role to prove it.
//!
//! # Transport
//!
//! Connections are plain TCP or Unix sockets (`NoTls`) for now: the
//! expected deployment is a sidecar next to Haplo's PostgreSQL, on loopback
//! or a private network. A URL that demands TLS (`sslmode=require`) fails
//! to connect rather than silently going without it.

mod batch;
pub mod follow;
mod redact;
mod source;

pub use batch::{to_batch, UserField};
pub use redact::redacted;
pub(crate) use redact::{describe, scrub};
pub use source::{read_app, Source, CONNECT_TIMEOUT, QUERY_TIMEOUT};

use std::fmt;

/// One row of Haplo's `a<ID>.api_keys`, as stored.
///
/// Nothing is validated: `a` may not be 16 characters, `b` may not be a
/// bcrypt hash, `path` may be anything. The importer decides what to keep.
#[derive(Clone, PartialEq, Eq)]
pub struct HaploKey {
    /// The first 16 characters of the key, in plain text: the key id.
    pub a: String,
    /// bcrypt (`$2a$05$...`) of the remaining 28 characters.
    pub b: String,
    /// The scope: a plain prefix, or `=` and an exact path.
    pub path: String,
    /// The human description.
    pub name: String,
    /// The `users.id` the key acts as.
    pub user_id: i32,
}

/// Debug shows only the hash's algorithm and cost (`$2a$05$...`): the rest
/// is a hash of a secret, and Debug output ends up in logs and test output.
impl fmt::Debug for HaploKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = self.b.get(..7).filter(|p| p.starts_with('$')).unwrap_or("");
        f.debug_struct("HaploKey")
            .field("a", &self.a)
            .field("b", &format_args!("{shown}..."))
            .field("path", &self.path)
            .field("name", &self.name)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// One row of Haplo's `a<ID>.users`: only what decides whether a key works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaploUser {
    /// `users.id`; 0-127 are Haplo's reserved users and groups.
    pub id: i32,
    /// 0 user, 1 group, 3 super-user, 6 service user, 8 blocked,
    /// 16 deleted, 17 disabled group. Haplo stores it as `SMALLINT`.
    pub kind: i32,
    /// May be null (service users, groups).
    pub email: Option<String>,
}

/// Both tables of one application, read in one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaploTable {
    /// Every row of `api_keys`, ordered by `a`.
    pub keys: Vec<HaploKey>,
    /// Every row of `users`, ordered by `id`.
    pub users: Vec<HaploUser>,
    /// The fingerprint of exactly these rows, taken in the same
    /// transaction: a poller that keeps it misses no change made between
    /// the read and its next poll.
    pub fingerprint: Fingerprint,
}

/// What [`Source::fingerprint`] returns: equal fingerprints mean equal
/// rows (every column keygate reads, in both tables).
///
/// Compare it with `==`; the fields are private because the digests mean
/// nothing outside that comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub(crate) keys: i64,
    pub(crate) keys_digest: String,
    pub(crate) users: i64,
    pub(crate) users_digest: String,
}

impl Fingerprint {
    /// How many rows `api_keys` had.
    pub fn key_count(&self) -> i64 {
        self.keys
    }

    /// How many rows `users` had.
    pub fn user_count(&self) -> i64 {
        self.users
    }
}

/// Why Haplo's tables could not be read. Every `database` field is the URL
/// through [`redacted`]; no variant carries a password.
#[derive(Debug, thiserror::Error)]
pub enum HaploError {
    /// The connection string could not be understood.
    #[error("invalid Haplo database URL {database}: {reason}")]
    BadUrl {
        /// The URL, redacted.
        database: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or refused the login.
    #[error("cannot connect to Haplo's database {database}: {reason}")]
    Connect {
        /// The URL, redacted.
        database: String,
        /// Why (the driver's and the server's words, password removed).
        reason: String,
    },
    /// The server did not answer in time.
    #[error("Haplo's database {database} did not answer within {} s ({during})", .after.as_secs())]
    Timeout {
        /// The URL, redacted.
        database: String,
        /// What was being waited for.
        during: &'static str,
        /// How long was waited.
        after: std::time::Duration,
    },
    /// There is no schema `a<ID>`.
    #[error("no Haplo application {app_id} in this database ({database} has no schema a{app_id})")]
    NoApplication {
        /// The application id asked for.
        app_id: u32,
        /// The URL, redacted.
        database: String,
    },
    /// Schema `a<ID>` exists but lacks a table Haplo always has.
    #[error("schema a{app_id} in {database} has no table {table}: not a Haplo application")]
    NotHaplo {
        /// The application id asked for.
        app_id: u32,
        /// The missing table.
        table: &'static str,
        /// The URL, redacted.
        database: String,
    },
    /// A query failed (permissions, a column of an unexpected type, the
    /// connection dropping mid-read).
    #[error("reading Haplo application {app_id} from {database}: {reason}")]
    Query {
        /// The application id asked for.
        app_id: u32,
        /// The URL, redacted.
        database: String,
        /// Why (the driver's and the server's words, password removed).
        reason: String,
    },
}
