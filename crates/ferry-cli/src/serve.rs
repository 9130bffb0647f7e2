//! `ferry serve [--listen ADDR]`: one long-lived process that takes GitHub push
//! webhooks and alarm events, drives the runs they start, and serves a JSON API over the
//! same store as the other commands.
//!
//! axum on tokio in front, the synchronous engine behind: every store call and every
//! run or rollback happens on a blocking thread (`spawn_blocking`); the handlers only
//! parse, authenticate and answer. Secrets come from the environment only
//! (`FERRY_WEBHOOK_SECRET`, `FERRY_API_TOKEN`), are removed from it before any step can
//! inherit them, and are never logged. Errors are JSON `{"error": …, "code": HTTP
//! status}`; a 5xx never carries an internal message (that goes to stderr).

use crate::commands::{self, Local};
use crate::context::{Project, SystemClock};
use crate::error::{CliError, CliResult};
use crate::recovery::{self, AlarmAction};
use crate::views;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_api::exit;
use ferry_config::Pipeline;
use ferry_core::alarm::AlarmState;
use ferry_core::{Change, Event, EventKind, RunId};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Clock, EventFilter, Silent, Source as _, Store};
use ferry_hooks::{GithubEvent, PushDecision, SnsType};
use ferry_store::SqliteStore;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

mod charts;
mod dashboard;
pub(crate) mod html;
mod metrics;
mod notify;
mod windows;

use crate::guard::{self, BODY_LIMIT};
/// The remote pushed commits and polls are fetched from.
const REMOTE: &str = "origin";
/// The longest a `git fetch` may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// How long what the deployers say they run is reused for status answers.
const RUNNING_TTL: Duration = Duration::from_secs(30);

/// How long a stopping server waits for running steps and rollbacks to end after
/// parking its runs.
const DRAIN: Duration = Duration::from_secs(60);

/// Everything the handlers share.
pub struct AppState {
    pub project: Project,
    pub pipeline: Pipeline,
    pub text: String,
    pub store: Arc<SqliteStore>,
    webhook_secret: Vec<u8>,
    api_token: String,
    /// Personal tokens (`server.api_tokens_file`): a call made with one acts as that
    /// person.
    people: Vec<crate::remote::Person>,
    /// Never set by the server itself (its runs park instead); the executor and the
    /// engine share it.
    pub cancel: &'static AtomicBool,
    /// Set on Ctrl-C or SIGTERM: runs park at their next safe point, unchanged, for the
    /// next start to take up (`ferry_engine::Settings::park`).
    pub park: &'static AtomicBool,
    /// Makes "is this delivery known? queue, record it" one step within this process.
    deliveries: Mutex<()>,
    /// Runs and rollbacks still working in the background.
    busy: AtomicUsize,
    /// SNS deliveries accepted on their signature.
    sns: crate::sns::SnsTrust,
    /// What each environment's deployer last said it runs.
    running: Mutex<Option<Running>>,
}

/// What the deployers said they run, when, and the newest event id then.
struct Running {
    at: Instant,
    stamp: i64,
    map: BTreeMap<String, Option<String>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secrets are never printed.
        f.debug_struct("AppState")
            .field("project", &self.project)
            .field("pipeline", &self.pipeline.name)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn new(
        project: Project,
        pipeline: Pipeline,
        text: String,
        store: Arc<SqliteStore>,
        webhook_secret: String,
        api_token: String,
        cancel: &'static AtomicBool,
    ) -> AppState {
        AppState {
            sns: crate::sns::SnsTrust::new(&pipeline),
            project,
            pipeline,
            text,
            store,
            webhook_secret: webhook_secret.into_bytes(),
            api_token,
            people: Vec::new(),
            cancel,
            park: crate::signals::park_flag(),
            deliveries: Mutex::new(()),
            running: Mutex::new(None),
            busy: AtomicUsize::new(0),
        }
    }

    /// What each environment runs, asking the deployers (user commands for `command`
    /// deploys) again only when something happened since (a newer event in the store)
    /// or [`RUNNING_TTL`] passed: a flood of status reads runs no command.
    pub fn running_now(&self) -> BTreeMap<String, Option<String>> {
        let stamp = self
            .store
            .events(&EventFilter {
                newest_first: true,
                limit: Some(1),
                ..EventFilter::default()
            })
            .ok()
            .and_then(|e| e.first().map(|(id, _)| *id))
            .unwrap_or(-1);
        let mut cached = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = cached.as_ref()
            && c.stamp == stamp
            && c.at.elapsed() < RUNNING_TTL
        {
            return c.map.clone();
        }
        let map = self.project.running(&self.pipeline);
        *cached = Some(Running {
            at: Instant::now(),
            stamp,
            map: map.clone(),
        });
        map
    }

    /// Whether the server is stopping (no new work; runs park).
    pub fn stopping(&self) -> bool {
        self.park.load(Ordering::SeqCst) || self.cancel.load(Ordering::SeqCst)
    }

    /// Counts one piece of background work until the guard is dropped.
    fn work(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }

    /// Waits until no background work is left, at most `within`; true when none is.
    pub fn wait_idle(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while self.busy.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }
}

