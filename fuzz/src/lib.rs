//! Helpers shared by the fuzz targets, kept in a library so that
//! `cargo test` in this crate can check them (the targets themselves only
//! build under libFuzzer).
//!
//! - [`framing`]: an independent model of the upstream response framing
//!   rules, to check keygate's parser against.
//! - [`chunked`]: a valid chunked encoder, for the round-trip target.
//! - [`oracle`]: hyper's HTTP/1.1 server as the reference for keygate's
//!   own server codec, and the comparison the differential target asserts.

#![forbid(unsafe_code)]

pub mod chunked;
pub mod framing;
pub mod oracle;
