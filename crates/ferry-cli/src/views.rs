//! The read-only part of `ferry serve`'s JSON API beyond status, runs and events: a
//! run's stages and step logs (whole, or followed from an offset), environments with
//! their deployments, rollbacks and alarms, and the alarms with their states.
//!
//! Every handler reads the store on a blocking thread and answers JSON (a step log
//! answers its bytes as text). Unknown runs, steps, environments and alarms are 404s
//! that say what exists.

use crate::commands;
use crate::recovery;
use crate::serve::{ApiError, ApiResult, AppState, Params, blocking, number, params, run_id};
use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use ferry_core::{EventKind, RunId};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, Store};
use serde_json::{Value, json};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

/// At most this much of a log in one answer; `next_offset` says where to go on.
const LOG_CHUNK: u64 = 1024 * 1024;

/// `GET /api/runs/{id}/stages`: the run's stages with their steps and gate verdicts.
pub async fn stages(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = run_id(id)?;
    let view = blocking(move || Ok(state.store.load_run(RunId(id))?)).await?;
    Ok(Json(json!({"run": id, "status": view.status, "stages": view.stages})).into_response())
}

/// `GET /api/runs/{id}/logs[?step=NAME]`: every step's log (or one step's, stage's or
/// `stage/step`'s) and the run's decisions, as `ferry logs --json` prints them.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let id = run_id(id)?;
    let p = params(q)?;
    let step = p.get("step").cloned();
    let logs =
        blocking(move || Ok(commands::build_logs(&*state.store, id, step.as_deref())?)).await?;
    Ok(Json(logs).into_response())
}

/// `GET /api/runs/{id}/steps/{stage}/{step}/log[?offset=N]`: the step's log from byte
/// `offset` on, as text, at most 1 MiB at a time. Headers say where the next read starts
/// (`X-Ferry-Next-Offset`) and the step's status (`X-Ferry-Step-Status`): a client
/// follows a running step by asking again from the next offset until the status is
/// final.
pub async fn step_log(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    q: Params,
) -> ApiResult {
    let Path((id, stage, step)) =
        path.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    let id = id
        .parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not a run number")))?;
    let p = params(q)?;
    let offset = number::<u64>(&p, "offset")?.unwrap_or(0);
    let (status, bytes, next) = blocking(move || {
        let view = state.store.load_run(RunId(id))?;
        let Some(s) = view.stages.iter().find(|s| s.name == stage) else {
            let names: Vec<&str> = view.stages.iter().map(|s| s.name.as_str()).collect();
            return Err(ApiError::not_found(format!(
                "run {id} has no stage `{stage}`; its stages are: {}",
                names.join(", ")
            )));
        };
        let Some(t) = s.steps.iter().find(|t| t.name == step) else {
            let names: Vec<&str> = s.steps.iter().map(|t| t.name.as_str()).collect();
            return Err(ApiError::not_found(format!(
                "stage `{stage}` of run {id} has no step `{step}`; its steps are: {}",
                names.join(", ")
            )));
        };
        let (bytes, next) = match &t.log {
            Some(path) => read_from(path, offset)?,
            None => (Vec::new(), offset),
        };
        Ok((t.status.to_string(), bytes, next))
    })
    .await?;
    let mut res = (StatusCode::OK, bytes).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    for (name, value) in [
        ("x-ferry-next-offset", next.to_string()),
        ("x-ferry-step-status", status),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(res)
}

/// Up to `LOG_CHUNK` bytes of a log from `offset`, and the offset after them. A log not
/// written yet is empty.
fn read_from(path: &str, offset: u64) -> Result<(Vec<u8>, u64), ApiError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(ApiError::internal(&format!("log {path}: {e}"))),
    };
    let len = f
        .metadata()
        .map_err(|e| ApiError::internal(&format!("log {path}: {e}")))?
        .len();
    if offset > len {
        return Err(ApiError::bad_request(format!(
            "`offset` {offset} is past the end of the log ({len} bytes)"
        )));
    }
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| ApiError::internal(&format!("log {path}: {e}")))?;
    let mut buf = Vec::new();
    f.take(LOG_CHUNK)
        .read_to_end(&mut buf)
        .map_err(|e| ApiError::internal(&format!("log {path}: {e}")))?;
    let next = offset + buf.len() as u64;
    Ok((buf, next))
}

/// `GET /api/environments`: each environment as `ferry status` shows it.
pub async fn environments(State(state): State<Arc<AppState>>) -> ApiResult {
    let st = blocking(move || {
        Ok(commands::build_status_with(
            &state.pipeline,
            &*state.store,
            &state.running_now(),
        )?)
    })
    .await?;
    Ok(Json(json!({"environments": st.environments})).into_response())
}

