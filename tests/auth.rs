//! SPEC 5: reading credentials and the authentication decision table.

mod support;

use support::{RecordingUpstream, Req, TestProxy};

async fn setup() -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    (upstream, proxy)
}

#[tokio::test]
async fn a_valid_key_in_basic_auth_is_forwarded_with_identity() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy.send(Req::get("/api/thing").basic(&key.key)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.text(), "ok");
    let seen = upstream.next().await;
    assert_eq!(seen.header("x-haplo-user"), Some("alice"));
    assert_eq!(seen.header("x-haplo-api-key-id"), Some(key.id.as_str()));
}

#[tokio::test]
async fn the_basic_scheme_is_case_insensitive() {
    let (_upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{}", key.key),
    );
    for scheme in ["basic", "BASIC", "bAsIc"] {
        let resp = proxy
            .send(Req::get("/api/x").header("Authorization", &format!("{scheme} {encoded}")))
            .await;
        assert_eq!(resp.status, 200, "{scheme}");
    }
}

#[tokio::test]
async fn x_oneis_key_works_when_there_is_no_authorization_header() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("bob", "/api/").await;
    let resp = proxy
        .send(Req::get("/api/x").header("x-oneis-key", &key.key))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(upstream.next().await.header("x-haplo-user"), Some("bob"));
}

#[tokio::test]
async fn x_oneis_key_is_ignored_when_any_authorization_header_is_present() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("bob", "/api/").await;
    let resp = proxy
        .send(
            Req::get("/api/x")
                .header("Authorization", "Bearer something")
                .oneis(&key.key),
        )
        .await;
    // The Bearer header is "no API key", and the legacy header is not read.
    resp.assert_refused(403, "UNAUTHORISED");
    upstream.assert_untouched();
}

#[tokio::test]
async fn no_key_with_anonymous_reject_is_unauthorised() {
    let (upstream, proxy) = setup().await;
    proxy
        .send(Req::get("/api/x"))
        .await
        .assert_refused(403, "UNAUTHORISED");
    let body = proxy.send(Req::get("/api/x")).await.json();
    assert_eq!(body["error"]["message"], "Not authorised");
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_non_haplo_basic_credential_counts_as_no_key() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    for (user, pass) in [
        ("admin", key.key.as_str()),
        ("Haplo", key.key.as_str()),
        ("haplo", ""),
    ] {
        proxy
            .send(Req::get("/api/x").basic_as(user, pass))
            .await
            .assert_refused(403, "UNAUTHORISED");
    }
    upstream.assert_untouched();
}

#[tokio::test]
async fn no_key_with_anonymous_forward_is_forwarded_without_identity() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("anonymous = \"forward\"")
        .start()
        .await;
    let resp = proxy
        .send(
            Req::get("/public")
                .header("X-Haplo-User", "forged")
                .header("x_haplo_api_key_id", "forged"),
        )
        .await;
    assert_eq!(resp.status, 200);
    let seen = upstream.next().await;
    assert!(seen.all("x-haplo-user").is_empty(), "{seen:?}");
    assert!(seen.all("x_haplo_api_key_id").is_empty(), "{seen:?}");
    assert!(seen.all("x-haplo-api-key-id").is_empty(), "{seen:?}");
}

#[tokio::test]
async fn anonymous_forward_still_refuses_a_wrong_key() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("anonymous = \"forward\"")
        .start()
        .await;
    proxy
        .send(Req::get("/api/x").basic("0123456789ABCDEF0123456789ABCDEF0123456789AB"))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    upstream.assert_untouched();
}

#[tokio::test]
async fn unknown_wrong_and_malformed_keys_are_invalid() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let mut wrong_secret = key.key.clone();
    let last = if wrong_secret.ends_with('A') {
        "B"
    } else {
        "A"
    };
    wrong_secret.replace_range(43.., last);
    let unknown = format!("ZZZZZZZZZZZZZZZZ{}", &key.key[16..]);
    for bad in [
        wrong_secret.as_str(),
        unknown.as_str(),
        "short",
        &format!("{}x", key.key),
    ] {
        let resp = proxy.send(Req::get("/api/x").basic(bad)).await;
        resp.assert_refused(403, "INVALID-API-KEY");
        assert_eq!(resp.json()["error"]["message"], "Invalid API Key");
    }
    // An empty X-ONEIS-Key is still a (wrong) key, as in Haplo.
    proxy
        .send(Req::get("/api/x").oneis(""))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_revoked_key_is_refused_as_soon_as_delete_returns() {
    let (_upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    proxy.revoke(&key.id).await;
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
}

#[tokio::test]
async fn a_blocked_user_is_unauthorised_and_unblocking_restores_access() {
    let (_upstream, proxy) = setup().await;
    let key = proxy.create_key("carol", "/api/").await;
    let other = proxy.create_key("dave", "/api/").await;
    proxy.set_blocked("carol", true).await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    resp.assert_refused(403, "UNAUTHORISED");
    assert_eq!(
        proxy
            .send(Req::get("/api/x").basic(&other.key))
            .await
            .status,
        200
    );
    proxy.set_blocked("carol", false).await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
}

#[tokio::test]
async fn more_than_one_credential_header_is_a_bad_request() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy
        .send(Req::get("/api/x").basic(&key.key).basic(&key.key))
        .await
        .assert_refused(400, "BAD-REQUEST");
    proxy
        .send(Req::get("/api/x").oneis(&key.key).oneis("other"))
        .await
        .assert_refused(400, "BAD-REQUEST");
    upstream.assert_untouched();
}

