//! Apply sets: a source (a directory, a git branch, `flotilla apply`) declares a whole
//! set of objects under a field manager; applying it creates, updates and — with prune —
//! deletes what that manager owned and no longer declares. [`plan_apply`] decides this
//! without I/O; [`ApplyRequest::execute`] loads, plans and commits atomically.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use similar::TextDiff;
use thiserror::Error;

use crate::resource::error::{ManifestError, ManifestErrors};
use crate::resource::graph::Graph;
use crate::resource::manifest::Document;
use crate::resource::types::{PipelineSpec, SecretSpec};
use crate::resource::validate::validate_document;
use crate::resource::{Change, DesiredObject, Kind, ObjectKey, RawObject, StoredObject};
use crate::secrets::{Keyring, SecretsError};
use crate::store::{Store, StoreError};

/// Options of one apply.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Field manager applying the set (`cli`, `dir:<path>`, `git:<url>#<branch>`).
    pub manager: String,
    /// Delete objects this manager owns that the set no longer declares (never Runs).
    pub prune: bool,
    /// Take over objects owned by another manager instead of failing.
    pub force: bool,
    /// Compute the result without writing anything.
    pub dry_run: bool,
    /// Render the unified diff of the changes (not needed by sources that only log what
    /// happened: for a set of 10,000 new objects it is megabytes of text).
    pub diff: bool,
}

/// What happened (or would happen) to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The object did not exist.
    Created,
    /// Spec, labels or annotations changed.
    Configured,
    /// Nothing to do.
    Unchanged,
    /// Deleted because the set no longer declares it.
    Pruned,
}

/// One line of an apply result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApplyItem {
    /// `Pipeline`, `Schedule`, …
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// What happened.
    pub action: Action,
}

/// Result of an apply (or a dry run of one).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyOutcome {
    /// One entry per declared or pruned object, in set order, pruned last.
    pub items: Vec<ApplyItem>,
    /// Unified diff (YAML) of everything that changes; empty unless asked for
    /// ([`ApplyOptions::diff`]).
    pub diff: String,
    /// True when nothing was written.
    pub dry_run: bool,
}

/// Why an apply was refused. Nothing is written in any of these cases.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// Documents failed validation.
    #[error("{0}")]
    Invalid(ManifestErrors),
    /// An object belongs to another manager.
    #[error(
        "{key} is managed by {owner:?}; {manager:?} cannot apply it (remove it from one of the two sources, or use --force to take it over)"
    )]
    Conflict {
        /// The object.
        key: ObjectKey,
        /// Its current manager.
        owner: String,
        /// The manager that tried to apply it.
        manager: String,
    },
    /// A secret value could not be encrypted or compared.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The store refused the write (e.g. a concurrent change: retry).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApplyError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            ApplyError::Invalid(_) => "validation.failed",
            ApplyError::Conflict { .. } => "resource.conflict",
            ApplyError::Secrets(e) => e.code(),
            ApplyError::Store(e) => e.code(),
        }
    }
}

/// Validates every document and rejects duplicates; all problems are reported together.
pub fn collect_objects(documents: &[Document]) -> Result<Vec<DesiredObject>, ManifestErrors> {
    let mut errors = Vec::new();
    let mut objects = Vec::with_capacity(documents.len());
    let mut seen: HashMap<ObjectKey, &Document> = HashMap::new();
    for doc in documents {
        match validate_document(doc) {
            Ok(object) => {
                if let Some(first) = seen.get(&object.key) {
                    errors.push(doc.error(
                        "metadata.name",
                        format!(
                            "{} is declared twice in this set; the first is {}",
                            object.key,
                            describe_location(first)
                        ),
                    ));
                } else {
                    seen.insert(object.key.clone(), doc);
                    objects.push(object);
                }
            }
            Err(problems) => errors.extend(problems),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(ManifestErrors(errors))
    }
}

fn describe_location(doc: &Document) -> String {
    match doc.position_of("metadata.name") {
        Some(p) => format!(
            "{}:{}:{} (document {})",
            doc.file, p.line, p.column, doc.index
        ),
        None => format!("{} (document {})", doc.file, doc.index),
    }
}

/// What planning an apply needs to know of one stored object. The user-owned part is
/// kept as a digest only: an apply of 10,000 objects compares 10,000 stored objects, and
/// their text is read again only for the few that a diff shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Existing {
    /// Field manager.
    pub managed_by: Option<String>,
    /// resourceVersion, the precondition of the write.
    pub resource_version: i64,
    /// [`user_digest`] of labels, annotations and spec.
    pub digest: [u8; 32],
}

