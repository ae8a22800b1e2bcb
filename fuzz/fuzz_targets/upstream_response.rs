//! Fuzzes the upstream leg's response reading (`proxy::upstream::response`
//! and `proxy::upstream::decoder`) on arbitrary bytes as the upstream's
//! byte stream: parse the head, pick the framing, decode the body.
//!
//! Input layout: byte 0 bit 0 says the request was `HEAD`; bytes 1-4 are two
//! little-endian u16 split offsets; the rest is the stream. Checked:
//!
//! - the head parsed from any prefix is "incomplete" or the same as from the
//!   whole stream (reads may stop anywhere);
//! - the framing matches an independent model of the module doc (RFC 9112
//!   6.3 made strict): every conflict the doc says is refused is refused,
//!   with an applicable error, and nothing else is;
//! - the body decoded from the stream fed whole, in two pieces, in three
//!   pieces (and byte by byte when short) is the same: data, trailers, end,
//!   bytes after the end, or error class;
//! - the decoded data never exceeds the input; a `Content-Length` body is
//!   exactly that many bytes (or all of a shorter input, truncated); a
//!   close-delimited body is all of the input; a chunked body consumed at
//!   least a last chunk, and decoding just what it consumed gives the same.

#![no_main]

use keygate::fuzzing::{
    decode_body, parse_response_head, BodyEnd, BodyFraming, DecodedBody, FramingError, HeadError,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 5 {
        return;
    }
    let head_request = input[0] & 1 == 1;
    let a = usize::from(u16::from_le_bytes([input[1], input[2]]));
    let b = usize::from(u16::from_le_bytes([input[3], input[4]]));
    check(&input[5..], head_request, a, b);
});

fn check(stream: &[u8], head_request: bool, a: usize, b: usize) {
    let whole = parse_response_head(stream, head_request);

    // A read may stop anywhere: a prefix is incomplete, or decides the same.
    let cut = a % (stream.len() + 1);
    match (parse_response_head(&stream[..cut], head_request), &whole) {
        (Ok(None), _) => {}
        (Ok(Some(part)), Ok(Some(all))) => assert_eq!(
            (part.len, part.status, part.framing, part.keep_alive),
            (all.len, all.status, all.framing, all.keep_alive),
            "a prefix parsed differently"
        ),
        (Err(part), Err(all)) => assert_eq!(part, *all, "a prefix failed differently"),
        (part, all) => panic!("prefix {part:?} but whole {all:?}"),
    }

    let model = keygate_fuzz::framing::model(stream, head_request);
    let head = match (whole, model) {
        (Ok(None), _) => return,
        (Ok(Some(head)), None) => panic!("accepted a head httparse refuses: {head:?}"),
        (Err(_), None) => return,
        (Ok(Some(head)), Some(model)) => {
            assert_eq!(
                model.errors,
                Vec::<FramingError>::new(),
                "accepted a conflict"
            );
            assert!(!model.invalid_field, "accepted an invalid field");
            assert_eq!(head.len, model.len);
            assert_eq!(head.status, model.status);
            assert_eq!(
                (head.framing, head.keep_alive),
                (model.framing, model.keep_alive)
            );
            head
        }
        (Err(HeadError::Framing(error)), Some(model)) => {
            assert!(
                model.errors.contains(&error),
                "refused with {error:?}; the model says {:?}",
                model.errors
            );
            return;
        }
        (Err(HeadError::Parse), Some(model)) => {
            assert!(model.invalid_field, "refused a head httparse accepted");
            return;
        }
        (Err(HeadError::Status), Some(model)) => {
            assert!(model.status < 100, "refused status {}", model.status);
            return;
        }
        (Err(HeadError::TooLarge), Some(_)) => return,
    };

    let body = &stream[head.len..];
    check_body(head.framing, body, a, b);
}

/// Decodes `body` with `framing` whole and split, and checks the framing's
/// promises.
fn check_body(framing: BodyFraming, body: &[u8], a: usize, b: usize) {
    let whole = decode_body(framing, &[body]);
    let (mut x, mut y) = (a % (body.len() + 1), b % (body.len() + 1));
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    let two = decode_body(framing, &[&body[..x], &body[x..]]);
    assert_eq!(two, whole, "split in two at {x}");
    let three = decode_body(framing, &[&body[..x], &body[x..y], &body[y..]]);
    assert_eq!(three, whole, "split in three at {x}, {y}");
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode_body(framing, &bytes), whole, "byte by byte");
    }

    let DecodedBody {
        data,
        trailers,
        end,
    } = &whole;
    assert!(data.len() <= body.len(), "more data than input");
    match framing {
        BodyFraming::Length(n) => match end {
            BodyEnd::Ended { rest } => {
                assert_eq!(data.len() as u64, n);
                assert_eq!(&body[..data.len()], &data[..]);
                assert_eq!(&body[data.len()..], &rest[..]);
            }
            BodyEnd::Truncated => {
                assert!((body.len() as u64) < n);
                assert_eq!(&data[..], body);
            }
            other => panic!("Content-Length body ended with {other:?}"),
        },
        BodyFraming::Close => {
            assert_eq!(&data[..], body);
            assert_eq!(*end, BodyEnd::Eof);
        }
        BodyFraming::Chunked => {
            for (name, _) in trailers {
                assert!(
                    !keygate_fuzz::framing::FORBIDDEN_TRAILERS.contains(&name.as_str()),
                    "forbidden trailer {name} passed"
                );
            }
            match end {
                BodyEnd::Ended { rest } => {
                    // At least `0\r\n\r\n` framed the data.
                    assert!(data.len() + rest.len() + 5 <= body.len());
                    assert!(body.ends_with(rest));
                    let consumed = &body[..body.len() - rest.len()];
                    let again = decode_body(framing, &[consumed]);
                    assert_eq!(again.data, *data);
                    assert_eq!(again.trailers, *trailers);
                    assert_eq!(again.end, BodyEnd::Ended { rest: Vec::new() });
                }
                BodyEnd::Truncated | BodyEnd::Error(_) => {}
                BodyEnd::Eof => panic!("a chunked body ended at EOF"),
            }
        }
    }
}
