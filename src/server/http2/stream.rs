//! One HTTP/2 stream: from the request h2 accepted to the last DATA frame.
//!
//! The stream's life has three waits, and the client may reset it during
//! any of them:
//!
//! 1. for one of the connection's slots (see [`super::Shared`]): a reset
//!    here costs nothing but a token from the reset bucket;
//! 2. for the handler's response: a reset here may come after the request
//!    went upstream, so the handler is run to its end anyway (the upstream
//!    timeout bounds it) and the slot is held until then;
//! 3. for the response body to be sent: a reset, or a client that stops
//!    granting flow-control window for the body timeout, ends the stream
//!    and drops the upstream body (which closes that upstream connection).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::header::{
    HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, DATE, TE, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use super::OpenStream;
use crate::server::{BoxError, Http2Body, RequestBody};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Starts the task for a stream h2 has just accepted. The handler's future
/// is made here but not polled until the stream has a slot.
pub(super) fn spawn<S, F, B>(
    service: &S,
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    open: OpenStream,
    stall: Duration,
) where
    S: Fn(Request<RequestBody>) -> F,
    F: Future<Output = Response<B>> + Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    // The handler's future (a few KB: it holds the whole upstream
    // exchange) goes on the heap once, here, and so does the stream's own
    // (4.4 KB: the response and its body relay). Inline, each would be
    // copied with the task at each step of the spawn (into the task cell,
    // into its stage), which callgrind counted as most of the
    // instructions an HTTP/2 request cost.
    let handling = Box::pin(service(into_request(request)));
    tokio::spawn(Box::pin(serve(handling, respond, open, stall)));
}

async fn serve<F, B>(
    mut handling: Pin<Box<F>>,
    mut respond: SendResponse<Bytes>,
    open: OpenStream,
    stall: Duration,
) where
    F: Future<Output = Response<B>>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError> + Send,
{
    let shared = open.shared();
    let slot = tokio::select! {
        slot = shared.slots.clone().acquire_owned() => match slot {
            Ok(slot) => slot,
            Err(_closed) => return,
        },
        reset = poll_fn(|cx| respond.poll_reset(cx)) => {
            if reset.is_ok() {
                shared.reset_by_client();
            }
            return;
        }
    };
    let response = tokio::select! {
        response = &mut handling => response,
        reset = poll_fn(|cx| respond.poll_reset(cx)) => {
            if reset.is_ok() {
                shared.reset_by_client();
            }
            // The request may already be upstream: let that exchange end
            // before the slot is freed, or a client could keep any number
            // of upstream requests in flight by resetting streams.
            drop(handling.await);
            return;
        }
    };
    respond_with(response, respond, shared, stall).await;
    drop(slot);
}

/// Sends the response head, then its body.
async fn respond_with<B>(
    response: Response<B>,
    mut respond: SendResponse<Bytes>,
    shared: &super::Shared,
    stall: Duration,
) where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError> + Send,
{
    let (mut parts, body) = response.into_parts();
    strip_connection_headers(&mut parts.headers);
    if !parts.headers.contains_key(DATE) {
        parts.headers.insert(DATE, crate::server::date::now());
    }
    let end = body.is_end_stream();
    if !end && !parts.headers.contains_key(CONTENT_LENGTH) {
        if let Some(length) = body.size_hint().exact() {
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
    }
    let head = Response::from_parts(parts, ());
    match respond.send_response(head, end) {
        Ok(send) if !end => pipe(body, send, shared, stall).await,
        Ok(_) => {}
        Err(error) => {
            // Most often the client reset the stream just before.
            if reset_already(|cx| respond.poll_reset(cx)).await {
                shared.reset_by_client();
            } else {
                tracing::debug!(%error, "HTTP/2 response head not sent");
                respond.send_reset(Reason::INTERNAL_ERROR);
            }
        }
    }
}

/// Copies `body` to the stream as the client's flow-control window allows.
async fn pipe<B>(body: B, mut send: SendStream<Bytes>, shared: &super::Shared, stall: Duration)
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError> + Send,
{
    tokio::pin!(body);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            reset = poll_fn(|cx| send.poll_reset(cx)) => {
                if reset.is_ok() {
                    shared.reset_by_client();
                }
                return;
            }
        };
        let frame = match frame {
            None => {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(frame)) => frame,
            Some(Err(error)) => {
                let error: BoxError = error.into();
                tracing::debug!(%error, "response body failed; resetting the stream");
                send.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = send.send_trailers(trailers);
                } else {
                    let _ = send.send_data(Bytes::new(), true);
                }
                return;
            }
        };
        let end = body.is_end_stream();
        if data.is_empty() {
            if end {
                let _ = send.send_data(data, true);
                return;
            }
            continue;
        }
        while data.has_remaining() {
            send.reserve_capacity(data.len());
            match tokio::time::timeout(stall, window(&mut send)).await {
                Ok(Window::Granted) => {}
                Ok(Window::Reset) => {
                    shared.reset_by_client();
                    return;
                }
                Ok(Window::Closed) => return,
                Err(_elapsed) => {
                    // The client stopped granting window: as with a client
                    // that stops reading over HTTP/1.1, give up on it.
                    send.send_reset(Reason::CANCEL);
                    return;
                }
            }
            let chunk = data.split_to(send.capacity().min(data.len()));
            if send.send_data(chunk, end && data.is_empty()).is_err() {
                if reset_already(|cx| send.poll_reset(cx)).await {
                    shared.reset_by_client();
                }
                return;
            }
        }
        if end {
            return;
        }
    }
}