struct Busy(Arc<AppState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The routes.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/hooks/github", post(github))
        .route("/hooks/alarms", post(alarms))
        .route("/metrics", get(metrics::metrics))
        .route("/api/health", get(health))
        .route("/api/status", get(status))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/stages", get(views::stages))
        .route("/api/runs/{id}/logs", get(views::logs))
        .route("/api/runs/{id}/findings", get(crate::findings::api))
        .route(
            "/api/runs/{id}/steps/{stage}/{step}/log",
            get(views::step_log),
        )
        .route("/api/environments", get(views::environments))
        .route("/api/environments/{env}", get(views::environment))
        .route("/api/alarms", get(views::alarms))
        .route("/api/alarms/{name}", get(views::alarm))
        .route("/api/runs/{id}/approve", post(approve))
        .route("/api/runs/{id}/reject", post(reject))
        .route("/api/deployments", get(deployments))
        .route("/api/events", get(events))
        .route("/api/environments/{env}/rollback", post(rollback))
        // Deployment windows: freezes and break-glass overrides (serve/windows.rs).
        .merge(windows::routes())
        // Notifications: the outbox and dead-letter retries (serve/notify.rs).
        .merge(notify::routes())
        // The dashboard's HTML pages (serve/dashboard.rs).
        .merge(dashboard::routes())
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(guard::guard))
        .with_state(state)
}

// --- Errors ---------------------------------------------------------------------------

/// An error answer: `{"error": message, "code": status}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// A failure that is ours: logged in full, answered without the details.
    pub(crate) fn internal(detail: &str) -> ApiError {
        crate::elog!(Error, "ferry serve: error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; the server's log has the details",
        )
    }
}

impl From<CliError> for ApiError {
    fn from(e: CliError) -> ApiError {
        match e.code {
            exit::NOT_FOUND => ApiError::not_found(e.message),
            exit::CONFLICT => ApiError::new(StatusCode::CONFLICT, e.message),
            exit::USAGE => ApiError::bad_request(e.message),
            exit::STATE => {
                crate::elog!(Warn, "ferry serve: the state database: {}", e.message);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the state database cannot be used right now; try again",
                )
            }
            _ => ApiError::internal(&e.message),
        }
    }
}

impl From<ferry_engine::ports::PortError> for ApiError {
    fn from(e: ferry_engine::ports::PortError) -> ApiError {
        CliError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": self.message, "code": self.status.as_u16()})),
        )
            .into_response()
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

fn answer(status: StatusCode, body: Value) -> ApiResult {
    Ok((status, Json(body)).into_response())
}

/// An unknown path: a JSON 404 for the API and hooks, an HTML 404 page for a browser
/// asking for a dashboard page.
async fn unknown_route(
    State(state): State<Arc<AppState>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path();
    let browser = header(&headers, "accept").is_some_and(|a| a.contains("text/html"));
    if browser && !path.starts_with("/api/") && !path.starts_with("/hooks/") {
        return dashboard::not_found(&state, path);
    }
    ApiError::not_found("no such endpoint").into_response()
}

/// Runs `f` on a blocking thread (store calls, git, the engine).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(&format!("a worker thread failed: {e}"))))
}

// --- Authentication -------------------------------------------------------------------

/// Equal in time independent of where the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Who made an authorized call: a person's own token says who; the shared
/// `FERRY_API_TOKEN` does not.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    person: Option<String>,
}

/// `Authorization: Bearer <token>`: the shared `FERRY_API_TOKEN` or a personal token.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(t) = given else {
        return Err(ApiError::unauthorized(
            "this call needs `Authorization: Bearer <token>` (the server's FERRY_API_TOKEN, or your own token)",
        ));
    };
    // Every token is compared, so the time taken does not tell which one matched.
    let mut found: Option<Caller> = None;
    if same(t.as_bytes(), state.api_token.as_bytes()) {
        found = Some(Caller { person: None });
    }
    for p in &state.people {
        if same(t.as_bytes(), p.token.as_bytes()) {
            found = Some(Caller {
                person: Some(p.name.clone()),
            });
        }
    }
    found.ok_or_else(|| ApiError::unauthorized("the bearer token is wrong"))
}

/// The name a call acts under. A personal token is its person (a different `by` in
/// the body is refused); the shared token takes `by` from the body, except for what a
/// person must decide themselves (`personal`: approvals, rejections, overrides) once
/// personal tokens are configured.
pub(crate) fn acting_as(
    state: &AppState,
    caller: &Caller,
    m: &serde_json::Map<String, Value>,
    personal: bool,
) -> Result<String, ApiError> {
    // `user` is the name a CLI sends for its user when no `--by` was given: it stands
    // for the shared token's caller, and is ignored for a personal token.
    let by = match text_field(m, "by", false)? {
        Some(by) => Some(by),
        None if caller.person.is_none() => Some(
            text_field(m, "user", false)?
                .ok_or_else(|| ApiError::bad_request("the body needs `by` (a string)"))?,
        ),
        None => None,
    };
    match (&caller.person, by) {
        (Some(me), Some(by)) if !by.trim().eq_ignore_ascii_case(me) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this token is {me}'s; it cannot act as {by}"),
        )),
        (Some(me), _) => Ok(me.clone()),
        (None, _) if personal && !state.people.is_empty() => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "approvals, rejections and overrides need a personal token (`server.api_tokens_file`): the shared token cannot say who decides",
        )),
        (None, by) => Ok(by.unwrap_or_default()),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// --- POST /hooks/github -----------------------------------------------------------------

