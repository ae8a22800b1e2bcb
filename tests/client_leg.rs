//! Issue 13, item 2: keygate's own HTTP/1.1 server connection, from a raw
//! client socket.
//!
//! Each framing rule in SECURITY.md ("HTTP framing") has a case here, as
//! do pipelining, `Expect: 100-continue`, HTTP/1.0 keep-alive, a body the
//! service never read, the header timeout and a chunked body relayed
//! intact. Every exchange is bounded by `PATIENCE`: a connection left open
//! where it must close fails the test rather than hanging it.

mod support;

use std::net::SocketAddr;

use base64::Engine as _;
use support::{RecordingUpstream, Resp, TestProxy, HOST, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// keygate in front of a recording upstream, and alice's key for `/`.
async fn setup(extra: &[&str]) -> (RecordingUpstream, TestProxy, String) {
    let upstream = RecordingUpstream::start().await;
    let mut builder = TestProxy::builder().upstream(upstream.addr);
    for line in extra {
        builder = builder.proxy(line);
    }
    let proxy = builder.start().await;
    let key = proxy.create_key("alice", "/").await.key;
    (upstream, proxy, key)
}

/// `Host` and alice's `Authorization` lines.
fn auth(key: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("haplo:{key}"));
    format!("Host: {HOST}\r\nAuthorization: Basic {b64}\r\n")
}

/// Writes `bytes`, then reads until keygate closes the connection.
/// Panics if it stays open.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_to_close(&mut stream).await
}

async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    let read = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("keygate closes the connection");
    all
}

/// Reads one response (head and body) from a connection that stays open.
async fn read_response(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Resp {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(resp) = complete(pending) {
            *pending = resp.rest.clone();
            return resp;
        }
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed before a whole response: {:?}",
            String::from_utf8_lossy(pending)
        );
        pending.extend_from_slice(&chunk[..n]);
    }
}

/// A whole response at the start of `bytes` (with a `Content-Length`).
fn complete(bytes: &[u8]) -> Option<Resp> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let resp = Resp::parse(&bytes[..end])?;
    let length: usize = resp.header("content-length")?.parse().ok()?;
    if bytes.len() < end + length {
        return None;
    }
    Resp::parse(bytes)
}

/// Every response in `bytes`, in order.
fn responses(bytes: &[u8]) -> Vec<Resp> {
    let mut rest = bytes.to_vec();
    let mut all = Vec::new();
    while !rest.is_empty() {
        let resp = Resp::parse(&rest)
            .unwrap_or_else(|| panic!("unparsable: {:?}", String::from_utf8_lossy(&rest)));
        rest = resp.rest.clone();
        all.push(resp);
    }
    all
}

/// keygate's own bare refusal: the status, no body, `Connection: close`.
fn assert_bare(resp: &Resp, status: u16, case: &str) {
    assert_eq!(resp.status, status, "{case}: {}", resp.text());
    assert!(resp.body.is_empty(), "{case}: a body: {}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"), "{case}");
}

