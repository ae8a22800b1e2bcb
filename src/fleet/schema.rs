//! keygate's own tables in the fleet's PostgreSQL, and their versions.
//!
//! keygate creates and migrates its tables itself (SPEC 10): the version
//! the database is at is the one row of `keygate_schema`, and
//! `MIGRATIONS[n]` takes it from version `n` to `n + 1`. [`migrate`]
//! runs whatever is missing in one transaction, so a database is always at
//! a version, never between two.
//!
//! Replicas of a fleet start together (a deployment rolls out two at
//! once), so migration takes a transaction-scoped advisory lock first: the
//! second replica waits, then finds the tables made and the version up to
//! date. Without it, two `CREATE TABLE IF NOT EXISTS` racing each other
//! can both miss the other's uncommitted table and one fails on a
//! duplicate catalog entry.
//!
//! A database at a version newer than this build knows is refused, naming
//! both: an older keygate cannot know what a newer one's tables mean, and
//! writing to them could break the newer replicas sharing them.
//!
//! # Version 1
//!
//! - `keygate_changes (seq, change, at)`: the change log, one row per
//!   [`crate::keys::Change`] in its binary encoding, numbered `1, 2, 3...`
//!   in commit order (see `write.rs` for why numbers are assigned under
//!   the write lock rather than by a sequence).
//! - `keygate_head (seq)`: one row, the last number given out. Kept apart
//!   from `max(keygate_changes.seq)` so that pruning old changes can never
//!   make numbers start again.
//! - `keygate_keys (id, record, seq)` and `keygate_users (user_id, flags,
//!   seq)`: the state the log leads to, each row with the number of the
//!   change that last wrote it, so a replica with an empty file copies the
//!   state instead of replaying history. A user's row exists only while
//!   some authority blocks them (`flags > 0`), as in the redb store.
//! - `keygate_audit (seq, event, at)`: the audit trail, as JSON.
//! - `keygate_last_used (id, at)`: last-use times (Unix seconds), merged
//!   from every replica by maximum.
//!
//! Ids are `COLLATE "C"`: byte order, the same on every server, and what
//! the paged copy of the keys walks.

use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::database::{query_error, run};
use super::{FleetError, MIGRATE_LOCK};

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: u32 = 1;

/// The SQL of each migration: `MIGRATIONS[n]` takes version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [V1];

/// From nothing to version 1.
const V1: &str = r#"
CREATE TABLE keygate_changes (
    seq bigint PRIMARY KEY,
    change bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE keygate_head (seq bigint NOT NULL);
INSERT INTO keygate_head (seq) VALUES (0);
CREATE TABLE keygate_keys (
    id text COLLATE "C" PRIMARY KEY,
    record bytea NOT NULL,
    seq bigint NOT NULL
);
CREATE TABLE keygate_users (
    user_id text COLLATE "C" PRIMARY KEY,
    flags smallint NOT NULL CHECK (flags > 0),
    seq bigint NOT NULL
);
CREATE TABLE keygate_audit (
    seq bigserial PRIMARY KEY,
    event jsonb NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE keygate_last_used (
    id text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL
);
"#;

/// How errors name the database when only a connection was given.
const UNNAMED: &str = "the fleet database";

/// Brings keygate's tables up to [`SCHEMA_VERSION`], creating them in an
/// empty database. Returns the version the database was at before: `0`
/// for a new one, [`SCHEMA_VERSION`] when there was nothing to do. Safe
/// to run from many replicas at once, and again on every start.
///
/// Refuses ([`FleetError::SchemaTooNew`]) a database a newer keygate has
/// migrated, changing nothing.
pub async fn migrate(client: &mut Client) -> Result<u32, FleetError> {
    migrate_in(client, UNNAMED).await
}

/// [`migrate`], with errors naming `database`.
pub(crate) async fn migrate_in(client: &mut Client, database: &str) -> Result<u32, FleetError> {
    let txn = run(database, "starting the migration", client.transaction()).await?;
    run(
        database,
        "taking the migration lock",
        txn.execute_typed(
            "SELECT pg_advisory_xact_lock($1)",
            &[(&MIGRATE_LOCK, Type::INT8)],
        ),
    )
    .await?;
    // After the lock, in statements of their own: under READ COMMITTED each
    // statement sees what committed before it started, so these see the
    // work of a replica that held the lock before us.
    run(
        database,
        "creating keygate_schema",
        txn.batch_execute("CREATE TABLE IF NOT EXISTS keygate_schema (version integer NOT NULL)"),
    )
    .await?;
    let rows = run(
        database,
        "reading keygate_schema",
        txn.query_typed("SELECT version FROM keygate_schema", &[]),
    )
    .await?;
    let found = match rows.as_slice() {
        [] => 0,
        [row] => {
            let version: i32 = row
                .try_get(0)
                .map_err(|e| query_error(database, "reading keygate_schema", &e))?;
            u32::try_from(version).map_err(|_| FleetError::SchemaInvalid {
                database: database.to_owned(),
                reason: format!("version {version}"),
            })?
        }
        more => {
            return Err(FleetError::SchemaInvalid {
                database: database.to_owned(),
                reason: format!("{} rows where there should be one", more.len()),
            })
        }
    };
    if found > SCHEMA_VERSION {
        // Dropping the transaction rolls it back: nothing was changed.
        return Err(FleetError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found == SCHEMA_VERSION {
        run(database, "ending the migration", txn.commit()).await?;
        return Ok(found);
    }
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let during = match from {
            0 => "creating keygate's tables (schema version 1)",
            _ => "migrating keygate's tables",
        };
        run(database, during, txn.batch_execute(sql)).await?;
    }
    let version = i32::try_from(SCHEMA_VERSION).unwrap_or(i32::MAX);
    let record = if found == 0 {
        "INSERT INTO keygate_schema (version) VALUES ($1)"
    } else {
        "UPDATE keygate_schema SET version = $1"
    };
    run(
        database,
        "recording the schema version",
        txn.execute_typed(record, &[(&version, Type::INT4)]),
    )
    .await?;
    run(database, "committing the migration", txn.commit()).await?;
    Ok(found)
}
