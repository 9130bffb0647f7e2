//! The driver: performs one run. It asks the core what comes next, commits the core's
//! intent, performs the side effect through a port, and commits the outcome (DESIGN
//! invariant 1). Environments are entered under a lease (invariant 2); the artifact's
//! digest is checked before every deployment (OWASP CI/CD-SEC-9).

use crate::ports::*;
use ferry_config::{AlarmSource, Pipeline};
use ferry_core::alarm::{AlarmState, Datapoint, Rule};
use ferry_core::approval::{self, ApprovalState, Parties};
use ferry_core::concurrency::{self, Contender, Entry};
use ferry_core::gates::{self, ExitObservation};
use ferry_core::monitor::{Window, WindowState};
use ferry_core::retry::RetryPolicy;
use ferry_core::rollback::Trigger;
use ferry_core::run::{Next, Run, RunView, StepOutcome, StepRef};
use ferry_core::{Artifact, Change, Commit, DeploymentRecord, RunId, RunPlan, StepKind, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

mod hold;

/// The adapters a run uses.
pub struct Ports<'a> {
    pub store: &'a dyn Store,
    pub clock: &'a dyn Clock,
    pub source: &'a dyn Source,
    pub executor: &'a dyn Executor,
    pub artifacts: &'a dyn ArtifactStore,
    pub reports: &'a dyn ReportFiles,
    pub probe: &'a dyn AlarmProbe,
    pub observer: &'a dyn Observer,
    /// Builds each environment's deployer from a `deploy:` section.
    pub deployers: &'a dyn DeployerFactory,
    /// Tells whether the holder of a lease or rollback is still alive.
    pub liveness: &'a dyn Liveness,
    /// Scans the checkout for the build's security gate.
    pub scanner: &'a dyn SecurityScanner,
    /// Compares the deployed version's infrastructure with the run's (infrastructure
    /// steps).
    pub infra: &'a dyn InfraInspector,
}

/// Where a run's files go.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The project folder (where `ferry.yml` is); rollbacks run their commands here.
    pub project: PathBuf,
    /// Checkouts: `<work>/run-<id>/`.
    pub work: PathBuf,
    /// Step logs: `<logs>/run-<id>/<stage>-<step>.log`.
    pub logs: PathBuf,
}

impl Layout {
    pub fn checkout(&self, run: RunId) -> PathBuf {
        self.work.join(format!("run-{run}"))
    }
    pub fn log(&self, run: RunId, stage: &str, step: &str) -> PathBuf {
        let clean = |s: &str| {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect::<String>()
        };
        self.logs
            .join(format!("run-{run}"))
            .join(format!("{}-{}.log", clean(stage), clean(step)))
    }
}

/// Writes `bytes` to `path`, creating its folder.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes)
}

/// One monitor window, as planned.
struct MonitorPlan<'p> {
    /// Pushed alarm states count from here on (the environment's deployment started):
    /// an ALARM pushed during the deploy or the tests is not lost.
    since: Timestamp,
    duration: Duration,
    interval: Duration,
    alarms: &'p [String],
    advisory: bool,
    fail_closed: bool,
}

/// The environment lease a run holds, and why it was lost if it was.
#[derive(Debug, Default)]
struct Held {
    lease: Option<Lease>,
    lost: Option<String>,
}

/// What came of waiting to enter an environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entered {
    /// The run holds the environment's lease.
    In,
    /// A newer run overtook it (`superseded` mode).
    Superseded(RunId),
    /// The user cancelled while it waited.
    Cancelled,
}

/// How long a deployment found running after a crash gets to answer its health check.
const RECOVERY_HEALTH_WITHIN: Duration = Duration::from_secs(30);

/// Knobs of the driver, with the defaults a foreground `ferry run` uses.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who holds leases (`host:pid`).
    pub holder: String,
    pub lease_ttl: Duration,
    /// How often waits (approval, lease) look again.
    pub poll: Duration,
    /// How often a run held by a deployment window or a freeze looks again for a lifted
    /// freeze or a confirmed override (it wakes at the window's opening regardless).
    pub hold_poll: Duration,
    pub retry: RetryPolicy,
    /// The lease identity of work outside any run (rollbacks from `ferry rollback` or
    /// `ferry alarm`): negative, unique per process.
    pub outside_run: RunId,
    /// Set when the process is stopping but its runs should go on later (`ferry serve`
    /// on SIGTERM): a run stops driving at its next safe point — between steps, or
    /// while it waits (approval, lease, deployment window, monitor window) — without
    /// changing its state, so the next process takes it up (`Engine::resume`). A step
    /// already running finishes first. Unlike `cancel`, nothing ends.
    pub park: Option<&'static AtomicBool>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            holder: "ferry".to_string(),
            lease_ttl: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            hold_poll: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            outside_run: RunId(-1),
            park: None,
        }
    }
}

pub struct Engine<'a> {
    pub pipeline: &'a Pipeline,
    /// The pipeline file's text: recorded (by digest) in every release set.
    pub pipeline_text: &'a str,
    pub ports: Ports<'a>,
    pub layout: Layout,
    pub settings: Settings,
    /// Set from outside (Ctrl-C) to cancel the run between steps.
    pub cancel: &'a AtomicBool,
}

impl<'a> Engine<'a> {
    /// Resolves `rev`, records a queued run for it and returns the in-memory run.
    pub fn queue(&self, rev: &str, trigger: &str, triggered_by: &str) -> PortResult<Run> {
        let commit = self.ports.source.resolve(rev)?;
        self.queue_commit(commit, trigger, triggered_by)
    }

    pub fn queue_commit(
        &self,
        commit: Commit,
        trigger: &str,
        triggered_by: &str,
    ) -> PortResult<Run> {
        self.queue_planned(commit, RunPlan::new(self.pipeline), trigger, triggered_by)
    }

    /// Resolves `rev` and records a queued hotfix run for it (`ferry run --hotfix`):
    /// only the last environment, with at least two approvals and a doubled monitor
    /// window. Permanent error, with the fix, when the pipeline does not allow hotfixes.
    pub fn queue_hotfix(&self, rev: &str, trigger: &str, triggered_by: &str) -> PortResult<Run> {
        let plan = RunPlan::hotfix(self.pipeline).map_err(PortError::permanent)?;
        let commit = self.ports.source.resolve(rev)?;
        self.queue_planned(commit, plan, trigger, triggered_by)
    }

    /// Records a queued run following `plan`.
    pub fn queue_planned(
        &self,
        commit: Commit,
        plan: RunPlan,
        trigger: &str,
        triggered_by: &str,
    ) -> PortResult<Run> {
        self.queue_planned_as(None, commit, plan, trigger, triggered_by)
    }

