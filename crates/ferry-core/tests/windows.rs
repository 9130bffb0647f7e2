//! Properties of the deployment window gate (`ferry_core::window`) over random rules,
//! zones with daylight saving time (Berlin, New York, Lord Howe's half hour, Sydney in
//! the south) and freezes: the instant it says the gate opens is open, every instant
//! before it is closed, and an instant inside a deny range is never open.

use ferry_config::{WeekRange, WeekTime, Windows};
use ferry_core::Timestamp;
use ferry_core::window::{Freeze, Gate, gate, open_at, opens_at};
use proptest::prelude::*;

const ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "Asia/Kolkata",
];
const WEEK: u32 = 7 * 1440;
/// 2024-01-01T00:00:00Z and 2031-01-01T00:00:00Z.
const FROM: i64 = 1_704_067_200_000;
const TO: i64 = 1_924_992_000_000;
const DAY: i64 = 86_400_000;

fn range() -> impl Strategy<Value = WeekRange> {
    (0..WEEK, 1..WEEK).prop_map(|(from, len)| WeekRange {
        from: WeekTime(from),
        to: WeekTime((from + len) % WEEK),
        label: format!("{from}+{len}"),
    })
}

fn windows() -> impl Strategy<Value = Windows> {
    (
        0..ZONES.len(),
        prop::collection::vec(range(), 0..3),
        prop::collection::vec(range(), 0..4),
    )
        .prop_map(|(z, allow, deny)| Windows {
            timezone: ZONES[z].to_string(),
            allow,
            deny,
        })
}

fn freezes(now: i64) -> impl Strategy<Value = Vec<Freeze>> {
    prop::collection::vec(
        (-2 * DAY..2 * DAY, 1..6 * DAY, prop::option::of(0..3 * DAY)),
        0..3,
    )
    .prop_map(move |fs| {
        fs.into_iter()
            .enumerate()
            .map(|(i, (start, len, lifted))| Freeze {
                id: i64::try_from(i).unwrap_or(0) + 1,
                environment: "production".into(),
                from: Timestamp(now + start),
                until: Timestamp(now + start + len),
                reason: "r".into(),
                by: "alice".into(),
                lifted_at: lifted.map(|l| Timestamp(now + start + l)),
                lifted_by: lifted.map(|_| "bob".into()),
            })
            .collect()
    })
}

/// A world: rules, freezes around `now`, and `now` (on a minute, or anywhere).
fn world() -> impl Strategy<Value = (Windows, Vec<Freeze>, i64)> {
    (windows(), FROM..TO, any::<bool>()).prop_flat_map(|(w, now, on_minute)| {
        let now = if on_minute { now - now % 60_000 } else { now };
        (Just(w), freezes(now), Just(now))
    })
}

/// Seconds since local Monday 00:00, computed independently of the crate.
fn local_week_seconds(zone: &str, t: i64) -> u32 {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    let z = jiff::Timestamp::from_millisecond(t)
        .expect("in range")
        .to_zoned(tz);
    let day = u32::try_from(z.weekday().to_monday_zero_offset()).expect("day");
    let secs = |v: i8| u32::try_from(v).expect("non-negative");
    day * 86_400 + secs(z.hour()) * 3600 + secs(z.minute()) * 60 + secs(z.second())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_opening_is_open_and_everything_before_it_closed(
        (w, fs, now) in world(),
        samples in prop::collection::vec(0.0f64..1.0, 24),
    ) {
        let now_t = Timestamp(now);
        match opens_at(Some(&w), &fs, now_t) {
            Some(t) => {
                prop_assert!(t >= now_t);
                prop_assert!(open_at(Some(&w), &fs, t), "the opening {t:?} is closed");
                if t > now_t {
                    prop_assert!(!open_at(Some(&w), &fs, Timestamp(t.0 - 1)), "open just before {t:?}");
                }
                let span = (t.0 - now) as f64;
                for f in &samples {
                    let s = Timestamp(now + (span * f) as i64);
                    if s < t {
                        prop_assert!(!open_at(Some(&w), &fs, s), "open at {s:?}, before the opening {t:?}");
                    }
                }
            }
            None => {
                // Nothing opens within a week past the last freeze.
                for f in &samples {
                    let s = Timestamp(now + (7.0 * DAY as f64 * f) as i64);
                    prop_assert!(!open_at(Some(&w), &fs, s), "open at {s:?} but no opening was found");
                }
            }
        }
    }

    #[test]
    fn an_instant_inside_a_deny_range_or_a_freeze_is_never_open((w, fs, now) in world()) {
        let s = local_week_seconds(&w.timezone, now);
        let t = Timestamp(now);
        if w.deny.iter().any(|r| r.contains(s)) || fs.iter().any(|f| f.active_at(t)) {
            prop_assert!(!open_at(Some(&w), &fs, t));
            prop_assert!(!gate(Some(&w), &fs, &[], t).is_open());
        }
        if !w.allow.is_empty() && !w.allow.iter().any(|r| r.contains(s)) {
            prop_assert!(!open_at(Some(&w), &fs, t));
        }
    }

    #[test]
    fn the_gate_agrees_with_open_at_and_names_its_opening((w, fs, now) in world()) {
        let t = Timestamp(now);
        match gate(Some(&w), &fs, &[], t) {
            Gate::Open { override_by } => {
                prop_assert!(override_by.is_none());
                prop_assert!(open_at(Some(&w), &fs, t));
            }
            Gate::Closed { opens_at: at, .. } => {
                prop_assert!(!open_at(Some(&w), &fs, t));
                prop_assert_eq!(at, opens_at(Some(&w), &fs, t));
            }
        }
    }
}
