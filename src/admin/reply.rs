//! Admin responses: JSON bodies, `{"error": ...}` for every failure.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, LOCATION};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// What a route's handler returns: a reply either way. `Err` is a reply
/// given instead of the handler's work (input it refused, a store that
/// failed), so a handler states each check once and stops at the first
/// with `?`.
pub(crate) type Handled = Result<Reply, Reply>;

/// A response the admin API is about to send.
#[derive(Debug)]
pub(crate) struct Reply {
    status: StatusCode,
    body: Bytes,
    allow: Option<String>,
    location: Option<String>,
    /// Sends `Connection: close`: the request was answered without its
    /// body being read, so the connection cannot carry another request.
    close: bool,
}

impl Reply {
    /// A JSON body.
    pub(crate) fn json(status: u16, body: &impl Serialize) -> Self {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body: Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
            allow: None,
            location: None,
            close: false,
        }
    }

    /// No body (204).
    pub(crate) fn no_content() -> Self {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: Bytes::new(),
            allow: None,
            location: None,
            close: false,
        }
    }

    /// `{"error": message}`.
    pub(crate) fn error(status: u16, message: impl Into<String>) -> Self {
        #[derive(Serialize)]
        struct Error {
            error: String,
        }
        Self::json(
            status,
            &Error {
                error: message.into(),
            },
        )
    }

    /// 405 listing what is allowed.
    pub(crate) fn method_not_allowed(allowed: &[Method]) -> Self {
        let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        let mut reply = Self::error(
            405,
            format!("method not allowed; use {}", list.join(" or ")),
        );
        reply.allow = Some(list.join(", "));
        reply
    }

    /// Adds a `Location` header (for 201).
    pub(crate) fn with_location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    /// Adds `Connection: close`: keygate's HTTP/1.1 connection closes after
    /// the response.
    pub(crate) fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The hyper response.
    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let has_body = !self.body.is_empty();
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(ALLOW, allow);
        }
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            headers.insert(LOCATION, location);
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
