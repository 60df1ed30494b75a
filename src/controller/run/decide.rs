//! The run state machine: given what is stored and what runs, what to do next. Pure:
//! no I/O, the clock is an argument, so every path is a table test.
//!
//! Order of effects matters for crash safety: logs are drained before the exit is
//! recorded, and the container is removed only after the status write, so a crash at
//! any point leaves enough behind to finish the run on restart without running it twice.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::controller::runtime::{ContainerState, ContainerStatus, labels};
use crate::resource::types::{Attempt, BackoffKind, RestartPolicy, RunPhase, RunStatus};

/// Retry and time limits of a pipeline, already parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPolicy {
    /// Wall-clock limit of one attempt.
    pub timeout: Option<Duration>,
    /// Further attempts after the first.
    pub retry_limit: u32,
    /// Shape of the retry delay.
    pub backoff_kind: BackoffKind,
    /// First retry delay.
    pub backoff_initial: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Factor between exponential delays.
    pub backoff_multiplier: f64,
    /// The delays of a custom backoff, in turn.
    pub backoff_delays: Vec<Duration>,
    /// SIGTERM → SIGKILL grace period when stopping.
    pub stop_grace: Duration,
    /// How a daemon restarts (`spec.restart`); retries do not apply then.
    pub restart: Option<Restart>,
}

/// A daemon's restart policy, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Restart {
    /// Which exits start the next attempt.
    pub policy: RestartPolicy,
    /// Wait after an attempt that ran long enough.
    pub cooldown: Duration,
    /// When a running attempt is stopped to start anew.
    pub periodic: Option<Periodic>,
}

/// A periodic restart (an interval or a cron line), as `spec.restart.periodic` reads.
pub use crate::resource::schedule_time::Periodic;

/// An attempt of a daemon that ran this long resets its crash-loop back-off
/// (Kubernetes' rule).
pub const STABLE_AFTER: Duration = Duration::from_secs(600);

/// The longest crash-loop back-off, unless the cooldown is longer.
pub const CRASH_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The attempt reason of a periodic restart's stop.
pub const REASON_PERIODIC: &str = "PeriodicRestart";

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            timeout: None,
            retry_limit: 0,
            backoff_kind: BackoffKind::Exponential,
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(600),
            backoff_multiplier: 2.0,
            backoff_delays: Vec::new(),
            stop_grace: Duration::from_secs(10),
            restart: None,
        }
    }
}

impl RunPolicy {
    /// Delay before attempt `failed_attempts + 1`.
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        match self.backoff_kind {
            BackoffKind::Fixed => self.backoff_initial,
            BackoffKind::Exponential => {
                let exponent = failed_attempts.saturating_sub(1).min(64) as i32;
                let seconds =
                    self.backoff_initial.as_secs_f64() * self.backoff_multiplier.powi(exponent);
                Duration::try_from_secs_f64(seconds)
                    .unwrap_or(self.backoff_max)
                    .min(self.backoff_max)
            }
            BackoffKind::Custom => {
                let index = failed_attempts.saturating_sub(1) as usize;
                self.backoff_delays
                    .get(index)
                    .or(self.backoff_delays.last())
                    .copied()
                    .unwrap_or(self.backoff_initial)
            }
        }
    }
}

/// Everything the decision looks at.
#[derive(Clone, Debug)]
pub struct RunFacts<'a> {
    /// The clock.
    pub now: DateTime<Utc>,
    /// Stored status.
    pub status: &'a RunStatus,
    /// `spec.cancel`.
    pub cancel_requested: bool,
    /// The pipeline's policy, or `None` when the pipeline does not exist.
    pub policy: Option<&'a RunPolicy>,
    /// The run's container with the highest attempt number, with that number.
    pub container: Option<(u32, &'a ContainerState)>,
    /// Whether the run holds (or was just granted) a concurrency slot.
    pub admitted: bool,
    /// The run does not start before this instant (a scheduled run created ahead of its
    /// slot): its container is created when it is admitted and started at the instant.
    pub start_at: Option<DateTime<Utc>>,
    /// How long a finished attempt's container is kept (exited, as a tombstone of its
    /// name) before it is removed; zero removes it at once. With several replicas this
    /// is twice the lease ttl: a deposed leader that still meant to create or start an
    /// attempt finds the name taken and the container already run.
    pub tombstone_for: Duration,
}

