//! Leader election for operators sharing one PostgreSQL store: every replica serves the
//! API, one leader runs the controllers. The lease lives in the database
//! ([`crate::store::lease`]) and is timed by the database's clock; the leader renews it
//! every `renew_every` and gives up on its own before anybody else could take it over:
//! when no renewal succeeded for two thirds of the ttl (counted on this process's
//! monotonic clock from the moment the last successful renewal was *sent*), it reports
//! the lease lost, and `flotilla serve` exits, as Kubernetes controllers do. Restarted,
//! it serves as a follower until the lease is free again.
//!
//! The controllers act through a [`Fence`] this election keeps up to date: their store
//! writes check the epoch in the same transaction, and their container side effects
//! stop at the local deadline ([`crate::store::fence`]).

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::fence::Fence;

/// The lease the controllers run under.
pub const LEASE: &str = "controllers";

/// Lease timing and this replica's name.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    /// Unique name of this replica (host, process, random part).
    pub holder: String,
    /// How long a renewal holds the lease.
    pub ttl: Duration,
    /// How often the leader renews it and followers try to take it.
    pub renew_every: Duration,
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
#[error(
    "lost the controller lease (epoch {epoch}): {reason}; exiting so that only the new leader acts (restarted, this replica serves as a follower)"
)]
pub struct LeadershipLost {
    /// The epoch this replica led under.
    pub epoch: i64,
    /// What happened.
    pub reason: String,
}

impl LeaderConfig {
    /// Checks that renewals come often enough to keep the lease.
    pub fn validate(&self) -> Result<(), String> {
        if self.renew_every.is_zero() || self.renew_every * 3 > self.ttl {
            return Err(format!(
                "the lease renewal interval ({:?}) must be positive and at most a third of the lease ttl ({:?})",
                self.renew_every, self.ttl
            ));
        }
        Ok(())
    }

    /// How long after sending a successful renewal the leader may still act.
    fn acts_for(&self) -> Duration {
        self.ttl * 2 / 3
    }
}

/// Takes part in the election until `shutdown`: publishes `Some(epoch)` on `elected`
/// while this replica leads, and grants `fence` the epoch and the deadline of every
/// renewal. Returns an error when it led and lost the lease.
pub async fn take_part(
    store: Store,
    config: LeaderConfig,
    elected: watch::Sender<Option<i64>>,
    fence: std::sync::Arc<Fence>,
    metrics: std::sync::Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), LeadershipLost> {
    let ttl_ms = i64::try_from(config.ttl.as_millis()).unwrap_or(i64::MAX);
    let mut ticks = tokio::time::interval(config.renew_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While leading: until when this replica may act without another renewal.
    let mut leading: Option<(i64, Instant)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = fence.lost(), if leading.is_some() => {
                return Err(LeadershipLost {
                    epoch: leading.map_or(0, |(e, _)| e),
                    reason: "a fenced write found the lease moved on or expired".into(),
                });
            }
            _ = ticks.tick() => {}
        }
        let sent = Instant::now();
        // A renewal that hangs (a cut connection) must not outlive the right to act.
        let wait = match leading {
            Some((_, until)) => until
                .saturating_duration_since(sent)
                .min(config.renew_every),
            None => config.renew_every,
        };
        let outcome =
            tokio::time::timeout(wait, store.take_lease(LEASE, &config.holder, ttl_ms)).await;
        match (outcome, leading) {
            (Ok(Ok(Some(epoch))), previous) => {
                if previous.is_some_and(|(led, _)| led != epoch) {
                    fence.revoke();
                    return Err(LeadershipLost {
                        epoch: previous.map_or(0, |(e, _)| e),
                        reason: format!("the lease moved on to epoch {epoch} meanwhile"),
                    });
                }
                if previous.is_none() {
                    tracing::info!(holder = %config.holder, epoch, "elected: this replica runs the controllers");
                    metrics.leader.set(1);
                    metrics.leader_epoch.set(epoch);
                    let _ = elected.send(Some(epoch));
                }
                leading = Some((epoch, sent + config.acts_for()));
                fence.grant(epoch, sent + config.acts_for());
            }
            (Ok(Ok(None)), Some((epoch, _))) => {
                fence.revoke();
                return Err(LeadershipLost {
                    epoch,
                    reason: "another replica holds it".into(),
                });
            }
            (Ok(Ok(None)), None) => {}
            (failed, Some((epoch, until))) => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the renewal did not answer in time".to_owned(),
                };
                if Instant::now() >= until {
                    fence.revoke();
                    return Err(LeadershipLost {
                        epoch,
                        reason: format!("no renewal for {:?}: {why}", config.acts_for()),
                    });
                }
                tracing::warn!(epoch, "lease renewal failed, retrying: {why}");
            }
            (failed, None) => {
                if let Ok(Err(e)) = failed {
                    tracing::warn!(code = e.code(), "cannot read the controller lease: {e}");
                }
            }
        }
    }
}

/// This replica's name: host, process id and a random part (a restarted process is a
/// new holder, so its old lease is not silently continued).
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{}", std::process::id(), &random[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_must_come_well_within_the_ttl() {
        let config = |ttl, renew| LeaderConfig {
            holder: "h".into(),
            ttl: Duration::from_secs(ttl),
            renew_every: Duration::from_secs(renew),
        };
        assert!(config(15, 5).validate().is_ok());
        assert!(config(15, 6).validate().is_err());
        assert!(config(15, 0).validate().is_err());
        // The leader stops acting before a follower can take over.
        assert_eq!(config(15, 5).acts_for(), Duration::from_secs(10));
    }
}
