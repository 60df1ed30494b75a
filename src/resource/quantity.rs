//! Durations (`30s`, `1h30m`), memory sizes (`512Mi`, `1G`, Fast-Flow's `512m`) and CPU
//! counts (`1.5`, `500m`), parsed once into exact integers with errors that say what is
//! accepted.

use std::time::Duration;

use thiserror::Error;

/// A value that could not be parsed as a duration, memory size or CPU count.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} {value:?}: {hint}")]
pub struct QuantityError {
    what: &'static str,
    value: String,
    hint: &'static str,
}

const DURATION_HINT: &str = "use a number with a unit, e.g. 500ms, 30s, 10m, 1h30m or 2d";
const MEMORY_HINT: &str =
    "use bytes with a unit, e.g. 512Mi, 1Gi, 1G or Docker's 512m / 1.5g; the minimum is 6Mi";
const CPU_HINT: &str = "use a number of CPUs, e.g. 1, 1.5 or 500m (millicores), greater than 0";

fn error(what: &'static str, value: &str, hint: &'static str) -> QuantityError {
    QuantityError {
        what,
        value: value.to_owned(),
        hint,
    }
}

/// Parses a Go-style duration with an optional day unit: `500ms`, `30s`, `10m`, `1h30m`,
/// `1d`, `1.5h`. A bare `0` is zero; other bare numbers are rejected because the unit
/// would be a guess.
pub fn parse_duration(value: &str) -> Result<Duration, QuantityError> {
    let fail = || error("duration", value, DURATION_HINT);
    let text = value.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(fail());
    }
    let mut total_ms: f64 = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(fail)?;
        if number_len == 0 {
            return Err(fail());
        }
        let number: f64 = rest[..number_len].parse().map_err(|_| fail())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(fail()),
        };
        rest = &rest[unit_len..];
        total_ms += number * unit_ms;
    }
    // Ten years is far beyond any sensible timeout or interval; the bound keeps the
    // float-to-integer conversion exact.
    if !total_ms.is_finite() || total_ms > 10.0 * 365.0 * 86_400_000.0 {
        return Err(fail());
    }
    Ok(Duration::from_millis(total_ms.round() as u64))
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `45s`, `250ms`).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// Docker refuses memory limits under 6 MiB.
pub const MIN_MEMORY_BYTES: u64 = 6 * 1024 * 1024;

/// Parses a memory size into bytes.
///
/// Kubernetes suffixes: `Ki Mi Gi Ti` (binary) and `K M G T` (decimal). Docker and
/// Fast-Flow suffixes: `k m g t` and `kb mb gb tb` in any case (binary). A lower-case
/// `m` therefore means MiB here, not Kubernetes' milli-bytes, which make no sense for
/// memory. A bare number is bytes.
pub fn parse_memory(value: &str) -> Result<u64, QuantityError> {
    match parse_bytes(value) {
        Ok(bytes) if bytes >= MIN_MEMORY_BYTES => Ok(bytes),
        _ => Err(error("memory size", value, MEMORY_HINT)),
    }
}

/// Parses a size in bytes with [`parse_memory`]'s units and no minimum (a log cap).
pub fn parse_bytes(value: &str) -> Result<u64, QuantityError> {
    let fail = || {
        error(
            "size",
            value,
            "use bytes with a unit, e.g. 64Ki, 100Mi, 1Gi or 100m",
        )
    };
    let text = value.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| fail())?;
    const KI: f64 = 1024.0;
    let multiplier = match suffix {
        "" | "b" | "B" => 1.0,
        "Ki" => KI,
        "Mi" => KI * KI,
        "Gi" => KI * KI * KI,
        "Ti" => KI * KI * KI * KI,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => match other.to_ascii_lowercase().as_str() {
            "k" | "kb" => KI,
            "m" | "mb" => KI * KI,
            "g" | "gb" => KI * KI * KI,
            "t" | "tb" => KI * KI * KI * KI,
            _ => return Err(fail()),
        },
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || !(1.0..=1e15).contains(&bytes) {
        return Err(fail());
    }
    Ok(bytes.round() as u64)
}

/// Parses a CPU count into nano-CPUs (Docker's `NanoCpus`): `2`, `1.5`, `500m`.
pub fn parse_cpus(value: &str) -> Result<i64, QuantityError> {
    let fail = || error("CPU count", value, CPU_HINT);
    let text = value.trim();
    let cpus: f64 = match text.strip_suffix('m') {
        Some(millis) => millis.parse::<f64>().map_err(|_| fail())? / 1000.0,
        None => text.parse().map_err(|_| fail())?,
    };
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1024.0 {
        return Err(fail());
    }
    let nano = (cpus * 1e9).round() as i64;
    if nano < 1_000_000 {
        return Err(fail());
    }
    Ok(nano)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases: &[(&str, Option<u64>)] = &[
            ("30s", Some(30_000)),
            ("10m", Some(600_000)),
            ("1h30m", Some(5_400_000)),
            ("1.5h", Some(5_400_000)),
            ("500ms", Some(500)),
            ("2d", Some(172_800_000)),
            ("0", Some(0)),
            ("1h0m5s", Some(3_605_000)),
            ("30", None),
            ("", None),
            ("s", None),
            ("5x", None),
            ("1h-5m", None),
            ("99999d", None),
        ];
        for (text, want) in cases {
            let got = parse_duration(text).ok().map(|d| d.as_millis() as u64);
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn durations_round_trip() {
        for text in ["1h30m", "45s", "250ms", "2d3h", "0s"] {
            let parsed = parse_duration(text).expect("valid");
            assert_eq!(format_duration(parsed), text);
        }
    }

    #[test]
    fn memory() {
        let mi = 1024 * 1024;
        let cases: &[(&str, Option<u64>)] = &[
            ("512Mi", Some(512 * mi)),
            ("1Gi", Some(1024 * mi)),
            ("1G", Some(1_000_000_000)),
            ("512m", Some(512 * mi)),
            ("512M", Some(512_000_000)),
            ("1.5g", Some(1536 * mi)),
            ("256MB", Some(256 * mi)),
            ("104857600", Some(100 * mi)),
            ("1Mi", None),
            ("lots", None),
            ("-5Gi", None),
            ("5Qi", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_memory(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn cpus() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1", Some(1_000_000_000)),
            ("1.5", Some(1_500_000_000)),
            ("500m", Some(500_000_000)),
            ("0.25", Some(250_000_000)),
            ("0", None),
            ("-1", None),
            ("two", None),
            ("0.0000001", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_cpus(text).ok(), *want, "{text:?}");
        }
    }

    #[test]
    fn errors_say_what_is_accepted() {
        let message = parse_memory("lots").expect_err("invalid").to_string();
        assert!(
            message.contains("\"lots\"") && message.contains("512Mi"),
            "{message}"
        );
    }
}
