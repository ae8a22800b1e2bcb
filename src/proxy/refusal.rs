//! Every way keygate answers a request itself, instead of forwarding it.
//!
//! A [`Refusal`] knows its status, Haplo's `kind` and message, who caused
//! it ([`Blame`]) and the outcome written to the access log. The JSON body
//! has Haplo's shape and key order:
//!
//! ```json
//! {"success":false,"kind":"INVALID-API-KEY","error":{"message":"Invalid API Key"}}
//! ```
//!
//! `WWW-Authenticate` is never sent (Haplo never sends it, and a browser
//! prompt is not wanted for API keys).

use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};

use crate::auth::{CredentialsError, Denied};
use crate::target::TargetError;

/// Who caused a refusal: decides the log level and tells operators where to
/// look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The request was malformed or not authorised.
    Client,
    /// The upstream failed or was too slow.
    Upstream,
    /// keygate itself could not take the request now.
    Keygate,
}

/// Why a request was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    /// A `CONNECT`, in any target form: keygate forwards requests and
    /// opens no tunnels. Refused before the target check, because an
    /// origin-form `CONNECT /api/x` would pass it, and an upstream that
    /// took the 2xx answer to it for a tunnel, or left its body unread
    /// (RFC 9110 gives `CONNECT` no body), could read the bytes after it
    /// as a request keygate never checked.
    #[error("CONNECT is not supported: keygate forwards requests and opens no tunnels")]
    Connect,
    /// A standard method spelled in another case (`get`, `Head`). Methods
    /// are case-sensitive, so to keygate `get` is an extension method:
    /// outside every key's method list, and framed as a body-carrying
    /// request. A server that matched methods without case would read it
    /// as `GET`, or a `head` as `HEAD` with no response body after all.
    /// nginx refuses lower-case methods too.
    #[error("method names a standard method in another case; methods are case-sensitive")]
    MethodCase,
    /// An ambiguous or unsupported request-target.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Ambiguous credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// No `Host` header (Haplo selects the application by host name).
    #[error("missing Host header")]
    MissingHost,
    /// More than one `Host` header.
    #[error("more than one Host header")]
    MultipleHost,
    /// Absolute-form target whose authority disagrees with `Host`.
    #[error("request-target authority and Host header disagree")]
    HostMismatch,
    /// A `Host` or request authority that is not a plain host with an
    /// optional numeric port (see `proxy::headers::host`).
    #[error("Host is not a valid host name or IP address with an optional port")]
    InvalidHost,
    /// The request body was malformed (bad chunking) or cut short.
    #[error("request body was malformed or cut short")]
    Body,
    /// The request body stalled past `body_timeout_secs`.
    #[error("request body was not received in time")]
    BodyTimeout,
}

/// What went wrong reaching the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamCause {
    /// The connection was refused or could not be made.
    Connect,
    /// The connection closed or reset before a full response head.
    Closed,
    /// Anything else (an invalid response, say).
    Other,
}

impl UpstreamCause {
    /// A label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamCause::Connect => "connect",
            UpstreamCause::Closed => "closed",
            UpstreamCause::Other => "other",
        }
    }
}

/// A request keygate answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400 `BAD-REQUEST`.
    BadRequest(BadRequest),
    /// 403 with the kind of SPEC 5's table.
    Denied(Denied),
    /// 502 `BAD-GATEWAY`.
    BadGateway(UpstreamCause),
    /// 504 `GATEWAY-TIMEOUT`.
    GatewayTimeout,
    /// 503 `TEMPORARILY-UNAVAILABLE`, with `Retry-After`: too many keys
    /// imported from Haplo are waiting for their first (bcrypt) check.
    Busy,
}

impl Refusal {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Denied(Denied::RateLimited(_)) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Denied(_) => StatusCode::FORBIDDEN,
            Refusal::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Refusal::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Haplo's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "BAD-REQUEST",
            Refusal::Denied(denied) => denied.kind(),
            Refusal::BadGateway(_) => "BAD-GATEWAY",
            Refusal::GatewayTimeout => "GATEWAY-TIMEOUT",
            Refusal::Busy => "TEMPORARILY-UNAVAILABLE",
        }
    }

    /// Who caused it.
    pub fn blame(self) -> Blame {
        match self {
            Refusal::BadRequest(_) | Refusal::Denied(_) => Blame::Client,
            Refusal::BadGateway(_) | Refusal::GatewayTimeout => Blame::Upstream,
            Refusal::Busy => Blame::Keygate,
        }
    }

    /// The access-log outcome.
    pub fn outcome(self) -> &'static str {
        match self {
            Refusal::BadRequest(_) => "bad-request",
            Refusal::Denied(denied) => denied.outcome(),
            Refusal::BadGateway(_) => "upstream-error",
            Refusal::GatewayTimeout => "upstream-timeout",
            Refusal::Busy => "busy",
        }
    }

    /// The response body.
    pub fn body(self) -> Bytes {
        match self {
            // The refusals a key-guessing client gets, millions of times:
            // the same few bytes each time, serialised once.
            Refusal::Denied(denied) => Bytes::from_static(denied_body(denied)),
            other => Bytes::from(other.serialise()),
        }
    }

    fn serialise(self) -> Vec<u8> {
        // A struct, not `json!`: field order is Haplo's, not alphabetical.
        #[derive(serde::Serialize)]
        struct Body<'a> {
            success: bool,
            kind: &'a str,
            error: Message<'a>,
        }
        #[derive(serde::Serialize)]
        struct Message<'a> {
            message: &'a str,
        }
        let message = self.to_string();
        let body = Body {
            success: false,
            kind: self.kind(),
            error: Message { message: &message },
        };
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The full response, with a body of type `B` built from the JSON.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        match self {
            Refusal::Busy => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Refusal::Denied(Denied::RateLimited(backoff)) => {
                headers.insert(RETRY_AFTER, HeaderValue::from(backoff.retry_after));
                rate_limit_headers(
                    headers,
                    backoff.quota,
                    backoff.window,
                    0,
                    backoff.retry_after,
                );
            }
            _ => {}
        }
        response
    }
}

