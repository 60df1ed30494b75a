//! Turning a parsed manifest document into a [`DesiredObject`]: envelope checks
//! (apiVersion, kind, metadata), the typed spec (unknown fields rejected), then the
//! semantic rules of each kind (names, quantities, cron lines, zones, paths). Every
//! problem becomes a [`ManifestError`] naming the file, line and field.
//!
//! References to other objects (`pipelineRef`) are not checked here: a missing pipeline
//! is a status condition of the referring object, not an apply error.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::ManifestError;
use super::kind::{API_VERSION, Kind};
use super::manifest::Document;
use super::object::{DEFAULT_NAMESPACE, DesiredObject, ObjectKey};
use super::quantity::{parse_cpus, parse_duration, parse_memory};
use super::schedule_time;
use super::types::{
    BackoffKind, DownstreamTrigger, NotifierSpec, PipelineSpec, RunSpec, ScheduleSpec, SecretSpec,
    TriggerWhen,
};

/// Metadata fields the server sets; accepted (so `get -o yaml | apply` works) and ignored.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "generation",
    "resourceVersion",
    "creationTimestamp",
    "managedBy",
];

/// Checks a document and returns the object it declares, or every problem found.
pub fn validate_document(doc: &Document) -> Result<DesiredObject, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let value = doc.value();
    let Some(root) = value.as_object() else {
        return Err(vec![doc.error(
            "",
            format!(
                "expected a mapping with apiVersion, kind, metadata and spec, found {}",
                type_name(&value)
            ),
        )]);
    };
    for key in root.keys() {
        if !matches!(
            key.as_str(),
            "apiVersion" | "kind" | "metadata" | "spec" | "status"
        ) {
            errors.push(doc.error(
                key,
                "unknown field; expected apiVersion, kind, metadata, spec",
            ));
        }
    }
    match root.get("apiVersion").and_then(Value::as_str) {
        Some(API_VERSION) => {}
        Some(other) => errors.push(doc.error(
            "apiVersion",
            format!("unknown apiVersion {other:?}; Flotilla resources use {API_VERSION:?}"),
        )),
        None => errors.push(doc.error("apiVersion", format!("required; use {API_VERSION:?}"))),
    }
    let kind = match root.get("kind").and_then(Value::as_str) {
        Some(text) => match Kind::from_kind_field(text) {
            Some(kind) => Some(kind),
            None => {
                errors.push(doc.error(
                    "kind",
                    format!(
                        "unknown kind {text:?}; expected one of Pipeline, Schedule, Secret, Run, Notifier"
                    ),
                ));
                None
            }
        },
        None => {
            errors.push(doc.error(
                "kind",
                "required: Pipeline, Schedule, Secret, Run or Notifier",
            ));
            None
        }
    };
    let metadata = check_metadata(doc, root.get("metadata"), &mut errors);
    let spec = match (kind, root.get("spec")) {
        (Some(kind), Some(spec)) => check_spec(doc, kind, spec, &mut errors),
        (Some(_), None) => {
            errors.push(doc.error("spec", "required"));
            None
        }
        (None, _) => None,
    };
    match (kind, metadata, spec) {
        (Some(kind), Some(metadata), Some(spec)) if errors.is_empty() => Ok(DesiredObject {
            key: ObjectKey::new(kind, metadata.namespace, metadata.name),
            labels: metadata.labels,
            annotations: metadata.annotations,
            spec: spec.into(),
        }),
        _ => Err(errors),
    }
}