#[tokio::test]
async fn the_password_is_split_at_the_first_colon_only() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    // "haplo:KEY:extra" presents "KEY:extra", which is not the key.
    proxy
        .send(Req::get("/api/x").basic(&format!("{}:extra", key.key)))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    upstream.assert_untouched();
}

#[tokio::test]
async fn throttling_refuses_even_a_valid_key_after_max_failures() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(3, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    for _ in 0..3 {
        proxy
            .send(Req::get("/api/x").basic("0123456789ABCDEF0123456789ABCDEF0123456789AB"))
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    resp.assert_refused(403, "THROTTLE");
    assert_eq!(
        resp.json()["error"]["message"],
        "Too many failed API authentication attempts, API usage suspended. Pause requests to wait until restriction lifted."
    );
    upstream.assert_untouched();
}

#[tokio::test]
async fn scope_mismatches_and_blocked_users_do_not_count_as_failures() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(2, 300)
        .start()
        .await;
    let narrow = proxy.create_key("alice", "/api/only/").await;
    let blocked = proxy.create_key("mallory", "/api/").await;
    let good = proxy.create_key("bob", "/api/").await;
    proxy.set_blocked("mallory", true).await;
    for _ in 0..5 {
        proxy
            .send(Req::get("/api/other").basic(&narrow.key))
            .await
            .assert_refused(403, "INVALID-API-KEY");
        proxy
            .send(Req::get("/api/x").basic(&blocked.key))
            .await
            .assert_refused(403, "UNAUTHORISED");
    }
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&good.key)).await.status,
        200
    );
}

#[tokio::test]
async fn a_forwarded_request_clears_the_failure_count() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(3, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let wrong = "0123456789ABCDEF0123456789ABCDEF0123456789AB";
    for _ in 0..2 {
        proxy
            .send(Req::get("/api/x").basic(wrong))
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    // Two more failures would have made four; after the reset it is two.
    for _ in 0..2 {
        proxy
            .send(Req::get("/api/x").basic(wrong))
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
}

#[tokio::test]
async fn the_throttle_uses_x_forwarded_for_only_from_trusted_proxies() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(2, 300)
        .proxy("trusted_proxies = [\"127.0.0.1\"]")
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let wrong = "0123456789ABCDEF0123456789ABCDEF0123456789AB";
    // Two failures from client 203.0.113.9 behind the trusted proxy.
    for _ in 0..2 {
        proxy
            .send(
                Req::get("/api/x")
                    .basic(wrong)
                    .header("X-Forwarded-For", "203.0.113.9"),
            )
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    // That client is throttled; another client behind the same proxy is not.
    proxy
        .send(
            Req::get("/api/x")
                .basic(&key.key)
                .header("X-Forwarded-For", "203.0.113.9"),
        )
        .await
        .assert_refused(403, "THROTTLE");
    let resp = proxy
        .send(
            Req::get("/api/x")
                .basic(&key.key)
                .header("X-Forwarded-For", "198.51.100.7"),
        )
        .await;
    assert_eq!(resp.status, 200);
    // The right-most untrusted hop counts: a spoofed left-most entry does not help.
    proxy
        .send(
            Req::get("/api/x")
                .basic(&key.key)
                .header("X-Forwarded-For", "198.51.100.7, 203.0.113.9"),
        )
        .await
        .assert_refused(403, "THROTTLE");
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_is_ignored_for_throttling() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(2, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let wrong = "0123456789ABCDEF0123456789ABCDEF0123456789AB";
    // Rotating X-Forwarded-For does not escape the throttle.
    for n in 0..2 {
        proxy
            .send(
                Req::get("/api/x")
                    .basic(wrong)
                    .header("X-Forwarded-For", &format!("203.0.113.{n}")),
            )
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    proxy
        .send(
            Req::get("/api/x")
                .basic(&key.key)
                .header("X-Forwarded-For", "203.0.113.99"),
        )
        .await
        .assert_refused(403, "THROTTLE");
}
