//! Prometheus metrics of the operator: one registry, shared by the controllers (which
//! count and time what they do) and the server (which exposes it at `/metrics` and
//! counts requests).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels `phase` and `reason` of a run transition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseReason {
    /// Run phase reached.
    pub phase: String,
    /// Reason (empty when none).
    pub reason: String,
}

/// Label `code`: a stable error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// The error code.
    pub code: String,
}

/// Labels of a notification delivery: its channel and whether it was `sent` or
/// `failed` (every try).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelOutcome {
    /// `email`, `teams`, `slack` or `webhook`.
    pub channel: String,
    /// `sent` or `failed`.
    pub outcome: String,
}

/// Label `result` of paged list requests: `hit` (served from the rendered-page cache)
/// or `miss` (read from the store and rendered).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheResult {
    /// `hit` or `miss`.
    pub result: String,
}

/// Label `state` of active runs.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    /// `running` (holding a slot) or `queued`.
    pub state: String,
}

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    /// Method.
    pub method: String,
    /// Route template (not the raw path, to bound cardinality).
    pub route: String,
    /// Status code.
    pub status: String,
}

fn histogram(start: f64, factor: f64, count: u16) -> Histogram {
    Histogram::new(exponential_buckets(start, factor, count))
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    /// Runs reaching a phase, by phase and reason.
    pub run_transitions: Family<PhaseReason, Counter>,
    /// Runs holding a slot or queued for one.
    pub runs_active: Family<State, Gauge>,
    /// Seconds per run reconcile.
    pub reconcile_seconds: Histogram,
    /// Failed reconciles by error code.
    pub reconcile_errors: Family<Code, Counter>,
    /// Keys waiting in the run work queue.
    pub work_queue_depth: Gauge,
    /// Seconds from a slot's time to its run's creation.
    pub schedule_skew_seconds: Histogram,
    /// Container runtime errors by code.
    pub docker_errors: Family<Code, Counter>,
    /// Reads of stored objects that failed to decode (corrupt, or a newer schema).
    pub unreadable_objects: Counter,
    /// 1 while this replica holds the controller lease (always 1 on SQLite).
    pub leader: Gauge,
    /// The epoch of the controller lease this replica holds.
    pub leader_epoch: Gauge,
    /// Completed garbage collection passes over this store's containers.
    pub gc_passes: Counter,
    /// Containers removed by garbage collection (their run no longer exists).
    pub gc_removed: Counter,
    /// HTTP requests by method, route and status.
    pub http_requests: Family<RouteStatus, Counter>,
    /// Paged list requests by page-cache result.
    pub list_page_cache: Family<CacheResult, Counter>,
    /// Bytes of stored run output (logs, samples) per pipeline.
    pub pipeline_disk_bytes: Family<PipelineLabels, Gauge>,
    /// Runs deleted by retention, by why.
    pub retention_deleted: Family<Code, Counter>,
    /// Notification deliveries by channel and outcome.
    pub notifications: Family<ChannelOutcome, Counter>,
}

/// Labels `namespace` and `pipeline`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    /// The pipeline's namespace.
    pub namespace: String,
    /// The pipeline.
    pub pipeline: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("flotilla");
        let metrics = Self {
            run_transitions: Family::default(),
            runs_active: Family::default(),
            reconcile_seconds: histogram(0.001, 2.0, 16),
            reconcile_errors: Family::default(),
            work_queue_depth: Gauge::default(),
            schedule_skew_seconds: histogram(0.005, 2.0, 14),
            docker_errors: Family::default(),
            unreadable_objects: Counter::default(),
            leader: Gauge::default(),
            leader_epoch: Gauge::default(),
            gc_passes: Counter::default(),
            gc_removed: Counter::default(),
            http_requests: Family::default(),
            list_page_cache: Family::default(),
            pipeline_disk_bytes: Family::default(),
            retention_deleted: Family::default(),
            notifications: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "run_transitions",
            "Runs reaching a phase, by phase and reason",
            metrics.run_transitions.clone(),
        );
        registry.register(
            "runs_active",
            "Runs holding a concurrency slot (running) or waiting for one (queued)",
            metrics.runs_active.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of run reconciles",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed run reconciles by error code",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "work_queue_depth",
            "Runs waiting in the reconcile queue",
            metrics.work_queue_depth.clone(),
        );
        registry.register(
            "schedule_skew_seconds",
            "Delay from a schedule slot to its run's creation",
            metrics.schedule_skew_seconds.clone(),
        );
        registry.register(
            "docker_api_errors",
            "Container runtime errors by code",
            metrics.docker_errors.clone(),
        );
        registry.register(
            "unreadable_objects",
            "Reads of stored objects that could not be decoded (corrupt, or written by a newer schema); nothing is written over them",
            metrics.unreadable_objects.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica runs the controllers (holds the lease, or has SQLite to itself)",
            metrics.leader.clone(),
        );
        registry.register(
            "leader_epoch",
            "Epoch of the controller lease this replica holds (PostgreSQL)",
            metrics.leader_epoch.clone(),
        );
        registry.register(
            "gc_passes",
            "Completed garbage collection passes over the containers labelled with this store's identity",
            metrics.gc_passes.clone(),
        );
        registry.register(
            "gc_removed_containers",
            "Containers of this store removed because their run no longer exists",
            metrics.gc_removed.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "list_page_cache_requests",
            "Paged list requests served from the rendered-page cache (hit) or rendered (miss)",
            metrics.list_page_cache.clone(),
        );
        registry.register(
            "pipeline_disk_bytes",
            "Bytes of stored run output (logs and resource samples) per pipeline, as of the last retention pass",
            metrics.pipeline_disk_bytes.clone(),
        );
        registry.register(
            "retention_deleted_runs",
            "Finished runs deleted by retention, by code (count: beyond the runs kept; age: older than kept)",
            metrics.retention_deleted.clone(),
        );
        registry.register(
            "notifications",
            "Notification deliveries by channel and outcome (sent, or failed after every try)",
            metrics.notifications.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts one paged list request as a page-cache `hit` or `miss`.
    pub fn count_page(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.list_page_cache
            .get_or_create(&CacheResult {
                result: result.to_owned(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts an error code in a family.
    pub fn count_error(family: &Family<Code, Counter>, code: &str) {
        family
            .get_or_create(&Code {
                code: code.to_owned(),
            })
            .inc();
    }
}
