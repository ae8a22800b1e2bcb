//! Issue 11, item 7: a fleet under crashes and races. Three real
//! `keygate serve` processes, each with its own redb file, share one key
//! table through a real PostgreSQL.
//!
//! - A replica SIGKILLed in the middle of a stream of admin writes, then
//!   restarted over the same file, four times (each replica in turn):
//!   killed on its own Nth commit as PostgreSQL notifies it (committed,
//!   most likely not yet applied locally nor answered), or after its Nth
//!   answer while the others write too. The restarted replica serves at
//!   once every write it had acknowledged; then every write any replica
//!   acknowledged (201 or 204) is in effect on every replica, all of them
//!   stand at the shared log's head and list exactly the shared table's
//!   keys, and the log holds nothing beyond the acknowledged writes and
//!   the requests the kill cut. A cut request has an unknown outcome and
//!   is not judged on its own, but every replica must agree on it.
//! - A revoke on one replica and a rotate of the same key on another, sent
//!   at the same moment: the answers are those of one of the two serial
//!   orders, and every replica ends in the state that order leads to.

mod support;

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::binary::{config_text, try_send, ConfigFile, Keygate, Serving};
use support::postgres::TestPostgres;
use support::{RecordingUpstream, Req, Resp, PATIENCE};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Revoked keys are presented on purpose, again and again: never throttle.
const NO_THROTTLE: &str = "[throttle]\nmax_failures = 1000000\nwindow_secs = 1\n";

/// A number in `0..n` that differs from run to run.
fn random_below(n: u64) -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.finish() % n
}

