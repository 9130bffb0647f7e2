//! The commands of recovery: `ferry rollback ENV`, `ferry alarm NAME`, `ferry resolve
//! ENV`. They go through the same rollback orchestrator as automatic rollbacks.

use crate::commands::Local;
use crate::context::{Project, SystemClock, user};
use crate::error::{CliError, CliResult};
use crate::output::{json, line};
use crate::progress::Progress;
use ferry_api::exit;
use ferry_core::alarm::AlarmState;
use ferry_core::events::{Event, EventKind};
use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
use ferry_core::{Change, DeploymentRecord, DeploymentStatus, short_sha};
use ferry_engine::Engine;
use ferry_engine::ports::{Clock, Store};
use std::sync::atomic::AtomicBool;

/// The deployment an environment runs now: its newest one that was not rolled back.
pub fn current_deployment(store: &dyn Store, env: &str) -> CliResult<Option<DeploymentRecord>> {
    Ok(store.current_deployment(env)?)
}

pub fn known_environment(p: &ferry_config::Pipeline, env: &str) -> CliResult<()> {
    if p.environment(env).is_none() {
        let names: Vec<&str> = p.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(CliError::not_found(format!(
            "no environment `{env}` in the pipeline; it has: {}",
            names.join(", ")
        )));
    }
    Ok(())
}

pub fn rollback(
    project: &Project,
    env: &str,
    to: Option<&str>,
    reason: Option<&str>,
    accept_data_loss: bool,
    as_json: bool,
    cancel: &'static AtomicBool,
) -> CliResult<i32> {
    let (pipeline, text) = project.load()?;
    known_environment(&pipeline, env)?;
    let store = project.open_store()?;
    let source = ferry_local::GitSource::open(&project.root)?;
    // With FERRY_DEPLOYMENTS_TABLE: the environment as the AWS runtime recorded it.
    let shared = crate::step::Shared::open(project)?;
    if let Some(split) = shared.over(&store) {
        let progress = Progress::new(as_json);
        let observer = KeepEvents {
            inner: progress.as_ref(),
            events: std::sync::Mutex::new(Vec::new()),
        };
        let local = Local::new(project, cancel);
        let artifacts = crate::step::StepArtifacts::reading(project, &shared)?;
        let deployers = crate::step::LocalArtifacts {
            inner: &local.factory,
            artifacts: &artifacts,
        };
        let mut engine = local.engine(
            project, &pipeline, &text, &split, &source, &observer, cancel,
        );
        engine.ports.artifacts = &artifacts;
        engine.ports.deployers = &deployers;
        let done = roll_back_env(&engine, env, to, reason, &user(None), accept_data_loss);
        progress.finish();
        // What was recorded goes out, also when the rollback stopped on an error.
        let events = observer
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        shared.publish(&events);
        let rec = done.map_err(|e| shared.explain(e))?;
        report(&rec, as_json);
        return Ok(rollback_exit(&rec));
    }
    crate::commands::reconcile(project, &pipeline, &text, &store, true)?;
    let progress = Progress::new(as_json);
    let local = Local::new(project, cancel);
    let engine = local.engine(
        project,
        &pipeline,
        &text,
        &store,
        &source,
        progress.as_ref(),
        cancel,
    );
    let rec = roll_back_env(&engine, env, to, reason, &user(None), accept_data_loss)?;
    progress.finish();
    report(&rec, as_json);
    Ok(rollback_exit(&rec))
}

/// Passes everything on to `inner` and keeps the events of the rollback batches it sees
/// (`rollback_initiated` … `rollback_succeeded` or `_failed`, `incident_opened`): what
/// `ferry rollback` on the table publishes to the stack's topics afterwards, as the
/// rollback Lambda does for its own.
struct KeepEvents<'a> {
    inner: &'a dyn ferry_engine::ports::Observer,
    events: std::sync::Mutex<Vec<Event>>,
}

