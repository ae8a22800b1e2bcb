//! A real upstream HTTP server that records every request it receives.
//!
//! Paths choose the answer, so one upstream serves every test:
//!
//! - `/echo...`: streams the request body back;
//! - `/status/NNN...`: answers with that status;
//! - `/hang...`: never answers (for the upstream timeout);
//! - `/gate...`: answers `released` once the test calls `open_gate()`;
//! - `/ws...` with `Upgrade`: switches protocols (101) to the first one
//!   offered (`/ws-echo...`: always to `echo`) and echoes bytes;
//! - anything else: 200 `ok`.
//!
//! Each request is recorded (method, target exactly as received, headers
//! in order, body) and announced on a channel, so a test can await "the
//! upstream saw it" or assert it never did.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use super::PATIENCE;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Request-target as received.
    pub target: String,
    /// Headers in order (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// Which connection carried it: connections are numbered from 0 in the
    /// order the upstream accepted them.
    pub conn: usize,
}

impl Recorded {
    /// All values of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The only value of a header; panics if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} repeated: {all:?}");
        all.first().copied()
    }
}

/// The recording upstream.
#[derive(Debug)]
pub struct RecordingUpstream {
    /// Where it listens.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Recorded>>>,
    rx: mpsc::UnboundedReceiver<Recorded>,
    gate: Arc<Semaphore>,
}

impl RecordingUpstream {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::unbounded_channel();
        let seen_task = seen.clone();
        let gate = Arc::new(Semaphore::new(0));
        let gate_task = gate.clone();
        tokio::spawn(async move {
            for conn in 0.. {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen_task.clone();
                let tx = tx.clone();
                let gate = gate_task.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        answer(req, conn, seen.clone(), tx.clone(), gate.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        RecordingUpstream {
            addr,
            seen,
            rx,
            gate,
        }
    }

    /// Lets one waiting `/gate` request answer.
    pub fn open_gate(&self) {
        self.gate.add_permits(1);
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits for the next request the upstream receives.
    pub async fn next(&mut self) -> Recorded {
        tokio::time::timeout(PATIENCE, self.rx.recv())
            .await
            .expect("the upstream receives a request in time")
            .expect("upstream running")
    }

    /// Asserts nothing but requests for `target` reached the upstream.
    pub fn assert_untouched_except(&self, target: &str) {
        let seen = self.seen();
        assert!(
            seen.iter().all(|r| r.target == target),
            "upstream saw unexpected requests: {seen:?}"
        );
    }

    /// Asserts nothing reached the upstream so far.
    pub fn assert_untouched(&self) {
        let seen = self.seen();
        assert!(
            seen.is_empty(),
            "upstream should have seen nothing, saw {seen:?}"
        );
    }
}

async fn answer(
    mut req: Request<Incoming>,
    conn: usize,
    seen: Arc<Mutex<Vec<Recorded>>>,
    tx: mpsc::UnboundedSender<Recorded>,
    gate: Arc<Semaphore>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    if target.starts_with("/hang") {
        // Record, then never answer: the proxy's upstream timeout must fire.
        let record = Recorded {
            method,
            target,
            headers,
            body: Vec::new(),
            conn,
        };
        seen.lock().unwrap().push(record.clone());
        let _ = tx.send(record);
        return std::future::pending().await;
    }
    if target.starts_with("/ws") && req.headers().contains_key(hyper::header::UPGRADE) {
        let echo_only = target.starts_with("/ws-echo");
        let record = Recorded {
            method,
            target,
            headers,
            body: Vec::new(),
            conn,
        };
        seen.lock().unwrap().push(record.clone());
        let _ = tx.send(record);
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 4096];
                loop {
                    match tokio::io::AsyncReadExt::read(&mut io, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tokio::io::AsyncWriteExt::write_all(&mut io, &buf[..n])
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
            }
        });
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
        // `/ws-echo` always switches to its own `echo` protocol, whatever
        // was offered; `/ws` switches to the first protocol offered.
        let chosen = if echo_only {
            hyper::header::HeaderValue::from_static("echo")
        } else {
            req.headers()
                .get(hyper::header::UPGRADE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| hyper::header::HeaderValue::from_str(v.trim()).ok())
                .unwrap_or_else(|| hyper::header::HeaderValue::from_static("echo"))
        };
        response
            .headers_mut()
            .insert(hyper::header::UPGRADE, chosen);
        response.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("upgrade"),
        );
        return Ok(response);
    }
    if target.starts_with("/gate") {
        // Record on arrival (so the test knows the request is in flight),
        // then wait for the test to open the gate.
        let record = Recorded {
            method,
            target,
            headers,
            body: Vec::new(),
            conn,
        };
        seen.lock().unwrap().push(record.clone());
        let _ = tx.send(record);
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
        return Ok(Response::new(Full::new(Bytes::from_static(b"released"))));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let record = Recorded {
        method,
        target: target.clone(),
        headers,
        body: body.to_vec(),
        conn,
    };
    seen.lock().unwrap().push(record.clone());
    let _ = tx.send(record);
    let mut response = if target.starts_with("/echo") {
        Response::new(Full::new(body))
    } else if let Some(code) = target.strip_prefix("/status/") {
        let code: u16 = code[..3].parse().unwrap_or(500);
        let mut r = Response::new(Full::new(Bytes::from_static(b"status")));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        r
    } else {
        Response::new(Full::new(Bytes::from_static(b"ok")))
    };
    response
        .headers_mut()
        .insert("x-upstream", hyper::header::HeaderValue::from_static("yes"));
    Ok(response)
}
