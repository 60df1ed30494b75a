//! Rendering for humans: kubectl-style aligned tables, ages, and YAML/JSON output.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::resource::Kind;

/// Output format of `get`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Wider table with more columns.
    Wide,
    /// The objects as YAML.
    Yaml,
    /// The objects as JSON (a Kubernetes `List` for lists).
    Json,
}

/// Renders rows as columns separated by three spaces, like kubectl.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(width) = widths.get_mut(i) {
                *width = (*width).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 3;
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// kubectl-style age: `45s`, `12m`, `3h`, `5d`.
pub fn age(timestamp: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(created) = timestamp.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".to_owned();
    };
    let seconds = (now - created.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s => format!("{}d", s / 86_400),
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::Null => "<none>".to_owned(),
        Value::String(s) if s.is_empty() => "<none>".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 instant shown in a schedule's zone: `2026-11-23 04:30 CET`.
fn in_zone(value: &Value, zone: Option<&str>) -> String {
    let Some(instant) = value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return text(value);
    };
    let zone: chrono_tz::Tz = zone.and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC);
    instant
        .with_timezone(&zone)
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

/// Headers and cells of the table for `kind`.
pub fn columns(kind: Kind, wide: bool) -> Vec<&'static str> {
    let mut headers = match kind {
        Kind::Pipeline => vec!["NAME", "PYTHON", "MEMORY", "CPUS", "SUSPENDED", "AGE"],
        Kind::Schedule => vec![
            "NAME",
            "PIPELINE",
            "SCHEDULE",
            "ZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SLOT",
            "NEXT SLOT",
            "AGE",
        ],
        Kind::Secret => vec!["NAME", "KEYS", "AGE"],
        Kind::Run => vec![
            "NAME", "PIPELINE", "PHASE", "REASON", "ATTEMPTS", "TRIGGER", "AGE",
        ],
        Kind::Notifier => vec!["NAME", "EVENTS", "CHANNELS", "SELECTOR", "AGE"],
    };
    if wide {
        headers.insert(0, "NAMESPACE");
        if kind == Kind::Pipeline {
            headers.push("SOURCE");
            headers.push("DISK");
        }
        headers.push("MANAGED BY");
    }
    headers
}

/// NAME, EVENTS, CHANNELS, SELECTOR and AGE of a notifier.
fn notifier_cells(name: String, spec: &Value, age: String) -> Vec<String> {
    let events = match spec["events"].as_array() {
        Some(events) if !events.is_empty() => events
            .iter()
            .map(|e| e.as_str().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(","),
        _ => "RunFailed,RunRecovered".to_owned(),
    };
    let channels = ["email", "teams", "slack", "webhook"]
        .into_iter()
        .filter(|c| spec[*c].is_object())
        .collect::<Vec<_>>()
        .join(",");
    let selector = match spec["selector"]["matchLabels"].as_object() {
        Some(labels) if labels.is_empty() => "<all>".to_owned(),
        Some(labels) => labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        None => "<named>".to_owned(),
    };
    vec![name, events, channels, selector, age]
}

/// One table row for an object manifest.
pub fn row(kind: Kind, object: &Value, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let spec = &object["spec"];
    let status = &object["status"];
    let metadata = &object["metadata"];
    let name = text(&metadata["name"]);
    let age = age(metadata["creationTimestamp"].as_str(), now);
    let mut cells = match kind {
        Kind::Pipeline => vec![
            name.clone(),
            text(&spec["python"]),
            text(&spec["resources"]["memory"]),
            text(&spec["resources"]["cpus"]),
            spec["suspend"].as_bool().unwrap_or(false).to_string(),
            age,
        ],
        Kind::Schedule => {
            let schedule = ["cron", "every", "at"]
                .iter()
                .find_map(|field| spec[*field].as_str().map(|v| format!("{field}: {v}")))
                .unwrap_or_else(|| "<none>".to_owned());
            vec![
                name.clone(),
                text(&spec["pipelineRef"]["name"]),
                schedule,
                spec["timeZone"].as_str().unwrap_or("UTC").to_owned(),
                spec["suspend"].as_bool().unwrap_or(false).to_string(),
                status["active"].as_array().map_or(0, Vec::len).to_string(),
                in_zone(&status["lastSlot"], spec["timeZone"].as_str()),
                in_zone(&status["nextSlot"], spec["timeZone"].as_str()),
                age,
            ]
        }
        Kind::Secret => {
            let keys: Vec<String> = spec["encryptedData"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            vec![
                name.clone(),
                if keys.is_empty() {
                    "<none>".to_owned()
                } else {
                    keys.join(",")
                },
                age,
            ]
        }
        Kind::Run => vec![
            name.clone(),
            text(&spec["pipelineRef"]["name"]),
            status["phase"].as_str().unwrap_or("Pending").to_owned(),
            text(&status["reason"]),
            status["attempts"]
                .as_array()
                .map_or(0, Vec::len)
                .to_string(),
            spec["trigger"].as_str().unwrap_or("manual").to_owned(),
            age,
        ],
        Kind::Notifier => notifier_cells(name.clone(), spec, age),
    };
    if wide {
        cells.insert(0, text(&metadata["namespace"]));
        if kind == Kind::Pipeline {
            cells.push(
                spec["source"]["path"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or(name),
            );
            cells.push(human_bytes(status["diskBytes"].as_u64().unwrap_or(0)));
        }
        cells.push(text(&metadata["managedBy"]));
    }
    cells
}

/// A byte count as people read it: `512B`, `3.4KiB`, `120.0MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// The events table of `get events` and `describe`.
pub fn events_table(items: &[Value], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            vec![
                age(e["lastSeen"].as_str(), now),
                text(&e["type"]),
                text(&e["reason"]),
                format!(
                    "{}/{}",
                    e["involved"]["kind"]
                        .as_str()
                        .unwrap_or("?")
                        .to_ascii_lowercase(),
                    e["involved"]["name"].as_str().unwrap_or("?")
                ),
                e["count"]
                    .as_i64()
                    .map_or("1".to_owned(), |c| c.to_string()),
                text(&e["message"]),
            ]
        })
        .collect();
    table(
        &["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"],
        &rows,
    )
}

/// YAML text of a JSON value.
pub fn yaml(value: &Value) -> String {
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let rendered = table(
            &["NAME", "AGE"],
            &[
                vec!["a".into(), "1s".into()],
                vec!["longer-name".into(), "2d".into()],
            ],
        );
        assert_eq!(
            rendered,
            "NAME          AGE\na             1s\nlonger-name   2d\n"
        );
    }

    #[test]
    fn ages() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(age(Some("2026-01-01T23:59:30Z"), now), "30s");
        assert_eq!(age(Some("2026-01-01T23:00:00Z"), now), "60m");
        assert_eq!(age(Some("2025-12-30T00:00:00Z"), now), "3d");
        assert_eq!(age(None, now), "<unknown>");
    }
}
