//! keygate: an authenticating reverse proxy for Haplo API keys.
//!
//! Every request that reaches the proxy listener carries (or lacks) a Haplo
//! API key. keygate verifies it against an in-memory snapshot of the key
//! store, enforces the key's path scope with Haplo's own semantics, and
//! forwards the request upstream with the user's identity in a header. A
//! second, loopback-only listener serves the admin API that manages keys.
//!
//! # Layout
//!
//! The module tree is the architecture; each file owns one noun:
//!
//! - [`config`]: the TOML file, parsed into raw serde structs and then
//!   validated into [`config::Config`]. Errors name the key at fault.
//! - [`keys`]: the key format ([`keys::ApiKey`]), the stored record and its
//!   optional policies ([`keys::policy`]), the redb [`keys::Store`], the
//!   immutable [`keys::Snapshot`] the request path reads, and the
//!   [`keys::Keyring`] that commits each list of [`keys::Change`]s and then
//!   swaps the snapshot.
//! - [`target`] and [`scope`]: request-target validation (what could be read
//!   two ways is refused) and Haplo's prefix / `=exact` scope rule.
//! - [`auth`]: reading credentials from the request, the per-address failure
//!   [`auth::Throttle`], and the decision table of SPEC 5 (with SPEC 11's
//!   policies).
//! - [`proxy`]: the public listener: the per-request service, header hygiene,
//!   the single-origin upstream pool, refusals and their JSON bodies.
//! - `server`: the accept loop and the HTTP/1.1 and HTTP/2 connections
//!   both listeners serve; `http1`: body framing shared by the server and
//!   the upstream client; `stall`: the request-head and body deadlines.
//! - [`admin`]: the loopback JSON API over the keyring.
//! - [`writes`]: where an admin write goes: this node's keyring, or a
//!   fleet's shared table first ([`fleet`]).
//! - [`fleet`]: replicas sharing one key table through PostgreSQL (SPEC 10).
//! - [`haplo`]: reading a Haplo application's keys and users, for import
//!   and for following them (SPEC 9).
//! - [`access_log`] and [`metrics`]: one JSON line per proxied request, off
//!   the hot path; Prometheus counters with fixed label sets.
//! - [`shutdown`]: the signal future that every server takes.
//! - [`tls`]: rustls configuration for the listener (reloadable) and for an
//!   `https://` upstream.
//! - [`timestamp`]: wall-clock seconds and the clock tests move by hand.
//! - [`app`]: binds listeners and runs both servers from a validated config;
//!   `main.rs` only parses arguments and calls into it.
//! - [`worker`]: the proxy's worker threads, one single-threaded runtime
//!   each, so a connection and its upstream traffic never change threads.
//! - [`cli`]: the `keygate keys ...` / `keygate users ...` commands, which talk
//!   to a running server's admin API and never open the store themselves.
//!
//! # Errors
//!
//! Each boundary has its own `thiserror` type. Proxy refusals are values
//! ([`proxy::Refusal`]) that know their status, their Haplo `kind` and who
//! caused them; nothing on the request path is boxed.

#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![warn(unreachable_pub)]

pub mod access_log;
pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod fleet;
// Hooks for fuzz/ and tests/properties.rs only; not an API (see its doc).
#[doc(hidden)]
pub mod fuzzing;
pub mod haplo;
mod http1;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod scope;
mod server;
pub mod shutdown;
mod stall;
pub mod target;
pub mod timestamp;
pub mod tls;
pub mod worker;
pub mod writes;
