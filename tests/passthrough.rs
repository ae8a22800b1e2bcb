//! SPEC 9: `proxy.forward_credentials = true` hands a stock Haplo, which
//! authenticates every API request itself, the client's credential
//! unchanged, beside keygate's identity headers. Spoofed spellings of the
//! credential header still never pass, and without the setting nothing
//! of the credential reaches the application.

mod support;

use support::{RecordingUpstream, Req, TestProxy};

async fn setup(forward: bool) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy(&format!("forward_credentials = {forward}"))
        .start()
        .await;
    (upstream, proxy)
}

fn basic(key: &str) -> String {
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{key}"),
    );
    format!("Basic {encoded}")
}

#[tokio::test]
async fn the_credential_reaches_a_stock_haplo_unchanged_with_the_identity_headers() {
    let (mut upstream, proxy) = setup(true).await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    assert_eq!(seen.header("authorization"), Some(basic(&key.key).as_str()));
    assert_eq!(seen.header("x-haplo-user"), Some("alice"));
    assert_eq!(seen.header("x-haplo-api-key-id"), Some(key.id.as_str()));

    let resp = proxy
        .send(
            Req::get("/api/x")
                .oneis(&key.key)
                .header("X_ONEIS_Key", "spoofed"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    assert_eq!(seen.all("x-oneis-key"), [key.key.as_str()]);
    assert!(
        seen.headers.iter().all(|(name, _)| name != "x_oneis_key"),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn by_default_no_credential_reaches_the_application() {
    let (mut upstream, proxy) = setup(false).await;
    let key = proxy.create_key("alice", "/api/").await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").oneis(&key.key)).await.status,
        200
    );
    for _ in 0..2 {
        let seen = upstream.next().await;
        let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert!(
            !names.contains(&"authorization") && !names.contains(&"x-oneis-key"),
            "{names:?}"
        );
        assert!(!seen.headers.iter().any(|(_, v)| v.contains(&key.key[16..])));
    }
}

#[tokio::test]
async fn target_and_method_overrides_never_reach_the_application() {
    // A key scoped to /api/public/ must not reach /api/admin through an
    // application that believes X-Original-URL, nor turn a GET into a
    // DELETE through a method override; from a trusted proxy neither.
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("trusted_proxies = [\"127.0.0.1\"]")
        .start()
        .await;
    let mut upstream = upstream;
    let key = proxy.create_key("alice", "/api/public/").await;
    let resp = proxy
        .send(
            Req::get("/api/public/x")
                .basic(&key.key)
                .header("X-Original-URL", "/api/admin")
                .header("x_rewrite_url", "/api/admin")
                .header("X-HTTP-Method-Override", "DELETE")
                .header("X-Http-Method", "DELETE")
                .header("X-Method_Override", "DELETE"),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    for gone in ["original", "rewrite", "method"] {
        assert!(!names.iter().any(|n| n.contains(gone)), "{names:?}");
    }
}
