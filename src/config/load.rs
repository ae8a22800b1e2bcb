//! The second step of loading: the raw structs serde filled in, checked
//! value by value into a [`Config`]. Every error names the key and the
//! reason; the first is returned, and nothing is half-applied (a reload
//! that fails keeps the running config).

use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::*;

impl Config {
    pub(super) fn from_raw(raw: RawConfig, path: Option<&Path>) -> Result<Self, ConfigError> {
        let path_buf = path.map(Path::to_owned);
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid {
            path: path_buf.clone(),
            key,
            reason,
        };

        let proxy_listen = parse_addr(&raw.proxy.listen).map_err(|r| invalid("proxy.listen", r))?;
        let admin_listen = parse_addr(&raw.admin.listen).map_err(|r| invalid("admin.listen", r))?;
        let upstream =
            parse_upstream(&raw.proxy.upstream).map_err(|r| invalid("proxy.upstream", r))?;
        let identity_header = parse_injected_header(&raw.proxy.identity_header)
            .map_err(|r| invalid("proxy.identity_header", r))?;
        let key_id_header = parse_injected_header(&raw.proxy.key_id_header)
            .map_err(|r| invalid("proxy.key_id_header", r))?;
        if alias_form(identity_header.as_str()) == alias_form(key_id_header.as_str()) {
            return Err(invalid(
                "proxy.key_id_header",
                "must differ from proxy.identity_header (compared ignoring case and '_' vs '-')"
                    .into(),
            ));
        }
        let anonymous = match raw.proxy.anonymous.as_str() {
            "reject" => Anonymous::Reject,
            "forward" => Anonymous::Forward,
            other => {
                return Err(invalid(
                    "proxy.anonymous",
                    format!("must be \"reject\" or \"forward\", not {other:?}"),
                ))
            }
        };
        let rate_limit_headers = match raw.proxy.rate_limit_headers.as_str() {
            "refusals" => RateLimitHeaders::Refusals,
            "always" => RateLimitHeaders::Always,
            other => {
                return Err(invalid(
                    "proxy.rate_limit_headers",
                    format!("must be \"refusals\" or \"always\", not {other:?}"),
                ))
            }
        };
        let trusted_proxies = raw
            .proxy
            .trusted_proxies
            .iter()
            .map(|entry| parse_net(entry))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| invalid("proxy.trusted_proxies", r))?;
        let header_timeout = positive_secs(raw.proxy.header_timeout_secs)
            .map_err(|r| invalid("proxy.header_timeout_secs", r))?;
        let upstream_timeout = positive_secs(raw.proxy.upstream_timeout_secs)
            .map_err(|r| invalid("proxy.upstream_timeout_secs", r))?;
        let body_timeout = positive_secs(raw.proxy.body_timeout_secs)
            .map_err(|r| invalid("proxy.body_timeout_secs", r))?;
        let shutdown_grace = Duration::from_secs(raw.proxy.shutdown_grace_secs);
        let tls = match &raw.proxy.tls {
            None => None,
            Some(tls) => {
                if tls.cert.trim().is_empty() {
                    return Err(invalid(
                        "proxy.tls.cert",
                        "must name a PEM certificate file".into(),
                    ));
                }
                if tls.key.trim().is_empty() {
                    return Err(invalid(
                        "proxy.tls.key",
                        "must name a PEM private key file".into(),
                    ));
                }
                Some(TlsFiles {
                    cert: PathBuf::from(&tls.cert),
                    key: PathBuf::from(&tls.key),
                })
            }
        };
        let upstream_ca = match raw.proxy.upstream_ca.as_deref() {
            None => None,
            Some(_) if upstream.scheme != Scheme::HTTPS => {
                return Err(invalid(
                    "proxy.upstream_ca",
                    "only applies to an https:// upstream".into(),
                ))
            }
            Some(path) if path.trim().is_empty() => {
                return Err(invalid("proxy.upstream_ca", "must name a PEM file".into()))
            }
            Some(path) => Some(PathBuf::from(path)),
        };
        let max_connections = within(raw.proxy.max_connections, 1, 1_000_000)
            .map_err(|r| invalid("proxy.max_connections", r))?;
        let max_header_bytes = within(raw.proxy.max_header_bytes, 8 * 1024, 1024 * 1024)
            .map_err(|r| invalid("proxy.max_header_bytes", r))?;
        let worker_threads = match raw.proxy.worker_threads {
            0 => None,
            n @ 1..=1024 => Some(n as usize),
            _ => {
                return Err(invalid(
                    "proxy.worker_threads",
                    "must be between 0 (one per core) and 1024".into(),
                ))
            }
        };
        let max_concurrent_streams = within(raw.proxy.http2.max_concurrent_streams, 1, 10_000)
            .map_err(|r| invalid("proxy.http2.max_concurrent_streams", r))?;
        let keep_alive = positive_secs(raw.proxy.http2.keep_alive_secs)
            .map_err(|r| invalid("proxy.http2.keep_alive_secs", r))?;
        let upgrades =
            parse_upgrades(&raw.proxy.upgrades).map_err(|r| invalid("proxy.upgrades", r))?;

