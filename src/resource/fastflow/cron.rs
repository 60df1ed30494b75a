//! Fast-Flow's cron lines in Flotilla's grammar. Fast-Flow handed the five fields to
//! APScheduler 3 (`CronTrigger.from_crontab`), which reads two of them differently from
//! standard crontab:
//!
//! - day-of-week counts from 0 = Monday to 6 = Sunday (crontab: 0 = Sunday), so `*/2`
//!   or `1-5` name other days;
//! - a line restricting both day-of-month and day-of-week fires on days matching both
//!   (crontab: either).
//!
//! The translation writes the weekdays APScheduler meant as day names (`MON-FRI`, which
//! both read alike) and, when both day fields restrict, marks day-of-week with croner's
//! `+` (days matching both fields). Minute, hour, day-of-month and month mean the same
//! in both. A line using APScheduler expressions crontab has no word for (`last`,
//! `2nd fri` in day-of-month) is refused with the field named.

/// APScheduler's weekday names, index = its number (0 = Monday).
const WEEKDAYS: [&str; 7] = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

/// A Fast-Flow cron line in Flotilla's grammar; `changed` tells whether it had to be
/// rewritten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Translated {
    pub line: String,
    pub changed: bool,
}

/// Translates a five-field APScheduler crontab line.
pub(super) fn from_apscheduler(line: &str) -> Result<Translated, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [minute, hour, day, month, day_of_week] = fields.as_slice() else {
        return Err(format!(
            "{line:?} has {} fields; a crontab line (as Fast-Flow's scheduler read it) has 5: minute hour day month day-of-week",
            fields.len()
        ));
    };
    if day.chars().any(|c| c.is_ascii_alphabetic()) {
        return Err(format!(
            "{line:?}: the day-of-month field {day:?} uses an APScheduler expression (such as `last` or `2nd fri`) that crontab cannot say; write the days as numbers"
        ));
    }
    let weekdays = match *day_of_week {
        "*" | "?" => None,
        field => Some(weekday_set(field).map_err(|e| format!("{line:?}: day-of-week: {e}"))?),
    };
    let Some(weekdays) = weekdays else {
        return Ok(Translated {
            line: fields.join(" "),
            changed: fields.join(" ") != line,
        });
    };
    let both = *day != "*" && *day != "?";
    let day_of_week = match weekdays {
        // Every day: no restriction, in either reading.
        [true, true, true, true, true, true, true] => "*".to_owned(),
        _ if both => format!("+{}", weekday_names(&weekdays)),
        _ => weekday_names(&weekdays),
    };
    let translated = format!("{minute} {hour} {day} {month} {day_of_week}");
    Ok(Translated {
        changed: translated != line,
        line: translated,
    })
}

/// The weekdays (0 = Monday) an APScheduler day-of-week field selects: a comma list of
/// `*`, `*/step`, `N`, `N-M`, `N-M/step`, `N/step` (N to Sunday), names and name ranges.
fn weekday_set(field: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: usize =
                    step.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{item:?} has a step that is not a positive number")
                    })?;
                (range, step)
            }
            None => (item, 1),
        };
        let (first, last) = match range {
            "*" => (0, 6),
            _ => match range.split_once('-') {
                Some((a, b)) => (weekday(a)?, weekday(b)?),
                // `N/step` runs from N to the last day, as in APScheduler.
                None if item.contains('/') => (weekday(range)?, 6),
                None => {
                    let day = weekday(range)?;
                    (day, day)
                }
            },
        };
        if first > last {
            return Err(format!(
                "{item:?} runs backwards; Fast-Flow's scheduler refused such a range (write it as two, e.g. \"sat-sun,mon\")"
            ));
        }
        for day in (first..=last).step_by(step) {
            days[day] = true;
        }
    }
    Ok(days)
}

/// One APScheduler weekday: 0–6 (0 = Monday) or a three-letter name.
fn weekday(text: &str) -> Result<usize, String> {
    if let Ok(number) = text.parse::<usize>() {
        return if number <= 6 {
            Ok(number)
        } else {
            Err(format!(
                "{number} is out of Fast-Flow's 0–6 (0 = Monday, 6 = Sunday)"
            ))
        };
    }
    WEEKDAYS
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            format!("{text:?} is neither a weekday number (0 = Monday … 6 = Sunday) nor a name (mon … sun)")
        })
}

/// Day names for a set of weekdays, Monday first, with runs of three or more as ranges
/// (`MON-FRI`, `MON,WED,FRI`, `FRI,SAT,SUN`). Sunday is never the end of a range: crontab
/// numbers it 0, so `FRI-SUN` would run backwards.
fn weekday_names(days: &[bool; 7]) -> String {
    let mut parts = Vec::new();
    let mut day = 0;
    while day < 7 {
        if !days[day] {
            day += 1;
            continue;
        }
        let start = day;
        while day + 1 < 6 && days[day + 1] {
            day += 1;
        }
        match day - start {
            0 => parts.push(WEEKDAYS[start].to_owned()),
            1 => parts.extend([WEEKDAYS[start].to_owned(), WEEKDAYS[day].to_owned()]),
            _ => parts.push(format!("{}-{}", WEEKDAYS[start], WEEKDAYS[day])),
        }
        day += 1;
    }
    parts.join(",")
}
