//! Names of the runs a schedule creates: `<schedule>-<slot>`, like a CronJob's jobs, so
//! the store's unique key makes a second run for the same slot impossible.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// The run name of a slot. Slots on whole minutes are numbered in minutes since the
/// epoch (CronJob's scheme); sub-minute interval slots in seconds.
pub fn slot_run_name(schedule: &str, slot: DateTime<Utc>) -> String {
    let seconds = slot.timestamp();
    let number = if seconds % 60 == 0 && slot.timestamp_subsec_millis() == 0 {
        (seconds / 60).to_string()
    } else {
        seconds.to_string()
    };
    let room = 63 - number.len() - 1;
    if schedule.len() <= room {
        return format!("{schedule}-{number}");
    }
    // Keep names of long schedules distinct after truncation.
    let digest = hex::encode(Sha256::digest(schedule.as_bytes()));
    let stem: String = schedule.chars().take(room - 7).collect();
    format!("{}-{}-{number}", stem.trim_end_matches('-'), &digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::validate::check_dns_label;

    #[test]
    fn names_are_labels_and_distinct() {
        let minute = DateTime::from_timestamp(1_765_000_020 * 60 / 60 * 60, 0).expect("valid");
        let name = slot_run_name("nightly-etl", minute);
        assert_eq!(name, format!("nightly-etl-{}", minute.timestamp() / 60));
        let second = DateTime::from_timestamp(1_765_000_015, 0).expect("valid");
        assert_eq!(slot_run_name("fast", second), "fast-1765000015");
        let long_a = "a".repeat(60);
        let long_b = format!("{}b", "a".repeat(59));
        let (a, b) = (
            slot_run_name(&long_a, minute),
            slot_run_name(&long_b, minute),
        );
        assert_ne!(a, b);
        for name in [&name, &a, &b] {
            assert!(check_dns_label(name).is_ok(), "{name}");
        }
    }
}