/// Polls `check` until it passes; panics with its last complaint once
/// [`PATIENCE`] has gone by. The pause between polls is a poll interval,
/// not a guess at how long anything takes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) if Instant::now() >= deadline => {
                panic!("{what}: not so within {PATIENCE:?}: {why}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One `keygate serve` process of the fleet, with its own dir (config and
/// store), which outlives the process so it can be restarted over it.
#[derive(Debug)]
struct Replica {
    name: String,
    config: ConfigFile,
    running: Option<Serving>,
}

impl Replica {
    fn serving(&self) -> &Serving {
        self.running
            .as_ref()
            .unwrap_or_else(|| panic!("replica {} is not running", self.name))
    }

    fn proxy_addr(&self) -> SocketAddr {
        self.serving().proxy_addr
    }

    fn admin_addr(&self) -> SocketAddr {
        self.serving().admin_addr
    }

    /// Starts the process over its dir; returns once it serves (it has
    /// logged its addresses), without waiting for `/readyz`.
    async fn start(&mut self) {
        assert!(self.running.is_none(), "{} already running", self.name);
        self.running = Some(Keygate::start(&self.config.path).await);
    }

    /// SIGKILL, and reap it.
    fn kill(&mut self) {
        let mut running = self.running.take().expect("running");
        running.keygate.kill();
    }

    async fn admin(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let mut req = self.serving().admin(method, path);
        if let Some(body) = body {
            req = req.json(body);
        }
        req.send(self.admin_addr()).await
    }

    /// `/readyz`, with its status in `http_status`.
    async fn ready(&self) -> Value {
        let resp = self.admin("GET", "/readyz", None).await;
        let mut body = resp.json();
        body["http_status"] = json!(resp.status);
        body
    }

    async fn synced_seq(&self) -> u64 {
        let ready = self.ready().await;
        ready["fleet"]["synced_seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("{}: no fleet.synced_seq in /readyz: {ready}", self.name))
    }

    /// A request through the proxy with `key`.
    async fn presents(&self, key: &str) -> Resp {
        Req::get("/api/x").basic(key).send(self.proxy_addr()).await
    }

    async fn create_key(&self, user: &str) -> Created {
        let resp = self
            .admin(
                "POST",
                "/v1/keys",
                Some(&json!({"user": user, "name": "race", "path": "/api/"})),
            )
            .await;
        assert_eq!(resp.status, 201, "{}: create: {}", self.name, resp.text());
        Created::from(&resp)
    }

    /// The ids of every key this replica's admin API lists.
    async fn key_ids(&self) -> BTreeSet<String> {
        let resp = self.admin("GET", "/v1/keys", None).await;
        assert_eq!(resp.status, 200, "{}: list: {}", self.name, resp.text());
        resp.json()["keys"]
            .as_array()
            .expect("a key list")
            .iter()
            .map(|k| k["id"].as_str().expect("an id").to_owned())
            .collect()
    }
}

/// A key from a 201.
#[derive(Debug, Clone)]
struct Created {
    key: String,
    id: String,
}

impl Created {
    fn from(resp: &Resp) -> Self {
        let body = resp.json();
        Created {
            key: body["key"].as_str().expect("a key").to_owned(),
            id: body["id"].as_str().expect("an id").to_owned(),
        }
    }
}

/// Three replicas over one fresh database of the shared cluster.
#[derive(Debug)]
struct Fleet {
    pg: &'static TestPostgres,
    url: String,
    database: String,
    replicas: Vec<Replica>,
    _upstream: RecordingUpstream,
}

impl Fleet {
    /// Starts `n` replicas, one after another, each ready (it holds the
    /// shared table) before the next starts.
    async fn start(n: usize) -> Fleet {
        let pg = TestPostgres::shared();
        let url = pg.fresh_database();
        let database = url.rsplit('/').next().expect("a database name").to_owned();
        let upstream = RecordingUpstream::start().await;
        let mut replicas = Vec::new();
        for i in 0..n {
            let config = ConfigFile::new("");
            let text = config_text(
                &config.store(),
                Some(upstream.addr),
                &format!("database = \"{url}\"\n{NO_THROTTLE}"),
            );
            std::fs::write(&config.path, text).expect("write config");
            let mut replica = Replica {
                name: char::from(b'A' + u8::try_from(i).expect("few replicas")).to_string(),
                config,
                running: None,
            };
            replica.start().await;
            eventually(&format!("replica {} ready", replica.name), || async {
                let ready = replica.ready().await;
                if ready["http_status"] == 200 {
                    Ok(())
                } else {
                    Err(ready.to_string())
                }
            })
            .await;
            replicas.push(replica);
        }
        Fleet {
            pg,
            url,
            database,
            replicas,
            _upstream: upstream,
        }
    }

    fn sql(&self, sql: &str) -> String {
        self.pg.superuser_sql(&self.database, sql)
    }

    /// The last change number given out, from PostgreSQL itself.
    fn head(&self) -> u64 {
        let out = self.sql("SELECT seq FROM keygate_head");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("keygate_head: {out:?}"))
    }

    /// The ids in the shared table, from PostgreSQL itself.
    fn shared_ids(&self) -> BTreeSet<String> {
        self.sql("SELECT id FROM keygate_keys")
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until every replica's `/readyz` `fleet.synced_seq` is the
    /// shared log's head; returns it. Call with no write in flight.
    async fn converge(&self) -> u64 {
        let head = self.head();
        eventually("every replica at the shared head", || async {
            let mut seqs = Vec::new();
            for replica in &self.replicas {
                seqs.push((replica.name.clone(), replica.synced_seq().await));
            }
            if seqs.iter().all(|(_, seq)| *seq == head) {
                Ok(())
            } else {
                Err(format!("head {head}, replicas at {seqs:?}"))
            }
        })
        .await;
        head
    }

    /// Every replica lists exactly the keys the shared table holds.
    async fn assert_same_keys_everywhere(&self) {
        let shared = self.shared_ids();
        for replica in &self.replicas {
            let local = replica.key_ids().await;
            assert!(
                local == shared,
                "replica {} lists other keys than PostgreSQL: only there {:?}, only in PostgreSQL {:?}",
                replica.name,
                local.difference(&shared).collect::<Vec<_>>(),
                shared.difference(&local).collect::<Vec<_>>(),
            );
        }
    }
}

// ---------------------------------------------------------------------
// A replica SIGKILLed during a stream of writes.
// ---------------------------------------------------------------------

const REPLICAS: usize = 3;
/// Each cycle kills a different replica, at one of two kinds of moment.
const CYCLES: usize = 4;
/// Writers sending to the replica that will be killed.
const VICTIM_WRITERS: usize = 3;
/// Writes acknowledged by the survivors while the victim is down.
const WHILE_DOWN: usize = 20;
/// ...and after it is back, before the writers stop.
const AFTER_RESTART: usize = 10;

/// What a writer was told, or was about to ask.
#[derive(Debug)]
enum Ack {
    /// 201 received.
    Created(Created),
    /// A revocation of this key is about to be sent: from now on its
    /// outcome is unknown until its 204.
    Revoking(String),
    /// 204 received for this key.
    Revoked(String),
    /// An answer no write should get: the test fails.
    Wrong(String),
}

/// When the victim is killed.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// On its own Nth commit, as PostgreSQL notifies it.
    Commit,
    /// After its own Nth answer, at a survivor's answer.
    Answer,
}

/// The shared log's commits, as PostgreSQL notifies them to a listener
/// of the test's own.
struct Commits {
    notes: mpsc::UnboundedReceiver<String>,
    _client: tokio_postgres::Client,
}

impl Commits {
    async fn listen(url: &str) -> Commits {
        let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the fleet database");
        let (tx, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) =
                std::future::poll_fn(|cx| connection.poll_message(cx)).await
            {
                if let tokio_postgres::AsyncMessage::Notification(note) = message {
                    if tx.send(note.payload().to_owned()).is_err() {
                        return;
                    }
                }
            }
        });
        client
            .batch_execute("LISTEN keygate_changes")
            .await
            .expect("LISTEN");
        Commits {
            notes,
            _client: client,
        }
    }

    /// The next commit's number.
    async fn next(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.notes.recv())
            .await
            .expect("a commit in time")
            .expect("still listening")
    }
}

