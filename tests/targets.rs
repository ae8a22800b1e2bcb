//! SPEC 4: the request-target, the path scope, and the ambiguity rule.

mod support;

use std::net::SocketAddr;

use support::{RecordingUpstream, Req, Resp, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The exact body of an out-of-scope refusal (Haplo's JSON, Haplo's order).
const INVALID_API_KEY: &str =
    r#"{"success":false,"kind":"INVALID-API-KEY","error":{"message":"Invalid API Key"}}"#;

async fn setup() -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    (upstream, proxy)
}

/// Sends a GET for each target with `key` and returns the statuses.
async fn statuses(proxy: &TestProxy, key: &str, targets: &[&str]) -> Vec<u16> {
    let mut out = Vec::new();
    for target in targets {
        out.push(proxy.send(Req::get(target).basic(key)).await.status);
    }
    out
}

/// The targets the upstream received, in order.
fn targets_seen(upstream: &RecordingUpstream) -> Vec<String> {
    upstream.seen().into_iter().map(|r| r.target).collect()
}

// ---------------------------------------------------------------------------
// The scope rule
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_prefix_scope_is_a_plain_string_prefix_with_no_segment_boundary() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/test").await;
    let admitted = ["/api/test", "/api/testing", "/api/test/x?y=1"];
    assert_eq!(statuses(&proxy, &key.key, &admitted).await, [200, 200, 200]);
    assert_eq!(
        statuses(&proxy, &key.key, &["/api/tes", "/api/"]).await,
        [403, 403]
    );
    assert_eq!(targets_seen(&upstream), admitted);
}

#[tokio::test]
async fn a_prefix_scope_is_compared_case_sensitively_and_without_decoding() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    for target in ["/apix", "/api", "/API/", "/Api/x", "/%61pi/x", "/x/api/"] {
        proxy
            .send(Req::get(target).basic(&key.key))
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_prefix_scope_may_include_a_query_prefix() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/x?mode=read").await;
    let admitted = [
        "/api/x?mode=read",
        "/api/x?mode=read&y=1",
        "/api/x?mode=readwrite",
    ];
    assert_eq!(statuses(&proxy, &key.key, &admitted).await, [200, 200, 200]);
    let refused = [
        "/api/x",
        "/api/x?mode=write",
        "/api/x?y=1&mode=read",
        "/api/x/?mode=read",
    ];
    assert_eq!(
        statuses(&proxy, &key.key, &refused).await,
        [403, 403, 403, 403]
    );
    assert_eq!(targets_seen(&upstream), admitted);
}

#[tokio::test]
async fn an_exact_scope_admits_only_a_target_equal_to_it() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "=/api/test2").await;
    assert_eq!(statuses(&proxy, &key.key, &["/api/test2"]).await, [200]);
    let refused = [
        "/api/test2/",
        "/api/test2?x=1",
        "/api/test2/x",
        "/api/test22",
        "/api/test",
    ];
    assert_eq!(statuses(&proxy, &key.key, &refused).await, [403; 5]);
    assert_eq!(targets_seen(&upstream), ["/api/test2"]);
}

#[tokio::test]
async fn an_exact_scope_admits_its_target_with_an_empty_query_since_that_is_dropped() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "=/api/test2").await;
    assert_eq!(
        proxy
            .send(Req::get("/api/test2?").basic(&key.key))
            .await
            .status,
        200
    );
    assert_eq!(upstream.next().await.target, "/api/test2");
}

#[tokio::test]
async fn out_of_scope_is_invalid_api_key_and_the_upstream_is_untouched() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/only/").await;
    let resp = proxy.send(Req::get("/api/other").basic(&key.key)).await;
    resp.assert_refused(403, "INVALID-API-KEY");
    assert_eq!(resp.text(), INVALID_API_KEY);
    upstream.assert_untouched();
}

// ---------------------------------------------------------------------------
// Targets that could be read two ways: 400 before anything else
// ---------------------------------------------------------------------------

