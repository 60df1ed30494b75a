//! The stored log line parser: any line parses or is refused, and a parsed line is
//! stored (rendered) in a form that reads back as the same line.
#![no_main]

use chrono::Datelike;
use flotilla::controller::run::logs::LogLine;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &str| {
    let Some(parsed) = LogLine::parse(line) else {
        return;
    };
    let rendered = parsed.render();
    // RFC 3339 has four-digit years; an offset can carry a parsed instant just past them.
    if (0..=9999).contains(&parsed.at.year()) {
        assert_eq!(LogLine::parse(&rendered), Some(parsed), "{rendered:?}");
    }
});