/// How a writer ended.
#[derive(Debug, PartialEq)]
enum Ended {
    /// Its replica stopped answering (killed).
    Cut,
    /// Told to stop.
    Stopped,
}

/// Creates keys on the replica at `admin` and revokes every other one,
/// until told to stop or the replica stops answering. Every answer goes
/// to `acks`, tagged with the replica's index.
async fn writer(
    replica: usize,
    admin: SocketAddr,
    tag: String,
    acks: mpsc::UnboundedSender<(usize, Ack)>,
    stop: Arc<AtomicBool>,
) -> Ended {
    let host = admin.to_string();
    let mut previous: Option<String> = None;
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            return Ended::Stopped;
        }
        let create = Req::new("POST", "/v1/keys")
            .host(&host)
            .json(&json!({"user": tag, "name": format!("k{n}"), "path": "/api/"}));
        let Some(resp) = try_send(&create, admin).await else {
            return Ended::Cut;
        };
        if resp.status != 201 {
            let _ = acks.send((replica, Ack::Wrong(format!("create: {}", resp.status))));
            return Ended::Cut;
        }
        let created = Created::from(&resp);
        let key = created.key.clone();
        let _ = acks.send((replica, Ack::Created(created)));
        if let (0, Some(old)) = (n % 2, previous.take()) {
            let _ = acks.send((replica, Ack::Revoking(old.clone())));
            let revoke = Req::new("DELETE", &format!("/v1/keys/{}", &old[..16])).host(&host);
            let Some(resp) = try_send(&revoke, admin).await else {
                return Ended::Cut;
            };
            if resp.status != 204 {
                let _ = acks.send((
                    replica,
                    Ack::Wrong(format!("revoke: {} {}", resp.status, resp.text())),
                ));
                return Ended::Cut;
            }
            let _ = acks.send((replica, Ack::Revoked(old)));
        }
        previous = Some(key);
    }
    unreachable!()
}

/// Everything the writers were told, over all cycles.
#[derive(Debug, Default)]
struct Ledger {
    /// Keys whose 201 was received, with the replica that sent it.
    created: Vec<(usize, Created)>,
    /// Keys whose revocation was sent (outcome known only with a 204).
    revoking: HashSet<String>,
    /// Keys whose 204 was received, with the replica that sent it.
    revoked: Vec<(usize, String)>,
}

