//! The reference for keygate's own HTTP/1.1 server codec: hyper 1.x's
//! `server::conn::http1`, which served keygate's client leg until now, run
//! on the same bytes; and [`compare`], the property the differential target
//! `http1_request_diff` asserts between the two.
//!
//! # How hyper is run
//!
//! - The connection reads from [`MemoryIo`]: every input byte as soon as
//!   hyper asks (as if it all arrived at once), then nothing ("pending")
//!   until hyper has made no progress for a few polls, then EOF: a client
//!   that pipelined everything and closes once it has all the answers.
//!   (EOF straight after the input is wrong: hyper treats a read EOF as
//!   the client leaving and drops pipelined requests still buffered.)
//!   Writes are accepted and dropped.
//! - The service records each request (method, target, version, headers,
//!   the collected body) and answers 200 with an empty body, so hyper keeps
//!   the connection open unless the request itself closes it.
//! - Settings are keygate's production ones that matter for parsing:
//!   `max_header_size` is keygate's default `proxy.max_header_bytes` (read
//!   from the config defaults, not copied), keep-alive on; the header read
//!   timeout is off because no timer is given (EOF ends everything).
//! - No runtime (so no tokio): the connection future is polled in a loop
//!   with a no-op waker. Everything it waits for is in memory, and the
//!   driver itself decides when EOF comes, so it cannot wait on anything
//!   external; a bound on the polls turns a hang into a panic the fuzzer
//!   reports instead of a stuck run.
//!
//! # Mapping hyper's outcome to [`End`]
//!
//! - a body error whose cause is an unexpected EOF: `Incomplete`; any other
//!   body error (bad chunk size, ...): `Refused`;
//! - the connection fails with "incomplete message" (EOF inside a head):
//!   `Incomplete`; with any other error (parse errors, head too large):
//!   `Refused`;
//! - it finishes cleanly without having read EOF, so it closed the
//!   connection itself after the last request: `Closed`. This is observed,
//!   not predicted from headers, because hyper closes for more reasons than
//!   `Connection: close` and HTTP/1.0 without keep-alive: a `CONNECT` that
//!   a 200 turns into a tunnel, a request with both `Transfer-Encoding` and
//!   `Content-Length` (RFC 9112 6.1), ...;
//! - it finishes cleanly after reading EOF at a request boundary: `Clean`.
//!
//! Only requests whose body was received whole are listed: one cut short
//! or broken mid-body shows only in the `End`.
//!
//! # Known blind spots
//!
//! - Targets are compared after both went through `http::Uri` (hyper keeps
//!   no raw target): differences `Uri` normalises away (scheme case, an
//!   empty path of an absolute-form target) are invisible.
//! - Header order is compared per name only ([`per_name`]): a `HeaderMap`
//!   groups values by name, so the order across names is lost.
//! - Trailers are dropped on both sides; `Expect: 100-continue` and
//!   upgrades other than `CONNECT` are not modelled beyond what a 200 does.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use keygate::fuzzing::{End, ParsedRequest};

/// keygate's default `proxy.max_header_bytes`.
pub static MAX_HEADER_BYTES: LazyLock<usize> = LazyLock::new(|| {
    keygate::config::Config::parse("", None)
        .expect("the empty config is valid")
        .proxy
        .max_header_bytes
});

/// The input, then nothing until the driver says the client has closed:
/// a client that sent every request at once and waits for the answers.
struct MemoryIo {
    input: Vec<u8>,
    at: usize,
    shared: Arc<Shared>,
}

/// What the driver and the connection's parts share.
#[derive(Default)]
struct Shared {
    /// Set by the driver once hyper stopped making progress: reads return
    /// EOF from then on.
    eof: AtomicBool,
    /// Bumped on every read, write and body frame: what "progress" means.
    progress: AtomicUsize,
    /// A read returned EOF: hyper asked for more after the input ran out.
    eof_read: AtomicBool,
}

