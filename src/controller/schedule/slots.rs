//! Which schedule slots exist and which are due. Pure: the clock is an argument.
//!
//! Cron lines are matched on the wall clock of the schedule's zone, then each matching
//! wall-clock time becomes one instant:
//! - in the repeated hour of an autumn change, the first occurrence (a 02:30 slot runs
//!   once, at 02:30 of the earlier offset);
//! - in the skipped hour of a spring change, the instant the wall clock would have shown
//!   it without the jump (02:30 runs at 03:30 of the new offset). A shifted slot landing
//!   on an existing one collapses into it: every instant runs at most once.
//!
//! `every` slots are fixed intervals anchored at `window.start` (else the Unix epoch), so
//! the same slots come out whenever and wherever they are computed. `at` is one slot.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;

use crate::resource::quantity::parse_duration;
use crate::resource::schedule_time::{parse_cron, parse_instant, parse_window_bound, parse_zone};
use crate::resource::types::ScheduleSpec;

/// How slots recur.
#[derive(Clone, Debug)]
pub enum Recurrence {
    /// Crontab line in a zone.
    Cron(Arc<Cron>, Tz),
    /// Fixed interval from an anchor.
    Every(Duration, DateTime<Utc>),
    /// One shot.
    At(DateTime<Utc>),
}

/// Parsed crontab lines shared between schedules. A parsed line holds about 5 KB (croner
/// keeps a bitfield per field, years included) and thousands of schedules typically share
/// a handful of lines. Entries die with the last schedule using them.
#[derive(Debug, Default)]
pub struct CronCache {
    lines: HashMap<String, Weak<Cron>>,
    /// Live entries at the last sweep; the next sweep comes when the map doubles.
    swept_at: usize,
}

impl CronCache {
    /// The parsed `line`, shared with every other schedule using the same line.
    pub fn parse(&mut self, line: &str) -> Result<Arc<Cron>, String> {
        if let Some(cron) = self.lines.get(line).and_then(Weak::upgrade) {
            return Ok(cron);
        }
        let cron = Arc::new(parse_cron(line)?);
        if self.lines.len() >= 2 * self.swept_at.max(64) {
            self.lines.retain(|_, cron| cron.strong_count() > 0);
            self.swept_at = self.lines.len();
        }
        self.lines.insert(line.to_owned(), Arc::downgrade(&cron));
        Ok(cron)
    }
}

/// A schedule ready for slot arithmetic.
#[derive(Clone, Debug)]
pub struct CompiledSchedule {
    /// The recurrence.
    pub recurrence: Recurrence,
    /// First instant a slot may have.
    pub window_start: Option<DateTime<Utc>>,
    /// Slots at or after this instant do not run.
    pub window_end: Option<DateTime<Utc>>,
}

/// Why a schedule cannot be compiled; each maps to a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CompileError {
    /// `timeZone` is not an IANA zone (condition `UnknownTimeZone`).
    UnknownTimeZone(String),
    /// Anything else invalid (condition `InvalidSchedule`).
    Invalid(String),
}

impl CompiledSchedule {
    /// Compiles a spec.
    pub fn compile(spec: &ScheduleSpec) -> Result<Self, CompileError> {
        Self::compile_with(spec, &mut CronCache::default())
    }

