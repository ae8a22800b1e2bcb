//! The fleet's shared table (`keygate::fleet`) against a real PostgreSQL
//! (SPEC 10): the schema migrates once however many replicas start, and
//! refuses a newer one; the change log comes back exactly, numbered in
//! commit order with no gaps, however many replicas write at once; the
//! state tables match the changes; a write under the lock sees every
//! earlier one and holds the others back; LISTEN hears other replicas'
//! commits; and no error carries a password.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use keygate::fleet::{migrate, FleetError, Listener, SharedTable, SCHEMA_VERSION};
use keygate::keys::{
    Action, ApiKey, AuditEvent, BcryptHash, Blocker, Change, KeyHash, KeyId, KeyRecord, Origin,
    UserId,
};
use keygate::scope::Scope;
use keygate::timestamp::Timestamp;
use support::postgres::TestPostgres;

/// How long a test waits for what should happen at once.
const PATIENCE: Duration = Duration::from_secs(30);

/// A fresh database and a migrated table on it.
async fn migrated() -> (String, SharedTable) {
    let url = TestPostgres::shared().fresh_database();
    let mut table = SharedTable::connect(&url).await.expect("connect");
    table.migrate().await.expect("migrate");
    (url, table)
}

fn record(user: &str, name: &str) -> KeyRecord {
    let key = ApiKey::generate().expect("random");
    KeyRecord {
        id: key.id(),
        hash: KeyHash::Blake3(key.secret_hash()),
        user: UserId::parse(user).expect("user"),
        name: name.into(),
        scope: Scope::parse("/api/").expect("scope"),
        created_at: Timestamp::from_unix(1_700_000_000),
        expires_at: Some(Timestamp::from_unix(1_900_000_000)),
        last_used_at: None,
        origin: Origin::Keygate,
        policy: Default::default(),
    }
}

fn block(user: &str, blocked: bool, by: Blocker) -> Change {
    Change::Block {
        user: UserId::parse(user).expect("user"),
        blocked,
        by,
    }
}

fn event(action: Action, user: &str) -> AuditEvent {
    AuditEvent {
        time: 1_700_000_000,
        action,
        key_id: None,
        new_key_id: None,
        user: user.into(),
        name: Some("n".into()),
        path: None,
        grace_until: None,
        client: Some("127.0.0.1".into()),
        before: None,
        after: None,
    }
}

/// Everything about a change, its secret hash included (which `Debug`
/// hides): equal texts mean equal changes.
fn describe(change: &Change) -> String {
    let hash = match change {
        Change::Upsert(KeyRecord {
            hash: KeyHash::Blake3(hash),
            ..
        }) => format!("{:?}", hash.as_bytes()),
        Change::Upsert(KeyRecord {
            hash: KeyHash::Bcrypt(hash),
            ..
        }) => hash.as_str().to_owned(),
        _ => String::new(),
    };
    format!("{change:?} {hash}")
}

fn describe_record(record: &KeyRecord) -> String {
    describe(&Change::Upsert(record.clone()))
}

#[tokio::test]
async fn migrating_twice_changes_nothing_the_second_time() {
    let url = TestPostgres::shared().fresh_database();
    let mut table = SharedTable::connect(&url).await.expect("connect");
    assert_eq!(table.migrate().await.expect("first"), 0);
    assert_eq!(table.migrate().await.expect("second"), SCHEMA_VERSION);
    // The free function, on a connection of the caller's own, agrees.
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    assert_eq!(migrate(&mut client).await.expect("third"), SCHEMA_VERSION);
    let rows = client
        .query("SELECT version FROM keygate_schema", &[])
        .await
        .expect("read version");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i32>(0), 1);
    for table in [
        "keygate_changes",
        "keygate_head",
        "keygate_keys",
        "keygate_users",
        "keygate_audit",
        "keygate_last_used",
    ] {
        client
            .query(&format!("SELECT * FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"));
    }
    assert_eq!(table.head().await.expect("head"), 0);
}

#[tokio::test]
async fn replicas_migrating_at_once_all_succeed_and_one_creates() {
    let url = TestPostgres::shared().fresh_database();
    let mut tables = Vec::new();
    for _ in 0..4 {
        tables.push(SharedTable::connect(&url).await.expect("connect"));
    }
    // All connected first, then all started together.
    let runs: Vec<_> = tables
        .into_iter()
        .map(|mut table| tokio::spawn(async move { table.migrate().await }))
        .collect();
    let mut found = Vec::new();
    for run in runs {
        found.push(run.await.expect("task").expect("migrate"));
    }
    found.sort_unstable();
    assert_eq!(found, [0, 1, 1, 1]);
}

