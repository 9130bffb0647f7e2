//! The alarms on the pipeline itself (seed §9.3), evaluated by the engine each time a run
//! ends and after each rollback: the core's rules (`ferry_core::pipeline_alarm`) over
//! the newest `run_failed` events and rollback records, with the state recorded in the
//! store like any alarm's (`ferry.failed_runs`, `ferry.rollbacks`). A crossing into
//! ALARM appends a `pipeline_alarm` event in the same transaction as the new state.

use crate::driver::Engine;
use crate::ports::{EventFilter, PortResult, Store};
use ferry_core::pipeline_alarm::{FAILED_RUNS, ROLLBACKS, RULES, Rule};
use ferry_core::{Change, EventKind, Timestamp};

/// The times the rule counts, newest first, as many as it needs to decide.
pub fn counted_times(store: &dyn Store, rule: &Rule) -> PortResult<Vec<Timestamp>> {
    if *rule == FAILED_RUNS {
        Ok(store
            .events(&EventFilter {
                kind: Some(EventKind::RunFailed),
                newest_first: true,
                limit: Some(rule.needed()),
                ..EventFilter::default()
            })?
            .into_iter()
            .map(|(_, e)| e.at)
            .collect())
    } else if *rule == ROLLBACKS {
        Ok(store
            .rollbacks(rule.needed())?
            .into_iter()
            .map(|r| r.started_at)
            .collect())
    } else {
        Ok(Vec::new())
    }
}

/// Evaluates every rule at `now`; records and returns what changed.
pub fn evaluate(store: &dyn Store, now: Timestamp) -> PortResult<Vec<Change>> {
    let mut all = Vec::new();
    for rule in RULES {
        let times = counted_times(store, rule)?;
        let before = store.alarm_state(rule.name)?.map(|(s, _, _)| s);
        let changes = rule.evaluate(&times, now, before);
        if !changes.is_empty() {
            store.record_alarm(&changes)?;
            all.extend(changes);
        }
    }
    Ok(all)
}

impl Engine<'_> {
    /// Evaluates the pipeline alarms now and tells the observer about a crossing. A store
    /// error is told too and otherwise ignored: an alarm about the pipeline must not fail
    /// the run or the rollback it follows.
    pub fn check_pipeline_alarms(&self) {
        match evaluate(self.ports.store, self.ports.clock.now()) {
            Ok(changes) => {
                for c in &changes {
                    if let Change::Event(e) = c {
                        self.ports.observer.notice(&e.message);
                    }
                }
            }
            Err(e) => self
                .ports
                .observer
                .notice(&format!("could not evaluate the pipeline alarms: {e}")),
        }
    }
}
