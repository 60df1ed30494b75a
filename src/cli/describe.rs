//! Kind-specific sections of `flotilla describe`: a schedule's next slots, a run's
//! attempts and resource samples.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::client::{API_PREFIX, ApiClient};
use super::output::{human_bytes, table};
use crate::controller::schedule::slots::CompiledSchedule;
use crate::resource::types::ScheduleSpec;
use crate::resource::{Kind, ObjectKey};

/// Prints the extra sections for `key`'s kind.
pub async fn extra(client: &ApiClient, key: &ObjectKey, object: &Value) -> anyhow::Result<()> {
    match key.kind {
        Kind::Schedule => next_slots(object),
        Kind::Run => {
            let latest = object["status"]["attempts"]
                .as_array()
                .and_then(|a| a.last())
                .map(|a| a["packages"].clone())
                .unwrap_or_default();
            packages("Packages (latest attempt)", &latest);
            chain(object);
            run_details(client, key, object).await?;
        }
        Kind::Pipeline => packages("Packages (latest run)", &object["status"]["packages"]),
        Kind::Secret | Kind::Notifier => {}
    }
    Ok(())
}

/// The package set an attempt was installed from (`status.packages` of a pipeline, an
/// attempt's `packages`).
fn packages(title: &str, packages: &Value) {
    println!("{title}:");
    let Some(file) = packages["file"].as_str() else {
        println!("  <none recorded: no dependency file, or no run yet>");
        return;
    };
    let pinned = packages["pinned"].as_bool().unwrap_or(false);
    println!(
        "  From:         {file}{}",
        if pinned {
            " (every version pinned)"
        } else {
            " (not all pinned: uv chose the versions within these ranges)"
        }
    );
    for requirement in packages["requirements"].as_array().into_iter().flatten() {
        println!("  {}", requirement.as_str().unwrap_or_default());
    }
}

fn next_slots(object: &Value) {
    let Ok(spec) = serde_json::from_value::<ScheduleSpec>(object["spec"].clone()) else {
        return;
    };
    println!("Next Slots:");
    let zone: chrono_tz::Tz = spec
        .time_zone
        .as_deref()
        .and_then(|z| z.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    match CompiledSchedule::compile(&spec) {
        Ok(schedule) => {
            let mut cursor = Utc::now();
            let mut any = false;
            for _ in 0..5 {
                let Some(next) = schedule.next_after(cursor) else {
                    break;
                };
                println!(
                    "  {}  ({})",
                    next.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z"),
                    next.format("%Y-%m-%dT%H:%M:%SZ")
                );
                cursor = next;
                any = true;
            }
            if !any {
                println!("  <none>");
            }
        }
        Err(e) => println!("  <invalid: {e:?}>"),
    }
}

/// Where a run stands in a chain of triggers: what started it, the route it wrote and
/// the runs its end started.
fn chain(object: &Value) {
    let parent = object["spec"]["triggeredBy"].as_str();
    let route = object["status"]["route"].as_str();
    let started: Vec<&str> = object["status"]["downstream"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if parent.is_none() && route.is_none() && started.is_empty() {
        return;
    }
    println!("Chain:");
    if let Some(parent) = parent {
        println!("  Triggered by: {parent}");
    }
    if let Some(route) = route {
        println!("  Route:        {route}");
    }
    if !started.is_empty() {
        let runs: Vec<String> = started.iter().map(|name| format!("run/{name}")).collect();
        println!("  Started:      {}", runs.join(", "));
    }
}

async fn run_details(client: &ApiClient, key: &ObjectKey, object: &Value) -> anyhow::Result<()> {
    let attempts = object["status"]["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!("Attempts:");
    if attempts.is_empty() {
        println!("  <none>");
    } else {
        let rows: Vec<Vec<String>> = attempts
            .iter()
            .map(|a| {
                let cell = |v: &Value| {
                    v.as_str().map(str::to_owned).unwrap_or_else(|| {
                        if v.is_null() {
                            "-".into()
                        } else {
                            v.to_string()
                        }
                    })
                };
                vec![
                    cell(&a["number"]),
                    cell(&a["startedAt"]),
                    cell(&a["finishedAt"]),
                    cell(&a["exitCode"]),
                    cell(&a["reason"]),
                    a["setupSeconds"]
                        .as_f64()
                        .map_or("-".into(), |s| format!("{s:.2}s")),
                ]
            })
            .collect();
        for line in table(
            &["#", "STARTED", "FINISHED", "EXIT", "REASON", "SETUP"],
            &rows,
        )
        .lines()
        {
            println!("  {line}");
        }
    }
    let metrics = client
        .get(&format!(
            "{API_PREFIX}/namespaces/{}/runs/{}/metrics",
            key.namespace, key.name
        ))
        .await?;
    let samples = metrics["samples"].as_array().cloned().unwrap_or_default();
    println!("Resources:");
    if samples.is_empty() {
        println!("  <no samples>");
        return Ok(());
    }
    let cpu: Vec<f64> = samples
        .iter()
        .filter_map(|s| s["cpu_percent"].as_f64())
        .collect();
    let memory: Vec<u64> = samples
        .iter()
        .filter_map(|s| s["memory_bytes"].as_u64())
        .collect();
    let last = samples
        .last()
        .and_then(|s| s["at"].as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    println!(
        "  Samples:      {} (every ~2 s){}",
        samples.len(),
        last.map(|t| format!(", last at {}", t.format("%H:%M:%S")))
            .unwrap_or_default()
    );
    println!(
        "  CPU:          avg {:.1}%  max {:.1}%",
        cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
        cpu.iter().copied().fold(0.0, f64::max)
    );
    println!(
        "  Memory:       last {}  peak {}",
        human_bytes(memory.last().copied().unwrap_or(0)),
        human_bytes(memory.iter().copied().max().unwrap_or(0))
    );
    Ok(())
}
