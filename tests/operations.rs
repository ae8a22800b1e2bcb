//! Operations (issue 5): metrics, the audit trail, expiry, rotation,
//! last-used times and readiness. Time moves through a manual clock, never
//! a sleep.

mod support;

use keygate::timestamp::{Clock, Timestamp};
use serde_json::{json, Value};
use support::binary::cli;
use support::{RecordingUpstream, Req, TestProxy};

const START: i64 = 1_900_000_000; // 2030-03-17

async fn get_json(proxy: &TestProxy, path: &str) -> Value {
    let resp = proxy.admin_send(proxy.admin("GET", path)).await;
    assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    resp.json()
}

async fn metrics(proxy: &TestProxy) -> String {
    let resp = proxy.admin_send(proxy.admin("GET", "/metrics")).await;
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().contains("text"));
    resp.text()
}

/// The value of one sample line, e.g. `keygate_keys` or
/// `keygate_requests_total{outcome="forwarded"}`.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn metrics_move_as_requests_are_served() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(2, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let before = metrics(&proxy).await;
    assert_eq!(sample(&before, "keygate_keys"), 1.0);
    assert_eq!(
        sample(&before, "keygate_requests_total{outcome=\"forwarded\"}"),
        0.0
    );

    for _ in 0..3 {
        assert_eq!(
            proxy
                .send(Req::get("/api/x?secret=1").basic(&key.key))
                .await
                .status,
            200
        );
    }
    let wrong = "0123456789ABCDEF0123456789ABCDEF0123456789AB";
    for _ in 0..2 {
        proxy
            .send(Req::get("/api/x").basic(wrong))
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(403, "THROTTLE");
    proxy.set_blocked("mallory", true).await;

    let after = metrics(&proxy).await;
    assert_eq!(
        sample(&after, "keygate_requests_total{outcome=\"forwarded\"}"),
        3.0
    );
    assert_eq!(
        sample(&after, "keygate_requests_total{outcome=\"invalid-key\"}"),
        2.0
    );
    assert_eq!(
        sample(&after, "keygate_requests_total{outcome=\"throttled\"}"),
        1.0
    );
    assert_eq!(
        sample(&after, "keygate_request_duration_seconds_count"),
        6.0
    );
    assert_eq!(
        sample(&after, "keygate_upstream_duration_seconds_count"),
        3.0
    );
    assert_eq!(sample(&after, "keygate_throttled_addresses"), 1.0);
    assert_eq!(sample(&after, "keygate_blocked_users"), 1.0);
    assert!(after.contains("keygate_open_connections"));
    // Bounded cardinality: no path, query or address ever becomes a label.
    for leak in ["/api/x", "secret", "127.0.0.1", "alice", &key.id] {
        assert!(!after.contains(leak), "metrics mention {leak:?}");
    }
}

#[tokio::test]
async fn upstream_errors_and_reloads_are_counted() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::builder().upstream(free).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(502, "BAD-GATEWAY");
    proxy.reload_with(&proxy.config_text()).unwrap();
    proxy.reload_with("[proxy\n").unwrap_err();
    let text = metrics(&proxy).await;
    assert_eq!(
        sample(&text, "keygate_upstream_errors_total{cause=\"connect\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "keygate_requests_total{outcome=\"upstream-error\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "keygate_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "keygate_config_reloads_total{result=\"failure\"}"),
        1.0
    );
}

