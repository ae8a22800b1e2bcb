//! The config file as serde reads it: strings and numbers, not yet checked.
//!
//! Every struct denies unknown fields, so a typo such as `upstream_timout`
//! is an error naming the key instead of a silently ignored line. Defaults
//! live here, in one place, and are the SPEC's built-in defaults.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawConfig {
    pub(super) proxy: RawProxy,
    pub(super) admin: RawAdmin,
    pub(super) store: RawStore,
    pub(super) throttle: RawThrottle,
    pub(super) log: RawLog,
    pub(super) haplo: RawHaplo,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawProxy {
    pub(super) listen: String,
    pub(super) upstream: String,
    pub(super) identity_header: String,
    pub(super) key_id_header: String,
    pub(super) anonymous: String,
    pub(super) trusted_proxies: Vec<String>,
    pub(super) header_timeout_secs: u64,
    pub(super) upstream_timeout_secs: u64,
    pub(super) body_timeout_secs: u64,
    pub(super) shutdown_grace_secs: u64,
    pub(super) max_connections: u64,
    pub(super) max_header_bytes: u64,
    pub(super) worker_threads: u64,
    pub(super) upstream_ca: Option<String>,
    pub(super) upgrades: Vec<String>,
    pub(super) forward_credentials: bool,
    pub(super) rate_limit_headers: String,
    pub(super) tls: Option<RawTls>,
    pub(super) http2: RawHttp2,
}

impl Default for RawProxy {
    fn default() -> Self {
        RawProxy {
            listen: "127.0.0.1:8080".into(),
            upstream: "http://127.0.0.1:8000".into(),
            identity_header: "X-Haplo-User".into(),
            key_id_header: "X-Haplo-Api-Key-Id".into(),
            anonymous: "reject".into(),
            trusted_proxies: Vec::new(),
            header_timeout_secs: 30,
            upstream_timeout_secs: 60,
            body_timeout_secs: 60,
            shutdown_grace_secs: 30,
            max_connections: 10_000,
            max_header_bytes: 64 * 1024,
            worker_threads: 0,
            upstream_ca: None,
            upgrades: vec!["websocket".into()],
            forward_credentials: false,
            rate_limit_headers: "refusals".into(),
            tls: None,
            http2: RawHttp2::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHttp2 {
    pub(super) max_concurrent_streams: u64,
    pub(super) keep_alive_secs: u64,
}

impl Default for RawHttp2 {
    fn default() -> Self {
        RawHttp2 {
            max_concurrent_streams: 100,
            keep_alive_secs: 30,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) cert: String,
    pub(super) key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAdmin {
    pub(super) listen: String,
    pub(super) token: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            listen: "127.0.0.1:8081".into(),
            token: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawStore {
    pub(super) path: String,
    pub(super) last_used_flush_secs: u64,
    pub(super) database: Option<String>,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: "data/keygate.redb".into(),
            last_used_flush_secs: 60,
            database: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawThrottle {
    pub(super) max_failures: u64,
    pub(super) window_secs: u64,
    pub(super) max_tracked_addresses: u64,
}

impl Default for RawThrottle {
    fn default() -> Self {
        RawThrottle {
            max_failures: 50,
            window_secs: 300,
            max_tracked_addresses: 100_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLog {
    pub(super) access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { access: true }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawHaplo {
    pub(super) database: Option<String>,
    pub(super) app_id: Option<u32>,
    pub(super) poll_secs: u64,
    pub(super) user_field: String,
}

impl Default for RawHaplo {
    fn default() -> Self {
        RawHaplo {
            database: None,
            app_id: None,
            poll_secs: 2,
            user_field: "id".into(),
        }
    }
}