/// A side effect on the current attempt's container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Create (or adopt) and start the container of this attempt.
    CreateAndStart {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Claim the attempt and create its container without starting it (a run created
    /// ahead of its start instant).
    Create {
        /// 1-based attempt number.
        attempt: u32,
    },
    /// Start the attempt's container, created earlier.
    Start,
    /// SIGTERM, then SIGKILL after the grace period.
    Stop,
    /// Read the remaining output of the exited container into the log store.
    DrainLogs,
    /// Remove the run's containers.
    Remove,
    /// Stop a container started by a leader that no longer held the lease (a finished
    /// attempt's container running again); it stays as a tombstone. Warning event.
    StopStale,
    /// Stop and remove a container created by a leader whose claim of the attempt never
    /// landed (it carries an epoch label and an attempt the store does not record).
    /// Warning event.
    RemoveStale,
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// Effects before the status write.
    pub before: Vec<Effect>,
    /// The new status, when it changes.
    pub status: Option<RunStatus>,
    /// Effects after the status write.
    pub after: Vec<Effect>,
    /// Look again after this long even without an event.
    pub requeue_after: Option<Duration>,
    /// True when the run does not hold a concurrency slot after this step.
    pub releases_slot: bool,
    /// True when the run waits for a slot.
    pub wants_slot: bool,
}

const REASON_DEADLINE: &str = "DeadlineExceeded";
const REASON_CANCELLED: &str = "Cancelled";

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The time from `now` to `at`; zero when `at` has passed.
fn wait_until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or_default()
}