#[tokio::test]
async fn the_audit_trail_records_every_action_in_order_without_secrets() {
    let proxy = TestProxy::builder().start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let rotated = proxy
        .admin_send(
            proxy
                .admin("POST", &format!("/v1/keys/{}/rotate", key.id))
                .json(&json!({"grace_secs": 60})),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.text());
    let new_id = rotated.json()["id"].as_str().unwrap().to_owned();
    proxy.revoke(&new_id).await;
    proxy.set_blocked("alice", true).await;
    proxy.set_blocked("alice", false).await;

    let page = get_json(&proxy, "/v1/audit").await;
    let events = page["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "key_created",
            "key_rotated",
            "key_revoked",
            "user_blocked",
            "user_unblocked"
        ]
    );
    assert_eq!(events[0]["key_id"], key.id.as_str());
    assert_eq!(events[0]["user"], "alice");
    assert_eq!(events[0]["path"], "/api/");
    assert_eq!(events[0]["client"], "127.0.0.1");
    assert_eq!(events[1]["key_id"], key.id.as_str());
    assert_eq!(events[1]["new_key_id"], new_id.as_str());
    assert!(events[1]["grace_until"].is_string());
    assert_eq!(events[2]["key_id"], new_id.as_str());
    assert!(events
        .iter()
        .all(|e| e["time"].as_str().is_some_and(|t| t.ends_with('Z'))));
    let text = page.to_string();
    assert!(
        !text.contains(&key.key[16..]),
        "no secret in the audit trail"
    );

    // Paging: two at a time, following `next`.
    let first = get_json(&proxy, "/v1/audit?limit=2").await;
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let next = first["next"].as_u64().unwrap();
    let second = get_json(&proxy, &format!("/v1/audit?since={next}&limit=2")).await;
    assert_eq!(second["events"][0]["action"], "key_revoked");
}

#[tokio::test]
async fn an_expiring_key_is_refused_from_its_expiry_time() {
    let clock = Clock::manual(Timestamp::from_unix(START));
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .start()
        .await;
    let expires = Timestamp::from_unix(START + 3600).to_string();
    let resp = proxy
        .admin_send(
            proxy
                .admin("POST", "/v1/keys")
                .json(&json!({"user": "alice", "name": "temp", "expires_at": expires})),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let key = resp.json()["key"].as_str().unwrap().to_owned();
    let id = &key[..16];
    assert_eq!(
        get_json(&proxy, &format!("/v1/keys/{id}")).await["expires_at"],
        expires.as_str()
    );

    clock.advance(3599);
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
    clock.advance(1);
    proxy
        .send(Req::get("/api/x").basic(&key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    // A past expiry is refused at creation.
    let past = Timestamp::from_unix(START).to_string();
    let resp = proxy
        .admin_send(
            proxy
                .admin("POST", "/v1/keys")
                .json(&json!({"user": "alice", "name": "t", "expires_at": past})),
        )
        .await;
    assert_eq!(resp.status, 400);
}

#[tokio::test]
async fn rotation_without_grace_revokes_the_old_key_at_once() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let old = proxy.create_key("alice", "=/api/exact").await;
    let resp = proxy
        .admin_send(proxy.admin("POST", &format!("/v1/keys/{}/rotate", old.id)))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let new = resp.json();
    assert_eq!(new["user"], "alice");
    assert_eq!(new["name"], "test key");
    assert_eq!(new["path"], "=/api/exact");
    assert_eq!(new["old"]["revoked"], true);
    let new_key = new["key"].as_str().unwrap();
    assert_ne!(new_key, old.key);
    proxy
        .send(Req::get("/api/exact").basic(&old.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    assert_eq!(
        proxy
            .send(Req::get("/api/exact").basic(new_key))
            .await
            .status,
        200
    );
    let missing = proxy
        .admin_send(proxy.admin("POST", "/v1/keys/AAAAAAAAAAAAAAAA/rotate"))
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn rotation_with_grace_keeps_the_old_key_until_the_grace_ends() {
    let clock = Clock::manual(Timestamp::from_unix(START));
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .start()
        .await;
    let old = proxy.create_key("alice", "/api/").await;
    let resp = proxy
        .admin_send(
            proxy
                .admin("POST", &format!("/v1/keys/{}/rotate", old.id))
                .json(&json!({"grace_secs": 86400})),
        )
        .await;
    assert_eq!(resp.status, 201);
    let new = resp.json();
    assert_eq!(
        new["old"]["expires_at"],
        Timestamp::from_unix(START + 86400).to_string().as_str()
    );
    let new_key = new["key"].as_str().unwrap().to_owned();

    clock.advance(86399);
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&old.key)).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&new_key)).await.status,
        200
    );
    clock.advance(1);
    proxy
        .send(Req::get("/api/x").basic(&old.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&new_key)).await.status,
        200
    );
}

