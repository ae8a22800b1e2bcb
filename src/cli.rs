//! The command line: `keygate serve` and the admin commands.
//!
//! `keys` and `users` commands talk to a running server's admin API (they
//! never open the store: redb allows one writer per file, and the server
//! holds it). The admin URL comes from `--admin`, else from the config
//! file's `admin.listen`; the bearer token from `KEYGATE_ADMIN_TOKEN`, else
//! from the config file, never from an argument (arguments show in `ps`).
//! Every call to the admin API has a deadline (`--timeout`, 10 s by
//! default), so that a stuck server makes `keygate health` in a container
//! health check fail rather than hang.

pub mod check;
mod client;
pub mod generate;
mod import;
mod output;
mod policy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use http::Method;
use serde_json::{json, Value};

pub use self::client::{AdminClient, ClientError};
pub use self::import::{HaploImport, ImportCommand};
pub use self::policy::{PolicyArgs, UpdateArgs};
use crate::admin::text::escape;
use crate::config::Config;

/// The version `--version` prints: the crate's, and the commit it was built
/// from (`build.rs`; `unknown` when neither git nor `KEYGATE_COMMIT` said).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KEYGATE_BUILD_COMMIT"),
    ")"
);

/// keygate: an authenticating reverse proxy for Haplo API keys.
#[derive(Debug, Parser)]
#[command(name = "keygate", version = VERSION, about, long_about = None)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Args)]
pub struct Global {
    /// Config file (TOML). Without it, the built-in defaults are used.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Admin API base URL for keys/users commands [default: from the
    /// config's admin.listen, http://127.0.0.1:8081]
    #[arg(long, global = true, value_name = "URL")]
    pub admin: Option<String>,
    /// Print the admin API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on the admin API after this long (connecting and the whole
    /// exchange), e.g. 500ms or 1m; a timeout exits non-zero
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s")]
    pub timeout: humantime::Duration,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and the admin API.
    Serve,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Block or unblock users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Show the audit trail (key and user changes), oldest first.
    Audit {
        /// Events after this sequence number, or since this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// At most this many events (1 to 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Check readiness (store loaded, upstream reachable); exit 0 if ready.
    Health,
    /// Import keys issued elsewhere (a Haplo application's) into keygate.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Check a config as serve would (binds no port, leaves the store
    /// alone); exit 0, or non-zero naming every problem.
    Check,
    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::GenerateArgs),
}

/// `keygate keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (shown this once only).
    Create {
        /// The user the key authenticates as.
        #[arg(long)]
        user: String,
        /// A short description, e.g. the client application's name.
        #[arg(long)]
        name: String,
        /// Path scope: a prefix like /api/ or an exact path like =/api/x.
        #[arg(long, default_value = "/api/")]
        path: String,
        /// Expiry time, RFC 3339 (e.g. 2030-01-31T00:00:00Z).
        #[arg(long, value_name = "TIME", conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// Expiry as a duration from now (e.g. 90d, 12h, 30m).
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<humantime::Duration>,
        /// Optional policies.
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Edit a key in place: name, scope, expiry, policies (never its
    /// secret: rotate for that).
    Update(UpdateArgs),
    /// Replace a key with a new one (same user, name, scope and expiry).
    Rotate {
        /// Key id of the key to replace.
        id: String,
        /// How long the old key keeps working (e.g. 24h); revoked at once
        /// without it.
        #[arg(long, value_name = "DURATION")]
        grace: Option<humantime::Duration>,
    },
    /// List keys (never their secrets).
    List {
        /// Only this user's keys.
        #[arg(long)]
        user: Option<String>,
    },
    /// Show one key.
    Show {
        /// Key id (the first 16 characters of the key).
        id: String,
    },
    /// Revoke a key at once.
    Revoke {
        /// Key id.
        id: String,
    },
}

/// `keygate users ...`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Block a user: all their keys fail with UNAUTHORISED.
    Block {
        /// User id.
        user: String,
    },
    /// Unblock a user: their keys work again.
    Unblock {
        /// User id.
        user: String,
    },
}

/// Runs a `keys` or `users` command; prints results and returns the exit code.
pub async fn run(global: &Global, command: Command) -> ExitCode {
    match execute(global, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line, whatever the API's error text holds.
            eprintln!("keygate: {}", escape(&error.to_string()));
            ExitCode::FAILURE
        }
    }
}

