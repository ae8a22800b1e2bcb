//! SPEC 6: which headers reach the upstream, which reach the client.

mod support;

#[path = "headers/client_address.rs"]
mod client_address;
#[path = "headers/host.rs"]
mod host;
#[path = "headers/upgrades.rs"]
mod upgrades;

use std::net::SocketAddr;

use support::{raw, Recorded, RecordingUpstream, Req, TestProxy, HOST};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const WRONG_KEY: &str = "0123456789ABCDEF0123456789ABCDEF0123456789AB";

async fn setup() -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    (upstream, proxy)
}

async fn setup_with(line: &str) -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy(line)
        .start()
        .await;
    (upstream, proxy)
}

/// Every value of every header whose name, lower-cased with `_` read as
/// `-`, is `name`: what a framework that folds those spellings would see.
fn folded<'a>(seen: &'a Recorded, name: &str) -> Vec<&'a str> {
    seen.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A request with every spelling of the two default identity headers.
fn with_spoofed_identity(req: Req) -> Req {
    let mut req = req;
    for name in [
        "X-Haplo-User",
        "x-haplo-user",
        "X_Haplo_User",
        "x_haplo-user",
        "X-HAPLO-USER",
    ] {
        req = req.header(name, "mallory");
    }
    for name in [
        "X-Haplo-Api-Key-Id",
        "x-haplo-api-key-id",
        "X_Haplo_Api_Key_Id",
        "x_haplo-api_key-id",
        "X-HAPLO-API-KEY-ID",
    ] {
        req = req.header(name, "forgedkeyid00000");
    }
    req
}

/// GET `/api/x` with the given header lines, byte for byte.
fn raw_get(lines: &str) -> Vec<u8> {
    format!("GET /api/x HTTP/1.1\r\nHost: {HOST}\r\n{lines}\r\n").into_bytes()
}

fn basic_line(key: &str) -> String {
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{key}"),
    );
    format!("Authorization: Basic {encoded}\r\n")
}

// ---------------------------------------------------------------------------
// Host and hop-by-hop headers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_host_header_is_preserved_exactly() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy
        .send(
            Req::get("/api/x")
                .host("Tenant-7.App.Example:8443")
                .basic(&key.key),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        upstream.next().await.header("host"),
        Some("Tenant-7.App.Example:8443")
    );
}

#[tokio::test]
async fn hop_by_hop_request_headers_are_not_forwarded() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let lines = format!(
        "{}Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n\
         Trailer: X-Checksum\r\nUpgrade: foo/1\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
         Connection: close\r\n",
        basic_line(&key.key)
    );
    assert_eq!(raw(proxy.proxy_addr, &raw_get(&lines)).await.status, 200);
    let seen = upstream.next().await;
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            seen.all(name).is_empty(),
            "{name} forwarded: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn every_header_named_in_connection_is_removed() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let lines = format!(
        "{}X-Custom: 1\r\nX-Other: 2\r\nX-Kept: 3\r\nConnection: close, X-Custom\r\n\
         Connection: x-other\r\n",
        basic_line(&key.key)
    );
    assert_eq!(raw(proxy.proxy_addr, &raw_get(&lines)).await.status, 200);
    let seen = upstream.next().await;
    assert!(seen.all("x-custom").is_empty(), "{:?}", seen.headers);
    assert!(seen.all("x-other").is_empty(), "{:?}", seen.headers);
    assert_eq!(seen.header("x-kept"), Some("3"));
}

#[tokio::test]
async fn connection_cannot_strip_host_or_content_length() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/").await;
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\n{}Content-Length: 5\r\n\
         Connection: close, Host, Content-Length\r\n\r\nhello",
        basic_line(&key.key)
    );
    let resp = raw(proxy.proxy_addr, request.as_bytes()).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
    let seen = upstream.next().await;
    assert_eq!(seen.header("host"), Some(HOST));
    assert_eq!(seen.body, b"hello");
}