    /// [`Engine::queue_planned`] under a run id the caller chooses (`None`: the
    /// store's next): `ferry step` runs each stage of one CodePipeline execution as a run
    /// of its own, in its own CodeBuild container, all under the execution's id.
    pub fn queue_planned_as(
        &self,
        id: Option<RunId>,
        commit: Commit,
        plan: RunPlan,
        trigger: &str,
        triggered_by: &str,
    ) -> PortResult<Run> {
        let now = self.ports.clock.now();
        let new = NewRun {
            pipeline: self.pipeline.name.clone(),
            commit: commit.clone(),
            trigger: trigger.to_string(),
            triggered_by: triggered_by.to_string(),
            created_at: now,
            stages: plan
                .stages
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        s.steps
                            .iter()
                            .map(|t| (t.name.clone(), t.kind.label().to_string()))
                            .collect(),
                    )
                })
                .collect(),
            driver: self.settings.holder.clone(),
            hotfix: plan.hotfix,
            id,
        };
        let id = self.ports.store.create_run(&new)?;
        let mut run = Run::new(id, &self.pipeline.name, commit, plan, now);
        run.repository = self.pipeline.source.repository.clone().or_else(|| {
            self.ports
                .source
                .origin_url()
                .and_then(|u| approval::web_repository(&u))
        });
        let digest = sha256(self.pipeline_text.as_bytes());
        self.ports.store.put_config(&digest, self.pipeline_text)?;
        run.config_digest = Some(digest);
        self.commit(&run, run.queued_changes())?;
        Ok(run)
    }

    /// Ends the runs whose driving process is known to be dead (a killed `ferry run`):
    /// the step that was running is failed as interrupted, and a deployment it had in
    /// progress — its state unknown — is rolled back when `roll_back` is set (DESIGN
    /// invariant 1: never leave an environment in an unknown state; `ferry run` and
    /// `ferry rollback` do, read-mostly commands only end the runs). Returns the runs it
    /// ended.
    pub fn reconcile(&self, roll_back: bool) -> PortResult<Vec<RunId>> {
        let store = self.ports.store;
        let mut ended = Vec::new();
        for view in store.list_runs(1000, true)? {
            let Some(driver) = store.driver(view.id)? else {
                continue;
            };
            if driver == self.settings.holder || self.ports.liveness.alive(&driver) != Some(false) {
                continue;
            }
            let id = view.id;
            let open: Vec<(usize, DeploymentRecord)> = store
                .deployments(None, 10_000)?
                .into_iter()
                .filter(|d| d.run_id == id && d.status == ferry_core::DeploymentStatus::InProgress)
                .filter_map(|d| {
                    let i = view.stages.iter().position(|s| s.name == d.environment)?;
                    Some((i, d))
                })
                .collect();
            let mut run = Run::resume(view, open.clone());
            let why = format!(
                "interrupted: the ferry process driving it ({driver}) stopped, so the outcome of its last step is unknown"
            );
            let ch = run.abort(&why, self.ports.clock.now());
            self.commit(&run, ch)?;
            self.ports
                .observer
                .notice(&format!("run {id} ended: {why}"));
            for (_, d) in open {
                if let Some(bad) = store
                    .deployments(Some(&d.environment), 10_000)?
                    .into_iter()
                    .find(|x| x.deployment_id == d.deployment_id)
                    && self.pipeline.rollback.automatic
                    && roll_back
                {
                    self.roll_back(&bad, &why, Trigger::DeployFailed, None, None)?;
                }
            }
            ended.push(id);
        }
        if !ended.is_empty() {
            self.check_pipeline_alarms();
        }
        Ok(ended)
    }

    /// The unfinished runs whose driving process is known to be dead (a killed
    /// `ferry run` or `ferry serve`), oldest first: what [`Self::resume`] takes up.
    pub fn orphans(&self) -> PortResult<Vec<RunId>> {
        let store = self.ports.store;
        let mut out = Vec::new();
        for view in store.list_runs(1000, true)? {
            let Some(driver) = store.driver(view.id)? else {
                continue;
            };
            if driver != self.settings.holder && self.ports.liveness.alive(&driver) == Some(false) {
                out.push(view.id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Takes up a run whose driving process died, to drive it on with [`Self::drive`]
    /// (DESIGN invariant 1: resume where that is safe). The run is claimed first
    /// (`Store::claim_run`: of several restarting processes one gets it; `None` for the
    /// others, and for a run that ended or whose driver lives). It follows the current
    /// pipeline file; when that no longer has the run's stages and steps the run is
    /// ended instead, as [`Self::reconcile`] does. What is done with the step that was
    /// running is [`Run::recover`]'s decision: an interrupted build starts again in a
    /// fresh checkout, an approval goes on waiting, a deploy is checked against the
    /// deployer's `current_version` when the run is driven, a monitor window restarts.
    pub fn resume(&self, id: RunId) -> PortResult<Option<Run>> {
        let store = self.ports.store;
        let view = store.load_run(id)?;
        let Some(driver) = store.driver(id)? else {
            return Ok(None);
        };
        if view.status.is_terminal()
            || driver == self.settings.holder
            || self.ports.liveness.alive(&driver) != Some(false)
            || !store.claim_run(id, &driver, &self.settings.holder)?
        {
            return Ok(None);
        }
        let view = store.load_run(id)?;
        let mine: Vec<DeploymentRecord> = store
            .deployments(None, 10_000)?
            .into_iter()
            .filter(|d| d.run_id == id)
            .collect();
        let open: Vec<(usize, DeploymentRecord)> = mine
            .iter()
            .filter(|d| d.status == ferry_core::DeploymentStatus::InProgress)
            .filter_map(|d| {
                let i = view.stages.iter().position(|s| s.name == d.environment)?;
                Some((i, d.clone()))
            })
            .collect();
        let now = self.ports.clock.now();
        let Some(mut run) =
            Run::resume_with(view.clone(), RunPlan::new(self.pipeline), open.clone())
        else {
            // The file changed under the run: end it as a dead run is ended.
            let mut run = Run::resume(view, open.clone());
            let why = format!(
                "interrupted: the ferry process driving it ({driver}) stopped, and ferry.yml no longer has this run's stages and steps, so it cannot be resumed"
            );
            let ch = run.abort(&why, now);
            self.commit(&run, ch)?;
            for (_, d) in open {
                if let Some(bad) = store
                    .deployments(Some(&d.environment), 10_000)?
                    .into_iter()
                    .find(|x| x.deployment_id == d.deployment_id)
                    && self.pipeline.rollback.automatic
                {
                    self.roll_back(&bad, &why, Trigger::DeployFailed, None, None)?;
                }
            }
            return Ok(None);
        };
        // What the store has not kept in the run's view: coverage (carried in its
        // deployment records) and the pipeline file it follows.
        if run.ledger.coverage.is_none() {
            run.ledger.coverage = mine
                .iter()
                .max_by_key(|d| d.start_time)
                .map(|d| d.coverage_percentage);
        }
        let digest = sha256(self.pipeline_text.as_bytes());
        store.put_config(&digest, self.pipeline_text)?;
        run.config_digest = Some(digest);
        let (recovery, ch) = run.recover(&driver, now);
        self.commit(&run, ch)?;
        // A fresh checkout: nothing an interrupted step left there is reused.
        let _ = std::fs::remove_dir_all(self.layout.checkout(id));
        self.ports.observer.notice(&format!(
            "run {id} taken up again (its ferry process {driver} stopped): {}",
            recovery.label().replace('_', " ")
        ));
        Ok(Some(run))
    }

    /// Whether the process is parking its runs (see [`Settings::park`]).
    pub fn parking(&self) -> bool {
        self.settings.park.is_some_and(|p| p.load(Ordering::SeqCst))
    }

    /// Drives a queued run to its end. Errors are the store's: a run whose state cannot
    /// be recorded is not driven further.
    pub fn drive(&self, mut run: Run) -> PortResult<RunView> {
        let lease: Mutex<Held> = Mutex::new(Held::default());
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let result = std::thread::scope(|s| {
            // Heartbeat: keeps the environment lease alive during long steps (on the real
            // clock's pace, with expiry times from the injected one). A lease that cannot
            // be renewed is marked lost; the run stops at the next step boundary.
            let held = &lease;
            s.spawn(move || {
                let every = self.settings.lease_ttl / 3;
                while let Err(mpsc::RecvTimeoutError::Timeout) = stop_rx.recv_timeout(every) {
                    self.renew(held);
                }
            });
            let r = self.drive_steps(&mut run, &lease);
            let _ = stop_tx.send(());
            r
        });
        let held = lease.lock().ok().and_then(|mut l| l.lease.take());
        if let Some(l) = held {
            let _ = self.ports.store.release_lease(&l.environment, l.run);
        }
        if run.status().is_terminal() {
            self.check_pipeline_alarms();
        }
        result?;
        Ok(run.view)
    }

    /// Extends the held lease, if any; records its loss.
    fn renew(&self, held: &Mutex<Held>) {
        let Ok(mut h) = held.lock() else { return };
        let Some(l) = h.lease.as_ref() else { return };
        let now = self.ports.clock.now();
        let mut next = l.clone();
        next.expires_at = now.plus(self.settings.lease_ttl);
        match self.ports.store.renew_lease(&next) {
            Ok(()) => h.lease = Some(next),
            Err(e) if e.kind == PortErrorKind::Conflict => h.lost = Some(e.message),
            Err(e) if now >= l.expires_at => {
                h.lost = Some(format!(
                    "could not renew it before it expired: {}",
                    e.message
                ));
            }
            Err(_) => {}
        }
    }

    fn drive_steps(&self, run: &mut Run, lease: &Mutex<Held>) -> PortResult<()> {
        let checkout = self.layout.checkout(run.id());
        let mut checked_out = false;
        loop {
            let now = self.ports.clock.now();
            if self.cancel.load(Ordering::SeqCst) && !run.status().is_terminal() {
                let ch = run.cancel("cancelled by the user", now);
                self.commit(run, ch)?;
            }
            if self.parking() && !run.status().is_terminal() {
                // Left as it is for the next ferry process (`Engine::resume`).
                return Ok(());
            }
            self.renew(lease);
            let lost = lease.lock().ok().and_then(|mut h| {
                let env = h.lease.as_ref().map(|l| l.environment.clone());
                h.lost.take().map(|why| (env.unwrap_or_default(), why))
            });
            if let Some((env, why)) = lost
                && !run.status().is_terminal()
            {
                // Someone else may be deploying there now: stop rather than act on it.
                let ch = run.abort(&format!("lost the lease on environment {env}: {why}"), now);
                self.commit(run, ch)?;
            }
            // Only a run taken up from the store (`Engine::resume`) can have a step
            // running that this process did not start.
            let (r, interrupted) = match run.next() {
                Next::Finished(_) => return Ok(()),
                Next::Wait(r) => (r, true),
                Next::Step(r) => (r, false),
            };
            if !checked_out {
                if let Err(e) = self.ports.source.checkout(&run.view.commit.sha, &checkout) {
                    let ch = run.abort(&format!("could not check out the commit: {e}"), now);
                    self.commit(run, ch)?;
                    continue;
                }
                checked_out = true;
            }
            // A resumed run inside an environment (deployment open) takes its lease back
            // before it acts there again.
            if run.open_deployment(r.stage).is_some() {
                let env = run.stage_name(r.stage).to_string();
                let held = lease
                    .lock()
                    .ok()
                    .and_then(|h| h.lease.as_ref().map(|l| l.environment == env))
                    .unwrap_or(false);
                if !held && self.enter(run, &env, lease, false)? == Entered::Cancelled {
                    if self.parking() && !self.cancel.load(Ordering::SeqCst) {
                        // Stopped waiting to park, not cancelled: left for the next start.
                        return Ok(());
                    }
                    let ch = run.cancel("cancelled by the user", self.ports.clock.now());
                    self.commit(run, ch)?;
                    continue;
                }
            }
            if interrupted {
                self.step_interrupted(run, r)?;
            } else {
                self.step(run, r, &checkout, lease)?;
            }
            self.roll_back_failed_stage(run, r)?;
            // Leave an environment once its stage has ended.
            let done_env = {
                let held = lease.lock().ok().and_then(|h| h.lease.clone());
                held.filter(|l| {
                    run.plan
                        .stage_index(&l.environment)
                        .is_none_or(|i| run.view.stages[i].status.is_terminal())
                })
            };
            if let Some(l) = done_env {
                self.ports.store.release_lease(&l.environment, l.run)?;
                if let Ok(mut h) = lease.lock() {
                    *h = Held::default();
                }
            }
        }
    }

    /// Seed Property 4: a deployment whose stage failed (deploy, tests, monitor window)
    /// is rolled back at once, while the run still holds the environment's lease.
    fn roll_back_failed_stage(&self, run: &Run, r: StepRef) -> PortResult<()> {
        let Some(env) = run.plan.stages[r.stage].environment() else {
            return Ok(());
        };
        if run.view.stages[r.stage].status != ferry_core::StageStatus::Failed
            || !self.pipeline.rollback.automatic
        {
            return Ok(());
        }
        let Some(bad) =
            self.ports.store.latest_deployment(env)?.filter(|d| {
                d.run_id == run.id() && d.status == ferry_core::DeploymentStatus::Failed
            })
        else {
            return Ok(());
        };
        let trigger = match run.step_kind(r) {
            StepKind::Deploy | StepKind::Infrastructure { .. } => Trigger::DeployFailed,
            StepKind::Monitor { .. } => Trigger::MonitorFailed,
            _ => Trigger::TestsFailed,
        };
        let reason = run.view.stages[r.stage].steps[r.step]
            .reason
            .clone()
            .unwrap_or_else(|| "the stage failed".to_string());
        let reason = format!("{}/{}: {reason}", env, run.step_name(r));
        self.roll_back(&bad, &reason, trigger, None, Some(run.id()))?;
        Ok(())
    }

    fn step(
        &self,
        run: &mut Run,
        r: StepRef,
        checkout: &Path,
        lease: &Mutex<Held>,
    ) -> PortResult<()> {
        let clock = self.ports.clock;
        let stage_name = run.stage_name(r.stage).to_string();
        let log = self.layout.log(run.id(), &stage_name, run.step_name(r));
        let log_text = Some(log.display().to_string());
        match run.step_kind(r).clone() {
            StepKind::Command {
                run: command,
                timeout,
                junit,
                coverage,
                env,
                ..
            } => {
                let ch = run.start_step(r, clock.now(), log_text);
                self.commit(run, ch)?;
                let mut vars = self.variables(run, r);
                vars.extend(env);
                let exit = self.ports.executor.run(&StepRequest {
                    command,
                    cwd: checkout.to_path_buf(),
                    env: vars,
                    timeout,
                    log,
                });
                if self.cancel.load(Ordering::SeqCst) {
                    // The step was stopped because the user cancelled: the run is
                    // cancelled, not failed.
                    let ch = run.cancel("cancelled by the user", clock.now());
                    return self.commit(run, ch);
                }
                let outcome = self.command_outcome(
                    run.step_name(r),
                    &exit.how,
                    checkout,
                    &junit,
                    coverage.as_deref(),
                );
                let ch = run.finish_step(r, outcome, clock.now());
                self.commit(run, ch)
            }
            StepKind::CoverageGate { .. } => {
                let ch = run.start_step(r, clock.now(), None);
                self.commit(run, ch)?;
                let ch = run.finish_gate(r, clock.now());
                self.commit(run, ch)
            }
            StepKind::SecurityGate => {
                let ch = run.start_step(r, clock.now(), Some(log.display().to_string()));
                self.commit(run, ch)?;
                let Some(security) = self.pipeline.build.gates.security.as_ref() else {
                    let ch = run.finish_step(
                        r,
                        StepOutcome::failed("ferry.yml no longer has `build.gates.security`"),
                        clock.now(),
                    );
                    return self.commit(run, ch);
                };
                let report = self.ports.scanner.scan(checkout, security);
                let written = write_file(&log, report.log.as_bytes());
                let (mut blocked, mut summary) = match written {
                    Ok(()) => (report.blocked, report.summary.clone()),
                    // The findings must be readable: a log that cannot be written blocks.
                    Err(e) => (
                        true,
                        format!("{} (its log could not be written: {e})", report.summary),
                    ),
                };
                // Write before acting: the findings are committed before the verdict is.
                self.ports
                    .store
                    .record_findings(run.id(), &report.findings)?;
                let mut data = report.data;
                if let (Some(rel), Some(doc)) = (&security.sarif, &report.sarif) {
                    // The SARIF file goes into the repository (where a CI job uploads it),
                    // not the run's checkout, which is removed.
                    let path = self.layout.project.join(rel);
                    let text = serde_json::to_vec_pretty(doc).map_err(|e| e.to_string());
                    match text.and_then(|t| write_file(&path, &t).map_err(|e| e.to_string())) {
                        Ok(()) => {
                            if let Some(o) = data.as_object_mut() {
                                o.insert("sarif".into(), serde_json::json!(rel));
                            }
                        }
                        // Asked for and not written: the gate fails closed, like the log.
                        Err(e) => {
                            blocked = true;
                            summary = format!(
                                "{summary} (the SARIF file {} could not be written: {e})",
                                path.display()
                            );
                        }
                    }
                }
                let ch = run.finish_security(r, blocked, &summary, data, clock.now());
                self.commit(run, ch)
            }
            StepKind::Package { path } => {
                let ch = run.start_step(r, clock.now(), None);
                self.commit(run, ch)?;
                let ch = match self
                    .ports
                    .artifacts
                    .package(&checkout.join(&path), run.id())
                {
                    Ok(a) => run.finish_package(r, a, clock.now()),
                    Err(e) => run.finish_step(r, StepOutcome::failed(e.message), clock.now()),
                };
                self.commit(run, ch)
            }
            StepKind::Approval { rule } => {
                let ch = run.start_step(r, clock.now(), None);
                self.commit(run, ch)?;
                self.approval_gate(run, r, &rule)
            }
            StepKind::Deploy => self.deploy(run, r, checkout, log, lease),
            StepKind::Infrastructure { .. } => self.infrastructure(run, r, checkout, log, lease),
            StepKind::Monitor { .. } => {
                // A window writes no log: its decisions are events (`ferry logs` shows
                // them with their datapoints).
                let ch = run.start_step(r, clock.now(), None);
                self.commit(run, ch)?;
                self.watch_window(run, r, false)
            }
        }
    }

    /// A step a dead ferry process left running, in a run this process took up
    /// (`Engine::resume`, [`Recovery`]): an approval goes on waiting, a deploy is checked
    /// against what the environment really runs, a monitor window starts again.
    fn step_interrupted(&self, run: &mut Run, r: StepRef) -> PortResult<()> {
        match run.step_kind(r) {
            StepKind::Approval { rule } => {
                let rule = rule.clone();
                self.approval_gate(run, r, &rule)
            }
            StepKind::Deploy => self.check_deploy(run, r),
            StepKind::Monitor { .. } => self.watch_window(run, r, true),
            _ => {
                // `Run::recover` sends the other steps back to pending; anything else
                // left running has an unknown outcome.
                let why = format!("step {} was interrupted", run.step_name(r));
                let ch = run.abort(&why, self.ports.clock.now());
                self.commit(run, ch)
            }
        }
    }

    /// A deploy that was running when its ferry process died: the environment is asked
    /// what it runs. The run's version running and healthy is recorded as deployed —
    /// without deploying again (DESIGN invariant 1); anything else fails the step, and
    /// the stage is rolled back like any failed deploy.
    fn check_deploy(&self, run: &mut Run, r: StepRef) -> PortResult<()> {
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        let version = run.view.commit.sha.clone();
        let deployer = match self.pipeline.environment(&env) {
            Some(e) => self.ports.deployers.deployer(&env, &e.deploy),
            None => Err(PortError::permanent(format!(
                "environment `{env}` is not in the pipeline"
            ))),
        };
        let outcome = match deployer {
            Err(e) => StepOutcome::failed(format!(
                "the deploy was interrupted (ferry stopped) and what {env} runs cannot be asked: {}",
                e.message
            )),
            Ok(d) => match self.retry_in(Some(&run.view), || d.current_version()) {
                Ok(Some(v)) if v == version => match d.healthy(RECOVERY_HEALTH_WITHIN) {
                    Ok(()) => {
                        self.ports.observer.note(
                            &run.view,
                            &format!(
                                "{env} already runs {} (deployed before ferry stopped): recorded as deployed, not deployed again",
                                ferry_core::short_sha(&version)
                            ),
                        );
                        StepOutcome::passed()
                    }
                    Err(e) => StepOutcome::failed(format!(
                        "the deploy was interrupted (ferry stopped); {env} runs {} but it is not healthy: {}",
                        ferry_core::short_sha(&version),
                        e.message
                    )),
                },
                Ok(other) => StepOutcome::failed(format!(
                    "the deploy was interrupted (ferry stopped) and {env} runs {} instead of {}: its outcome is unknown",
                    other.as_deref().map_or("nothing", ferry_core::short_sha),
                    ferry_core::short_sha(&version)
                )),
                Err(e) => StepOutcome::failed(format!(
                    "the deploy was interrupted (ferry stopped) and the running version cannot be read: {}",
                    e.message
                )),
            },
        };
        let ch = run.finish_step(r, outcome, clock.now());
        self.commit(run, ch)
    }

    /// Runs a monitor window step that has started. `restarted`: the window was
    /// interrupted by a crash and starts again; an ALARM recorded since the deployment
    /// started keeps it failed (invariant 6: monitoring is monotonic).
    fn watch_window(&self, run: &mut Run, r: StepRef, restarted: bool) -> PortResult<()> {
        let clock = self.ports.clock;
        let StepKind::Monitor {
            duration,
            interval,
            alarms,
            advisory,
            fail_closed,
        } = run.step_kind(r).clone()
        else {
            return Ok(());
        };
        {
            {
                let since = run
                    .open_deployment(r.stage)
                    .map(|d| Timestamp(d.start_time))
                    .unwrap_or_else(|| clock.now());
                let plan = MonitorPlan {
                    since,
                    duration,
                    interval,
                    alarms: &alarms,
                    advisory,
                    fail_closed,
                };
                let already = if restarted && !advisory {
                    let env = run.stage_name(r.stage).to_string();
                    self.alarmed_since(run, &env, &alarms, since)?
                } else {
                    None
                };
                let outcome = match already {
                    Some(name) => StepOutcome::failed(format!(
                        "alarm {name} went to ALARM during this deployment, before ferry stopped (a window that saw ALARM stays failed)"
                    )),
                    None => self.monitor(run, &plan)?,
                };
                if self.parking() && !self.cancel.load(Ordering::SeqCst) {
                    // The window starts again in the next process (`Run::recover`).
                    return Ok(());
                }
                let ch = if self.cancel.load(Ordering::SeqCst) {
                    run.cancel("cancelled by the user", clock.now())
                } else {
                    run.finish_step(r, outcome, clock.now())
                };
                self.commit(run, ch)
            }
        }
    }

    /// Waits at an approval gate (seed §3.1.5) until the rule is met, a valid rejection,
    /// the timeout, a newer run deploying here (superseded), or Ctrl-C. Every new
    /// decision gets its event; the reminder comes once at `timeout - remind_before`.
    /// When the gate passes, the artifact must still have the digest the approvals were
    /// given for: otherwise they are void and nothing is deployed.
    fn approval_gate(&self, run: &mut Run, r: StepRef, rule: &approval::Rule) -> PortResult<()> {
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        let requested = run.approval_requested[r.stage].unwrap_or_else(|| clock.now());
        let (_, triggered_by) = self.ports.store.triggered(run.id())?;
        let parties = Parties {
            author: run.view.commit.author.clone(),
            triggered_by,
        };
        let digest = run.view.artifact.as_ref().map(|a| a.digest.clone());
        let remind_at = rule.reminder_at(requested);
        // Reminded once per run: also when this process took the run up after a crash.
        let mut reminded = !self
            .ports
            .store
            .events(&EventFilter {
                run: Some(run.id()),
                environment: Some(env.clone()),
                kind: Some(ferry_core::EventKind::ApprovalReminder),
                limit: Some(1),
                ..EventFilter::default()
            })?
            .is_empty();
        let mut seen = 0;
        loop {
            let decisions = self.ports.store.approvals(run.id(), &env)?;
            let now = clock.now();
            let (state, counted) = approval::evaluate(
                rule,
                &parties,
                digest.as_deref(),
                &decisions,
                requested,
                now,
            );
            if decisions.len() > seen {
                let ch = run.approval_decisions(r, &decisions, &counted, seen, now);
                self.commit(run, ch)?;
                seen = decisions.len();
            }
            match state {
                ApprovalState::Waiting { deadline, .. } => {
                    if !reminded && remind_at.is_some_and(|at| now >= at) {
                        let ch = run.approval_reminder(r, &state, now);
                        self.commit(run, ch)?;
                        reminded = true;
                    }
                    if self.cancel.load(Ordering::SeqCst) || self.parking() {
                        return Ok(());
                    }
                    if let Some(latest) = self.ports.store.latest_deployment(&env)?
                        && latest.run_id > run.id()
                        && matches!(
                            latest.status,
                            ferry_core::DeploymentStatus::Succeeded
                                | ferry_core::DeploymentStatus::InProgress
                        )
                    {
                        let why = format!(
                            "run {} already deployed the newer commit {} to {env}",
                            latest.run_id,
                            ferry_core::short_sha(&latest.version)
                        );
                        let ch = run.supersede_by(latest.run_id, &why, now);
                        return self.commit(run, ch);
                    }
                    if self.pipeline.execution_mode == concurrency::ExecutionMode::Superseded
                        && let Entry::Supersede { by } = self.entry(run, r.stage)?
                    {
                        let why = format!(
                            "run {by} (a newer commit) reached {env} while this one waited for its approval"
                        );
                        let ch = run.supersede_by(by, &why, now);
                        return self.commit(run, ch);
                    }
                    let wake = match remind_at {
                        Some(at) if !reminded => deadline.min(at),
                        _ => deadline,
                    };
                    clock.sleep(
                        wake.since(now)
                            .min(self.settings.poll)
                            .max(Duration::from_millis(1)),
                    );
                }
                ApprovalState::Approved { .. } => {
                    if let Some(why) = self.changed_artifact(run)? {
                        let why = format!(
                            "{why}; the approvals were given for the artifact as built and are void"
                        );
                        let mut ch = run.void_approvals(r.stage, &why, now);
                        ch.extend(run.finish_step(r, StepOutcome::failed(why), now));
                        return self.commit(run, ch);
                    }
                    let ch = run.finish_approval(r, state, now);
                    return self.commit(run, ch);
                }
                decided => {
                    let ch = run.finish_approval(r, decided, now);
                    return self.commit(run, ch);
                }
            }
        }
    }

    /// Why the run's artifact is no longer the one it built (its digest changed), if it
    /// is not. An artifact that cannot be read is the deploy step's to refuse.
    fn changed_artifact(&self, run: &Run) -> PortResult<Option<String>> {
        let Some(a) = &run.view.artifact else {
            return Ok(None);
        };
        Ok(
            match self.retry_in(Some(&run.view), || self.ports.artifacts.digest(&a.location)) {
                Ok(d) if d != a.digest => Some(format!(
                    "artifact `{}` changed since it was built (expected {}, found {d})",
                    a.location, a.digest
                )),
                _ => None,
            },
        )
    }

    /// The first binding alarm of `names` that went to ALARM at or after `since`: its
    /// recorded state, or any `alarm_state_changed` event of this run (probe alarms) or
    /// of the environment (pushed alarms) since then — an alarm that went back to OK
    /// before the restart still counts.
    fn alarmed_since(
        &self,
        run: &Run,
        env: &str,
        names: &[String],
        since: Timestamp,
    ) -> PortResult<Option<String>> {
        let binding: Vec<&String> = names
            .iter()
            .filter(|n| self.pipeline.alarm(n).is_some_and(|a| !a.advisory))
            .collect();
        for n in &binding {
            if let Some((AlarmState::Alarm, _, at)) = self.ports.store.alarm_state(n)?
                && at >= since
            {
                return Ok(Some((*n).clone()));
            }
        }
        let filters = [
            EventFilter {
                run: Some(run.id()),
                ..EventFilter::default()
            },
            EventFilter {
                environment: Some(env.to_string()),
                ..EventFilter::default()
            },
        ];
        for f in filters {
            for (_, e) in self.ports.store.events(&f)? {
                if e.kind != ferry_core::EventKind::AlarmStateChanged
                    || e.at < since
                    || e.data["state"] != "ALARM"
                    || e.data["advisory"] == true
                {
                    continue;
                }
                if let Some(n) = binding.iter().find(|n| e.data["alarm"] == n.as_str()) {
                    return Ok(Some((*n).clone()));
                }
            }
        }
        Ok(None)
    }

    fn deploy(
        &self,
        run: &mut Run,
        r: StepRef,
        checkout: &Path,
        log: PathBuf,
        lease: &Mutex<Held>,
    ) -> PortResult<()> {
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        let deployer = if run.open_deployment(r.stage).is_some() {
            // The environment's infrastructure step opened the deployment, under the
            // lease this run still holds.
            let deployer = match self.pipeline.environment(&env) {
                Some(e) => self.ports.deployers.deployer(&env, &e.deploy),
                None => Err(PortError::permanent(format!(
                    "environment `{env}` is not in the pipeline"
                ))),
            };
            let ch = run.start_deploy(r, clock.now(), Some(log.display().to_string()), None);
            self.commit(run, ch)?;
            match deployer {
                Ok(d) => d,
                Err(e) => {
                    let ch = run.finish_step(r, StepOutcome::failed(e.message), clock.now());
                    return self.commit(run, ch);
                }
            }
        } else {
            let Some((deployer, at, previous)) = self.enter_environment(run, r, &log, lease)?
            else {
                return Ok(());
            };
            let ch = run.start_deploy(r, at, Some(log.display().to_string()), previous);
            self.commit(run, ch)?;
            deployer
        };
        self.deploy_artifact(run, r, checkout, log, &*deployer)
    }

    /// The environment's infrastructure step (issue 5): enters the environment as a
    /// deploy does (window, lease, refusals), compares the version the environment runs
    /// with the run's commit (`InfraInspector`, the `ferry diff` comparison), opens the
    /// deployment with the verdict recorded on it (before anything runs), then runs the
    /// environment's `infrastructure.deploy` command in the checkout only when the
    /// verdict is not `no-change` (or nothing is deployed there yet). A comparison that
    /// fails (synth, templates) fails the step before any deployment is opened.
    fn infrastructure(
        &self,
        run: &mut Run,
        r: StepRef,
        checkout: &Path,
        log: PathBuf,
        lease: &Mutex<Held>,
    ) -> PortResult<()> {
        let StepKind::Infrastructure {
            deploy: command,
            timeout,
        } = run.step_kind(r).clone()
        else {
            return Ok(());
        };
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        let log_text = Some(log.display().to_string());
        // Taken up again after a crash (its deployment open): the step runs again under
        // the lease `drive_steps` took back; the deploy command is idempotent.
        let opened = if run.open_deployment(r.stage).is_some() {
            None
        } else {
            match self.enter_environment(run, r, &log, lease)? {
                Some((_, at, previous)) => Some((at, previous)),
                None => return Ok(()),
            }
        };
        let to = run.view.commit.sha.clone();
        let from = self
            .ports
            .store
            .deployments(Some(&env), 10_000)?
            .into_iter()
            .find(|d| d.status != ferry_core::DeploymentStatus::RolledBack && d.run_id != run.id())
            .map(|d| d.version);
        let assessed = match (&from, self.pipeline.infrastructure.as_ref()) {
            (None, _) => Ok(None),
            (Some(_), None) => Err(
                "ferry.yml no longer has an `infrastructure` section; add it back or remove the environment's `infrastructure.deploy`".to_string(),
            ),
            (Some(from), Some(infra)) => self
                .ports
                .infra
                .assess(checkout, from, &to, infra)
                .map(Some)
                .map_err(|e| {
                    format!(
                        "could not compare the infrastructure of {} (deployed) with {}: {}",
                        ferry_core::short_sha(from),
                        ferry_core::short_sha(&to),
                        e.message
                    )
                }),
        };
        let mut text = String::new();
        if let Some(from) = &from {
            text.push_str(&format!(
                "ferry: comparing the infrastructure of {} (deployed in {env}) with {}\n",
                ferry_core::short_sha(from),
                ferry_core::short_sha(&to)
            ));
        }
        let report = match assessed {
            Ok(report) => report,
            Err(why) => {
                text.push_str(&format!("ferry: {why}\n"));
                let _ = write_log(&log, &text);
                // Fail closed: nothing is deployed on a comparison that did not happen (and
                // no deployment is opened when none was).
                let ch = run.start_step(r, clock.now(), log_text);
                self.commit(run, ch)?;
                let ch = run.finish_step(r, StepOutcome::failed(why), clock.now());
                return self.commit(run, ch);
            }
        };
        if let Some(rep) = &report {
            for l in &rep.lines {
                text.push_str(l);
                text.push('\n');
            }
        }
        let decision = ferry_core::infra::step_decision(report.as_ref().map(|r| &r.assessment));
        text.push_str(&format!("ferry: {}\n", decision.summary));
        if decision.deploy {
            text.push_str(&format!("ferry: running `{command}`\n"));
        }
        // Best effort: the verdict and its summary are in the `infrastructure_assessed`
        // event and on the deployment whatever happens to the log.
        let _ = write_log(&log, &text);
        // The intent, with the verdict on the deployment, before the command runs.
        let mut ch = match opened {
            Some((at, previous)) => run.start_deploy(r, at, log_text, previous),
            None => run.start_step(r, clock.now(), log_text),
        };
        ch.extend(run.record_infrastructure(
            r.stage,
            decision.verdict,
            decision.deploy,
            &decision.unsafe_reasons,
            &decision.summary,
            clock.now(),
        ));
        self.commit(run, ch)?;
        if !decision.deploy {
            self.ports.observer.note(
                &run.view,
                &format!("{env}: infrastructure not deployed: {}", decision.summary),
            );
            let ch = run.finish_step(r, StepOutcome::passed(), clock.now());
            return self.commit(run, ch);
        }
        let exit = self.ports.executor.run(&StepRequest {
            command,
            cwd: checkout.to_path_buf(),
            env: self.variables(run, r),
            timeout,
            log,
        });
        if self.cancel.load(Ordering::SeqCst) {
            let ch = run.cancel("cancelled by the user", clock.now());
            return self.commit(run, ch);
        }
        let outcome = self.command_outcome(run.step_name(r), &exit.how, checkout, &[], None);
        let ch = run.finish_step(r, outcome, clock.now());
        self.commit(run, ch)
    }

    /// Enters the environment of a deploy or infrastructure step: waits for its window,
    /// takes its lease, checks that no newer run deployed there, builds its deployer and
    /// checks the refusals (incident, changed artifact). `None` when the run ended or must
    /// stop (superseded, cancelled, refused: the step is recorded failed without a
    /// deployment record); otherwise the deployer, the deployment's start time and the
    /// version the environment ran before.
    #[allow(clippy::type_complexity)]
    fn enter_environment(
        &self,
        run: &mut Run,
        r: StepRef,
        log: &Path,
        lease: &Mutex<Held>,
    ) -> PortResult<Option<(Box<dyn Deployer + '_>, Timestamp, Option<String>)>> {
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        // Windows and freezes are checked after the approval, right before the deploy,
        // and without the environment's lease: a held run blocks no rollback. Once the
        // lease is ours the gate is asked again (it may have closed while another run
        // deployed there); closed, the lease is let go and the run is held again.
        loop {
            self.hold_for_window(run, &env)?;
            if self.cancel.load(Ordering::SeqCst) || self.parking() {
                return Ok(None);
            }
            match self.enter(run, &env, lease, true)? {
                Entered::In => {}
                Entered::Cancelled => return Ok(None),
                Entered::Superseded(by) => {
                    let why = format!(
                        "run {by} (a newer commit) is waiting for or has reached {env}: the newest commit goes on (execution mode superseded)"
                    );
                    let ch = run.supersede_by(by, &why, clock.now());
                    self.commit(run, ch)?;
                    return Ok(None);
                }
            }
            if self.cancel.load(Ordering::SeqCst) || self.gate_open(run, &env)? {
                break;
            }
            self.ports.store.release_lease(&env, run.id())?;
            if let Ok(mut h) = lease.lock() {
                *h = Held::default();
            }
        }
        if self.cancel.load(Ordering::SeqCst) {
            return Ok(None);
        }
        // A newer run already put its version here: deploying this older one would take
        // the environment backwards (CodePipeline V2's SUPERSEDED mode).
        if let Some(latest) = self.ports.store.latest_deployment(&env)?
            && latest.run_id > run.id()
            && matches!(
                latest.status,
                ferry_core::DeploymentStatus::Succeeded | ferry_core::DeploymentStatus::InProgress
            )
        {
            let why = format!(
                "run {} already deployed the newer commit {} to {env}",
                latest.run_id,
                ferry_core::short_sha(&latest.version)
            );
            let ch = run.supersede_by(latest.run_id, &why, clock.now());
            self.commit(run, ch)?;
            return Ok(None);
        }
        // Refusals before anything reaches the environment fail the step without opening
        // a deployment record: nothing was deployed.
        let deployer = match self.pipeline.environment(&env) {
            Some(e) => self.ports.deployers.deployer(&env, &e.deploy),
            None => Err(PortError::permanent(format!(
                "environment `{env}` is not in the pipeline"
            ))),
        };
        let refusal = match (&deployer, &run.view.artifact) {
            (Err(e), _) => Some(e.message.clone()),
            (Ok(_), _) if let Some(i) = self.ports.store.hold(&env)? => Some(format!(
                "environment {env} needs a person: incident #{} ({}); run `ferry resolve {env}` once it is fixed",
                i.id, i.reason
            )),
            (Ok(_), Some(a)) => {
                match self.retry_in(Some(&run.view), || self.ports.artifacts.digest(&a.location)) {
                    Ok(d) if d == a.digest => None,
                    Ok(d) => Some(format!(
                        "artifact `{}` changed since it was built (expected {}, found {d}); refusing to deploy it",
                        a.location, a.digest
                    )),
                    Err(e) => Some(e.message),
                }
            }
            (Ok(_), None) => None,
        };
        let (Ok(deployer), None) = (deployer, &refusal) else {
            let ch = run.start_step(r, clock.now(), Some(log.display().to_string()));
            self.commit(run, ch)?;
            let why = refusal.unwrap_or_default();
            let mut ch = Vec::new();
            // Approvals were given for the artifact as built: a changed one voids them.
            let gated = run.plan.stages[r.stage]
                .steps
                .iter()
                .any(|s| matches!(s.kind, StepKind::Approval { .. }));
            if gated && why.contains("changed since it was built") {
                ch.extend(run.void_approvals(r.stage, &why, clock.now()));
            }
            ch.extend(run.finish_step(r, StepOutcome::failed(why), clock.now()));
            self.commit(run, ch)?;
            return Ok(None);
        };
        let previous = self.ports.store.last_known_good(&env)?.map(|d| d.version);
        // Deployment ids are `{env}#{millis}` (the seed's format): under the lease,
        // deployments of one environment are sequential, so one past the newest is unique.
        let mut at = clock.now();
        if let Some(latest) = self.ports.store.latest_deployment(&env)?
            && latest.start_time >= at.millis()
        {
            at = Timestamp(latest.start_time + 1);
        }
        Ok(Some((deployer, at, previous)))
    }

    /// Puts the run's artifact into the environment (the deploy step, started, with its
    /// deployment open) and checks the version it then runs.
    fn deploy_artifact(
        &self,
        run: &mut Run,
        r: StepRef,
        checkout: &Path,
        log: PathBuf,
        deployer: &dyn Deployer,
    ) -> PortResult<()> {
        let clock = self.ports.clock;
        let env = run.stage_name(r.stage).to_string();
        let artifact = run.view.artifact.clone().unwrap_or(Artifact {
            digest: String::new(),
            location: String::new(),
            size: 0,
        });
        let req = DeployRequest {
            environment: env.clone(),
            version: run.view.commit.sha.clone(),
            artifact,
            env: self.variables(run, r),
            cwd: checkout.to_path_buf(),
            log,
        };
        let outcome = match self.retry_in(Some(&run.view), || deployer.deploy(&req)) {
            Err(e) => StepOutcome::failed(e.message),
            Ok(()) => match self.retry_in(Some(&run.view), || deployer.current_version()) {
                Ok(Some(v)) if v == req.version => StepOutcome::passed(),
                Ok(other) => StepOutcome::failed(format!(
                    "after deploying {} the environment reports {} running",
                    req.version,
                    other.as_deref().unwrap_or("nothing")
                )),
                Err(e) => StepOutcome::failed(format!(
                    "could not read the running version: {}",
                    e.message
                )),
            },
        };
        let ch = run.finish_step(r, outcome, clock.now());
        self.commit(run, ch)
    }

    /// What the execution mode says about run `run` entering the environment of stage
    /// `stage`, given the unfinished runs of the pipeline in the store. (A newer run that
    /// already ended is seen by `deploy` through the environment's latest deployment.)
    fn entry(&self, run: &Run, stage: usize) -> PortResult<Entry> {
        // Positions in the pipeline's whole stage order, not in each run's plan: a
        // hotfix run's plan skips environments.
        let order: Vec<String> = std::iter::once(ferry_core::plan::STAGE_BUILD.to_string())
            .chain(self.pipeline.environments.iter().map(|e| e.name.clone()))
            .collect();
        let Some(here) = order.iter().position(|o| *o == run.view.stages[stage].name) else {
            return Ok(Entry::Enter);
        };
        let others: Vec<Contender> = self
            .ports
            .store
            .list_runs(1000, true)?
            .iter()
            .filter(|v| v.id != run.id() && v.pipeline == run.view.pipeline)
            .map(|v| Contender::of(v, &order))
            .collect();
        Ok(concurrency::entry(
            self.pipeline.execution_mode,
            run.id(),
            here,
            &others,
        ))
    }

    /// Takes the environment's lease, waiting while another run holds it. With
    /// `decide`, the execution mode is asked first and again while it waits: in
    /// `queued` mode the run also waits for every older run to enter before it; in
    /// `superseded` mode a newer run at or past this environment overtakes it.
    fn enter(
        &self,
        run: &Run,
        env: &str,
        lease: &Mutex<Held>,
        decide: bool,
    ) -> PortResult<Entered> {
        let clock = self.ports.clock;
        let mut told = false;
        let mut told_queue = false;
        let stage = run.plan.stage_index(env);
        loop {
            if decide && let Some(stage) = stage {
                match self.entry(run, stage)? {
                    Entry::Enter => {}
                    Entry::Supersede { by } => return Ok(Entered::Superseded(by)),
                    Entry::Wait { behind } => {
                        if !told_queue {
                            self.ports.observer.note(
                                &run.view,
                                &format!(
                                    "waiting for environment {env}: run {behind} goes first (execution mode queued)"
                                ),
                            );
                            told_queue = true;
                        }
                        if self.cancel.load(Ordering::SeqCst) || self.parking() {
                            return Ok(Entered::Cancelled);
                        }
                        clock.sleep(self.settings.poll);
                        continue;
                    }
                }
            }
            let now = clock.now();
            let want = Lease {
                environment: env.to_string(),
                run: run.id(),
                holder: self.settings.holder.clone(),
                expires_at: now.plus(self.settings.lease_ttl),
            };
            match self.acquire_or_take_over(&want, now)? {
                Ok(()) => {
                    if let Ok(mut h) = lease.lock() {
                        *h = Held {
                            lease: Some(want),
                            lost: None,
                        };
                    }
                    return Ok(Entered::In);
                }
                Err(holder) => {
                    if !told {
                        self.ports.observer.note(
                            &run.view,
                            &format!(
                                "waiting for environment {env}: run {} ({}) is deploying there",
                                holder.run, holder.holder
                            ),
                        );
                        told = true;
                    }
                    if self.cancel.load(Ordering::SeqCst) || self.parking() {
                        return Ok(Entered::Cancelled);
                    }
                    clock.sleep(self.settings.poll);
                }
            }
        }
    }

    /// Takes a lease, or takes it over from a holder known to be dead (a killed ferry):
    /// its lease counts as expired now rather than when its time runs out.
    pub(crate) fn acquire_or_take_over(
        &self,
        want: &Lease,
        now: Timestamp,
    ) -> PortResult<Result<(), Lease>> {
        match self.ports.store.acquire_lease(want, now)? {
            Ok(()) => Ok(Ok(())),
            Err(held) if self.ports.liveness.alive(&held.holder) == Some(false) => {
                self.ports.observer.notice(&format!(
                    "taking over environment {} from {} (run {}), which is no longer running",
                    want.environment, held.holder, held.run
                ));
                self.ports.store.take_over_lease(want, &held)
            }
            Err(held) => Ok(Err(held)),
        }
    }

    /// Seed §6.2: transient failures are retried with exponential backoff before they
    /// count; retries are told to the observer as notes of `run`.
    pub(crate) fn retry_in<T>(
        &self,
        run: Option<&RunView>,
        mut f: impl FnMut() -> PortResult<T>,
    ) -> PortResult<T> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.kind == PortErrorKind::Transient => {
                    attempt += 1;
                    match self.settings.retry.delay_before(attempt) {
                        Some(d) => {
                            let msg = format!(
                                "{}; retrying in {} (attempt {attempt})",
                                e.message,
                                ferry_core::time::human(d)
                            );
                            match run {
                                Some(v) => self.ports.observer.note(v, &msg),
                                None => self.ports.observer.notice(&msg),
                            }
                            self.ports.clock.sleep(d);
                        }
                        None => return Err(e),
                    }
                }
                other => return other,
            }
        }
    }

    /// A monitor window (seed §3.3.1). Probe alarms take one datapoint per period;
    /// pushed alarms are read from the store. Every alarm state change is recorded with
    /// its datapoints (the inputs of the decision). Advisory alarms, or an advisory
    /// window, are evaluated and recorded but never fail the stage.
    fn monitor(&self, run: &Run, m: &MonitorPlan<'_>) -> PortResult<StepOutcome> {
        let clock = self.ports.clock;
        let start = clock.now();
        let alarms: Vec<&ferry_config::Alarm> = m
            .alarms
            .iter()
            .filter_map(|n| self.pipeline.alarm(n))
            .collect();
        let (advisory, binding): (Vec<&ferry_config::Alarm>, Vec<&ferry_config::Alarm>) =
            alarms.iter().partition(|a| a.advisory || m.advisory);
        let rules = |set: &[&ferry_config::Alarm]| {
            set.iter()
                .map(|a| (a.name.clone(), Rule::from(*a)))
                .collect::<Vec<_>>()
        };
        let (b_rules, a_rules) = (rules(&binding), rules(&advisory));
        let mut window = Window::new(
            start,
            m.duration,
            b_rules.iter().map(|(n, r)| (n.as_str(), *r)),
        );
        let mut watch_only = Window::new(
            start,
            m.duration,
            a_rules.iter().map(|(n, r)| (n.as_str(), *r)),
        );
        let mut next_sample: Vec<Timestamp> = alarms.iter().map(|_| start).collect();
        loop {
            let now = clock.now();
            for (i, a) in alarms.iter().enumerate() {
                let w = if a.advisory || m.advisory {
                    &mut watch_only
                } else {
                    &mut window
                };
                let changed = if matches!(a.source, AlarmSource::External) {
                    // Pushed state (`ferry alarm`, webhooks): only what was pushed during
                    // this window counts.
                    match self.ports.store.alarm_state(&a.name)? {
                        Some((state, why, at)) if at >= m.since => {
                            w.force(&a.name, state, &why).map(|s| (s, why))
                        }
                        _ => None,
                    }
                } else if now >= next_sample[i] {
                    let (dp, detail) = self.sample(a, next_sample[i].plus(a.period));
                    next_sample[i] = next_sample[i].plus(a.period);
                    w.observe(&a.name, dp, &detail).map(|s| (s, detail))
                } else {
                    None
                };
                if let Some((state, detail)) = changed {
                    let (breaching, considered) = w.counts(&a.name).unwrap_or((0, 0));
                    self.alarm_changed(
                        run,
                        a,
                        state,
                        &detail,
                        breaching,
                        considered,
                        a.advisory || m.advisory,
                    )?;
                }
            }
            let over = match window.state(clock.now()) {
                WindowState::Failed(why) => return Ok(StepOutcome::failed(why)),
                WindowState::Passed => true,
                WindowState::Watching => false,
            };
            if over {
                let alarmed = window.states().any(|(_, s)| s == AlarmState::Alarm);
                // Pushed alarms report only when something changes: no push is no news.
                let silent: Vec<&str> = window
                    .never_had_data()
                    .into_iter()
                    .filter(|n| {
                        self.pipeline
                            .alarm(n)
                            .is_some_and(|a| !matches!(a.source, AlarmSource::External))
                    })
                    .collect();
                return Ok(if alarmed {
                    StepOutcome::failed("an alarm is in ALARM at the end of the window")
                } else if m.fail_closed && !silent.is_empty() {
                    StepOutcome::failed(format!(
                        "alarm {} had no data for the whole window (INSUFFICIENT_DATA holds the promotion: fail closed); fix the probe or set `insufficient_data: pass`",
                        silent.join(", ")
                    ))
                } else {
                    StepOutcome::passed()
                });
            }
            if self.cancel.load(Ordering::SeqCst) || self.parking() {
                return Ok(StepOutcome::failed("cancelled by the user"));
            }
            let now = clock.now();
            let wake = next_sample
                .iter()
                .copied()
                .chain([window.end(), now.plus(m.interval)])
                .min()
                .unwrap_or(now);
            clock.sleep(wake.since(now).max(Duration::from_millis(1)));
        }
    }

    /// One datapoint of a probe alarm. A probe that could not take its measurement
    /// (`Missing`: Prometheus unreachable, a command that printed nothing) is retried
    /// with the seed's backoff (§6.2) while the retry still fits before the next
    /// period's datapoint is due; only then does the datapoint count as missing.
    fn sample(&self, a: &ferry_config::Alarm, due: Timestamp) -> (Datapoint, String) {
        let clock = self.ports.clock;
        let mut attempt = 1;
        loop {
            let (dp, detail) = self.ports.probe.sample(a);
            if dp != Datapoint::Missing {
                return (dp, detail);
            }
            attempt += 1;
            match self.settings.retry.delay_before(attempt) {
                Some(d) if clock.now().plus(d) < due => clock.sleep(d),
                _ => return (dp, detail),
            }
        }
    }

    /// Records an alarm's state change and its event (with the datapoints behind it).
    #[allow(clippy::too_many_arguments)]
    fn alarm_changed(
        &self,
        run: &Run,
        a: &ferry_config::Alarm,
        state: AlarmState,
        detail: &str,
        breaching: u32,
        considered: u32,
        advisory: bool,
    ) -> PortResult<()> {
        let now = self.ports.clock.now();
        let env = a.environment.clone();
        let note = if advisory { " (advisory)" } else { "" };
        let message = format!("alarm {} is {state}{note}: {detail}", a.name);
        self.ports.observer.note(&run.view, &message);
        self.commit(
            run,
            vec![
                Change::AlarmState {
                    alarm: a.name.clone(),
                    state,
                    reason: detail.to_string(),
                    at: now,
                },
                Change::Event(ferry_core::Event {
                    at: now,
                    kind: ferry_core::EventKind::AlarmStateChanged,
                    run: Some(run.id()),
                    environment: env,
                    message,
                    data: serde_json::json!({
                        "alarm": a.name,
                        "state": state,
                        "reason": detail,
                        "advisory": advisory,
                        "breachingDatapoints": breaching,
                        "consideredDatapoints": considered,
                        "datapointsToAlarm": a.datapoints_to_alarm,
                        "evaluationPeriods": a.evaluation_periods,
                        "period": ferry_config::format_duration(a.period),
                        "missingData": a.missing_data.as_str(),
                    }),
                }),
            ],
        )
    }

    fn command_outcome(
        &self,
        step: &str,
        how: &ExitObservation,
        checkout: &Path,
        junit: &[String],
        coverage: Option<&str>,
    ) -> StepOutcome {
        let mut problems = Vec::new();
        let mut tests: Option<ferry_reports::TestReport> = None;
        let started = !matches!(how, ExitObservation::NotStarted(_));
        if started {
            for pattern in junit {
                match self.ports.reports.read(checkout, pattern) {
                    Ok(files) if files.is_empty() => problems.push(format!(
                        "step `{step}` did not write its JUnit report `{pattern}`; make it write the file or remove it from `reports.junit`"
                    )),
                    Ok(files) => {
                        for (path, bytes) in files {
                            match ferry_reports::parse_junit(&bytes) {
                                Ok(t) => tests.get_or_insert_with(Default::default).merge(t),
                                Err(e) => problems.push(format!("JUnit report `{}` is unreadable: {e}", rel(checkout, &path))),
                            }
                        }
                    }
                    Err(e) => problems.push(e.message),
                }
            }
        }
        let mut cov_parts: Option<(u64, u64)> = None;
        if let (true, Some(pattern)) = (started, coverage) {
            match self.ports.reports.read(checkout, pattern) {
                Ok(files) if files.is_empty() => problems.push(format!(
                    "step `{step}` did not write its coverage report `{pattern}`; make it write the file or remove `reports.coverage`"
                )),
                Ok(files) => {
                    for (path, bytes) in files {
                        match ferry_reports::parse_coverage(&bytes) {
                            Ok(c) => {
                                let (f, h) = cov_parts.unwrap_or((0, 0));
                                cov_parts = Some((f + c.lines_found, h + c.lines_hit));
                            }
                            Err(e) => problems.push(format!("coverage report `{}` is unreadable: {e}", rel(checkout, &path))),
                        }
                    }
                }
                Err(e) => problems.push(e.message),
            }
        }
        let mut verdict = gates::command(how, tests.as_ref(), &problems);
        if let (ferry_core::gates::Verdict::Failed(why), ExitObservation::Code(c)) =
            (&mut verdict, how)
            && let Some(hint) = exit_hint(*c)
        {
            let status = format!("exited with status {c}");
            *why = why.replacen(&status, &format!("{status} ({hint})"), 1);
        }
        // Coverage from several files (a glob) is their union, not the first one.
        let cov = cov_parts.map(|(found, hit)| {
            ferry_reports::Coverage {
                lines_found: found,
                lines_hit: hit,
                format: ferry_reports::CoverageFormat::Lcov,
            }
            .percent()
        });
        StepOutcome {
            verdict: Some(verdict),
            exit_code: how.code(),
            tests,
            coverage: cov,
        }
    }

    /// The `FERRY_*` variables of a step. Untrusted commit text travels only here
    /// (DESIGN invariant 7).
    pub fn variables(&self, run: &Run, r: StepRef) -> BTreeMap<String, String> {
        let c = &run.view.commit;
        let mut v = BTreeMap::new();
        v.insert("FERRY_COMMIT_SHA".into(), c.sha.clone());
        v.insert("FERRY_COMMIT_MESSAGE".into(), c.message.clone());
        v.insert("FERRY_COMMIT_AUTHOR".into(), c.author.clone());
        v.insert("FERRY_VERSION".into(), c.sha.clone());
        v.insert("FERRY_RUN_ID".into(), run.id().to_string());
        v.insert("FERRY_PIPELINE".into(), run.view.pipeline.clone());
        v.insert("FERRY_STAGE".into(), run.stage_name(r.stage).to_string());
        v.insert("FERRY_STEP".into(), run.step_name(r).to_string());
        let (env, previous) = match run.plan.stages[r.stage].environment() {
            Some(env) => {
                let prev = run
                    .open_deployment(r.stage)
                    .and_then(|d| d.previous_version.clone())
                    .or_else(|| {
                        self.ports
                            .store
                            .last_known_good(env)
                            .ok()
                            .flatten()
                            .map(|d| d.version)
                    });
                (env.to_string(), prev.unwrap_or_default())
            }
            None => (String::new(), String::new()),
        };
        v.insert("FERRY_ENV".into(), env);
        v.insert("FERRY_PREVIOUS_VERSION".into(), previous);
        if let Some(a) = &run.view.artifact {
            v.insert("FERRY_ARTIFACT".into(), a.location.clone());
            v.insert("FERRY_ARTIFACT_DIGEST".into(), a.digest.clone());
        }
        v
    }

    fn commit(&self, run: &Run, changes: Vec<Change>) -> PortResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.ports.store.apply(run.id(), &changes)?;
        self.ports.observer.changed(&run.view, &changes);
        Ok(())
    }
}

/// Writes a step's log (its folder made first); the command's output is appended after.
fn write_log(log: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(log, text)
}

/// `sha256:<hex>` of some bytes.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn rel(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

/// What an exit status from `/bin/sh` usually means.
pub fn exit_hint(code: i32) -> Option<&'static str> {
    match code {
        126 => Some("a file it runs is not executable: `chmod +x` it and commit the mode"),
        127 => Some("command not found: check the spelling and that it is installed or committed"),
        _ => None,
    }
}