struct Metadata {
    name: String,
    namespace: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn check_metadata(
    doc: &Document,
    metadata: Option<&Value>,
    errors: &mut Vec<ManifestError>,
) -> Option<Metadata> {
    let Some(metadata) = metadata else {
        errors.push(doc.error("metadata", "required, with at least a name"));
        return None;
    };
    let Some(fields) = metadata.as_object() else {
        errors.push(doc.error(
            "metadata",
            format!("expected a mapping, found {}", type_name(metadata)),
        ));
        return None;
    };
    let before = errors.len();
    for key in fields.keys() {
        if !matches!(
            key.as_str(),
            "name" | "namespace" | "labels" | "annotations"
        ) && !SERVER_METADATA.contains(&key.as_str())
        {
            errors.push(doc.error(
                &format!("metadata.{key}"),
                "unknown field; expected name, namespace, labels, annotations",
            ));
        }
    }
    let name = match fields.get("name").and_then(Value::as_str) {
        Some(name) => {
            if let Err(problem) = check_dns_label(name) {
                errors.push(doc.error("metadata.name", problem));
            }
            name.to_owned()
        }
        None => {
            errors.push(doc.error(
                "metadata.name",
                "required: a DNS-1123 label such as nightly-etl",
            ));
            String::new()
        }
    };
    let namespace = match fields.get("namespace") {
        None | Some(Value::Null) => DEFAULT_NAMESPACE.to_owned(),
        Some(Value::String(namespace)) => {
            if let Err(problem) = check_dns_label(namespace) {
                errors.push(doc.error("metadata.namespace", problem));
            }
            namespace.clone()
        }
        Some(other) => {
            errors.push(doc.error(
                "metadata.namespace",
                format!("expected a string, found {}", type_name(other)),
            ));
            String::new()
        }
    };
    let labels = string_map(doc, "metadata.labels", fields.get("labels"), errors);
    let annotations = string_map(
        doc,
        "metadata.annotations",
        fields.get("annotations"),
        errors,
    );
    (errors.len() == before).then_some(Metadata {
        name,
        namespace,
        labels,
        annotations,
    })
}

fn string_map(
    doc: &Document,
    path: &str,
    value: Option<&Value>,
    errors: &mut Vec<ManifestError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match value.as_str() {
                    Some(text) => {
                        out.insert(key.clone(), text.to_owned());
                    }
                    None => errors.push(doc.error(
                        &format!("{path}.{key}"),
                        format!("expected a string, found {}; quote it", type_name(value)),
                    )),
                }
            }
        }
        Some(other) => errors.push(doc.error(
            path,
            format!("expected a mapping, found {}", type_name(other)),
        )),
    }
    out
}

fn check_spec(
    doc: &Document,
    kind: Kind,
    spec: &Value,
    errors: &mut Vec<ManifestError>,
) -> Option<Value> {
    let mut rules = Rules { doc, errors };
    let normalized = match kind {
        Kind::Pipeline => rules.typed::<PipelineSpec>(spec).map(|s| {
            rules.pipeline(&s);
            serde_json::to_value(s)
        }),
        Kind::Schedule => rules.typed::<ScheduleSpec>(spec).map(|s| {
            rules.schedule(&s);
            serde_json::to_value(s)
        }),
        Kind::Secret => rules.typed::<SecretSpec>(spec).map(|s| {
            rules.secret(&s);
            serde_json::to_value(s)
        }),
        Kind::Run => rules.typed::<RunSpec>(spec).map(|s| {
            rules.run(&s);
            serde_json::to_value(s)
        }),
        Kind::Notifier => rules.typed::<NotifierSpec>(spec).map(|s| {
            super::validate_notifier::check(&s, &mut |path, message| rules.push(path, message));
            serde_json::to_value(s)
        }),
    }?;
    match normalized {
        Ok(value) => Some(value),
        Err(e) => {
            errors.push(doc.error("spec", format!("cannot be represented: {e}")));
            None
        }
    }
}

/// Collects semantic problems of one spec.
struct Rules<'a> {
    doc: &'a Document,
    errors: &'a mut Vec<ManifestError>,
}

