//! Round trip for the upstream leg's chunked decoder
//! (`proxy::upstream::decoder`): the fuzzer's bytes choose chunks,
//! extensions, trailers and a suffix; `keygate_fuzz::chunked::encode` writes
//! them validly; decoding the result, whole and split at two fuzzer-chosen
//! offsets, must give back exactly the data, the allowed trailers (forbidden
//! names dropped; compared per name since a `HeaderMap` groups by name),
//! and the suffix untouched after the end.

#![no_main]

use keygate::fuzzing::{decode_body, BodyEnd, BodyFraming};
use keygate_fuzz::chunked::{encode, per_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    if input.len() < 4 {
        return;
    }
    let a = usize::from(u16::from_le_bytes([input[0], input[1]]));
    let b = usize::from(u16::from_le_bytes([input[2], input[3]]));
    let encoded = encode(&input[4..]);
    let wire = &encoded.wire[..];
    let (mut x, mut y) = (a % (wire.len() + 1), b % (wire.len() + 1));
    if x > y {
        std::mem::swap(&mut x, &mut y);
    }
    for pieces in [vec![wire], vec![&wire[..x], &wire[x..y], &wire[y..]]] {
        let decoded = decode_body(BodyFraming::Chunked, &pieces);
        assert_eq!(decoded.data, encoded.data, "data differs ({x}, {y})");
        assert_eq!(
            decoded.end,
            BodyEnd::Ended {
                rest: encoded.suffix.clone()
            },
            "end differs ({x}, {y})"
        );
        assert_eq!(per_name(&decoded.trailers), per_name(&encoded.trailers));
    }
});