/// `GET /api/environments/{env}`: the environment's status, its last deployments, the
/// rollbacks of its deployments and the alarms it watches with their states.
pub async fn environment(
    State(state): State<Arc<AppState>>,
    env: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let Path(env) = env.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    recovery::known_environment(&state.pipeline, &env)?;
    let p = params(q)?;
    let n = number::<usize>(&p, "limit")?.unwrap_or(20).min(1000);
    let body = blocking(move || {
        let st = commands::build_status_with(&state.pipeline, &*state.store, &state.running_now())?;
        let status = st.environments.into_iter().find(|e| e.name == env);
        let deployments = state.store.deployments(Some(&env), n)?;
        let rollbacks: Vec<_> = state
            .store
            .rollbacks(200)?
            .into_iter()
            .filter(|r| r.environment == env)
            .take(n)
            .collect();
        let mut alarms = Vec::new();
        for a in state.pipeline.alarms_for(&env) {
            alarms.push(alarm_json(&*state.store, a)?);
        }
        Ok(json!({
            "environment": status,
            "deployments": deployments,
            "rollbacks": rollbacks,
            "alarms": alarms,
        }))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// One alarm of the pipeline with its last recorded state.
fn alarm_json(store: &dyn Store, a: &ferry_config::Alarm) -> Result<Value, ApiError> {
    let (state, reason, since) = match store.alarm_state(&a.name)? {
        Some((s, r, at)) => (json!(s), json!(r), json!(at.millis())),
        None => (json!("INSUFFICIENT_DATA"), Value::Null, Value::Null),
    };
    Ok(json!({
        "name": a.name,
        "source": a.source.kind(),
        "environment": a.environment,
        "advisory": a.advisory,
        "period_ms": a.period.as_millis() as u64,
        "evaluation_periods": a.evaluation_periods,
        "datapoints_to_alarm": a.datapoints_to_alarm,
        "state": state,
        "reason": reason,
        "since": since,
    }))
}

/// `GET /api/alarms`: every alarm of the pipeline with its last state (never evaluated
/// or pushed: `INSUFFICIENT_DATA`) and the environments that watch it.
pub async fn alarms(State(state): State<Arc<AppState>>) -> ApiResult {
    let body = blocking(move || {
        let mut out = Vec::new();
        for a in &state.pipeline.alarms {
            let mut v = alarm_json(&*state.store, a)?;
            let watched_by: Vec<&str> = state
                .pipeline
                .environments
                .iter()
                .filter(|e| {
                    state
                        .pipeline
                        .alarms_for(&e.name)
                        .iter()
                        .any(|x| x.name == a.name)
                })
                .map(|e| e.name.as_str())
                .collect();
            if let Some(o) = v.as_object_mut() {
                o.insert("environments".into(), json!(watched_by));
            }
            out.push(v);
        }
        Ok(json!({"alarms": out}))
    })
    .await?;
    Ok(Json(body).into_response())
}

/// `GET /api/alarms/{name}`: one alarm and its recent state changes (newest last).
pub async fn alarm(
    State(state): State<Arc<AppState>>,
    name: Result<Path<String>, PathRejection>,
    q: Params,
) -> ApiResult {
    let Path(name) = name.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    let Some(a) = state.pipeline.alarm(&name).cloned() else {
        let names: Vec<&str> = state
            .pipeline
            .alarms
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        return Err(ApiError::not_found(format!(
            "no alarm `{name}` in the pipeline; its alarms are: {}",
            if names.is_empty() {
                "(none)".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let p = params(q)?;
    let n = number::<usize>(&p, "limit")?.unwrap_or(50).min(1000);
    let body = blocking(move || {
        let v = alarm_json(&*state.store, &a)?;
        let changes: Vec<Value> = state
            .store
            .events(&EventFilter {
                kind: Some(EventKind::AlarmStateChanged),
                newest_first: true,
                limit: Some(10_000),
                ..Default::default()
            })?
            .into_iter()
            .filter(|(_, e)| e.data.get("alarm").and_then(Value::as_str) == Some(a.name.as_str()))
            .take(n)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|(id, e)| json!({"id": id, "at": e.at.millis(), "message": e.message, "data": e.data}))
            .collect();
        Ok(json!({"alarm": v, "changes": changes}))
    })
    .await?;
    Ok(Json(body).into_response())
}
