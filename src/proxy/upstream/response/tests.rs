use super::*;
use crate::http1::fields::MAX_HEADERS;

fn parse_str(head: &str, head_request: bool) -> Result<Option<Head>, ExchangeError> {
    parse(&mut BytesMut::from(head.as_bytes()), head_request)
}

fn framing(head: &str) -> Result<(Framing, bool), String> {
    match parse_str(head, false) {
        Ok(Some(head)) => Ok((head.framing, head.keep_alive)),
        Ok(None) => Err("partial".into()),
        Err(error) => Err(error.to_string()),
    }
}

#[test]
fn framing_follows_rfc_9112() {
    let ok = |head: &str, want: (Framing, bool)| assert_eq!(framing(head), Ok(want), "{head}");
    ok(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        (Framing::Length(5), true),
    );
    ok(
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\ncontent-length: 5\r\n\r\n",
        (Framing::Length(5), true),
    );
    ok(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n",
        (Framing::Chunked, true),
    );
    ok("HTTP/1.1 200 OK\r\n\r\n", (Framing::Close, false));
    ok(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        (Framing::Length(1), false),
    );
    ok(
        "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
        (Framing::Length(1), false),
    );
    ok(
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n",
        (Framing::Length(1), true),
    );
    ok(
        "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n",
        (Framing::Length(0), true),
    );
    ok(
        "HTTP/1.1 304 Not Modified\r\n\r\n",
        (Framing::Length(0), true),
    );
    ok(
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        (Framing::Length(0), true),
    );
}

#[test]
fn a_head_response_has_no_body_whatever_its_length_says() {
    let head = parse_str("HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", true)
        .unwrap()
        .unwrap();
    assert_eq!(head.framing, Framing::Length(0));
    assert_eq!(head.headers["content-length"], "500");
}

#[test]
fn untrustworthy_framing_is_refused() {
    let cases = [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        "SSH-2.0-OpenSSH_9.9\r\n\r\n",
    ];
    for head in cases {
        assert!(framing(head).is_err(), "accepted {head:?}");
    }
}

#[test]
fn a_partial_head_waits_and_a_huge_one_is_refused() {
    assert_eq!(
        framing("HTTP/1.1 200 OK\r\nContent-Le"),
        Err("partial".into())
    );
    let mut huge = String::from("HTTP/1.1 200 OK\r\nX-Big: ");
    huge.push_str(&"a".repeat(MAX_HEAD_BYTES));
    assert!(matches!(
        parse_str(&huge, false),
        Err(ExchangeError::HeadTooLarge)
    ));
    let mut many = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert!(matches!(
        parse_str(&many, false),
        Err(ExchangeError::HeadTooLarge)
    ));
}

#[test]
fn values_and_reason_survive_and_the_rest_of_the_buffer_stays() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 418 Short And Stout\r\nX-A: one\r\nx-a: two\r\nContent-Length: 2\r\n\r\nhi"[..],
    );
    let head = parse(&mut buf, false).unwrap().unwrap();
    assert_eq!(head.status, 418);
    let all: Vec<_> = head.headers.get_all("x-a").iter().collect();
    assert_eq!(all, ["one", "two"]);
    assert_eq!(head.reason.unwrap().as_bytes(), b"Short And Stout");
    assert_eq!(&buf[..], b"hi");
    let head = parse_str("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false)
        .unwrap()
        .unwrap();
    assert!(head.reason.is_none());
}

/// The names of the fields a parsed head hands on, in order.
fn kept(head: &str) -> Vec<String> {
    let head = parse_str(head, false).unwrap().unwrap();
    head.headers.keys().map(|name| name.to_string()).collect()
}

#[test]
fn hop_by_hop_fields_and_those_named_in_connection_are_left_out() {
    assert_eq!(
        kept(
            "HTTP/1.1 200 OK\r\nX-Early: 1\r\nConnection: keep-alive, X-Early\r\n\
             Keep-Alive: timeout=5\r\nUpgrade: h2c\r\nTrailer: x\r\nTE: trailers\r\n\
             Proxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\n\
             HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nConnection: x-late\r\n\
             X-Late: 1\r\nX-Kept: 1\r\nContent-Length: 1\r\n\r\n"
        ),
        ["x-kept", "content-length"]
    );
    // Chunked framing is read, and the field does not go on.
    assert_eq!(
        kept("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kept: 1\r\n\r\n"),
        ["x-kept"]
    );
    // The client's framing depends on Content-Length: naming it is ignored.
    assert_eq!(
        kept("HTTP/1.1 200 OK\r\nConnection: content-length, close\r\nContent-Length: 1\r\n\r\n"),
        ["content-length"]
    );
    // Nor Host, on either leg (the same rule as the request's).
    assert_eq!(
        kept("HTTP/1.1 200 OK\r\nConnection: host\r\nHost: a\r\nContent-Length: 1\r\n\r\n"),
        ["host", "content-length"]
    );
    // Nothing to leave out: the map is the head.
    assert_eq!(
        kept("HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: 1\r\nX-A: 2\r\nX-B: 3\r\n\r\n"),
        ["x-a", "x-b"]
    );
}

#[test]
fn a_switching_response_keeps_its_upgrade_for_the_relay() {
    assert_eq!(
        kept(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Gone\r\n\
             Upgrade: websocket\r\nX-Gone: 1\r\nSec-WebSocket-Accept: abc\r\n\r\n"
        ),
        ["upgrade", "sec-websocket-accept"]
    );
}

#[test]
fn a_switching_response_relays_only_its_first_upgrade_line() {
    // The relay checks the first line against the client's offer; a
    // second line must not name another protocol (h2c) past that check.
    let head = parse_str(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\
         Upgrade: websocket\r\nUpgrade: h2c\r\n\r\n",
        false,
    )
    .unwrap()
    .unwrap();
    let upgrades: Vec<_> = head.headers.get_all(UPGRADE).iter().collect();
    assert_eq!(upgrades, ["websocket"]);
}
