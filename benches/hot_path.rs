//! Criterion benches for the request hot path.
//!
//! Run with `cargo bench --bench hot_path` (about two minutes on the 2-core
//! dev machine, of which ~10 s is building the 1,000,000-key snapshot once).
//! A filter runs a subset: `cargo bench --bench hot_path -- auth/`.
//!
//! Each bench measures one piece of the per-request work in isolation, on
//! the same public types the proxy uses, so a regression shows up here
//! before it shows up in a load test (`benches/load.sh`):
//!
//! - `auth/*`: the whole decision the proxy makes before forwarding:
//!   request-target validation, credential parsing (Basic base64 decode),
//!   key lookup, BLAKE3 verification, expiry, scope and blocked-user checks,
//!   with 1 key and with 1,000,000 keys in the snapshot. At 1M keys there
//!   are two variants: one hot key, and 16,384 distinct keys in turn (the
//!   lookups then miss the CPU caches the way a busy gateway's do).
//! - `refusal/*`: a wrong key (unknown id, wrong secret, malformed) through
//!   the same path, including the throttle's failure count. The throttle is
//!   configured with `max_failures = u32::MAX` so that every iteration does
//!   the full verification instead of the cheaper "already throttled" exit;
//!   `refusal/throttled` measures that exit on its own.
//! - `pieces/*`: credential parsing and the secret hash alone, to see what
//!   the decision is made of.
//! - `target/*`: `Target::from_uri` on typical accepted and refused targets.
//! - `headers/*`: `proxy::headers::rewrite_request` on a realistic browser
//!   / API-client header set. The `HeaderMap` clone each iteration needs is
//!   excluded from the timing (`iter_batched`); `headers/clone only` shows
//!   what it would have added.
//! - `snapshot/*`: the in-memory part of an admin write at 1,000,000 keys.
//!   `Snapshot::apply` is `pub(crate)`, so these
//!   bench a model of the same operation on the same shape (`SHARDS` shared
//!   hash sets of `Arc<Entry>`; a write copies the table of shard pointers
//!   and the one shard it changes, as `Keyring` does per write) plus the
//!   O(1) `Snapshot::clone`. The durable part (a redb commit) is measured by
//!   `benches/scale.rs`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue, Method, Uri};
use keygate::auth::{authenticate, AuthContext, Credentials, Throttle};
use keygate::config::{Config, ProxySettings};
use keygate::keys::{
    ApiKey, Entry, KeyId, KeyRecord, SecretHash, Snapshot, UserId, Verified, SHARDS,
};
use keygate::proxy::headers::{rewrite_request, Peer};
use keygate::scope::Scope;
use keygate::target::Target;
use keygate::timestamp::{Clock, Timestamp};

/// Keys in the large snapshot.
const MANY: usize = 1_000_000;
/// Distinct keys presented in turn in the "cold" 1M-key bench.
const ROTATION: usize = 16_384;

fn record(key: &ApiKey, i: usize) -> KeyRecord {
    KeyRecord {
        id: key.id(),
        hash: keygate::keys::KeyHash::Blake3(key.secret_hash()),
        // ~4 keys per user, realistic user ids and names.
        user: UserId::parse(&format!("user{:06}@example.org", i / 4)).unwrap(),
        name: format!("integration key {i}"),
        scope: Scope::parse(if i % 10 == 9 { "=/api/x/run" } else { "/api/" }).unwrap(),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
        origin: keygate::keys::Origin::Keygate,
        policy: Default::default(),
    }
}

fn basic_header(key: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("haplo:{key}"));
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    headers
}

/// Proxy settings whose throttle never trips, so refusals always verify.
fn settings() -> ProxySettings {
    Config::parse("[throttle]\nmax_failures = 4294967295\n", None)
        .expect("bench config")
        .proxy
}

struct Keys {
    /// All records' keys are in `snapshot`; `shown` are the first ROTATION
    /// keys as a client would present them.
    snapshot: Snapshot,
    shown: Vec<ApiKey>,
}

