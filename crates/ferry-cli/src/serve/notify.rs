//! The notification routes of `ferry serve` (`crate::notify`): the outbox to read, and
//! dead letters sent again. The server's own dispatcher thread (started in
//! `serve::serve`) delivers what these make due.
//!
//! - `GET /api/notifications` `?dead=true&channel=ID&limit=N` → 200,
//!   `{"channels": [{channel, pending, dead, delivered}], "deliveries": [...]}`
//! - `POST /api/notifications/retry` `{"channel"?, "ids"?: [N]}` (bearer token, like
//!   every `POST /api/…`) → 200, `{"requeued": N}`

use super::{
    ApiError, ApiResult, AppState, Params, answer, authorize, blocking, body_object, limit, params,
    text_field,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;

/// The routes, merged into `serve::app`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/notifications", get(list))
        .route("/api/notifications/retry", post(retry))
}

async fn list(State(state): State<Arc<AppState>>, q: Params) -> ApiResult {
    let p = params(q)?;
    let n = limit(&p, 50)?;
    let dead = match p.get("dead").map(String::as_str) {
        None | Some("false" | "0") => false,
        Some("true" | "1" | "") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`dead` must be `true` or `false`, not `{other}`"
            )));
        }
    };
    let channel = p.get("channel").cloned();
    let v = blocking(move || {
        Ok(crate::notify::summary(
            &*state.store,
            dead,
            channel.as_deref(),
            n,
        )?)
    })
    .await?;
    answer(StatusCode::OK, v)
}

async fn retry(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    authorize(&state, &headers)?;
    let m = if body.is_empty() {
        serde_json::Map::new()
    } else {
        body_object(&body)?
    };
    let channel = text_field(&m, "channel", false)?;
    let ids: Vec<i64> = match m.get("ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    ApiError::bad_request("`ids` must be a list of delivery ids (numbers)")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`ids` must be a list of delivery ids (numbers)",
            ));
        }
    };
    let n = blocking(move || {
        Ok(crate::notify::requeue(
            &state.pipeline,
            &*state.store,
            channel.as_deref(),
            &ids,
        )?)
    })
    .await?;
    answer(StatusCode::OK, json!({"requeued": n}))
}
