//! The admin API: JSON over HTTP on a loopback listener (SPEC 7).
//!
//! Routes:
//!
//! | method and path            | handler                                   |
//! |----------------------------|-------------------------------------------|
//! | `GET /healthz`             | 200 while the process serves              |
//! | `GET /readyz`              | 200 once the store is open and loaded     |
//! | `POST /v1/keys`            | create a key; the only time it is shown   |
//! | `GET /v1/keys[?user=U]`    | list keys (never secrets)                 |
//! | `GET /v1/keys/{id}`        | one key                                   |
//! | `DELETE /v1/keys/{id}`     | revoke                                    |
//! | `GET /v1/users/{user}`     | a user's blocked flag and key count       |
//! | `PUT /v1/users/{user}`     | block or unblock                          |
//!
//! Every request passes the [`guard`] first (no `Origin`, our own `Host`,
//! the bearer token when one is configured). A wrong method on a known path
//! is 405 with `Allow`; bad input is 400 `{"error": ...}` and writes
//! nothing. Writes run on the blocking pool (redb fsyncs) and answer only
//! once the keyring has committed and published the change.

mod api;
mod guard;
mod reply;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

pub use self::guard::Guard;
use self::reply::Reply;
use crate::config::{AdminToken, Http2Limits};
use crate::keys::Keyring;
use crate::server::{self, ConnSettings, ListenerOptions};

/// Admin requests must send their head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The admin API is for a handful of operators and scripts.
const MAX_CONNECTIONS: usize = 64;

/// State shared by admin connections.
#[derive(Debug)]
pub struct Admin {
    keyring: Arc<Keyring>,
    guard: Guard,
}

impl Admin {
    /// An admin API over `keyring`, answering on `local` (the bound
    /// address, for the `Host` check).
    pub fn new(keyring: Arc<Keyring>, local: SocketAddr, token: Option<AdminToken>) -> Self {
        Admin {
            keyring,
            guard: Guard::new(local, token),
        }
    }

    /// Handles one admin request.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        if let Err(refusal) = self.guard.check(&request) {
            return Ok(refusal.into_response());
        }
        Ok(self.route(request).await.into_response())
    }

    async fn route(&self, request: Request<Incoming>) -> Reply {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let method = request.method().clone();
        match segments.as_slice() {
            ["healthz"] => only(&method, &[Method::GET], || {
                Reply::json(200, &serde_json::json!({"status": "ok"}))
            }),
            ["readyz"] => only(&method, &[Method::GET], || {
                let snapshot = self.keyring.snapshot();
                Reply::json(
                    200,
                    &serde_json::json!({"status": "ready", "keys": snapshot.key_count()}),
                )
            }),
            ["v1", "keys"] => match method {
                Method::GET => api::list_keys(&self.keyring, request.uri().query()),
                Method::POST => api::create_key(&self.keyring, request).await,
                _ => Reply::method_not_allowed(&[Method::GET, Method::POST]),
            },
            ["v1", "keys", id] => match method {
                Method::GET => api::show_key(&self.keyring, id),
                Method::DELETE => api::revoke_key(&self.keyring, id).await,
                _ => Reply::method_not_allowed(&[Method::GET, Method::DELETE]),
            },
            ["v1", "users", user] => {
                let user = (*user).to_owned();
                match method {
                    Method::GET => api::show_user(&self.keyring, &user),
                    Method::PUT => api::set_user(&self.keyring, &user, request).await,
                    _ => Reply::method_not_allowed(&[Method::GET, Method::PUT]),
                }
            }
            _ => Reply::error(404, "no such admin route"),
        }
    }
}

/// Runs `handler` if `method` is allowed, else 405.
fn only(method: &Method, allowed: &[Method], handler: impl FnOnce() -> Reply) -> Reply {
    if allowed.contains(method) {
        handler()
    } else {
        Reply::method_not_allowed(allowed)
    }
}

/// Serves the admin API on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let options = ListenerOptions {
        name: "admin",
        tls: None,
        max_connections: MAX_CONNECTIONS,
        grace,
    };
    server::serve(listener, options, shutdown, move |_peer, _tls| {
        let admin = admin.clone();
        let service = service_fn(move |request| {
            let admin = admin.clone();
            async move { admin.handle(request).await }
        });
        let settings = ConnSettings {
            header_timeout: HEADER_TIMEOUT,
            max_header_bytes: 64 * 1024,
            http2: Http2Limits {
                max_concurrent_streams: 1,
                keep_alive: HEADER_TIMEOUT,
            },
        };
        (settings, service)
    })
    .await;
}
