//! Scale benchmark: keygate with a million keys (issue 6's scale targets).
//!
//! Run with `cargo bench --bench scale` (about a minute once the store is
//! seeded; the first run seeds it, ~15-30 s). It prints:
//!
//! - **start-up**: `Keyring::open` on the seeded store (redb open, then one
//!   pass that reads every record and builds the snapshot from it), timed in
//!   a fresh child process, with `Store::open` alone and a bare read of
//!   every record (`Store::keys` with a filter that keeps none) for
//!   comparison;
//! - **resident memory** of that child once the keyring is ready (VmRSS),
//!   and its peak (VmHWM), read from `/proc/self/status`;
//! - **admin write latency** (`Keyring::create` / `Keyring::revoke`, which
//!   is what the admin API's 201/204 waits for: a durable redb commit plus
//!   the snapshot swap), p50 / p99 / max over a few hundred writes, on the
//!   1M-key store and, for comparison, on an empty one; and the periodic
//!   `Keyring::flush_last_used`, which holds the same writer lock.
//!
//! Targets from the issue: start-up under 3 s, RSS under 200 MB, create or
//! revoke under 5 ms at p99, all at 1,000,000 keys.
//!
//! Environment: `SCALE_KEYS` (default 1000000), `SCALE_WRITES` (default
//! 300 creates + 300 revokes), `SCALE_DIR` (default `target/keygate-scale`;
//! the seeded store is kept there and reused while its key count matches),
//! `SCALE_RESEED=1` to seed afresh, `SCALE_SEED=api` to seed through the
//! public one-commit-per-key `Store::insert_key` instead (minutes).
//!
//! Other modes (used by `benches/load.sh` and by this program itself):
//!
//! - `cargo bench --bench scale -- --seed STORE N KEYFILE`: seed a store with
//!   N keys and write one of them (scope `/api/`, user `bench`) to KEYFILE;
//! - `cargo bench --bench scale -- --open STORE`: open it once and print
//!   `open_ms=... rss_kb=... hwm_kb=... keys=...`.
//!
//! # How the store is seeded
//!
//! The public write API commits one key per durable transaction
//! (`Store::insert_key`, `Keyring::create`): at the 0.2 to 4 ms per commit
//! measured below, a million keys take from several minutes to over an
//! hour. There is no public bulk insert and `KeyRecord::encode` is
//! `pub(crate)`, so the seeder writes the `keys` table with redb directly,
//! in the record format of `src/keys/record.rs` (format byte 1 + postcard of
//! `StoredV1`), after `Store::open` has created the file and its tables.
//! Seeded keys get no audit events and no `last_used` rows (the API would
//! write one audit event per key). The duplicated format is checked on
//! every run: the seeded store must load through `Keyring::open` with
//! exactly N keys, and the remembered key must verify, so a change to
//! `record.rs` makes this bench fail loudly rather than measure the wrong
//! thing. A public `Store::insert_keys(&[KeyRecord])` committing in one
//! transaction would remove the duplication.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use keygate::keys::{
    Action, ApiKey, AuditEvent, Change, KeyId, KeyRecord, Keyring, NewKey, Store, UserId, Verified,
};
use keygate::scope::Scope;
use keygate::timestamp::Timestamp;
use redb::{Database, TableDefinition};
use serde::Serialize;

/// The `keys` table as `src/keys/store.rs` defines it.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
/// Record format byte of `src/keys/record.rs`.
const FORMAT_V1: u8 = 1;
/// Keys per seeding transaction.
const BATCH: usize = 100_000;

/// Counts live heap bytes, only in `--split` mode, so that resident memory
/// can be attributed: redb (its page cache after a full read) versus the
/// snapshot.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is only arithmetic on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

/// `src/keys/record.rs`'s `StoredV1`, field for field.
#[derive(Serialize)]
struct StoredV1<'a> {
    hash: [u8; 32],
    user: &'a str,
    name: &'a str,
    scope: &'a str,
    created_at: i64,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

