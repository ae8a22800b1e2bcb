//! SPEC 7: the admin API, and the durability of what it changes.

mod support;

#[path = "admin/bodies.rs"]
mod bodies;
#[path = "admin/guard.rs"]
mod guard;
#[path = "admin/validation.rs"]
mod validation;

use keygate::timestamp::Timestamp;
use serde_json::{json, Value};
use support::{RecordingUpstream, Req, Resp, TestProxy};

const NO_SUCH_ID: &str = "AAAAAAAAAAAAAAAA";

async fn admin() -> TestProxy {
    TestProxy::builder().start().await
}

async fn create(proxy: &TestProxy, body: &Value) -> Resp {
    proxy
        .admin_send(proxy.admin("POST", "/v1/keys").json(body))
        .await
}

async fn get(proxy: &TestProxy, path: &str) -> Resp {
    proxy.admin_send(proxy.admin("GET", path)).await
}

/// `GET /v1/keys`, asserting 200.
async fn list(proxy: &TestProxy) -> Value {
    let resp = get(proxy, "/v1/keys").await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// Asserts a 400 whose `error` mentions `word`.
fn assert_bad_request(resp: &Resp, word: &str) {
    assert_eq!(resp.status, 400, "{}", resp.text());
    let error = resp.json()["error"].as_str().map(str::to_owned);
    let error = error.unwrap_or_else(|| panic!("{{\"error\": ...}} body: {}", resp.text()));
    assert!(
        error.to_lowercase().contains(word),
        "error should name {word:?}: {error}"
    );
}

/// Posts `body` (raw bytes) to create a key; asserts a 400 naming `word`
/// and that the key list did not change.
async fn assert_create_refused(proxy: &TestProxy, body: &[u8], word: &str) {
    let before = list(proxy).await;
    let req = proxy
        .admin("POST", "/v1/keys")
        .header("Content-Type", "application/json")
        .body(body);
    let resp = proxy.admin_send(req).await;
    assert_bad_request(&resp, word);
    assert_eq!(
        list(proxy).await,
        before,
        "nothing written for {}",
        String::from_utf8_lossy(body)
    );
}

#[tokio::test]
async fn create_returns_201_with_the_key_in_haplo_format() {
    let proxy = admin().await;
    let resp = create(
        &proxy,
        &json!({"user": "alice", "name": "sync", "path": "/api/x/"}),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let body = resp.json();
    let key = body["key"].as_str().expect("key");
    assert_eq!(key.len(), 44, "{key}");
    assert!(key.chars().all(is_key_char), "{key}");
    assert!(
        key.starts_with(|c: char| c.is_ascii_alphanumeric()),
        "{key}"
    );
    assert!(key.ends_with(|c: char| c.is_ascii_alphanumeric()), "{key}");
    assert_eq!(body["id"], key[..16]);
    assert_eq!(
        (&body["user"], &body["name"], &body["path"]),
        (&json!("alice"), &json!("sync"), &json!("/api/x/"))
    );
    assert!(
        body.get("warnings")
            .is_none_or(|w| w.as_array().is_some_and(Vec::is_empty)),
        "{body}"
    );
}

#[tokio::test]
async fn created_at_is_an_rfc3339_utc_time_of_now() {
    let proxy = admin().await;
    let before = Timestamp::now();
    let body = proxy.create_key("alice", "/api/").await.created;
    let text = body["created_at"].as_str().expect("created_at");
    assert!(text.ends_with('Z'), "{text}");
    let at = Timestamp::parse_rfc3339(text).expect("RFC 3339");
    assert!(before <= at && at <= Timestamp::now(), "{text}");
}

#[tokio::test]
async fn create_sets_location_to_the_new_key() {
    let proxy = admin().await;
    let resp = create(&proxy, &json!({"user": "alice", "name": "t"})).await;
    let id = resp.json()["id"].as_str().unwrap().to_owned();
    let location = resp.header("location").expect("Location header").to_owned();
    assert_eq!(location, format!("/v1/keys/{id}"));
    let shown = get(&proxy, &location).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json()["id"], id);
}

#[tokio::test]
async fn the_path_defaults_to_api() {
    let proxy = admin().await;
    let resp = create(&proxy, &json!({"user": "alice", "name": "t"})).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.json()["path"], "/api/");
}

