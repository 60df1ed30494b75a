//! `Pipeline`: a folder with `main.py` (and `requirements.txt`) and how to run it.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// Desired state of a pipeline.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "flotilla.dev",
    version = "v1alpha1",
    kind = "Pipeline",
    namespaced,
    status = "PipelineStatus",
    shortname = "pl",
    printcolumn = r#"{"name":"Python","type":"string","jsonPath":".spec.python"}"#,
    printcolumn = r#"{"name":"Suspended","type":"boolean","jsonPath":".spec.suspend"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// Where the code lives, relative to the source root (the pipelines directory or the
    /// git checkout). Defaults to a folder named like the pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    /// Script to run inside the folder; default `main.py`. A notebook (`*.ipynb`) runs
    /// its code cells in order in one Python process (see `notebook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// How a notebook entrypoint's cells are tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notebook: Option<NotebookSpec>,
    /// Python version passed to `uv run --python`, e.g. `"3.12"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// Environment variables for every run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secrets whose keys are injected into every run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_refs: Vec<SecretRef>,
    /// Container limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceLimits>,
    /// Wall-clock limit of one attempt (`30m`); past it the run fails with
    /// `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// How failed attempts are retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
    /// Concurrent runs of this pipeline; excess runs wait in `Pending` (see `whenBusy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
    /// A run asked for through the API or a webhook while the pipeline has
    /// `maxInstances` runs, or the operator `--max-concurrent-runs`, not finished:
    /// `Queue` waits for a slot, `Reject` answers 429 and creates nothing (Fast-Flow's
    /// way). Default: the operator's `--when-busy` (`Queue`). Schedules decide with
    /// their `concurrencyPolicy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when_busy: Option<WhenBusy>,
    /// Runner image override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When true, no new runs start (Fast-Flow's `enabled: false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Free text shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Free-form tags (Fast-Flow's `tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Key that authorises `POST /hooks/pipelines/{name}` (Fast-Flow's `webhook_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_key: Option<String>,
    /// Runs the webhook may create per minute (token bucket); default the operator's
    /// `--webhook-rate-limit` (30); 0: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_rate_limit: Option<u32>,
    /// Keeps a long-running pipeline (a daemon) running: each run restarts as a new
    /// attempt after it exits (Fast-Flow's `restart_on_crash`, `restart_cooldown`,
    /// `restart_interval`). Replaces `retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartSpec>,
    /// How many finished runs (with their logs) are kept, and for how long; default
    /// the operator's `--retain-runs` and `--retain-for` (Fast-Flow's
    /// `LOG_RETENTION_RUNS`, `LOG_RETENTION_DAYS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Runs of other pipelines started when a run of this one ends (Fast-Flow's
    /// `downstream_triggers`). Each started run records this one in `triggeredBy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<DownstreamTrigger>,
    /// Notifiers (in the pipeline's namespace) told about its runs, beside those whose
    /// `selector` matches its labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
}

/// How many finished runs of a pipeline are kept, and for how long.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSpec {
    /// The newest this many finished runs are kept; older ones are deleted with their
    /// logs and events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u32>,
    /// Finished runs created longer ago than this (`30d`) are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<String>,
}

/// How a daemon's run restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartSpec {
    /// Which exits start the next attempt; default `Always`. Cancelling the run stops
    /// it for good.
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Wait after an attempt ends (`30s`; default 10 s). Attempts that end within 10
    /// minutes of their start double it each time, up to 5 minutes or the cooldown if
    /// longer (`CrashLoopBackOff`); an attempt that ran 10 minutes resets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    /// Restart a running attempt periodically: an interval since it started (`24h`)
    /// or a cron line in UTC (`0 3 * * *`). The next attempt starts at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic: Option<String>,
}

/// Which exits of a daemon's attempt start the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Every exit.
    #[default]
    Always,
    /// Exits other than 0; an exit 0 ends the run `Succeeded`.
    OnFailure,
    /// None; only `periodic` restarts.
    Never,
}

/// A run of another pipeline, started when a run of this one ends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DownstreamTrigger {
    /// The pipeline to run, in the same namespace.
    pub pipeline: String,
    /// Which outcome starts it; default `Succeeded`. A cancelled run starts nothing.
    #[serde(default)]
    pub when: TriggerWhen,
    /// Start only when the run succeeded and its script wrote this label to the file
    /// named by `$FLOTILLA_ROUTE_FILE` (Fast-Flow's `on_route`, `$FASTFLOW_ROUTE_FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Environment of the started run, over its pipeline's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// A Schedule of the started pipeline whose `env` the run takes, under `env`
    /// (Fast-Flow's `run_config_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// The outcomes of a run that start a downstream run.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum TriggerWhen {
    /// The run succeeded.
    #[default]
    Succeeded,
    /// The run failed (after its retries).
    Failed,
    /// The run succeeded or failed.
    Finished,
}

