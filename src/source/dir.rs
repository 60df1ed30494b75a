//! The pipelines directory as a source: YAML manifests anywhere in the tree and
//! Fast-Flow folders (a folder holding `main.py`) are one apply set under manager
//! `dir:<path>`. A broken file or folder is reported and left out on its own; while any
//! is broken nothing is pruned, so a typo never deletes what was running.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

use super::apply::{ApplyError, ApplyOptions, ApplyOutcome, ApplyRequest};
use crate::resource::error::ManifestError;
use crate::resource::fastflow;
use crate::resource::manifest::{Document, MAX_MANIFEST_BYTES, parse_documents};
use crate::resource::types::PipelineSpec;
use crate::resource::validate::validate_document;
use crate::resource::{DesiredObject, Kind};
use crate::secrets::Keyring;
use crate::store::Store;

/// Folders never scanned.
const SKIPPED_DIRS: &[&str] = &[
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
];
/// How deep the scan descends below the root.
const MAX_DEPTH: usize = 8;

/// What one scan of the directory found.
#[derive(Debug, Default)]
pub struct DirScan {
    /// Documents of every file and folder that validated.
    pub documents: Vec<Document>,
    /// Problems, each confined to its file or folder.
    pub errors: Vec<ManifestError>,
    /// Non-fatal notes (ignored Fast-Flow keys, …).
    pub warnings: Vec<String>,
}

/// Scans `root` for manifests and Fast-Flow folders.
pub fn scan(root: &Path) -> DirScan {
    let mut scan = DirScan::default();
    let mut yaml_files = Vec::new();
    let mut pipeline_folders = Vec::new();
    walk(
        root,
        root,
        0,
        &mut yaml_files,
        &mut pipeline_folders,
        &mut scan.errors,
    );
    yaml_files.sort();
    pipeline_folders.sort();

    let mut declared_paths = HashSet::new();
    for file in yaml_files {
        let name = relative_name(root, &file);
        match load_yaml_file(&file, &name)
            .and_then(|documents| Ok((validate_all(&documents)?, documents)))
        {
            Ok((objects, documents)) => {
                declared_paths.extend(objects.iter().filter_map(declared_source_path));
                scan.documents.extend(documents);
            }
            Err(errors) => scan.errors.extend(errors),
        }
    }
    for folder in pipeline_folders {
        let relative = relative_name(root, &folder);
        if declared_paths.contains(&relative) {
            continue; // a manifest declares this folder; it wins over the Fast-Flow import
        }
        match fastflow::import_folder(root, &relative) {
            Ok(imported) => match validate_all(&imported.documents) {
                Ok(_) => {
                    scan.documents.extend(imported.documents);
                    scan.warnings.extend(imported.warnings);
                }
                Err(problems) => scan.errors.extend(problems),
            },
            Err(error) => scan.errors.push(error),
        }
    }
    scan
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    yaml_files: &mut Vec<PathBuf>,
    pipeline_folders: &mut Vec<PathBuf>,
    errors: &mut Vec<ManifestError>,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(ManifestError::file(
                &relative_name(root, dir),
                format!("cannot be read: {e}"),
            ));
            return;
        }
    };
    if depth > 0 && (dir.join("main.py").is_file() || dir.join(fastflow::NOTEBOOK).is_file()) {
        pipeline_folders.push(dir.to_path_buf());
    }
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            if depth < MAX_DEPTH && !SKIPPED_DIRS.contains(&name.as_str()) && !name.starts_with('.')
            {
                walk(root, &path, depth + 1, yaml_files, pipeline_folders, errors);
            }
        } else if file_type.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
            yaml_files.push(path);
        }
    }
}

fn load_yaml_file(path: &Path, name: &str) -> Result<Vec<Document>, Vec<ManifestError>> {
    let metadata = std::fs::metadata(path)
        .map_err(|e| vec![ManifestError::file(name, format!("cannot be read: {e}"))])?;
    if metadata.len() > MAX_MANIFEST_BYTES as u64 {
        return Err(vec![ManifestError::file(
            name,
            format!(
                "is {} bytes; the limit is {MAX_MANIFEST_BYTES}",
                metadata.len()
            ),
        )]);
    }
    let bytes = std::fs::read(path)
        .map_err(|e| vec![ManifestError::file(name, format!("cannot be read: {e}"))])?;
    let text = String::from_utf8(bytes).map_err(|_| {
        vec![ManifestError::file(
            name,
            "is not UTF-8 text (binary file?)",
        )]
    })?;
    parse_documents(name, &text).map_err(|e| vec![e])
}

