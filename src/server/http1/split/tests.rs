use super::*;

fn one(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> ParsedRequest {
    ParsedRequest {
        method: method.as_bytes().to_vec(),
        target: target.as_bytes().to_vec(),
        version: 1,
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn pipelined_requests_split_in_order_with_their_bodies() {
    let input = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHOST: x\r\nX-Z: 1\r\nX-A: 2\r\n\r\n";
    let (requests, end) = split_requests(input);
    assert_eq!(end, End::Clean);
    assert_eq!(
        requests,
        [
            one(
                "POST",
                "/a",
                &[("host", "x"), ("content-length", "5")],
                "hello"
            ),
            one(
                "GET",
                "/b",
                &[("host", "x"), ("x-z", "1"), ("x-a", "2")],
                ""
            ),
        ]
    );
}

#[test]
fn a_chunked_body_is_dechunked_and_its_trailers_dropped() {
    let input = b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let (requests, end) = split_requests(input);
    assert_eq!(end, End::Clean);
    assert_eq!(requests[0].body, b"hello world");
}

#[test]
fn connection_close_and_http10_end_the_split() {
    let (requests, end) =
        split_requests(b"GET /a HTTP/1.1\r\nConnection: x, Close\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!((requests.len(), end), (1, End::Closed));
    let (requests, end) = split_requests(b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!(
        (requests.len(), requests[0].version, end),
        (1, 0, End::Closed)
    );
    let (requests, end) =
        split_requests(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!((requests.len(), end), (2, End::Clean));
}

#[test]
fn both_framings_are_refused() {
    let (requests, end) = split_requests(
        b"GET /ok HTTP/1.1\r\n\r\nPOST /a HTTP/1.1\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    );
    assert_eq!((requests.len(), end), (1, End::Refused));
    assert_eq!(requests[0].target, b"/ok");
}

#[test]
fn a_cut_head_or_body_is_incomplete() {
    for input in [
        &b"GET /a HTTP/1.1\r\nHost: x\r\n"[..],
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        assert_eq!(
            split_requests(input),
            (vec![], End::Incomplete),
            "{input:?}"
        );
    }
}

#[test]
fn framing_the_server_cannot_trust_is_refused() {
    let refused: &[&[u8]] = &[
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nContent-Length: -5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nContent-Length: 0x5\r\n\r\nhello",
        b"POST /a HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
        b"GET /a HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX-A: 1\rX-B: 2\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX-A: a\0b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
        b"GET /a HTTP/1.1\r\nX-A : 1\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n12345678901234567\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    ];
    for input in refused {
        let (requests, end) = split_requests(input);
        assert_eq!(
            (requests.len(), end),
            (0, End::Refused),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_head_over_the_limit_is_refused() {
    let mut input = b"GET /a HTTP/1.1\r\nX-Pad: ".to_vec();
    input.resize(MAX_HEAD_BYTES + 10, b'p');
    assert_eq!(split_requests(&input), (vec![], End::Refused));
    let mut input = b"GET /".to_vec();
    input.resize(MAX_HEAD_BYTES + 10, b'a');
    assert_eq!(split_requests(&input), (vec![], End::Refused));
}

#[test]
fn the_limits_pick_their_status() {
    let mut buf = BytesMut::from(&b"GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..]);
    assert_eq!(
        head::parse(&mut buf, 16, |_, _| {}).map(|h| h.is_some()),
        Err(head::HeadError::TargetTooLong)
    );
    let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaa"[..]);
    assert_eq!(
        head::parse(&mut buf, 20, |_, _| {}).map(|h| h.is_some()),
        Err(head::HeadError::TooLarge)
    );
}

#[test]
fn an_identical_repeated_content_length_is_seen_once() {
    let (requests, end) =
        split_requests(b"POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab");
    assert_eq!((requests.len(), end), (1, End::Clean));
    let lengths: Vec<_> = requests[0]
        .headers
        .iter()
        .filter(|(name, _)| name == b"content-length")
        .collect();
    assert_eq!(lengths.len(), 1, "{:?}", requests[0].headers);
    assert_eq!(requests[0].body, b"ab");
}

#[test]
fn nothing_after_a_connect_is_read_as_a_request() {
    let (requests, end) = split_requests(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    );
    assert_eq!((requests.len(), end), (1, End::Closed));
}

#[test]
fn trailing_empty_lines_are_no_request() {
    let (requests, end) = split_requests(b"GET / HTTP/1.1\r\n\r\n\r\n\n");
    assert_eq!((requests.len(), end), (1, End::Clean));
    let (requests, end) = split_requests(b"\r\n\n\r\n\n\r");
    assert_eq!((requests.len(), end), (0, End::Clean));
    let (requests, end) = split_requests(b"GET / HTTP/1.1\r\n\r\n\r\nGE");
    assert_eq!((requests.len(), end), (1, End::Incomplete));
}

#[test]
fn a_transfer_encoding_with_an_empty_element_is_refused() {
    for input in [
        &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nTransfer-Encoding: , chunked\r\n\r\n0\r\n\r\n",
    ] {
        assert_eq!(split_requests(input), (Vec::new(), End::Refused));
    }
}
