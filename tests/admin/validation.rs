//! SPEC 7: bad input to the admin API is a 400 naming what is wrong, and
//! writes nothing.

use super::support::*;
use super::*;

#[tokio::test]
async fn bad_users_are_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    let long = "a".repeat(129);
    assert_create_refused(&proxy, br#"{"name":"t"}"#, "user").await;
    assert_create_refused(&proxy, br#"{"user":"a b","name":"t"}"#, "user").await;
    assert_create_refused(&proxy, br#"{"user":"a/b","name":"t"}"#, "user").await;
    assert_create_refused(&proxy, br#"{"user":"","name":"t"}"#, "user").await;
    assert_create_refused(
        &proxy,
        format!(r#"{{"user":"{long}","name":"t"}}"#).as_bytes(),
        "user",
    )
    .await;
}

#[tokio::test]
async fn bad_names_are_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    assert_create_refused(&proxy, br#"{"user":"bob","name":""}"#, "name").await;
    assert_create_refused(&proxy, br#"{"user":"bob","name":"   "}"#, "name").await;
    assert_create_refused(&proxy, br#"{"user":"bob","name":"a\nb"}"#, "name").await;
    assert_create_refused(&proxy, br#"{"user":"bob"}"#, "name").await;
}

#[tokio::test]
async fn names_with_bidi_controls_or_line_separators_are_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    // Every Bidi_Control character, the two Unicode line breaks, and a few
    // C0/C1 controls: each can make a listing lie about what it shows.
    for c in [
        '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
        '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}',
    ] {
        let body = json!({"user": "bob", "name": format!("invoice{c}fdp.exe")}).to_string();
        assert_create_refused(&proxy, body.as_bytes(), "name").await;
    }
    // Other scripts and emoji are names like any other.
    let resp = create(&proxy, &json!({"user": "bob", "name": "Zoë’s ключ 🔑"})).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
}

#[tokio::test]
async fn json_with_bytes_after_the_value_is_400_and_nothing_is_written() {
    let proxy = admin().await;
    let key = proxy.create_key("alice", "/api/").await;
    for body in [
        &br#"{"user":"bob","name":"t"}xyz"#[..],
        br#"{"user":"bob","name":"t"}{"user":"eve","name":"t"}"#,
        br#"{"user":"bob","name":"t"} ]"#,
    ] {
        assert_create_refused(&proxy, body, "json").await;
    }
    let put = proxy
        .admin("PUT", "/v1/users/alice")
        .header("Content-Type", "application/json")
        .body(br#"{"blocked":true}x"#);
    assert_bad_request(&proxy.admin_send(put).await, "json");
    assert_eq!(
        get(&proxy, "/v1/users/alice").await.json()["blocked"],
        false
    );
    let rotate = proxy
        .admin("POST", &format!("/v1/keys/{}/rotate", key.id))
        .header("Content-Type", "application/json")
        .body(br#"{"grace_secs":60}}"#);
    assert_bad_request(&proxy.admin_send(rotate).await, "json");
    assert_eq!(list(&proxy).await["keys"].as_array().map(Vec::len), Some(1));
    // Trailing whitespace is not data: a body from a file ending in a
    // newline is still accepted.
    let req = proxy
        .admin("POST", "/v1/keys")
        .header("Content-Type", "application/json")
        .body(b"{\"user\":\"bob\",\"name\":\"t\"}\r\n");
    assert_eq!(proxy.admin_send(req).await.status, 201);
}

#[tokio::test]
async fn bad_json_is_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    assert_create_refused(
        &proxy,
        br#"{"user":"bob","name":"t","scope":"/api/"}"#,
        "scope",
    )
    .await;
    assert_create_refused(&proxy, br#"{"user":"bob","#, "json").await;
    assert_create_refused(&proxy, b"", "json").await;
    assert_create_refused(&proxy, b"[]", "json").await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_named_by_its_field() {
    let proxy = admin().await;
    assert_create_refused(&proxy, br#"{"user":42,"name":"t"}"#, "user").await;
    assert_create_refused(
        &proxy,
        br#"{"user":"bob","name":"t","expires_at":1900000000}"#,
        "expires_at",
    )
    .await;
    let resp = proxy
        .admin_send(
            proxy
                .admin("PUT", "/v1/users/carol")
                .json(&json!({"blocked": "yes"})),
        )
        .await;
    assert_bad_request(&resp, "blocked");
}

#[tokio::test]
async fn bad_paths_are_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    for path in ["api/", "=/", "/api/../admin/", "/api//x/", "=api/x"] {
        let body = json!({"user": "bob", "name": "t", "path": path}).to_string();
        assert_create_refused(&proxy, body.as_bytes(), "path").await;
    }
}

#[tokio::test]
async fn a_path_with_a_fragment_mark_is_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    // A request-target never carries a `#` (it starts the fragment, which
    // clients do not send), so none of these could ever admit a request.
    for path in [
        "/api/#",
        "/api/x#y",
        "=/api/x#y",
        "/api/x?a=#b",
        "=/api/x?a=1#b",
        "/#",
    ] {
        let body = json!({"user": "bob", "name": "t", "path": path}).to_string();
        assert_create_refused(&proxy, body.as_bytes(), "path").await;
    }
    let body = json!({"user": "bob", "name": "t", "path": "/api/#"});
    let error = create(&proxy, &body).await.json()["error"].to_string();
    assert!(error.contains('#'), "the error says what is wrong: {error}");
}

/// A scope that was accepted before `#` was refused (the store may hold
/// one) still loads: refusing to start over it would be worse than the key,
/// which admits nothing, as it always did.
#[tokio::test]
async fn a_key_stored_with_a_fragment_mark_in_its_path_still_loads() {
    let (dir, upstream) = (
        tempfile::tempdir().unwrap(),
        RecordingUpstream::start().await,
    );
    let proxy = over(&dir, &upstream).await;
    let new = keygate::keys::NewKey {
        user: keygate::keys::UserId::parse("alice").unwrap(),
        name: "from an older keygate".to_owned(),
        scope: keygate::scope::Scope::parse("/api/#x").unwrap(),
        expires_at: None,
        policy: Default::default(),
    };
    let (key, _) = proxy.keyring.create(new, None).expect("seed the store");
    proxy.stop().await;
    let proxy = over(&dir, &upstream).await;
    let listed = list(&proxy).await;
    assert_eq!(listed["keys"][0]["path"], "/api/#x", "{listed}");
    let resp = proxy.send(Req::get("/api/x").basic(key.expose())).await;
    resp.assert_refused(403, "INVALID-API-KEY");
}

#[tokio::test]
async fn bad_expiry_times_are_400_and_nothing_is_written() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    for at in [
        json!("2000-01-01T00:00:00Z"),
        json!("tomorrow"),
        json!("2030-01-31"),
    ] {
        let body = json!({"user": "bob", "name": "t", "expires_at": at}).to_string();
        assert_create_refused(&proxy, body.as_bytes(), "expires_at").await;
    }
}

#[tokio::test]
async fn bad_user_updates_are_400_and_nothing_is_written() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("carol", "/api/").await;
    for (body, word) in [
        (json!({"blocked": "yes"}), "bool"),
        (json!({"blocked": 1}), "bool"),
        (json!({}), "blocked"),
        (json!({"blocked": true, "x": 1}), "x"),
    ] {
        let resp = proxy
            .admin_send(proxy.admin("PUT", "/v1/users/carol").json(&body))
            .await;
        assert_bad_request(&resp, word);
    }
    let resp = proxy
        .admin_send(
            proxy
                .admin("PUT", "/v1/users/a%20b")
                .json(&json!({"blocked": true})),
        )
        .await;
    assert_bad_request(&resp, "user");
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200,
        "carol is not blocked"
    );
}
