//! The simulation: an [`Engine`] wired from a `ferry.yml` text and the fakes of this
//! crate, so an engine test reads like a story:
//!
//! ```
//! use ferry_testkit::{Outcome, Sim, junit, lcov, pipelines};
//!
//! let sim = Sim::new(pipelines::SHOP);
//! sim.executor.script("./ci/unit.sh", Outcome::exit(0).junit(junit(12, 0)).coverage(lcov(85.0)));
//! sim.approve_after("production", std::time::Duration::from_secs(60));
//! let view = sim.run("abc123");
//! assert_eq!(view.status.as_str(), "succeeded");
//! ```

use crate::artifacts::FakeArtifacts;
use crate::clock::{FakeClock, Ticks};
use crate::deployer::{FakeDeployer, Timeline};
use crate::executor::{Outcome, ReportPaths, ScriptedExecutor};
use crate::files::{FakeFiles, junit, lcov};
use crate::liveness::FakeLiveness;
use crate::observer::RecordingObserver;
use crate::probe::FakeProbe;
use crate::source::FakeSource;
use crate::store::MemoryStore;
use ferry_config::Pipeline;
use ferry_core::approval::Decision;
use ferry_core::run::{Run, RunView};
use ferry_core::{DeploymentRecord, Event, EventKind, RunId, RunStatus, StageStatus, StepStatus};
use ferry_engine::ports::{Clock, PortResult, Store};
use ferry_engine::{Engine, Layout, Ports, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

/// How a scripted person decides one run's approval (see [`Sim::decide_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How long after the run started waiting.
    pub after: Duration,
    pub approved: bool,
    pub reason: Option<String>,
}

/// One simulated world: a pipeline, the fakes behind every port, and the knobs of the
/// engine. Every part is public so a test can script faults and inspect outcomes; the
/// parts are shared (`Arc`), so several runs may be driven at once from several threads
/// on one `Sim` (they share the store, the clock, the deployers and their timeline).
///
/// Out of the box every command exits 0 after no time, and a step that declares reports
/// writes a passing JUnit report (one test) and 100 % coverage; every deployer succeeds
/// after 1 s; every alarm is healthy; nobody decides approvals (they time out).
pub struct Sim {
    pub pipeline: Pipeline,
    pub clock: Arc<FakeClock>,
    pub ticks: Arc<Ticks>,
    pub store: Arc<MemoryStore>,
    pub source: Arc<FakeSource>,
    pub files: Arc<FakeFiles>,
    pub executor: Arc<ScriptedExecutor>,
    pub artifacts: Arc<FakeArtifacts>,
    pub timeline: Arc<Timeline>,
    pub probe: Arc<FakeProbe>,
    pub observer: Arc<RecordingObserver>,
    /// Which lease and rollback holders are known to be gone (none at first).
    pub liveness: Arc<FakeLiveness>,
    /// The security gate's scanner: what it reports is scripted.
    pub scanner: Arc<FakeScanner>,
    /// The infrastructure comparison: its verdicts are scripted per commit.
    pub infra: Arc<FakeInfra>,
    /// The engine's cancel flag (what Ctrl-C sets).
    pub cancel: Arc<AtomicBool>,
    /// The engine's knobs: production defaults, holder `sim`.
    pub settings: Settings,
    pub layout: Layout,
    deployers: BTreeMap<String, FakeDeployer>,
    factory: crate::deployer::FakeDeployers,
    /// The pipeline file's text (recorded in release sets).
    text: String,
    /// Engines built so far (each gets its own outside-a-run lease id).
    engines: AtomicI64,
}

