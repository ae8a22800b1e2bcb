//! Applying a changed config file to a running keygate (SIGHUP, or
//! `systemctl reload`).
//!
//! The new file is loaded and validated completely, TLS files included,
//! before anything is swapped, so a file that fails any step changes
//! nothing. Settings a running process cannot change are one table,
//! [`RESTART_ONLY`]: a reload that changes one reports it as needing a
//! restart and keeps the running value, so the report and what is kept
//! cannot drift apart.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::config::{Config, ConfigError};
use crate::proxy::Proxy;
use crate::tls::{Tls, TlsError};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file did not load or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A TLS file (certificate, key or upstream CA) could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What a successful reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Config keys whose new values need a restart to take effect.
    pub needs_restart: Vec<&'static str>,
}

/// Applies the config file to a running keygate.
#[derive(Debug)]
pub struct Reloader {
    pub(super) source: PathBuf,
    /// The config in force, to tell what changed.
    pub(super) running: Mutex<Config>,
    pub(super) proxy: Arc<Proxy>,
    pub(super) tls: Option<Arc<Tls>>,
}

/// A setting read once at start-up: a reload that changes it reports it
/// as needing a restart and keeps the running value.
struct RestartOnly {
    /// The config key, as the report names it.
    key: &'static str,
    /// Whether the new config's value differs from the running one.
    differs: fn(&Config, &Config) -> bool,
    /// Puts the running value back into the new config.
    keep: fn(&mut Config, &Config),
}

/// One entry per restart-only setting, so that what is reported and what
/// is kept cannot drift apart (they did: `store.last_used_flush_secs` was
/// kept but never reported). `proxy.tls` is apart: turning TLS on or off
/// needs a restart, while new files under it are reloaded.
macro_rules! restart_only {
    ($($key:literal => $($field:ident).+;)*) => {
        &[$(RestartOnly {
            key: $key,
            differs: |new, running| new.$($field).+ != running.$($field).+,
            keep: |new, running| new.$($field).+ = running.$($field).+.clone(),
        }),*]
    };
}

const RESTART_ONLY: &[RestartOnly] = restart_only! {
    "proxy.listen" => proxy_listen;
    "admin.listen" => admin_listen;
    "admin.token" => admin_token;
    "store.path" => store_path;
    "store.database" => store_database;
    "store.last_used_flush_secs" => last_used_flush;
    "proxy.max_connections" => max_connections;
    "proxy.worker_threads" => worker_threads;
    "proxy.shutdown_grace_secs" => shutdown_grace;
    "log.access" => proxy.access_log;
    "haplo" => haplo;
};

impl Reloader {
    /// Re-reads the file and applies what can change while running.
    /// Everything is validated before anything is swapped, so an error
    /// leaves the running settings untouched.
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = self.try_reload();
        self.proxy.metrics().reload(result.is_ok());
        result
    }

    fn try_reload(&self) -> Result<ReloadReport, ReloadError> {
        let new = Config::load(Some(&self.source))?;
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = ReloadReport::default();
        for setting in RESTART_ONLY {
            if (setting.differs)(&new, &running) {
                report.needs_restart.push(setting.key);
            }
        }
        if new.tls.is_some() != self.tls.is_some() {
            report.needs_restart.push("proxy.tls");
        }

        // Validate everything that touches files before swapping anything.
        let server_tls = match (&self.tls, &new.tls) {
            (Some(_), Some(files)) => {
                Some(crate::tls::server_config(files).map(|_| files.clone())?)
            }
            _ => None,
        };
        crate::tls::upstream_client_config(new.proxy.upstream_ca.as_deref())?;

        let mut settings = new.proxy.clone();
        // The access-log writer is fixed at start-up.
        settings.access_log = running.proxy.access_log;
        self.proxy.reload(settings)?;
        if let (Some(tls), Some(files)) = (&self.tls, &server_tls) {
            tls.reload(files)?;
        }
        // Remember what now runs; restart-only keys keep their old values
        // so that a later reload reports them again until restarted.
        let mut applied = new;
        for setting in RESTART_ONLY {
            (setting.keep)(&mut applied, &running);
        }
        if self.tls.is_none() {
            applied.tls = None;
        }
        *running = applied;
        Ok(report)
    }
}

impl Reloader {
    /// Reloads and logs the outcome (one line, naming what went wrong or
    /// what needs a restart).
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(report) if report.needs_restart.is_empty() => {
                tracing::info!(file = %self.source.display(), "config reloaded");
            }
            Ok(report) => tracing::warn!(
                file = %self.source.display(),
                needs_restart = ?report.needs_restart,
                "config reloaded; these settings only change on restart and keep their running values"
            ),
            Err(error) => tracing::error!(
                %error,
                "config reload refused; the running settings are unchanged"
            ),
        }
    }

    /// Installs a SIGHUP handler now and returns a future that reloads on
    /// every SIGHUP, for as long as it is polled.
    #[cfg(unix)]
    pub fn on_sighup(self) -> std::io::Result<impl Future<Output = ()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP received, reloading");
                self.reload_and_log();
            }
        })
    }
}
