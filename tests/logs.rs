//! SPEC 8: one JSON access-log line per proxied request, never a secret.

mod support;

use serde_json::Value;
use support::{RecordingUpstream, Req, TestProxy};

#[tokio::test]
async fn a_forwarded_request_logs_every_field() {
    let upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let resp = proxy
        .send(Req::get("/api/items?page=2").basic(&key.key))
        .await;
    assert_eq!(resp.status, 200);
    let line = proxy.next_log().await;
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/api/items");
    assert_eq!(line["status"], 200);
    assert_eq!(line["outcome"], "forwarded");
    assert_eq!(line["user"], "alice");
    assert_eq!(line["key_id"], key.id.as_str());
    assert_eq!(line["bytes"], 2);
    assert!(
        line["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{line}"
    );
    let time = line["time"].as_str().unwrap();
    assert!(
        time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
}

#[tokio::test]
async fn refusals_are_logged_with_the_rule_that_refused_them() {
    let upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/api/only/").await;
    let alice = Value::from("alice");
    let cases = [
        (Req::get("/api/x"), 403, "no-key", Value::Null),
        (
            Req::get("/api/x").basic("0123456789ABCDEF0123456789ABCDEF0123456789AB"),
            403,
            "invalid-key",
            Value::Null,
        ),
        // A valid key used outside its scope: operators see whose it was.
        (
            Req::get("/api/x").basic(&key.key),
            403,
            "out-of-scope",
            alice,
        ),
        (
            Req::get("/api/../x").basic(&key.key),
            400,
            "bad-request",
            Value::Null,
        ),
    ];
    for (req, status, outcome, user) in cases {
        assert_eq!(proxy.send(req).await.status, status);
        let line = proxy.next_log().await;
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["outcome"], outcome, "{line}");
        assert_eq!(line["user"], user, "{line}");
    }
}

#[tokio::test]
async fn log_lines_never_contain_a_key_a_secret_an_authorization_value_or_a_query() {
    let upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/api/").await;
    let secret = &key.key[16..];
    let req = Req::get("/api/x?token=QUERYSECRET").basic(&key.key);
    let authorization = String::from_utf8(req.to_bytes())
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Authorization: Basic ").map(str::to_owned))
        .unwrap();
    proxy.send(req).await;
    proxy
        .send(Req::get("/api/y?token=QUERYSECRET").oneis(&key.key))
        .await;
    let mut wrong = key.key.clone();
    wrong.replace_range(20..21, if &key.key[20..21] == "A" { "B" } else { "A" });
    proxy
        .send(Req::get("/api/z?token=QUERYSECRET").basic(&wrong))
        .await;
    for _ in 0..3 {
        let text = proxy.next_log_text().await;
        for forbidden in [
            key.key.as_str(),
            secret,
            &wrong[16..],
            authorization.as_str(),
            "QUERYSECRET",
            "token=",
        ] {
            assert!(
                !text.contains(forbidden),
                "log line leaks {forbidden:?}: {text}"
            );
        }
    }
}

#[tokio::test]
async fn the_log_records_the_bytes_of_a_streamed_response() {
    let upstream = RecordingUpstream::start().await;
    let mut proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = proxy.create_key("alice", "/echo").await;
    let body = vec![7u8; 300_000];
    assert_eq!(
        proxy
            .send(Req::post("/echo", &body).basic(&key.key))
            .await
            .body
            .len(),
        body.len()
    );
    let line = proxy.next_log().await;
    assert_eq!(line["bytes"], 300_000);
    assert_eq!(line["method"], "POST");
}