fn main() {
    // `cargo bench` passes `--bench`; criterion-style filters are ignored.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--open", store] => open_once(Path::new(store)),
        ["--split", store] => open_split(Path::new(store)),
        ["--seed", store, n, keyfile] => {
            let n: usize = n.parse().expect("N must be a number");
            let key = seed(Path::new(store), n);
            fs::write(keyfile, key.expose()).expect("write key file");
        }
        _ => full_run(),
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn full_run() {
    let n = env_usize("SCALE_KEYS", 1_000_000);
    let writes = env_usize("SCALE_WRITES", 300);
    let dir = match std::env::var_os("SCALE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
            .join("keygate-scale"),
    };
    fs::create_dir_all(&dir).expect("create SCALE_DIR");
    let store = dir.join(format!("keys-{n}.redb"));
    let keyfile = dir.join(format!("keys-{n}.key"));
    let reseed = std::env::var_os("SCALE_RESEED").is_some_and(|v| v == "1");

    println!("# keygate scale benchmark: {n} keys");
    println!();
    println!("store: {}", store.display());
    if reseed || !store.exists() || !keyfile.exists() {
        let _ = fs::remove_file(&store);
        let started = Instant::now();
        let key = seed(&store, n);
        fs::write(&keyfile, key.expose()).expect("write key file");
        println!(
            "seeded {n} keys in {:.1} s (direct redb writes, {BATCH} keys per transaction)",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("reusing the seeded store (SCALE_RESEED=1 to seed afresh)");
    }
    let size = fs::metadata(&store).map(|m| m.len()).unwrap_or(0);
    println!("store file: {:.1} MB", size as f64 / 1e6);
    println!();

    // Start-up and memory, each in a fresh process (cold heap, warm page
    // cache: the file was just written or read). Three runs, median shown.
    let mut opens: Vec<ChildFigures> = (0..3).map(|_| child(&store, "--open")).collect();
    for o in &opens {
        assert_eq!(o.keys, n, "the seeded store must load with {n} keys");
    }
    opens.sort_by(|a, b| a.open_ms.total_cmp(&b.open_ms));
    let open = &opens[1];
    let split = child(&store, "--split");
    println!("## start-up (Keyring::open: store open to snapshot ready), fresh process");
    println!();
    println!("| figure | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| start-up, median of 3 (runs: {}) | {:.0} ms | < 3000 ms |",
        opens
            .iter()
            .map(|o| format!("{:.0}", o.open_ms))
            .collect::<Vec<_>>()
            .join(", "),
        open.open_ms
    );
    println!(
        "| for comparison: Store::open {:.0} ms; a bare read + decode of every record {:.0} ms | | |",
        split.store_open_ms, split.load_ms
    );
    println!(
        "| resident memory once ready (VmRSS) | {:.1} MB | < 200 MB |",
        open.rss_kb as f64 / 1024.0
    );
    println!(
        "| peak resident memory during open (VmHWM) | {:.1} MB | |",
        open.hwm_kb as f64 / 1024.0
    );
    println!(
        "| resident memory before open (baseline of this process) | {:.1} MB | |",
        open.rss0_kb as f64 / 1024.0
    );
    println!(
        "| live heap once ready (counting allocator) | {:.1} MB | |",
        split.heap_ready_mb
    );
    println!(
        "| of which redb (an open Store after reading every record: page cache) | {:.1} MB | |",
        split.heap_loaded_mb
    );
    println!(
        "| of which the snapshot (the rest) | {:.1} MB = {:.0} B/key | |",
        split.heap_ready_mb - split.heap_loaded_mb,
        (split.heap_ready_mb - split.heap_loaded_mb) * 1e6 / n as f64
    );
    println!();

    // Admin writes on the big store.
    let keyring = Keyring::open(&store).expect("open the seeded store");
    let known = fs::read_to_string(&keyfile).expect("read key file");
    assert!(
        matches!(
            keyring
                .snapshot()
                .verify(known.trim().as_bytes(), Timestamp::now()),
            Verified::Valid(_)
        ),
        "the remembered key must verify: the seeder's record format is out of date"
    );
    let big = write_latencies(&keyring, writes);
    // The periodic last-use flush walks every entry under the writer lock.
    let mut flushes: Vec<Duration> = (0..5)
        .map(|round| {
            let snapshot = keyring.snapshot();
            for entry in snapshot.entries().skip(round * 100).take(100) {
                entry.touch(Timestamp::now().plus_secs(round as u64 + 1));
            }
            drop(snapshot);
            let started = Instant::now();
            keyring.flush_last_used().expect("flush");
            started.elapsed()
        })
        .collect();
    flushes.sort();
    drop(keyring);
    // The durable part alone (no snapshot), on the same 1M-key file.
    let store_only = store_latencies(&store, writes);

    // The same on an empty store in the same folder, for comparison.
    let empty_path = dir.join("empty.redb");
    let _ = fs::remove_file(&empty_path);
    let empty = Keyring::open(&empty_path).expect("open an empty store");
    // Give revoke something to remove.
    for i in 0..writes {
        empty.create(new_key(i), None).expect("create");
    }
    let small = write_latencies(&empty, writes);
    drop(empty);
    let _ = fs::remove_file(&empty_path);

    println!("## admin writes (Keyring::create / revoke: durable redb commit + snapshot swap)");
    println!();
    println!("| operation | keys in store | p50 | p99 | max | target p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (label, count, lat) in [
        ("Keyring::create", n, &big.create),
        ("Keyring::revoke", n, &big.revoke),
        (
            "Store::insert_key alone (no snapshot)",
            n,
            &store_only.create,
        ),
        (
            "Store::remove_key alone (no snapshot)",
            n,
            &store_only.revoke,
        ),
        ("Keyring::create", writes, &small.create),
        ("Keyring::revoke", writes, &small.revoke),
    ] {
        println!(
            "| {label} | {count} | {} | {} | {} | < 5 ms |",
            ms(percentile(lat, 0.50)),
            ms(percentile(lat, 0.99)),
            ms(*lat.iter().max().unwrap()),
        );
    }
    println!(
        "| Keyring::flush_last_used, 100 keys used (holds the writer lock) | {n} | {} | | {} | |",
        ms(percentile(&flushes, 0.50)),
        ms(*flushes.last().unwrap()),
    );
    println!();
    let per_key = percentile(&small.create, 0.50);
    println!(
        "(seeding {n} keys through the public one-key-per-commit API at the p50 above would take about {:.0} min)",
        per_key.as_secs_f64() * n as f64 / 60.0
    );
}

struct Latencies {
    create: Vec<Duration>,
    revoke: Vec<Duration>,
}

fn new_key(i: usize) -> NewKey {
    NewKey {
        user: UserId::parse(&format!("scale-writer-{}", i % 50)).unwrap(),
        name: format!("scale bench key {i}"),
        scope: Scope::parse("/api/").unwrap(),
        expires_at: None,
        policy: Default::default(),
    }
}

/// `writes` creates, each followed by the revoke of an existing key
/// (seeded ones first), so the store keeps its size.
fn write_latencies(keyring: &Keyring, writes: usize) -> Latencies {
    let victims: Vec<KeyId> = keyring
        .snapshot()
        .entries()
        .take(writes)
        .map(|e| e.id())
        .collect();
    assert!(victims.len() == writes, "need {writes} keys to revoke");
    let mut create = Vec::with_capacity(writes);
    let mut revoke = Vec::with_capacity(writes);
    for (i, victim) in victims.into_iter().enumerate() {
        let started = Instant::now();
        keyring.create(new_key(i), None).expect("create");
        create.push(started.elapsed());
        let started = Instant::now();
        let gone = keyring.revoke(victim, None).expect("revoke");
        revoke.push(started.elapsed());
        assert!(gone.is_some());
    }
    create.sort();
    revoke.sort();
    Latencies { create, revoke }
}

/// `Store::apply` of a creation, then of the same key's removal: the redb
/// commit without the snapshot, on the store at `path`.
fn store_latencies(path: &Path, writes: usize) -> Latencies {
    let store = Store::open(path).expect("open");
    let mut create = Vec::with_capacity(writes);
    let mut revoke = Vec::with_capacity(writes);
    for i in 0..writes {
        let record = record_for(&ApiKey::generate().expect("randomness"), i);
        let started = Instant::now();
        store
            .apply(
                &[Change::Upsert(record.clone())],
                &[event(Action::KeyCreated, &record)],
            )
            .expect("insert");
        create.push(started.elapsed());
        let started = Instant::now();
        store
            .apply(
                &[Change::Remove(record.id)],
                &[event(Action::KeyRevoked, &record)],
            )
            .expect("remove");
        revoke.push(started.elapsed());
    }
    create.sort();
    revoke.sort();
    Latencies { create, revoke }
}

/// The audit event the keyring writes with a change (as `AuditEvent::for_key`).
fn event(action: Action, record: &KeyRecord) -> AuditEvent {
    AuditEvent {
        time: Timestamp::now().unix(),
        action,
        key_id: Some(record.id.to_string()),
        new_key_id: None,
        user: record.user.to_string(),
        name: Some(record.name.clone()),
        path: Some(record.scope.as_str().to_owned()),
        grace_until: None,
        client: None,
        before: None,
        after: None,
    }
}

fn record_for(key: &ApiKey, i: usize) -> KeyRecord {
    KeyRecord {
        id: key.id(),
        hash: keygate::keys::KeyHash::Blake3(key.secret_hash()),
        user: UserId::parse(&format!("user{:06}@example.org", i / 4)).expect("user"),
        name: format!("integration key {i}"),
        scope: Scope::parse(if i % 10 == 9 { "=/api/x/run" } else { "/api/" }).expect("scope"),
        created_at: Timestamp::now(),
        expires_at: None,
        last_used_at: None,
        origin: keygate::keys::Origin::Keygate,
        policy: Default::default(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Seeds `path` with `n` keys; returns one of them (user `bench`, `/api/`).
fn seed(path: &Path, n: usize) -> ApiKey {
    if std::env::var_os("SCALE_SEED").is_some_and(|v| v == "api") {
        return seed_through_api(path, n);
    }
    // The store creates the file, its tables and its schema stamp.
    drop(Store::open(path).expect("create the store"));
    let db = Database::create(path).expect("reopen the store with redb");
    let created_at = Timestamp::now().unix();
    let known = ApiKey::generate().expect("randomness");
    let mut written = 0usize;
    let mut buf = Vec::with_capacity(128);
    while written < n {
        let txn = db.begin_write().expect("begin");
        {
            let mut table = txn.open_table(KEYS).expect("keys table");
            let end = (written + BATCH).min(n);
            for i in written..end {
                let (key, user, scope) = if i == 0 {
                    (known.clone(), "bench".to_owned(), "/api/")
                } else {
                    (
                        ApiKey::generate().expect("randomness"),
                        // ~4 keys per user; one key in ten has an exact scope.
                        format!("user{:06}@example.org", i / 4),
                        if i % 10 == 9 { "=/api/x/run" } else { "/api/" },
                    )
                };
                let name = format!("integration key {i}");
                let stored = StoredV1 {
                    hash: *key.secret_hash().as_bytes(),
                    user: &user,
                    name: &name,
                    scope,
                    created_at,
                    expires_at: None,
                    last_used_at: None,
                };
                buf.clear();
                buf.push(FORMAT_V1);
                buf.extend_from_slice(&postcard::to_stdvec(&stored).expect("encode"));
                table
                    .insert(key.id().as_str(), buf.as_slice())
                    .expect("insert");
            }
            written = end;
        }
        txn.commit().expect("commit");
    }
    drop(db);
    known
}

/// `SCALE_SEED=api`: the same keys through the public API, one durable
/// commit per key (slow: minutes per million; for checking that a store
/// grown key by key starts up like a bulk-seeded one).
fn seed_through_api(path: &Path, n: usize) -> ApiKey {
    let store = Store::open(path).expect("create the store");
    let known = ApiKey::generate().expect("randomness");
    let started = Instant::now();
    for i in 0..n {
        let record = if i == 0 {
            KeyRecord {
                user: UserId::parse("bench").expect("user"),
                scope: Scope::parse("/api/").expect("scope"),
                ..record_for(&known, i)
            }
        } else {
            record_for(&ApiKey::generate().expect("randomness"), i)
        };
        let created = event(Action::KeyCreated, &record);
        store
            .apply(&[Change::Upsert(record)], &[created])
            .expect("insert");
        if (i + 1) % 100_000 == 0 {
            eprintln!(
                "seeded {} keys through Store::apply in {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    known
}

#[derive(Debug, Default)]
struct ChildFigures {
    open_ms: f64,
    store_open_ms: f64,
    load_ms: f64,
    heap_loaded_mb: f64,
    heap_ready_mb: f64,
    rss0_kb: u64,
    rss_kb: u64,
    hwm_kb: u64,
    keys: usize,
}

/// Runs this program again in `mode` on `store` and reads its figures.
fn child(store: &Path, mode: &str) -> ChildFigures {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .arg(mode)
        .arg(store)
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut figures = ChildFigures::default();
    for field in text.split_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        let f: f64 = value.parse().unwrap_or(0.0);
        match name {
            "open_ms" => figures.open_ms = f,
            "store_open_ms" => figures.store_open_ms = f,
            "load_ms" => figures.load_ms = f,
            "heap_loaded_mb" => figures.heap_loaded_mb = f,
            "heap_ready_mb" => figures.heap_ready_mb = f,
            "rss0_kb" => figures.rss0_kb = f as u64,
            "rss_kb" => figures.rss_kb = f as u64,
            "hwm_kb" => figures.hwm_kb = f as u64,
            "keys" => figures.keys = f as usize,
            _ => {}
        }
    }
    figures
}

/// `VmRSS` / `VmHWM` from `/proc/self/status`, in kB.
fn status_kb(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_once(store: &Path) {
    let rss0 = status_kb("VmRSS:");
    let started = Instant::now();
    let keyring = Keyring::open(store).expect("open");
    let open_ms = started.elapsed().as_secs_f64() * 1e3;
    let keys = keyring.snapshot().key_count();
    println!(
        "open_ms={open_ms:.1} rss0_kb={rss0} rss_kb={} hwm_kb={} keys={keys}",
        status_kb("VmRSS:"),
        status_kb("VmHWM:")
    );
}

fn open_split(store: &Path) {
    COUNTING.store(true, Ordering::Relaxed);
    // redb alone: an open store after one full read fills its page cache.
    let started = Instant::now();
    let opened = Store::open(store).expect("open");
    let store_open_ms = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let none = opened.keys(Some("no such user")).expect("read");
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    assert!(none.is_empty());
    let heap_loaded = live_mb();
    drop(opened);
    // Then the keyring: the same store plus the snapshot.
    let before = live_mb();
    let keyring = Keyring::open(store).expect("open");
    let heap_ready = live_mb() - before;
    println!(
        "store_open_ms={store_open_ms:.1} load_ms={load_ms:.1} \
         heap_loaded_mb={heap_loaded:.1} heap_ready_mb={heap_ready:.1} keys={}",
        keyring.snapshot().key_count()
    );
}