#[tokio::test]
async fn each_head_framing_rule_is_a_bare_400_that_closes_and_reaches_nobody() {
    let (upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    // After each bad head, a request that must never be read.
    let next = format!("GET /next HTTP/1.1\r\n{a}\r\n");
    let cases: Vec<(&str, String)> = vec![
        ("TE gzip", format!("POST /x HTTP/1.1\r\n{a}Transfer-Encoding: gzip\r\n\r\n")),
        ("TE gzip, chunked", format!("POST /x HTTP/1.1\r\n{a}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")),
        ("TE chunked, chunked", format!("POST /x HTTP/1.1\r\n{a}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n")),
        ("TE chunked then identity", format!("POST /x HTTP/1.1\r\n{a}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n")),
        ("TE empty", format!("POST /x HTTP/1.1\r\n{a}Transfer-Encoding: \r\n\r\n")),
        ("TE on HTTP/1.0", format!("POST /x HTTP/1.0\r\n{a}Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n0\r\n\r\n")),
        ("two different Content-Lengths", format!("POST /x HTTP/1.1\r\n{a}Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx")),
        ("Content-Length list", format!("POST /x HTTP/1.1\r\n{a}Content-Length: 2, 2\r\n\r\nxx")),
        ("Content-Length +2", format!("POST /x HTTP/1.1\r\n{a}Content-Length: +2\r\n\r\nxx")),
        ("Content-Length -2", format!("POST /x HTTP/1.1\r\n{a}Content-Length: -2\r\n\r\nxx")),
        ("Content-Length x", format!("POST /x HTTP/1.1\r\n{a}Content-Length: x\r\n\r\nxx")),
        ("Content-Length 20 digits", format!("POST /x HTTP/1.1\r\n{a}Content-Length: 00000000000000000002\r\n\r\nxx")),
        ("obs-fold", format!("GET /x HTTP/1.1\r\n{a}X-A: 1\r\n 2\r\n\r\n")),
        ("bare CR", format!("GET /x HTTP/1.1\r\n{a}X-A: 1\r2\r\n\r\n")),
        ("NUL in a value", format!("GET /x HTTP/1.1\r\n{a}X-A: 1\x002\r\n\r\n")),
        ("control byte in a value", format!("GET /x HTTP/1.1\r\n{a}X-A: 1\x1b2\r\n\r\n")),
        ("control byte in a name", format!("GET /x HTTP/1.1\r\n{a}X-\x01A: 1\r\n\r\n")),
        ("space before the colon", format!("GET /x HTTP/1.1\r\n{a}X-A : 1\r\n\r\n")),
    ];
    for (case, head) in cases {
        let answer = exchange(proxy.proxy_addr, format!("{head}{next}").as_bytes()).await;
        let all = responses(&answer);
        assert_eq!(
            all.len(),
            1,
            "{case}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert_bare(&all[0], 400, case);
    }
    upstream.assert_untouched();
}

#[tokio::test]
async fn broken_chunked_framing_fails_the_body_with_400_and_closes() {
    let (upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let long_extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
    let bodies: [(&str, &str); 5] = [
        ("17 hex digits", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
        ("bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
        ("bare CR after the size", "5\rhello\r\n0\r\n\r\n"),
        ("data not ended by CRLF", "5\r\nhelloXX0\r\n\r\n"),
        ("a size line over 4 KiB", &long_extension),
    ];
    for (case, body) in bodies {
        let bytes = format!(
            "POST /echo HTTP/1.1\r\n{a}Transfer-Encoding: chunked\r\n\r\n{body}GET /next HTTP/1.1\r\n{a}\r\n"
        );
        let answer = exchange(proxy.proxy_addr, bytes.as_bytes()).await;
        let all = responses(&answer);
        assert_eq!(
            all.len(),
            1,
            "{case}: {:?}",
            String::from_utf8_lossy(&answer)
        );
        assert_eq!(all[0].status, 400, "{case}: {}", all[0].text());
    }
    for seen in upstream.seen() {
        assert_ne!(
            seen.target, "/next",
            "a request after a broken body was read"
        );
        assert_ne!(seen.body, b"hello", "a broken body was forwarded whole");
    }
}

#[tokio::test]
async fn both_framings_or_chunked_on_two_lines_are_refused_and_nothing_is_forwarded() {
    let (upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    for (what, bytes) in [
        (
            "CL then TE",
            format!(
                "POST /x HTTP/1.1\r\n{a}Content-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n{a}\r\n"
            ),
        ),
        (
            "TE then CL",
            format!(
                "POST /x HTTP/1.1\r\n{a}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
        (
            "chunked on two lines",
            format!(
                "POST /x HTTP/1.1\r\n{a}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n\
                 5\r\nhello\r\n0\r\n\r\n"
            ),
        ),
    ] {
        let all = responses(&exchange(proxy.proxy_addr, bytes.as_bytes()).await);
        assert_eq!(all.len(), 1, "{what}: one answer, then the connection closes");
        assert_bare(&all[0], 400, what);
    }
    upstream.assert_untouched();
}

#[tokio::test]
async fn an_oversized_head_is_431_and_an_oversized_target_414() {
    let (upstream, proxy, key) = setup(&["max_header_bytes = 8192"]).await;
    let a = auth(&key);
    let head = format!("GET /x HTTP/1.1\r\n{a}X-Pad: {}\r\n\r\n", "p".repeat(9000));
    let all = responses(&exchange(proxy.proxy_addr, head.as_bytes()).await);
    assert_bare(&all[0], 431, "a large head");
    let target = format!("GET /{} HTTP/1.1\r\n{a}\r\n", "a".repeat(9000));
    let all = responses(&exchange(proxy.proxy_addr, target.as_bytes()).await);
    assert_bare(&all[0], 414, "a long target");
    upstream.assert_untouched();
}

#[tokio::test]
async fn two_pipelined_requests_in_one_write_are_both_answered_in_order() {
    let (mut upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let bytes = format!(
        "POST /status/201 HTTP/1.1\r\n{a}Content-Length: 3\r\n\r\none\
         GET /status/202 HTTP/1.1\r\n{a}Connection: close\r\n\r\n"
    );
    let all = responses(&exchange(proxy.proxy_addr, bytes.as_bytes()).await);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [201, 202]);
    let first = upstream.next().await;
    assert_eq!(
        (first.target.as_str(), first.body.as_slice()),
        ("/status/201", &b"one"[..])
    );
    assert_eq!(upstream.next().await.target, "/status/202");
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_read_and_not_before_a_refusal() {
    let (mut upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let head =
        format!("POST /echo HTTP/1.1\r\n{a}Expect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; interim.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut got))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(got, interim);
    stream.write_all(b"hello").await.unwrap();
    let mut pending = Vec::new();
    let resp = read_response(&mut stream, &mut pending).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello"));
    assert_eq!(upstream.next().await.body, b"hello");

    // Refused before the body is wanted: the final answer only.
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    );
    let answer = exchange(proxy.proxy_addr, head.as_bytes()).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 403 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    upstream.assert_untouched_except("/echo");
}

#[tokio::test]
async fn http10_keeps_the_connection_only_when_asked_and_is_answered_in_kind() {
    let (_upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let first = format!("GET /a HTTP/1.0\r\n{a}Connection: Keep-Alive\r\n\r\n");
    stream.write_all(first.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let resp = read_response(&mut stream, &mut pending).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    // Then one without keep-alive: answered, then closed.
    let second = format!("GET /b HTTP/1.0\r\n{a}\r\n");
    stream.write_all(second.as_bytes()).await.unwrap();
    let mut rest = pending;
    rest.extend(read_to_close(&mut stream).await);
    assert!(
        rest.starts_with(b"HTTP/1.0 200 "),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test]
async fn a_body_the_service_never_read_closes_the_connection_and_is_never_a_request() {
    let (upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    // No key: refused without reading the body, whose first bytes look
    // like a keyed request. A body that has not all arrived cannot be
    // drained: the connection closes after the answer.
    let bytes = format!(
        "POST /x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100000\r\n\r\nGET /inside HTTP/1.1\r\n{a}\r\n"
    );
    let all = responses(&exchange(proxy.proxy_addr, bytes.as_bytes()).await);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, 403);
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_small_unread_body_already_received_is_skipped_and_the_connection_kept() {
    let (mut upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let bytes = format!(
        "POST /x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\n\r\nhello\
         GET /after HTTP/1.1\r\n{a}Connection: close\r\n\r\n"
    );
    let all = responses(&exchange(proxy.proxy_addr, bytes.as_bytes()).await);
    let statuses: Vec<u16> = all.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [403, 200]);
    assert_eq!(upstream.next().await.target, "/after");
}

#[tokio::test]
async fn a_silent_or_slow_connection_is_closed_at_the_header_timeout() {
    let (upstream, proxy, key) = setup(&["header_timeout_secs = 1"]).await;
    let started = tokio::time::Instant::now();
    let silent = exchange(proxy.proxy_addr, b"").await;
    assert!(silent.is_empty(), "{:?}", String::from_utf8_lossy(&silent));
    // Half a head, then nothing: the same deadline.
    let half = format!("GET /x HTTP/1.1\r\n{}", auth(&key));
    let answer = exchange(proxy.proxy_addr, half.as_bytes()).await;
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // Idle after a response counts too.
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    stream
        .write_all(format!("GET /x HTTP/1.1\r\n{}\r\n", auth(&key)).as_bytes())
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_response(&mut stream, &mut pending).await.status, 200);
    assert!(read_to_close(&mut stream).await.is_empty());
    upstream.assert_untouched_except("/x");
}

#[tokio::test]
async fn a_chunked_request_body_is_forwarded_intact() {
    let (mut upstream, proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let big = "z".repeat(40_000);
    let bytes = format!(
        "POST /echo HTTP/1.1\r\n{a}Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n\
         5;name=value\r\nhello\r\n1\r\n \r\n{:x}\r\n{big}\r\n0\r\nX-Trailer: dropped\r\n\r\n",
        big.len()
    );
    let all = responses(&exchange(proxy.proxy_addr, bytes.as_bytes()).await);
    let expected = format!("hello {big}");
    assert_eq!(all[0].status, 200);
    assert_eq!(all[0].body, expected.as_bytes());
    let seen = upstream.next().await;
    assert_eq!(seen.body, expected.as_bytes());
    assert!(seen.header("x-trailer").is_none());
}

#[tokio::test]
async fn on_shutdown_an_idle_connection_closes_at_once_and_a_busy_one_finishes_with_close() {
    let (mut upstream, mut proxy, key) = setup(&[]).await;
    let a = auth(&key);
    let mut idle = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    idle.write_all(format!("GET /x HTTP/1.1\r\n{a}\r\n").as_bytes())
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_response(&mut idle, &mut pending).await.status, 200);
    assert_eq!(upstream.next().await.target, "/x");
    let mut busy = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    busy.write_all(format!("GET /gate HTTP/1.1\r\n{a}\r\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(upstream.next().await.target, "/gate");

    let stopped = proxy.begin_stop();
    // The gate is still shut, so the idle connection closing now is not
    // the drain timing out.
    assert!(read_to_close(&mut idle).await.is_empty());
    upstream.open_gate();
    let answer = read_to_close(&mut busy).await;
    let all = responses(&answer);
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].status, all[0].text().as_str()), (200, "released"));
    assert_eq!(all[0].header("connection"), Some("close"));
    stopped.await;
}
