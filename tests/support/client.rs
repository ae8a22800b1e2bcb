//! A raw HTTP/1.1 client: requests are written byte for byte, so tests can
//! send exactly what a hostile client would, and responses are parsed
//! without normalisation.

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{HOST, PATIENCE};

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    host: Option<String>,
}

impl Req {
    /// `METHOD target HTTP/1.1`.
    pub fn new(method: &str, target: &str) -> Self {
        Req {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            host: Some(HOST.to_owned()),
        }
    }

    /// A GET.
    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    /// A POST with a body.
    pub fn post(target: &str, body: &[u8]) -> Self {
        Self::new("POST", target).body(body)
    }

    /// Adds a header (repeats allowed).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the Host header (default `app.example`).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Sends no Host header at all.
    pub fn no_host(mut self) -> Self {
        self.host = None;
        self
    }

    /// `Authorization: Basic base64(user:pass)`.
    pub fn basic_as(self, user: &str, pass: &str) -> Self {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        self.header("Authorization", &format!("Basic {encoded}"))
    }

    /// `Authorization: Basic base64(haplo:key)`.
    pub fn basic(self, key: &str) -> Self {
        self.basic_as("haplo", key)
    }

    /// `X-ONEIS-Key: key`.
    pub fn oneis(self, key: &str) -> Self {
        self.header("X-ONEIS-Key", key)
    }

    /// A body (sent with Content-Length).
    pub fn body(mut self, body: &[u8]) -> Self {
        self.body = body.to_vec();
        self
    }

    /// A JSON body.
    pub fn json(self, value: &Value) -> Self {
        self.header("Content-Type", "application/json")
            .body(value.to_string().as_bytes())
    }

    /// The bytes this request puts on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if let Some(host) = &self.host {
            out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends the request on a new connection and reads the response.
    pub async fn send(self, addr: SocketAddr) -> Resp {
        raw(addr, &self.to_bytes()).await
    }
}

/// Writes `bytes` to a new connection, reads until the server closes it,
/// and parses the first response. Use `Connection: close` in the bytes.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let all = raw_bytes(addr, bytes).await;
    Resp::parse(&all)
        .unwrap_or_else(|| panic!("unparsable response: {:?}", String::from_utf8_lossy(&all)))
}

/// Writes `bytes` and returns everything the server sends until it closes.
pub async fn raw_bytes(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write request");
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
        .await
        .expect("server closes the connection in time")
        .expect("read response");
    all
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// Bytes after this response (pipelined answers).
    pub rest: Vec<u8>,
}

impl Resp {
    /// Parses one response from the front of `bytes`.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
            rest: Vec::new(),
        };
        let after = &bytes[end + 4..];
        if let Some(len) = resp
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            let len = len.min(after.len());
            resp.body = after[..len].to_vec();
            resp.rest = after[len..].to_vec();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            let mut at = 0;
            loop {
                let line_end = after[at..].windows(2).position(|w| w == b"\r\n")? + at;
                let size = usize::from_str_radix(
                    std::str::from_utf8(&after[at..line_end]).ok()?.trim(),
                    16,
                )
                .ok()?;
                at = line_end + 2;
                if size == 0 {
                    at += 2;
                    break;
                }
                resp.body.extend_from_slice(&after[at..at + size]);
                at += size + 2;
            }
            resp.rest = after[at.min(after.len())..].to_vec();
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            resp.rest = after.to_vec();
        } else {
            resp.body = after.to_vec();
        }
        Some(resp)
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("JSON body ({e}): {}", self.text()))
    }

    /// Asserts a Haplo-style refusal: status, kind, JSON content type, and
    /// never `WWW-Authenticate`.
    pub fn assert_refused(&self, status: u16, kind: &str) {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8"),
            "content type"
        );
        assert!(
            self.header("www-authenticate").is_none(),
            "no WWW-Authenticate"
        );
        let body = self.json();
        assert_eq!(body["success"], Value::Bool(false), "{body}");
        assert_eq!(body["kind"], kind, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
}
