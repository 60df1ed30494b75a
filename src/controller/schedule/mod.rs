//! The schedule controller: turns Schedule slots into Runs, exactly once per slot.
//!
//! Schedules are held in memory (refreshed from store changes and a periodic re-list)
//! with a timeline of their next slots; one loop sleeps until the earliest slot, then
//! evaluates every schedule due at that instant together and creates their runs in one
//! transaction. Run names are derived from the slot (see [`naming`]), so a repeated
//! evaluation, a restart or a second operator on the same database finds the name taken
//! instead of creating a duplicate.
//!
//! A run whose slot nothing can change at the slot (not suspended, and
//! concurrencyPolicy Allow, or Forbid / Replace with no run active) is created `lead`
//! ahead of it: the run controller creates its container
//! then and starts it at the slot, so the slot's first line waits only for Docker's
//! start. A change of the schedule or its pipeline before the slot withdraws (deletes)
//! that run, and its container with it; the slot is then planned again.

pub mod naming;
#[cfg(test)]
mod plan_tests;
pub mod slots;
#[cfg(test)]
mod slots_tests;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use self::naming::slot_run_name;
use self::slots::{CompileError, CronCache, due_slots};
use self::state::{Entry, FinishedRun, status_digest};
use crate::controller::run::logs::RunFiles;
use crate::metrics::Metrics;
use crate::resource::RawObject;
use crate::resource::object::DecodeError;
use crate::resource::quantity::parse_duration;
use crate::resource::schedule_time::parse_instant;
use crate::resource::types::{
    ConcurrencyPolicy, Condition, LocalRef, RunSpec, RunStatus, ScheduleSpec, Trigger,
};
use crate::resource::{DesiredObject, Kind, ObjectKey};
use crate::store::events::EventType;
use crate::store::{ChangeKind, Store, StoreError, StoreEvent};

/// Label on runs created by a schedule, naming it.
pub const SCHEDULE_LABEL: &str = "flotilla.dev/schedule";

/// Evaluations and run creations are batched per wake-up; this bounds one batch.
const MAX_BATCH: usize = 20_000;

/// The schedule controller.
pub struct ScheduleController {
    store: Store,
    files: RunFiles,
    state: Mutex<State>,
    /// How long before its slot a run is created (zero: at the slot).
    lead: Duration,
    resync_every: Duration,
    metrics: std::sync::Arc<Metrics>,
}

/// Runs read per query by a resync.
const RESYNC_PAGE: i64 = 1_000;

/// The runs of one schedule as stored.
#[derive(Default)]
struct ScheduleRuns {
    unfinished: Vec<String>,
    finished: Vec<FinishedRun>,
    /// An unfinished run whose slot is still to come (created ahead of it).
    ahead: Option<(DateTime<Utc>, String)>,
}

/// The `slot` of a Run's spec (stored JSON text), if any.
fn slot_of(spec: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Slot {
        slot: Option<String>,
    }
    serde_json::from_str::<Slot>(spec).ok()?.slot
}

/// Whether a Pipeline's spec (stored JSON text) has `suspend: true`.
fn is_suspended(spec: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Suspend {
        #[serde(default)]
        suspend: bool,
    }
    serde_json::from_str::<Suspend>(spec).is_ok_and(|s| s.suspend)
}

/// Schedule statuses written per transaction.
const STATUS_BATCH: usize = 500;

#[derive(Default)]
struct State {
    schedules: HashMap<ObjectKey, Entry>,
    crons: CronCache,
    /// Every schedule's next slot.
    timeline: BTreeSet<(DateTime<Utc>, ObjectKey)>,
    /// Next slots whose run may still be created ahead (empty with no lead).
    ahead: BTreeSet<(DateTime<Utc>, ObjectKey)>,
    suspended_pipelines: HashSet<ObjectKey>,
}

