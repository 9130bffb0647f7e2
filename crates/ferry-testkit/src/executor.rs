//! A scripted [`Executor`]: the outcome of each command is looked up by its text. Time
//! passes on the [`FakeClock`] instead of a process running, and the step's reports are
//! "written" into [`FakeFiles`].

use crate::clock::FakeClock;
use crate::files::FakeFiles;
use ferry_core::gates::ExitObservation;
use ferry_engine::ports::{Clock, Executor, StepExit, StepRequest};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Something to do when a command runs (set the cancel flag, decide an approval …).
pub type Action = Arc<dyn Fn() + Send + Sync>;

/// What running one command does: how it ends, how long it takes on the fake clock, and
/// which report bytes it writes.
#[derive(Clone)]
pub struct Outcome {
    pub how: ExitObservation,
    pub delay: Duration,
    /// Written to every `reports.junit` path of the step.
    pub junit: Option<Vec<u8>>,
    /// Written to the step's `reports.coverage` path.
    pub coverage: Option<Vec<u8>>,
    /// Written at these paths (relative to the checkout).
    pub files: Vec<(String, Vec<u8>)>,
    /// Run while the command "runs", before the report files are written.
    pub actions: Vec<Action>,
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("how", &self.how)
            .field("delay", &self.delay)
            .field("junit", &self.junit.as_ref().map(Vec::len))
            .field("coverage", &self.coverage.as_ref().map(Vec::len))
            .field(
                "files",
                &self.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("actions", &self.actions.len())
            .finish()
    }
}

impl Outcome {
    fn with(how: ExitObservation) -> Self {
        Outcome {
            how,
            delay: Duration::ZERO,
            junit: None,
            coverage: None,
            files: Vec::new(),
            actions: Vec::new(),
        }
    }

    /// Exits with `code`.
    pub fn exit(code: i32) -> Self {
        Self::with(ExitObservation::Code(code))
    }

    /// Killed by signal `s`.
    pub fn signal(s: i32) -> Self {
        Self::with(ExitObservation::Signal(s))
    }

    /// Runs into its timeout (and takes that long).
    pub fn timed_out(after: Duration) -> Self {
        Self::with(ExitObservation::TimedOut {
            after_secs: after.as_secs(),
        })
        .taking(after)
    }

    /// Could not start (`/bin/sh` missing …).
    pub fn not_started(why: &str) -> Self {
        Self::with(ExitObservation::NotStarted(why.to_string()))
    }

    /// Takes `d` of fake time.
    pub fn taking(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Writes `bytes` as the step's JUnit report(s).
    pub fn junit(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.junit = Some(bytes.into());
        self
    }

    /// Writes `bytes` as the step's coverage report.
    pub fn coverage(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.coverage = Some(bytes.into());
        self
    }

    /// Writes `bytes` at `path`, relative to the checkout.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_string(), bytes.into()));
        self
    }

    /// Does `f` while the command runs.
    pub fn also(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.actions.push(Arc::new(f));
        self
    }
}

/// Where a step writes its reports (from the pipeline file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportPaths {
    pub junit: Vec<String>,
    pub coverage: Option<String>,
}

#[derive(Default)]
struct Inner {
    always: BTreeMap<String, Outcome>,
    per_commit: BTreeMap<(String, String), Outcome>,
    once: BTreeMap<String, VecDeque<Outcome>>,
    reports: BTreeMap<String, ReportPaths>,
    default: Option<Outcome>,
    calls: Vec<StepRequest>,
}

/// An [`Executor`] that never starts a process. The outcome of a command is, in order:
/// the next one queued with [`ScriptedExecutor::script_once`], the one set for the
/// run's commit with [`ScriptedExecutor::script_for_commit`], the one set with
/// [`ScriptedExecutor::script`], the default (exit 0 unless changed). Every request is
/// recorded (commands, environment variables: DESIGN invariant 7 can be checked on them).
pub struct ScriptedExecutor {
    clock: Arc<FakeClock>,
    files: Arc<FakeFiles>,
    inner: Mutex<Inner>,
}

