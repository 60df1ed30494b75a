//! Table tests of the run state machine.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::decide::{
    Effect, Periodic, REASON_PERIODIC, Restart, RunFacts, RunPolicy, decide_run_action,
};
use crate::controller::runtime::{ContainerState, ContainerStatus};
use crate::resource::types::{Attempt, BackoffKind, RestartPolicy, RunPhase, RunStatus};

fn t(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid")
}

fn ts(seconds: i64) -> String {
    t(seconds).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn container(status: ContainerStatus, exit_code: Option<i64>, oom: bool) -> ContainerState {
    ContainerState {
        name: "flotilla-u-1".into(),
        labels: Default::default(),
        status,
        started_at: Some(t(0)),
        finished_at: (status == ContainerStatus::Exited).then(|| t(5)),
        exit_code,
        oom_killed: oom,
        error: None,
    }
}

fn running_status(attempts: u32) -> RunStatus {
    RunStatus {
        phase: RunPhase::Running,
        attempts: (1..=attempts)
            .map(|n| Attempt {
                number: n,
                container: format!("flotilla-u-{n}"),
                started_at: Some(ts(0)),
                finished_at: (n < attempts).then(|| ts(1)),
                exit_code: (n < attempts).then_some(1),
                ..Attempt::default()
            })
            .collect(),
        ..RunStatus::default()
    }
}

fn policy() -> RunPolicy {
    RunPolicy {
        timeout: Some(Duration::from_secs(60)),
        retry_limit: 2,
        backoff_kind: BackoffKind::Exponential,
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(15),
        stop_grace: Duration::from_secs(5),
        ..RunPolicy::default()
    }
}

#[test]
fn pending_run_waits_for_a_slot_then_starts_attempt_one() {
    let status = RunStatus::default();
    let p = policy();
    let facts = RunFacts {
        now: t(0),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: None,
        admitted: false,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let waiting = decide_run_action(&facts);
    assert!(waiting.wants_slot);
    assert!(waiting.before.is_empty());
    assert_eq!(
        waiting.status.as_ref().and_then(|s| s.reason.as_deref()),
        Some("Queued")
    );
    let admitted = decide_run_action(&RunFacts {
        admitted: true,
        start_at: None,
        ..facts
    });
    assert_eq!(admitted.before, vec![Effect::CreateAndStart { attempt: 1 }]);
}

#[test]
fn missing_pipeline_is_a_condition_not_a_start() {
    let status = RunStatus::default();
    let facts = RunFacts {
        now: t(0),
        status: &status,
        cancel_requested: false,
        policy: None,
        container: None,
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let decision = decide_run_action(&facts);
    assert!(decision.before.is_empty());
    let next = decision.status.expect("status");
    assert_eq!(next.phase, RunPhase::Pending);
    assert_eq!(next.reason.as_deref(), Some("PipelineNotFound"));
}

#[test]
fn unrecorded_container_is_adopted_not_started_again() {
    let status = RunStatus::default();
    let c = container(ContainerStatus::Running, None, false);
    let p = policy();
    let facts = RunFacts {
        now: t(1),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let decision = decide_run_action(&facts);
    assert!(decision.before.is_empty(), "{decision:?}");
    let next = decision.status.expect("status");
    assert_eq!(next.attempts.len(), 1);
    assert_eq!(next.phase, RunPhase::Running);
}

#[test]
fn running_past_timeout_is_stopped_with_deadline_exceeded() {
    let status = running_status(1);
    let c = container(ContainerStatus::Running, None, false);
    let p = policy();
    let before = RunFacts {
        now: t(30),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let decision = decide_run_action(&before);
    assert!(decision.before.is_empty());
    assert_eq!(decision.requeue_after, Some(Duration::from_secs(30)));
    let late = decide_run_action(&RunFacts {
        now: t(61),
        ..before
    });
    assert_eq!(late.before, vec![Effect::Stop]);
    assert_eq!(
        late.status.expect("status").attempts[0].reason.as_deref(),
        Some("DeadlineExceeded")
    );
}

#[test]
fn exit_zero_succeeds_drains_logs_first_and_removes_after() {
    let status = running_status(1);
    let c = container(ContainerStatus::Exited, Some(0), false);
    let p = policy();
    let facts = RunFacts {
        now: t(6),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let decision = decide_run_action(&facts);
    assert_eq!(decision.before, vec![Effect::DrainLogs]);
    assert_eq!(decision.after, vec![Effect::Remove]);
    assert!(decision.releases_slot);
    let next = decision.status.expect("status");
    assert_eq!(next.phase, RunPhase::Succeeded);
    assert_eq!(next.attempts[0].exit_code, Some(0));
}

#[test]
fn failures_retry_with_backoff_then_fail() {
    let p = policy();
    let table: &[(u32, RunPhase, Option<&str>, Option<i64>)] = &[
        // attempts so far, phase after, reason, retry delay seconds from exit (t=5)
        (1, RunPhase::Pending, Some("BackOff"), Some(10)),
        (2, RunPhase::Pending, Some("BackOff"), Some(15)), // 20 s capped at 15 s
        (3, RunPhase::Failed, Some("BackoffLimitExceeded"), None),
    ];
    for (attempts, phase, reason, delay) in table {
        let status = running_status(*attempts);
        let c = container(ContainerStatus::Exited, Some(3), false);
        let facts = RunFacts {
            now: t(6),
            status: &status,
            cancel_requested: false,
            policy: Some(&p),
            container: Some((*attempts, &c)),
            admitted: true,
            start_at: None,
            tombstone_for: Duration::ZERO,
        };
        let next = decide_run_action(&facts).status.expect("status");
        assert_eq!(next.phase, *phase, "after {attempts} attempts");
        assert_eq!(next.reason.as_deref(), *reason);
        assert_eq!(
            next.next_attempt_at,
            delay.map(|d| ts(5 + d)),
            "after {attempts} attempts"
        );
    }
}

#[test]
fn oom_is_reported_as_oom_killed() {
    let status = running_status(1);
    let c = container(ContainerStatus::Exited, Some(137), true);
    let p = RunPolicy {
        retry_limit: 0,
        ..policy()
    };
    let facts = RunFacts {
        now: t(6),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let next = decide_run_action(&facts).status.expect("status");
    assert_eq!(next.phase, RunPhase::Failed);
    assert_eq!(next.reason.as_deref(), Some("OOMKilled"));
    assert!(next.attempts[0].oom_killed);
}

#[test]
fn retry_waits_release_the_slot_until_due() {
    let mut status = running_status(1);
    status.phase = RunPhase::Pending;
    status.attempts[0].finished_at = Some(ts(5));
    status.attempts[0].exit_code = Some(1);
    status.next_attempt_at = Some(ts(15));
    let p = policy();
    let facts = RunFacts {
        now: t(8),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: None,
        admitted: false,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let waiting = decide_run_action(&facts);
    assert!(waiting.releases_slot && !waiting.wants_slot);
    assert_eq!(waiting.requeue_after, Some(Duration::from_secs(7)));
    let due = decide_run_action(&RunFacts {
        now: t(16),
        admitted: true,
        start_at: None,
        ..facts
    });
    assert_eq!(due.before, vec![Effect::CreateAndStart { attempt: 2 }]);
}

#[test]
fn cancel_of_pending_and_running_runs() {
    let pending = RunStatus::default();
    let p = policy();
    let facts = RunFacts {
        now: t(0),
        status: &pending,
        cancel_requested: true,
        policy: Some(&p),
        container: None,
        admitted: false,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let cancelled = decide_run_action(&facts).status.expect("status");
    assert_eq!(cancelled.phase, RunPhase::Cancelled);

    let running = running_status(1);
    let live = container(ContainerStatus::Running, None, false);
    let stop = decide_run_action(&RunFacts {
        status: &running,
        container: Some((1, &live)),
        ..facts.clone()
    });
    assert_eq!(stop.before, vec![Effect::Stop]);

    let exited = container(ContainerStatus::Exited, Some(143), false);
    let done = decide_run_action(&RunFacts {
        status: &running,
        container: Some((1, &exited)),
        ..facts
    });
    let next = done.status.expect("status");
    assert_eq!(next.phase, RunPhase::Cancelled);
    assert_eq!(next.attempts[0].exit_code, Some(143));
}

#[test]
fn vanished_container_of_a_running_attempt_is_container_lost() {
    let status = running_status(1);
    let p = RunPolicy {
        retry_limit: 0,
        ..policy()
    };
    let facts = RunFacts {
        now: t(9),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: None,
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let next = decide_run_action(&facts).status.expect("status");
    assert_eq!(next.phase, RunPhase::Failed);
    assert_eq!(next.reason.as_deref(), Some("ContainerLost"));
}

#[test]
fn finished_runs_only_clean_up() {
    let mut status = running_status(1);
    status.phase = RunPhase::Succeeded;
    let c = container(ContainerStatus::Exited, Some(0), false);
    let facts = RunFacts {
        now: t(9),
        status: &status,
        cancel_requested: false,
        policy: None,
        container: Some((1, &c)),
        admitted: false,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let decision = decide_run_action(&facts);
    assert_eq!(decision.after, vec![Effect::Remove]);
    assert!(decision.status.is_none());
}

#[test]
fn finished_attempts_stay_as_tombstones_until_the_run_ended_two_ttls_ago() {
    let mut status = running_status(1);
    status.phase = RunPhase::Succeeded;
    status.attempts[0].finished_at = Some(ts(5));
    let c = container(ContainerStatus::Exited, Some(0), false);
    let facts = RunFacts {
        now: t(10),
        status: &status,
        cancel_requested: false,
        policy: None,
        container: Some((1, &c)),
        admitted: false,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    };
    let kept = decide_run_action(&facts);
    assert!(kept.after.is_empty() && kept.before.is_empty(), "{kept:?}");
    assert_eq!(kept.requeue_after, Some(Duration::from_secs(25)));
    let gone = decide_run_action(&RunFacts {
        now: t(35),
        ..facts
    });
    assert_eq!(gone.after, vec![Effect::Remove]);
}

#[test]
fn with_tombstones_an_exited_attempt_is_concluded_but_not_removed() {
    let status = running_status(1);
    let c = container(ContainerStatus::Exited, Some(0), false);
    let p = policy();
    let decision = decide_run_action(&RunFacts {
        now: t(6),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    });
    assert_eq!(decision.before, vec![Effect::DrainLogs]);
    assert!(decision.after.is_empty());
    assert_eq!(decision.requeue_after, Some(Duration::from_secs(30)));
    assert_eq!(decision.status.expect("status").phase, RunPhase::Succeeded);
}

#[test]
fn a_retry_starts_beside_the_tombstone_of_the_failed_attempt() {
    let mut status = running_status(1);
    status.phase = RunPhase::Pending;
    status.attempts[0].finished_at = Some(ts(5));
    status.attempts[0].exit_code = Some(1);
    status.next_attempt_at = Some(ts(15));
    let tombstone = container(ContainerStatus::Exited, Some(1), false);
    let p = policy();
    let due = decide_run_action(&RunFacts {
        now: t(16),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &tombstone)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    });
    assert_eq!(due.before, vec![Effect::CreateAndStart { attempt: 2 }]);
    assert!(due.status.is_none(), "the exit is not concluded twice");
}

#[test]
fn a_tombstone_running_again_is_stopped_as_stale() {
    let mut status = running_status(1);
    status.phase = RunPhase::Pending;
    status.attempts[0].finished_at = Some(ts(5));
    status.attempts[0].exit_code = Some(1);
    let restarted = container(ContainerStatus::Running, None, false);
    let p = policy();
    let facts = RunFacts {
        now: t(16),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &restarted)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    };
    assert_eq!(decide_run_action(&facts).before, vec![Effect::StopStale]);
    let mut ended = status.clone();
    ended.phase = RunPhase::Failed;
    let finished = decide_run_action(&RunFacts {
        status: &ended,
        ..facts
    });
    assert_eq!(finished.before, vec![Effect::StopStale]);
    assert!(finished.after.is_empty());
}

#[test]
fn an_unrecorded_container_with_an_epoch_was_created_without_a_claim_and_is_removed() {
    let status = RunStatus::default();
    let mut c = container(ContainerStatus::Running, None, false);
    c.labels
        .insert("flotilla.dev/epoch".to_owned(), "3".to_owned());
    let p = policy();
    let decision = decide_run_action(&RunFacts {
        now: t(1),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    });
    assert_eq!(decision.before, vec![Effect::RemoveStale]);
    assert!(decision.status.is_none());
}

#[test]
fn a_claimed_attempt_is_created_again_under_its_number_or_cancelled_with_the_run() {
    let status = RunStatus {
        phase: RunPhase::Pending,
        reason: Some("Starting".into()),
        attempts: vec![Attempt {
            number: 1,
            container: "flotilla-u-1".into(),
            epoch: Some(2),
            ..Attempt::default()
        }],
        ..RunStatus::default()
    };
    let p = policy();
    let facts = RunFacts {
        now: t(3),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: None,
        admitted: true,
        start_at: None,
        tombstone_for: Duration::from_secs(30),
    };
    assert_eq!(
        decide_run_action(&facts).before,
        vec![Effect::CreateAndStart { attempt: 1 }]
    );
    let cancelled = decide_run_action(&RunFacts {
        cancel_requested: true,
        ..facts
    })
    .status
    .expect("status");
    assert_eq!(cancelled.phase, RunPhase::Cancelled);
    assert_eq!(
        cancelled.message.as_deref(),
        Some("cancelled before it started")
    );
    assert_eq!(cancelled.attempts[0].reason.as_deref(), Some("Cancelled"));
    assert_eq!(cancelled.attempts[0].finished_at, Some(ts(3)));
}

fn claimed_status() -> RunStatus {
    RunStatus {
        attempts: vec![Attempt {
            number: 1,
            container: "flotilla-u-1".into(),
            ..Attempt::default()
        }],
        ..RunStatus::default()
    }
}

#[test]
fn a_run_created_ahead_of_its_start_creates_its_container_then_waits() {
    let status = RunStatus::default();
    let p = policy();
    let facts = RunFacts {
        now: t(0),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: None,
        admitted: true,
        start_at: Some(t(2)),
        tombstone_for: Duration::ZERO,
    };
    let ahead = decide_run_action(&facts);
    assert_eq!(ahead.before, vec![Effect::Create { attempt: 1 }]);
    assert_eq!(ahead.requeue_after, Some(Duration::from_secs(2)));
    assert!(ahead.wants_slot && !ahead.releases_slot);
    // Not admitted: it queues like any run, nothing is created.
    let queued = decide_run_action(&RunFacts {
        admitted: false,
        ..facts.clone()
    });
    assert!(queued.before.is_empty() && queued.wants_slot);
    // At (or after) the instant, nothing created yet: created and started at once.
    let late = decide_run_action(&RunFacts { now: t(2), ..facts });
    assert_eq!(late.before, vec![Effect::CreateAndStart { attempt: 1 }]);
}

#[test]
fn a_created_container_starts_at_the_instant_and_only_with_a_slot() {
    let status = claimed_status();
    let c = ContainerState {
        started_at: None,
        ..container(ContainerStatus::Created, None, false)
    };
    let p = policy();
    let facts = RunFacts {
        now: t(0),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: Some(t(3)),
        tombstone_for: Duration::ZERO,
    };
    let before = decide_run_action(&facts);
    assert!(before.before.is_empty(), "{before:?}");
    assert_eq!(before.requeue_after, Some(Duration::from_secs(3)));
    assert!(before.status.is_none() && before.wants_slot);
    let at = decide_run_action(&RunFacts {
        now: t(3),
        ..facts.clone()
    });
    assert_eq!(at.before, vec![Effect::Start]);
    // Without a slot (a restarted operator that has not admitted it yet) it asks first.
    let unadmitted = decide_run_action(&RunFacts {
        now: t(3),
        admitted: false,
        ..facts.clone()
    });
    assert!(unadmitted.before.is_empty() && unadmitted.wants_slot);
    // No start instant (an operator stopped between create and start): started now.
    let crashed = decide_run_action(&RunFacts {
        start_at: None,
        ..facts
    });
    assert_eq!(crashed.before, vec![Effect::Start]);
}

#[test]
fn cancelling_a_created_container_ends_the_run_and_removes_it() {
    let status = claimed_status();
    let c = ContainerState {
        started_at: None,
        ..container(ContainerStatus::Created, None, false)
    };
    let p = policy();
    let decision = decide_run_action(&RunFacts {
        now: t(1),
        status: &status,
        cancel_requested: true,
        policy: Some(&p),
        container: Some((1, &c)),
        admitted: true,
        start_at: Some(t(3)),
        tombstone_for: Duration::ZERO,
    });
    assert!(decision.before.is_empty());
    assert_eq!(decision.after, vec![Effect::Remove]);
    assert!(decision.releases_slot);
    let next = decision.status.expect("status");
    assert_eq!(next.phase, RunPhase::Cancelled);
    assert_eq!(next.attempts[0].reason.as_deref(), Some("Cancelled"));
    assert!(next.attempts[0].started_at.is_none());
}

#[test]
fn backoff_follows_the_multiplier_and_the_custom_delays() {
    let exponential = RunPolicy {
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(30),
        backoff_multiplier: 1.5,
        ..RunPolicy::default()
    };
    let delays: Vec<Duration> = (1..=5).map(|n| exponential.backoff(n)).collect();
    assert_eq!(
        delays,
        [10_000, 15_000, 22_500, 30_000, 30_000].map(Duration::from_millis),
        "10 s × 1.5ⁿ, capped at 30 s"
    );
    let custom = RunPolicy {
        backoff_kind: BackoffKind::Custom,
        backoff_delays: [60, 300, 3600].map(Duration::from_secs).to_vec(),
        ..RunPolicy::default()
    };
    let delays: Vec<Duration> = (1..=5).map(|n| custom.backoff(n)).collect();
    assert_eq!(
        delays,
        [60, 300, 3600, 3600, 3600].map(Duration::from_secs),
        "each delay in turn, then the last"
    );
    // The default still doubles.
    let doubling = RunPolicy::default();
    assert_eq!(doubling.backoff(3), Duration::from_secs(40));
}

/// A daemon whose attempts ran `durations` seconds each (the last one just exited with
/// `exit`, `ran_last` seconds after it started).
fn daemon_facts(history: &[i64], exit: i64, ran_last: i64) -> (RunStatus, ContainerState) {
    let mut clock = 0;
    let mut attempts: Vec<Attempt> = history
        .iter()
        .enumerate()
        .map(|(i, ran)| {
            let a = Attempt {
                number: i as u32 + 1,
                container: format!("flotilla-u-{}", i + 1),
                started_at: Some(ts(clock)),
                finished_at: Some(ts(clock + ran)),
                exit_code: Some(1),
                ..Attempt::default()
            };
            clock += ran + 1;
            a
        })
        .collect();
    let number = attempts.len() as u32 + 1;
    attempts.push(Attempt {
        number,
        container: format!("flotilla-u-{number}"),
        started_at: Some(ts(clock)),
        ..Attempt::default()
    });
    let status = RunStatus {
        phase: RunPhase::Running,
        attempts,
        ..RunStatus::default()
    };
    let mut exited = container(ContainerStatus::Exited, Some(exit), false);
    exited.started_at = Some(t(clock));
    exited.finished_at = Some(t(clock + ran_last));
    (status, exited)
}

fn daemon(policy: RestartPolicy, periodic: Option<Periodic>) -> RunPolicy {
    RunPolicy {
        restart: Some(Restart {
            policy,
            cooldown: Duration::from_secs(10),
            periodic,
        }),
        ..RunPolicy::default()
    }
}

#[test]
fn a_daemon_restarts_after_its_cooldown_and_backs_off_while_it_crash_loops() {
    let p = daemon(RestartPolicy::Always, None);
    // (earlier attempts' run times, exit, last run time) → reason, delay in seconds
    let cases: [(&[i64], i64, i64, &str, u64); 6] = [
        (&[], 1, 5, "Restarting", 10),
        (&[], 0, 5, "Restarting", 10),
        (&[5], 1, 5, "CrashLoopBackOff", 20),
        (&[5, 5, 5], 1, 5, "CrashLoopBackOff", 80),
        (&[5; 9], 1, 5, "CrashLoopBackOff", 300),
        // Ten stable minutes reset the back-off.
        (&[5, 5, 5], 1, 700, "Restarting", 10),
    ];
    for (history, exit, ran, reason, delay) in cases {
        let (status, exited) = daemon_facts(history, exit, ran);
        let number = status.attempts.len() as u32;
        let decision = decide_run_action(&RunFacts {
            now: exited.finished_at.expect("finished"),
            status: &status,
            cancel_requested: false,
            policy: Some(&p),
            container: Some((number, &exited)),
            admitted: true,
            start_at: None,
            tombstone_for: Duration::ZERO,
        });
        let next = decision.status.expect("a status");
        assert_eq!(next.phase, RunPhase::Pending, "{history:?}");
        assert_eq!(
            next.reason.as_deref(),
            Some(reason),
            "{history:?}: {next:?}"
        );
        assert_eq!(
            decision.requeue_after,
            Some(Duration::from_secs(delay)),
            "{history:?}"
        );
        assert_eq!(decision.before.first(), Some(&Effect::DrainLogs));
        assert!(
            next.message
                .as_deref()
                .is_some_and(|m| m.contains(&format!("attempt {} starts", number + 1))),
            "{next:?}"
        );
    }
}

#[test]
fn on_failure_ends_on_success_and_cancel_ends_any_daemon() {
    let (status, exited) = daemon_facts(&[], 0, 5);
    let on_failure = daemon(RestartPolicy::OnFailure, None);
    let facts = RunFacts {
        now: t(10),
        status: &status,
        cancel_requested: false,
        policy: Some(&on_failure),
        container: Some((1, &exited)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let ended = decide_run_action(&facts).status.expect("status");
    assert_eq!(ended.phase, RunPhase::Succeeded);
    let always = daemon(RestartPolicy::Always, None);
    let cancelled = decide_run_action(&RunFacts {
        cancel_requested: true,
        policy: Some(&always),
        ..facts
    })
    .status
    .expect("status");
    assert_eq!(cancelled.phase, RunPhase::Cancelled);
}

#[test]
fn a_periodic_restart_stops_the_attempt_at_its_instant_and_starts_the_next_at_once() {
    let p = daemon(
        RestartPolicy::Never,
        Some(Periodic::Every(Duration::from_secs(60))),
    );
    let mut status = running_status(1);
    status.attempts[0].started_at = Some(ts(0));
    let running = container(ContainerStatus::Running, None, false);
    let facts = RunFacts {
        now: t(30),
        status: &status,
        cancel_requested: false,
        policy: Some(&p),
        container: Some((1, &running)),
        admitted: true,
        start_at: None,
        tombstone_for: Duration::ZERO,
    };
    let before = decide_run_action(&facts);
    assert!(before.before.is_empty());
    assert_eq!(before.requeue_after, Some(Duration::from_secs(30)));
    let due = decide_run_action(&RunFacts {
        now: t(60),
        ..facts
    });
    assert_eq!(due.before, vec![Effect::Stop]);
    let stopped = due.status.expect("status");
    assert_eq!(stopped.attempts[0].reason.as_deref(), Some(REASON_PERIODIC));

    // Its exit (SIGTERM: 143) starts the next attempt at once, even under Never.
    let mut exited = container(ContainerStatus::Exited, Some(143), false);
    exited.finished_at = Some(t(61));
    let next = decide_run_action(&RunFacts {
        now: t(61),
        status: &stopped,
        container: Some((1, &exited)),
        ..facts
    });
    let status = next.status.expect("status");
    assert_eq!(status.reason.as_deref(), Some("PeriodicRestart"));
    assert_eq!(next.requeue_after, Some(Duration::ZERO));

    let cron = Periodic::Cron("0 3 * * *".into());
    assert_eq!(
        cron.after(
            DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .expect("t")
                .to_utc()
        ),
        Some(
            DateTime::parse_from_rfc3339("2026-12-02T03:00:00Z")
                .expect("t")
                .to_utc()
        )
    );
}
