//! SPEC 9, following: with `[haplo]`, `keygate serve` keeps its key table
//! in step with a running Haplo application. Keys created and deleted in
//! Haplo, and users blocked, deleted and re-activated there, take effect
//! at the edge within a poll; while the database is away keygate keeps
//! serving the table it last had (across its own restart too), and
//! catches up when the database returns. Against a real PostgreSQL.

mod support;

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::haplo::{kind, HaploApp};
use support::postgres::{TestPostgres, READER};
use support::{Req, TestProxy, PATIENCE};

const APP: u32 = 4000;

/// Polls `check` until it returns `true`, failing after [`PATIENCE`].
/// (The follower polls the database on its own schedule; the test can
/// only watch for the effect.)
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(proxy: &TestProxy, key: &str) -> u16 {
    proxy.send(Req::get("/api/x").basic(key)).await.status
}

fn follow_section(url: &str) -> String {
    format!("[haplo]\ndatabase = \"{url}\"\napp_id = {APP}\npoll_secs = 1\n")
}

async fn ready(proxy: &TestProxy) -> Value {
    proxy.admin_send(proxy.admin("GET", "/readyz")).await.json()
}

#[tokio::test]
async fn creations_deletions_and_user_changes_in_haplo_reach_the_edge() {
    let pg = TestPostgres::shared();
    let owner = pg.fresh_database();
    let app = HaploApp::create(&owner, APP, "app.example").await;
    app.grant_reader(READER).await;
    let alice = app.add_user(kind::USER, Some("alice@example.org")).await;
    let first = app.add_key(alice, "/api/", "before start").await;
    let upstream = support::RecordingUpstream::start().await;
    let proxy = TestProxy::builder()
        .upstream(upstream.addr)
        .section(&follow_section(&pg.reader_url(&owner)))
        .start()
        .await;

    eventually("the first sync", || async {
        status(&proxy, &first).await == 200
    })
    .await;
    let synced = ready(&proxy).await;
    assert_eq!(synced["haplo"]["synced"], true, "{synced}");
    let metrics = proxy
        .admin_send(proxy.admin("GET", "/metrics"))
        .await
        .text();
    assert!(metrics.contains("keygate_haplo_sync_up 1"), "{metrics}");

    let second = app.add_key(alice, "/api/", "made in Haplo's UI").await;
    eventually("a new key", || async {
        status(&proxy, &second).await == 200
    })
    .await;

    app.delete_key(&second[..16]).await;
    eventually("a deleted key", || async {
        status(&proxy, &second).await == 403
    })
    .await;
    proxy
        .send(Req::get("/api/x").basic(&second))
        .await
        .assert_refused(403, "INVALID-API-KEY");

    app.set_kind(alice, kind::BLOCKED).await;
    eventually("a blocked user", || async {
        status(&proxy, &first).await == 403
    })
    .await;
    proxy
        .send(Req::get("/api/x").basic(&first))
        .await
        .assert_refused(403, "UNAUTHORISED");
    app.set_kind(alice, kind::USER).await;
    eventually("a re-activated user", || async {
        status(&proxy, &first).await == 200
    })
    .await;

    // keygate's admin API does not change Haplo's keys.
    let resp = proxy
        .admin_send(proxy.admin("DELETE", &format!("/v1/keys/{}", &first[..16])))
        .await;
    assert_eq!(resp.status, 409, "{}", resp.text());
}

#[tokio::test]
async fn the_last_table_keeps_serving_while_the_database_is_away_and_across_a_restart() {
    let mut pg = TestPostgres::start();
    let owner = pg.fresh_database();
    let app = HaploApp::create(&owner, APP, "app.example").await;
    app.grant_reader(READER).await;
    let alice = app.add_user(kind::USER, None).await;
    let key = app.add_key(alice, "/api/", "k").await;
    let url = pg.reader_url(&owner);
    let password = pg.reader_password().to_owned();
    let store = tempfile::tempdir().unwrap();
    let upstream = support::RecordingUpstream::start().await;
    let start = || {
        TestProxy::builder()
            .upstream(upstream.addr)
            .store_dir(store.path())
            .section(&follow_section(&url))
            .start()
    };
    let proxy = start().await;
    eventually("the first sync", || async {
        status(&proxy, &key).await == 200
    })
    .await;
    drop(app);

    pg.stop();
    eventually("the follower noticing", || async {
        !ready(&proxy).await["haplo"]["error"].is_null()
    })
    .await;
    let shown = ready(&proxy).await;
    assert!(!shown.to_string().contains(&password), "{shown}");
    assert_eq!(
        status(&proxy, &key).await,
        200,
        "served from the last table"
    );

    // A restart with the database still away serves the table in redb.
    proxy.stop().await;
    let proxy = start().await;
    assert_eq!(status(&proxy, &key).await, 200);

    pg.restart();
    let app = HaploApp::connect(&owner, APP).await;
    let late = app
        .add_key(alice, "/api/", "while keygate was cut off")
        .await;
    eventually("catching up", || async {
        status(&proxy, &late).await == 200
    })
    .await;
    assert_eq!(ready(&proxy).await["haplo"]["error"], Value::Null);
}

#[tokio::test]
async fn the_servers_log_names_an_unreachable_database_without_its_password() {
    use support::binary::{ConfigFile, Keygate};
    let store = tempfile::tempdir().unwrap();
    // Nothing listens on port 9: the follower fails at once.
    let section = "[haplo]\ndatabase = \"postgres://keygate:hunter2-s3cret@127.0.0.1:9/haplo\"\napp_id = 4000\npoll_secs = 1\n";
    let config = ConfigFile::serving(&store.path().join("keygate.redb"), None, section);
    let mut keygate = Keygate::spawn(&config.path);
    let deadline = Instant::now() + PATIENCE;
    let line = loop {
        assert!(
            Instant::now() < deadline,
            "no log line about Haplo's database"
        );
        let Some(line) = keygate.next_line().await else {
            panic!("keygate exited early");
        };
        assert!(
            !line.contains("hunter2-s3cret"),
            "a log line holds the password: {line}"
        );
        if line.contains("cannot sync keys from Haplo") {
            break line;
        }
    };
    assert!(line.contains("127.0.0.1:9"), "names the database: {line}");
    keygate.kill();
}
