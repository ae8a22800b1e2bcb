//! SPEC 1: the `keygate serve` process: exit codes and one-line reasons at
//! start-up, clean shutdown on signals, and keys that survive a `kill -9`.

mod support;

use std::net::TcpListener;

use serde_json::json;
use support::binary::{config_text, ConfigFile, Exited, Keygate, Serving};
use support::{RecordingUpstream, Req};

/// Runs `keygate serve` over `text` and waits for it to exit.
async fn exits_with(text: &str) -> Exited {
    let config = ConfigFile::new(text);
    Keygate::spawn(&config.path).exit().await
}

/// A config on free ports with its store in `dir`, plus `extra` TOML.
fn serving_config(dir: &tempfile::TempDir, extra: &str) -> String {
    config_text(&dir.path().join("keygate.redb"), None, extra)
}

/// Asserts a failed start whose stderr says `words`, in one line.
fn assert_refused_start(exited: &Exited, words: &[&str]) {
    assert!(
        !exited.status.success(),
        "should not start: {}",
        exited.stderr
    );
    assert_eq!(
        exited.stderr.lines().count(),
        1,
        "one line: {:?}",
        exited.stderr
    );
    for word in words {
        assert!(
            exited.stderr.contains(word),
            "stderr should name {word:?}: {}",
            exited.stderr
        );
    }
}

#[tokio::test]
async fn an_unknown_config_key_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let typo = serving_config(&dir, "").replace("shutdown_grace_secs", "shutdown_grace_sec");
    assert_refused_start(&exits_with(&typo).await, &["shutdown_grace_sec"]);
    let section = serving_config(&dir, "[throtle]\nmax_failures = 3\n");
    assert_refused_start(&exits_with(&section).await, &["throtle"]);
}

#[tokio::test]
async fn a_bad_value_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = serving_config(&dir, "").replace("[proxy]\n", "[proxy]\nanonymous = \"maybe\"\n");
    assert_refused_start(&exits_with(&text).await, &["proxy.anonymous"]);
}

#[tokio::test]
async fn a_missing_config_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.toml");
    let exited = Keygate::spawn(&missing).exit().await;
    assert_refused_start(&exited, &[missing.to_str().unwrap()]);
}

#[tokio::test]
async fn a_non_loopback_admin_listen_without_a_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = serving_config(&dir, "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"0.0.0.0:0\"",
    );
    assert!(text.contains("0.0.0.0:0"), "{text}");
    assert_refused_start(&exits_with(&text).await, &["admin.listen"]);
}

#[tokio::test]
async fn a_proxy_port_in_use_is_refused_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let text = serving_config(&dir, "").replacen("127.0.0.1:0", &addr, 1);
    assert!(
        text.contains(&format!("[proxy]\nlisten = \"{addr}\"")),
        "{text}"
    );
    assert_refused_start(&exits_with(&text).await, &[&addr]);
}

#[tokio::test]
async fn an_admin_port_in_use_is_refused_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let text = serving_config(&dir, "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"{addr}\""),
    );
    assert_refused_start(&exits_with(&text).await, &[&addr]);
}

#[tokio::test]
async fn a_store_path_that_is_a_directory_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keygate.redb");
    std::fs::create_dir(&store).unwrap();
    let exited = exits_with(&serving_config(&dir, "")).await;
    assert_refused_start(&exited, &[store.to_str().unwrap()]);
}

#[tokio::test]
async fn a_store_of_garbage_is_refused_naming_it_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("keygate.redb");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&store, &garbage).unwrap();
    let exited = exits_with(&serving_config(&dir, "")).await;
    assert_refused_start(&exited, &[store.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(&store).unwrap(),
        garbage,
        "the store file was modified"
    );
}

#[tokio::test]
async fn a_missing_tls_certificate_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("missing-cert.pem");
    let key = dir.path().join("missing-key.pem");
    let tls = format!(
        "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let exited = exits_with(&serving_config(&dir, &tls)).await;
    assert_refused_start(&exited, &[cert.to_str().unwrap()]);
}

#[tokio::test]
async fn a_second_keygate_on_the_same_store_says_it_is_already_open() {
    let dir = tempfile::tempdir().unwrap();
    let first = ConfigFile::new(&serving_config(&dir, ""));
    let running = Keygate::start(&first.path).await;
    let second = ConfigFile::new(&serving_config(&dir, ""));
    let exited = Keygate::spawn(&second.path).exit().await;
    assert_refused_start(&exited, &["already open", "keygate.redb"]);
    let health = running
        .admin("GET", "/healthz")
        .send(running.admin_addr)
        .await;
    assert_eq!(health.status, 200, "the first keygate still serves");
}

#[tokio::test]
async fn sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(&serving_config(&dir, ""));
    let running = Keygate::start(&config.path).await;
    assert_eq!(
        running
            .admin("GET", "/healthz")
            .send(running.admin_addr)
            .await
            .status,
        200
    );
    running.keygate.signal("TERM");
    let exited = running.keygate.exit().await;
    assert_eq!(
        exited.status.code(),
        Some(0),
        "{:?}: {}",
        exited.status,
        exited.stderr
    );
}