impl ferry_engine::ports::Observer for KeepEvents<'_> {
    fn changed(&self, run: &ferry_core::run::RunView, changes: &[Change]) {
        self.inner.changed(run, changes);
    }
    fn note(&self, run: &ferry_core::run::RunView, message: &str) {
        self.inner.note(run, message);
    }
    fn notice(&self, message: &str) {
        self.inner.notice(message);
    }
    fn rolled(&self, changes: &[Change]) {
        self.inner.rolled(changes);
        if let Ok(mut kept) = self.events.lock() {
            kept.extend(changes.iter().filter_map(|c| match c {
                Change::Event(e) => Some(e.clone()),
                _ => None,
            }));
        }
    }
}

/// `ferry rollback`'s exit code for a rollback's outcome.
pub(crate) fn rollback_exit(rec: &RollbackRecord) -> i32 {
    match rec.status {
        RollbackStatus::Succeeded | RollbackStatus::NothingToDo => exit::OK,
        _ => exit::RUN_FAILED,
    }
}

/// Rolls `env` back through the orchestrator (to its last known good version, or to
/// `to`): `ferry rollback` and `POST /api/environments/{env}/rollback`. A rollback that
/// would take back a rollback-unsafe deployment is refused (conflict) unless
/// `accept_data_loss` (`--accept-data-loss`, `"acceptDataLoss": true`).
pub fn roll_back_env(
    engine: &Engine<'_>,
    env: &str,
    to: Option<&str>,
    reason: Option<&str>,
    by: &str,
    accept_data_loss: bool,
) -> CliResult<RollbackRecord> {
    known_environment(engine.pipeline, env)?;
    let Some(bad) = current_deployment(engine.ports.store, env)? else {
        return Err(CliError::not_found(format!(
            "nothing was ever deployed to {env}, so there is nothing to roll back"
        )));
    };
    let reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| format!("manual rollback by {by}"));
    Ok(engine.roll_back(
        &bad,
        &reason,
        Trigger::Manual {
            by: by.to_string(),
            accept_data_loss,
        },
        to,
        None,
    )?)
}

pub(crate) fn report(rec: &RollbackRecord, as_json: bool) {
    if as_json {
        json(rec);
        return;
    }
    let level = rec
        .level
        .map(|l| format!(" ({l} level)"))
        .unwrap_or_default();
    match rec.status {
        RollbackStatus::Succeeded => line(format!(
            "rolled back {} from {} to {}{level}",
            rec.environment,
            short_sha(&rec.from_version),
            rec.to_version.as_deref().map(short_sha).unwrap_or("-")
        )),
        RollbackStatus::NothingToDo => line(format!(
            "nothing to roll back in {}: {}",
            rec.environment,
            rec.detail.join("; ")
        )),
        RollbackStatus::InProgress => line(format!(
            "the rollback of {} is in progress ({})",
            rec.environment, rec.holder
        )),
        RollbackStatus::NotPerformed => {
            line(format!(
                "{} was not rolled back (a person decides):",
                rec.environment
            ));
            for d in &rec.detail {
                line(format!("  {d}"));
            }
            if let Some(i) = rec.incident {
                line(format!(
                    "incident #{i} is open and {} is frozen: `ferry resolve {}` and `ferry unfreeze {}` once decided",
                    rec.environment, rec.environment, rec.environment
                ));
            }
        }
        RollbackStatus::Failed => {
            line(format!("the rollback of {} failed:", rec.environment));
            for d in &rec.detail {
                line(format!("  {d}"));
            }
            if let Some(i) = rec.incident {
                line(format!(
                    "incident #{i} is open: {} takes no automatic deployment until `ferry resolve {}`",
                    rec.environment, rec.environment
                ));
            }
        }
    }
}

/// An alarm state pushed from outside, as recorded.
#[derive(Debug, Clone)]
pub struct PushedAlarm {
    /// The pipeline defines the alarm.
    pub known: bool,
    /// The recorded event's message.
    pub message: String,
    /// The environments the alarm is tied to.
    pub environments: Vec<String>,
}

