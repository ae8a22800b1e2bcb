//! Where key-table writes go: this keygate's own store, or, in a fleet, the
//! shared table first (SPEC 10).
//!
//! Every write, an admin's or a Haplo import's, is a plan made by the
//! keyring (`plan_create`, `plan_import_haplo`, ...) and then applied. The
//! only difference between the two modes is where the plan is committed
//! and under which lock: the keyring's writer lock on a single keygate;
//! the fleet-wide lock, PostgreSQL and then the local copy on a replica
//! ([`Replica::write`]). So there is one replication path for everything
//! that changes keys.

use std::sync::Arc;

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
    /// Plans and applies one write: durable and in effect here when this
    /// returns.
    pub async fn run<T, P>(&self, plan: P) -> Result<T, FleetWriteError>
    where
        T: Send + 'static,
        P: FnOnce(&Keyring) -> Result<Planned<T>, WriteError> + Send + 'static,
    {
        match self {
            Writes::Local(keyring) => {
                let keyring = keyring.clone();
                match tokio::task::spawn_blocking(move || keyring.write_planned(plan)).await {
                    Ok(result) => result.map_err(FleetWriteError::Write),
                    Err(join) => Err(FleetWriteError::Task(join.to_string())),
                }
            }
            Writes::Fleet(replica) => replica.write(plan).await,
        }
    }

    /// The keyring the writes end up in.
    pub fn keyring(&self) -> &Arc<Keyring> {
        match self {
            Writes::Local(keyring) => keyring,
            Writes::Fleet(replica) => replica.keyring(),
        }
    }
}