#[tokio::test]
async fn sigterm_and_sigint_right_after_the_serving_line_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(&serving_config(&dir, ""));
    // Once keygate says it serves, a signal must drain it, not kill it.
    for signal in ["TERM", "INT"].repeat(5) {
        let running = Keygate::start(&config.path).await;
        running.keygate.signal(signal);
        let exited = running.keygate.exit().await;
        assert_eq!(
            exited.status.code(),
            Some(0),
            "SIG{signal}: {:?}: {}",
            exited.status,
            exited.stderr
        );
    }
}

/// A keygate binary forwarding to `upstream`, over the store in `config`.
async fn start(config: &ConfigFile) -> Serving {
    Keygate::start(&config.path).await
}

/// Creates a key through the running binary's admin API; returns it.
async fn create_key(running: &Serving, user: &str) -> String {
    let req = running
        .admin("POST", "/v1/keys")
        .json(&json!({"user": user, "name": "t"}));
    let resp = req.send(running.admin_addr).await;
    assert_eq!(resp.status, 201, "{}", resp.text());
    resp.json()["key"].as_str().unwrap().to_owned()
}

async fn get_with(running: &Serving, key: &str) -> support::Resp {
    Req::get("/api/x").basic(key).send(running.proxy_addr).await
}

#[tokio::test]
async fn a_key_created_just_before_sigkill_works_after_a_restart() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(&config_text(
        &dir.path().join("k.redb"),
        Some(upstream.addr),
        "",
    ));
    let mut running = start(&config).await;
    let key = create_key(&running, "alice").await;
    running.keygate.kill();
    let running = start(&config).await;
    let resp = get_with(&running, &key).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(upstream.seen()[0].header("x-haplo-user"), Some("alice"));
}

#[tokio::test]
async fn a_key_revoked_just_before_sigkill_stays_refused_after_a_restart() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(&config_text(
        &dir.path().join("k.redb"),
        Some(upstream.addr),
        "",
    ));
    let mut running = start(&config).await;
    let key = create_key(&running, "alice").await;
    assert_eq!(get_with(&running, &key).await.status, 200);
    let revoke = running.admin("DELETE", &format!("/v1/keys/{}", &key[..16]));
    assert_eq!(revoke.send(running.admin_addr).await.status, 204);
    running.keygate.kill();
    let running = start(&config).await;
    get_with(&running, &key)
        .await
        .assert_refused(403, "INVALID-API-KEY");
}

#[tokio::test]
async fn a_user_blocked_just_before_sigkill_stays_blocked_after_a_restart() {
    let upstream = RecordingUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = ConfigFile::new(&config_text(
        &dir.path().join("k.redb"),
        Some(upstream.addr),
        "",
    ));
    let mut running = start(&config).await;
    let key = create_key(&running, "carol").await;
    let block = running
        .admin("PUT", "/v1/users/carol")
        .json(&json!({"blocked": true}));
    assert_eq!(block.send(running.admin_addr).await.status, 200);
    running.keygate.kill();
    let running = start(&config).await;
    get_with(&running, &key)
        .await
        .assert_refused(403, "UNAUTHORISED");
}

/// Waits for a stderr line containing `words`, returning it.
async fn line_with(keygate: &mut Keygate, words: &str) -> String {
    loop {
        let Some(line) = keygate.next_line().await else {
            panic!(
                "keygate exited before logging {words:?}: {:?}",
                keygate.stderr
            );
        };
        if line.contains(words) {
            return line;
        }
    }
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = RecordingUpstream::start().await;
    let store = dir.path().join("keygate.redb");
    let config = ConfigFile::new(&config_text(&store, Some(upstream.addr), ""));
    let mut running = Keygate::start(&config.path).await;
    let proxy = running.proxy_addr;
    Req::get("/public")
        .send(proxy)
        .await
        .assert_refused(403, "UNAUTHORISED");

    let text = std::fs::read_to_string(&config.path).unwrap();
    let forwarding = text.replace("[proxy]\n", "[proxy]\nanonymous = \"forward\"\n");
    std::fs::write(&config.path, forwarding).unwrap();
    running.keygate.signal("HUP");
    line_with(&mut running.keygate, "config reloaded").await;
    assert_eq!(Req::get("/public").send(proxy).await.status, 200);

    // A broken file is refused, named, and the running settings stay.
    std::fs::write(
        &config.path,
        text.replace("[proxy]\n", "[proxy]\nanonymous = \"maybe\"\n"),
    )
    .unwrap();
    running.keygate.signal("HUP");
    let refused = line_with(&mut running.keygate, "config reload refused").await;
    assert!(refused.contains("proxy.anonymous"), "{refused}");
    assert_eq!(Req::get("/public").send(proxy).await.status, 200);

    running.keygate.signal("TERM");
    assert_eq!(running.keygate.exit().await.status.code(), Some(0));
}
