//! `keygate check`: would `keygate serve` accept this configuration? The
//! `nginx -t` of keygate, run by the systemd unit before every start and
//! reload, so that a bad edit is refused before it reaches a running
//! server.
//!
//! It loads the config exactly as `serve` does ([`Config::load`], which
//! stops at the first bad key, since nothing after a parse error can be
//! trusted). From a config that loads it then checks everything `serve`
//! would meet later, and reports every problem, not just the first: the TLS
//! certificate and key (loaded and matched as the server loads them), the
//! upstream CA file, and the store's path. It never binds a port and never
//! opens the store with redb: a running server holds redb's writer lock, and
//! a check must work beside it (that is when a reload runs it). Database
//! URLs, which may carry passwords, are parsed by [`Config::load`] and only
//! ever shown redacted.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rustix::fs::{Access, AtFlags, CWD};

use super::Global;
use crate::admin::text::escape;
use crate::config::Config;
use crate::tls::{self, TlsFiles};

/// The first bytes of every redb file (redb's `MAGICNUMBER`): a store file
/// that does not start with them is not a redb database.
const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Runs `keygate check`: the summary on stdout and exit 0, or every
/// problem on stderr (one per line) and exit 1.
pub fn run(global: &Global) -> ExitCode {
    match check(global.config.as_deref()) {
        Ok(summary) => {
            println!("keygate check: {}", escape(&summary));
            ExitCode::SUCCESS
        }
        Err(problems) => {
            let origin = global.config.as_deref().map_or_else(
                || "built-in config".to_owned(),
                |p| format!("config file {}", p.display()),
            );
            let count = problems.len();
            eprintln!(
                "keygate check: {} has {count} problem{}:",
                escape(&origin),
                if count == 1 { "" } else { "s" }
            );
            for problem in problems {
                eprintln!("keygate check: {}", escape(&problem));
            }
            ExitCode::FAILURE
        }
    }
}

/// Checks the config at `path` (the built-in defaults for `None`): a
/// one-line summary of what `serve` would run, or every problem found,
/// each naming the config key and file at fault.
pub fn check(path: Option<&Path>) -> Result<String, Vec<String>> {
    let config = Config::load(path).map_err(|error| vec![error.to_string()])?;
    let mut problems = Vec::new();
    if let Some(files) = &config.tls {
        check_tls(files, &mut problems);
    }
    if let Some(ca) = &config.proxy.upstream_ca {
        if let Err(error) = tls::upstream_client_config(Some(ca)) {
            problems.push(error.to_string());
        }
    }
    let store = match check_store(&config.store_path) {
        Ok(state) => state,
        Err(problem) => {
            problems.push(format!("store.path: {problem}"));
            String::new()
        }
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(summary(&config, &store))
}

/// The server's own TLS loading, so "check passes" means "serve loads
/// them". When the certificate is at fault the key is read on its own as
/// well, so that both problems show at once.
fn check_tls(files: &TlsFiles, problems: &mut Vec<String>) {
    let Err(error) = tls::server_config(files) else {
        return;
    };
    let cert_at_fault = matches!(
        &error,
        tls::TlsError::Read { key, .. } | tls::TlsError::Content { key, .. }
            if *key == "proxy.tls.cert"
    );
    problems.push(error.to_string());
    if cert_at_fault {
        if let Err(problem) = readable_private_key(&files.key) {
            problems.push(problem);
        }
    }
}

/// Whether `path` holds a PEM private key the server could use.
fn readable_private_key(path: &Path) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::PrivateKeyDer;
    let pem = std::fs::read(path)
        .map_err(|e| format!("proxy.tls.key: cannot read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map(drop).map_err(|e| {
        format!(
            "proxy.tls.key: {} holds no usable private key (PKCS#8, RSA or EC PEM): {e}",
            path.display()
        )
    })
}

