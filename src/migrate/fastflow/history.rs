//! Fast-Flow's run files in Flotilla's formats. Pure text to text; reading and writing
//! the files is the caller's.
//!
//! - A Fast-Flow log holds `[YYYY-MM-DD HH:MM:SS.mmm] <text>` per line (UTC, stdout and
//!   stderr merged), and a few lines it appended without a stamp (error notes). Flotilla
//!   stores `<RFC 3339> <stream> <text>`: every line becomes stdout, a line without a
//!   stamp takes the time of the line before it (or the run's start).
//! - A Fast-Flow metrics file holds `{"timestamp", "cpu_percent", "ram_mb"}` per line;
//!   Flotilla's samples are `{"at", "cpu_percent", "memory_bytes"}` (both count CPU in
//!   percent of one core; `ram_mb` is MiB).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;

use crate::controller::run::logs::LogLine;
use crate::controller::runtime::{LogStream, ResourceSample};
use crate::secrets::Redactor;

/// `[2026-10-01 08:00:00.250] ` is 26 bytes.
const STAMP_LEN: usize = 25;

/// Converts a Fast-Flow log into Flotilla's stored lines (each ending in a newline),
/// with every value `redactor` knows replaced, as Flotilla's own logs are.
pub fn convert_log(text: &str, start: DateTime<Utc>, redactor: &Redactor) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut at = start;
    for line in text.lines() {
        let body = match stamp(line) {
            Some((stamped, rest)) => {
                at = stamped;
                rest
            }
            None => line,
        };
        let line = LogLine {
            at,
            stream: LogStream::Stdout,
            text: redactor.redact(body),
        };
        out.push_str(&line.render());
        out.push('\n');
    }
    out
}

fn stamp(line: &str) -> Option<(DateTime<Utc>, &str)> {
    let inside = line.strip_prefix('[')?.get(..STAMP_LEN - 2)?;
    let rest = line.get(STAMP_LEN - 1..)?.strip_prefix(']')?;
    let at = NaiveDateTime::parse_from_str(inside, "%Y-%m-%d %H:%M:%S%.3f").ok()?;
    Some((at.and_utc(), rest.strip_prefix(' ').unwrap_or(rest)))
}

#[derive(Deserialize)]
struct FastFlowSample {
    timestamp: String,
    #[serde(default)]
    cpu_percent: Option<f64>,
    #[serde(default)]
    ram_mb: Option<f64>,
}

/// Converts a Fast-Flow metrics file into Flotilla's `metrics.jsonl` lines; lines that
/// do not read as a sample are skipped (Fast-Flow wrote nothing else there).
pub fn convert_metrics(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let Ok(sample) = serde_json::from_str::<FastFlowSample>(line) else {
            continue;
        };
        let Ok(Some(at)) = crate::resource::fastflow::parse_time(&sample.timestamp) else {
            continue;
        };
        let sample = ResourceSample {
            at,
            cpu_percent: sample.cpu_percent.unwrap_or(0.0),
            memory_bytes: (sample.ram_mb.unwrap_or(0.0).max(0.0) * 1024.0 * 1024.0) as u64,
        };
        if let Ok(json) = serde_json::to_string(&sample) {
            out.push_str(&json);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("an instant")
            .with_timezone(&Utc)
    }

    #[test]
    fn stamped_lines_keep_their_time_and_unstamped_ones_take_the_last() {
        let log = "[2026-10-01 08:00:00.250] hello\n[2026-10-01 08:00:01.500] [x] bracketed\nContainer exited with code 1\n";
        let converted = convert_log(log, at("2026-10-01T08:00:00Z"), &Redactor::new([]));
        let lines: Vec<LogLine> = converted
            .lines()
            .map(|l| LogLine::parse(l).expect("a stored line"))
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].at, at("2026-10-01T08:00:00.250Z"));
        assert_eq!(lines[0].text, "hello");
        assert_eq!(lines[1].text, "[x] bracketed");
        assert_eq!(lines[2].at, at("2026-10-01T08:00:01.500Z"));
        assert_eq!(lines[2].text, "Container exited with code 1");
        assert!(lines.iter().all(|l| l.stream == LogStream::Stdout));
    }

    #[test]
    fn a_first_line_without_a_stamp_takes_the_start_and_secrets_are_masked() {
        let converted = convert_log(
            "token is hunter2-long\n",
            at("2026-10-01T08:00:00Z"),
            &Redactor::new(["hunter2-long"]),
        );
        let line = LogLine::parse(converted.trim_end()).expect("a stored line");
        assert_eq!(line.at, at("2026-10-01T08:00:00Z"));
        assert_eq!(line.text, "token is [secret]");
    }

    #[test]
    fn metrics_become_samples_in_bytes() {
        let text = "{\"timestamp\": \"2026-10-05T02:15:02+00:00\", \"cpu_percent\": 10.0, \"ram_mb\": 51.0, \"ram_limit_mb\": 512}\nnot json\n";
        let converted = convert_metrics(text);
        let samples: Vec<ResourceSample> = converted
            .lines()
            .map(|l| serde_json::from_str(l).expect("a sample"))
            .collect();
        assert_eq!(
            samples,
            vec![ResourceSample {
                at: at("2026-10-05T02:15:02Z"),
                cpu_percent: 10.0,
                memory_bytes: 51 * 1024 * 1024,
            }]
        );
    }
}