/// How a wait for send window ended.
enum Window {
    Granted,
    /// The client reset the stream.
    Reset,
    /// The stream or its connection ended otherwise.
    Closed,
}

/// Waits until the stream may send at least one byte.
async fn window(send: &mut SendStream<Bytes>) -> Window {
    while send.capacity() == 0 {
        match poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                return if reset_already(|cx| send.poll_reset(cx)).await {
                    Window::Reset
                } else {
                    Window::Closed
                };
            }
        }
    }
    Window::Granted
}

/// Whether the client has reset the stream, without waiting for it to.
async fn reset_already(
    mut poll_reset: impl FnMut(&mut Context<'_>) -> Poll<Result<Reason, h2::Error>>,
) -> bool {
    poll_fn(|cx| Poll::Ready(matches!(poll_reset(cx), Poll::Ready(Ok(_))))).await
}

/// Headers HTTP/2 forbids (RFC 9113 8.2.2): the h2 crate refuses to send a
/// head with any of them, so they go here whatever the handler left in.
/// Nearly every head has none (the upstream leg already dropped its
/// hop-by-hop fields), so one scan of the names looks first: removing each
/// by name hashed it whether present or not.
fn strip_connection_headers(headers: &mut HeaderMap) {
    const FORBIDDEN: [HeaderName; 5] = [
        CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        TRANSFER_ENCODING,
        UPGRADE,
    ];
    if !headers
        .keys()
        .any(|name| *name == TE || FORBIDDEN.contains(name))
    {
        return;
    }
    for name in FORBIDDEN {
        headers.remove(name);
    }
    if headers.get(TE).is_some_and(|te| te != "trailers") {
        headers.remove(TE);
    }
}

/// The request as the handler sees it: the body wrapped, and `cookie`
/// fields joined into one (RFC 9113 8.2.3), since the upstream speaks
/// HTTP/1.1, where a second `Cookie` line is not allowed.
fn into_request(request: Request<RecvStream>) -> Request<RequestBody> {
    let (mut parts, recv) = request.into_parts();
    join_cookies(&mut parts.headers);
    let body = Http2Body::new(recv, &parts.headers);
    Request::from_parts(parts, RequestBody::Http2(body))
}

fn join_cookies(headers: &mut HeaderMap) {
    let mut crumbs = headers.get_all(COOKIE).iter();
    if crumbs.next().is_none() || crumbs.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    // Empty crumbs carry nothing; `a=1; ; b=2` would only confuse parsers.
    for crumb in headers.get_all(COOKIE).iter().filter(|c| !c.is_empty()) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(crumb.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
        headers.insert(COOKIE, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names `strip_connection_headers` leaves of `fields`.
    fn stripped(fields: &[(&'static str, &'static str)]) -> Vec<String> {
        let mut headers = HeaderMap::new();
        for &(name, value) in fields {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_connection_headers(&mut headers);
        headers.keys().map(HeaderName::to_string).collect()
    }

    #[test]
    fn every_connection_specific_field_is_stripped_and_the_rest_kept() {
        let left = stripped(&[
            ("connection", "x"),
            ("keep-alive", "x"),
            ("proxy-connection", "x"),
            ("transfer-encoding", "x"),
            ("upgrade", "x"),
            ("te", "gzip"),
            ("x-kept", "yes"),
        ]);
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn a_te_other_than_trailers_goes_even_alone() {
        let left = stripped(&[("te", "gzip"), ("x-kept", "yes")]);
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn te_trailers_alone_stays() {
        let left = stripped(&[("te", "trailers"), ("upgrade", "h2c")]);
        assert_eq!(left, ["te"]);
    }

    #[test]
    fn cookie_crumbs_become_one_field() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1"));
        headers.append(COOKIE, HeaderValue::from_static("b=2"));
        headers.append(COOKIE, HeaderValue::from_static(""));
        headers.append(COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut headers);
        let all: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn one_cookie_field_is_left_alone() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; b=2"));
        join_cookies(&mut headers);
        let all: Vec<_> = headers.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
    }
}
