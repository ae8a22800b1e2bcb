//! The `Date` field both front ends add to a response that has none
//! (RFC 9110 6.6.1: an origin with a clock must send one; keygate answers
//! for the application when it refuses).
//!
//! Formatting an IMF-fixdate goes through `core::fmt` and allocates a
//! `String`: done per response it was about 2,000 instructions of an
//! HTTP/2 refusal (callgrind). The text changes once a second, so each
//! worker thread keeps the current second's value and remakes it only when
//! the second has moved on. The cache is per thread because every worker
//! is a single-threaded runtime; nothing is shared or locked.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderValue;

/// The current second's `Date` value.
#[derive(Debug)]
struct Cached {
    secs: u64,
    value: HeaderValue,
}

/// Never handed out: the first call finds its second stale (`u64::MAX`).
const NEVER: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

thread_local! {
    static NOW: RefCell<Cached> = const {
        RefCell::new(Cached { secs: u64::MAX, value: HeaderValue::from_static(NEVER) })
    };
}

/// The current time as a `Date` value. A clone of the cached one: a
/// reference-count increment, no formatting.
pub(crate) fn now() -> HeaderValue {
    with_now(HeaderValue::clone)
}

/// Calls `f` with the current time as a `Date` value, borrowed from the
/// cache (HTTP/1.1 copies the bytes into its head and needs no clone).
pub(crate) fn with_now<R>(f: impl FnOnce(&HeaderValue) -> R) -> R {
    with_time(SystemTime::now(), f)
}

/// [`with_now`] at `now`: the cache is remade when `now` is in another
/// second than the cached value.
fn with_time<R>(now: SystemTime, f: impl FnOnce(&HeaderValue) -> R) -> R {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    NOW.with(|cached| {
        {
            let mut cached = cached.borrow_mut();
            if cached.secs != secs {
                // An IMF-fixdate is visible ASCII: the error arm never runs.
                if let Ok(value) =
                    HeaderValue::from_maybe_shared(bytes::Bytes::from(httpdate::fmt_http_date(now)))
                {
                    *cached = Cached { secs, value };
                }
            }
        }
        // Only a shared borrow while `f` runs.
        f(&cached.borrow().value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_an_imf_fixdate_of_now() {
        let before = SystemTime::now() - std::time::Duration::from_secs(1);
        let value = now();
        let text = value.to_str().unwrap();
        assert_eq!(text.len(), 29, "{text}");
        assert!(text.ends_with(" GMT"), "{text}");
        let parsed = httpdate::parse_http_date(text).unwrap();
        assert!(parsed >= before - std::time::Duration::from_secs(1));
        assert!(parsed <= SystemTime::now());
    }

    #[test]
    fn within_a_second_the_cached_value_is_handed_out_not_remade() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_796_083_200_250);
        let first = with_time(at, HeaderValue::clone);
        let later = with_time(
            at + std::time::Duration::from_millis(700),
            HeaderValue::clone,
        );
        assert_eq!(first, "Tue, 01 Dec 2026 00:00:00 GMT");
        assert_eq!(
            first.as_bytes().as_ptr(),
            later.as_bytes().as_ptr(),
            "the same second's value shares one buffer"
        );
    }

    #[test]
    fn the_next_second_remakes_it() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200);
        assert_eq!(
            with_time(at, HeaderValue::clone),
            "Tue, 01 Dec 2026 00:00:00 GMT"
        );
        let next = at + std::time::Duration::from_secs(1);
        assert_eq!(
            with_time(next, HeaderValue::clone),
            "Tue, 01 Dec 2026 00:00:01 GMT"
        );
    }
}