/// The IETF `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers-10) for a key's token bucket:
/// a quota of `burst` requests per `window` seconds, `remaining` of them
/// left, and `reset` seconds until the bucket is full (on a 429, until the
/// next request is admitted, the same moment as `Retry-After`).
pub(super) fn rate_limit_headers(
    headers: &mut http::HeaderMap,
    burst: u32,
    window: u64,
    remaining: u64,
    reset: u64,
) {
    // Digits and fixed text only: always a valid header value.
    let policy = format!("\"key\";q={burst};w={window}");
    let state = format!("\"key\";r={remaining};t={reset}");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(RATELIMIT_POLICY, value);
    }
    if let Ok(value) = HeaderValue::from_str(&state) {
        headers.insert(RATELIMIT, value);
    }
}

/// `RateLimit-Policy`.
const RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
const RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// The JSON body of each [`Denied`] refusal, made on first use.
fn denied_body(denied: Denied) -> &'static [u8] {
    /// One `Denied` of each variant (the body depends on the variant
    /// only), in the order [`index`] numbers them.
    const ALL: [Denied; 8] = [
        Denied::NoKey,
        Denied::Throttled,
        Denied::InvalidKey,
        Denied::OutOfScope,
        Denied::UserBlocked,
        Denied::MethodNotAllowed,
        Denied::AddressNotAllowed,
        Denied::RateLimited(crate::auth::Backoff {
            retry_after: 1,
            quota: 1,
            window: 1,
        }),
    ];
    fn index(denied: Denied) -> usize {
        match denied {
            Denied::NoKey => 0,
            Denied::Throttled => 1,
            Denied::InvalidKey => 2,
            Denied::OutOfScope => 3,
            Denied::UserBlocked => 4,
            Denied::MethodNotAllowed => 5,
            Denied::AddressNotAllowed => 6,
            Denied::RateLimited(_) => 7,
        }
    }
    static BODIES: OnceLock<[Vec<u8>; 8]> = OnceLock::new();
    let bodies = BODIES.get_or_init(|| ALL.map(|denied| Refusal::Denied(denied).serialise()));
    &bodies[index(denied)]
}

impl fmt::Display for Refusal {
    /// The `error.message` text: Haplo's exact words where Haplo has them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::BadRequest(reason) => write!(f, "Bad request: {reason}"),
            Refusal::Denied(denied) => f.write_str(denied.message()),
            Refusal::BadGateway(_) => {
                f.write_str("Bad gateway: the application could not be reached")
            }
            Refusal::GatewayTimeout => {
                f.write_str("Gateway timeout: the application did not respond in time")
            }
            Refusal::Busy => f.write_str(
                "Temporarily unavailable: too many keys are being checked for the first time; retry shortly",
            ),
        }
    }
}

impl From<BadRequest> for Refusal {
    fn from(reason: BadRequest) -> Self {
        Refusal::BadRequest(reason)
    }
}

impl From<Denied> for Refusal {
    fn from(denied: Denied) -> Self {
        Refusal::Denied(denied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_have_haplos_shape_and_order() {
        let body = Refusal::Denied(Denied::InvalidKey).body();
        assert_eq!(
            body,
            r#"{"success":false,"kind":"INVALID-API-KEY","error":{"message":"Invalid API Key"}}"#
        );
    }

    #[test]
    fn each_cached_denial_body_is_its_own() {
        for denied in [
            Denied::NoKey,
            Denied::Throttled,
            Denied::InvalidKey,
            Denied::OutOfScope,
            Denied::UserBlocked,
            Denied::MethodNotAllowed,
            Denied::AddressNotAllowed,
            Denied::RateLimited(crate::auth::Backoff {
                retry_after: 7,
                quota: 3,
                window: 9,
            }),
        ] {
            let refusal = Refusal::Denied(denied);
            assert_eq!(refusal.body(), refusal.serialise(), "{denied:?}");
            assert!(refusal.body().ends_with(
                format!(
                    "\"kind\":\"{}\",\"error\":{{\"message\":\"{}\"}}}}",
                    denied.kind(),
                    denied.message()
                )
                .as_bytes()
            ));
        }
    }

    #[test]
    fn rate_limited_is_a_429_with_retry_after_and_ratelimit_fields() {
        let backoff = crate::auth::Backoff {
            retry_after: 7,
            quota: 20,
            window: 2,
        };
        let response = Refusal::Denied(Denied::RateLimited(backoff)).into_response::<Bytes>();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let headers = response.headers();
        assert_eq!(headers[RETRY_AFTER], "7");
        assert_eq!(headers["ratelimit-policy"], "\"key\";q=20;w=2");
        assert_eq!(headers["ratelimit"], "\"key\";r=0;t=7");
        assert!(response
            .body()
            .starts_with(br#"{"success":false,"kind":"RATE-LIMITED""#));
    }
}