async fn github(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    ferry_hooks::verify_signature(
        &state.webhook_secret,
        &body,
        header(&headers, "x-hub-signature-256"),
    )
    .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let Some(event) = header(&headers, "x-github-event") else {
        return Err(ApiError::bad_request(
            "the `X-GitHub-Event` header is missing",
        ));
    };
    let form = header(&headers, "content-type")
        .map(guard::media_type)
        .is_some_and(|t| t == "application/x-www-form-urlencoded");
    let json_body = if form {
        form_payload(&body)?
    } else {
        body.to_vec()
    };
    let parsed = ferry_hooks::parse_github(event, &json_body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let delivery = header(&headers, "x-github-delivery")
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    match parsed {
        GithubEvent::Ping { zen, hook_id } => {
            answer(StatusCode::OK, json!({"pong": zen, "hook_id": hook_id}))
        }
        GithubEvent::Other(name) => answer(
            StatusCode::OK,
            json!({"ignored": format!("`{name}` events start nothing; ferry runs pushes")}),
        ),
        GithubEvent::Push(push) => match push.decision(&state.pipeline.source.branch) {
            PushDecision::Ignore(reason) => {
                let earlier = match delivery {
                    Some(d) => {
                        let st = Arc::clone(&state);
                        blocking(move || {
                            let now = SystemClock.now();
                            Ok(st.store.record_delivery(&d, None, now)?.err().flatten())
                        })
                        .await?
                    }
                    None => None,
                };
                match earlier {
                    Some(run) => answer(
                        StatusCode::ACCEPTED,
                        json!({"run": run.0, "redelivery": true}),
                    ),
                    None => answer(StatusCode::OK, json!({"ignored": reason.to_string()})),
                }
            }
            PushDecision::Run { sha } => {
                let by = if push.pusher.trim().is_empty() {
                    "github".to_string()
                } else {
                    push.pusher.clone()
                };
                let (tx, rx) = tokio::sync::oneshot::channel();
                let st = Arc::clone(&state);
                let work = state.work();
                tokio::task::spawn_blocking(move || {
                    let _work = work;
                    start_run(&st, &sha, delivery.as_deref(), "webhook", &by, tx);
                });
                match rx.await {
                    Ok(Ok(Started::New(run))) => {
                        answer(StatusCode::ACCEPTED, json!({"run": run.0}))
                    }
                    Ok(Ok(Started::Redelivery(Some(run)))) => answer(
                        StatusCode::ACCEPTED,
                        json!({"run": run.0, "redelivery": true}),
                    ),
                    Ok(Ok(Started::Redelivery(None))) => answer(
                        StatusCode::OK,
                        json!({"ignored": "this delivery was received before and started nothing", "redelivery": true}),
                    ),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(ApiError::internal("the run's thread ended before queueing")),
                }
            }
        },
    }
}

/// The JSON of a webhook GitHub sent as `application/x-www-form-urlencoded`: the
/// `payload` field, percent-decoded (the signature covers the encoded body).
fn form_payload(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let missing = || {
        ApiError::bad_request(
            "a form-encoded webhook needs a `payload` field (or set the webhook's content type to application/json)",
        )
    };
    let field = body
        .split(|b| *b == b'&')
        .find_map(|kv| kv.strip_prefix(b"payload="))
        .ok_or_else(missing)?;
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while let Some(&b) = field.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = field
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "the form's `payload` has a broken percent escape at byte {i}"
                        ))
                    })?;
                out.push(hex);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

enum Started {
    New(RunId),
    Redelivery(Option<RunId>),
}

/// On a blocking thread: queues a run of `sha` (unless the delivery is known), tells
/// the handler its id, then drives it and watches its environments.
fn start_run(
    state: &AppState,
    sha: &str,
    delivery: Option<&str>,
    trigger: &str,
    by: &str,
    tx: tokio::sync::oneshot::Sender<Result<Started, ApiError>>,
) {
    let project = &state.project;
    let store: &SqliteStore = &state.store;
    let Ok(source) = ferry_local::GitSource::open(&project.root) else {
        let _ = tx.send(Err(ApiError::internal(&format!(
            "cannot open the repository at {}",
            project.root.display()
        ))));
        return;
    };
    let local = Local::new(project, state.cancel).parking(state.park);
    let engine = local.engine(
        project,
        &state.pipeline,
        &state.text,
        store,
        &source,
        &Silent,
        state.cancel,
    );
    let queued = {
        let _one = state
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (|| {
            if let Some(d) = delivery
                && let Some(earlier) = store.delivery(d)?
            {
                return Ok(Err(earlier));
            }
            // One trigger per new tip: a poll never starts a commit a run exists for, and
            // a push joins the newest run when a poll just started it for the same commit
            // (a push back to an older commit still runs it again).
            let existing = if trigger == "poll" {
                store
                    .list_runs(1000, false)?
                    .into_iter()
                    .find(|r| r.commit.sha == sha)
            } else {
                store
                    .list_runs(1, false)?
                    .into_iter()
                    .next()
                    .filter(|r| r.commit.sha == sha)
                    .filter(|r| store.triggered(r.id).is_ok_and(|(t, _)| t == "poll"))
            };
            if let Some(r) = existing {
                if let Some(d) = delivery {
                    let _ = store.record_delivery(d, Some(r.id), SystemClock.now())?;
                }
                return Ok(Err(Some(r.id)));
            }
            // A pushed commit ferry's clone does not have yet: fetch the branch once.
            if source.resolve(sha).is_err() && source.has_remote(REMOTE) {
                let branch = &state.pipeline.source.branch;
                if let Err(e) = source.fetch(REMOTE, branch, FETCH_TIMEOUT) {
                    crate::elog!(Warn, "ferry serve: {e}");
                }
            }
            let run = engine.queue(sha, trigger, by).map_err(|e| {
                if e.kind == ferry_engine::ports::PortErrorKind::NotFound {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("commit {sha} is not in ferry's repository; fetch it there first"),
                    )
                } else {
                    e.into()
                }
            })?;
            if let Some(d) = delivery
                && let Err(e) = store.record_delivery(d, Some(run.id()), SystemClock.now())
            {
                crate::elog!(Warn, "ferry serve: delivery {d} of run {}: {e}", run.id());
            }
            Ok(Ok(run))
        })()
    };
    let run = match queued {
        Ok(Ok(run)) => run,
        Ok(Err(earlier)) => {
            let _ = tx.send(Ok(Started::Redelivery(earlier)));
            return;
        }
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let id = run.id();
    crate::elog!(Info, run = id.0;
        "ferry serve: run {id} of {} queued ({trigger} by {})",
        ferry_core::short_sha(sha),
        commands::printable(by)
    );
    let _ = tx.send(Ok(Started::New(id)));
    drive_to_end(state, &engine, run);
}

