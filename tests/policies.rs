//! SPEC 11 at the edge: a key's rate limit, source addresses and methods
//! admit and refuse exactly as stated, in SPEC 5's order, without counting
//! as throttle failures; over real sockets, with time on a manual clock.

mod support;

#[path = "policies/admin.rs"]
mod admin;

use keygate::timestamp::{Clock, Timestamp};
use serde_json::{json, Value};
use support::{RecordingUpstream, Req, TestProxy};

/// A key for `user` with `policy` merged into the creation body.
async fn key_with(proxy: &TestProxy, user: &str, policy: Value) -> (String, String, Value) {
    let mut body = json!({"user": user, "name": "policy test", "path": "/api/"});
    for (field, value) in policy.as_object().expect("policy object") {
        body[field] = value.clone();
    }
    let resp = proxy
        .admin_send(proxy.admin("POST", "/v1/keys").json(&body))
        .await;
    assert_eq!(resp.status, 201, "create: {}", resp.text());
    let created = resp.json();
    (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
        created,
    )
}

fn clock() -> Clock {
    Clock::manual(Timestamp::from_unix(1_800_000_000))
}

async fn setup(clock: &Clock) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(clock)
        // One counted failure throttles: a policy refusal counted by
        // mistake would show at once.
        .throttle(1, 3600)
        .start()
        .await;
    (upstream, proxy)
}

#[tokio::test]
async fn a_rate_limited_key_gets_its_burst_then_429s_until_a_token_is_back() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (key, _, created) = key_with(
        &proxy,
        "alice",
        json!({"rate": {"per_second": 1, "burst": 3}}),
    )
    .await;
    assert_eq!(created["rate"], json!({"per_second": 1, "burst": 3}));
    for n in 0..3 {
        let resp = proxy.send(Req::get("/api/x").basic(&key)).await;
        assert_eq!(resp.status, 200, "request {n} of the burst");
        assert!(
            resp.header("ratelimit").is_none(),
            "only 429s carry it by default"
        );
    }
    let refused = proxy.send(Req::get("/api/x").basic(&key)).await;
    refused.assert_refused(429, "RATE-LIMITED");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(refused.header("ratelimit-policy"), Some("\"key\";q=3;w=3"));
    assert_eq!(refused.header("ratelimit"), Some("\"key\";r=0;t=1"));
    // A second later, one token is back: one request, then refused again.
    clock.advance(1);
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
    proxy
        .send(Req::get("/api/x").basic(&key))
        .await
        .assert_refused(429, "RATE-LIMITED");
    // A long pause refills to the burst, and no further.
    clock.advance(3600);
    for _ in 0..3 {
        assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
    }
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 429);
}

