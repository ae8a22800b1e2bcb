//! Issue 4: a regression corpus of hostile HTTP/1.1 requests, sent byte for
//! byte over raw sockets.
//!
//! `tests/targets.rs` already holds the ambiguous request-target corpus
//! (dot-segments, encoded separators, `//`, ...). This file covers the rest
//! of what proxies have been broken with: request smuggling through
//! `Content-Length` / `Transfer-Encoding` disagreements, header syntax that
//! parsers read differently (obs-fold, whitespace before the colon, NUL, CR
//! and LF in values), absolute-form, authority-form, `*` and fragments,
//! pipelining where only the first request carries a key, identity-header
//! aliases, `X-ONEIS-Key` tricks and odd Basic credentials; and, since
//! issue 14, `Host` values that are not a plain host and port, forged
//! client-address headers in any spelling, and `Upgrade: h2c` (smuggling
//! HTTP/2 past the scope check).
//!
//! Each case is one line: a name, the answers keygate must give (in order,
//! one per request keygate reads from the connection), the requests the
//! upstream must receive (`target` or `target|exact body`), and the bytes.
//! On top of each case's own expectations, every request the upstream ever
//! receives is checked against the invariant that matters: it is inside
//! alice's `/api/` scope, it carries alice's identity and key id exactly
//! once, it carries no credential and no forged identity or client-address
//! value, and no upgrade but a WebSocket's.

mod support;

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use support::{Recorded, RecordingUpstream, Req, Resp, TestProxy, HOST, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What keygate must answer to one request on the connection.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Forwarded: the upstream's 200.
    Ok,
    /// keygate's JSON refusal with this status and kind.
    Refused(u16, &'static str),
    /// 400: keygate's JSON `BAD-REQUEST`, hyper's own bare 400, or the
    /// connection closed without an answer (what hyper cannot parse).
    Bad,
    /// A head over keygate's size limits: hyper's own bare 413, 414 or
    /// 431, or a closed connection.
    TooLarge,
}

use Answer::{Bad, Ok as OK, TooLarge};

const UNAUTH: Answer = Answer::Refused(403, "UNAUTHORISED");
const INVALID: Answer = Answer::Refused(403, "INVALID-API-KEY");
/// keygate's own JSON 400, not a bare one from the connection: the proxy's
/// checks (method, target, `Host`) refused the request.
const BAD_REQUEST: Answer = Answer::Refused(400, "BAD-REQUEST");

/// `(name, answers, what the upstream receives, request bytes)`.
///
/// Placeholders in the bytes: `{HOST}` and `{AUTH}` are whole header lines
/// (`Host: app.example`, alice's Basic credential); `{CLOSE}` ends the head
/// with `Connection: close`; `{KEY}` is alice's key, `{B64}` /
/// `{B64NOPAD}` the base64 of `haplo:KEY` with and without padding;
/// `{b64:TEXT}` is the base64 of TEXT (after `{KEY}` is expanded);
/// `{UPSTREAM}` is the upstream's address; `{HUGE_BASIC}`,
/// `{HUGE_HEADER}` and `{LONG_PATH}` are oversized values.
type Case = (
    &'static str,
    &'static [Answer],
    &'static [&'static str],
    &'static [u8],
);

