//! SPEC 6: `X-Forwarded-*` and the other client-address headers: believed
//! only from trusted proxies, removed in every spelling from everyone else.

use super::support::*;
use super::*;

#[tokio::test]
async fn an_untrusted_clients_forwarding_headers_are_replaced_by_the_peer_address() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-For", "198.51.100.7")
        .header("X-Forwarded-Proto", "https");
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn a_trusted_proxys_x_forwarded_for_is_kept_and_extended_and_its_proto_kept() {
    let (mut upstream, proxy) = setup_with("trusted_proxies = [\"127.0.0.1\"]").await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=203.0.113.9;proto=https");
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        seen.header("forwarded"),
        Some("for=203.0.113.9;proto=https")
    );
}

#[tokio::test]
async fn a_trusted_proxy_that_sends_no_forwarding_headers_gets_them_set() {
    let (mut upstream, proxy) = setup_with("trusted_proxies = [\"127.0.0.1\"]").await;
    let key = proxy.create_key("alice", "/api/").await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    let seen = upstream.next().await;
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn a_forwarded_header_from_an_untrusted_peer_is_removed() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("Forwarded", "for=203.0.113.9;proto=https");
    assert_eq!(proxy.send(req).await.status, 200);
    assert!(upstream.next().await.all("forwarded").is_empty());
}

/// Client-address headers a framework may believe (issue 14): every one
/// must go when the peer is not a trusted proxy.
const CLIENT_ADDRESS_HEADERS: [&str; 25] = [
    "Forwarded",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Forwarded",
    "X-Forwarded-Prefix",
    "X-Forwarded-Tls-Client-Cert",
    "Forwarded-For",
    "X-Real-IP",
    "X-Client-IP",
    "True-Client-IP",
    "X-Cluster-Client-IP",
    "X-Original-Forwarded-For",
    "CF-Connecting-IP",
    "Fastly-Client-IP",
    "X-ProxyUser-IP",
    "X-Originating-IP",
    "X-Remote-IP",
    "X-Remote-Addr",
    "Client-IP",
    "X-Forwarded-Tls-Client-Cert-Info",
];

/// `name` in four spellings: as listed, lower case, upper case with `_`
/// for every `-`, and with only the first `-` read as `_`.
fn spellings(name: &str) -> [String; 4] {
    [
        name.to_owned(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase().replace('-', "_"),
        name.replacen('-', "_", 1),
    ]
}

/// Every header the upstream saw whose value is `value`.
fn carrying<'a>(seen: &'a Recorded, value: &str) -> Vec<&'a str> {
    seen.headers
        .iter()
        .filter(|(_, v)| v == value)
        .map(|(n, _)| n.as_str())
        .collect()
}

#[tokio::test]
async fn every_client_address_header_from_an_untrusted_peer_is_removed_in_any_spelling() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    // One request per spelling: hyper accepts at most 100 header lines.
    for style in 0..4 {
        let mut req = Req::get("/api/x").basic(&key.key);
        for name in CLIENT_ADDRESS_HEADERS {
            req = req.header(&spellings(name)[style], "203.0.113.66");
        }
        assert_eq!(proxy.send(req).await.status, 200);
        let seen = upstream.next().await;
        assert_eq!(
            carrying(&seen, "203.0.113.66"),
            Vec::<&str>::new(),
            "spelling {style} reached the upstream"
        );
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    }
}

#[tokio::test]
async fn a_trusted_proxys_client_address_headers_are_kept_but_not_their_underscore_spellings() {
    let (mut upstream, proxy) = setup_with("trusted_proxies = [\"127.0.0.1\"]").await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("X-Real-IP", "203.0.113.9")
        .header("X-Forwarded-Host", "public.example")
        .header("X-Forwarded-For", "203.0.113.9")
        // No real proxy writes these; a framework that folds `_` into `-`
        // would read them as the headers above (oauth2-proxy
        // CVE-2025-64484).
        .header("X_Forwarded_For", "198.51.100.66")
        .header("X-Forwarded_Proto", "198.51.100.66")
        .header("X_REAL_IP", "198.51.100.66");
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(carrying(&seen, "198.51.100.66"), Vec::<&str>::new());
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.9"));
    assert_eq!(seen.header("x-forwarded-host"), Some("public.example"));
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
}

#[tokio::test]
async fn an_underscore_x_forwarded_for_from_a_trusted_proxy_does_not_choose_the_client_address() {
    // Only the dashed header is read for the client address; the
    // underscore spelling is not a second source of truth.
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("trusted_proxies = [\"127.0.0.1\"]")
        .throttle(1, 300)
        .start()
        .await;
    proxy
        .send(
            Req::get("/api/x")
                .basic(WRONG_KEY)
                .header("X_Forwarded_For", "198.51.100.7"),
        )
        .await
        .assert_refused(403, "INVALID-API-KEY");
    // The failure was counted against 127.0.0.1, not 198.51.100.7.
    proxy
        .send(Req::get("/api/x").basic(WRONG_KEY))
        .await
        .assert_refused(403, "THROTTLE");
}

// ---------------------------------------------------------------------------
// Upgrades
// ---------------------------------------------------------------------------