#[tokio::test]
async fn rate_limits_are_per_key_and_429s_are_not_throttle_failures() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (limited, _, _) = key_with(
        &proxy,
        "alice",
        json!({"rate": {"per_second": 0.5, "burst": 1}}),
    )
    .await;
    let other = proxy.create_key("bob", "/api/").await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&limited)).await.status,
        200
    );
    for _ in 0..5 {
        let refused = proxy.send(Req::get("/api/x").basic(&limited)).await;
        refused.assert_refused(429, "RATE-LIMITED");
        assert_eq!(
            refused.header("retry-after"),
            Some("2"),
            "0.5/s: two seconds"
        );
    }
    // Five refusals from this address, with a one-failure throttle: none
    // was counted, and another key is not limited by this one's bucket.
    assert_eq!(
        proxy
            .send(Req::get("/api/x").basic(&other.key))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn forwarded_responses_carry_the_ratelimit_fields_when_configured() {
    let clock = clock();
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .proxy("rate_limit_headers = \"always\"")
        .start()
        .await;
    let (key, _, _) = key_with(
        &proxy,
        "alice",
        json!({"rate": {"per_second": 10, "burst": 20}}),
    )
    .await;
    let resp = proxy.send(Req::get("/api/x").basic(&key)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("ratelimit-policy"), Some("\"key\";q=20;w=2"));
    // 19 left; the bucket is full again a tenth of a second later (1 s,
    // rounded up to whole seconds).
    assert_eq!(resp.header("ratelimit"), Some("\"key\";r=19;t=1"));
    let plain = proxy.create_key("bob", "/api/").await;
    let resp = proxy.send(Req::get("/api/x").basic(&plain.key)).await;
    assert!(
        resp.header("ratelimit").is_none(),
        "a key without a rate has none"
    );
}

#[tokio::test]
async fn a_method_list_admits_exactly_its_methods() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (reader, _, created) = key_with(&proxy, "alice", json!({"methods": ["get", "HEAD"]})).await;
    assert_eq!(created["methods"], json!(["GET", "HEAD"]));
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&reader)).await.status,
        200
    );
    assert_eq!(
        proxy
            .send(Req::new("HEAD", "/api/x").basic(&reader))
            .await
            .status,
        200
    );
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"] {
        proxy
            .send(Req::new(method, "/api/x").basic(&reader).body(b"{}"))
            .await
            .assert_refused(403, "UNAUTHORISED");
    }
    // GET does not imply HEAD; the admin API says so when the key is made.
    let (get_only, _, created) = key_with(&proxy, "bob", json!({"methods": ["GET"]})).await;
    assert!(
        created["warnings"].to_string().contains("HEAD"),
        "{created}"
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&get_only)).await.status,
        200
    );
    assert_eq!(
        proxy
            .send(Req::new("HEAD", "/api/x").basic(&get_only))
            .await
            .status,
        403
    );
    // None of the refusals counted as a failure (the throttle trips at one).
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&reader)).await.status,
        200
    );
}

#[tokio::test]
async fn an_address_list_admits_only_its_blocks() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (elsewhere, _, _) = key_with(
        &proxy,
        "alice",
        json!({"allow_from": ["10.0.0.0/8", "2001:db8::/32"]}),
    )
    .await;
    let (local, _, _) = key_with(
        &proxy,
        "bob",
        json!({"allow_from": ["192.0.2.1", "127.0.0.0/8"]}),
    )
    .await;
    proxy
        .send(Req::get("/api/x").basic(&elsewhere))
        .await
        .assert_refused(403, "UNAUTHORISED");
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&local)).await.status,
        200
    );
    // X-Forwarded-For from an untrusted peer is not the client's address.
    let spoofed = proxy
        .send(
            Req::get("/api/x")
                .basic(&elsewhere)
                .header("X-Forwarded-For", "10.1.2.3"),
        )
        .await;
    assert_eq!(spoofed.status, 403);
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&local)).await.status,
        200,
        "not counted"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_is_checked() {
    let clock = clock();
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .proxy("trusted_proxies = [\"127.0.0.1\"]")
        .start()
        .await;
    let (key, _, _) = key_with(
        &proxy,
        "alice",
        json!({"allow_from": ["203.0.113.0/24", "2001:db8:1:2::/64"]}),
    )
    .await;
    for (client, status) in [
        ("203.0.113.77", 200),
        ("198.51.100.1, 203.0.113.5", 200),
        ("203.0.114.1", 403),
        ("2001:db8:1:2::abcd", 200),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", 200),
        ("2001:db8:1:3::1", 403),
        // The right-most untrusted address is the client, not a spoofed
        // left-most one.
        ("203.0.113.5, 198.51.100.1", 403),
    ] {
        let resp = proxy
            .send(
                Req::get("/api/x")
                    .basic(&key)
                    .header("X-Forwarded-For", client),
            )
            .await;
        assert_eq!(resp.status, status, "client {client}");
    }
}

