//! Durations, memory sizes and CPU counts: any text parses or is refused, and a
//! formatted duration reads back as itself.
#![no_main]

use flotilla::resource::quantity::{format_duration, parse_cpus, parse_duration, parse_memory};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(duration) = parse_duration(text) {
        let formatted = format_duration(duration);
        assert_eq!(parse_duration(&formatted), Ok(duration), "{formatted:?}");
    }
    let _ = parse_memory(text);
    let _ = parse_cpus(text);
});