/// Ambiguous or unsupported request-targets: `(method, target bytes)`.
/// Every one must be refused with 400 even with a valid `/api/` key.
const AMBIGUOUS: &[(&str, &[u8])] = &[
    // Dot-segments, literal.
    ("GET", b"/api/../admin"),
    ("GET", b"/api/./x"),
    ("GET", b"/api/x/.."),
    ("GET", b"/api/x/."),
    ("GET", b"/api/x/../../admin"),
    // Dot-segments, percent-encoded in any case.
    ("GET", b"/api/%2e%2e/admin"),
    ("GET", b"/api/%2E%2E/admin"),
    ("GET", b"/api/%2E%2e/admin"),
    ("GET", b"/api/%2e%2E/admin"),
    ("GET", b"/api/.%2e/admin"),
    ("GET", b"/api/.%2E/admin"),
    ("GET", b"/api/%2e./admin"),
    ("GET", b"/api/%2E./admin"),
    ("GET", b"/api/%2e/x"),
    ("GET", b"/api/%2E/x"),
    ("GET", b"/api/x/%2e%2e"),
    // Dot-segments, double-encoded.
    ("GET", b"/api/%252e%252e/admin"),
    ("GET", b"/api/%252E%252E/admin"),
    ("GET", b"/api/%25%32%65%25%32%65/admin"),
    ("GET", b"/api/%25%32e%25%32e/admin"),
    ("GET", b"/api/%252%65%252%65/admin"),
    // Empty segments.
    ("GET", b"//api/x"),
    ("GET", b"/api//x"),
    ("GET", b"/api/x//"),
    // Encoded '/', '\', ';', NUL and control bytes, in any case.
    ("GET", b"/api/x%2fy"),
    ("GET", b"/api/x%2Fy"),
    ("GET", b"/api/x%5cy"),
    ("GET", b"/api/x%5Cy"),
    ("GET", b"/api/x%3by"),
    ("GET", b"/api/x%3By"),
    ("GET", b"/api/x%00y"),
    ("GET", b"/api/x%0ay"),
    ("GET", b"/api/x%0Dy"),
    ("GET", b"/api/x%09y"),
    ("GET", b"/api/x%7fy"),
    ("GET", b"/api/..%2fadmin"),
    // Double-encoded separators.
    ("GET", b"/api/x%252fy"),
    ("GET", b"/api/x%252Fy"),
    ("GET", b"/api/x%255cy"),
    ("GET", b"/api/x%25%32%66y"),
    // A raw '\' or ';' in the path.
    ("GET", b"/api/x\\y"),
    ("GET", b"/api/x;y"),
    ("GET", b"/api/x;jsessionid=1"),
    ("GET", b"/api/..;/admin"),
    // Malformed percent-encoding.
    ("GET", b"/api/%zz"),
    ("GET", b"/api/%4"),
    ("GET", b"/api/x%"),
    ("GET", b"/api/x%g1"),
    ("GET", b"/api/%u002e%u002e/admin"),
    // Forms other than origin-form and absolute-form.
    ("OPTIONS", b"*"),
    ("CONNECT", b"example.com:443"),
    ("GET", b"app.example/api/x"),
    ("GET", b"?x=1"),
    // Absolute-form with a non-http scheme, or with an ambiguous path.
    ("GET", b"ftp://app.example/api/x"),
    ("GET", b"ws://app.example/api/x"),
    ("GET", b"file:///api/x"),
    ("GET", b"http://app.example/api/../admin"),
    // Non-ASCII, control bytes and tabs, in the path or the query.
    ("GET", "/api/caf\u{e9}".as_bytes()),
    ("GET", b"/api/\xff"),
    ("GET", b"/api/x\ty"),
    ("GET", b"/api/x\x01y"),
    ("GET", b"/api/x\x7fy"),
    ("GET", "/api/x?q=caf\u{e9}".as_bytes()),
    ("GET", b"/api/x?q=\x01"),
];

/// A request written byte for byte, with `Connection: close`.
fn request(method: &str, target: &[u8], extra: &str) -> Vec<u8> {
    let mut out = format!("{method} ").into_bytes();
    out.extend_from_slice(target);
    out.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
            support::HOST
        )
        .as_bytes(),
    );
    out
}

/// Writes `bytes` and reads until the server closes (a reset counts as a
/// close: hyper may drop a connection whose request it cannot parse).
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(bytes).await;
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the server answers or closes in time");
        match read {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A 400: keygate's JSON `BAD-REQUEST`, or hyper's own bare 400, or a
/// closed connection for what hyper cannot parse at all.
fn bad_request(answer: &[u8]) -> Result<(), String> {
    if answer.is_empty() {
        return Ok(());
    }
    let resp = Resp::parse(answer)
        .ok_or_else(|| format!("unparsable answer {:?}", String::from_utf8_lossy(answer)))?;
    let bare = resp.body.is_empty() && resp.header("content-type").is_none();
    let json_kind = || {
        serde_json::from_slice::<serde_json::Value>(&resp.body)
            .ok()
            .map(|b| b["kind"].clone())
    };
    match resp.status {
        400 if resp.header("www-authenticate").is_some() => Err("WWW-Authenticate".into()),
        400 if bare => Ok(()),
        400 if resp.header("content-type") == Some("application/json; charset=utf-8")
            && json_kind() == Some("BAD-REQUEST".into()) =>
        {
            Ok(())
        }
        status => Err(format!("{status} {}", resp.text())),
    }
}

fn assert_bad_request(label: &str, answer: &[u8]) {
    if let Err(got) = bad_request(answer) {
        panic!("{label}: expected 400 BAD-REQUEST, got {got}");
    }
}

/// Sends every corpus entry with the `extra` header lines and checks each
/// gets a 400 and none reaches the upstream; reports every entry that fails.
async fn assert_corpus_refused(upstream: &RecordingUpstream, proxy: &TestProxy, extra: &str) {
    let mut failures = Vec::new();
    for (method, target) in AMBIGUOUS {
        let label = format!("{method} {}", target.escape_ascii());
        let before = upstream.seen().len();
        let answer = exchange(proxy.proxy_addr, &request(method, target, extra)).await;
        if let Err(got) = bad_request(&answer) {
            failures.push(format!("{label} -> {got}"));
        }
        if upstream.seen().len() != before {
            failures.push(format!("{label} reached the upstream"));
        }
    }
    assert!(
        failures.is_empty(),
        "not refused with 400:\n{}",
        failures.join("\n")
    );
}

fn basic_header(key: &str) -> String {
    let encoded = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{key}"),
    );
    format!("Authorization: Basic {encoded}\r\n")
}