impl Ledger {
    /// Records one answer; true if it was an acknowledgement.
    fn record(&mut self, from: usize, ack: Ack) -> bool {
        match ack {
            Ack::Created(created) => self.created.push((from, created)),
            Ack::Revoking(key) => {
                self.revoking.insert(key);
                return false;
            }
            Ack::Revoked(key) => self.revoked.push((from, key)),
            Ack::Wrong(what) => panic!("replica {from} answered a write wrongly: {what}"),
        }
        true
    }

    /// Keys that must work: created, never sent for revocation.
    fn live(&self) -> impl Iterator<Item = &(usize, Created)> {
        self.created
            .iter()
            .filter(|(_, c)| !self.revoking.contains(&c.key))
    }

    /// What `replica` gets wrong, if anything: an acknowledged key
    /// refused, or an acknowledged revocation accepted. `only_from`
    /// limits it to the writes acknowledged by one replica.
    async fn wrong_on(&self, replica: &Replica, only_from: Option<usize>) -> Vec<String> {
        let judged = |from: usize| only_from.is_none_or(|only| only == from);
        let mut wrong = Vec::new();
        for (from, created) in self.live().filter(|(from, _)| judged(*from)) {
            let resp = replica.presents(&created.key).await;
            if resp.status != 200 {
                wrong.push(format!(
                    "key {} (201 from replica {from}) answered {}",
                    created.id, resp.status
                ));
            }
        }
        for (from, key) in self.revoked.iter().filter(|(from, _)| judged(*from)) {
            let resp = replica.presents(key).await;
            let kind = (resp.status == 403).then(|| resp.json()["kind"].clone());
            if kind != Some(json!("INVALID-API-KEY")) {
                wrong.push(format!(
                    "key {} (204 from replica {from}) answered {} {}",
                    &key[..16],
                    resp.status,
                    resp.text()
                ));
            }
        }
        wrong
    }
}

/// The next answer from any writer.
async fn next_ack(rx: &mut mpsc::UnboundedReceiver<(usize, Ack)>) -> (usize, Ack) {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("the writers make progress")
        .expect("writers running")
}

