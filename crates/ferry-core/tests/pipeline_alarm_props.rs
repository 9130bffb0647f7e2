//! Properties of the alarms on the pipeline itself (seed §9.3): evaluated after every
//! counted event, a rule records `pipeline_alarm` exactly once per crossing of its
//! threshold, never when the count is at or below it, and its state is the count's.

use ferry_core::alarm::AlarmState;
use ferry_core::pipeline_alarm::{FAILED_RUNS, ROLLBACKS, Rule};
use ferry_core::{Change, EventKind, Timestamp};
use proptest::prelude::*;

/// Gaps between consecutive events, in minutes (bursts and quiet hours).
fn gaps() -> impl Strategy<Value = Vec<i64>> {
    proptest::collection::vec(prop_oneof![0i64..5, 5i64..40, 40i64..200], 0..40)
}

fn brute_count(times: &[i64], now: i64, window: i64) -> usize {
    times
        .iter()
        .filter(|&&t| t > now - window && t <= now)
        .count()
}

fn check(rule: Rule, gaps: &[i64]) -> Result<(), TestCaseError> {
    let window = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
    let mut now = 1_800_000_000_000i64;
    let mut times: Vec<i64> = Vec::new();
    let mut state: Option<AlarmState> = None;
    let mut was_above = false;
    for g in gaps {
        now += g * 60_000;
        times.push(now);
        let stamps: Vec<Timestamp> = times.iter().copied().map(Timestamp).collect();
        // A store gives only the newest `needed()`; the decision must not change.
        let newest: Vec<Timestamp> = stamps.iter().rev().take(rule.needed()).copied().collect();
        let cs = rule.evaluate(&newest, Timestamp(now), state);
        let full = rule.evaluate(&stamps, Timestamp(now), state);
        let count = brute_count(&times, now, window);
        let above = count > rule.threshold;
        let fired = cs
            .iter()
            .filter(|c| matches!(c, Change::Event(e) if e.kind == EventKind::PipelineAlarm))
            .count();
        // With only the newest `needed()` the count may be capped, the state may not.
        let state_of = |cs: &[Change]| {
            cs.iter().find_map(|c| match c {
                Change::AlarmState { state, .. } => Some(*state),
                _ => None,
            })
        };
        prop_assert_eq!(state_of(&cs), state_of(&full));
        prop_assert_eq!(
            fired,
            usize::from(above && !was_above),
            "count {} at {}",
            count,
            now
        );
        if let Some(s) = state_of(&cs) {
            state = Some(s);
        }
        prop_assert_eq!(
            state,
            Some(if above {
                AlarmState::Alarm
            } else {
                AlarmState::Ok
            })
        );
        was_above = above;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn failed_runs_fire_once_per_crossing(g in gaps()) {
        check(FAILED_RUNS, &g)?;
    }

    #[test]
    fn rollbacks_fire_once_per_crossing(g in gaps()) {
        check(ROLLBACKS, &g)?;
    }

    #[test]
    fn count_is_the_sliding_window(ts in proptest::collection::vec(0i64..10_000_000, 0..30), now in 0i64..12_000_000) {
        let stamps: Vec<Timestamp> = ts.iter().copied().map(Timestamp).collect();
        prop_assert_eq!(FAILED_RUNS.count(&stamps, Timestamp(now)), brute_count(&ts, now, 3_600_000));
    }
}