impl Rules<'_> {
    fn push(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(self.doc.error(path, message));
    }

    /// Deserializes the spec, reporting the exact field path of a type error.
    fn typed<T: DeserializeOwned>(&mut self, spec: &Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(spec) {
            Ok(typed) => Some(typed),
            Err(e) => {
                let inner = e.path().to_string();
                let path = if inner == "." {
                    "spec".to_owned()
                } else {
                    format!("spec.{inner}")
                };
                let message = e.into_inner().to_string();
                self.push(&path, message);
                None
            }
        }
    }

    fn pipeline(&mut self, spec: &PipelineSpec) {
        if let Some(source) = &spec.source
            && let Err(problem) = check_relative_path(&source.path)
        {
            self.push("spec.source.path", problem);
        }
        if let Some(entrypoint) = &spec.entrypoint {
            if let Err(problem) = check_relative_path(entrypoint) {
                self.push("spec.entrypoint", problem);
            } else if !entrypoint.ends_with(".py") && !entrypoint.ends_with(".ipynb") {
                self.push(
                    "spec.entrypoint",
                    format!("{entrypoint:?} is not a Python file (*.py) or a notebook (*.ipynb)"),
                );
            }
        }
        if let Some(notebook) = &spec.notebook {
            for (i, cell) in notebook.cells.iter().enumerate() {
                if let Some(delay) = &cell.delay
                    && parse_duration(delay).is_err()
                {
                    self.push(
                        &format!("spec.notebook.cells[{i}].delay"),
                        format!("{delay:?} is not a duration such as \"5s\""),
                    );
                }
            }
        }
        if let Some(python) = &spec.python
            && (python.is_empty() || python.contains(char::is_whitespace))
        {
            self.push(
                "spec.python",
                format!("{python:?} is not a Python version such as \"3.12\""),
            );
        }
        self.env_names("spec.env", spec.env.keys());
        for (i, secret) in spec.secret_refs.iter().enumerate() {
            if let Err(problem) = check_dns_label(&secret.name) {
                self.push(&format!("spec.secretRefs[{i}].name"), problem);
            }
            self.env_names(&format!("spec.secretRefs[{i}].keys"), secret.keys.iter());
        }
        if let Some(resources) = &spec.resources {
            if let Some(memory) = &resources.memory
                && let Err(e) = parse_memory(memory)
            {
                self.push("spec.resources.memory", e.to_string());
            }
            if let Some(cpus) = &resources.cpus
                && let Err(e) = parse_cpus(cpus)
            {
                self.push("spec.resources.cpus", e.to_string());
            }
            if let Some(pids) = resources.pids
                && pids < 1
            {
                self.push("spec.resources.pids", format!("{pids} must be at least 1"));
            }
            if let Some(memory) = &resources.memory_soft_limit
                && let Err(e) = parse_memory(memory)
            {
                self.push("spec.resources.memorySoftLimit", e.to_string());
            }
            if let Some(cpus) = &resources.cpus_soft_limit
                && let Err(e) = parse_cpus(cpus)
            {
                self.push("spec.resources.cpusSoftLimit", e.to_string());
            }
        }
        for (i, notifier) in spec.notify.iter().enumerate() {
            if let Err(problem) = check_dns_label(notifier) {
                self.push(
                    &format!("spec.notify[{i}]"),
                    format!("{problem} (the name of a Notifier)"),
                );
            }
        }
        self.positive_duration("spec.timeout", spec.timeout.as_deref());
        if let Some(retries) = &spec.retries
            && let Some(backoff) = &retries.backoff
        {
            self.positive_duration("spec.retries.backoff.initial", backoff.initial.as_deref());
            self.positive_duration("spec.retries.backoff.max", backoff.max.as_deref());
            if let Some(multiplier) = &backoff.multiplier
                && !multiplier
                    .trim()
                    .parse::<f64>()
                    .is_ok_and(|m| m.is_finite() && (1.0..=100.0).contains(&m))
            {
                self.push(
                    "spec.retries.backoff.multiplier",
                    format!("{multiplier:?} is not a factor between 1 and 100 such as \"1.5\""),
                );
            }
            for (i, delay) in backoff.delays.iter().enumerate() {
                self.positive_duration(&format!("spec.retries.backoff.delays[{i}]"), Some(delay));
            }
            if backoff.kind == BackoffKind::Custom && backoff.delays.is_empty() {
                self.push(
                    "spec.retries.backoff.delays",
                    "kind custom needs a list of delays, e.g. [1m, 5m, 1h]",
                );
            }
        }
        self.triggers(&spec.triggers);
        if let Some(retention) = &spec.retention {
            self.positive_duration("spec.retention.age", retention.age.as_deref());
            if retention.runs == Some(0) {
                self.push(
                    "spec.retention.runs",
                    "must be at least 1 (omit it to keep any number)",
                );
            }
        }
        if let Some(restart) = &spec.restart {
            self.positive_duration("spec.restart.cooldown", restart.cooldown.as_deref());
            if let Some(Err(problem)) = restart
                .periodic
                .as_deref()
                .map(schedule_time::Periodic::parse)
            {
                self.push("spec.restart.periodic", problem);
            }
            if spec.retries.is_some() {
                self.push(
                    "spec.retries",
                    "cannot go with spec.restart: a daemon's attempts restart by spec.restart (remove one of the two)",
                );
            }
        }
        if spec.max_instances == Some(0) {
            self.push(
                "spec.maxInstances",
                "must be at least 1 (omit it for no limit)",
            );
        }
        if spec
            .image
            .as_deref()
            .is_some_and(|image| image.trim().is_empty())
        {
            self.push(
                "spec.image",
                "must not be empty (omit it to use the runner image)",
            );
        }
    }

    fn schedule(&mut self, spec: &ScheduleSpec) {
        if let Err(problem) = check_dns_label(&spec.pipeline_ref.name) {
            self.push("spec.pipelineRef.name", problem);
        }
        let triggers = [spec.cron.is_some(), spec.every.is_some(), spec.at.is_some()];
        match triggers.iter().filter(|set| **set).count() {
            1 => {}
            0 => self.push("spec", "set one of cron, every or at"),
            _ => self.push("spec", "set only one of cron, every and at"),
        }
        if let Some(cron) = &spec.cron
            && let Err(problem) = schedule_time::parse_cron(cron)
        {
            self.push("spec.cron", problem);
        }
        if let Some(every) = &spec.every {
            match parse_duration(every) {
                Ok(d) if d.as_secs() >= 1 => {}
                Ok(_) => self.push(
                    "spec.every",
                    format!("{every:?} is shorter than the minimum of 1s"),
                ),
                Err(e) => self.push("spec.every", e.to_string()),
            }
        }
        if let Some(at) = &spec.at
            && let Err(problem) = schedule_time::parse_instant(at)
        {
            self.push("spec.at", problem);
        }
        if let Some(zone) = &spec.time_zone
            && let Err(problem) = schedule_time::parse_zone(zone)
        {
            self.push("spec.timeZone", problem);
        }
        self.positive_duration("spec.startingDeadline", spec.starting_deadline.as_deref());
        if let Some(window) = &spec.window {
            let zone = spec
                .time_zone
                .as_deref()
                .and_then(|z| schedule_time::parse_zone(z).ok())
                .unwrap_or(chrono_tz::UTC);
            let start = window
                .start
                .as_deref()
                .map(|s| schedule_time::parse_window_bound(s, zone));
            let end = window
                .end
                .as_deref()
                .map(|s| schedule_time::parse_window_bound(s, zone));
            if let Some(Err(problem)) = &start {
                self.push("spec.window.start", problem.clone());
            }
            if let Some(Err(problem)) = &end {
                self.push("spec.window.end", problem.clone());
            }
            if let (Some(Ok(start)), Some(Ok(end))) = (start, end)
                && start >= end
            {
                self.push("spec.window.end", "must be after window.start");
            }
        }
        self.env_names("spec.env", spec.env.keys());
    }

    fn secret(&mut self, spec: &SecretSpec) {
        self.env_names("spec.encryptedData", spec.encrypted_data.keys());
        self.env_names("spec.stringData", spec.string_data.keys());
        for (key, token) in &spec.encrypted_data {
            if !looks_like_fernet_token(token) {
                self.push(
                    &format!("spec.encryptedData.{key}"),
                    "is not a Fernet token; make one with `flotilla secret encrypt` or use stringData",
                );
            }
            if spec.string_data.contains_key(key) {
                self.push(
                    &format!("spec.stringData.{key}"),
                    "is also set in encryptedData; keep one",
                );
            }
        }
    }

    fn triggers(&mut self, triggers: &[DownstreamTrigger]) {
        for (i, trigger) in triggers.iter().enumerate() {
            let path = format!("spec.triggers[{i}]");
            if let Err(problem) = check_dns_label(&trigger.pipeline) {
                self.push(&format!("{path}.pipeline"), problem);
            }
            if let Some(route) = &trigger.route {
                if route.trim().is_empty() || route.trim() != route || route.contains('\n') {
                    self.push(
                        &format!("{path}.route"),
                        format!("{route:?} is not a route label: one line, no surrounding spaces, not empty"),
                    );
                } else if route.len() > MAX_ROUTE_LEN {
                    self.push(
                        &format!("{path}.route"),
                        format!(
                            "is {} characters long; a route label has at most {MAX_ROUTE_LEN}",
                            route.len()
                        ),
                    );
                }
                if trigger.when != TriggerWhen::Succeeded {
                    self.push(
                        &format!("{path}.when"),
                        format!("{:?} cannot go with a route: a route is read from a run that succeeded (remove `when` or set it to Succeeded)", trigger.when),
                    );
                }
            }
            if let Some(schedule) = &trigger.schedule
                && let Err(problem) = check_dns_label(schedule)
            {
                self.push(&format!("{path}.schedule"), problem);
            }
            self.env_names(&format!("{path}.env"), trigger.env.keys());
            if let Some(first) = triggers[..i].iter().position(|t| {
                t.pipeline == trigger.pipeline
                    && t.when == trigger.when
                    && t.route == trigger.route
                    && t.schedule == trigger.schedule
            }) {
                self.push(
                    &path,
                    format!("starts {} on the same outcome as spec.triggers[{first}]: one run would start twice (merge the two entries)", trigger.pipeline),
                );
            }
        }
    }

    fn run(&mut self, spec: &RunSpec) {
        if let Err(problem) = check_dns_label(&spec.pipeline_ref.name) {
            self.push("spec.pipelineRef.name", problem);
        }
        if let Some(schedule) = &spec.schedule_ref
            && let Err(problem) = check_dns_label(&schedule.name)
        {
            self.push("spec.scheduleRef.name", problem);
        }
        self.env_names("spec.env", spec.env.keys());
        if let Some(parent) = &spec.triggered_by {
            match parent.strip_prefix("run/") {
                Some(name) if check_dns_label(name).is_ok() => {}
                _ => self.push(
                    "spec.triggeredBy",
                    format!("{parent:?} is not a run reference: write run/<name>"),
                ),
            }
        }
    }

    fn positive_duration(&mut self, path: &str, value: Option<&str>) {
        if let Some(text) = value {
            match parse_duration(text) {
                Ok(d) if !d.is_zero() => {}
                Ok(_) => self.push(path, format!("{text:?} must be longer than zero")),
                Err(e) => self.push(path, e.to_string()),
            }
        }
    }

    fn env_names<'k>(&mut self, path: &str, names: impl Iterator<Item = &'k String>) {
        for name in names {
            if !is_env_name(name) {
                self.push(
                    &format!("{path}.{name}"),
                    format!("{name:?} is not a valid environment variable name (letters, digits, _; not starting with a digit)"),
                );
            }
        }
    }
}

