//! Live progress of a run for people: on a terminal a spinner line with the stage, step,
//! elapsed time and the step's last log line; otherwise (CI logs, pipes) plain
//! timestamped lines. Under `--json` the lines go to stderr so stdout stays parseable.

use crate::log::{Ctx, Level};
use ferry_core::events::EventKind;
use ferry_core::run::RunView;
use ferry_core::{Change, StepStatus, time::human};
use ferry_engine::ports::Observer;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Current {
    label: String,
    started: Option<Instant>,
    log: Option<PathBuf>,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    to_stderr: bool,
    current: Arc<Mutex<Current>>,
    stop: Arc<AtomicBool>,
    starts: Mutex<std::collections::HashMap<(usize, usize), Instant>>,
}

impl Progress {
    /// A spinner when stdout (or stderr under `--json`) is a terminal, plain lines
    /// otherwise.
    pub fn new(json: bool) -> Arc<Progress> {
        // JSON log lines are for machines: no spinner between them.
        let terminal = !crate::log::json()
            && if json {
                std::io::stderr().is_terminal()
            } else {
                std::io::stdout().is_terminal()
            };
        let current = Arc::new(Mutex::new(Current::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let bar = terminal.then(|| {
            let b = if json {
                ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr())
            } else {
                ProgressBar::new_spinner()
            };
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(100));
            b
        });
        let p = Arc::new(Progress {
            bar: bar.clone(),
            to_stderr: json,
            current: current.clone(),
            stop: stop.clone(),
            starts: Mutex::new(Default::default()),
        });
        if let Some(bar) = bar {
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(c) = current.lock()
                        && let Some(started) = c.started
                    {
                        let tail = c.log.as_ref().map(last_line).unwrap_or_default();
                        let mut msg = format!("{} · {}", c.label, human(started.elapsed()));
                        if !tail.is_empty() {
                            msg.push_str(" · ");
                            msg.push_str(&tail);
                        }
                        bar.set_message(msg);
                    }
                    std::thread::sleep(Duration::from_millis(150));
                }
            });
        }
        p
    }

    /// Prints a line above the spinner (or plainly).
    pub fn say(&self, text: &str) {
        self.say_ctx(Level::Info, &Ctx::default(), text);
    }

    /// Prints a log line about a run, environment or step (redacted; JSON under
    /// `--log-format json`).
    pub fn say_ctx(&self, level: Level, ctx: &Ctx, text: &str) {
        match &self.bar {
            Some(b) => b.println(crate::log::format(level, ctx, text)),
            None if self.to_stderr => crate::log::stderr(level, ctx, text),
            None => crate::log::stdout(level, ctx, text),
        }
    }

    pub fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Observer for Progress {
    fn changed(&self, run: &RunView, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Step {
                    stage,
                    step,
                    status,
                    log,
                    reason,
                    ..
                } => {
                    let Some(sv) = run.stages.get(*stage) else {
                        continue;
                    };
                    let Some(tv) = sv.steps.get(*step) else {
                        continue;
                    };
                    let label = format!("{}/{}", sv.name, tv.name);
                    let ctx = Ctx {
                        run: Some(run.id.0),
                        environment: (sv.name != "build").then(|| sv.name.clone()),
                        step: Some(tv.name.clone()),
                    };
                    match status {
                        StepStatus::Running => {
                            if let Ok(mut s) = self.starts.lock() {
                                s.insert((*stage, *step), Instant::now());
                            }
                            if let Ok(mut cur) = self.current.lock() {
                                *cur = Current {
                                    label: label.clone(),
                                    started: Some(Instant::now()),
                                    log: log.as_ref().map(PathBuf::from),
                                };
                            }
                            if self.bar.is_none() {
                                self.say_ctx(Level::Info, &ctx, &format!("  … {label}"));
                            }
                        }
                        StepStatus::Succeeded | StepStatus::Failed | StepStatus::Cancelled => {
                            let took = self
                                .starts
                                .lock()
                                .ok()
                                .and_then(|s| s.get(&(*stage, *step)).map(|t| human(t.elapsed())))
                                .unwrap_or_default();
                            let mark = match status {
                                StepStatus::Succeeded => "✓",
                                StepStatus::Cancelled => "⊘",
                                _ => "✗",
                            };
                            let mut l = format!("  {mark} {label:<28} {took}");
                            if let Some(r) = reason {
                                l.push_str(&format!("\n      {r}"));
                            }
                            if *status == StepStatus::Failed
                                && let Some(log) = log
                            {
                                l.push_str(&format!("\n      log: {log}"));
                            }
                            let level = if *status == StepStatus::Failed {
                                Level::Warn
                            } else {
                                Level::Info
                            };
                            self.say_ctx(level, &ctx, &l);
                        }
                        _ => {}
                    }
                }
                Change::Event(e) => match e.kind {
                    EventKind::StageStarted => {
                        self.say_ctx(Level::Info, &event_ctx(e), &format!("▸ {}", e.message))
                    }
                    EventKind::ApprovalRequested
                    | EventKind::ApprovalGranted
                    | EventKind::ApprovalRejected
                    | EventKind::ApprovalTimedOut
                    | EventKind::ApprovalReminder
                    | EventKind::ApprovalRefused
                    | EventKind::ApprovalVoided
                    | EventKind::GatePassed
                    | EventKind::GateFailed
                    | EventKind::ArtifactBuilt
                    | EventKind::DeploymentSucceeded
                    | EventKind::DeploymentFailed => {
                        let level = match e.kind {
                            EventKind::GateFailed
                            | EventKind::DeploymentFailed
                            | EventKind::ApprovalRejected
                            | EventKind::ApprovalTimedOut => Level::Warn,
                            _ => Level::Info,
                        };
                        self.say_ctx(level, &event_ctx(e), &format!("    {}", e.message))
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }

    fn note(&self, run: &RunView, message: &str) {
        self.say_ctx(Level::Info, &Ctx::run(run.id.0), &format!("    {message}"));
    }

    fn notice(&self, message: &str) {
        self.say(&format!("    {message}"));
    }

    fn rolled(&self, changes: &[Change]) {
        for c in changes {
            if let Change::Event(e) = c {
                let mark = match e.kind {
                    EventKind::RollbackSucceeded => "  ↺",
                    EventKind::RollbackFailed | EventKind::IncidentOpened => "  ✗",
                    _ => "  ↺",
                };
                let level = match e.kind {
                    EventKind::RollbackFailed | EventKind::IncidentOpened => Level::Error,
                    _ => Level::Warn,
                };
                self.say_ctx(level, &event_ctx(e), &format!("{mark} {}", e.message));
            }
        }
    }
}

/// The run and environment an event is about.
fn event_ctx(e: &ferry_core::Event) -> Ctx {
    Ctx {
        run: e.run.map(|r| r.0),
        environment: e.environment.clone(),
        step: None,
    }
}

/// The last non-empty line of a log file, shortened to fit a terminal line.
fn last_line(path: &PathBuf) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(512)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let clean: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
    let _ = std::io::stdout().flush();
    clean
}
