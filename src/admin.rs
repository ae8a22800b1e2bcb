//! The admin API: JSON over HTTP on a loopback listener (SPEC 7).
//!
//! Routes:
//!
//! | method and path               | handler                                |
//! |-------------------------------|----------------------------------------|
//! | `GET /healthz`                | 200 while the process serves           |
//! | `GET /readyz[?upstream=required]` | 200 once the store is loaded; says if the upstream is reachable (503 if not and required) |
//! | `GET /metrics`                | Prometheus text format ([`crate::metrics`]) |
//! | `POST /v1/keys`               | create a key; the only time it is shown |
//! | `GET /v1/keys[?user=U]`       | list keys (never secrets)              |
//! | `GET /v1/keys/{id}`           | one key                                |
//! | `PATCH /v1/keys/{id}`         | edit name, scope, expiry, policies     |
//! | `DELETE /v1/keys/{id}`        | revoke                                 |
//! | `POST /v1/keys/{id}/rotate`   | a new key; the old one works for `grace_secs` |
//! | `GET /v1/users/{user}`        | a user's blocked flag and key count    |
//! | `PUT /v1/users/{user}`        | block or unblock                       |
//! | `GET /v1/audit[?since=&limit=]` | the audit trail                      |
//! | `POST /v1/import`             | a Haplo application's keys and users (`import`) |
//!
//! Every request passes the [`guard`] first (no `Origin`, our own `Host`,
//! the bearer token when one is configured). A wrong method on a known path
//! is 405 with `Allow`; bad input is 400 `{"error": ...}` and writes
//! nothing. Writes run on the blocking pool (redb fsyncs) and answer only
//! once the keyring has committed and published the change; each records
//! the admin client's address in the audit trail.

mod audit;
mod body;
mod guard;
mod import;
mod keys;
mod policy;
mod reply;
pub(crate) mod text;
mod users;
mod writes;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response};
use http_body_util::Full;
use tokio::net::TcpListener;

pub use self::guard::Guard;
use self::reply::{Handled, Reply};
use crate::config::{AdminToken, Http2Limits};
use crate::haplo::follow::SyncStatus;
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::server::{self, ConnSettings, ListenerOptions, RequestBody};
use crate::writes::Writes;

/// Admin requests must send their head within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The admin API is for a handful of operators and scripts.
const MAX_CONNECTIONS: usize = 64;
/// How long `/readyz` waits for the upstream to accept a connection.
const READY_PROBE: Duration = Duration::from_secs(2);

/// State shared by admin connections.
#[derive(Debug)]
pub struct Admin {
    keyring: Arc<Keyring>,
    /// Where writes are committed (this store, or a fleet's table first).
    writes: Writes,
    proxy: Arc<Proxy>,
    metrics: Arc<Metrics>,
    guard: Guard,
    /// The `[haplo]` follower's state, when following.
    sync: Option<Arc<SyncStatus>>,
}

impl Admin {
    /// An admin API over `keyring` and `proxy`, answering on `local` (the
    /// bound address, for the `Host` check).
    pub fn new(
        keyring: Arc<Keyring>,
        proxy: Arc<Proxy>,
        metrics: Arc<Metrics>,
        local: SocketAddr,
        token: Option<AdminToken>,
        sync: Option<Arc<SyncStatus>>,
        writes: Writes,
    ) -> Self {
        Admin {
            keyring,
            writes,
            proxy,
            metrics,
            guard: Guard::new(local, token),
            sync,
        }
    }

    /// Handles one admin request from `peer`.
    pub(crate) async fn handle(
        &self,
        request: Request<RequestBody>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        if let Err(refusal) = self.guard.check(&request) {
            return Ok(refusal.into_response());
        }
        if request.uri().path() == "/metrics" && request.method() == Method::GET {
            return Ok(self.metrics_response());
        }
        let (Ok(reply) | Err(reply)) = self.route(request, peer).await;
        Ok(reply.into_response())
    }

