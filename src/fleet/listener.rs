//! Waiting for changes: a connection of its own that `LISTEN`s on
//! [`CHANNEL`] and reports the numbers writers notify.
//!
//! A notification is a hint, not the change: it says "the log reaches
//! `n`", and the follower reads what it lacks with
//! [`super::SharedTable::since`]. So notifications may be coalesced
//! freely. A [`tokio::sync::watch`] keeps only the highest number seen,
//! which bounds memory however far the follower falls behind, and a burst
//! of a hundred commits wakes it once.
//!
//! Notifications are lost while the connection is down, so a follower
//! (re)connects the listener *first* and catches up from its last applied
//! number *second*: a commit between the two is then either in the
//! catch-up or notified, never neither. When [`Listener::next`] reports
//! the connection ended, it does the same again.
//!
//! tokio-postgres hands notifications out only to whoever drives the
//! connection with `Connection::poll_message`, so this module runs the
//! driver itself instead of spawning the connection future as
//! [`super::SharedTable`] does.

use std::future::poll_fn;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client};

use super::database::{self, describe, run};
use super::{FleetError, CHANNEL};

/// A subscription to the fleet's change notifications.
pub struct Listener {
    /// The highest number notified so far (0 before any).
    latest: watch::Receiver<u64>,
    /// The task driving the connection; its output says why it ended.
    driver: Option<JoinHandle<String>>,
    /// Why the connection ended, once known.
    ended: Option<String>,
    /// Keeps the session (and so the subscription) open.
    _client: Client,
    /// The URL, password hidden.
    database: String,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("database", &self.database)
            .field("latest", &*self.latest.borrow())
            .field("ended", &self.ended)
            .finish()
    }
}

impl Listener {
    /// Connects to `url` and subscribes. Every change committed after this
    /// returns is notified (unless the connection ends first, which
    /// [`Listener::next`] reports).
    pub async fn connect(url: &str) -> Result<Listener, FleetError> {
        let connected = database::connect(url).await?;
        let mut connection = connected.driver;
        let (sender, latest) = watch::channel(0u64);
        let driver = tokio::spawn(async move {
            loop {
                match poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(note))) if note.channel() == CHANNEL => {
                        // Writers send the new head. Any other payload (a
                        // hand-made NOTIFY) still means "look": wake the
                        // follower without moving the number.
                        let seq = note.payload().parse::<u64>().ok();
                        sender.send_modify(|latest| {
                            if let Some(seq) = seq {
                                *latest = (*latest).max(seq);
                            }
                        });
                    }
                    Some(Ok(_other)) => {}
                    Some(Err(e)) => return describe(&e),
                    None => return "the connection closed".to_owned(),
                }
            }
        });
        let client = connected.client;
        let database = connected.database;
        let listen = format!("LISTEN {CHANNEL}");
        if let Err(e) = run(
            &database,
            "subscribing to changes",
            client.batch_execute(&listen),
        )
        .await
        {
            driver.abort();
            return Err(e);
        }
        Ok(Listener {
            latest,
            driver: Some(driver),
            ended: None,
            _client: client,
            database,
        })
    }

    /// Waits for a notification not yet returned and returns the highest
    /// number notified so far (several commits may be behind one call).
    /// An error means the connection ended: notifications may have been
    /// lost, so connect again and catch up.
    pub async fn next(&mut self) -> Result<u64, FleetError> {
        if self.latest.changed().await.is_ok() {
            return Ok(*self.latest.borrow_and_update());
        }
        if let Some(driver) = self.driver.take() {
            self.ended = Some(match driver.await {
                Ok(reason) => reason,
                Err(e) => format!("the listening task failed: {e}"),
            });
        }
        Err(FleetError::ListenEnded {
            database: self.database.clone(),
            reason: self.ended.clone().unwrap_or_default(),
        })
    }

    /// The highest number notified so far, without waiting.
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}
