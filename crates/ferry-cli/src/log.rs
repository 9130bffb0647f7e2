//! Every log line ferry prints — run progress, server logs, warnings and errors; not a
//! command's `--json` data — goes through here, so that:
//! - with `--log-format json` (or `FERRY_LOG_FORMAT=json`) each is one JSON object per
//!   line: `timestamp` (RFC 3339 UTC, milliseconds), `level` (`info`, `warn`, `error`),
//!   `message`, and `run`, `environment`, `step` when known (seed §9.4);
//! - the secrets of the configuration are replaced by `***` first (DESIGN invariant 8).
//!
//! The secrets are collected once the pipeline file is read ([`install`]): the values of
//! the environment variables it names (`secrets:` and the ones ferry reads itself), and
//! every step `env` value whose name looks secret (`ferry_core::redact::looks_secret`).
//! The same redactor is handed to the store (events, reasons) and to the local executor
//! (step logs), so every reader is covered.

use ferry_core::Redactor;
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static REDACTOR: RwLock<Option<Redactor>> = RwLock::new(None);

/// Chooses the format for the rest of the process.
pub fn set_format(f: LogFormat) {
    JSON.store(f == LogFormat::Json, Ordering::SeqCst);
}

/// Whether log lines are JSON.
pub fn json() -> bool {
    JSON.load(Ordering::SeqCst)
}

/// The process's redactor (empty until [`install`]).
pub fn redactor() -> Redactor {
    REDACTOR
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

/// Whether [`install`] ran.
pub fn installed() -> bool {
    INSTALLED.load(Ordering::SeqCst)
}

/// Collects the secrets of a pipeline and this process's environment, and hands them to
/// the log, the local executor (step logs) and every store opened afterwards.
pub fn install(p: &ferry_config::Pipeline) {
    let mut values: Vec<String> = p
        .secret_env_names()
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .collect();
    values.extend(p.secret_step_values(ferry_core::redact::looks_secret));
    values.extend(p.secret_config_values());
    add_secrets(values);
    INSTALLED.store(true, Ordering::SeqCst);
}

/// Adds secrets read elsewhere (token files).
pub fn add_secrets<I, S>(values: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let r = redactor().with(values);
    ferry_local::set_redactor(r.clone());
    *REDACTOR.write().unwrap_or_else(PoisonError::into_inner) = Some(r);
}

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What a line is about, when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ctx {
    pub run: Option<i64>,
    pub environment: Option<String>,
    pub step: Option<String>,
}

impl Ctx {
    /// About a run.
    pub fn run(id: i64) -> Ctx {
        Ctx {
            run: Some(id),
            ..Ctx::default()
        }
    }
}

/// The line to print for a message (without the newline): the text redacted, or its
/// JSON object.
pub fn format(level: Level, ctx: &Ctx, text: &str) -> String {
    let r = redactor();
    let text = r.redact(text);
    if !json() {
        return text;
    }
    let mut o = Map::new();
    o.insert("timestamp".into(), Value::String(now_rfc3339()));
    o.insert("level".into(), Value::String(level.as_str().into()));
    o.insert("message".into(), Value::String(tidy(&text)));
    if let Some(run) = ctx.run {
        o.insert("run".into(), Value::from(run));
    }
    if let Some(e) = &ctx.environment {
        o.insert("environment".into(), Value::String(r.redact(e)));
    }
    if let Some(s) = &ctx.step {
        o.insert("step".into(), Value::String(r.redact(s)));
    }
    Value::Object(o).to_string()
}

/// A progress line's text without the leading indentation and marks people see.
fn tidy(text: &str) -> String {
    text.trim_start_matches([' ', '▸', '…', '↺'])
        .trim_start()
        .to_string()
}

/// Prints a log line on stderr.
pub fn stderr(level: Level, ctx: &Ctx, text: &str) {
    eprintln!("{}", format(level, ctx, text));
}

/// Prints a log line on stdout (progress without `--json`, the server's address).
pub fn stdout(level: Level, ctx: &Ctx, text: &str) {
    crate::output::line(format(level, ctx, text));
}

fn now_rfc3339() -> String {
    let now = ferry_engine::ports::Clock::now(&crate::context::SystemClock);
    let base = ferry_core::events::iso8601(now);
    // `…:SSZ` → `…:SS.mmmZ`.
    format!(
        "{}.{:03}Z",
        base.trim_end_matches('Z'),
        now.millis().rem_euclid(1000)
    )
}

/// A log line on stderr: `elog!(Warn, "…", args)` or `elog!(Info, run = id; "…", args)`.
#[macro_export]
macro_rules! elog {
    ($lvl:ident, run = $run:expr; $($arg:tt)+) => {
        $crate::log::stderr($crate::log::Level::$lvl, &$crate::log::Ctx::run($run), &format!($($arg)+))
    };
    ($lvl:ident, $($arg:tt)+) => {
        $crate::log::stderr($crate::log::Level::$lvl, &$crate::log::Ctx::default(), &format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_drops_progress_marks() {
        assert_eq!(tidy("  … build/unit"), "build/unit");
        assert_eq!(tidy("▸ stage test"), "stage test");
        assert_eq!(tidy("  ✓ build/unit"), "✓ build/unit");
    }
}
