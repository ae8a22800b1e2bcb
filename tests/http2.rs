//! HTTP/2 connection rules (issue 14, items 1, 2 and 7): a client that
//! resets streams can never have more upstream requests in flight than its
//! stream limit, a client that resets too fast gets GOAWAY
//! `ENHANCE_YOUR_CALM`, idle connections close after the header timeout
//! (answering PINGs or sending half a header block does not keep them
//! open), `cookie` crumbs reach the HTTP/1.1 upstream as one field, and
//! keygate's own answers carry a `Date`.
//!
//! The client side is the `h2` crate, driven stream by stream, over real
//! TLS with ALPN `h2`.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use support::tls::TestCa;
use support::{RecordingUpstream, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stream limit these tests configure: small, so the rules bite soon.
const STREAMS: usize = 4;

struct H2Proxy {
    ca: TestCa,
    _dir: tempfile::TempDir,
    upstream: RecordingUpstream,
    proxy: TestProxy,
    basic: String,
}

/// A TLS keygate with a stream limit of [`STREAMS`], `proxy` and `http2`
/// settings (lines of those sections), and the `Authorization` value of a
/// key for `/`.
async fn h2_proxy(proxy: &[&str], http2: &[&str]) -> H2Proxy {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(dir.path(), "server");
    let upstream = RecordingUpstream::start().await;
    let mut builder = TestProxy::builder()
        .upstream(upstream.addr)
        .tls(&cert, &key);
    for line in proxy {
        builder = builder.proxy(line);
    }
    let proxy = builder
        .section(&format!(
            "[proxy.http2]\nmax_concurrent_streams = {STREAMS}\n{}\n",
            http2.join("\n")
        ))
        .start()
        .await;
    let key = proxy.create_key("alice", "/").await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("haplo:{}", key.key),
        )
    );
    H2Proxy {
        ca,
        _dir: dir,
        upstream,
        proxy,
        basic,
    }
}

type Client = h2::client::SendRequest<Bytes>;
type Connection = tokio::task::JoinHandle<Result<(), h2::Error>>;

impl H2Proxy {
    /// A new HTTP/2 connection; the returned task drives it (and answers
    /// the server's PINGs) and ends with the connection.
    async fn connect(&self) -> (Client, Connection) {
        let (client, _, connection) = self.connect_pinging().await;
        (client, connection)
    }

    /// [`Self::connect`], with a handle for sending PINGs: a PING's answer
    /// says the server has read every frame sent before it.
    async fn connect_pinging(&self) -> (Client, h2::PingPong, Connection) {
        let stream = self
            .ca
            .connect(self.proxy.proxy_addr, &[b"h2"])
            .await
            .unwrap();
        let (client, mut connection) = h2::client::handshake(stream).await.expect("h2 handshake");
        let ping = connection.ping_pong().expect("ping handle");
        (client, ping, tokio::spawn(connection))
    }

    fn get(&self, path: &str) -> http::Request<()> {
        http::Request::get(format!("https://app.example{path}"))
            .header("authorization", &self.basic)
            .body(())
            .unwrap()
    }
}

/// Opens a stream with no body, waiting for the server's stream limit.
async fn open(
    client: &mut Client,
    request: http::Request<()>,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let ready = tokio::time::timeout(PATIENCE, client.clone().ready())
        .await
        .expect("a stream slot in time")
        .expect("connection open");
    *client = ready;
    client.send_request(request, true).expect("stream opened")
}