fn build(n: usize) -> Keys {
    let started = Instant::now();
    let mut shown = Vec::with_capacity(n.min(ROTATION));
    let records: Vec<KeyRecord> = (0..n)
        .map(|i| {
            let key = ApiKey::generate().unwrap();
            let r = record(&key, i);
            if shown.len() < ROTATION && i % 10 != 9 {
                shown.push(key);
            }
            r
        })
        .collect();
    let snapshot = Snapshot::from_records(records, []);
    if n > 1 {
        eprintln!(
            "built a {n}-key snapshot in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Keys { snapshot, shown }
}

/// The 1,000,000-key snapshot, built once for every bench that needs it.
fn many() -> &'static Keys {
    static MANY_KEYS: OnceLock<Keys> = OnceLock::new();
    MANY_KEYS.get_or_init(|| build(MANY))
}

fn one() -> &'static Keys {
    static ONE_KEY: OnceLock<Keys> = OnceLock::new();
    ONE_KEY.get_or_init(|| build(1))
}

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The proxy's decision for one request, as `Proxy::admit` makes it.
#[inline(always)]
fn decide(
    snapshot: &Snapshot,
    settings: &ProxySettings,
    throttle: &Throttle,
    uri: &Uri,
    headers: &HeaderMap,
) -> bool {
    decide_with(snapshot, settings, throttle, uri, headers, system_clock())
}

fn system_clock() -> &'static Clock {
    static SYSTEM: OnceLock<Clock> = OnceLock::new();
    SYSTEM.get_or_init(Clock::system)
}

/// [`decide`] on a given clock (the policy benches move a manual one).
#[inline(always)]
fn decide_with(
    snapshot: &Snapshot,
    settings: &ProxySettings,
    throttle: &Throttle,
    uri: &Uri,
    headers: &HeaderMap,
    clock: &Clock,
) -> bool {
    let target = Target::from_uri(uri).unwrap();
    let credentials = Credentials::from_headers(headers).unwrap();
    let cx = AuthContext {
        snapshot,
        settings,
        throttle,
        method: &Method::GET,
        client: CLIENT,
        now: Timestamp::now(),
        instant: Instant::now(),
        clock,
    };
    authenticate(&cx, credentials.secret(), &target).is_ok()
}

fn auth_decision(c: &mut Criterion) {
    let settings = settings();
    let throttle = Throttle::new();
    let uri: Uri = "/api/things?page=2".parse().unwrap();
    let mut group = c.benchmark_group("auth");

    let keys = one();
    let headers = basic_header(keys.shown[0].expose());
    assert!(decide(&keys.snapshot, &settings, &throttle, &uri, &headers));
    group.bench_function("decision, 1 key", |b| {
        b.iter(|| {
            black_box(decide(
                &keys.snapshot,
                &settings,
                &throttle,
                black_box(&uri),
                black_box(&headers),
            ))
        })
    });

    let keys = many();
    let headers = basic_header(keys.shown[0].expose());
    assert!(decide(&keys.snapshot, &settings, &throttle, &uri, &headers));
    group.bench_function("decision, 1M keys, one hot key", |b| {
        b.iter(|| {
            black_box(decide(
                &keys.snapshot,
                &settings,
                &throttle,
                black_box(&uri),
                black_box(&headers),
            ))
        })
    });

    let rotation: Vec<HeaderMap> = keys
        .shown
        .iter()
        .map(|k| basic_header(k.expose()))
        .collect();
    assert!(rotation
        .iter()
        .all(|h| decide(&keys.snapshot, &settings, &throttle, &uri, h)));
    let mut next = 0usize;
    group.bench_function("decision, 1M keys, 16k keys in turn", |b| {
        b.iter(|| {
            next = (next + 1) % rotation.len();
            black_box(decide(
                &keys.snapshot,
                &settings,
                &throttle,
                black_box(&uri),
                &rotation[next],
            ))
        })
    });
    group.finish();
}

