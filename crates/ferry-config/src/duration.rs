//! Durations as written in `ferry.yml`: `500ms`, `30s`, `10m`, `24h`, `1h30m`, `1d`.

use std::time::Duration;

/// The accepted forms, appended to every parse error.
const FORMS: &str = "write a number followed by a unit (ms, s, m, h or d), like `500ms`, `30s`, `10m`, `24h`, `1h30m` or `1d`";

/// Units from largest to smallest, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a duration: one or more `<whole number><unit>` parts, units from largest to
/// smallest, each at most once (`1h30m`, `2m30s`, `1d`, `0s`).
///
/// # Errors
/// Says what is wrong and which forms are accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_reason(s).map_err(|reason| format!("invalid duration `{}`: {reason}; {FORMS}", s.trim()))
}

/// [`parse_duration`] without the list of accepted forms, for diagnostics that carry
/// their own help line.
pub(crate) fn parse_reason(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("it is empty".to_string());
    }
    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(match rest.chars().next() {
                Some('-') => "negative durations are not accepted".to_string(),
                _ => format!("expected a number at `{rest}`"),
            });
        }
        let (number, after) = rest.split_at(digits);
        if after.starts_with('.') || after.starts_with(',') {
            return Err(
                "fractions are not accepted; combine units instead, like `1h30m`".to_string(),
            );
        }
        let unit_len = after.len() - after.trim_start_matches(|c: char| c.is_alphabetic()).len();
        let (unit, next) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!("missing unit after `{number}`"));
        }
        let Some(rank) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("unknown unit `{unit}`"));
        };
        if let Some(last) = last_rank
            && rank <= last
        {
            return Err("units must go from largest to smallest, each once".to_string());
        }
        last_rank = Some(rank);
        let too_large = || "it is too large".to_string();
        let n: u64 = number.parse().map_err(|_| too_large())?;
        let ms = n.checked_mul(UNITS[rank].1).ok_or_else(too_large)?;
        total = total.checked_add(ms).ok_or_else(too_large)?;
        rest = next;
    }
    Ok(Duration::from_millis(total))
}

/// Writes a duration the way [`parse_duration`] reads it, largest units first
/// (`90s` → `1m30s`, zero → `0s`). Below a millisecond is dropped.
pub fn format_duration(d: Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in UNITS {
        let n = ms / len;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            ms -= n * len;
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        let cases = [
            ("500ms", 500),
            ("2s", 2_000),
            ("10m", 600_000),
            ("24h", 86_400_000),
            ("1h30m", 5_400_000),
            ("1d", 86_400_000),
            ("0s", 0),
            (" 2m30s ", 150_000),
            ("1d2h3m4s5ms", 93_784_005),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn explains_what_is_wrong() {
        let cases = [
            ("", "it is empty"),
            ("30", "missing unit after `30`"),
            ("10 minutes", "missing unit after `10`"),
            ("10min", "unknown unit `min`"),
            (
                "1.5h",
                "fractions are not accepted; combine units instead, like `1h30m`",
            ),
            ("-5s", "negative durations are not accepted"),
            ("30m1h", "units must go from largest to smallest, each once"),
            ("1m1m", "units must go from largest to smallest, each once"),
            ("1h h", "expected a number at ` h`"),
            ("99999999999999999999s", "it is too large"),
            ("999999999999999d", "it is too large"),
        ];
        for (text, reason) in cases {
            assert_eq!(parse_reason(text), Err(reason.to_string()), "{text}");
        }
        let full = parse_duration("10x").unwrap_err();
        assert!(full.starts_with(
            "invalid duration `10x`: unknown unit `x`; write a number followed by a unit"
        ));
        assert!(full.contains("`1h30m`"));
    }

    #[test]
    fn formats_largest_units_first() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(
            format_duration(Duration::from_millis(86_400_500)),
            "1d500ms"
        );
    }
}