#[tokio::test]
async fn underscore_spellings_of_framing_and_hop_by_hop_fields_are_not_forwarded() {
    // To an application that reads `_` as `-`, `Transfer_Encoding:
    // chunked` beside keygate's own `Content-Length` frames the body
    // differently: a request smuggled past the scope check.
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/").await;
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\n{}Content-Length: 5\r\n\
         Transfer_Encoding: chunked\r\nContent_Length: 40\r\nKeep_Alive: timeout=5\r\n\
         Proxy_Connection: keep-alive\r\nProxy_Authorization: Basic Zm9vOmJhcg==\r\n\
         X_Kept: 1\r\nConnection: close\r\n\r\nhello",
        basic_line(&key.key)
    );
    let resp = raw(proxy.proxy_addr, request.as_bytes()).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
    let seen = upstream.next().await;
    let underscored: Vec<&str> = seen
        .headers
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| name.contains('_'))
        .collect();
    assert_eq!(underscored, ["x_kept"], "{:?}", seen.headers);
    assert_eq!(folded(&seen, "content-length"), ["5"]);
    assert!(folded(&seen, "transfer-encoding").is_empty());
    assert_eq!(seen.body, b"hello");
}

#[tokio::test]
async fn connection_naming_the_identity_headers_cannot_stop_keygate_setting_them() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let lines = format!(
        "{}X-Haplo-User: mallory\r\nConnection: close, X-Haplo-User, X-Haplo-Api-Key-Id\r\n",
        basic_line(&key.key)
    );
    assert_eq!(raw(proxy.proxy_addr, &raw_get(&lines)).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(folded(&seen, "x-haplo-user"), ["alice"]);
    assert_eq!(folded(&seen, "x-haplo-api-key-id"), [key.id.as_str()]);
}

