//! What `ferry serve` does before any handler sees a request, so that bad or hostile
//! clients cost bounded time and memory and everyone else is still served:
//!
//! - a request's head must arrive within [`HEAD_TIMEOUT`] (hyper's header read timeout,
//!   set in [`serve_connections`]): a client trickling its headers is disconnected;
//! - a body is read whole before the handler runs, within [`BODY_TIMEOUT`] (else 408)
//!   and up to its route's limit (GitHub's 25 MiB for `/hooks/github`, 5 MiB for
//!   alarm events, 64 KiB for the API; else 413), and all bodies being read at once
//!   share a budget of [`BODIES_IN_FLIGHT`] bytes (a request waits for its share, or
//!   gets 503), so many large requests at once cannot exhaust memory;
//! - a body's `Content-Type`, when given, must be one the endpoint reads (else 415
//!   naming them); without one the body is read as JSON.
//!
//! Every refusal is a JSON error body like the handlers' own.

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::time::Duration;

/// GitHub sends at most 25 MiB.
pub const BODY_LIMIT: usize = 25 * 1024 * 1024;
/// Alertmanager groups and SNS messages (at most 256 KiB) fit well in this.
const ALARM_BODY_LIMIT: usize = 5 * 1024 * 1024;
/// The API's bodies are a few fields.
const API_BODY_LIMIT: usize = 64 * 1024;
/// The bytes all bodies being read at once may take.
pub const BODIES_IN_FLIGHT: usize = 128 * 1024 * 1024;

/// The largest body a route reads.
fn limit_of(path: &str) -> usize {
    match path {
        "/hooks/github" => BODY_LIMIT,
        "/hooks/alarms" => ALARM_BODY_LIMIT,
        _ => API_BODY_LIMIT,
    }
}

/// The shared budget, in KiB permits.
fn budget() -> &'static tokio::sync::Semaphore {
    static BUDGET: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    BUDGET.get_or_init(|| tokio::sync::Semaphore::new(BODIES_IN_FLIGHT / 1024))
}
/// A whole body must arrive within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's line and headers must arrive within this (also the longest a kept-alive
/// connection may sit idle before its next request).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        axum::Json(json!({"error": message, "code": status.as_u16()})),
    )
        .into_response()
}

/// The media types an endpoint reads (for requests with a body).
fn accepted(path: &str) -> &'static [&'static str] {
    if path == "/hooks/github" {
        // GitHub's two webhook content types.
        &["application/json", "application/x-www-form-urlencoded"]
    } else if path == "/hooks/alarms" {
        // SNS posts its JSON as text/plain.
        &["application/json", "text/plain"]
    } else {
        &["application/json"]
    }
}

/// `application/json; charset=utf-8` → `application/json`.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The middleware: content type, then the body read under its deadline and limit.
pub async fn guard(req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let limit = limit_of(parts.uri.path());
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = announced
        && len > limit as u64
    {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the body is {len} bytes; {} reads at most {limit}",
                parts.uri.path()
            ),
        );
    }
    // This body's share of the budget: what it announced, or its route's limit.
    let share = announced.map_or(limit, |n| usize::try_from(n).unwrap_or(limit));
    let permits = u32::try_from(share.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let _share = match tokio::time::timeout(BODY_TIMEOUT, budget().acquire_many(permits)).await {
        Ok(Ok(p)) => p,
        _ => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many large requests are being read right now; try again".to_string(),
            );
        }
    };
    let bytes = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            );
        }
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_big {
                refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is larger than {limit} bytes, the most {} reads",
                        parts.uri.path()
                    ),
                )
            } else {
                refuse(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {e}"),
                )
            };
        }
        Ok(Ok(b)) => b,
    };
    if !bytes.is_empty() {
        let allowed = accepted(parts.uri.path());
        let given = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media_type);
        match given {
            Some(t) if allowed.contains(&t.as_str()) => {}
            Some(t) => {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "{} reads {}, not `{t}`",
                        parts.uri.path(),
                        allowed.join(" or ")
                    ),
                );
            }
            // No type given: read as the endpoint's own (JSON), as scripts send it.
            None => {}
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Accepts connections until `stop` resolves, each served by hyper's HTTP/1 with the
/// header read timeout; then waits (at most `drain`) for requests in flight.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    crate::elog!(Warn, "ferry serve: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that went away or sent garbage: nothing to do.
            let _ = conn.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
}
