//! Issue 6: keygate's upstream connection pool.
//!
//! Connections to the application are kept alive and reused, which is
//! where much of a proxy's speed comes from; but a connection may only be
//! reused once its response has been read to its end, and one the upstream
//! has closed must never cost a client a 502. These tests watch the pool
//! from the upstream's side: which connection carried each request, and
//! when keygate closed one.

mod support;

use std::net::SocketAddr;

use support::{RecordingUpstream, Req, TestProxy, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// keygate with one worker thread: with more, each worker keeps its own
/// connections, and which worker accepts a client is the kernel's choice.
async fn one_worker(upstream: SocketAddr) -> TestProxy {
    TestProxy::builder()
        .upstream(upstream)
        .proxy("worker_threads = 1")
        .start()
        .await
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let upstream = RecordingUpstream::start().await;
    let proxy = one_worker(upstream.addr).await;
    let key = proxy.create_key("alice", "/").await;
    // A body of known length, no body at all (HEAD, 204) and an echo: each
    // ends its message, so each leaves the connection reusable. Every
    // request comes on a new client connection.
    let requests = [
        Req::get("/api/one"),
        Req::new("HEAD", "/api/two"),
        Req::get("/status/204"),
        Req::post("/echo", b"hello"),
        Req::get("/api/three"),
    ];
    for request in requests {
        let resp = proxy.send(request.basic(&key.key)).await;
        assert!(resp.status == 200 || resp.status == 204, "{}", resp.status);
    }
    let conns: Vec<usize> = upstream.seen().iter().map(|r| r.conn).collect();
    assert_eq!(conns, [0, 0, 0, 0, 0]);
}

#[tokio::test]
async fn with_two_workers_connections_are_still_reused() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("worker_threads = 2")
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    for _ in 0..20 {
        let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
        assert_eq!(resp.status, 200);
    }
    let mut conns: Vec<usize> = upstream.seen().iter().map(|r| r.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    // 20 client connections, spread over two workers by the kernel: at
    // most one upstream connection per worker, never one per request.
    assert!(conns.len() <= 2, "upstream connections used: {conns:?}");
}

#[tokio::test]
async fn a_chunked_response_read_to_its_end_leaves_the_connection_reusable() {
    let mut upstream = Scripted::start(Script::Chunked).await;
    let proxy = one_worker(upstream.addr).await;
    let key = proxy.create_key("alice", "/").await;
    for _ in 0..3 {
        let resp = proxy.send(Req::get("/chunked").basic(&key.key)).await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
    }
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn a_response_cut_short_by_the_client_is_not_reused() {
    let mut upstream = Scripted::start(Script::LongThenOk).await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/").await;

    // The first response promises far more than it sends; the client reads
    // its head and hangs up.
    let mut client = TcpStream::connect(proxy.proxy_addr).await.unwrap();
    client
        .write_all(&Req::get("/long").basic(&key.key).to_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    client.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    drop(client);

    // keygate must close that upstream connection, not pool it: the rest
    // of the body would otherwise be read as the next request's response.
    assert_eq!(upstream.next().await, Seen::Closed(0));
    let resp = proxy.send(Req::get("/next").basic(&key.key)).await;
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_replaced_not_a_502() {
    let mut upstream = Scripted::start(Script::OkThenClose).await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/").await;
    for conn in 0..3 {
        let resp = proxy.send(Req::get("/api").basic(&key.key)).await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        // The upstream answered with keep-alive, then closed while idle.
        assert_eq!(upstream.next().await, Seen::Closed(conn));
    }
    assert_eq!(upstream.accepted(), 3);
}

/// How [`Scripted`] answers each request.
#[derive(Debug, Clone, Copy)]
enum Script {
    /// 200 `hello world` in two chunks, keep-alive.
    Chunked,
    /// On its first connection, a head promising 1 MB and 10 bytes of it,
    /// then waiting; on later ones, 200 `ok`.
    LongThenOk,
    /// 200 `ok` (keep-alive, by HTTP/1.1's default), then close.
    OkThenClose,
}

/// What the scripted upstream saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    /// Connection N (numbered in accept order from 0) was closed: by
    /// keygate, or by the upstream itself for `OkThenClose`.
    Closed(usize),
}

/// A raw-socket HTTP/1.1 upstream that answers by [`Script`], counts the
/// connections it accepts and reports when keygate closes one.
struct Scripted {
    addr: SocketAddr,
    accepted: mpsc::UnboundedReceiver<usize>,
    count: usize,
    events: mpsc::UnboundedReceiver<Seen>,
}

impl Scripted {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted_tx, accepted) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = accepted_tx.send(conn);
                tokio::spawn(serve(stream, conn, script, tx.clone()));
            }
        });
        Scripted {
            addr,
            accepted,
            count: 0,
            events,
        }
    }

    /// Connections accepted so far.
    fn accepted(&mut self) -> usize {
        while self.accepted.try_recv().is_ok() {
            self.count += 1;
        }
        self.count
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("the upstream sees it in time")
            .expect("upstream running")
    }
}

async fn serve(
    mut stream: TcpStream,
    conn: usize,
    script: Script,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = Vec::new();
    loop {
        // One request head (these requests have no body).
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Seen::Closed(conn));
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.clear();
        let answer: &[u8] = match script {
            Script::Chunked => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
            Script::LongThenOk if conn == 0 => b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n0123456789",
            Script::LongThenOk | Script::OkThenClose => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if stream.write_all(answer).await.is_err() {
            return;
        }
        if let Script::OkThenClose = script {
            drop(stream);
            let _ = tx.send(Seen::Closed(conn));
            return;
        }
    }
}
