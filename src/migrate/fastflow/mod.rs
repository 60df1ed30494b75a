//! `flotilla import fastflow`: a Fast-Flow installation (its database, logs and
//! pipelines folder) into Flotilla's store, in one idempotent step.
//!
//! What moves where:
//!
//! - **Pipeline folders** are not written by the import: `flotilla serve
//!   --pipelines-dir` (or `--git-url`) reads them as it always does
//!   (`crate::resource::fastflow`). The import checks each one and reports every
//!   difference in behaviour before anything is written; a folder that does not
//!   translate stops the import.
//! - **The secret store** (`secrets`) becomes the Secret `fastflow-secrets` that the
//!   folders' `secrets` allow-lists already point at ([`plan::secret`]).
//! - **Schedules made in the UI** (`scheduled_jobs` of source `api`) become Schedules,
//!   suspended when switched off there; jobs made from pipeline.json are the folders'.
//! - **Run history** (`pipeline_runs` that ended) becomes finished Runs with their logs
//!   and samples in Flotilla's formats ([`history`]).
//! - Everything else (downstream triggers, settings saved in the UI, users) is named in
//!   the report with what to do instead.
//!
//! The Secret and Schedules are one apply set of manager [`MANAGER`] (pruned, so a
//! second import of a changed database converges); runs are created only where their
//! name is free and their files written only where missing, so running the import twice
//! changes nothing.

pub mod database;
pub mod history;
pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::controller::run::logs::RunFiles;
use crate::controller::run::logs::ship::FileShipper;
use crate::resource::ObjectKey;
use crate::resource::error::ManifestError;
use crate::resource::fastflow::IMPORTED_FROM_ANNOTATION;
use crate::resource::manifest::Document;
use crate::source::apply::{Action, ApplyError, ApplyOptions, ApplyRequest};
use crate::store::{Store, StoreError};

pub use database::Location;
pub use plan::Keys;

/// Field manager of what the import applies.
pub const MANAGER: &str = "import:fastflow";

/// Runs created per transaction.
const RUN_BATCH: usize = 500;

/// Why the import stopped. Nothing is written in any of these cases, except a failure
/// while writing run files, after which running the import again completes it.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The installation cannot be found or read.
    #[error("{0}")]
    Source(String),
    /// What was read cannot be imported as it is (listed one per line).
    #[error("nothing was imported:\n{}", .0.join("\n"))]
    Refused(Vec<String>),
    /// The apply of the Secret and Schedules was refused.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// Flotilla's store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A run file could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to import and how.
pub struct ImportOptions<'a> {
    /// The installation.
    pub location: Location,
    /// Fast-Flow's pipelines folder, checked for the report.
    pub pipelines: Option<PathBuf>,
    /// Namespace of everything written.
    pub namespace: String,
    /// The keys of the secret store.
    pub keys: Keys<'a>,
    /// Take over the Secret `fastflow-secrets` (or a Schedule) made by another manager.
    pub force: bool,
    /// Report only; write nothing.
    pub dry_run: bool,
}

/// The report: what was found, what it becomes, what differs, what was written.
#[derive(Debug, Default)]
pub struct Report {
    /// The database and logs read.
    pub source: Vec<String>,
    /// Per pipeline folder: its name and notes.
    pub pipelines: Vec<(String, Vec<String>)>,
    /// The database's contents and what becomes of them.
    pub database: Vec<String>,
    /// What was written (or, with --dry-run, would be).
    pub result: Vec<String>,
}

impl Report {
    /// The report as text for people, in sections.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = |title: &str, lines: &[String]| {
            if lines.is_empty() {
                return;
            }
            out.push_str(title);
            out.push('\n');
            for line in lines {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        };
        section("Fast-Flow installation:", &self.source);
        let pipelines: Vec<String> = self
            .pipelines
            .iter()
            .flat_map(|(name, notes)| {
                std::iter::once(name.clone()).chain(notes.iter().map(|n| format!("  {n}")))
            })
            .collect();
        section("Pipelines:", &pipelines);
        section("Database:", &self.database);
        section("Result:", &self.result);
        out
    }
}