    /// [`CompiledSchedule::compile`], sharing parsed crontab lines through `crons`.
    pub fn compile_with(spec: &ScheduleSpec, crons: &mut CronCache) -> Result<Self, CompileError> {
        let zone = match &spec.time_zone {
            Some(name) => parse_zone(name).map_err(CompileError::UnknownTimeZone)?,
            None => chrono_tz::UTC,
        };
        let bound = |text: &Option<String>| {
            text.as_deref()
                .map(|t| parse_window_bound(t, zone))
                .transpose()
                .map_err(CompileError::Invalid)
        };
        let window_start = bound(&spec.window.as_ref().and_then(|w| w.start.clone()))?;
        let window_end = bound(&spec.window.as_ref().and_then(|w| w.end.clone()))?;
        let recurrence = match (&spec.cron, &spec.every, &spec.at) {
            (Some(line), None, None) => {
                Recurrence::Cron(crons.parse(line).map_err(CompileError::Invalid)?, zone)
            }
            (None, Some(every), None) => {
                let interval =
                    parse_duration(every).map_err(|e| CompileError::Invalid(e.to_string()))?;
                if interval < Duration::from_secs(1) {
                    return Err(CompileError::Invalid(format!(
                        "every {every:?} is shorter than 1s"
                    )));
                }
                Recurrence::Every(interval, window_start.unwrap_or(DateTime::UNIX_EPOCH))
            }
            (None, None, Some(at)) => {
                Recurrence::At(parse_instant(at).map_err(CompileError::Invalid)?)
            }
            _ => {
                return Err(CompileError::Invalid(
                    "set exactly one of cron, every and at".to_owned(),
                ));
            }
        };
        Ok(Self {
            recurrence,
            window_start,
            window_end,
        })
    }

    fn in_window(&self, slot: DateTime<Utc>) -> bool {
        self.window_start.is_none_or(|start| slot >= start)
            && self.window_end.is_none_or(|end| slot < end)
    }

    /// The first slot strictly after `after`, inside the window.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut cursor = after;
        if let Some(start) = self.window_start
            && cursor < start
        {
            cursor = start - chrono::Duration::milliseconds(1);
        }
        let slot = match &self.recurrence {
            Recurrence::At(at) => (*at > cursor).then_some(*at),
            Recurrence::Every(interval, anchor) => Some(next_interval(cursor, *interval, *anchor)),
            Recurrence::Cron(cron, zone) => next_cron(cron, *zone, cursor),
        }?;
        self.in_window(slot).then_some(slot)
    }

    /// The latest slot at or before `at`, not before `not_before`, inside the window.
    pub fn latest_at_or_before(
        &self,
        at: DateTime<Utc>,
        not_before: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let at = match self.window_end {
            Some(end) if at >= end => end - chrono::Duration::milliseconds(1),
            _ => at,
        };
        let slot = match &self.recurrence {
            Recurrence::At(slot) => (*slot <= at).then_some(*slot),
            Recurrence::Every(interval, anchor) => {
                let step = interval.as_millis() as i64;
                let since = (at - *anchor).num_milliseconds();
                (since >= 0).then(|| {
                    *anchor + chrono::Duration::milliseconds(since - since.rem_euclid(step))
                })
            }
            Recurrence::Cron(cron, zone) => latest_cron(cron, *zone, at, not_before),
        }?;
        (slot >= not_before && self.in_window(slot)).then_some(slot)
    }

    /// Counts slots in `(after, until]` (bounded; for the missed-slot event).
    pub fn count_between(&self, after: DateTime<Utc>, until: DateTime<Utc>, limit: u32) -> u32 {
        let mut count = 0;
        let mut cursor = after;
        while count < limit {
            match self.next_after(cursor) {
                Some(slot) if slot <= until => {
                    count += 1;
                    cursor = slot;
                }
                _ => break,
            }
        }
        count
    }
}

fn next_interval(after: DateTime<Utc>, interval: Duration, anchor: DateTime<Utc>) -> DateTime<Utc> {
    let step = interval.as_millis() as i64;
    let since = (after - anchor).num_milliseconds();
    let steps = if since < 0 { 0 } else { since / step + 1 };
    anchor + chrono::Duration::milliseconds(steps * step)
}

/// Maps a wall-clock time to the instant its slot runs at (see the module doc).
fn instant_of(zone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // In a gap: read the wall-clock time with the offset in force before it.
            let before = zone
                .from_local_datetime(&(local - chrono::Duration::hours(3)))
                .earliest()?;
            let offset = chrono::Offset::fix(before.offset()).local_minus_utc();
            Some(Utc.from_utc_datetime(&(local - chrono::Duration::seconds(i64::from(offset)))))
        }
    }
}