#[tokio::test]
async fn a_schema_newer_than_this_build_is_refused_naming_both_versions() {
    let (url, mut table) = migrated().await;
    let database = url.rsplit('/').next().expect("database name");
    let pg = TestPostgres::shared();
    pg.superuser_sql(database, "UPDATE keygate_schema SET version = 3");
    let e = table.migrate().await.expect_err("newer schema");
    assert!(
        matches!(e, FleetError::SchemaTooNew { found: 3, known: 1 }),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "keygate_schema is version 3; this keygate knows up to version 1: upgrade keygate"
    );
    // Refused, not "repaired".
    let version = pg.superuser_sql(database, "SELECT version FROM keygate_schema");
    assert_eq!(version.trim(), "3");
}

#[tokio::test]
async fn appended_changes_come_back_in_order_with_their_numbers() {
    let (_url, mut table) = migrated().await;
    let mut haplo = record("42", "from Haplo");
    haplo.origin = Origin::Haplo {
        app: 4000,
        bcrypt: BcryptHash::parse(&bcrypt::hash("secret", 4).expect("bcrypt")).expect("hash"),
    };
    haplo.hash = match &haplo.origin {
        Origin::Haplo { bcrypt, .. } => KeyHash::Bcrypt(bcrypt.clone()),
        Origin::Keygate => unreachable!(),
    };
    let a = record("alice", "a");
    let first = vec![
        Change::Upsert(a.clone()),
        Change::Upsert(haplo),
        block("bob", true, Blocker::Admin),
    ];
    let events = [
        event(Action::KeyCreated, "alice"),
        event(Action::UserBlocked, "bob"),
    ];
    assert_eq!(table.append(&first, &events).await.expect("append"), 3);
    let second = vec![Change::Remove(a.id), block("bob", false, Blocker::Admin)];
    assert_eq!(table.append(&second, &[]).await.expect("append"), 5);
    // Audit alone moves no number.
    let audit_only = [event(Action::KeyRevoked, "alice")];
    assert_eq!(table.append(&[], &audit_only).await.expect("audit"), 5);

    let all: Vec<Change> = first.into_iter().chain(second).collect();
    let read = table.since(0, 100).await.expect("since");
    let seqs: Vec<u64> = read.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    for ((_, got), sent) in read.iter().zip(&all) {
        assert_eq!(describe(got), describe(sent));
    }
    let middle = table.since(2, 2).await.expect("since 2");
    assert_eq!(
        middle
            .iter()
            .map(|(s, c)| (*s, describe(c)))
            .collect::<Vec<_>>(),
        [(3, describe(&all[2])), (4, describe(&all[3]))]
    );
    assert!(table.since(5, 10).await.expect("since 5").is_empty());
    assert_eq!(table.head().await.expect("head"), 5);

    let trail = table.audit(0, 10).await.expect("audit");
    let expected: Vec<AuditEvent> = events.iter().chain(&audit_only).cloned().collect();
    assert_eq!(
        trail.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        expected
    );
    assert!(trail.windows(2).all(|w| w[0].0 < w[1].0), "{trail:?}");
}

