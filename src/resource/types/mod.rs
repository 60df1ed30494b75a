//! The typed resources: `Pipeline`, `Schedule`, `Secret`, `Run` and `Notifier` in group
//! `flotilla.dev/v1alpha1`. The same structs generate the CRDs in `crds/` and read
//! manifests, so a field added here is a field in both.
//!
//! Quantities (`timeout`, `resources.memory`, …) are kept as the strings users wrote so
//! manifests round-trip unchanged; [`crate::resource::validate`] checks that they parse.

mod notifier;
mod pipeline;
mod run;
mod schedule;
mod secret;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use notifier::{
    ChannelKind, EmailChannel, LabelSelector, Notifier, NotifierSpec, NotifierStatus, NotifyEvent,
    SecretKeyRef, SecretUrlChannel, SmtpTls, WebhookChannel,
};
pub use pipeline::{
    Backoff, BackoffKind, DownstreamTrigger, NotebookCell, NotebookSpec, Pipeline, PipelineSpec,
    PipelineStatus, ResourceLimits, RestartPolicy, RestartSpec, RetentionSpec, RetryPolicy,
    SecretMount, SecretRef, SourceRef, TriggerWhen, WhenBusy,
};
pub use run::{Attempt, Packages, Run, RunPhase, RunSpec, RunStatus, Trigger, run_name};
pub use schedule::{
    ConcurrencyPolicy, HistoryLimits, Schedule, ScheduleSpec, ScheduleStatus, Window,
};
pub use secret::{Secret, SecretSpec, SecretStatus};

/// A reference to another object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalRef {
    /// Name of the referenced object.
    pub name: String,
}

/// A Kubernetes-style status condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `PipelineFound`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason in CamelCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Every CRD Flotilla defines, in a stable order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Pipeline::crd(),
        Schedule::crd(),
        Secret::crd(),
        Run::crd(),
        Notifier::crd(),
    ]
}

/// Every CRD as one multi-document YAML text, as committed under `crds/`.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}
