//! Retention: deletes finished runs (with their logs, samples and events) beyond the
//! number kept or older than the age kept, per pipeline (`spec.retention`, else the
//! operator's `--retain-runs` / `--retain-for`), and measures what the runs that stay
//! take on disk (`status.diskBytes` of each pipeline, `flotilla_pipeline_disk_bytes`).
//!
//! A pass every `every` (and one at start) on the leader; unfinished runs (a daemon's
//! included) are never touched. Schedules keep their own history limits as well.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::run::logs::RunFiles;
use crate::metrics::{Code, Metrics, PipelineLabels};
use crate::resource::quantity::parse_duration;
use crate::resource::types::{PipelineSpec, PipelineStatus, RunSpec, RunStatus};
use crate::resource::{Kind, ObjectKey};
use crate::store::{Store, StoreError};

/// The operator's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionConfig {
    /// Finished runs kept per pipeline (`--retain-runs`).
    pub runs: Option<u32>,
    /// Age past which finished runs are deleted (`--retain-for`).
    pub age: Option<Duration>,
    /// Time between passes.
    pub every: Duration,
}

/// What a pipeline keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Finished runs kept.
    pub runs: Option<u32>,
    /// Age kept.
    pub age: Option<Duration>,
}

/// A finished run, as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The run.
    pub key: ObjectKey,
    /// Its uid (names its output).
    pub uid: String,
    /// Its pipeline.
    pub pipeline: String,
    /// When it was created.
    pub created: DateTime<Utc>,
}

/// Why a run goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Beyond the number kept.
    Count,
    /// Older than the age kept.
    Age,
}

impl Why {
    fn code(self) -> &'static str {
        match self {
            Why::Count => "count",
            Why::Age => "age",
        }
    }
}

/// The runs to delete: per namespace and pipeline, those past the newest `runs` and
/// those created before `now - age`. Pure.
pub fn plan(
    finished: &[Finished],
    limits: impl Fn(&str, &str) -> Limits,
    now: DateTime<Utc>,
) -> Vec<(&Finished, Why)> {
    let mut groups: BTreeMap<(&str, &str), Vec<&Finished>> = BTreeMap::new();
    for run in finished {
        groups
            .entry((run.key.namespace.as_str(), run.pipeline.as_str()))
            .or_default()
            .push(run);
    }
    let mut doomed = Vec::new();
    for ((namespace, pipeline), mut runs) in groups {
        let limits = limits(namespace, pipeline);
        // Newest first; equal times by name, so every pass agrees.
        runs.sort_by(|a, b| b.created.cmp(&a.created).then(a.key.name.cmp(&b.key.name)));
        let cutoff = limits
            .age
            .and_then(|age| chrono::Duration::from_std(age).ok())
            .map(|age| now - age);
        for (i, run) in runs.into_iter().enumerate() {
            if limits.runs.is_some_and(|keep| i >= keep as usize) {
                doomed.push((run, Why::Count));
            } else if cutoff.is_some_and(|cutoff| run.created < cutoff) {
                doomed.push((run, Why::Age));
            }
        }
    }
    doomed
}

/// Deletes runs (`(run, uid)`) with their events and output (local, and shipped to a
/// shared store): the objects in one transaction, their records in another. Returns
/// those deleted (one already gone is left out).
pub async fn delete_runs(
    store: &Store,
    files: &RunFiles,
    runs: Vec<(ObjectKey, String)>,
) -> Vec<(ObjectKey, String)> {
    if runs.is_empty() {
        return runs;
    }
    let keys: Vec<ObjectKey> = runs.iter().map(|(key, _)| key.clone()).collect();
    let deleted: Vec<(ObjectKey, String)> = match store.delete_all(&keys).await {
        Ok(_) => runs,
        // One of them is gone already (deleted by hand): each on its own.
        Err(_) => {
            let mut deleted = Vec::with_capacity(runs.len());
            for (key, uid) in runs {
                match store.delete(&key, None).await {
                    Ok(_) => deleted.push((key, uid)),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => tracing::warn!(run = %key, code = e.code(), "cannot delete: {e}"),
                }
            }
            deleted
        }
    };
    if let Err(e) = store.delete_run_records(&deleted).await {
        tracing::warn!(
            code = e.code(),
            "cannot delete the events and output of deleted runs: {e}"
        );
    }
    for (key, uid) in &deleted {
        if let Err(e) = files.delete_run(uid) {
            tracing::warn!(run = %key, "cannot delete the run's local output: {e}");
        }
    }
    deleted
}

/// Bytes of the files under `dir` (a run's output directory; missing is 0).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs retention passes until `shutdown`.
pub struct RetentionController {
    store: Store,
    files: RunFiles,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
}

