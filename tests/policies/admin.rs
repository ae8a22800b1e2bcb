//! `PATCH /v1/keys/{id}` and policies through the admin API: edits take
//! effect on the next request, bad input is a 400 naming the field with
//! nothing written, every edit is audited with before and after values,
//! rotation keeps policies, and a key from Haplo takes policies but keeps
//! the fields Haplo owns.

use serde_json::{json, Value};

use super::support::{RecordingUpstream, Req, TestProxy};
use super::{clock, key_with, setup};

const NO_SUCH_ID: &str = "AAAAAAAAAAAAAAAA";

async fn patch(proxy: &TestProxy, id: &str, body: Value) -> super::support::Resp {
    proxy
        .admin_send(proxy.admin("PATCH", &format!("/v1/keys/{id}")).json(&body))
        .await
}

async fn show(proxy: &TestProxy, id: &str) -> Value {
    let resp = proxy
        .admin_send(proxy.admin("GET", &format!("/v1/keys/{id}")))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.json()
}

async fn audit(proxy: &TestProxy) -> Vec<Value> {
    let resp = proxy.admin_send(proxy.admin("GET", "/v1/audit")).await;
    assert_eq!(resp.status, 200);
    resp.json()["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_patch_takes_effect_on_the_next_request_and_null_removes_a_policy() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let key = proxy.create_key("alice", "/api/").await;
    let post = || Req::post("/api/x", b"{}").basic(&key.key);
    assert_eq!(proxy.send(post()).await.status, 200);

    let resp = patch(&proxy, &key.id, json!({"methods": ["GET", "HEAD"]})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["methods"], json!(["GET", "HEAD"]));
    proxy.send(post()).await.assert_refused(403, "UNAUTHORISED");
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );

    let resp = patch(&proxy, &key.id, json!({"methods": null})).await;
    assert_eq!(resp.status, 200);
    assert!(resp.json().get("methods").is_none(), "{}", resp.text());
    assert_eq!(proxy.send(post()).await.status, 200);

    // Name, scope and expiry change in place; the secret does not.
    let resp = patch(
        &proxy,
        &key.id,
        json!({"name": "renamed", "path": "=/api/only", "expires_at": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let shown = show(&proxy, &key.id).await;
    assert_eq!(shown["name"], "renamed");
    assert_eq!(shown["path"], "=/api/only");
    assert_eq!(shown["expires_at"], "2099-01-01T00:00:00Z");
    assert!(shown.get("key").is_none());
    assert_eq!(
        proxy
            .send(Req::get("/api/only").basic(&key.key))
            .await
            .status,
        200
    );
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    assert_eq!(
        patch(&proxy, &key.id, json!({"expires_at": null}))
            .await
            .status,
        200
    );
    assert_eq!(show(&proxy, &key.id).await["expires_at"], Value::Null);
}

#[tokio::test]
async fn a_rate_set_by_patch_limits_the_next_requests() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = patch(
        &proxy,
        &key.id,
        json!({"rate": {"per_second": 1, "burst": 2}}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        429
    );
    // An unrelated edit keeps the bucket's state (no free refill).
    assert_eq!(
        patch(&proxy, &key.id, json!({"name": "busy"})).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        429
    );
    assert_eq!(
        patch(&proxy, &key.id, json!({"rate": null})).await.status,
        200
    );
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
}

#[tokio::test]
async fn patching_an_unknown_or_revoked_key_is_404() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let resp = patch(&proxy, NO_SUCH_ID, json!({"name": "x"})).await;
    assert_eq!(resp.status, 404);
    let key = proxy.create_key("alice", "/api/").await;
    proxy.revoke(&key.id).await;
    assert_eq!(
        patch(&proxy, &key.id, json!({"methods": ["GET"]}))
            .await
            .status,
        404
    );
    // A revoked key is not brought back by an edit.
    proxy
        .send(Req::get("/api/x").basic(&key.key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_writes_nothing() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (_, id, _) = key_with(&proxy, "alice", json!({"methods": ["GET"]})).await;
    let before = show(&proxy, &id).await;
    let events = audit(&proxy).await.len();
    for (body, named) in [
        (json!({"rate": {"per_second": 0}}), "rate.per_second"),
        (
            json!({"rate": {"per_second": -5, "burst": 2}}),
            "rate.per_second",
        ),
        (json!({"rate": {"per_second": 5, "burst": 0}}), "rate.burst"),
        (json!({"rate": {"burst": 5}}), "per_second"),
        (json!({"rate": {"per_second": 5, "every": 1}}), "every"),
        (
            json!({"allow_from": ["10.0.0.0/8", "10.0.0.0/40"]}),
            "allow_from[1]",
        ),
        (json!({"allow_from": ["not-an-address"]}), "allow_from[0]"),
        (json!({"allow_from": []}), "allow_from"),
        (json!({"allow_from": "10.0.0.0/8"}), "allow_from"),
        (json!({"methods": ["FETCH"]}), "methods[0]"),
        (json!({"methods": []}), "methods"),
        (json!({"name": null}), "name"),
        (json!({"path": null}), "path"),
        (json!({"path": "api"}), "path"),
        (json!({"expires_at": "2000-01-01T00:00:00Z"}), "expires_at"),
        (json!({"expires_at": "soon"}), "expires_at"),
        (json!({"secret": "x"}), "secret"),
        // A valid field beside a bad one: nothing of it is written.
        (
            json!({"name": "new name", "methods": ["GETS"]}),
            "methods[0]",
        ),
    ] {
        let resp = patch(&proxy, &id, body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        let error = resp.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(named), "{body}: {error:?} names {named}");
    }
    assert_eq!(show(&proxy, &id).await, before, "nothing was written");
    assert_eq!(audit(&proxy).await.len(), events, "nothing was audited");
}

#[tokio::test]
async fn every_edit_is_audited_with_the_fields_before_and_after() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (_, id, _) = key_with(&proxy, "alice", json!({"rate": {"per_second": 5}})).await;
    let created = audit(&proxy).await.pop().unwrap();
    assert_eq!(created["action"], "key_created");
    assert_eq!(
        created["after"],
        json!({"rate": {"per_second": 5, "burst": 5}})
    );
    let resp = patch(
        &proxy,
        &id,
        json!({"name": "limited", "rate": null, "allow_from": ["192.0.2.0/24"]}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let event = audit(&proxy).await.pop().unwrap();
    assert_eq!(event["action"], "key_updated");
    assert_eq!(event["key_id"], id.as_str());
    assert_eq!(
        event["before"],
        json!({"name": "policy test", "rate": {"per_second": 5, "burst": 5}, "allow_from": null})
    );
    assert_eq!(
        event["after"],
        json!({"name": "limited", "rate": null, "allow_from": ["192.0.2.0/24"]})
    );
    // An edit that changes nothing is answered and not audited.
    let events = audit(&proxy).await.len();
    assert_eq!(
        patch(&proxy, &id, json!({"name": "limited"})).await.status,
        200
    );
    assert_eq!(audit(&proxy).await.len(), events);
}

#[tokio::test]
async fn rotation_keeps_a_keys_policies() {
    let clock = clock();
    let (_upstream, proxy) = setup(&clock).await;
    let (_, id, _) = key_with(
        &proxy,
        "alice",
        json!({"methods": ["GET"], "allow_from": ["127.0.0.1"], "rate": {"per_second": 3, "burst": 6}}),
    )
    .await;
    let resp = proxy
        .admin_send(proxy.admin("POST", &format!("/v1/keys/{id}/rotate")))
        .await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    let rotated = resp.json();
    assert_eq!(rotated["methods"], json!(["GET"]));
    assert_eq!(rotated["allow_from"], json!(["127.0.0.1"]));
    assert_eq!(rotated["rate"], json!({"per_second": 3, "burst": 6}));
    let new_key = rotated["key"].as_str().unwrap();
    assert_eq!(
        proxy.send(Req::get("/api/x").basic(new_key)).await.status,
        200
    );
    assert_eq!(
        proxy
            .send(Req::post("/api/x", b"{}").basic(new_key))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn a_key_from_haplo_takes_policies_but_keeps_what_haplo_owns() {
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = keygate::keys::ApiKey::generate().unwrap();
    let hash = bcrypt::hash_with_result(&key.expose()[16..], 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoA);
    let id = &key.expose()[..16];
    let batch = json!({
        "app": 4000,
        "keys": [{"id": id, "bcrypt": hash, "path": "/api/", "name": "from Haplo", "user": "1234"}],
        "users": [],
    });
    let resp = proxy
        .admin_send(proxy.admin("POST", "/v1/import").json(&batch))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let resp = patch(&proxy, id, json!({"methods": ["GET"]})).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    for field in [
        json!({"name": "mine"}),
        json!({"path": "/"}),
        json!({"expires_at": "2099-01-01T00:00:00Z"}),
    ] {
        let resp = patch(&proxy, id, field.clone()).await;
        assert_eq!(resp.status, 409, "{field}: {}", resp.text());
    }
    // First use proves the key with bcrypt; the policy applies from there.
    assert_eq!(
        proxy
            .send(Req::get("/api/x").basic(key.expose()))
            .await
            .status,
        200
    );
    assert_eq!(
        proxy
            .send(Req::post("/api/x", b"{}").basic(key.expose()))
            .await
            .status,
        403
    );
    // A re-import (Haplo unchanged) keeps the policy set here.
    let resp = proxy
        .admin_send(proxy.admin("POST", "/v1/import").json(&batch))
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(show(&proxy, id).await["methods"], json!(["GET"]));
}
