//! One reconcile of one run: observe → decide → act → status.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::container::{
    AttemptIdentity, DEPENDENCY_FILES, Dependencies, EnvLayers, NOTEBOOK_FAILURE_MARK,
    build_container_spec, container_name, is_notebook,
};
use super::decide::{Decision, Effect, RunFacts, RunPolicy, decide_run_action};
use super::downstream;
use super::logs::ship::{self, FileShipper, ShipError};
use super::logs::{Follow, first_output_at, follow_attempt, sample_attempt};
use super::packages::read_packages;
use super::{RunController, lock};
use crate::controller::runtime::{
    ContainerRuntime, ContainerState, ContainerStatus, Created, OutputStream, RuntimeError, labels,
};
use crate::metrics::{Metrics, PhaseReason};
use crate::resource::object::DecodeError;
use crate::resource::path::{PathError, Resolved};
use crate::resource::quantity::parse_duration;
use crate::resource::schedule_time::parse_instant;
use crate::resource::types::{
    Attempt, Packages, PipelineSpec, PipelineStatus, RunPhase, RunSpec, RunStatus, ScheduleSpec,
    SecretMount, SecretSpec,
};
use crate::resource::{Kind, ObjectKey, StoredObject};
use crate::store::StoreError;

/// Why a reconcile stopped early. Each variant is retried.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A stored object this run depends on cannot be read: reported, never defaulted.
    #[error(transparent)]
    Unreadable(#[from] DecodeError),
    /// Run output could not be restored from or shipped to the shared store.
    #[error(transparent)]
    Output(#[from] ShipError),
}

impl ReconcileError {
    fn code(&self) -> &'static str {
        match self {
            ReconcileError::Store(e) => e.code(),
            ReconcileError::Runtime(e) => e.code(),
            ReconcileError::Unreadable(_) => "store.corrupt",
            ReconcileError::Output(e) => e.code(),
        }
    }
}

/// What a reconcile sees.
struct Observed {
    run: StoredObject,
    spec: RunSpec,
    status: RunStatus,
    pipeline: Option<PipelineSpec>,
    policy: Option<RunPolicy>,
    containers: Vec<ContainerState>,
}

impl Observed {
    /// When the run may start: its schedule slot (a scheduled run is created ahead of
    /// it); runs without one start at once.
    fn start_at(&self) -> Option<DateTime<Utc>> {
        parse_instant(self.spec.slot.as_deref()?).ok()
    }
}

/// A run that cannot start for a reason a retry will not fix.
struct StartFailure {
    reason: &'static str,
    message: String,
}

impl<R: ContainerRuntime> RunController<R> {
    /// Reconciles one run; returns when to look again.
    pub(super) async fn reconcile(self: &Arc<Self>, key: &ObjectKey) -> Option<Duration> {
        let outcome = self.reconcile_once(key).await;
        // Looked at once: a run that did not ask for a slot no longer holds a place.
        let admitted = lock(&self.slots).evaluated(key);
        for next in admitted {
            self.queue.add(next);
        }
        match outcome {
            Ok(requeue) => {
                lock(&self.failures).remove(key);
                requeue
            }
            Err(error) => {
                let failures = {
                    let mut failures = lock(&self.failures);
                    let count = failures.entry(key.clone()).or_default();
                    *count += 1;
                    *count
                };
                let delay = Duration::from_millis(250 * 2u64.pow(failures.min(8)));
                tracing::warn!(run = %key, code = error.code(), retry_in = ?delay, "reconcile failed: {error}");
                Metrics::count_error(&self.metrics.reconcile_errors, error.code());
                if let ReconcileError::Runtime(e) = &error {
                    Metrics::count_error(&self.metrics.docker_errors, e.code());
                }
                if let ReconcileError::Runtime(RuntimeError::Unavailable(_)) = &error {
                    self.note_runtime_unavailable(key, &error).await;
                }
                if matches!(
                    error,
                    ReconcileError::Unreadable(_)
                        | ReconcileError::Store(StoreError::Corrupt { .. })
                ) {
                    self.report_unreadable(key, &error).await;
                }
                Some(delay)
            }
        }
    }

    async fn reconcile_once(
        self: &Arc<Self>,
        key: &ObjectKey,
    ) -> Result<Option<Duration>, ReconcileError> {
        let Some(observed) = self.observe(key).await? else {
            // Deleted: free its slot; garbage collection removes its containers.
            lock(&self.active).remove(key);
            self.release_slot(key);
            return Ok(None);
        };
        let container = latest_attempt(&observed.containers);
        let facts = RunFacts {
            now: Utc::now(),
            status: &observed.status,
            cancel_requested: observed.spec.cancel,
            policy: observed.policy.as_ref(),
            container,
            admitted: lock(&self.slots).holds(key),
            start_at: observed.start_at(),
            tombstone_for: self.config.tombstone_for,
        };
        let mut decision = decide_run_action(&facts);
        if decision.wants_slot && !facts.admitted {
            let max_instances = observed.pipeline.as_ref().and_then(|p| p.max_instances);
            let pipeline = observed.spec.pipeline_ref.name.clone();
            let admitted =
                lock(&self.slots).request(key, &pipeline, observed.run.created_at, max_instances);
            for other in admitted.iter().filter(|k| *k != key) {
                self.queue.add(other.clone());
            }
            if admitted.contains(key) {
                decision = decide_run_action(&RunFacts {
                    admitted: true,
                    ..facts.clone()
                });
            }
        }
        self.act(key, &observed, decision).await
    }

    async fn observe(&self, key: &ObjectKey) -> Result<Option<Observed>, ReconcileError> {
        let Some(run) = self.store.get(key).await? else {
            return Ok(None);
        };
        let spec: RunSpec = run.spec_as()?;
        let status: RunStatus = run.status_as()?;
        let pipeline_key = ObjectKey::new(
            Kind::Pipeline,
            key.namespace.clone(),
            spec.pipeline_ref.name.clone(),
        );
        let pipeline = match self.store.get(&pipeline_key).await? {
            Some(object) => {
                let mut spec: PipelineSpec = object.spec_as()?;
                // Fast-Flow ran pipelines without python_version on its default Python,
                // and without timeout under its CONTAINER_TIMEOUT.
                if object
                    .annotations
                    .contains_key(crate::resource::fastflow::IMPORTED_FROM_ANNOTATION)
                {
                    if spec.python.is_none() {
                        spec.python = self.config.fastflow_python.clone();
                    }
                    // A daemon runs until it stops; only its own timeout ends an attempt.
                    if spec.timeout.is_none() && spec.restart.is_none() {
                        spec.timeout = self
                            .config
                            .fastflow_timeout
                            .map(|t| format!("{}s", t.as_secs()));
                    }
                }
                Some(spec)
            }
            None => None,
        };
        let policy = pipeline.as_ref().map(|p| self.policy_of(p));
        // A run with no attempt recorded has no container: one is created only after its
        // attempt is claimed (a container made otherwise is found by the create's name
        // conflict and adopted). Alone on the store, Docker need not be asked: a slot of
        // 10,000 scheduled runs made 10,000 list requests. With replicas it is asked, to
        // find containers a deposed leader left behind.
        let mut containers = if status.attempts.is_empty() && self.store.fence().is_none() {
            Vec::new()
        } else {
            self.runtime.list(labels::RUN, &run.uid).await?
        };
        containers.retain(|c| self.owns(c));
        Ok(Some(Observed {
            run,
            spec,
            status,
            pipeline,
            policy,
            containers,
        }))
    }