/// Reads the installation, reports, and (unless a dry run) writes into `store`, run
/// files under `files`.
pub async fn import(
    store: &Store,
    files: &RunFiles,
    options: &ImportOptions<'_>,
) -> Result<Report, ImportError> {
    let mut report = Report::default();
    let installation = database::read(&options.location.database).await?;
    report.source.push(format!(
        "database {} (schema {})",
        options.location.database,
        installation.schema.as_deref().unwrap_or("not stamped")
    ));
    report.source.push(match &options.location.logs {
        Some(dir) => format!("logs {}", dir.display()),
        None => "logs: no logs directory found beside the database (--logs-dir names it); runs are imported without their logs unless their stored paths exist".to_owned(),
    });

    let mut refusals = Vec::new();
    let run_configs = match &options.pipelines {
        Some(root) => {
            report.pipelines = check_pipelines(root, &mut refusals);
            run_configurations(root)
        }
        None => HashMap::new(),
    };

    let secret = plan::secret(&installation.secrets, &options.keys);
    refusals.extend(secret.errors);
    report.database.extend(secret.notes);
    let (schedules, notes, errors) = plan::ui_schedules(&installation.jobs, &run_configs);
    refusals.extend(errors);
    report.database.extend(notes);
    let (runs, notes) = plan::runs(&installation.runs, &options.namespace);
    report.database.extend(notes);
    report.database.extend(plan::other_notes(&installation));
    if !refusals.is_empty() {
        return Err(ImportError::Refused(refusals));
    }

    let mut documents: Vec<Document> = secret.document.into_iter().collect();
    documents.extend(schedules);
    let documents: Vec<Document> = documents
        .into_iter()
        .map(|d| in_namespace(d, &options.namespace))
        .collect();
    let applied = ApplyRequest {
        documents: &documents,
        options: ApplyOptions {
            manager: MANAGER.to_owned(),
            prune: true,
            force: options.force,
            dry_run: options.dry_run,
            diff: false,
        },
    }
    .execute(store, options.keys.flotilla)
    .await?;
    for item in &applied.items {
        report.result.push(format!(
            "{} {}/{} {}",
            item.kind,
            item.namespace,
            item.name,
            match (item.action, options.dry_run) {
                (Action::Created, false) => "created",
                (Action::Created, true) => "would be created",
                (Action::Configured, false) => "configured",
                (Action::Configured, true) => "would be configured",
                (Action::Unchanged, _) => "unchanged",
                (Action::Pruned, false) => "pruned",
                (Action::Pruned, true) => "would be pruned",
            }
        ));
    }

    let keys: Vec<ObjectKey> = runs.iter().map(|r| r.object.key.clone()).collect();
    // Run name → uid, of the runs already there and (below) of those created.
    let mut uids: HashMap<String, String> = HashMap::new();
    for chunk in keys.chunks(RUN_BATCH) {
        for object in store.get_raw_many(chunk).await? {
            uids.insert(object.key.name.clone(), object.uid.clone());
        }
    }
    let existing = uids.len();
    let new: Vec<&plan::RunImport> = runs
        .iter()
        .filter(|r| !uids.contains_key(&r.object.key.name))
        .collect();
    let verb = if options.dry_run { "would be" } else { "were" };
    report.result.push(format!(
        "runs: {} {verb} created, {} were there already",
        new.len(),
        existing
    ));
    if options.dry_run {
        report
            .result
            .push("dry run: nothing was written".to_owned());
        return Ok(report);
    }
    for chunk in new.chunks(RUN_BATCH) {
        let created = store
            .create_absent(
                chunk
                    .iter()
                    .map(|r| (r.object.clone(), Some(r.status.clone())))
                    .collect(),
            )
            .await?;
        uids.extend(created.iter().map(|o| (o.key.name.clone(), o.uid.clone())));
    }
    let (logs, samples, missing) =
        write_run_files(store, files, &runs, &uids, &secret.redactor, options).await?;
    report.result.push(format!(
        "run files: {logs} logs and {samples} sample files written{}",
        if missing.is_empty() {
            String::new()
        } else {
            format!(
                "; no log found for {} runs: {}",
                missing.len(),
                missing.join(", ")
            )
        }
    ));
    Ok(report)
}

/// Writes each run's log and samples where they are not yet (and, with a shared store,
/// ships them into it). Answers how many of each were written and the runs whose log
/// was not found.
async fn write_run_files(
    store: &Store,
    files: &RunFiles,
    runs: &[plan::RunImport],
    uids: &HashMap<String, String>,
    redactor: &crate::secrets::Redactor,
    options: &ImportOptions<'_>,
) -> Result<(usize, usize, Vec<String>), ImportError> {
    let (mut logs, mut samples, mut missing) = (0, 0, Vec::new());
    for run in runs {
        let Some(uid) = uids.get(&run.object.key.name) else {
            continue;
        };
        let log_path = files.attempt_log(uid, 1);
        match find(run.log_file.as_deref(), options.location.logs.as_deref()) {
            Some(source) => {
                if !log_path.exists() {
                    let text = read(&source)?;
                    let converted = history::convert_log(&text, run.started, redactor);
                    write_shipped(store, files, &log_path, converted.as_bytes()).await?;
                    logs += 1;
                }
            }
            None => missing.push(run.object.key.name.clone()),
        }
        let metrics_path = files.metrics(uid);
        if let Some(source) = find(
            run.metrics_file.as_deref(),
            options.location.logs.as_deref(),
        ) && !metrics_path.exists()
        {
            let converted = history::convert_metrics(&read(&source)?);
            write_shipped(store, files, &metrics_path, converted.as_bytes()).await?;
            samples += 1;
        }
    }
    Ok((logs, samples, missing))
}

