//! Bounded resources under abuse (issue 4, item 6): a flood of distinct
//! client addresses keeps the throttle table within its bound, and HTTP/2
//! reset and CONTINUATION floods neither grow memory nor stall other
//! clients.

mod support;

use std::time::Duration;

use bytes::Bytes;
use support::tls::TestCa;
use support::{RecordingUpstream, Req, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WRONG: &str = "0123456789ABCDEF0123456789ABCDEF0123456789AB";

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn a_flood_of_forwarded_addresses_keeps_the_throttle_within_its_bound() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("trusted_proxies = [\"127.0.0.1\"]")
        .section("[throttle]\nmax_failures = 3\nwindow_secs = 300\nmax_tracked_addresses = 16\n")
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    // One attacker address gets itself throttled...
    for _ in 0..3 {
        proxy
            .send(
                Req::get("/api/x")
                    .basic(WRONG)
                    .header("X-Forwarded-For", "198.51.100.1"),
            )
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    // ...then floods from 2,000 other addresses to push it out.
    for n in 0..2000u32 {
        let addr = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 0xff, n & 0xff);
        proxy
            .send(
                Req::get("/api/x")
                    .basic(WRONG)
                    .header("X-Forwarded-For", &addr),
            )
            .await
            .assert_refused(403, "INVALID-API-KEY");
    }
    let tracked = proxy.state.throttle().tracked();
    assert!(tracked <= 16, "throttle table holds {tracked} addresses");
    proxy
        .send(
            Req::get("/api/x")
                .basic(&key.key)
                .header("X-Forwarded-For", "198.51.100.1"),
        )
        .await
        .assert_refused(403, "THROTTLE");
    assert_eq!(
        proxy
            .send(
                Req::get("/api/x")
                    .basic(&key.key)
                    .header("X-Forwarded-For", "198.51.100.2")
            )
            .await
            .status,
        200
    );
}

async fn tls_proxy() -> (TestCa, tempfile::TempDir, RecordingUpstream, TestProxy) {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(dir.path(), "server");
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .tls(&cert, &key)
        .start()
        .await;
    (ca, dir, upstream, proxy)
}

/// One ordinary HTTP/2 request on a fresh connection must still succeed.
async fn still_serves(ca: &TestCa, proxy: &TestProxy, key: &str) {
    let mut h2 = ca.h2(proxy.proxy_addr).await;
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("haplo:{key}"),
    );
    let request = http::Request::builder()
        .uri("https://app.example/api/ok")
        .header("authorization", format!("Basic {basic}"))
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let (status, _, _) = support::tls::h2_send(&mut h2, request).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_http2_rapid_reset_flood_neither_grows_memory_nor_stalls_others() {
    let (ca, _dir, _upstream, proxy) = tls_proxy().await;
    let key = proxy.create_key("alice", "/api/").await;
    let stream = ca.connect(proxy.proxy_addr, &[b"h2"]).await.unwrap();
    let (mut client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let before = rss_kib();
    let mut sent = 0u32;
    for _ in 0..20_000 {
        let request = http::Request::get("https://app.example/api/x")
            .body(())
            .unwrap();
        let ready = match tokio::time::timeout(PATIENCE, client.clone().ready()).await {
            Ok(Ok(ready)) => ready,
            _ => break, // the server closed the connection: also a pass
        };
        client = ready;
        match client.send_request(request, true) {
            Ok((_response, mut stream)) => {
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            Err(_) => break,
        }
    }
    // Others are served while (or after) the flood.
    still_serves(&ca, &proxy, &key.key).await;
    let grown = rss_kib().saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "memory grew by {grown} KiB after {sent} reset streams"
    );
    driver.abort();
}

#[tokio::test]
async fn an_http2_continuation_flood_is_cut_off() {
    let (ca, _dir, upstream, proxy) = tls_proxy().await;
    let key = proxy.create_key("alice", "/api/").await;
    let mut stream = ca.connect(proxy.proxy_addr, &[b"h2"]).await.unwrap();
    let frame = |kind: u8, flags: u8, stream_id: u32, payload: &[u8]| {
        let len = payload.len() as u32;
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream_id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    };
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    stream.write_all(&frame(0x4, 0, 0, &[])).await.unwrap(); // SETTINGS
                                                             // HEADERS without END_HEADERS: `:method: GET` (indexed 2), then a
                                                             // literal header whose value never ends, spread over CONTINUATIONs.
    stream
        .write_all(&frame(0x1, 0x0, 1, &[0x82]))
        .await
        .unwrap();
    let chunk = vec![b'a'; 16_000];
    let before = rss_kib();
    let mut written = 0usize;
    let cut = tokio::time::timeout(PATIENCE, async {
        loop {
            if written >= 64 * 1024 * 1024 {
                return false;
            }
            // Each CONTINUATION: literal header `x-flood: aaaa...`.
            let mut payload = vec![0x00, 0x07];
            payload.extend_from_slice(b"x-flood");
            payload.extend_from_slice(&[0x7f, 0x81, 0xfc, 0x00]); // length 16,000 (HPACK integer)
            payload.extend_from_slice(&chunk);
            if stream
                .write_all(&frame(0x9, 0x0, 1, &payload))
                .await
                .is_err()
            {
                return true;
            }
            written += payload.len();
        }
    })
    .await
    .unwrap_or(false);
    // Either the write failed (the server closed on us) or the server sent
    // GOAWAY and will close: read until EOF to see it end.
    let mut rest = Vec::new();
    let closed = cut
        || tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .is_ok();
    assert!(closed, "keygate kept reading a {written}-byte header block");
    assert!(written < 64 * 1024 * 1024, "the flood was not cut off");
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "memory grew by {grown} KiB");
    still_serves(&ca, &proxy, &key.key).await;
    upstream.assert_untouched_except("/api/ok");
}