    fn policy_of(&self, pipeline: &PipelineSpec) -> RunPolicy {
        let mut policy = RunPolicy {
            stop_grace: self.config.stop_grace,
            ..RunPolicy::default()
        };
        policy.timeout = pipeline
            .timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok());
        if let Some(restart) = &pipeline.restart {
            policy.restart = Some(super::decide::Restart {
                policy: restart.policy,
                cooldown: restart
                    .cooldown
                    .as_deref()
                    .and_then(|d| parse_duration(d).ok())
                    .unwrap_or(DEFAULT_COOLDOWN),
                periodic: restart
                    .periodic
                    .as_deref()
                    .and_then(|p| super::decide::Periodic::parse(p).ok()),
            });
            return policy;
        }
        if let Some(retries) = &pipeline.retries {
            policy.retry_limit = retries.limit;
            if let Some(backoff) = &retries.backoff {
                policy.backoff_kind = backoff.kind;
                if let Some(initial) = backoff
                    .initial
                    .as_deref()
                    .and_then(|d| parse_duration(d).ok())
                {
                    policy.backoff_initial = initial;
                }
                if let Some(max) = backoff.max.as_deref().and_then(|d| parse_duration(d).ok()) {
                    policy.backoff_max = max;
                }
                if let Some(multiplier) = backoff
                    .multiplier
                    .as_deref()
                    .and_then(|m| m.trim().parse::<f64>().ok())
                    .filter(|m| m.is_finite() && *m >= 1.0)
                {
                    policy.backoff_multiplier = multiplier;
                }
                policy.backoff_delays = backoff
                    .delays
                    .iter()
                    .filter_map(|d| parse_duration(d).ok())
                    .collect();
            }
        }
        policy
    }

    async fn act(
        self: &Arc<Self>,
        key: &ObjectKey,
        observed: &Observed,
        decision: Decision,
    ) -> Result<Option<Duration>, ReconcileError> {
        let current = observed.status.attempts.len() as u32;
        let mut status = decision.status.clone();
        for effect in &decision.before {
            match effect {
                Effect::CreateAndStart { attempt } => {
                    let mut base = (observed.status.clone(), observed.run.resource_version);
                    if let Err(failure) = self
                        .create_and_start(observed, *attempt, &mut base, None)
                        .await?
                    {
                        return self.start_failed(key, observed, base, failure).await;
                    }
                }
                Effect::Create { attempt } => {
                    let start_at = observed.start_at().unwrap_or_else(Utc::now);
                    let mut base = (observed.status.clone(), observed.run.resource_version);
                    if let Err(failure) = self
                        .create_and_start(observed, *attempt, &mut base, Some(start_at))
                        .await?
                    {
                        // Not before its instant: the run may still be fixed until then,
                        // and a failure is recorded (as it would have been) at the start.
                        tracing::info!(run = %key, reason = failure.reason, "cannot create ahead of the start; trying again at {start_at}");
                    }
                    // The wait counts from now, not from before the create.
                    return Ok(Some((start_at - Utc::now()).to_std().unwrap_or_default()));
                }
                Effect::Start => {
                    let base = (observed.status.clone(), observed.run.resource_version);
                    let name = container_name(&observed.run.uid, current);
                    if let Err(failure) = self.start_container(observed, current, &name).await? {
                        return self.start_failed(key, observed, base, failure).await;
                    }
                }
                Effect::Stop => {
                    self.may_act()?;
                    self.stop_in_background(key, &container_name(&observed.run.uid, current))
                }
                Effect::StopStale | Effect::RemoveStale => {
                    self.may_act()?;
                    self.end_stale(key, observed, *effect == Effect::RemoveStale)
                        .await?;
                }
                Effect::DrainLogs => {
                    self.drain_logs(key, &observed.run.uid, current).await?;
                    if let Some(next) = status.as_mut() {
                        self.record_setup_time(&observed.run.uid, next);
                        self.record_cell_failure(observed, next);
                        self.record_route(observed, next);
                    }
                }
                Effect::Remove => {}
            }
        }
        if let Some(next) = status.as_mut() {
            // The decision knows attempts, not hosts: record where each one ran.
            for attempt in next.attempts.iter_mut().filter(|a| a.host.is_none()) {
                attempt.host = Some(self.runtime.host().to_owned());
            }
        }
        if let Some(next) = status.as_mut() {
            self.write_status(observed, observed.run.resource_version, next)
                .await?;
            self.record_transition(key, &observed.status, next).await;
        }
        for effect in &decision.after {
            if let Effect::Remove = effect {
                self.may_act()?;
                for container in &observed.containers {
                    self.stop_watcher(&container.name);
                    remove_secret_files(&self.config.secrets_dir, &container.name);
                    self.runtime.remove(&container.name).await?;
                }
            }
        }
        let phase = status.as_ref().map_or(observed.status.phase, |s| s.phase);
        if decision.releases_slot {
            self.release_slot(key);
        }
        if phase.is_finished() {
            self.finish(key);
        } else if phase == RunPhase::Running
            && let Some(container) = latest_container(&observed.containers)
        {
            let attempt = status.as_ref().map_or(current, |s| s.attempts.len() as u32);
            self.ensure_watching(key, &observed.run.uid, attempt, &container.name, None);
        }
        Ok(decision.requeue_after)
    }

    /// Records the lifecycle event of a phase or attempt change.
    async fn record_transition(&self, key: &ObjectKey, before: &RunStatus, after: &RunStatus) {
        use crate::store::events::EventType;
        let attempt = after.attempts.last();
        // An attempt is claimed before its container exists: it is announced once its
        // container has started.
        let started = attempt.is_some_and(|a| {
            a.started_at.is_some()
                && before
                    .attempts
                    .iter()
                    .find(|b| b.number == a.number)
                    .is_none_or(|b| b.started_at.is_none())
        });
        let event = if started {
            attempt.map(|a| {
                (
                    EventType::Normal,
                    "Started",
                    format!("attempt {} started in container {}", a.number, a.container),
                )
            })
        } else if after.phase != before.phase || after.reason != before.reason {
            let message = after.message.clone().unwrap_or_default();
            match (after.phase, after.reason.as_deref()) {
                (RunPhase::Succeeded, _) => Some((
                    EventType::Normal,
                    "Succeeded",
                    "the run succeeded".to_owned(),
                )),
                (RunPhase::Cancelled, _) => Some((EventType::Normal, "Cancelled", message)),
                (RunPhase::Failed, Some(reason)) => Some((EventType::Warning, reason, message)),
                (RunPhase::Pending, Some(reason @ ("BackOff" | "CrashLoopBackOff"))) => {
                    Some((EventType::Warning, reason, message))
                }
                // A daemon's next attempt is on its way.
                (RunPhase::Pending, Some(reason @ ("Restarting" | "PeriodicRestart"))) => {
                    Some((EventType::Normal, reason, message))
                }
                (
                    RunPhase::Pending,
                    Some(reason @ ("PipelineNotFound" | "ContainerNameConflict")),
                ) => Some((EventType::Warning, reason, message)),
                _ => None,
            }
        } else {
            None
        };
        if after.phase != before.phase || after.reason != before.reason {
            let labels = PhaseReason {
                phase: format!("{:?}", after.phase),
                reason: after.reason.clone().unwrap_or_default(),
            };
            self.metrics.run_transitions.get_or_create(&labels).inc();
        }
        if let Some((event_type, reason, message)) = event
            && let Err(e) = self
                .store
                .record_event(key, event_type, reason, &message)
                .await
        {
            tracing::warn!(run = %key, code = e.code(), "cannot record an event: {e}");
        }
    }

    fn finish(&self, key: &ObjectKey) {
        lock(&self.active).remove(key);
        self.release_slot(key);
    }

    fn release_slot(&self, key: &ObjectKey) {
        let admitted = lock(&self.slots).release(key);
        for next in admitted {
            self.queue.add(next);
        }
    }

    /// Writes the run's status over the stored one of resourceVersion `expected`; the
    /// write that ends the run also creates the runs its end starts.
    async fn write_status(
        &self,
        observed: &Observed,
        expected: i64,
        status: &mut RunStatus,
    ) -> Result<i64, ReconcileError> {
        if status.phase.is_finished() && !observed.status.phase.is_finished() {
            return self.write_end(observed, expected, status).await;
        }
        self.write_status_at(&observed.run.key, expected, status)
            .await
    }

    /// Writes the run's final status together with the runs its pipeline's `triggers`
    /// start, in one transaction (see [`downstream`]), and records why any did not.
    async fn write_end(
        &self,
        observed: &Observed,
        expected: i64,
        status: &mut RunStatus,
    ) -> Result<i64, ReconcileError> {
        use crate::store::events::EventType;
        let key = &observed.run.key;
        let triggers = observed
            .pipeline
            .as_ref()
            .map(|p| p.triggers.as_slice())
            .unwrap_or_default();
        let fired = downstream::fired(triggers, status.phase, status.route.as_deref());
        if fired.is_empty() {
            return self.write_status_at(key, expected, status).await;
        }
        let parent = downstream::Parent {
            namespace: &key.namespace,
            name: &key.name,
            uid: &observed.run.uid,
            pipeline: &observed.spec.pipeline_ref.name,
            phase: status.phase,
            route: status.route.as_deref(),
            depth: observed
                .run
                .annotations
                .get(downstream::DEPTH_ANNOTATION)
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
        };
        let mut starts = Vec::new();
        let mut events = Vec::new();
        let fired = if parent.depth < self.config.max_trigger_depth {
            fired
        } else {
            events.push((
                key.clone(),
                EventType::Warning,
                "TriggerDepthExceeded",
                format!(
                    "{} run(s) precede this one in its chain, the most --max-trigger-depth allows ({}): no downstream run started",
                    parent.depth, self.config.max_trigger_depth
                ),
            ));
            Vec::new()
        };
        for (index, trigger) in &fired {
            let when = trigger.when.describe(trigger.route.as_deref());
            let skip = |reason: &'static str, why: String| {
                (
                    key.clone(),
                    EventType::Warning,
                    reason,
                    format!("spec.triggers[{index}] ({when}) starts no run: {why}"),
                )
            };
            let pipeline_key =
                ObjectKey::new(Kind::Pipeline, key.namespace.clone(), &trigger.pipeline);
            let started = match self.store.get(&pipeline_key).await? {
                None => {
                    events.push(skip(
                        "TriggerPipelineNotFound",
                        format!("pipeline {} does not exist", trigger.pipeline),
                    ));
                    continue;
                }
                Some(p) if p.spec_as::<PipelineSpec>()?.suspend => {
                    events.push(skip(
                        "TriggerPipelineSuspended",
                        format!("pipeline {} is suspended", trigger.pipeline),
                    ));
                    continue;
                }
                Some(p) => p,
            };
            // A pipeline made from the started one for a Fast-Flow run configuration
            // counts as the started one.
            let made_from_it = |name: &str| {
                started
                    .annotations
                    .get(crate::resource::fastflow::RUN_CONFIGS_ANNOTATION)
                    .is_some_and(|list| list.split(',').any(|c| c.trim() == name))
            };
            let mut target = trigger.pipeline.clone();
            let mut schedule_env = None;
            if let Some(schedule) = &trigger.schedule {
                let schedule_key = ObjectKey::new(Kind::Schedule, key.namespace.clone(), schedule);
                match self.store.get(&schedule_key).await? {
                    Some(object) => {
                        let spec: ScheduleSpec = object.spec_as()?;
                        let runs = spec.pipeline_ref.name;
                        if runs != trigger.pipeline && !made_from_it(&runs) {
                            events.push(skip(
                                "TriggerScheduleMismatch",
                                format!(
                                    "schedule {schedule} runs pipeline {runs}, not {}",
                                    trigger.pipeline
                                ),
                            ));
                            continue;
                        }
                        target = runs;
                        schedule_env = Some(spec.env);
                    }
                    // A run configuration with a webhook and no timing has a pipeline
                    // and no schedule.
                    None if made_from_it(schedule) => target = schedule.clone(),
                    None => {
                        events.push(skip(
                            "TriggerScheduleNotFound",
                            format!("schedule {schedule} does not exist"),
                        ));
                        continue;
                    }
                }
            }
            let child = downstream::child(&parent, *index, trigger, &target, schedule_env.as_ref());
            events.push((
                key.clone(),
                EventType::Normal,
                "TriggeredDownstream",
                format!(
                    "started run {} of pipeline {target} ({when})",
                    child.key.name
                ),
            ));
            events.push((
                child.key.clone(),
                EventType::Normal,
                "TriggeredBy",
                format!(
                    "started by the end of run {} of pipeline {} ({when})",
                    key.name, parent.pipeline
                ),
            ));
            status.downstream.push(child.key.name.clone());
            starts.push((child, serde_json::to_value(RunStatus::default()).ok()));
        }
        let value = serde_json::to_value(&*status).unwrap_or_default();
        crate::failpoint::pause(crate::failpoint::BEFORE_FINISH).await;
        let written = self.store.finish_run(key, expected, value, starts).await?;
        crate::failpoint::pause(crate::failpoint::AFTER_FINISH).await;
        for (involved, event_type, reason, message) in events {
            if let Err(e) = self
                .store
                .record_event(&involved, event_type, reason, &message)
                .await
            {
                tracing::warn!(run = %involved, code = e.code(), "cannot record an event: {e}");
            }
        }
        Ok(written)
    }

    /// Writes `status` over the stored one of resourceVersion `expected`; returns the
    /// new resourceVersion.
    async fn write_status_at(
        &self,
        key: &ObjectKey,
        expected: i64,
        status: &RunStatus,
    ) -> Result<i64, ReconcileError> {
        let value = serde_json::to_value(status).unwrap_or_default();
        let written = self.store.update_status(key, Some(expected), value).await?;
        Ok(written.resource_version)
    }

    /// Fails the run (or parks it, for a name conflict) after its attempt could not be
    /// started. `base` is the status as stored, with the claimed attempt if any.
    async fn start_failed(
        &self,
        key: &ObjectKey,
        observed: &Observed,
        (mut failed, expected): (RunStatus, i64),
        failure: StartFailure,
    ) -> Result<Option<Duration>, ReconcileError> {
        let parks = failure.reason == "ContainerNameConflict";
        failed.phase = if parks {
            RunPhase::Pending
        } else {
            RunPhase::Failed
        };
        if !parks
            && let Some(claimed) = failed
                .attempts
                .last_mut()
                .filter(|a| a.started_at.is_none() && a.finished_at.is_none())
        {
            claimed.finished_at =
                Some(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            claimed.reason = Some(failure.reason.to_owned());
        }
        failed.reason = Some(failure.reason.to_owned());
        failed.message = Some(failure.message);
        self.write_status(observed, expected, &mut failed).await?;
        self.record_transition(key, &observed.status, &failed).await;
        if parks {
            return Ok(Some(Duration::from_secs(30)));
        }
        self.finish(key);
        Ok(None)
    }

    /// Keeps the pipeline's `status.packages` at the set its latest attempt was installed
    /// from: written in the background (off the path to the container's start) and only
    /// when it differs from what this controller last wrote.
    fn note_packages(self: &Arc<Self>, namespace: &str, pipeline: &str, packages: Packages) {
        let key = ObjectKey::new(Kind::Pipeline, namespace, pipeline);
        {
            let mut written = lock(&self.packages);
            if written.get(&key) == Some(&packages) {
                return;
            }
            written.insert(key.clone(), packages.clone());
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.write_pipeline_packages(&key, &packages).await {
                lock(&this.packages).remove(&key);
                tracing::warn!(pipeline = %key, "cannot record the pipeline's packages: {e}");
            }
        });
    }

    async fn write_pipeline_packages(
        &self,
        key: &ObjectKey,
        packages: &Packages,
    ) -> Result<(), ReconcileError> {
        for _ in 0..3 {
            let Some(pipeline) = self.store.get(key).await? else {
                return Ok(());
            };
            let mut status: PipelineStatus = match &pipeline.status {
                Some(status) => serde_json::from_value(status.clone()).unwrap_or_default(),
                None => PipelineStatus::default(),
            };
            if status.packages.as_ref() == Some(packages) {
                return Ok(());
            }
            status.packages = Some(packages.clone());
            let value = serde_json::to_value(&status).unwrap_or_default();
            match self
                .store
                .update_status(key, Some(pipeline.resource_version), value)
                .await
            {
                Err(StoreError::Conflict { .. }) => continue,
                other => return other.map(drop).map_err(Into::into),
            }
        }
        Ok(())
    }

    /// Records `new_attempt` in the store before its container exists: the claim is
    /// the fenced write that precedes the side effect, so a deposed leader's claim
    /// fails and it creates nothing. Updates `base` to the stored status.
    async fn claim(
        &self,
        key: &ObjectKey,
        new_attempt: Attempt,
        revision: Option<&String>,
        start_at: Option<DateTime<Utc>>,
        base: &mut (RunStatus, i64),
    ) -> Result<(), ReconcileError> {
        let attempt = new_attempt.number;
        let container = new_attempt.container.clone();
        let mut claimed = base.0.clone();
        claimed.attempts.push(new_attempt);
        claimed.phase = RunPhase::Pending;
        match start_at {
            Some(at) => {
                claimed.reason = Some("WaitingForStart".to_owned());
                claimed.message = Some(format!(
                    "attempt {attempt}: container {container} created ahead, starts at {}",
                    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                ));
            }
            None => {
                claimed.reason = Some("Starting".to_owned());
                claimed.message = Some(format!(
                    "attempt {attempt}: creating and starting container {container}"
                ));
            }
        }
        claimed.next_attempt_at = None;
        if let Some(revision) = revision {
            claimed.source_revision = Some(revision.clone());
        }
        let written = self.write_status_at(key, base.1, &claimed).await?;
        self.record_transition(key, &base.0, &claimed).await;
        *base = (claimed, written);
        Ok(())
    }

    /// Refuses a side effect on the world when this replica may no longer act (its
    /// lease was not renewed in time); always allowed without a fence (SQLite).
    pub(super) fn may_act(&self) -> Result<(), ReconcileError> {
        match self.store.fence() {
            Some(fence) if !fence.may_act() => Err(fence.refusal().into()),
            _ => Ok(()),
        }
    }

    /// The lease epoch this replica acts under (several replicas only).
    fn epoch(&self) -> Option<i64> {
        self.store.fence().and_then(|fence| fence.epoch())
    }

    /// Stops (and with `remove`, removes) the run's latest container, which a deposed
    /// leader created or started, with a Warning event naming it.
    async fn end_stale(
        self: &Arc<Self>,
        key: &ObjectKey,
        observed: &Observed,
        remove: bool,
    ) -> Result<(), ReconcileError> {
        let Some(container) = latest_container(&observed.containers) else {
            return Ok(());
        };
        let epoch = container
            .labels
            .get(labels::EPOCH)
            .map_or("none".to_owned(), Clone::clone);
        let message = if remove {
            format!(
                "container {} (epoch {epoch}) is of an attempt the store does not record: a leader that no longer held the lease created it; removed",
                container.name
            )
        } else {
            format!(
                "container {} (epoch {epoch}) of a finished attempt was running again: a leader that no longer held the lease started it; stopped",
                container.name
            )
        };
        tracing::warn!(run = %key, container = %container.name, "{message}");
        if remove {
            self.stop_watcher(&container.name);
            remove_secret_files(&self.config.secrets_dir, &container.name);
            self.runtime.remove(&container.name).await?;
        } else {
            self.stop_in_background(key, &container.name);
        }
        if let Err(e) = self
            .store
            .record_event(
                key,
                crate::store::events::EventType::Warning,
                "StaleContainer",
                &message,
            )
            .await
        {
            tracing::warn!(run = %key, code = e.code(), "cannot record an event: {e}");
        }
        Ok(())
    }

    /// Creates (or adopts) and starts the container of `attempt`. The outer error is
    /// transient (retried); the inner one fails or parks the run.
    ///
    /// Prepare (nothing is recorded when the pipeline's code or secrets are missing),
    /// claim the attempt in the store (fenced), create, start: a crash or a loss of the
    /// lease between any two steps leaves the next leader a claimed attempt whose
    /// container, if it exists, is started only if it never was.
    /// With `start_at`, the container is only created (a run created ahead of its start
    /// instant); [`Effect::Start`] starts it at the instant.
    async fn create_and_start(
        self: &Arc<Self>,
        observed: &Observed,
        attempt: u32,
        base: &mut (RunStatus, i64),
        start_at: Option<DateTime<Utc>>,
    ) -> Result<Result<(), StartFailure>, ReconcileError> {
        let Some(pipeline) = &observed.pipeline else {
            return Ok(Err(StartFailure {
                reason: "PipelineNotFound",
                message: "the pipeline does not exist".into(),
            }));
        };
        let key = &observed.run.key;
        let source = match locate_source(&self.config.source_root, observed, pipeline) {
            Ok(source) => source,
            Err(failure) => return Ok(Err(failure)),
        };
        let (dependencies, packages) = match dependencies(&source.folder.path) {
            Some((found, text)) => (Some(found), Some(read_packages(found, &text))),
            None => (None, None),
        };
        let schedule_env = self.schedule_env(key, &observed.spec).await?;
        let secret_env = match self.secret_env(key, pipeline).await? {
            Ok(env) => env,
            Err(failure) => return Ok(Err(failure)),
        };
        let run_name = format!("{}/{}", key.namespace, key.name);
        let id = AttemptIdentity {
            run_uid: &observed.run.uid,
            run_name: &run_name,
            pipeline: &observed.spec.pipeline_ref.name,
            attempt,
        };
        let layers = EnvLayers {
            schedule: schedule_env.as_ref(),
            secrets: Some(&secret_env.env),
            run: Some(&observed.spec.env),
        };
        let mut spec = build_container_spec(
            &self.config.runner,
            &id,
            pipeline,
            &source.folder.relative().to_string_lossy(),
            dependencies,
            &layers,
        );
        if let Some(revision) = &source.revision {
            spec.labels
                .insert(labels::SOURCE_REVISION.to_owned(), revision.clone());
            if let Some(mount) = spec.mounts.first_mut() {
                mount.source = source.folder.path.display().to_string();
            }
        }
        if observed
            .pipeline
            .as_ref()
            .is_some_and(|p| downstream::reads_route(&p.triggers))
        {
            match make_route_dir(&self.config.secrets_dir, &spec.name, &spec.user) {
                Ok(mount) => spec.mounts.push(mount),
                Err(e) => {
                    return Ok(Err(StartFailure {
                        reason: "RouteFileFailed",
                        message: format!(
                            "cannot make the route directory under {}: {e}",
                            self.config.secrets_dir.display()
                        ),
                    }));
                }
            }
        }
        if !secret_env.files.is_empty() {
            match write_secret_files(
                &self.config.secrets_dir,
                &spec.name,
                &spec.user,
                &secret_env.files,
            ) {
                Ok(mounts) => spec.mounts.extend(mounts),
                Err(e) => {
                    return Ok(Err(StartFailure {
                        reason: "SecretMountFailed",
                        message: format!(
                            "cannot write secret files under {}: {e}",
                            self.config.secrets_dir.display()
                        ),
                    }));
                }
            }
        }
        if let Some(epoch) = self.epoch() {
            spec.labels
                .insert(labels::EPOCH.to_owned(), epoch.to_string());
        }
        if attempt > observed.status.attempts.len() as u32 {
            let claimed = Attempt {
                number: attempt,
                container: spec.name.clone(),
                host: Some(self.runtime.host().to_owned()),
                epoch: self.epoch(),
                packages: packages.clone(),
                ..Attempt::default()
            };
            self.claim(key, claimed, source.revision.as_ref(), start_at, base)
                .await?;
            if let Some(packages) = packages {
                self.note_packages(&key.namespace, &observed.spec.pipeline_ref.name, packages);
            }
            crate::failpoint::pause(crate::failpoint::AFTER_CLAIM).await;
        }
        crate::failpoint::pause(crate::failpoint::BEFORE_CREATE).await;
        self.may_act()?;
        match self.runtime.create(&spec).await {
            Ok(Created::New) => {}
            Ok(Created::Existing(existing)) => {
                if existing.labels.get(labels::RUN) != Some(&observed.run.uid)
                    || !self.owns(&existing)
                {
                    return Ok(Err(StartFailure {
                        reason: "ContainerNameConflict",
                        message: format!(
                            "container.name.conflict: a container named {} exists and is not this run's; remove it (docker rm -f {})",
                            spec.name, spec.name
                        ),
                    }));
                }
                // Started before (by a leader that crashed or lost the lease after
                // starting it): a second start would run an exited attempt again.
                if existing.status != ContainerStatus::Created {
                    tracing::info!(run = %key, container = %spec.name, "already started; adopted");
                    return Ok(Ok(()));
                }
            }
            Err(RuntimeError::ImageNotFound { image, message }) => {
                return Ok(Err(StartFailure {
                    reason: "ImageNotFound",
                    message: format!(
                        "image {image} is not available on the Docker host ({message}); build it with `make runner-image` or set --runner-image"
                    ),
                }));
            }
            Err(RuntimeError::Refused { message, .. }) => {
                return Ok(Err(StartFailure {
                    reason: "StartError",
                    message: format!("the container could not be created: {message}"),
                }));
            }
            Err(e) => return Err(e.into()),
        }
        crate::failpoint::pause(crate::failpoint::AFTER_CREATE).await;
        if start_at.is_some() {
            tracing::info!(run = %key, container = %spec.name, attempt, "created ahead of its start");
            return Ok(Ok(()));
        }
        self.start_container(observed, attempt, &spec.name).await
    }

    /// Starts attempt `attempt`'s container `name`: just created, or created earlier
    /// (ahead of the run's start instant, or by an operator that stopped before starting
    /// it).
    async fn start_container(
        self: &Arc<Self>,
        observed: &Observed,
        attempt: u32,
        name: &str,
    ) -> Result<Result<(), StartFailure>, ReconcileError> {
        let key = &observed.run.key;
        self.may_act()?;
        // Attached before the start, the follower reads the output as the process writes
        // it; without (a proxy that forbids attach), from Docker's log.
        let attached = match self.runtime.attach(name).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(run = %key, container = %name, "not attached: {e}");
                None
            }
        };
        let attached = match self.runtime.start(name).await {
            Ok(true) => attached,
            // Started by someone else meanwhile: what it printed before the attach is
            // only in Docker's log.
            Ok(false) => None,
            Err(RuntimeError::Refused { message, .. }) => {
                let _ = self.runtime.remove(name).await;
                return Ok(Err(StartFailure {
                    reason: "StartError",
                    message: format!("the container did not start: {message}"),
                }));
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(run = %key, container = %name, attempt, "started");
        self.ensure_watching(key, &observed.run.uid, attempt, name, attached);
        Ok(Ok(()))
    }

    async fn schedule_env(
        &self,
        key: &ObjectKey,
        spec: &RunSpec,
    ) -> Result<Option<BTreeMap<String, String>>, ReconcileError> {
        let Some(schedule) = &spec.schedule_ref else {
            return Ok(None);
        };
        let schedule_key =
            ObjectKey::new(Kind::Schedule, key.namespace.clone(), schedule.name.clone());
        Ok(self
            .store
            .get(&schedule_key)
            .await?
            .map(|s| s.spec_as::<ScheduleSpec>())
            .transpose()?
            .map(|s| s.env))
    }

    /// Decrypts the pipeline's secrets for injection. Values exist only in this map and
    /// in the container's environment.
    async fn secret_env(
        &self,
        key: &ObjectKey,
        pipeline: &PipelineSpec,
    ) -> Result<Result<ResolvedSecrets, StartFailure>, ReconcileError> {
        let mut resolved = ResolvedSecrets::default();
        for reference in &pipeline.secret_refs {
            let as_files = reference.mount_as == Some(SecretMount::Files);
            let secret_key =
                ObjectKey::new(Kind::Secret, key.namespace.clone(), reference.name.clone());
            let Some(secret) = self.store.get(&secret_key).await? else {
                return Ok(Err(StartFailure {
                    reason: "SecretNotFound",
                    message: format!(
                        "secret {} referenced by the pipeline does not exist",
                        reference.name
                    ),
                }));
            };
            let spec: SecretSpec = secret.spec_as()?;
            let Some(keyring) = &self.keyring else {
                return Ok(Err(StartFailure {
                    reason: "SecretUnreadable",
                    message: "no ENCRYPTION_KEY is configured".into(),
                }));
            };
            for (name, token) in &spec.encrypted_data {
                if !reference.keys.is_empty() && !reference.keys.contains(name) {
                    continue;
                }
                let what = format!("Secret/{}/{} key {name}", key.namespace, reference.name);
                match keyring.decrypt(token, &what) {
                    Ok(value) if as_files => {
                        resolved
                            .files
                            .entry(reference.name.clone())
                            .or_default()
                            .insert(name.clone(), value);
                    }
                    Ok(value) => {
                        resolved.env.insert(name.clone(), value);
                    }
                    Err(e) => {
                        return Ok(Err(StartFailure {
                            reason: "SecretUnreadable",
                            message: e.to_string(),
                        }));
                    }
                }
            }
            for wanted in &reference.keys {
                if !spec.encrypted_data.contains_key(wanted) {
                    return Ok(Err(StartFailure {
                        reason: "SecretNotFound",
                        message: format!("secret {} has no key {wanted}", reference.name),
                    }));
                }
            }
        }
        Ok(Ok(resolved))
    }

    /// Starts the log follower and resource sampler of a container unless running;
    /// the follower reads `attached` when given (see [`follow_attempt`]).
    fn ensure_watching(
        self: &Arc<Self>,
        key: &ObjectKey,
        run_uid: &str,
        attempt: u32,
        container: &str,
        attached: Option<OutputStream>,
    ) {
        let mut watchers = lock(&self.watchers);
        if watchers.get(container).is_some_and(|h| !h.is_finished()) {
            return;
        }
        let this = self.clone();
        let key = key.clone();
        let container = container.to_owned();
        let log_path = self.files.attempt_log(run_uid, attempt);
        let metrics_path = self.files.metrics(run_uid);
        let name = container.clone();
        let handle = tokio::spawn(async move {
            // Before the sampler appends: a new leader restores the samples first.
            let samples = match FileShipper::start(&this.store, &this.files, &metrics_path).await {
                Ok(samples) => samples,
                Err(e) => {
                    tracing::warn!(run = %key, container, code = e.code(), "output not followed: {e}");
                    return false;
                }
            };
            let sampler = {
                let runtime = this.runtime.clone();
                let container = container.clone();
                let every = this.config.sample_every;
                tokio::spawn(async move {
                    sample_attempt(runtime.as_ref(), &container, &metrics_path, every).await
                })
            };
            let stored = match this
                .store_output(&key, &container, &log_path, attached)
                .await
            {
                Ok(()) => true,
                Err(e) => {
                    // Not followed unredacted: the next reconcile starts a new follower.
                    tracing::warn!(run = %key, container, code = e.code(), "output not followed: {e}");
                    false
                }
            };
            sampler.abort();
            samples.finish().await;
            this.queue.add(key);
            stored
        });
        watchers.insert(name, handle);
    }

    /// Copies a container's output, redacted, into `path` until it has all of it. Fails
    /// (storing nothing) when the secret values to redact cannot be read: output is never
    /// stored unredacted because the store did not answer; Docker keeps it meanwhile.
    async fn store_output(
        &self,
        key: &ObjectKey,
        container: &str,
        path: &Path,
        attached: Option<OutputStream>,
    ) -> Result<(), ReconcileError> {
        let filter = self.redactor_for(key).await?;
        // A new leader restores the file from the store first, so the resume below skips
        // what is stored; what the follower appends is shipped as it comes.
        let shipping = FileShipper::start(&self.store, &self.files, path).await?;
        // Docker's `max-size`, read as Docker reads it (binary units); unknown: 0.
        let rotates_at =
            crate::resource::quantity::parse_memory(&self.config.runner.log_max_size).unwrap_or(0);
        let follow = Follow {
            path,
            filter: filter.as_ref(),
            files: &self.files,
            rotates_at,
            max_bytes: self.config.log_max_bytes,
        };
        if let Err(e) = follow_attempt(self.runtime.as_ref(), container, &follow, attached).await {
            tracing::warn!(
                container,
                code = e.code(),
                "could not store the container's output: {e}"
            );
        }
        shipping.finish().await;
        Ok(())
    }

    /// Waits until the follower of an exited container has stored all output; follows
    /// it here when no follower did. An error leaves the run as it is, to be retried.
    async fn drain_logs(
        self: &Arc<Self>,
        key: &ObjectKey,
        run_uid: &str,
        attempt: u32,
    ) -> Result<(), ReconcileError> {
        let container = container_name(run_uid, attempt);
        let handle = lock(&self.watchers).remove(&container);
        let stored = match handle {
            Some(handle) => match tokio::time::timeout(Duration::from_secs(60), handle).await {
                Ok(Ok(stored)) => stored,
                Ok(Err(_)) => false,
                Err(_) => {
                    tracing::warn!(container, "log follower did not finish within 60 s");
                    true
                }
            },
            None => false,
        };
        if !stored {
            let path = self.files.attempt_log(run_uid, attempt);
            self.store_output(key, &container, &path, None).await?;
        }
        // The status written after this says the attempt is over: only once its output
        // is in the shared store.
        let log = self.files.attempt_log(run_uid, attempt);
        ship::ship_pending(&self.store, &self.files, &log).await?;
        ship::ship_pending(&self.store, &self.files, &self.files.metrics(run_uid)).await?;
        Ok(())
    }

    fn record_setup_time(&self, run_uid: &str, status: &mut RunStatus) {
        let Some(attempt) = status.attempts.last_mut() else {
            return;
        };
        let started = attempt
            .started_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        let first = first_output_at(&self.files.attempt_log(run_uid, attempt.number));
        if let (Some(started), Some(first)) = (started, first) {
            let seconds = (first - started.with_timezone(&Utc)).num_milliseconds() as f64 / 1000.0;
            attempt.setup_seconds = Some(seconds.max(0.0));
        }
    }

    /// A notebook's attempt that failed in a cell: the runner's account of the cell (its
    /// last line on stderr) becomes the attempt's reason `CellFailed` and message, and
    /// the run's message (its reason too, where it was a plain `Error`).
    fn record_cell_failure(&self, observed: &Observed, status: &mut RunStatus) {
        let notebook = observed
            .pipeline
            .as_ref()
            .is_some_and(|p| p.entrypoint.as_deref().is_some_and(is_notebook));
        let Some(attempt) = status.attempts.last_mut() else {
            return;
        };
        if !notebook || attempt.reason.as_deref() != Some("Error") {
            return;
        }
        let log = self.files.attempt_log(&observed.run.uid, attempt.number);
        let Some(failure) = last_cell_failure(&log) else {
            return;
        };
        attempt.reason = Some("CellFailed".to_owned());
        attempt.message = Some(failure.clone());
        if status.reason.as_deref() == Some("Error") {
            status.reason = Some("CellFailed".to_owned());
        }
        status.message = Some(match status.message.take() {
            Some(message) => format!("{message}: {failure}"),
            None => failure,
        });
    }

    /// Reads the label the attempt wrote to its route file, for a pipeline whose
    /// triggers read one; a run that wrote none (or nothing readable) has no route.
    fn record_route(&self, observed: &Observed, status: &mut RunStatus) {
        let reads = observed
            .pipeline
            .as_ref()
            .is_some_and(|p| downstream::reads_route(&p.triggers));
        let Some(attempt) = status.attempts.last() else {
            return;
        };
        if !reads {
            return;
        }
        let file = route_dir(&self.config.secrets_dir, &attempt.container).join("route");
        status.route = read_prefix(&file, 1024)
            .ok()
            .and_then(|written| downstream::route_label(&written));
    }

    fn stop_in_background(self: &Arc<Self>, key: &ObjectKey, container: &str) {
        let this = self.clone();
        let key = key.clone();
        let container = container.to_owned();
        tokio::spawn(async move {
            if let Err(e) = this.may_act() {
                tracing::warn!(container, "not stopped: {e}");
                return;
            }
            if let Err(e) = this.runtime.stop(&container, this.config.stop_grace).await {
                tracing::warn!(container, code = e.code(), "stop failed: {e}");
            }
            this.queue.add(key);
        });
    }

    async fn note_runtime_unavailable(&self, key: &ObjectKey, error: &ReconcileError) {
        let Ok(Some(run)) = self.store.get(key).await else {
            return;
        };
        let Ok(mut status) = run.status_as::<RunStatus>() else {
            return;
        };
        if status.phase != RunPhase::Pending
            || status.reason.as_deref() == Some("ContainerRuntimeUnavailable")
        {
            return;
        }
        status.reason = Some("ContainerRuntimeUnavailable".to_owned());
        status.message = Some(format!(
            "container.runtime.unavailable: {error}; retrying with backoff"
        ));
        let value = serde_json::to_value(&status).unwrap_or_default();
        let _ = self
            .store
            .update_status(key, Some(run.resource_version), value)
            .await;
    }

    /// Reports a run that cannot be reconciled because a stored object it depends on is
    /// unreadable: a Warning event on the run (repeats counted, not duplicated) and the
    /// unreadable-objects metric. Nothing is written over the stored object.
    async fn report_unreadable(&self, key: &ObjectKey, error: &ReconcileError) {
        self.metrics.unreadable_objects.inc();
        tracing::error!(run = %key, "cannot reconcile: {error}; fix or delete the stored object");
        let message = format!(
            "{error}; the run is retried with backoff and nothing stored is changed: fix or delete the object"
        );
        if let Err(e) = self
            .store
            .record_event(
                key,
                crate::store::events::EventType::Warning,
                "UnreadableObject",
                &message,
            )
            .await
        {
            tracing::warn!(run = %key, code = e.code(), "cannot record an event: {e}");
        }
    }

    /// The line filter that redacts this run's secret values (none without secrets). An
    /// error when they cannot be known (the store does not answer, an object cannot be
    /// read): the caller then stores nothing rather than output that may hold them.
    async fn redactor_for(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<super::logs::LineFilter>, ReconcileError> {
        // Deleted run or pipeline, a missing secret: nothing was injected to redact.
        let Some(run) = self.store.get(key).await? else {
            return Ok(None);
        };
        let spec: RunSpec = run.spec_as()?;
        let pipeline_key = ObjectKey::new(
            Kind::Pipeline,
            key.namespace.clone(),
            spec.pipeline_ref.name,
        );
        let Some(pipeline) = self.store.get(&pipeline_key).await? else {
            return Ok(None);
        };
        let pipeline: PipelineSpec = pipeline.spec_as()?;
        let resolved = match self.secret_env(key, &pipeline).await? {
            Ok(resolved) => resolved,
            Err(_) => return Ok(None),
        };
        let values = resolved
            .env
            .values()
            .chain(resolved.files.values().flat_map(|f| f.values()));
        let redactor = crate::secrets::Redactor::new(values.map(String::as_str));
        if redactor.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(move |line: &str| redactor.redact(line))))
    }
}

