//! Time as Fast-Flow wrote it: ISO dates and date-times (naive ones are UTC), the
//! `schedule_start`/`schedule_end` window (a day as end was inclusive, Flotilla's end is
//! exclusive).

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use super::translate::Translator;
use super::values::get;
use crate::resource::error::ManifestError;
use crate::resource::types::Window;

/// A time as Fast-Flow writes it: a day or an instant.
pub(super) enum FastFlowTime {
    Day(NaiveDate),
    Instant(DateTime<Utc>),
}

/// Parses what Python's `datetime.fromisoformat` accepts in practice: `2026-01-15`,
/// `2026-01-15T12:00[:00[.000]]` (also with a space), with `Z` or an offset (`+01:00`,
/// or `+01` as PostgreSQL prints it); a time without an offset is UTC, as in Fast-Flow.
/// Empty text is `None`.
pub(super) fn parse_fast_flow_time(text: &str) -> Result<Option<FastFlowTime>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(FastFlowTime::Day(day)));
    }
    let mut normalized = match text.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &text[..10], &text[11..]),
        _ => text.to_owned(),
    };
    // An offset of whole hours as PostgreSQL prints it (`+00`, `-05`).
    let bytes = normalized.as_bytes();
    if bytes.len() > 19
        && matches!(bytes[bytes.len() - 3], b'+' | b'-')
        && bytes[bytes.len() - 2..].iter().all(u8::is_ascii_digit)
    {
        normalized.push_str(":00");
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(&normalized) {
        return Ok(Some(FastFlowTime::Instant(at.with_timezone(&Utc))));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z"] {
        if let Ok(at) = DateTime::parse_from_str(&normalized, format) {
            return Ok(Some(FastFlowTime::Instant(at.with_timezone(&Utc))));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&normalized, format) {
            return Ok(Some(FastFlowTime::Instant(naive.and_utc())));
        }
    }
    Err(format!(
        "{text:?} is not an ISO date (2026-01-15) or date-time (2026-01-15T12:00:00, read as UTC, or with Z or an offset)"
    ))
}

/// The start of `day` in UTC.
pub(super) fn midnight(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// `at` as RFC 3339 with `Z`, with fractional seconds only when there are some.
pub(super) fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl Translator<'_> {
    pub(super) fn window(
        &self,
        prefix: &str,
        fields: &Map<String, Value>,
    ) -> Result<Option<Window>, ManifestError> {
        let bound = |key: &str| -> Result<Option<(String, DateTime<Utc>)>, ManifestError> {
            let field = format!("{prefix}{key}");
            let Some(value) = get(fields, key) else {
                return Ok(None);
            };
            let text = self.string(
                &field,
                value,
                "an ISO date or date-time such as \"2026-01-01\"",
            )?;
            let parsed =
                parse_fast_flow_time(&text).map_err(|problem| self.error(&field, problem))?;
            Ok(parsed.map(|time| match time {
                // A day as end was inclusive in Fast-Flow; Flotilla's end is exclusive.
                FastFlowTime::Day(day) if key == "schedule_end" => {
                    let next = day.succ_opt().unwrap_or(day);
                    (next.format("%Y-%m-%d").to_string(), midnight(next))
                }
                FastFlowTime::Day(day) => (day.format("%Y-%m-%d").to_string(), midnight(day)),
                FastFlowTime::Instant(at) => (rfc3339(at), at),
            }))
        };
        let start = bound("schedule_start")?;
        let end = bound("schedule_end")?;
        if let (Some((_, from)), Some((_, until))) = (&start, &end)
            && from >= until
        {
            return Err(self.error(
                &format!("{prefix}schedule_end"),
                "must be after schedule_start",
            ));
        }
        if start.is_none() && end.is_none() {
            return Ok(None);
        }
        Ok(Some(Window {
            start: start.map(|(text, _)| text),
            end: end.map(|(text, _)| text),
        }))
    }
}
