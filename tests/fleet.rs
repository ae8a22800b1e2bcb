//! SPEC 10: keygate replicas sharing one key table through PostgreSQL. A
//! write on any replica is in effect there when the admin API answers and
//! reaches the others through LISTEN/NOTIFY; a replica joining with an
//! empty file copies the table before it is ready; with PostgreSQL away
//! the replicas keep serving their copies, writes answer 503 and write
//! nothing, and everything converges when it returns. Real replicas (the
//! same code as `keygate serve`, each with its own redb file) against a
//! real PostgreSQL.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;
use support::postgres::TestPostgres;
use support::{Req, TestProxy, PATIENCE};

async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < PATIENCE,
            "{what} did not happen in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    started.elapsed()
}

async fn status(proxy: &TestProxy, key: &str) -> u16 {
    proxy.send(Req::get("/api/x").basic(key)).await.status
}

async fn ready(proxy: &TestProxy) -> serde_json::Value {
    let resp = proxy.admin_send(proxy.admin("GET", "/readyz")).await;
    let mut body = resp.json();
    body["http_status"] = json!(resp.status);
    body
}

/// A replica of the fleet at `url`, with its own store in `store` (a new
/// temp dir when `None`), ready (it holds the shared table).
async fn replica(
    upstream: std::net::SocketAddr,
    url: &str,
    store: Option<&std::path::Path>,
) -> TestProxy {
    let mut builder = TestProxy::builder().upstream(upstream).store_database(url);
    if let Some(store) = store {
        builder = builder.store_dir(store);
    }
    let proxy = builder.start().await;
    eventually("the replica holding the shared table", || async {
        ready(&proxy).await["http_status"] == 200
    })
    .await;
    proxy
}

/// Two replicas on a fresh fleet database, and a key made on the first
/// that already works on the second.
async fn two_replicas_sharing_a_key() -> (
    support::RecordingUpstream,
    TestProxy,
    TestProxy,
    support::Key,
) {
    let url = TestPostgres::shared().fresh_database();
    let upstream = support::RecordingUpstream::start().await;
    let a = replica(upstream.addr, &url, None).await;
    let b = replica(upstream.addr, &url, None).await;
    let key = a.create_key("alice", "/api/").await;
    eventually("the key on B", || async {
        status(&b, &key.key).await == 200
    })
    .await;
    (upstream, a, b, key)
}

#[tokio::test]
async fn a_write_on_any_replica_reaches_every_other_within_a_second() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let upstream = support::RecordingUpstream::start().await;
    let a = replica(upstream.addr, &url, None).await;
    let b = replica(upstream.addr, &url, None).await;
    let c = replica(upstream.addr, &url, None).await;

    // Created on A: in effect on A when the API answers, then everywhere.
    let key = a.create_key("alice", "/api/").await;
    assert_eq!(status(&a, &key.key).await, 200);
    for other in [&b, &c] {
        let took = eventually("the key reaching another replica", || async {
            status(other, &key.key).await == 200
        })
        .await;
        assert!(took < Duration::from_secs(1), "propagation took {took:?}");
    }

    // Revoked on B: refused on B at once, then on A and C.
    b.revoke(&key.id).await;
    assert_eq!(status(&b, &key.key).await, 403);
    for other in [&a, &c] {
        let took = eventually("the revocation reaching another replica", || async {
            status(other, &key.key).await == 403
        })
        .await;
        assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    }

    // A user blocked on C is blocked everywhere.
    let bob = c.create_key("bob", "/api/").await;
    eventually("bob's key everywhere", || async {
        status(&a, &bob.key).await == 200 && status(&b, &bob.key).await == 200
    })
    .await;
    c.set_blocked("bob", true).await;
    for proxy in [&a, &b, &c] {
        eventually("bob blocked everywhere", || async {
            status(proxy, &bob.key).await == 403
        })
        .await;
    }
    proxy_refused_unauthorised(&a, &bob.key).await;

    // A replica joining now, with an empty file, copies the table before
    // it reports ready: bob's key is there at once, and blocked.
    let d = replica(upstream.addr, &url, None).await;
    proxy_refused_unauthorised(&d, &bob.key).await;
    assert_eq!(status(&d, &key.key).await, 403, "revoked before it joined");
    let fresh = d.create_key("dave", "/api/").await;
    eventually("a write from the new replica", || async {
        status(&a, &fresh.key).await == 200
    })
    .await;
}

async fn proxy_refused_unauthorised(proxy: &TestProxy, key: &str) {
    proxy
        .send(Req::get("/api/x").basic(key))
        .await
        .assert_refused(403, "UNAUTHORISED");
}

#[tokio::test]
async fn with_the_database_away_replicas_serve_their_copies_and_writes_are_503() {
    let mut pg = TestPostgres::start();
    let url = pg.fresh_database();
    let upstream = support::RecordingUpstream::start().await;
    let store_a = tempfile::tempdir().unwrap();
    let a = replica(upstream.addr, &url, Some(store_a.path())).await;
    let b = replica(upstream.addr, &url, None).await;
    let key = a.create_key("alice", "/api/").await;
    eventually("the key on B", || async {
        status(&b, &key.key).await == 200
    })
    .await;

    pg.stop();
    // Every request that was accepted still is.
    for proxy in [&a, &b] {
        assert_eq!(status(proxy, &key.key).await, 200);
    }
    // Writes: 503 with a clear error, and nothing written anywhere.
    let resp = a
        .admin_send(
            a.admin("POST", "/v1/keys")
                .json(&json!({"user": "carol", "name": "while cut off"})),
        )
        .await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.text().contains("nothing was written"),
        "{}",
        resp.text()
    );
    let resp = b
        .admin_send(b.admin("DELETE", &format!("/v1/keys/{}", key.id)))
        .await;
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(
        status(&b, &key.key).await,
        200,
        "the refused revocation changed nothing"
    );
    eventually("the replica saying it is cut off", || async {
        !ready(&a).await["fleet"]["error"].is_null()
    })
    .await;

    // A replica restarted while the database is away serves its copy.
    a.stop().await;
    let a = TestProxy::builder()
        .upstream(upstream.addr)
        .store_dir(store_a.path())
        .store_database(&url)
        .start()
        .await;
    assert_eq!(status(&a, &key.key).await, 200);

    // Back: writes work again and both replicas converge.
    pg.restart();
    let later = eventually("writes working again", || async {
        a.admin_send(
            a.admin("POST", "/v1/keys")
                .json(&json!({"user": "erin", "name": "after"})),
        )
        .await
        .status
            == 201
    })
    .await;
    let _ = later;
    b.revoke(&key.id).await;
    eventually("the revocation reaching A after the outage", || async {
        status(&a, &key.key).await == 403
    })
    .await;
}

