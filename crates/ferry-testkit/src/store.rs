//! An in-memory [`Store`] that honours the whole contract of the trait (the same rules
//! `ferry-store`'s SQLite implementation enforces), with fault injection and an
//! inspection API for the simulation's assertions.

use crate::clock::Ticks;
use ferry_core::approval::Decision;
use ferry_core::run::{RunView, StageView, StepView};
use ferry_core::{
    Change, DeploymentRecord, DeploymentStatus, Event, RunId, RunStatus, StageStatus, StepStatus,
    Suite,
};
use ferry_engine::ports::{EventFilter, Lease, NewRun, PortError, PortResult, Store};
use ferry_reports::TestReport;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Decides which batches a fault applies to.
pub type ApplyPredicate = Box<dyn Fn(RunId, &[Change]) -> bool + Send + Sync>;

/// An event as stored: its id, the tick at which its batch was committed, the event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub tick: u64,
    pub event: Event,
}

/// A deployment record as stored, with the ticks at which it was inserted and closed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDeployment {
    pub record: DeploymentRecord,
    pub started_tick: u64,
    pub finished_tick: Option<u64>,
}

/// The test results recorded for one step (the `TestResults` change, read back).
#[derive(Debug, Clone, PartialEq)]
pub struct StepTestResults {
    pub stage: usize,
    pub step: usize,
    pub suite: Suite,
    pub report: TestReport,
    pub coverage: Option<f64>,
}

/// One call of [`Store::apply`], as the store saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyRecord {
    pub tick: u64,
    pub run: RunId,
    pub changes: Vec<Change>,
    /// The error returned, when the batch was refused (nothing of it was applied).
    pub error: Option<PortError>,
}

/// A lease taken, with the time the taker said it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    pub tick: u64,
    pub lease: Lease,
    pub now: ferry_core::Timestamp,
}

struct RunRow {
    view: RunView,
    trigger: String,
    triggered_by: String,
    tests: BTreeMap<(usize, usize), StepTestResults>,
}

struct Fault {
    /// Matching batches to let through before failing.
    skip: u32,
    /// Matching batches to fail after that.
    fail: u32,
    only: Option<ApplyPredicate>,
}

#[derive(Default)]
struct State {
    runs: BTreeMap<i64, RunRow>,
    next_run: i64,
    approvals: BTreeMap<(i64, String), Decision>,
    deployments: Vec<StoredDeployment>,
    events: Vec<StoredEvent>,
    leases: BTreeMap<String, Lease>,
    grants: Vec<LeaseGrant>,
    applies: Vec<ApplyRecord>,
    faults: Vec<Fault>,
}

/// A complete in-memory [`Store`]:
///
/// - every [`Store::apply`] is atomic: a batch with one bad change (an unknown step, a
///   duplicate deployment id, an unknown deployment) changes nothing;
/// - [`Store::load_run`] rebuilds the [`RunView`] from the changes with the same
///   timestamp rules as the SQLite store, so Property 6 (`load_run(id) == view`) is
///   checked against the contract, not against a copy of the core's view;
/// - approvals follow the trait's rules: `Conflict` if a decision is already recorded or
///   the run (and that environment's stage) is not awaiting approval, `NotFound` for an
///   unknown run or environment;
/// - leases: free, expired or already ours → taken; otherwise the holder comes back.
///
/// Faults: [`MemoryStore::fail_next_apply`] and friends make `apply` return
/// `PortErrorKind::Unavailable` without changing anything.
pub struct MemoryStore {
    state: Mutex<State>,
    ticks: Arc<Ticks>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store with its own tick counter.
    pub fn new() -> Self {
        Self::with_ticks(Arc::new(Ticks::new()))
    }