fn parse(t: Option<&str>) -> Option<DateTime<Utc>> {
    t.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Decides the next step of a run.
pub fn decide_run_action(facts: &RunFacts<'_>) -> Decision {
    let status = facts.status;
    let recorded = status.attempts.len() as u32;
    if status.phase.is_finished() {
        return decide_finished(facts);
    }
    if let Some((number, container)) = facts.container
        && number > recorded
    {
        // Attempts are claimed in the store before their containers are created, so a
        // container with an epoch label and an attempt the store does not record was
        // created by a leader whose claim never landed: it must not run.
        if container.labels.contains_key(labels::EPOCH) {
            return Decision {
                before: vec![Effect::RemoveStale],
                requeue_after: Some(Duration::ZERO),
                ..Decision::default()
            };
        }
        // A container from before attempts were claimed first (no epoch label): the
        // operator crashed between starting it and recording it. Adopt it.
        let mut next = status.clone();
        next.attempts.push(Attempt {
            number,
            container: container.name.clone(),
            started_at: container.started_at.map(rfc3339),
            ..Attempt::default()
        });
        next.phase = RunPhase::Running;
        next.next_attempt_at = None;
        if let Some(revision) = container.labels.get(labels::SOURCE_REVISION) {
            next.source_revision = Some(revision.clone());
        }
        return Decision {
            status: Some(next),
            requeue_after: Some(Duration::ZERO),
            ..Decision::default()
        };
    }
    let current = facts
        .container
        .filter(|(n, _)| *n == recorded)
        .map(|(_, c)| c);
    let concluded = status
        .attempts
        .last()
        .is_some_and(|a| a.finished_at.is_some());
    match current {
        // The recorded attempt is over; its container is a tombstone. Running again, it
        // was started by a deposed leader.
        Some(container) if concluded && container.status == ContainerStatus::Running => Decision {
            before: vec![Effect::StopStale],
            requeue_after: Some(stop_wait(facts)),
            ..Decision::default()
        },
        Some(_) if concluded => decide_without_container(facts),
        Some(container) => decide_with_container(facts, container),
        None => decide_without_container(facts),
    }
}

/// A finished run: its containers are kept as tombstones for `tombstone_for` after the
/// last attempt ended, then removed; one running again is stopped first.
fn decide_finished(facts: &RunFacts<'_>) -> Decision {
    let Some((_, container)) = facts.container else {
        return Decision {
            releases_slot: true,
            ..Decision::default()
        };
    };
    if container.status == ContainerStatus::Running {
        return Decision {
            before: vec![Effect::StopStale],
            requeue_after: Some(stop_wait(facts)),
            releases_slot: true,
            ..Decision::default()
        };
    }
    let ended = facts
        .status
        .attempts
        .iter()
        .filter_map(|a| parse(a.finished_at.as_deref()))
        .max();
    let keep = ended
        .map(|ended| ended + chrono::Duration::from_std(facts.tombstone_for).unwrap_or_default())
        .filter(|until| *until > facts.now);
    match keep {
        Some(until) => Decision {
            requeue_after: Some(wait_until(until, facts.now)),
            releases_slot: true,
            ..Decision::default()
        },
        None => Decision {
            after: vec![Effect::Remove],
            releases_slot: true,
            ..Decision::default()
        },
    }
}

/// How long to wait for a stop to take effect.
fn stop_wait(facts: &RunFacts<'_>) -> Duration {
    facts
        .policy
        .map_or(Duration::from_secs(10), |p| p.stop_grace)
        + Duration::from_secs(1)
}

fn decide_with_container(facts: &RunFacts<'_>, container: &ContainerState) -> Decision {
    let status = facts.status;
    let grace = facts
        .policy
        .map_or(Duration::from_secs(10), |p| p.stop_grace);
    match container.status {
        ContainerStatus::Created => decide_created(facts),
        ContainerStatus::Running => {
            let mut next = status.clone();
            let started = container.started_at.unwrap_or(facts.now);
            if let Some(attempt) = next.attempts.last_mut() {
                attempt.started_at.get_or_insert_with(|| rfc3339(started));
            }
            next.phase = RunPhase::Running;
            next.reason = None;
            next.message = None;
            if facts.cancel_requested {
                return Decision {
                    before: vec![Effect::Stop],
                    status: (next != *status).then_some(next),
                    requeue_after: Some(grace + Duration::from_secs(1)),
                    ..Decision::default()
                };
            }
            let timeout = facts
                .policy
                .and_then(|p| p.timeout)
                .map(|t| started + chrono::Duration::from_std(t).unwrap_or(chrono::Duration::MAX))
                .map(|at| (at, REASON_DEADLINE));
            let periodic = facts
                .policy
                .and_then(|p| p.restart.as_ref()?.periodic.as_ref()?.after(started))
                .map(|at| (at, REASON_PERIODIC));
            // Whichever comes first stops the attempt, and says why.
            let deadline = match (timeout, periodic) {
                (Some(t), Some(p)) => Some(if p.0 < t.0 { p } else { t }),
                (t, p) => t.or(p),
            };
            match deadline {
                Some((deadline, why)) if facts.now >= deadline => {
                    if let Some(attempt) = next.attempts.last_mut() {
                        attempt.reason = Some(why.to_owned());
                    }
                    Decision {
                        before: vec![Effect::Stop],
                        status: (next != *status).then_some(next),
                        requeue_after: Some(grace + Duration::from_secs(1)),
                        ..Decision::default()
                    }
                }
                deadline => Decision {
                    status: (next != *status).then_some(next),
                    requeue_after: deadline.map(|(d, _)| wait_until(d, facts.now)),
                    ..Decision::default()
                },
            }
        }
        ContainerStatus::Exited => {
            let mut next = status.clone();
            let finished = container.finished_at.unwrap_or(facts.now);
            if let Some(attempt) = next.attempts.last_mut() {
                attempt
                    .started_at
                    .get_or_insert_with(|| rfc3339(container.started_at.unwrap_or(finished)));
                attempt.finished_at = Some(rfc3339(finished));
                attempt.exit_code = container.exit_code;
                attempt.oom_killed = container.oom_killed;
                if attempt.reason.is_none() {
                    attempt.reason = if facts.cancel_requested {
                        Some(REASON_CANCELLED.to_owned())
                    } else if container.oom_killed {
                        Some("OOMKilled".to_owned())
                    } else if container.exit_code != Some(0) {
                        Some(
                            container
                                .error
                                .clone()
                                .map_or("Error".to_owned(), |_| "StartError".to_owned()),
                        )
                    } else {
                        None
                    };
                }
            }
            let mut decision = conclude_attempt(facts, next, finished);
            decision.before.insert(0, Effect::DrainLogs);
            if facts.tombstone_for.is_zero() {
                decision.after.push(Effect::Remove);
            } else if decision
                .status
                .as_ref()
                .is_some_and(|s| s.phase.is_finished())
            {
                // Looked at again when the tombstone may go.
                decision.requeue_after = Some(facts.tombstone_for);
            }
            decision
        }
    }
}

/// The attempt's container exists and was never started: created ahead of the run's
/// start instant, or by an operator that stopped between create and start.
fn decide_created(facts: &RunFacts<'_>) -> Decision {
    if facts.cancel_requested {
        let mut next = facts.status.clone();
        if let Some(attempt) = next.attempts.last_mut() {
            attempt.finished_at = Some(rfc3339(facts.now));
            attempt.reason = Some(REASON_CANCELLED.to_owned());
        }
        let mut decision = conclude_attempt(facts, next, facts.now);
        decision.after.push(Effect::Remove);
        return decision;
    }
    // It starts only with a concurrency slot, like a container not created yet.
    if !facts.admitted {
        return Decision {
            wants_slot: true,
            ..Decision::default()
        };
    }
    match facts.start_at.filter(|at| *at > facts.now) {
        Some(at) => Decision {
            requeue_after: Some(wait_until(at, facts.now)),
            wants_slot: true,
            ..Decision::default()
        },
        None => Decision {
            before: vec![Effect::Start],
            requeue_after: Some(Duration::ZERO),
            wants_slot: true,
            ..Decision::default()
        },
    }
}

/// After an attempt ended (exit recorded in `next`): succeed, retry or fail.
fn conclude_attempt(
    facts: &RunFacts<'_>,
    mut next: RunStatus,
    finished: DateTime<Utc>,
) -> Decision {
    let attempts = next.attempts.len() as u32;
    let last = next.attempts.last().cloned().unwrap_or_default();
    let succeeded = last.exit_code == Some(0) && last.reason.is_none();
    next.next_attempt_at = None;
    if facts.cancel_requested {
        next.phase = RunPhase::Cancelled;
        next.reason = Some(REASON_CANCELLED.to_owned());
        next.message = Some("cancelled on request".to_owned());
    } else if let Some(restart) = facts.policy.and_then(|p| p.restart.as_ref())
        && (last.reason.as_deref() == Some(REASON_PERIODIC)
            || match restart.policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => !succeeded,
                RestartPolicy::Never => false,
            })
    {
        return restart_later(facts, next, restart, finished);
    } else if succeeded {
        next.phase = RunPhase::Succeeded;
        next.reason = None;
        next.message = None;
    } else {
        let policy = facts.policy.cloned().unwrap_or_default();
        let cause = describe_failure(&last);
        if attempts <= policy.retry_limit {
            let delay = policy.backoff(attempts);
            let at = finished + chrono::Duration::from_std(delay).unwrap_or_default();
            next.phase = RunPhase::Pending;
            next.reason = Some("BackOff".to_owned());
            next.message = Some(format!(
                "attempt {attempts} {cause}; attempt {} of {} starts at {}",
                attempts + 1,
                policy.retry_limit + 1,
                rfc3339(at)
            ));
            next.next_attempt_at = Some(rfc3339(at));
            let wait = wait_until(at, facts.now);
            return Decision {
                status: Some(next),
                requeue_after: Some(wait),
                releases_slot: true,
                ..Decision::default()
            };
        }
        next.phase = RunPhase::Failed;
        next.reason = Some(match last.reason.as_deref() {
            Some(reason @ ("OOMKilled" | REASON_DEADLINE | "ContainerLost" | "StartError")) => {
                reason.to_owned()
            }
            _ if policy.retry_limit > 0 => "BackoffLimitExceeded".to_owned(),
            _ => "Error".to_owned(),
        });
        next.message = Some(if attempts > 1 {
            format!("all {attempts} attempts failed; the last {cause}")
        } else {
            format!("the attempt {cause}")
        });
    }
    Decision {
        status: Some(next),
        releases_slot: true,
        ..Decision::default()
    }
}