#[tokio::test]
async fn last_used_is_recorded_in_memory_and_written_only_on_flush() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = RecordingUpstream::start().await;
    let clock = Clock::manual(Timestamp::from_unix(START));
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .store_dir(dir.path())
        .clock(&clock)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let unused = proxy.create_key("bob", "/api/").await;
    assert_eq!(
        get_json(&proxy, &format!("/v1/keys/{}", key.id)).await["last_used_at"],
        Value::Null
    );

    let writes = proxy.keyring.store_writes();
    for _ in 0..50 {
        assert_eq!(
            proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
            200
        );
        clock.advance(1);
    }
    assert_eq!(
        proxy.keyring.store_writes(),
        writes,
        "the request path never writes the store"
    );
    // The listing shows the live time at once.
    let used = Timestamp::from_unix(START + 49).to_string();
    assert_eq!(
        get_json(&proxy, &format!("/v1/keys/{}", key.id)).await["last_used_at"],
        used.as_str()
    );

    // A graceful stop writes it (one batch), and a restart reads it back.
    proxy.stop().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .store_dir(dir.path())
        .start()
        .await;
    let shown = get_json(&proxy, &format!("/v1/keys/{}", key.id)).await;
    assert_eq!(shown["last_used_at"], used.as_str());
    let never = get_json(&proxy, &format!("/v1/keys/{}", unused.id)).await;
    assert_eq!(never["last_used_at"], Value::Null);
}

#[tokio::test]
async fn readiness_reports_the_upstream() {
    let upstream = RecordingUpstream::start().await;
    let up = TestProxy::builder().upstream(upstream.addr).start().await;
    let ready = get_json(&up, "/readyz?upstream=required").await;
    assert_eq!(ready["upstream"], "reachable");

    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = TestProxy::builder().upstream(free).start().await;
    // The store is loaded, so plain readiness holds (SPEC 7)...
    let plain = get_json(&down, "/readyz").await;
    assert!(plain["upstream"]
        .as_str()
        .unwrap()
        .starts_with("unreachable"));
    // ...but an orchestrator can ask for the upstream too.
    let strict = down
        .admin_send(down.admin("GET", "/readyz?upstream=required"))
        .await;
    assert_eq!(strict.status, 503);
}

#[tokio::test]
async fn the_cli_rotates_with_grace_and_creates_expiring_keys() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let admin = format!("http://{}", proxy.admin_addr);
    let created = cli(
        &[
            "keys",
            "create",
            "--admin",
            &admin,
            "--user",
            "alice",
            "--name",
            "t",
            "--expires-in",
            "90d",
        ],
        &[],
    )
    .await;
    let key = created.ok().trim().to_owned();
    let shown = get_json(&proxy, &format!("/v1/keys/{}", &key[..16])).await;
    let expires = Timestamp::parse_rfc3339(shown["expires_at"].as_str().unwrap()).unwrap();
    let expected = Timestamp::now().unix() + 90 * 86400;
    assert!((expires.unix() - expected).abs() < 60, "{shown}");

    let rotated = cli(
        &[
            "keys",
            "rotate",
            "--admin",
            &admin,
            &key[..16],
            "--grace",
            "24h",
        ],
        &[],
    )
    .await;
    let new_key = rotated.ok().trim().to_owned();
    assert_eq!(new_key.len(), 44);
    assert!(
        rotated.stderr.contains("keeps working until"),
        "{}",
        rotated.stderr
    );
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&new_key)).await.status,
        200
    );

    let audit = cli(&["audit", "--admin", &admin], &[]).await;
    assert!(audit.ok().contains("key_rotated"), "{}", audit.stdout);
    let health = cli(&["health", "--admin", &admin], &[]).await;
    assert!(health.ok().contains("ready"));
}