#[tokio::test]
async fn concurrent_writers_get_gap_free_numbers_in_commit_order() {
    const WRITERS: usize = 4;
    const APPENDS: usize = 40;
    let (url, reader) = migrated().await;
    let total = (WRITERS * APPENDS * 2) as u64;

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut table = SharedTable::connect(&url).await.expect("connect");
        writers.push(tokio::spawn(async move {
            let mut lasts = Vec::new();
            for i in 0..APPENDS {
                // Two changes per append: numbers come in pairs.
                let changes = [
                    Change::Upsert(record("u", &format!("w{w} i{i}"))),
                    block(&format!("w{w}"), i % 2 == 0, Blocker::Admin),
                ];
                lasts.push(table.append(&changes, &[]).await.expect("append"));
            }
            lasts
        }));
    }

    // Meanwhile a replica polls the log: every batch continues exactly
    // where the last ended (it never sees n + 1 before n). And a joining
    // replica's copies are each one consistent state: one key per append,
    // two numbers per append, so the keys are exactly half the number.
    let mut copier = SharedTable::connect(&url).await.expect("connect");
    let deadline = Instant::now() + PATIENCE * 2;
    let mut seen: Vec<(u64, Change)> = Vec::new();
    let mut copies = 0;
    while (seen.len() as u64) < total {
        assert!(Instant::now() < deadline, "only {} changes", seen.len());
        let after = seen.last().map_or(0, |(seq, _)| *seq);
        let batch = reader.since(after, 25).await.expect("since");
        for (expected, (seq, _)) in (after + 1..).zip(&batch) {
            assert_eq!(*seq, expected, "a reader skipped or reordered a change");
        }
        seen.extend(batch);
        let copy = copier.copy().await.expect("copy");
        assert_eq!(copy.keys.len() as u64 * 2, copy.seq, "a torn copy");
        copies += 1;
        // A poll interval, not a wait for anything in particular.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let mut lasts = Vec::new();
    for writer in writers {
        lasts.extend(writer.await.expect("writer"));
    }
    // Every append got its own pair of numbers, and together they cover
    // 1..=total with no gap.
    let distinct: HashSet<u64> = lasts.iter().copied().collect();
    assert_eq!(distinct.len(), WRITERS * APPENDS);
    assert!(lasts.iter().all(|last| last % 2 == 0), "{lasts:?}");
    let all = reader.since(0, 10_000).await.expect("all");
    assert_eq!(
        all.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(
        all.iter()
            .map(|(s, c)| (*s, describe(c)))
            .collect::<Vec<_>>(),
        seen.iter()
            .map(|(s, c)| (*s, describe(c)))
            .collect::<Vec<_>>()
    );
    // Each writer's changes are in the order it appended them.
    for w in 0..WRITERS {
        let names: Vec<String> = all
            .iter()
            .filter_map(|(_, c)| match c {
                Change::Upsert(r) if r.name.starts_with(&format!("w{w} ")) => Some(r.name.clone()),
                _ => None,
            })
            .collect();
        let expected: Vec<String> = (0..APPENDS).map(|i| format!("w{w} i{i}")).collect();
        assert_eq!(names, expected);
    }
    assert_eq!(reader.head().await.expect("head"), total);
    // The state: every key, and no user left blocked (each writer's last
    // append unblocked its user).
    let copy = copier.copy().await.expect("copy");
    assert_eq!(copy.seq, total);
    assert_eq!(copy.keys.len(), WRITERS * APPENDS);
    assert!(copy.users.is_empty(), "{:?}", copy.users);
    assert!(copies > 1);
}

#[tokio::test]
async fn the_copy_is_the_state_the_changes_lead_to() {
    let (_url, mut table) = migrated().await;
    let a = record("alice", "first");
    let b = record("bob", "b");
    let mut a2 = a.clone();
    a2.name = "second".into();
    a2.scope = Scope::parse("=/api/exact").expect("scope");
    table
        .append(&[Change::Upsert(a.clone()), Change::Upsert(b.clone())], &[])
        .await
        .expect("upsert");
    table
        .merge_last_used(&[(a.id, Timestamp::from_unix(50))])
        .await
        .expect("used");
    table
        .append(&[Change::Remove(a.id)], &[])
        .await
        .expect("remove");
    // Upserted again: a fresh record, without the removed one's last use.
    table
        .append(&[Change::Upsert(a2.clone())], &[])
        .await
        .expect("again");
    // Blocked by two authorities, unblocked by one: still blocked. Blocked
    // and unblocked by one (in one batch): no row at all.
    let blocks = [
        block("carol", true, Blocker::Admin),
        block("carol", true, Blocker::Haplo),
        block("dave", true, Blocker::Admin),
    ];
    table.append(&blocks, &[]).await.expect("block");
    let unblocks = [
        block("carol", false, Blocker::Admin),
        block("dave", false, Blocker::Admin),
        block("erin", true, Blocker::Haplo),
        block("erin", false, Blocker::Haplo),
    ];
    let head = table.append(&unblocks, &[]).await.expect("unblock");
    // Last-use times merge by maximum, and skip keys that are gone.
    let gone = ApiKey::generate().expect("random").id();
    let used = |id: KeyId, at: i64| (id, Timestamp::from_unix(at));
    table
        .merge_last_used(&[used(b.id, 200), used(gone, 9)])
        .await
        .expect("used");
    table
        .merge_last_used(&[used(b.id, 100), used(b.id, 150)])
        .await
        .expect("used");

    let copy = table.copy().await.expect("copy");
    assert_eq!(copy.seq, head);
    let mut b_used = b.clone();
    b_used.last_used_at = Some(Timestamp::from_unix(200));
    let mut expected = [a2, b_used];
    expected.sort_by_key(|r| r.id.to_string());
    assert_eq!(
        copy.keys.iter().map(describe_record).collect::<Vec<_>>(),
        expected.iter().map(describe_record).collect::<Vec<_>>()
    );
    assert_eq!(
        copy.users,
        [(UserId::parse("carol").expect("user"), 2)],
        "carol blocked by Haplo only; dave and erin not at all"
    );
    assert_eq!(
        Blocker::all_in(copy.users[0].1).collect::<Vec<_>>(),
        [Blocker::Haplo]
    );
}

#[tokio::test]
async fn a_write_sees_every_earlier_one_and_holds_the_others_back() {
    let (url, mut mine) = migrated().await;
    let mut other = SharedTable::connect(&url).await.expect("connect");
    let (watcher, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let first = Change::Upsert(record("alice", "first"));
    other
        .append(std::slice::from_ref(&first), &[])
        .await
        .expect("append");

    let mut txn = mine.begin_write().await.expect("begin");
    assert_eq!(txn.head(), 1);
    let caught_up = txn.since(0, 100).await.expect("since");
    assert_eq!(caught_up.len(), 1);
    assert_eq!(describe(&caught_up[0].1), describe(&first));

    // Another replica's write now waits for the lock...
    let later = Change::Upsert(record("bob", "later"));
    let sent = later.clone();
    let waiting = tokio::spawn(async move { other.append(&[sent], &[]).await });
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Writers waiting for an advisory lock in this test's database.
        let waiting_writers: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                &[],
            )
            .await
            .expect("pg_locks")
            .get(0);
        if waiting_writers == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the second writer never queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!waiting.is_finished());
    // ...while this one writes, and reads its own change back.
    let mine_change = block("carol", true, Blocker::Admin);
    assert_eq!(
        txn.append(std::slice::from_ref(&mine_change), &[])
            .await
            .expect("append"),
        2
    );
    assert_eq!(txn.since(1, 10).await.expect("own").len(), 1);
    assert_eq!(txn.commit().await.expect("commit"), 2);
    // Then the other goes, numbered after it.
    assert_eq!(waiting.await.expect("task").expect("append"), 3);

    // A write dropped without commit leaves no trace and gives its
    // number back.
    let mut txn = mine.begin_write().await.expect("begin");
    txn.append(
        &[Change::Remove(record("x", "x").id)],
        &[event(Action::KeyRevoked, "x")],
    )
    .await
    .expect("append");
    drop(txn);
    let all = mine.since(0, 100).await.expect("since");
    assert_eq!(
        all.iter()
            .map(|(s, c)| (*s, describe(c)))
            .collect::<Vec<_>>(),
        [
            (1, describe(&first)),
            (2, describe(&mine_change)),
            (3, describe(&later))
        ]
    );
    assert!(mine.audit(0, 10).await.expect("audit").is_empty());
    let next = mine
        .append(&[Change::Remove(record("y", "y").id)], &[])
        .await;
    assert_eq!(next.expect("append"), 4);
}

