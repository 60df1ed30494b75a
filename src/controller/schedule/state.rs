//! What the schedule controller remembers about each schedule.

use chrono::{DateTime, Utc};

use super::slots::{CompileError, CompiledSchedule, CronCache};
use crate::resource::RawObject;
use crate::resource::object::DecodeError;
use crate::resource::types::{
    ConcurrencyPolicy, Condition, RunPhase, RunStatus, ScheduleSpec, ScheduleStatus,
};

/// Kept when no `history` is set, like CronJob's defaults.
const DEFAULT_SUCCEEDED: u32 = 3;
const DEFAULT_FAILED: u32 = 1;

/// A finished run of a schedule.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct FinishedRun {
    pub name: String,
    pub uid: String,
    pub succeeded: bool,
    pub finished: DateTime<Utc>,
}

impl FinishedRun {
    /// The run (as stored text) as history, if it has finished.
    pub fn of_raw(run: &RawObject) -> Option<FinishedRun> {
        let status: RunStatus = serde_json::from_str(run.status.as_deref()?).ok()?;
        Self::with_status(&run.key.name, &run.uid, &status, run.updated_at)
    }

    fn with_status(
        name: &str,
        uid: &str,
        status: &RunStatus,
        updated_at: DateTime<Utc>,
    ) -> Option<FinishedRun> {
        status.phase.is_finished().then(|| FinishedRun {
            name: name.to_owned(),
            uid: uid.to_owned(),
            succeeded: status.phase == RunPhase::Succeeded,
            finished: updated_at,
        })
    }
}

/// One schedule in memory.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub spec: ScheduleSpec,
    pub compiled: Result<CompiledSchedule, CompileError>,
    pub created: DateTime<Utc>,
    pub status: ScheduleStatus,
    /// [`status_digest`] of the status as last written, to skip writes that change
    /// nothing.
    pub written: Option<u64>,
    pub next: Option<DateTime<Utc>>,
    pub history: Vec<FinishedRun>,
    /// The run created ahead of a slot still to come: the slot and the run's name.
    pub ahead: Option<(DateTime<Utc>, String)>,
}

impl Entry {
    /// The entry of a stored schedule; an unreadable spec or status is an error (the
    /// schedule is then left alone: no runs, no status written over it).
    pub fn from_object(object: &RawObject, crons: &mut CronCache) -> Result<Entry, DecodeError> {
        let spec: ScheduleSpec = object.spec_as()?;
        let status: ScheduleStatus = object.status_as()?;
        Ok(Entry {
            compiled: CompiledSchedule::compile_with(&spec, crons),
            spec,
            created: object.created_at,
            // Stored text is canonical (see `JsonText`), like the text compared with it.
            written: object.status.as_deref().map(status_digest),
            status,
            next: None,
            history: Vec::new(),
            ahead: None,
        })
    }

    /// Whether the run of its next slot may be created ahead of the slot: only when
    /// nothing decided at the slot can change it. Not suspended, and either
    /// concurrencyPolicy Allow, or Forbid / Replace with no run active now: the only
    /// runs that count as active are this schedule's own, created at its slots, so
    /// none can become active before the next slot, and the slot finds nothing to
    /// skip for or to cancel.
    pub fn runs_ahead(&self, pipeline_suspended: bool) -> bool {
        self.compiled.is_ok()
            && !self.spec.suspend
            && !pipeline_suspended
            && (self.spec.concurrency_policy.unwrap_or_default() == ConcurrencyPolicy::Allow
                || self.status.active.is_empty())
    }

    /// Sets a condition; true when its status or reason changed.
    pub fn set_condition(&mut self, condition: Condition) -> bool {
        let conditions = &mut self.status.conditions;
        match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(existing)
                if existing.status == condition.status && existing.reason == condition.reason =>
            {
                existing.message = condition.message;
                false
            }
            Some(existing) => {
                *existing = condition;
                true
            }
            None => {
                conditions.push(condition);
                true
            }
        }
    }

    /// Removes and returns the finished runs beyond the history limits, oldest first.
    pub fn prune_history(&mut self) -> Vec<FinishedRun> {
        let limits = self.spec.history.clone().unwrap_or_default();
        let keep_succeeded = limits.succeeded.unwrap_or(DEFAULT_SUCCEEDED) as usize;
        let keep_failed = limits.failed.unwrap_or(DEFAULT_FAILED) as usize;
        self.history.sort_by(|a, b| {
            b.finished
                .cmp(&a.finished)
                .then_with(|| b.name.cmp(&a.name))
        });
        let (mut succeeded, mut failed) = (0, 0);
        let mut pruned = Vec::new();
        self.history.retain(|run| {
            let (seen, keep) = if run.succeeded {
                (&mut succeeded, keep_succeeded)
            } else {
                (&mut failed, keep_failed)
            };
            *seen += 1;
            if *seen > keep {
                pruned.push(run.clone());
                false
            } else {
                true
            }
        });
        pruned.reverse();
        pruned
    }
}

/// A digest of a status's canonical JSON text: 8 bytes per schedule instead of the text.
pub(super) fn status_digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
