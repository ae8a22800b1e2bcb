//! One connection to the fleet's PostgreSQL: connecting within a deadline,
//! bounding every statement by another, and errors that say which
//! database without saying how to log in to it.
//!
//! Both fleet connections (the [`super::SharedTable`] that reads and
//! writes, and the [`super::Listener`] that waits for notifications) start
//! here, so they fail the same way and name the database the same way:
//! through [`redacted`], the URL with its password replaced by `***`.

use std::future::Future;
use std::time::Duration;

use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, Connection, NoTls, Socket};

use super::FleetError;
pub(crate) use crate::haplo::describe;
use crate::haplo::{redacted, scrub};

/// How long connecting (TCP, then the login) may take, unless the URL sets
/// its own `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one statement (or one commit) may take. A replica must not
/// hang on a database that stopped answering mid-query: it answers `503`
/// and, after this error, connects again.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings for every fleet session, sent once after login.
///
/// - `lock_timeout`: a writer queued behind the fleet write lock gives up
///   (and its admin client gets a `503`) rather than waiting without end,
///   well before [`QUERY_TIMEOUT`] would cut the connection instead.
/// - `idle_in_transaction_session_timeout`: the write lock is held for a
///   whole [`super::WriteTxn`]. A replica that stops mid-transaction
///   without closing its socket (frozen, paused, a half-open connection)
///   would otherwise hold every fleet write hostage until TCP noticed,
///   which can take hours; the server ends such a session, and with it
///   the lock, after this long idle.
const SESSION: &str = "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '30s'";

/// The half of a connection that does its I/O, to be polled by a task.
pub(crate) type Driver = Connection<Socket, NoTlsStream>;

/// A connection before its driver is spawned, and the redacted URL.
pub(crate) struct Connected {
    pub(crate) client: Client,
    pub(crate) driver: Driver,
    pub(crate) database: String,
}

/// Connects to `url` (a `postgres://` URL or a `key=value` string) with
/// the connect and login bounded by [`CONNECT_TIMEOUT`] (or the URL's own
/// `connect_timeout`). The caller drives [`Connected::driver`] and then
/// calls [`configure`].
pub(crate) async fn connect(url: &str) -> Result<Connected, FleetError> {
    let database = redacted(url);
    let mut config: Config = url.parse().map_err(|e| FleetError::BadUrl {
        database: database.clone(),
        reason: describe(&e),
    })?;
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(CONNECT_TIMEOUT);
    config.connect_timeout(limit);
    if config.get_application_name().is_none() {
        // So an operator can tell keygate's sessions apart in
        // pg_stat_activity (and see who holds the write lock in pg_locks).
        config.application_name("keygate");
    }
    match tokio::time::timeout(limit, config.connect(NoTls)).await {
        Err(_elapsed) => Err(FleetError::Timeout {
            database,
            during: "connecting",
            after: limit,
        }),
        // The server's login errors never echo the password; the scrub is
        // there so that no future driver message can either.
        Ok(Err(e)) => Err(FleetError::Connect {
            reason: scrub(describe(&e), config.get_password()),
            database,
        }),
        Ok(Ok((client, driver))) => Ok(Connected {
            client,
            driver,
            database,
        }),
    }
}

/// Applies [`SESSION`]'s settings; the driver must be running.
pub(crate) async fn configure(client: &Client, database: &str) -> Result<(), FleetError> {
    run(
        database,
        "configuring the session",
        client.batch_execute(SESSION),
    )
    .await
}

/// Runs one database operation within [`QUERY_TIMEOUT`], turning its
/// failure into an error that says what was being done, and where.
pub(crate) async fn run<T>(
    database: &str,
    during: &'static str,
    work: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(QUERY_TIMEOUT, work).await {
        Err(_elapsed) => Err(FleetError::Timeout {
            database: database.to_owned(),
            during,
            after: QUERY_TIMEOUT,
        }),
        Ok(Err(e)) => Err(query_error(database, during, &e)),
        Ok(Ok(value)) => Ok(value),
    }
}

/// A failed statement as a [`FleetError::Query`].
pub(crate) fn query_error(
    database: &str,
    during: &'static str,
    error: &tokio_postgres::Error,
) -> FleetError {
    FleetError::Query {
        database: database.to_owned(),
        during,
        reason: describe(error),
    }
}