#[tokio::test]
async fn a_listener_hears_another_replicas_commit() {
    let (url, mut table) = migrated().await;
    let mut listener = Listener::connect(&url).await.expect("listen");
    assert_eq!(listener.latest(), 0);
    let head = table
        .append(&[Change::Upsert(record("alice", "a"))], &[])
        .await
        .expect("append");
    let heard = tokio::time::timeout(PATIENCE, listener.next())
        .await
        .expect("no notification")
        .expect("listening");
    assert_eq!(heard, head);
    // Three commits, however they are coalesced, end at the last head.
    let mut last = 0;
    for i in 0..3 {
        let change = Change::Upsert(record("bob", &format!("{i}")));
        last = table.append(&[change], &[]).await.expect("append");
    }
    let deadline = Instant::now() + PATIENCE;
    let mut heard = head;
    while heard < last {
        let remaining = deadline.saturating_duration_since(Instant::now());
        heard = tokio::time::timeout(remaining, listener.next())
            .await
            .expect("notifications stopped")
            .expect("listening");
    }
    assert_eq!(heard, last);
}

#[tokio::test]
async fn a_listener_reports_its_connection_ending() {
    let mut pg = TestPostgres::start();
    let url = pg.fresh_database();
    SharedTable::connect(&url)
        .await
        .expect("connect")
        .migrate()
        .await
        .expect("migrate");
    let mut listener = Listener::connect(&url).await.expect("listen");
    pg.stop();
    let e = tokio::time::timeout(PATIENCE, listener.next())
        .await
        .expect("the end was never reported")
        .expect_err("server stopped");
    assert!(matches!(e, FleetError::ListenEnded { .. }), "{e:?}");
    assert!(!e.to_string().contains(pg.owner_password()), "{e}");
    // Asked again, it says the same rather than hanging.
    let again = listener.next().await.expect_err("still ended");
    assert!(matches!(again, FleetError::ListenEnded { .. }), "{again:?}");
    pg.restart();
    let mut listener = Listener::connect(&url).await.expect("listen again");
    let mut table = SharedTable::connect(&url).await.expect("connect again");
    let head = table
        .append(&[Change::Upsert(record("alice", "a"))], &[])
        .await
        .expect("append");
    let heard = tokio::time::timeout(PATIENCE, listener.next())
        .await
        .expect("no notification")
        .expect("listening");
    assert_eq!(heard, head);
}

