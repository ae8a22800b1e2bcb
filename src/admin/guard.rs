//! Who may use the admin API at all.
//!
//! The admin port is on loopback, but loopback is reachable from every web
//! page an admin's browser opens. Two checks close that door:
//!
//! - a request with an `Origin` header is refused: browsers send it on
//!   cross-origin requests, and the CLI and curl never do;
//! - the `Host` must be the listener's own address (or `localhost:PORT`),
//!   which defeats DNS rebinding (a page on `evil.example` re-pointed at
//!   127.0.0.1 still sends `Host: evil.example`). Its own address only: a
//!   listener on 127.0.0.1 is not reached at `[::1]`, nor one on `[::1]`
//!   at 127.0.0.1, so a `Host` naming the other loopback was not written
//!   for this listener.
//!
//! With `admin.token` set, every request also needs `Authorization: Bearer
//! <token>`, compared in constant time. A listener on a non-loopback
//! address (which config validation only allows with a token) is reached
//! under names keygate cannot know, so there the token alone stands in for
//! the `Host` check: a rebinding page cannot present it.

use std::net::SocketAddr;

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::Request;

use super::reply::Reply;
use crate::config::AdminToken;

/// The admin request guard.
#[derive(Debug)]
pub struct Guard {
    /// Accepted `Host` values; `None` when any host is accepted (a
    /// non-loopback listener, which always has a token).
    hosts: Option<Vec<String>>,
    token: Option<AdminToken>,
}

impl Guard {
    /// A guard for a listener bound to `local`.
    pub fn new(local: SocketAddr, token: Option<AdminToken>) -> Self {
        let port = local.port();
        // The address as a client that dialled it writes it (`127.0.0.1:8081`,
        // `[::1]:8081`), then `localhost`, which names either family.
        let hosts = (local.ip().is_loopback() || token.is_none())
            .then(|| vec![local.to_string(), format!("localhost:{port}")]);
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
        if let Some(allowed_hosts) = &self.hosts {
            let mut hosts = request.headers().get_all(HOST).iter();
            let host = hosts.next().and_then(|h| h.to_str().ok());
            let allowed = hosts.next().is_none()
                && host.is_some_and(|h| allowed_hosts.iter().any(|a| a.eq_ignore_ascii_case(h)));
            if !allowed {
                return Err(Reply::error(
                    403,
                    format!(
                        "Host must be the admin listener's address ({})",
                        allowed_hosts[0]
                    ),
                ));
            }
        }
        if let Some(token) = &self.token {
            let presented = request
                .headers()
                .get(AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()));
            if !presented.is_some_and(|p| token.verify(p)) {
                return Err(Reply::error(401, "a valid admin bearer token is required"));
            }
        }
        Ok(())
    }
}

/// The token of a `Bearer` credential; the scheme is case-insensitive.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| rest.trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn request(host: &str, bearer: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri("/healthz").header(HOST, host);
        if let Some(token) = bearer {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(()).unwrap()
    }

    fn token() -> AdminToken {
        let config = Config::parse(
            "[admin]\nlisten = \"0.0.0.0:8081\"\ntoken = \"0123456789abcdef\"\n",
            None,
        )
        .unwrap();
        config.admin_token.unwrap()
    }

    #[test]
    fn loopback_listeners_check_the_host_even_with_a_token() {
        let guard = Guard::new("127.0.0.1:8081".parse().unwrap(), Some(token()));
        assert!(guard
            .check(&request("localhost:8081", Some("0123456789abcdef")))
            .is_ok());
        assert!(guard
            .check(&request("evil.example", Some("0123456789abcdef")))
            .is_err());
        assert!(guard
            .check(&request("localhost:8081", Some("wrong-token-0000")))
            .is_err());
    }

    #[test]
    fn the_host_names_this_listener_and_not_the_other_loopback() {
        let v4 = Guard::new("127.0.0.1:8081".parse().unwrap(), None);
        let v6 = Guard::new("[::1]:8081".parse().unwrap(), None);
        for (guard, own, other) in [
            (&v4, "127.0.0.1:8081", "[::1]:8081"),
            (&v6, "[::1]:8081", "127.0.0.1:8081"),
        ] {
            assert!(guard.check(&request(own, None)).is_ok(), "{own}");
            assert!(
                guard.check(&request("localhost:8081", None)).is_ok(),
                "{own}"
            );
            assert!(
                guard.check(&request("LOCALHOST:8081", None)).is_ok(),
                "{own}"
            );
            assert!(
                guard.check(&request(other, None)).is_err(),
                "{own}: {other}"
            );
            assert!(
                guard
                    .check(&request("[::ffff:127.0.0.1]:8081", None))
                    .is_err(),
                "{own}"
            );
            assert!(
                guard.check(&request("localhost:8082", None)).is_err(),
                "{own}"
            );
        }
    }

    #[test]
    fn exposed_listeners_rely_on_the_token() {
        let guard = Guard::new("0.0.0.0:8081".parse().unwrap(), Some(token()));
        assert!(guard
            .check(&request("admin.internal:8081", Some("0123456789abcdef")))
            .is_ok());
        assert!(guard.check(&request("admin.internal:8081", None)).is_err());
    }
}