#[tokio::test]
async fn a_reset_stream_holds_its_slot_until_its_upstream_request_ends() {
    // Held upstream requests must not time out during the test.
    let mut h = h2_proxy(&["upstream_timeout_secs = 60"], &[]).await;
    let (mut client, _conn) = h.connect().await;
    // A full batch goes upstream and is held there...
    let mut batch = Vec::new();
    for _ in 0..STREAMS {
        batch.push(open(&mut client, h.get("/gate")).await);
    }
    for _ in 0..STREAMS {
        h.upstream.next().await;
    }
    // ...then the client resets it, which frees every stream for h2.
    for (_, stream) in &mut batch {
        stream.send_reset(h2::Reason::CANCEL);
    }
    // The next stream waits: the upstream still has a full batch.
    let (waiting, _stream) = open(&mut client, h.get("/gate")).await;
    let early = tokio::time::timeout(Duration::from_millis(500), h.upstream.next()).await;
    assert!(
        early.is_err(),
        "a stream went upstream while {STREAMS} reset streams were still in flight there"
    );
    // One held request ends: its slot passes to the waiting stream.
    h.upstream.open_gate();
    let recorded = h.upstream.next().await;
    assert_eq!(recorded.target, "/gate");
    h.upstream.open_gate();
    for _ in 0..STREAMS {
        h.upstream.open_gate();
    }
    let response = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("answered in time")
        .expect("response");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn resetting_streams_faster_than_the_rule_allows_gets_enhance_your_calm() {
    let mut h = h2_proxy(&["upstream_timeout_secs = 60"], &[]).await;
    let (mut client, mut ping, conn) = h.connect_pinging().await;
    // The bucket holds as many resets as the stream limit; one more within
    // the window breaks the rule. Each stream is reset once it is upstream
    // (the probe's pattern); once keygate has read the reset, its upstream
    // request is let go.
    for _ in 0..=STREAMS {
        let (_, mut stream) = open(&mut client, h.get("/gate")).await;
        h.upstream.next().await;
        stream.send_reset(h2::Reason::CANCEL);
        let Ok(Ok(_)) = tokio::time::timeout(PATIENCE, ping.ping(h2::Ping::opaque())).await else {
            break; // the connection is already closing
        };
        h.upstream.open_gate();
    }
    let ended = tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("the connection is closed in time")
        .expect("driver task");
    let error = ended.expect_err("closed with an error code");
    assert!(error.is_go_away(), "a GOAWAY, not {error:?}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
}

#[tokio::test]
async fn a_browser_abandoning_a_page_of_streams_is_not_cut_off() {
    let mut h = h2_proxy(&["upstream_timeout_secs = 60"], &[]).await;
    let (mut client, conn) = h.connect().await;
    // A full page of slow requests, all abandoned: as many resets as the
    // rule allows in one window.
    for _ in 0..STREAMS {
        let (_, mut stream) = open(&mut client, h.get("/gate")).await;
        h.upstream.next().await;
        stream.send_reset(h2::Reason::CANCEL);
    }
    let (response, _) = open(&mut client, h.get("/ok")).await;
    for _ in 0..STREAMS {
        h.upstream.open_gate();
    }
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .expect("answered in time")
        .expect("the connection still serves");
    assert_eq!(response.status(), 200);
    assert!(!conn.is_finished());
}

#[tokio::test]
async fn an_idle_connection_gets_goaway_after_the_header_timeout_though_it_answers_pings() {
    // The PING goes out at 2 s and the idle GOAWAY at 3 s, a second clear
    // of the next PING: with equal intervals the two raced, and the
    // client's answer to a PING sent just before the GOAWAY could meet a
    // closed socket.
    let h = h2_proxy(&["header_timeout_secs = 3"], &["keep_alive_secs = 2"]).await;
    let started = Instant::now();
    let (_client, conn) = h.connect().await;
    // The driver answers the server's PING; no stream is ever opened.
    let ended = tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("an idle HTTP/2 connection is closed")
        .expect("driver task");
    assert!(ended.is_ok(), "GOAWAY NO_ERROR, not {ended:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the timeout"
    );
}

#[tokio::test]
async fn a_connection_goes_idle_after_its_last_stream_and_then_closes() {
    let h = h2_proxy(&["header_timeout_secs = 1"], &[]).await;
    let (mut client, conn) = h.connect().await;
    let (response, _) = open(&mut client, h.get("/ok")).await;
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let ended = tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("closed once idle")
        .expect("driver task");
    assert!(ended.is_ok(), "GOAWAY NO_ERROR, not {ended:?}");
}

#[tokio::test]
async fn a_header_block_that_never_finishes_is_cut_by_the_header_timeout() {
    let h = h2_proxy(&["header_timeout_secs = 1"], &[]).await;
    let mut stream = h.ca.connect(h.proxy.proxy_addr, &[b"h2"]).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // SETTINGS, then HEADERS without END_HEADERS (`:method: GET`), and no
    // CONTINUATION ever.
    stream
        .write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0])
        .await
        .unwrap();
    stream
        .write_all(&[0, 0, 1, 0x1, 0x0, 0, 0, 0, 1, 0x82])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection stayed open");
    h.upstream.assert_untouched();
}

#[tokio::test]
async fn http2_cookie_crumbs_reach_the_upstream_as_one_field() {
    let mut h = h2_proxy(&[], &[]).await;
    let (mut client, _conn) = h.connect().await;
    let mut request = h.get("/ok");
    request
        .headers_mut()
        .append("cookie", http::HeaderValue::from_static("a=1"));
    request
        .headers_mut()
        .append("cookie", http::HeaderValue::from_static("b=2"));
    let (response, _) = open(&mut client, request).await;
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    let recorded = h.upstream.next().await;
    assert_eq!(recorded.all("cookie"), ["a=1; b=2"]);
}

#[tokio::test]
async fn a_refusal_over_http2_carries_the_current_date() {
    let h = h2_proxy(&[], &[]).await;
    let (mut client, _conn) = h.connect().await;
    let mut request = h.get("/ok");
    request.headers_mut().remove("authorization");
    // A Date has whole seconds: the one sent may be up to a second older.
    let before = std::time::SystemTime::now() - Duration::from_secs(1);
    let (response, _) = open(&mut client, request).await;
    let response = tokio::time::timeout(PATIENCE, response)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 403, "no key");
    let date = response.headers().get("date").expect("keygate adds a Date");
    let at = httpdate::parse_http_date(date.to_str().unwrap()).unwrap();
    assert!(
        at >= before && at <= std::time::SystemTime::now(),
        "{date:?}"
    );
}