/// A daemon's attempt ended: the next starts after its cooldown, at once after a
/// periodic restart, or after a doubling back-off while attempts keep ending soon after
/// they start (`CrashLoopBackOff`).
fn restart_later(
    facts: &RunFacts<'_>,
    mut next: RunStatus,
    restart: &Restart,
    finished: DateTime<Utc>,
) -> Decision {
    let ran = |a: &Attempt| {
        let start = parse(a.started_at.as_deref());
        let end = parse(a.finished_at.as_deref());
        match (start, end) {
            (Some(start), Some(end)) => (end - start).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        }
    };
    let last = next.attempts.last().cloned().unwrap_or_default();
    let number = last.number.max(next.attempts.len() as u32);
    let periodic = last.reason.as_deref() == Some(REASON_PERIODIC);
    // Attempts in a row, newest first, that ended soon after they started.
    let crashes = next
        .attempts
        .iter()
        .rev()
        .take_while(|a| ran(a) < STABLE_AFTER && a.reason.as_deref() != Some(REASON_PERIODIC))
        .count() as u32;
    let (delay, reason) = if periodic {
        (Duration::ZERO, "PeriodicRestart")
    } else if crashes <= 1 {
        (restart.cooldown, "Restarting")
    } else {
        let cap = CRASH_BACKOFF_MAX.max(restart.cooldown);
        let doubled = restart
            .cooldown
            .checked_mul(2u32.saturating_pow((crashes - 1).min(16)))
            .unwrap_or(cap);
        (doubled.min(cap), "CrashLoopBackOff")
    };
    let at = finished + chrono::Duration::from_std(delay).unwrap_or_default();
    let cause = if periodic {
        "was stopped for its periodic restart".to_owned()
    } else {
        describe_failure(&last)
    };
    next.phase = RunPhase::Pending;
    next.reason = Some(reason.to_owned());
    next.message = Some(format!(
        "attempt {number} {cause}; attempt {} starts at {} (back-off {}s{})",
        number + 1,
        rfc3339(at),
        delay.as_secs(),
        if crashes > 1 && !periodic {
            format!(
                ", {crashes} attempts in a row ended within {} min",
                STABLE_AFTER.as_secs() / 60
            )
        } else {
            String::new()
        }
    ));
    next.next_attempt_at = Some(rfc3339(at));
    Decision {
        status: Some(next),
        requeue_after: Some(wait_until(at, facts.now)),
        releases_slot: true,
        ..Decision::default()
    }
}

