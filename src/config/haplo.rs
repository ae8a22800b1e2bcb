//! The `[haplo]` section: following a Haplo application's own keys.
//!
//! With `database` and `app_id` set, `keygate serve` polls that
//! application's tables every `poll_secs` and keeps its key table in step
//! (see [`crate::haplo::follow`]). The database URL usually carries a
//! password, so it may come from `KEYGATE_HAPLO_DATABASE` instead of the
//! file, and it is held as a [`DatabaseUrl`], whose `Debug` and `Display`
//! never show the password.

use std::fmt;
use std::time::Duration;

use super::raw::RawHaplo;
use crate::haplo::{redacted, UserField};

/// The environment variable that may hold `haplo.database`.
pub const HAPLO_DATABASE_ENV: &str = "KEYGATE_HAPLO_DATABASE";

/// Longest poll interval accepted: a day.
const MAX_POLL_SECS: u64 = 86_400;

/// A PostgreSQL URL, shown everywhere with its password as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks that `url` is a PostgreSQL connection string; the reason for
    /// a refusal shows the URL redacted.
    pub(super) fn parse(url: String) -> Result<Self, String> {
        match url.parse::<tokio_postgres::Config>() {
            Ok(_) => Ok(DatabaseUrl(url)),
            Err(error) => Err(format!(
                "not a PostgreSQL URL ({}): {error}",
                redacted(&url)
            )),
        }
    }

    /// The URL itself, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redacted(&self.0))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

/// Following a Haplo application, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaploFollow {
    /// Haplo's database.
    pub database: DatabaseUrl,
    /// The application (schema `a<ID>`).
    pub app_id: u32,
    /// How often its tables are checked for changes.
    pub poll: Duration,
    /// How its users are named in keygate.
    pub user_field: UserField,
}

/// Validates `[haplo]`, with `env_database` (from [`HAPLO_DATABASE_ENV`])
/// standing in for a missing `database` when `app_id` is set. `None` when
/// following is off.
/// Errors are `(key, reason)`.
pub(super) fn parse(
    raw: &RawHaplo,
    env_database: Option<String>,
) -> Result<Option<HaploFollow>, (&'static str, String)> {
    let user_field = raw
        .user_field
        .parse::<UserField>()
        .map_err(|reason| ("haplo.user_field", reason))?;
    if raw.poll_secs == 0 || raw.poll_secs > MAX_POLL_SECS {
        return Err((
            "haplo.poll_secs",
            format!("must be between 1 and {MAX_POLL_SECS}"),
        ));
    }
    // `app_id` turns following on. The environment variable only supplies
    // the URL of a follow the file asks for: an operator who exported it
    // for `keygate import haplo` must not find `serve` (or any command that
    // reads this file) refusing to start.
    let file_database = raw.database.clone().filter(|d| !d.is_empty());
    let (database, app_id) = match (raw.app_id, file_database) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(("haplo.app_id", "required when haplo.database is set".into()))
        }
        (Some(app_id), Some(database)) => (database, app_id),
        (Some(app_id), None) => match env_database.filter(|d| !d.is_empty()) {
            Some(database) => (database, app_id),
            None => {
                return Err((
                    "haplo.database",
                    format!("required when haplo.app_id is set (or set {HAPLO_DATABASE_ENV})"),
                ))
            }
        },
    };
    let database = DatabaseUrl::parse(database).map_err(|reason| ("haplo.database", reason))?;
    Ok(Some(HaploFollow {
        database,
        app_id,
        poll: Duration::from_secs(raw.poll_secs),
        user_field,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(database: Option<&str>, app_id: Option<u32>) -> RawHaplo {
        RawHaplo {
            database: database.map(str::to_owned),
            app_id,
            ..RawHaplo::default()
        }
    }

    #[test]
    fn off_unless_both_are_set_and_each_needs_the_other() {
        assert_eq!(parse(&raw(None, None), None), Ok(None));
        assert_eq!(
            parse(&raw(None, None), Some("postgres://h:pw@db/haplo".into())),
            Ok(None),
            "the variable alone (exported for an import) does not turn following on"
        );
        assert_eq!(
            parse(&raw(None, Some(4000)), None).unwrap_err().0,
            "haplo.database"
        );
        assert_eq!(
            parse(&raw(Some("postgres://h@db/haplo"), None), None)
                .unwrap_err()
                .0,
            "haplo.app_id"
        );
        let from_env = parse(
            &raw(None, Some(4000)),
            Some("postgres://h:pw@db/haplo".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(from_env.app_id, 4000);
        assert_eq!(from_env.poll, Duration::from_secs(2));
    }

    #[test]
    fn the_password_never_shows() {
        let follow = parse(&raw(Some("postgres://h:sekrit@db/haplo"), Some(1)), None)
            .unwrap()
            .unwrap();
        let shown = format!("{follow:?} {}", follow.database);
        assert!(!shown.contains("sekrit"), "{shown}");
        assert_eq!(follow.database.expose(), "postgres://h:sekrit@db/haplo");
        let bad = parse(
            &raw(Some("postgres://h:sekrit@db:notaport/x"), Some(1)),
            None,
        );
        let (key, reason) = bad.unwrap_err();
        assert_eq!(key, "haplo.database");
        assert!(!reason.contains("sekrit"), "{reason}");
    }
}