/// On a run's own thread: drives it to its end, then watches its environments (unless
/// the server is stopping), then removes its checkout.
fn drive_to_end(state: &AppState, engine: &ferry_engine::Engine<'_>, run: ferry_core::run::Run) {
    let id = run.id();
    match engine.drive(run) {
        Ok(view) => {
            crate::elog!(Info, run = id.0; "ferry serve: run {id} {}", view.status);
            if !state.stopping()
                && let Err(e) = engine.watch(&view)
            {
                crate::elog!(Warn, run = id.0; "ferry serve: run {id}: watching its environments: {e}");
            }
        }
        Err(e) => crate::elog!(Warn, run = id.0; "ferry serve: run {id}: {e}"),
    }
    let _ = std::fs::remove_dir_all(engine.layout.checkout(id));
}

// --- source.poll -------------------------------------------------------------------------

/// `source.poll`: every `every`, fetches the branch from `origin` (when the repository
/// has that remote) and starts a run for a tip no run has been started for. A tip is
/// recorded as delivery `poll:<sha>`, so a restart never starts it twice. Ends when the
/// server stops.
fn poll_loop(state: Arc<AppState>, every: Duration) {
    let branch = state.pipeline.source.branch.clone();
    let mut last: Option<String> = None;
    let mut first = true;
    loop {
        if !first {
            let until = Instant::now() + every;
            while Instant::now() < until {
                if state.stopping() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        first = false;
        if state.stopping() {
            return;
        }
        let source = match ferry_local::GitSource::open(&state.project.root) {
            Ok(s) => s,
            Err(e) => {
                crate::elog!(Warn, "ferry serve: poll: {e}");
                continue;
            }
        };
        if source.has_remote(REMOTE)
            && let Err(e) = source.fetch(REMOTE, &branch, FETCH_TIMEOUT)
        {
            crate::elog!(
                Warn,
                "ferry serve: poll: {e}; trying again in {}",
                ferry_config::format_duration(every)
            );
            continue;
        }
        let Some(tip) = source.branch_tip(REMOTE, &branch) else {
            crate::elog!(
                Info,
                "ferry serve: poll: no branch `{branch}` in the repository (nor `{REMOTE}/{branch}`)"
            );
            continue;
        };
        if last.as_deref() == Some(tip.as_str()) {
            continue;
        }
        let delivery = format!("poll:{tip}");
        let known = (|| -> Result<bool, ferry_engine::ports::PortError> {
            if state.store.delivery(&delivery)?.is_some() {
                return Ok(true);
            }
            // A commit someone already ran (`ferry run`, a webhook) is not run again.
            let ran = state
                .store
                .list_runs(1000, false)?
                .into_iter()
                .find(|r| r.commit.sha == tip);
            if let Some(r) = ran {
                // Already recorded by a concurrent start: the same answer.
                let _ = state
                    .store
                    .record_delivery(&delivery, Some(r.id), SystemClock.now())?;
                return Ok(true);
            }
            Ok(false)
        })();
        match known {
            Ok(true) => {
                last = Some(tip);
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                crate::elog!(Warn, "ferry serve: poll: {e}");
                continue;
            }
        }
        last = Some(tip.clone());
        let (tx, _rx) = tokio::sync::oneshot::channel();
        let st = Arc::clone(&state);
        let work = state.work();
        std::thread::spawn(move || {
            let _work = work;
            start_run(&st, &tip, Some(&delivery), "poll", "poll", tx);
        });
    }
}

/// Rollbacks a stopped ferry owed: for every environment whose current deployment is a
/// finished run's and `failed` (its stage failed after it was deployed) — its rollback
/// never begun, or begun by a process that is gone — the rollback is taken up (the
/// orchestrator takes over an abandoned claim and is idempotent). Needs
/// `rollback.automatic`.
fn resume_rollbacks(state: &Arc<AppState>) -> CliResult<()> {
    if !state.pipeline.rollback.automatic {
        return Ok(());
    }
    let liveness = ferry_local::LocalLiveness::here();
    for env in &state.pipeline.environments {
        let Some(d) = state.store.current_deployment(&env.name)? else {
            continue;
        };
        if d.status != ferry_core::DeploymentStatus::Failed
            || !state.store.load_run(d.run_id)?.status.is_terminal()
        {
            continue;
        }
        let (reason, trigger) = match state.store.rollback(&d.deployment_id)? {
            None => (
                format!(
                    "taken up after ferry stopped: the deployment of {} failed and was not rolled back",
                    ferry_core::short_sha(&d.version)
                ),
                ferry_core::rollback::Trigger::DeployFailed,
            ),
            Some(rec)
                if rec.status == ferry_core::rollback::RollbackStatus::InProgress
                    && ferry_engine::ports::Liveness::alive(&liveness, &rec.holder)
                        == Some(false) =>
            {
                (rec.reason.clone(), rec.trigger.clone())
            }
            Some(_) => continue,
        };
        let st = Arc::clone(state);
        let work = state.work();
        std::thread::spawn(move || {
            let _work = work;
            let r = with_engine(&st, |engine| {
                Ok(engine.roll_back(&d, &reason, trigger, None, None)?)
            });
            match r {
                Ok(rec) => crate::elog!(
                    Info,
                    "ferry serve: {}: rollback taken up: {}",
                    rec.environment,
                    rec.status
                ),
                Err(e) => crate::elog!(Warn, "ferry serve: rollback taken up: {}", e.message),
            }
        });
    }
    Ok(())
}

/// What a stopped server was watching goes on: for every environment whose current
/// deployment is a finished run's and still in its `watch` period, the run's watch is
/// started again (probe alarms), and a pushed alarm of the environment recorded in
/// ALARM since that deployment started — an alarm whose rollback the stopped server
/// accepted but had not begun — rolls it back now (the orchestrator is idempotent: a
/// rollback that had begun is the same rollback).
fn restart_watches(state: &Arc<AppState>) -> CliResult<()> {
    let now = SystemClock.now();
    let mut runs: Vec<RunId> = Vec::new();
    for env in &state.pipeline.environments {
        let Some(period) = env.watch.filter(|w| !w.is_zero()) else {
            continue;
        };
        let Some(d) = state.store.current_deployment(&env.name)? else {
            continue;
        };
        let ended = ferry_core::Timestamp(d.end_time.unwrap_or(d.start_time));
        if d.status != ferry_core::DeploymentStatus::Succeeded || ended.plus(period) <= now {
            continue;
        }
        for a in state.pipeline.alarms_for(&env.name) {
            if !matches!(a.source, ferry_config::AlarmSource::External) {
                continue;
            }
            if let Some((AlarmState::Alarm, reason, at)) = state.store.alarm_state(&a.name)?
                && at.millis() >= d.start_time
            {
                let actions = recovery::alarm_actions(
                    &state.pipeline,
                    &*state.store,
                    &a.name,
                    AlarmState::Alarm,
                    std::slice::from_ref(&env.name),
                    now,
                )?;
                for (_, action) in actions {
                    if let AlarmAction::RollBack(dep) = action {
                        let st = Arc::clone(state);
                        let work = state.work();
                        let name = a.name.clone();
                        let reason = reason.clone();
                        std::thread::spawn(move || {
                            let _work = work;
                            alarm_rollback(&st, &name, &reason, &dep);
                        });
                    }
                }
            }
        }
        // A run still going is being taken up (`resume_runs`), its watch included.
        let view = state.store.load_run(d.run_id)?;
        if view.status.is_terminal() && !runs.contains(&d.run_id) {
            runs.push(d.run_id);
        }
    }
    for id in runs {
        let st = Arc::clone(state);
        let work = state.work();
        std::thread::spawn(move || {
            let _work = work;
            let r = with_engine(&st, |engine| {
                let view = st.store.load_run(id)?;
                Ok(engine.watch(&view)?)
            });
            if let Err(e) = r {
                crate::elog!(Warn, run = id.0;
                    "ferry serve: run {id}: watching its environments again: {}",
                    e.message
                );
            }
        });
    }
    Ok(())
}

/// Takes up every run whose ferry process died (`Engine::orphans`): each is claimed,
/// recovered (`Engine::resume`) and driven on its own thread, then its environments are
/// watched, as for a pushed run.
fn resume_runs(state: &Arc<AppState>) -> CliResult<()> {
    let project = &state.project;
    let Ok(source) = ferry_local::GitSource::open(&project.root) else {
        return Ok(());
    };
    let local = Local::new(project, state.cancel).parking(state.park);
    let engine = local.engine(
        project,
        &state.pipeline,
        &state.text,
        &*state.store,
        &source,
        &Silent,
        state.cancel,
    );
    for id in engine.orphans()? {
        let st = Arc::clone(state);
        let work = state.work();
        std::thread::spawn(move || {
            let _work = work;
            resume_run(&st, id);
        });
    }
    Ok(())
}

/// On its own thread: takes up run `id` and drives it to its end.
fn resume_run(state: &AppState, id: RunId) {
    let project = &state.project;
    let store: &SqliteStore = &state.store;
    let Ok(source) = ferry_local::GitSource::open(&project.root) else {
        crate::elog!(Warn, run = id.0; "ferry serve: run {id}: cannot open the repository");
        return;
    };
    let local = Local::new(project, state.cancel).parking(state.park);
    let engine = local.engine(
        project,
        &state.pipeline,
        &state.text,
        store,
        &source,
        &Silent,
        state.cancel,
    );
    let run = match engine.resume(id) {
        Ok(Some(run)) => run,
        Ok(None) => return,
        Err(e) => {
            crate::elog!(Warn, run = id.0; "ferry serve: run {id}: cannot take it up again: {e}");
            return;
        }
    };
    crate::elog!(Info, run = id.0; "ferry serve: run {id} taken up again (the ferry process that drove it stopped)");
    drive_to_end(state, &engine, run);
}

// --- POST /hooks/alarms ------------------------------------------------------------------

async fn alarms(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let kind = ferry_hooks::sns_message_type(&body);
    let mut sns_delivery: Option<String> = None;
    // The bearer token, or for SNS deliveries of a trusted topic their signature.
    let signed = match authorize(&state, &headers) {
        Ok(_) => None,
        Err(e) if kind.is_none() || !state.sns.enabled() => return Err(e),
        Err(_) => {
            let st = Arc::clone(&state);
            let b = body.clone();
            Some(blocking(move || st.sns.verify(&b).map_err(ApiError::unauthorized)).await?)
        }
    };
    match kind {
        Some(SnsType::SubscriptionConfirmation) => {
            let was_signed = signed.is_some();
            let msg = match signed {
                Some(m) => m,
                None => ferry_hooks::parse_sns(&body)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            };
            let st = Arc::clone(&state);
            let topic = msg.topic_arn.clone();
            let confirmed = blocking(move || {
                let now = SystemClock.now();
                let verified =
                    was_signed || (st.sns.enabled() && st.sns.verify(&body).is_ok());
                // A verified confirmation of a trusted topic is confirmed here; any
                // other is left to a person.
                let (confirmed, message) = if verified {
                    match st.sns.confirm(&msg) {
                        Ok(()) => (true, format!("subscribed to SNS topic {}: alarms from it are accepted on their signature", msg.topic_arn)),
                        Err(e) => (false, format!("SNS topic {} asks to deliver alarms here; confirming failed ({e}); confirm it by opening its SubscribeURL", msg.topic_arn)),
                    }
                } else {
                    (false, format!(
                        "SNS topic {} asks to deliver alarms here; confirm the subscription by opening its SubscribeURL",
                        msg.topic_arn
                    ))
                };
                st.store.record_alarm(&[Change::Event(Event {
                    at: now,
                    kind: EventKind::SubscriptionConfirmationRequired,
                    run: None,
                    environment: None,
                    message,
                    data: json!({"topicArn": msg.topic_arn, "messageId": msg.message_id, "subscribeUrl": msg.subscribe_url, "confirmed": confirmed}),
                })])?;
                Ok(confirmed)
            })
            .await?;
            let note = if confirmed {
                "confirmed (signature verified, topic trusted)"
            } else {
                "recorded; a person must confirm it by opening its SubscribeURL"
            };
            return answer(
                StatusCode::OK,
                json!({"subscription": topic, "confirmed": confirmed, "note": note}),
            );
        }
        Some(SnsType::UnsubscribeConfirmation) => {
            return answer(
                StatusCode::OK,
                json!({"ignored": "an SNS unsubscribe confirmation"}),
            );
        }
        Some(SnsType::Notification) => {
            // SNS redelivers a message it thinks was not received; a replayed message
            // must not act twice either. The id is recorded once the alarm is (below), so
            // a delivery that failed half way is acted on when SNS retries it.
            if let Ok(m) = ferry_hooks::parse_sns(&body) {
                let st = Arc::clone(&state);
                let id = format!("sns:{}", m.message_id);
                let probe = id.clone();
                let earlier = blocking(move || Ok(st.store.delivery(&probe)?)).await?;
                if earlier.is_some() {
                    return answer(
                        StatusCode::OK,
                        json!({"ignored": "this SNS message was received before", "redelivery": true}),
                    );
                }
                sns_delivery = Some(id);
            }
        }
        None => {}
    }
    // Accepted on its SNS signature: only the signed `Message` is read.
    let changes = match &signed {
        Some(msg) => ferry_hooks::parse_sns_alarm(&msg.message).map(|c| vec![c]),
        None => ferry_hooks::parse_alarm_event(&body),
    }
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let st = Arc::clone(&state);
    let (results, rollbacks) = blocking(move || {
        let mut results = Vec::new();
        let mut warnings = Vec::new();
        let mut rollbacks = Vec::new();
        for c in changes {
            let Some(alarm_state) = AlarmState::parse(c.state.as_str()) else {
                continue;
            };
            let now = SystemClock.now();
            let reason = if c.reason.trim().is_empty() {
                format!("{} via {}", c.state.as_str(), source_name(c.source))
            } else {
                c.reason.clone()
            };
            let extra = json!({"source": source_name(c.source), "labels": c.labels, "reportedAt": c.at});
            let pushed = recovery::record_pushed_alarm(
                &st.pipeline,
                &*st.store,
                &c.alarm,
                alarm_state,
                &reason,
                now,
                extra,
            )?;
            if !pushed.known {
                warnings.push(format!(
                    "no alarm `{}` in the pipeline; its state was recorded and nothing else happens",
                    c.alarm
                ));
            }
            let actions = recovery::alarm_actions(
                &st.pipeline,
                &*st.store,
                &c.alarm,
                alarm_state,
                &pushed.environments,
                now,
            )?;
            let mut envs = Vec::new();
            for (env, action) in actions {
                match action {
                    AlarmAction::Record(why) => {
                        envs.push(json!({"environment": env, "action": why}));
                    }
                    AlarmAction::RollBack(d) => {
                        envs.push(json!({"environment": env, "action": "rollback", "deployment": d.deployment_id}));
                        rollbacks.push((c.alarm.clone(), reason.clone(), d));
                    }
                }
            }
            results.push(json!({
                "alarm": c.alarm,
                "state": alarm_state,
                "known": pushed.known,
                "environments": envs,
            }));
        }
        if let Some(id) = &sns_delivery {
            // A concurrent copy may have got here first: both acted, and a rollback of
            // the same deployment is the same rollback (idempotent).
            let _ = st.store.record_delivery(id, None, SystemClock.now())?;
        }
        Ok((json!({"alarms": results, "warnings": warnings}), rollbacks))
    })
    .await?;
    for (name, reason, deployment) in rollbacks {
        let st = Arc::clone(&state);
        let work = state.work();
        tokio::task::spawn_blocking(move || {
            let _work = work;
            alarm_rollback(&st, &name, &reason, &deployment);
        });
    }
    answer(StatusCode::ACCEPTED, results)
}

fn source_name(s: ferry_hooks::Source) -> &'static str {
    match s {
        ferry_hooks::Source::CloudWatch => "cloudwatch",
        ferry_hooks::Source::Alertmanager => "alertmanager",
    }
}

/// On a blocking thread: the rollback an ALARM triggered.
fn alarm_rollback(
    state: &AppState,
    name: &str,
    reason: &str,
    deployment: &ferry_core::DeploymentRecord,
) {
    let result = with_engine(state, |engine| {
        recovery::alarm_rollback(engine, deployment, name, reason)
    });
    match result {
        Ok(rec) => crate::elog!(
            Info,
            "ferry serve: alarm {name}: rollback of {} {:?}",
            rec.environment,
            rec.status
        ),
        Err(e) => crate::elog!(
            Warn,
            "ferry serve: alarm {name}: rollback failed: {}",
            e.message
        ),
    }
}

/// Runs `f` with an engine over the local adapters (on a blocking thread).
fn with_engine<T>(
    state: &AppState,
    f: impl FnOnce(&ferry_engine::Engine<'_>) -> CliResult<T>,
) -> CliResult<T> {
    let project = &state.project;
    let source = ferry_local::GitSource::open(&project.root)?;
    let local = Local::new(project, state.cancel).parking(state.park);
    let store: &SqliteStore = &state.store;
    let engine = local.engine(
        project,
        &state.pipeline,
        &state.text,
        store,
        &source,
        &Silent,
        state.cancel,
    );
    f(&engine)
}

// --- GET /api/… ------------------------------------------------------------------------

pub(crate) type Params = Result<Query<BTreeMap<String, String>>, QueryRejection>;

pub(crate) fn params(q: Params) -> Result<BTreeMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|_| ApiError::bad_request("the query string cannot be read"))
}

