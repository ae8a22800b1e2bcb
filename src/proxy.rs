//! The public listener: authenticate, then forward.
//!
//! [`Proxy`] is the state shared by every connection: the reloadable
//! settings, the keyring (whose snapshot each request reads once), the
//! failure throttle, the pooled upstream client and the access log.
//! [`serve`] runs the accept loop; [`Proxy::handle`] is the whole life of
//! one request, one function a step (steps 2 to 4 are `admit.rs`):
//!
//! 1. resolve the client address (trusted proxies, SPEC 5);
//! 2. validate the method, the request-target and `Host` (400 before any
//!    other check);
//! 3. read the credentials and apply the decision table ([`crate::auth`]),
//!    with bcrypt first for a Haplo key's first use ([`Proxy::prove`]);
//! 4. rewrite headers ([`headers`]) and forward with the target unchanged
//!    ([`Proxy::send`]);
//! 5. stream the response back ([`Proxy::respond`]), writing the
//!    access-log line when it ends; or answer a refusal
//!    ([`Proxy::refuse`]).
//!
//! Settings and keys live behind two separate `ArcSwap`s on purpose: they
//! change independently (a reload never touches keys, an admin write never
//! touches settings) and no request needs the two to change together.

mod admit;
mod body;
pub mod headers;
mod log;
mod pool;
mod prove;
mod refusal;
mod upgrade;
pub(crate) mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::header::{CONNECTION, UPGRADE};
use http::{Request, Response, Version};
use tokio::net::TcpListener;

pub use self::body::{BodyError, ResponseBody, TimedBody};
pub use self::log::PendingLog;
pub use self::refusal::{BadRequest, Blame, Refusal, UpstreamCause};
pub use self::upstream::{FramingError, ReadError, Upstream, UpstreamBody};

use self::admit::{Admission, Admitted, Authenticated, ClientUpgrade, Proof};
use self::headers::Peer;
use self::log::{Caller, RequestInfo};
use crate::access_log::AccessLog;
use crate::auth::{Denied, Throttle};
use crate::config::{ProxySettings, RateLimitHeaders};
use crate::keys::Keyring;
use crate::metrics::Metrics;
use crate::server::{self, ConnSettings, ListenerOptions, RequestBody};
use crate::tls::{Tls, TlsError};

/// State shared by every proxied connection.
#[derive(Debug)]
pub struct Proxy {
    live: ArcSwap<Live>,
    keyring: Arc<Keyring>,
    throttle: Throttle,
    log: AccessLog,
    metrics: Arc<Metrics>,
    /// Worker threads, each with its own share of the upstream pool.
    workers: usize,
    /// Bounds the bcrypt checks running at once (see [`prove`]).
    bcrypt_slots: prove::Slots,
}

/// What a reload replaces, together: the settings and the upstream client
/// built from them. Each request loads it once.
#[derive(Debug)]
struct Live {
    settings: ProxySettings,
    upstream: Upstream,
}

impl Live {
    fn new(settings: ProxySettings, workers: usize) -> Result<Self, TlsError> {
        let upstream = Upstream::new(&settings.upstream, settings.upstream_ca.as_deref(), workers)?;
        Ok(Live { settings, upstream })
    }
}

impl Proxy {
    /// A proxy over `keyring` with `settings`, served by `workers` worker
    /// threads. Fails only if the upstream CA file cannot be used.
    pub fn new(
        settings: ProxySettings,
        keyring: Arc<Keyring>,
        log: AccessLog,
        metrics: Arc<Metrics>,
        workers: usize,
    ) -> Result<Self, TlsError> {
        Ok(Proxy {
            live: ArcSwap::from_pointee(Live::new(settings, workers)?),
            workers,
            keyring,
            throttle: Throttle::new(),
            log,
            metrics,
            bcrypt_slots: prove::Slots::new(),
        })
    }

    /// The metrics this proxy records.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Replaces the settings (and the upstream client); requests that start
    /// afterwards use them, requests in flight finish with the old ones.
    pub fn reload(&self, settings: ProxySettings) -> Result<(), TlsError> {
        self.live
            .store(Arc::new(Live::new(settings, self.workers)?));
        Ok(())
    }