// ---------------------------------------------------------------------------
// Identity headers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn spoofed_identity_headers_in_any_spelling_are_replaced_by_exactly_one_of_keygates() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy
        .send(with_spoofed_identity(Req::get("/api/x").basic(&key.key)))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    assert_eq!(
        folded(&seen, "x-haplo-user"),
        ["alice"],
        "{:?}",
        seen.headers
    );
    assert_eq!(
        folded(&seen, "x-haplo-api-key-id"),
        [key.id.as_str()],
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn spoofed_identity_headers_are_removed_from_anonymous_forwarded_requests() {
    let (mut upstream, proxy) = setup_with("anonymous = \"forward\"").await;
    let resp = proxy.send(with_spoofed_identity(Req::get("/public"))).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    assert!(
        folded(&seen, "x-haplo-user").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(
        folded(&seen, "x-haplo-api-key-id").is_empty(),
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn custom_identity_header_names_also_strip_their_aliases() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("identity_header = \"X-Remote-User\"")
        .proxy("key_id_header = \"X-Remote-Key\"")
        .start()
        .await;
    let mut upstream = upstream;
    let key = proxy.create_key("alice", "/api/").await;
    let mut req = Req::get("/api/x").basic(&key.key);
    for name in [
        "X-Remote-User",
        "x_remote_user",
        "X_REMOTE-USER",
        "X-Remote-Key",
        "x_remote_key",
    ] {
        req = req.header(name, "mallory");
    }
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(
        folded(&seen, "x-remote-user"),
        ["alice"],
        "{:?}",
        seen.headers
    );
    assert_eq!(
        folded(&seen, "x-remote-key"),
        [key.id.as_str()],
        "{:?}",
        seen.headers
    );
}

#[tokio::test]
async fn an_identity_header_configured_with_underscores_still_strips_the_dashed_spelling() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("identity_header = \"X_Remote_User\"")
        .start()
        .await;
    let mut upstream = upstream;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("X-Remote-User", "mallory");
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(
        folded(&seen, "x-remote-user"),
        ["alice"],
        "{:?}",
        seen.headers
    );
}

// ---------------------------------------------------------------------------
// Credentials
// ---------------------------------------------------------------------------

#[tokio::test]
async fn authorization_and_x_oneis_key_are_never_forwarded() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    // Basic authenticates; the legacy header is ignored but still dropped.
    let resp = proxy
        .send(Req::get("/api/x").basic(&key.key).oneis(&key.key))
        .await;
    assert_eq!(resp.status, 200);
    let seen = upstream.next().await;
    assert!(seen.all("authorization").is_empty() && seen.all("x-oneis-key").is_empty());
    assert_eq!(
        proxy.send(Req::get("/api/x").oneis(&key.key)).await.status,
        200
    );
    let seen = upstream.next().await;
    assert!(seen.all("authorization").is_empty() && seen.all("x-oneis-key").is_empty());
    assert_eq!(seen.header("x-haplo-user"), Some("alice"));
}

#[tokio::test]
async fn anonymous_forward_does_not_forward_a_bearer_authorization() {
    let (mut upstream, proxy) = setup_with("anonymous = \"forward\"").await;
    let resp = proxy
        .send(Req::get("/public").header("Authorization", "Bearer s3cr3t"))
        .await;
    assert_eq!(resp.status, 200);
    let seen = upstream.next().await;
    assert!(seen.all("authorization").is_empty(), "{:?}", seen.headers);
    assert!(folded(&seen, "x-haplo-user").is_empty());
}

/// A real HTTP/1.1 upstream that answers every request with `response`,
/// byte for byte: the recording upstream's hyper server never sends
/// hop-by-hop headers, and this test needs one that does.
async fn canned_upstream(response: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn response_hop_by_hop_headers_are_not_passed_to_the_client() {
    let upstream = canned_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close, X-Hop\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTrailer: X-Checksum\r\n\
          Upgrade: foo/1\r\nProxy-Authenticate: Basic realm=\"x\"\r\nX-Hop: secret\r\n\
          X-Upstream: yes\r\n\r\nok",
    )
    .await;
    let proxy = TestProxy::builder().upstream(upstream).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(resp.header("x-upstream"), Some("yes"));
    for name in [
        "keep-alive",
        "proxy-connection",
        "trailer",
        "upgrade",
        "proxy-authenticate",
        "x-hop",
    ] {
        assert!(
            resp.header(name).is_none(),
            "{name} passed on: {:?}",
            resp.headers
        );
    }
    // keygate's own `Connection: close` (the client asked for it) may be
    // there; the upstream's token list may not.
    for (name, value) in &resp.headers {
        if name.eq_ignore_ascii_case("connection") {
            assert!(value.eq_ignore_ascii_case("close"), "Connection: {value}");
        }
    }
}

#[tokio::test]
async fn ordinary_upstream_response_headers_reach_the_client() {
    let (_upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-upstream"), Some("yes"));
}

#[tokio::test]
async fn refusals_never_carry_www_authenticate() {
    // No upstream listens, so a forwarded request gets 502.
    let proxy = TestProxy::builder().throttle(1, 300).start().await;
    let key = proxy.create_key("alice", "/api/only/").await;
    proxy
        .send(Req::get("/api/../x").basic(&key.key))
        .await
        .assert_refused(400, "BAD-REQUEST");
    proxy
        .send(Req::get("/api/x"))
        .await
        .assert_refused(403, "UNAUTHORISED");
    let bearer = Req::get("/api/x").header("Authorization", "Bearer abc");
    proxy.send(bearer).await.assert_refused(403, "UNAUTHORISED");
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    proxy
        .send(Req::get("/api/only/x").basic(&key.key))
        .await
        .assert_refused(502, "BAD-GATEWAY");
    proxy
        .send(Req::get("/api/x").basic(WRONG_KEY))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    proxy
        .send(Req::get("/api/only/x").basic(&key.key))
        .await
        .assert_refused(403, "THROTTLE");
}

// ---------------------------------------------------------------------------
// Everything else passes unchanged
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ordinary_client_headers_arrive_unchanged_and_in_order() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::post("/api/x", b"{}")
        .basic(&key.key)
        .header("X-Request-Id", "req-42")
        .header("Cookie", "a=1; b=2")
        .header("Content-Type", "application/json; charset=utf-8")
        .header("User-Agent", "keygate-test/1.0")
        .header("X-Multi", "first")
        .header("X-Multi", "second")
        .header("X-Haplo-Users", "not-an-alias");
    assert_eq!(proxy.send(req).await.status, 200);
    let seen = upstream.next().await;
    assert_eq!(seen.header("x-request-id"), Some("req-42"));
    assert_eq!(seen.header("cookie"), Some("a=1; b=2"));
    assert_eq!(
        seen.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(seen.header("user-agent"), Some("keygate-test/1.0"));
    assert_eq!(seen.all("x-multi"), ["first", "second"]);
    assert_eq!(seen.header("x-haplo-users"), Some("not-an-alias"));
    assert_eq!(seen.body, b"{}");
}
