//! The dashboard `ferry serve` answers at `/`: server-rendered HTML pages over the same
//! store as the API, with inline CSS and a little inline JavaScript (nothing from
//! outside the machine):
//!
//! - `/` — the environments (version, since when, frozen / held / incident), the runs
//!   waiting or going on, the newest runs as timelines of stages, DORA over 30 days;
//! - `/runs[?before=ID]` — every run as a timeline of stages, 25 a page (by id);
//! - `/runs/{id}` — one run: stages and steps with durations and gate verdicts, step
//!   logs that follow live (`/api/runs/{id}/steps/{stage}/{step}/log?offset=`), approve
//!   and reject buttons when it waits for approval (the API's token rules: the token is
//!   entered once and kept in `sessionStorage`);
//! - `/deployments[?env=E&before=T&id=D]` — the deployment history with rollbacks and
//!   their reasons, 50 a page (keyset cursor `(start_time, deployment_id)`);
//! - `/dora[?env=E&days=7|30|90]` — the DORA measures with small SVG charts.
//!
//! A page that does not exist (a run, an environment) is an HTML 404; a store failure an
//! HTML 5xx without internal detail. Every page is built on a blocking thread from
//! indexed, bounded store reads.

use crate::commands;
use crate::error::CliError;
use crate::report;
use crate::serve::charts;
use crate::serve::html::{
    self, badge, error_page, esc, first_line, page, respond, took, url, when, when_opt,
};
use crate::serve::{AppState, Params};
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use ferry_core::dora::{Sample, Window};
use ferry_core::run::RunView;
use ferry_core::{RunId, RunStatus, StageStatus, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Clock, Store};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Runs on a page of `/runs`.
const RUNS_PAGE: usize = 25;
/// Deployments on a page of `/deployments`.
const DEPLOYMENTS_PAGE: usize = 50;
/// The windows the DORA page offers.
const WINDOWS: [u32; 3] = [7, 30, 90];

/// The dashboard's routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview))
        .route("/runs", get(runs))
        .route("/runs/{id}", get(run))
        .route("/deployments", get(deployments))
        .route("/dora", get(dora))
}

/// Why a page cannot be shown.
struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    fn not_found(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    fn bad(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<CliError> for PageError {
    fn from(e: CliError) -> PageError {
        match e.code {
            ferry_api::exit::NOT_FOUND => PageError::not_found(e.message),
            ferry_api::exit::USAGE => PageError::bad(e.message),
            _ => {
                crate::elog!(Error, "ferry serve: dashboard: {}", e.message);
                PageError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the page cannot be shown right now; the server's log has the details"
                        .into(),
                }
            }
        }
    }
}

impl From<ferry_engine::ports::PortError> for PageError {
    fn from(e: ferry_engine::ports::PortError) -> PageError {
        CliError::from(e).into()
    }
}

type Built = Result<(String, String, String), PageError>;

/// Builds a page on a blocking thread: `f` gives its title, body and script.
async fn render(
    state: Arc<AppState>,
    f: impl FnOnce(&AppState) -> Built + Send + 'static,
) -> Response {
    let pipeline = state.pipeline.name.clone();
    let st = Arc::clone(&state);
    let built = tokio::task::spawn_blocking(move || f(&st)).await;
    match built {
        Ok(Ok((title, body, script))) => {
            respond(StatusCode::OK, page(&title, &pipeline, &body, &script))
        }
        Ok(Err(e)) => error_page(e.status, &pipeline, &e.message),
        Err(e) => {
            crate::elog!(Error, "ferry serve: dashboard: a worker thread failed: {e}");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &pipeline,
                "the page cannot be shown right now; the server's log has the details",
            )
        }
    }
}

fn query(q: Params) -> Result<BTreeMap<String, String>, PageError> {
    q.map(|axum::extract::Query(m)| m)
        .map_err(|_| PageError::bad("the query string cannot be read"))
}

fn now() -> Timestamp {
    crate::context::SystemClock.now()
}

