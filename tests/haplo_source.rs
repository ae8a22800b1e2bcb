//! keygate's reader of Haplo's tables (`keygate::haplo`) against a real
//! PostgreSQL holding a Haplo-shaped application: the rows come back
//! exactly, the fingerprint moves with every change keygate cares about
//! and with nothing else, and no error carries a password.

mod support;

use std::time::{Duration, Instant};

use keygate::haplo::{read_app, HaploError, HaploKey, HaploUser, Source};
use support::haplo::{kind, HaploApp, SECRET_MARK};
use support::postgres::{TestPostgres, READER};

const APP: u32 = 4000;

/// A database with application [`APP`] and its reader grant.
async fn app() -> (String, HaploApp) {
    let pg = TestPostgres::shared();
    let url = pg.fresh_database();
    let app = HaploApp::create(&url, APP, "app.example").await;
    app.grant_reader(READER).await;
    (url, app)
}

/// Haplo's reserved rows, as `db/app.sql` inserts them.
fn reserved_users() -> Vec<HaploUser> {
    [(0, 3), (2, 0), (3, 3), (4, 1), (16, 1)]
        .into_iter()
        .map(|(id, kind)| HaploUser {
            id,
            kind,
            email: None,
        })
        .collect()
}

#[tokio::test]
async fn read_app_returns_exactly_the_rows_under_a_reader_that_may_see_nothing_else() {
    let (url, app) = app().await;
    let mut users = reserved_users();
    let mut ids = Vec::new();
    for kind in kind::ALL {
        let email = format!("kind{kind}@example.org");
        let id = app.add_user(kind, Some(&email)).await;
        users.push(HaploUser {
            id,
            kind,
            email: Some(email),
        });
        ids.push(id);
    }
    let service = app.add_user(kind::SERVICE_USER, None).await;
    users.push(HaploUser {
        id: service,
        kind: kind::SERVICE_USER,
        email: None,
    });

    let mut made = Vec::new();
    for (user, path, name) in [
        (ids[0], "/api/", "General API access"),
        (
            ids[0],
            "=/api/exact",
            "exact, with \"quotes\", commas\nand a newline",
        ),
        (service, "/api/service/", "service"),
        (ids[4], "/", "a blocked user's key"),
    ] {
        made.push((app.add_key(user, path, name).await, user, path, name));
    }
    // A row Haplo would never write: short id, no hash. It is read as is.
    app.insert_key_row(ids[0], "short", "not-a-hash", "", "")
        .await;

    let pg = TestPostgres::shared();
    let table = read_app(&pg.reader_url(&url), APP).await.expect("read");

    let mut keys: Vec<HaploKey> = made
        .iter()
        .map(|(key, user, path, name)| HaploKey {
            a: key[..16].to_owned(),
            b: table
                .keys
                .iter()
                .find(|k| k.a == key[..16])
                .map(|k| k.b.clone())
                .unwrap_or_default(),
            path: (*path).to_owned(),
            name: (*name).to_owned(),
            user_id: *user,
        })
        .collect();
    keys.push(HaploKey {
        a: "short".into(),
        b: "not-a-hash".into(),
        path: String::new(),
        name: String::new(),
        user_id: ids[0],
    });
    keys.sort_by(|x, y| x.a.as_bytes().cmp(y.a.as_bytes()));
    assert_eq!(table.keys, keys);
    assert_eq!(table.users, users);
    // Each b is Haplo's: `$2a$05$`, and the rest of the key verifies.
    for (key, ..) in &made {
        let row = table.keys.iter().find(|k| k.a == key[..16]).expect("row");
        assert!(row.b.starts_with("$2a$05$") && row.b.len() == 60, "{row:?}");
        assert!(bcrypt::verify(&key[16..], &row.b).expect("bcrypt"));
        assert!(
            !format!("{row:?}").contains(&row.b[7..]),
            "Debug shows the hash"
        );
    }
    assert!(!format!("{table:?}").contains(SECRET_MARK));

    // The proof that nothing else was read: this role cannot read more.
    let (client, connection) = tokio_postgres::connect(&pg.reader_url(&url), tokio_postgres::NoTls)
        .await
        .expect("connect as reader");
    tokio::spawn(connection);
    for sql in [
        "SELECT password FROM a4000.users",
        "SELECT recovery_token FROM a4000.users",
        "SELECT * FROM a4000.users",
        "SELECT id FROM a4000.api_keys",
    ] {
        let e = client.query(sql, &[]).await.expect_err(sql);
        assert_eq!(
            e.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
}

#[tokio::test]
async fn the_fingerprint_moves_with_every_change_keygate_reads_and_nothing_else() {
    let (url, app) = app().await;
    let user = app.add_user(kind::USER, Some("u@example.org")).await;
    let key = app.add_key(user, "/api/", "first").await;
    let other = HaploApp::create(&url, APP + 1, "other.example").await;

    let pg = TestPostgres::shared();
    let mut source = Source::connect(&pg.reader_url(&url))
        .await
        .expect("connect");
    let mut last = source.fingerprint(APP).await.expect("fingerprint");
    assert_eq!(
        source.fingerprint(APP).await.expect("again"),
        last,
        "nothing changed"
    );
    assert_eq!(source.read(APP).await.expect("read").fingerprint, last);
    assert_eq!((last.key_count(), last.user_count()), (1, 6));

    // Each change must move it; `same` marks those that must not.
    let steps: Vec<(&str, String, bool)> = vec![
        ("add a key", String::new(), false),
        (
            "rename a key",
            format!(
                "UPDATE a4000.api_keys SET name = 'renamed' WHERE a = '{}'",
                &key[..16]
            ),
            false,
        ),
        (
            "rescope a key",
            format!(
                "UPDATE a4000.api_keys SET path = '=/api/x' WHERE a = '{}'",
                &key[..16]
            ),
            false,
        ),
        (
            "move a key to another user",
            format!(
                "UPDATE a4000.api_keys SET user_id = 3 WHERE a = '{}'",
                &key[..16]
            ),
            false,
        ),
        (
            "replace a key's hash",
            format!(
                "UPDATE a4000.api_keys SET b = b || 'x' WHERE a = '{}'",
                &key[..16]
            ),
            false,
        ),
        (
            "swap one key for another, count unchanged",
            String::new(),
            false,
        ),
        ("block the user", String::new(), false),
        ("change the email", String::new(), false),
        ("add a user", String::new(), false),
        (
            "change a password",
            "UPDATE a4000.users SET password = 'new', recovery_token = NULL".into(),
            true,
        ),
        (
            "change names and obj_id",
            "UPDATE a4000.users SET name = 'x', obj_id = 7".into(),
            true,
        ),
        ("change another application", String::new(), true),
        (
            "renumber api_keys.id",
            "UPDATE a4000.api_keys SET id = id + 1000".into(),
            true,
        ),
    ];
    for (what, sql, same) in steps {
        match what {
            "add a key" => drop(app.add_key(user, "/api/", "second").await),
            "swap one key for another, count unchanged" => {
                let table = source.read(APP).await.expect("read");
                app.delete_key(&table.keys[0].a).await;
                app.add_key(user, "/api/", "third").await;
            }
            "block the user" => app.set_kind(user, kind::BLOCKED).await,
            "change the email" => app.set_email(user, Some("new@example.org")).await,
            "add a user" => drop(app.add_user(kind::SERVICE_USER, None).await),
            "change another application" => {
                let id = other.add_user(kind::USER, None).await;
                other.add_key(id, "/", "other").await;
            }
            _ => app.execute(&sql).await,
        }
        let now = source.fingerprint(APP).await.expect("fingerprint");
        if same {
            assert_eq!(now, last, "{what} must not change the fingerprint");
        } else {
            assert_ne!(now, last, "{what} must change the fingerprint");
        }
        assert_eq!(
            source.read(APP).await.expect("read").fingerprint,
            now,
            "{what}: read agrees"
        );
        last = now;
    }

    // Content, not history: undoing a change restores the fingerprint.
    app.set_kind(user, kind::USER).await;
    let unblocked = source.fingerprint(APP).await.expect("fingerprint");
    assert_ne!(unblocked, last);
    app.set_kind(user, kind::BLOCKED).await;
    assert_eq!(source.fingerprint(APP).await.expect("fingerprint"), last);
}

#[tokio::test]
async fn an_unknown_application_is_named_in_the_error() {
    let (url, app) = app().await;
    let pg = TestPostgres::shared();
    let e = read_app(&url, 9999).await.expect_err("no app 9999");
    assert!(
        matches!(e, HaploError::NoApplication { app_id: 9999, .. }),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("no Haplo application 9999 in this database"),
        "{text}"
    );
    assert!(!text.contains(pg.owner_password()), "{text}");
    assert!(text.contains("haplo:***@127.0.0.1"), "{text}");

    let source = Source::connect(&url).await.expect("connect");
    let e = source.fingerprint(9999).await.expect_err("no app 9999");
    assert!(
        matches!(e, HaploError::NoApplication { app_id: 9999, .. }),
        "{e:?}"
    );

    // A schema a<ID> that is not Haplo's.
    app.execute("CREATE SCHEMA a77; CREATE TABLE a77.users (id int)")
        .await;
    let e = read_app(&url, 77).await.expect_err("not Haplo");
    assert!(
        matches!(
            e,
            HaploError::NotHaplo {
                app_id: 77,
                table: "api_keys",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("schema a77"), "{e}");

    // Present but unreadable: the server's reason, still no password.
    app.execute("REVOKE ALL ON SCHEMA a4000 FROM keygate").await;
    let e = read_app(&pg.reader_url(&url), APP)
        .await
        .expect_err("no grant");
    assert!(matches!(e, HaploError::Query { .. }), "{e:?}");
    assert!(e.to_string().contains("permission denied"), "{e}");
    assert!(!e.to_string().contains(pg.reader_password()), "{e}");
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let (url, _app) = app().await;
    let pg = TestPostgres::shared();
    let wrong = "Wr0ng-Passw0rd-Zq7";
    let bad = url.replace(pg.owner_password(), wrong);
    assert_ne!(bad, url);
    for e in [
        read_app(&bad, APP).await.expect_err("wrong password"),
        Source::connect(&bad).await.expect_err("wrong password"),
    ] {
        let text = e.to_string();
        assert!(matches!(e, HaploError::Connect { .. }), "{e:?}");
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(
            !text.contains(wrong) && !text.contains(pg.owner_password()),
            "{text}"
        );
        assert!(!format!("{e:?}").contains(wrong), "{e:?}");
    }
    assert!(!pg.log().contains(wrong), "the server logged the password");
    let source = Source::connect(&url).await.expect("connect");
    assert!(!format!("{source:?}").contains(pg.owner_password()));
    assert_eq!(source.database(), url.replace(pg.owner_password(), "***"));
}

#[tokio::test]
async fn a_database_that_goes_away_is_an_error_and_comes_back_at_the_same_url() {
    let mut pg = TestPostgres::start();
    let url = pg.fresh_database();
    let app = HaploApp::create(&url, APP, "app.example").await;
    let user = app.add_user(kind::USER, None).await;
    app.add_key(user, "/api/", "k").await;
    drop(app);

    let source = Source::connect(&url).await.expect("connect");
    let before = source.fingerprint(APP).await.expect("fingerprint");
    pg.stop();
    // The connection notices the server is gone (poll, with a deadline).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !source.is_closed() {
        assert!(
            Instant::now() < deadline,
            "connection never noticed the stop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = source.fingerprint(APP).await.expect_err("server stopped");
    assert!(matches!(e, HaploError::Query { .. }), "{e:?}");
    let e = read_app(&url, APP).await.expect_err("server stopped");
    assert!(matches!(e, HaploError::Connect { .. }), "{e:?}");
    assert!(e.to_string().contains("Connection refused"), "{e}");
    assert!(!e.to_string().contains(pg.owner_password()), "{e}");

    pg.restart();
    let table = read_app(&url, APP).await.expect("read after restart");
    assert_eq!(table.fingerprint, before);
    assert_eq!(table.keys.len(), 1);
}

/// Scale: 100,000 keys read whole and fingerprinted, a deletion among them
/// still seen. Prints the timings: `cargo test --test haplo_source --
/// --nocapture one_hundred_thousand`.
#[tokio::test]
async fn one_hundred_thousand_keys_are_read_and_fingerprinted() {
    let started = Instant::now();
    let pg = TestPostgres::start();
    let cluster = started.elapsed();
    let url = pg.fresh_database();
    let app = HaploApp::create(&url, APP, "app.example").await;
    let user = app.add_user(kind::SERVICE_USER, None).await;
    let secret = app.bulk_keys(user, 100_000).await;
    app.execute("ANALYZE").await;

    let t = Instant::now();
    let table = read_app(&url, APP).await.expect("read");
    let read = t.elapsed();
    assert_eq!(table.keys.len(), 100_000);
    assert_eq!(table.keys[41].a, "bulk000000000042");
    assert!(bcrypt::verify(&secret, &table.keys[41].b).expect("bcrypt"));

    let source = Source::connect(&url).await.expect("connect");
    let mut polls = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(
            source.fingerprint(APP).await.expect("fingerprint"),
            table.fingerprint
        );
        polls.push(t.elapsed());
    }
    app.delete_key("bulk000000050000").await;
    assert_ne!(
        source.fingerprint(APP).await.expect("fingerprint"),
        table.fingerprint
    );
    polls.sort();
    eprintln!(
        "cluster start {cluster:?}; read_app of 100,000 keys {read:?}; \
         fingerprint median {:?} (min {:?}, max {:?})",
        polls[2], polls[0], polls[4]
    );
}
