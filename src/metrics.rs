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
    /// HTTP requests by method, route and status.
    pub http_requests: Family<RouteStatus, Counter>,
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
            http_requests: Family::default(),
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
            "http_requests",
            "HTTP requests by method, route and status",
            metrics.http_requests.clone(),
        );
        Self {
            registry,
            ..metrics
        }
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
