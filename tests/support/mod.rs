//! Test harness: a recording upstream, a `TestProxy` builder, and a raw
//! HTTP/1.1 client, so each test reads like the SPEC row it checks.
//!
//! Everything is real: keygate runs in-process through the same
//! `App::bind` + `App::run` as `main`, on `127.0.0.1:0`, over a redb file in
//! a temp dir; the upstream is a hyper server in the test; requests are
//! bytes on a TCP socket. Nothing waits on a sleep: tests wait on channels
//! (the upstream's record of each request, each access-log line) with a
//! timeout that only fires if the behaviour under test is broken.

#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod binary;
pub mod client;
pub mod haplo;
pub mod postgres;
pub mod scripted;
pub mod tls;
pub mod upstream;

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keygate::access_log::AccessLog;
use keygate::app::App;
use keygate::config::Config;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use client::{raw, Req, Resp};
pub use upstream::{Recorded, RecordingUpstream};

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The default Host header tests send.
pub const HOST: &str = "app.example";

/// Builds a keygate for one test.
#[derive(Debug, Default)]
pub struct TestProxyBuilder {
    upstream: Option<String>,
    store_dir: Option<PathBuf>,
    extra_proxy: Vec<String>,
    extra_sections: Vec<String>,
    admin_token: Option<String>,
    tls: Option<(PathBuf, PathBuf)>,
    clock: Option<keygate::timestamp::Clock>,
    store_database: Option<String>,
    listen: Option<String>,
}

impl TestProxyBuilder {
    /// Listen for clients on this address (default `127.0.0.1:0`), e.g.
    /// `[::1]:0` for an IPv6 peer.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.to_owned());
        self
    }

    /// Forward to this upstream (default: a port nothing listens on).
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(format!("http://{addr}"));
        self
    }

    /// Fleet mode: share the key table through the PostgreSQL at `url`.
    pub fn store_database(mut self, url: &str) -> Self {
        self.store_database = Some(url.to_owned());
        self
    }

    /// Forward to this upstream URL (e.g. `https://localhost:PORT`).
    pub fn upstream_url(mut self, url: &str) -> Self {
        self.upstream = Some(url.to_owned());
        self
    }

    /// Keep the store in `dir` (to restart over the same file).
    pub fn store_dir(mut self, dir: &Path) -> Self {
        self.store_dir = Some(dir.to_owned());
        self
    }

    /// Adds a raw TOML line to `[proxy]`, e.g. `anonymous = "forward"`.
    pub fn proxy(mut self, line: &str) -> Self {
        self.extra_proxy.push(line.to_owned());
        self
    }

    /// Sets `[throttle]`.
    pub fn throttle(mut self, max_failures: u32, window_secs: u64) -> Self {
        self.extra_sections.push(format!(
            "[throttle]\nmax_failures = {max_failures}\nwindow_secs = {window_secs}\n"
        ));
        self
    }

    /// Decides expiry with this clock (a manual one moves without sleeps).
    pub fn clock(mut self, clock: &keygate::timestamp::Clock) -> Self {
        self.clock = Some(clock.clone());
        self
    }

    /// Adds a raw TOML section (e.g. `[store]` settings are fixed; use this
    /// for `[log]`).
    pub fn section(mut self, text: &str) -> Self {
        self.extra_sections.push(text.to_owned());
        self
    }

    /// Terminates TLS with this certificate and key.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_owned(), key.to_owned()));
        self
    }

    /// Sets `admin.token`.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_owned());
        self
    }

    /// The config file text this builder produces.
    pub fn toml(&self, store: &Path) -> String {
        let upstream = self
            .upstream
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9".to_owned());
        let mut text = String::new();
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:0");
        writeln!(
            text,
            "[proxy]\nlisten = \"{listen}\"\nupstream = \"{upstream}\""
        )
        .unwrap();
        // Test defaults, unless the test sets them itself.
        for (key, value) in [("upstream_timeout_secs", "2"), ("shutdown_grace_secs", "5")] {
            if !self
                .extra_proxy
                .iter()
                .any(|l| l.trim_start().starts_with(key))
            {
                writeln!(text, "{key} = {value}").unwrap();
            }
        }
        for line in &self.extra_proxy {
            writeln!(text, "{line}").unwrap();
        }
        if let Some((cert, key)) = &self.tls {
            writeln!(
                text,
                "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"",
                cert.display(),
                key.display()
            )
            .unwrap();
        }
        writeln!(text, "[admin]\nlisten = \"127.0.0.1:0\"").unwrap();
        if let Some(token) = &self.admin_token {
            writeln!(text, "token = \"{token}\"").unwrap();
        }
        writeln!(
            text,
            "[store]\npath = \"{}\"",
            store.join("keygate.redb").display()
        )
        .unwrap();
        if let Some(url) = &self.store_database {
            writeln!(text, "database = \"{url}\"").unwrap();
        }
        for section in &self.extra_sections {
            text.push_str(section);
        }
        text
    }

    /// Starts keygate.
    pub async fn start(self) -> TestProxy {
        let dir = match &self.store_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp dir")),
        };
        let store = self
            .store_dir
            .clone()
            .unwrap_or_else(|| dir.as_ref().unwrap().path().to_owned());
        let text = self.toml(&store);
        // Written to a file, so that a test can edit it and reload.
        let config_path = store.join("keygate.toml");
        std::fs::write(&config_path, &text).expect("write test config");
        let config = Config::load(Some(&config_path))
            .unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
        let (log_tx, log_rx) = mpsc::unbounded_channel();
        let (log, log_guard) = AccessLog::to_writer(ChannelWriter(log_tx));
        let clock = self.clock.clone().unwrap_or_default();
        let app = App::bind_with_clock(config, log, clock)
            .await
            .expect("keygate starts");
        let keyring = app.keyring().clone();
        let state = app.proxy().clone();
        let reloader = app.reloader(config_path.clone());
        let proxy_addr = app.proxy_addr();
        let admin_addr = app.admin_addr();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            app.run(async {
                let _ = stop_rx.await;
            })
            .await;
            drop(log_guard);
        });
        TestProxy {
            proxy_addr,
            admin_addr,
            admin_token: self.admin_token,
            config_path,
            reloader,
            keyring,
            state,
            stop: Some(stop_tx),
            task: Some(task),
            logs: log_rx,
            _dir: dir,
        }
    }
}

