//! SPEC 6: forwarding. Streaming bodies, upstream failures, timeouts,
//! keep-alive and graceful drain.

mod support;

use support::{raw, RecordingUpstream, Req, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn request_and_response_bodies_stream_through_unchanged() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/echo").await;
    let body: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let resp = proxy.send(Req::post("/echo", &body).basic(&key.key)).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body, "echoed body differs");
    assert_eq!(upstream.next().await.body.len(), body.len());
}

#[tokio::test]
async fn a_chunked_upload_is_forwarded() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/echo").await;
    let auth = Req::get("/").basic(&key.key).to_bytes();
    let auth_line = String::from_utf8_lossy(&auth)
        .lines()
        .find(|l| l.starts_with("Authorization"))
        .unwrap()
        .to_owned();
    let request = format!(
        "POST /echo HTTP/1.1\r\nHost: app.example\r\n{auth_line}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let resp = raw(proxy.proxy_addr, request.as_bytes()).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello world");
    let seen = upstream.next().await;
    assert_eq!(seen.body, b"hello world");
    assert!(seen.header("content-length").is_none() || seen.header("content-length") == Some("11"));
}

#[tokio::test]
async fn upstream_statuses_pass_through_untouched() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/status/").await;
    for code in [201u16, 404, 500, 503] {
        let resp = proxy
            .send(Req::get(&format!("/status/{code}")).basic(&key.key))
            .await;
        assert_eq!(resp.status, code);
        assert_eq!(resp.text(), "status");
        assert_eq!(resp.header("x-upstream"), Some("yes"));
    }
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_bad_gateway() {
    // A port that was just free: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = TestProxy::builder().upstream(free).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    resp.assert_refused(502, "BAD-GATEWAY");
}

#[tokio::test]
async fn an_upstream_that_never_answers_is_a_gateway_timeout() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("upstream_timeout_secs = 1")
        .start()
        .await;
    let key = proxy.create_key("alice", "/hang").await;
    let resp = proxy.send(Req::get("/hang").basic(&key.key)).await;
    resp.assert_refused(504, "GATEWAY-TIMEOUT");
    upstream.next().await;
    // And keygate keeps serving others.
    let other = proxy.create_key("bob", "/").await;
    assert_eq!(
        proxy.send(Req::get("/fine").basic(&other.key)).await.status,
        200
    );
}

#[tokio::test]
async fn an_upstream_that_resets_mid_request_is_a_bad_gateway() {
    // An upstream that accepts and closes at once, without a response.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            drop(stream);
        }
    });
    let proxy = TestProxy::builder().upstream(addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(502, "BAD-GATEWAY");
}

#[tokio::test]
async fn a_half_sent_request_head_is_closed_by_the_header_timeout() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("header_timeout_secs = 1")
        .start()
        .await;
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    stream
        .write_all(b"GET /api/x HTTP/1.1\r\nHost: app.example\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    // The server must close the connection by itself (well within PATIENCE).
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("keygate closes a connection whose head never completes")
        .ok();
    upstream.assert_untouched();
}

#[tokio::test]
async fn a_stalled_upload_is_cut_by_the_body_timeout() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("body_timeout_secs = 1")
        .start()
        .await;
    let key = proxy.create_key("alice", "/echo").await;
    let mut head = Req::post("/echo", b"0123456789").basic(&key.key).to_bytes();
    head.truncate(head.len() - 5); // promise 10 bytes, send 5
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    stream.write_all(&head).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("keygate gives up on a stalled body")
        .ok();
    // Whatever was answered, the upstream never received a complete body.
    assert!(upstream.seen().iter().all(|r| r.body.len() < 10));
}

#[tokio::test]
async fn keep_alive_connections_serve_several_requests() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let one = Req::get("/api/one").basic(&key.key).to_bytes();
    let one = String::from_utf8(one)
        .unwrap()
        .replace("Connection: close\r\n", "");
    let two = String::from_utf8(Req::get("/api/two").basic(&key.key).to_bytes()).unwrap();
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    stream.write_all(one.as_bytes()).await.unwrap();
    stream.write_all(two.as_bytes()).await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    let first = support::Resp::parse(&all).unwrap();
    let second = support::Resp::parse(&first.rest).unwrap();
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(upstream.next().await.target, "/api/one");
    assert_eq!(upstream.next().await.target, "/api/two");
}

#[tokio::test]
async fn pipelined_requests_are_each_authenticated() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let first = String::from_utf8(Req::get("/api/one").basic(&key.key).to_bytes())
        .unwrap()
        .replace("Connection: close\r\n", "");
    let second = String::from_utf8(Req::get("/api/two").to_bytes()).unwrap();
    let all =
        support::client::raw_bytes(proxy.proxy_addr, format!("{first}{second}").as_bytes()).await;
    let one = support::Resp::parse(&all).unwrap();
    let two = support::Resp::parse(&one.rest).unwrap();
    assert_eq!(one.status, 200);
    two.assert_refused(403, "UNAUTHORISED");
    let seen: Vec<String> = upstream.seen().into_iter().map(|r| r.target).collect();
    assert_eq!(seen, ["/api/one"]);
}

#[tokio::test]
async fn shutdown_lets_an_in_flight_request_finish() {
    let mut upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/gate").await;
    let addr = proxy.proxy_addr;
    let request = tokio::spawn(Req::get("/gate").basic(&key.key).send(addr));
    upstream.next().await; // the request is now in flight inside keygate

    let stopped = proxy.begin_stop();
    // Wait until keygate has stopped accepting new connections.
    tokio::time::timeout(PATIENCE, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the listener closes on shutdown");

    // The in-flight request still completes, then keygate exits.
    upstream.open_gate();
    let resp = request.await.unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "released");
    stopped.await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_by_the_header_timeout() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("header_timeout_secs = 1")
        .start()
        .await;
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("keygate closes a silent connection")
        .ok();
}

#[tokio::test]
async fn an_http_1_0_upstream_does_not_downgrade_the_response() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let proxy = TestProxy::builder().upstream(addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let bytes = Req::get("/api/x").basic(&key.key).to_bytes();
    let answer = support::client::raw_bytes(proxy.proxy_addr, &bytes).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}