#[rustfmt::skip]
const CORPUS: &[Case] = &[
    // ---- Request smuggling: Content-Length and Transfer-Encoding --------
    // Both present: TE wins (RFC 9112 6.3), CL is dropped, and the
    // connection closes after the answer, so the "request" after the empty
    // chunked body is never read (it has no Connection: close of its own:
    // were it read, the connection would stay open and the case would fail).
    ("CL then TE, smuggled GET after the chunked body", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\n{HOST}{AUTH}\r\n"),
    ("TE then CL, smuggled GET after the chunked body", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\n{HOST}{AUTH}\r\n"),
    ("CL+TE with a valid chunked body", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("CL+TE where TE is identity", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\nTransfer-Encoding: identity\r\n{CLOSE}hello"),
    ("TE 'chunked, identity' (chunked not last)", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("TE ' chunked' with extra leading space, and CL", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding:    chunked\r\nContent-Length: 100\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("TE '\\tchunked' with a leading tab", &[OK], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding:\tchunked\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("TE 'xchunked'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("TE 'Chunked' (tokens are case-insensitive)", &[OK], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: Chunked\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("TE '\"chunked\"' quoted", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: \"chunked\"\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("TE 'identity' alone", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: identity\r\n{CLOSE}"),
    ("TE chunked then a second TE identity", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("TE chunked twice", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("TE on a GET: the body is dropped, never read as a request", &[OK], &["/api/x|"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\n{CLOSE}18\r\nGET /secret HTTP/1.1\r\n\r\n\r\n0\r\n\r\n"),
    ("TE chunked on HTTP/1.0", &[Bad], &[], b"POST /api/x HTTP/1.0\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\n{CLOSE}5\r\nhello\r\n0\r\n\r\n"),
    ("Transfer_Encoding with '_' is not framing", &[OK], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer_Encoding: chunked\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("space before the colon of Transfer-Encoding", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("space before the colon of Content-Length", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length : 5\r\n{CLOSE}hello"),
    ("duplicate Content-Length, equal", &[OK], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\nContent-Length: 5\r\n{CLOSE}hello"),
    ("duplicate Content-Length, different", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\nContent-Length: 50\r\n{CLOSE}hello"),
    ("Content-Length list '5, 5'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5, 5\r\n{CLOSE}hello"),
    ("Content-Length '+5'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: +5\r\n{CLOSE}hello"),
    ("Content-Length '-1'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: -1\r\n{CLOSE}hello"),
    ("Content-Length '0x5'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 0x5\r\n{CLOSE}hello"),
    ("Content-Length '5.0'", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5.0\r\n{CLOSE}hello"),
    ("Content-Length that overflows u64", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 18446744073709551621\r\n{CLOSE}hello"),
    ("Content-Length empty", &[Bad], &[], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length:\r\n{CLOSE}hello"),
    ("CL shorter than the body: the rest is a keyless request", &[OK, UNAUTH], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\n\r\nhelloGET /api/y HTTP/1.1\r\n{HOST}{CLOSE}"),
    ("CL shorter than the body: the rest is out of scope", &[OK, INVALID], &["/api/x|hello"], b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\n\r\nhelloGET /secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("CL on a GET: the 'request' inside is body", &[OK], &["/api/x|GET /secret HTTP/1.1\r\n\r\n"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 24\r\n{CLOSE}GET /secret HTTP/1.1\r\n\r\n"),
    // ---- Header syntax that parsers disagree on -----------------------
    ("obs-fold hiding an identity header", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Note: a\r\n X-Haplo-User: mallory\r\n{CLOSE}"),
    ("obs-fold with a tab", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: alice\r\n\tmallory\r\n{CLOSE}"),
    ("obs-fold continuing Authorization", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic\r\n {B64}\r\n{CLOSE}"),
    ("space before the colon of an identity header", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User : mallory\r\n{CLOSE}"),
    ("tab before the colon of an identity header", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User\t: mallory\r\n{CLOSE}"),
    ("space before the colon of Authorization", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization : Basic {B64}\r\n{CLOSE}"),
    ("NUL in an identity header value", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: alice\0mallory\r\n{CLOSE}"),
    ("NUL in Authorization", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64}\0\r\n{CLOSE}"),
    ("bare CR in a value", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Note: a\rX-Haplo-User: mallory\r\n{CLOSE}"),
    ("bare LF in a value starts a new (stripped) header", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Note: a\nX-Haplo-User: mallory\r\n{CLOSE}"),
    ("bare LF line endings throughout", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\n{HOST}{AUTH}X-Haplo-User: mallory\nConnection: close\n\n"),
    ("NUL in a header name", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User\0: mallory\r\n{CLOSE}"),
    ("empty header name", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}: mallory\r\n{CLOSE}"),
    ("non-ASCII header name", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-\xc3\xbcser: mallory\r\n{CLOSE}"),
    ("header line without a colon", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User mallory\r\n{CLOSE}"),
    ("HTTP/0.9 request line", &[Bad], &[], b"GET /api/x\r\n\r\n"),
    ("HTTP/2.0 on an HTTP/1 connection", &[Bad], &[], b"GET /api/x HTTP/2.0\r\n{HOST}{AUTH}{CLOSE}"),
    ("two spaces in the request line", &[Bad], &[], b"GET  /api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a space inside the target", &[Bad], &[], b"GET /api/x /secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a target longer than hyper accepts", &[TooLarge], &[], b"GET {LONG_PATH} HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a head larger than hyper buffers", &[TooLarge], &[], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}{HUGE_HEADER}{CLOSE}"),
    // ---- Absolute-form, authority-form, '*' and fragments --------------
    ("absolute-form in scope", &[OK], &["/api/x"], b"GET http://app.example/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form out of scope", &[INVALID], &[], b"GET http://app.example/secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form with no path is '/'", &[INVALID], &[], b"GET http://app.example HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form with an empty path and a query", &[INVALID], &[], b"GET http://app.example?/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form, upper-case scheme and host", &[OK], &["/api/x"], b"GET HTTP://APP.EXAMPLE/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form https", &[OK], &["/api/x"], b"GET https://app.example/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form with a query and a fragment", &[OK], &["/api/x?q=1"], b"GET http://app.example/api/x?q=1#/../secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form with a port the Host lacks", &[Bad], &[], b"GET http://app.example:80/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form naming the upstream itself", &[Bad], &[], b"GET http://{UPSTREAM}/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("authority-form CONNECT to the upstream", &[Bad], &[], b"CONNECT {UPSTREAM} HTTP/1.1\r\nHost: {UPSTREAM}\r\n{AUTH}{CLOSE}"),
    ("origin-form CONNECT in scope", &[BAD_REQUEST], &[], b"CONNECT /api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("absolute-form CONNECT in scope", &[BAD_REQUEST], &[], b"CONNECT http://app.example/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("CONNECT in lower case, which some servers read as CONNECT", &[BAD_REQUEST], &[], b"connect /api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("GET in lower case", &[BAD_REQUEST], &[], b"get /api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("HEAD in mixed case, which a server reading it as HEAD answers bodiless", &[BAD_REQUEST], &[], b"Head /api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("POST in lower case with a chunked body", &[BAD_REQUEST], &[], b"post /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\n{CLOSE}0\r\n\r\n"),
    ("CONNECT whose body is a keyless request", &[BAD_REQUEST], &[], b"CONNECT /api/x HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 43\r\n\r\nGET /secret HTTP/1.1\r\nHost: app.example\r\n\r\n"),
    ("authority-form on a GET", &[Bad], &[], b"GET app.example:80 HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("asterisk-form on a GET", &[Bad], &[], b"GET * HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("asterisk-form on a POST", &[Bad], &[], b"POST * HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 0\r\n{CLOSE}"),
    ("a fragment is dropped", &[OK], &["/api/x"], b"GET /api/x#frag HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a fragment cannot hide a traversal", &[OK], &["/api/x"], b"GET /api/x#/../../secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a fragment cannot lend its scope", &[INVALID], &[], b"GET /secret#/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("a target that is only a fragment", &[Bad], &[], b"GET #/api/x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("an encoded '#' is an ordinary byte", &[OK], &["/api/%23x"], b"GET /api/%23x HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    // ---- Host: a plain host and port, nothing a parser could misread ---
    ("Host with a path and dot-segments", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: 127.0.0.1:8080/../admin\r\n{AUTH}{CLOSE}"),
    ("Host with a space", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: a b\r\n{AUTH}{CLOSE}"),
    ("Host with a tab", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: app\texample\r\n{AUTH}{CLOSE}"),
    ("Host with two ports", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: evil.com:80:1\r\n{AUTH}{CLOSE}"),
    ("Host with a fragment", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: evil.com#x\r\n{AUTH}{CLOSE}"),
    ("Host percent-encoded", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: %65vil.com\r\n{AUTH}{CLOSE}"),
    ("Host with a path, a query and '@'", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: evil.com/admin?@x\r\n{AUTH}{CLOSE}"),
    ("Host with userinfo", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: alice@app.example\r\n{AUTH}{CLOSE}"),
    ("Host with an empty port", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: app.example:\r\n{AUTH}{CLOSE}"),
    ("Host with a port over 65535", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: app.example:65616\r\n{AUTH}{CLOSE}"),
    ("Host empty", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost:\r\n{AUTH}{CLOSE}"),
    ("Host an IPv6 literal with a zone id", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n{AUTH}{CLOSE}"),
    ("Host an IPvFuture literal", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: [v1.app]\r\n{AUTH}{CLOSE}"),
    ("Host a non-canonical IPv4", &[Bad], &[], b"GET /api/x HTTP/1.1\r\nHost: 127.1\r\n{AUTH}{CLOSE}"),
    ("absolute-form with userinfo that Host repeats", &[Bad], &[], b"GET http://alice@app.example/api/x HTTP/1.1\r\nHost: alice@app.example\r\n{AUTH}{CLOSE}"),
    // ---- Client-address headers: only keygate's reach the upstream -----
    ("X-Real-IP forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Real-IP: forged\r\n{CLOSE}"),
    ("x_real_ip forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}x_real_ip: forged\r\n{CLOSE}"),
    ("X-Client-IP forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Client-IP: forged\r\n{CLOSE}"),
    ("True-Client-IP forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}True-Client-IP: forged\r\n{CLOSE}"),
    ("X-Forwarded-Host forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Forwarded-Host: forged\r\n{CLOSE}"),
    ("X-Forwarded-Port forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Forwarded-Port: forged\r\n{CLOSE}"),
    ("X_Forwarded_For forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X_Forwarded_For: forged\r\n{CLOSE}"),
    ("X-Forwarded_Proto forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Forwarded_Proto: forged\r\n{CLOSE}"),
    ("Forwarded forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Forwarded: for=forged\r\n{CLOSE}"),
    ("CF-Connecting-IP forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}CF-Connecting-IP: forged\r\n{CLOSE}"),
    // ---- Upgrades: only to protocols on the list (websocket) ------------
    ("Upgrade h2c in scope goes as an ordinary request", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"),
    ("Upgrade h2c with HTTP2-Settings not in Connection", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Connection: Upgrade, close\r\nUpgrade: h2c\r\nHTTP2-Settings: forged\r\n\r\n"),
    ("Upgrade offering websocket and h2c", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Connection: Upgrade, close\r\nUpgrade: websocket, h2c\r\n\r\n"),
    ("Upgrade to HTTP/2.0 by name", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Connection: Upgrade, close\r\nUpgrade: HTTP/2.0\r\n\r\n"),
    // ---- Pipelining: each request is judged on its own -------------------
    ("key, then no key", &[OK, UNAUTH], &["/api/a"], b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\nGET /api/b HTTP/1.1\r\n{HOST}{CLOSE}"),
    ("key, then no key but alice's identity header", &[OK, UNAUTH], &["/api/a"], b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\nGET /api/b HTTP/1.1\r\n{HOST}X-Haplo-User: alice\r\n{CLOSE}"),
    ("key, then a wrong X-ONEIS-Key", &[OK, INVALID], &["/api/a"], b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\nGET /api/b HTTP/1.1\r\n{HOST}X-ONEIS-Key: 0123456789ABCDEF0123456789ABCDEF0123456789AB\r\n{CLOSE}"),
    ("key, then the same key out of scope", &[OK, INVALID], &["/api/a"], b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\nGET /secret HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("key, no key, key", &[OK, UNAUTH, OK], &["/api/a", "/api/c"], b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\nGET /api/b HTTP/1.1\r\n{HOST}\r\nGET /api/c HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("no key, then key", &[UNAUTH, OK], &["/api/b"], b"GET /api/a HTTP/1.1\r\n{HOST}\r\nGET /api/b HTTP/1.1\r\n{HOST}{AUTH}{CLOSE}"),
    ("POST with key, then a keyless POST", &[OK, UNAUTH], &["/api/a|hello"], b"POST /api/a HTTP/1.1\r\n{HOST}{AUTH}Content-Length: 5\r\n\r\nhelloPOST /api/b HTTP/1.1\r\n{HOST}Content-Length: 5\r\n{CLOSE}world"),
    ("Expect: 100-continue out of scope gets no 100", &[INVALID], &[], b"POST /secret HTTP/1.1\r\n{HOST}{AUTH}Expect: 100-continue\r\nContent-Length: 5\r\n{CLOSE}"),
    ("Upgrade out of scope is refused, not tunnelled", &[INVALID], &[], b"GET /secret HTTP/1.1\r\n{HOST}{AUTH}Upgrade: websocket\r\nConnection: Upgrade, close\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
    // ---- Identity-header aliases: the upstream sees alice, once ----------
    ("X-Haplo-User spoofed", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: mallory\r\n{CLOSE}"),
    ("x-haplo-user spoofed before the credential", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}x-haplo-user: mallory\r\n{AUTH}{CLOSE}"),
    ("X_HAPLO_USER spoofed", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X_HAPLO_USER: mallory\r\n{CLOSE}"),
    ("x-haplo_user spoofed", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}x-haplo_user: mallory\r\n{CLOSE}"),
    ("X-Haplo-User spoofed twice", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: mallory\r\nX-Haplo-User: mallory\r\n{CLOSE}"),
    ("X-Haplo-User 'alice, mallory'", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: alice, mallory\r\n{CLOSE}"),
    ("X_Haplo_Api_Key_Id forged", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X_Haplo_Api_Key_Id: forged\r\nx-haplo-api-key-id: forged\r\n{CLOSE}"),
    ("Connection naming the identity header", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X-Haplo-User: mallory\r\nConnection: close, X-Haplo-User\r\n\r\n"),
    ("Connection naming both, in '_' spelling", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}X_Haplo_User: mallory\r\nX-Haplo-Api-Key-Id: forged\r\nConnection: close, x_haplo_user, X_HAPLO_API_KEY_ID\r\n\r\n"),
    ("Connection naming Authorization", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}{AUTH}Connection: close, Authorization\r\n\r\n"),
    ("spoofed identity without a key", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-Haplo-User: alice\r\nX-Haplo-Api-Key-Id: forged\r\n{CLOSE}"),
    ("spoofed identity with a wrong key", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: 0123456789ABCDEF0123456789ABCDEF0123456789AB\r\nX-Haplo-User: alice\r\n{CLOSE}"),
    // ---- X-ONEIS-Key ----------------------------------------------------
    ("x-oneis-key in lower case", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}x-oneis-key: {KEY}\r\n{CLOSE}"),
    ("X-ONEIS-KEY with a spoofed identity", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-KEY: {KEY}\r\nX-Haplo-User: mallory\r\n{CLOSE}"),
    ("X-ONEIS-Key with surrounding whitespace", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: \t {KEY} \t\r\n{CLOSE}"),
    ("X_ONEIS_Key is not the key header", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X_ONEIS_Key: {KEY}\r\n{CLOSE}"),
    ("X-ONEIS-Key twice", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: {KEY}\r\nX-ONEIS-Key: 0123456789ABCDEF0123456789ABCDEF0123456789AB\r\n{CLOSE}"),
    ("X-ONEIS-Key 'KEY, KEY'", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: {KEY}, {KEY}\r\n{CLOSE}"),
    ("X-ONEIS-Key empty", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key:\r\n{CLOSE}"),
    ("X-ONEIS-Key carrying a Basic credential", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: Basic {B64}\r\n{CLOSE}"),
    ("X-ONEIS-Key with a NUL after the key", &[Bad], &[], b"GET /api/x HTTP/1.1\r\n{HOST}X-ONEIS-Key: {KEY}\0\r\n{CLOSE}"),
    ("Bearer Authorization shadows a valid X-ONEIS-Key", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Bearer x\r\nX-ONEIS-Key: {KEY}\r\n{CLOSE}"),
    ("empty Authorization shadows a valid X-ONEIS-Key", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization:\r\nX-ONEIS-Key: {KEY}\r\n{CLOSE}"),
    ("'haplo:' with no password shadows X-ONEIS-Key", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo:}\r\nX-ONEIS-Key: {KEY}\r\n{CLOSE}"),
    // ---- Basic credential oddities --------------------------------------
    ("several spaces after 'Basic'", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic     {B64}\r\n{CLOSE}"),
    ("whitespace around the whole value", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: \t Basic {B64} \t \r\n{CLOSE}"),
    ("unpadded base64", &[OK], &["/api/x"], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64NOPAD}\r\n{CLOSE}"),
    ("a tab instead of the space after 'Basic'", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic\t{B64}\r\n{CLOSE}"),
    ("no space after 'Basic'", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic{B64}\r\n{CLOSE}"),
    ("extra padding", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64}==\r\n{CLOSE}"),
    ("junk after the credential", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64} x\r\n{CLOSE}"),
    ("two credentials in one header", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64}, Basic {B64}\r\n{CLOSE}"),
    ("a non-ASCII byte after the credential", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {B64}\xe9\r\n{CLOSE}"),
    ("scheme 'Basic' spelled with a non-ASCII letter", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: B\xc3\xa1sic {B64}\r\n{CLOSE}"),
    ("user 'HAPLO'", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:HAPLO:{KEY}}\r\n{CLOSE}"),
    ("user ' haplo'", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64: haplo:{KEY}}\r\n{CLOSE}"),
    ("user 'haplo\\0'", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo\0:{KEY}}\r\n{CLOSE}"),
    ("user 'hapl\\xc3\\xb6' (non-ASCII)", &[UNAUTH], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:hapl\xc3\xb6:{KEY}}\r\n{CLOSE}"),
    ("password with a second colon", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo:{KEY}:x}\r\n{CLOSE}"),
    ("password with a leading colon", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo::{KEY}}\r\n{CLOSE}"),
    ("password with a trailing newline", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo:{KEY}\n}\r\n{CLOSE}"),
    ("password with a trailing NUL", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo:{KEY}\0}\r\n{CLOSE}"),
    ("password with a trailing non-ASCII byte", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {b64:haplo:{KEY}\xff}\r\n{CLOSE}"),
    ("a 32 KiB Basic credential", &[INVALID], &[], b"GET /api/x HTTP/1.1\r\n{HOST}Authorization: Basic {HUGE_BASIC}\r\n{CLOSE}"),
];

/// Everything a case's placeholders expand to.
struct Env {
    key: String,
    id: String,
    upstream: SocketAddr,
}

impl Env {
    fn expand(&self, template: &[u8]) -> Vec<u8> {
        let b64 = STANDARD.encode(format!("haplo:{}", self.key));
        let huge = STANDARD.encode(format!("haplo:{}", "k".repeat(32 * 1024)));
        let simple: [(&str, Vec<u8>); 10] = [
            ("{HOST}", format!("Host: {HOST}\r\n").into_bytes()),
            (
                "{AUTH}",
                format!("Authorization: Basic {b64}\r\n").into_bytes(),
            ),
            ("{CLOSE}", b"Connection: close\r\n\r\n".to_vec()),
            ("{KEY}", self.key.clone().into_bytes()),
            ("{B64NOPAD}", b64.trim_end_matches('=').as_bytes().to_vec()),
            ("{B64}", b64.clone().into_bytes()),
            ("{UPSTREAM}", self.upstream.to_string().into_bytes()),
            ("{HUGE_BASIC}", huge.into_bytes()),
            (
                "{HUGE_HEADER}",
                format!("X-Pad: {}\r\n", "p".repeat(512 * 1024)).into_bytes(),
            ),
            (
                "{LONG_PATH}",
                format!("/api/{}", "a".repeat(70 * 1024)).into_bytes(),
            ),
        ];
        let mut out = template.to_vec();
        for (from, to) in &simple {
            out = replace(&out, from.as_bytes(), to);
        }
        // `{b64:TEXT}`: TEXT has no braces once `{KEY}` is expanded.
        while let Some(start) = find(&out, b"{b64:") {
            let end = start + find(&out[start..], b"}").expect("closed {b64:");
            let encoded = STANDARD.encode(&out[start + 5..end]);
            let mut next = out[..start].to_vec();
            next.extend_from_slice(encoded.as_bytes());
            next.extend_from_slice(&out[end + 1..]);
            out = next;
        }
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(at) = find(rest, from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Writes `bytes` (ignoring a write cut short by the server) and reads until
/// the server closes or resets the connection. `Err` if it stays open.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (mut read, mut write) = stream.split();
    let writer = async {
        let _ = write.write_all(bytes).await;
    };
    let reader = async {
        let mut all = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => return all,
                Ok(n) => all.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let both = async { tokio::join!(writer, reader).1 };
    tokio::time::timeout(PATIENCE, both)
        .await
        .map_err(|_| "the connection was left open".to_owned())
}

/// Every value of every header whose name, lower-cased with `_` read as
/// `-`, is `name`.
fn folded<'a>(seen: &'a Recorded, name: &str) -> Vec<&'a str> {
    seen.headers
        .iter()
        .filter(|(n, _)| n.to_ascii_lowercase().replace('_', "-") == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The invariant for every request the upstream receives in this file:
/// alice's scope, alice's identity exactly once, no credential, nothing
/// forged.
fn check_invariant(seen: &Recorded, id: &str) -> Result<(), String> {
    if !seen.target.starts_with("/api/") {
        return Err(format!("out of scope: {}", seen.target));
    }
    if folded(seen, "x-haplo-user") != ["alice"] {
        return Err(format!("identity: {:?}", seen.headers));
    }
    if folded(seen, "x-haplo-api-key-id") != [id] {
        return Err(format!("key id: {:?}", seen.headers));
    }
    if !seen.all("authorization").is_empty() || !seen.all("x-oneis-key").is_empty() {
        return Err(format!("credential forwarded: {:?}", seen.headers));
    }
    // No case here upgrades in scope: a relayed upgrade other than a
    // WebSocket would be a tunnel past keygate's checks.
    let upgrade = seen.all("upgrade");
    if upgrade.iter().any(|u| !u.eq_ignore_ascii_case("websocket"))
        || !seen.all("http2-settings").is_empty()
    {
        return Err(format!("upgrade forwarded: {:?}", seen.headers));
    }
    let forged = seen.headers.iter().any(|(_, v)| {
        let v = v.to_ascii_lowercase();
        v.contains("mallory") || v.contains("forged")
    });
    if forged {
        return Err(format!("forged value forwarded: {:?}", seen.headers));
    }
    Ok(())
}

/// Whether `resp` is a bare answer hyper wrote itself (no body, no type).
fn is_bare(resp: &Resp) -> bool {
    resp.body.is_empty() && resp.header("content-type").is_none()
}

fn check_answer(expected: Answer, got: &Resp) -> Result<(), String> {
    let describe = || format!("{} {:?} {}", got.status, got.headers, got.text());
    if got.header("www-authenticate").is_some() {
        return Err(format!("WWW-Authenticate: {}", describe()));
    }
    let json_kind = || {
        serde_json::from_slice::<serde_json::Value>(&got.body)
            .ok()
            .and_then(|b| b["kind"].as_str().map(str::to_owned))
    };
    let is_json = got.header("content-type") == Some("application/json; charset=utf-8");
    let fine = match expected {
        Answer::Ok => got.status == 200 && got.text() == "ok",
        Answer::Refused(status, kind) => {
            got.status == status && is_json && json_kind().as_deref() == Some(kind)
        }
        Answer::Bad => {
            got.status == 400
                && (is_bare(got) || (is_json && json_kind().as_deref() == Some("BAD-REQUEST")))
        }
        Answer::TooLarge => matches!(got.status, 413 | 414 | 431) && is_bare(got),
    };
    if fine {
        Ok(())
    } else {
        Err(format!("expected {expected:?}, got {}", describe()))
    }
}

/// Checks the answers on one connection against the expected list.
fn check_answers(expected: &[Answer], answer: &[u8]) -> Result<(), String> {
    let mut rest = answer.to_vec();
    let mut got = Vec::new();
    while !rest.is_empty() {
        let resp = Resp::parse(&rest)
            .ok_or_else(|| format!("unparsable answer: {:?}", String::from_utf8_lossy(&rest)))?;
        rest = resp.rest.clone();
        got.push(resp);
    }
    if got.len() > expected.len() {
        return Err(format!(
            "{} answers, expected {}: {:?}",
            got.len(),
            expected.len(),
            got.iter().map(|r| r.status).collect::<Vec<_>>()
        ));
    }
    for (i, want) in expected.iter().enumerate() {
        match got.get(i) {
            Some(resp) => check_answer(*want, resp).map_err(|e| format!("answer {i}: {e}"))?,
            // Only a last answer of "hyper refuses it" may be a bare close.
            None if i == expected.len() - 1 && matches!(want, Answer::Bad | Answer::TooLarge) => {}
            None => return Err(format!("answer {i} missing (expected {want:?})")),
        }
    }
    Ok(())
}

/// Checks what the upstream received for one case: `target` or
/// `target|body` each.
fn check_upstream(expected: &[&str], seen: &[Recorded], id: &str) -> Result<(), String> {
    for record in seen {
        check_invariant(record, id)?;
    }
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    let wanted: Vec<&str> = expected
        .iter()
        .map(|e| e.split_once('|').map_or(*e, |(t, _)| t))
        .collect();
    if targets != wanted {
        return Err(format!("upstream saw {targets:?}, expected {wanted:?}"));
    }
    for (record, want) in seen.iter().zip(expected) {
        if let Some((_, body)) = want.split_once('|') {
            if record.body != body.as_bytes() {
                return Err(format!(
                    "upstream body {:?}, expected {body:?}",
                    String::from_utf8_lossy(&record.body)
                ));
            }
        }
    }
    Ok(())
}

async fn setup() -> (RecordingUpstream, TestProxy, Env) {
    let upstream = RecordingUpstream::start().await;
    // A high failure limit: the corpus sends many wrong keys on purpose.
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .throttle(10_000, 300)
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let env = Env {
        key: key.key,
        id: key.id,
        upstream: upstream.addr,
    };
    (upstream, proxy, env)
}

#[test]
fn the_corpus_has_at_least_sixty_hostile_requests_with_unique_names() {
    assert!(CORPUS.len() >= 60, "{}", CORPUS.len());
    let mut names: Vec<&str> = CORPUS.iter().map(|c| c.0).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CORPUS.len(), "case names are unique");
}

#[tokio::test]
async fn every_hostile_request_gets_its_answer_and_the_upstream_sees_only_alice_in_scope() {
    let (upstream, proxy, env) = setup().await;
    let mut failures = Vec::new();
    for (name, answers, forwarded, template) in CORPUS {
        let before = upstream.seen().len();
        let bytes = env.expand(template);
        let result = match exchange(proxy.proxy_addr, &bytes).await {
            Ok(answer) => check_answers(answers, &answer),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            failures.push(format!("{name}: {e}"));
        }
        if let Err(e) = check_upstream(forwarded, &upstream.seen()[before..], &env.id) {
            failures.push(format!("{name}: {e}"));
        }
    }
    // keygate is still serving after all of it.
    let resp = proxy.send(Req::get("/api/after").basic(&env.key)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CORPUS.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Cases that need another configuration or a raw upstream
// ---------------------------------------------------------------------------

#[tokio::test]
async fn under_anonymous_forward_a_pipelined_keyless_request_carries_no_identity() {
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("anonymous = \"forward\"")
        .start()
        .await;
    let key = proxy.create_key("alice", "/api/").await;
    let env = Env {
        key: key.key.clone(),
        id: key.id.clone(),
        upstream: upstream.addr,
    };
    let bytes = env.expand(
        b"GET /api/a HTTP/1.1\r\n{HOST}{AUTH}\r\n\
          GET /secret HTTP/1.1\r\n{HOST}X-Haplo-User: alice\r\nx_haplo_api_key_id: {KEY}\r\n\r\n\
          GET /secret HTTP/1.1\r\n{HOST}X-ONEIS-Key: 0123456789ABCDEF0123456789ABCDEF0123456789AB\r\n{CLOSE}",
    );
    let answer = exchange(proxy.proxy_addr, &bytes).await.unwrap();
    check_answers(&[OK, OK, INVALID], &answer).unwrap();
    let first = upstream.next().await;
    assert_eq!(first.target, "/api/a");
    check_invariant(&first, &key.id).unwrap();
    let second = upstream.next().await;
    assert_eq!(second.target, "/secret");
    assert!(
        folded(&second, "x-haplo-user").is_empty()
            && folded(&second, "x-haplo-api-key-id").is_empty(),
        "the keyless request inherited an identity: {:?}",
        second.headers
    );
    assert_eq!(upstream.seen().len(), 2, "the wrong key was forwarded");
}

/// A raw upstream: answers each connection's first request with 200 once
/// its chunked body has ended, and reports the raw bytes it received.
async fn raw_upstream() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let head_end = find(&all, b"\r\n\r\n");
                    let done = head_end.is_some_and(|h| {
                        find(&all[h..], b"\r\n0\r\n").is_some() && all.ends_with(b"\r\n\r\n")
                    });
                    if done {
                        break;
                    }
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => all.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = tx.send(all);
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn request_trailers_cannot_carry_an_identity_header_to_the_upstream() {
    let (addr, mut received) = raw_upstream().await;
    let proxy = TestProxy::builder().upstream(addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let env = Env {
        key: key.key,
        id: key.id,
        upstream: addr,
    };
    let bytes = env.expand(
        b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\n\
          Trailer: X-Haplo-User, X-Haplo-Api-Key-Id\r\nTE: trailers\r\n{CLOSE}\
          5\r\nhello\r\n0\r\nX-Haplo-User: mallory\r\nX-Haplo-Api-Key-Id: forged\r\n\r\n",
    );
    let answer = exchange(proxy.proxy_addr, &bytes).await.unwrap();
    check_answers(&[OK], &answer).unwrap();
    let raw = tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("the upstream receives the request")
        .expect("upstream running");
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("hello"), "{text}");
    assert!(
        !text.contains("mallory") && !text.contains("forged"),
        "a trailer reached the upstream: {text}"
    );
    assert_eq!(text.matches("x-haplo-user:").count(), 1, "{text}");
}

#[tokio::test]
async fn a_credential_header_under_an_underscore_alias_is_not_forwarded() {
    // `X_ONEIS_Key` is not a key header to keygate or Haplo, but an
    // application stack that folds `_` into `-` (CGI, Rack, WSGI, PHP all
    // map both spellings to `HTTP_X_ONEIS_KEY`) would read it as one: the
    // secret must not leave keygate under either spelling (SPEC 6:
    // "Authorization and X-ONEIS-Key are not forwarded").
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let alice = proxy.create_key("alice", "/api/").await;
    let bob = proxy.create_key("bob", "/").await;
    for name in ["X_ONEIS_Key", "x-oneis_key", "X_ONEIS-KEY"] {
        let resp = proxy
            .send(Req::get("/api/x").basic(&alice.key).header(name, &bob.key))
            .await;
        assert_eq!(resp.status, 200, "{name}: {}", resp.text());
        let seen = upstream.next().await;
        assert!(
            folded(&seen, "x-oneis-key").is_empty(),
            "{name} forwarded bob's key to the upstream: {:?}",
            seen.headers
        );
    }
}

#[tokio::test]
async fn a_malformed_chunked_request_body_is_a_bad_request_not_a_bad_gateway() {
    // keygate forwards as soon as it has read a request head, so a chunked
    // body that turns out to be malformed fails while it streams to the
    // upstream. That is the client's fault: it must be answered 400, not a
    // 502 BAD-GATEWAY that blames the upstream (and logs an upstream
    // failure a client can trigger at will).
    let (upstream, proxy, env) = setup().await;
    let bodies: [&[u8]; 4] = [
        b"fffffffffffffffff1\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
    ];
    let mut failures = Vec::new();
    for body in bodies {
        let mut bytes = env
            .expand(b"POST /api/x HTTP/1.1\r\n{HOST}{AUTH}Transfer-Encoding: chunked\r\n{CLOSE}");
        bytes.extend_from_slice(body);
        let label = String::from_utf8_lossy(body).escape_debug().to_string();
        match exchange(proxy.proxy_addr, &bytes).await {
            Ok(answer) => {
                if let Err(e) = check_answers(&[Bad], &answer) {
                    failures.push(format!("{label}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    for seen in upstream.seen() {
        check_invariant(&seen, &env.id).unwrap();
        assert_ne!(seen.body, b"hello", "a malformed body was forwarded whole");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn an_absolute_form_target_with_an_empty_path_and_a_query_is_checked_and_forwarded_as_slash_query(
) {
    // `http://host?q` has an empty path, which means `/` (RFC 9112 3.2.2):
    // the canonical target is `/?q`, and that is what reaches the upstream.
    // The scope must be checked against that same string (SPEC 4: what was
    // checked is byte for byte what is forwarded), so a key scoped to `/`
    // admits it.
    let mut upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .proxy("anonymous = \"forward\"")
        .start()
        .await;
    let key = proxy.create_key("alice", "/").await;
    let env = Env {
        key: key.key,
        id: key.id,
        upstream: upstream.addr,
    };
    for auth in ["{AUTH}", ""] {
        let template = format!("GET http://app.example?x=1 HTTP/1.1\r\n{{HOST}}{auth}{{CLOSE}}");
        let answer = exchange(proxy.proxy_addr, &env.expand(template.as_bytes()))
            .await
            .unwrap();
        let resp = Resp::parse(&answer).expect("a response");
        assert_eq!(resp.status, 200, "with {auth:?}: {}", resp.text());
        assert_eq!(upstream.next().await.target, "/?x=1", "with {auth:?}");
    }
}