/// Sends each access-log write (one line) to the test.
struct ChannelWriter(mpsc::UnboundedSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running keygate.
#[derive(Debug)]
pub struct TestProxy {
    /// The proxy listener.
    pub proxy_addr: SocketAddr,
    /// The admin listener.
    pub admin_addr: SocketAddr,
    admin_token: Option<String>,
    /// The config file keygate was started from.
    pub config_path: PathBuf,
    reloader: keygate::app::Reloader,
    /// The running keyring (to count store writes).
    pub keyring: std::sync::Arc<keygate::keys::Keyring>,
    /// The running proxy state (to look at the throttle).
    pub state: std::sync::Arc<keygate::proxy::Proxy>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    logs: mpsc::UnboundedReceiver<Vec<u8>>,
    _dir: Option<tempfile::TempDir>,
}

/// A key created through the admin API.
#[derive(Debug, Clone)]
pub struct Key {
    /// The full key.
    pub key: String,
    /// Its id.
    pub id: String,
    /// The whole 201 body.
    pub created: Value,
}

impl TestProxy {
    /// A builder.
    pub fn builder() -> TestProxyBuilder {
        TestProxyBuilder::default()
    }

    /// A request to the proxy.
    pub async fn send(&self, req: Req) -> Resp {
        req.send(self.proxy_addr).await
    }

    /// An admin request with the right Host (and token, if configured).
    pub fn admin(&self, method: &str, path: &str) -> Req {
        let mut req = Req::new(method, path).host(&self.admin_addr.to_string());
        if let Some(token) = &self.admin_token {
            req = req.header("Authorization", &format!("Bearer {token}"));
        }
        req
    }

    /// Sends an admin request.
    pub async fn admin_send(&self, req: Req) -> Resp {
        req.send(self.admin_addr).await
    }

    /// Creates a key for `user` with scope `path`; panics unless 201.
    pub async fn create_key(&self, user: &str, path: &str) -> Key {
        let resp = self
            .admin_send(
                self.admin("POST", "/v1/keys")
                    .json(&json!({"user": user, "name": "test key", "path": path})),
            )
            .await;
        assert_eq!(resp.status, 201, "create key: {}", resp.text());
        let created = resp.json();
        Key {
            key: created["key"].as_str().unwrap().to_owned(),
            id: created["id"].as_str().unwrap().to_owned(),
            created,
        }
    }

    /// Revokes a key; panics unless 204.
    pub async fn revoke(&self, id: &str) {
        let resp = self
            .admin_send(self.admin("DELETE", &format!("/v1/keys/{id}")))
            .await;
        assert_eq!(resp.status, 204, "revoke: {}", resp.text());
    }

    /// Blocks or unblocks a user; panics unless 200.
    pub async fn set_blocked(&self, user: &str, blocked: bool) {
        let resp = self
            .admin_send(
                self.admin("PUT", &format!("/v1/users/{user}"))
                    .json(&json!({"blocked": blocked})),
            )
            .await;
        assert_eq!(resp.status, 200, "set blocked: {}", resp.text());
    }

    /// The next access-log line, parsed.
    pub async fn next_log(&mut self) -> Value {
        let line = tokio::time::timeout(PATIENCE, self.logs.recv())
            .await
            .expect("an access-log line in time")
            .expect("access log open");
        let text = String::from_utf8(line).expect("log lines are UTF-8");
        assert!(
            text.ends_with('\n') && text.matches('\n').count() == 1,
            "one line: {text:?}"
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("log line is JSON ({e}): {text}"))
    }

    /// The raw text of the next access-log line.
    pub async fn next_log_text(&mut self) -> String {
        let line = tokio::time::timeout(PATIENCE, self.logs.recv())
            .await
            .expect("an access-log line in time")
            .expect("access log open");
        String::from_utf8(line).expect("log lines are UTF-8")
    }

    /// Replaces the config file with `text` and reloads it, as SIGHUP does.
    pub fn reload_with(
        &self,
        text: &str,
    ) -> Result<keygate::app::ReloadReport, keygate::app::ReloadError> {
        std::fs::write(&self.config_path, text).expect("write config");
        self.reloader.reload()
    }

    /// The config file's current text.
    pub fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config_path).expect("read config")
    }

    /// Triggers a graceful shutdown and waits for it to finish.
    pub async fn stop(mut self) {
        self.stop_in_place().await;
    }

    /// Triggers a graceful shutdown; the returned future resolves when
    /// keygate has drained and stopped.
    pub fn begin_stop(&mut self) -> impl std::future::Future<Output = ()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take();
        async move {
            if let Some(task) = task {
                tokio::time::timeout(PATIENCE, task)
                    .await
                    .expect("keygate stops within the grace period")
                    .expect("keygate task did not panic");
            }
        }
    }

    async fn stop_in_place(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("keygate stops within the grace period")
                .expect("keygate task did not panic");
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