/// What SPEC 11's policies cost the decision: a key without policies (the
/// path every key took before them), and one with all three (a rate it
/// stays within, an address list of four blocks the client is in the
/// last of, and a method list). Both move a manual clock one second per
/// request, so the rate-limited key always has a token and the two
/// differ only by the policy checks.
fn policy_cost(c: &mut Criterion) {
    use keygate::keys::policy::{AllowFrom, Methods, Policy, Rate};
    let settings = settings();
    let throttle = Throttle::new();
    let uri: Uri = "/api/things?page=2".parse().unwrap();
    let clock = Clock::manual(Timestamp::now());
    let plain = ApiKey::generate().unwrap();
    let limited = ApiKey::generate().unwrap();
    let mut with_policy = record(&limited, 1);
    with_policy.policy = Policy {
        rate: Some(Rate::new(10.0, Some(20)).unwrap()),
        allow_from: Some(
            AllowFrom::parse(&[
                "10.0.0.0/8",
                "192.168.0.0/16",
                "2001:db8::/32",
                "127.0.0.0/8",
            ])
            .unwrap(),
        ),
        methods: Some(Methods::parse(&["GET", "HEAD"]).unwrap()),
    };
    let snapshot = Snapshot::from_records([record(&plain, 0), with_policy], []);
    let mut group = c.benchmark_group("policy");
    for (name, key) in [
        ("decision, key without policies", &plain),
        ("decision, key with rate, allow_from and methods", &limited),
    ] {
        let headers = basic_header(key.expose());
        clock.advance(1);
        assert!(decide_with(
            &snapshot, &settings, &throttle, &uri, &headers, &clock
        ));
        group.bench_function(name, |b| {
            b.iter(|| {
                clock.advance(1);
                black_box(decide_with(
                    &snapshot,
                    &settings,
                    &throttle,
                    black_box(&uri),
                    black_box(&headers),
                    &clock,
                ))
            })
        });
    }
    group.finish();
}

/// The proxy's decision plus what issue 5 added to it: recording the key's
/// last use in memory (`Entry::touch`, as `Proxy::admit` does).
#[inline(always)]
fn decide_and_touch(
    snapshot: &Snapshot,
    settings: &ProxySettings,
    throttle: &Throttle,
    uri: &Uri,
    headers: &HeaderMap,
) -> bool {
    let target = Target::from_uri(uri).unwrap();
    let credentials = Credentials::from_headers(headers).unwrap();
    let now = Timestamp::now();
    let cx = AuthContext {
        snapshot,
        settings,
        throttle,
        method: &Method::GET,
        client: CLIENT,
        now,
        instant: Instant::now(),
        clock: system_clock(),
    };
    match authenticate(&cx, credentials.secret(), &target) {
        Ok(keygate::auth::Identity::Key(entry, _)) => {
            entry.touch(now);
            true
        }
        Ok(_) => true,
        Err(_) => false,
    }
}

/// The cost of last-use tracking on the request path: the same decision
/// without and with the in-memory touch, side by side.
fn last_used(c: &mut Criterion) {
    let settings = settings();
    let throttle = Throttle::new();
    let uri: Uri = "/api/things?page=2".parse().unwrap();
    let keys = one();
    let headers = basic_header(keys.shown[0].expose());
    let mut group = c.benchmark_group("last_used");
    group.bench_function("decision without last-use (before)", |b| {
        b.iter(|| {
            black_box(decide(
                &keys.snapshot,
                &settings,
                &throttle,
                black_box(&uri),
                black_box(&headers),
            ))
        })
    });
    group.bench_function("decision with last-use touch (after)", |b| {
        b.iter(|| {
            black_box(decide_and_touch(
                &keys.snapshot,
                &settings,
                &throttle,
                black_box(&uri),
                black_box(&headers),
            ))
        })
    });
    group.finish();
}

fn refusals(c: &mut Criterion) {
    let settings = settings();
    let uri: Uri = "/api/things?page=2".parse().unwrap();
    let keys = many();
    let mut group = c.benchmark_group("refusal");

    // Unknown id: a well-formed key that is not in the store.
    let unknown = basic_header(ApiKey::generate().unwrap().expose());
    // Known id, wrong secret.
    let real = keys.shown[0].expose();
    let wrong_secret = format!("{}{}", &real[..16], "A".repeat(28));
    let wrong_secret = basic_header(&wrong_secret);
    // Not a key at all (wrong length).
    let malformed = basic_header("not-a-key");

    for (name, headers) in [
        ("unknown id, 1M keys", &unknown),
        ("wrong secret, 1M keys", &wrong_secret),
        ("malformed key, 1M keys", &malformed),
    ] {
        let throttle = Throttle::new();
        assert!(!decide(&keys.snapshot, &settings, &throttle, &uri, headers));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(decide(
                    &keys.snapshot,
                    &settings,
                    &throttle,
                    black_box(&uri),
                    black_box(headers),
                ))
            })
        });
    }

    // The cheap exit once an address is throttled (default limits).
    let defaults = Config::defaults().proxy;
    let throttle = Throttle::new();
    for _ in 0..defaults.throttle.max_failures {
        decide(&keys.snapshot, &defaults, &throttle, &uri, &unknown);
    }
    group.bench_function("throttled", |b| {
        b.iter(|| {
            black_box(decide(
                &keys.snapshot,
                &defaults,
                &throttle,
                black_box(&uri),
                black_box(&unknown),
            ))
        })
    });
    group.finish();
}

