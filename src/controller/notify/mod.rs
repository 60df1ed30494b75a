//! The notification controller: tells the channels of matching Notifiers about failed,
//! recovered and over-limit runs, missed schedule slots and failed git syncs.
//!
//! It is fed by the store's change feed (runs finishing, schedules writing status), a
//! periodic re-list (what the feed cannot hold: a lagging receiver, a run that finished
//! while the operator was down) and a poll of the git source's in-memory status. It
//! never blocks the run controller: it only reads the store and the run files, and each
//! delivery is a task of its own, with a timeout per try and exponential backoff, so a
//! slow or broken channel delays no other.
//!
//! Delivery is at least once: a delivery is recorded as an event on the object it is
//! about (`NotificationSent` or, when every try failed, `NotificationFailed`, naming
//! notifier and channel); what has such an event is never sent again, after a restart
//! either. A crash between sending and recording sends once more; receivers can
//! deduplicate on the notice's stable id (`X-Flotilla-Delivery`).

pub mod channels;
pub mod decide;
pub mod facts;
pub mod notice;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use self::channels::{DeliveryError, Resolved, Sender};
use self::decide::{FAILED, SENT};
use self::facts::NotifierEntry;
use self::notice::Notice;
use crate::controller::run::logs::{RunFiles, read_samples};
use crate::metrics::{ChannelOutcome, Metrics};
use crate::resource::types::{
    ChannelKind, NotifierSpec, NotifyEvent, RunPhase, RunSpec, RunStatus, ScheduleSpec,
};
use crate::resource::{Kind, ObjectKey, RawObject};
use crate::secrets::Keyring;
use crate::source::git::GitSource;
use crate::source::git::status::SyncResult;
use crate::store::events::EventType;
use crate::store::{ChangeKind, Store, StoreError, StoreEvent};

/// Settings of the notification controller.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// The operator's public URL: notices link to `<url>/#/runs/<ns>/<run>`.
    pub public_url: Option<String>,
    /// Limit of one try of one delivery.
    pub timeout: Duration,
    /// Tries of one delivery before it is recorded as failed.
    pub attempts: u32,
    /// Wait before the second try; doubled for each further one (at most a minute).
    pub first_backoff: Duration,
    /// Time between re-lists of every run.
    pub resync_every: Duration,
    /// Time between looks at the git source's status.
    pub poll_every: Duration,
    /// Nothing older than this is notified (after an outage, say).
    pub catch_up: Duration,
    /// Lines of output quoted.
    pub log_lines: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            timeout: Duration::from_secs(10),
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            resync_every: Duration::from_secs(30),
            poll_every: Duration::from_secs(2),
            catch_up: Duration::from_secs(3600),
            log_lines: 20,
        }
    }
}

/// Deliveries remembered in memory before the set starts again.
const MAX_CLAIMED: usize = 100_000;

/// One delivery to make.
struct Job {
    involved: ObjectKey,
    notifier: NotifierEntry,
    channel: ChannelKind,
    notice: Notice,
    marker: String,
    dedupe: String,
}

/// The controller; cheap to share.
pub struct NotifyController {
    store: Store,
    keyring: Option<Arc<Keyring>>,
    files: RunFiles,
    git: Option<GitSource>,
    config: NotifyConfig,
    sender: Sender,
    metrics: Arc<Metrics>,
    /// Deliveries under way or done by this process (saves reading their events).
    claimed: Mutex<HashSet<String>>,
    /// Runs decided on, by uid, with the resourceVersion they were decided at.
    considered: Mutex<std::collections::HashMap<String, i64>>,
    /// Deliveries started by this process.
    started: std::sync::atomic::AtomicUsize,
    /// Newest `MissedSchedule` event looked at.
    schedule_cursor: Mutex<DateTime<Utc>>,
    /// The git sync last looked at: its start, whether it failed, its message.
    last_sync: Mutex<Option<(DateTime<Utc>, bool, String)>>,
    /// Every notifier, read once and again after any notifier changes (`None`): a slot
    /// of 10,000 finishing runs reads no notifier 10,000 times, and with none declared
    /// a finished run costs no read at all.
    notifiers: Mutex<Option<Arc<Vec<NotifierEntry>>>>,
    /// The latest outcomes of each pipeline's runs (namespace, pipeline → end, phase,
    /// run), newest [`OUTCOMES_KEPT`], kept from the runs this controller saw finish:
    /// whether a success is a recovery is decided without listing every run.
    outcomes: Mutex<std::collections::HashMap<(String, String), Vec<Outcome>>>,
    /// A schedule wrote its status since the last look for missed slots (looked at on
    /// the next poll, not once per schedule of a slot).
    schedules_changed: std::sync::atomic::AtomicBool,
}

