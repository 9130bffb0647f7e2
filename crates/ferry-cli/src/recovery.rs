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
use ferry_engine::ports::{Clock, Store};
use std::sync::atomic::AtomicBool;

/// The deployment an environment runs now: its newest one that was not rolled back.
fn current_deployment(store: &dyn Store, env: &str) -> CliResult<Option<DeploymentRecord>> {
    Ok(store
        .deployments(Some(env), 10_000)?
        .into_iter()
        .find(|d| d.status != DeploymentStatus::RolledBack))
}

fn known_environment(p: &ferry_config::Pipeline, env: &str) -> CliResult<()> {
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
    as_json: bool,
    cancel: &'static AtomicBool,
) -> CliResult<i32> {
    let (pipeline, text) = project.load()?;
    known_environment(&pipeline, env)?;
    let store = project.open_store()?;
    let source = ferry_local::GitSource::open(&project.root)?;
    crate::commands::reconcile(project, &pipeline, &text, &store, true)?;
    let Some(bad) = current_deployment(&store, env)? else {
        return Err(CliError::not_found(format!(
            "nothing was ever deployed to {env}, so there is nothing to roll back"
        )));
    };
    let by = user(None);
    let reason = reason
        .map(str::to_string)
        .unwrap_or_else(|| format!("manual rollback by {by}"));
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
    let rec = engine.roll_back(&bad, &reason, Trigger::Manual { by }, to, None)?;
    progress.finish();
    report(&rec, as_json);
    Ok(match rec.status {
        RollbackStatus::Succeeded | RollbackStatus::NothingToDo => exit::OK,
        _ => exit::RUN_FAILED,
    })
}

fn report(rec: &RollbackRecord, as_json: bool) {
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
    let alarm = pipeline.alarm(name);
    let envs: Vec<String> = pipeline
        .environments
        .iter()
        .filter(|e| pipeline.alarms_for(&e.name).iter().any(|a| a.name == name))
        .map(|e| e.name.clone())
        .collect();
    let known = alarm.is_some();
    let message = if known {
        format!("alarm {name} is {state} (pushed): {reason}")
    } else {
        format!("unknown alarm {name} pushed {state} (recorded, ignored): {reason}")
    };
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
            environment: envs.first().cloned(),
            message: message.clone(),
            data: serde_json::json!({"alarm": name, "state": state, "reason": reason, "pushed": true, "known": known}),
        }),
    ])?;
    if !known {
        eprintln!(
            "warning: no alarm `{name}` in the pipeline; the state was recorded and nothing else happens"
        );
    }
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
        for env in &envs {
            let watch = pipeline
                .environment(env)
                .and_then(|e| e.watch)
                .unwrap_or_default();
            let Some(d) = current_deployment(&store, env)? else {
                continue;
            };
            let in_watch = d.status == DeploymentStatus::Succeeded
                && d.end_time.is_some_and(|end| {
                    now.millis() <= end + i64::try_from(watch.as_millis()).unwrap_or(i64::MAX)
                });
            if d.status == DeploymentStatus::InProgress {
                outcomes.push(serde_json::json!({"environment": env, "action": "seen by the running deployment's monitor"}));
                continue;
            }
            if !in_watch {
                outcomes.push(serde_json::json!({"environment": env, "action": "recorded only: outside the watch period"}));
                continue;
            }
            if !pipeline.rollback.automatic {
                outcomes.push(serde_json::json!({"environment": env, "action": "recorded only: `rollback.automatic` is false"}));
                continue;
            }
            if alarm.is_some_and(|a| a.advisory) {
                outcomes.push(serde_json::json!({"environment": env, "action": "recorded only: the alarm is advisory"}));
                continue;
            }
            let rec = engine.roll_back(
                &d,
                &format!("alarm {name} in ALARM: {reason}"),
                Trigger::Alarm {
                    name: name.to_string(),
                },
                None,
                None,
            )?;
            if !as_json {
                report(&rec, false);
            }
            outcomes.push(
                serde_json::json!({"environment": env, "action": "rollback", "rollback": rec}),
            );
        }
        progress.finish();
    }
    if as_json {
        json(
            &serde_json::json!({"alarm": name, "state": state, "known": known, "environments": outcomes}),
        );
    } else {
        line(message);
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
    Ok(exit::OK)
}

/// `ferry resolve ENV`: a person has fixed the environment; automatic deployments may
/// go there again.
pub fn resolve(project: &Project, env: &str, by: Option<&str>, as_json: bool) -> CliResult<i32> {
    let pipeline = project.pipeline()?;
    known_environment(&pipeline, env)?;
    let store = project.open_store()?;
    let who = user(by);
    let incident = store.resolve(env, &who, SystemClock.now())?;
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