fn pieces(c: &mut Criterion) {
    let key = ApiKey::generate().unwrap();
    let headers = basic_header(key.expose());
    let secret = &key.expose().as_bytes()[16..];
    let mut group = c.benchmark_group("pieces");
    group.bench_function("credentials from headers (Basic decode)", |b| {
        b.iter(|| {
            let credentials = Credentials::from_headers(black_box(&headers)).unwrap();
            black_box(credentials.secret().map(|s| s.as_bytes().len()))
        })
    });
    group.bench_function("secret hash (BLAKE3 derive-key, 28 bytes)", |b| {
        b.iter(|| black_box(SecretHash::of(black_box(secret))))
    });
    group.bench_function("plain BLAKE3 of 28 bytes (for comparison)", |b| {
        b.iter(|| black_box(blake3::hash(black_box(secret))))
    });
    let keys = one();
    let shown = keys.shown[0].expose().as_bytes();
    let now = Timestamp::now();
    group.bench_function("Snapshot::verify, 1 key", |b| {
        b.iter(|| {
            black_box(matches!(
                keys.snapshot.verify(black_box(shown), now),
                Verified::Valid(_)
            ))
        })
    });
    let keys = many();
    let shown = keys.shown[0].expose().as_bytes();
    group.bench_function("Snapshot::verify, 1M keys", |b| {
        b.iter(|| {
            black_box(matches!(
                keys.snapshot.verify(black_box(shown), now),
                Verified::Valid(_)
            ))
        })
    });
    group.finish();
}

fn targets(c: &mut Criterion) {
    let mut group = c.benchmark_group("target");
    for (name, text, ok) in [
        ("short", "/api/things?page=2", true),
        (
            "long with percent-encoding",
            "/api/v1/objects/8a3f2c/files/Annual%20Report%202026.pdf?download=1&version=3&lang=en-GB",
            true,
        ),
        ("absolute-form", "http://app.example.org/api/things?page=2", true),
        ("refused dot-segment", "/api/%2e%2e/admin/users", false),
    ] {
        let uri: Uri = text.parse().unwrap();
        assert_eq!(Target::from_uri(&uri).is_ok(), ok, "{text}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(Target::from_uri(black_box(&uri)).is_ok()))
        });
    }
    group.finish();
}

