//! The alarms on the pipeline itself (seed §9.3) on the simulation: the fourth failed run
//! within an hour records one `pipeline_alarm` event; a fifth records none; an hour of
//! quiet brings the alarm back to OK and the next crossing fires again.
#![allow(clippy::unwrap_used)]

use ferry_core::alarm::AlarmState;
use ferry_core::pipeline_alarm::FAILED_RUNS;
use ferry_core::{EventKind, RunStatus};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, Store};
use ferry_testkit::pipelines::{SHOP, shop};
use ferry_testkit::{Outcome, Sim};
use std::time::Duration;

fn alarms(sim: &Sim) -> Vec<serde_json::Value> {
    sim.store
        .events(&EventFilter {
            kind: Some(EventKind::PipelineAlarm),
            ..EventFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.data)
        .collect()
}

#[test]
fn four_failed_runs_in_an_hour_raise_one_pipeline_alarm_per_crossing() {
    let sim = Sim::new(SHOP);
    sim.executor.script(shop::UNIT, Outcome::exit(1));
    for i in 0..5 {
        let view = sim.run(&format!("{:040x}", i + 1));
        assert_eq!(view.status, RunStatus::Failed);
        sim.clock.advance(Duration::from_secs(60));
        let fired = alarms(&sim);
        assert_eq!(fired.len(), usize::from(i >= 3), "after failure {}", i + 1);
    }
    let fired = alarms(&sim);
    assert_eq!(fired[0]["alarm"], FAILED_RUNS.name);
    assert_eq!(fired[0]["count"], 4);
    assert_eq!(fired[0]["windowSeconds"], 3600);
    assert_eq!(
        sim.store.alarm_state(FAILED_RUNS.name).unwrap().unwrap().0,
        AlarmState::Alarm
    );

    // An hour and more later one more failure counts alone: OK, nothing new.
    sim.clock.advance(Duration::from_secs(3700));
    let view = sim.run(&format!("{:040x}", 100));
    assert_eq!(view.status, RunStatus::Failed);
    assert_eq!(
        sim.store.alarm_state(FAILED_RUNS.name).unwrap().unwrap().0,
        AlarmState::Ok
    );
    assert_eq!(alarms(&sim).len(), 1);
    // Three more within the hour cross again: a second event.
    for i in 0..3 {
        sim.run(&format!("{:040x}", 200 + i));
    }
    assert_eq!(alarms(&sim).len(), 2);
}
