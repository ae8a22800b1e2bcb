//! Where the admin API's writes go: this keygate's own store, or, in a
//! fleet, the shared table first (SPEC 10).
//!
//! Either way a write is a plan made by the keyring (`plan_create` and the
//! others) and then applied; the difference is only where it is committed
//! and under which lock. The answer is the same too: a key Haplo owns is
//! 409, an unreachable fleet database is 503 with nothing written, a store
//! that fails is 500.

use std::sync::Arc;

use super::body::write_failed;
use super::reply::Reply;
use crate::fleet::replica::{FleetWriteError, Replica};
use crate::keys::{Keyring, Planned, WriteError};

/// Where writes are committed.
#[derive(Debug, Clone)]
pub enum Writes {
    /// This keygate's redb store (the default).
    Local(Arc<Keyring>),
    /// The fleet's shared table, then this replica's copy.
    Fleet(Arc<Replica>),
}

impl Writes {
    /// Plans and applies one write; the reply to send if it did not happen.
    pub(crate) async fn run<T, P>(&self, plan: P) -> Result<T, Reply>
    where
        T: Send + 'static,
        P: FnOnce(&Keyring) -> Result<Planned<T>, WriteError> + Send + 'static,
    {
        let result = match self {
            Writes::Local(keyring) => {
                let keyring = keyring.clone();
                match tokio::task::spawn_blocking(move || keyring.write_planned(plan)).await {
                    Ok(result) => result.map_err(FleetWriteError::Write),
                    Err(join) => Err(FleetWriteError::Task(join.to_string())),
                }
            }
            Writes::Fleet(replica) => replica.write(plan).await,
        };
        result.map_err(|error| match error {
            FleetWriteError::Write(refused @ WriteError::OwnedByHaplo { .. }) => {
                Reply::error(409, refused.to_string())
            }
            FleetWriteError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "admin write refused: the fleet database is unavailable");
                Reply::error(
                    503,
                    "the fleet database is unreachable; nothing was written (retry when it is back)",
                )
            }
            other => write_failed(&other),
        })
    }
}
