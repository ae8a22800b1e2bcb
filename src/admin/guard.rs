//! Who may use the admin API at all.
//!
//! The admin port is on loopback, but loopback is reachable from every web
//! page an admin's browser opens. Two checks close that door:
//!
//! - a request with an `Origin` header is refused: browsers send it on
//!   cross-origin requests, and the CLI and curl never do;
//! - the `Host` must be the listener's own address (or `localhost:PORT`),
//!   which defeats DNS rebinding (a page on `evil.example` re-pointed at
//!   127.0.0.1 still sends `Host: evil.example`).
//!
//! With `admin.token` set, every request also needs `Authorization: Bearer
//! <token>`, compared in constant time.

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::Request;

use super::reply::Reply;
use crate::config::AdminToken;

/// The admin request guard.
#[derive(Debug)]
pub struct Guard {
    hosts: Vec<String>,
    token: Option<AdminToken>,
}

impl Guard {
    /// A guard for a listener bound to `local`.
    pub fn new(local: SocketAddr, token: Option<AdminToken>) -> Self {
        let port = local.port();
        let mut hosts = vec![local.to_string()];
        if local.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        hosts.dedup();
        Guard { hosts, token }
    }

    /// `Ok` if the request may proceed, else the refusal to send.
    pub(crate) fn check<B>(&self, request: &Request<B>) -> Result<(), Reply> {
        if request.headers().contains_key(ORIGIN) {
            return Err(Reply::error(
                403,
                "requests with an Origin header are refused: the admin API is not for browsers",
            ));
        }
        let mut hosts = request.headers().get_all(HOST).iter();
        let host = hosts.next().and_then(|h| h.to_str().ok());
        let allowed = hosts.next().is_none()
            && host.is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
        if !allowed {
            return Err(Reply::error(
                403,
                format!(
                    "Host must be the admin listener's address ({})",
                    self.hosts[0]
                ),
            ));
        }
        if let Some(token) = &self.token {
            let presented = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
            if !presented.is_some_and(|p| token.verify(p)) {
                return Err(Reply::error(401, "a valid admin bearer token is required"));
            }
        }
        Ok(())
    }
}
