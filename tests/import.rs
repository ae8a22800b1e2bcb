//! SPEC 9 through the admin API: `POST /v1/import` takes a Haplo
//! application's keys (bcrypt hashes, as Haplo stores them) and users, and
//! the original 44-character keys then work through keygate with their
//! scope, their user, and Haplo's blocks; the batch is all or nothing,
//! idempotent, and a dry run writes nothing; Haplo's keys are read-only.
//!
//! The batch is built here, as `keygate import haplo` would build it from
//! Haplo's tables (reading those tables is tested against a real
//! PostgreSQL in `haplo_source.rs` and `import_cli.rs`).

mod support;

use keygate::keys::ApiKey;
use serde_json::{json, Value};
use support::{RecordingUpstream, Req, TestProxy};

/// A key as Haplo makes it, and the bcrypt hash Haplo stores (cost 4 to
/// keep the tests quick; Haplo uses 5).
fn haplo_key() -> (String, String) {
    let key = ApiKey::generate().unwrap();
    let hash = bcrypt::hash_with_result(&key.expose()[16..], 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    (key.expose().to_owned(), hash)
}

fn row(key: &str, hash: &str, path: &str, user: &str) -> Value {
    json!({"id": &key[..16], "bcrypt": hash, "path": path, "name": "from Haplo", "user": user})
}

async fn import(proxy: &TestProxy, batch: &Value) -> Value {
    let resp = proxy
        .admin_send(proxy.admin("POST", "/v1/import").json(batch))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

async fn setup() -> (RecordingUpstream, TestProxy) {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    (upstream, proxy)
}

#[tokio::test]
async fn imported_keys_work_with_their_scope_user_and_blocks() {
    let (mut upstream, proxy) = setup().await;
    let (alice, alice_hash) = haplo_key();
    let (blocked, blocked_hash) = haplo_key();
    let batch = json!({
        "app": 4000,
        "keys": [
            row(&alice, &alice_hash, "/api/", "1234"),
            row(&blocked, &blocked_hash, "/api/", "1299"),
            {"id": "not-an-id", "bcrypt": alice_hash, "path": "/api/", "name": "x", "user": "1"},
            row(&haplo_key().0, "$2a$05$tooshort", "/api/", "1234"),
        ],
        "users": [{"user": "1234", "blocked": false}, {"user": "1299", "blocked": true}],
    });
    let report = import(&proxy, &batch).await;
    assert_eq!(report["created"], 2, "{report}");
    assert_eq!(report["users_blocked"], 1, "{report}");
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 2, "{report}");
    assert!(skipped
        .iter()
        .all(|s| !s["reason"].as_str().unwrap().is_empty()));
    assert!(
        !report.to_string().contains(&alice_hash[7..]),
        "the report never echoes a hash: {report}"
    );

    // The original key: first use proves it with bcrypt, later ones take
    // the fast path; either way the application sees Haplo's user id.
    for _ in 0..2 {
        let resp = proxy.send(Req::get("/api/thing").basic(&alice)).await;
        assert_eq!(resp.status, 200, "{}", resp.text());
        let seen = upstream.next().await;
        assert_eq!(seen.header("x-haplo-user"), Some("1234"));
        assert_eq!(seen.header("x-haplo-api-key-id"), Some(&alice[..16]));
    }
    let wrong = format!("{}{}", &alice[..16], "B".repeat(28));
    proxy
        .send(Req::get("/api/thing").basic(&wrong))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    proxy
        .send(Req::get("/other").basic(&alice))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    proxy
        .send(Req::get("/api/thing").basic(&blocked))
        .await
        .assert_refused(403, "UNAUTHORISED");
}

#[tokio::test]
async fn a_wrong_secret_on_first_use_is_refused_and_the_right_one_still_works() {
    let (_upstream, proxy) = setup().await;
    let (key, hash) = haplo_key();
    import(
        &proxy,
        &json!({"app": 4000, "keys": [row(&key, &hash, "/api/", "7")], "users": []}),
    )
    .await;
    let wrong = format!("{}{}", &key[..16], "C".repeat(28));
    proxy
        .send(Req::get("/api/x").basic(&wrong))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    let resp = proxy.send(Req::get("/api/x").basic(&key)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[tokio::test]
async fn re_importing_is_idempotent_and_a_dry_run_writes_nothing() {
    let (_upstream, proxy) = setup().await;
    let (one, one_hash) = haplo_key();
    let (two, two_hash) = haplo_key();
    let mut batch = json!({
        "app": 4000,
        "keys": [row(&one, &one_hash, "/api/", "1"), row(&two, &two_hash, "/api/", "2")],
        "users": [],
    });
    let dry = {
        let mut dry = batch.clone();
        dry["dry_run"] = json!(true);
        import(&proxy, &dry).await
    };
    assert_eq!(
        (dry["created"].clone(), dry["dry_run"].clone()),
        (json!(2), json!(true))
    );
    proxy
        .send(Req::get("/api/x").basic(&one))
        .await
        .assert_refused(403, "INVALID-API-KEY");

    let first = import(&proxy, &batch).await;
    assert_eq!(first["created"], 2, "{first}");
    let again = import(&proxy, &batch).await;
    assert_eq!(
        (
            again["created"].clone(),
            again["updated"].clone(),
            again["unchanged"].clone()
        ),
        (json!(0), json!(0), json!(2)),
        "{again}"
    );
    // Haplo narrowed one key's scope: updated, and in effect at once.
    batch["keys"][0]["path"] = json!("=/api/only");
    let changed = import(&proxy, &batch).await;
    assert_eq!(
        (changed["updated"].clone(), changed["unchanged"].clone()),
        (json!(1), json!(1))
    );
    proxy
        .send(Req::get("/api/x").basic(&one))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    assert_eq!(
        proxy.send(Req::get("/api/only").basic(&one)).await.status,
        200
    );
}

#[tokio::test]
async fn haplo_keys_are_read_only_and_a_clash_with_keygate_keys_is_skipped() {
    let (_upstream, proxy) = setup().await;
    let (key, hash) = haplo_key();
    let ours = proxy.create_key("alice", "/api/").await;
    let report = import(
        &proxy,
        &json!({
            "app": 4000,
            "keys": [row(&key, &hash, "/api/", "5"), row(&ours.key, &hash, "/api/", "5")],
            "users": [],
        }),
    )
    .await;
    assert_eq!(report["created"], 1, "{report}");
    let skipped = &report["skipped"][0];
    assert_eq!(skipped["id"], ours.id);
    assert!(
        skipped["reason"].as_str().unwrap().contains("keygate"),
        "{skipped}"
    );
    // keygate's own key is untouched.
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&ours.key)).await.status,
        200
    );

    let id = &key[..16];
    for (method, path) in [
        ("DELETE", format!("/v1/keys/{id}")),
        ("POST", format!("/v1/keys/{id}/rotate")),
    ] {
        let resp = proxy.admin_send(proxy.admin(method, &path)).await;
        assert_eq!(resp.status, 409, "{method} {path}: {}", resp.text());
        assert!(resp.text().contains("Haplo"), "{}", resp.text());
    }
    let shown = proxy
        .admin_send(proxy.admin("GET", &format!("/v1/keys/{id}")))
        .await
        .json();
    assert_eq!(
        (shown["origin"].clone(), shown["haplo_app"].clone()),
        (json!("haplo"), json!(4000))
    );
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
}

#[tokio::test]
async fn an_admin_unblock_does_not_lift_haplos_block() {
    let (_upstream, proxy) = setup().await;
    let (key, hash) = haplo_key();
    import(
        &proxy,
        &json!({"app": 4000, "keys": [row(&key, &hash, "/api/", "42")],
                "users": [{"user": "42", "blocked": true}]}),
    )
    .await;
    let resp = proxy
        .admin_send(
            proxy
                .admin("PUT", "/v1/users/42")
                .json(&json!({"blocked": false})),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["blocked"], true, "{}", resp.text());
    proxy
        .send(Req::get("/api/x").basic(&key))
        .await
        .assert_refused(403, "UNAUTHORISED");
    // Re-activated in Haplo: the next import lifts it.
    let report = import(
        &proxy,
        &json!({"app": 4000, "keys": [row(&key, &hash, "/api/", "42")],
                "users": [{"user": "42", "blocked": false}]}),
    )
    .await;
    assert_eq!(report["users_unblocked"], 1, "{report}");
    assert_eq!(proxy.send(Req::get("/api/x").basic(&key)).await.status, 200);
}
