//! `GET /metrics`: the pipeline's metrics in the Prometheus text exposition format
//! (version 0.0.4), written by hand (a few lines; no client library).
//!
//! [`gather`] reads what is needed from the store (grouped counts from covering indexes,
//! one row per environment and alarm, the test results of one run), so a scrape stays
//! fast with 100 k deployments; [`render`] turns a [`MetricsInput`] into text, and is
//! pure so the tests can feed it anything.
//!
//! Like every `GET` of `ferry serve`, `/metrics` needs no token: it carries names,
//! versions and counts, never a secret; bind the server to loopback or a private network
//! (or put a proxy with authentication in front) if that is too much to show.

use super::{ApiResult, AppState, blocking};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use ferry_config::Pipeline;
use ferry_core::RunStatus;
use ferry_core::alarm::AlarmState;
use ferry_core::pipeline_alarm::RULES;
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{DURATION_BOUNDS_MS, MetricCounts, PortResult, Store};
use ferry_store::SqliteStore;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// How many of the newest runs are looked at for the latest test results.
const TEST_RUNS_LOOKED_AT: usize = 20;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything `/metrics` shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsInput {
    /// Deployment durations, rollbacks and runs, counted by the store.
    pub counts: MetricCounts,
    /// The bounds the histogram was counted with, in milliseconds (ascending).
    pub bounds_ms: Vec<i64>,
    /// Each environment of the pipeline (in order) and the version it runs, if any.
    pub versions: Vec<(String, Option<String>)>,
    /// The test results of the newest finished run that recorded some.
    pub tests: Option<TestRatios>,
    /// Each alarm (the configured ones, then the pipeline's own) and its last state
    /// (`None`: never evaluated, shown as INSUFFICIENT_DATA).
    pub alarms: Vec<(String, Option<AlarmState>)>,
    /// Notifications waiting in the outbox; the series is written only when known.
    pub outbox_pending: Option<u64>,
}

/// Test results of one run, per suite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestRatios {
    pub run: i64,
    /// Suite (`unit`, `integration`, `e2e`) → (passed, counted: passed + failed +
    /// errored; skipped tests do not count).
    pub suites: BTreeMap<String, (u64, u64)>,
}

/// Reads everything `/metrics` shows from the store.
pub fn gather(pipeline: &Pipeline, store: &SqliteStore) -> PortResult<MetricsInput> {
    let bounds_ms = DURATION_BOUNDS_MS.to_vec();
    let counts = store.metric_counts()?;
    let mut versions = Vec::new();
    for env in &pipeline.environments {
        let current = store.current_deployment(&env.name)?;
        versions.push((env.name.clone(), current.map(|d| d.version)));
    }
    let mut tests = None;
    for run in store.list_runs(TEST_RUNS_LOOKED_AT, false)? {
        if !run.status.is_terminal() {
            continue;
        }
        let results = store.test_results(run.id)?;
        if results.is_empty() {
            continue;
        }
        let mut suites: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for r in results {
            let e = suites.entry(r.suite.as_str().to_string()).or_default();
            e.0 += r.report.passed;
            e.1 += r.report.passed + r.report.failed + r.report.errored;
        }
        tests = Some(TestRatios {
            run: run.id.0,
            suites,
        });
        break;
    }
    let mut alarms = Vec::new();
    for a in &pipeline.alarms {
        alarms.push((a.name.clone(), store.alarm_state(&a.name)?.map(|s| s.0)));
    }
    for rule in RULES {
        // The pipeline's own alarms are OK until evaluated: no failure, no data needed.
        let state = store.alarm_state(rule.name)?.map(|s| s.0);
        alarms.push((rule.name.to_string(), Some(state.unwrap_or(AlarmState::Ok))));
    }
    let outbox_pending = Some(store.outbox_counts()?.iter().map(|c| c.pending).sum());
    Ok(MetricsInput {
        counts,
        bounds_ms,
        versions,
        tests,
        alarms,
        outbox_pending,
    })
}