impl State {
    fn set_next(&mut self, key: &ObjectKey, next: Option<DateTime<Utc>>, lead: Duration) {
        if let Some(entry) = self.schedules.get_mut(key) {
            if let Some(previous) = entry.next.take() {
                self.timeline.remove(&(previous, key.clone()));
                self.ahead.remove(&(previous, key.clone()));
            }
            entry.next = next;
            if let Some(next) = next {
                self.timeline.insert((next, key.clone()));
                let made = entry.ahead.as_ref().is_some_and(|(slot, _)| *slot == next);
                if !lead.is_zero() && !made {
                    self.ahead.insert((next, key.clone()));
                }
            }
        }
    }

    fn pipeline_suspended(&self, schedule: &ObjectKey, entry: &Entry) -> bool {
        self.suspended_pipelines.contains(&ObjectKey::new(
            Kind::Pipeline,
            schedule.namespace.clone(),
            entry.spec.pipeline_ref.name.clone(),
        ))
    }

    /// Drops a run from the active runs and history of `schedule`, or of every schedule
    /// when it is not known.
    fn forget_run(&mut self, schedule: Option<&ObjectKey>, run: &str) {
        let forget = |entry: &mut Entry| {
            entry.status.active.retain(|n| n != run);
            entry.history.retain(|h| h.name != run);
        };
        match schedule {
            Some(key) => self.schedules.get_mut(key).into_iter().for_each(forget),
            None => self.schedules.values_mut().for_each(forget),
        }
    }

    fn remove(&mut self, key: &ObjectKey) {
        self.set_next(key, None, Duration::ZERO);
        self.schedules.remove(key);
    }

    /// Takes back the run `key` created ahead of a slot still to come (after `now`):
    /// removed from its active runs, returned for deletion.
    fn take_ahead(
        &mut self,
        key: &ObjectKey,
        now: DateTime<Utc>,
    ) -> Option<(DateTime<Utc>, String)> {
        let entry = self.schedules.get_mut(key)?;
        let (slot, name) = entry.ahead.take_if(|(slot, _)| *slot > now)?;
        entry.status.active.retain(|n| *n != name);
        Some((slot, name))
    }

    /// The entry of a stored schedule; one that cannot be read is forgotten (no runs,
    /// no status written over it) and its error kept in `unreadable` for reporting.
    fn read_entry(
        &mut self,
        object: &RawObject,
        unreadable: &mut Vec<DecodeError>,
    ) -> Option<Entry> {
        match Entry::from_object(object, &mut self.crons) {
            Ok(entry) => Some(entry),
            Err(e) => {
                self.remove(&object.key);
                unreadable.push(e);
                None
            }
        }
    }
}

/// Writes one evaluation produces.
#[derive(Default)]
struct Plan {
    runs: Vec<(DesiredObject, Option<serde_json::Value>)>,
    cancels: Vec<ObjectKey>,
    events: Vec<(ObjectKey, EventType, String, String)>,
    statuses: Vec<ObjectKey>,
}

