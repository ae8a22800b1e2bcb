//! `POST /v1/import`: a Haplo application's keys and users, in one batch.
//!
//! `keygate import haplo` reads Haplo's tables (the CLI holds the database
//! URL, so its password never travels to the server) and sends the rows
//! here as a [`HaploBatch`]. The keyring compares the batch with the store
//! and applies the difference in one transaction, all or nothing; the
//! answer is the report (created, updated, unchanged, skipped with
//! reasons), sent once the batch is durable and in effect. `"dry_run":
//! true` reports without writing.

use std::time::Duration;

use crate::server::RequestBody;
use http::Request;

use super::body;
use super::reply::{Handled, Reply};
use super::writes as answer;
use crate::keys::{HaploBatch, Keyring, Missing, WriteError};
use crate::writes::Writes;

/// Largest batch: 64 MiB is about 400,000 keys.
const MAX_BATCH: usize = 64 * 1024 * 1024;
/// The whole batch must arrive within this time.
const BATCH_DEADLINE: Duration = Duration::from_secs(120);

/// `POST /v1/import`.
pub(crate) async fn import(
    writes: &Writes,
    request: Request<RequestBody>,
    client: String,
) -> Handled {
    let bytes = body::read_limited(request, MAX_BATCH, BATCH_DEADLINE).await?;
    let batch: HaploBatch = body::parse_json(&bytes)?;
    let app = batch.app;
    let plan = move |keyring: &Keyring| {
        keyring
            .plan_import_haplo(&batch, Missing::Keep, Some(&client))
            .map_err(WriteError::Store)
    };
    let report = answer::run(writes, plan).await?;
    tracing::info!(
        app,
        created = report.created,
        updated = report.updated,
        unchanged = report.unchanged,
        skipped = report.skipped.len(),
        dry_run = report.dry_run,
        "Haplo keys imported"
    );
    Ok(Reply::json(200, &report))
}