    /// The settings in force.
    pub fn settings(&self) -> ProxySettings {
        self.live.load().settings.clone()
    }

    /// The failure throttle (for metrics and tests).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Handles one request from `peer` (whose `trusted` flag is set here,
    /// from the settings in force). Never fails: every problem becomes a
    /// response.
    pub(crate) async fn handle(
        &self,
        request: Request<RequestBody>,
        mut peer: Peer,
    ) -> Response<ResponseBody> {
        let live = self.live.load_full();
        let settings = &live.settings;
        peer.trusted = settings.is_trusted(peer.addr);
        let client = headers::client_address(&peer, request.headers(), settings);
        let started = Instant::now();
        let time = self.keyring.clock().now();

        let version = request.version();
        // In a block, so that neither the admission nor the admitted request
        // outlives its unpacking: a local still in scope at the `.await`
        // below would take its own room in this future.
        let (request, info, upgrade, authenticated) = {
            let admission = match self.admit(request, settings, &peer, client, time, started) {
                Admission::Prove(proof) => self.prove(proof, settings, &peer).await,
                admission => admission,
            };
            match admission {
                Admission::Forward(admitted, authenticated) => {
                    let Admitted {
                        request,
                        info,
                        upgrade,
                    } = admitted;
                    (request, info, upgrade, authenticated)
                }
                Admission::Refuse {
                    refusal,
                    info,
                    caller,
                } => return self.refuse(refusal, info, caller, version),
                // Replaced by another unproven key meanwhile.
                Admission::Prove(proof) => {
                    return self.refuse(Denied::InvalidKey.into(), proof.info, None, version)
                }
            }
        };
        let response = match self.send(&live, request).await {
            Ok(response) => response,
            Err(refusal) => {
                return self.refuse(refusal, info, authenticated.into_caller(), version)
            }
        };
        self.respond(response, upgrade, info, authenticated, settings, version)
    }

    /// Sends the admitted request to the upstream, counting the answer (or
    /// the upstream's failure) in the metrics.
    async fn send(
        &self,
        live: &Live,
        request: Request<TimedBody<RequestBody>>,
    ) -> Result<Response<UpstreamBody>, Refusal> {
        let settings = &live.settings;
        let sent = Instant::now();
        let answered = live
            .upstream
            .send(
                request,
                settings.upstream_timeout,
                settings.body_timeout,
                sent,
            )
            .await;
        match answered {
            Ok(_) => self.metrics.upstream(sent.elapsed()),
            Err(Refusal::BadGateway(cause)) => self.metrics.upstream_error(cause.as_str()),
            Err(Refusal::GatewayTimeout) => self.metrics.upstream_error("timeout"),
            // The client's body failed: not the upstream's doing.
            Err(Refusal::BadRequest(_) | Refusal::Denied(_) | Refusal::Busy) => {}
        }
        answered
    }