pub(crate) fn number<T: std::str::FromStr>(
    p: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    p.get(key)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| ApiError::bad_request(format!("`{key}` must be a number, not `{v}`")))
        })
        .transpose()
}

fn limit(p: &BTreeMap<String, String>, default: usize) -> Result<usize, ApiError> {
    Ok(number::<usize>(p, "limit")?.unwrap_or(default).min(1000))
}

pub(crate) fn run_id(id: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    id.parse::<i64>()
        .map_err(|_| ApiError::bad_request(format!("`{id}` is not a run number")))
}

/// `GET /api/health`: the process answers (for load balancers; touches no store).
async fn health(State(state): State<Arc<AppState>>) -> ApiResult {
    answer(
        StatusCode::OK,
        json!({"ok": true, "pipeline": state.pipeline.name}),
    )
}

async fn status(State(state): State<Arc<AppState>>) -> ApiResult {
    let st = blocking(move || {
        Ok(commands::build_status_with(
            &state.pipeline,
            &*state.store,
            &state.running_now(),
        )?)
    })
    .await?;
    Ok(Json(st).into_response())
}

async fn runs(State(state): State<Arc<AppState>>, q: Params) -> ApiResult {
    let p = params(q)?;
    let n = limit(&p, 20)?;
    let list = blocking(move || Ok(state.store.list_runs(n, false)?)).await?;
    let runs: Vec<ferry_api::RunSummary> = list.iter().map(commands::run_summary).collect();
    answer(StatusCode::OK, json!({"runs": runs}))
}