#[tokio::test]
async fn a_wrong_password_fails_without_showing_it() {
    let url = TestPostgres::shared().fresh_database();
    let pg = TestPostgres::shared();
    let wrong = "Wr0ng-Fleet-Passw0rd-Zq7";
    let bad = url.replace(pg.owner_password(), wrong);
    assert_ne!(bad, url);
    let errors = [
        SharedTable::connect(&bad)
            .await
            .expect_err("wrong password"),
        Listener::connect(&bad).await.expect_err("wrong password"),
    ];
    for e in errors {
        let text = e.to_string();
        assert!(matches!(e, FleetError::Connect { .. }), "{e:?}");
        assert!(text.contains("password authentication failed"), "{text}");
        assert!(text.contains("haplo:***@127.0.0.1"), "{text}");
        assert!(
            !text.contains(wrong) && !text.contains(pg.owner_password()),
            "{text}"
        );
        assert!(!format!("{e:?}").contains(wrong), "{e:?}");
    }
    assert!(!pg.log().contains(wrong), "the server logged the password");
    // A statement's error names the database the same way: here, a table
    // read before migration.
    let table = SharedTable::connect(&url).await.expect("connect");
    let e = table.since(0, 1).await.expect_err("not migrated");
    assert!(matches!(e, FleetError::Query { .. }), "{e:?}");
    assert!(e.to_string().contains("keygate_changes"), "{e}");
    assert!(!e.to_string().contains(pg.owner_password()), "{e}");
    assert!(!format!("{table:?}").contains(pg.owner_password()));
    assert_eq!(table.database(), url.replace(pg.owner_password(), "***"));
}

/// Figures for the report, not a check: `cargo test --release --test
/// fleet_log -- --ignored --nocapture append_figures`.
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn append_figures() {
    const ONE: usize = 500;
    const WRITERS: usize = 4;
    const EACH: usize = 500;
    let (url, mut table) = migrated().await;
    let mut times = Vec::with_capacity(ONE);
    for i in 0..ONE {
        let change = Change::Upsert(record("alice", &format!("{i}")));
        let start = Instant::now();
        table
            .append(&[change], &[event(Action::KeyCreated, "alice")])
            .await
            .expect("append");
        times.push(start.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "one writer, one change + one audit event per append: p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );

    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        writers.push(SharedTable::connect(&url).await.expect("connect"));
    }
    let start = Instant::now();
    let tasks: Vec<_> = writers
        .into_iter()
        .enumerate()
        .map(|(w, mut table)| {
            tokio::spawn(async move {
                for i in 0..EACH {
                    let change = Change::Upsert(record("bob", &format!("w{w} {i}")));
                    table.append(&[change], &[]).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let elapsed = start.elapsed();
    println!(
        "{WRITERS} writers x {EACH} appends of one change: {:?}, {:.0} appends/s",
        elapsed,
        (WRITERS * EACH) as f64 / elapsed.as_secs_f64()
    );
}
