//! The deployment window routes of `ferry serve` (bearer token, like every `POST /api/…`),
//! a block of their own: freezes and break-glass overrides, the same functions as
//! `ferry freeze`, `ferry unfreeze` and `ferry override` (`crate::windows`). What is
//! frozen and which runs are held shows in `GET /api/status`.
//!
//! - `POST /api/environments/{env}/freeze` `{"until", "reason", "by"}` → 201, the freeze
//! - `POST /api/environments/{env}/unfreeze` `{"by"}` → 200, `{"freezes": [lifted]}`
//! - `POST /api/runs/{id}/override` `{"reason", "by", "environment"?}` → 201, the request
//! - `POST /api/runs/{id}/override/confirm` `{"by", "environment"?}` → 200, confirmed

use super::{
    ApiError, ApiResult, AppState, acting_as, authorize, blocking, body_object, run_id, text_field,
};
use crate::context::SystemClock;
use crate::windows;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use ferry_engine::ports::Clock;
use std::sync::Arc;

/// The routes, merged into `serve::app`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/environments/{env}/freeze", post(freeze))
        .route("/api/environments/{env}/unfreeze", post(unfreeze))
        .route("/api/runs/{id}/override", post(request))
        .route("/api/runs/{id}/override/confirm", post(confirm))
}

fn env_of(env: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Path(env) = env.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    Ok(env)
}

async fn freeze(
    State(state): State<Arc<AppState>>,
    env: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let env = env_of(env)?;
    let m = body_object(&body)?;
    let until = text_field(&m, "until", true)?.unwrap_or_default();
    let reason = text_field(&m, "reason", true)?.unwrap_or_default();
    let by = acting_as(&state, &caller, &m, false)?;
    let f = blocking(move || {
        Ok(windows::set_freeze(
            &state.pipeline,
            &*state.store,
            &env,
            &until,
            &reason,
            &by,
            SystemClock.now(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(f)).into_response())
}

async fn unfreeze(
    State(state): State<Arc<AppState>>,
    env: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let env = env_of(env)?;
    let m = body_object(&body)?;
    let by = acting_as(&state, &caller, &m, false)?;
    let lifted = blocking(move || {
        Ok(windows::lift_freeze(
            &state.pipeline,
            &*state.store,
            &env,
            &by,
            SystemClock.now(),
        )?)
    })
    .await?;
    Ok(Json(ferry_api::Freezes { freezes: lifted }).into_response())
}

async fn request(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let id = run_id(id)?;
    let m = body_object(&body)?;
    let reason = text_field(&m, "reason", true)?.unwrap_or_default();
    let by = acting_as(&state, &caller, &m, true)?;
    let env = text_field(&m, "environment", false)?;
    let o = blocking(move || {
        Ok(windows::request_override(
            &state.pipeline,
            &*state.store,
            id,
            env.as_deref(),
            &reason,
            &by,
            SystemClock.now(),
        )?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(o)).into_response())
}

async fn confirm(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let id = run_id(id)?;
    let m = body_object(&body)?;
    let by = acting_as(&state, &caller, &m, true)?;
    let env = text_field(&m, "environment", false)?;
    let o = blocking(move || {
        Ok(windows::confirm_override(
            &state.pipeline,
            &*state.store,
            id,
            env.as_deref(),
            &by,
            SystemClock.now(),
        )?)
    })
    .await?;
    Ok(Json(o).into_response())
}
