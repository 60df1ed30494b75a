//! What the import writes, decided from what was read, without I/O: the Secret standing
//! in for Fast-Flow's secret store, the schedules made in its UI, the finished runs,
//! and a note for everything that does not carry over.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::database::{Installation, JobRow, RunRow, SecretRow};
use crate::resource::fastflow::{
    IMPORTED_FROM_ANNOTATION, SHARED_SECRETS_NAME, UiSchedule, import_ui_schedule, parse_time,
    pipeline_name,
};
use crate::resource::manifest::Document;
use crate::resource::types::{
    Attempt, LocalRef, RunPhase, RunSpec, RunStatus, SecretSpec, Trigger, run_name,
};
use crate::resource::validate::envelope;
use crate::resource::{DesiredObject, Kind, ObjectKey};
use crate::secrets::{Keyring, Redactor};

/// Annotation holding the Fast-Flow run id of an imported run.
pub const RUN_ID_ANNOTATION: &str = "flotilla.dev/fastflow-run-id";

/// Where the import's documents say they came from (errors and notes name it).
pub const DATABASE_FILE_LABEL: &str = "fastflow.db";

/// The keys the secret store is read with.
pub struct Keys<'a> {
    /// Flotilla's `ENCRYPTION_KEY`: a token it decrypts is kept as it is.
    pub flotilla: Option<&'a Keyring>,
    /// Fast-Flow's key, when it differs: its tokens are decrypted in memory and sealed
    /// again with Flotilla's key.
    pub fastflow: Option<&'a Keyring>,
}

/// The Secret `fastflow-secrets` and a redactor of its values, or why it cannot be made.
pub struct SecretPlan {
    pub document: Option<Document>,
    pub redactor: Redactor,
    pub notes: Vec<String>,
    pub errors: Vec<String>,
}