impl ScriptedExecutor {
    pub fn new(clock: Arc<FakeClock>, files: Arc<FakeFiles>) -> Self {
        ScriptedExecutor {
            clock,
            files,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every run of `command` has `outcome` (unless a queued one comes first).
    pub fn script(&self, command: &str, outcome: Outcome) {
        self.lock().always.insert(command.to_string(), outcome);
    }

    /// Every run of `command` for commit `sha` (its `FERRY_COMMIT_SHA`) has `outcome`:
    /// several runs driven at once can each have their own script.
    pub fn script_for_commit(&self, sha: &str, command: &str, outcome: Outcome) {
        self.lock()
            .per_commit
            .insert((sha.to_string(), command.to_string()), outcome);
    }

    /// The next run of `command` has `outcome`; queued after earlier ones.
    pub fn script_once(&self, command: &str, outcome: Outcome) {
        self.lock()
            .once
            .entry(command.to_string())
            .or_default()
            .push_back(outcome);
    }

    /// The outcome of commands nobody scripted (exit 0 at first).
    pub fn default_outcome(&self, outcome: Outcome) {
        self.lock().default = Some(outcome);
    }

    /// Where `command` writes its reports (the [`Sim`](crate::Sim) sets this from the
    /// pipeline file).
    pub fn reports_of(&self, command: &str, paths: ReportPaths) {
        self.lock().reports.insert(command.to_string(), paths);
    }

    /// Every request, in order.
    pub fn calls(&self) -> Vec<StepRequest> {
        self.lock().calls.clone()
    }

    /// How many times `command` ran.
    pub fn runs_of(&self, command: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.command == command)
            .count()
    }
}

/// A concrete file name for a report pattern that may be a glob.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("**/", "")
        .replace('*', "report")
        .replace('?', "x")
}

impl Executor for ScriptedExecutor {
    fn run(&self, req: &StepRequest) -> StepExit {
        let (outcome, paths) = {
            let mut g = self.lock();
            g.calls.push(req.clone());
            let queued = g.once.get_mut(&req.command).and_then(VecDeque::pop_front);
            let sha = req.env.get("FERRY_COMMIT_SHA").cloned().unwrap_or_default();
            let outcome = queued
                .or_else(|| g.per_commit.get(&(sha, req.command.clone())).cloned())
                .or_else(|| g.always.get(&req.command).cloned())
                .or_else(|| g.default.clone())
                .unwrap_or_else(|| Outcome::exit(0));
            (
                outcome,
                g.reports.get(&req.command).cloned().unwrap_or_default(),
            )
        };
        if !outcome.delay.is_zero() {
            self.clock.sleep(outcome.delay);
        }
        for a in &outcome.actions {
            a();
        }
        let started = !matches!(outcome.how, ExitObservation::NotStarted(_));
        if started {
            if let Some(bytes) = &outcome.junit {
                for p in &paths.junit {
                    self.files.write(req.cwd.join(concrete(p)), bytes.clone());
                }
            }
            if let (Some(bytes), Some(p)) = (&outcome.coverage, &paths.coverage) {
                self.files.write(req.cwd.join(concrete(p)), bytes.clone());
            }
            for (p, bytes) in &outcome.files {
                self.files
                    .write(req.cwd.join(PathBuf::from(p)), bytes.clone());
            }
        }
        StepExit {
            how: outcome.how,
            duration: outcome.delay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::ports::ReportFiles;
    use std::path::Path;

    fn req(cmd: &str) -> StepRequest {
        StepRequest {
            command: cmd.to_string(),
            cwd: PathBuf::from("/w/run-1"),
            env: BTreeMap::new(),
            timeout: Duration::from_secs(60),
            log: PathBuf::from("/l/x.log"),
        }
    }

    #[test]
    fn queued_then_scripted_then_default() {
        let clock = Arc::new(FakeClock::new());
        let files = Arc::new(FakeFiles::new());
        let x = ScriptedExecutor::new(clock.clone(), files.clone());
        x.script("t", Outcome::exit(1));
        x.script_once("t", Outcome::exit(2).taking(Duration::from_secs(3)));
        x.reports_of(
            "t",
            ReportPaths {
                junit: vec!["reports/*.xml".into()],
                coverage: Some("lcov.info".into()),
            },
        );
        let before = clock.now();
        assert_eq!(x.run(&req("t")).how, ExitObservation::Code(2));
        assert_eq!(clock.now().since(before), Duration::from_secs(3));
        let e = x.run(&req("t").clone());
        assert_eq!(e.how, ExitObservation::Code(1));
        assert_eq!(x.run(&req("other")).how, ExitObservation::Code(0));
        assert_eq!(x.runs_of("t"), 2);

        x.script("r", Outcome::exit(0).junit(b"<x/>".to_vec()));
        x.reports_of(
            "r",
            ReportPaths {
                junit: vec!["reports/*.xml".into()],
                coverage: None,
            },
        );
        x.run(&req("r"));
        assert_eq!(
            files
                .read(Path::new("/w/run-1"), "reports/*.xml")
                .map(|v| v.len()),
            Ok(1)
        );
    }
}