/// The container of the highest attempt, with that attempt's number.
fn latest_attempt(containers: &[ContainerState]) -> Option<(u32, &ContainerState)> {
    containers
        .iter()
        .filter_map(|c| {
            c.labels
                .get(labels::ATTEMPT)
                .and_then(|a| a.parse::<u32>().ok())
                .map(|n| (n, c))
        })
        .max_by_key(|(n, _)| *n)
}

/// The container of the highest attempt.
fn latest_container(containers: &[ContainerState]) -> Option<&ContainerState> {
    latest_attempt(containers).map(|(_, container)| container)
}

/// The pipeline folder a run mounts, found right before its container is created.
struct SourceFolder {
    /// The folder and the source root, with every symbolic link resolved.
    folder: Resolved,
    /// The git commit the code comes from, when the source root is a checkout.
    revision: Option<String>,
}

/// Resolves the pipeline's folder under the source root and refuses one whose real path
/// leaves it (a folder that is a symbolic link to `/` or to the data directory would
/// otherwise be bind-mounted as it stands on the host). A source root that is itself a
/// link (the git source's `current`) is resolved here too: the container keeps this
/// commit's code when the pointer moves on.
fn locate_source(
    source_root: &Path,
    observed: &Observed,
    pipeline: &PipelineSpec,
) -> Result<SourceFolder, StartFailure> {
    let source_path = pipeline.source.as_ref().map_or_else(
        || observed.spec.pipeline_ref.name.clone(),
        |s| s.path.clone(),
    );
    let entrypoint = pipeline.entrypoint.as_deref().unwrap_or("main.py");
    let not_found = || StartFailure {
        reason: "SourceNotFound",
        message: format!(
            "{} does not exist under the source root {}",
            Path::new(&source_path).join(entrypoint).display(),
            source_root.display()
        ),
    };
    let folder = match crate::resource::path::resolve_inside(source_root, &source_path) {
        Ok(folder) => folder,
        Err(PathError::Unreadable { .. }) => return Err(not_found()),
        Err(problem) => {
            return Err(StartFailure {
                reason: "SourceOutsideRoot",
                message: format!(
                    "spec.source.path {source_path:?}: {problem}; the folder is not mounted"
                ),
            });
        }
    };
    if !folder.path.join(entrypoint).is_file() {
        return Err(not_found());
    }
    let revision = (folder.root != source_root)
        .then(|| {
            folder
                .root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .flatten();
    Ok(SourceFolder { folder, revision })
}

/// True when the requirements file exists and names at least one requirement (uv warns
/// about, and needs no `--with-requirements` for, an empty one).
/// The notebook runner's account of the cell that failed (`cell 2 failed after 3
/// attempts: ZeroDivisionError: …`), from the end of an attempt's stored log.
fn last_cell_failure(log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 64 * 1024;
    let mut file = std::fs::File::open(log).ok()?;
    let length = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(TAIL)))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let needle = format!(" stderr {NOTEBOOK_FAILURE_MARK}");
    String::from_utf8_lossy(&tail)
        .lines()
        .rev()
        .find_map(|line| Some(line.split_once(&needle)?.1.to_owned()))
}

