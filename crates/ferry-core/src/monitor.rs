//! A monitor window: the alarms of an environment watched for a while after a
//! deployment. Health monitoring is monotonic (DESIGN invariant 6, seed §7.3): once the
//! window has seen an alarm in ALARM it reports failure until the end, whatever the
//! alarms do afterwards.

use crate::alarm::{AlarmState, Datapoint, Evaluator, Rule};
use crate::time::Timestamp;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowState {
    Watching,
    Passed,
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Window {
    end: Timestamp,
    alarms: BTreeMap<String, Evaluator>,
    failure: Option<String>,
    /// Alarms that left INSUFFICIENT_DATA at least once during the window.
    had_data: std::collections::BTreeSet<String>,
}

impl Window {
    pub fn new<'a>(
        start: Timestamp,
        duration: Duration,
        alarms: impl IntoIterator<Item = (&'a str, Rule)>,
    ) -> Self {
        Window {
            end: start.plus(duration),
            alarms: alarms
                .into_iter()
                .map(|(n, r)| (n.to_string(), Evaluator::new(r)))
                .collect(),
            failure: None,
            had_data: Default::default(),
        }
    }

    /// Alarms that stayed INSUFFICIENT_DATA for the whole window so far: with the
    /// fail-closed policy they hold the promotion.
    pub fn never_had_data(&self) -> Vec<&str> {
        self.alarms
            .keys()
            .filter(|n| !self.had_data.contains(*n))
            .map(String::as_str)
            .collect()
    }

    /// `(breaching, considered)` datapoints in an alarm's evaluation window, for the
    /// record of why a decision was taken.
    pub fn counts(&self, alarm: &str) -> Option<(u32, u32)> {
        self.alarms.get(alarm).map(Evaluator::counts)
    }

    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// Feeds one datapoint of one alarm; returns the alarm's new state if it changed.
    /// `detail` says what was observed, for the failure reason.
    pub fn observe(&mut self, alarm: &str, dp: Datapoint, detail: &str) -> Option<AlarmState> {
        let e = self.alarms.get_mut(alarm)?;
        let changed = e.push(dp);
        self.note(alarm, detail);
        changed
    }

    /// Sets an alarm's state from outside (a pushed alarm event).
    pub fn force(&mut self, alarm: &str, state: AlarmState, detail: &str) -> Option<AlarmState> {
        let e = self.alarms.get_mut(alarm)?;
        let changed = e.force(state);
        self.note(alarm, detail);
        changed
    }

    fn note(&mut self, alarm: &str, detail: &str) {
        if let Some(e) = self.alarms.get(alarm)
            && e.state() != AlarmState::InsufficientData
        {
            self.had_data.insert(alarm.to_string());
        }
        if self.failure.is_some() {
            return;
        }
        if let Some(e) = self.alarms.get(alarm)
            && e.state() == AlarmState::Alarm
        {
            let (b, _) = e.counts();
            self.failure = Some(format!(
                "alarm `{alarm}` went to ALARM ({b} breaching datapoint(s) in its evaluation window; last: {detail})"
            ));
        }
    }

    pub fn states(&self) -> impl Iterator<Item = (&str, AlarmState)> {
        self.alarms.iter().map(|(n, e)| (n.as_str(), e.state()))
    }

    /// The window's verdict at `now`. Failed is final.
    pub fn state(&self, now: Timestamp) -> WindowState {
        match &self.failure {
            Some(f) => WindowState::Failed(f.clone()),
            None if now >= self.end => WindowState::Passed,
            None => WindowState::Watching,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_config::MissingData;
    use proptest::prelude::*;

    fn dp(b: u8) -> Datapoint {
        match b % 3 {
            0 => Datapoint::Breaching,
            1 => Datapoint::NotBreaching,
            _ => Datapoint::Missing,
        }
    }

    proptest! {
        /// Seed §7.3 Property 3 (health check monotonicity): once a window reports
        /// failure it never reports anything else, whatever comes next.
        #[test]
        fn a_failed_window_stays_failed(points in proptest::collection::vec((0u8..2, 0u8..3, any::<bool>()), 0..60),
                                        n in 1u32..5, m in 1u32..5) {
            let m = m.min(n);
            let r = Rule { evaluation_periods: n, datapoints_to_alarm: m, missing_data: MissingData::Missing };
            let mut w = Window::new(Timestamp(0), Duration::from_secs(1000), [("a", r), ("b", r)]);
            let mut failed = false;
            for (i, (alarm, b, forced)) in points.into_iter().enumerate() {
                let name = if alarm == 0 { "a" } else { "b" };
                if forced { w.force(name, if b == 0 { AlarmState::Ok } else { AlarmState::Alarm }, "pushed"); }
                else { w.observe(name, dp(b), "probe"); }
                let s = w.state(Timestamp(i as i64 * 10));
                if failed { prop_assert!(matches!(s, WindowState::Failed(_))); }
                failed = matches!(s, WindowState::Failed(_));
                // Property 4 in the window: any alarm in ALARM means the window failed.
                if w.states().any(|(_, st)| st == AlarmState::Alarm) { prop_assert!(failed); }
            }
            if failed { prop_assert!(matches!(w.state(Timestamp(5_000_000)), WindowState::Failed(_))); }
        }
    }

    #[test]
    fn quiet_window_passes_at_its_end() {
        let r = Rule {
            evaluation_periods: 3,
            datapoints_to_alarm: 2,
            missing_data: MissingData::Missing,
        };
        let mut w = Window::new(Timestamp(0), Duration::from_secs(20), [("h", r)]);
        w.observe("h", Datapoint::NotBreaching, "200");
        assert_eq!(w.state(Timestamp(19_999)), WindowState::Watching);
        assert_eq!(w.state(Timestamp(20_000)), WindowState::Passed);
    }
}