    /// Step 5: the upstream's response as the client gets it: in the
    /// client's protocol version, its hop-by-hop headers gone, with the
    /// rate-limit fields when configured, and for a switch of protocols
    /// the relay between the two upgraded connections started. Its log
    /// line is written when its body ends.
    fn respond(
        &self,
        mut response: Response<UpstreamBody>,
        upgrade: Option<ClientUpgrade>,
        info: RequestInfo,
        authenticated: Authenticated,
        settings: &ProxySettings,
        version: Version,
    ) -> Response<ResponseBody> {
        let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
        let upgraded = match (switching, upgrade) {
            (false, _) => None,
            (true, Some((client, offered)))
                if upgrade::switched_as_offered(&offered, response.headers().get(UPGRADE)) =>
            {
                Some((client, response.body_mut().take_switched()))
            }
            (true, _) => {
                // A 101 the client never asked for, or to a protocol it did
                // not offer (and keygate did not allow), cannot be relayed.
                return self.refuse(
                    Refusal::BadGateway(UpstreamCause::Other),
                    info,
                    authenticated.into_caller(),
                    version,
                );
            }
        };
        let (mut parts, body) = response.into_parts();
        // Answer in the client's protocol version, not the upstream's: an
        // HTTP/1.0 upstream must not turn our response into HTTP/1.0.
        parts.version = version;
        // No hop-by-hop header to strip: `upstream::response` left them
        // out of this map, but for a 101's `Upgrade`, which is relayed.
        if settings.rate_limit_headers == RateLimitHeaders::Always {
            if let Some(quota) = authenticated.quota() {
                const NANOS: u64 = 1_000_000_000;
                refusal::rate_limit_headers(
                    &mut parts.headers,
                    quota.rate.burst(),
                    quota.rate.window_secs(),
                    quota.remaining.tokens,
                    quota.remaining.full_in.div_ceil(NANOS),
                );
            }
        }
        if let Some((client, upstream)) = upgraded {
            parts
                .headers
                .insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
            tokio::spawn(upgrade::relay(client, upstream));
        }
        let log = Some(PendingLog::new(
            &self.log,
            &self.metrics,
            info,
            parts.status,
            authenticated.outcome(),
            authenticated.into_caller(),
        ));
        let body = ResponseBody::upstream(body, log);
        Response::from_parts(parts, body)
    }

    /// Step 3 for a key imported from Haplo on its first use: bcrypt
    /// proves it (off the event loop), then the request is admitted again,
    /// now on the key's BLAKE3 hash. A wrong secret, or no bcrypt permit in
    /// time, counts as a failure for the client's address.
    async fn prove(&self, proof: Proof, settings: &ProxySettings, peer: &Peer) -> Admission {
        let RequestInfo {
            client,
            time,
            started,
            ..
        } = proof.info;
        let refusal = match prove::bcrypt(&self.keyring, &self.bcrypt_slots, proof.presented).await
        {
            prove::Proved::Yes => {
                return self.admit(proof.request, settings, peer, client, time, started)
            }
            prove::Proved::No => Refusal::Denied(Denied::InvalidKey),
            // Counted like a wrong key: an address that floods unproven ids
            // is throttled (and then refused before bcrypt) instead of
            // drawing free 503s for ever.
            prove::Proved::Busy => Refusal::Busy,
        };
        self.throttle
            .record_failure(client, &settings.throttle, started);
        Admission::refuse(refusal, proof.info)
    }

    fn refuse(
        &self,
        refusal: Refusal,
        info: RequestInfo,
        caller: Option<Caller>,
        version: Version,
    ) -> Response<ResponseBody> {
        if refusal.blame() == Blame::Upstream {
            tracing::warn!(outcome = refusal.outcome(), "request failed upstream");
        }
        let log = Some(PendingLog::new(
            &self.log,
            &self.metrics,
            info,
            refusal.status(),
            refusal.outcome(),
            caller,
        ));
        let mut response = refusal
            .into_response::<ResponseBody>()
            .map(|b| b.with_log(log));
        *response.version_mut() = version;
        response
    }
}

/// Serves the proxy on `listener` until `shutdown`, then drains.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    tls: Option<Arc<Tls>>,
    slots: Arc<tokio::sync::Semaphore>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let options = ListenerOptions {
        name: "proxy",
        tls,
        slots,
        grace,
        open_connections: Some(proxy.metrics.open_connections.clone()),
    };
    server::serve(listener, options, shutdown, move |peer_addr, tls| {
        let settings = {
            let live = proxy.live.load();
            ConnSettings {
                header_timeout: live.settings.header_timeout,
                max_header_bytes: live.settings.max_header_bytes,
                http2: live.settings.http2,
                write_timeout: live.settings.body_timeout,
            }
        };
        let proxy = proxy.clone();
        // Made once per connection: the address text for X-Forwarded-For.
        let peer = Peer::new(
            crate::config::canonical_ip(peer_addr.ip()),
            false,
            if tls { "https" } else { "http" },
        );
        let service = move |request| {
            let proxy = proxy.clone();
            let peer = peer.clone();
            async move { proxy.handle(request, peer).await }
        };
        (settings, service)
    })
    .await;
}