/// Where the packages of the pipeline in `folder` come from ([`DEPENDENCY_FILES`]
/// order), with the file's text (read once, for the package set too): the first file
/// that declares something; `uv.lock` only beside a `pyproject.toml`.
fn dependencies(folder: &Path) -> Option<(Dependencies, String)> {
    DEPENDENCY_FILES.into_iter().find_map(|found| {
        if found == Dependencies::UvLock && !folder.join("pyproject.toml").is_file() {
            return None;
        }
        let text = std::fs::read_to_string(folder.join(found.file())).ok()?;
        let declares = match found {
            Dependencies::File(_) => text
                .lines()
                .map(str::trim)
                .any(|line| !line.is_empty() && !line.starts_with('#')),
            Dependencies::PyLock | Dependencies::UvLock => true,
        };
        declares.then_some((found, text))
    })
}

/// Decrypted secret values of one attempt: never stored, logged or returned.
#[derive(Default)]
struct ResolvedSecrets {
    env: BTreeMap<String, String>,
    /// Secret name → key → value, for `mountAs: files`.
    files: BTreeMap<String, BTreeMap<String, String>>,
}

/// Writes `mountAs: files` secrets under `<dir>/<container>/<secret>/<key>` (the dir
/// must be RAM-backed, e.g. /dev/shm) readable only by the run's user, and returns the
/// read-only mounts at `/run/secrets/<secret>`.
fn write_secret_files(
    dir: &Path,
    container: &str,
    user: &str,
    files: &BTreeMap<String, BTreeMap<String, String>>,
) -> std::io::Result<Vec<crate::controller::runtime::Mount>> {
    use std::os::unix::fs::{PermissionsExt, chown};
    let (uid, gid) = user_ids(user);
    let root = dir.join(container);
    let mut mounts = Vec::new();
    for (secret, values) in files {
        let secret_dir = root.join(secret);
        std::fs::create_dir_all(&secret_dir)?;
        for (key, value) in values {
            let path = secret_dir.join(key);
            std::fs::write(&path, value)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400))?;
            // Without root the files stay the operator's; then they must be readable.
            if chown(&path, uid, gid).is_err() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444))?;
            }
        }
        std::fs::set_permissions(&secret_dir, std::fs::Permissions::from_mode(0o555))?;
        mounts.push(crate::controller::runtime::Mount {
            source: secret_dir.display().to_string(),
            target: format!("/run/secrets/{secret}"),
            read_only: true,
        });
    }
    Ok(mounts)
}

