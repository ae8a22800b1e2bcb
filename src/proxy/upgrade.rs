//! HTTP/1.1 protocol upgrades (WebSocket and the like), after
//! authentication: the request's `Upgrade` is kept through header hygiene,
//! the upstream's `101 Switching Protocols` is relayed, and then bytes are
//! copied both ways until either side closes. Upgraded connections are
//! byte pipes from then on: no timeouts apply but TCP's own.

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderValue, Request, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The `Upgrade` value of an HTTP/1.1 request that asks to switch
/// protocols (`Connection: upgrade` plus `Upgrade`), if it does.
pub(super) fn requested<B>(request: &Request<B>) -> Option<HeaderValue> {
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
    if asks {
        request.headers().get(UPGRADE).cloned()
    } else {
        None
    }
}

/// Copies bytes both ways between an upgraded client connection and the
/// upstream's, until either side closes.
pub(super) async fn relay(client: OnUpgrade, upstream: OnUpgrade) {
    match tokio::try_join!(client, upstream) {
        Ok((client, upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(%error, "upgraded connection ended with an error");
            }
        }
        Err(error) => tracing::debug!(%error, "protocol upgrade failed"),
    }
}
