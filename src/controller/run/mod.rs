//! The run controller: converges `Run` objects into one container per attempt.
//!
//! Level-triggered: every reconcile observes the stored run and the containers labelled
//! with its uid, decides with the pure [`decide::decide_run_action`], acts through the
//! [`ContainerRuntime`], and writes status. It is woken by store changes, container
//! events, follower completion, timers and a periodic resync, so a lost event only
//! delays convergence.

pub mod admission;
pub mod container;
pub mod decide;
#[cfg(test)]
mod decide_tests;
pub mod downstream;
pub mod logs;
pub mod packages;
mod reconcile;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::admission::Slots;
use self::container::RunnerConfig;
use self::logs::RunFiles;
use super::queue::WorkQueue;
use super::runtime::{ContainerEvent, ContainerRuntime, ContainerState, labels};
use crate::metrics::{Metrics, State};
use crate::resource::types::RunSpec;
use crate::resource::types::{RunPhase, RunStatus};
use crate::resource::{Change, DesiredObject, StoredObject};
use crate::resource::{Kind, ObjectKey};
use crate::secrets::Keyring;
use crate::store::{ChangeKind, Store, StoreError, StoreEvent};

/// Settings of the run controller.
#[derive(Clone, Debug)]
pub struct RunControllerConfig {
    /// Image, mounts and user of run containers.
    pub runner: RunnerConfig,
    /// The source root as this process sees it (to check folders exist).
    pub source_root: PathBuf,
    /// Data directory (logs and samples live under `runs/`).
    pub data_dir: PathBuf,
    /// Global limit of concurrently running runs.
    pub max_concurrent_runs: Option<usize>,
    /// Parallel reconciles.
    pub workers: usize,
    /// Full resync period.
    pub resync_every: Duration,
    /// SIGTERM → SIGKILL grace period when stopping a run.
    pub stop_grace: Duration,
    /// CPU/memory sampling period.
    pub sample_every: Duration,
    /// RAM-backed host directory for `mountAs: files` secrets.
    pub secrets_dir: PathBuf,
    /// How long a finished attempt's container is kept as a tombstone of its name
    /// (twice the lease ttl with several replicas, zero alone).
    pub tombstone_for: Duration,
    /// Python of pipelines imported from Fast-Flow without `python_version`
    /// (`--default-python`).
    pub fastflow_python: Option<String>,
    /// Timeout of runs of pipelines imported from Fast-Flow without `timeout`
    /// (`--default-timeout`, Fast-Flow's CONTAINER_TIMEOUT).
    pub fastflow_timeout: Option<Duration>,
    /// Longest chain of runs started by triggers (`--max-trigger-depth`).
    pub max_trigger_depth: u32,
    /// Largest stored log of one attempt (`--log-max-size`); unlimited when `None`.
    pub log_max_bytes: Option<u64>,
}

/// The run controller and its shared state.
pub struct RunController<R: ContainerRuntime> {
    store: Store,
    runtime: Arc<R>,
    config: RunControllerConfig,
    keyring: Option<Arc<Keyring>>,
    queue: WorkQueue,
    slots: Mutex<Slots>,
    active: Mutex<HashSet<ObjectKey>>,
    /// Log followers by container; each answers whether it stored all output.
    watchers: Mutex<HashMap<String, JoinHandle<bool>>>,
    failures: Mutex<HashMap<ObjectKey, u32>>,
    files: RunFiles,
    metrics: Arc<Metrics>,
    /// The package set last written to each pipeline's status, so it is written only
    /// when it changes.
    packages: Mutex<HashMap<ObjectKey, crate::resource::types::Packages>>,
}

