//! Database connection strings with the password taken out, so that errors
//! and log lines can say *which* database without saying how to log in.
//!
//! Both forms tokio-postgres accepts are handled: URLs
//! (`postgres://user:password@host:port/db?password=...`) and `key=value`
//! lists (`host=... password='...'`). Where the two parsers that matter
//! (tokio-postgres and libpq) would split a URL differently, the redaction
//! hides the union of what either would call the password: over-hiding
//! costs a less helpful message, under-hiding leaks a credential.

use std::borrow::Cow;

/// What replaces a password.
const HIDDEN: &str = "***";

/// `url` with any password replaced by `***`; everything else (user, host,
/// port, database, other parameters) is kept so the message stays useful.
pub fn redacted(url: &str) -> String {
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return redact_url(scheme, rest);
        }
    }
    redact_key_values(url)
}

/// The driver's error with its causes, or the server's own message and
/// SQLSTATE (tokio-postgres's `Display` alone says only "db error"). Shared
/// by every module that talks to PostgreSQL (the Haplo reader, the fleet).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// `text` with every occurrence of `password` replaced by `***`: a second
/// line of defence for messages that come from the driver or the server,
/// which are not expected to echo a password but are not ours to promise.
pub(crate) fn scrub(text: String, password: Option<&[u8]>) -> String {
    match password.and_then(|p| std::str::from_utf8(p).ok()) {
        Some(p) if !p.is_empty() && text.contains(p) => text.replace(p, HIDDEN),
        _ => text,
    }
}

fn redact_url(scheme: &str, rest: &str) -> String {
    let mut out = String::with_capacity(scheme.len() + rest.len());
    out.push_str(scheme);
    let mut after = rest;
    // tokio-postgres ends the credentials at the first '@' anywhere (so a
    // '/' or '?' may sit inside a password); libpq at the last '@' before
    // the path. Take the later of the two.
    if let Some(first_at) = rest.find('@') {
        let tail = &rest[first_at + 1..];
        let host_end = tail.find(['/', '?']).unwrap_or(tail.len());
        let creds_end = match tail[..host_end].rfind('@') {
            Some(at) => first_at + 1 + at,
            None => first_at,
        };
        let creds = &rest[..creds_end];
        match creds.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(HIDDEN);
            }
            None => out.push_str(creds),
        }
        out.push('@');
        after = &rest[creds_end + 1..];
    }
    match after.split_once('?') {
        Some((before, query)) => {
            out.push_str(before);
            out.push('?');
            let pairs: Vec<Cow<'_, str>> = query.split('&').map(redact_param).collect();
            out.push_str(&pairs.join("&"));
        }
        None => out.push_str(after),
    }
    out
}

/// One `key=value` of a URL's query: a `password` parameter is as secret
/// as the one in the user-info part.
fn redact_param(pair: &str) -> Cow<'_, str> {
    let Some((key, _value)) = pair.split_once('=') else {
        return Cow::Borrowed(pair);
    };
    let decoded = percent_encoding::percent_decode_str(key).decode_utf8_lossy();
    if decoded.eq_ignore_ascii_case("password") {
        Cow::Owned(format!("{key}={HIDDEN}"))
    } else {
        Cow::Borrowed(pair)
    }
}

/// `key = value` pairs separated by whitespace, a value either `'quoted'`
/// or running to the next whitespace, `\` escaping the next character in
/// both: the grammar of tokio-postgres and libpq. The text between the
/// pairs is copied unchanged; only a `password` value is replaced.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            return out;
        }
        let key_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = &rest[key_end..];
        let Some(after_eq) = after_key.trim_start().strip_prefix('=') else {
            return hide_from_password(text);
        };
        let value = after_eq.trim_start();
        let Some(value_len) = value_len(value) else {
            return hide_from_password(text);
        };
        out.push_str(key);
        out.push_str(&after_key[..after_key.len() - value.len()]);
        if key.eq_ignore_ascii_case("password") {
            out.push_str(HIDDEN);
        } else {
            out.push_str(&value[..value_len]);
        }
        rest = &value[value_len..];
    }
}

/// The length in bytes of the value at the start of `text`, or `None` for
/// an unterminated quote.
fn value_len(text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    if text.starts_with('\'') {
        chars.next();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next()?;
                }
                '\'' => return Some(at + 1),
                _ => {}
            }
        }
        None
    } else {
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                c if c.is_whitespace() => return Some(at),
                _ => {}
            }
        }
        Some(text.len())
    }
}

