//! A raw-socket HTTP/1.1 upstream that answers each request with bytes the
//! test scripted for its path, exactly as given: the way to make keygate's
//! upstream client meet framing a well-behaved library would never send.
//!
//! It reads each request head, then its body by `Content-Length` or
//! chunked framing (so keep-alive works for uploads too), records the
//! request's bytes, and writes the scripted answer. An answer can then
//! close the connection, or be written as soon as the head arrives and be
//! followed by silence, the body never read (to see what keygate does
//! with a request body the application never read). Every request and
//! every connection keygate closes is reported on a channel,
//! with the connection's number (from 0, in accept order), so a test can
//! tell which connection carried what and whether one was reused.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::PATIENCE;

/// What the upstream does after writing an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    /// Read the next request on the same connection.
    KeepAlive,
    /// Close the connection.
    Close,
    /// Stop reading (without reading the request's body) and hold the
    /// connection open, silent, for ever.
    Stall,
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Bytes written as they are.
    pub bytes: Vec<u8>,
    /// What happens next.
    pub then: Then,
}

impl Answer {
    /// `bytes`, then keep the connection open.
    pub fn keep(bytes: &[u8]) -> Self {
        Answer {
            bytes: bytes.to_vec(),
            then: Then::KeepAlive,
        }
    }

    /// `bytes`, then close.
    pub fn close(bytes: &[u8]) -> Self {
        Answer {
            bytes: bytes.to_vec(),
            then: Then::Close,
        }
    }

    /// `bytes` as soon as the head arrived, without reading the body, then
    /// silence.
    pub fn stall(bytes: &[u8]) -> Self {
        Answer {
            bytes: bytes.to_vec(),
            then: Then::Stall,
        }
    }
}

/// What the upstream saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A request for `path` arrived on connection `conn`; `raw` is its
    /// head and body as received (body de-chunked framing left as is).
    Request {
        conn: usize,
        path: String,
        raw: Vec<u8>,
    },
    /// keygate closed connection `conn` (or it failed).
    Closed { conn: usize },
}

/// The scripted upstream.
#[derive(Debug)]
pub struct ScriptedUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    /// Connections seen closed while waiting for something else.
    closed: std::collections::HashSet<usize>,
}

impl ScriptedUpstream {
    /// Starts on `127.0.0.1:0`, answering each path (the request-target,
    /// query included) as `script` says; other paths get 200 `ok`.
    pub async fn start(script: &[(&str, Answer)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script: Arc<HashMap<String, Answer>> = Arc::new(
            script
                .iter()
                .map(|(path, answer)| ((*path).to_owned(), answer.clone()))
                .collect(),
        );
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, conn, script.clone(), tx.clone()));
            }
        });
        ScriptedUpstream {
            addr,
            events,
            closed: Default::default(),
        }
    }

    /// The next event, within [`PATIENCE`].
    pub async fn next(&mut self) -> Event {
        tokio::time::timeout(PATIENCE, self.events.recv())
            .await
            .expect("the upstream sees something in time")
            .expect("upstream running")
    }

    /// The next request: its connection and raw bytes. Connections closed
    /// meanwhile are noted for [`Self::closed`].
    pub async fn request(&mut self, want: &str) -> (usize, Vec<u8>) {
        loop {
            match self.next().await {
                Event::Request { conn, path, raw } if path == want => return (conn, raw),
                Event::Closed { conn } => {
                    self.closed.insert(conn);
                }
                other => panic!("expected a request for {want}, got {other:?}"),
            }
        }
    }

    /// Waits until connection `conn` is closed (by keygate, or by the
    /// script), skipping other events.
    pub async fn closed(&mut self, conn: usize) {
        while !self.closed.remove(&conn) {
            if let Event::Closed { conn } = self.next().await {
                self.closed.insert(conn);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn serve(
    mut stream: TcpStream,
    conn: usize,
    script: Arc<HashMap<String, Answer>>,
    tx: mpsc::UnboundedSender<Event>,
) {
    let mut buf = Vec::new();
    let closed = |tx: &mpsc::UnboundedSender<Event>| {
        let _ = tx.send(Event::Closed { conn });
    };
    loop {
        let Some(head_end) = read_until(&mut stream, &mut buf, |b| {
            find(b, b"\r\n\r\n").map(|at| at + 4)
        })
        .await
        else {
            return closed(&tx);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
        let answer = script
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Answer::keep(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
        if answer.then == Then::Stall {
            let _ = tx.send(Event::Request {
                conn,
                path,
                raw: buf[..head_end].to_vec(),
            });
            let _ = stream.write_all(&answer.bytes).await;
            // Hold the connection without ever reading from it again.
            return std::future::pending().await;
        }
        let body_end = if let Some(length) = header(&head, "content-length") {
            let length: usize = length.parse().expect("numeric Content-Length");
            let want = head_end + length;
            match read_until(&mut stream, &mut buf, |b| (b.len() >= want).then_some(want)).await {
                Some(end) => end,
                None => return closed(&tx),
            }
        } else if header(&head, "transfer-encoding").is_some() {
            match read_until(&mut stream, &mut buf, |b| {
                find(&b[head_end..], b"0\r\n\r\n").map(|at| head_end + at + 5)
            })
            .await
            {
                Some(end) => end,
                None => return closed(&tx),
            }
        } else {
            head_end
        };
        let raw: Vec<u8> = buf.drain(..body_end).collect();
        let _ = tx.send(Event::Request { conn, path, raw });
        if stream.write_all(&answer.bytes).await.is_err() {
            return closed(&tx);
        }
        if answer.then == Then::Close {
            drop(stream);
            return closed(&tx);
        }
    }
}

/// The value of header `name` in a lower-cased head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// Reads into `buf` until `done` finds an end; `None` if the peer closes
/// or fails first.
async fn read_until(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(end) = done(buf) {
            return Some(end);
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
