//! SPEC 6: upgrades pass only to protocols on `proxy.upgrades`; `h2c`
//! never.

use super::support::*;
use super::*;

/// Sends `bytes` and returns the first response, read up to the end of
/// its head (and any body it declares): an upgraded connection stays open,
/// so this cannot wait for the close.
async fn first_response(addr: SocketAddr, bytes: &[u8]) -> support::Resp {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    let complete = |all: &[u8]| {
        support::Resp::parse(all).filter(|r| {
            let declared = r.header("content-length").and_then(|l| l.parse().ok());
            r.status == 101 || declared.is_none_or(|len: usize| r.body.len() >= len)
        })
    };
    loop {
        if let Some(resp) = complete(&all) {
            return resp;
        }
        let n = tokio::time::timeout(support::PATIENCE, stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&chunk[..n]);
    }
}

/// GET `/ws` with `key` and the given header lines: the recording upstream
/// switches protocols for any `/ws` request that reaches it with `Upgrade`.
fn ws_request(key: &str, lines: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {HOST}\r\n{}{lines}\r\n",
        basic_line(key)
    )
    .into_bytes()
}

#[tokio::test]
async fn an_h2c_upgrade_is_forwarded_as_an_ordinary_request_and_never_tunnelled() {
    // What `curl --http2 http://...` sends. Relaying the upstream's 101
    // would let the client speak HTTP/2 to the application with no check
    // on any later stream (h2c smuggling).
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/ws").await;
    for lines in [
        "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        "Connection: Upgrade\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
        "Connection: upgrade\r\nUpgrade: websocket, h2c\r\n",
        "Connection: upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n",
        "Connection: upgrade\r\nUpgrade: HTTP/2.0\r\n",
    ] {
        let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"), "{lines}");
        let seen = upstream.next().await;
        for name in ["upgrade", "connection", "http2-settings"] {
            assert!(seen.all(name).is_empty(), "{lines}: {:?}", seen.headers);
        }
    }
}

#[tokio::test]
async fn http2_settings_is_never_forwarded() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/api/").await;
    let req = Req::get("/api/x")
        .basic(&key.key)
        .header("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA");
    assert_eq!(proxy.send(req).await.status, 200);
    assert!(upstream.next().await.all("http2-settings").is_empty());
}

#[tokio::test]
async fn a_websocket_upgrade_is_relayed_by_default_in_any_case_and_version() {
    let (mut upstream, proxy) = setup().await;
    let key = proxy.create_key("alice", "/ws").await;
    for offer in ["websocket", "WebSocket", "websocket/13"] {
        let lines = format!("Connection: Upgrade\r\nUpgrade: {offer}\r\n");
        let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, &lines)).await;
        assert_eq!(resp.status, 101, "{offer}: {}", resp.text());
        assert_eq!(upstream.next().await.header("upgrade"), Some(offer));
    }
}

#[tokio::test]
async fn the_upgrades_setting_replaces_the_default_list() {
    let (mut upstream, proxy) = setup_with("upgrades = [\"Echo\"]").await;
    let key = proxy.create_key("alice", "/ws").await;
    let lines = "Connection: Upgrade\r\nUpgrade: echo/2\r\n";
    let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
    assert_eq!(resp.status, 101, "{}", resp.text());
    assert_eq!(upstream.next().await.header("upgrade"), Some("echo/2"));
    let lines = "Connection: Upgrade\r\nUpgrade: websocket\r\n";
    let resp = first_response(proxy.proxy_addr, &ws_request(&key.key, lines)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(upstream.next().await.all("upgrade").is_empty());
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------
