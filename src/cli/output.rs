//! How the CLI prints: human-readable text by default (tables, one fact
//! per line), and a new key alone on stdout so that
//! `KEY=$(keygate keys create ...)` captures exactly the key while the
//! explanation goes to stderr.
//!
//! Everything printed from the API's answers passes through [`text`] or
//! [`json`], which escape control, bidirectional-control and
//! line-separator characters (`crate::admin::text` says why): the admin
//! API refuses them in new names, but a store written before that rule may
//! still hold some.

use std::fmt::Write as _;

use serde_json::Value;

use crate::admin::text::{escape, is_display_control};

/// A JSON value as plain text (`-` for null), display controls escaped.
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s).into_owned(),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()).into_owned(),
    }
}

/// A JSON value as one line of JSON for `--json`, with display controls
/// that serde_json leaves raw (DEL, C1, bidirectional controls, U+2028 and
/// U+2029) written as `\uXXXX`. Outside strings JSON is plain ASCII, so
/// each such character is inside a string, where the escape means the very
/// same character: the output parses to the same value.
pub(super) fn json(value: &Value) -> String {
    let raw = value.to_string();
    if !raw.chars().any(is_display_control) {
        return raw;
    }
    let mut escaped = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if is_display_control(c) {
            // Every display control is in the Basic Multilingual Plane, so
            // one `\uXXXX` escape spells it. Writing to a String cannot fail.
            let _ = write!(escaped, "\\u{:04x}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Describes a new key on stderr and prints the key itself, alone, on
/// stdout.
pub(super) fn new_key(heading: &str, created: &Value) {
    eprintln!(
        "{heading} {} for user {} (\"{}\"), scope {}{}.",
        text(&created["id"]),
        text(&created["user"]),
        text(&created["name"]),
        text(&created["path"]),
        match created["expires_at"].as_str() {
            Some(at) => format!(", expires {at}"),
            None => String::new(),
        }
    );
    for warning in created["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", text(warning));
    }
    eprintln!("This is the only time the key is shown. Store it now:");
    println!("{}", text(&created["key"]));
}

/// One key, a field a line; policies only when set.
pub(super) fn key_fields(key: &Value) {
    for field in [
        "id",
        "user",
        "name",
        "path",
        "created_at",
        "expires_at",
        "last_used_at",
    ] {
        println!("{field:<13} {}", text(&key[field]));
    }
    if let Some(rate) = key.get("rate") {
        println!(
            "{:<13} {}/s, burst {}",
            "rate",
            text(&rate["per_second"]),
            text(&rate["burst"])
        );
    }
    for field in ["allow_from", "methods"] {
        if let Some(list) = key.get(field).and_then(Value::as_array) {
            let items: Vec<String> = list.iter().map(text).collect();
            println!("{field:<13} {}", items.join(", "));
        }
    }
}

/// Keys as an aligned table.
pub(super) fn key_table(keys: &[Value]) {
    if keys.is_empty() {
        println!("No keys.");
        return;
    }
    let columns = [
        "id",
        "user",
        "name",
        "path",
        "created_at",
        "expires_at",
        "last_used_at",
    ];
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| columns.iter().map(|c| text(&k[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(&columns.iter().map(|c| c.to_uppercase()).collect::<Vec<_>>());
    for row in &rows {
        line(row);
    }
}
