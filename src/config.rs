//! Configuration: the TOML file, parsed and then validated.
//!
//! Loading happens in two steps. serde reads the file into the raw structs
//! of [`raw`] (unknown keys refused, defaults filled in); [`Config::from_raw`]
//! then checks every value and produces typed settings. Every error names the
//! key at fault (`proxy.upstream: ...`) and the reason, in one line, so an
//! operator can fix the file without reading code. The same path serves a
//! reload: a file that fails either step leaves the running config alone.
//!
//! Settings that can change on reload are grouped in [`ProxySettings`],
//! which the proxy holds behind an `ArcSwap`; listen addresses and the store
//! path are read once at start-up.

mod haplo;
mod load;
mod raw;
mod validate;

pub use self::haplo::{DatabaseUrl, HaploFollow, HAPLO_DATABASE_ENV};

/// The environment variable that may hold `store.database`.
pub const STORE_DATABASE_ENV: &str = "KEYGATE_STORE_DATABASE";

pub use self::validate::alias_form;
pub(crate) use self::validate::is_tchar;
use self::validate::{
    parse_addr, parse_injected_header, parse_net, parse_upgrades, parse_upstream, positive_secs,
    within,
};

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::HeaderName;
use ipnet::IpNet;

use self::raw::RawConfig;
use crate::tls::TlsFiles;

/// A config file that could not be used. The message names the file, the
/// key and the reason, on one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or a value has the wrong type.
    #[error("{}{key}: {message}", origin(.path))]
    Parse {
        /// The file, if any.
        path: Option<PathBuf>,
        /// The key (dotted path) at fault, or a line number for syntax errors.
        key: String,
        /// Why.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{}{key}: {reason}", origin(.path))]
    Invalid {
        /// The file, if any.
        path: Option<PathBuf>,
        /// The key at fault.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

fn origin(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("config file {}: ", p.display()),
        None => "built-in config: ".to_owned(),
    }
}

/// What to do with a request that carries no API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anonymous {
    /// Refuse with 403 `UNAUTHORISED`.
    Reject,
    /// Forward without identity headers; the application decides.
    Forward,
}

/// The upstream origin, split once so each request only copies refcounts.
#[derive(Debug, Clone)]
pub struct UpstreamOrigin {
    /// `http` (or `https`).
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
}

impl UpstreamOrigin {
    /// The host to connect to, without the brackets of an IPv6 literal.
    pub fn host(&self) -> &str {
        let host = self.authority.host();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port, or the scheme's default.
    pub fn port(&self) -> u16 {
        self.authority
            .port_u16()
            .unwrap_or(if self.scheme == Scheme::HTTPS {
                443
            } else {
                80
            })
    }
}

impl fmt::Display for UpstreamOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Failure-throttle limits (SPEC 5).
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Counted failures after which an address is refused.
    pub max_failures: u32,
    /// How long after its latest failure an address stays refused.
    pub window: Duration,
    /// Most addresses remembered at once; bounds the table's memory.
    pub max_tracked: usize,
}

/// An admin bearer token. `Debug` is redacted.
#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    /// Constant-time check of a presented token (both sides hashed, then
    /// compared with BLAKE3's constant-time equality).
    pub fn verify(&self, presented: &[u8]) -> bool {
        blake3::hash(self.0.as_bytes()) == blake3::hash(presented)
    }

    /// The token, for the CLI to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Whether a reload changed the token, in constant time like every other
/// comparison of it.
impl PartialEq for AdminToken {
    fn eq(&self, other: &Self) -> bool {
        self.verify(other.0.as_bytes())
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Settings the proxy reads per request; replaced whole on reload.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Where requests go.
    pub upstream: UpstreamOrigin,
    /// Header carrying the authenticated user id upstream.
    pub identity_header: HeaderName,
    /// Header carrying the key id upstream.
    pub key_id_header: HeaderName,
    /// Requests without a key.
    pub anonymous: Anonymous,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Deadline for a client's request head (and idle keep-alive).
    pub header_timeout: Duration,
    /// Deadline for the upstream's response head.
    pub upstream_timeout: Duration,
    /// Longest pause allowed between body chunks, in either direction.
    pub body_timeout: Duration,
    /// Failure throttle.
    pub throttle: ThrottleLimits,
    /// Whether to write the access log.
    pub access_log: bool,
    /// CA certificates for an `https://` upstream (else webpki's roots).
    pub upstream_ca: Option<PathBuf>,
    /// Cap on a request head (HTTP/1) or header list (HTTP/2), in bytes.
    pub max_header_bytes: usize,
    /// HTTP/2 limits for client connections.
    pub http2: Http2Limits,
    /// Protocols a request may upgrade to (lower case, names only):
    /// anything else is forwarded as an ordinary request. Never `h2c`.
    pub upgrades: Vec<String>,
    /// Forward the client's `Authorization` / `X-ONEIS-Key` unchanged, for
    /// a stock Haplo that authenticates every request again (SPEC 9).
    pub forward_credentials: bool,
    /// Which responses carry a rate-limited key's `RateLimit-Policy` and
    /// `RateLimit` fields (SPEC 11).
    pub rate_limit_headers: RateLimitHeaders,
}

/// Which responses carry the `RateLimit` fields of a rate-limited key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitHeaders {
    /// Only its 429s (the default: an application's responses are left as
    /// they are).
    Refusals,
    /// Its 429s and every response forwarded for it, so that a client can
    /// pace itself before it is refused.
    Always,
}

/// HTTP/2 limits for client connections, chosen against the known flood
/// attacks (rapid reset, CONTINUATION floods) as much as for throughput.
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    /// Concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// Interval between keep-alive pings; a peer that does not answer
    /// within the same interval is disconnected.
    pub keep_alive: Duration,
}

impl ProxySettings {
    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        let peer = canonical_ip(peer);
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, seen on dual-stack
/// sockets) is the IPv4 address it maps.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (`None` for built-in defaults).
    pub source: Option<PathBuf>,
    /// Public listener address.
    pub proxy_listen: SocketAddr,
    /// Admin listener address.
    pub admin_listen: SocketAddr,
    /// Admin bearer token, if set.
    pub admin_token: Option<AdminToken>,
    /// The redb file.
    pub store_path: PathBuf,
    /// How often last-use times are written to the store.
    pub last_used_flush: Duration,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// TLS termination, if configured.
    pub tls: Option<TlsFiles>,
    /// Most client connections open at once.
    pub max_connections: usize,
    /// Proxy worker threads (`None`: one per core).
    pub worker_threads: Option<usize>,
    /// Reloadable proxy settings.
    pub proxy: ProxySettings,
    /// Following a Haplo application's keys, if configured.
    pub haplo: Option<HaploFollow>,
    /// Fleet mode: the PostgreSQL that replicas share their key table
    /// through (SPEC 10), if configured.
    pub store_database: Option<DatabaseUrl>,
}

impl Config {
    /// How many proxy workers to run: `worker_threads`, or one per core.
    pub fn workers(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The built-in defaults of SPEC 1.
    pub fn defaults() -> Self {
        // The defaults are constants that validate; a failure is a bug here.
        Self::from_raw(RawConfig::default(), None).expect("built-in defaults are valid")
    }

    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::defaults());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    /// Parses and validates TOML text. `path` only labels errors.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Self, ConfigError> {
        let raw = load::parse_raw(text, path)?;
        Self::from_raw(raw, path)
    }
}

#[cfg(test)]
mod tests;
