//! SPEC 7: who may talk to the admin API: no browser (`Origin`), only the
//! listener's own `Host`, and the bearer token when one is configured.

use super::support::*;
use super::*;

#[tokio::test]
async fn a_request_with_an_origin_header_is_refused_and_writes_nothing() {
    let proxy = admin().await;
    let origin = |req: Req| req.header("Origin", "http://evil.example");
    assert_eq!(
        proxy
            .admin_send(origin(proxy.admin("GET", "/v1/keys")))
            .await
            .status,
        403
    );
    let post = origin(
        proxy
            .admin("POST", "/v1/keys")
            .json(&json!({"user": "eve", "name": "t"})),
    );
    let resp = proxy.admin_send(post).await;
    assert_eq!(resp.status, 403);
    assert!(resp.json()["error"].is_string());
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn a_foreign_host_is_refused_while_localhost_with_the_port_is_accepted() {
    let proxy = admin().await;
    let port = proxy.admin_addr.port();
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("localhost:{}", port ^ 1),
    ] {
        let resp = proxy.admin_send(Req::get("/v1/keys").host(&host)).await;
        assert_eq!(resp.status, 403, "Host: {host}");
    }
    let post = Req::new("POST", "/v1/keys")
        .host("evil.example")
        .json(&json!({"user": "eve", "name": "t"}));
    assert_eq!(proxy.admin_send(post).await.status, 403);
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        assert_eq!(
            proxy
                .admin_send(Req::get("/v1/keys").host(&host))
                .await
                .status,
            200,
            "Host: {host}"
        );
    }
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn a_host_naming_the_other_address_family_is_refused() {
    // The listener is on 127.0.0.1: `[::1]` is loopback too, but not this
    // listener's address, so a Host naming it was never meant for us.
    let proxy = admin().await;
    let port = proxy.admin_addr.port();
    for host in [
        format!("[::1]:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let resp = proxy.admin_send(Req::get("/v1/keys").host(&host)).await;
        assert_eq!(resp.status, 403, "Host: {host}");
        assert!(resp.json()["error"].is_string(), "Host: {host}");
    }
}

#[tokio::test]
async fn with_a_token_every_request_needs_the_bearer() {
    let token = "s3cret-admin-token-0123456789";
    let proxy = TestProxy::builder().admin_token(token).start().await;
    let host = proxy.admin_addr.to_string();
    let bare = || Req::get("/v1/keys").host(&host);
    assert_eq!(proxy.admin_send(bare()).await.status, 401);
    assert_eq!(
        proxy
            .admin_send(bare().header("Authorization", "Bearer wrong"))
            .await
            .status,
        401
    );
    let almost = format!("Bearer {token}x");
    assert_eq!(
        proxy
            .admin_send(bare().header("Authorization", &almost))
            .await
            .status,
        401
    );
    let basic = bare().basic_as("admin", token);
    assert_eq!(proxy.admin_send(basic).await.status, 401);
    let right = format!("Bearer {token}");
    assert_eq!(
        proxy
            .admin_send(bare().header("Authorization", &right))
            .await
            .status,
        200
    );
    let create = Req::new("POST", "/v1/keys")
        .host(&host)
        .json(&json!({"user": "eve", "name": "t"}));
    assert_eq!(proxy.admin_send(create).await.status, 401);
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let token = "s3cret-admin-token-0123456789";
    let proxy = TestProxy::builder().admin_token(token).start().await;
    let host = proxy.admin_addr.to_string();
    for scheme in ["bearer", "BEARER"] {
        let req = Req::get("/v1/keys")
            .host(&host)
            .header("Authorization", &format!("{scheme} {token}"));
        assert_eq!(proxy.admin_send(req).await.status, 200, "{scheme}");
    }
}
