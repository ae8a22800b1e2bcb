//! `keygate check` (issue 15): the compiled binary, run as the systemd
//! unit runs it before a start or a reload. A good config passes with a
//! one-line summary on stdout; a bad one fails with every problem named on
//! stderr; the check works beside a running server (ports taken, store
//! locked); and no database password ever shows.

mod support;

use std::net::TcpListener;

use support::binary::{cli, ConfigFile, Keygate};
use support::tls::TestCa;

/// A config whose store is in `dir`, with fixed TOML for the rest.
fn config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[proxy]\nlisten = \"127.0.0.1:0\"\nupstream = \"http://127.0.0.1:9\"\n{extra}\n\
         [store]\npath = \"{}\"\n",
        dir.join("keygate.redb").display()
    )
}

#[tokio::test]
async fn a_good_config_passes_with_a_one_line_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = TestCa::new().leaf(dir.path(), "server");
    let file = ConfigFile::new(&config(
        dir.path(),
        &format!(
            "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            key.display()
        ),
    ));
    let out = cli(&["check", "--config", file.path.to_str().unwrap()], &[]).await;
    let stdout = out.ok();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("is valid"), "{stdout}");
    assert!(stdout.contains("(TLS)"), "{stdout}");
    assert!(
        stdout.contains("(new)"),
        "the store is yet to be made: {stdout}"
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert!(
        !dir.path().join("keygate.redb").exists(),
        "check creates no store"
    );
}

#[tokio::test]
async fn every_problem_is_named_not_just_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_dir = dir.path().join("plain-file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let garbage_key = dir.path().join("garbage.key");
    std::fs::write(&garbage_key, "not a key\n").unwrap();
    let file = ConfigFile::new(&format!(
        "[proxy]\nupstream = \"https://app.example\"\nupstream_ca = \"{}\"\n\
         [proxy.tls]\ncert = \"{}\"\nkey = \"{}\"\n[store]\npath = \"{}\"\n",
        dir.path().join("missing-ca.pem").display(),
        dir.path().join("missing.crt").display(),
        garbage_key.display(),
        not_a_dir.join("keygate.redb").display(),
    ));
    let out = cli(&["check", "--config", file.path.to_str().unwrap()], &[]).await;
    let stderr = out.failed();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(stderr.contains("has 4 problems"), "{stderr}");
    for named in [
        "proxy.tls.cert: cannot read",
        "proxy.tls.key:",
        "proxy.upstream_ca: cannot read",
        "store.path:",
        "is not a directory",
    ] {
        assert!(stderr.contains(named), "{named:?} missing from: {stderr}");
    }
}

#[tokio::test]
async fn a_key_that_does_not_match_its_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, _) = ca.leaf(dir.path(), "one");
    let (_, other_key) = ca.leaf(dir.path(), "two");
    let file = ConfigFile::new(&config(
        dir.path(),
        &format!(
            "[proxy.tls]\ncert = \"{}\"\nkey = \"{}\"",
            cert.display(),
            other_key.display()
        ),
    ));
    let out = cli(&["check", "--config", file.path.to_str().unwrap()], &[]).await;
    let stderr = out.failed();
    assert!(
        stderr.contains("do not form a usable pair"),
        "the pair is matched as the server matches it: {stderr}"
    );
}

#[tokio::test]
async fn a_config_error_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = ConfigFile::new(&config(dir.path(), "anonymous = \"sometimes\""));
    let out = cli(&["check", "--config", file.path.to_str().unwrap()], &[]).await;
    let stderr = out.failed();
    assert!(stderr.contains("proxy.anonymous"), "{stderr}");
    let out = cli(&["check", "--config", "/nonexistent/keygate.toml"], &[]).await;
    assert!(out.failed().contains("cannot read config file"), "{out:?}");
}

#[tokio::test]
async fn check_passes_beside_a_running_server_holding_the_ports_and_the_store() {
    // A port someone holds: serve could not bind it, check never tries.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serving = ConfigFile::serving(&dir.path().join("keygate.redb"), None, "");
    let server = Keygate::start(&serving.path).await;

    let text = std::fs::read_to_string(&serving.path)
        .unwrap()
        .replacen(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{}\"", held.local_addr().unwrap()),
            1,
        )
        .replace(
            "listen = \"127.0.0.1:0\"\n[store]",
            &format!("listen = \"{}\"\n[store]", server.admin_addr),
        );
    let file = ConfigFile::new(&text);
    let out = cli(&["check", "--config", file.path.to_str().unwrap()], &[]).await;
    let stdout = out.ok();
    assert!(
        stdout.contains(&held.local_addr().unwrap().to_string()),
        "{stdout}"
    );
    assert!(
        stdout.contains(&server.admin_addr.to_string()),
        "the admin port of the running server: {stdout}"
    );
    assert!(
        !stdout.contains("(new"),
        "the server's store exists and is locked by it: {stdout}"
    );

    // And the server was not disturbed: it still answers and stops cleanly.
    let health = cli(
        &[
            "health",
            "--admin",
            &format!("http://{}", server.admin_addr),
        ],
        &[],
    )
    .await;
    health.ok();
    server.keygate.signal("TERM");
    assert!(server.keygate.exit().await.status.success());
}

#[tokio::test]
async fn database_passwords_never_show() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cret-Zx9";
    // The URL of [haplo] from the environment, the fleet's from the file.
    let fleet_file = ConfigFile::new(&format!(
        "[proxy]\nupstream = \"http://127.0.0.1:9\"\n[store]\npath = \"{}\"\n\
         database = \"postgres://keygate:{secret}@db.example/keygate\"\n\
         [haplo]\napp_id = 4000\n",
        dir.path().join("keygate.redb").display()
    ));
    let out = cli(
        &["check", "--config", fleet_file.path.to_str().unwrap()],
        &[(
            "KEYGATE_HAPLO_DATABASE",
            &format!("postgres://haplo:{secret}@haplo-db.example/haplo"),
        )],
    )
    .await;
    let stdout = out.ok();
    assert!(!stdout.contains(secret), "{stdout}");
    assert!(
        stdout.contains("fleet database postgres://keygate:***@db.example/keygate"),
        "{stdout}"
    );
    assert!(stdout.contains("Haplo app 4000"), "{stdout}");

    let bad = ConfigFile::new(&format!(
        "[store]\npath = \"{}\"\ndatabase = \"postgres://keygate:{secret}@db:notaport/keygate\"\n",
        dir.path().join("keygate.redb").display()
    ));
    let out = cli(&["check", "--config", bad.path.to_str().unwrap()], &[]).await;
    let stderr = out.failed();
    assert!(stderr.contains("store.database"), "{stderr}");
    assert!(!stderr.contains(secret), "{stderr}");
    assert!(!out.stdout.contains(secret));
}

#[test]
fn version_names_the_commit() {
    let out = std::process::Command::new(support::binary::BIN)
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!("keygate {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&expected), "{text}");
    let commit = text.trim_end().trim_end_matches(')').rsplit(' ').next();
    assert!(
        commit.is_some_and(
            |c| c == "unknown" || (c.len() == 12 && c.chars().all(|ch| ch.is_ascii_hexdigit()))
        ),
        "{text}"
    );
}
