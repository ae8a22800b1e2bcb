//! Issue 4: a fault-injecting upstream, and keygate's answers to it.
//!
//! [`Faulty`] is a real HTTP/1.1 server on `127.0.0.1:0`, written on raw
//! sockets so it can misbehave in ways a well-behaved library will not: the
//! request path picks the fault. It reports what happens on its side (a
//! request received, a connection closed by keygate, a response write that
//! ended) on a channel, so tests wait on events rather than on sleeps.
//!
//! keygate runs with one-second upstream and body timeouts. Every wait is
//! bounded by [`BOUND`]: a test fails, rather than hangs, if keygate does.
//! Each fault is followed (and where it lasts, accompanied) by a good
//! request, which must be served: one misbehaving request never takes the
//! proxy down with it.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use support::{Req, Resp, TestProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

/// Generous bound on anything that should take about one timeout (1 s).
const BOUND: Duration = Duration::from_secs(8);

/// Bytes of body a partial response sends before misbehaving.
const PARTIAL: usize = 1000;
/// The Content-Length a partial response promises.
const PROMISED: usize = 100_000;

/// What the faulty upstream saw or did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A request head for this path arrived.
    Received(String),
    /// keygate closed the connection that carried this path.
    Closed(String),
    /// The response body for this path was written whole (`true`) or the
    /// write failed because keygate went away (`false`).
    Wrote(String, bool),
}

/// The fault-injecting upstream. Paths:
///
/// - `/ok...`: 200 `ok`, keep-alive.
/// - `/silent`: never answers; reports `Closed` if keygate hangs up.
/// - `/slow-head`: answers 200 `late`, but only once the test calls
///   [`Faulty::release`] (after keygate's timeout), then keeps serving the
///   connection: a late answer must never reach a later request.
/// - `/reset`: head promising 100 000 bytes, 1 000 of them, then a reset.
/// - `/short`: the same, then a clean close (fewer bytes than promised).
/// - `/stall-body`: the same, then silence; reports `Closed`.
/// - `/status/NNN`: that status with body `status NNN`, keep-alive.
/// - `/close`: closes without answering.
/// - `/garbage`: answers bytes that are not HTTP, then closes.
/// - `/big`: 200 with a 256 MiB body, written as fast as it is read;
///   reports `Wrote`.
struct Faulty {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    release: Arc<Notify>,
}

impl Faulty {
    async fn start() -> Self {
        Self::on(TcpListener::bind("127.0.0.1:0").await.expect("bind")).await
    }