/// The run results `ferry_pipeline_runs_total` always shows (0 when none), so a rate
/// over them is defined from the first scrape.
const RESULTS: &[RunStatus] = &[
    RunStatus::Succeeded,
    RunStatus::Failed,
    RunStatus::Cancelled,
    RunStatus::Superseded,
];

/// The text exposition of `input`.
pub fn render(input: &MetricsInput) -> String {
    let mut o = String::new();

    header(
        &mut o,
        "ferry_deployment_duration_seconds",
        "histogram",
        "Time from a deployment's start to its end (deploy, tests and monitor window), per environment.",
    );
    for (env, h) in &input.counts.durations {
        let env = escape(env);
        for (bound, n) in input.bounds_ms.iter().zip(&h.buckets) {
            let _ = writeln!(
                o,
                "ferry_deployment_duration_seconds_bucket{{environment=\"{env}\",le=\"{}\"}} {n}",
                seconds(*bound)
            );
        }
        let _ = writeln!(
            o,
            "ferry_deployment_duration_seconds_bucket{{environment=\"{env}\",le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            o,
            "ferry_deployment_duration_seconds_sum{{environment=\"{env}\"}} {}",
            seconds(h.sum_ms)
        );
        let _ = writeln!(
            o,
            "ferry_deployment_duration_seconds_count{{environment=\"{env}\"}} {}",
            h.count
        );
    }

    header(
        &mut o,
        "ferry_rollbacks_total",
        "counter",
        "Rollbacks, per environment and the level they reached (stage, full).",
    );
    for ((env, level), n) in &input.counts.rollbacks {
        let _ = writeln!(
            o,
            "ferry_rollbacks_total{{environment=\"{}\",level=\"{}\"}} {n}",
            escape(env),
            escape(level)
        );
    }

    header(
        &mut o,
        "ferry_test_success_ratio",
        "gauge",
        "Passed over run (passed, failed, errored) test cases per suite, in the newest finished run that recorded test results.",
    );
    if let Some(t) = &input.tests {
        for (suite, (passed, counted)) in &t.suites {
            if *counted > 0 {
                let _ = writeln!(
                    o,
                    "ferry_test_success_ratio{{suite=\"{}\"}} {}",
                    escape(suite),
                    number(*passed as f64 / *counted as f64)
                );
            }
        }
    }

    header(
        &mut o,
        "ferry_pipeline_runs_total",
        "counter",
        "Finished runs, per result (succeeded, failed, cancelled, superseded).",
    );
    for r in RESULTS {
        let n = input.counts.runs.get(r.as_str()).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "ferry_pipeline_runs_total{{result=\"{}\"}} {n}",
            r.as_str()
        );
    }

    header(
        &mut o,
        "ferry_environment_version_info",
        "gauge",
        "1 for the version each environment runs (its newest deployment not rolled back).",
    );
    for (env, version) in &input.versions {
        if let Some(v) = version {
            let _ = writeln!(
                o,
                "ferry_environment_version_info{{environment=\"{}\",version=\"{}\"}} 1",
                escape(env),
                escape(v)
            );
        }
    }

    header(
        &mut o,
        "ferry_alarm_state",
        "gauge",
        "Each alarm's last state: 0 OK, 1 ALARM, 2 INSUFFICIENT_DATA (also never evaluated). ferry.failed_runs and ferry.rollbacks are the alarms on the pipeline itself.",
    );
    for (name, state) in &input.alarms {
        let v = match state {
            Some(AlarmState::Ok) => 0,
            Some(AlarmState::Alarm) => 1,
            Some(AlarmState::InsufficientData) | None => 2,
        };
        let _ = writeln!(o, "ferry_alarm_state{{alarm=\"{}\"}} {v}", escape(name));
    }

    if let Some(n) = input.outbox_pending {
        header(
            &mut o,
            "ferry_outbox_pending",
            "gauge",
            "Notifications waiting in the outbox for delivery (not yet delivered nor dead).",
        );
        let _ = writeln!(o, "ferry_outbox_pending {n}");
    }
    o
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        o,
        "# HELP {name} {}",
        help.replace('\\', "\\\\").replace('\n', "\\n")
    );
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A label value as the format wants it: backslash, double quote and newline escaped.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Milliseconds as seconds, without a trailing `.0` for whole numbers.
fn seconds(ms: i64) -> String {
    number(ms as f64 / 1000.0)
}