/// Offset changes are at most a few hours; near one, wall-clock matches are searched
/// this far around an instant.
const MARGIN: chrono::Duration = chrono::Duration::hours(3);

/// True when the zone's offset changes within [`MARGIN`] of `t`.
fn transition_near(zone: Tz, t: DateTime<Utc>) -> bool {
    let offset =
        |t: DateTime<Utc>| chrono::Offset::fix(t.with_timezone(&zone).offset()).local_minus_utc();
    let here = offset(t);
    offset(t - MARGIN) != here || offset(t + MARGIN) != here
}

fn next_cron(cron: &Cron, zone: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let near = transition_near(zone, after);
    let margin = if near {
        MARGIN
    } else {
        chrono::Duration::zero()
    };
    let mut cursor = after.with_timezone(&zone).naive_local() - margin;
    let mut best: Option<DateTime<Utc>> = None;
    for _ in 0..1_000 {
        let local = cron.find_next_occurrence(&cursor, false).ok()?;
        let instant = instant_of(zone, local)?;
        if instant > after && best.is_none_or(|b| instant < b) {
            best = Some(instant);
        }
        // Later wall-clock matches map to later instants once past the margin.
        if let Some(b) = best
            && (!near || local > b.with_timezone(&zone).naive_local() + MARGIN)
        {
            break;
        }
        cursor = local;
    }
    best
}

fn latest_cron(
    cron: &Cron,
    zone: Tz,
    at: DateTime<Utc>,
    not_before: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let near = transition_near(zone, at);
    let margin = if near {
        MARGIN
    } else {
        chrono::Duration::zero()
    };
    let mut cursor = at.with_timezone(&zone).naive_local() + margin + chrono::Duration::seconds(1);
    let floor = not_before.with_timezone(&zone).naive_local() - MARGIN;
    let mut best: Option<DateTime<Utc>> = None;
    for _ in 0..1_000 {
        let Ok(local) = cron.find_previous_occurrence(&cursor, false) else {
            break;
        };
        if local < floor {
            break;
        }
        let instant = instant_of(zone, local)?;
        if instant <= at && best.is_none_or(|b| instant > b) {
            best = Some(instant);
        }
        if let Some(b) = best
            && (!near || local + MARGIN < b.with_timezone(&zone).naive_local())
        {
            break;
        }
        cursor = local;
    }
    best.filter(|b| *b >= not_before)
}

/// What a schedule should do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DueSlots {
    /// The slot to create a run for now.
    pub run: Option<DateTime<Utc>>,
    /// The most recent slot that was missed by more than `startingDeadline` (skipped).
    pub skipped: Option<DateTime<Utc>>,
    /// Older missed slots that are not run (never a storm of catch-up runs).
    pub missed_older: u32,
    /// The newest slot considered; becomes `status.lastSlot`.
    pub considered: Option<DateTime<Utc>>,
    /// The next slot after now.
    pub next: Option<DateTime<Utc>>,
}

/// Slots due at `now` for a schedule whose last considered slot is `last` (or that was
/// created at `created`): only the most recent unconsidered slot runs, and only within
/// `starting_deadline` of its time; older ones are counted as missed.
pub fn due_slots(
    schedule: &CompiledSchedule,
    last: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    starting_deadline: Option<Duration>,
) -> DueSlots {
    let floor = last.unwrap_or(created - chrono::Duration::milliseconds(1));
    let next = schedule.next_after(now);
    let Some(latest) = schedule
        .latest_at_or_before(now, floor)
        .filter(|slot| *slot > floor)
    else {
        return DueSlots {
            next,
            ..DueSlots::default()
        };
    };
    let missed_older = schedule
        .count_between(floor, latest, 1_000)
        .saturating_sub(1);
    let late = starting_deadline
        .is_some_and(|deadline| (now - latest).to_std().unwrap_or_default() > deadline);
    DueSlots {
        run: (!late).then_some(latest),
        skipped: late.then_some(latest),
        missed_older,
        considered: Some(latest),
        next,
    }
}
