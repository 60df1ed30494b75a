//! The pure decisions of notification: which events a run stands for, whether a
//! notifier is due to hear of it, whether it already has, and when a delivery is tried
//! again. No I/O: the controller gathers the facts and acts on the answers.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::controller::runtime::ResourceSample;
use crate::resource::quantity::{parse_cpus, parse_memory};
use crate::resource::types::{NotifyEvent, ResourceLimits, RunPhase, RunStatus};
use crate::store::events::Event;

/// Reason of the event recorded when a notification was delivered.
pub const SENT: &str = "NotificationSent";
/// Reason of the event recorded when every try of a delivery failed.
pub const FAILED: &str = "NotificationFailed";

/// When the run ended: its last attempt's end.
pub fn finished_at(status: &RunStatus) -> Option<DateTime<Utc>> {
    status
        .attempts
        .iter()
        .rev()
        .find_map(|a| a.finished_at.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// From the first attempt's start to the last attempt's end.
pub fn run_duration(status: &RunStatus) -> Option<Duration> {
    let started = status
        .attempts
        .iter()
        .find_map(|a| a.started_at.as_deref())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())?;
    let finished = finished_at(status)?;
    (finished - started.with_timezone(&Utc)).to_std().ok()
}

/// The events a finished run stands for: `RunFailed` for a failure, `RunRecovered` for
/// a success after a failure (`previous` is the phase of the pipeline's latest run that
/// finished before it, cancelled runs left out), `SoftLimitExceeded` when `breach`.
pub fn run_events(phase: RunPhase, previous: Option<RunPhase>, breach: bool) -> Vec<NotifyEvent> {
    let mut events = Vec::new();
    match phase {
        RunPhase::Failed => events.push(NotifyEvent::RunFailed),
        RunPhase::Succeeded if previous == Some(RunPhase::Failed) => {
            events.push(NotifyEvent::RunRecovered)
        }
        _ => {}
    }
    if breach {
        events.push(NotifyEvent::SoftLimitExceeded);
    }
    events
}

/// The phase of the latest run in `history` (finish time, phase) that finished
/// strictly before `before`, cancelled runs left out.
pub fn previous_phase(
    history: &[(DateTime<Utc>, RunPhase)],
    before: DateTime<Utc>,
) -> Option<RunPhase> {
    history
        .iter()
        .filter(|(at, phase)| *at < before && *phase != RunPhase::Cancelled)
        .max_by_key(|(at, _)| *at)
        .map(|(_, phase)| *phase)
}

/// What went over a soft limit, in words; `None` when nothing did (or no soft limit is
/// set). CPU is compared in percent of one core, as the samples are taken.
pub fn soft_limit_breach(samples: &[ResourceSample], limits: &ResourceLimits) -> Option<String> {
    let mut found = Vec::new();
    if let Some(limit) = limits.memory_soft_limit.as_deref()
        && let Ok(bytes) = parse_memory(limit)
    {
        let peak = samples.iter().map(|s| s.memory_bytes).max().unwrap_or(0);
        if peak > bytes {
            found.push(format!(
                "memory peaked at {:.1} MiB, above the soft limit of {limit}",
                peak as f64 / 1_048_576.0
            ));
        }
    }
    if let Some(limit) = limits.cpus_soft_limit.as_deref()
        && let Ok(nano) = parse_cpus(limit)
    {
        let percent = nano as f64 / 1e7;
        let peak = samples.iter().map(|s| s.cpu_percent).fold(0.0, f64::max);
        if peak > percent {
            found.push(format!(
                "CPU peaked at {peak:.0}% of a core, above the soft limit of {limit} CPUs"
            ));
        }
    }
    (!found.is_empty()).then(|| found.join("; "))
}

/// Whether a notifier created at `created` hears of something that happened `at`:
/// never of what happened before it existed, nor of what is older than `catch_up`
/// (an operator that was down for a week does not send a week of mail).
pub fn is_due(
    created: DateTime<Utc>,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: Duration,
) -> bool {
    let horizon = chrono::Duration::from_std(catch_up).unwrap_or(chrono::Duration::MAX);
    at >= created && now.signed_duration_since(at) <= horizon
}

/// The start of every event message recorded about one delivery: event, notifier,
/// channel and, for objects with several notifiable moments (a schedule's missed slots,
/// the git source's failed syncs), which one.
pub fn marker(event: &str, notifier: &str, channel: &str, moment: Option<&str>) -> String {
    match moment {
        Some(moment) => format!("{event} to {notifier}/{channel} for {moment}"),
        None => format!("{event} to {notifier}/{channel}"),
    }
}

/// True when an event already records the delivery `marker` (sent or given up): at
/// least once, and at most once more after a crash between sending and recording.
pub fn already_handled(events: &[Event], marker: &str) -> bool {
    events.iter().any(|e| {
        (e.reason == SENT || e.reason == FAILED)
            && e.message
                .strip_prefix(marker)
                .is_some_and(|rest| rest.starts_with(" ("))
    })
}

/// The wait before try `attempt` (2, 3, …): `first`, doubled each time, at most a minute.
pub fn backoff(first: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(2));
    first.saturating_mul(factor).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ObjectKey;
    use crate::resource::kind::Kind;
    use crate::resource::types::Attempt;
    use crate::store::events::EventType;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("a time")
    }

    #[test]
    fn failures_recoveries_and_breaches() {
        use RunPhase::*;
        for (phase, previous, breach, expected) in [
            (Failed, None, false, vec![NotifyEvent::RunFailed]),
            (Failed, Some(Failed), false, vec![NotifyEvent::RunFailed]),
            (
                Succeeded,
                Some(Failed),
                false,
                vec![NotifyEvent::RunRecovered],
            ),
            (Succeeded, Some(Succeeded), false, vec![]),
            (Succeeded, None, false, vec![]),
            (Cancelled, Some(Failed), false, vec![]),
            (Succeeded, None, true, vec![NotifyEvent::SoftLimitExceeded]),
        ] {
            assert_eq!(
                run_events(phase, previous, breach),
                expected,
                "{phase:?} after {previous:?}"
            );
        }
    }

    #[test]
    fn the_previous_run_is_the_latest_finished_before_and_not_cancelled() {
        use RunPhase::*;
        let history = [
            (at(10), Failed),
            (at(20), Succeeded),
            (at(30), Cancelled),
            (at(40), Failed),
        ];
        assert_eq!(previous_phase(&history, at(35)), Some(Succeeded));
        assert_eq!(previous_phase(&history, at(40)), Some(Succeeded));
        assert_eq!(previous_phase(&history, at(41)), Some(Failed));
        assert_eq!(previous_phase(&history, at(10)), None);
    }

    #[test]
    fn soft_limits_compare_the_peaks() {
        let samples = [
            ResourceSample {
                at: at(0),
                cpu_percent: 40.0,
                memory_bytes: 100 << 20,
            },
            ResourceSample {
                at: at(2),
                cpu_percent: 95.0,
                memory_bytes: 300 << 20,
            },
        ];
        let limits = |memory: Option<&str>, cpus: Option<&str>| ResourceLimits {
            memory_soft_limit: memory.map(str::to_owned),
            cpus_soft_limit: cpus.map(str::to_owned),
            ..ResourceLimits::default()
        };
        assert_eq!(soft_limit_breach(&samples, &limits(None, None)), None);
        assert_eq!(
            soft_limit_breach(&samples, &limits(Some("512Mi"), Some("1"))),
            None
        );
        let breach = soft_limit_breach(&samples, &limits(Some("200Mi"), Some("500m")))
            .expect("both exceeded");
        assert!(
            breach.contains("memory peaked at 300.0 MiB") && breach.contains("CPU peaked at 95%"),
            "{breach}"
        );
    }

    #[test]
    fn notifiers_hear_of_nothing_before_them_nor_older_than_the_catch_up() {
        let hour = Duration::from_secs(3600);
        assert!(is_due(at(0), at(10), at(20), hour));
        assert!(!is_due(at(10), at(0), at(20), hour));
        assert!(!is_due(at(0), at(10), at(10 + 3601), hour));
    }

    #[test]
    fn a_recorded_delivery_is_recognised_by_its_marker_only() {
        let event = |reason: &str, message: &str| Event {
            involved: ObjectKey::new(Kind::Run, "default", "r"),
            event_type: EventType::Normal,
            reason: reason.into(),
            message: message.into(),
            count: 1,
            first_seen: at(0),
            last_seen: at(0),
        };
        let events = [
            event(SENT, "RunFailed to ops/email (1 attempt(s), 80 ms)"),
            event(FAILED, "RunFailed to ops/slack (5 attempt(s)): HTTP 500"),
            event("Started", "RunFailed to ops/teams (whatever)"),
        ];
        assert!(already_handled(
            &events,
            &marker("RunFailed", "ops", "email", None)
        ));
        assert!(already_handled(
            &events,
            &marker("RunFailed", "ops", "slack", None)
        ));
        assert!(!already_handled(
            &events,
            &marker("RunFailed", "ops", "teams", None)
        ));
        assert!(!already_handled(
            &events,
            &marker("RunFailed", "op", "email", None)
        ));
        assert!(!already_handled(
            &events,
            &marker("RunRecovered", "ops", "email", None)
        ));
    }

    #[test]
    fn duration_spans_every_attempt_and_backoff_doubles_to_a_minute() {
        let status = RunStatus {
            attempts: vec![
                Attempt {
                    started_at: Some("2027-01-15T08:00:00Z".into()),
                    finished_at: Some("2027-01-15T08:00:30Z".into()),
                    ..Attempt::default()
                },
                Attempt {
                    started_at: Some("2027-01-15T08:01:00Z".into()),
                    finished_at: Some("2027-01-15T08:01:45Z".into()),
                    ..Attempt::default()
                },
            ],
            ..RunStatus::default()
        };
        assert_eq!(run_duration(&status), Some(Duration::from_secs(105)));
        let first = Duration::from_secs(1);
        assert_eq!(backoff(first, 2), Duration::from_secs(1));
        assert_eq!(backoff(first, 4), Duration::from_secs(4));
        assert_eq!(backoff(first, 30), Duration::from_secs(60));
    }
}
