//! Alarms with CloudWatch semantics: one datapoint per period; ALARM when at least
//! `datapoints_to_alarm` of the last `evaluation_periods` datapoints breach; a rule for
//! missing data. Pure: datapoints come in, state changes come out.

use ferry_config::MissingData;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

macro_rules! alarm_states {
    ($($variant:ident => $text:literal),+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AlarmState { $(#[serde(rename = $text)] $variant),+ }
        impl AlarmState {
            pub fn as_str(self) -> &'static str { match self { $(AlarmState::$variant => $text),+ } }
            pub fn parse(s: &str) -> Option<AlarmState> { match s { $($text => Some(AlarmState::$variant),)+ _ => None } }
        }
        impl std::fmt::Display for AlarmState {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

alarm_states!(Ok => "OK", Alarm => "ALARM", InsufficientData => "INSUFFICIENT_DATA");

/// One period's observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Datapoint {
    Breaching,
    NotBreaching,
    Missing,
}

/// The evaluation rule of one alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub evaluation_periods: u32,
    pub datapoints_to_alarm: u32,
    pub missing_data: MissingData,
}

impl From<&ferry_config::Alarm> for Rule {
    fn from(a: &ferry_config::Alarm) -> Self {
        Rule {
            evaluation_periods: a.evaluation_periods.max(1),
            datapoints_to_alarm: a.datapoints_to_alarm.clamp(1, a.evaluation_periods.max(1)),
            missing_data: a.missing_data,
        }
    }
}

/// An alarm's rolling window and state. Starts in `INSUFFICIENT_DATA`, as CloudWatch's do.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluator {
    rule: Rule,
    window: VecDeque<Datapoint>,
    state: AlarmState,
}

impl Evaluator {
    pub fn new(rule: Rule) -> Self {
        Evaluator {
            rule,
            window: VecDeque::new(),
            state: AlarmState::InsufficientData,
        }
    }

    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// `(breaching, considered)` over the window, after the missing-data rule.
    pub fn counts(&self) -> (u32, u32) {
        let mut breaching = 0;
        let mut considered = 0;
        for dp in &self.window {
            let as_seen = match (dp, self.rule.missing_data) {
                (Datapoint::Missing, MissingData::Breaching) => Some(true),
                (Datapoint::Missing, MissingData::NotBreaching) => Some(false),
                (Datapoint::Missing, _) => None,
                (Datapoint::Breaching, _) => Some(true),
                (Datapoint::NotBreaching, _) => Some(false),
            };
            if let Some(b) = as_seen {
                considered += 1;
                breaching += u32::from(b);
            }
        }
        (breaching, considered)
    }

    /// Adds one period's datapoint; returns the new state when it changed.
    pub fn push(&mut self, dp: Datapoint) -> Option<AlarmState> {
        self.window.push_back(dp);
        while self.window.len() > self.rule.evaluation_periods as usize {
            self.window.pop_front();
        }
        if dp == Datapoint::Missing && self.rule.missing_data == MissingData::Ignore {
            // `ignore`: a missing datapoint changes nothing; the state is maintained.
            return None;
        }
        let (breaching, considered) = self.counts();
        let next = if breaching >= self.rule.datapoints_to_alarm {
            AlarmState::Alarm
        } else if considered == 0 {
            AlarmState::InsufficientData
        } else {
            AlarmState::Ok
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }

    /// Sets the state from outside (an alarm pushed by CloudWatch or Alertmanager).
    pub fn force(&mut self, state: AlarmState) -> Option<AlarmState> {
        (state != self.state).then(|| {
            self.state = state;
            state
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Datapoint::*;

    fn rule(n: u32, m: u32, missing: MissingData) -> Rule {
        Rule {
            evaluation_periods: n,
            datapoints_to_alarm: m,
            missing_data: missing,
        }
    }

    fn run(r: Rule, dps: &[Datapoint]) -> AlarmState {
        let mut e = Evaluator::new(r);
        for dp in dps {
            e.push(*dp);
        }
        e.state()
    }

    #[test]
    fn m_of_n() {
        let r = rule(3, 2, MissingData::Missing);
        assert_eq!(run(r, &[Breaching]), AlarmState::Ok);
        assert_eq!(
            run(r, &[Breaching, NotBreaching, Breaching]),
            AlarmState::Alarm
        );
        assert_eq!(
            run(r, &[Breaching, NotBreaching, NotBreaching, Breaching]),
            AlarmState::Ok
        );
    }

    #[test]
    fn missing_data_rules() {
        let dps = [Missing, Missing, Missing];
        assert_eq!(
            run(rule(3, 2, MissingData::Missing), &dps),
            AlarmState::InsufficientData
        );
        assert_eq!(
            run(rule(3, 2, MissingData::Breaching), &dps),
            AlarmState::Alarm
        );
        assert_eq!(
            run(rule(3, 2, MissingData::NotBreaching), &dps),
            AlarmState::Ok
        );
        assert_eq!(
            run(
                rule(3, 2, MissingData::Ignore),
                &[Breaching, Breaching, Missing, Missing, Missing]
            ),
            AlarmState::Alarm
        );
    }
}
