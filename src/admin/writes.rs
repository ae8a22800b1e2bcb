//! The admin API's answer when a write did not happen: a key Haplo owns is
//! 409, an unreachable fleet database is 503 with nothing written, a store
//! that fails is 500. Where writes go is [`crate::writes`].

use super::body::write_failed;
use super::reply::Reply;
use crate::fleet::replica::FleetWriteError;
use crate::keys::{Keyring, Planned, WriteError};
use crate::writes::Writes;

/// Plans and applies one write; the reply to send if it did not happen.
pub(crate) async fn run<T, P>(writes: &Writes, plan: P) -> Result<T, Reply>
where
    T: Send + 'static,
    P: FnOnce(&Keyring) -> Result<Planned<T>, WriteError> + Send + 'static,
{
    writes.run(plan).await.map_err(|error| match error {
        FleetWriteError::Write(
            refused @ (WriteError::OwnedByHaplo { .. } | WriteError::HaploOwnsField { .. }),
        ) => {
            Reply::error(409, refused.to_string())
        }
        FleetWriteError::Unavailable(cause) => {
            tracing::warn!(error = %cause, "admin write refused: the fleet database is unavailable");
            Reply::error(
                503,
                "the fleet database is unreachable; nothing was written (retry when it is back)",
            )
        }
        FleetWriteError::Joining => Reply::error(
            503,
            "this replica is still joining the fleet; nothing was written (retry shortly)",
        ),
        other => write_failed(&other),
    })
}