impl Existing {
    /// The planning view of a stored object.
    pub fn of(object: &RawObject) -> Self {
        Self {
            managed_by: object.managed_by.clone(),
            resource_version: object.resource_version,
            digest: user_digest(&object.labels, &object.annotations, &object.spec),
        }
    }
}

/// SHA-256 of the canonical JSON texts of labels, annotations and spec (each length
/// prefixed): equal digests mean an apply would change nothing of them.
pub fn user_digest(labels: &str, annotations: &str, spec: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [labels, annotations, spec] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

fn declared_digest(object: &DesiredObject) -> [u8; 32] {
    user_digest(
        &map_text(&object.labels),
        &map_text(&object.annotations),
        object.spec.as_str(),
    )
}

/// Decides the writes of an apply. `existing` holds every stored object with a declared
/// key plus everything the manager owns. The outcome's diff is left empty: see
/// [`render_diff`].
pub fn plan_apply(
    desired: Vec<DesiredObject>,
    existing: &HashMap<ObjectKey, Existing>,
    options: &ApplyOptions,
) -> Result<(ApplyOutcome, Vec<Change>), ApplyError> {
    let mut outcome = ApplyOutcome {
        dry_run: options.dry_run,
        ..ApplyOutcome::default()
    };
    let mut changes = Vec::new();
    let mut declared = std::collections::HashSet::new();
    for object in desired {
        declared.insert(object.key.clone());
        let item = |action| ApplyItem {
            kind: object.key.kind,
            namespace: object.key.namespace.clone(),
            name: object.key.name.clone(),
            action,
        };
        match existing.get(&object.key) {
            None => {
                outcome.items.push(item(Action::Created));
                changes.push(Change::Create {
                    object,
                    managed_by: Some(options.manager.clone()),
                    status: None,
                });
            }
            Some(stored) => {
                if let Some(owner) = &stored.managed_by
                    && owner != &options.manager
                    && !options.force
                {
                    return Err(ApplyError::Conflict {
                        key: object.key,
                        owner: owner.clone(),
                        manager: options.manager.clone(),
                    });
                }
                let same = stored.digest == declared_digest(&object)
                    && stored.managed_by.as_deref() == Some(options.manager.as_str());
                if same {
                    outcome.items.push(item(Action::Unchanged));
                    continue;
                }
                outcome.items.push(item(Action::Configured));
                changes.push(Change::Update {
                    object,
                    managed_by: Some(options.manager.clone()),
                    expected_resource_version: stored.resource_version,
                });
            }
        }
    }
    if options.prune {
        let mut orphans: Vec<(&ObjectKey, &Existing)> = existing
            .iter()
            .filter(|(_, s)| s.managed_by.as_deref() == Some(options.manager.as_str()))
            .filter(|(key, _)| key.kind != Kind::Run && !declared.contains(*key))
            .collect();
        orphans.sort_by(|a, b| a.0.cmp(b.0));
        for (key, stored) in orphans {
            outcome.items.push(ApplyItem {
                kind: key.kind,
                namespace: key.namespace.clone(),
                name: key.name.clone(),
                action: Action::Pruned,
            });
            changes.push(Change::Delete {
                key: key.clone(),
                expected_resource_version: stored.resource_version,
            });
        }
    }
    Ok((outcome, changes))
}

/// The unified diff of `changes` (in order), reading the stored side of updates and
/// deletes from `store` in one batch.
pub async fn render_diff(store: &Store, changes: &[Change]) -> Result<String, StoreError> {
    let touched: Vec<ObjectKey> = changes
        .iter()
        .filter(|c| !matches!(c, Change::Create { .. }))
        .map(|c| c.key().clone())
        .collect();
    let mut stored: HashMap<ObjectKey, StoredObject> = HashMap::new();
    for raw in store.get_raw_many(&touched).await? {
        let object = raw.to_object().map_err(|reason| StoreError::Corrupt {
            key: raw.key.to_string(),
            reason,
        })?;
        stored.insert(raw.key, object);
    }
    let mut diff = String::new();
    for change in changes {
        let before = match change {
            Change::Create { .. } => None,
            _ => stored.get(change.key()).map(stored_view),
        };
        let after = match change {
            Change::Create { object, .. } | Change::Update { object, .. } => {
                Some(declared_view(object))
            }
            Change::Delete { .. } => None,
        };
        diff.push_str(&unified_diff(change.key(), before.as_ref(), after.as_ref()));
    }
    Ok(diff)
}

/// The user-owned part of an object, as compared and diffed.
fn view(
    kind: Kind,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    spec: &Value,
) -> Value {
    let mut metadata = serde_json::Map::new();
    if !labels.is_empty() {
        metadata.insert("labels".into(), serde_json::json!(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), serde_json::json!(annotations));
    }
    let spec = if kind == Kind::Secret {
        fingerprint_tokens(spec)
    } else {
        spec.clone()
    };
    serde_json::json!({ "metadata": metadata, "spec": spec })
}

fn declared_view(object: &DesiredObject) -> Value {
    view(
        object.key.kind,
        &object.labels,
        &object.annotations,
        &object.spec.to_value(),
    )
}

fn stored_view(object: &StoredObject) -> Value {
    view(
        object.key.kind,
        &object.labels,
        &object.annotations,
        &object.spec,
    )
}

/// Canonical JSON text of a label or annotation map, as the store keeps it.
fn map_text(map: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises.
    serde_json::to_string(map).unwrap_or_default()
}

/// Diffs show a short hash of each Fernet token rather than the token.
fn fingerprint_tokens(spec: &Value) -> Value {
    let mut spec = spec.clone();
    if let Some(Value::Object(data)) = spec.get_mut("encryptedData") {
        for token in data.values_mut() {
            if let Value::String(text) = token {
                let digest = Sha256::digest(text.as_bytes());
                *token =
                    Value::String(format!("<encrypted sha256:{}>", &hex::encode(digest)[..12]));
            }
        }
    }
    spec
}

fn unified_diff(key: &ObjectKey, before: Option<&Value>, after: Option<&Value>) -> String {
    let render = |v: Option<&Value>| {
        v.map(|v| serde_saphyr::to_string(v).unwrap_or_else(|e| format!("# unrenderable: {e}\n")))
            .unwrap_or_default()
    };
    let (old, new) = (render(before), render(after));
    let name = format!("{}/{}/{}", key.kind.plural(), key.namespace, key.name);
    TextDiff::from_lines(&old, &new)
        .unified_diff()
        .header(
            &if before.is_some() {
                format!("a/{name}")
            } else {
                "/dev/null".to_owned()
            },
            &if after.is_some() {
                format!("b/{name}")
            } else {
                "/dev/null".to_owned()
            },
        )
        .to_string()
}

/// Turns `stringData` of declared Secrets into Fernet tokens. A value equal to what the
/// stored token already decrypts to keeps that token, so re-applying is `unchanged`.
pub async fn seal_secrets(
    objects: &mut [DesiredObject],
    store: &Store,
    keyring: Option<&Keyring>,
) -> Result<(), ApplyError> {
    for object in objects.iter_mut().filter(|o| o.key.kind == Kind::Secret) {
        let mut spec: SecretSpec = serde_json::from_str(object.spec.as_str()).map_err(|e| {
            ApplyError::Invalid(ManifestError::file("<secret>", e.to_string()).into())
        })?;
        if spec.string_data.is_empty() {
            continue;
        }
        let keyring = keyring.ok_or(SecretsError::MissingKey)?;
        // Applying declares the whole spec, so it may replace a stored one this version
        // cannot read (that is how such a secret is repaired); it says so.
        let stored: BTreeMap<String, String> = match store.get(&object.key).await? {
            Some(stored) => match stored.spec_as::<SecretSpec>() {
                Ok(spec) => spec.encrypted_data,
                Err(e) => {
                    tracing::warn!("apply replaces an unreadable stored secret: {e}");
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        for (key, plaintext) in std::mem::take(&mut spec.string_data) {
            let token = stored
                .get(&key)
                .filter(|token| keyring.is_current(token))
                .filter(|token| keyring.decrypt(token, &key).is_ok_and(|v| v == plaintext))
                .cloned()
                .unwrap_or_else(|| keyring.encrypt(&plaintext));
            spec.encrypted_data.insert(key, token);
        }
        object.spec = serde_json::to_value(&spec)
            .map_err(|e| {
                ApplyError::Invalid(ManifestError::file("<secret>", e.to_string()).into())
            })?
            .into();
    }
    Ok(())
}

/// Plans and commits of one apply before a persisting conflict is reported.
const APPLY_ATTEMPTS: u32 = 5;

/// An apply of a document set against the store.
pub struct ApplyRequest<'a> {
    /// The parsed documents of the set.
    pub documents: &'a [Document],
    /// Manager, prune, force, dry run.
    pub options: ApplyOptions,
}

impl ApplyRequest<'_> {
    /// Validates, plans and (unless a dry run) commits the set in one transaction.
    pub async fn execute(
        self,
        store: &Store,
        keyring: Option<&Keyring>,
    ) -> Result<ApplyOutcome, ApplyError> {
        // A controller writing status between load and commit moves resourceVersions;
        // re-read and re-plan rather than refuse a user's apply for it. Each attempt
        // validates the (compact) documents again instead of keeping a second copy of
        // every object for the rare retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut desired = collect_objects(self.documents).map_err(ApplyError::Invalid)?;
            let existing = load_existing(store, &desired, &self.options).await?;
            seal_secrets(&mut desired, store, keyring).await?;
            let (mut outcome, changes) = plan_apply(desired, &existing, &self.options)?;
            drop(existing);
            check_trigger_loops(store, &changes, self.documents).await?;
            if self.options.diff {
                outcome.diff = render_diff(store, &changes).await?;
            }
            if self.options.dry_run || changes.is_empty() {
                return Ok(outcome);
            }
            match store.commit_many(changes).await {
                Ok(_) => return Ok(outcome),
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::AlreadyExists(_)
                    | StoreError::NotFound(_),
                ) if attempt < APPLY_ATTEMPTS => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Refuses a set after which pipeline triggers would form a loop (a run starting a run
/// of its own pipeline, at once or through others), naming the loop and where it is
/// declared. Only namespaces where the set declares triggers are read.
async fn check_trigger_loops(
    store: &Store,
    changes: &[Change],
    documents: &[Document],
) -> Result<(), ApplyError> {
    // Pipelines the set writes, by namespace: None for a deletion.
    let mut written: BTreeMap<&str, BTreeMap<&str, Option<PipelineSpec>>> = BTreeMap::new();
    let mut checked: Vec<&ObjectKey> = Vec::new();
    for change in changes {
        let key = change.key();
        if key.kind != Kind::Pipeline {
            continue;
        }
        let spec = match change {
            Change::Create { object, .. } | Change::Update { object, .. } => {
                let spec: PipelineSpec =
                    serde_json::from_str(object.spec.as_str()).map_err(|e| {
                        StoreError::Corrupt {
                            key: key.to_string(),
                            reason: e.to_string(),
                        }
                    })?;
                if !spec.triggers.is_empty() {
                    checked.push(key);
                }
                Some(spec)
            }
            Change::Delete { .. } => None,
        };
        written
            .entry(key.namespace.as_str())
            .or_default()
            .insert(key.name.as_str(), spec);
    }
    // One read and one graph per namespace, however many of its pipelines the set
    // gives triggers.
    let mut graphs: BTreeMap<&str, Graph> = BTreeMap::new();
    for key in checked {
        let namespace = key.namespace.as_str();
        if !graphs.contains_key(namespace) {
            let stored = store.list_raw(Kind::Pipeline, Some(namespace)).await?;
            let mut specs: BTreeMap<String, PipelineSpec> = BTreeMap::new();
            for object in &stored {
                if let Ok(spec) = object.spec_as::<PipelineSpec>() {
                    specs.insert(object.key.name.clone(), spec);
                }
            }
            for (name, spec) in &written[namespace] {
                match spec {
                    Some(spec) => specs.insert((*name).to_owned(), spec.clone()),
                    None => specs.remove(*name),
                };
            }
            let graph = Graph::of(
                specs
                    .iter()
                    .map(|(name, spec)| (name.as_str(), spec.suspend, spec.triggers.as_slice())),
            );
            graphs.insert(namespace, graph);
        }
        if let Some(cycle) = graphs[namespace].cycle_through(&key.name) {
            let message = format!(
                "the triggers form a loop: {} (every run would start the next forever; remove one of these triggers)",
                cycle.join(" → ")
            );
            let error = documents
                .iter()
                .find(|doc| declares(doc, key))
                .map(|doc| doc.error("spec.triggers", message.clone()))
                .unwrap_or_else(|| ManifestError::file(&key.to_string(), message));
            return Err(ApplyError::Invalid(ManifestErrors(vec![error])));
        }
    }
    Ok(())
}

/// True when `doc` declares the object `key`.
fn declares(doc: &Document, key: &ObjectKey) -> bool {
    let value = doc.value();
    value["kind"].as_str() == Some(key.kind.as_str())
        && value["metadata"]["name"].as_str() == Some(key.name.as_str())
        && value["metadata"]["namespace"]
            .as_str()
            .unwrap_or(crate::resource::DEFAULT_NAMESPACE)
            == key.namespace
}

/// Objects read per query while loading what an apply must know.
const EXISTING_PAGE: i64 = 1_000;

/// What planning needs of the stored objects: the declared keys that exist and, for a
/// prune, everything the manager owns. Reads are proportional to the set, not the store
/// (an apply of 5,000 Runs does not read the 100,000 already stored).
async fn load_existing(
    store: &Store,
    desired: &[DesiredObject],
    options: &ApplyOptions,
) -> Result<HashMap<ObjectKey, Existing>, StoreError> {
    let mut existing: HashMap<ObjectKey, Existing> = HashMap::with_capacity(desired.len());
    for chunk in desired.chunks(EXISTING_PAGE as usize) {
        let keys: Vec<ObjectKey> = chunk.iter().map(|o| o.key.clone()).collect();
        for object in store.get_raw_many(&keys).await? {
            existing.insert(object.key.clone(), Existing::of(&object));
        }
    }
    if options.prune {
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = store
                .list_managed_by_page(&options.manager, after.as_ref(), EXISTING_PAGE)
                .await?;
            let full = page.len() as i64 == EXISTING_PAGE;
            after = page.last().map(|o| o.key.clone());
            for object in &page {
                if !existing.contains_key(&object.key) {
                    existing.insert(object.key.clone(), Existing::of(object));
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(existing)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod apply_tests;