impl Read for MemoryIo {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let n = buf.remaining().min(this.input.len() - this.at);
        if n == 0 && !this.shared.eof.load(Ordering::Relaxed) {
            // The driver polls again without a wake-up.
            return Poll::Pending;
        }
        if n == 0 {
            this.shared.eof_read.store(true, Ordering::Relaxed);
        }
        buf.put_slice(&this.input[this.at..this.at + n]);
        this.at += n;
        this.shared.progress.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl Write for MemoryIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared.progress.fetch_add(1, Ordering::Relaxed);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the service saw.
#[derive(Default)]
struct Log {
    requests: Vec<ParsedRequest>,
    /// How the first failed body failed.
    body_error: Option<End>,
}

/// Splits `input` into requests the way hyper's HTTP/1.1 server does (see
/// the module doc): the same shape as `keygate::fuzzing::split_requests`.
pub fn hyper_split(input: &[u8]) -> (Vec<ParsedRequest>, End) {
    let log = Arc::new(Mutex::new(Log::default()));
    let shared = Arc::new(Shared::default());
    let service = {
        let log = log.clone();
        let shared = shared.clone();
        service_fn(move |request: Request<Incoming>| {
            let log = log.clone();
            let shared = shared.clone();
            async move {
                let (parts, body) = request.into_parts();
                let mut parsed = ParsedRequest {
                    method: parts.method.as_str().as_bytes().to_vec(),
                    target: parts.uri.to_string().into_bytes(),
                    version: u8::from(parts.version != http::Version::HTTP_10),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(name, value)| {
                            (name.as_str().as_bytes().to_vec(), value.as_bytes().to_vec())
                        })
                        .collect(),
                    body: Vec::new(),
                };
                let collected = collect(body, &shared.progress).await;
                let mut log = log.lock().expect("not poisoned");
                match collected {
                    Ok(body) => {
                        parsed.body = body;
                        log.requests.push(parsed);
                    }
                    Err(error) => {
                        let end = if caused_by_eof(&error) {
                            End::Incomplete
                        } else {
                            End::Refused
                        };
                        log.body_error.get_or_insert(end);
                    }
                }
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            }
        })
    };
    let io = MemoryIo {
        input: input.to_vec(),
        at: 0,
        shared: shared.clone(),
    };
    let conn = http1::Builder::new()
        .max_header_size(*MAX_HEADER_BYTES)
        .keep_alive(true)
        .header_read_timeout(None)
        .serve_connection(io, service);
    let result = drive(conn, &shared, 10_000 + 64 * input.len());

    let log = log.lock().expect("not poisoned");
    let end = match (log.body_error, result) {
        (Some(end), _) => end,
        (None, Err(error)) if error.is_incomplete_message() => End::Incomplete,
        (None, Err(_)) => End::Refused,
        // hyper finished without reading EOF: it closed the connection
        // itself after the last request, whatever the reason.
        (None, Ok(())) if !shared.eof_read.load(Ordering::Relaxed) => End::Closed,
        (None, Ok(())) => End::Clean,
    };
    (log.requests.clone(), end)
}

/// Polls `future` to completion with a no-op waker, at most `limit` times.
/// Once a few polls in a row make no progress (hyper waits for bytes that
/// will not come), the client "closes": reads return EOF, and hyper ends
/// the connection the way it would for a real client.
fn drive<F: Future>(future: F, shared: &Shared, limit: usize) -> F::Output {
    // Polls without progress before EOF: hyper's dispatcher yields after 16
    // loop turns but always with progress, so a few idle polls means idle.
    const IDLE_POLLS: usize = 4;
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    let (mut seen, mut idle) = (usize::MAX, 0);
    for _ in 0..limit {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        let progress = shared.progress.load(Ordering::Relaxed);
        if progress == seen {
            idle += 1;
            if idle >= IDLE_POLLS {
                shared.eof.store(true, Ordering::Relaxed);
            }
        } else {
            (seen, idle) = (progress, 0);
        }
    }
    panic!("hyper made no progress in {limit} polls on in-memory input");
}