    /// An empty store stamping batches with ticks from `ticks` (shared with the
    /// deployers of a simulation, to order commits against deployments).
    pub fn with_ticks(ticks: Arc<Ticks>) -> Self {
        MemoryStore {
            state: Mutex::new(State {
                next_run: 1,
                ..State::default()
            }),
            ticks,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next `n` calls of `apply` fail with `Unavailable` and change nothing.
    pub fn fail_next_apply(&self, n: u32) {
        self.fail_apply_after(0, n);
    }

    /// Lets `skip` more calls of `apply` through, then fails the `n` after them.
    pub fn fail_apply_after(&self, skip: u32, n: u32) {
        self.lock().faults.push(Fault {
            skip,
            fail: n,
            only: None,
        });
    }

    /// Fails the next `n` batches for which `pred` holds (others go through).
    pub fn fail_apply_if(
        &self,
        n: u32,
        pred: impl Fn(RunId, &[Change]) -> bool + Send + Sync + 'static,
    ) {
        self.lock().faults.push(Fault {
            skip: 0,
            fail: n,
            only: Some(Box::new(pred)),
        });
    }

    /// Every deployment record ever inserted, in insertion order, with its ticks.
    pub fn all_deployments(&self) -> Vec<StoredDeployment> {
        self.lock().deployments.clone()
    }

    /// Every event, in id order, with the tick of its batch.
    pub fn all_events(&self) -> Vec<StoredEvent> {
        self.lock().events.clone()
    }

    /// Every call of `apply`, refused ones included, in order.
    pub fn applies(&self) -> Vec<ApplyRecord> {
        self.lock().applies.clone()
    }

    /// The test results recorded for a run, in step order.
    pub fn test_results(&self, run: RunId) -> Vec<StepTestResults> {
        self.lock()
            .runs
            .get(&run.0)
            .map(|r| r.tests.values().cloned().collect())
            .unwrap_or_default()
    }

    /// `(trigger, triggered_by)` of a run.
    pub fn trigger(&self, run: RunId) -> Option<(String, String)> {
        self.lock()
            .runs
            .get(&run.0)
            .map(|r| (r.trigger.clone(), r.triggered_by.clone()))
    }

    /// Who holds the lease on an environment, expired or not.
    pub fn lease(&self, environment: &str) -> Option<Lease> {
        self.lock().leases.get(environment).cloned()
    }

    /// Every successful `acquire_lease`, in order.
    pub fn lease_grants(&self) -> Vec<LeaseGrant> {
        self.lock().grants.clone()
    }

    /// Whether the next apply of `changes` to `run` should fail, consuming one fault.
    fn fault(state: &mut State, run: RunId, changes: &[Change]) -> Option<PortError> {
        for f in state.faults.iter_mut() {
            if f.fail == 0 || !f.only.as_ref().is_none_or(|p| p(run, changes)) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            f.fail -= 1;
            return Some(PortError::unavailable(
                "state store is unavailable (injected fault); try again when it is back",
            ));
        }
        None
    }
}

fn not_found_run(run: RunId) -> PortError {
    PortError::not_found(format!("run {run} does not exist"))
}

/// Applies one change to a copy of the run and the pending deployment/event lists.
fn apply_change(
    row: &mut RunRow,
    deployments: &mut Vec<StoredDeployment>,
    events: &mut Vec<StoredEvent>,
    next_event: &mut i64,
    tick: u64,
    run: RunId,
    change: &Change,
) -> PortResult<()> {
    let view = &mut row.view;
    match change {
        Change::Run { status, reason, at } => {
            view.status = *status;
            if reason.is_some() {
                view.reason = reason.clone();
            }
            if matches!(status, RunStatus::Running | RunStatus::AwaitingApproval)
                && view.started_at.is_none()
            {
                view.started_at = Some(*at);
            }
            if status.is_terminal() {
                view.ended_at = Some(*at);
            }
        }
        Change::Stage { stage, status, at } => {
            let s = stage_mut(view, run, *stage)?;
            s.status = *status;
            match status {
                StageStatus::Pending | StageStatus::Skipped => {}
                StageStatus::Running | StageStatus::AwaitingApproval => {
                    s.started_at.get_or_insert(*at);
                }
                StageStatus::Succeeded | StageStatus::Failed | StageStatus::Cancelled => {
                    s.started_at.get_or_insert(*at);
                    s.ended_at = Some(*at);
                }
            }
        }
        Change::Step {
            stage,
            step,
            status,
            at,
            log,
            exit_code,
            reason,
        } => {
            let t = step_mut(view, run, *stage, *step)?;
            t.status = *status;
            match status {
                StepStatus::Running => {
                    t.log = log.clone();
                    t.started_at = Some(*at);
                }
                StepStatus::Succeeded | StepStatus::Failed | StepStatus::Cancelled => {
                    if log.is_some() {
                        t.log = log.clone();
                    }
                    t.ended_at = Some(*at);
                    t.exit_code = *exit_code;
                    t.reason = reason.clone();
                }
                StepStatus::Pending | StepStatus::Skipped => {
                    if log.is_some() {
                        t.log = log.clone();
                    }
                }
            }
        }
        Change::TestResults {
            stage,
            step,
            suite,
            report,
            coverage,
        } => {
            step_mut(view, run, *stage, *step)?;
            row.tests.insert(
                (*stage, *step),
                StepTestResults {
                    stage: *stage,
                    step: *step,
                    suite: *suite,
                    report: report.clone(),
                    coverage: *coverage,
                },
            );
        }
        Change::Artifact(a) => view.artifact = Some(a.clone()),
        Change::DeploymentStarted(d) => {
            if deployments
                .iter()
                .any(|x| x.record.deployment_id == d.deployment_id)
            {
                return Err(PortError::conflict(format!(
                    "deployment {} is already recorded",
                    d.deployment_id
                )));
            }
            deployments.push(StoredDeployment {
                record: d.clone(),
                started_tick: tick,
                finished_tick: None,
            });
        }
        Change::DeploymentFinished {
            deployment_id,
            status,
            end_time,
            unit_tests_passed,
            integration_tests_passed,
            e2e_tests_passed,
            coverage_percentage,
        } => {
            let Some(d) = deployments
                .iter_mut()
                .find(|x| &x.record.deployment_id == deployment_id)
            else {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                )));
            };
            d.record.status = *status;
            d.record.end_time = Some(end_time.millis());
            d.record.unit_tests_passed = *unit_tests_passed;
            d.record.integration_tests_passed = *integration_tests_passed;
            d.record.e2e_tests_passed = *e2e_tests_passed;
            d.record.coverage_percentage = *coverage_percentage;
            d.finished_tick = Some(tick);
        }
        Change::Event(e) => {
            events.push(StoredEvent {
                id: *next_event,
                tick,
                event: e.clone(),
            });
            *next_event += 1;
        }
    }
    Ok(())
}

