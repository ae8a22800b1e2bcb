//! A real, throwaway PostgreSQL for tests, from Debian's `postgresql`
//! package binaries: one cluster shared by a whole test binary
//! ([`TestPostgres::shared`]) and private ones that a test may stop and
//! restart to play an outage ([`TestPostgres::start`]).
//!
//! Decisions:
//!
//! - **A fresh directory and port per cluster.** A cluster from a finished
//!   or killed test run can never be picked up, and parallel test runs on
//!   one machine never meet. The port is the kernel's pick of a free one;
//!   if someone takes it before postgres binds, the boot is retried.
//! - **The server dies with the test process.** postgres is started under
//!   a small `sh` watchdog whose stdin is a pipe from this process. Closing
//!   the pipe (stop, drop) or this process ending for any reason (panic,
//!   `exit`, SIGKILL) makes the watchdog send postgres SIGQUIT, postgres's
//!   immediate shutdown, which is what `pg_ctl stop -m immediate` sends.
//!   The directory goes too, unless `stop()` asked to keep it for a
//!   restart, so a killed test run leaves nothing behind.
//! - **Fast, but not lossy.** `fsync=off` (nothing here survives the
//!   machine anyway); `synchronous_commit` stays on, so a commit that was
//!   acknowledged is still there after `stop()` and `restart()`.
//! - **Not as root.** postgres refuses to run as root, and tests (CI too)
//!   run as root, so the server runs as the package's `postgres` user
//!   (`runuser`), in a directory under `/tmp` owned by it. A non-root
//!   developer runs it as themselves.
//! - **Real passwords.** The socket in the cluster's directory (which only
//!   root and `postgres` can enter) trusts local users, for the harness's
//!   own setup;
//!   TCP on 127.0.0.1 demands SCRAM passwords, so a test of a wrong
//!   password fails for real, and a test can search logs for one.
//! - **Ready means a connection works.** Start-up polls `pg_isready` over
//!   TCP until it answers, with a deadline, failing at once if postgres
//!   exits; its log is in the panic message.
//! - **Never skipped.** Missing binaries are a panic that says how to
//!   install them.

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a test run without the binaries says.
const NOT_INSTALLED: &str =
    "PostgreSQL is not installed: run `apt-get install -y postgresql` (tests/run does this)";

/// The role that owns every test database and its tables: it plays
/// Haplo's own login.
pub const OWNER: &str = "haplo";

/// A role with no rights of its own; a fixture grants it exactly what
/// keygate needs to read, so a reader that reaches for more fails.
pub const READER: &str = "keygate";

/// How long a cluster may take to start or stop.
const PATIENCE: Duration = Duration::from_secs(60);

/// The watchdog: `$1` postgres binary, `$2` data dir, `$3` port, `$4`
/// socket dir, `$5` log file, `$6` the cluster's directory. A line on
/// stdin (`stop()` sends "keep") stops postgres and keeps the data for a
/// restart; end of file without one (drop, or this process gone) stops it
/// and removes the directory. It exits with postgres's status.
const WATCHDOG: &str = r#"
pg_bin=$1 data=$2 port=$3 sock=$4 log=$5 dir=$6
# The lifeline moves to fd 3: a background job's stdin is /dev/null.
exec 3<&0 0</dev/null
"$pg_bin" -D "$data" -p "$port" -k "$sock" \
    -c listen_addresses=127.0.0.1 -c fsync=off \
    -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200 \
    >>"$log" 2>&1 3<&- &
pg=$!
(
    read -r _line <&3 || : >"$dir/remove-me"
    # A background job starts with SIGQUIT ignored until postgres installs
    # its handler: repeat until it has gone.
    while kill -QUIT "$pg" 2>/dev/null; do sleep 0.1; done
) &
reader=$!
exec 3<&-
wait "$pg"
status=$?
kill "$reader" 2>/dev/null
if [ -e "$dir/remove-me" ]; then rm -rf "$dir"; fi
exit "$status"
"#;

/// A PostgreSQL cluster of this test process.
#[derive(Debug)]
pub struct TestPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// `Some("postgres")` when this process is root.
    run_as: Option<&'static str>,
    owner_password: String,
    reader_password: String,
    /// The running server, `None` while stopped.
    server: Option<Child>,
    /// The watchdog's stdin: closing it stops the server.
    lifeline: Option<ChildStdin>,
    databases: AtomicU32,
}