        let admin_token = match raw.admin.token {
            None => None,
            Some(token) => {
                if token.len() < 16 || !token.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                    return Err(invalid(
                        "admin.token",
                        "must be at least 16 printable ASCII characters without spaces".into(),
                    ));
                }
                Some(AdminToken(token))
            }
        };
        if admin_token.is_none() && !admin_listen.ip().is_loopback() {
            return Err(invalid(
                "admin.listen",
                format!(
                    "{admin_listen} is not a loopback address; set admin.token to expose the admin API beyond this host"
                ),
            ));
        }

        if raw.store.path.trim().is_empty() {
            return Err(invalid("store.path", "must not be empty".into()));
        }
        let last_used_flush = positive_secs(raw.store.last_used_flush_secs)
            .map_err(|r| invalid("store.last_used_flush_secs", r))?;

        let max_failures = within(raw.throttle.max_failures, 1, u64::from(u32::MAX))
            .map_err(|r| invalid("throttle.max_failures", r))?;
        let window = positive_secs(raw.throttle.window_secs)
            .map_err(|r| invalid("throttle.window_secs", r))?;
        let max_tracked = within(raw.throttle.max_tracked_addresses, 16, 100_000_000)
            .map_err(|r| invalid("throttle.max_tracked_addresses", r))?;

        let haplo = haplo::parse(&raw.haplo, std::env::var(HAPLO_DATABASE_ENV).ok())
            .map_err(|(key, reason)| invalid(key, reason))?;
        // Fleet mode: the file's URL, or the environment's (so the password
        // can stay out of the file).
        let store_database = raw
            .store
            .database
            .clone()
            .or_else(|| std::env::var(STORE_DATABASE_ENV).ok())
            .filter(|url| !url.is_empty())
            .map(DatabaseUrl::parse)
            .transpose()
            .map_err(|reason| invalid("store.database", reason))?;

        Ok(Config {
            source: path_buf.clone(),
            haplo,
            store_database,
            proxy_listen,
            admin_listen,
            admin_token,
            store_path: PathBuf::from(raw.store.path),
            last_used_flush,
            shutdown_grace,
            tls,
            max_connections,
            worker_threads,
            proxy: ProxySettings {
                upstream,
                identity_header,
                key_id_header,
                anonymous,
                trusted_proxies,
                header_timeout,
                upstream_timeout,
                body_timeout,
                throttle: ThrottleLimits {
                    max_failures,
                    window,
                    max_tracked,
                },
                access_log: raw.log.access,
                upstream_ca,
                max_header_bytes,
                http2: Http2Limits {
                    max_concurrent_streams,
                    keep_alive,
                },
                upgrades,
                forward_credentials: raw.proxy.forward_credentials,
                rate_limit_headers,
            },
        })
    }
}

/// Runs serde over the text, tracking the key path for error messages.
pub(super) fn parse_raw(text: &str, path: Option<&Path>) -> Result<RawConfig, ConfigError> {
    let parse_error = |key: String, message: &str| ConfigError::Parse {
        path: path.map(Path::to_owned),
        key,
        message: message.trim().replace('\n', " "),
    };
    let line_of = |err: &toml::de::Error| {
        err.span()
            .map(|span| {
                format!(
                    "line {}",
                    text[..span.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_else(|| "file".to_owned())
    };
    let deserializer =
        toml::Deserializer::parse(text).map_err(|e| parse_error(line_of(&e), e.message()))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { "file".to_owned() } else { key };
        parse_error(key, e.inner().message())
    })
}
