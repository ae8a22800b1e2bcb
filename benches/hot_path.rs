//! Criterion benches for the request hot path.
//!
//! Run with `cargo bench --bench hot_path`. Each bench measures one piece of
//! the per-request work in isolation, on the same public types the proxy
//! uses, so a regression shows up here before it shows up in a load test.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate::auth::{authenticate, AuthContext, Credentials, Throttle};
use keygate::config::Config;
use keygate::keys::{ApiKey, KeyRecord, Snapshot, UserId};
use keygate::scope::Scope;
use keygate::target::Target;
use keygate::timestamp::Timestamp;

fn record(key: &ApiKey) -> KeyRecord {
    KeyRecord {
        id: key.id(),
        hash: key.secret_hash(),
        user: UserId::parse("bench").unwrap(),
        name: "bench".into(),
        scope: Scope::parse("/api/").unwrap(),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
    }
}

fn auth_decision(c: &mut Criterion) {
    let key = ApiKey::generate().unwrap();
    let snapshot = Snapshot::from_records([record(&key)], []);
    let settings = Config::defaults().proxy;
    let throttle = Throttle::new();
    let mut headers = http::HeaderMap::new();
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{}", key.expose()),
    );
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    let uri: http::Uri = "/api/things?page=2".parse().unwrap();
    c.bench_function("auth decision, 1 key (parse, target, verify, scope)", |b| {
        b.iter(|| {
            let target = Target::from_uri(black_box(&uri)).unwrap();
            let credentials = Credentials::from_headers(black_box(&headers)).unwrap();
            let cx = AuthContext {
                snapshot: &snapshot,
                settings: &settings,
                throttle: &throttle,
                client: std::net::Ipv4Addr::LOCALHOST.into(),
                now: Timestamp::now(),
                instant: Instant::now(),
            };
            black_box(authenticate(&cx, credentials.secret(), &target).is_ok())
        })
    });
}

criterion_group!(benches, auth_decision);
criterion_main!(benches);