impl TestPostgres {
    /// The cluster of this test binary, started by the first caller.
    pub fn shared() -> &'static TestPostgres {
        static SHARED: OnceLock<TestPostgres> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::create)
    }

    /// A cluster of the caller's own, to stop and restart; dropping it
    /// stops it and removes its files.
    pub fn start() -> TestPostgres {
        TestPostgres::create()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The [`OWNER`] role's password.
    pub fn owner_password(&self) -> &str {
        &self.owner_password
    }

    /// The [`READER`] role's password.
    pub fn reader_password(&self) -> &str {
        &self.reader_password
    }

    /// Creates an empty database owned by [`OWNER`] and returns its URL
    /// (`postgres://haplo:PASSWORD@127.0.0.1:PORT/dbN`).
    pub fn fresh_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = format!("db{n}");
        self.superuser_sql("postgres", &format!("CREATE DATABASE {name} OWNER {OWNER}"));
        self.url(OWNER, &self.owner_password, &name)
    }

    /// The URL of the same database as `url` for the [`READER`] role.
    pub fn reader_url(&self, url: &str) -> String {
        let database = url.rsplit('/').next().unwrap_or_default();
        self.url(READER, &self.reader_password, database)
    }

    /// `postgres://ROLE:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, role: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// Runs SQL as the superuser over the cluster's socket and returns what
    /// `psql` printed (unaligned, tuples only). Panics on an SQL error.
    pub fn superuser_sql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-XqAt", "-v", "ON_ERROR_STOP=1", "-U", "postgres"])
            .arg("-h")
            .arg(self.dir.join("sock"))
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Everything the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    /// Stops the server at once (SIGQUIT: no checkpoint, connections cut,
    /// as in a crash or a lost host) and waits until it has exited, so its
    /// port refuses connections when this returns.
    pub fn stop(&mut self) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        if let Some(mut lifeline) = self.lifeline.take() {
            // "keep": the watchdog leaves the data for a restart.
            let _ = lifeline.write_all(b"keep\n");
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match server.try_wait().expect("wait for postgres") {
                Some(_) => return,
                None if Instant::now() > deadline => {
                    let _ = server.kill();
                    panic!("postgres did not stop in {PATIENCE:?}:\n{}", self.log());
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops the server (if running) and starts it again on the same port
    /// over the same data, so clients can reconnect to the same URL.
    pub fn restart(&mut self) {
        self.stop();
        self.boot()
            .unwrap_or_else(|log| panic!("postgres did not restart:\n{log}"));
    }

    fn create() -> TestPostgres {
        let bin = find_binaries();
        let run_as = if is_root() { Some("postgres") } else { None };
        // Root's TMPDIR may be unreachable for the postgres user; /tmp is not.
        let base = if run_as.is_some() {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = tempfile::Builder::new()
            .prefix("keygate-pg-")
            .tempdir_in(base)
            .expect("create a temp dir for PostgreSQL")
            .keep();
        if let Some(user) = run_as {
            run(
                Command::new("chown").arg(format!("{user}:")).arg(&dir),
                "chown the cluster dir",
            );
        }
        let mut pg = TestPostgres {
            bin,
            dir,
            port: 0,
            run_as,
            owner_password: random_password(),
            reader_password: random_password(),
            server: None,
            lifeline: None,
            databases: AtomicU32::new(0),
        };
        let mut initdb = pg.as_server_user(pg.bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args(["-U", "postgres", "--auth-local=trust"])
            .arg("--auth-host=scram-sha-256")
            .args(["--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"]);
        run(&mut initdb, "initdb");
        std::fs::create_dir_all(pg.dir.join("sock")).expect("socket dir");
        if let Some(user) = run_as {
            run(
                Command::new("chown")
                    .arg(format!("{user}:"))
                    .arg(pg.dir.join("sock")),
                "chown",
            );
        }
        // A free port now may be taken before postgres binds it: try again.
        let mut last = String::new();
        for _attempt in 0..5 {
            pg.port = free_port();
            match pg.boot() {
                Ok(()) => {
                    pg.superuser_sql(
                        "postgres",
                        &format!(
                            "CREATE ROLE {OWNER} LOGIN CREATEDB PASSWORD '{}'; \
                             CREATE ROLE {READER} LOGIN PASSWORD '{}'",
                            pg.owner_password, pg.reader_password
                        ),
                    );
                    return pg;
                }
                Err(log) if log.contains("already in use") => last = log,
                Err(log) => panic!("postgres did not start:\n{log}"),
            }
        }
        panic!("postgres found no free port:\n{last}");
    }

    /// Starts the server under its watchdog and waits until it accepts
    /// TCP connections. `Err` carries the server's log.
    fn boot(&mut self) -> Result<(), String> {
        let log = self.dir.join("postgres.log");
        let mut cmd = self.as_server_user("sh");
        cmd.args(["-c", WATCHDOG, "sh"])
            .arg(self.bin.join("postgres"))
            .arg(self.dir.join("data"))
            .arg(self.port.to_string())
            .arg(self.dir.join("sock"))
            .arg(&log)
            .arg(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server = cmd.spawn().expect("spawn postgres");
        self.lifeline = server.stdin.take();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if server.try_wait().expect("wait for postgres").is_some() {
                self.lifeline = None;
                return Err(self.log());
            }
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-t", "5", "-h", "127.0.0.1", "-p"])
                .arg(self.port.to_string())
                .status()
                .expect("run pg_isready");
            if ready.success() {
                self.server = Some(server);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = server.kill();
                self.lifeline = None;
                return Err(format!("not ready after {PATIENCE:?}\n{}", self.log()));
            }
            // A poll interval, not a guess at how long start-up takes.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `program` as the user postgres runs as.
    fn as_server_user(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // End of file without "keep": the watchdog stops postgres and
        // removes the directory. Waiting is bounded: SIGQUIT makes postgres
        // kill its backends and exit.
        drop(self.lifeline.take());
        if let Some(mut server) = self.server.take() {
            let _ = server.wait();
        }
        // A stopped cluster has no watchdog left to remove it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb`, or
/// `KEYGATE_TEST_PG_BIN` where PostgreSQL lives elsewhere.
fn find_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEYGATE_TEST_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").exists(),
            "KEYGATE_TEST_PG_BIN has no initdb: {}",
            dir.display()
        );
        return dir;
    }
    let versions =
        std::fs::read_dir("/usr/lib/postgresql").unwrap_or_else(|_| panic!("{NOT_INSTALLED}"));
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("run id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port()
}

/// 24 random alphanumerics: safe in a URL and in an SQL literal as is.
fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("random bytes");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