fn number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> ApiResult {
    let input = blocking(move || Ok(gather(&state.pipeline, &state.store)?)).await?;
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        render(&input),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::ports::DurationHistogram;

    fn sample() -> MetricsInput {
        let bounds_ms = DURATION_BOUNDS_MS.to_vec();
        let mut counts = MetricCounts::default();
        let mut h = DurationHistogram::default();
        h.observe(500);
        h.observe(4_000_500);
        counts.durations.insert("staging".into(), h);
        counts
            .rollbacks
            .insert(("prod \"eu\"".into(), "stage".into()), 2);
        counts.runs.insert("failed".into(), 4);
        counts.runs.insert("queued".into(), 1);
        MetricsInput {
            counts,
            bounds_ms,
            versions: vec![
                ("test".into(), Some("abc123".into())),
                ("production".into(), None),
            ],
            tests: Some(TestRatios {
                run: 7,
                suites: [("unit".to_string(), (9, 12)), ("e2e".to_string(), (0, 0))].into(),
            }),
            alarms: vec![
                ("api-5xx".into(), None),
                ("ferry.failed_runs".into(), Some(AlarmState::Alarm)),
            ],
            outbox_pending: None,
        }
    }

    #[test]
    fn renders_every_family_with_help_and_type() {
        let text = render(&sample());
        for name in [
            "ferry_deployment_duration_seconds",
            "ferry_rollbacks_total",
            "ferry_test_success_ratio",
            "ferry_pipeline_runs_total",
            "ferry_environment_version_info",
            "ferry_alarm_state",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}\n{text}");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}\n{text}");
        }
        assert!(!text.contains("ferry_outbox_pending"), "{text}");
        assert!(text.contains(
            "ferry_deployment_duration_seconds_bucket{environment=\"staging\",le=\"1\"} 1\n"
        ));
        assert!(text.contains(
            "ferry_deployment_duration_seconds_bucket{environment=\"staging\",le=\"+Inf\"} 2\n"
        ));
        assert!(
            text.contains("ferry_deployment_duration_seconds_sum{environment=\"staging\"} 4001\n")
        );
        assert!(text.contains(
            "ferry_deployment_duration_seconds_bucket{environment=\"staging\",le=\"3600\"} 1\n"
        ));
        assert!(text.contains(
            "ferry_rollbacks_total{environment=\"prod \\\"eu\\\"\",level=\"stage\"} 2\n"
        ));
        assert!(text.contains("ferry_test_success_ratio{suite=\"unit\"} 0.75\n"));
        assert!(!text.contains("suite=\"e2e\""));
        assert!(text.contains("ferry_pipeline_runs_total{result=\"failed\"} 4\n"));
        assert!(text.contains("ferry_pipeline_runs_total{result=\"succeeded\"} 0\n"));
        assert!(!text.contains("result=\"queued\""));
        assert!(text.contains(
            "ferry_environment_version_info{environment=\"test\",version=\"abc123\"} 1\n"
        ));
        assert!(text.contains("ferry_alarm_state{alarm=\"api-5xx\"} 2\n"));
        assert!(text.contains("ferry_alarm_state{alarm=\"ferry.failed_runs\"} 1\n"));
    }

    #[test]
    fn the_outbox_series_appears_when_known() {
        let mut input = sample();
        input.outbox_pending = Some(3);
        let text = render(&input);
        assert!(text.contains("# TYPE ferry_outbox_pending gauge\nferry_outbox_pending 3\n"));
    }
}