/// What a pushed ALARM does to one environment it is tied to.
#[derive(Debug, Clone)]
pub enum AlarmAction {
    /// Roll this deployment back: it is in its environment's watch period.
    RollBack(Box<DeploymentRecord>),
    /// Nothing (the reason says why).
    Record(&'static str),
}

/// Records a pushed alarm state and its `alarm_state_changed` event (`extra` is merged
/// into the event's data): `ferry alarm` and `POST /hooks/alarms`.
pub fn record_pushed_alarm(
    pipeline: &ferry_config::Pipeline,
    store: &dyn Store,
    name: &str,
    state: AlarmState,
    reason: &str,
    now: ferry_core::Timestamp,
    extra: serde_json::Value,
) -> CliResult<PushedAlarm> {
    let environments: Vec<String> = pipeline
        .environments
        .iter()
        .filter(|e| pipeline.alarms_for(&e.name).iter().any(|a| a.name == name))
        .map(|e| e.name.clone())
        .collect();
    let known = pipeline.alarm(name).is_some();
    let message = if known {
        format!("alarm {name} is {state} (pushed): {reason}")
    } else {
        format!("unknown alarm {name} pushed {state} (recorded, ignored): {reason}")
    };
    let mut data = serde_json::json!({"alarm": name, "state": state, "reason": reason, "pushed": true, "known": known});
    if let (Some(d), serde_json::Value::Object(more)) = (data.as_object_mut(), extra) {
        for (k, v) in more {
            d.entry(k).or_insert(v);
        }
    }
    store.record_alarm(&[
        Change::AlarmState {
            alarm: name.to_string(),
            state,
            reason: reason.to_string(),
            at: now,
        },
        Change::Event(Event {
            at: now,
            kind: EventKind::AlarmStateChanged,
            run: None,
            environment: environments.first().cloned(),
            message: message.clone(),
            data,
        }),
    ])?;
    Ok(PushedAlarm {
        known,
        message,
        environments,
    })
}

/// What an alarm pushed in `state` does to each environment it is tied to: an ALARM
/// rolls back a deployment still in its environment's `watch` period, unless
/// `rollback.automatic` is off or the alarm is advisory. Other states do nothing.
pub fn alarm_actions(
    pipeline: &ferry_config::Pipeline,
    store: &dyn Store,
    name: &str,
    state: AlarmState,
    environments: &[String],
    now: ferry_core::Timestamp,
) -> CliResult<Vec<(String, AlarmAction)>> {
    let mut out = Vec::new();
    if state != AlarmState::Alarm {
        return Ok(out);
    }
    let alarm = pipeline.alarm(name);
    for env in environments {
        let watch = pipeline
            .environment(env)
            .and_then(|e| e.watch)
            .unwrap_or_default();
        let Some(d) = current_deployment(store, env)? else {
            continue;
        };
        let in_watch = d.status == DeploymentStatus::Succeeded
            && d.end_time.is_some_and(|end| {
                now.millis() <= end + i64::try_from(watch.as_millis()).unwrap_or(i64::MAX)
            });
        let action = if d.status == DeploymentStatus::InProgress {
            AlarmAction::Record("seen by the running deployment's monitor")
        } else if !in_watch {
            AlarmAction::Record("recorded only: outside the watch period")
        } else if !pipeline.rollback.automatic {
            AlarmAction::Record("recorded only: `rollback.automatic` is false")
        } else if alarm.is_some_and(|a| a.advisory) {
            AlarmAction::Record("recorded only: the alarm is advisory")
        } else {
            AlarmAction::RollBack(Box::new(d))
        };
        out.push((env.clone(), action));
    }
    Ok(out)
}

/// Rolls back a deployment because alarm `name` went into ALARM.
pub fn alarm_rollback(
    engine: &Engine<'_>,
    deployment: &DeploymentRecord,
    name: &str,
    reason: &str,
) -> CliResult<RollbackRecord> {
    Ok(engine.roll_back(
        deployment,
        &format!("alarm {name} in ALARM: {reason}"),
        Trigger::Alarm {
            name: name.to_string(),
        },
        None,
        None,
    )?)
}

/// `ferry alarm NAME --state STATE --reason …`: an alarm state pushed from outside.
/// An ALARM for an environment whose deployment is still in its watch period rolls that
/// deployment back; otherwise the change is recorded and notified only.
pub fn alarm(
    project: &Project,
    name: &str,
    state: &str,
    reason: &str,
    as_json: bool,
    cancel: &'static AtomicBool,
) -> CliResult<i32> {
    let Some(state) = AlarmState::parse(&state.to_ascii_uppercase()) else {
        return Err(CliError::new(
            exit::USAGE,
            format!("`{state}` is not an alarm state; write OK, ALARM or INSUFFICIENT_DATA"),
        ));
    };
    let (pipeline, text) = project.load()?;
    let store = project.open_store()?;
    let now = SystemClock.now();
    let pushed = record_pushed_alarm(
        &pipeline,
        &store,
        name,
        state,
        reason,
        now,
        serde_json::Value::Null,
    )?;
    if !pushed.known {
        crate::elog!(
            Warn,
            "warning: no alarm `{name}` in the pipeline; the state was recorded and nothing else happens"
        );
    }
    let actions = alarm_actions(&pipeline, &store, name, state, &pushed.environments, now)?;
    let mut outcomes = Vec::new();
    if state == AlarmState::Alarm {
        let source = ferry_local::GitSource::open(&project.root)?;
        let progress = Progress::new(as_json);
        let local = Local::new(project, cancel);
        let engine = local.engine(
            project,
            &pipeline,
            &text,
            &store,
            &source,
            progress.as_ref(),
            cancel,
        );
        for (env, action) in &actions {
            match action {
                AlarmAction::Record(why) => {
                    outcomes.push(serde_json::json!({"environment": env, "action": why}));
                }
                AlarmAction::RollBack(d) => {
                    let rec = alarm_rollback(&engine, d, name, reason)?;
                    if !as_json {
                        report(&rec, false);
                    }
                    outcomes.push(
                        serde_json::json!({"environment": env, "action": "rollback", "rollback": rec}),
                    );
                }
            }
        }
        progress.finish();
    }
    if as_json {
        json(
            &serde_json::json!({"alarm": name, "state": state, "known": pushed.known, "environments": outcomes}),
        );
    } else {
        line(pushed.message);
        for o in &outcomes {
            if o["action"] != "rollback" {
                line(format!(
                    "  {}: {}",
                    o["environment"].as_str().unwrap_or(""),
                    o["action"].as_str().unwrap_or("")
                ));
            }
        }
    }
    // A rollback this alarm triggered that failed (an incident) is a failure.
    let failed = outcomes
        .iter()
        .any(|o| o["rollback"]["status"].as_str() == Some("failed"));
    Ok(if failed { exit::RUN_FAILED } else { exit::OK })
}

/// `ferry resolve ENV`: a person has fixed the environment; automatic deployments may
/// go there again.
pub fn resolve(project: &Project, env: &str, by: Option<&str>, as_json: bool) -> CliResult<i32> {
    let pipeline = project.pipeline()?;
    known_environment(&pipeline, env)?;
    // The DynamoDB ledger when FERRY_DEPLOYMENTS_TABLE is set (where the rollback
    // Lambda and `ferry step` record incidents), else the project's store.
    let shared = crate::step::Shared::open(project)?;
    let who = user(by);
    let at = SystemClock.now();
    let incident = shared
        .ledger()
        .resolve(env, &who, at)
        .map_err(|e| shared.explain(e))?;
    // On the table: announced on the stack's rollbacks topic too (when set).
    shared.publish(&[incident.resolved_event(at)]);
    if as_json {
        json(&incident);
    } else {
        line(format!(
            "incident #{} on {env} resolved by {who}; automatic deployments may go there again",
            incident.id
        ));
    }
    Ok(exit::OK)
}
