//! `Run`: one execution of a pipeline. Retries are further attempts of the same run.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, LocalRef};

/// Desired state of a run: what to run and why.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "Run",
    namespaced,
    status = "RunStatus",
    shortname = "rn",
    printcolumn = r#"{"name":"Pipeline","type":"string","jsonPath":".spec.pipelineRef.name"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.reason"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunSpec {
    /// The pipeline to run.
    pub pipeline_ref: LocalRef,
    /// What created the run.
    #[serde(default)]
    pub trigger: Trigger,
    /// The schedule that created the run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_ref: Option<LocalRef>,
    /// The schedule slot this run stands for (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Environment merged over the pipeline's and the schedule's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The run whose end started this one (`run/<name>`), for a downstream trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triggered_by: Option<String>,
    /// When true, the run is cancelled: its container is stopped, it ends `Cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel: bool,
}

/// A run name `<pipeline>-<suffix>` that fits a DNS-1123 label.
pub fn run_name(pipeline: &str, suffix: &str) -> String {
    let room = 63 - suffix.len() - 1;
    let stem: String = pipeline.chars().take(room).collect();
    format!("{}-{suffix}", stem.trim_end_matches('-'))
}

/// What created a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// `flotilla run`, the API or the dashboard.
    #[default]
    Manual,
    /// A Schedule slot.
    Schedule,
    /// A pipeline trigger webhook.
    Webhook,
    /// The end of another pipeline's run (its `triggers`); see `triggeredBy`.
    Downstream,
}

/// Lifecycle phase of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RunPhase {
    /// Waiting for a slot, a retry delay or the container runtime.
    #[default]
    Pending,
    /// An attempt's container is running.
    Running,
    /// The last attempt exited 0.
    Succeeded,
    /// Attempts are exhausted or the run cannot start.
    Failed,
    /// Cancelled by a user or replaced by its schedule.
    Cancelled,
}

impl RunPhase {
    /// True once the run will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunPhase::Succeeded | RunPhase::Failed | RunPhase::Cancelled
        )
    }
}

/// Observed state of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    /// Current phase.
    #[serde(default)]
    pub phase: RunPhase,
    /// Why the run is in this phase: `OOMKilled`, `DeadlineExceeded`,
    /// `BackoffLimitExceeded`, `Error`, `SecretNotFound`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// One entry per container started for this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Git commit (or other revision) the code came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_revision: Option<String>,
    /// Earliest time the next attempt may start (retry backoff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Conditions such as `PipelineFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The label the last attempt wrote to `$FLOTILLA_ROUTE_FILE`, when its pipeline
    /// has a trigger on a route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The runs this run's end started (its pipeline's `triggers`), created in the
    /// same write as its final phase.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub downstream: Vec<String>,
}

/// One container started for a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1-based attempt number.
    pub number: u32,
    /// Container name.
    pub container: String,
    /// Docker host the container ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Lease epoch of the leader that claimed the attempt (several replicas on one
    /// PostgreSQL store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// When the container started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the container ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Exit code of the container's process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// True when the kernel killed the container for exceeding its memory limit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
    /// Why the attempt ended, when not a plain exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What failed, in words (a notebook's failing cell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Seconds from container start to the pipeline's first output line (uv setup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_seconds: Option<f64>,
    /// The packages the attempt was installed from, as its folder's dependency file
    /// named them when the attempt was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
}

/// A pipeline's package set as its dependency file names it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Packages {
    /// `uv.lock`, `pylock.toml`, `requirements.txt.lock` or `requirements.txt`.
    pub file: String,
    /// `name==version` for each locked package; requirements as written otherwise.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// True when every requirement names exactly one version (a lock).
    #[serde(default)]
    pub pinned: bool,
}