async fn run(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = run_id(id)?;
    let view = blocking(move || Ok(commands::run_detail(&*state.store, RunId(id))?)).await?;
    Ok(Json(view).into_response())
}

async fn deployments(State(state): State<Arc<AppState>>, q: Params) -> ApiResult {
    let p = params(q)?;
    let n = limit(&p, 50)?;
    let env = p.get("env").cloned();
    if let Some(e) = &env {
        recovery::known_environment(&state.pipeline, e)?;
    }
    let list = blocking(move || Ok(state.store.deployments(env.as_deref(), n)?)).await?;
    answer(StatusCode::OK, json!({"deployments": list}))
}

async fn events(State(state): State<Arc<AppState>>, q: Params) -> ApiResult {
    let p = params(q)?;
    if let Some(e) = p.get("env") {
        recovery::known_environment(&state.pipeline, e)?;
    }
    if let Some(run) = number::<i64>(&p, "run")? {
        let st = Arc::clone(&state);
        blocking(move || Ok(st.store.load_run(RunId(run)).map(|_| ())?)).await?;
    }
    let filter = EventFilter {
        run: number::<i64>(&p, "run")?.map(RunId),
        environment: p.get("env").cloned(),
        after_id: number::<i64>(&p, "after")?,
        kind: match p.get("kind") {
            None => None,
            Some(k) => Some(EventKind::parse(k).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`kind` `{k}` is not an event kind (e.g. `rollback_initiated`)"
                ))
            })?),
        },
        newest_first: match p.get("order").map(String::as_str) {
            None | Some("oldest") => false,
            Some("newest") => true,
            Some(o) => {
                return Err(ApiError::bad_request(format!(
                    "`order` is `oldest` or `newest`, not `{o}`"
                )));
            }
        },
        limit: Some(limit(&p, 100)?),
    };
    let list = blocking(move || Ok(state.store.events(&filter)?)).await?;
    let events: Vec<Value> = list
        .into_iter()
        .map(|(id, e)| {
            let mut v = serde_json::to_value(&e).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("id".into(), json!(id));
            }
            v
        })
        .collect();
    answer(StatusCode::OK, json!({"events": events}))
}