impl RetentionController {
    /// A controller over `store` and the run output in `files`.
    pub fn new(
        store: Store,
        files: RunFiles,
        config: RetentionConfig,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            files,
            config,
            metrics,
        })
    }

    /// One pass at once, then one every `every`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(code = e.code(), "retention pass failed: {e}");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.every) => {}
            }
        }
    }

    /// Deletes what the limits let go and records what the rest takes on disk.
    pub async fn pass(&self) -> Result<(), StoreError> {
        let pipelines = self.store.list_raw(Kind::Pipeline, None).await?;
        let mut limits: HashMap<(String, String), Limits> = HashMap::new();
        for pipeline in &pipelines {
            let Ok(spec) = pipeline.spec_as::<PipelineSpec>() else {
                continue;
            };
            let own = spec.retention.unwrap_or_default();
            limits.insert(
                (pipeline.key.namespace.clone(), pipeline.key.name.clone()),
                Limits {
                    runs: own.runs.or(self.config.runs),
                    age: own
                        .age
                        .as_deref()
                        .and_then(|a| parse_duration(a).ok())
                        .or(self.config.age),
                },
            );
        }
        let runs = self.store.list_raw(Kind::Run, None).await?;
        let mut finished = Vec::new();
        // Runs that stay, by pipeline: their uids, for the disk measure.
        let mut kept: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for run in &runs {
            let (Ok(spec), Ok(status)) = (run.spec_as::<RunSpec>(), run.status_as::<RunStatus>())
            else {
                continue;
            };
            let pipeline = spec.pipeline_ref.name;
            kept.entry((run.key.namespace.clone(), pipeline.clone()))
                .or_default()
                .push(run.uid.clone());
            if status.phase.is_finished() {
                finished.push(Finished {
                    key: run.key.clone(),
                    uid: run.uid.clone(),
                    pipeline,
                    created: run.created_at,
                });
            }
        }
        let defaults = Limits {
            runs: self.config.runs,
            age: self.config.age,
        };
        let doomed = plan(
            &finished,
            |namespace, pipeline| {
                limits
                    .get(&(namespace.to_owned(), pipeline.to_owned()))
                    .copied()
                    .unwrap_or(defaults)
            },
            Utc::now(),
        );
        if !doomed.is_empty() {
            let why: HashMap<String, Why> = doomed
                .iter()
                .map(|(run, why)| (run.uid.clone(), *why))
                .collect();
            let deleted = delete_runs(
                &self.store,
                &self.files,
                doomed
                    .iter()
                    .map(|(run, _)| (run.key.clone(), run.uid.clone()))
                    .collect(),
            )
            .await;
            for (_, uid) in &deleted {
                if let Some(why) = why.get(uid) {
                    self.metrics
                        .retention_deleted
                        .get_or_create(&Code {
                            code: why.code().to_owned(),
                        })
                        .inc();
                }
            }
            tracing::info!(deleted = deleted.len(), "retention deleted finished runs");
            for uids in kept.values_mut() {
                uids.retain(|uid| !why.contains_key(uid));
            }
        }
        self.record_disk_use(&pipelines, kept).await;
        Ok(())
    }

    /// Measures each pipeline's run output and writes `status.diskBytes` where it
    /// changed; the gauge follows.
    async fn record_disk_use(
        &self,
        pipelines: &[crate::resource::RawObject],
        kept: BTreeMap<(String, String), Vec<String>>,
    ) {
        let files = self.files.clone();
        let measured = tokio::task::spawn_blocking(move || {
            kept.into_iter()
                .map(|(pipeline, uids)| {
                    let bytes: u64 = uids.iter().map(|uid| dir_bytes(&files.run_dir(uid))).sum();
                    (pipeline, bytes)
                })
                .collect::<HashMap<_, _>>()
        })
        .await
        .unwrap_or_default();
        for pipeline in pipelines {
            let id = (pipeline.key.namespace.clone(), pipeline.key.name.clone());
            let bytes = measured.get(&id).copied().unwrap_or(0);
            self.metrics
                .pipeline_disk_bytes
                .get_or_create(&PipelineLabels {
                    namespace: id.0.clone(),
                    pipeline: id.1.clone(),
                })
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            let Ok(mut status) = pipeline.status_as::<PipelineStatus>() else {
                continue;
            };
            // Nothing measured and nothing stored: no write (a watch of pipelines sees no
            // change for a pipeline that has not run).
            if status.disk_bytes.unwrap_or(0) == bytes {
                continue;
            }
            status.disk_bytes = Some(bytes);
            let value = serde_json::to_value(&status).unwrap_or_default();
            // A status written meanwhile (packages) wins; the next pass measures again.
            let key = ObjectKey::new(Kind::Pipeline, id.0, id.1);
            if let Err(e) = self
                .store
                .update_status(&key, Some(pipeline.resource_version), value)
                .await
                && !matches!(e, StoreError::Conflict { .. } | StoreError::NotFound(_))
            {
                tracing::warn!(pipeline = %key, code = e.code(), "cannot record disk use: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, pipeline: &str, minutes_ago: i64, now: DateTime<Utc>) -> Finished {
        Finished {
            key: ObjectKey::new(Kind::Run, "default", name),
            uid: format!("uid-{name}"),
            pipeline: pipeline.to_owned(),
            created: now - chrono::Duration::minutes(minutes_ago),
        }
    }

    #[test]
    fn each_pipeline_keeps_its_newest_runs_within_its_age() {
        let now = Utc::now();
        let runs = vec![
            run("a-1", "a", 50, now),
            run("a-2", "a", 40, now),
            run("a-3", "a", 30, now),
            run("a-4", "a", 20, now),
            run("b-1", "b", 500, now),
            run("b-2", "b", 5, now),
            run("c-1", "c", 9_000, now),
        ];
        let limits = |_: &str, pipeline: &str| match pipeline {
            "a" => Limits {
                runs: Some(2),
                age: None,
            },
            "b" => Limits {
                runs: Some(10),
                age: Some(Duration::from_secs(3600)),
            },
            _ => Limits::default(),
        };
        let doomed: Vec<(&str, Why)> = plan(&runs, limits, now)
            .into_iter()
            .map(|(r, why)| (r.key.name.as_str(), why))
            .collect();
        assert_eq!(
            doomed,
            [("a-2", Why::Count), ("a-1", Why::Count), ("b-1", Why::Age)]
        );
    }
}
