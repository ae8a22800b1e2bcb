//! Config parsing and validation: defaults, the example files, and errors
//! that name the key.

use super::*;

fn err(text: &str) -> String {
    Config::parse(text, Some(Path::new("k.toml")))
        .unwrap_err()
        .to_string()
}

#[test]
fn defaults_match_the_spec() {
    let c = Config::defaults();
    assert_eq!(c.proxy_listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
    assert_eq!(c.proxy.upstream.to_string(), "http://127.0.0.1:8000");
    assert_eq!(c.store_path, PathBuf::from("data/keygate.redb"));
    assert_eq!(c.proxy.throttle.max_failures, 50);
    assert_eq!(c.proxy.throttle.window, Duration::from_secs(300));
    assert_eq!(c.proxy.anonymous, Anonymous::Reject);
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../config/keygate.toml");
    Config::parse(text, None).unwrap();
}

#[test]
fn the_container_config_is_valid() {
    let c = Config::parse(include_str!("../../docker/keygate.toml"), None).unwrap();
    assert!(c.admin_listen.ip().is_loopback());
    assert_eq!(c.proxy_listen.to_string(), "0.0.0.0:8080");
}

#[test]
fn the_fleet_container_config_is_valid() {
    let c = Config::parse(include_str!("../../docker/keygate-fleet.toml"), None).unwrap();
    assert!(c.admin_listen.ip().is_loopback());
    assert!(!c.proxy.trusted_proxies.is_empty());
}

#[test]
fn errors_name_the_key_and_reason() {
    let e = err("[proxy]\nupstream_timout_secs = 3\n");
    assert!(
        e.contains("k.toml") && e.contains("proxy") && e.contains("upstream_timout_secs"),
        "{e}"
    );
    let e = err("[proxy]\nheader_timeout_secs = \"x\"\n");
    assert!(e.contains("proxy.header_timeout_secs"), "{e}");
    let e = err("[proxy]\nanonymous = \"allow\"\n");
    assert!(e.contains("proxy.anonymous") && e.contains("reject"), "{e}");
    let e = err("[proxy]\nrate_limit_headers = \"sometimes\"\n");
    assert!(
        e.contains("proxy.rate_limit_headers") && e.contains("always"),
        "{e}"
    );
    let e = err("[admin]\nlisten = \"0.0.0.0:8081\"\n");
    assert!(
        e.contains("admin.listen") && e.contains("admin.token"),
        "{e}"
    );
    let e = err("[proxy]\nupstream = \"http://h:1/base\"\n");
    assert!(e.contains("proxy.upstream"), "{e}");
    let e = err("[proxy]\nidentity_header = \"Authorization\"\n");
    assert!(e.contains("proxy.identity_header"), "{e}");
    let e = err("[proxy]\nkey_id_header = \"x_haplo_user\"\n");
    assert!(e.contains("proxy.key_id_header"), "{e}");
    let e = err("[proxy]\ntrusted_proxies = [\"10.0.0.0/33\"]\n");
    assert!(e.contains("proxy.trusted_proxies"), "{e}");
    let e = err("[throttle]\nmax_failures = 0\n");
    assert!(e.contains("throttle.max_failures"), "{e}");
    let e = err("[proxy\n");
    assert!(e.contains("line 1"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
}

#[test]
fn a_non_loopback_admin_needs_a_token() {
    let c = Config::parse(
        "[admin]\nlisten = \"0.0.0.0:8081\"\ntoken = \"0123456789abcdef0123\"\n",
        None,
    )
    .unwrap();
    let token = c.admin_token.unwrap();
    assert!(token.verify(b"0123456789abcdef0123"));
    assert!(!token.verify(b"0123456789abcdef0124"));
    assert!(!format!("{token:?}").contains("0123"));
}

#[test]
fn upgrades_default_to_websocket_and_never_admit_http_itself() {
    assert_eq!(Config::defaults().proxy.upgrades, ["websocket"]);
    let c = Config::parse("[proxy]\nupgrades = [\"WebSocket\", \"x-custom\"]\n", None).unwrap();
    assert_eq!(c.proxy.upgrades, ["websocket", "x-custom"]);
    assert!(Config::parse("[proxy]\nupgrades = []\n", None)
        .unwrap()
        .proxy
        .upgrades
        .is_empty());
    for (entry, reason) in [
        ("h2c", "never allowed"),
        ("H2C", "never allowed"),
        ("h2", "never allowed"),
        ("HTTP", "never allowed"),
        ("websocket/13", "without a version"),
        ("", "not a protocol name"),
        ("web socket", "not a protocol name"),
    ] {
        let e = err(&format!("[proxy]\nupgrades = [\"websocket\", {entry:?}]\n"));
        assert!(
            e.contains("k.toml") && e.contains("proxy.upgrades") && e.contains(reason),
            "{entry}: {e}"
        );
    }
}

#[test]
fn the_fleet_database_is_checked_and_never_shown_with_its_password() {
    let c = Config::parse(
        "[store]\ndatabase = \"postgres://k:sekrit@db/keygate\"\n",
        None,
    )
    .unwrap();
    assert!(c.store_database.is_some());
    let shown = format!("{c:?}");
    assert!(!shown.contains("sekrit"), "{shown}");
    let e = err("[store]\ndatabase = \"postgres://k:sekrit@db:port/x\"\n");
    assert!(e.contains("store.database"), "{e}");
    assert!(!e.contains("sekrit"), "{e}");
}
