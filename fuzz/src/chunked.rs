//! A valid chunked encoder driven by fuzzer bytes, for the round-trip
//! target: it writes every shape RFC 9112 7.1 allows and keygate's decoder
//! documents accepting (hex digits in either case with leading zeros up to
//! 16 digits, BWS and extensions after the size, trailer fields), so any
//! refusal or different result on decoding is a decoder bug.

/// What was encoded, and what decoding it must give back.
#[derive(Debug)]
pub struct Encoded {
    /// The chunked body followed by `suffix`.
    pub wire: Vec<u8>,
    /// The chunks' data, concatenated.
    pub data: Vec<u8>,
    /// The trailer fields the decoder must keep (forbidden names dropped),
    /// names lower-cased, in order.
    pub trailers: Vec<(String, Vec<u8>)>,
    /// The bytes after the body (the next response).
    pub suffix: Vec<u8>,
}

/// Reads fuzzer bytes as choices; zeros once they run out.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }
    fn pick<'b, T>(&mut self, from: &'b [T]) -> &'b T {
        &from[self.below(from.len())]
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken
    }
}

const NAMES: [&str; 8] = [
    "x-checksum",
    "Server-Timing",
    "etag",
    "X-A",
    "Content-Length",
    "transfer-encoding",
    "Connection",
    "Host",
];
const EXTENSIONS: [&str; 5] = [";a=b", "; name=\"q;uoted\"", ";x", ";ext=\t1 2", ";\u{e9}"];

/// Encodes chunks, trailers and a suffix chosen by `input`.
pub fn encode(input: &[u8]) -> Encoded {
    let mut c = Choices(input);
    let mut wire = Vec::new();
    let mut data = Vec::new();
    let chunks = c.below(6);
    for _ in 0..chunks {
        let len = 1 + c.below(200);
        let piece = c.take(len).to_vec();
        if piece.is_empty() {
            break;
        }
        size_line(&mut c, &mut wire, piece.len() as u64);
        wire.extend_from_slice(&piece);
        wire.extend_from_slice(b"\r\n");
        data.extend_from_slice(&piece);
    }
    size_line(&mut c, &mut wire, 0);
    let mut trailers = Vec::new();
    for _ in 0..c.below(5) {
        let name = *c.pick(&NAMES);
        // A value that starts and ends visible, spaces only inside.
        let mut value = vec![b'v'];
        for _ in 0..c.below(8) {
            value.push(*c.pick(b"abc 09;=,\"/\t"));
        }
        value.push(b'z');
        let gap = *c.pick(&[":", ": ", ":\t", ":  "]);
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(gap.as_bytes());
        wire.extend_from_slice(&value);
        wire.extend_from_slice(b"\r\n");
        let lower = name.to_ascii_lowercase();
        if !super::framing::FORBIDDEN_TRAILERS.contains(&lower.as_str()) {
            trailers.push((lower, value));
        }
    }
    wire.extend_from_slice(b"\r\n");
    let suffix = c.0.to_vec();
    wire.extend_from_slice(&suffix);
    Encoded {
        wire,
        data,
        trailers,
        suffix,
    }
}

/// `size` in hex (random case, leading zeros within 16 digits), maybe BWS
/// and an extension, then CRLF.
fn size_line(c: &mut Choices<'_>, wire: &mut Vec<u8>, size: u64) {
    let upper = c.byte() & 1 == 1;
    let digits = if upper {
        format!("{size:X}")
    } else {
        format!("{size:x}")
    };
    let zeros = c.below(17 - digits.len());
    wire.extend(std::iter::repeat_n(b'0', zeros));
    wire.extend_from_slice(digits.as_bytes());
    if c.byte() & 1 == 1 {
        wire.extend_from_slice(c.pick(&["", " ", "\t", " \t "]).as_bytes());
        wire.extend_from_slice(c.pick(&EXTENSIONS).as_bytes());
    }
    wire.extend_from_slice(b"\r\n");
}

/// Groups `(name, value)` pairs per name, values in order: the order a
/// `HeaderMap` keeps (it groups values by name, so the order across names
/// is not comparable).
pub fn per_name(fields: &[(String, Vec<u8>)]) -> std::collections::BTreeMap<&str, Vec<&[u8]>> {
    let mut map = std::collections::BTreeMap::<&str, Vec<&[u8]>>::new();
    for (name, value) in fields {
        map.entry(name.as_str()).or_default().push(value);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate::fuzzing::{decode_body, BodyEnd, BodyFraming};

    #[test]
    fn encoded_bodies_decode_to_their_data() {
        for seed in [
            &b""[..],
            b"\x03\x05hello\x01\x00\x02\x01",
            b"\xff\xff\xffabc\x04\x04",
        ] {
            let encoded = encode(seed);
            let decoded = decode_body(BodyFraming::Chunked, &[&encoded.wire]);
            assert_eq!(decoded.data, encoded.data);
            assert_eq!(
                decoded.end,
                BodyEnd::Ended {
                    rest: encoded.suffix.clone()
                }
            );
            assert_eq!(per_name(&decoded.trailers), per_name(&encoded.trailers));
        }
    }
}
