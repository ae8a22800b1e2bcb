//! One connection to Haplo's PostgreSQL, and the two things keygate does
//! over it: read an application's key and user rows, and fingerprint them.
//!
//! Every statement names its columns and builds the schema name `a<ID>`
//! from the integer application id only; nothing a user typed is ever
//! spliced into SQL.
//!
//! # Cost
//!
//! - [`Source::fingerprint`] is one statement, sent with no separate
//!   prepare (`query_typed`), so one round trip, returning one row of four
//!   small values. On the server it scans both tables and hashes the text
//!   of every column keygate reads, in key order: linear in the number of
//!   rows, about 3 µs a key (measured: 0.3-0.4 s of one backend for
//!   100,000 keys, so a few milliseconds for the hundreds of keys a Haplo
//!   application usually has). Nothing is sent back but the digests.
//!   Cheaper detectors exist (`sum(xmin)`, statistics counters) but can
//!   miss or misreport a change; a missed block or deletion would leave a
//!   key working, so the content is hashed.
//! - [`Source::read`] is one read-only, repeatable-read transaction: the
//!   fingerprint, then every key, then every user, all from one snapshot,
//!   so the fingerprint it returns describes exactly the rows it returns.
//!
//! A poller therefore fingerprints every few seconds and reads only when
//! the fingerprint differs from the one of the table it holds.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, Row};

use super::redact::{describe, redacted, scrub};
use super::{Fingerprint, HaploError, HaploKey, HaploTable, HaploUser};

/// How long connecting (TCP, then the login) may take, unless the URL sets
/// its own `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one read or one fingerprint may take. A poller must not hang
/// forever on a database that stopped answering mid-query; after this
/// error the [`Source`] should be dropped and a new one connected.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects, reads application `app_id`'s keys and users, disconnects.
pub async fn read_app(url: &str, app_id: u32) -> Result<HaploTable, HaploError> {
    let mut source = Source::connect(url).await?;
    source.read(app_id).await
}

/// An open connection to a Haplo database.
///
/// Not `Clone`: [`Source::read`] runs a transaction, which needs the
/// connection to itself for its duration.
pub struct Source {
    client: Client,
    /// The URL through [`redacted`], for errors.
    database: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("database", &self.database)
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl Source {
    /// Connects to `url` (a `postgres://` URL or a `key=value` string), with
    /// the whole connect and login bounded by [`CONNECT_TIMEOUT`] (or the
    /// URL's `connect_timeout`). The connection is driven by a task spawned
    /// on the current runtime; it ends when the `Source` is dropped.
    pub async fn connect(url: &str) -> Result<Source, HaploError> {
        let database = redacted(url);
        let mut config: Config = url.parse().map_err(|e| HaploError::BadUrl {
            database: database.clone(),
            reason: describe(&e),
        })?;
        let limit = config
            .get_connect_timeout()
            .copied()
            .unwrap_or(CONNECT_TIMEOUT);
        config.connect_timeout(limit);
        if config.get_application_name().is_none() {
            // So a Haplo operator can tell keygate's session apart in
            // pg_stat_activity.
            config.application_name("keygate");
        }
        let connected = tokio::time::timeout(limit, config.connect(NoTls)).await;
        let (client, connection) = match connected {
            Err(_elapsed) => {
                return Err(HaploError::Timeout {
                    database,
                    during: "connecting",
                    after: limit,
                })
            }
            // The server's login errors never echo the password; the scrub
            // is there so that no future driver message can either.
            Ok(Err(e)) => {
                return Err(HaploError::Connect {
                    reason: scrub(describe(&e), config.get_password()),
                    database,
                })
            }
            Ok(Ok(pair)) => pair,
        };
        let name = database.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(database = %name, error = %describe(&e), "connection to Haplo's database ended");
            }
        });
        Ok(Source { client, database })
    }

    /// The URL this source was connected to, password hidden.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Whether the connection has ended (server gone, network cut): a
    /// poller then connects a new `Source`.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Reads application `app_id`'s `api_keys` and `users` rows, and their
    /// fingerprint, in one read-only repeatable-read transaction.
    pub async fn read(&mut self, app_id: u32) -> Result<HaploTable, HaploError> {
        let sql = Statements::new(app_id);
        let read = tokio::time::timeout(QUERY_TIMEOUT, read_table(&mut self.client, &sql)).await;
        match read {
            Err(_elapsed) => Err(self.timed_out("reading")),
            Ok(Err(e)) => Err(self.query_error(app_id, &e).await),
            Ok(Ok(table)) => Ok(table),
        }
    }

    /// The fingerprint of application `app_id`'s rows: one statement, one
    /// round trip, one row back. Equal to [`HaploTable::fingerprint`] of a
    /// read of the same rows.
    pub async fn fingerprint(&self, app_id: u32) -> Result<Fingerprint, HaploError> {
        let sql = Statements::new(app_id);
        let query = self.client.query_typed_one(&sql.fingerprint, &[]);
        match tokio::time::timeout(QUERY_TIMEOUT, query).await {
            Err(_elapsed) => Err(self.timed_out("fingerprinting")),
            Ok(Err(e)) => Err(self.query_error(app_id, &e).await),
            Ok(Ok(row)) => match fingerprint_from(&row) {
                Ok(fingerprint) => Ok(fingerprint),
                Err(e) => Err(self.query_error(app_id, &e).await),
            },
        }
    }

    fn timed_out(&self, during: &'static str) -> HaploError {
        HaploError::Timeout {
            database: self.database.clone(),
            during,
            after: QUERY_TIMEOUT,
        }
    }

    /// Turns a failed statement into the error that says what is wrong. A
    /// missing relation is looked into (one more query, on the error path
    /// only) to tell "no such application" from "not a Haplo schema".
    async fn query_error(&self, app_id: u32, error: &tokio_postgres::Error) -> HaploError {
        if error.code() == Some(&SqlState::UNDEFINED_TABLE) {
            if let Some(missing) = self.missing_relation(app_id).await {
                return missing;
            }
        }
        HaploError::Query {
            app_id,
            database: self.database.clone(),
            reason: describe(error),
        }
    }

    /// Which of `a<ID>`, `a<ID>.api_keys` and `a<ID>.users` is missing;
    /// `None` if all exist after all (created meanwhile) or the check
    /// itself failed, and the original error is the better report.
    async fn missing_relation(&self, app_id: u32) -> Option<HaploError> {
        let schema = format!("a{app_id}");
        let keys = format!("{schema}.api_keys");
        let users = format!("{schema}.users");
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&schema, Type::TEXT),
            (&keys, Type::TEXT),
            (&users, Type::TEXT),
        ];
        let check = self.client.query_typed_one(
            "SELECT to_regnamespace($1) IS NOT NULL, \
             to_regclass($2) IS NOT NULL, to_regclass($3) IS NOT NULL",
            &params,
        );
        let row = tokio::time::timeout(QUERY_TIMEOUT, check)
            .await
            .ok()?
            .ok()?;
        let exists = |column: usize| row.try_get::<_, bool>(column).ok();
        let database = self.database.clone();
        match (exists(0)?, exists(1)?, exists(2)?) {
            (false, _, _) => Some(HaploError::NoApplication { app_id, database }),
            (true, false, _) => Some(HaploError::NotHaplo {
                app_id,
                table: "api_keys",
                database,
            }),
            (true, true, false) => Some(HaploError::NotHaplo {
                app_id,
                table: "users",
                database,
            }),
            (true, true, true) => None,
        }
    }
}

