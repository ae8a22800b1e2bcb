//! SPEC 6: `Host` (and HTTP/2 `:authority`) must be a plain host with an
//! optional port, and is forwarded byte for byte when it is.

use super::support::*;
use super::*;

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