/// Whether `serve` could open or create the store at `path`, decided
/// without redb: an existing file must be a readable and writable redb
/// file; a missing one needs its folder (or, since `serve` creates
/// missing folders, the nearest folder that exists) to be writable. Says
/// which case it is, for the summary.
fn check_store(path: &Path) -> Result<String, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(format!("{shown} is a directory, not a store file"))
        }
        Ok(_) => {
            access(path, Access::READ_OK | Access::WRITE_OK)
                .map_err(|e| format!("{shown} is not readable and writable by this user: {e}"))?;
            let mut magic = [0u8; REDB_MAGIC.len()];
            let read = File::open(path)
                .and_then(|mut f| read_up_to(&mut f, &mut magic))
                .map_err(|e| format!("cannot read {shown}: {e}"))?;
            // An empty file is one redb has not initialised yet: serve
            // initialises it.
            // (A short read leaves zeros where the magic has none.)
            if read > 0 && magic != REDB_MAGIC {
                return Err(format!("{shown} is not a keygate store (not a redb file)"));
            }
            return Ok(format!("{shown}"));
        }
        // Missing, or a path through a file: see which folder is at fault.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
        Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
    }
    // The file does not exist yet: find the folder serve would create it
    // (and any missing parents) in.
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut existing = parent.as_path();
    loop {
        match std::fs::metadata(existing) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory, so {shown} cannot be created",
                    existing.display()
                ))
            }
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                match existing.parent() {
                    Some(up) if !up.as_os_str().is_empty() => existing = up,
                    _ => {
                        existing = Path::new(".");
                        break;
                    }
                }
            }
            Err(e) => return Err(format!("cannot inspect {}: {e}", existing.display())),
        }
    }
    access(existing, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
        format!(
            "{} is not writable by this user, so {shown} cannot be created: {e}",
            existing.display()
        )
    })?;
    Ok(if existing == parent {
        format!("{shown} (new)")
    } else {
        format!("{shown} (new, with its folder {})", parent.display())
    })
}

/// `access(2)` with the effective user and groups (`AT_EACCESS`), as the
/// server's own `open` would be judged; also refuses writes on a
/// read-only mount.
fn access(path: &Path, mode: Access) -> std::io::Result<()> {
    rustix::fs::accessat(CWD, path, mode, AtFlags::EACCESS).map_err(std::io::Error::from)
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// One line: what `serve` would run. Database URLs are shown through
/// their redacting `Display`; the admin token not at all.
fn summary(config: &Config, store: &str) -> String {
    let origin = config.source.as_deref().map_or_else(
        || "built-in config".to_owned(),
        |p| format!("config file {}", p.display()),
    );
    let mut line = format!(
        "{origin} is valid: proxy {}{} -> {}, admin {}{}, store {store}",
        config.proxy_listen,
        if config.tls.is_some() { " (TLS)" } else { "" },
        config.proxy.upstream,
        config.admin_listen,
        if config.admin_token.is_some() {
            " (token)"
        } else {
            ""
        },
    );
    if let Some(database) = &config.store_database {
        line.push_str(&format!(", fleet database {database}"));
    }
    if let Some(haplo) = &config.haplo {
        line.push_str(&format!(
            ", following Haplo app {} at {}",
            haplo.app_id, haplo.database
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_store_needs_a_writable_folder_and_may_create_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state = check_store(&dir.path().join("keygate.redb")).unwrap();
        assert!(state.ends_with("(new)"), "{state}");
        let state = check_store(&dir.path().join("a/b/keygate.redb")).unwrap();
        assert!(state.contains("with its folder"), "{state}");
    }

    #[test]
    fn a_store_under_a_file_or_that_is_a_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let problem = check_store(&file.join("keygate.redb")).unwrap_err();
        assert!(problem.contains("is not a directory"), "{problem}");
        let problem = check_store(dir.path()).unwrap_err();
        assert!(problem.contains("is a directory"), "{problem}");
    }

    #[test]
    fn only_redb_files_pass_as_stores() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keygate.redb");
        std::fs::write(&path, b"SQLite format 3\0").unwrap();
        let problem = check_store(&path).unwrap_err();
        assert!(problem.contains("not a redb file"), "{problem}");
        std::fs::write(&path, b"redb").unwrap();
        assert!(check_store(&path).is_err(), "a truncated header");
        std::fs::write(&path, b"").unwrap();
        assert!(
            check_store(&path).is_ok(),
            "an empty file is initialised by serve"
        );
        let mut header = REDB_MAGIC.to_vec();
        header.extend_from_slice(&[0; 64]);
        std::fs::write(&path, header).unwrap();
        assert!(check_store(&path).is_ok());
    }
}