/// How long the DORA samples of an environment are reused while nothing happened.
const SAMPLES_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The DORA samples last read per environment: what the newest deployment and rollback
/// were then, when, the start of what was read, and the samples.
type SampleCache = BTreeMap<String, (String, std::time::Instant, Timestamp, Arc<Vec<Sample>>)>;

fn sample_cache() -> &'static std::sync::Mutex<SampleCache> {
    static CACHE: std::sync::OnceLock<std::sync::Mutex<SampleCache>> = std::sync::OnceLock::new();
    CACHE.get_or_init(|| std::sync::Mutex::new(BTreeMap::new()))
}

/// The DORA samples of `env` over the last 90 days (the widest window shown). They are
/// read again only when the environment's newest deployment or the newest rollback
/// changed since (two index seeks tell) or [`SAMPLES_TTL`] passed, so a dashboard
/// reloaded by many people — while runs go through their steps — reads a long history
/// once.
fn samples_90d(state: &AppState, env: &str, now: Timestamp) -> Result<Arc<Vec<Sample>>, PageError> {
    let latest = state.store.latest_deployment(env)?;
    let rollback = state.store.rollbacks(1)?;
    let stamp = format!(
        "{:?}|{:?}",
        latest.map(|d| (d.deployment_id, d.status, d.end_time, d.rollback_time)),
        rollback
            .first()
            .map(|r| (&r.deployment_id, r.status, r.ended_at))
    );
    let from = Window::last_days(now, 90).from;
    {
        let cache = sample_cache()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, at, read_from, samples)) = cache.get(env)
            && *s == stamp
            && at.elapsed() < SAMPLES_TTL
            && *read_from <= from
        {
            return Ok(Arc::clone(samples));
        }
    }
    let samples = Arc::new(state.store.dora_samples(env, from)?);
    sample_cache()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(
            env.to_string(),
            (stamp, std::time::Instant::now(), from, Arc::clone(&samples)),
        );
    Ok(samples)
}

fn stage_class(s: StageStatus) -> &'static str {
    match s {
        StageStatus::Succeeded => "ok",
        StageStatus::Failed | StageStatus::Cancelled => "bad",
        StageStatus::Running => "run",
        StageStatus::AwaitingApproval => "wait",
        _ => "idle",
    }
}

/// A run as one table row: id, commit, status, and its stages as a timeline.
fn run_row(v: &RunView) -> String {
    let mut stages = String::new();
    for s in &v.stages {
        let _ = write!(
            stages,
            "<div class=\"stage {}\" title=\"{}: {}\">{}<small>{}</small></div>",
            stage_class(s.status),
            esc(&s.name),
            esc(s.status.as_str()),
            esc(&s.name),
            esc(&{
                let t = took(s.started_at, s.ended_at);
                if t.is_empty() {
                    s.status.as_str().replace('_', " ")
                } else {
                    t
                }
            })
        );
    }
    format!(
        "<tr><td><a href=\"/runs/{id}\">#{id}</a>{hot}</td><td><code>{sha}</code> {msg}<div class=\"muted\">{author}</div></td><td>{status}</td><td><div class=\"timeline\">{stages}</div></td><td>{created}<div class=\"muted\">{took}</div></td></tr>",
        id = v.id.0,
        hot = if v.hotfix {
            " <span class=\"flag\">hotfix</span>"
        } else {
            ""
        },
        sha = esc(v.commit.short()),
        msg = esc(&first_line(&v.commit.message, 90)),
        author = esc(&v.commit.author),
        status = badge(v.status.as_str()),
        created = when(v.created_at),
        took = esc(&took(v.started_at.or(Some(v.created_at)), v.ended_at)),
    )
}

