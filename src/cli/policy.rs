//! Key policies on the command line (SPEC 11): the options `keys create`
//! and `keys update` share, and `keys update` itself.
//!
//! The CLI only shapes the admin API's JSON; the server validates it and
//! names the field at fault, so the rules live in one place. The one thing
//! done here is reading a rate as people write it (`10/s`, `600/m`,
//! `100/h`) into the API's requests per second.

use clap::Args;
use http::Method;
use serde_json::{json, Map, Value};

use super::{encode, output, AdminClient, ClientError, Global};

/// `--rate`, `--burst`, `--allow-from`, `--methods`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// Rate limit per key: requests per second, minute or hour, e.g. 10/s,
    /// 600/m, 100/h (a bare number is per second).
    #[arg(long, value_name = "N/UNIT", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Requests the key may make at once, within its rate [default: one
    /// second's worth, at least 1].
    #[arg(long, value_name = "N", requires = "rate")]
    pub burst: Option<u32>,
    /// Addresses or CIDR blocks the key may be used from (comma-separated
    /// or repeated), e.g. 10.0.0.0/8,2001:db8::/48.
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    pub allow_from: Vec<String>,
    /// Methods the key may use (comma-separated), e.g. GET,HEAD for a
    /// read-only key; GET does not imply HEAD.
    #[arg(long, value_name = "METHOD", value_delimiter = ',')]
    pub methods: Vec<String>,
}

impl PolicyArgs {
    /// Adds the policies given to a request body.
    pub(super) fn add_to(self, body: &mut Map<String, Value>) {
        if let Some(per_second) = self.rate {
            let mut rate = json!({ "per_second": per_second });
            if let Some(burst) = self.burst {
                rate["burst"] = burst.into();
            }
            body.insert("rate".into(), rate);
        }
        if !self.allow_from.is_empty() {
            body.insert("allow_from".into(), self.allow_from.into());
        }
        if !self.methods.is_empty() {
            body.insert("methods".into(), self.methods.into());
        }
    }
}

/// `keygate keys update ID ...`: what to change; anything not given stays.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Key id of the key to edit (its secret never changes).
    pub id: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new path scope.
    #[arg(long)]
    pub path: Option<String>,
    /// A new expiry, RFC 3339.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["expires_in", "no_expiry"])]
    pub expires_at: Option<String>,
    /// A new expiry as a duration from now (e.g. 90d).
    #[arg(long, value_name = "DURATION", conflicts_with = "no_expiry")]
    pub expires_in: Option<humantime::Duration>,
    /// Remove the expiry.
    #[arg(long)]
    pub no_expiry: bool,
    /// New policies.
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Remove the rate limit.
    #[arg(long, conflicts_with = "rate")]
    pub no_rate: bool,
    /// Remove the address list (any address may use the key).
    #[arg(long, conflicts_with = "allow_from")]
    pub no_allow_from: bool,
    /// Remove the method list (any method).
    #[arg(long, conflicts_with = "methods")]
    pub no_methods: bool,
}

/// Runs `keys update`.
pub(super) async fn update(
    global: &Global,
    client: AdminClient,
    args: UpdateArgs,
) -> Result<(), ClientError> {
    let mut body = Map::new();
    if let Some(name) = args.name {
        body.insert("name".into(), name.into());
    }
    if let Some(path) = args.path {
        body.insert("path".into(), path.into());
    }
    if let Some(at) = args
        .expires_at
        .or_else(|| args.expires_in.map(expiry_from_now))
    {
        body.insert("expires_at".into(), at.into());
    }
    for (removed, field) in [
        (args.no_expiry, "expires_at"),
        (args.no_rate, "rate"),
        (args.no_allow_from, "allow_from"),
        (args.no_methods, "methods"),
    ] {
        if removed {
            body.insert(field.into(), Value::Null);
        }
    }
    args.policy.add_to(&mut body);
    if body.is_empty() {
        return Err(ClientError::Usage(
            "nothing to change: give at least one option (see keygate keys update --help)".into(),
        ));
    }
    let path = format!("/v1/keys/{}", encode(&args.id));
    let updated = client
        .call(Method::PATCH, &path, Some(Value::Object(body)))
        .await?;
    if global.json {
        println!("{}", output::json(&updated));
        return Ok(());
    }
    eprintln!("Updated key {}.", output::text(&updated["id"]));
    for warning in updated["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", output::text(warning));
    }
    output::key_fields(&updated);
    Ok(())
}

/// RFC 3339 for `now + duration`.
pub(super) fn expiry_from_now(duration: humantime::Duration) -> String {
    let at = std::time::SystemTime::now() + std::time::Duration::from(duration);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Reads `10/s`, `10/sec`, `600/m`, `600/min`, `100/h`, `100/hour` or a
/// bare number (per second) as requests per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, unit) = text.split_once('/').unwrap_or((text, "s"));
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: expected N/s, N/m or N/h, e.g. 10/s"))?;
    let secs = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("{other:?}: the unit must be s, m or h")),
    };
    if !count.is_finite() || count <= 0.0 {
        return Err(format!("{text:?}: the count must be above 0"));
    }
    Ok(count / secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(parse_rate("10/s"), Ok(10.0));
        assert_eq!(parse_rate("600/m"), Ok(10.0));
        assert_eq!(parse_rate("36/hour"), Ok(0.01));
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("10/d").is_err());
        assert!(parse_rate("ten/s").is_err());
    }
}