impl Sim {
    /// A world for the pipeline in `yaml`.
    ///
    /// # Panics
    /// When the pipeline does not parse: the diagnostics are the panic message.
    pub fn new(yaml: &str) -> Sim {
        let text = yaml.to_string();
        let pipeline = match ferry_config::parse(yaml, "ferry.yml") {
            Ok(p) => p,
            Err(diags) => {
                let text: Vec<String> = diags.iter().map(|d| format!("{d:?}")).collect();
                panic!(
                    "the simulated pipeline does not parse:\n{}",
                    text.join("\n")
                );
            }
        };
        let clock = Arc::new(FakeClock::new());
        let ticks = Arc::new(Ticks::new());
        let files = Arc::new(FakeFiles::new());
        let executor = Arc::new(ScriptedExecutor::new(clock.clone(), files.clone()));
        let timeline = Arc::new(Timeline::new(ticks.clone()));
        let steps = pipeline
            .build
            .steps
            .iter()
            .chain(pipeline.environments.iter().flat_map(|e| e.tests.iter()));
        for s in steps {
            let paths = ReportPaths {
                junit: s.reports.junit.clone(),
                coverage: s.reports.coverage.clone(),
            };
            if !paths.junit.is_empty() || paths.coverage.is_some() {
                executor.script(
                    &s.run,
                    Outcome::exit(0).junit(junit(1, 0)).coverage(lcov(100.0)),
                );
            }
            executor.reports_of(&s.run, paths);
        }
        let mut deployers = BTreeMap::new();
        for e in &pipeline.environments {
            let d = FakeDeployer::new(&e.name, clock.clone(), timeline.clone());
            deployers.insert(e.name.clone(), d);
        }
        let factory = crate::deployer::FakeDeployers(deployers.clone());
        Sim {
            pipeline,
            store: Arc::new(MemoryStore::with_ticks(ticks.clone())),
            source: Arc::new(FakeSource::new()),
            artifacts: Arc::new(FakeArtifacts::new()),
            probe: Arc::new(FakeProbe::new(clock.clone())),
            observer: Arc::new(RecordingObserver::new()),
            liveness: Arc::new(FakeLiveness::new()),
            scanner: Arc::new(FakeScanner::default()),
            infra: Arc::new(FakeInfra::default()),
            cancel: Arc::new(AtomicBool::new(false)),
            settings: Settings {
                holder: "sim".to_string(),
                ..Settings::default()
            },
            layout: Layout {
                project: PathBuf::from("/sim"),
                work: PathBuf::from("/sim/work"),
                logs: PathBuf::from("/sim/logs"),
            },
            clock,
            ticks,
            files,
            executor,
            timeline,
            deployers,
            factory,
            text,
            engines: AtomicI64::new(0),
        }
    }

    /// The deployer of an environment.
    ///
    /// # Panics
    /// When the pipeline has no such environment.
    pub fn deployer(&self, environment: &str) -> &FakeDeployer {
        match self.deployers.get(environment) {
            Some(d) => d,
            None => panic!("the simulated pipeline has no environment `{environment}`"),
        }
    }