impl ScheduleController {
    /// A controller over `store`; run data under `files` is deleted with pruned runs.
    /// Runs of schedules that allow it are created `lead` before their slot.
    pub fn new(
        store: Store,
        files: RunFiles,
        metrics: std::sync::Arc<Metrics>,
        lead: Duration,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            store,
            files,
            state: Mutex::new(State::default()),
            lead,
            resync_every: Duration::from_secs(60),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs until `shutdown`.
    pub async fn run(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.store.subscribe();
        self.resync().await;
        let mut resync = tokio::time::interval(self.resync_every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resync.tick().await;
        loop {
            let earliest = {
                let state = self.lock();
                let slot = state.timeline.first().map(|(at, _)| *at);
                let ahead = state.ahead.first().map(|(at, _)| *at - self.lead);
                slot.into_iter().chain(ahead).min()
            };
            let sleep = earliest
                .map(|at| (at - Utc::now()).to_std().unwrap_or_default())
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(sleep) => self.evaluate_due().await,
                _ = resync.tick() => self.resync().await,
                change = changes.recv() => match change {
                    Ok(event) => {
                        // Take every change already waiting, so an apply of thousands of
                        // schedules is evaluated in one pass (its statuses in a few batches).
                        let mut batch = vec![event];
                        let mut lagged = false;
                        while batch.len() < MAX_BATCH {
                            match changes.try_recv() {
                                Ok(event) => batch.push(event),
                                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => lagged = true,
                                Err(_) => break,
                            }
                        }
                        self.on_changes(batch).await;
                        if lagged {
                            self.resync().await;
                        }
                    }
                    Err(RecvError::Lagged(_)) => self.resync().await,
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// Reloads schedules, pipelines and schedule runs from the store, then evaluates all.
    async fn resync(&self) {
        let loaded = async {
            Ok::<_, crate::store::StoreError>((
                self.store.list_raw(Kind::Schedule, None).await?,
                self.store.list_raw(Kind::Pipeline, None).await?,
                self.runs_by_schedule().await?,
            ))
        }
        .await;
        let (schedules, pipelines, mut by_schedule) = match loaded {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(code = e.code(), "schedule resync failed: {e}");
                return;
            }
        };
        let mut overdue = Vec::new();
        let mut unreadable = Vec::new();
        let keys: Vec<ObjectKey> = {
            let mut state = self.lock();
            let live: HashSet<ObjectKey> = schedules.iter().map(|s| s.key.clone()).collect();
            let gone: Vec<ObjectKey> = state
                .schedules
                .keys()
                .filter(|k| !live.contains(k))
                .cloned()
                .collect();
            for key in gone {
                state.remove(&key);
            }
            state.suspended_pipelines = pipelines
                .iter()
                .filter(|p| is_suspended(&p.spec))
                .map(|p| p.key.clone())
                .collect();
            for object in schedules {
                let runs = by_schedule.remove(&object.key).unwrap_or_default();
                let Some(mut entry) = state.read_entry(&object, &mut unreadable) else {
                    continue;
                };
                entry.status.active = runs.unfinished;
                entry.status.active.sort();
                entry.history = runs.finished;
                entry.ahead = runs.ahead;
                // Runs that finished while changes were missed are pruned here.
                let namespace = &object.key.namespace;
                overdue.extend(entry.prune_history().into_iter().map(|run| {
                    (
                        ObjectKey::new(Kind::Run, namespace.clone(), run.name),
                        run.uid,
                    )
                }));
                let key = object.key.clone();
                let next = state.schedules.get(&key).and_then(|e| e.next);
                entry.next = next;
                state.schedules.insert(key, entry);
            }
            state.schedules.keys().cloned().collect()
        };
        self.prune(overdue).await;
        self.report_unreadable(unreadable).await;
        self.evaluate(keys).await;
    }

    /// Reports schedules whose stored spec or status cannot be read: logged, counted and
    /// a Warning event on the schedule. They make no runs and get no status written.
    async fn report_unreadable(&self, errors: Vec<DecodeError>) {
        for error in errors {
            self.metrics.unreadable_objects.inc();
            tracing::error!("schedule left alone: {error}; fix or delete it");
            let message = format!(
                "{error}; the schedule makes no runs until it is fixed, and nothing stored is changed"
            );
            if let Err(e) = self
                .store
                .record_event(&error.key, EventType::Warning, "UnreadableObject", &message)
                .await
            {
                tracing::warn!(code = e.code(), "cannot record an event: {e}");
            }
        }
    }

    /// The unfinished run names and finished runs of every schedule, read a page at a time
    /// so that a store holding 100,000 runs is never in memory at once.
    async fn runs_by_schedule(&self) -> Result<HashMap<ObjectKey, ScheduleRuns>, StoreError> {
        let mut by_schedule: HashMap<ObjectKey, ScheduleRuns> = HashMap::new();
        let mut after: Option<(String, String)> = None;
        let now = Utc::now();
        loop {
            let page = self
                .store
                .list_raw_page(
                    Kind::Run,
                    None,
                    after
                        .as_ref()
                        .map(|(ns, name)| (ns.as_str(), name.as_str())),
                    RESYNC_PAGE,
                )
                .await?
                .objects;
            for run in &page {
                let labels: BTreeMap<String, String> = match run.labels_map() {
                    Ok(labels) => labels,
                    Err(e) => {
                        self.metrics.unreadable_objects.inc();
                        tracing::error!("run left out of its schedule's history: {e}");
                        continue;
                    }
                };
                let Some(schedule) = labels.get(SCHEDULE_LABEL) else {
                    continue;
                };
                let key =
                    ObjectKey::new(Kind::Schedule, run.key.namespace.clone(), schedule.clone());
                let runs = by_schedule.entry(key).or_default();
                match FinishedRun::of_raw(run) {
                    Some(finished) => runs.finished.push(finished),
                    None => {
                        let slot = slot_of(&run.spec).and_then(|s| parse_instant(&s).ok());
                        if let Some(slot) = slot.filter(|slot| *slot > now) {
                            runs.ahead = Some((slot, run.key.name.clone()));
                        }
                        runs.unfinished.push(run.key.name.clone());
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() as i64 == RESYNC_PAGE => {
                    after = Some((last.key.namespace.clone(), last.key.name.clone()));
                }
                _ => return Ok(by_schedule),
            }
        }
    }

    async fn on_changes(&self, events: Vec<StoreEvent>) {
        let mut upserted = Vec::new();
        let mut unreadable = Vec::new();
        // Runs created ahead of slots that a change has made stale.
        let mut withdrawn = Vec::new();
        // Runs of schedules that finished: history to prune, statuses to write, for the
        // whole batch of changes at once.
        let mut pruned = Vec::new();
        let mut finished_in = Vec::new();
        let now = Utc::now();
        for event in events {
            match (event.key.kind, event.change) {
                (Kind::Schedule, ChangeKind::StatusModified) => {}
                (Kind::Schedule, ChangeKind::Deleted) => {
                    let mut state = self.lock();
                    withdrawn.extend(
                        state
                            .take_ahead(&event.key, now)
                            .map(|a| (event.key.clone(), a)),
                    );
                    state.remove(&event.key);
                }
                (Kind::Schedule, _) => {
                    let object = &*event.object;
                    let mut state = self.lock();
                    let Some(mut entry) = state.read_entry(object, &mut unreadable) else {
                        continue;
                    };
                    if let Some(previous) = state.schedules.get(&object.key) {
                        entry.status.active = previous.status.active.clone();
                        entry.history = previous.history.clone();
                        entry.next = previous.next;
                        entry.ahead = previous.ahead.clone();
                        let changed = previous.spec != entry.spec;
                        state.schedules.insert(object.key.clone(), entry);
                        if changed {
                            withdrawn.extend(
                                state
                                    .take_ahead(&event.key, now)
                                    .map(|a| (event.key.clone(), a)),
                            );
                        }
                    } else {
                        state.schedules.insert(object.key.clone(), entry);
                    }
                    upserted.push(event.key);
                }
                (Kind::Pipeline, ChangeKind::StatusModified) => {}
                (Kind::Pipeline, _) => {
                    let suspended =
                        event.change != ChangeKind::Deleted && is_suspended(&event.object.spec);
                    let mut state = self.lock();
                    if suspended {
                        state.suspended_pipelines.insert(event.key.clone());
                    } else {
                        state.suspended_pipelines.remove(&event.key);
                    }
                    // Runs created ahead hold containers built from the pipeline as it
                    // was: they are made again from the pipeline as it is.
                    if event.change != ChangeKind::Added {
                        let affected: Vec<ObjectKey> = state
                            .schedules
                            .iter()
                            .filter(|(k, e)| {
                                e.ahead.is_some()
                                    && k.namespace == event.key.namespace
                                    && e.spec.pipeline_ref.name == event.key.name
                            })
                            .map(|(k, _)| k.clone())
                            .collect();
                        for key in affected {
                            if let Some(ahead) = state.take_ahead(&key, now) {
                                withdrawn.push((key.clone(), ahead));
                                upserted.push(key);
                            }
                        }
                    }
                }
                (Kind::Run, ChangeKind::Added) => {}
                (Kind::Run, ChangeKind::Deleted) => self.on_run_deleted(&event.object),
                (Kind::Run, _) => {
                    if let Some(schedule) = self.on_run_change(&event.object, &mut pruned) {
                        finished_in.push(schedule);
                    }
                }
                (Kind::Secret | Kind::Notifier, _) => {}
            }
        }
        self.report_unreadable(unreadable).await;
        self.withdraw(withdrawn).await;
        self.prune(pruned).await;
        self.write_statuses(finished_in).await;
        upserted.sort();
        upserted.dedup();
        self.evaluate(upserted).await;
    }

    /// Deletes runs created ahead of slots that a change of their schedule or pipeline
    /// made stale (their containers go with them), with an event on the schedule.
    async fn withdraw(&self, runs: Vec<(ObjectKey, (DateTime<Utc>, String))>) {
        for (schedule, (slot, name)) in runs {
            let run = ObjectKey::new(Kind::Run, schedule.namespace.clone(), name.clone());
            match self.store.delete(&run, None).await {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(run = %run, code = e.code(), "cannot withdraw a run created ahead: {e}");
                    continue;
                }
            }
            let _ = self.store.delete_events(&run).await;
            let message = format!(
                "{name}, created ahead of slot {}, was withdrawn: the schedule or its pipeline changed before the slot",
                slot.to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            if let Err(e) = self
                .store
                .record_event(&schedule, EventType::Normal, "RunWithdrawn", &message)
                .await
            {
                tracing::warn!(code = e.code(), "cannot record an event: {e}");
            }
        }
    }

    /// Drops a deleted run from its schedule's active runs and history. The schedule is
    /// named by the run's label: looking through every schedule instead cost 10,000 ×
    /// 10,000 steps when a slot's pruning deleted the runs of 10,000 schedules.
    fn on_run_deleted(&self, run: &RawObject) {
        let schedule = match run.labels_map() {
            Ok(labels) => match labels.get(SCHEDULE_LABEL) {
                Some(name) => Some(ObjectKey::new(
                    Kind::Schedule,
                    run.key.namespace.clone(),
                    name.clone(),
                )),
                None => return,
            },
            // Labels that cannot be read: whichever schedule lists it.
            Err(_) => None,
        };
        self.lock().forget_run(schedule.as_ref(), &run.key.name);
    }

    /// Keeps `status.active` and the history of the run's schedule current: a finished
    /// run moves to the history, and runs beyond the history limits are added to
    /// `pruned`. Returns the schedule when its status changed.
    fn on_run_change(
        &self,
        run: &RawObject,
        pruned: &mut Vec<(ObjectKey, String)>,
    ) -> Option<ObjectKey> {
        let Ok(labels) = run.labels_map() else {
            return None;
        };
        let schedule = labels.get(SCHEDULE_LABEL)?;
        let schedule_key =
            ObjectKey::new(Kind::Schedule, run.key.namespace.clone(), schedule.clone());
        let finished = FinishedRun::of_raw(run)?;
        let mut state = self.lock();
        let entry = state.schedules.get_mut(&schedule_key)?;
        let was_active = entry.status.active.contains(&run.key.name);
        entry.status.active.retain(|n| *n != run.key.name);
        if !entry.history.iter().any(|h| h.name == finished.name) {
            entry.history.push(finished);
        }
        let prune = entry.prune_history();
        let changed = was_active || !prune.is_empty();
        pruned.extend(prune.into_iter().map(|old| {
            (
                ObjectKey::new(Kind::Run, run.key.namespace.clone(), old.name),
                old.uid,
            )
        }));
        changed.then_some(schedule_key)
    }

    /// Deletes pruned runs (`(run, uid)`) with their events and logs (local, and shipped
    /// to a shared store).
    async fn prune(&self, runs: Vec<(ObjectKey, String)>) {
        crate::controller::retention::delete_runs(&self.store, &self.files, runs).await;
    }

    async fn evaluate_due(&self) {
        let now = Utc::now();
        let due: Vec<ObjectKey> = {
            let state = self.lock();
            state
                .timeline
                .iter()
                .take_while(|(at, _)| *at <= now)
                .take(MAX_BATCH)
                .map(|(_, k)| k.clone())
                .collect()
        };
        self.evaluate(due).await;
        self.create_ahead(now).await;
    }

    /// Creates the runs of slots less than `lead` away whose schedules allow it.
    async fn create_ahead(&self, now: DateTime<Utc>) {
        if self.lead.is_zero() {
            return;
        }
        let mut plan = Plan::default();
        {
            let mut state = self.lock();
            let horizon = now + chrono::Duration::from_std(self.lead).unwrap_or_default();
            while plan.runs.len() < MAX_BATCH {
                let Some((slot, key)) = state.ahead.first().cloned() else {
                    break;
                };
                if slot > horizon {
                    break;
                }
                state.ahead.remove(&(slot, key.clone()));
                // A slot already here is evaluated at it, not ahead.
                if slot <= now {
                    continue;
                }
                let Some(entry) = state.schedules.get(&key) else {
                    continue;
                };
                if entry.next != Some(slot)
                    || !entry.runs_ahead(state.pipeline_suspended(&key, entry))
                {
                    continue;
                }
                let name = slot_run_name(&key.name, slot);
                plan.runs
                    .push(scheduled_run(&key, &entry.spec, &name, slot));
                plan.statuses.push(key.clone());
                if let Some(entry) = state.schedules.get_mut(&key) {
                    if !entry.status.active.contains(&name) {
                        entry.status.active.push(name.clone());
                    }
                    entry.ahead = Some((slot, name));
                }
            }
        }
        self.execute(plan).await;
    }

    /// Evaluates schedules at the current time and writes the outcome.
    async fn evaluate(&self, keys: Vec<ObjectKey>) {
        if keys.is_empty() {
            return;
        }
        let now = Utc::now();
        let mut plan = Plan::default();
        {
            let mut state = self.lock();
            for key in keys {
                let suspended_pipeline = state
                    .schedules
                    .get(&key)
                    .is_some_and(|e| state.pipeline_suspended(&key, e));
                let Some(entry) = state.schedules.get_mut(&key) else {
                    continue;
                };
                // A slot reached is evaluated like any other (its run, created ahead,
                // is found by name).
                entry.ahead.take_if(|(slot, _)| *slot <= now);
                let next = plan_one(&key, entry, now, suspended_pipeline, &mut plan);
                state.set_next(&key, next, self.lead);
            }
        }
        self.execute(plan).await;
    }

    async fn execute(&self, plan: Plan) {
        for run in &plan.cancels {
            self.cancel(run).await;
        }
        if !plan.runs.is_empty() {
            match self.store.create_absent(plan.runs).await {
                Ok(created) => {
                    crate::failpoint::pause(crate::failpoint::AFTER_SLOT_RUNS).await;
                    // Only runs this call created: a name already taken (a restart, a
                    // second operator) is that slot's existing run. The skew is taken
                    // now, when the runs exist, before their events are recorded.
                    let now = Utc::now();
                    let mut events = Vec::with_capacity(created.len());
                    for run in &created {
                        let slot = slot_of(&run.spec);
                        if let Some(at) = slot
                            .as_deref()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                        {
                            let skew = (now - at.with_timezone(&Utc)).num_milliseconds();
                            self.metrics
                                .schedule_skew_seconds
                                .observe(skew.max(0) as f64 / 1000.0);
                            tracing::debug!(run = %run.key.name, skew_ms = skew, "run created for slot");
                        }
                        let labels: BTreeMap<String, String> =
                            serde_json::from_str(&run.labels).unwrap_or_default();
                        if let Some(schedule) = labels.get(SCHEDULE_LABEL) {
                            events.push((
                                ObjectKey::new(
                                    Kind::Schedule,
                                    run.key.namespace.clone(),
                                    schedule.clone(),
                                ),
                                EventType::Normal,
                                "RunCreated".to_owned(),
                                format!(
                                    "created {} for slot {}",
                                    run.key.name,
                                    slot.as_deref().unwrap_or("?")
                                ),
                            ));
                        }
                    }
                    if let Err(e) = self.store.record_events(events).await {
                        tracing::warn!(code = e.code(), "cannot record RunCreated events: {e}");
                    }
                }
                Err(e) => tracing::error!(code = e.code(), "cannot create scheduled runs: {e}"),
            }
        }
        if let Err(e) = self.store.record_events(plan.events).await {
            tracing::warn!(code = e.code(), "cannot record schedule events: {e}");
        }
        self.write_statuses(plan.statuses).await;
    }

    async fn write_statuses(&self, keys: Vec<ObjectKey>) {
        // In batches: the statuses of thousands of schedules, and the objects the store
        // returns for them, need not all be in memory at once.
        for keys in keys.chunks(STATUS_BATCH) {
            let statuses: Vec<(ObjectKey, Option<i64>, serde_json::Value)> = {
                let state = self.lock();
                keys.iter()
                    .filter_map(|key| {
                        let entry = state.schedules.get(key)?;
                        let mut status = entry.status.clone();
                        status.next_slot = entry
                            .next
                            .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
                        let value = serde_json::to_value(status).ok()?;
                        (Some(status_digest(&value.to_string())) != entry.written)
                            .then(|| (key.clone(), None, value))
                    })
                    .collect()
            };
            if statuses.is_empty() {
                continue;
            }
            let written: Vec<(ObjectKey, u64)> = statuses
                .iter()
                .map(|(k, _, v)| (k.clone(), status_digest(&v.to_string())))
                .collect();
            match self.store.update_statuses(statuses).await {
                Ok(_) => {
                    let mut state = self.lock();
                    for (key, digest) in written {
                        if let Some(entry) = state.schedules.get_mut(&key) {
                            entry.written = Some(digest);
                        }
                    }
                }
                // A schedule deleted meanwhile fails its batch; the next resync rewrites.
                Err(e) => tracing::warn!(code = e.code(), "cannot write schedule statuses: {e}"),
            }
        }
    }

    async fn cancel(&self, key: &ObjectKey) {
        if let Err(e) = crate::controller::run::request_cancel(&self.store, key).await {
            tracing::warn!(run = %key, code = e.code(), "cannot cancel the replaced run: {e}");
        }
    }
}

/// Decides one schedule at `now`, adding its writes to `plan`; returns its next slot.
fn plan_one(
    key: &ObjectKey,
    entry: &mut Entry,
    now: DateTime<Utc>,
    pipeline_suspended: bool,
    plan: &mut Plan,
) -> Option<DateTime<Utc>> {
    let compiled = match &entry.compiled {
        Ok(compiled) => compiled.clone(),
        Err(error) => {
            let (reason, message) = match error {
                CompileError::UnknownTimeZone(m) => ("UnknownTimeZone", m.clone()),
                CompileError::Invalid(m) => ("InvalidSchedule", m.clone()),
            };
            if entry.set_condition(Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: Some(reason.into()),
                message: Some(message.clone()),
                last_transition_time: Some(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
            }) {
                plan.events
                    .push((key.clone(), EventType::Warning, reason.into(), message));
            }
            plan.statuses.push(key.clone());
            return None;
        }
    };
    entry.set_condition(Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: Some("Scheduled".into()),
        message: None,
        last_transition_time: Some(now.to_rfc3339_opts(SecondsFormat::Secs, true)),
    });
    plan.statuses.push(key.clone());
    if entry.spec.suspend || pipeline_suspended {
        // Missed slots accrue while suspended; on resume only the latest may run.
        return compiled.next_after(now);
    }
    let last = entry
        .status
        .last_slot
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let deadline = entry
        .spec
        .starting_deadline
        .as_deref()
        .and_then(|d| parse_duration(d).ok());
    let due = due_slots(&compiled, last, entry.created, now, deadline);
    if let Some(considered) = due.considered {
        entry.status.last_slot = Some(considered.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
    let format = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    if due.missed_older > 0 {
        plan.events.push((
            key.clone(),
            EventType::Warning,
            "MissedSchedule".into(),
            format!("{} earlier slot(s) were missed (operator down or schedule suspended); only the most recent is considered", due.missed_older),
        ));
    }
    if let Some(skipped) = due.skipped {
        plan.events.push((
            key.clone(),
            EventType::Warning,
            "MissedSchedule".into(),
            format!(
                "slot {} was missed by more than startingDeadline {}; skipped",
                format(skipped),
                entry.spec.starting_deadline.clone().unwrap_or_default()
            ),
        ));
    }
    if let Some(slot) = due.run {
        let policy = entry.spec.concurrency_policy.unwrap_or_default();
        // The slot's own run may be active already: created ahead of the slot.
        let name = slot_run_name(&key.name, slot);
        let others: Vec<String> = entry
            .status
            .active
            .iter()
            .filter(|active| **active != name)
            .cloned()
            .collect();
        if !others.is_empty() {
            match policy {
                ConcurrencyPolicy::Forbid => {
                    plan.events.push((
                        key.clone(),
                        EventType::Normal,
                        "RunAlreadyActive".into(),
                        format!(
                            "slot {} skipped: {} is still active (concurrencyPolicy Forbid)",
                            format(slot),
                            others.join(", ")
                        ),
                    ));
                    // A run created ahead while nothing was active, and something has
                    // become active since (a Run stored with this schedule's label by
                    // hand): the slot is skipped, so its run is cancelled.
                    if entry.status.active.len() > others.len() {
                        entry.status.active = others;
                        plan.cancels
                            .push(ObjectKey::new(Kind::Run, key.namespace.clone(), name));
                    }
                    return due.next;
                }
                ConcurrencyPolicy::Replace => {
                    entry.status.active.retain(|active| *active == name);
                    for active in others {
                        plan.events.push((
                            key.clone(),
                            EventType::Normal,
                            "RunReplaced".into(),
                            format!(
                                "{active} cancelled for slot {} (concurrencyPolicy Replace)",
                                format(slot)
                            ),
                        ));
                        plan.cancels
                            .push(ObjectKey::new(Kind::Run, key.namespace.clone(), active));
                    }
                }
                ConcurrencyPolicy::Allow => {}
            }
        }
        plan.runs.push(scheduled_run(key, &entry.spec, &name, slot));

        if !entry.status.active.contains(&name) {
            entry.status.active.push(name);
        }
    }
    due.next
}

fn scheduled_run(
    key: &ObjectKey,
    spec: &ScheduleSpec,
    name: &str,
    slot: DateTime<Utc>,
) -> (DesiredObject, Option<serde_json::Value>) {
    let run = RunSpec {
        pipeline_ref: spec.pipeline_ref.clone(),
        trigger: Trigger::Schedule,
        schedule_ref: Some(LocalRef {
            name: key.name.clone(),
        }),
        slot: Some(slot.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ..RunSpec::default()
    };
    let object = DesiredObject {
        key: ObjectKey::new(Kind::Run, key.namespace.clone(), name.to_owned()),
        labels: BTreeMap::from([(SCHEDULE_LABEL.to_owned(), key.name.clone())]),
        annotations: BTreeMap::new(),
        spec: serde_json::to_value(run)
            .unwrap_or_else(|_| json!({}))
            .into(),
    };
    (object, serde_json::to_value(RunStatus::default()).ok())
}