/// A file Fast-Flow recorded: at its stored path when that exists (Fast-Flow ran on
/// this machine), else by its name in the logs directory (Fast-Flow ran in a container
/// whose LOGS_DIR is mounted there).
fn find(stored: Option<&str>, logs: Option<&Path>) -> Option<PathBuf> {
    let stored = Path::new(stored?.trim());
    if stored.is_file() {
        return Some(stored.to_owned());
    }
    let candidate = logs?.join(stored.file_name()?);
    candidate.is_file().then_some(candidate)
}

fn read(path: &Path) -> Result<String, ImportError> {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })
}

/// Writes a run file (owner-only, like the controller's) and, with a store shared by
/// replicas, ships it into the store.
async fn write_shipped(
    store: &Store,
    files: &RunFiles,
    path: &Path,
    contents: &[u8],
) -> Result<(), ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::private_fs::create_dir(dir).map_err(io)?;
    }
    // Written beside and renamed, so an interrupted import leaves no half file that a
    // second one would take as done.
    let partial = path.with_extension("import");
    crate::private_fs::write(&partial, contents).map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    let shipper = FileShipper::start(store, files, path)
        .await
        .map_err(|e| ImportError::Source(e.to_string()))?;
    shipper.finish().await;
    Ok(())
}

/// Checks every folder of Fast-Flow's pipelines directory as `flotilla serve` will read
/// it: the objects each becomes and every note; a folder that fails is a refusal.
fn check_pipelines(root: &Path, refusals: &mut Vec<String>) -> Vec<(String, Vec<String>)> {
    /// One folder's metadata file: its folder, the objects it becomes, its differences.
    #[derive(Default)]
    struct Folder {
        path: String,
        objects: Vec<String>,
        differences: Vec<String>,
    }
    let scan = crate::source::dir::scan(root);
    refusals.extend(scan.errors.iter().map(ManifestError::to_string));
    let mut by_file: BTreeMap<String, Folder> = BTreeMap::new();
    for document in &scan.documents {
        let value = document.value();
        if value["metadata"]["annotations"][IMPORTED_FROM_ANNOTATION].is_null() {
            continue; // a YAML manifest, not a Fast-Flow folder
        }
        let folder = by_file.entry(document.file.clone()).or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        folder.objects.push(format!("{kind} {name}"));
        if kind == "Pipeline" {
            if folder.path.is_empty() {
                folder.path = value["spec"]["source"]["path"]
                    .as_str()
                    .unwrap_or(name)
                    .to_owned();
            }
            if let Some(max) = value["spec"]["maxInstances"].as_u64() {
                folder.differences.push(format!(
                    "{name}: max_instances {max}: runs beyond it wait in the queue here; Fast-Flow refused them with 429 (`flotilla serve --when-busy reject` does too)"
                ));
            }
        }
    }
    by_file
        .into_iter()
        .map(|(file, folder)| {
            let mut lines = vec![format!("→ {}", folder.objects.join(", "))];
            lines.extend(
                scan.warnings
                    .iter()
                    .filter(|w| w.starts_with(&format!("{file}:")))
                    .map(|w| format!("note: {w}")),
            );
            lines.extend(
                folder
                    .differences
                    .into_iter()
                    .map(|d| format!("differs: {d}")),
            );
            (folder.path, lines)
        })
        .collect()
}

/// The `default_env` of each `schedules[]` entry, by (Fast-Flow pipeline name, id), for
/// UI schedules that name a run configuration.
fn run_configurations(root: &Path) -> HashMap<(String, String), BTreeMap<String, String>> {
    let mut configs = HashMap::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return configs;
    };
    for entry in entries.flatten() {
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(entry.path().join("pipeline.json")) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        for schedule in value["schedules"].as_array().into_iter().flatten() {
            let Some(id) = schedule["id"].as_str() else {
                continue;
            };
            let env = schedule["default_env"]
                .as_object()
                .map(|env| {
                    env.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            configs.insert((folder.clone(), id.to_owned()), env);
        }
    }
    configs
}

fn in_namespace(document: Document, namespace: &str) -> Document {
    let mut value = document.value();
    value["metadata"]["namespace"] = Value::String(namespace.to_owned());
    Document::synthetic(document.file.clone(), 1, value)
}
