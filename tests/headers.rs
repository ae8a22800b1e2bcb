//! SPEC 6: which headers reach the upstream, which reach the client.

mod support;

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

/// Whether `resp` is keygate's JSON `400 BAD-REQUEST`.
fn is_bad_request(resp: &support::Resp) -> bool {
    resp.status == 400
        && serde_json::from_slice::<serde_json::Value>(&resp.body)
            .is_ok_and(|body| body["kind"] == "BAD-REQUEST")
}

#[tokio::test]
async fn a_host_that_is_not_a_plain_host_and_port_is_refused_before_the_upstream() {
    // The application picks its tenant by host name: anything but a
    // reg-name, IPv4 or bracketed IPv6 with an optional numeric port would
    // be read differently by different parsers (issue 14).
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let too_long = format!("{}.example", "a".repeat(250));
    let hostile = [
        "127.0.0.1:8080/../admin",
        "a b",
        "evil.com:80:1",
        "evil.com#x",
        "%65vil.com",
        "evil.com/admin?@x",
        "alice@app.example",
        "alice:pw@app.example",
        "@app.example",
        "",
        ":8080",
        "app.example:",
        "app.example:65536",
        "app.example:123456",
        "app.example:-1",
        "app.example:+80",
        "app.example:80a",
        "app.example:0x50",
        "app.example\\admin",
        "app,example",
        "app;example",
        "app'example",
        "app(example)",
        "app.example?x",
        "[::1",
        "::1",
        "[::1]x",
        "[::1]:",
        "[fe80::1%25eth0]",
        "[fe80::1%eth0]",
        "[v1.fe]",
        "[1.2.3.4]",
        "[app.example]",
        "1.2.3.256",
        "01.2.3.4",
        "127.1",
        "0x7f.0.0.1",
        "2130706433",
        too_long.as_str(),
    ];
    let mut failures = Vec::new();
    for host in hostile {
        let resp = proxy
            .send(Req::get("/api/x").host(host).basic(&key.key))
            .await;
        if !is_bad_request(&resp) {
            failures.push(format!("{host:?}: {} {}", resp.status, resp.text()));
        }
    }
    assert!(failures.is_empty(), "not refused:\n{}", failures.join("\n"));
    upstream.assert_untouched();
}

#[tokio::test]
async fn hosts_of_every_valid_form_are_forwarded_byte_for_byte() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let longest = format!("{}.example", "a".repeat(245));
    assert_eq!(longest.len(), 253);
    for host in [
        "app.example",
        "x",
        "Tenant_7.App-1.example~:8443",
        "app.example.",
        "app.example:0",
        "app.example:65535",
        "app.example:00080",
        "127.0.0.1",
        "10.0.0.1:8080",
        "[::1]",
        "[::1]:8443",
        "[2001:DB8::ffff:1.2.3.4]",
        "localhost",
        longest.as_str(),
    ] {
        let resp = proxy
            .send(Req::get("/api/x").host(host).basic(&key.key))
            .await;
        assert_eq!(resp.status, 200, "{host:?}: {}", resp.text());
        assert_eq!(upstream.next().await.header("host"), Some(host));
    }
}

#[tokio::test]
async fn an_absolute_form_target_with_userinfo_is_refused_even_when_host_agrees() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    for (target, host) in [
        ("http://alice@app.example/api/x", "alice@app.example"),
        ("http://alice@app.example/api/x", HOST),
        ("http://app.example:/api/x", "app.example:"),
    ] {
        let resp = proxy
            .send(Req::get(target).host(host).basic(&key.key))
            .await;
        assert!(
            is_bad_request(&resp) || (resp.status == 400 && resp.body.is_empty()),
            "{target} with Host {host}: {} {}",
            resp.status,
            resp.text()
        );
    }
    upstream.assert_untouched();
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

// ---------------------------------------------------------------------------
// X-Forwarded-*
// ---------------------------------------------------------------------------

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

/// Sends `bytes` and returns the first response, read up to the end of
/// its head (and any body it declares): an upgraded connection stays open,
/// so this cannot wait for the close.
async fn first_response(addr: SocketAddr, bytes: &[u8]) -> support::Resp {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |all: &[u8]| {
        support::Resp::parse(all).filter(|r| {
            let declared = r.header("content-length").and_then(|l| l.parse().ok());
            r.status == 101 || declared.is_none_or(|len: usize| r.body.len() >= len)
        })
    };
    loop {
        if let Some(resp) = complete(&all) {
            return resp;
        }
        let n = tokio::time::timeout(support::PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&chunk[..n]);
    }
}

/// GET `/ws` with `key` and the given header lines: the recording upstream
/// switches protocols for any `/ws` request that reaches it with `Upgrade`.
fn ws_request(key: &str, lines: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\n{}{lines}\r\n",
        basic_line(key)
    )
    .into_bytes()
}

#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_an_ordinary_request_and_never_tunnelled() {
    // What `curl --http2 http://...` sends. Relaying the upstream's 101
    // would let the client speak HTTP/2 to the application with no check
    // on any later stream (h2c smuggling).
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/ws").await;
    for lines in [
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        "Connection: Upgrade\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        "Connection: upgrade\r\nUpgrade: websocket, h2c\r\n",
        "Connection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
        "Connection: upgrade\r\nUpgrade: HTTP/2.0\r\n",
    ] {
        let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{lines}");
        let seen = upstream.next().await;
        for name in ["upgrade", "connection", "http2-settings"] {
            assert!(seen.all(name).is_empty(), "{lines}: {:?}", seen.headers);
        }
    }
}

#[tokio::test]
async fn http2_settings_is_never_forwarded() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA");
    assert_eq!(proxy.send(req).await.status, 200);
    assert!(upstream.next().await.all("http2-settings").is_empty());
}

#[tokio::test]
async fn a_websocket_upgrade_is_relayed_by_default_in_any_case_and_version() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/ws").await;
    for offer in ["websocket", "WebSocket", "websocket/13"] {
        let lines = format!("Connection: Upgrade\r\nUpgrade: {offer}\r\n");
        let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, &lines)).await;
        assert_eq!(resp.status, 101, "{offer}: {}", resp.text());
        assert_eq!(upstream.next().await.header("upgrade"), Some(offer));
    }
}

#[tokio::test]
async fn the_upgrades_setting_replaces_the_default_list() {
    let (mut upstream, proxy) = setup_with("upgrades = [\"Echo\"]").await;
    let key = proxy.create_key("alice", "/ws").await;
    let lines = "Connection: Upgrade\r\nUpgrade: echo/2\r\n";
    let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
    assert_eq!(resp.status, 101, "{}", resp.text());
    assert_eq!(upstream.next().await.header("upgrade"), Some("echo/2"));
    let lines = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(upstream.next().await.all("upgrade").is_empty());
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

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
