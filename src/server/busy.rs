//! `whenBusy: Reject`: a run asked for through the API or a webhook while its pipeline
//! has `maxInstances` runs not finished, or the operator `--max-concurrent-runs`, is
//! refused with 429 instead of queued (Fast-Flow's behaviour, for those who rely on it).
//! The count is the store's ([`Store::unfinished_runs`]), so every replica answers
//! alike; two requests at the same instant may both pass, as in Fast-Flow, and the queue
//! then holds the second.

use super::error::ApiError;
use crate::resource::types::{PipelineSpec, WhenBusy};
use crate::store::Store;

/// The operator's side of the policy.
#[derive(Clone, Copy, Debug, Default)]
pub struct BusyPolicy {
    /// `--when-busy`: for pipelines that set no `whenBusy`.
    pub default: WhenBusy,
    /// `--max-concurrent-runs`.
    pub max_concurrent_runs: Option<usize>,
}

impl BusyPolicy {
    /// Refuses a run of `pipeline` (its spec, when it exists) when it would wait and the
    /// pipeline's policy is `Reject`.
    pub async fn admit(
        &self,
        store: &Store,
        namespace: &str,
        pipeline: &str,
        spec: Option<&PipelineSpec>,
    ) -> Result<(), ApiError> {
        let Some(spec) = spec else {
            return Ok(()); // the run waits for its pipeline, and says so in its status
        };
        if spec.when_busy.unwrap_or(self.default) != WhenBusy::Reject {
            return Ok(());
        }
        let per_pipeline = spec.max_instances.map(i64::from);
        let global = self.max_concurrent_runs.map(|m| m as i64);
        if per_pipeline.is_none() && global.is_none() {
            return Ok(());
        }
        let (all, of_pipeline) = store.unfinished_runs(namespace, pipeline).await?;
        if let Some(max) = per_pipeline
            && of_pipeline >= max
        {
            return Err(ApiError::Busy(format!(
                "pipeline {pipeline} has {of_pipeline} unfinished runs of at most {max} (maxInstances) and refuses more while busy (whenBusy: Reject); retry when one has ended"
            )));
        }
        if let Some(max) = global
            && all >= max
        {
            return Err(ApiError::Busy(format!(
                "the operator has {all} unfinished runs of at most {max} (--max-concurrent-runs) and pipeline {pipeline} refuses more while busy (whenBusy: Reject); retry when one has ended"
            )));
        }
        Ok(())
    }
}