/// Longest route label a run may write and a trigger may name.
pub const MAX_ROUTE_LEN: usize = 253;

/// Checks a DNS-1123 label: 1–63 lower-case letters, digits and `-`, starting and ending
/// with a letter or digit.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 63 {
        return Err(format!(
            "is {} characters long; a DNS-1123 label has at most 63",
            name.len()
        ));
    }
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let valid_ends = !name.starts_with('-') && !name.ends_with('-');
    if valid_chars && valid_ends {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a DNS-1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// True for `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Rejects absolute paths and any path that climbs out of its root with `..`
/// (lexically; see [`super::path`]).
pub fn check_relative_path(path: &str) -> Result<(), String> {
    super::path::check_relative(path).map_err(|e| e.to_string())
}

fn looks_like_fernet_token(token: &str) -> bool {
    // Version byte 0x80 encodes to "gAAAAA" in URL-safe base64.
    token.starts_with("gAAAAA")
        && token.len() >= 100
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Builds a document value from parts, for callers that construct objects in code.
pub fn envelope(kind: Kind, name: &str, spec: Value) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(name.to_owned()));
    let mut root = Map::new();
    root.insert("apiVersion".into(), Value::String(API_VERSION.to_owned()));
    root.insert("kind".into(), Value::String(kind.as_str().to_owned()));
    root.insert("metadata".into(), Value::Object(metadata));
    root.insert("spec".into(), spec);
    Value::Object(root)
}