impl TriggerWhen {
    /// The condition in words, with the trigger's route if any: `on success`,
    /// `on route "daily"`, ….
    pub fn describe(self, route: Option<&str>) -> String {
        match (route, self) {
            (Some(route), _) => format!("on route {route:?}"),
            (None, TriggerWhen::Succeeded) => "on success".to_owned(),
            (None, TriggerWhen::Failed) => "on failure".to_owned(),
            (None, TriggerWhen::Finished) => "on success or failure".to_owned(),
        }
    }

    /// True when a run that ended in `phase` starts the trigger's pipeline.
    pub fn matches(self, phase: super::RunPhase) -> bool {
        use super::RunPhase;
        matches!(
            (self, phase),
            (
                TriggerWhen::Succeeded | TriggerWhen::Finished,
                RunPhase::Succeeded
            ) | (
                TriggerWhen::Failed | TriggerWhen::Finished,
                RunPhase::Failed
            )
        )
    }
}

/// How the code cells of a notebook entrypoint are tried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotebookSpec {
    /// By code-cell index (markdown cells do not count): how often a failing cell is
    /// tried again, and after how long. A cell's own metadata (`flotilla` or Fast-Flow's
    /// `fastflow`: `retries`, `delay_seconds`) overrides its entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<NotebookCell>,
}

/// Retries of one notebook cell.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotebookCell {
    /// Further tries after a failure; default 0.
    #[serde(default)]
    pub retries: u32,
    /// Wait before each further try (`5s`); default 1 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
}

/// What happens to a run asked for while its pipeline (or the operator) is busy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WhenBusy {
    /// The run is created and waits in `Pending` for a slot.
    #[default]
    Queue,
    /// No run is created; the caller gets 429 with `Retry-After`.
    Reject,
}

/// Location of a pipeline's code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceRef {
    /// Folder relative to the source root; may not leave it.
    pub path: String,
    /// Give each run a writable copy of the folder at `/pipeline` (in memory, as large
    /// as `/tmp` may grow); the folder itself is never changed. Off: the folder is
    /// mounted read-only. On for pipelines imported from Fast-Flow, whose scripts could
    /// write beside `main.py`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub writable: bool,
}

/// How a secret reaches the container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SecretMount {
    /// Every key becomes an environment variable.
    #[default]
    Env,
    /// Every key becomes a file `/run/secrets/<secret>/<key>` on a read-only tmpfs.
    Files,
}

/// A secret used by a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    pub name: String,
    /// Only these keys (all keys when empty; Fast-Flow's `secrets` allow-list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// `env` (default) or `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_as: Option<SecretMount>,
}

/// Container limits of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceLimits {
    /// Memory limit (`512Mi`, `1G`, `512m`); swap is set to the same value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU limit (`"1.5"`, `"500m"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<String>,
    /// Maximum number of processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Memory above which a run is reported (`SoftLimitExceeded`) but not stopped
    /// (Fast-Flow's `mem_soft_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_soft_limit: Option<String>,
    /// CPU use above which a run is reported but not throttled (`"0.8"`; Fast-Flow's
    /// `cpu_soft_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_soft_limit: Option<String>,
}

/// Retry policy of failed attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Further attempts after the first one fails.
    pub limit: u32,
    /// Delay between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// Delay between attempts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    /// `fixed` or `exponential` (doubling).
    #[serde(default)]
    pub kind: BackoffKind,
    /// First delay, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Upper bound of the delay, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// `exponential`: the factor between delays, a decimal such as `"1.5"` (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<String>,
    /// `custom`: the delay before each retry in turn (`[1m, 5m, 1h]`); retries past the
    /// list wait its last delay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delays: Vec<String>,
}

/// Shape of the retry delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BackoffKind {
    /// Always `initial`.
    Fixed,
    /// `initial`, multiplied by `multiplier` (2) per attempt, capped at `max`.
    #[default]
    Exponential,
    /// `delays` in turn, then the last one.
    Custom,
}

/// Observed state of a pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatus {
    /// Generation the controller last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions such as `SourceFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The packages its latest attempt was installed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<super::run::Packages>,
    /// Bytes of stored output (logs, resource samples) of its runs, as of the last
    /// retention pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}
