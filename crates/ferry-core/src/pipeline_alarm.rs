//! Alarms on the pipeline itself (seed §9.3): more than 3 failed runs in an hour, more
//! than 2 rollbacks in an hour. Built in, not configured.
//!
//! A rule counts the times of its events (runs that ended `failed`, rollbacks started)
//! in a sliding window ending now: an instant `t` counts when `now - window < t <= now`.
//! Above the threshold the alarm is in ALARM. It is evaluated each time such an event
//! happens; only the evaluation that moves it from OK to ALARM (a *crossing*) records a
//! `pipeline_alarm` event, so a sixth failure in the same hour notifies nobody again.
//! When the count falls back to the threshold or below, the alarm returns to OK
//! silently (its state is still recorded), ready to fire on the next crossing.

use crate::alarm::AlarmState;
use crate::changes::Change;
use crate::events::{Event, EventKind, iso8601};
use crate::time::Timestamp;
use std::time::Duration;

/// One built-in rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The alarm's name, as `ferry status`, `/metrics` (`alarm` label) and the event
    /// carry it. The `ferry.` prefix cannot be the name of a configured alarm.
    pub name: &'static str,
    /// What is counted, for people.
    pub counts: &'static str,
    /// ALARM when strictly more than this many fall in the window.
    pub threshold: usize,
    pub window: Duration,
}

/// More than 3 failed runs in an hour.
pub const FAILED_RUNS: Rule = Rule {
    name: "ferry.failed_runs",
    counts: "failed runs",
    threshold: 3,
    window: Duration::from_secs(3600),
};

/// More than 2 rollbacks in an hour.
pub const ROLLBACKS: Rule = Rule {
    name: "ferry.rollbacks",
    counts: "rollbacks",
    threshold: 2,
    window: Duration::from_secs(3600),
};

/// Both rules.
pub const RULES: &[Rule] = &[FAILED_RUNS, ROLLBACKS];

impl Rule {
    /// The earliest instant that no longer counts at `now` (the window is `(since, now]`).
    pub fn since(&self, now: Timestamp) -> Timestamp {
        Timestamp(
            now.0
                .saturating_sub(i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// How many of `times` fall in the window ending at `now`.
    pub fn count(&self, times: &[Timestamp], now: Timestamp) -> usize {
        let since = self.since(now);
        times
            .iter()
            .filter(|t| t.0 > since.0 && t.0 <= now.0)
            .count()
    }

    /// The state for a count.
    pub fn state(&self, count: usize) -> AlarmState {
        if count > self.threshold {
            AlarmState::Alarm
        } else {
            AlarmState::Ok
        }
    }

    /// How many of the newest events a store needs to return for `evaluate` to decide:
    /// one more than the threshold.
    pub fn needed(&self) -> usize {
        self.threshold + 1
    }

    /// Evaluates the rule at `now` over the event times (any order; times outside the
    /// window are ignored) given the state recorded before (`None`: never evaluated).
    /// Returns what to record: nothing when the state did not change; the new state
    /// and, on a crossing into ALARM, the `pipeline_alarm` event.
    pub fn evaluate(
        &self,
        times: &[Timestamp],
        now: Timestamp,
        before: Option<AlarmState>,
    ) -> Vec<Change> {
        let count = self.count(times, now);
        let state = self.state(count);
        let was = before.unwrap_or(AlarmState::Ok);
        if state == was && before.is_some() {
            return Vec::new();
        }
        let minutes = self.window.as_secs() / 60;
        let reason = format!(
            "{count} {} in the last {minutes} minutes (threshold: more than {})",
            self.counts, self.threshold
        );
        let mut changes = vec![Change::AlarmState {
            alarm: self.name.to_string(),
            state,
            reason: reason.clone(),
            at: now,
        }];
        if state == AlarmState::Alarm && was != AlarmState::Alarm {
            changes.push(Change::Event(self.event(count, now, &reason)));
        }
        changes
    }

    /// The `pipeline_alarm` event of a crossing.
    pub fn event(&self, count: usize, now: Timestamp, reason: &str) -> Event {
        Event {
            at: now,
            kind: EventKind::PipelineAlarm,
            run: None,
            environment: None,
            message: format!("pipeline alarm {}: {reason}", self.name),
            data: serde_json::json!({
                "event": "pipeline_alarm",
                "alarm": self.name,
                "rule": format!("more than {} {} in {} minutes", self.threshold, self.counts, self.window.as_secs() / 60),
                "count": count,
                "threshold": self.threshold,
                "windowSeconds": self.window.as_secs(),
                "state": "ALARM",
                "timestamp": iso8601(now),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn fires_on_the_fourth_failure_within_the_hour_once() {
        let mut times = Vec::new();
        let mut state = None;
        let mut fired = 0;
        for i in 0..6 {
            let now = Timestamp(i * 5 * MIN);
            times.push(now);
            let cs = FAILED_RUNS.evaluate(&times, now, state);
            for c in &cs {
                match c {
                    Change::AlarmState { state: s, .. } => state = Some(*s),
                    Change::Event(e) => {
                        assert_eq!(e.kind, EventKind::PipelineAlarm);
                        assert_eq!(e.data["count"], 4);
                        assert_eq!(i, 3);
                        fired += 1;
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(fired, 1);
    }

    #[test]
    fn the_window_is_half_open() {
        let now = Timestamp(10 * 3_600_000);
        let times = [
            Timestamp(now.0 - 3_600_000),
            Timestamp(now.0 - 3_599_999),
            now,
        ];
        assert_eq!(ROLLBACKS.count(&times, now), 2);
    }
}
