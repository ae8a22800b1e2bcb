//! Start-up, reload and the life of a running keygate.
//!
//! [`App::bind`] does everything that can fail at start-up, in an order
//! that reports the most useful error first: open the store (and load the
//! snapshot), load the TLS certificate, then bind both listeners.
//! [`App::run`] serves until the shutdown future resolves, then drains both
//! listeners with the grace period. Tests use the same calls with
//! `127.0.0.1:0` addresses.
//!
//! [`Reloader`] (in `reload.rs`) applies a new config file to a running
//! keygate (SIGHUP): all or nothing, with the settings that need a restart
//! reported and kept.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use socket2::SockRef;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::access_log::AccessLog;
use crate::admin::{self, Admin};
use crate::config::Config;
use crate::fleet::replica::{self, Replica};
use crate::haplo::follow::{self, SyncStatus};
use crate::keys::{KeyId, Keyring, StoreError};
use crate::metrics::Metrics;
use crate::proxy::{self, Proxy};
use crate::shutdown;
use crate::timestamp::{Clock, Timestamp};
use crate::tls::{Tls, TlsError};
use crate::worker::Worker;
use crate::writes::Writes;

pub use self::reload::{ReloadError, ReloadReport, Reloader};

mod reload;

/// Why keygate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The key store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A TLS file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        /// The config key naming the address.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A keygate with its store open and its listeners bound.
#[derive(Debug)]
pub struct App {
    config: Config,
    keyring: Arc<Keyring>,
    proxy: Arc<Proxy>,
    admin: Arc<Admin>,
    tls: Option<Arc<Tls>>,
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
    /// The `[haplo]` follower's state, when following.
    sync: Option<Arc<SyncStatus>>,
    /// This keygate as a fleet replica, with `store.database`.
    replica: Option<Arc<Replica>>,
}

impl App {
    /// Opens the store, loads TLS, and binds both listeners.
    pub async fn bind(config: Config, log: AccessLog) -> Result<Self, StartError> {
        Self::bind_with_clock(config, log, Clock::system()).await
    }