/// A daemon's wait between attempts when `restart.cooldown` is not given.
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(10);

/// The numeric uid and gid of a run's `uid:gid` user, for the files written for it.
fn user_ids(user: &str) -> (Option<u32>, Option<u32>) {
    let ids: Vec<u32> = user.split(':').filter_map(|p| p.parse().ok()).collect();
    (ids.first().copied(), ids.get(1).copied())
}

/// The directory a container's route file is written to (mounted at
/// `/run/flotilla`): beside its secret files, removed with them. Secret names are
/// DNS labels, so `.route` is nobody's.
pub(super) fn route_dir(dir: &Path, container: &str) -> std::path::PathBuf {
    dir.join(container).join(".route")
}

/// Creates a container's route directory, writable by the run's user.
fn make_route_dir(
    dir: &Path,
    container: &str,
    user: &str,
) -> std::io::Result<crate::controller::runtime::Mount> {
    use std::os::unix::fs::{PermissionsExt, chown};
    let (uid, gid) = user_ids(user);
    let path = route_dir(dir, container);
    std::fs::create_dir_all(&path)?;
    // Without root the directory stays the operator's; then the run needs write access
    // through its mode (the parent directories stay the operator's own).
    if chown(&path, uid, gid).is_err() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
    }
    Ok(crate::controller::runtime::Mount {
        source: path.display().to_string(),
        target: downstream::ROUTE_DIR.to_owned(),
        read_only: false,
    })
}

/// Up to `limit` bytes from the start of `path`.
fn read_prefix(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes the secret files of a container (after it ended).
pub(super) fn remove_secret_files(dir: &Path, container: &str) {
    let path = dir.join(container);
    if path.exists()
        && let Err(e) = std::fs::remove_dir_all(&path)
    {
        tracing::warn!(container, "cannot remove secret files: {e}");
    }
}