// --- POST /api/… -----------------------------------------------------------------------

/// A JSON object body; an empty body is an empty object.
fn body_object(body: &Bytes) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

fn text_field(
    m: &serde_json::Map<String, Value>,
    key: &str,
    required: bool,
) -> Result<Option<String>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) if required => Err(ApiError::bad_request(format!(
            "the body needs `{key}` (a string)"
        ))),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() && required => {
            Err(ApiError::bad_request(format!("`{key}` must not be empty")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("`{key}` must be a string"))),
    }
}

async fn approve(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    decide(state, id, headers, body, false).await
}

async fn reject(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    decide(state, id, headers, body, true).await
}

async fn decide(
    state: Arc<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
    reject: bool,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let id = run_id(id)?;
    let m = body_object(&body)?;
    let by = acting_as(&state, &caller, &m, true)?;
    let env = text_field(&m, "environment", false)?;
    let reason = if reject {
        text_field(&m, "reason", true)?
    } else {
        None
    };
    // The artifact the person reviewed, if the client says: a decision for another one
    // is refused (409).
    let digest = text_field(&m, "digest", false)?;
    let decided = blocking(move || {
        commands::decide_run(
            &*state.store,
            id,
            env.as_deref(),
            &by,
            reason.as_deref(),
            digest.as_deref(),
        )
        .map_err(|e| match e.code {
            // The rule does not let this person decide: 403, naming the rule.
            exit::FORBIDDEN => ApiError::new(StatusCode::FORBIDDEN, e.message),
            _ => e.into(),
        })
    })
    .await?;
    Ok(Json(decided).into_response())
}

