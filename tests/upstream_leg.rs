//! Issue 13, item 1: keygate's own HTTP/1.1 client for the upstream leg,
//! against a raw-socket upstream that sends framing no library would.
//!
//! Each test checks two things: what the client receives, and what became
//! of the upstream connection. A connection may carry another request only
//! if its response was read to the end by its own framing, the request was
//! sent whole and nothing else arrived; otherwise keygate must close it.
//! The upstream numbers its connections, so "reused" is "the next request
//! came on the same number".

mod support;

use std::net::SocketAddr;

use support::scripted::{Answer, ScriptedUpstream};
use support::{Req, Resp, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// keygate with one worker (so one pool) and a key for every path.
async fn proxy_for(upstream: SocketAddr) -> (TestProxy, String) {
    let proxy = TestProxy::builder()
        .upstream(upstream)
        .proxy("worker_threads = 1")
        .proxy("body_timeout_secs = 2")
        .start()
        .await;
    let key = proxy.create_key("alice", "/").await.key;
    (proxy, key)
}

/// A GET through keygate; the response as the client got it.
async fn get(proxy: &TestProxy, key: &str, path: &str) -> Resp {
    tokio::time::timeout(PATIENCE, proxy.send(Req::get(path).basic(key)))
        .await
        .unwrap_or_else(|_| panic!("keygate answers GET {path} in time"))
}

/// Sends `path` and `/ok` after it; returns the connections they came on.
async fn then_ok(
    upstream: &mut ScriptedUpstream,
    proxy: &TestProxy,
    key: &str,
    path: &str,
) -> (usize, usize) {
    let (first, _) = upstream.request(path).await;
    let resp = get(proxy, key, "/ok").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    let (second, _) = upstream.request("/ok").await;
    (first, second)
}

/// Reads everything keygate sends for `path` until it closes.
async fn get_raw(proxy: &TestProxy, key: &str, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.expect("connect");
    stream
        .write_all(&Req::get(path).basic(key).to_bytes())
        .await
        .expect("write");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
        .await
        .expect("keygate closes the connection in time");
    all
}

#[tokio::test]
async fn chunked_with_extensions_and_trailers_is_relayed_and_the_connection_reused() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/chunked",
        Answer::keep(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n6 ; q=\"a b\"\r\n world\r\n0;last\r\n\
              X-Checksum: 1234\r\nContent-Length: 99\r\n\r\n",
        ),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let resp = get(&proxy, &key, "/chunked").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
    assert!(
        resp.header("content-length").is_none(),
        "{:?}",
        resp.headers
    );
    let (first, second) = then_ok(&mut upstream, &proxy, &key, "/chunked").await;
    assert_eq!((first, second), (0, 0), "the connection was reused");
}

#[tokio::test]
async fn bytes_beyond_the_content_length_are_not_relayed_and_the_connection_is_closed() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/extra",
        Answer::keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!"),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let resp = get(&proxy, &key, "/extra").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert!(
        resp.rest.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&resp.rest)
    );
    // The stray bytes would have answered the next request: the next
    // request gets a new connection and its own answer.
    let (first, second) = then_ok(&mut upstream, &proxy, &key, "/extra").await;
    assert_eq!(first, 0);
    assert_ne!(second, 0, "a connection with stray bytes was reused");
    upstream.closed(0).await;
}

#[tokio::test]
async fn fewer_bytes_than_the_content_length_cut_the_client_response_short() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/short",
        Answer::close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let all = get_raw(&proxy, &key, "/short").await;
    let resp = Resp::parse(&all).expect("a response head");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("10"));
    assert_eq!(resp.body, b"abc", "the body stops where the upstream's did");
    let (_, second) = then_ok(&mut upstream, &proxy, &key, "/short").await;
    assert_eq!(second, 1);
}

#[tokio::test]
async fn a_close_delimited_body_is_relayed_whole_and_the_connection_not_reused() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/until-close",
        Answer::close(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the close",
        ),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let resp = get(&proxy, &key, "/until-close").await;
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "all of it, until the close")
    );
    // Re-framed for the client (chunked), since the client's connection
    // is not the upstream's.
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    let (_, second) = then_ok(&mut upstream, &proxy, &key, "/until-close").await;
    assert_eq!(second, 1);
}

#[tokio::test]
async fn a_head_response_has_no_body_whatever_its_length_and_the_connection_is_reused() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/head",
        Answer::keep(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let resp = tokio::time::timeout(PATIENCE, proxy.send(Req::new("HEAD", "/head").basic(&key)))
        .await
        .expect("keygate answers HEAD in time");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("500"));
    assert!(resp.body.is_empty());
    let (first, second) = then_ok(&mut upstream, &proxy, &key, "/head").await;
    assert_eq!((first, second), (0, 0));
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/hints",
        Answer::keep(
            b"HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        ),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let resp = get(&proxy, &key, "/hints").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "final"));
    assert!(
        resp.header("link").is_none(),
        "a 1xx header leaked into the final response"
    );
    let (first, second) = then_ok(&mut upstream, &proxy, &key, "/hints").await;
    assert_eq!((first, second), (0, 0));
}

