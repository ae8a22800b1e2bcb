use super::*;

/// Decodes `input` fed one byte at a time (the worst split) and all at
/// once; both must agree. Returns the body, the trailers and what was
/// left after the end.
fn decode_all(
    framing: Framing,
    input: &[u8],
) -> Result<(Vec<u8>, HeaderMap, Vec<u8>), FramingError> {
    let whole = run(framing, input, input.len())?;
    let bytewise = run(framing, input, 1)?;
    assert_eq!(whole, bytewise, "byte-at-a-time decoding differs");
    Ok(whole)
}

fn run(
    framing: Framing,
    input: &[u8],
    step: usize,
) -> Result<(Vec<u8>, HeaderMap, Vec<u8>), FramingError> {
    let mut decoder = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut trailers = HeaderMap::new();
    let mut fed = 0;
    loop {
        match decoder.decode(&mut buf)? {
            Decoded::Data(data) => {
                assert!(!data.is_empty());
                body.extend_from_slice(&data);
            }
            Decoded::Trailers(t) => trailers = t,
            Decoded::End => {
                let mut rest = buf.to_vec();
                rest.extend_from_slice(&input[fed..]);
                return Ok((body, trailers, rest));
            }
            Decoded::NeedMore => {
                if fed == input.len() {
                    return match decoder.eof() {
                        Ok(()) => Ok((body, trailers, Vec::new())),
                        Err(()) => Err(FramingError::InvalidChunkEnd),
                    };
                }
                let end = (fed + step).min(input.len());
                buf.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

#[test]
fn content_length_stops_at_the_length() {
    let (body, _, rest) = decode_all(Framing::Length(5), b"helloHTTP/1.1").unwrap();
    assert_eq!((&body[..], &rest[..]), (&b"hello"[..], &b"HTTP/1.1"[..]));
}

#[test]
fn a_zero_length_body_is_done_at_once() {
    let decoder = Decoder::new(Framing::Length(0));
    assert!(decoder.is_done());
    assert_eq!(decoder.remaining(), Some(0));
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let input = b"5;name=value;other\r\nhello\r\n6 ; q=\"a b\"\r\n world\r\n0;last\r\nX-Checksum: abc\r\nContent-Length: 99\r\n\r\nNEXT";
    let (body, trailers, rest) = decode_all(Framing::Chunked, input).unwrap();
    assert_eq!(body, b"hello world");
    assert_eq!(trailers.get("x-checksum").unwrap(), "abc");
    assert!(
        !trailers.contains_key("content-length"),
        "framing trailers are dropped"
    );
    assert_eq!(rest, b"NEXT");
}

#[test]
fn chunked_without_trailers_ends_at_the_empty_line() {
    let (body, trailers, rest) =
        decode_all(Framing::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!(body, b"0123456789");
    assert!(trailers.is_empty() && rest.is_empty());
}

#[test]
fn malformed_chunked_framing_is_an_error() {
    let cases: [&[u8]; 13] = [
        b"5\nhello\r\n0\r\n\r\n",          // bare LF
        b"0\r\n\n",                        // bare LF ending the trailer section
        b"0\r\nX-T: 1\n\r\n",              // bare LF ending a trailer
        b"0\r\nX-T: 1\r\n\n",              // bare LF after a trailer
        b"5\r\nhelloXX0\r\n\r\n",          // no CRLF after data
        b"5\rXhello\r\n0\r\n\r\n",         // bare CR
        b"g\r\n",                          // not hex
        b"\r\n",                           // no digits
        b"-5\r\n",                         // sign
        b"0x5\r\n",                        // prefix
        b"10000000000000000\r\n",          // 17 digits: more than a u64
        b"5 x\r\nhello\r\n0\r\n\r\n",      // junk before extensions
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n", // NUL in an extension
    ];
    for input in cases {
        assert!(
            decode_all(Framing::Chunked, input).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_largest_chunk_size_parses_without_overflow() {
    assert_eq!(chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
    assert_eq!(chunk_size(b"0000000000000001"), Ok(1));
}

#[test]
fn an_endless_size_line_or_trailer_section_is_refused() {
    let mut long = b"5;".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
    assert_eq!(
        decode_all(Framing::Chunked, &long),
        Err(FramingError::ChunkLineTooLong)
    );
    let mut trailer = b"0\r\nX-A: ".to_vec();
    trailer.extend(std::iter::repeat_n(b'a', MAX_TRAILER_BYTES));
    assert_eq!(
        decode_all(Framing::Chunked, &trailer),
        Err(FramingError::ChunkLineTooLong)
    );
}

#[test]
fn a_close_delimited_body_ends_at_eof_and_others_are_truncated() {
    let (body, _, _) = decode_all(Framing::Close, b"all of it").unwrap();
    assert_eq!(body, b"all of it");
    assert!(decode_all(Framing::Length(10), b"short").is_err());
    assert!(decode_all(Framing::Chunked, b"5\r\nhello\r\n").is_err());
}

#[test]
fn a_size_line_is_refused_at_its_first_impossible_byte() {
    for partial in [
        &b"0iden"[..],
        b"x",
        b"5 x",
        b"12345678901234567",
        b"5;a\x00",
    ] {
        let mut buf = BytesMut::from(partial);
        assert!(
            Decoder::new(Framing::Chunked).decode(&mut buf).is_err(),
            "waited on {:?}",
            String::from_utf8_lossy(partial)
        );
    }
    for partial in [&b"5"[..], b"5;ext=1", b"5 ", b"5\r", b"ab;"] {
        let mut buf = BytesMut::from(partial);
        assert!(
            matches!(
                Decoder::new(Framing::Chunked).decode(&mut buf),
                Ok(Decoded::NeedMore)
            ),
            "refused {:?}",
            String::from_utf8_lossy(partial)
        );
    }
}