/// For text that does not parse as a connection string: keep what comes
/// before the word "password" and hide everything from it on.
fn hide_from_password(text: &str) -> String {
    // ASCII lower-casing keeps byte offsets, so `at` indexes `text` too.
    match text.to_ascii_lowercase().find("password") {
        Some(at) => format!("{}password={HIDDEN} (rest hidden)", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_hidden_and_the_rest_kept() {
        assert_eq!(
            redacted("postgres://haplo:s3cret@db.example:5433/haplo?connect_timeout=5"),
            "postgres://haplo:***@db.example:5433/haplo?connect_timeout=5"
        );
        assert_eq!(
            redacted("postgresql://u:pw@[::1]/db"),
            "postgresql://u:***@[::1]/db"
        );
    }

    #[test]
    fn url_without_password_is_unchanged() {
        for url in [
            "postgres://haplo@localhost/haplo",
            "postgres://localhost:5432/haplo",
            "postgres:///haplo?host=/run/postgresql",
            "postgres://",
        ] {
            assert_eq!(redacted(url), url);
        }
    }

    #[test]
    fn url_password_with_reserved_characters_is_hidden_whole() {
        // '@' unencoded: libpq takes the last '@', tokio-postgres the first.
        assert_eq!(
            redacted("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db"
        );
        // '/' and '?' unencoded: tokio-postgres still takes them as password.
        assert_eq!(
            redacted("postgres://u:a/b?c@host/db"),
            "postgres://u:***@host/db"
        );
        // Encoded, as it should be.
        assert_eq!(
            redacted("postgres://u:p%40ss%2F@host/db"),
            "postgres://u:***@host/db"
        );
        // An '@' with no ':' before it: libpq would read "user@pa" and "ss".
        assert_eq!(
            redacted("postgres://user@pa:ss@host/db"),
            "postgres://user@pa:***@host/db"
        );
    }

    #[test]
    fn url_password_parameter_is_hidden() {
        assert_eq!(
            redacted("postgres://u@host/db?sslmode=disable&password=s3cret&application_name=x"),
            "postgres://u@host/db?sslmode=disable&password=***&application_name=x"
        );
        assert_eq!(
            redacted("postgres://host/db?pass%77ord=s3cret"),
            "postgres://host/db?pass%77ord=***"
        );
        assert_eq!(
            redacted("postgres://u:one@host/db?PASSWORD=two"),
            "postgres://u:***@host/db?PASSWORD=***"
        );
    }

    #[test]
    fn key_value_password_is_hidden() {
        assert_eq!(
            redacted("host=localhost user=haplo password=s3cret dbname=haplo"),
            "host=localhost user=haplo password=*** dbname=haplo"
        );
        assert_eq!(
            redacted("host=h password = 'with spaces and \\' quote' port=5432"),
            "host=h password = *** port=5432"
        );
        assert_eq!(redacted("password=a\\ b host=h"), "password=*** host=h");
        assert_eq!(redacted("host=h dbname=d"), "host=h dbname=d");
    }

    #[test]
    fn unparseable_text_hides_everything_from_password_on() {
        assert_eq!(
            redacted("host=h password='unterminated s3cret"),
            "host=h password=*** (rest hidden)"
        );
        assert_eq!(
            redacted("garbage Password s3cret"),
            "garbage password=*** (rest hidden)"
        );
        assert_eq!(redacted("garbage"), "garbage");
    }

    #[test]
    fn redaction_never_contains_the_password() {
        let password = "Zx9-secret-Zx9";
        for url in [
            format!("postgres://u:{password}@h/d"),
            format!("postgresql://u:{password}@h:1/d?x=1"),
            format!("postgres://h/d?password={password}"),
            format!("host=h password={password}"),
            format!("host=h password='{password}'"),
            format!("host=h password = {password}"),
            format!("host=h password='{password}"),
        ] {
            let shown = redacted(&url);
            assert!(!shown.contains(password), "{url} -> {shown}");
            assert!(shown.contains("***"), "{url} -> {shown}");
        }
    }

    #[test]
    fn scrub_removes_the_password_from_messages() {
        let pw = Some(&b"hunter22"[..]);
        assert_eq!(
            scrub("bad login hunter22 for hunter22".into(), pw),
            "bad login *** for ***"
        );
        assert_eq!(scrub("nothing here".into(), pw), "nothing here");
        assert_eq!(scrub("no password set".into(), None), "no password set");
        assert_eq!(scrub("empty".into(), Some(b"")), "empty");
    }
}