#[tokio::test]
async fn a_replica_sigkilled_during_writes_and_restarted_loses_no_acknowledged_write_anywhere() {
    let mut fleet = Fleet::start(REPLICAS).await;
    let mut ledger = Ledger::default();
    for cycle in 0..CYCLES {
        let victim = cycle % REPLICAS;
        let moment = if cycle % 2 == 0 {
            Moment::Commit
        } else {
            Moment::Answer
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let admins: Vec<SocketAddr> = fleet.replicas.iter().map(Replica::admin_addr).collect();
        let start_writers = |replica: usize, count: usize| -> Vec<JoinHandle<Ended>> {
            (0..count)
                .map(|w| {
                    tokio::spawn(writer(
                        replica,
                        admins[replica],
                        format!("c{cycle}-r{replica}-w{w}"),
                        tx.clone(),
                        stop.clone(),
                    ))
                })
                .collect()
        };
        let survivors: Vec<usize> = (0..REPLICAS).filter(|r| *r != victim).collect();
        let wanted = 10 + random_below(31);
        let (victim_writers, survivor_writers) = match moment {
            Moment::Commit => {
                // Only the victim writes until it dies, so every commit
                // notified is its own. SIGKILL on its `wanted`th commit:
                // committed in PostgreSQL, and most likely not yet
                // applied to its own file or answered.
                let mut commits = Commits::listen(&fleet.url).await;
                let victim_writers = start_writers(victim, VICTIM_WRITERS);
                for _ in 0..wanted {
                    commits.next().await;
                }
                fleet.replicas[victim].kill();
                let survivor_writers = survivors
                    .iter()
                    .flat_map(|r| start_writers(*r, 1))
                    .collect();
                (victim_writers, survivor_writers)
            }
            Moment::Answer => {
                // Everyone writes. SIGKILL after `wanted` writes answered
                // by the victim and then 1 to 3 by the survivors: a
                // survivor's answer comes at no particular point of the
                // victim's own write (waiting for the fleet lock,
                // committing, applying locally, answering).
                let victim_writers = start_writers(victim, VICTIM_WRITERS);
                let survivor_writers: Vec<_> = survivors
                    .iter()
                    .flat_map(|r| start_writers(*r, 1))
                    .collect();
                let then = 1 + random_below(3);
                let (mut acknowledged, mut by_survivors) = (0, 0);
                while by_survivors < then {
                    let (from, ack) = next_ack(&mut rx).await;
                    if ledger.record(from, ack) {
                        if from == victim {
                            acknowledged += 1;
                        } else if acknowledged >= wanted {
                            by_survivors += 1;
                        }
                    }
                }
                fleet.replicas[victim].kill();
                (victim_writers, survivor_writers)
            }
        };
        drop(tx);
        for task in victim_writers {
            let ended = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the victim's writers stop once it is gone")
                .expect("writer did not panic");
            assert_eq!(ended, Ended::Cut);
        }

        // Writes the victim misses while it is down.
        let mut survivors_acked = 0;
        while survivors_acked < WHILE_DOWN {
            let (from, ack) = next_ack(&mut rx).await;
            if ledger.record(from, ack) && from != victim {
                survivors_acked += 1;
            }
        }

        // Restarted over the same file: it serves its own copy at once,
        // and that copy holds every write it acknowledged (committed
        // locally before its 201/204), whatever it has yet to catch up.
        fleet.replicas[victim].start().await;
        let wrong = ledger.wrong_on(&fleet.replicas[victim], Some(victim)).await;
        assert!(
            wrong.is_empty(),
            "cycle {cycle}: replica {} restarted without writes it had acknowledged:\n{}",
            fleet.replicas[victim].name,
            wrong.join("\n")
        );

        // The survivors keep writing across the restart, then stop.
        let mut after = 0;
        while after < AFTER_RESTART {
            let (from, ack) = next_ack(&mut rx).await;
            if ledger.record(from, ack) {
                after += 1;
            }
        }
        stop.store(true, Ordering::SeqCst);
        for task in survivor_writers {
            let ended = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("the survivors' writers stop when told")
                .expect("writer did not panic");
            assert_eq!(ended, Ended::Stopped, "a survivor stopped answering");
        }
        while let Some((from, ack)) = rx.recv().await {
            ledger.record(from, ack);
        }

        // Every replica at the head, every acknowledged write in effect on
        // every replica, and the same keys everywhere (so writes cut by
        // the kill ended the same way on all of them).
        let head = fleet.converge().await;
        for replica in &fleet.replicas {
            eventually(
                &format!(
                    "cycle {cycle}: every acknowledged write in effect on replica {}",
                    replica.name
                ),
                || async {
                    let wrong = ledger.wrong_on(replica, None).await;
                    if wrong.is_empty() {
                        Ok(())
                    } else {
                        Err(wrong.join("\n"))
                    }
                },
            )
            .await;
        }
        fleet.assert_same_keys_everywhere().await;

        // Each write is one change in the shared log. Besides the
        // acknowledged ones, only the requests cut by a kill (one per
        // victim writer) may have left one: nothing written twice.
        let acknowledged = ledger.created.len() + ledger.revoked.len();
        let unanswered = usize::try_from(head)
            .expect("a small head")
            .checked_sub(acknowledged)
            .unwrap_or_else(|| {
                panic!("cycle {cycle}: {head} changes in the log for {acknowledged} acknowledged writes")
            });
        assert!(
            unanswered <= VICTIM_WRITERS * (cycle + 1),
            "cycle {cycle}: {head} changes in the log for {acknowledged} acknowledged writes"
        );
        eprintln!(
            "cycle {cycle}: killed {} ({moment:?} no. {wanted} of its own); head {head}; {} created, {} revoked \
             (acknowledged); {unanswered} committed without an answer so far",
            fleet.replicas[victim].name,
            ledger.created.len(),
            ledger.revoked.len(),
        );
    }
    assert!(
        ledger.revoked.len() >= CYCLES * 5,
        "{} revocations acknowledged",
        ledger.revoked.len()
    );
}

// ---------------------------------------------------------------------
// A revoke and a rotate of the same key, on two replicas at once.
// ---------------------------------------------------------------------

const ROUNDS: usize = 30;

/// Which serial order a round's answers match.
#[derive(Debug)]
enum Order {
    /// Revoke 204, rotate 404: the key is gone, no new key.
    RevokeFirst,
    /// Rotate 201, revoke 404: the old key is gone, the new one works.
    RotateFirst(Created),
}

/// What `replica` says about a key: through the proxy, and the admin API.
async fn about(replica: &Replica, key: &Created) -> (u16, Value, u16, Value) {
    let proxied = replica.presents(&key.key).await;
    let kind = if proxied.status == 200 {
        Value::Null
    } else {
        proxied.json()["kind"].clone()
    };
    let shown = replica
        .admin("GET", &format!("/v1/keys/{}", key.id), None)
        .await;
    let mut view = if shown.status == 200 {
        shown.json()
    } else {
        Value::Null
    };
    // Last use is recorded per replica, by design.
    if let Some(view) = view.as_object_mut() {
        view.remove("last_used_at");
    }
    (proxied.status, kind, shown.status, view)
}

#[tokio::test]
async fn a_revoke_and_a_rotate_of_one_key_on_two_replicas_at_once_end_in_one_order_everywhere() {
    let fleet = Fleet::start(REPLICAS).await;
    let (mut revoke_first, mut rotate_first) = (0, 0);
    for round in 0..ROUNDS {
        // Revoker and rotator change each round; the key comes from the
        // third replica, and in odd rounds the race starts before the
        // racers have heard of it (each must catch up under the lock).
        let (revoker, rotator, creator) = (
            &fleet.replicas[round % 3],
            &fleet.replicas[(round + 1) % 3],
            &fleet.replicas[(round + 2) % 3],
        );
        let old = creator.create_key(&format!("round-{round}")).await;
        if round % 2 == 0 {
            fleet.converge().await;
        }
        let revoke_path = format!("/v1/keys/{}", old.id);
        let rotate_path = format!("/v1/keys/{}/rotate", old.id);
        let no_grace = json!({"grace_secs": 0});
        let (revoked, rotated) = tokio::join!(
            revoker.admin("DELETE", &revoke_path, None),
            rotator.admin("POST", &rotate_path, Some(&no_grace)),
        );
        let order = match (revoked.status, rotated.status) {
            (204, 404) => Order::RevokeFirst,
            (404, 201) => {
                let body = rotated.json();
                assert_eq!(body["old"]["id"], json!(old.id), "{body}");
                assert_eq!(body["old"]["revoked"], json!(true), "{body}");
                Order::RotateFirst(Created::from(&rotated))
            }
            (revoke, rotate) => panic!(
                "round {round}: revoke on {} answered {revoke} ({}), rotate on {} answered {rotate} ({}): \
                 no serial order gives both",
                revoker.name,
                revoked.text(),
                rotator.name,
                rotated.text()
            ),
        };
        match order {
            Order::RevokeFirst => revoke_first += 1,
            Order::RotateFirst(_) => rotate_first += 1,
        }

        // Once every replica is at the head, all of them say the same of
        // both keys, and it is what the order leads to.
        let head = fleet.converge().await;
        for replica in &fleet.replicas {
            let (status, kind, shown, _) = about(replica, &old).await;
            assert_eq!(
                (status, kind, shown),
                (403, json!("INVALID-API-KEY"), 404),
                "round {round} ({order:?}), head {head}: the old key on replica {}",
                replica.name
            );
        }
        if let Order::RotateFirst(new) = &order {
            let on_rotator = about(rotator, new).await;
            assert_eq!(
                (on_rotator.0, on_rotator.2),
                (200, 200),
                "round {round}: the new key on the rotator {}: {on_rotator:?}",
                rotator.name
            );
            for replica in &fleet.replicas {
                let there = about(replica, new).await;
                assert_eq!(
                    there, on_rotator,
                    "round {round}, head {head}: the new key on replica {} and on the rotator {}",
                    replica.name, rotator.name
                );
            }
        }
    }
    fleet.converge().await;
    fleet.assert_same_keys_everywhere().await;
    assert_eq!(
        fleet.shared_ids().len(),
        rotate_first,
        "exactly the rotations' new keys are left"
    );
    eprintln!("{ROUNDS} rounds: revoke first {revoke_first}, rotate first {rotate_first}");
}