/// Collects a request body, counting each frame as progress.
async fn collect(mut body: Incoming, progress: &AtomicUsize) -> Result<Vec<u8>, hyper::Error> {
    let mut data = Vec::new();
    while let Some(frame) = body.frame().await {
        progress.fetch_add(1, Ordering::Relaxed);
        if let Ok(chunk) = frame?.into_data() {
            data.extend_from_slice(&chunk);
        }
    }
    Ok(data)
}

/// Whether a body error came from the input ending (an `io::Error` of kind
/// `UnexpectedEof` somewhere in its causes, or hyper's "incomplete
/// message").
fn caused_by_eof(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        cause = error.source();
    }
    false
}

/// A request reduced to what both parsers can be compared on: the target
/// through `http::Uri` (hyper keeps no raw target), headers per name.
#[derive(Debug, PartialEq, Eq)]
struct Comparable<'a> {
    method: &'a [u8],
    target: Result<String, Vec<u8>>,
    version: u8,
    headers: BTreeMap<&'a [u8], Vec<&'a [u8]>>,
    body: &'a [u8],
}

fn comparable(request: &ParsedRequest) -> Comparable<'_> {
    Comparable {
        method: &request.method,
        target: http::Uri::try_from(&request.target[..])
            .map(|uri| uri.to_string())
            .map_err(|_| request.target.clone()),
        version: request.version,
        headers: per_name(&request.headers),
        body: &request.body,
    }
}

/// Header values grouped by (lower-case) name, in order within a name.
/// This is the comparison used for headers: hyper's `HeaderMap` keeps the
/// order of values of one name but not the order across names, so keygate
/// and hyper are held to the same multiset of fields with each name's
/// values in the same order.
pub fn per_name(headers: &[(Vec<u8>, Vec<u8>)]) -> BTreeMap<&[u8], Vec<&[u8]>> {
    let mut map = BTreeMap::<&[u8], Vec<&[u8]>>::new();
    for (name, value) in headers {
        map.entry(&name[..]).or_default().push(&value[..]);
    }
    map
}

