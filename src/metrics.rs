//! Prometheus metrics, served on the admin port at `GET /metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `keygate_requests_total` | counter | `outcome` |
//! | `keygate_request_duration_seconds` | histogram | |
//! | `keygate_upstream_duration_seconds` | histogram | |
//! | `keygate_upstream_errors_total` | counter | `cause` |
//! | `keygate_open_connections` | gauge | |
//! | `keygate_keys` | gauge | |
//! | `keygate_blocked_users` | gauge | |
//! | `keygate_throttled_addresses` | gauge | |
//! | `keygate_config_reloads_total` | counter | `result` |
//! | `keygate_haplo_sync_age_seconds` | gauge | (only with `[haplo]`) |
//! | `keygate_haplo_sync_up` | gauge | (only with `[haplo]`) |
//! | `keygate_fleet_cut_off_seconds` | gauge | (only with `store.database`) |
//! | `keygate_fleet_synced_seq` | gauge | (only with `store.database`) |
//!
//! Label values come from fixed sets (outcomes, causes, results), never
//! from a path, an address or a user, so cardinality is bounded by
//! construction. Every labelled series is created once at start-up and its
//! handle kept: the request path increments an atomic it already holds,
//! with no map lookup. Gauges that describe state (keys, blocked users,
//! throttled addresses) are computed when scraped.

use std::fmt;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Every outcome a proxied request can end with (the access log's words).
pub const OUTCOMES: [&str; 15] = [
    "forwarded",
    "anonymous",
    "no-key",
    "invalid-key",
    "out-of-scope",
    "user-blocked",
    "method-not-allowed",
    "address-not-allowed",
    "rate-limited",
    "throttled",
    "bad-request",
    "upstream-error",
    "upstream-timeout",
    "incomplete",
    "other",
];

/// Every upstream failure cause.
pub const CAUSES: [&str; 4] = ["connect", "closed", "other", "timeout"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Latency buckets, seconds: 100 µs to 30 s.
const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    30.0,
];

/// keygate's metrics.
pub struct Metrics {
    registry: Registry,
    requests: [Counter; OUTCOMES.len()],
    request_duration: Histogram,
    upstream_duration: Histogram,
    upstream_errors: [Counter; CAUSES.len()],
    reloads_ok: Counter,
    reloads_failed: Counter,
    /// Open client connections on the proxy listener.
    pub open_connections: Gauge,
    keys: Gauge,
    blocked_users: Gauge,
    throttled: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// With `[haplo]`: seconds since the last good sync, and whether the
    /// latest attempt succeeded.
    haplo_sync: Option<(Gauge, Gauge)>,
    /// With `store.database`: seconds cut off from the shared table, and
    /// the last change applied.
    fleet: Option<(Gauge, Gauge)>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Metrics(..)")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric and creates every labelled series.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("keygate");
        let requests_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "requests",
            "Proxied requests, by outcome (forwarded, anonymous, or the rule that refused them)",
            requests_family.clone(),
        );
        let requests = OUTCOMES.map(|outcome| {
            requests_family
                .get_or_create(&OutcomeLabel { outcome })
                .clone()
        });
        let request_duration = Histogram::new(BUCKETS);
        registry.register(
            "request_duration_seconds",
            "Time from request arrival to the end of the response body",
            request_duration.clone(),
        );
        let upstream_duration = Histogram::new(BUCKETS);
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response head",
            upstream_duration.clone(),
        );
        let errors_family = Family::<CauseLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures, by cause (connect, closed, other, timeout)",
            errors_family.clone(),
        );
        let upstream_errors =
            CAUSES.map(|cause| errors_family.get_or_create(&CauseLabel { cause }).clone());
        let reloads = Family::<ResultLabel, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reloads, by result",
            reloads.clone(),
        );
        let reloads_ok = reloads
            .get_or_create(&ResultLabel { result: "success" })
            .clone();
        let reloads_failed = reloads
            .get_or_create(&ResultLabel { result: "failure" })
            .clone();
        let open_connections = Gauge::default();
        registry.register(
            "open_connections",
            "Open client connections",
            open_connections.clone(),
        );
        let keys = Gauge::default();
        registry.register("keys", "API keys in the store", keys.clone());
        let blocked_users = Gauge::default();
        registry.register(
            "blocked_users",
            "Users currently blocked",
            blocked_users.clone(),
        );
        let throttled = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        registry.register(
            "throttled_addresses",
            "Client addresses currently refused by the failure throttle",
            throttled.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_duration,
            upstream_errors,
            reloads_ok,
            reloads_failed,
            open_connections,
            keys,
            blocked_users,
            throttled,
            haplo_sync: None,
            fleet: None,
        }
    }

    /// Adds a fleet replica's gauges.
    pub fn with_fleet(mut self) -> Self {
        let cut_off = Gauge::default();
        self.registry.register(
            "fleet_cut_off_seconds",
            "Seconds this replica has been unable to reach the fleet database (0 while connected)",
            cut_off.clone(),
        );
        let synced = Gauge::default();
        self.registry.register(
            "fleet_synced_seq",
            "The last change of the fleet's shared table applied to this replica's copy",
            synced.clone(),
        );
        self.fleet = Some((cut_off, synced));
        self
    }

    /// Sets the fleet gauges (at scrape time).
    pub fn set_fleet(&self, cut_off: Duration, synced_seq: u64) {
        if let Some((cut_off_gauge, synced_gauge)) = &self.fleet {
            cut_off_gauge.set(i64::try_from(cut_off.as_secs()).unwrap_or(i64::MAX));
            synced_gauge.set(i64::try_from(synced_seq).unwrap_or(i64::MAX));
        }
    }

    /// Adds the `[haplo]` follower's gauges (only a keygate that follows a
    /// Haplo application exports them, so their absence means "not
    /// following", not "synced long ago").
    pub fn with_haplo_sync(mut self) -> Self {
        let age = Gauge::default();
        self.registry.register(
            "haplo_sync_age_seconds",
            "Seconds since keygate last synced its key table with Haplo's (since start, before the first sync)",
            age.clone(),
        );
        let up = Gauge::default();
        self.registry.register(
            "haplo_sync_up",
            "1 if the latest sync with Haplo's database succeeded, else 0",
            up.clone(),
        );
        self.haplo_sync = Some((age, up));
        self
    }

    /// Sets the follower's gauges (at scrape time).
    pub fn set_haplo_sync(&self, age: Duration, up: bool) {
        if let Some((age_gauge, up_gauge)) = &self.haplo_sync {
            age_gauge.set(i64::try_from(age.as_secs()).unwrap_or(i64::MAX));
            up_gauge.set(i64::from(up));
        }
    }

    /// Counts one finished request.
    pub fn request(&self, outcome: &str, duration: Duration) {
        let index = OUTCOMES
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(OUTCOMES.len() - 1);
        self.requests[index].inc();
        self.request_duration.observe(duration.as_secs_f64());
    }

    /// Records how long the upstream took to answer.
    pub fn upstream(&self, duration: Duration) {
        self.upstream_duration.observe(duration.as_secs_f64());
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, cause: &str) {
        let index = CAUSES.iter().position(|c| *c == cause).unwrap_or(2);
        self.upstream_errors[index].inc();
    }

    /// Counts a config reload.
    pub fn reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_failed.inc();
        }
    }

    /// The text exposition, with the state gauges set from the arguments.
    pub fn encode(&self, keys: usize, blocked_users: usize, throttled: usize) -> String {
        self.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
        self.blocked_users
            .set(i64::try_from(blocked_users).unwrap_or(i64::MAX));
        self.throttled
            .set(i64::try_from(throttled).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
