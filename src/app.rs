//! Start-up and the life of a running keygate.
//!
//! [`App::bind`] does everything that can fail at start-up, in an order
//! that reports the most useful error first: open the store (and load the
//! snapshot), then bind both listeners. [`App::run`] serves until the
//! shutdown future resolves, then drains both listeners with the grace
//! period. Tests use the same two calls with `127.0.0.1:0` addresses.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::access_log::AccessLog;
use crate::admin::{self, Admin};
use crate::config::Config;
use crate::keys::{Keyring, StoreError};
use crate::proxy::{self, Proxy};
use crate::shutdown;

/// Why keygate could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The key store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    proxy_listener: TcpListener,
    admin_listener: TcpListener,
}

impl App {
    /// Opens the store and binds both listeners.
    pub async fn bind(config: Config, log: AccessLog) -> Result<Self, StartError> {
        // Blocking I/O on purpose: nothing else runs before start-up ends.
        let keyring = Arc::new(Keyring::open(&config.store_path)?);
        let proxy_listener = bind("proxy.listen", config.proxy_listen).await?;
        let admin_listener = bind("admin.listen", config.admin_listen).await?;
        let admin_local = admin_listener.local_addr().unwrap_or(config.admin_listen);
        let proxy = Arc::new(Proxy::new(config.proxy.clone(), keyring.clone(), log));
        let admin = Arc::new(Admin::new(
            keyring.clone(),
            admin_local,
            config.admin_token.clone(),
        ));
        Ok(App {
            config,
            keyring,
            proxy,
            admin,
            proxy_listener,
            admin_listener,
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

    /// Serves both listeners until `shutdown` resolves, then drains them.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let grace = self.config.shutdown_grace;
        let (trigger, watch) = shutdown::channel();
        let signal = async move {
            shutdown.await;
            trigger.fire();
        };
        tokio::join!(
            proxy::serve(self.proxy_listener, self.proxy, watch.clone().wait(), grace),
            admin::serve(self.admin_listener, self.admin, watch.wait(), grace),
            signal,
        );
    }
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { key, addr, source })
}
