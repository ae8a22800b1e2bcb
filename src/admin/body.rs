//! Reading admin request bodies: bounded, JSON, and errors that name the
//! field at fault.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;

use super::reply::Reply;

/// Largest admin request body.
const MAX_BODY: usize = 64 * 1024;

/// Reads a body of at most 64 KiB, or the 4xx to send instead.
pub(crate) async fn read(request: Request<Incoming>) -> Result<Bytes, Reply> {
    Ok(Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                Reply::error(413, format!("request body is larger than {MAX_BODY} bytes"))
            } else {
                Reply::error(400, "request body could not be read")
            }
        })?
        .to_bytes())
}

/// Reads and parses a JSON body, or the 4xx to send instead.
pub(crate) async fn read_json<T: DeserializeOwned>(request: Request<Incoming>) -> Result<T, Reply> {
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
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let message = if path == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body: {path}: {}", e.inner())
        };
        Reply::error(400, message)
    })
}

/// A failed write: logged in full, reported without detail.
pub(crate) fn write_failed(error: &dyn std::fmt::Display) -> Reply {
    tracing::error!(%error, "admin write failed; nothing was changed");
    Reply::error(500, "the store could not be written; nothing was changed")
}