/// The statements for one application. The schema name comes from the
/// integer id alone, so it can only be `a` followed by digits.
struct Statements {
    keys: String,
    users: String,
    fingerprint: String,
}

impl Statements {
    fn new(app_id: u32) -> Statements {
        let schema = format!("\"a{app_id}\"");
        // Ordered with the "C" collation: byte order, the same on every
        // server, and cheaper than a linguistic sort. `a` has a unique index
        // in Haplo; `b` breaks ties if some database lacks it, so the order
        // (and so the digest) never depends on the plan.
        let key_order = "a COLLATE \"C\", b COLLATE \"C\"";
        Statements {
            keys: format!(
                "SELECT a, b, path, name, user_id::int4 FROM {schema}.api_keys ORDER BY {key_order}"
            ),
            // Haplo's `kind` is SMALLINT; read as int4 so a wider column
            // elsewhere reads the same.
            users: format!("SELECT id::int4, kind::int4, email FROM {schema}.users ORDER BY id"),
            // A row constructor's text form quotes any value holding a
            // delimiter and tells NULL from '', so joining rows with a
            // newline is unambiguous and equal texts mean equal rows.
            fingerprint: format!(
                "SELECT k.n, k.digest, u.n, u.digest FROM \
                 (SELECT count(*) AS n, md5(coalesce(string_agg( \
                    row(a, b, path, name, user_id)::text, E'\\n' ORDER BY {key_order}), '')) AS digest \
                  FROM {schema}.api_keys) AS k, \
                 (SELECT count(*) AS n, md5(coalesce(string_agg( \
                    row(id, kind, email)::text, E'\\n' ORDER BY id), '')) AS digest \
                  FROM {schema}.users) AS u"
            ),
        }
    }
}

async fn read_table(
    client: &mut Client,
    sql: &Statements,
) -> Result<HaploTable, tokio_postgres::Error> {
    // Dropped without commit on any error, which rolls it back.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let fingerprint = fingerprint_from(&tx.query_typed_one(&sql.fingerprint, &[]).await?)?;
    let keys = tx
        .query_typed(&sql.keys, &[])
        .await?
        .iter()
        .map(key_from)
        .collect::<Result<Vec<_>, _>>()?;
    let users = tx
        .query_typed(&sql.users, &[])
        .await?
        .iter()
        .map(user_from)
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    Ok(HaploTable {
        keys,
        users,
        fingerprint,
    })
}

fn key_from(row: &Row) -> Result<HaploKey, tokio_postgres::Error> {
    Ok(HaploKey {
        a: row.try_get(0)?,
        b: row.try_get(1)?,
        path: row.try_get(2)?,
        name: row.try_get(3)?,
        user_id: row.try_get(4)?,
    })
}

fn user_from(row: &Row) -> Result<HaploUser, tokio_postgres::Error> {
    Ok(HaploUser {
        id: row.try_get(0)?,
        kind: row.try_get(1)?,
        email: row.try_get(2)?,
    })
}

fn fingerprint_from(row: &Row) -> Result<Fingerprint, tokio_postgres::Error> {
    Ok(Fingerprint {
        keys: row.try_get(0)?,
        keys_digest: row.try_get(1)?,
        users: row.try_get(2)?,
        users_digest: row.try_get(3)?,
    })
}
