//! Parsing of the time expressions schedules use: crontab lines, IANA zones, instants
//! and window bounds. Pure functions; the slot arithmetic lives with the schedule
//! controller.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Parses a standard 5-field crontab line (POSIX weekdays: 0 and 7 are Sunday, 1 is
/// Monday), with ranges, steps, lists, month and day names and the `@hourly`, `@daily`,
/// `@weekly`, `@monthly`, `@yearly` nicknames.
pub fn parse_cron(line: &str) -> Result<Cron, String> {
    let fields = line.split_whitespace().count();
    if !line.trim_start().starts_with('@') && fields != 5 {
        return Err(format!(
            "{line:?} has {fields} fields; a crontab line has 5: minute hour day-of-month month day-of-week (e.g. \"0 3 * * *\")"
        ));
    }
    // croner reads an empty list element ("," or "1,,2") as a field that matches nothing:
    // the line never fires and every search for a slot runs to croner's limit (seconds).
    if let Some(field) = line
        .split_whitespace()
        .find(|field| field.split(',').any(str::is_empty))
    {
        return Err(format!(
            "{line:?} is not a valid crontab line: the field {field:?} has an empty list element; separate values with single commas (e.g. \"0,30\")"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(line)
        .map_err(|e| format!("{line:?} is not a valid crontab line: {e}"))
}

/// A periodic restart of a daemon's attempt (`spec.restart.periodic`).
#[derive(Clone, Debug, PartialEq)]
pub enum Periodic {
    /// This long after the attempt started.
    Every(std::time::Duration),
    /// At the cron line's next instant (UTC) after the attempt started.
    Cron(String),
}

impl Periodic {
    /// Reads an interval (`24h`) or, failing that, a cron line (`0 3 * * *`).
    pub fn parse(text: &str) -> Result<Periodic, String> {
        match crate::resource::quantity::parse_duration(text) {
            Ok(every) if every.is_zero() => Err(format!("{text:?} must be longer than zero")),
            Ok(every) => Ok(Periodic::Every(every)),
            Err(_) => parse_cron(text)
                .map(|_| Periodic::Cron(text.to_owned()))
                .map_err(|problem| {
                    format!(
                        "{text:?} is neither an interval such as \"24h\" nor a cron line such as \"0 3 * * *\": {problem}"
                    )
                }),
        }
    }

    /// When an attempt that started at `started` is restarted.
    pub fn after(&self, started: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Periodic::Every(every) => Some(started + chrono::Duration::from_std(*every).ok()?),
            Periodic::Cron(line) => parse_cron(line)
                .ok()?
                .find_next_occurrence(&started, false)
                .ok(),
        }
    }
}

/// Parses an IANA time zone name such as `Europe/Berlin` or `UTC`.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "{name:?} is not an IANA time zone; use a name such as \"Europe/Berlin\" or \"UTC\""
        )
    })
}

/// Parses an RFC 3339 instant (`2026-03-29T02:30:00+02:00`, `2026-03-29T00:30:00Z`).
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("{text:?} is not an RFC 3339 instant such as \"2026-01-31T03:00:00Z\": {e}")
        })
}

/// Parses a window bound: an RFC 3339 instant, or a day (`2026-01-01`) meaning midnight
/// at the start of that day in `zone`.
pub fn parse_window_bound(text: &str, zone: Tz) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let midnight = day.and_hms_opt(0, 0, 0).ok_or("invalid midnight")?;
        // A zone may skip midnight (DST); take the earliest existing instant after it.
        return zone
            .from_local_datetime(&midnight)
            .earliest()
            .or_else(|| {
                zone.from_local_datetime(&(midnight + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| format!("{text:?} has no midnight in {zone}"));
    }
    parse_instant(text).map_err(|_| {
        format!(
            "{text:?} is neither a day (2026-01-01) nor an RFC 3339 instant (2026-01-01T00:00:00Z)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crontab_lines() {
        for good in [
            "0 3 * * *",
            "*/15 * * * *",
            "0 9-17 * * 1-5",
            "0 0 1,15 * *",
            "0 0 * JAN,JUL MON",
            "@hourly",
            "@daily",
            "@weekly",
            "@monthly",
            "@yearly",
            "0 0 29 2 *",
            "0 0 * * 7",
        ] {
            assert!(
                parse_cron(good).is_ok(),
                "{good}: {:?}",
                parse_cron(good).err()
            );
        }
        for bad in [
            "",
            "* * * *",
            "0 0 0 * * *",
            "61 * * * *",
            "0 25 * * *",
            "hello",
        ] {
            assert!(parse_cron(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn zones_and_instants() {
        assert!(parse_zone("Europe/Berlin").is_ok());
        assert!(parse_zone("Mars/Olympus").is_err());
        assert!(parse_instant("2026-01-31T03:00:00Z").is_ok());
        assert!(parse_instant("tomorrow").is_err());
        let berlin = parse_zone("Europe/Berlin").expect("zone");
        let start = parse_window_bound("2026-01-01", berlin).expect("day");
        assert_eq!(start.to_rfc3339(), "2025-12-31T23:00:00+00:00");
    }
}
