//! Worker threads: the proxy listener served by N single-threaded runtimes.
//!
//! Measured on this project's 2-core machine (`wrk -t1 -c64`): tokio's
//! multi-thread scheduler with two workers served fewer requests than one
//! current-thread runtime, at about 28 µs of CPU per request against 17.
//! Work stealing moves a connection's tasks between threads, and every
//! wake-up across threads costs a syscall. So keygate runs one
//! current-thread runtime per worker instead, each on its own OS thread and
//! each accepting from a clone of the same listening socket: the kernel
//! hands every new connection to exactly one of them, and the connection
//! lives its whole life on that worker, together with its requests' tasks
//! and that worker's share of the upstream pool ([`index`] picks it).
//!
//! The thread that calls [`App::run`](crate::app::App::run) is worker 0 and
//! also handles signals and the last-use flusher; the other workers are
//! spawned here and run nothing but the proxy. The admin listener gets a
//! thread of its own too, so that an admin request's JSON and bookkeeping
//! never run inside a proxy worker's event loop, ahead of the requests
//! queued there.

use std::cell::Cell;
use std::future::Future;

use tokio::sync::oneshot;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker this thread is (0 outside worker threads), for per-worker
/// state such as the upstream pool's idle connections.
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// A spawned thread with its own runtime.
#[derive(Debug)]
pub(crate) struct Worker {
    name: String,
    done: oneshot::Receiver<()>,
}

impl Worker {
    /// Starts proxy worker `index` (see [`Worker::spawn`]).
    pub(crate) fn proxy<F, Fut>(index: usize, make: F) -> std::io::Result<Worker>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        Worker::spawn(format!("keygate-worker-{index}"), index, make)
    }

    /// Starts the admin listener's thread (see [`Worker::spawn`]).
    pub(crate) fn admin<F, Fut>(make: F) -> std::io::Result<Worker>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        Worker::spawn("keygate-admin".to_owned(), 0, make)
    }

    /// Starts a thread named `name` with its own current-thread runtime,
    /// running the future `make` returns until it completes. `make` runs on
    /// the new thread, inside its runtime, so it may register sockets with
    /// it.
    fn spawn<F, Fut>(name: String, index: usize, make: F) -> std::io::Result<Worker>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (finished, done) = oneshot::channel();
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                INDEX.with(|i| i.set(index));
                runtime.block_on(async move { make().await });
                let _ = finished.send(());
            })?;
        Ok(Worker { name, done })
    }

    /// Waits until the thread's future has completed (or the thread died).
    pub(crate) async fn join(self) {
        if self.done.await.is_err() {
            tracing::error!(thread = %self.name, "thread ended abnormally");
        }
    }
}