    /// [`App::bind`] with a given clock for key expiry (tests use a manual
    /// one to move time without sleeping).
    pub async fn bind_with_clock(
        config: Config,
        log: AccessLog,
        clock: Clock,
    ) -> Result<Self, StartError> {
        // Blocking I/O on purpose: nothing else runs before start-up ends.
        let keyring = Arc::new(Keyring::open_with_clock(&config.store_path, clock)?);
        let sync = config.haplo.as_ref().map(|_| Arc::new(SyncStatus::new()));
        let metrics = match &sync {
            Some(_) => Metrics::new().with_haplo_sync(),
            None => Metrics::new(),
        };
        let metrics = if config.store_database.is_some() {
            metrics.with_fleet()
        } else {
            metrics
        };
        let metrics = Arc::new(metrics);
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(Tls::load(files)?)),
            None => None,
        };
        let proxy = Arc::new(Proxy::new(
            config.proxy.clone(),
            keyring.clone(),
            log,
            metrics.clone(),
            config.workers(),
        )?);
        let proxy_listener = bind("proxy.listen", config.proxy_listen).await?;
        let admin_listener = bind("admin.listen", config.admin_listen).await?;
        let admin_local = admin_listener.local_addr().unwrap_or(config.admin_listen);
        let replica = config
            .store_database
            .as_ref()
            .map(|database| Arc::new(Replica::new(keyring.clone(), database.clone())));
        let writes = match &replica {
            Some(replica) => Writes::Fleet(replica.clone()),
            None => Writes::Local(keyring.clone()),
        };
        let admin = Arc::new(Admin::new(
            keyring.clone(),
            proxy.clone(),
            metrics,
            admin_local,
            config.admin_token.clone(),
            sync.clone(),
            writes,
        ));
        Ok(App {
            config,
            keyring,
            proxy,
            admin,
            tls,
            proxy_listener,
            admin_listener,
            sync,
            replica,
        })
    }

    /// The bound proxy address (useful with port 0).
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_listener
            .local_addr()
            .unwrap_or(self.config.proxy_listen)
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or(self.config.admin_listen)
    }

    /// The keyring.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// The proxy state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// A handle that applies a new config file to this keygate while it
    /// runs. `source` is the file to re-read.
    pub fn reloader(&self, source: PathBuf) -> Reloader {
        Reloader {
            source,
            running: Mutex::new(self.config.clone()),
            proxy: self.proxy.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Serves both listeners until `shutdown` resolves, then drains them
    /// and writes the last-use times recorded since the latest flush.
    ///
    /// The calling thread is proxy worker 0; the other
    /// `proxy.worker_threads - 1` workers get threads of their own
    /// ([`crate::worker`]), accepting on clones of the proxy socket, and so
    /// does the admin listener.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let grace = self.config.shutdown_grace;
        let slots = Arc::new(Semaphore::new(self.config.max_connections));
        let (trigger, watch) = shutdown::channel();
        let signal = async move {
            shutdown.await;
            trigger.fire();
        };
        let flusher = tokio::spawn(flush_last_used_every(
            self.keyring.clone(),
            self.replica.clone(),
            self.config.last_used_flush,
            watch.clone().wait(),
        ));
        // The followers ([haplo], and the fleet's) run on the admin thread,
        // not here: reading a large table and building a batch is seconds
        // of work on a runtime, and this thread is proxy worker 0 (measured:
        // following a change to 100,000 keys stalled requests on this
        // worker by 44-116 ms).
        let haplo = match (&self.config.haplo, &self.sync) {
            (Some(follow), Some(sync)) => Some((follow.clone(), sync.clone())),
            _ => None,
        };
        let fleet = self.replica.clone();
        let writes_for_followers = match &self.replica {
            Some(replica) => Writes::Fleet(replica.clone()),
            None => Writes::Local(self.keyring.clone()),
        };
        let mut workers = Vec::new();
        for index in 1..self.config.workers() {
            let started = SockRef::from(&self.proxy_listener)
                .try_clone()
                .and_then(|socket| {
                    let listener = std::net::TcpListener::from(socket);
                    let (proxy, tls, slots) = (self.proxy.clone(), self.tls.clone(), slots.clone());
                    let stop = watch.clone();
                    Worker::proxy(index, move || async move {
                        match TcpListener::from_std(listener) {
                            Ok(listener) => {
                                proxy::serve(listener, proxy, tls, slots, stop.wait(), grace).await
                            }
                            Err(error) => {
                                tracing::error!(worker = index, %error, "worker cannot listen")
                            }
                        }
                    })
                });
            match started {
                Ok(worker) => workers.push(worker),
                Err(error) => {
                    tracing::error!(worker = index, %error, "cannot start a worker thread; serving with fewer");
                    break;
                }
            }
        }
        let admin = {
            let (listener, admin, stop) = (self.admin_listener, self.admin, watch.clone());
            listener.into_std().and_then(|listener| {
                Worker::admin(move || async move {
                    let mut background = Vec::new();
                    if let Some((follow, sync)) = haplo {
                        background.push(tokio::spawn(follow::run(
                            writes_for_followers,
                            follow,
                            sync,
                            stop.clone().wait(),
                        )));
                    }
                    if let Some(replica) = fleet {
                        background
                            .push(tokio::spawn(replica::follow(replica, stop.clone().wait())));
                    }
                    match TcpListener::from_std(listener) {
                        Ok(listener) => admin::serve(listener, admin, stop.wait(), grace).await,
                        Err(error) => tracing::error!(%error, "admin cannot listen"),
                    }
                    for task in background {
                        let _ = task.await;
                    }
                })
            })
        };
        match admin {
            Ok(admin) => workers.push(admin),
            Err(error) => tracing::error!(%error, "cannot start the admin thread"),
        }
        let keyring = self.keyring.clone();
        let replica_at_exit = self.replica.clone();
        tokio::join!(
            proxy::serve(
                self.proxy_listener,
                self.proxy,
                self.tls,
                slots,
                watch.wait(),
                grace,
            ),
            signal,
        );
        for worker in workers {
            worker.join().await;
        }
        let _ = flusher.await;

        // Requests have drained: this flush has every use there will be.
        let uses = flush_last_used(&keyring).await;
        if let Some(replica) = &replica_at_exit {
            replica.merge_last_used(&uses).await;
        }
    }
}

/// Writes last-use times every `interval` until `stop` resolves. Each key's
/// time is written at most once per interval, in one batch transaction.
async fn flush_last_used_every(
    keyring: Arc<Keyring>,
    replica: Option<Arc<Replica>>,
    interval: std::time::Duration,
    stop: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is immediate
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {
                let uses = flush_last_used(&keyring).await;
                if let Some(replica) = &replica {
                    replica.merge_last_used(&uses).await;
                }
            }
        }
    }
}

/// Writes the last-use times recorded since the previous flush; returns
/// them (a fleet replica merges them into the shared table).
async fn flush_last_used(keyring: &Arc<Keyring>) -> Vec<(KeyId, Timestamp)> {
    let keyring = keyring.clone();
    match tokio::task::spawn_blocking(move || keyring.flush()).await {
        Ok(Ok(flushed)) => {
            if flushed.written > 0 {
                tracing::debug!(keys = flushed.written, "last-use times written");
            }
            flushed.uses
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, "cannot write last-use times; will retry");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(%error, "last-use flush task failed");
            Vec::new()
        }
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}