    async fn on(listener: TcpListener) -> Self {
        let addr = listener.local_addr().expect("addr");
        let (tx, events) = mpsc::unbounded_channel();
        let release = Arc::new(Notify::new());
        let release_task = release.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, tx.clone(), release_task.clone()));
            }
        });
        Faulty {
            addr,
            events,
            release,
        }
    }

    /// Lets one `/slow-head` request answer.
    fn release(&self) {
        self.release.notify_one();
    }

    /// Waits for the event `wanted`, skipping others.
    async fn wait_for(&mut self, wanted: Event) {
        let found = tokio::time::timeout(BOUND, async {
            while let Some(event) = self.events.recv().await {
                if event == wanted {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "the upstream never reported {wanted:?}");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until the peer closes (or fails); then reports `Closed(path)`.
async fn until_closed(mut stream: TcpStream, path: String, tx: &mpsc::UnboundedSender<Event>) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
    let _ = tx.send(Event::Closed(path));
}

/// One upstream connection: read a head, misbehave as its path says.
async fn serve(mut stream: TcpStream, tx: mpsc::UnboundedSender<Event>, release: Arc<Notify>) {
    let partial = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {PROMISED}\r\n\r\n{}",
        "x".repeat(PARTIAL)
    );
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let _ = tx.send(Event::Received(path.clone()));
        let answer: Vec<u8> = match path.as_str() {
            p if p.starts_with("/ok") => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            "/silent" => return until_closed(stream, path, &tx).await,
            "/slow-head" => {
                release.notified().await;
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate".to_vec()
            }
            "/reset" => {
                let _ = stream.write_all(partial.as_bytes()).await;
                let _ = stream.flush().await;
                let _ = stream.set_zero_linger();
                return;
            }
            "/short" => {
                let _ = stream.write_all(partial.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
            "/stall-body" => {
                let _ = stream.write_all(partial.as_bytes()).await;
                return until_closed(stream, path, &tx).await;
            }
            p if p.starts_with("/status/") => {
                let code = &p["/status/".len()..];
                format!("HTTP/1.1 {code} Whatever\r\nContent-Length: 10\r\n\r\nstatus {code}")
                    .into_bytes()
            }
            "/close" => return,
            "/garbage" => {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.9\r\n\r\n").await;
                return;
            }
            "/big" => {
                let complete = write_big(&mut stream).await;
                let _ = tx.send(Event::Wrote(path, complete));
                return;
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if stream.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// The size of `/big`: far more than socket buffers hold.
const BIG: usize = 256 << 20;

async fn write_big(stream: &mut TcpStream) -> bool {
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n");
    if stream.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let block = vec![b'b'; 64 * 1024];
    for _ in 0..BIG / block.len() {
        if stream.write_all(&block).await.is_err() {
            return false;
        }
    }
    true
}

/// keygate over `upstream` with one-second upstream and body timeouts, and
/// a key for every path.
async fn proxy_for(upstream: SocketAddr) -> (TestProxy, String) {
    let proxy = TestProxy::builder()
        .upstream(upstream)
        .proxy("upstream_timeout_secs = 1")
        .proxy("body_timeout_secs = 1")
        .start()
        .await;
    let key = proxy.create_key("alice", "/").await.key;
    (proxy, key)
}

/// A GET with the key, within the bound.
async fn get(proxy: &TestProxy, key: &str, path: &str) -> Resp {
    tokio::time::timeout(BOUND, proxy.send(Req::get(path).basic(key)))
        .await
        .unwrap_or_else(|_| panic!("keygate answers GET {path} within {BOUND:?}"))
}

/// A good request is served while (or after) something else misbehaves.
async fn assert_serving(proxy: &TestProxy, key: &str) {
    let resp = get(proxy, key, "/ok").await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
}

/// Sends a GET and reads until keygate closes the connection; returns all
/// bytes. Fails if the connection is still open after the bound.
async fn get_raw(proxy: &TestProxy, key: &str, path: &str) -> Vec<u8> {
    let bytes = Req::get(path).basic(key).to_bytes();
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.expect("connect");
    stream.write_all(&bytes).await.expect("write");
    let mut all = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let read = tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "keygate left GET {path} open past {BOUND:?}; got {:?}",
        String::from_utf8_lossy(&all[..all.len().min(300)])
    );
    all
}

/// A response cut short: either keygate's 502 (the upstream failed before
/// its head was read) or the upstream's 200 head with fewer body bytes than
/// it promised and no sign of a complete message.
fn assert_cut_short(all: &[u8]) {
    let head_end = find(all, b"\r\n\r\n").expect("a response head") + 4;
    let resp = Resp::parse(all).expect("a response");
    if resp.status == 502 {
        resp.assert_refused(502, "BAD-GATEWAY");
        return;
    }
    assert_eq!(resp.status, 200, "{:?}", resp.headers);
    let body = &all[head_end..];
    match resp.header("content-length") {
        Some(len) => {
            let len: usize = len.parse().expect("numeric Content-Length");
            assert!(
                body.len() < len,
                "a cut body looks complete: {} of {len}",
                body.len()
            );
        }
        None => {
            assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
            assert!(
                !body.ends_with(b"0\r\n\r\n"),
                "a cut chunked body ends with the last chunk"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Connection faults
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_refused_connection_is_a_bad_gateway_and_keygate_recovers_when_the_upstream_returns() {
    // A port that was just free: nothing listens there until the end.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let (proxy, key) = proxy_for(addr).await;
    for _ in 0..3 {
        get(&proxy, &key, "/ok")
            .await
            .assert_refused(502, "BAD-GATEWAY");
    }
    // Still serving meanwhile: its own refusals and the admin API.
    get(&proxy, "wrong", "/ok")
        .await
        .assert_refused(403, "INVALID-API-KEY");
    // The upstream comes back on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind the port");
    let _upstream = Faulty::on(listener).await;
    assert_serving(&proxy, &key).await;
}

#[tokio::test]
async fn an_upstream_that_accepts_and_never_answers_is_a_gateway_timeout_and_others_are_served() {
    let mut upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let addr = proxy.proxy_addr;
    let silent = {
        let key = key.clone();
        tokio::spawn(async move { Req::get("/silent").basic(&key).send(addr).await })
    };
    upstream.wait_for(Event::Received("/silent".into())).await;
    // While that request waits on the upstream, another is served.
    assert_serving(&proxy, &key).await;
    let resp = tokio::time::timeout(BOUND, silent)
        .await
        .expect("keygate answers within the bound")
        .expect("request task");
    resp.assert_refused(504, "GATEWAY-TIMEOUT");
    assert_serving(&proxy, &key).await;
}

#[tokio::test]
async fn response_headers_after_the_timeout_are_a_gateway_timeout_and_never_answer_a_later_request()
{
    let mut upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    get(&proxy, &key, "/slow-head")
        .await
        .assert_refused(504, "GATEWAY-TIMEOUT");
    // The upstream answers late, on the connection keygate may reuse.
    upstream.release();
    for i in 0..20 {
        let path = format!("/ok/{i}");
        let resp = get(&proxy, &key, &path).await;
        assert_eq!(
            (resp.status, resp.text().as_str()),
            (200, "ok"),
            "GET {path} got another request's answer"
        );
        upstream.wait_for(Event::Received(path)).await;
    }
}

#[tokio::test]
async fn an_upstream_that_closes_without_answering_or_answers_garbage_is_a_bad_gateway() {
    let upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    for path in ["/close", "/garbage", "/close", "/garbage"] {
        get(&proxy, &key, path)
            .await
            .assert_refused(502, "BAD-GATEWAY");
        assert_serving(&proxy, &key).await;
    }
}

// ---------------------------------------------------------------------------
// Body faults: the head has gone to the client, so the only honest signal
// left is a response that visibly ends early.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_upstream_reset_mid_body_cuts_the_response_short_and_closes_the_connection() {
    let upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    for _ in 0..3 {
        assert_cut_short(&get_raw(&proxy, &key, "/reset").await);
        assert_serving(&proxy, &key).await;
    }
}

#[tokio::test]
async fn fewer_body_bytes_than_content_length_cuts_the_response_short() {
    let upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    for _ in 0..3 {
        assert_cut_short(&get_raw(&proxy, &key, "/short").await);
        assert_serving(&proxy, &key).await;
    }
}

#[tokio::test]
async fn an_upstream_that_stalls_mid_body_is_cut_by_the_body_timeout_and_released() {
    let mut upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let addr = proxy.proxy_addr;
    let stalled = {
        let key = key.clone();
        tokio::spawn(async move {
            let bytes = Req::get("/stall-body").basic(&key).to_bytes();
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(&bytes).await.expect("write");
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all).await;
            all
        })
    };
    upstream
        .wait_for(Event::Received("/stall-body".into()))
        .await;
    assert_serving(&proxy, &key).await;
    let all = tokio::time::timeout(BOUND, stalled)
        .await
        .expect("keygate cuts a stalled body within the bound")
        .expect("client task");
    assert_cut_short(&all);
    // keygate hung up on the upstream too.
    upstream.wait_for(Event::Closed("/stall-body".into())).await;
    assert_serving(&proxy, &key).await;
}

// ---------------------------------------------------------------------------
// Status faults
// ---------------------------------------------------------------------------

#[tokio::test]
async fn upstream_5xx_answers_are_passed_through_not_replaced() {
    let upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    for code in [500u16, 502, 503, 504] {
        let resp = get(&proxy, &key, &format!("/status/{code}")).await;
        assert_eq!(resp.status, code);
        assert_eq!(resp.text(), format!("status {code}"));
        assert_serving(&proxy, &key).await;
    }
}

// ---------------------------------------------------------------------------
// A slow-reading client
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_that_stops_reading_a_large_response_is_cut_and_the_upstream_released() {
    let mut upstream = Faulty::start().await;
    let (proxy, key) = proxy_for(upstream.addr).await;
    let bytes = Req::get("/big").basic(&key).to_bytes();
    let mut stream = TcpStream::connect(proxy.proxy_addr).await.expect("connect");
    stream.write_all(&bytes).await.expect("write");
    upstream.wait_for(Event::Received("/big".into())).await;
    // The client reads nothing. Others are served meanwhile...
    assert_serving(&proxy, &key).await;
    // ...and keygate gives up on the stalled client: the upstream's write
    // fails (keygate released its connection) well before 256 MiB.
    upstream.wait_for(Event::Wrote("/big".into(), false)).await;
    // What the client can still read ends early.
    let mut all = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut all))
        .await
        .expect("the connection is closed")
        .ok();
    assert!(all.len() < BIG, "the whole body was delivered");
    assert_serving(&proxy, &key).await;
}
