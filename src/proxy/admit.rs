//! Steps 2 to 4 of a request's life (see [`super`]): from the request as
//! received to one ready for the upstream, or a refusal, or (a key
//! imported from Haplo, on its first use) a request to prove the key with
//! bcrypt before it is admitted again.
//!
//! [`Proxy::admit`] reads as the three steps: [`checked`] (what is asked
//! for: the method, the target and `Host`, before anything else),
//! [`Proxy::authorise`] (who asks, SPEC 5's table against one key
//! snapshot), and [`upstream_request`] (the request the application will
//! see). All of it is synchronous on purpose: the snapshot is loaded and
//! released without crossing an `.await`, and the verified key is
//! borrowed from it until its user's header is written.

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
use crate::keys::{Entry, Quota, Snapshot};
use crate::server::{OnUpgrade, RequestBody};
use crate::target::{Target, TargetError};
use crate::timestamp::Timestamp;

impl Proxy {
    /// Steps 2 to 4: everything up to the upstream call.
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
        let info = request_info(&request, target.as_ref().ok(), client, time, started);
        let target = match checked(target, &request) {
            Ok(target) => target,
            Err(refusal) => return Admission::refuse(refusal, info),
        };
        let credentials = match Credentials::from_headers(request.headers()) {
            Ok(credentials) => credentials,
            Err(error) => return Admission::refuse(BadRequest::Credentials(error).into(), info),
        };
        let snapshot = self.keyring.snapshot();
        let (entry, authenticated) =
            match self.authorise(&snapshot, &credentials, &target, settings, &info) {
                Ok(Some(authorised)) => authorised,
                Ok(None) => {
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
                Err(denial) => {
                    let caller = denial.key.map(Caller::of);
                    return Admission::Refuse {
                        refusal: denial.reason.into(),
                        info,
                        caller,
                    };
                }
            };
        let (request, upgrade) = upstream_request(request, &target, settings, peer, entry);
        drop(snapshot);
        Admission::Forward(
            Admitted {
                request,
                info,
                upgrade,
            },
            authenticated,
        )
    }

    /// Step 3, SPEC 5's table: the key the request may go ahead as (none
    /// for an anonymous request), `Ok(None)` when the key must first be
    /// proven with bcrypt, or why it is refused.
    ///
    /// One lifetime for everything the decision reads: the key it returns
    /// is borrowed from the snapshot, which the caller holds to step 4.
    fn authorise<'s>(
        &'s self,
        snapshot: &'s Snapshot,
        credentials: &Credentials<'_>,
        target: &Target,
        settings: &'s ProxySettings,
        info: &'s RequestInfo,
    ) -> Result<Option<(Option<&'s Entry>, Authenticated)>, auth::Denial<'s>> {
        let cx = AuthContext {
            snapshot,
            settings,
            throttle: &self.throttle,
            method: &info.method,
            client: info.client,
            now: info.time,
            instant: info.started,
            clock: self.keyring.clock(),
        };
        Ok(
            match auth::authenticate(&cx, credentials.secret(), target)? {
                Identity::Anonymous => Some((None, Authenticated::Anonymous)),
                Identity::Key(entry, quota) => {
                    // Last use, in memory only: the keyring writes it later.
                    entry.touch(info.time);
                    Some((Some(entry), Authenticated::Key(Caller::of(entry), quota)))
                }
                Identity::NeedsBcrypt(_) => None,
            },
        )
    }
}

/// What the log line needs, taken from the request as it arrived: the
/// path from the validated target, or the raw URI when it was refused.
fn request_info(
    request: &Request<RequestBody>,
    target: Option<&Target>,
    client: std::net::IpAddr,
    time: Timestamp,
    started: Instant,
) -> RequestInfo {
    RequestInfo {
        time,
        started,
        client,
        method: request.method().clone(),
        path: match target {
            Some(target) => LogPath::Target(target.path_and_query().clone()),
            None => LogPath::Raw(request.uri().clone()),
        },
    }
}

/// Step 2: the method, the target and `Host`, checked before anything
/// else (a 400 comes before any key is looked at).
fn checked(
    target: Result<Target, TargetError>,
    request: &Request<RequestBody>,
) -> Result<Target, Refusal> {
    let method = request.method().as_str();
    // In any case: methods are case-sensitive, but some servers can be
    // set to match them without regard to case (Jetty's legacy HTTP
    // compliance modes, for one), and would read `connect` as `CONNECT`.
    if method.eq_ignore_ascii_case("CONNECT") {
        return Err(BadRequest::Connect.into());
    }
    if is_standard_in_another_case(method) {
        return Err(BadRequest::MethodCase.into());
    }
    let target = target.map_err(BadRequest::Target)?;
    headers::check_host(request)?;
    Ok(target)
}