fn describe_failure(attempt: &Attempt) -> String {
    match (attempt.reason.as_deref(), attempt.exit_code) {
        (Some("OOMKilled"), _) => {
            "was killed for exceeding its memory limit (OOMKilled)".to_owned()
        }
        (Some(REASON_DEADLINE), _) => {
            "ran past its timeout and was stopped (DeadlineExceeded)".to_owned()
        }
        (Some("ContainerLost"), _) => "lost its container (removed outside Flotilla)".to_owned(),
        (_, Some(code)) => format!("exited with code {code}"),
        _ => "failed".to_owned(),
    }
}

fn decide_without_container(facts: &RunFacts<'_>) -> Decision {
    let status = facts.status;
    let last = status.attempts.last();
    // The recorded attempt started but its container is gone (removed by hand, or a
    // crash after removal but before the status write of an older version).
    if last.is_some_and(|a| a.finished_at.is_none() && a.started_at.is_some()) {
        let mut next = status.clone();
        if let Some(current) = next.attempts.last_mut() {
            current.finished_at = Some(rfc3339(facts.now));
            current.reason = Some(
                if facts.cancel_requested {
                    REASON_CANCELLED
                } else {
                    "ContainerLost"
                }
                .to_owned(),
            );
        }
        return conclude_attempt(facts, next, facts.now);
    }
    if facts.cancel_requested {
        let mut next = status.clone();
        // An attempt claimed but never started ends with the run.
        if let Some(claimed) = next
            .attempts
            .last_mut()
            .filter(|a| a.started_at.is_none() && a.finished_at.is_none())
        {
            claimed.finished_at = Some(rfc3339(facts.now));
            claimed.reason = Some(REASON_CANCELLED.to_owned());
        }
        next.phase = RunPhase::Cancelled;
        next.reason = Some(REASON_CANCELLED.to_owned());
        next.message = Some(if status.attempts.iter().all(|a| a.started_at.is_none()) {
            "cancelled before it started".to_owned()
        } else {
            "cancelled while waiting to retry".to_owned()
        });
        next.next_attempt_at = None;
        return Decision {
            status: Some(next),
            releases_slot: true,
            ..Decision::default()
        };
    }
    if facts.policy.is_none() {
        let mut next = status.clone();
        next.phase = RunPhase::Pending;
        next.reason = Some("PipelineNotFound".to_owned());
        next.message = Some(
            "the referenced pipeline does not exist; the run starts once it is applied".to_owned(),
        );
        return Decision {
            status: (next != *status).then_some(next),
            requeue_after: Some(Duration::from_secs(30)),
            releases_slot: true,
            ..Decision::default()
        };
    }
    if let Some(at) = parse(status.next_attempt_at.as_deref())
        && at > facts.now
    {
        return Decision {
            requeue_after: Some(wait_until(at, facts.now)),
            releases_slot: true,
            ..Decision::default()
        };
    }
    if !facts.admitted {
        let mut next = status.clone();
        next.phase = RunPhase::Pending;
        next.reason = Some("Queued".to_owned());
        next.message =
            Some("waiting for a free slot (maxInstances or --max-concurrent-runs)".to_owned());
        return Decision {
            status: (next != *status).then_some(next),
            wants_slot: true,
            ..Decision::default()
        };
    }
    // An attempt recorded without a start (create failed after the record): retry it;
    // otherwise begin the next attempt.
    let attempt = match last {
        Some(a) if a.started_at.is_none() && a.finished_at.is_none() => a.number,
        _ => status.attempts.len() as u32 + 1,
    };
    if let Some(at) = facts.start_at.filter(|at| *at > facts.now) {
        // Created now, started at the instant (the controller looks again then).
        return Decision {
            before: vec![Effect::Create { attempt }],
            requeue_after: Some(wait_until(at, facts.now)),
            wants_slot: true,
            ..Decision::default()
        };
    }
    Decision {
        before: vec![Effect::CreateAndStart { attempt }],
        requeue_after: Some(Duration::ZERO),
        wants_slot: true,
        ..Decision::default()
    }
}
