//! The watch period after success (`watch:` on an environment, CodeDeploy's "bake
//! time"): the environment's probe alarms keep being evaluated for that long after its
//! deployment succeeded, and an alarm going to ALARM still rolls that deployment back
//! (seed Property 4). Pushed alarms are handled where they arrive (`ferry alarm`).

use crate::driver::Engine;
use crate::ports::*;
use ferry_config::AlarmSource;
use ferry_core::alarm::{AlarmState, Evaluator, Rule};
use ferry_core::rollback::Trigger;
use ferry_core::run::RunView;
use ferry_core::{Change, DeploymentStatus, Event, EventKind, StageStatus, Timestamp};
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Watched<'p> {
    env: String,
    deployment_id: String,
    until: Timestamp,
    alarms: Vec<(&'p ferry_config::Alarm, Evaluator, Timestamp)>,
}

impl Engine<'_> {
    /// Watches every environment this run deployed successfully and that has a `watch`
    /// period with probe alarms, until those periods end (or the user cancels: the
    /// deployments stay). Returns the environments it rolled back.
    pub fn watch(&self, run: &RunView) -> PortResult<Vec<String>> {
        let clock = self.ports.clock;
        let mut watched: Vec<Watched<'_>> = Vec::new();
        for stage in run
            .stages
            .iter()
            .filter(|s| s.status == StageStatus::Succeeded)
        {
            let Some(env) = self.pipeline.environment(&stage.name) else {
                continue;
            };
            let Some(period) = env.watch.filter(|w| !w.is_zero()) else {
                continue;
            };
            let Some(d) = self
                .ports
                .store
                .deployments(Some(&env.name), 100)?
                .into_iter()
                .find(|d| d.run_id == run.id && d.status == DeploymentStatus::Succeeded)
            else {
                continue;
            };
            let alarms: Vec<_> = self
                .pipeline
                .alarms_for(&env.name)
                .into_iter()
                .filter(|a| !a.advisory && !matches!(a.source, AlarmSource::External))
                .map(|a| (a, Evaluator::new(Rule::from(a)), clock.now()))
                .collect();
            if alarms.is_empty() {
                continue;
            }
            let until = Timestamp(d.end_time.unwrap_or(d.start_time)).plus(period);
            watched.push(Watched {
                env: env.name.clone(),
                deployment_id: d.deployment_id.clone(),
                until,
                alarms,
            });
        }
        let mut rolled = Vec::new();
        if watched.is_empty() {
            return Ok(rolled);
        }
        for w in &watched {
            self.ports.observer.notice(&format!(
                "watching {} until {} (its `watch` period): an alarm there still rolls the deployment back; Ctrl-C stops watching and keeps it",
                w.env,
                ferry_core::events::iso8601(w.until)
            ));
        }
        while !watched.is_empty() && !self.cancel.load(Ordering::SeqCst) && !self.parking() {
            let now = clock.now();
            let mut fired: Option<(usize, String, String)> = None;
            'envs: for (i, w) in watched.iter_mut().enumerate() {
                for (a, eval, next) in w.alarms.iter_mut() {
                    if now < *next {
                        continue;
                    }
                    let (dp, detail) = self.ports.probe.sample(a);
                    *next = next.plus(a.period);
                    if let Some(state) = eval.push(dp) {
                        let (breaching, considered) = eval.counts();
                        let message = format!(
                            "alarm {} is {state} (watch period of {}): {detail}",
                            a.name, w.env
                        );
                        self.ports.store.record_alarm(&[
                            Change::AlarmState {
                                alarm: a.name.clone(),
                                state,
                                reason: detail.clone(),
                                at: now,
                            },
                            Change::Event(Event {
                                at: now,
                                kind: EventKind::AlarmStateChanged,
                                run: Some(run.id),
                                environment: Some(w.env.clone()),
                                message: message.clone(),
                                data: serde_json::json!({
                                    "alarm": a.name,
                                    "state": state,
                                    "reason": detail,
                                    "watch": true,
                                    "breachingDatapoints": breaching,
                                    "consideredDatapoints": considered,
                                    "datapointsToAlarm": a.datapoints_to_alarm,
                                    "evaluationPeriods": a.evaluation_periods,
                                }),
                            }),
                        ])?;
                        self.ports.observer.notice(&message);
                    }
                    if eval.state() == AlarmState::Alarm {
                        fired = Some((i, a.name.clone(), detail));
                        break 'envs;
                    }
                }
            }
            if let Some((i, alarm, detail)) = fired {
                let w = watched.remove(i);
                // Only while it is still what runs there: a newer deployment replaced it.
                let current = self
                    .ports
                    .store
                    .deployments(Some(&w.env), 100)?
                    .into_iter()
                    .find(|d| d.status != DeploymentStatus::RolledBack)
                    .filter(|d| d.deployment_id == w.deployment_id);
                if let Some(bad) = current.filter(|d| d.status == DeploymentStatus::Succeeded)
                    && self.pipeline.rollback.automatic
                {
                    let reason =
                        format!("alarm {alarm} in ALARM during the watch period: {detail}");
                    self.roll_back(&bad, &reason, Trigger::Alarm { name: alarm }, None, None)?;
                    rolled.push(w.env);
                }
                continue;
            }
            watched.retain(|w| now < w.until);
            let wake = watched
                .iter()
                .flat_map(|w| w.alarms.iter().map(|(_, _, n)| *n).chain([w.until]))
                .min()
                .unwrap_or(now);
            clock.sleep(
                wake.since(now)
                    .clamp(Duration::from_millis(1), Duration::from_millis(500)),
            );
        }
        Ok(rolled)
    }
}
