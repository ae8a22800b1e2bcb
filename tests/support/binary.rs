//! The compiled `keygate` binary, run as an operator would run it.
//!
//! [`Keygate::spawn`] starts `keygate serve --config FILE` with stderr piped;
//! a thread forwards stderr line by line to a channel, so a test waits for
//! the "keygate serving" line (and reads the bound addresses from it), or
//! for the process to exit (stderr closes), always with a timeout. A
//! `Keygate` that is dropped while still running is killed, so a failing
//! test never leaves a server behind. [`cli`] runs one admin command.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use tokio::sync::mpsc;

use super::PATIENCE;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_keygate");

/// A config file in a temp dir, with its store in the same dir.
#[derive(Debug)]
pub struct ConfigFile {
    /// The temp dir holding the config and the store.
    pub dir: tempfile::TempDir,
    /// The config file.
    pub path: PathBuf,
}

impl ConfigFile {
    /// Writes `text` as `keygate.toml` in a new temp dir.
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keygate.toml");
        std::fs::write(&path, text).expect("write config");
        ConfigFile { dir, path }
    }

    /// A config on `127.0.0.1:0` ports with the store in `store`,
    /// forwarding to `upstream`, plus `extra` TOML appended verbatim.
    pub fn serving(store: &Path, upstream: Option<SocketAddr>, extra: &str) -> Self {
        Self::new(&config_text(store, upstream, extra))
    }

    /// The store file this dir would hold.
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("keygate.redb")
    }
}

/// Config text on `127.0.0.1:0` ports with the store at `store`.
pub fn config_text(store: &Path, upstream: Option<SocketAddr>, extra: &str) -> String {
    let upstream = upstream.map_or_else(|| "127.0.0.1:9".to_owned(), |a| a.to_string());
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://{upstream}\"\nshutdown_grace_secs = 5\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n{extra}",
        store.display()
    )
}

/// A running (or exited) `keygate serve`.
#[derive(Debug)]
pub struct Keygate {
    child: Option<Child>,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far.
    pub stderr: Vec<String>,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

impl Keygate {
    /// Starts `keygate serve --config config` without waiting for anything.
    pub fn spawn(config: &Path) -> Self {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keygate");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(strip_ansi(&line)).is_err() {
                    return;
                }
            }
        });
        Keygate {
            child: Some(child),
            lines,
            stderr: Vec::new(),
        }
    }

    /// Starts keygate and waits until it serves; panics if it exits first.
    pub async fn start(config: &Path) -> Serving {
        let mut keygate = Self::spawn(config);
        let (proxy_addr, admin_addr) = keygate.serving().await;
        Serving {
            keygate,
            proxy_addr,
            admin_addr,
        }
    }

    /// The next stderr line, or `None` once stderr has closed.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = tokio::time::timeout(PATIENCE, self.lines.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "keygate writes to stderr in time; so far: {:?}",
                    self.stderr
                )
            })?;
        self.stderr.push(line.clone());
        Some(line)
    }

    /// Waits for the "keygate serving" line and returns the bound
    /// `(proxy, admin)` addresses from it.
    pub async fn serving(&mut self) -> (SocketAddr, SocketAddr) {
        loop {
            let Some(line) = self.next_line().await else {
                panic!("keygate exited before serving: {:?}", self.stderr);
            };
            if line.contains("keygate serving") {
                return (field(&line, "proxy"), field(&line, "admin"));
            }
        }
    }

    /// Waits for the process to exit (stderr closes first) and reaps it.
    pub async fn exit(mut self) -> Exited {
        while self.next_line().await.is_some() {}
        let mut child = self.child.take().expect("not yet reaped");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("wait task")
            .expect("wait for keygate");
        Exited {
            status,
            stderr: self.stderr.join("\n"),
        }
    }

    /// Sends a signal (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL keygate");
            child.wait().expect("reap keygate");
        }
    }
}

impl Drop for Keygate {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A keygate that has logged its bound addresses.
#[derive(Debug)]
pub struct Serving {
    /// The process.
    pub keygate: Keygate,
    /// The proxy listener.
    pub proxy_addr: SocketAddr,
    /// The admin listener.
    pub admin_addr: SocketAddr,
}

impl Serving {
    /// An admin request with the right Host header.
    pub fn admin(&self, method: &str, path: &str) -> super::Req {
        super::Req::new(method, path).host(&self.admin_addr.to_string())
    }
}

/// Runs `keygate ARGS...` to completion (with `envs` set and
/// `KEYGATE_ADMIN_TOKEN` unset unless given), within the test's patience.
pub async fn cli(args: &[&str], envs: &[(&str, &str)]) -> CliOutput {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("KEYGATE_ADMIN_TOKEN")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in envs {
        command.env(name, value);
    }
    let child = command.spawn().expect("start keygate");
    let pid = child.id();
    let waited = tokio::time::timeout(
        PATIENCE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(output) => output.expect("wait task").expect("keygate output"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("keygate {args:?} did not finish in time");
        }
    };
    CliOutput {
        status: output.status,
        stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
    }
}

/// What a CLI command printed.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Panics unless the command exited 0; returns stdout.
    pub fn ok(&self) -> &str {
        assert!(
            self.status.success(),
            "exit {:?}; stderr: {}",
            self.status,
            self.stderr
        );
        &self.stdout
    }

    /// Panics unless the command failed; returns stderr.
    pub fn failed(&self) -> &str {
        assert!(
            !self.status.success(),
            "should fail; stdout: {}",
            self.stdout
        );
        &self.stderr
    }

    /// Stdout parsed as one JSON value.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("stdout is JSON ({e}): {}", self.stdout))
    }
}

/// `name=value` from a log line.
fn field(line: &str, name: &str) -> SocketAddr {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {name}=ADDR in {line:?}"))
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Sends `req` to `addr` and reads the whole answer, or `None` if the
/// connection fails or closes before a complete answer: for tests that
/// kill the server while requests are in flight, where a request cut short
/// has an unknown outcome rather than a failure.
pub async fn try_send(req: &super::Req, addr: SocketAddr) -> Option<super::Resp> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(&req.to_bytes()).await.ok()?;
    let mut all = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut all))
        .await
        .ok()?
        .ok()?;
    let resp = super::Resp::parse(&all)?;
    let complete = resp
        .header("content-length")
        .and_then(|len| len.parse::<usize>().ok())
        .is_none_or(|len| resp.body.len() == len);
    complete.then_some(resp)
}
