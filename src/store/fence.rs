//! Fencing: the leader's right to act, checked where it matters.
//!
//! A [`Fence`] belongs to one replica's controllers. The election
//! ([`crate::controller::leader`]) grants it the epoch of the lease it holds and, after
//! every renewal, a local deadline (two thirds of the ttl after the renewal was sent,
//! on this process's monotonic clock, which keeps counting while the process is
//! stopped). Two checks follow from it:
//!
//! - every write through a fenced [`super::Store`] first locks the lease row
//!   (`FOR SHARE`, so no replica can take the lease over while the write is in flight)
//!   and is refused unless the row still carries this epoch and has not expired on the
//!   database's clock: a claim of an attempt or a scheduled run made by a deposed leader
//!   never lands;
//! - side effects outside the database (creating, starting, stopping and removing
//!   containers) are taken only while [`Fence::may_act`] holds: a leader that was
//!   paused or cut off past its deadline does nothing when it comes back, even before
//!   it learns that another replica leads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{Param, Tx};
use super::error::StoreError;

/// Locks the lease row for the rest of the transaction and reads its epoch, if the
/// lease has not expired on the database's clock.
const CHECK: &str = "\
    SELECT epoch FROM leases \
    WHERE name = $1 \
      AND renewed_at + ttl_ms >= (extract(epoch FROM clock_timestamp()) * 1000)::bigint \
    FOR SHARE";

/// One replica's right to act under a lease.
#[derive(Debug)]
pub struct Fence {
    lease: &'static str,
    /// The epoch granted; 0 while none is.
    epoch: AtomicI64,
    /// Until when side effects may be taken without another renewal.
    acts_until: Mutex<Option<Instant>>,
    /// Cancelled when the right to act was withdrawn for good.
    lost: CancellationToken,
}

impl Fence {
    /// A fence on lease `lease`, granting nothing yet.
    pub fn new(lease: &'static str) -> Self {
        Self {
            lease,
            epoch: AtomicI64::new(0),
            acts_until: Mutex::new(None),
            lost: CancellationToken::new(),
        }
    }

    /// Grants `epoch` until `until` (called after every successful renewal).
    pub fn grant(&self, epoch: i64, until: Instant) {
        self.epoch.store(epoch, Ordering::SeqCst);
        *self.deadline() = Some(until);
    }

    /// Withdraws the right to act at once.
    pub fn revoke(&self) {
        *self.deadline() = None;
        self.lost.cancel();
    }

    /// The epoch granted, if any.
    pub fn epoch(&self) -> Option<i64> {
        match self.epoch.load(Ordering::SeqCst) {
            0 => None,
            epoch => Some(epoch),
        }
    }

    /// Whether side effects may be taken now.
    pub fn may_act(&self) -> bool {
        self.deadline().is_some_and(|until| Instant::now() < until)
    }

    /// Completes once the right to act was withdrawn (a fenced write found the lease
    /// held under another epoch, or expired).
    pub async fn lost(&self) {
        self.lost.cancelled().await;
    }

    /// The error for a side effect refused by [`Fence::may_act`].
    pub fn refusal(&self) -> StoreError {
        StoreError::Fenced {
            lease: self.lease,
            epoch: self.epoch().unwrap_or(0),
            reason: "the lease was not renewed in time; this replica no longer acts".into(),
        }
    }

    /// Checks, inside `tx`, that this replica still holds the lease under its epoch,
    /// and keeps the lease row locked until `tx` ends.
    pub(super) async fn check(&self, tx: &mut Tx) -> Result<(), StoreError> {
        let Some(epoch) = self.epoch().filter(|_| self.may_act()) else {
            return Err(self.refusal());
        };
        let rows: Vec<(i64,)> = tx
            .fetch(CHECK, vec![Param::Text(self.lease.to_owned())])
            .await?;
        match rows.first() {
            Some((current,)) if *current == epoch => Ok(()),
            found => {
                let reason = match found {
                    Some((current,)) => format!("the lease is held under epoch {current} now"),
                    None => "the lease expired".to_owned(),
                };
                self.revoke();
                Err(StoreError::Fenced {
                    lease: self.lease,
                    epoch,
                    reason,
                })
            }
        }
    }

    fn deadline(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.acts_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn acts_only_between_a_grant_and_its_deadline() {
        let fence = Fence::new("controllers");
        assert!(!fence.may_act());
        assert_eq!(fence.epoch(), None);
        fence.grant(3, Instant::now() + Duration::from_secs(60));
        assert!(fence.may_act());
        assert_eq!(fence.epoch(), Some(3));
        fence.grant(3, Instant::now() - Duration::from_millis(1));
        assert!(!fence.may_act());
        fence.grant(3, Instant::now() + Duration::from_secs(60));
        fence.revoke();
        assert!(!fence.may_act());
        assert_eq!(fence.refusal().code(), "store.fenced");
    }
}