async fn execute(global: &Global, command: Command) -> Result<(), ClientError> {
    let client = client_for(global)?;
    match command {
        Command::Serve | Command::Check | Command::Generate(_) => Ok(()),
        Command::Import(command) => import::run(global, client, command).await,
        Command::Keys(KeysCommand::Create {
            user,
            name,
            path,
            expires_at,
            expires_in,
            policy,
        }) => {
            let mut body = serde_json::Map::new();
            body.insert("user".into(), user.into());
            body.insert("name".into(), name.into());
            body.insert("path".into(), path.into());
            if let Some(at) = expires_at.or_else(|| expires_in.map(policy::expiry_from_now)) {
                body.insert("expires_at".into(), at.into());
            }
            policy.add_to(&mut body);
            let created = client
                .call(Method::POST, "/v1/keys", Some(Value::Object(body)))
                .await?;
            if global.json {
                println!("{}", output::json(&created));
                return Ok(());
            }
            output::new_key("Created key", &created);
            Ok(())
        }
        Command::Keys(KeysCommand::List { user }) => {
            let path = match user {
                Some(user) => format!(
                    "/v1/keys?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("user", &user)
                        .finish()
                ),
                None => "/v1/keys".to_owned(),
            };
            let listed = client.call(Method::GET, &path, None).await?;
            if global.json {
                println!("{}", output::json(&listed));
                return Ok(());
            }
            output::key_table(listed["keys"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            Ok(())
        }
        Command::Keys(KeysCommand::Show { id }) => {
            let shown = client
                .call(Method::GET, &format!("/v1/keys/{}", encode(&id)), None)
                .await?;
            if global.json {
                println!("{}", output::json(&shown));
                return Ok(());
            }
            output::key_fields(&shown);
            Ok(())
        }
        Command::Keys(KeysCommand::Update(args)) => policy::update(global, client, args).await,
        Command::Keys(KeysCommand::Rotate { id, grace }) => {
            let grace_secs = grace.map_or(0, |g| std::time::Duration::from(g).as_secs());
            let path = format!("/v1/keys/{}/rotate", encode(&id));
            let rotated = client
                .call(Method::POST, &path, Some(json!({"grace_secs": grace_secs})))
                .await?;
            if global.json {
                println!("{}", output::json(&rotated));
                return Ok(());
            }
            match rotated["old"]["expires_at"].as_str() {
                Some(until) if rotated["old"]["revoked"] == Value::Bool(false) => {
                    eprintln!(
                        "Rotated key {id}: it keeps working until {}.",
                        escape(until)
                    )
                }
                _ => eprintln!("Rotated key {id}: it is revoked."),
            }
            output::new_key("New key", &rotated);
            Ok(())
        }
        Command::Audit { since, limit } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(since) = &since {
                query.append_pair("since", since);
            }
            query.append_pair("limit", &limit.to_string());
            let page = client
                .call(Method::GET, &format!("/v1/audit?{}", query.finish()), None)
                .await?;
            if global.json {
                println!("{}", output::json(&page));
                return Ok(());
            }
            for event in page["events"].as_array().into_iter().flatten() {
                println!(
                    "{:>6}  {}  {:<14}  user={} key={}{}  client={}",
                    output::text(&event["seq"]),
                    output::text(&event["time"]),
                    output::text(&event["action"]),
                    output::text(&event["user"]),
                    output::text(&event["key_id"]),
                    match event["new_key_id"].as_str() {
                        Some(new) => format!(" new_key={new}"),
                        None => String::new(),
                    },
                    output::text(&event["client"]),
                );
            }
            Ok(())
        }
        Command::Health => {
            let ready = client.call(Method::GET, "/readyz", None).await?;
            if global.json {
                println!("{}", output::json(&ready));
            } else {
                println!(
                    "{}: upstream {}",
                    output::text(&ready["status"]),
                    output::text(&ready["upstream"])
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { id }) => {
            client
                .call(Method::DELETE, &format!("/v1/keys/{}", encode(&id)), None)
                .await?;
            if global.json {
                println!("{}", output::json(&json!({"revoked": id})));
            } else {
                println!("Revoked key {id}: it is refused from now on.");
            }
            Ok(())
        }
        Command::Users(command) => {
            let (user, blocked) = match command {
                UsersCommand::Block { user } => (user, true),
                UsersCommand::Unblock { user } => (user, false),
            };
            let path = format!("/v1/users/{}", encode(&user));
            let reply = client
                .call(Method::PUT, &path, Some(json!({"blocked": blocked})))
                .await?;
            if global.json {
                println!("{}", output::json(&reply));
            } else if blocked {
                println!("Blocked user {user}: their keys now fail with UNAUTHORISED.");
            } else {
                println!("Unblocked user {user}: their keys work again.");
            }
            Ok(())
        }
    }
}

fn client_for(global: &Global) -> Result<AdminClient, ClientError> {
    let config = match (&global.config, &global.admin) {
        (None, Some(_)) => None,
        (path, _) => {
            Some(Config::load(path.as_deref()).map_err(|e| ClientError::Config(e.to_string()))?)
        }
    };
    let base = match (&global.admin, &config) {
        (Some(url), _) => url.clone(),
        (None, Some(config)) => {
            let mut addr = config.admin_listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            format!("http://{addr}")
        }
        (None, None) => "http://127.0.0.1:8081".to_owned(),
    };
    let token = std::env::var("KEYGATE_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.and_then(|c| c.admin_token.map(|t| t.expose().to_owned())));
    AdminClient::new(&base, token, global.timeout.into())
}

/// Percent-encodes one path segment, leaving RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - . _ ~`) as they are: key ids contain `-`
/// and `_`, and user ids `.`.
fn encode(segment: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}