#[tokio::test]
async fn haplo_keys_reach_a_fleet_through_the_same_path_as_every_write() {
    use support::haplo::{kind, HaploApp};
    use support::postgres::READER;
    let pg = TestPostgres::shared();
    let fleet_url = pg.fresh_database();
    let haplo_owner = pg.fresh_database();
    let app = HaploApp::create(&haplo_owner, 4000, "app.example").await;
    app.grant_reader(READER).await;
    let alice = app.add_user(kind::USER, None).await;
    let first = app.add_key(alice, "/api/", "before").await;
    let follow = format!(
        "[haplo]\ndatabase = \"{}\"\napp_id = 4000\npoll_secs = 1\n",
        pg.reader_url(&haplo_owner)
    );
    let upstream = support::RecordingUpstream::start().await;
    // The test polls for keys that do not exist yet: those failures must
    // not get its address throttled.
    let start = || {
        TestProxy::builder()
            .upstream(upstream.addr)
            .store_database(&fleet_url)
            .throttle(1_000_000, 1)
            .section(&follow)
            .start()
    };
    let (a, b) = (start().await, start().await);
    for proxy in [&a, &b] {
        eventually("Haplo's key on every replica", || async {
            status(proxy, &first).await == 200
        })
        .await;
    }
    // Deleted in Haplo: refused everywhere; the fleet's log has it once.
    app.delete_key(&first[..16]).await;
    for proxy in [&a, &b] {
        eventually("the deletion on every replica", || async {
            status(proxy, &first).await == 403
        })
        .await;
    }
    eventually("the replicas agreeing", || async {
        ready(&a).await["fleet"]["synced_seq"] == ready(&b).await["fleet"]["synced_seq"]
    })
    .await;
    // Haplo's keys stay Haplo's on every replica.
    let second = app.add_key(alice, "/api/", "after").await;
    eventually("the new key on B", || async {
        status(&b, &second).await == 200
    })
    .await;
    let resp = b
        .admin_send(b.admin("DELETE", &format!("/v1/keys/{}", &second[..16])))
        .await;
    assert_eq!(resp.status, 409, "{}", resp.text());
}

#[tokio::test]
async fn last_use_times_are_merged_into_the_shared_table() {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let upstream = support::RecordingUpstream::start().await;
    let a = TestProxy::builder()
        .upstream(upstream.addr)
        .store_database(&url)
        .section("last_used_flush_secs = 1\n")
        .start()
        .await;
    eventually("the replica joining", || async {
        ready(&a).await["http_status"] == 200
    })
    .await;
    let key = a.create_key("alice", "/api/").await;
    assert_eq!(status(&a, &key.key).await, 200);
    eventually("the use reaching PostgreSQL", || async {
        pg.superuser_sql(
            &database,
            &format!(
                "SELECT count(*) FROM keygate_last_used WHERE id = '{}'",
                key.id
            ),
        )
        .trim()
            == "1"
    })
    .await;
}

#[tokio::test]
async fn every_replica_lists_the_fleets_whole_audit_trail_numbered_alike() {
    let (_upstream, a, b, key) = two_replicas_sharing_a_key().await;
    b.revoke(&key.id).await;
    let on_a = a.admin_send(a.admin("GET", "/v1/audit")).await.json();
    let on_b = b.admin_send(b.admin("GET", "/v1/audit")).await.json();
    assert_eq!(on_a, on_b, "the same trail, the same numbers");
    let actions: Vec<&str> = on_a["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key_created", "key_revoked"]);
}

#[tokio::test]
async fn policies_replicate_like_every_write_and_rate_limits_count_per_replica() {
    let (_upstream, a, b, key) = two_replicas_sharing_a_key().await;

    // A PATCH on A: in effect on A when it answers, then on B.
    let resp = a
        .admin_send(
            a.admin("PATCH", &format!("/v1/keys/{}", key.id))
                .json(&json!({"methods": ["GET"], "rate": {"per_second": 0.001, "burst": 2}})),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let post = || Req::post("/api/x", b"{}").basic(&key.key);
    assert_eq!(a.send(post()).await.status, 403);
    eventually("the policy reaching B", || async {
        b.send(post()).await.status == 403
    })
    .await;
    let shown = b
        .admin_send(b.admin("GET", &format!("/v1/keys/{}", key.id)))
        .await
        .json();
    assert_eq!(shown["rate"], json!({"per_second": 0.001, "burst": 2}));

    // Each replica has its own bucket of two (SPEC 10: per replica).
    for replica in [&a, &b] {
        assert_eq!(status(replica, &key.key).await, 200);
        assert_eq!(status(replica, &key.key).await, 200);
        assert_eq!(status(replica, &key.key).await, 429);
    }
}