/// Validates every document of one file or folder; any problem leaves the whole file or
/// folder out (and only it).
fn validate_all(documents: &[Document]) -> Result<Vec<DesiredObject>, Vec<ManifestError>> {
    let mut objects = Vec::with_capacity(documents.len());
    let mut problems = Vec::new();
    for doc in documents {
        match validate_document(doc) {
            Ok(object) => objects.push(object),
            Err(errors) => problems.extend(errors),
        }
    }
    if problems.is_empty() {
        Ok(objects)
    } else {
        Err(problems)
    }
}

/// The folder a declared Pipeline runs (so the Fast-Flow import leaves it alone).
fn declared_source_path(object: &DesiredObject) -> Option<String> {
    if object.key.kind != Kind::Pipeline {
        return None;
    }
    let spec: PipelineSpec = serde_json::from_str(object.spec.as_str()).ok()?;
    let path = spec
        .source
        .map_or_else(|| object.key.name.clone(), |s| s.path);
    Some(
        path.trim_end_matches('/')
            .trim_start_matches("./")
            .to_owned(),
    )
}

fn relative_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// A cheap fingerprint of everything [`scan`] reads: names, sizes and modification times.
pub fn fingerprint(root: &Path) -> u64 {
    fn visit(dir: &Path, depth: usize, hasher: &mut DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<_> = entries.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            name.hash(hasher);
            if metadata.is_dir() {
                let text = name.to_string_lossy();
                if depth < MAX_DEPTH
                    && !SKIPPED_DIRS.contains(&text.as_ref())
                    && !text.starts_with('.')
                {
                    visit(&entry.path(), depth + 1, hasher);
                }
            } else {
                metadata.len().hash(hasher);
                let modified = metadata
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .unwrap_or_default();
                modified.hash(hasher);
            }
        }
    }
    let mut hasher = DefaultHasher::new();
    visit(root, 0, &mut hasher);
    hasher.finish()
}

/// The result of one sync of the directory.
#[derive(Debug)]
pub struct DirSync {
    /// What the apply did.
    pub outcome: ApplyOutcome,
    /// Files and folders left out.
    pub errors: Vec<ManifestError>,
    /// Non-fatal notes.
    pub warnings: Vec<String>,
}

/// The pipelines directory, applied under manager `dir:<path>`.
#[derive(Clone, Debug)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// A source for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The field manager of this source.
    pub fn manager(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    /// Scans and applies once. Prunes only when every file and folder is valid.
    pub async fn sync(
        &self,
        store: &Store,
        keyring: Option<&Keyring>,
    ) -> Result<DirSync, ApplyError> {
        let root = self.root.clone();
        let scan = tokio::task::spawn_blocking(move || scan(&root))
            .await
            .unwrap_or_else(|e| DirScan {
                errors: vec![ManifestError::file("<scan>", format!("scan failed: {e}"))],
                ..DirScan::default()
            });
        let request = ApplyRequest {
            documents: &scan.documents,
            options: ApplyOptions {
                manager: self.manager(),
                prune: scan.errors.is_empty(),
                force: false,
                dry_run: false,
                diff: false,
            },
        };
        let outcome = request.execute(store, keyring).await?;
        Ok(DirSync {
            outcome,
            errors: scan.errors,
            warnings: scan.warnings,
        })
    }

    /// Applies at start and again whenever the directory changes, until `shutdown`.
    pub async fn run(
        self,
        store: Store,
        keyring: Option<std::sync::Arc<Keyring>>,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_secs(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_fingerprint = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let root = self.root.clone();
            let current = tokio::task::spawn_blocking(move || fingerprint(&root))
                .await
                .ok();
            if current.is_some() && current == last_fingerprint {
                continue;
            }
            match self.sync(&store, keyring.as_deref()).await {
                Ok(report) => {
                    last_fingerprint = current;
                    log_sync(&self.root, &report);
                }
                Err(e) => {
                    // Not recorded as applied: the next tick tries again.
                    tracing::error!(dir = %self.root.display(), code = e.code(), "pipelines directory not applied: {e}");
                }
            }
        }
    }
}

fn log_sync(root: &Path, report: &DirSync) {
    let changed = report
        .outcome
        .items
        .iter()
        .filter(|i| i.action != super::apply::Action::Unchanged)
        .count();
    tracing::info!(
        dir = %root.display(),
        objects = report.outcome.items.len(),
        changed,
        errors = report.errors.len(),
        "pipelines directory applied"
    );
    for item in report
        .outcome
        .items
        .iter()
        .filter(|i| i.action != super::apply::Action::Unchanged)
    {
        tracing::info!("{}/{} {:?}", item.kind.plural(), item.name, item.action);
    }
    for error in &report.errors {
        tracing::warn!("{error}");
    }
    for warning in &report.warnings {
        tracing::warn!("{warning}");
    }
}