    /// The engine over this world's fakes (cheap: build one per run). Each engine is a
    /// process of its own: it takes leases outside a run under its own negative run id
    /// (`Settings::outside_run`), unless the world's settings name one.
    pub fn engine(&self) -> Engine<'_> {
        let mut settings = self.settings.clone();
        if settings.outside_run == Settings::default().outside_run {
            let n = self.engines.fetch_add(1, Ordering::SeqCst);
            settings.outside_run = RunId(-1 - n);
        }
        Engine {
            pipeline: &self.pipeline,
            pipeline_text: &self.text,
            ports: Ports {
                store: &*self.store,
                clock: &*self.clock,
                source: &*self.source,
                executor: &*self.executor,
                artifacts: &*self.artifacts,
                reports: &*self.files,
                probe: &*self.probe,
                observer: &*self.observer,
                deployers: &self.factory,
                liveness: &*self.liveness,
                scanner: &*self.scanner,
                infra: &*self.infra,
            },
            layout: self.layout.clone(),
            settings,
            cancel: &self.cancel,
        }
    }

    /// Resolves `rev` (it must be a known commit) and records a queued run.
    pub fn queue(&self, rev: &str) -> PortResult<Run> {
        self.engine().queue(rev, "sim", "sim")
    }

    /// Queues and drives a run of `rev`, adding `rev` as a commit first if the source
    /// does not know it. Errors are the engine's (the store's).
    pub fn try_run(&self, rev: &str) -> PortResult<RunView> {
        self.source.ensure(rev);
        let engine = self.engine();
        let run = engine.queue(rev, "sim", "sim")?;
        engine.drive(run)
    }

    /// Queues and drives a hotfix run of `rev` (`ferry run --hotfix`). Errors are the
    /// engine's: a permanent one when the pipeline does not allow hotfixes.
    pub fn try_run_hotfix(&self, rev: &str) -> PortResult<RunView> {
        self.source.ensure(rev);
        let engine = self.engine();
        let run = engine.queue_hotfix(rev, "sim", "sim")?;
        engine.drive(run)
    }

    /// `by` decides (approves, or rejects with a reason) every run that waits for
    /// approval to deploy to `environment`, `after` it started waiting, once per run, for
    /// the artifact the run built. For N-of-M rules: several people, each their own
    /// delay.
    pub fn decide_as(&self, environment: &str, by: &str, after: Duration, approved: bool) {
        let store = self.store.clone();
        let env = environment.to_string();
        let by = by.to_string();
        self.clock.on_advance(move |now| {
            let Ok(waiting) = store.list_runs(usize::MAX, true) else {
                return;
            };
            for run in waiting {
                let since = run
                    .stages
                    .iter()
                    .find(|s| s.name == env && s.status == StageStatus::AwaitingApproval)
                    .and_then(|s| {
                        s.steps
                            .iter()
                            .find(|t| t.kind == "approval" && t.status == StepStatus::Running)
                    })
                    .and_then(|t| t.started_at);
                let Some(since) = since else { continue };
                let decided = store
                    .approvals(run.id, &env)
                    .map(|ds| ds.iter().any(|d| d.by == by))
                    .unwrap_or(true);
                if now < since.plus(after) || decided {
                    continue;
                }
                let d = Decision {
                    approved,
                    by: by.clone(),
                    reason: (!approved).then(|| format!("{by} says no")),
                    at: now,
                    digest: run.artifact.as_ref().map(|a| a.digest.clone()),
                    void: None,
                };
                let _ = store.decide(run.id, &env, &d);
            }
        });
    }

    /// [`Sim::try_run`], panicking on an engine error.
    ///
    /// # Panics
    /// When the engine returns an error.
    pub fn run(&self, rev: &str) -> RunView {
        match self.try_run(rev) {
            Ok(v) => v,
            Err(e) => panic!(
                "the simulated run of {rev} failed with an engine error: {e} ({:?})",
                e.kind
            ),
        }
    }

    /// A person approves every run that waits for approval to deploy to `environment`,
    /// `after` it started waiting (through [`Store::decide`], at the first move of the
    /// clock after that).
    pub fn approve_after(&self, environment: &str, after: Duration) {
        self.decide_after(environment, after, true, None);
    }

    /// A person rejects, with `reason`, every run that waits for approval to deploy to
    /// `environment`, `after` it started waiting.
    pub fn reject_after(&self, environment: &str, after: Duration, reason: &str) {
        self.decide_after(environment, after, false, Some(reason.to_string()));
    }

    fn decide_after(
        &self,
        environment: &str,
        after: Duration,
        approved: bool,
        reason: Option<String>,
    ) {
        self.decide_with(environment, move |_| {
            Some(Verdict {
                after,
                approved,
                reason: reason.clone(),
            })
        });
    }

    /// A person decides each run that waits for approval to deploy to `environment` as
    /// `decide` says for that run (`None`: nobody decides it), the verdict's `after` from
    /// when it started waiting. Lets each run of a world get its own decision.
    pub fn decide_with(
        &self,
        environment: &str,
        decide: impl Fn(&RunView) -> Option<Verdict> + Send + Sync + 'static,
    ) {
        let store = self.store.clone();
        let env = environment.to_string();
        self.clock.on_advance(move |now| {
            let Ok(waiting) = store.list_runs(usize::MAX, true) else {
                return;
            };
            for run in waiting {
                let since = run
                    .stages
                    .iter()
                    .find(|s| s.name == env && s.status == StageStatus::AwaitingApproval)
                    .and_then(|s| {
                        s.steps
                            .iter()
                            .find(|t| t.kind == "approval" && t.status == StepStatus::Running)
                    })
                    .and_then(|t| t.started_at);
                let Some(since) = since else { continue };
                let Some(v) = decide(&run) else { continue };
                if now < since.plus(v.after)
                    || !matches!(store.approvals(run.id, &env), Ok(v) if v.is_empty())
                {
                    continue;
                }
                let d = Decision {
                    approved: v.approved,
                    by: "approver@example.com".to_string(),
                    reason: v.reason,
                    at: now,
                    digest: run.artifact.as_ref().map(|a| a.digest.clone()),
                    void: None,
                };
                // A Conflict here means someone decided first; that is fine.
                let _ = store.decide(run.id, &env, &d);
            }
        });
    }

    /// Sets the cancel flag when the fake clock reaches `after` from now.
    pub fn cancel_after(&self, after: Duration) {
        let flag = self.cancel.clone();
        self.clock.at(self.clock.now().plus(after), move || {
            flag.store(true, Ordering::SeqCst)
        });
    }

    /// Whether the cancel flag is set.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// The events of a run, in order.
    pub fn events(&self, run: RunId) -> Vec<Event> {
        self.store
            .all_events()
            .into_iter()
            .filter(|e| e.event.run == Some(run))
            .map(|e| e.event)
            .collect()
    }

    /// The kinds of the events of a run, in order.
    pub fn event_kinds(&self, run: RunId) -> Vec<EventKind> {
        self.events(run).into_iter().map(|e| e.kind).collect()
    }

    /// The deployment records of a run, in the order they started.
    pub fn deployments_of(&self, run: RunId) -> Vec<DeploymentRecord> {
        self.store
            .all_deployments()
            .into_iter()
            .filter(|d| d.record.run_id == run)
            .map(|d| d.record)
            .collect()
    }

    /// The names of the environments a run's `deploy` calls went to, successful or not,
    /// in order (rollbacks are not deployments of the run).
    pub fn deployed_envs(&self, run: RunId) -> Vec<String> {
        self.timeline
            .deploys_of_run(run)
            .into_iter()
            .map(|e| e.environment)
            .collect()
    }

    /// The status of a run's stage called `name`.
    pub fn stage_status(view: &RunView, name: &str) -> Option<StageStatus> {
        view.stages
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.status)
    }

    /// Whether a run ended (any terminal status).
    pub fn finished(view: &RunView) -> bool {
        view.status.is_terminal()
    }

    /// Fake time elapsed since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().since(crate::clock::START)
    }

    /// The status of a run as stored.
    pub fn stored_status(&self, run: RunId) -> Option<RunStatus> {
        self.store.load_run(run).ok().map(|v| v.status)
    }
}