fn stage_mut(view: &mut RunView, run: RunId, stage: usize) -> PortResult<&mut StageView> {
    view.stages
        .get_mut(stage)
        .ok_or_else(|| PortError::not_found(format!("run {run} has no stage {stage}")))
}

fn step_mut(
    view: &mut RunView,
    run: RunId,
    stage: usize,
    step: usize,
) -> PortResult<&mut StepView> {
    view.stages
        .get_mut(stage)
        .and_then(|s| s.steps.get_mut(step))
        .ok_or_else(|| {
            PortError::not_found(format!("run {run} has no step {step} in stage {stage}"))
        })
}

impl Store for MemoryStore {
    fn create_run(&self, run: &NewRun) -> PortResult<RunId> {
        let mut st = self.lock();
        let id = RunId(st.next_run);
        st.next_run += 1;
        let view = RunView {
            id,
            pipeline: run.pipeline.clone(),
            commit: run.commit.clone(),
            status: RunStatus::Queued,
            reason: None,
            created_at: run.created_at,
            started_at: None,
            ended_at: None,
            artifact: None,
            stages: run
                .stages
                .iter()
                .map(|(name, steps)| StageView {
                    name: name.clone(),
                    status: StageStatus::Pending,
                    started_at: None,
                    ended_at: None,
                    steps: steps
                        .iter()
                        .map(|(name, kind)| StepView {
                            name: name.clone(),
                            kind: kind.clone(),
                            status: StepStatus::Pending,
                            started_at: None,
                            ended_at: None,
                            exit_code: None,
                            reason: None,
                            log: None,
                        })
                        .collect(),
                })
                .collect(),
        };
        st.runs.insert(
            id.0,
            RunRow {
                view,
                trigger: run.trigger.clone(),
                triggered_by: run.triggered_by.clone(),
                tests: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    fn apply(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        let mut guard = self.lock();
        let st = &mut *guard;
        let tick = self.ticks.next();
        let result = (|| {
            if let Some(e) = MemoryStore::fault(st, run, changes) {
                return Err(e);
            }
            let row = st.runs.get(&run.0).ok_or_else(|| not_found_run(run))?;
            // Work on copies; commit them only when every change applied.
            let mut scratch = RunRow {
                view: row.view.clone(),
                trigger: row.trigger.clone(),
                triggered_by: row.triggered_by.clone(),
                tests: row.tests.clone(),
            };
            let mut deployments = st.deployments.clone();
            let mut events = Vec::new();
            let mut next_event = st.events.last().map_or(1, |e| e.id + 1);
            for c in changes {
                apply_change(
                    &mut scratch,
                    &mut deployments,
                    &mut events,
                    &mut next_event,
                    tick,
                    run,
                    c,
                )?;
            }
            st.runs.insert(run.0, scratch);
            st.deployments = deployments;
            st.events.extend(events);
            Ok(())
        })();
        st.applies.push(ApplyRecord {
            tick,
            run,
            changes: changes.to_vec(),
            error: result.as_ref().err().cloned(),
        });
        result
    }

    fn load_run(&self, run: RunId) -> PortResult<RunView> {
        self.lock()
            .runs
            .get(&run.0)
            .map(|r| r.view.clone())
            .ok_or_else(|| not_found_run(run))
    }

    fn list_runs(&self, limit: usize, unfinished_only: bool) -> PortResult<Vec<RunView>> {
        Ok(self
            .lock()
            .runs
            .values()
            .rev()
            .filter(|r| !unfinished_only || !r.view.status.is_terminal())
            .take(limit)
            .map(|r| r.view.clone())
            .collect())
    }

    fn approval(&self, run: RunId, environment: &str) -> PortResult<Option<Decision>> {
        let st = self.lock();
        if !st.runs.contains_key(&run.0) {
            return Err(not_found_run(run));
        }
        Ok(st.approvals.get(&(run.0, environment.to_string())).cloned())
    }

    fn decide(&self, run: RunId, environment: &str, decision: &Decision) -> PortResult<()> {
        let mut st = self.lock();
        let row = st.runs.get(&run.0).ok_or_else(|| not_found_run(run))?;
        let key = (run.0, environment.to_string());
        if let Some(prior) = st.approvals.get(&key) {
            let verb = if prior.approved {
                "approved"
            } else {
                "rejected"
            };
            return Err(PortError::conflict(format!(
                "run {run} was already {verb} by {}",
                prior.by
            )));
        }
        let view = &row.view;
        if view.status != RunStatus::AwaitingApproval {
            return Err(PortError::conflict(format!(
                "run {run} is not waiting for approval (it is {})",
                view.status
            )));
        }
        let Some(stage) = view.stages.iter().find(|s| s.name == environment) else {
            return Err(PortError::not_found(format!(
                "run {run} has no environment `{environment}`"
            )));
        };
        if stage.status != StageStatus::AwaitingApproval {
            return Err(PortError::conflict(format!(
                "run {run} is not waiting for approval to deploy to {environment} (stage {environment} is {})",
                stage.status
            )));
        }
        st.approvals.insert(key, decision.clone());
        Ok(())
    }

    fn deployments(
        &self,
        environment: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        let st = self.lock();
        let mut out: Vec<DeploymentRecord> = st
            .deployments
            .iter()
            .map(|d| d.record.clone())
            .filter(|d| environment.is_none_or(|e| d.environment == e))
            .collect();
        out.sort_by(|a, b| {
            b.start_time
                .cmp(&a.start_time)
                .then_with(|| b.deployment_id.cmp(&a.deployment_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn last_known_good(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        Ok(newest(self.lock().deployments.iter().filter(|d| {
            d.record.environment == environment && d.record.status == DeploymentStatus::Succeeded
        })))
    }

    fn latest_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        Ok(newest(
            self.lock()
                .deployments
                .iter()
                .filter(|d| d.record.environment == environment),
        ))
    }

    fn events(&self, filter: &EventFilter) -> PortResult<Vec<(i64, Event)>> {
        Ok(self
            .lock()
            .events
            .iter()
            .filter(|e| filter.run.is_none_or(|r| e.event.run == Some(r)))
            .filter(|e| {
                filter
                    .environment
                    .as_deref()
                    .is_none_or(|env| e.event.environment.as_deref() == Some(env))
            })
            .filter(|e| filter.after_id.is_none_or(|a| e.id > a))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|e| (e.id, e.event.clone()))
            .collect())
    }

    fn acquire_lease(
        &self,
        lease: &Lease,
        now: ferry_core::Timestamp,
    ) -> PortResult<Result<(), Lease>> {
        let mut st = self.lock();
        if !st.runs.contains_key(&lease.run.0) {
            return Err(not_found_run(lease.run));
        }
        if let Some(held) = st.leases.get(&lease.environment)
            && held.run != lease.run
            && held.expires_at > now
        {
            return Ok(Err(held.clone()));
        }
        st.leases.insert(lease.environment.clone(), lease.clone());
        let tick = self.ticks.next();
        st.grants.push(LeaseGrant {
            tick,
            lease: lease.clone(),
            now,
        });
        Ok(Ok(()))
    }

    fn renew_lease(&self, lease: &Lease) -> PortResult<()> {
        let mut st = self.lock();
        match st.leases.get_mut(&lease.environment) {
            Some(held) if held.run == lease.run => {
                held.holder = lease.holder.clone();
                held.expires_at = lease.expires_at;
                Ok(())
            }
            Some(held) => Err(PortError::conflict(format!(
                "run {} no longer holds the lease on {}: run {} ({}) holds it",
                lease.run, lease.environment, held.run, held.holder
            ))),
            None => Err(PortError::conflict(format!(
                "run {} no longer holds the lease on {}: nobody holds it",
                lease.run, lease.environment
            ))),
        }
    }

    fn release_lease(&self, environment: &str, run: RunId) -> PortResult<()> {
        let mut st = self.lock();
        if st.leases.get(environment).is_some_and(|l| l.run == run) {
            st.leases.remove(environment);
        }
        Ok(())
    }
}

/// The newest record: latest start, and among equal starts the last inserted.
fn newest<'a>(it: impl Iterator<Item = &'a StoredDeployment>) -> Option<DeploymentRecord> {
    it.enumerate()
        .max_by_key(|(i, d)| (d.record.start_time, *i))
        .map(|(_, d)| d.record.clone())
}