/// Fast-Flow's secret store as one Secret: a token Flotilla's key reads is kept as it
/// is (never decrypted to disk); one only Fast-Flow's key reads is decrypted in memory
/// and sealed again by the apply; parameters (stored in plain text) are sealed too.
pub fn secret(rows: &[SecretRow], keys: &Keys<'_>) -> SecretPlan {
    let mut plan = SecretPlan {
        document: None,
        redactor: Redactor::new([]),
        notes: Vec::new(),
        errors: Vec::new(),
    };
    if rows.is_empty() {
        return plan;
    }
    let mut spec = SecretSpec::default();
    let mut plaintexts = Vec::new();
    let (mut kept, mut resealed, mut parameters) = (0, 0, 0);
    for row in rows {
        if row.is_parameter {
            spec.string_data.insert(row.key.clone(), row.value.clone());
            parameters += 1;
            continue;
        }
        let by_flotilla = keys
            .flotilla
            .and_then(|k| k.decrypt(&row.value, &row.key).ok());
        let by_fastflow = || {
            keys.fastflow
                .and_then(|k| k.decrypt(&row.value, &row.key).ok())
        };
        if let Some(plaintext) = by_flotilla {
            spec.encrypted_data
                .insert(row.key.clone(), row.value.clone());
            plaintexts.push(plaintext);
            kept += 1;
        } else if let Some(plaintext) = by_fastflow() {
            spec.string_data.insert(row.key.clone(), plaintext.clone());
            plaintexts.push(plaintext);
            resealed += 1;
        } else {
            plan.errors.push(format!(
                "secrets: {:?} does not decrypt with {}: give Fast-Flow's ENCRYPTION_KEY with --encryption-key (and Flotilla's own in ENCRYPTION_KEY)",
                row.key,
                match (keys.flotilla.is_some(), keys.fastflow.is_some()) {
                    (true, true) => "ENCRYPTION_KEY or --encryption-key",
                    (true, false) => "ENCRYPTION_KEY",
                    (false, true) => "--encryption-key",
                    (false, false) => "any key (none given)",
                }
            ));
        }
    }
    if (resealed > 0 || parameters > 0) && keys.flotilla.is_none() {
        plan.errors.push(
            "secrets: ENCRYPTION_KEY (Flotilla's key) is not set; it seals the secrets and parameters: set it as for `flotilla serve`".to_owned(),
        );
    }
    plaintexts.extend(
        rows.iter()
            .filter(|r| r.is_parameter)
            .map(|r| r.value.clone()),
    );
    plan.redactor = Redactor::new(plaintexts.iter().map(String::as_str));
    plan.notes.push(format!(
        "secret store: {} secret(s) and {parameters} parameter(s) → Secret {SHARED_SECRETS_NAME} (keys {}); {kept} ciphertexts kept as they are{}",
        kept + resealed,
        rows.iter()
            .map(|r| r.key.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        if resealed > 0 {
            format!(", {resealed} sealed again with Flotilla's key")
        } else {
            String::new()
        }
    ));
    if parameters > 0 {
        plan.notes.push(
            "secret store: parameters (is_parameter) were stored in plain text by Fast-Flow; here they are encrypted like the secrets".to_owned(),
        );
    }
    let spec = serde_json::to_value(&spec).expect("a secret spec serialises");
    let mut value = envelope(Kind::Secret, SHARED_SECRETS_NAME, spec);
    value["metadata"]["annotations"] = json!({ IMPORTED_FROM_ANNOTATION: "fast-flow" });
    plan.document = Some(Document::synthetic(
        format!("{DATABASE_FILE_LABEL} secrets"),
        1,
        value,
    ));
    plan
}

/// The schedules made in Fast-Flow's UI as Schedules (a switched-off one suspended).
/// Jobs made from pipeline.json are skipped (the folder declares them); daemon restart
/// jobs are noted. `run_configs` gives the env of `<pipeline>/<run config id>`.
pub fn ui_schedules(
    jobs: &[JobRow],
    run_configs: &HashMap<(String, String), BTreeMap<String, String>>,
) -> (Vec<Document>, Vec<String>, Vec<String>) {
    let (mut documents, mut notes, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for job in jobs {
        let file = format!("{DATABASE_FILE_LABEL} scheduled_jobs {}", job.id);
        match job.source.as_str() {
            "pipeline_json" => continue,
            "daemon_restart" => {
                notes.push(format!(
                    "{file}: the daemon restart job of {:?} is not imported: Flotilla has no daemons yet (restart_interval is noted on the pipeline)",
                    job.pipeline
                ));
                continue;
            }
            _ => {}
        }
        let mut env = BTreeMap::new();
        if let Some(config) = &job.run_config_id {
            match run_configs.get(&(job.pipeline.clone(), config.clone())) {
                Some(found) => env = found.clone(),
                None => notes.push(format!(
                    "{file}: run configuration {config:?} is not in {}'s pipeline.json; the schedule runs without its env",
                    job.pipeline
                )),
            }
        }
        let schedule = UiSchedule {
            id: job.id.clone(),
            pipeline: job.pipeline.clone(),
            trigger_type: job.trigger_type.clone(),
            trigger_value: job.trigger_value.clone(),
            enabled: job.enabled,
            start: job.start.clone(),
            end: job.end.clone(),
            env,
        };
        match import_ui_schedule(&file, &schedule) {
            Ok((document, warnings)) => {
                let name = document.value()["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                notes.push(format!(
                    "{file}: {} {:?} made in the UI{} → Schedule {name}{}",
                    job.trigger_type,
                    job.trigger_value,
                    if job.enabled { "" } else { ", switched off" },
                    if job.enabled { "" } else { " (suspended)" }
                ));
                notes.extend(warnings);
                documents.push(document);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    (documents, notes, errors)
}

/// One finished Fast-Flow run as a Run with its status, and where its files are.
#[derive(Clone, Debug)]
pub struct RunImport {
    pub object: DesiredObject,
    pub status: Value,
    pub started: DateTime<Utc>,
    /// `log_file` and `metrics_file` as Fast-Flow stored them.
    pub log_file: Option<String>,
    pub metrics_file: Option<String>,
}

/// Finished runs (SUCCESS, FAILED, INTERRUPTED, WARNING) as Runs named
/// `<pipeline>-ff-<Fast-Flow run id>`; pending and running ones are left out (noted).
pub fn runs(rows: &[RunRow], namespace: &str) -> (Vec<RunImport>, Vec<String>) {
    let mut imports = Vec::new();
    let mut notes = Vec::new();
    let mut unfinished = 0;
    for row in rows {
        let Some(phase) = phase(&row.status) else {
            unfinished += 1;
            continue;
        };
        match run(row, phase, namespace) {
            Ok(import) => imports.push(import),
            Err(problem) => notes.push(format!(
                "{DATABASE_FILE_LABEL} pipeline_runs {}: not imported: {problem}",
                row.id
            )),
        }
    }
    imports.sort_by_key(|a| a.started);
    notes.insert(
        0,
        format!(
            "run history: {} finished run(s) → Runs <pipeline>-ff-<run id> with their logs{}",
            imports.len(),
            if unfinished > 0 {
                format!(
                    "; {unfinished} pending or running run(s) not imported (they had not ended when Fast-Flow stopped)"
                )
            } else {
                String::new()
            }
        ),
    );
    (imports, notes)
}

/// Fast-Flow's status as a finished phase, with the reason it is given here.
fn phase(status: &str) -> Option<(RunPhase, Option<&'static str>)> {
    match status.to_ascii_uppercase().as_str() {
        "SUCCESS" => Some((RunPhase::Succeeded, None)),
        "FAILED" => Some((RunPhase::Failed, Some("Error"))),
        // Stopped by a user, or by Fast-Flow's shutdown.
        "INTERRUPTED" => Some((RunPhase::Cancelled, Some("Cancelled"))),
        // Fast-Flow stopped while the run was active and could not tell how it ended.
        "WARNING" => Some((RunPhase::Failed, Some("Interrupted"))),
        _ => None,
    }
}

fn run(
    row: &RunRow,
    (phase, reason): (RunPhase, Option<&'static str>),
    namespace: &str,
) -> Result<RunImport, String> {
    let pipeline = pipeline_name(&row.pipeline)?;
    let id = uuid::Uuid::parse_str(row.id.trim())
        .map_err(|e| format!("id {:?} is not a UUID: {e}", row.id))?;
    let started =
        time(&row.started_at, "started_at")?.ok_or_else(|| "started_at is empty".to_owned())?;
    let finished = time(&row.finished_at, "finished_at")?;
    let env: BTreeMap<String, String> = match row.parameters.as_deref().map(str::trim) {
        None | Some("") | Some("null") => BTreeMap::new(),
        Some(text) => serde_json::from_str::<BTreeMap<String, Value>>(text)
            .map_err(|e| format!("parameters are not a JSON object: {e}"))?
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect(),
    };
    let trigger = match row.triggered_by.as_deref() {
        Some("webhook") => Trigger::Webhook,
        // No scheduleRef: a schedule's history limits would prune Fast-Flow's history.
        Some("scheduler") => Trigger::Schedule,
        _ => Trigger::Manual,
    };
    let spec = RunSpec {
        pipeline_ref: LocalRef {
            name: pipeline.clone(),
        },
        trigger,
        env,
        ..RunSpec::default()
    };
    let rfc3339 = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    let message = match (phase, row.exit_code) {
        (RunPhase::Failed, Some(code)) => format!("exit {code} (imported from Fast-Flow)"),
        (RunPhase::Failed, None) => "Fast-Flow stopped while the run was active; how it ended is unknown (imported from Fast-Flow)".to_owned(),
        (RunPhase::Cancelled, _) => "stopped in Fast-Flow (INTERRUPTED; imported from Fast-Flow)".to_owned(),
        _ => "imported from Fast-Flow".to_owned(),
    };
    let status = RunStatus {
        phase,
        reason: reason.map(str::to_owned),
        message: Some(message),
        attempts: vec![Attempt {
            number: 1,
            container: format!("fastflow-{}", id.simple()),
            started_at: Some(rfc3339(started)),
            finished_at: finished.map(rfc3339),
            exit_code: row.exit_code,
            setup_seconds: row.setup_duration,
            ..Attempt::default()
        }],
        source_revision: row.git_sha.clone(),
        ..RunStatus::default()
    };
    let mut annotations = BTreeMap::from([
        (IMPORTED_FROM_ANNOTATION.to_owned(), "fast-flow".to_owned()),
        (RUN_ID_ANNOTATION.to_owned(), id.hyphenated().to_string()),
    ]);
    for (key, value) in [
        ("flotilla.dev/fastflow-triggered-by", &row.triggered_by),
        ("flotilla.dev/fastflow-run-config", &row.run_config_id),
        ("flotilla.dev/fastflow-uv-version", &row.uv_version),
        ("flotilla.dev/fastflow-git-branch", &row.git_branch),
        (
            "flotilla.dev/fastflow-git-commit-message",
            &row.git_commit_message,
        ),
    ] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            annotations.insert(key.to_owned(), value.to_owned());
        }
    }
    let name = run_name(&pipeline, &format!("ff-{}", id.simple()));
    Ok(RunImport {
        object: DesiredObject {
            key: ObjectKey::new(Kind::Run, namespace, name),
            labels: BTreeMap::from([(
                crate::controller::runtime::labels::PIPELINE.to_owned(),
                pipeline,
            )]),
            annotations,
            spec: serde_json::to_value(&spec)
                .expect("a run spec serialises")
                .into(),
        },
        status: serde_json::to_value(&status).expect("a run status serialises"),
        started,
        log_file: row.log_file.clone(),
        metrics_file: row.metrics_file.clone(),
    })
}

fn time(text: &Option<String>, column: &str) -> Result<Option<DateTime<Utc>>, String> {
    match text {
        None => Ok(None),
        Some(text) => parse_time(text).map_err(|problem| format!("{column}: {problem}")),
    }
}

/// Notes on what Fast-Flow kept in its database that has no place here yet.
pub fn other_notes(installation: &Installation) -> Vec<String> {
    let mut notes = Vec::new();
    for trigger in &installation.triggers {
        let when = match (trigger.on_success, trigger.on_failure, &trigger.on_route) {
            (_, _, Some(route)) => format!("on route {route:?}"),
            (true, true, None) => "on success and on failure".to_owned(),
            (false, true, None) => "on failure".to_owned(),
            _ => "on success".to_owned(),
        };
        let mut entry = serde_json::json!({
            "pipeline": trigger.downstream,
            "on_success": trigger.on_success,
            "on_failure": trigger.on_failure,
        });
        if let Some(route) = &trigger.on_route {
            entry["on_route"] = serde_json::Value::String(route.clone());
        }
        notes.push(if trigger.enabled {
            format!(
                "downstream trigger {} → {} ({when}) was made in Fast-Flow's UI; here the folders declare triggers: add {entry} to \"downstream_triggers\" in {}/pipeline.json",
                trigger.upstream, trigger.downstream, trigger.upstream
            )
        } else {
            format!(
                "downstream trigger {} → {} ({when}) was switched off in Fast-Flow's UI: not imported",
                trigger.upstream, trigger.downstream
            )
        });
    }
    for (name, value) in &installation.settings {
        let note = match name.as_str() {
            "max_concurrent_runs" => format!(
                "start `flotilla serve --max-concurrent-runs {value}` (runs beyond it queue here; add --when-busy reject to refuse them with 429 as Fast-Flow did)"
            ),
            "container_timeout" => format!(
                "start `flotilla serve --default-timeout {value}s` (or set CONTAINER_TIMEOUT={value}): imported pipelines without `timeout` stop after it"
            ),
            "retry_attempts" => "Flotilla has no global retry count: set `retry_attempts` in each pipeline.json".to_owned(),
            "auto_sync_enabled" | "auto_sync_interval" => "start `flotilla serve` with --auto-sync and --auto-sync-interval (or AUTO_SYNC_ENABLED, AUTO_SYNC_INTERVAL)".to_owned(),
            "git_sync_repo_url" | "git_sync_branch" | "pipelines_subdir" => "start `flotilla serve` with --git-url, --git-branch and --git-path (or GIT_REPO_URL, GIT_BRANCH, PIPELINES_SUBDIR)".to_owned(),
            _ => "not used by Flotilla (no retention settings, notifications or S3 backup yet)".to_owned(),
        };
        notes.push(format!("setting {name} = {value} made in the UI: {note}"));
    }
    if installation.users > 0 {
        notes.push(format!(
            "users: {} accounts are not imported; Flotilla signs clients in with API tokens (`flotilla token create`)",
            installation.users
        ));
    }
    notes.push(
        "every pipeline: each run works in its own writable copy of the folder at /pipeline (Fast-Flow's /app); what a run writes there is gone when it ends (in Fast-Flow it stayed in the folder): keep outputs elsewhere".to_owned(),
    );
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: &str, is_parameter: bool) -> SecretRow {
        SecretRow {
            key: key.to_owned(),
            value: value.to_owned(),
            is_parameter,
        }
    }

    fn spec(plan: &SecretPlan) -> SecretSpec {
        serde_json::from_value(plan.document.as_ref().expect("a secret").value()["spec"].clone())
            .expect("a secret spec")
    }

    #[test]
    fn a_token_flotillas_key_reads_is_kept_byte_for_byte() {
        let key = Keyring::generate_key();
        let keyring = Keyring::from_env_value(&key).expect("a key");
        let token = keyring.encrypt("s3cret-value");
        let plan = secret(
            &[row("API_TOKEN", &token, false), row("REGION", "eu", true)],
            &Keys {
                flotilla: Some(&keyring),
                fastflow: None,
            },
        );
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        let spec = spec(&plan);
        assert_eq!(spec.encrypted_data["API_TOKEN"], token);
        assert_eq!(spec.string_data["REGION"], "eu");
        assert_eq!(plan.redactor.redact("x s3cret-value y"), "x [secret] y");
    }

    #[test]
    fn a_token_only_fast_flows_key_reads_is_sealed_again_and_an_unreadable_one_refused() {
        let flotilla = Keyring::from_env_value(&Keyring::generate_key()).expect("a key");
        let fastflow = Keyring::from_env_value(&Keyring::generate_key()).expect("a key");
        let token = fastflow.encrypt("from-fast-flow");
        let plan = secret(
            &[row("API_TOKEN", &token, false)],
            &Keys {
                flotilla: Some(&flotilla),
                fastflow: Some(&fastflow),
            },
        );
        assert!(plan.errors.is_empty(), "{:?}", plan.errors);
        assert_eq!(spec(&plan).string_data["API_TOKEN"], "from-fast-flow");

        let plan = secret(
            &[row("API_TOKEN", &token, false)],
            &Keys {
                flotilla: Some(&flotilla),
                fastflow: None,
            },
        );
        assert_eq!(plan.errors.len(), 1);
        assert!(
            plan.errors[0].contains("\"API_TOKEN\""),
            "{:?}",
            plan.errors
        );
        assert!(
            plan.errors[0].contains("--encryption-key"),
            "{:?}",
            plan.errors
        );
    }

    #[test]
    fn unfinished_runs_are_left_out_and_statuses_map_to_phases() {
        let base = RunRow {
            pipeline: "nightly_etl".to_owned(),
            started_at: Some("2026-10-01 08:00:00.000000".to_owned()),
            finished_at: Some("2026-10-01 08:00:04.500000".to_owned()),
            ..RunRow::default()
        };
        let rows: Vec<RunRow> = [
            ("SUCCESS", "Succeeded"),
            ("FAILED", "Failed"),
            ("INTERRUPTED", "Cancelled"),
            ("WARNING", "Failed"),
            ("RUNNING", ""),
            ("PENDING", ""),
        ]
        .iter()
        .enumerate()
        .map(|(i, (status, _))| RunRow {
            id: uuid::Uuid::from_u128(i as u128 + 1).to_string(),
            status: (*status).to_owned(),
            ..base.clone()
        })
        .collect();
        let (imports, notes) = runs(&rows, "default");
        let phases: Vec<String> = imports
            .iter()
            .map(|r| r.status["phase"].as_str().expect("a phase").to_owned())
            .collect();
        assert_eq!(phases, ["Succeeded", "Failed", "Cancelled", "Failed"]);
        assert!(notes[0].contains("2 pending or running"), "{notes:?}");
        assert!(imports[0].object.key.name.starts_with("nightly-etl-ff-"));
        assert!(imports[0].object.key.name.len() <= 63);
    }
}
