//! Deployment windows of an environment: when deploying there is allowed, as weekly
//! ranges of local time in a named IANA time zone (seed §13.1's open question on
//! deployment policies). This file holds the model and the pure parsers of the range
//! texts; `validate/windows.rs` reads them from the YAML tree with positions, and
//! `ferry_core::window` decides open or closed at an instant.

use serde::Serialize;

/// Minutes in a week: a [`WeekTime`] is a minute of the week, Monday 00:00 being 0.
pub const WEEK_MINUTES: u32 = 7 * 24 * 60;

/// Day names as written in ranges, Monday first.
pub const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// `windows:` of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Windows {
    /// The IANA time zone the ranges are read in (`Europe/Berlin`); `UTC` by default.
    /// Local time follows the zone's daylight saving rules.
    pub timezone: String,
    /// When not empty, deployments start only inside one of these ranges.
    pub allow: Vec<WeekRange>,
    /// Deployments never start inside these ranges; they win over `allow`.
    pub deny: Vec<WeekRange>,
}

impl Default for Windows {
    fn default() -> Self {
        Windows {
            timezone: "UTC".to_string(),
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// A minute of the week in local time: `day * 1440 + hour * 60 + minute`, Monday = 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct WeekTime(pub u32);

impl WeekTime {
    /// Day of the week, Monday = 0.
    pub fn day(self) -> u32 {
        self.0 / 1440
    }
    /// Minute of the day.
    pub fn minute_of_day(self) -> u32 {
        self.0 % 1440
    }
}

impl std::fmt::Display for WeekTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let day = DAY_NAMES[(self.day() % 7) as usize];
        let m = self.minute_of_day();
        write!(f, "{day} {:02}:{:02}", m / 60, m % 60)
    }
}

/// A half-open range of local week time `[from, to)`. When `to` is not after `from` the
/// range wraps over the end of the week (`Fri 15:00` to `Mon 08:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeekRange {
    pub from: WeekTime,
    pub to: WeekTime,
    /// The text it was written as, for messages (`Mon-Fri 08:00-18:00`).
    pub label: String,
}

impl WeekRange {
    /// Whether a minute-of-week (with fractions: seconds count) lies inside.
    pub fn contains(&self, week_seconds: u32) -> bool {
        let (a, b) = (self.from.0 * 60, self.to.0 * 60);
        if a < b {
            a <= week_seconds && week_seconds < b
        } else {
            week_seconds >= a || week_seconds < b
        }
    }
}

impl Windows {
    /// Whether the rules allow a deployment at a local second of the week.
    pub fn open_at(&self, week_seconds: u32) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.contains(week_seconds)))
            && !self.deny.iter().any(|r| r.contains(week_seconds))
    }

    /// Whether some minute of the week is open (ignoring daylight saving shifts).
    pub fn ever_open(&self) -> bool {
        (0..WEEK_MINUTES).any(|m| self.open_at(m * 60))
    }
}

/// A day name (`Mon`, `monday`, `TUE` …) as a day index, Monday = 0.
pub fn parse_day(text: &str) -> Option<u32> {
    let lower = text.trim().to_ascii_lowercase();
    const FULL: [&str; 7] = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    FULL.iter()
        .position(|full| lower.len() >= 3 && full.starts_with(&lower))
        .and_then(|i| u32::try_from(i).ok())
}

/// `HH:MM` (24-hour) as minutes of the day; `24:00` is allowed only where `end` is set.
pub fn parse_clock(text: &str, end: bool) -> Result<u32, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not a time of day");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m >= 60 || h > 24 || (h == 24 && (m != 0 || !end)) {
        return Err(format!("`{t}` is not a time of day (00:00 to 23:59)"));
    }
    Ok(h * 60 + m)
}