fn runs_table(runs: &[RunView]) -> String {
    let mut out = String::from(
        "<table class=\"runs\"><thead><tr><th>Run</th><th>Commit</th><th>Status</th><th>Stages</th><th>Queued</th></tr></thead><tbody>",
    );
    for v in runs {
        out.push_str(&run_row(v));
    }
    if runs.is_empty() {
        out.push_str("<tr><td colspan=\"5\" class=\"muted\">no runs yet</td></tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// The environments table of the overview.
fn environments(state: &AppState) -> Result<String, PageError> {
    let st = commands::build_status_with(&state.pipeline, &*state.store, &state.running_now())?;
    let mut out = String::from(
        "<table class=\"envs\"><thead><tr><th>Environment</th><th>Version</th><th>Status</th><th>Since</th><th>Notes</th></tr></thead><tbody>",
    );
    for e in &st.environments {
        let mut notes = String::new();
        if let Some(i) = &e.incident {
            let _ = write!(
                notes,
                "<span class=\"flag\">incident #{}</span> {}",
                i.id,
                esc(&i.reason)
            );
        }
        if !e.freezes.is_empty() {
            let reasons: Vec<String> = e.freezes.iter().map(|f| f.reason.clone()).collect();
            let _ = write!(
                notes,
                "<span class=\"flag\">frozen</span> {}",
                esc(&reasons.join("; "))
            );
        }
        if let Some(g) = &e.gate
            && let Ok(v) = serde_json::to_value(g)
            && v.get("open").and_then(serde_json::Value::as_bool) == Some(false)
        {
            let why = v
                .get("reason")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("closed");
            let _ = write!(notes, "<span class=\"flag\">held</span> {}", esc(why));
        }
        if let Some(l) = &e.latest {
            let _ = write!(
                notes,
                " <span class=\"muted\">newest: <code>{}</code> {}{}</span>",
                esc(ferry_core::short_sha(&l.version)),
                badge(&l.status),
                l.reason
                    .as_ref()
                    .map(|r| format!(" — {}", esc(r)))
                    .unwrap_or_default()
            );
        }
        let version = match (&e.version, e.run) {
            (Some(v), Some(run)) => format!(
                "<code>{}</code> <a href=\"/runs/{run}\">run #{run}</a>",
                esc(ferry_core::short_sha(v))
            ),
            (Some(v), None) => format!("<code>{}</code>", esc(ferry_core::short_sha(v))),
            (None, _) => "<span class=\"muted\">nothing deployed</span>".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/deployments?env={}\">{}</a></td><td>{version}</td><td>{}</td><td>{}</td><td>{notes}</td></tr>",
            url(&e.name),
            esc(&e.name),
            badge(&e.status),
            when_opt(e.since.map(Timestamp)),
        );
    }
    out.push_str("</tbody></table>");
    Ok(out)
}

/// `GET /`.
async fn overview(State(state): State<Arc<AppState>>) -> Response {
    render(state, |st| {
        let mut body = String::from("<h1>Overview</h1>");
        let _ = write!(
            body,
            "<section><h2>Environments</h2>{}</section>",
            environments(st)?
        );
        let active = st.store.list_runs(20, true)?;
        if !active.is_empty() {
            let _ = write!(
                body,
                "<section><h2>In progress and waiting</h2>{}</section>",
                runs_table(&active)
            );
        }
        let recent = st.store.runs_before(None, 10)?;
        let _ = write!(
            body,
            "<section><h2>Recent runs</h2>{}<div class=\"pager\"><a href=\"/runs\">All runs →</a></div></section>",
            runs_table(&recent)
        );
        let env = report::environment(&st.pipeline, None)?;
        let now = now();
        let samples = samples_90d(st, &env, now)?;
        let m = ferry_core::dora::measure(&samples, Window::last_days(now, 30));
        let _ = write!(
            body,
            "<section><h2>DORA · {} · last 30 days</h2>{}<div class=\"pager\"><a href=\"/dora\">Details and charts →</a></div></section>",
            esc(&env),
            dora_cards(&m)
        );
        Ok(("Overview".into(), body, String::new()))
    })
    .await
}

/// `GET /runs[?before=ID]`.
async fn runs(State(state): State<Arc<AppState>>, q: Params) -> Response {
    let p = match query(q) {
        Ok(p) => p,
        Err(e) => return error_page(e.status, &state.pipeline.name, &e.message),
    };
    render(state, move |st| {
        let before = match p.get("before") {
            Some(b) => Some(RunId(b.parse::<i64>().map_err(|_| {
                PageError::bad(format!("`before={b}` is not a run number"))
            })?)),
            None => None,
        };
        let page_runs = st.store.runs_before(before, RUNS_PAGE)?;
        let mut body = String::from("<h1>Runs</h1><section>");
        body.push_str(&runs_table(&page_runs));
        body.push_str("<div class=\"pager\">");
        if before.is_some() {
            body.push_str("<a href=\"/runs\">← Newest</a>");
        }
        if page_runs.len() == RUNS_PAGE
            && let Some(last) = page_runs.last()
        {
            let _ = write!(body, "<a href=\"/runs?before={}\">Older →</a>", last.id.0);
        }
        body.push_str("</div></section>");
        Ok(("Runs".into(), body, String::new()))
    })
    .await
}

/// `GET /runs/{id}`.
async fn run(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    let Ok(Path(id)) = id else {
        return error_page(
            StatusCode::BAD_REQUEST,
            &state.pipeline.name,
            "the path cannot be read",
        );
    };
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::NOT_FOUND,
            &state.pipeline.name,
            &format!("`{id}` is not a run number; runs are numbered 1, 2, 3…"),
        );
    };
    render(state, move |st| {
        let detail = match commands::run_detail(&*st.store, RunId(id)) {
            Ok(d) => d,
            Err(e) if e.code == ferry_api::exit::NOT_FOUND => {
                return Err(PageError::not_found(format!(
                    "there is no run #{id}; see the list of runs"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let v = &detail.run;
        let (trigger, by) = st.store.triggered(v.id)?;
        let mut body = format!(
            "<h1>Run #{id} <span id=\"run-status\" data-status=\"{s}\">{b}</span></h1>",
            s = esc(v.status.as_str()),
            b = badge(v.status.as_str())
        );
        let _ = write!(
            body,
            "<section><table><tr><th>Commit</th><td><code>{sha}</code></td></tr>\
<tr><th>Message</th><td><pre class=\"message\">{msg}</pre></td></tr>\
<tr><th>Author</th><td>{author}</td></tr><tr><th>Trigger</th><td>{trigger} by {by}</td></tr>\
<tr><th>Queued</th><td>{q}</td></tr><tr><th>Ended</th><td>{e}</td></tr><tr><th>Took</th><td>{t}</td></tr>{reason}{artifact}</table></section>",
            sha = esc(&v.commit.sha),
            msg = esc(&v.commit.message),
            author = esc(&v.commit.author),
            trigger = esc(&trigger),
            by = esc(&by),
            q = when(v.created_at),
            e = when_opt(v.ended_at),
            t = esc(&took(v.started_at.or(Some(v.created_at)), v.ended_at)),
            reason = v
                .reason
                .as_ref()
                .map(|r| format!("<tr><th>Why</th><td>{}</td></tr>", esc(r)))
                .unwrap_or_default(),
            artifact = v
                .artifact
                .as_ref()
                .map(|a| format!(
                    "<tr><th>Artifact</th><td><code>{}</code></td></tr>",
                    esc(&a.digest)
                ))
                .unwrap_or_default(),
        );
        // The approval panel, when the run waits for one.
        let waiting = v
            .stages
            .iter()
            .find(|s| s.status == StageStatus::AwaitingApproval)
            .map(|s| s.name.clone());
        if v.status == RunStatus::AwaitingApproval
            && let Some(env) = &waiting
        {
            let progress = detail
                .approvals
                .iter()
                .find(|a| &a.environment == env)
                .map(|a| a.progress.clone())
                .unwrap_or_default();
            let _ = write!(
                body,
                "<section class=\"approval\" id=\"approval\" data-run=\"{id}\" data-env=\"{e}\" data-digest=\"{d}\">\
<h2>Approval for {e}</h2><p>{p}</p>\
<label>API token <input id=\"token\" type=\"password\" autocomplete=\"off\" placeholder=\"FERRY_API_TOKEN or your own\"></label>\
<label>Your name <input id=\"by\" type=\"text\" placeholder=\"with the shared token\"></label>\
<label>Reason <input id=\"reason\" type=\"text\" placeholder=\"needed to reject\"></label><br>\
<button class=\"approve\" id=\"approve\" type=\"button\">Approve</button> \
<button class=\"reject\" id=\"reject\" type=\"button\">Reject</button>\
<div id=\"decision-result\" role=\"status\"></div></section>",
                e = esc(env),
                d = esc(v.artifact.as_ref().map_or("", |a| a.digest.as_str())),
                p = esc(&progress),
            );
        }
        for a in &detail.approvals {
            if a.decisions.is_empty() {
                continue;
            }
            let _ = write!(body, "<section><h2>Decisions for {}</h2><ul>", esc(&a.environment));
            for d in &a.decisions {
                let _ = write!(
                    body,
                    "<li>{} {} by {}{}{}</li>",
                    when(d.at),
                    if d.approved { "approved" } else { "rejected" },
                    esc(&d.by),
                    d.reason
                        .as_ref()
                        .map(|r| format!(": {}", esc(r)))
                        .unwrap_or_default(),
                    d.void
                        .as_ref()
                        .map(|r| format!(" <span class=\"flag\">void</span> {}", esc(r)))
                        .unwrap_or_default()
                );
            }
            body.push_str("</ul></section>");
        }
        // The stages as a timeline, then each with its steps.
        body.push_str("<section><h2>Stages</h2><div class=\"timeline\">");
        for s in &v.stages {
            let _ = write!(
                body,
                "<div class=\"stage {}\">{}<small>{}</small></div>",
                stage_class(s.status),
                esc(&s.name),
                esc(&{
                    let t = took(s.started_at, s.ended_at);
                    if t.is_empty() {
                        s.status.as_str().replace('_', " ")
                    } else {
                        t
                    }
                })
            );
        }
        body.push_str("</div></section>");
        for s in &v.stages {
            let _ = write!(
                body,
                "<section class=\"stage-detail\"><h2>{} {} <span class=\"muted\">{}</span></h2>\
<table><thead><tr><th>Step</th><th>Kind</th><th>Status</th><th>Took</th><th>Exit</th><th>Verdict</th></tr></thead><tbody>",
                esc(&s.name),
                badge(s.status.as_str()),
                esc(&took(s.started_at, s.ended_at))
            );
            for t in &s.steps {
                let log = if t.log.is_some() {
                    format!(
                        "<tr><td colspan=\"6\"><details class=\"log\" data-stage=\"{}\" data-step=\"{}\" data-status=\"{}\"><summary>log of {}</summary><pre class=\"log-text\"></pre></details></td></tr>",
                        esc(&s.name),
                        esc(&t.name),
                        esc(t.status.as_str()),
                        esc(&t.name)
                    )
                } else {
                    String::new()
                };
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>{log}",
                    esc(&t.name),
                    esc(&t.kind),
                    badge(t.status.as_str()),
                    esc(&took(t.started_at, t.ended_at)),
                    t.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                    esc(t.reason.as_deref().unwrap_or("")),
                );
            }
            body.push_str("</tbody></table></section>");
        }
        let script = RUN_SCRIPT.replace("__RUN__", &id.to_string());
        Ok((format!("Run #{id}"), body, script))
    })
    .await
}

/// The run page's script: logs that follow, the status that reloads the page when it
/// changes, the approval buttons. Only `textContent` is written (never HTML).
const RUN_SCRIPT: &str = r#"
(function(){
  const run = __RUN__;
  const final = s => ['succeeded','failed','skipped','cancelled'].includes(s);
  function follow(d){
    if (d.dataset.following) return; d.dataset.following = '1';
    const pre = d.querySelector('pre'); let offset = 0;
    const url = () => '/api/runs/' + run + '/steps/' + encodeURIComponent(d.dataset.stage) + '/' + encodeURIComponent(d.dataset.step) + '/log?offset=' + offset;
    async function tick(){
      try {
        const r = await fetch(url());
        if (!r.ok) { pre.textContent += '\n[' + r.status + ' reading the log]'; return; }
        const text = await r.text();
        pre.textContent += text;
        offset = Number(r.headers.get('x-ferry-next-offset') || offset + text.length);
        const st = r.headers.get('x-ferry-step-status') || '';
        if (!final(st) || text.length > 0) setTimeout(tick, final(st) ? 50 : 1000);
      } catch (e) { pre.textContent += '\n[' + e + ']'; }
    }
    tick();
  }
  document.querySelectorAll('details.log').forEach(d => {
    d.addEventListener('toggle', () => { if (d.open) follow(d); });
    if (d.dataset.status === 'running') { d.open = true; follow(d); }
  });
  const shown = document.getElementById('run-status').dataset.status;
  if (!final(shown)) {
    setInterval(async () => {
      try {
        const r = await fetch('/api/runs/' + run);
        if (!r.ok) return;
        const j = await r.json();
        const now = (j.run && j.run.status) || j.status;
        if (now && now !== shown) location.reload();
      } catch (e) {}
    }, 2000);
  }
  const box = document.getElementById('approval');
  if (!box) return;
  const token = document.getElementById('token'), by = document.getElementById('by'), reason = document.getElementById('reason');
  const out = document.getElementById('decision-result');
  token.value = sessionStorage.getItem('ferry-token') || '';
  by.value = sessionStorage.getItem('ferry-by') || '';
  function show(text, bad){ out.textContent = text; out.className = bad ? 'err' : ''; }
  async function decide(kind){
    const t = token.value.trim();
    if (!t) { show('Enter the API token first (FERRY_API_TOKEN, or your own token).', true); return; }
    sessionStorage.setItem('ferry-token', t);
    sessionStorage.setItem('ferry-by', by.value.trim());
    const body = { environment: box.dataset.env };
    if (box.dataset.digest) body.digest = box.dataset.digest;
    if (by.value.trim()) body.by = by.value.trim();
    if (kind === 'reject') {
      if (!reason.value.trim()) { show('A rejection needs a reason.', true); return; }
      body.reason = reason.value.trim();
    }
    show('Sending…', false);
    try {
      const r = await fetch('/api/runs/' + run + '/' + kind, { method: 'POST', headers: { 'Authorization': 'Bearer ' + t, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      let j = {}; try { j = await r.json(); } catch (e) {}
      if (!r.ok) {
        if (r.status === 401) sessionStorage.removeItem('ferry-token');
        show(r.status + ': ' + (j.error || r.statusText), true); return;
      }
      show((kind === 'approve' ? 'Approved' : 'Rejected') + '; the run goes on.', false);
    } catch (e) { show('The server cannot be reached: ' + e, true); }
  }
  document.getElementById('approve').addEventListener('click', () => decide('approve'));
  document.getElementById('reject').addEventListener('click', () => decide('reject'));
})();
"#;

/// `GET /deployments[?env=E&before=T&id=D]`.
async fn deployments(State(state): State<Arc<AppState>>, q: Params) -> Response {
    let p = match query(q) {
        Ok(p) => p,
        Err(e) => return error_page(e.status, &state.pipeline.name, &e.message),
    };
    render(state, move |st| {
        let env = p.get("env").filter(|e| !e.is_empty()).cloned();
        if let Some(e) = &env {
            crate::recovery::known_environment(&st.pipeline, e)?;
        }
        let before = match (p.get("before"), p.get("id")) {
            (Some(t), Some(id)) => Some((
                t.parse::<i64>().map_err(|_| {
                    PageError::bad(format!("`before={t}` is not a time in milliseconds"))
                })?,
                id.clone(),
            )),
            (None, None) => None,
            _ => {
                return Err(PageError::bad(
                    "a page of deployments needs both `before` and `id` (follow the Older link)",
                ));
            }
        };
        let list = st.store.deployments_before(
            env.as_deref(),
            before.as_ref().map(|(t, id)| (*t, id.as_str())),
            DEPLOYMENTS_PAGE,
        )?;
        let mut body = String::from("<h1>Deployments</h1><section><div class=\"tabs\">");
        let _ = write!(
            body,
            "<a href=\"/deployments\"{}>all</a>",
            if env.is_none() { " class=\"on\"" } else { "" }
        );
        for e in &st.pipeline.environments {
            let _ = write!(
                body,
                "<a href=\"/deployments?env={}\"{}>{}</a>",
                url(&e.name),
                if env.as_deref() == Some(e.name.as_str()) {
                    " class=\"on\""
                } else {
                    ""
                },
                esc(&e.name)
            );
        }
        body.push_str(
            "</div><table class=\"deployments\"><thead><tr><th>Started</th><th>Environment</th><th>Version</th><th>Status</th><th>Took</th><th>Commit</th><th>Rollback</th></tr></thead><tbody>",
        );
        for d in &list {
            let rollback = match (&d.rollback_reason, d.rollback_time) {
                (Some(r), t) => format!(
                    "{}{} {}",
                    d.rollback_level
                        .map(|l| format!("<span class=\"flag\">{}</span> ", esc(l.as_str())))
                        .unwrap_or_default(),
                    esc(r),
                    t.map(|t| format!("<div class=\"muted\">{}</div>", when(Timestamp(t))))
                        .unwrap_or_default()
                ),
                (None, _) => String::new(),
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code> <a href=\"/runs/{run}\">#{run}</a></td><td>{}</td><td>{}</td><td>{}<div class=\"muted\">{}</div></td><td>{rollback}</td></tr>",
                when(Timestamp(d.start_time)),
                esc(&d.environment),
                esc(ferry_core::short_sha(&d.version)),
                badge(d.status.as_str()),
                esc(&took(
                    Some(Timestamp(d.start_time)),
                    d.end_time.map(Timestamp)
                )),
                esc(&first_line(&d.commit_message, 80)),
                esc(&d.commit_author),
                run = d.run_id.0,
            );
        }
        if list.is_empty() {
            body.push_str("<tr><td colspan=\"7\" class=\"muted\">no deployments</td></tr>");
        }
        body.push_str("</tbody></table><div class=\"pager\">");
        let env_q = env
            .as_ref()
            .map(|e| format!("env={}&amp;", url(e)))
            .unwrap_or_default();
        if before.is_some() {
            let _ = write!(
                body,
                "<a href=\"/deployments?{}\">← Newest</a>",
                env_q.trim_end_matches("&amp;")
            );
        }
        if list.len() == DEPLOYMENTS_PAGE
            && let Some(last) = list.last()
        {
            let _ = write!(
                body,
                "<a class=\"older\" href=\"/deployments?{env_q}before={}&amp;id={}\">Older →</a>",
                last.start_time,
                url(&last.deployment_id)
            );
        }
        body.push_str("</div></section>");
        Ok(("Deployments".into(), body, String::new()))
    })
    .await
}

fn dora_cards(m: &ferry_core::dora::Measures) -> String {
    let dur = |d: Option<std::time::Duration>| {
        d.map_or_else(|| "no data".to_string(), ferry_core::time::human)
    };
    let cards = [
        (
            "Deployment frequency",
            m.per_day
                .map_or_else(|| "no data".into(), |d| format!("{d:.2}/day")),
            m.per_week
                .map(|w| format!("{w:.1} per week · {} deployments", m.deployments))
                .unwrap_or_else(|| format!("{} deployments", m.deployments)),
        ),
        (
            "Lead time for changes",
            dur(m.lead_time_median),
            format!("median · p90 {}", dur(m.lead_time_p90)),
        ),
        (
            "Time to restore",
            dur(m.time_to_restore_median),
            format!("median · {} not restored", m.unrestored),
        ),
        (
            "Change failure rate",
            report::percent(m.change_failure_rate),
            format!("{} of {} deployments", m.change_failures, m.deployments),
        ),
        (
            "Deployment success rate",
            report::percent(m.success_rate),
            format!("{} of {} deployments", m.succeeded, m.deployments),
        ),
    ];
    let mut out = String::from("<div class=\"cards\">");
    for (name, value, note) in cards {
        let _ = write!(
            out,
            "<div class=\"card\"><span class=\"muted\">{}</span><b>{}</b><span class=\"muted\">{}</span></div>",
            esc(name),
            esc(&value),
            esc(&note)
        );
    }
    out.push_str("</div>");
    out
}

/// `GET /dora[?env=E&days=7|30|90]`.
async fn dora(State(state): State<Arc<AppState>>, q: Params) -> Response {
    let p = match query(q) {
        Ok(p) => p,
        Err(e) => return error_page(e.status, &state.pipeline.name, &e.message),
    };
    render(state, move |st| {
        let env = match p.get("env").filter(|e| !e.is_empty()) {
            Some(e) => {
                crate::recovery::known_environment(&st.pipeline, e)?;
                e.clone()
            }
            None => report::environment(&st.pipeline, None)?,
        };
        let days = match p.get("days") {
            None => 30,
            Some(d) => match d.parse::<u32>() {
                Ok(d) if WINDOWS.contains(&d) => d,
                _ => {
                    return Err(PageError::bad(format!(
                        "`days={d}`: the DORA page shows 7, 30 or 90 days (`ferry report --since` takes any window)"
                    )));
                }
            },
        };
        let now = now();
        // One read of the longest window serves all three.
        let samples = samples_90d(st, &env, now)?;
        let window = Window::last_days(now, days);
        let m = ferry_core::dora::measure(&samples, window);
        let per_day = ferry_core::dora::daily(&samples, window);
        let all: Vec<(u32, ferry_core::dora::Measures)> = WINDOWS
            .iter()
            .map(|d| (*d, ferry_core::dora::measure(&samples, Window::last_days(now, *d))))
            .collect();
        let mut body = format!("<h1>DORA measures · {}</h1><section><div class=\"tabs\">", esc(&env));
        for e in &st.pipeline.environments {
            let _ = write!(
                body,
                "<a href=\"/dora?env={}&amp;days={days}\"{}>{}</a>",
                url(&e.name),
                if e.name == env { " class=\"on\"" } else { "" },
                esc(&e.name)
            );
        }
        body.push_str(" · ");
        for d in WINDOWS {
            let _ = write!(
                body,
                "<a href=\"/dora?env={}&amp;days={d}\"{}>{d} days</a>",
                url(&env),
                if d == days { " class=\"on\"" } else { "" }
            );
        }
        let _ = write!(
            body,
            "</div><h2>Last {days} days</h2>{}<h2>Deployments per day <span class=\"muted\">(change failures in red)</span></h2>{}</section>",
            dora_cards(&m),
            charts::deployments_per_day(&per_day)
        );
        let cfr: Vec<(String, Option<f64>)> = all
            .iter()
            .map(|(d, m)| (format!("{d} days"), m.change_failure_rate))
            .collect();
        let ok: Vec<(String, Option<f64>)> = all
            .iter()
            .map(|(d, m)| (format!("{d} days"), m.success_rate))
            .collect();
        let _ = write!(
            body,
            "<section><h2>7 / 30 / 90 days</h2><div class=\"cards\"><div class=\"card\"><span class=\"muted\">Change failure rate</span>{}</div><div class=\"card\"><span class=\"muted\">Deployment success rate</span>{}</div></div>\
<table><thead><tr><th>Window</th><th>Deployments</th><th>Per day</th><th>Lead time (median / p90)</th><th>Time to restore</th></tr></thead><tbody>",
            charts::rates(&cfr, "#b42318"),
            charts::rates(&ok, "#16794c"),
        );
        for (d, m) in &all {
            let dur = |x: Option<std::time::Duration>| {
                x.map_or_else(|| "no data".to_string(), ferry_core::time::human)
            };
            let _ = write!(
                body,
                "<tr><td>{d} days</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
                m.deployments,
                m.per_day
                    .map_or_else(|| "no data".into(), |v| format!("{v:.2}")),
                esc(&dur(m.lead_time_median)),
                esc(&dur(m.lead_time_p90)),
                esc(&dur(m.time_to_restore_median)),
            );
        }
        body.push_str("</tbody></table><p class=\"muted\">Definitions: README, “DORA measures”. Lead time runs from the run's queueing (the push reaching ferry) to the deployment's end.</p></section>");
        Ok((format!("DORA · {env}"), body, String::new()))
    })
    .await
}

/// The HTML 404 of a path that is no page (asked by a browser).
pub fn not_found(state: &AppState, path: &str) -> Response {
    html::error_page(
        StatusCode::NOT_FOUND,
        &state.pipeline.name,
        &format!("there is no page at {path}"),
    )
}
