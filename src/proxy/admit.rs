//! Steps 2 to 4 of a request's life (see [`super`]): from the request as
//! received to one ready for the upstream, or a refusal, or (a key
//! imported from Haplo, on its first use) a request to prove the key with
//! bcrypt before it is admitted again. Synchronous on purpose: the key
//! snapshot is loaded and released without crossing an `.await`.

use std::time::Instant;

use http::header::{CONNECTION, HOST, UPGRADE};
use http::uri::Uri;
use http::{Request, Version};

use super::body::TimedBody;
use super::headers::{self, Peer};
use super::log::{Caller, LogPath, RequestInfo};
use super::refusal::{BadRequest, Refusal};
use super::{prove, upgrade, Proxy};
use crate::auth::{self, AuthContext, Credentials, Denied, Identity};
use crate::config::ProxySettings;
use crate::keys::Quota;
use crate::server::{OnUpgrade, RequestBody};
use crate::target::Target;
use crate::timestamp::Timestamp;

impl Proxy {
    /// Steps 2 to 4: everything up to the upstream call. Synchronous, so the
    /// key snapshot is loaded and released without crossing an `.await`.
    pub(super) fn admit(
        &self,
        request: Request<RequestBody>,
        settings: &ProxySettings,
        peer: &Peer,
        client: std::net::IpAddr,
        time: Timestamp,
        started: Instant,
    ) -> Admission {
        let target = Target::from_uri(request.uri());
        let info = RequestInfo {
            time,
            started,
            client,
            method: request.method().clone(),
            path: match &target {
                Ok(target) => LogPath::Target(target.path_and_query().clone()),
                Err(_) => LogPath::Raw(request.uri().clone()),
            },
        };
        let target = match target {
            Ok(target) => target,
            Err(error) => return Admission::refuse(BadRequest::Target(error).into(), info),
        };
        if let Err(error) = headers::check_host(&request) {
            return Admission::refuse(error.into(), info);
        }
        let credentials = match Credentials::from_headers(request.headers()) {
            Ok(credentials) => credentials,
            Err(error) => return Admission::refuse(BadRequest::Credentials(error).into(), info),
        };

        let snapshot = self.keyring.snapshot();
        // A standard method's clone copies a tag; `info` keeps its own.
        let method = info.method.clone();
        let cx = AuthContext {
            snapshot: &snapshot,
            settings,
            throttle: &self.throttle,
            method: &method,
            client,
            now: time,
            instant: started,
            clock: self.keyring.clock(),
        };
        let identity = match auth::authenticate(&cx, credentials.secret(), &target) {
            Ok(identity) => identity,
            Err(refused) => {
                return Admission::Refuse(Rejected {
                    refusal: refused.denied.into(),
                    info,
                    identity: refused.key.map(Caller::of),
                })
            }
        };
        let (entry, forwarded) = match identity {
            Identity::Anonymous => (None, Forwarded::Anonymous),
            Identity::Key(entry, quota) => {
                // Last use, in memory only: the keyring writes it later.
                entry.touch(time);
                (Some(entry), Forwarded::Key(Caller::of(entry), quota))
            }
            Identity::NeedsBcrypt(_) => {
                let presented = credentials
                    .secret()
                    .map(|secret| prove::Presented::copy(secret.as_bytes()));
                drop(snapshot);
                return match presented {
                    Some(presented) => Admission::Prove(Proof {
                        request,
                        info,
                        presented,
                    }),
                    None => Admission::refuse(Denied::InvalidKey.into(), info),
                };
            }
        };

        // A WebSocket-style upgrade (HTTP/1.1 only): keep the client's half
        // of the upgrade, and the two headers hop-by-hop removal would drop.
        let upgrade_protocol = upgrade::requested(&request, &settings.upgrades);
        let mut request = request;
        let upgrade = upgrade_protocol
            .clone()
            .map(|offered| (crate::server::on_upgrade(&mut request), offered));
        let (mut parts, body) = request.into_parts();
        if !parts.headers.contains_key(HOST) {
            // HTTP/2 and absolute-form carry the host in the target.
            if let Some(value) = parts
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
            {
                parts.headers.insert(HOST, value);
            }
        }
        headers::rewrite_request(&mut parts.headers, settings, peer, entry);
        if let Some(protocol) = upgrade_protocol {
            parts.headers.insert(UPGRADE, protocol);
            parts
                .headers
                .insert(CONNECTION, http::HeaderValue::from_static("upgrade"));
        }
        drop(snapshot);

        // Origin-form, exactly the target that was checked; the upstream's
        // address is the pool's business and `Host` is the client's.
        parts.uri = Uri::from(target.path_and_query().clone());
        parts.version = Version::HTTP_11;
        let body = TimedBody::new(body, settings.body_timeout);
        Admission::Forward((
            Admitted {
                request: Request::from_parts(parts, body),
                info,
                upgrade,
            },
            forwarded,
        ))
    }
}

/// What [`Proxy::admit`] decided.
pub(super) enum Admission {
    /// Forward, as this caller.
    Forward((Admitted, Forwarded)),
    /// Answer with a refusal.
    Refuse(Rejected),
    /// Prove the key with bcrypt first, then admit the request again.
    Prove(Proof),
}

impl Admission {
    pub(super) fn refuse(refusal: Refusal, info: RequestInfo) -> Self {
        Admission::Refuse(Rejected::new(refusal, info))
    }
}

/// A request whose key must be proven with bcrypt before it is admitted.
pub(super) struct Proof {
    pub(super) request: Request<RequestBody>,
    /// For the refusal if the key is not proven.
    pub(super) info: RequestInfo,
    pub(super) presented: prove::Presented,
}

/// A request keygate answers itself, with what its log line needs.
pub(super) struct Rejected {
    pub(super) refusal: Refusal,
    pub(super) info: RequestInfo,
    /// User and key id, when a valid key was refused (scope, blocked user,
    /// or an upstream failure).
    pub(super) identity: Option<Caller>,
}

impl Rejected {
    pub(super) fn new(refusal: Refusal, info: RequestInfo) -> Self {
        Rejected {
            refusal,
            info,
            identity: None,
        }
    }
}

/// A request ready for the upstream, with what its log line needs.
pub(super) struct Admitted {
    pub(super) request: Request<TimedBody<RequestBody>>,
    pub(super) info: RequestInfo,
    /// The client's side of a requested protocol upgrade, and the
    /// `Upgrade` value it offered.
    pub(super) upgrade: Option<(OnUpgrade, http::HeaderValue)>,
}

/// How a forwarded request was authenticated, kept past the snapshot:
/// anonymous, or a key (with what is left of its rate limit, if it has
/// one, for the `RateLimit` response fields).
pub(super) enum Forwarded {
    Anonymous,
    Key(Caller, Option<Quota>),
}

impl Forwarded {
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Forwarded::Anonymous => "anonymous",
            Forwarded::Key { .. } => "forwarded",
        }
    }

    pub(super) fn into_caller(self) -> Option<Caller> {
        match self {
            Forwarded::Anonymous => None,
            Forwarded::Key(caller, _) => Some(caller),
        }
    }

    pub(super) fn quota(&self) -> Option<&Quota> {
        match self {
            Forwarded::Anonymous => None,
            Forwarded::Key(_, quota) => quota.as_ref(),
        }
    }
}