#[tokio::test]
async fn a_prefix_without_a_trailing_slash_gets_a_warning() {
    let proxy = admin().await;
    let resp = create(
        &proxy,
        &json!({"user": "alice", "name": "t", "path": "/api/test"}),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let warnings = resp.json()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{}", resp.text());
    assert!(
        warnings[0].as_str().is_some_and(|w| w.contains("/")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn the_key_is_never_shown_again() {
    let proxy = admin().await;
    let key = proxy.create_key("alice", "/api/").await;
    let secret = &key.key[16..];
    for path in [
        "/v1/keys".to_owned(),
        format!("/v1/keys/{}", key.id),
        "/v1/keys?user=alice".to_owned(),
    ] {
        let text = get(&proxy, &path).await.text();
        assert!(text.contains(&key.id), "{path}: {text}");
        assert!(!text.contains(secret), "{path} shows the secret: {text}");
    }
}

#[tokio::test]
async fn a_listed_key_has_exactly_the_spec_fields() {
    let proxy = admin().await;
    proxy.create_key("alice", "/api/").await;
    let keys = list(&proxy).await["keys"]
        .as_array()
        .cloned()
        .expect("keys array");
    assert_eq!(keys.len(), 1);
    let mut fields: Vec<&str> = keys[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "path",
            "user"
        ]
    );
}

#[tokio::test]
async fn listing_filters_by_user() {
    let proxy = admin().await;
    let alice = proxy.create_key("alice", "/api/").await;
    let bob = proxy.create_key("bob", "/api/").await;
    let ids = |v: Value| -> Vec<String> {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(get(&proxy, "/v1/keys?user=alice").await.json()),
        [alice.id]
    );
    assert_eq!(ids(get(&proxy, "/v1/keys?user=bob").await.json()), [bob.id]);
    assert!(ids(get(&proxy, "/v1/keys?user=carol").await.json()).is_empty());
    assert_eq!(ids(list(&proxy).await).len(), 2);
}

#[tokio::test]
async fn pages_of_keys_cover_every_key_once_in_id_order() {
    let proxy = admin().await;
    let mut all = Vec::new();
    for user in ["alice", "bob", "alice", "alice", "bob", "alice", "alice"] {
        all.push((user, proxy.create_key(user, "/api/").await.id));
    }
    // Follows `next` from the first page to the last.
    let pages = |first: &'static str| {
        let proxy = &proxy;
        async move {
            let mut seen = Vec::new();
            let mut path = first.to_owned();
            loop {
                let page = get(proxy, &path).await;
                assert_eq!(page.status, 200, "{}", page.text());
                let page = page.json();
                let keys = page["keys"].as_array().unwrap();
                assert!(keys.len() <= 2, "a page holds at most `limit` keys");
                seen.extend(keys.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
                match page["next"].as_str() {
                    Some(next) => path = format!("{first}&after={next}"),
                    None => return seen,
                }
            }
        }
    };
    let mut ids: Vec<String> = all.iter().map(|(_, id)| id.clone()).collect();
    ids.sort();
    assert_eq!(pages("/v1/keys?limit=2").await, ids);
    let mut alices: Vec<String> = all
        .iter()
        .filter(|(user, _)| *user == "alice")
        .map(|(_, id)| id.clone())
        .collect();
    alices.sort();
    assert_eq!(pages("/v1/keys?user=alice&limit=2").await, alices);
    // A page has the listing's fields; the last one has no `next`.
    let last = get(&proxy, &format!("/v1/keys?after={}", ids[5]))
        .await
        .json();
    assert_eq!(last["keys"].as_array().unwrap().len(), 1);
    assert_eq!(last["keys"][0]["id"], ids[6]);
    assert_eq!(
        last["keys"][0]["user"],
        all.iter().find(|(_, id)| *id == ids[6]).unwrap().0
    );
    assert!(last.get("next").is_none());
    // The unpaged listing is unchanged: every key, and no `next`.
    let everything = list(&proxy).await;
    assert_eq!(everything["keys"].as_array().unwrap().len(), 7);
    assert!(everything.get("next").is_none());
}

#[tokio::test]
async fn bad_paging_parameters_are_400() {
    let proxy = admin().await;
    for query in ["limit=0", "limit=10001", "limit=ten", "limit=-1"] {
        assert_bad_request(&get(&proxy, &format!("/v1/keys?{query}")).await, "limit");
    }
    assert_bad_request(&get(&proxy, "/v1/keys?after=nope").await, "after");
    assert_bad_request(&get(&proxy, "/v1/keys?page=2").await, "page");
}

#[tokio::test]
async fn an_unknown_key_id_is_404_on_get_and_delete() {
    let proxy = admin().await;
    let path = format!("/v1/keys/{NO_SUCH_ID}");
    let shown = get(&proxy, &path).await;
    assert_eq!(shown.status, 404);
    assert!(shown.json()["error"].is_string());
    let deleted = proxy.admin_send(proxy.admin("DELETE", &path)).await;
    assert_eq!(deleted.status, 404);
    assert!(deleted.json()["error"].is_string());
}

#[tokio::test]
async fn delete_returns_204_and_the_key_is_gone() {
    let proxy = admin().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy
        .admin_send(proxy.admin("DELETE", &format!("/v1/keys/{}", key.id)))
        .await;
    assert_eq!(resp.status, 204, "{}", resp.text());
    assert!(resp.body.is_empty());
    assert_eq!(
        get(&proxy, &format!("/v1/keys/{}", key.id)).await.status,
        404
    );
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn putting_a_user_blocked_returns_the_user_and_the_flag() {
    let proxy = admin().await;
    for blocked in [true, false] {
        let req = proxy
            .admin("PUT", "/v1/users/carol@example.com")
            .json(&json!({"blocked": blocked}));
        let resp = proxy.admin_send(req).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert_eq!(
            resp.json(),
            json!({"user": "carol@example.com", "blocked": blocked})
        );
    }
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow() {
    let proxy = admin().await;
    let key_path = format!("/v1/keys/{NO_SUCH_ID}");
    for (method, path, allowed) in [
        ("PUT", "/v1/keys", "POST"),
        ("DELETE", "/v1/keys", "GET"),
        ("POST", key_path.as_str(), "DELETE"),
        ("DELETE", "/v1/users/carol", "PUT"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
    ] {
        let resp = proxy.admin_send(proxy.admin(method, path)).await;
        assert_eq!(resp.status, 405, "{method} {path}");
        let allow = resp
            .header("allow")
            .unwrap_or_else(|| panic!("Allow on {method} {path}"));
        assert!(
            allow.contains(allowed) && !allow.contains(method),
            "{method} {path}: Allow: {allow}"
        );
        assert!(resp.json()["error"].is_string());
    }
}

#[tokio::test]
async fn unknown_routes_are_404() {
    let proxy = admin().await;
    for path in [
        "/",
        "/v1",
        "/v1/nothing",
        "/v2/keys",
        "/v1/users",
        "/healthz/x",
    ] {
        let resp = get(&proxy, path).await;
        assert_eq!(resp.status, 404, "{path}");
        assert!(resp.json()["error"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn health_and_readiness_are_200() {
    let proxy = admin().await;
    assert_eq!(get(&proxy, "/healthz").await.status, 200);
    assert_eq!(get(&proxy, "/readyz").await.status, 200);
}

#[tokio::test]
async fn a_body_over_64_kib_is_413_and_nothing_is_written() {
    let proxy = admin().await;
    // Exactly one byte over the limit, so the server has read all of it.
    let head = r#"{"user":"alice","name":""#;
    let padding = "x".repeat(64 * 1024 + 1 - head.len() - 2);
    let body = format!("{head}{padding}\"}}");
    assert_eq!(body.len(), 64 * 1024 + 1);
    let req = proxy
        .admin("POST", "/v1/keys")
        .header("Content-Type", "application/json");
    let resp = proxy.admin_send(req.body(body.as_bytes())).await;
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert!(resp.json()["error"].is_string());
    assert_eq!(list(&proxy).await, json!({"keys": []}));
}

#[tokio::test]
async fn a_key_with_a_future_expiry_is_listed_with_it() {
    let proxy = admin().await;
    let at = Timestamp::now().plus_secs(5).to_string();
    let resp = create(
        &proxy,
        &json!({"user": "alice", "name": "t", "expires_at": at}),
    )
    .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let id = resp.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(resp.json()["expires_at"], at);
    assert_eq!(list(&proxy).await["keys"][0]["expires_at"], at);
    assert_eq!(
        get(&proxy, &format!("/v1/keys/{id}")).await.json()["expires_at"],
        at
    );
}

#[tokio::test]
async fn an_expiry_with_an_offset_is_shown_in_utc() {
    let proxy = admin().await;
    let body = json!({"user": "alice", "name": "t", "expires_at": "2099-01-01T02:00:00+02:00"});
    let resp = create(&proxy, &body).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    assert_eq!(resp.json()["expires_at"], "2099-01-01T00:00:00Z");
}

/// Starts a keygate forwarding to `upstream` over the store in `dir`.
async fn over(dir: &tempfile::TempDir, upstream: &RecordingUpstream) -> TestProxy {
    TestProxy::builder()
        .upstream(upstream.addr)
        .store_dir(dir.path())
        .start()
        .await
}

#[tokio::test]
async fn a_created_key_survives_a_restart() {
    let (dir, upstream) = (
        tempfile::tempdir().unwrap(),
        RecordingUpstream::start().await,
    );
    let proxy = over(&dir, &upstream).await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy.stop().await;
    let proxy = over(&dir, &upstream).await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    assert_eq!(
        get(&proxy, &format!("/v1/keys/{}", key.id)).await.json()["user"],
        "alice"
    );
}

#[tokio::test]
async fn a_revoked_key_stays_revoked_after_a_restart() {
    let (dir, upstream) = (
        tempfile::tempdir().unwrap(),
        RecordingUpstream::start().await,
    );
    let proxy = over(&dir, &upstream).await;
    let key = proxy.create_key("alice", "/api/").await;
    proxy.revoke(&key.id).await;
    proxy.stop().await;
    let proxy = over(&dir, &upstream).await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    resp.assert_refused(403, "INVALID-API-KEY");
    assert_eq!(
        get(&proxy, &format!("/v1/keys/{}", key.id)).await.status,
        404
    );
}

#[tokio::test]
async fn a_blocked_user_stays_blocked_after_a_restart() {
    let (dir, upstream) = (
        tempfile::tempdir().unwrap(),
        RecordingUpstream::start().await,
    );
    let proxy = over(&dir, &upstream).await;
    let key = proxy.create_key("carol", "/api/").await;
    proxy.set_blocked("carol", true).await;
    proxy.stop().await;
    let proxy = over(&dir, &upstream).await;
    let resp = proxy.send(Req::get("/api/x").basic(&key.key)).await;
    resp.assert_refused(403, "UNAUTHORISED");
    proxy.set_blocked("carol", false).await;
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
}