/// A security scanner whose report is set by the test (default: nothing found).
#[derive(Debug, Default)]
pub struct FakeScanner {
    report: std::sync::Mutex<Option<ferry_engine::ports::ScanReport>>,
    /// Checkouts scanned, in order.
    pub scanned: std::sync::Mutex<Vec<std::path::PathBuf>>,
}

impl FakeScanner {
    /// From now on every scan reports `report`.
    pub fn reports(&self, report: ferry_engine::ports::ScanReport) {
        if let Ok(mut r) = self.report.lock() {
            *r = Some(report);
        }
    }
}

impl ferry_engine::ports::SecurityScanner for FakeScanner {
    fn scan(
        &self,
        checkout: &std::path::Path,
        _: &ferry_config::Security,
    ) -> ferry_engine::ports::ScanReport {
        if let Ok(mut s) = self.scanned.lock() {
            s.push(checkout.to_path_buf());
        }
        self.report
            .lock()
            .ok()
            .and_then(|r| r.clone())
            .unwrap_or(ferry_engine::ports::ScanReport {
                blocked: false,
                summary: "passed: nothing found".into(),
                log: "passed: nothing found\n".into(),
                data: serde_json::json!({}),
                findings: Vec::new(),
                sarif: None,
            })
    }
}

/// An infrastructure inspector whose verdicts the test chooses, per commit compared to
/// (default: no change). Records every comparison asked.
#[derive(Debug, Default)]
pub struct FakeInfra {
    verdicts: std::sync::Mutex<BTreeMap<String, Result<ferry_core::infra::Assessment, String>>>,
    /// `(from, to)` of every comparison, in order.
    pub asked: std::sync::Mutex<Vec<(String, String)>>,
}

impl FakeInfra {
    /// A comparison ending at commit `to` finds `verdict` (with `unsafe_reasons` for a
    /// rollback-unsafe one).
    pub fn verdict(&self, to: &str, verdict: ferry_core::infra::Verdict, unsafe_reasons: &[&str]) {
        let a = ferry_core::infra::Assessment {
            verdict,
            meaningful: verdict != ferry_core::infra::Verdict::NoChange,
            unsafe_reasons: unsafe_reasons.iter().map(|s| s.to_string()).collect(),
        };
        if let Ok(mut v) = self.verdicts.lock() {
            v.insert(to.to_string(), Ok(a));
        }
    }

    /// A comparison ending at commit `to` fails (a synth that fails, a template that does
    /// not parse).
    pub fn fails(&self, to: &str, why: &str) {
        if let Ok(mut v) = self.verdicts.lock() {
            v.insert(to.to_string(), Err(why.to_string()));
        }
    }
}

impl ferry_engine::ports::InfraInspector for FakeInfra {
    fn assess(
        &self,
        _checkout: &std::path::Path,
        from: &str,
        to: &str,
        _: &ferry_config::Infrastructure,
    ) -> PortResult<ferry_engine::ports::InfraReport> {
        if let Ok(mut a) = self.asked.lock() {
            a.push((from.to_string(), to.to_string()));
        }
        let found = self.verdicts.lock().ok().and_then(|v| v.get(to).cloned());
        match found {
            Some(Err(why)) => Err(ferry_engine::ports::PortError::permanent(why)),
            Some(Ok(a)) => Ok(ferry_engine::ports::InfraReport {
                lines: vec![format!("Verdict: {}", a.verdict.as_str())],
                assessment: a,
            }),
            None => Ok(ferry_engine::ports::InfraReport {
                lines: vec!["Verdict: no-change".to_string()],
                assessment: ferry_core::infra::Assessment {
                    verdict: ferry_core::infra::Verdict::NoChange,
                    meaningful: false,
                    unsafe_reasons: Vec::new(),
                },
            }),
        }
    }
}
