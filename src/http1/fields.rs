//! A parsed head's header lines as byte ranges, for both legs.
//!
//! httparse hands out header lines as slices of the read buffer, but the
//! head is only split off that buffer (and frozen into one `Bytes` that
//! every value then slices) once the parse's borrow has ended, so each line
//! is kept as ranges in between.
//!
//! Neither array here is zeroed first. httparse fills an uninitialised
//! array of [`MAX_HEADERS`] lines, and the ranges go into an `ArrayVec`
//! holding only the lines the head has. Two zeroed arrays of 100 lines
//! (6.4 KB) per head cost more instructions than parsing the head itself:
//! callgrind counted the `memset` at 16% of a forwarded request's.

use std::mem::MaybeUninit;

use arrayvec::ArrayVec;

use super::range;

/// Most header lines in a head, request or response (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;

/// Byte ranges of one header line within its head.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

/// The header lines of one head, in the order received.
pub(crate) type Fields = ArrayVec<Field, MAX_HEADERS>;

/// Room for httparse to parse a head's header lines into, left
/// uninitialised (see the module doc).
pub(crate) fn room<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Appends to `fields` the ranges within `buf` of `headers`, which
/// httparse parsed from it. (Filled in place: returning the `ArrayVec`
/// would copy all 3.2 KB of it.) httparse never returns more lines than
/// the room it was given; any beyond the capacity would be dropped rather
/// than panic.
pub(crate) fn record(fields: &mut Fields, buf: &[u8], headers: &[httparse::Header<'_>]) {
    for header in headers {
        let field = Field {
            name: range(buf, header.name.as_bytes()),
            value: range(buf, header.value),
        };
        if fields.try_push(field).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_index_the_buffer_the_lines_came_from() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Two:  b c\r\n\r\n";
        let mut room = room();
        let mut request = httparse::Request::new(&mut []);
        let parsed = request.parse_with_uninit_headers(buf, &mut room);
        assert!(matches!(parsed, Ok(httparse::Status::Complete(_))));
        let mut fields = Fields::new();
        record(&mut fields, buf, request.headers);
        let lines: Vec<(&[u8], &[u8])> = fields
            .iter()
            .map(|f| (&buf[f.name.0..f.name.1], &buf[f.value.0..f.value.1]))
            .collect();
        assert_eq!(
            lines,
            [(&b"Host"[..], &b"a"[..]), (&b"X-Two"[..], &b"b c"[..])]
        );
    }

    #[test]
    fn more_lines_than_the_room_is_too_many_headers() {
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for n in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-{n}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let mut room = room();
        let mut request = httparse::Request::new(&mut []);
        assert_eq!(
            request.parse_with_uninit_headers(&buf, &mut room),
            Err(httparse::Error::TooManyHeaders)
        );
    }
}