/// `Fri 15:00`: a day and a time as a [`WeekTime`].
pub fn parse_week_time(text: &str, end: bool) -> Result<WeekTime, String> {
    let t = text.trim();
    let mut parts = t.split_whitespace();
    let (Some(day), Some(clock), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{t}` is not a day and a time"));
    };
    let d = parse_day(day).ok_or_else(|| format!("`{day}` is not a day of the week"))?;
    let m = parse_clock(clock, end)?;
    Ok(WeekTime((d * 1440 + m) % WEEK_MINUTES))
}

/// One weekly range from `from` to `to` (`Fri 15:00` → `Mon 08:00`).
pub fn parse_span(from: &str, to: &str) -> Result<WeekRange, String> {
    let a = parse_week_time(from, false)?;
    let b = parse_week_time(to, true)?;
    if a == b {
        return Err(format!(
            "the range from `{}` to `{}` is empty: it ends when it starts",
            from.trim(),
            to.trim()
        ));
    }
    Ok(WeekRange {
        from: a,
        to: b,
        label: format!("{} - {}", from.trim(), to.trim()),
    })
}

/// A range written as text: `Fri 15:00 - Mon 08:00` (one weekly range) or
/// `Mon-Fri 08:00-18:00` / `Sat,Sun 00:00-24:00` / `daily 22:00-06:00` (the same hours on
/// each of the days; an end not after the start runs over midnight).
pub fn parse_range(text: &str) -> Result<Vec<WeekRange>, String> {
    let t = text.trim();
    if let Some((from, to)) = t.split_once(" - ") {
        return parse_span(from, to).map(|r| vec![r]);
    }
    let mut parts = t.split_whitespace();
    let (Some(days), Some(hours), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("`{t}` is not a range"));
    };
    let days = parse_days(days)?;
    let (start, end) = hours
        .split_once('-')
        .ok_or_else(|| format!("`{hours}` is not a range of hours"))?;
    let start = parse_clock(start, false)?;
    let end = parse_clock(end, true)?;
    if start == end {
        return Err(format!("the range `{t}` is empty: it ends when it starts"));
    }
    Ok(days
        .into_iter()
        .map(|d| {
            let from = d * 1440 + start;
            let to = if end > start {
                d * 1440 + end
            } else {
                (d + 1) * 1440 + end
            };
            WeekRange {
                from: WeekTime(from % WEEK_MINUTES),
                to: WeekTime(to % WEEK_MINUTES),
                label: t.to_string(),
            }
        })
        .collect())
}

/// `Mon-Fri`, `Sat,Sun`, `Fri-Mon` (wraps), `Mon-Wed,Fri`, `daily`.
fn parse_days(text: &str) -> Result<Vec<u32>, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok((0..7).collect());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let day = |s: &str| parse_day(s).ok_or_else(|| format!("`{s}` is not a day of the week"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => {
                let d = day(part)?;
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_in_both_forms() {
        let r = parse_range("Fri 15:00 - Mon 08:00").expect("parses");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].from, WeekTime(4 * 1440 + 900));
        assert_eq!(r[0].to, WeekTime(480));
        let r = parse_range("Mon-Fri 08:00-18:00").expect("parses");
        assert_eq!(r.len(), 5);
        let r = parse_range("daily 22:00-06:00").expect("parses");
        assert_eq!(r.len(), 7);
        assert_eq!(r[6].to, WeekTime(360));
        let r = parse_range("Sat,Sun 00:00-24:00").expect("parses");
        assert_eq!(r[1].to, WeekTime(0));
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!(parse_range("Fri 15:00 - Fri 15:00").is_err());
        assert!(parse_range("Fry 15:00 - Mon 08:00").is_err());
        assert!(parse_range("Mon-Fri 8-18").is_err());
        assert!(parse_range("Mon-Fri 08:00-08:00").is_err());
        assert!(parse_range("Mon 25:00-26:00").is_err());
    }

    #[test]
    fn wrapping_ranges_contain_both_ends_of_the_week() {
        let r = &parse_range("Fri 15:00 - Mon 08:00").expect("parses")[0];
        assert!(r.contains((4 * 1440 + 900) * 60));
        assert!(r.contains(0));
        assert!(r.contains(479 * 60 + 59));
        assert!(!r.contains(480 * 60));
        assert!(!r.contains((4 * 1440 + 899) * 60));
    }
}
