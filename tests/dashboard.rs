//! The Grafana dashboard (`docker/grafana/keygate.json`) and the Prometheus
//! rules (`docker/prometheus/keygate-rules.yml`) against a live `/metrics`
//! (issue 15): every `keygate_*` name either file uses must be a sample
//! name that real servers export, so a renamed or removed metric fails here
//! instead of leaving a blank panel or an alert that can never fire.
//!
//! Three servers, because some metrics exist only when configured: a plain
//! one, one following a Haplo application (`keygate_haplo_sync_*`) and a
//! fleet replica (`keygate_fleet_*`), the last two against a throwaway
//! PostgreSQL. The plain one serves a few requests first, so that the
//! histograms have observed something.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::haplo::HaploApp;
use support::postgres::{TestPostgres, READER};
use support::{Req, TestProxy};

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Every `keygate_...` metric name in `text` (a PromQL expression, or a
/// whole file: the names cannot be mistaken for anything else).
fn names_used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("keygate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // Not the middle of a longer word (e.g. "my_keygate_x").
        let starts_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        // ("keygate_*" in a comment is not a name.)
        if starts_word && end > "keygate_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// The sample names in a Prometheus/OpenMetrics text exposition (not the
/// `# TYPE` family names: `keygate_requests` is a family, its samples are
/// `keygate_requests_total`, and only samples can be queried).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

async fn metrics(proxy: &TestProxy) -> String {
    let resp = proxy.admin_send(proxy.admin("GET", "/metrics")).await;
    assert_eq!(resp.status, 200);
    resp.text()
}

/// The dashboard's queries: every panel but a row has at least one, and
/// each names a keygate metric.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut exprs = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {} has no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            assert!(
                !names_used(expr).is_empty(),
                "panel {}: {expr} uses no keygate metric",
                panel["title"]
            );
            exprs.push(expr.to_owned());
        }
    }
    exprs
}

#[tokio::test]
async fn every_metric_in_the_dashboard_and_the_rules_is_exported_by_a_live_server() {
    let dashboard_text = repo_file("docker/grafana/keygate.json");
    let dashboard: Value = serde_json::from_str(&dashboard_text).expect("dashboard is JSON");
    let exprs = dashboard_queries(&dashboard);
    let rules = repo_file("docker/prometheus/keygate-rules.yml");
    assert!(
        rules.lines().any(|l| l.trim_start().starts_with("expr:")),
        "the rules file has rules"
    );

    // A plain server that has answered: forwarded, refused, upstream error.
    let upstream = support::RecordingUpstream::start().await;
    let plain = TestProxy::builder().upstream(upstream.addr).start().await;
    let key = plain.create_key("alice", "/api/").await;
    assert_eq!(
        plain.send(Req::get("/api/x").basic(&key.key)).await.status,
        200
    );
    assert_eq!(plain.send(Req::get("/api/x")).await.status, 403);
    let broken = TestProxy::builder().start().await; // upstream: nothing listens
    let key_b = broken.create_key("bob", "/api/").await;
    assert_eq!(
        broken
            .send(Req::get("/api/x").basic(&key_b.key))
            .await
            .status,
        502
    );

    // One following Haplo, one fleet replica.
    let pg = TestPostgres::shared();
    let owner = pg.fresh_database();
    let app = HaploApp::create(&owner, 4000, "app.example").await;
    app.grant_reader(READER).await;
    let follower = TestProxy::builder()
        .section(&format!(
            "[haplo]\ndatabase = \"{}\"\napp_id = 4000\npoll_secs = 1\n",
            pg.reader_url(&owner)
        ))
        .start()
        .await;
    let replica = TestProxy::builder()
        .store_database(&pg.fresh_database())
        .start()
        .await;

    let mut live = BTreeSet::new();
    for proxy in [&plain, &broken, &follower, &replica] {
        live.extend(exported(&metrics(proxy).await));
    }
    let mut used = names_used(&exprs.join("\n"));
    assert_eq!(
        used,
        names_used(&dashboard_text),
        "every keygate_ name in the dashboard is in a query"
    );
    used.extend(names_used(&rules));
    let missing: Vec<_> = used.difference(&live).collect();
    assert!(
        missing.is_empty(),
        "used by the dashboard or the rules but not exported: {missing:?}\nexported: {live:?}"
    );
    // The families the issue asks the dashboard to show are all on it.
    for family in [
        "keygate_requests_total",
        "keygate_request_duration_seconds_bucket",
        "keygate_upstream_errors_total",
        "keygate_open_connections",
        "keygate_throttled_addresses",
        "keygate_keys",
        "keygate_config_reloads_total",
        "keygate_haplo_sync_age_seconds",
        "keygate_fleet_synced_seq",
    ] {
        assert!(
            names_used(&dashboard_text).contains(family),
            "{family} not on the dashboard"
        );
    }

    for proxy in [plain, broken, follower, replica] {
        proxy.stop().await;
    }
}

#[test]
fn the_scanner_finds_whole_names_only() {
    let found = names_used(
        "rate(keygate_requests_total{x=\"y\"}[5m]) / my_keygate_thing + keygate_keys, keygate_*",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["keygate_keys", "keygate_requests_total"]
    );
    let samples = exported(
        "# TYPE keygate_requests counter\nkeygate_requests_total{outcome=\"a\"} 1\nkeygate_keys 0\n# EOF\n",
    );
    assert_eq!(
        samples.into_iter().collect::<Vec<_>>(),
        ["keygate_keys", "keygate_requests_total"]
    );
}
