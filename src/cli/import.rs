//! `keygate import haplo`: a running Haplo application's keys, brought
//! into a running keygate.
//!
//! The CLI reads Haplo's tables itself (one read-only transaction; see
//! [`crate::haplo`]) and sends the rows to the server's `POST /v1/import`,
//! so the database URL, and its password, never travel to keygate or into
//! its logs. The URL comes from `--database` or, better (it stays out of
//! shell history and `ps`), from `KEYGATE_HAPLO_DATABASE`; every message
//! that names the database shows it with the password replaced by `***`.

use std::time::Duration;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value;

use super::{output, AdminClient, ClientError, Global};
use crate::haplo::{self, UserField};

/// The shortest deadline for the import call: a large batch takes the
/// server a while to compare and commit.
const MIN_IMPORT_TIMEOUT: Duration = Duration::from_secs(120);

/// `keygate import ...`.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import a Haplo application's API keys and blocked users from its
    /// PostgreSQL database. Re-running is safe: it reports what changed.
    Haplo(HaploImport),
}

/// `keygate import haplo`.
#[derive(Debug, Args)]
pub struct HaploImport {
    /// Haplo's database, as a postgres:// URL (password included, if one
    /// is needed). Prefer the environment variable: it stays out of shell
    /// history and the process list.
    #[arg(
        long,
        env = "KEYGATE_HAPLO_DATABASE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database: String,
    /// The application's id (its schema is a<ID>; public.applications maps
    /// host names to ids).
    #[arg(long, value_name = "ID")]
    pub app: u32,
    /// Report what would change, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How keygate names a Haplo user (the identity header's value): the
    /// numeric user id, or the user's email.
    #[arg(long, value_name = "id|email", default_value = "id")]
    pub user_field: UserField,
}

/// Runs `keygate import haplo`.
pub(super) async fn run(
    global: &Global,
    client: AdminClient,
    command: ImportCommand,
) -> Result<(), ClientError> {
    let ImportCommand::Haplo(args) = command;
    let table = haplo::read_app(&args.database, args.app)
        .await
        .map_err(|e| ClientError::Config(e.to_string()))?;
    let mut batch = haplo::to_batch(&table, args.app, args.user_field);
    batch.dry_run = args.dry_run;
    let body = serde_json::to_value(&batch).map_err(|e| ClientError::Config(e.to_string()))?;
    let client = client.with_timeout_at_least(MIN_IMPORT_TIMEOUT);
    let report = client.call(Method::POST, "/v1/import", Some(body)).await?;
    if global.json {
        println!("{}", output::json(&report));
    } else {
        print_report(args.app, &report);
    }
    Ok(())
}

fn print_report(app: u32, report: &Value) {
    let count = |field: &str| report[field].as_u64().unwrap_or(0);
    let skipped = report["skipped"].as_array().map_or(&[][..], Vec::as_slice);
    let heading = if report["dry_run"] == Value::Bool(true) {
        format!("Dry run, nothing written: Haplo application {app} would give")
    } else {
        format!("Imported Haplo application {app}:")
    };
    println!(
        "{heading} {} created, {} updated, {} unchanged, {} skipped; users: {} blocked, {} unblocked",
        count("created"),
        count("updated"),
        count("unchanged"),
        skipped.len(),
        count("users_blocked"),
        count("users_unblocked"),
    );
    for row in skipped {
        println!(
            "skipped {}: {}",
            output::text(&row["id"]),
            output::text(&row["reason"])
        );
    }
}
