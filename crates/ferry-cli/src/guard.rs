//! What `ferry serve` does before any handler sees a request, so that bad or hostile
//! clients cost bounded time and memory and everyone else is still served:
//!
//! - a request's head must arrive within [`HEAD_TIMEOUT`] (hyper's header read timeout,
//!   set in [`serve_connections`]): a client trickling its headers is disconnected;
//! - a body is read whole before the handler runs, within [`BODY_TIMEOUT`] (else 408)
//!   and up to [`BODY_LIMIT`] bytes (GitHub's 25 MiB; else 413);
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
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > BODY_LIMIT as u64
    {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is {len} bytes; at most {BODY_LIMIT} are read"),
        );
    }
    let bytes =
        match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
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
                        format!("the body is larger than {BODY_LIMIT} bytes"),
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
                    eprintln!("ferry serve: accepting a connection: {e}");
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
