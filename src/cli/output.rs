//! How the CLI prints: human-readable text by default (tables, one fact
//! per line), and a new key alone on stdout so that
//! `KEY=$(keygate keys create ...)` captures exactly the key while the
//! explanation goes to stderr.

use serde_json::Value;

/// A JSON value as plain text (`-` for null).
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
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