/// How one run ended: when, in which phase, which run.
type Outcome = (DateTime<Utc>, RunPhase, String);

/// Outcomes kept per pipeline: enough that the one before any run still being decided
/// is among them.
const OUTCOMES_KEPT: usize = 32;

impl NotifyController {
    /// A controller reading `store` and `files`, decrypting with `keyring`.
    pub fn new(
        store: Store,
        keyring: Option<Arc<Keyring>>,
        files: RunFiles,
        git: Option<GitSource>,
        config: NotifyConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let since = Utc::now() - chrono::Duration::from_std(config.catch_up).unwrap_or_default();
        Arc::new(Self {
            store,
            keyring,
            files,
            git,
            config,
            sender: Sender::new(),
            metrics,
            claimed: Mutex::new(HashSet::new()),
            considered: Mutex::new(std::collections::HashMap::new()),
            started: std::sync::atomic::AtomicUsize::new(0),
            schedule_cursor: Mutex::new(since),
            last_sync: Mutex::new(None),
            notifiers: Mutex::new(None),
            outcomes: Mutex::new(std::collections::HashMap::new()),
            schedules_changed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Runs until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut feed = self.store.subscribe();
        // What finished while no operator was watching (or just before a kill -9).
        self.resync().await;
        let started = self.started.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            "notifications caught up: {started} delivery(ies) started for what happened before this start"
        );
        let mut resync = tokio::time::interval_at(
            tokio::time::Instant::now() + self.config.resync_every,
            self.config.resync_every,
        );
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(self.config.poll_every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = resync.tick() => self.resync().await,
                _ = poll.tick() => {
                    self.look_at_git().await;
                    if self.schedules_changed.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        self.look_at_missed_slots().await;
                    }
                }
                event = feed.recv() => match event {
                    Ok(event) => self.on_change(event).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "notifications lagged behind the change feed; re-listing");
                        self.resync().await;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    async fn on_change(self: &Arc<Self>, event: StoreEvent) {
        match (event.key.kind, event.change) {
            (_, ChangeKind::Deleted) => {}
            (Kind::Notifier, _) => *lock(&self.notifiers) = None,
            (Kind::Run, ChangeKind::StatusModified | ChangeKind::Modified) => {
                self.consider_run(&event.object).await;
            }
            // The schedule controller records a missed slot's event, then its status.
            (Kind::Schedule, ChangeKind::StatusModified) => self
                .schedules_changed
                .store(true, std::sync::atomic::Ordering::Relaxed),
            _ => {}
        }
    }

    /// Every run, every missed slot since the cursor.
    async fn resync(self: &Arc<Self>) {
        *lock(&self.notifiers) = None;
        match self.store.list_raw(Kind::Run, None).await {
            Ok(runs) => {
                let uids: HashSet<&str> = runs.iter().map(|r| r.uid.as_str()).collect();
                lock(&self.considered).retain(|uid, _| uids.contains(uid.as_str()));
                // Every outcome first, so each run is decided against all earlier ones
                // (those decided already were noted then).
                for run in &runs {
                    if lock(&self.considered).get(&run.uid) == Some(&run.resource_version) {
                        continue;
                    }
                    if let (Ok(spec), Ok(status)) =
                        (run.spec_as::<RunSpec>(), run.status_as::<RunStatus>())
                    {
                        self.note_outcome(run, &spec, &status);
                    }
                }
                for run in &runs {
                    self.consider_run(run).await;
                }
            }
            Err(e) => tracing::warn!(code = e.code(), "notifications cannot list runs: {e}"),
        }
        self.look_at_missed_slots().await;
    }

    async fn consider_run(self: &Arc<Self>, run: &RawObject) {
        let seen = lock(&self.considered).get(&run.uid) == Some(&run.resource_version);
        if seen {
            return;
        }
        match self.try_consider_run(run).await {
            Ok(()) => {
                lock(&self.considered).insert(run.uid.clone(), run.resource_version);
            }
            Err(e) => {
                tracing::warn!(run = %run.key, code = e.code(), "notification not decided: {e}")
            }
        }
    }

    async fn try_consider_run(self: &Arc<Self>, run: &RawObject) -> Result<(), StoreError> {
        let (Ok(spec), Ok(status)) = (run.spec_as::<RunSpec>(), run.status_as::<RunStatus>())
        else {
            return Ok(());
        };
        if !status.phase.is_finished() {
            return Ok(());
        }
        self.note_outcome(run, &spec, &status);
        let all = self.notifiers().await?;
        if all.is_empty() {
            return Ok(());
        }
        let finished = decide::finished_at(&status).unwrap_or(run.updated_at);
        let now = Utc::now();
        if now.signed_duration_since(finished)
            > chrono::Duration::from_std(self.config.catch_up).unwrap_or_default()
        {
            return Ok(());
        }
        let namespace = &run.key.namespace;
        let pipeline_name = &spec.pipeline_ref.name;
        let pipeline = facts::pipeline(&self.store, namespace, pipeline_name).await?;
        let notifiers: Vec<NotifierEntry> = facts::covering(&all, namespace, &pipeline)
            .filter(|n| decide::is_due(n.created, finished, now, self.config.catch_up))
            .collect();
        if notifiers.is_empty() {
            return Ok(());
        }
        let wants = |event| notifiers.iter().any(|n| n.spec.wants(event));
        let previous = if status.phase == RunPhase::Succeeded && wants(NotifyEvent::RunRecovered) {
            let history: Vec<(DateTime<Utc>, RunPhase)> = lock(&self.outcomes)
                .get(&(namespace.clone(), pipeline_name.clone()))
                .map(|outcomes| {
                    outcomes
                        .iter()
                        .filter(|(_, _, name)| *name != run.key.name)
                        .map(|(at, phase, _)| (*at, *phase))
                        .collect()
                })
                .unwrap_or_default();
            decide::previous_phase(&history, finished)
        } else {
            None
        };
        let breach = match &pipeline.spec.resources {
            Some(limits) if wants(NotifyEvent::SoftLimitExceeded) => {
                decide::soft_limit_breach(&read_samples(&self.files.metrics(&run.uid)), limits)
            }
            _ => None,
        };
        let events = decide::run_events(status.phase, previous, breach.is_some());
        if events.is_empty() {
            return Ok(());
        }
        let base = self.run_notice(run, &spec, &status, finished);
        let mut recorded = None;
        for event in events {
            let mut notice = base.clone();
            notice.event = Some(event);
            notice.id = format!("{}/{}", run.uid, event.as_str());
            if event == NotifyEvent::SoftLimitExceeded {
                notice.reason = Some("SoftLimitExceeded".into());
                notice.detail = breach.clone();
            }
            for notifier in notifiers.iter().filter(|n| n.spec.wants(event)) {
                for channel in notifier.spec.channels() {
                    let marker =
                        decide::marker(event.as_str(), &notifier.key.name, channel.as_str(), None);
                    let dedupe = format!("{}/{marker}", run.uid);
                    if self.is_claimed(&dedupe) {
                        continue;
                    }
                    if recorded.is_none() {
                        recorded = Some(
                            self.store
                                .list_events(Some(namespace), Some((Kind::Run, &run.key.name)), 500)
                                .await?,
                        );
                    }
                    if decide::already_handled(recorded.as_deref().unwrap_or_default(), &marker) {
                        self.claim(&dedupe);
                        continue;
                    }
                    self.start(Job {
                        involved: run.key.clone(),
                        notifier: notifier.clone(),
                        channel,
                        notice: notice.clone(),
                        marker,
                        dedupe,
                    });
                }
            }
        }
        Ok(())
    }

    /// Remembers how a finished run ended, among its pipeline's newest outcomes.
    fn note_outcome(&self, run: &RawObject, spec: &RunSpec, status: &RunStatus) {
        if !status.phase.is_finished() {
            return;
        }
        let at = decide::finished_at(status).unwrap_or(run.updated_at);
        let mut outcomes = lock(&self.outcomes);
        let kept = outcomes
            .entry((run.key.namespace.clone(), spec.pipeline_ref.name.clone()))
            .or_default();
        if kept.iter().any(|(_, _, name)| *name == run.key.name) {
            return;
        }
        kept.push((at, status.phase, run.key.name.clone()));
        if kept.len() > OUTCOMES_KEPT {
            kept.sort_by_key(|(at, _, _)| std::cmp::Reverse(*at));
            kept.truncate(OUTCOMES_KEPT);
        }
    }

    /// Every notifier, from memory unless one changed since it was read.
    async fn notifiers(&self) -> Result<Arc<Vec<NotifierEntry>>, StoreError> {
        if let Some(known) = lock(&self.notifiers).clone() {
            return Ok(known);
        }
        let read = Arc::new(facts::notifiers(&self.store, None).await?);
        *lock(&self.notifiers) = Some(read.clone());
        Ok(read)
    }

    /// What every notice about `run` says.
    fn run_notice(
        &self,
        run: &RawObject,
        spec: &RunSpec,
        status: &RunStatus,
        finished: DateTime<Utc>,
    ) -> Notice {
        let last = status.attempts.last();
        let log_tail = last
            .map(|a| {
                facts::log_tail(
                    &self.files.attempt_log(&run.uid, a.number),
                    self.config.log_lines,
                )
            })
            .unwrap_or_default();
        Notice {
            event: None,
            namespace: run.key.namespace.clone(),
            pipeline: Some(spec.pipeline_ref.name.clone()),
            run: Some(run.key.name.clone()),
            schedule: spec.schedule_ref.as_ref().map(|s| s.name.clone()),
            phase: Some(format!("{:?}", status.phase)),
            reason: status.reason.clone(),
            exit_code: last.and_then(|a| a.exit_code),
            duration: decide::run_duration(status),
            attempts: Some(status.attempts.len()),
            detail: status.message.clone(),
            log_tail,
            link: self.link(&run.key),
            at: finished,
            id: String::new(),
        }
    }

    fn link(&self, key: &ObjectKey) -> Option<String> {
        self.config.public_url.as_ref().map(|base| {
            format!(
                "{}/#/runs/{}/{}",
                base.trim_end_matches('/'),
                key.namespace,
                key.name
            )
        })
    }

    /// Notifies `MissedSchedule` events recorded since the cursor.
    async fn look_at_missed_slots(self: &Arc<Self>) {
        if let Err(e) = self.try_missed_slots().await {
            tracing::warn!(code = e.code(), "missed slots not notified: {e}");
        }
    }

    async fn try_missed_slots(self: &Arc<Self>) -> Result<(), StoreError> {
        let all = self.notifiers().await?;
        if !all
            .iter()
            .any(|n| n.spec.wants(NotifyEvent::ScheduleMissed))
        {
            return Ok(());
        }
        let cursor = *lock(&self.schedule_cursor);
        let events = self.store.list_events(None, None, 500).await?;
        let missed: Vec<_> = events
            .into_iter()
            .filter(|e| e.involved.kind == Kind::Schedule && e.reason == "MissedSchedule")
            .filter(|e| e.last_seen > cursor)
            .collect();
        let Some(newest) = missed.iter().map(|e| e.last_seen).max() else {
            return Ok(());
        };
        let now = Utc::now();
        for event in &missed {
            let key = &event.involved;
            let Some(schedule) = self.store.get(key).await? else {
                continue;
            };
            let Ok(spec) = schedule.spec_as::<ScheduleSpec>() else {
                continue;
            };
            let pipeline =
                facts::pipeline(&self.store, &key.namespace, &spec.pipeline_ref.name).await?;
            let notifiers: Vec<NotifierEntry> = facts::covering(&all, &key.namespace, &pipeline)
                .filter(|n| n.spec.wants(NotifyEvent::ScheduleMissed))
                .filter(|n| decide::is_due(n.created, event.last_seen, now, self.config.catch_up))
                .collect();
            if notifiers.is_empty() {
                continue;
            }
            let moment = event.last_seen.to_rfc3339_opts(SecondsFormat::Millis, true);
            let notice = Notice {
                event: Some(NotifyEvent::ScheduleMissed),
                namespace: key.namespace.clone(),
                pipeline: Some(spec.pipeline_ref.name.clone()),
                schedule: Some(key.name.clone()),
                reason: Some("MissedSchedule".into()),
                detail: Some(event.message.clone()),
                at: event.last_seen,
                id: format!("{}/ScheduleMissed/{moment}", schedule.uid),
                ..Notice::default()
            };
            let recorded = self
                .store
                .list_events(Some(&key.namespace), Some((Kind::Schedule, &key.name)), 500)
                .await?;
            self.start_all(
                key,
                &notifiers,
                NotifyEvent::ScheduleMissed,
                &moment,
                &notice,
                &recorded,
            );
        }
        let mut cursor = lock(&self.schedule_cursor);
        *cursor = (*cursor).max(newest);
        Ok(())
    }

    /// Notifies a failed git sync: the first of a series, and again when its error
    /// changes (an auto-sync failing every minute the same way is one notice).
    async fn look_at_git(self: &Arc<Self>) {
        let Some(git) = &self.git else {
            return;
        };
        let Some(sync) = git.status().last_sync else {
            return;
        };
        let failed = matches!(sync.result, SyncResult::Failed | SyncResult::Invalid);
        let notify = {
            let mut last = lock(&self.last_sync);
            let new = last
                .as_ref()
                .is_none_or(|(at, _, _)| *at != sync.started_at);
            let repeat = last
                .as_ref()
                .is_some_and(|(_, was_failed, message)| *was_failed && *message == sync.message);
            *last = Some((sync.started_at, failed, sync.message.clone()));
            new && failed && !repeat
        };
        if notify && let Err(e) = self.notify_sync_failure(&sync).await {
            tracing::warn!(code = e.code(), "git sync failure not notified: {e}");
        }
    }

    async fn notify_sync_failure(
        self: &Arc<Self>,
        sync: &crate::source::git::status::SyncAttempt,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let moment = sync.started_at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut detail = sync.message.clone();
        for problem in sync.errors.iter().take(5) {
            detail.push_str("; ");
            detail.push_str(&problem.text);
        }
        let notice = Notice {
            event: Some(NotifyEvent::SyncFailed),
            reason: Some(format!("{:?}", sync.result)),
            detail: Some(detail),
            at: sync.finished_at,
            id: format!("git/SyncFailed/{moment}"),
            ..Notice::default()
        };
        for notifier in self.notifiers().await?.iter() {
            if !notifier.spec.wants(NotifyEvent::SyncFailed)
                || !decide::is_due(
                    notifier.created,
                    sync.finished_at,
                    now,
                    self.config.catch_up,
                )
            {
                continue;
            }
            let mut notice = notice.clone();
            notice.namespace = notifier.key.namespace.clone();
            let recorded = self
                .store
                .list_events(
                    Some(&notifier.key.namespace),
                    Some((Kind::Notifier, &notifier.key.name)),
                    500,
                )
                .await?;
            let key = notifier.key.clone();
            self.start_all(
                &key,
                std::slice::from_ref(notifier),
                NotifyEvent::SyncFailed,
                &moment,
                &notice,
                &recorded,
            );
        }
        Ok(())
    }

    /// Starts the deliveries of `notice` through every channel of `notifiers` not yet
    /// recorded in `recorded` (the events of `involved`).
    fn start_all(
        self: &Arc<Self>,
        involved: &ObjectKey,
        notifiers: &[NotifierEntry],
        event: NotifyEvent,
        moment: &str,
        notice: &Notice,
        recorded: &[crate::store::events::Event],
    ) {
        for notifier in notifiers {
            for channel in notifier.spec.channels() {
                let marker = decide::marker(
                    event.as_str(),
                    &notifier.key.name,
                    channel.as_str(),
                    Some(moment),
                );
                let dedupe = format!("{involved}/{marker}");
                if self.is_claimed(&dedupe) {
                    continue;
                }
                if decide::already_handled(recorded, &marker) {
                    self.claim(&dedupe);
                    continue;
                }
                self.start(Job {
                    involved: involved.clone(),
                    notifier: notifier.clone(),
                    channel,
                    notice: notice.clone(),
                    marker,
                    dedupe,
                });
            }
        }
    }

    fn is_claimed(&self, dedupe: &str) -> bool {
        lock(&self.claimed).contains(dedupe)
    }

    fn claim(&self, dedupe: &str) -> bool {
        let mut claimed = lock(&self.claimed);
        if claimed.len() >= MAX_CLAIMED {
            // Forgotten claims are found again in the recorded events.
            claimed.clear();
        }
        claimed.insert(dedupe.to_owned())
    }

    /// Claims the job and delivers it on a task of its own.
    fn start(self: &Arc<Self>, job: Job) {
        if !self.claim(&job.dedupe) {
            return;
        }
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let this = self.clone();
        tokio::spawn(async move { this.deliver(job).await });
    }

    /// Tries a delivery until it succeeds, fails for good or runs out of tries, then
    /// records the outcome as an event on the object it is about.
    async fn deliver(&self, job: Job) {
        let started = Instant::now();
        let (attempts, outcome) = self.try_delivery(&job).await;
        let elapsed = started.elapsed().as_millis();
        let (event_type, reason, message) = match &outcome {
            Ok(()) => (
                EventType::Normal,
                SENT,
                format!("{} ({attempts} attempt(s), {elapsed} ms)", job.marker),
            ),
            Err(e) => (
                EventType::Warning,
                FAILED,
                format!("{} ({attempts} attempt(s)): {e}", job.marker),
            ),
        };
        self.metrics
            .notifications
            .get_or_create(&ChannelOutcome {
                channel: job.channel.as_str().to_owned(),
                outcome: if outcome.is_ok() { "sent" } else { "failed" }.to_owned(),
            })
            .inc();
        match &outcome {
            Ok(()) => tracing::info!(object = %job.involved, "{message}"),
            Err(e) => tracing::warn!(object = %job.involved, code = e.code(), "{message}"),
        }
        if let Err(e) = self
            .store
            .record_event(&job.involved, event_type, reason, &message)
            .await
        {
            // Not recorded: the next re-list sends it again (at least once).
            tracing::warn!(code = e.code(), "cannot record a notification: {e}");
            lock(&self.claimed).remove(&job.dedupe);
        }
    }

    async fn try_delivery(&self, job: &Job) -> (u32, Result<(), DeliveryError>) {
        let mut attempt = 1;
        loop {
            let outcome = match Resolved::read(
                &self.store,
                self.keyring.as_deref(),
                &job.notifier.key.namespace,
                &job.notifier.spec,
            )
            .await
            {
                Ok(secrets) => {
                    self.sender
                        .send(
                            &job.notifier.spec,
                            job.channel,
                            &secrets,
                            &job.notice,
                            self.config.timeout,
                        )
                        .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if e.is_transient() && attempt < self.config.attempts => {
                    attempt += 1;
                    tracing::debug!(
                        object = %job.involved,
                        "{} failed, trying again: {e}",
                        job.marker
                    );
                    tokio::time::sleep(decide::backoff(self.config.first_backoff, attempt)).await;
                }
                outcome => return (attempt, outcome),
            }
        }
    }
}

/// Sends a test notice through every channel of the notifier `spec` (named `name`, in
/// `namespace`): what each channel answered.
pub async fn send_test(
    store: &Store,
    keyring: Option<&Keyring>,
    namespace: &str,
    name: &str,
    spec: &NotifierSpec,
    timeout: Duration,
) -> Vec<(ChannelKind, Result<(), DeliveryError>)> {
    let notice = Notice {
        event: None,
        namespace: namespace.to_owned(),
        detail: Some(format!(
            "A test of notifier {namespace}/{name}, sent by `flotilla notify test`."
        )),
        at: Utc::now(),
        id: format!("test/{}", uuid::Uuid::new_v4()),
        ..Notice::default()
    };
    let secrets = match Resolved::read(store, keyring, namespace, spec).await {
        Ok(secrets) => secrets,
        Err(e) => {
            let text = e.to_string();
            return spec
                .channels()
                .into_iter()
                .map(|c| (c, Err(DeliveryError::Config(text.clone()))))
                .collect();
        }
    };
    let sender = Sender::new();
    let sends = spec.channels().into_iter().map(|channel| {
        let (sender, secrets, notice) = (&sender, &secrets, &notice);
        async move {
            (
                channel,
                sender.send(spec, channel, secrets, notice, timeout).await,
            )
        }
    });
    futures::future::join_all(sends).await
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