#[test]
fn the_ambiguity_corpus_has_at_least_forty_entries() {
    assert!(AMBIGUOUS.len() >= 40, "{}", AMBIGUOUS.len());
}

#[tokio::test]
async fn every_ambiguous_target_is_a_bad_request_even_with_a_valid_key() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let auth = basic_header(&key.key);
    // The key works, so only the ambiguity rule can refuse the corpus.
    let ok = exchange(proxy.proxy_addr, &request("GET", b"/api/x", &auth)).await;
    assert_eq!(Resp::parse(&ok).expect("a response").status, 200);
    assert_corpus_refused(&upstream, &proxy, &auth).await;
}

#[tokio::test]
async fn ambiguity_is_judged_before_authentication_so_no_key_still_gets_400() {
    let (upstream, proxy) = setup().await;
    assert_corpus_refused(&upstream, &proxy, "").await;
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_wrong_key_on_an_ambiguous_target_gets_400_and_is_not_a_counted_failure() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(1, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let wrong = basic_header("0123456789ABCDEF0123456789ABCDEF0123456789AB");
    assert_corpus_refused(&upstream, &proxy, &wrong).await;
    // One counted failure would have throttled this address.
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
}

// ---------------------------------------------------------------------------
// What was checked is what is forwarded
// ---------------------------------------------------------------------------

#[tokio::test]
async fn accepted_targets_reach_the_upstream_byte_for_byte() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let cases = [
        ("/api/a%20b?x=%2F&y=1", "/api/a%20b?x=%2F&y=1"),
        ("/api/.well-known/x", "/api/.well-known/x"),
        ("/api/...", "/api/..."),
        ("/api/.x/..y/x..", "/api/.x/..y/x.."),
        (
            "/api/%7euser/%7Euser/caf%C3%A9",
            "/api/%7euser/%7Euser/caf%C3%A9",
        ),
        ("/api/x/?a=1&a=2&b", "/api/x/?a=1&a=2&b"),
        ("/api/x?", "/api/x"),
    ];
    for (sent, forwarded) in cases {
        let resp = proxy.send(Req::get(sent).basic(&key.key)).await;
        assert_eq!(resp.status, 200, "{sent}: {}", resp.text());
        assert_eq!(upstream.next().await.target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn an_absolute_form_target_with_matching_host_is_forwarded_as_its_path_and_query() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "=/api/x?q=1").await;
    let resp = proxy
        .send(Req::get("http://app.example/api/x?q=1").basic(&key.key))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = upstream.next().await;
    assert_eq!(seen.target, "/api/x?q=1");
    assert_eq!(seen.header("host"), Some("app.example"));
}

#[tokio::test]
async fn an_absolute_form_target_whose_authority_differs_from_host_is_a_bad_request() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    for target in [
        "http://other.example/api/x",
        "http://app.example:8080/api/x",
        "http://u@app.example/api/x",
    ] {
        proxy
            .send(Req::get(target).basic(&key.key))
            .await
            .assert_refused(400, "BAD-REQUEST");
    }
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_request_without_host_is_a_bad_request() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy
        .send(Req::get("/api/x").no_host().basic(&key.key))
        .await
        .assert_refused(400, "BAD-REQUEST");
    upstream.assert_untouched();
}

#[tokio::test]
async fn an_http11_absolute_form_request_without_host_is_a_bad_request() {
    // RFC 9112 3.2: a server MUST answer 400 to any HTTP/1.1 request that
    // lacks a Host header, whatever the form of its target.
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy
        .send(
            Req::get("http://app.example/api/x")
                .no_host()
                .basic(&key.key),
        )
        .await
        .assert_refused(400, "BAD-REQUEST");
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_request_with_two_host_headers_is_a_bad_request() {
    let (upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let answer = exchange(
        proxy.proxy_addr,
        &request(
            "GET",
            b"/api/x",
            &format!("Host: evil.example\r\n{}", basic_header(&key.key)),
        ),
    )
    .await;
    assert_bad_request("two Host headers", &answer);
    upstream.assert_untouched();
}
