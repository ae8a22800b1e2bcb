//! SPEC 7, issue 14: admin request bodies from a broken or hostile client.
//!
//! A declared size over the limit is refused before any of the body is
//! read, and a body that stops arriving is given up at a deadline: the
//! admin API has 64 connection slots, and without the deadline 64 stalled
//! uploads held every one of them (and `/healthz` with them) for good.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::PATIENCE;
use super::*;

/// The admin API's body deadline (`src/admin/body.rs`).
const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// A request head declaring a `length`-byte JSON body, followed by only
/// `sent` of it.
fn partial(proxy: &TestProxy, method: &str, path: &str, length: usize, sent: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{sent}",
        proxy.admin_addr
    )
    .into_bytes()
}

/// Writes `bytes` and, leaving the connection open, reads until the server
/// closes it; panics if that takes longer than `patience`.
async fn answer_within(addr: SocketAddr, bytes: &[u8], patience: Duration) -> Resp {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write request");
    let mut all = Vec::new();
    tokio::time::timeout(patience, stream.read_to_end(&mut all))
        .await
        .unwrap_or_else(|_| panic!("no answer (and no close) within {patience:?}"))
        .expect("read response");
    Resp::parse(&all)
        .unwrap_or_else(|| panic!("unparsable response: {:?}", String::from_utf8_lossy(&all)))
}

#[tokio::test]
async fn a_declared_body_over_64_kib_is_413_before_any_of_it_is_read() {
    let proxy = admin().await;
    let rotate = format!("/v1/keys/{NO_SUCH_ID}/rotate");
    for (method, path) in [
        ("POST", "/v1/keys"),
        ("PUT", "/v1/users/carol"),
        ("POST", rotate.as_str()),
    ] {
        // 100 MiB declared, ten bytes sent: the answer cannot wait for the
        // rest.
        let head = partial(&proxy, method, path, 100 * 1024 * 1024, r#"{"user":"a"#);
        let resp = answer_within(proxy.admin_addr, &head, PATIENCE).await;
        assert_eq!(resp.status, 413, "{method} {path}: {}", resp.text());
        let error = resp.json()["error"].as_str().map(str::to_owned);
        assert!(
            error.as_deref().is_some_and(|e| e.contains("65536")),
            "{method} {path}: the error names the limit: {}",
            resp.text()
        );
    }
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_408_at_the_deadline_and_the_connection_closes() {
    let proxy = admin().await;
    let started = Instant::now();
    let head = partial(&proxy, "POST", "/v1/keys", 100, r#"{"user":"a"#);
    // Waits past the deadline only by the usual patience: a server that
    // keeps waiting for the other 90 bytes fails here.
    let resp = answer_within(proxy.admin_addr, &head, BODY_DEADLINE + PATIENCE).await;
    let waited = started.elapsed();
    assert_eq!(resp.status, 408, "{}", resp.text());
    assert!(resp.json()["error"].is_string(), "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    // Not before the deadline either: a slow client that sends its whole
    // body within it is served.
    assert!(waited >= BODY_DEADLINE, "gave up after {waited:?}");
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}
