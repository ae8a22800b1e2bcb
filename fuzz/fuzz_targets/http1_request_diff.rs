//! Differential fuzzing of keygate's own HTTP/1.1 server codec (the client
//! leg) against hyper's (issue 13, item 3): for any byte stream,
//! `keygate::fuzzing::split_requests` and hyper's `server::conn::http1`
//! (run by `keygate_fuzz::oracle::hyper_split`) must agree on where each
//! request ends and on its method, target, version, headers and body, or
//! keygate must refuse. The property is `keygate_fuzz::oracle::compare`,
//! unit-tested with the oracle in `cargo test`.

#![no_main]

use keygate_fuzz::oracle::{compare, hyper_split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let ours = keygate::fuzzing::split_requests(input);
    let theirs = hyper_split(input);
    if let Err(mismatch) = compare(&ours, &theirs) {
        panic!("{mismatch}\ninput: {:?}", String::from_utf8_lossy(input));
    }
});