/// The differential property (issue 13): keygate and hyper agree on where
/// each request ends and on what it is, or keygate refuses.
///
/// - every request keygate accepted equals hyper's at the same index;
/// - if keygate's stream ended `Clean`, `Closed` or `Incomplete`, hyper's
///   ended the same way after the same number of requests (so hyper did not
///   refuse anything keygate accepted, nor find a boundary elsewhere);
/// - if keygate `Refused`, hyper may have accepted more (keygate may be
///   stricter), but never fewer: keygate accepting a request hyper refused
///   or never saw complete is a mismatch.
pub fn compare(
    keygate: &(Vec<ParsedRequest>, End),
    hyper: &(Vec<ParsedRequest>, End),
) -> Result<(), String> {
    let (ours, our_end) = keygate;
    let (theirs, their_end) = hyper;
    for (index, request) in ours.iter().enumerate() {
        let Some(reference) = theirs.get(index) else {
            return Err(format!(
                "keygate accepted request {index} {request:?}; hyper accepted only {} then {their_end:?}",
                theirs.len()
            ));
        };
        if comparable(request) != comparable(reference) {
            return Err(format!(
                "request {index} differs:\n keygate {:?}\n hyper   {:?}",
                comparable(request),
                comparable(reference)
            ));
        }
    }
    if *our_end != End::Refused && (ours.len(), our_end) != (theirs.len(), their_end) {
        return Err(format!(
            "keygate: {} requests then {our_end:?}; hyper: {} then {their_end:?}",
            ours.len(),
            theirs.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> ParsedRequest {
        ParsedRequest {
            method: method.into(),
            target: target.into(),
            version: 1,
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            body: body.into(),
        }
    }

    #[test]
    fn the_default_header_limit_is_keygates() {
        assert_eq!(*MAX_HEADER_BYTES, 64 * 1024);
    }

    #[test]
    fn pipelined_gets_are_split() {
        let (requests, end) =
            hyper_split(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b?q HTTP/1.1\r\nHost: h\r\nX: 1\r\nx: 2\r\n\r\n");
        assert_eq!(end, End::Clean);
        assert_eq!(
            requests,
            vec![
                request("GET", "/a", &[("host", "h")], ""),
                request("GET", "/b?q", &[("host", "h"), ("x", "1"), ("x", "2")], ""),
            ]
        );
    }

    #[test]
    fn bodies_are_collected() {
        let (requests, end) = hyper_split(
            b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n\
              PUT /l HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz",
        );
        assert_eq!(end, End::Clean);
        assert_eq!(requests[0].body, b"abcde");
        assert_eq!(requests[1].body, b"xyz");
        assert_eq!(requests.len(), 2);
    }

    #[test]
    fn connection_close_and_http10_close() {
        let (requests, end) = hyper_split(
            b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n",
        );
        assert_eq!((requests.len(), end), (1, End::Closed));
        let (requests, end) = hyper_split(b"GET / HTTP/1.0\r\n\r\nGET /ignored HTTP/1.1\r\n\r\n");
        assert_eq!(
            (requests.len(), requests[0].version, end),
            (1, 0, End::Closed)
        );
        let (requests, end) =
            hyper_split(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        assert_eq!((requests.len(), end), (2, End::Clean));
    }

    #[test]
    fn hyper_closes_after_te_with_cl_without_being_told() {
        let (requests, end) = hyper_split(
            b"POST / HTTP/1.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        );
        assert_eq!((requests.len(), end), (1, End::Closed));
        let (requests, end) = hyper_split(b"CONNECT a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!((requests.len(), end), (1, End::Closed));
    }

    #[test]
    fn malformed_and_cut_short() {
        let (requests, end) = hyper_split(b"GET / HTTP/1.1\r\n\r\nGET /\x01 HTTP/1.1\r\n\r\n");
        assert_eq!((requests.len(), end), (1, End::Refused));
        let (requests, end) = hyper_split(b"GET / HTTP/1.1\r\nHost: h\r\n");
        assert_eq!((requests.len(), end), (0, End::Incomplete));
        let (requests, end) = hyper_split(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab");
        assert_eq!((requests.len(), end), (0, End::Incomplete));
        let (requests, end) =
            hyper_split(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab");
        assert_eq!((requests.len(), end), (0, End::Incomplete));
        let (requests, end) =
            hyper_split(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
        assert_eq!((requests.len(), end), (0, End::Refused));
        let (requests, end) = hyper_split(b"");
        assert_eq!((requests.len(), end), (0, End::Clean));
    }

    #[test]
    fn the_comparison_allows_only_strictness() {
        let input = b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let hyper = hyper_split(input);
        // The oracle against itself always agrees.
        assert_eq!(compare(&hyper, &hyper), Ok(()));
        // Refusing the second request: stricter, allowed.
        assert_eq!(
            compare(&(hyper.0[..1].to_vec(), End::Refused), &hyper),
            Ok(())
        );
        // Refusing everything: allowed (the placeholder does this).
        assert_eq!(compare(&(Vec::new(), End::Refused), &hyper), Ok(()));
        // Stopping early without refusing: a different boundary.
        assert!(compare(&(hyper.0[..1].to_vec(), End::Clean), &hyper).is_err());
        // A different parse of an accepted request.
        let mut other = hyper.clone();
        other.0[1].target = b"/c".to_vec();
        assert!(compare(&other, &hyper).is_err());
        // Accepting what hyper refused.
        let refused = hyper_split(b"GET /a HTTP/1.1\r\n\r\nGET /\x01 HTTP/1.1\r\n\r\n");
        assert!(compare(&hyper, &refused).is_err());
        // Header order across names is not compared; within a name it is.
        let a = (
            vec![request("GET", "/", &[("a", "1"), ("b", "2")], "")],
            End::Clean,
        );
        let b = (
            vec![request("GET", "/", &[("b", "2"), ("a", "1")], "")],
            End::Clean,
        );
        assert_eq!(compare(&a, &b), Ok(()));
        let a = (
            vec![request("GET", "/", &[("a", "1"), ("a", "2")], "")],
            End::Clean,
        );
        let b = (
            vec![request("GET", "/", &[("a", "2"), ("a", "1")], "")],
            End::Clean,
        );
        assert!(compare(&a, &b).is_err());
    }
}