/// What a typical API client or browser-driven app sends through a gateway.
fn realistic_headers(key: &str) -> HeaderMap {
    let mut h = basic_header(key);
    for (name, value) in [
        ("host", "app.example.org"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.7"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        ("content-type", "application/json"),
        ("x-request-id", "6f1c2b9e-3c1a-4d8e-9b1f-0a2c3d4e5f60"),
        ("cookie", "session=2c3d4e5f60; theme=dark"),
        ("x-forwarded-for", "203.0.113.9"),
        // A spoofing attempt: must be removed.
        ("x-haplo-user", "admin"),
    ] {
        h.append(
            http::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

fn headers(c: &mut Criterion) {
    let settings = Config::defaults().proxy;
    let keys = one();
    let key = keys.shown[0].expose();
    let entry: &Entry = match keys.snapshot.verify(key.as_bytes(), Timestamp::now()) {
        Verified::Valid(entry) => entry,
        Verified::Invalid | Verified::NeedsBcrypt(_) => panic!("bench key does not verify"),
    };
    let original = realistic_headers(key);
    let peer = Peer::new(CLIENT, false, "http");
    let mut check = original.clone();
    rewrite_request(&mut check, &settings, &peer, Some(entry));
    assert_eq!(check.get("x-haplo-user").unwrap(), entry.user_header());
    assert!(check.get("authorization").is_none());

    let mut group = c.benchmark_group("headers");
    group.bench_function("rewrite_request, 12 headers, authenticated", |b| {
        b.iter_batched_ref(
            || original.clone(),
            |h| rewrite_request(h, &settings, &peer, Some(entry)),
            BatchSize::SmallInput,
        )
    });
    let trusted_peer = Peer::new(CLIENT, true, "http");
    group.bench_function("rewrite_request, 12 headers, trusted peer", |b| {
        b.iter_batched_ref(
            || original.clone(),
            |h| rewrite_request(h, &settings, &trusted_peer, Some(entry)),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("clone only (not part of the rewrite)", |b| {
        b.iter(|| black_box(original.clone()))
    });
    group.finish();
}

fn entry_for(key: &ApiKey, i: usize) -> Arc<Entry> {
    Entry::new(record(key, i))
}

fn snapshot_update(c: &mut Criterion) {
    let keys = many();
    let mut group = c.benchmark_group("snapshot");
    group.bench_function("Snapshot::clone, 1M keys", |b| {
        b.iter(|| black_box(keys.snapshot.clone()))
    });

    // A model of `Snapshot`'s keys: SHARDS shared sets, 1M entries.
    type Shard = std::collections::HashMap<KeyId, Arc<Entry>>;
    fn shard_of(id: &KeyId) -> usize {
        // Any even spread will do for the model.
        (usize::from(id.as_bytes()[15]) * 31 + usize::from(id.as_bytes()[14])) & (SHARDS - 1)
    }
    let started = Instant::now();
    let mut sets: Vec<Shard> = (0..SHARDS).map(|_| Shard::new()).collect();
    for i in 0..MANY {
        let key = ApiKey::generate().unwrap();
        sets[shard_of(&key.id())].insert(key.id(), entry_for(&key, i));
    }
    let map: Arc<[Arc<Shard>]> = sets.into_iter().map(Arc::new).collect();
    eprintln!(
        "built the 1M-entry sharded model in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let existing: Vec<KeyId> = map
        .iter()
        .flat_map(|s| s.keys())
        .step_by(61)
        .take(ROTATION)
        .copied()
        .collect();
    let fresh: Vec<(KeyId, Arc<Entry>)> = (0..ROTATION)
        .map(|i| {
            let key = ApiKey::generate().unwrap();
            (key.id(), entry_for(&key, i))
        })
        .collect();
    let beside = |id: &KeyId, change: &dyn Fn(&mut Shard)| {
        let index = shard_of(id);
        let mut shards: Vec<Arc<Shard>> = map.to_vec();
        let mut shard = Shard::clone(&shards[index]);
        change(&mut shard);
        shards[index] = Arc::new(shard);
        let next: Arc<[Arc<Shard>]> = shards.into();
        next
        // dropped by the caller: the copied shard and table are freed, as
        // when the previous snapshot's last reader lets go.
    };

    let mut i = 0usize;
    group.bench_function("insert beside the current (sharded model, 1M)", |b| {
        b.iter(|| {
            i = (i + 1) % fresh.len();
            let (id, entry) = &fresh[i];
            black_box(beside(id, &|s| {
                s.insert(*id, entry.clone());
            }))
        })
    });
    let mut j = 0usize;
    group.bench_function("remove beside the current (sharded model, 1M)", |b| {
        b.iter(|| {
            j = (j + 1) % existing.len();
            let id = &existing[j];
            black_box(beside(id, &|s| {
                s.remove(id);
            }))
        })
    });
    let mut k = 0usize;
    group.bench_function("build one stand-alone Entry (Entry::new)", |b| {
        b.iter(|| {
            k = (k + 1) % keys.shown.len();
            black_box(entry_for(&keys.shown[k], k))
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .nresamples(20_000)
        .configure_from_args()
}

criterion_group! {
    name = benches;
    config = config();
    targets = auth_decision, policy_cost, last_used, refusals, pieces, targets, headers, snapshot_update
}
criterion_main!(benches);