    fn metrics_response(&self) -> Response<Full<Bytes>> {
        let snapshot = self.keyring.snapshot();
        let settings = self.proxy.settings();
        let throttled = self
            .proxy
            .throttle()
            .throttled(&settings.throttle, Instant::now());
        if let Writes::Fleet(replica) = &self.writes {
            self.metrics
                .set_fleet(replica.status().cut_off_for(), self.keyring.synced_seq());
        }
        if let Some(sync) = &self.sync {
            self.metrics
                .set_haplo_sync(sync.age(), sync.ever_synced() && sync.error().is_none());
        }
        let text = self
            .metrics
            .encode(snapshot.key_count(), snapshot.blocked_count(), throttled);
        let mut response = Response::new(Full::new(Bytes::from(text)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }

    /// `GET /readyz`: 200 once the store is open and the snapshot loaded
    /// (SPEC 7), which is true whenever this code runs. The body also says
    /// whether the upstream accepts connections; with `?upstream=required`
    /// an unreachable upstream makes it 503, for orchestrators that should
    /// only route to a keygate whose application is up.
    async fn ready(&self, query: Option<&str>) -> Reply {
        let required = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .any(|(name, value)| name == "upstream" && value == "required");
        let upstream = self.proxy.settings().upstream;
        let probe = tokio::time::timeout(
            READY_PROBE,
            tokio::net::TcpStream::connect((upstream.host(), upstream.port())),
        )
        .await;
        let upstream_state = match probe {
            Ok(Ok(_)) => None,
            Ok(Err(error)) => Some(format!("unreachable: {error}")),
            Err(_) => Some("unreachable: no answer within 2 s".to_owned()),
        };
        let keys = self.keyring.snapshot().key_count();
        // A fleet replica whose file has never held the shared table is
        // not ready until it has copied it.
        let fleet = match &self.writes {
            Writes::Fleet(replica) => Some(replica.status().clone()),
            Writes::Local(_) => None,
        };
        let fleet_ready = fleet.as_ref().is_none_or(|status| status.ready());
        let status = if (required && upstream_state.is_some()) || !fleet_ready {
            503
        } else {
            200
        };
        let mut body = serde_json::json!({
            "status": if status == 200 { "ready" } else { "not ready" },
            "store": "open",
            "keys": keys,
            "upstream": upstream_state.as_deref().unwrap_or("reachable"),
        });
        if let Some(fleet) = &fleet {
            body["fleet"] = serde_json::json!({
                "synced_seq": self.keyring.synced_seq(),
                "has_copy": fleet.ready(),
                "cut_off_secs": fleet.cut_off_for().as_secs(),
                "error": fleet.error(),
            });
        }
        if let Some(sync) = &self.sync {
            // Informational: keygate serves the table it has while Haplo's
            // database is away, so the follower never makes it unready.
            body["haplo"] = serde_json::json!({
                "synced": sync.ever_synced(),
                "sync_age_secs": sync.age().as_secs(),
                "error": sync.error(),
            });
        }
        Reply::json(status, &body)
    }

    /// Runs a handler that reads the store on the blocking pool: listing a
    /// million keys takes seconds, and health checks and metrics scrapes
    /// on the admin listener must not wait behind it.
    async fn read_store(&self, read: impl FnOnce(&Keyring) -> Handled + Send + 'static) -> Handled {
        let keyring = self.keyring.clone();
        tokio::task::spawn_blocking(move || read(&keyring))
            .await
            .unwrap_or_else(|error| {
                tracing::error!(%error, "admin store read failed");
                Err(Reply::error(500, "the store could not be read"))
            })
    }

    async fn route(&self, request: Request<RequestBody>, peer: SocketAddr) -> Handled {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
        let method = request.method().clone();
        let client = peer.ip().to_string();
        match segments.as_slice() {
            ["healthz"] => match method {
                Method::GET => Ok(Reply::json(200, &serde_json::json!({"status": "ok"}))),
                _ => Err(Reply::method_not_allowed(&[Method::GET])),
            },
            ["readyz"] => match method {
                Method::GET => Ok(self.ready(query.as_deref()).await),
                _ => Err(Reply::method_not_allowed(&[Method::GET])),
            },
            ["metrics"] => Err(Reply::method_not_allowed(&[Method::GET])),
            ["v1", "keys"] => match method {
                Method::GET => {
                    self.read_store(move |keyring| keys::list(keyring, query.as_deref()))
                        .await
                }
                Method::POST => keys::create(&self.keyring, &self.writes, request, client).await,
                _ => Err(Reply::method_not_allowed(&[Method::GET, Method::POST])),
            },
            ["v1", "keys", id] => match method {
                Method::GET => {
                    let id = (*id).to_owned();
                    self.read_store(move |keyring| keys::show(keyring, &id))
                        .await
                }
                Method::DELETE => keys::revoke(&self.writes, id, client).await,
                Method::PATCH => {
                    keys::update(&self.keyring, &self.writes, id, request, client).await
                }
                _ => Err(Reply::method_not_allowed(&[
                    Method::GET,
                    Method::PATCH,
                    Method::DELETE,
                ])),
            },
            ["v1", "keys", id, "rotate"] => match method {
                Method::POST => keys::rotate(&self.writes, id, request, client).await,
                _ => Err(Reply::method_not_allowed(&[Method::POST])),
            },
            ["v1", "users", user] => {
                let user = (*user).to_owned();
                match method {
                    Method::GET => {
                        self.read_store(move |keyring| users::show(keyring, &user))
                            .await
                    }
                    Method::PUT => {
                        users::set(&self.keyring, &self.writes, &user, request, client).await
                    }
                    _ => Err(Reply::method_not_allowed(&[Method::GET, Method::PUT])),
                }
            }
            ["v1", "import"] => match method {
                Method::POST => import::import(&self.writes, request, client).await,
                _ => Err(Reply::method_not_allowed(&[Method::POST])),
            },
            ["v1", "audit"] => match method {
                Method::GET => match &self.writes {
                    Writes::Fleet(replica) => audit::list_fleet(replica, query.as_deref()).await,
                    Writes::Local(_) => {
                        self.read_store(move |keyring| audit::list(keyring, query.as_deref()))
                            .await
                    }
                },
                _ => Err(Reply::method_not_allowed(&[Method::GET])),
            },
            _ => Err(Reply::error(404, "no such admin route")),
        }
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
        slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
        grace,
        open_connections: None,
    };
    server::serve(listener, options, shutdown, move |peer, _tls| {
        let admin = admin.clone();
        let service = move |request: Request<RequestBody>| {
            let admin = admin.clone();
            async move {
                let (parts, body) = request.into_parts();
                match body {
                    RequestBody::Http1(_) => {
                        match admin.handle(Request::from_parts(parts, body), peer).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                    // The admin listener has no TLS, so no ALPN and no
                    // HTTP/2; say so rather than assume it.
                    RequestBody::Http2(_) => {
                        Reply::error(505, "the admin API speaks HTTP/1.1 only").into_response()
                    }
                }
            }
        };
        let settings = ConnSettings {
            header_timeout: HEADER_TIMEOUT,
            max_header_bytes: 64 * 1024,
            http2: Http2Limits {
                max_concurrent_streams: 1,
                keep_alive: HEADER_TIMEOUT,
            },
            write_timeout: HEADER_TIMEOUT,
        };
        (settings, service)
    })
    .await;
}
