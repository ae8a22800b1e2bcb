//! Shutdown as a value: a trigger held by whoever decides, and cheap
//! watchers passed down to every server.
//!
//! Servers take `impl Future<Output = ()>` (mini-redis style), so tests
//! shut a server down with a oneshot while `main` uses [`signal`]. The
//! [`Trigger`]/[`Watch`] pair lets one signal reach both listeners.

use tokio::sync::watch;

/// Fires the shutdown for every [`Watch`] made from it.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Resolves once the shutdown has been triggered (or the trigger dropped).
#[derive(Debug, Clone)]
pub struct Watch(watch::Receiver<bool>);

/// A new trigger and its first watcher.
pub fn channel() -> (Trigger, Watch) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Watch(rx))
}

impl Trigger {
    /// Starts the shutdown.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Watch {
    /// Waits for the shutdown. A dropped trigger counts as fired, so a
    /// server never outlives the code that owns it.
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): both drain gracefully.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, draining"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, draining"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT will stop keygate");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