#[tokio::test]
async fn an_ipv6_peer_is_matched_against_ipv6_blocks() {
    let clock = clock();
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .listen("[::1]:0")
        .start()
        .await;
    assert!(proxy.proxy_addr.is_ipv6());
    let (inside, _, _) = key_with(&proxy, "alice", json!({"allow_from": ["::1/128"]})).await;
    let (outside, _, _) = key_with(
        &proxy,
        "bob",
        json!({"allow_from": ["127.0.0.1", "fe80::/64"]}),
    )
    .await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&inside)).await.status,
        200
    );
    proxy
        .send(Req::get("/api/x").basic(&outside))
        .await
        .assert_refused(403, "UNAUTHORISED");
}

#[tokio::test]
async fn scope_and_blocks_are_checked_before_policies() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (key, _, _) = key_with(
        &proxy,
        "alice",
        json!({"methods": ["GET"], "allow_from": ["10.0.0.0/8"], "rate": {"per_second": 1, "burst": 1}}),
    )
    .await;
    // Out of scope and off the policy: the scope answers (SPEC 5's order).
    proxy
        .send(Req::new("POST", "/other").basic(&key).body(b"x"))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    proxy.set_blocked("alice", true).await;
    proxy
        .send(Req::get("/api/x").basic(&key))
        .await
        .assert_refused(403, "UNAUTHORISED");
}

#[tokio::test]
async fn each_policy_has_its_own_outcome_in_the_log_and_metrics() {
    let clock = clock();
    let upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .clock(&clock)
        .start()
        .await;
    let (reader, id, _) = key_with(&proxy, "alice", json!({"methods": ["GET"]})).await;
    let (remote, _, _) = key_with(&proxy, "bob", json!({"allow_from": ["10.0.0.0/8"]})).await;
    let (slow, _, _) = key_with(
        &proxy,
        "carol",
        json!({"rate": {"per_second": 1, "burst": 1}}),
    )
    .await;
    proxy
        .send(Req::new("DELETE", "/api/x").basic(&reader))
        .await;
    let line = proxy.next_log().await;
    assert_eq!(line["outcome"], "method-not-allowed");
    assert_eq!(line["key_id"], id.as_str());
    assert_eq!(line["user"], "alice");
    proxy.send(Req::get("/api/x").basic(&remote)).await;
    assert_eq!(proxy.next_log().await["outcome"], "address-not-allowed");
    proxy.send(Req::get("/api/x").basic(&slow)).await;
    assert_eq!(proxy.next_log().await["outcome"], "forwarded");
    proxy.send(Req::get("/api/x").basic(&slow)).await;
    let line = proxy.next_log().await;
    assert_eq!(line["outcome"], "rate-limited");
    assert_eq!(line["status"], 429);
    let metrics = proxy
        .admin_send(proxy.admin("GET", "/metrics"))
        .await
        .text();
    for outcome in ["method-not-allowed", "address-not-allowed", "rate-limited"] {
        let line = format!("keygate_requests_total{{outcome=\"{outcome}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn policies_survive_a_restart() {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let upstream = RecordingUpstream::start().await;
    let start = || {
        TestProxy::builder()
            .upstream(upstream.addr)
            .clock(&clock)
            .store_dir(dir.path())
            .start()
    };
    let proxy = start().await;
    let (key, id, _) = key_with(
        &proxy,
        "alice",
        json!({"methods": ["GET"], "allow_from": ["127.0.0.1"], "rate": {"per_second": 2.5, "burst": 4}}),
    )
    .await;
    proxy.stop().await;
    let proxy = start().await;
    let shown = proxy
        .admin_send(proxy.admin("GET", &format!("/v1/keys/{id}")))
        .await
        .json();
    assert_eq!(shown["rate"], json!({"per_second": 2.5, "burst": 4}));
    assert_eq!(shown["allow_from"], json!(["127.0.0.1"]));
    assert_eq!(shown["methods"], json!(["GET"]));
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
    assert_eq!(
        proxy
            .send(Req::new("PUT", "/api/x").basic(&key))
            .await
            .status,
        403
    );
}
