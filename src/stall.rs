//! A timer for I/O that stops making progress.
//!
//! Both body directions ([`crate::proxy::TimedBody`]) and client sockets
//! (a client that stops reading its response) need the same rule: fail
//! once an operation has been pending, with no progress, for longer than a
//! timeout. [`Stall`] is that rule, shared. The timer is created only the
//! first time a peer makes us wait, so I/O that is always ready (most
//! small requests) never touches the timer wheel; it is boxed so that the
//! types holding it stay `Unpin`, as hyper's client and tokio-rustls need.

use std::future::Future;
use std::pin::Pin;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Times how long an operation has been pending without progress.
#[derive(Debug)]
pub(crate) struct Stall {
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    /// Whether the timer is counting the current wait.
    waiting: bool,
}

impl Stall {
    pub(crate) fn new(timeout: Duration) -> Self {
        Stall {
            timeout,
            sleep: None,
            waiting: false,
        }
    }

    /// The operation made progress: the next wait starts a new count.
    #[inline]
    pub(crate) fn progressed(&mut self) {
        self.waiting = false;
    }

    /// The operation is pending. Returns `true` once it has been pending
    /// for the whole timeout; otherwise registers `cx` to be woken then.
    pub(crate) fn pending(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.timeout;
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if !self.waiting {
                    sleep.as_mut().reset(deadline);
                }
                sleep
            }
            None => self
                .sleep
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        sleep.as_mut().poll(cx).is_ready()
    }

    /// The configured timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}
