//! HTTP/1.1 protocol upgrades (WebSocket and the like), after
//! authentication: the request's `Upgrade` is kept through header hygiene,
//! the upstream's `101 Switching Protocols` is relayed, and then bytes are
//! copied both ways until either side closes. Upgraded connections are
//! byte pipes from then on: no timeouts apply but TCP's own, and nothing
//! sent through them is checked. Only the request that asked for the
//! upgrade was authenticated and scope-checked.
//!
//! That is why only protocols on `proxy.upgrades` (default `websocket`)
//! are relayed. `Upgrade: h2c` in particular must never be: with an
//! application that answers it, the client would then speak HTTP/2 to the
//! application directly, every later stream unchecked (h2c smuggling).
//! A request offering anything not on the list is forwarded as an ordinary
//! request with the upgrade removed, which RFC 9110 7.8 allows ("a server
//! MAY ignore a received Upgrade header field"); refusing it instead would
//! break `curl --http2` against a plain listener, which offers `h2c` on
//! every request.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Version};
use tokio::io::AsyncWriteExt;

use super::upstream::Switched;
use crate::server::OnUpgrade;

use crate::config::is_tchar;

/// The `Upgrade` value to forward for an HTTP/1.1 request that asks to
/// switch protocols (`Connection: upgrade` plus `Upgrade`), if it does and
/// every protocol it offers is in `allowed` (lower-case names).
pub(super) fn requested<B>(request: &Request<B>, allowed: &[String]) -> Option<HeaderValue> {
    if request.version() != Version::HTTP_11 {
        return None;
    }
    let asks = request.headers().get_all(CONNECTION).iter().any(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
    });
    if !asks {
        return None;
    }
    let mut values = request.headers().get_all(UPGRADE).iter();
    let first = values.next()?;
    let mut offered = 0;
    for value in request.headers().get_all(UPGRADE) {
        for protocol in value.to_str().ok()?.split(',') {
            let protocol = protocol.trim_matches([' ', '\t']);
            // An empty list element is legal and means nothing.
            if protocol.is_empty() {
                continue;
            }
            if !is_allowed(protocol, allowed) {
                return None;
            }
            offered += 1;
        }
    }
    if offered == 0 {
        return None;
    }
    if values.next().is_none() {
        return Some(first.clone());
    }
    // Several `Upgrade` lines are one list (RFC 9110 5.3); hop-by-hop
    // removal drops them all, so the one put back must carry the whole list.
    let joined: Vec<&str> = request
        .headers()
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    HeaderValue::from_str(&joined.join(", ")).ok()
}

/// Whether the upstream's `101` switched to a protocol the client offered
/// (`offered`, the `Upgrade` value forwarded): its `Upgrade` must name one
/// protocol, and that protocol's name must be among the offered ones.
/// Otherwise the application switched to something keygate never
/// allowed, and the 101 is not relayed.
pub(super) fn switched_as_offered(offered: &HeaderValue, chosen: Option<&HeaderValue>) -> bool {
    let name = |protocol: &str| {
        protocol
            .split_once('/')
            .map_or(protocol, |(name, _)| name)
            .trim_matches([' ', '\t'])
            .to_ascii_lowercase()
    };
    let Some(chosen) = chosen.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if chosen.contains(',') {
        return false;
    }
    let chosen = name(chosen);
    !chosen.is_empty()
        && offered
            .to_str()
            .unwrap_or("")
            .split(',')
            .any(|protocol| name(protocol) == chosen)
}

/// Whether `protocol` (`name` or `name/version`, both tokens) names a
/// protocol in `allowed`, ignoring case.
fn is_allowed(protocol: &str, allowed: &[String]) -> bool {
    let (name, version) = match protocol.split_once('/') {
        Some((name, version)) => (name, Some(version)),
        None => (protocol, None),
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(is_tchar);
    token(name) && version.is_none_or(token) && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Copies bytes both ways between an upgraded client connection and the
/// upstream's, until either side closes. Bytes the upstream sent right
/// behind its `101` (already read with the head) go to the client first.
pub(super) async fn relay(client: OnUpgrade, upstream: Switched) {
    let Some((mut upstream, read_ahead)) = upstream.into_parts() else {
        tracing::debug!("protocol upgrade failed: no upstream connection");
        return;
    };
    let mut client = match client.await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, "protocol upgrade failed");
            return;
        }
    };
    if !read_ahead.is_empty() {
        if let Err(error) = client.write_all(&read_ahead).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
            return;
        }
    }
    if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(%error, "upgraded connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(lines: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::get("/ws");
        for (name, value) in lines {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    fn websocket() -> Vec<String> {
        vec!["websocket".to_owned()]
    }

    /// Request header lines, and the `Upgrade` value to forward.
    type Case = (
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
    );

    #[test]
    fn only_listed_protocols_are_kept() {
        let cases: [Case; 10] = [
            (
                &[("connection", "Upgrade"), ("upgrade", "websocket")],
                Some("websocket"),
            ),
            (
                &[
                    ("connection", "keep-alive, upgrade"),
                    ("upgrade", "WebSocket/13"),
                ],
                Some("WebSocket/13"),
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket, ,")],
                Some("websocket, ,"),
            ),
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "websocket/13"),
                ],
                Some("websocket, websocket/13"),
            ),
            (&[("connection", "upgrade"), ("upgrade", "h2c")], None),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket, h2c")],
                None,
            ),
            (
                &[
                    ("connection", "upgrade"),
                    ("upgrade", "websocket"),
                    ("upgrade", "H2C"),
                ],
                None,
            ),
            (
                &[("connection", "upgrade"), ("upgrade", "websocket/1 2")],
                None,
            ),
            (&[("connection", "upgrade"), ("upgrade", " , ")], None),
            (&[("upgrade", "websocket")], None),
        ];
        for (lines, expected) in cases {
            let got = requested(&request(lines), &websocket());
            assert_eq!(
                got.as_ref().and_then(|v| v.to_str().ok()),
                expected,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn only_an_offered_protocol_may_be_switched_to() {
        let offered = HeaderValue::from_static("websocket, chat/2");
        let check = |chosen: &'static str| {
            switched_as_offered(&offered, Some(&HeaderValue::from_static(chosen)))
        };
        assert!(check("websocket") && check("WebSocket") && check("chat/3"));
        assert!(!check("h2c") && !check("websocket, h2c") && !check(""));
        assert!(!switched_as_offered(&offered, None));
    }

    #[test]
    fn http2_requests_never_upgrade() {
        let mut req = request(&[("connection", "upgrade"), ("upgrade", "websocket")]);
        *req.version_mut() = Version::HTTP_2;
        assert!(requested(&req, &websocket()).is_none());
    }
}