async fn rollback(
    State(state): State<Arc<AppState>>,
    env: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = authorize(&state, &headers)?;
    let Path(env) = env.map_err(|_| ApiError::bad_request("the path cannot be read"))?;
    let m = body_object(&body)?;
    let by = acting_as(&state, &caller, &m, false)?;
    let to = text_field(&m, "to", false)?;
    let reason = text_field(&m, "reason", false)?;
    // Rolling back a rollback-unsafe deployment loses data: only when asked in so many
    // words.
    let accept_data_loss = match m.get("acceptDataLoss") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`acceptDataLoss` must be true or false",
            ));
        }
    };
    recovery::known_environment(&state.pipeline, &env)?;
    let st = Arc::clone(&state);
    let work = state.work();
    let rec = blocking(move || {
        let _work = work;
        Ok(with_engine(&st, |engine| {
            recovery::roll_back_env(
                engine,
                &env,
                to.as_deref(),
                reason.as_deref(),
                &by,
                accept_data_loss,
            )
        })?)
    })
    .await?;
    Ok(Json(rec).into_response())
}

// --- The process ------------------------------------------------------------------------

/// A secret from the environment or from the file `ferry.yml` names; refusing to start
/// without it. The variables are removed from the environment before any step can
/// inherit them.
fn secret(project: &Project, var: &str, file: Option<&str>, key: &str) -> CliResult<String> {
    crate::remote::secret(project, var, file)?.ok_or_else(|| {
        CliError::config(format!(
            "`ferry serve` needs `{var}`: set it in the environment, or name a file holding it with `server.{key}` in ferry.yml (never on the command line)"
        ))
    })
}

#[allow(unsafe_code)]
fn forget_secrets() {
    for name in ["FERRY_WEBHOOK_SECRET", "FERRY_API_TOKEN"] {
        // SAFETY: called from `serve` before the runtime or any other thread exists,
        // so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(name) };
    }
}

/// `ferry serve --listen ADDR`.
pub fn serve(project: &Project, listen: Option<&str>) -> CliResult<i32> {
    let (pipeline, text) = project.load()?;
    let webhook_secret = secret(
        project,
        "FERRY_WEBHOOK_SECRET",
        pipeline.server.webhook_secret_file.as_deref(),
        "webhook_secret_file",
    )?;
    let api_token = secret(
        project,
        "FERRY_API_TOKEN",
        pipeline.server.api_token_file.as_deref(),
        "api_token_file",
    )?;
    forget_secrets();
    // Secrets read from files are redacted too (the environment's were, on load).
    crate::log::add_secrets([webhook_secret.as_str(), api_token.as_str()]);
    let listen = listen
        .or(pipeline.server.listen.as_deref())
        .unwrap_or("127.0.0.1:8080");
    let addr: SocketAddr = listen.parse().map_err(|_| {
        CliError::new(
            exit::USAGE,
            format!(
                "`{listen}` is not an address to listen on; write HOST:PORT, e.g. 127.0.0.1:8080"
            ),
        )
    })?;
    let store = project.open_store()?;
    ferry_local::GitSource::open(&project.root)?;
    let cancel = crate::signals::flag();
    let people = match &pipeline.server.api_tokens_file {
        Some(f) => crate::remote::personal_tokens(project, f)?,
        None => Vec::new(),
    };
    crate::log::add_secrets(people.iter().map(|p| p.token.as_str()));
    store.set_redactor(crate::log::redactor());
    let mut state = AppState::new(
        project.clone(),
        pipeline,
        text,
        Arc::new(store),
        webhook_secret,
        api_token,
        cancel,
    );
    state.people = people;
    let state = Arc::new(state);
    // Runs a killed ferry left behind are taken up again, each on its own thread like a
    // pushed run (DESIGN invariant 1: resume where it is safe, else fail and roll back).
    resume_runs(&state)?;
    resume_rollbacks(&state)?;
    restart_watches(&state)?;
    // The notification dispatcher: delivers the outbox on its own thread (notify.rs).
    let notifier = crate::notify::start(project, &state.pipeline);
    if let Some(every) = state.pipeline.source.poll {
        let st = Arc::clone(&state);
        std::thread::spawn(move || poll_loop(st, every));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::environment(format!("cannot start the async runtime: {e}")))?;
    let served: CliResult<()> = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| CliError::environment(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::environment(format!("cannot listen on {addr}: {e}")))?;
        crate::log::stdout(
            crate::log::Level::Info,
            &crate::log::Ctx::default(),
            &format!("ferry serve: listening on http://{bound}"),
        );
        guard::serve_connections(
            listener,
            app(Arc::clone(&state)),
            shutdown(state.park),
            Duration::from_secs(5),
        )
        .await;
        Ok(())
    });
    // Whatever stopped the server, its runs park: a running step or rollback finishes,
    // a waiting run stops waiting unchanged, and the next start takes them up.
    state.park.store(true, Ordering::SeqCst);
    if !state.wait_idle(DRAIN) {
        crate::elog!(
            Warn,
            "ferry serve: some steps or rollbacks did not end within {DRAIN:?}; the next start takes their runs up"
        );
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    crate::notify::finish(notifier);
    served.map(|()| exit::OK)
}

/// Resolves on Ctrl-C or SIGTERM: the server stops accepting and its runs park.
async fn shutdown(park: &'static AtomicBool) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
    crate::elog!(
        Info,
        "ferry serve: stopping: no new work; running steps finish, waiting runs are parked for the next start"
    );
    park.store(true, Ordering::SeqCst);
}