/// Whether `method` is one of RFC 9110's methods or `PATCH`, spelled in a
/// case other than its own (`get`, `Head`). Standard methods are upper
/// case, so only a name with a lower-case letter is compared.
fn is_standard_in_another_case(method: &str) -> bool {
    const STANDARD: [&str; 8] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH",
    ];
    method.bytes().any(|b| b.is_ascii_lowercase())
        && STANDARD
            .iter()
            .any(|standard| standard.eq_ignore_ascii_case(method))
}

/// Step 4: the request the application sees: origin-form with exactly the
/// target that was checked, the headers rewritten for `entry`'s user, and
/// (for an allowed protocol upgrade, HTTP/1.1 only) the client's half of
/// the upgrade, with the two headers hop-by-hop removal would drop put back.
fn upstream_request(
    mut request: Request<RequestBody>,
    target: &Target,
    settings: &ProxySettings,
    peer: &Peer,
    entry: Option<&Entry>,
) -> (Request<TimedBody<RequestBody>>, Option<ClientUpgrade>) {
    let upgrade_protocol = upgrade::requested(&request, &settings.upgrades);
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
    // The upstream's address is the pool's business and `Host` is the
    // client's.
    parts.uri = Uri::from(target.path_and_query().clone());
    parts.version = Version::HTTP_11;
    let body = TimedBody::new(body, settings.body_timeout);
    (Request::from_parts(parts, body), upgrade)
}

/// The client's side of a requested protocol upgrade, and the `Upgrade`
/// value it offered.
pub(super) type ClientUpgrade = (OnUpgrade, http::HeaderValue);

/// What [`Proxy::admit`] decided.
pub(super) enum Admission {
    /// Forward, as this caller.
    Forward(Admitted, Authenticated),
    /// Answer with a refusal; `caller` is the key's user and id when a
    /// valid key was refused (scope, blocked user, a policy, or later an
    /// upstream failure), for the log line.
    Refuse {
        refusal: Refusal,
        info: RequestInfo,
        caller: Option<Caller>,
    },
    /// Prove the key with bcrypt first, then admit the request again.
    Prove(Proof),
}

impl Admission {
    pub(super) fn refuse(refusal: Refusal, info: RequestInfo) -> Self {
        Admission::Refuse {
            refusal,
            info,
            caller: None,
        }
    }
}

/// A request whose key must be proven with bcrypt before it is admitted.
pub(super) struct Proof {
    pub(super) request: Request<RequestBody>,
    /// For the refusal if the key is not proven.
    pub(super) info: RequestInfo,
    pub(super) presented: prove::Presented,
}

/// A request ready for the upstream, with what its log line needs.
pub(super) struct Admitted {
    pub(super) request: Request<TimedBody<RequestBody>>,
    pub(super) info: RequestInfo,
    pub(super) upgrade: Option<ClientUpgrade>,
}

/// Who a forwarded request was authenticated as, kept past the snapshot:
/// nobody (an anonymous request), or a key's caller, with what is left of
/// its rate limit, if it has one, for the `RateLimit` response fields.
pub(super) enum Authenticated {
    Anonymous,
    Key(Caller, Option<Quota>),
}

impl Authenticated {
    pub(super) fn outcome(&self) -> &'static str {
        match self {
            Authenticated::Anonymous => "anonymous",
            Authenticated::Key(..) => "forwarded",
        }
    }

    pub(super) fn into_caller(self) -> Option<Caller> {
        match self {
            Authenticated::Anonymous => None,
            Authenticated::Key(caller, _) => Some(caller),
        }
    }

    pub(super) fn quota(&self) -> Option<&Quota> {
        match self {
            Authenticated::Anonymous => None,
            Authenticated::Key(_, quota) => quota.as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_standard_in_another_case;

    #[test]
    fn only_standard_methods_in_another_case_are_caught() {
        for method in ["get", "Get", "hEAD", "post", "patch", "Options", "trace"] {
            assert!(is_standard_in_another_case(method), "{method}");
        }
        // Standard methods as written, and extension methods in any case,
        // are not this rule's business.
        for method in [
            "GET", "HEAD", "PATCH", "PROPFIND", "propfind", "gets", "M-SEARCH",
        ] {
            assert!(!is_standard_in_another_case(method), "{method}");
        }
    }
}
