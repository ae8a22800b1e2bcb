//! Shutdown as a value: a trigger held by whoever decides, and cheap
//! watchers passed down to every server.
//!
//! Servers take `impl Future<Output = ()>` (mini-redis style), so tests
//! shut a server down with a oneshot while `main` uses [`signal`]. The
//! [`Trigger`]/[`Watch`] pair lets one signal reach both listeners.

use std::future::Future;

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

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called,
/// and returns a future that resolves on the first of them: both drain
/// gracefully.
///
/// A plain function rather than an `async fn` on purpose: the handlers must
/// be installed before keygate announces that it is serving, or a signal
/// sent right after the announcement would still kill the process with the
/// default action instead of draining it.
pub fn signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        if let Err(error) = &term {
            tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT will stop keygate");
        }
        term.ok()
    };
    // `ctrl_c()` registers its handler on first poll; pin it and poll once
    // now (it cannot be ready yet) so SIGINT is covered from here on.
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    let waker = std::task::Waker::noop();
    let _ = interrupt
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker));
    async move {
        #[cfg(unix)]
        if let Some(mut term) = terminate {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received, draining"),
                _ = interrupt => tracing::info!("SIGINT received, draining"),
            }
            return;
        }
        let _ = interrupt.await;
        tracing::info!("SIGINT received, draining");
    }
}