#[tokio::test]
async fn untrustworthy_framing_or_garbage_is_a_bad_gateway_and_the_connection_closed() {
    let cases: [(&str, &[u8]); 9] = [
        (
            "/te-and-cl",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        ),
        (
            "/cl-and-te",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
        ),
        (
            "/two-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        ),
        (
            "/listed-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!",
        ),
        (
            "/words",
            b"HTTP/1.1 200 OK\r\nContent-Length: five\r\n\r\nhello",
        ),
        (
            "/gzip",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "/folded",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n  folded\r\nContent-Length: 2\r\n\r\nok",
        ),
        ("/garbage", b"SSH-2.0-OpenSSH_9.9\r\n\r\n"),
        (
            "/nul",
            b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
        ),
    ];
    let script: Vec<(&str, Answer)> = cases
        .iter()
        .map(|(path, bytes)| (*path, Answer::keep(bytes)))
        .collect();
    let mut upstream = ScriptedUpstream::start(&script).await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    for (conn, (path, _)) in cases.iter().enumerate() {
        let resp = get(&proxy, &key, path).await;
        resp.assert_refused(502, "BAD-GATEWAY");
        assert_eq!(upstream.request(path).await.0, conn, "{path}");
        // The upstream kept the connection open: keygate closed it.
        upstream.closed(conn).await;
    }
}

#[tokio::test]
async fn broken_chunking_mid_body_cuts_the_response_and_closes_the_connection() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/bad-chunk",
        Answer::keep(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n"),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let all = get_raw(&proxy, &key, "/bad-chunk").await;
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "a broken body looked complete: {text}"
    );
    assert_eq!(upstream.request("/bad-chunk").await.0, 0);
    upstream.closed(0).await;
}

#[tokio::test]
async fn an_answer_before_the_request_body_was_read_is_relayed_and_the_connection_dropped() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/early",
        Answer::stall(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!"),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    // More than every socket buffer between here and the upstream holds,
    // so keygate cannot have sent it all when the answer comes.
    let body = vec![b'x'; 32 << 20];
    let request = Req::post("/early", &body).basic(&key).to_bytes();
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.expect("connect");
    let (mut read, mut write) = stream.split();
    let writing = async {
        // keygate may stop reading once it has answered.
        let _ = write.write_all(&request).await;
    };
    let reading = async {
        let mut all = Vec::new();
        let _ = read.read_to_end(&mut all).await;
        all
    };
    let (_, all) = tokio::time::timeout(PATIENCE, async { tokio::join!(writing, reading) })
        .await
        .expect("keygate answers in time");
    let resp = Resp::parse(&all).expect("a response");
    assert_eq!((resp.status, resp.text().as_str()), (413, "too big!"));
    assert_eq!(upstream.request("/early").await.0, 0);
    // Connection 0 is still mid-request: the next request needs another.
    let resp = get(&proxy, &key, "/ok").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(upstream.request("/ok").await.0, 1);
}

#[tokio::test]
async fn request_bodies_are_framed_as_the_client_framed_them() {
    let mut upstream = ScriptedUpstream::start(&[]).await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let auth = Req::get("/").basic(&key).to_bytes();
    let auth = String::from_utf8_lossy(&auth);
    let auth_line = auth
        .split("\r\n")
        .find(|l| l.starts_with("Authorization"))
        .expect("an Authorization line");

    // Sized: the same Content-Length, the body as is.
    let resp = proxy.send(Req::post("/sized", b"hello").basic(&key)).await;
    assert_eq!(resp.status, 200);
    let (_, raw) = upstream.request("/sized").await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.contains("content-length: 5\r\n"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nhello"), "{raw}");

    // Chunked: re-chunked, ending with the last chunk; trailers dropped.
    let bytes = format!(
        "POST /chunked-up HTTP/1.1\r\nHost: app.example\r\n{auth_line}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Haplo-User: mallory\r\n\r\n"
    );
    let resp = support::raw(proxy.proxy_addr, bytes.as_bytes()).await;
    assert_eq!(resp.status, 200);
    let (_, raw) = upstream.request("/chunked-up").await;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    assert!(raw.contains("transfer-encoding: chunked\r\n"), "{raw}");
    assert!(!raw.contains("content-length"), "{raw}");
    assert!(
        !raw.contains("mallory"),
        "a request trailer reached the upstream: {raw}"
    );
    let body = &raw[raw.find("\r\n\r\n").expect("head end") + 4..];
    let dechunked: String = body
        .split("\r\n")
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|pair| pair.len() == 2 && !pair[0].is_empty() && pair[0] != "0")
        .map(|pair| pair[1])
        .collect();
    assert_eq!(dechunked, "abcde", "{raw}");
    assert!(body.ends_with("0\r\n\r\n"), "{raw}");

    // Each used the same kept-alive connection.
    let resp = get(&proxy, &key, "/ok").await;
    assert_eq!(resp.status, 200);
    assert_eq!(upstream.request("/ok").await.0, 0);
}

#[tokio::test]
async fn bytes_the_upstream_sends_right_behind_its_101_reach_the_client_first() {
    let mut upstream = ScriptedUpstream::start(&[(
        "/ws",
        Answer::stall(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
              first frame",
        ),
    )])
    .await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let auth = Req::get("/").basic(&key).to_bytes();
    let auth = String::from_utf8_lossy(&auth);
    let auth_line = auth
        .split("\r\n")
        .find(|l| l.starts_with("Authorization"))
        .expect("an Authorization line");
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: app.example\r\n{auth_line}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    );
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(PATIENCE, async {
        while !all.ends_with(b"first frame") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&all);
    assert!(read.is_ok(), "keygate relayed {text:?} and stopped");
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    assert!(text.ends_with("\r\n\r\nfirst frame"), "{text}");
    assert_eq!(upstream.request("/ws").await.0, 0);
}
