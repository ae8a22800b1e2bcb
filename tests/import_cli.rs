//! `keygate import haplo` end to end (SPEC 9): a real PostgreSQL holding a
//! Haplo application made the way Haplo makes it, the real `keygate`
//! binary reading it, and a running keygate whose proxy then accepts the
//! original 44-character keys.

mod support;

use support::binary::cli;
use support::haplo::{kind, HaploApp};
use support::postgres::{TestPostgres, READER};
use support::{RecordingUpstream, Req, TestProxy};

const APP: u32 = 4000;

struct World {
    upstream: RecordingUpstream,
    proxy: TestProxy,
    app: HaploApp,
    /// The reader role's URL (it may read only the columns keygate reads).
    url: String,
    password: String,
}

async fn world() -> World {
    let pg = TestPostgres::shared();
    let owner = pg.fresh_database();
    let app = HaploApp::create(&owner, APP, "app.example").await;
    app.grant_reader(READER).await;
    let upstream = RecordingUpstream::start().await;
    let proxy = TestProxy::builder().upstream(upstream.addr).start().await;
    World {
        upstream,
        proxy,
        app,
        url: pg.reader_url(&owner),
        password: pg.reader_password().to_owned(),
    }
}

impl World {
    async fn import(&self, extra: &[&str]) -> support::binary::CliOutput {
        let admin = format!("http://{}", self.proxy.admin_addr);
        let app = APP.to_string();
        let mut args = vec!["import", "haplo", "--app", &app, "--admin", &admin];
        args.extend_from_slice(extra);
        let out = cli(&args, &[("KEYGATE_HAPLO_DATABASE", &self.url)]).await;
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains(&self.password),
                "the password leaked: {text}"
            );
        }
        out
    }
}

#[tokio::test]
async fn haplo_keys_are_imported_and_work_with_the_original_keys() {
    let mut w = world().await;
    let alice = w.app.add_user(kind::USER, Some("alice@example.org")).await;
    let service = w.app.add_user(kind::SERVICE_USER, None).await;
    let blocked = w.app.add_user(kind::BLOCKED, Some("b@example.org")).await;
    let deleted = w.app.add_user(kind::DELETED, Some("d@example.org")).await;
    let alice_key = w.app.add_key(alice, "/api/", "alice's sync").await;
    let service_key = w.app.add_key(service, "=/api/run", "nightly").await;
    let blocked_key = w.app.add_key(blocked, "/api/", "old").await;
    let deleted_key = w.app.add_key(deleted, "/api/", "gone").await;
    w.app
        .insert_key_row(alice, "shortid", "not-a-hash", "/api/", "broken")
        .await;

    let out = w.import(&[]).await;
    let text = out.ok();
    assert!(text.contains("4 created"), "{text}");
    assert!(
        text.contains("1 skipped") && text.contains("skipped shortid:"),
        "{text}"
    );
    assert!(text.contains("2 blocked"), "{text}");

    let resp = w.proxy.send(Req::get("/api/thing").basic(&alice_key)).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = w.upstream.next().await;
    assert_eq!(
        seen.header("x-haplo-user"),
        Some(alice.to_string().as_str())
    );
    assert_eq!(
        w.proxy
            .send(Req::get("/api/run").basic(&service_key))
            .await
            .status,
        200
    );
    w.proxy
        .send(Req::get("/api/other").basic(&service_key))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    let wrong = format!("{}{}", &alice_key[..16], "x".repeat(28));
    w.proxy
        .send(Req::get("/api/thing").basic(&wrong))
        .await
        .assert_refused(403, "INVALID-API-KEY");
    for key in [&blocked_key, &deleted_key] {
        w.proxy
            .send(Req::get("/api/thing").basic(key))
            .await
            .assert_refused(403, "UNAUTHORISED");
    }

    // Again: nothing to do. A dry run after a new key in Haplo reports it
    // and writes nothing.
    assert!(w
        .import(&[])
        .await
        .ok()
        .contains("0 created, 0 updated, 4 unchanged"));
    let late = w.app.add_key(alice, "/api/", "late").await;
    let dry = w.import(&["--dry-run"]).await;
    assert!(
        dry.ok().contains("Dry run") && dry.ok().contains("1 created"),
        "{}",
        dry.stdout
    );
    w.proxy
        .send(Req::get("/api/thing").basic(&late))
        .await
        .assert_refused(403, "INVALID-API-KEY");
}

#[tokio::test]
async fn users_can_be_named_by_email_and_json_reports_the_counts() {
    let mut w = world().await;
    let alice = w.app.add_user(kind::USER, Some("alice@example.org")).await;
    let service = w.app.add_user(kind::SERVICE_USER, None).await;
    let key = w.app.add_key(alice, "/api/", "k").await;
    w.app.add_key(service, "/api/", "no email").await;
    let out = w.import(&["--user-field", "email", "--json"]).await;
    let report = out.json();
    assert_eq!(report["created"], 1, "{report}");
    assert!(report["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("no email"));
    assert_eq!(
        w.proxy.send(Req::get("/api/x").basic(&key)).await.status,
        200
    );
    assert_eq!(
        w.upstream.next().await.header("x-haplo-user"),
        Some("alice@example.org")
    );
}

#[tokio::test]
async fn an_unknown_application_or_an_unreachable_database_fails_with_one_clear_line() {
    let w = world().await;
    let admin = format!("http://{}", w.proxy.admin_addr);
    let out = cli(
        &["import", "haplo", "--app", "4999", "--admin", &admin],
        &[("KEYGATE_HAPLO_DATABASE", &w.url)],
    )
    .await;
    let err = out.failed();
    assert!(err.contains("no Haplo application 4999"), "{err}");
    assert!(!err.contains(&w.password));

    let unreachable = format!("postgres://haplo:hunter2-secret@127.0.0.1:9/{APP}");
    let out = cli(
        &[
            "import",
            "haplo",
            "--app",
            "4000",
            "--admin",
            &admin,
            "--database",
            &unreachable,
        ],
        &[],
    )
    .await;
    let err = out.failed();
    assert!(err.contains("cannot connect"), "{err}");
    assert!(!err.contains("hunter2-secret"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
