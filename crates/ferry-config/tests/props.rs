//! Property tests: durations round-trip, and no input makes the parser panic.

use std::time::Duration;

use ferry_config::{format_duration, parse, parse_duration};
use proptest::prelude::*;

const REFERENCE: &str = include_str!("fixtures/reference.yml");

proptest! {
    #[test]
    fn hours_minutes_seconds_round_trip(h in 0u64..10_000, m in 0u64..60, s in 0u64..60) {
        let text = format!("{h}h{m}m{s}s");
        prop_assert_eq!(parse_duration(&text), Ok(Duration::from_secs(h * 3600 + m * 60 + s)));
    }

    #[test]
    fn formatted_durations_parse_back(ms in 0u64..10_000_000_000_000) {
        let d = Duration::from_millis(ms);
        prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }

    #[test]
    fn duration_errors_say_what_is_accepted(s in "\\PC{0,12}") {
        if let Err(e) = parse_duration(&s) {
            prop_assert!(e.contains("`1h30m`"), "{}", e);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, "ferry.yml");
    }

    #[test]
    fn random_yamlish_text_never_panics(s in "[ a-z:\\-\\[\\]{},'\"#&*!|>\n\t0-9]{0,300}") {
        let _ = parse(&s, "ferry.yml");
    }

    /// Damaging the reference file anywhere gives diagnostics (or a pipeline), never a panic,
    /// and every diagnostic points inside the file.
    #[test]
    fn mutated_reference_never_panics(at in 0usize..REFERENCE.len(), cut in 0usize..40, insert in "[ a-z:\\-\\[\\]{}#\n]{0,6}") {
        let at = (0..=at).rev().find(|i| REFERENCE.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(REFERENCE.len());
        let end = (end..=REFERENCE.len()).find(|i| REFERENCE.is_char_boundary(*i)).unwrap_or(REFERENCE.len());
        let text = format!("{}{insert}{}", &REFERENCE[..at], &REFERENCE[end..]);
        if let Err(diags) = parse(&text, "ferry.yml") {
            prop_assert!(!diags.is_empty());
            let lines = text.lines().count().max(1) + 1;
            for d in &diags {
                prop_assert!(d.line >= 1 && d.line <= lines, "{} in\n{}", d, text);
                prop_assert!(d.column >= 1, "{}", d);
            }
        }
    }
}
