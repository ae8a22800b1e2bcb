//! Reading admin request bodies: bounded in size and in time, JSON, and
//! errors that name the field at fault.
//!
//! The admin listener has 64 connection slots (`MAX_CONNECTIONS` in
//! `admin.rs`), so a body must never hold one open for long: a declared
//! length over the limit is refused before any of it is read, and the whole
//! body must arrive within [`BODY_DEADLINE`]. Both answers close the
//! connection (the rest of the body is never read), and both are the usual
//! `{"error": ...}`.

use std::time::Duration;

use crate::server::RequestBody;
use bytes::Bytes;
use http::Request;
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use serde::de::DeserializeOwned;

use super::reply::Reply;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;
/// The whole body must arrive within this time, counted from when the
/// handler starts reading it (just after the head). Admin bodies are a few
/// hundred bytes from a local script: ten seconds is generous for any real
/// client, and it bounds what a stalled or hostile one costs.
const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// Reads a body of at most 64 KiB within the deadline, or the 4xx to send
/// instead.
pub(crate) async fn read(request: Request<RequestBody>) -> Result<Bytes, Reply> {
    read_limited(request, MAX_BODY, BODY_DEADLINE).await
}

/// [`read`] with a route's own size limit and deadline (an import's batch
/// of keys is far larger than any other admin body).
pub(crate) async fn read_limited(
    request: Request<RequestBody>,
    max: usize,
    deadline: Duration,
) -> Result<Bytes, Reply> {
    let body = request.into_body();
    // A declared `Content-Length` is reported as the exact size: over the
    // limit, waiting for the body would only tie the connection up.
    if body.size_hint().lower() > max as u64 {
        return Err(too_large(max));
    }
    match tokio::time::timeout(deadline, Limited::new(body, max).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Ok(Err(_)) => Err(Reply::error(400, "request body could not be read")),
        Err(_elapsed) => Err(Reply::error(
            408,
            format!(
                "the request body did not arrive within {} s",
                deadline.as_secs()
            ),
        )
        .closing()),
    }
}

fn too_large(max: usize) -> Reply {
    Reply::error(413, format!("request body is larger than {max} bytes")).closing()
}

/// Reads and parses a JSON body, or the 4xx to send instead.
pub(crate) async fn read_json<T: DeserializeOwned>(
    request: Request<RequestBody>,
) -> Result<T, Reply> {
    parse_json(&read(request).await?)
}

/// Parses a JSON body; a wrong field is named ("user: invalid type ...").
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, Reply> {
    if body.is_empty() {
        return Err(Reply::error(400, "a JSON body is required"));
    }
    // serde_path_to_error names the field at fault, not only a line and
    // column.
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body: {path}: {}", e.inner())
        };
        Reply::error(400, message)
    })?;
    // The body is one JSON value: anything but whitespace after it (a
    // second object, a stray byte) means the client sent something other
    // than what was parsed, so none of it is acted on.
    deserializer
        .end()
        .map_err(|e| Reply::error(400, format!("invalid JSON body: {e}")))?;
    Ok(value)
}

/// A failed write: logged in full, reported without detail.
pub(crate) fn write_failed(error: &dyn std::fmt::Display) -> Reply {
    tracing::error!(%error, "admin write failed; nothing was changed");
    Reply::error(500, "the store could not be written; nothing was changed")
}