impl<R: ContainerRuntime> RunController<R> {
    /// A controller; call [`RunController::run`] to start it.
    pub fn new(
        store: Store,
        runtime: Arc<R>,
        config: RunControllerConfig,
        keyring: Option<Arc<Keyring>>,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            files: RunFiles::new(&config.data_dir),
            slots: Mutex::new(Slots::new(config.max_concurrent_runs)),
            store,
            runtime,
            config,
            keyring,
            queue: WorkQueue::new(),
            active: Mutex::new(HashSet::new()),
            watchers: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            metrics,
            packages: Mutex::new(HashMap::new()),
        })
    }

    /// Where run logs and samples are stored.
    pub fn files(&self) -> &RunFiles {
        &self.files
    }

    /// Runs until `shutdown`. Running containers are left running; the next start
    /// re-attaches to them.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut changes = self.store.subscribe();
        if !self.register_existing_runs(&shutdown).await {
            return;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.config.workers.max(1) {
            let this = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { this.work(shutdown).await });
        }
        {
            let this = self.clone();
            let shutdown = shutdown.clone();
            tasks.spawn(async move { this.watch_events(shutdown).await });
        }
        let mut resync = tokio::time::interval(self.config.resync_every);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = resync.tick() => self.resync().await,
                change = changes.recv() => match change {
                    Ok(event) => self.on_store_change(event),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => self.resync().await,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        while tasks.join_next().await.is_some() {}
        let watchers: Vec<JoinHandle<bool>> =
            lock(&self.watchers).drain().map(|(_, h)| h).collect();
        for watcher in watchers {
            watcher.abort();
        }
    }

    async fn work(self: Arc<Self>, shutdown: CancellationToken) {
        while let Some(key) = self.queue.next(&shutdown).await {
            let started = std::time::Instant::now();
            let requeue = self.reconcile(&key).await;
            self.metrics
                .reconcile_seconds
                .observe(started.elapsed().as_secs_f64());
            self.queue.done(&key);
            self.publish_gauges();
            if let Some(delay) = requeue {
                self.queue.add_after(key, delay);
            }
        }
    }

    fn on_store_change(self: &Arc<Self>, event: StoreEvent) {
        let key = event.key;
        match key.kind {
            // Status writes are this controller's own; they need no second look.
            Kind::Run if event.change == ChangeKind::StatusModified => {}
            // A deleted run's containers go at once, not at the next garbage collection.
            Kind::Run if event.change == ChangeKind::Deleted => {
                let was_active = lock(&self.active).remove(&key);
                for released in lock(&self.slots).release(&key) {
                    self.queue.add(released);
                }
                // A finished run's container went when it finished, unless finished
                // attempts are kept as tombstones: asking Docker for each of the 10,000
                // runs a slot's history pruning deletes would be 10,000 requests for
                // nothing. What a failed removal left behind, garbage collection takes.
                if was_active || !self.config.tombstone_for.is_zero() {
                    let this = self.clone();
                    let uid = event.object.uid.clone();
                    tokio::spawn(async move { this.remove_containers_of(&uid).await });
                }
            }
            Kind::Run => {
                if event.change == ChangeKind::Added
                    && let Ok(spec) = event.object.spec_as::<RunSpec>()
                {
                    // Its place in the FIFO queue is kept from now, before any reconcile.
                    lock(&self.slots).expect(
                        &key,
                        &spec.pipeline_ref.name,
                        event.object.created_at,
                    );
                }
                lock(&self.active).insert(key.clone());
                self.queue.add(key);
            }
            // A pipeline or secret appearing or changing can unblock pending runs.
            Kind::Pipeline | Kind::Secret => {
                for run in lock(&self.active).iter() {
                    self.queue.add(run.clone());
                }
            }
            Kind::Schedule | Kind::Notifier => {}
        }
    }

    /// Loads every unfinished run at start-up: running ones keep their slots, pending
    /// ones queue in creation order, all get reconciled.
    /// Returns false when `shutdown` came first. Rows are read as stored text: a run
    /// whose status or spec cannot be read is queued all the same, so its reconcile
    /// reports it (log, metric, event) instead of one bad row stopping the start.
    async fn register_existing_runs(&self, shutdown: &CancellationToken) -> bool {
        let mut retry = tokio::time::interval(Duration::from_secs(2));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let runs = loop {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = retry.tick() => {}
            }
            match self.store.list_raw(Kind::Run, None).await {
                Ok(runs) => break runs,
                Err(e) => tracing::error!(code = e.code(), "cannot list runs, retrying: {e}"),
            }
        };
        let mut active = lock(&self.active);
        let mut slots = lock(&self.slots);
        for run in runs {
            let status = run.status_as::<RunStatus>();
            if status.as_ref().is_ok_and(|s| s.phase.is_finished()) {
                continue;
            }
            if let (Ok(status), Ok(spec)) = (status, run.spec_as::<RunSpec>()) {
                match status.phase {
                    RunPhase::Running => slots.hold(&run.key, &spec.pipeline_ref.name),
                    _ => slots.expect(&run.key, &spec.pipeline_ref.name, run.created_at),
                }
            }
            active.insert(run.key.clone());
            self.queue.add(run.key);
        }
        tracing::info!(active = active.len(), "run controller started");
        true
    }

    /// Re-queues every unfinished run and removes containers that belong to no live run.
    async fn resync(&self) {
        let keys: Vec<ObjectKey> = lock(&self.active).iter().cloned().collect();
        for key in keys {
            self.queue.add(key);
        }
        self.collect_garbage().await;
    }

    /// Containers of this store whose run no longer exists (or was recreated under the
    /// same name) are stopped and removed. Only the store identity decides what is ours:
    /// another operator with the same `--instance` but its own store is never touched.
    async fn collect_garbage(&self) {
        if let Err(e) = self.may_act() {
            tracing::warn!("garbage collection skipped: {e}");
            return;
        }
        let containers = match self
            .runtime
            .list(labels::STORE, &self.config.runner.store)
            .await
        {
            Ok(containers) => containers,
            Err(e) => {
                tracing::warn!(code = e.code(), "garbage collection skipped: {e}");
                return;
            }
        };
        for container in containers {
            let Some(run_name) = container.labels.get(labels::RUN_NAME) else {
                continue;
            };
            let Some((namespace, name)) = run_name.split_once('/') else {
                continue;
            };
            let key = ObjectKey::new(Kind::Run, namespace, name);
            let live = match self.store.get(&key).await {
                Ok(Some(run)) => container.labels.get(labels::RUN) == Some(&run.uid),
                Ok(None) => false,
                Err(_) => true, // cannot tell: keep it
            };
            if live {
                self.queue.add(key);
            } else if self.may_act().is_ok() {
                tracing::info!(container = %container.name, "removing a container whose run no longer exists");
                self.stop_watcher(&container.name);
                reconcile::remove_secret_files(&self.config.secrets_dir, &container.name);
                match self.runtime.remove(&container.name).await {
                    Ok(()) => {
                        self.metrics.gc_removed.inc();
                    }
                    Err(e) => {
                        tracing::warn!(container = %container.name, code = e.code(), "cannot remove: {e}")
                    }
                }
            }
        }
        self.metrics.gc_passes.inc();
    }

    /// Follows container events; after every (re)connect re-lists, because the daemon
    /// keeps only 256 events and the proxy cuts idle streams.
    async fn watch_events(self: Arc<Self>, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            let mut events = self
                .runtime
                .events(labels::STORE, &self.config.runner.store);
            self.resync().await;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            failures = 0;
                            self.on_container_event(&event);
                        }
                        Some(Err(e)) => {
                            failures += 1;
                            tracing::warn!(code = e.code(), "container event stream failed: {e}");
                            break;
                        }
                        None => break,
                    }
                }
            }
            let delay = Duration::from_millis(500 * u64::from(failures.clamp(1, 20)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Queues the run a container belongs to (its labels come with the event: no
    /// inspect, which Docker answers only after its clean-up of a container that died).
    fn on_container_event(&self, event: &ContainerEvent) {
        if let Some((namespace, name)) = event
            .labels
            .get(labels::RUN_NAME)
            .and_then(|n| n.split_once('/'))
        {
            self.queue.add(ObjectKey::new(Kind::Run, namespace, name));
        }
    }

    fn publish_gauges(&self) {
        let (running, queued) = {
            let slots = lock(&self.slots);
            (slots.in_use(), slots.queued())
        };
        let gauge = |state: &str| {
            self.metrics
                .runs_active
                .get_or_create(&State {
                    state: state.to_owned(),
                })
                .clone()
        };
        gauge("running").set(i64::try_from(running).unwrap_or(i64::MAX));
        gauge("queued").set(i64::try_from(queued).unwrap_or(i64::MAX));
        self.metrics
            .work_queue_depth
            .set(i64::try_from(self.queue.len()).unwrap_or(i64::MAX));
    }

    async fn remove_containers_of(&self, run_uid: &str) {
        if let Err(e) = self.may_act() {
            tracing::warn!("containers of a deleted run are left to the leader: {e}");
            return;
        }
        match self.runtime.list(labels::RUN, run_uid).await {
            Ok(containers) => {
                for container in containers.into_iter().filter(|c| self.owns(c)) {
                    self.stop_watcher(&container.name);
                    reconcile::remove_secret_files(&self.config.secrets_dir, &container.name);
                    if let Err(e) = self.runtime.remove(&container.name).await {
                        tracing::warn!(container = %container.name, code = e.code(), "cannot remove: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!(
                code = e.code(),
                "containers of a deleted run are left to garbage collection: {e}"
            ),
        }
    }

    /// Whether a container found by its run's uid may be adopted, stopped or removed:
    /// it carries this store's identity, or none at all (created before containers
    /// carried it; its run uid already ties it to this store). A container of another
    /// store with the same run uid (a copied store) is left alone.
    fn owns(&self, container: &ContainerState) -> bool {
        container
            .labels
            .get(labels::STORE)
            .is_none_or(|store| *store == self.config.runner.store)
    }

    fn stop_watcher(&self, container: &str) {
        if let Some(handle) = lock(&self.watchers).remove(container) {
            handle.abort();
        }
    }
}

/// Asks for a run to be cancelled by setting `spec.cancel` (the controller then stops its
/// container and ends it `Cancelled`). Retries concurrent writes; returns the run as
/// stored afterwards, or `None` when it does not exist.
pub async fn request_cancel(
    store: &Store,
    key: &ObjectKey,
) -> Result<Option<StoredObject>, StoreError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let Some(run) = store.get(key).await? else {
            return Ok(None);
        };
        // A spec this version cannot read is an error, never a default written back.
        let mut spec: RunSpec = run.spec_as()?;
        if spec.cancel {
            return Ok(Some(run));
        }
        spec.cancel = true;
        let change = Change::Update {
            object: DesiredObject {
                key: run.key.clone(),
                labels: run.labels.clone(),
                annotations: run.annotations.clone(),
                spec: serde_json::to_value(&spec)
                    .map_err(|e| StoreError::Corrupt {
                        key: run.key.to_string(),
                        reason: format!("the cancelled spec cannot be written: {e}"),
                    })?
                    .into(),
            },
            managed_by: run.managed_by.clone(),
            expected_resource_version: run.resource_version,
        };
        match store.commit(vec![change]).await {
            Ok(mut written) => return Ok(written.pop()),
            Err(StoreError::Conflict { .. }) if attempts < 5 => continue,
            Err(e) => return Err(e),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
