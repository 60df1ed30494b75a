//! Cron lines as Fast-Flow's scheduler read them: each translated line fires on exactly
//! the instants APScheduler 3 computed for the original over a year
//! (`fixtures/apscheduler-2027.json`, written by `scripts/fastflow-cron-oracle.py`).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::super::cron::from_apscheduler;
use crate::controller::schedule::slots::CompiledSchedule;
use crate::resource::types::{LocalRef, ScheduleSpec};

const ORACLE: &str = include_str!("fixtures/apscheduler-2027.json");

fn instants(line: &str, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<i64> {
    let spec = ScheduleSpec {
        pipeline_ref: LocalRef { name: "p".into() },
        cron: Some(line.to_owned()),
        time_zone: Some("UTC".into()),
        ..ScheduleSpec::default()
    };
    let compiled = CompiledSchedule::compile(&spec)
        .unwrap_or_else(|e| panic!("{line:?} does not compile: {e:?}"));
    let mut out = Vec::new();
    let mut after = from - chrono::Duration::seconds(1);
    while let Some(next) = compiled.next_after(after) {
        if next >= until {
            break;
        }
        out.push(next.timestamp());
        after = next;
    }
    out
}

#[test]
fn translated_lines_fire_on_the_instants_apscheduler_fired_the_originals_on() {
    let oracle: Value = serde_json::from_str(ORACLE).expect("the oracle file is JSON");
    let from: DateTime<Utc> = oracle["from"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("from");
    let until: DateTime<Utc> = oracle["until"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("until");
    let fires = oracle["fires"].as_object().expect("fires");
    assert!(fires.len() >= 10, "the oracle covers the cases");
    for (line, expected) in fires {
        let expected: Vec<i64> = expected
            .as_array()
            .expect("a list")
            .iter()
            .map(|v| v.as_i64().expect("epoch seconds"))
            .collect();
        let translated = from_apscheduler(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let got = instants(&translated.line, from, until);
        let first_difference = expected
            .iter()
            .zip(&got)
            .position(|(a, b)| a != b)
            .map(|i| (expected[i], got[i]));
        assert!(
            got == expected,
            "{line:?} became {:?}: {} instants where APScheduler fired {} (first difference, APScheduler vs Flotilla: {first_difference:?})",
            translated.line,
            got.len(),
            expected.len()
        );
    }
}

#[test]
fn lines_are_rewritten_only_where_the_readings_differ() {
    for (line, expected, changed) in [
        ("0 9 * * 0-4", "0 9 * * MON-FRI", true),
        ("0 12 * * */2", "0 12 * * MON,WED,FRI,SUN", true),
        ("45 23 * * sat-sun", "45 23 * * SAT,SUN", true),
        ("0 9 1-7 * 0", "0 9 1-7 * +MON", true),
        ("0 9 1-7 * *", "0 9 1-7 * *", false),
        ("0 8 * * 0-6", "0 8 * * *", true),
        ("0 8  * *  *", "0 8 * * *", true),
    ] {
        let translated = from_apscheduler(line).expect("translates");
        assert_eq!(translated.line, expected, "{line:?}");
        assert_eq!(translated.changed, changed, "{line:?}");
    }
}

#[test]
fn lines_apscheduler_refused_or_crontab_cannot_say_are_errors_naming_the_field() {
    for (line, needle) in [
        ("0 9 * * 7", "out of Fast-Flow's 0–6"),
        ("0 9 * * fri-mon", "runs backwards"),
        ("0 9 * * funday", "neither a weekday number"),
        ("0 9 * * */0", "not a positive number"),
        ("0 9 last * *", "day-of-month field \"last\""),
        ("0 9 * *", "has 4 fields"),
    ] {
        let error = from_apscheduler(line).expect_err(line);
        assert!(error.contains(needle), "{line:?}: {error}");
    }
}
