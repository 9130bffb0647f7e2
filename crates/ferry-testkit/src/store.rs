//! An in-memory [`Store`] that honours the whole contract of the trait (the same rules
//! `ferry-store`'s SQLite implementation enforces), with fault injection and an
//! inspection API for the simulation's assertions.

use crate::clock::Ticks;
use ferry_core::alarm::AlarmState;
use ferry_core::approval::Decision;
use ferry_core::notify::DeliveryStatus;
use ferry_core::rollback::RollbackRecord;
use ferry_core::run::{RunView, StageView, StepView};
use ferry_core::window::{self, BreakGlass, Freeze};
use ferry_core::{
    Change, DeploymentRecord, DeploymentStatus, Event, RunId, RunStatus, StageStatus, StepStatus,
    Suite, Timestamp,
};
use ferry_engine::ports::{
    EventFilter, FindingCounts, FindingRecord, Incident, Lease, Ledger, MetricCounts, NewRun,
    OutboxChannel, OutboxCounts, OutboxFilter, OutboxItem, PortError, PortResult, Settle, Store,
};
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
    driver: String,
    tests: BTreeMap<(usize, usize), StepTestResults>,
    /// The security gate's findings, in the order recorded.
    findings: Vec<FindingRecord>,
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
    /// Every decision per (run, environment), in the order recorded.
    approvals: BTreeMap<(i64, String), Vec<Decision>>,
    deployments: Vec<StoredDeployment>,
    events: Vec<StoredEvent>,
    leases: BTreeMap<String, Lease>,
    grants: Vec<LeaseGrant>,
    applies: Vec<ApplyRecord>,
    faults: Vec<Fault>,
    /// One record per deployment id.
    rollbacks: BTreeMap<String, RollbackRecord>,
    /// Every incident ever opened, in id order (ids count from 1).
    incidents: Vec<Incident>,
    configs: BTreeMap<String, String>,
    alarms: BTreeMap<String, (AlarmState, String, Timestamp)>,
    /// Webhook delivery ids and the run each started.
    deliveries: BTreeMap<String, (Option<RunId>, Timestamp)>,
    /// Every freeze ever set, in id order (ids count from 1).
    freezes: Vec<Freeze>,
    /// Every break-glass override ever requested, in id order (ids count from 1).
    overrides: Vec<BreakGlass>,
    /// The notification outbox's cursor per channel: the last event id considered.
    cursors: BTreeMap<String, i64>,
    /// The outbox, in id order (ids count from 1); the item's `event` is filled on read.
    outbox: Vec<OutboxItem>,
}

/// What one batch changes outside its run, worked on as a copy and committed only when
/// every change of the batch applied.
struct Pending {
    deployments: Vec<StoredDeployment>,
    events: Vec<StoredEvent>,
    next_event: i64,
    incidents: Vec<Incident>,
    alarms: BTreeMap<String, (AlarmState, String, Timestamp)>,
    /// `(run, environment, reason)`: decisions voided by the batch.
    voids: Vec<(i64, String, String)>,
    tick: u64,
}

impl Pending {
    fn of(st: &State, tick: u64) -> Pending {
        Pending {
            deployments: st.deployments.clone(),
            events: Vec::new(),
            next_event: st.events.last().map_or(1, |e| e.id + 1),
            incidents: st.incidents.clone(),
            alarms: st.alarms.clone(),
            voids: Vec::new(),
            tick,
        }
    }

    fn commit(self, st: &mut State) {
        st.deployments = self.deployments;
        st.events.extend(self.events);
        st.incidents = self.incidents;
        st.alarms = self.alarms;
        for (run, env, reason) in self.voids {
            for d in st.approvals.entry((run, env)).or_default() {
                if d.void.is_none() {
                    d.void = Some(reason.clone());
                }
            }
        }
    }

    fn event(&mut self, e: &Event) {
        self.events.push(StoredEvent {
            id: self.next_event,
            tick: self.tick,
            event: e.clone(),
        });
        self.next_event += 1;
    }

    fn alarm(&mut self, alarm: &str, state: AlarmState, reason: &str, at: Timestamp) {
        self.alarms
            .insert(alarm.to_string(), (state, reason.to_string(), at));
    }
}

/// A complete in-memory [`Store`]:
///
/// - every [`Store::apply`] is atomic: a batch with one bad change (an unknown step, a
///   duplicate deployment id, an unknown deployment) changes nothing;
/// - [`Store::load_run`] rebuilds the [`RunView`] from the changes with the same
///   timestamp rules as the SQLite store, so Property 6 (`load_run(id) == view`) is
///   checked against the contract, not against a copy of the core's view;
/// - approvals follow the trait's rules: `Conflict` if that person already decided, a
///   rejection is recorded, or the run (and that environment's stage) is not awaiting
///   approval, `NotFound` for an
///   unknown run or environment;
/// - leases: free, expired or already ours → taken; otherwise the holder comes back;
/// - rollbacks: one record per deployment, claimed once (later claims get the record);
/// - incidents: at most one open per environment (opening another keeps the first);
///   resolving appends an `incident_resolved` event of no run;
/// - [`Store::record_alarm`] takes alarm states and events only, all or nothing.
///
/// Faults: [`MemoryStore::fail_next_apply`] and friends make `apply` return
/// `PortErrorKind::Unavailable` without changing anything.
pub struct MemoryStore {
    state: Mutex<State>,
    ticks: Arc<Ticks>,
    /// Secrets replaced by `***` in what is written, as `SqliteStore::set_redactor`.
    redactor: std::sync::RwLock<ferry_core::Redactor>,
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
            redactor: Default::default(),
        }
    }

    /// Makes every later write replace these secrets by `***`, exactly as
    /// `SqliteStore::set_redactor`: events, run and step reasons, rollback and alarm
    /// reasons.
    pub fn set_redactor(&self, redactor: ferry_core::Redactor) {
        *self
            .redactor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = redactor;
    }

    fn redactor(&self) -> ferry_core::Redactor {
        self.redactor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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

    /// Every successful `acquire_lease` and `take_over_lease` (a take-over is recorded as
    /// granted at the expiry of the lease it replaced), in order.
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

/// Applies one change to a copy of the run and of what the batch changes outside it.
fn apply_change(
    row: &mut RunRow,
    pending: &mut Pending,
    run: RunId,
    change: &Change,
) -> PortResult<()> {
    let tick = pending.tick;
    let deployments = &mut pending.deployments;
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
                record: (**d).clone(),
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
        Change::DeploymentInfrastructure {
            deployment_id,
            infrastructure_changed,
            rollback_unsafe,
            rollback_unsafe_reason,
        } => {
            let Some(d) = deployments
                .iter_mut()
                .find(|x| &x.record.deployment_id == deployment_id)
            else {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                )));
            };
            d.record.infrastructure_changed = *infrastructure_changed;
            d.record.rollback_unsafe = *rollback_unsafe;
            d.record.rollback_unsafe_reason = rollback_unsafe_reason.clone();
        }
        Change::DeploymentRolledBack {
            deployment_id,
            reason,
            level,
            at,
        } => {
            let Some(d) = deployments
                .iter_mut()
                .find(|x| &x.record.deployment_id == deployment_id)
            else {
                return Err(PortError::not_found(format!(
                    "deployment {deployment_id} does not exist"
                )));
            };
            d.record.status = DeploymentStatus::RolledBack;
            d.record.rollback_reason = Some(reason.clone());
            d.record.rollback_level = Some(*level);
            d.record.rollback_time = Some(at.millis());
        }
        Change::IncidentOpened {
            environment,
            deployment_id,
            reason,
            at,
        } => {
            // An environment already held keeps its open incident; nothing is added.
            if !pending
                .incidents
                .iter()
                .any(|i| &i.environment == environment && i.resolved_at.is_none())
            {
                let id = pending.incidents.last().map_or(1, |i| i.id + 1);
                pending.incidents.push(Incident {
                    id,
                    environment: environment.clone(),
                    deployment_id: deployment_id.clone(),
                    reason: reason.clone(),
                    opened_at: *at,
                    resolved_at: None,
                    resolved_by: None,
                });
            }
        }
        Change::AlarmState {
            alarm,
            state,
            reason,
            at,
        } => pending.alarm(alarm, *state, reason, *at),
        Change::ApprovalsVoided {
            environment,
            reason,
            ..
        } => pending
            .voids
            .push((run.0, environment.clone(), reason.clone())),
        Change::Event(e) => pending.event(e),
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

impl Ledger for MemoryStore {
    fn record_rollback(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        // As the SQLite store: a rollback whose run another store keeps (the split
        // store of `ferry step`) is recorded without the run, through a stand-in row.
        let outside = changes.iter().all(|c| {
            matches!(
                c,
                Change::Event(_)
                    | Change::DeploymentRolledBack { .. }
                    | Change::IncidentOpened { .. }
            )
        });
        let placeholder = outside && {
            let mut st = self.lock();
            match st.runs.entry(run.0) {
                std::collections::btree_map::Entry::Occupied(_) => false,
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(RunRow {
                        view: RunView {
                            id: run,
                            pipeline: String::new(),
                            commit: ferry_core::Commit {
                                sha: String::new(),
                                message: String::new(),
                                author: String::new(),
                            },
                            status: RunStatus::Succeeded,
                            reason: None,
                            created_at: Timestamp(0),
                            started_at: None,
                            ended_at: None,
                            artifact: None,
                            stages: Vec::new(),
                            hotfix: false,
                        },
                        trigger: String::new(),
                        triggered_by: String::new(),
                        driver: String::new(),
                        tests: BTreeMap::new(),
                        findings: Vec::new(),
                    });
                    true
                }
            }
        };
        let result = self.apply(run, changes);
        if placeholder {
            self.lock().runs.remove(&run.0);
        }
        result
    }
    fn record_deployment(&self, deployment: &DeploymentRecord) -> PortResult<()> {
        let tick = self.ticks.next();
        let mut st = self.lock();
        let finished = (deployment.status != DeploymentStatus::InProgress).then_some(tick);
        match st
            .deployments
            .iter_mut()
            .find(|d| d.record.deployment_id == deployment.deployment_id)
        {
            Some(d) => {
                d.record = deployment.clone();
                d.finished_tick = d.finished_tick.or(finished);
            }
            None => st.deployments.push(StoredDeployment {
                record: deployment.clone(),
                started_tick: tick,
                finished_tick: finished,
            }),
        }
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
    fn acquire_lease(
        &self,
        lease: &Lease,
        now: ferry_core::Timestamp,
    ) -> PortResult<Result<(), Lease>> {
        let mut st = self.lock();
        // As the SQLite store: a run's lease does not need its run in this store.
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
    fn take_over_lease(&self, want: &Lease, gone: &Lease) -> PortResult<Result<(), Lease>> {
        let mut st = self.lock();
        if let Some(held) = st.leases.get(&want.environment)
            && held != gone
        {
            return Ok(Err(held.clone()));
        }
        st.leases.insert(want.environment.clone(), want.clone());
        let tick = self.ticks.next();
        // Granted as at the gone holder's expiry: from then on it was free to take.
        st.grants.push(LeaseGrant {
            tick,
            lease: want.clone(),
            now: gone.expires_at,
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
    fn claim_rollback(&self, rec: &RollbackRecord) -> PortResult<Result<(), RollbackRecord>> {
        let rec = &self.redactor().rollback(rec);
        let mut st = self.lock();
        if let Some(existing) = st.rollbacks.get(&rec.deployment_id) {
            return Ok(Err(existing.clone()));
        }
        st.rollbacks.insert(rec.deployment_id.clone(), rec.clone());
        Ok(Ok(()))
    }
    fn update_rollback(&self, rec: &RollbackRecord) -> PortResult<()> {
        let rec = &self.redactor().rollback(rec);
        let mut st = self.lock();
        match st.rollbacks.get_mut(&rec.deployment_id) {
            Some(stored) => {
                *stored = rec.clone();
                Ok(())
            }
            None => Err(PortError::not_found(format!(
                "no rollback of deployment {} was claimed",
                rec.deployment_id
            ))),
        }
    }
    fn rollback(&self, deployment_id: &str) -> PortResult<Option<RollbackRecord>> {
        Ok(self.lock().rollbacks.get(deployment_id).cloned())
    }
    fn hold(&self, environment: &str) -> PortResult<Option<Incident>> {
        Ok(self
            .lock()
            .incidents
            .iter()
            .find(|i| i.environment == environment && i.resolved_at.is_none())
            .cloned())
    }
    fn resolve(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Incident> {
        let mut st = self.lock();
        let Some(incident) = st
            .incidents
            .iter_mut()
            .find(|i| i.environment == environment && i.resolved_at.is_none())
        else {
            return Err(PortError::not_found(format!(
                "environment {environment} has no open incident"
            )));
        };
        incident.resolved_at = Some(at);
        incident.resolved_by = Some(by.to_string());
        let incident = incident.clone();
        let mut pending = Pending::of(&st, self.ticks.next());
        pending.event(&incident.resolved_event(at));
        pending.commit(&mut st);
        Ok(incident)
    }
    fn unfreeze(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Vec<Freeze>> {
        let mut st = self.lock();
        let mut lifted = Vec::new();
        for f in st.freezes.iter_mut() {
            if f.environment == environment && f.end() > at {
                f.lifted_at = Some(at);
                f.lifted_by = Some(by.to_string());
                lifted.push(f.clone());
            }
        }
        if lifted.is_empty() {
            return Err(PortError::not_found(window::not_frozen(environment)));
        }
        let mut pending = Pending::of(&st, self.ticks.next());
        for f in &lifted {
            pending.event(&f.lifted_event());
        }
        pending.commit(&mut st);
        Ok(lifted)
    }
    fn freezes(&self, environment: Option<&str>, at: Timestamp) -> PortResult<Vec<Freeze>> {
        Ok(self
            .lock()
            .freezes
            .iter()
            .filter(|f| environment.is_none_or(|e| f.environment == e) && f.end() > at)
            .cloned()
            .collect())
    }
    fn freeze(&self, freeze: &Freeze) -> PortResult<Freeze> {
        let mut st = self.lock();
        let mut f = freeze.clone();
        f.id = i64::try_from(st.freezes.len()).unwrap_or(i64::MAX) + 1;
        f.lifted_at = None;
        f.lifted_by = None;
        let mut pending = Pending::of(&st, self.ticks.next());
        pending.event(&f.set_event());
        pending.commit(&mut st);
        st.freezes.push(f.clone());
        Ok(f)
    }
    fn alarm_state(&self, alarm: &str) -> PortResult<Option<(AlarmState, String, Timestamp)>> {
        Ok(self.lock().alarms.get(alarm).cloned())
    }
    fn config(&self, digest: &str) -> PortResult<Option<String>> {
        Ok(self.lock().configs.get(digest).cloned())
    }
}

impl Store for MemoryStore {
    fn create_run(&self, run: &NewRun) -> PortResult<RunId> {
        let mut st = self.lock();
        let id = match run.id {
            Some(id) if st.runs.contains_key(&id.0) => {
                return Err(PortError::conflict(format!(
                    "run {id} already exists in this store"
                )));
            }
            Some(id) => {
                st.next_run = st.next_run.max(id.0 + 1);
                id
            }
            None => RunId(st.next_run),
        };
        st.next_run = st.next_run.max(id.0 + 1);
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
            hotfix: run.hotfix,
        };
        st.runs.insert(
            id.0,
            RunRow {
                view,
                trigger: run.trigger.clone(),
                triggered_by: run.triggered_by.clone(),
                driver: run.driver.clone(),
                tests: BTreeMap::new(),
                findings: Vec::new(),
            },
        );
        Ok(id)
    }

    fn apply(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        let redactor = self.redactor();
        let redacted;
        let changes = if redactor.is_empty() {
            changes
        } else {
            redacted = redactor.changes(changes);
            redacted.as_slice()
        };
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
                driver: row.driver.clone(),
                tests: row.tests.clone(),
                findings: row.findings.clone(),
            };
            let mut pending = Pending::of(st, tick);
            for c in changes {
                apply_change(&mut scratch, &mut pending, run, c)?;
            }
            st.runs.insert(run.0, scratch);
            pending.commit(st);
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

    fn driver(&self, run: RunId) -> PortResult<Option<String>> {
        let st = self.lock();
        match st.runs.get(&run.0) {
            Some(r) => Ok((!r.driver.is_empty()).then(|| r.driver.clone())),
            None => Err(not_found_run(run)),
        }
    }

    fn claim_run(&self, run: RunId, from: &str, to: &str) -> PortResult<bool> {
        let mut st = self.lock();
        match st.runs.get_mut(&run.0) {
            Some(r) if r.driver == from => {
                r.driver = to.to_string();
                Ok(true)
            }
            Some(_) => Ok(false),
            None => Err(not_found_run(run)),
        }
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

    fn triggered(&self, run: RunId) -> PortResult<(String, String)> {
        MemoryStore::trigger(self, run).ok_or_else(|| not_found_run(run))
    }

    fn approvals(&self, run: RunId, environment: &str) -> PortResult<Vec<Decision>> {
        let st = self.lock();
        if !st.runs.contains_key(&run.0) {
            return Err(not_found_run(run));
        }
        Ok(st
            .approvals
            .get(&(run.0, environment.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn decide(&self, run: RunId, environment: &str, decision: &Decision) -> PortResult<()> {
        let mut st = self.lock();
        let row = st.runs.get(&run.0).ok_or_else(|| not_found_run(run))?;
        let key = (run.0, environment.to_string());
        let prior = st.approvals.get(&key).cloned().unwrap_or_default();
        let live = || prior.iter().filter(|p| p.void.is_none());
        if let Some(p) = live()
            .find(|p| !p.approved)
            .or_else(|| live().find(|p| p.by.trim().eq_ignore_ascii_case(decision.by.trim())))
        {
            let verb = if p.approved { "approved" } else { "rejected" };
            return Err(PortError::conflict(format!(
                "run {run} was already {verb} by {} at {}",
                p.by,
                ferry_core::events::iso8601(p.at)
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
        st.approvals.entry(key).or_default().push(decision.clone());
        Ok(())
    }

    fn deployments_before(
        &self,
        environment: Option<&str>,
        before: Option<(i64, &str)>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        // As SQLite: ordered by (start_time, deployment_id) descending, strictly below
        // the cursor.
        let mut out = self.deployments(environment, usize::MAX)?;
        if let Some((t, id)) = before {
            out.retain(|d| (d.start_time, d.deployment_id.as_str()) < (t, id));
        }
        out.truncate(limit);
        Ok(out)
    }

    fn runs_before(&self, before: Option<RunId>, limit: usize) -> PortResult<Vec<RunView>> {
        Ok(self
            .lock()
            .runs
            .range(..before.map_or(i64::MAX, |r| r.0))
            .rev()
            .take(limit)
            .map(|(_, r)| r.view.clone())
            .collect())
    }

    fn dora_samples(
        &self,
        environment: &str,
        since: Timestamp,
    ) -> PortResult<Vec<ferry_core::dora::Sample>> {
        let st = self.lock();
        let mut out: Vec<(i64, ferry_core::dora::Sample)> =
            st.deployments
                .iter()
                .map(|d| &d.record)
                .filter(|d| d.environment == environment && d.start_time >= since.0)
                .map(|d| {
                    let rollback = st.rollbacks.get(&d.deployment_id).map(|r| {
                        ferry_core::dora::RollbackFacts {
                            trigger: r.trigger.clone(),
                            status: r.status,
                            started: r.started_at,
                            ended: r.ended_at,
                        }
                    });
                    let queued = st
                        .runs
                        .get(&d.run_id.0)
                        .map_or(Timestamp(d.start_time), |r| r.view.created_at);
                    (
                        d.start_time,
                        ferry_core::dora::Sample {
                            start: Timestamp(d.start_time),
                            end: d.end_time.map(Timestamp),
                            status: d.status,
                            queued,
                            rollback,
                        },
                    )
                })
                .collect();
        out.sort_by_key(|(t, _)| *t);
        Ok(out.into_iter().map(|(_, s)| s).collect())
    }

    fn events(&self, filter: &EventFilter) -> PortResult<Vec<(i64, Event)>> {
        let st = self.lock();
        let all: Box<dyn Iterator<Item = _>> = if filter.newest_first {
            Box::new(st.events.iter().rev())
        } else {
            Box::new(st.events.iter())
        };
        Ok(all
            .filter(|e| filter.run.is_none_or(|r| e.event.run == Some(r)))
            .filter(|e| filter.kind.is_none_or(|k| e.event.kind == k))
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

    fn rollbacks(&self, limit: usize) -> PortResult<Vec<RollbackRecord>> {
        let mut out: Vec<RollbackRecord> = self.lock().rollbacks.values().cloned().collect();
        out.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.deployment_id.cmp(&a.deployment_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    fn put_config(&self, digest: &str, text: &str) -> PortResult<()> {
        self.lock()
            .configs
            .entry(digest.to_string())
            .or_insert_with(|| text.to_string());
        Ok(())
    }

    fn record_alarm(&self, changes: &[Change]) -> PortResult<()> {
        let redactor = self.redactor();
        let redacted;
        let changes = if redactor.is_empty() {
            changes
        } else {
            redacted = redactor.changes(changes);
            redacted.as_slice()
        };
        let mut st = self.lock();
        let mut pending = Pending::of(&st, self.ticks.next());
        for change in changes {
            match change {
                Change::AlarmState {
                    alarm,
                    state,
                    reason,
                    at,
                } => pending.alarm(alarm, *state, reason, *at),
                Change::Event(e) => pending.event(e),
                other => {
                    return Err(PortError::permanent(format!(
                        "an alarm can record only alarm states and events, not a `{}` change",
                        other.name()
                    )));
                }
            }
        }
        pending.commit(&mut st);
        Ok(())
    }

    fn record_delivery(
        &self,
        id: &str,
        run: Option<RunId>,
        at: Timestamp,
    ) -> PortResult<Result<(), Option<RunId>>> {
        let mut st = self.lock();
        if let Some((earlier, _)) = st.deliveries.get(id) {
            return Ok(Err(*earlier));
        }
        st.deliveries.insert(id.to_string(), (run, at));
        Ok(Ok(()))
    }

    fn delivery(&self, id: &str) -> PortResult<Option<Option<RunId>>> {
        Ok(self.lock().deliveries.get(id).map(|(run, _)| *run))
    }

    fn request_override(&self, request: &BreakGlass) -> PortResult<BreakGlass> {
        let mut st = self.lock();
        if let Some(earlier) = st
            .overrides
            .iter()
            .find(|o| o.run == request.run && o.environment == request.environment)
        {
            return Err(PortError::conflict(earlier.already_requested()));
        }
        if !st.runs.contains_key(&request.run.0) {
            return Err(not_found_run(request.run));
        }
        let mut o = request.clone();
        o.id = i64::try_from(st.overrides.len()).unwrap_or(i64::MAX) + 1;
        o.confirmed_by = None;
        o.confirmed_at = None;
        let mut pending = Pending::of(&st, self.ticks.next());
        pending.event(&o.requested_event());
        pending.commit(&mut st);
        st.overrides.push(o.clone());
        Ok(o)
    }

    fn confirm_override(
        &self,
        run: RunId,
        environment: &str,
        by: &str,
        at: Timestamp,
    ) -> PortResult<BreakGlass> {
        let mut st = self.lock();
        let Some(i) = st
            .overrides
            .iter()
            .position(|o| o.run == run && o.environment == environment)
        else {
            return Err(PortError::not_found(window::not_requested(
                run,
                environment,
            )));
        };
        if let Some(why) = st.overrides[i].refuse_confirmation(by) {
            return Err(PortError::conflict(why));
        }
        st.overrides[i].confirmed_by = Some(by.to_string());
        st.overrides[i].confirmed_at = Some(at);
        let o = st.overrides[i].clone();
        let mut pending = Pending::of(&st, self.ticks.next());
        pending.event(&o.confirmed_event());
        pending.commit(&mut st);
        Ok(o)
    }

    fn overrides(&self, run: RunId) -> PortResult<Vec<BreakGlass>> {
        Ok(self
            .lock()
            .overrides
            .iter()
            .filter(|o| o.run == run)
            .cloned()
            .collect())
    }

    fn record_findings(&self, run: RunId, findings: &[FindingRecord]) -> PortResult<()> {
        let mut st = self.lock();
        match st.runs.get_mut(&run.0) {
            Some(r) => {
                r.findings = findings.to_vec();
                Ok(())
            }
            None => Err(not_found_run(run)),
        }
    }

    fn findings(&self, run: RunId) -> PortResult<Vec<FindingRecord>> {
        match self.lock().runs.get(&run.0) {
            Some(r) => Ok(r.findings.clone()),
            None => Err(not_found_run(run)),
        }
    }

    fn finding_counts(&self, run: RunId) -> PortResult<FindingCounts> {
        match self.lock().runs.get(&run.0) {
            Some(r) => Ok(FindingCounts::of(&r.findings)),
            None => Err(not_found_run(run)),
        }
    }

    fn metric_counts(&self) -> PortResult<MetricCounts> {
        let st = self.lock();
        let mut out = MetricCounts::default();
        for d in &st.deployments {
            let r = &d.record;
            if let Some(end) = r.end_time {
                out.durations
                    .entry(r.environment.clone())
                    .or_default()
                    .observe(end - r.start_time);
            }
        }
        for r in st.rollbacks.values() {
            let level = r.level.map_or("stage", |l| l.as_str()).to_string();
            *out.rollbacks
                .entry((r.environment.clone(), level))
                .or_default() += 1;
        }
        for r in st.runs.values() {
            *out.runs
                .entry(r.view.status.as_str().to_string())
                .or_default() += 1;
        }
        Ok(out)
    }

    fn outbox_fill(&self, channels: &[OutboxChannel], now: Timestamp) -> PortResult<usize> {
        let mut st = self.lock();
        let newest = st.events.last().map_or(0, |e| e.id);
        let mut added = 0;
        for c in channels {
            let Some(cursor) = st.cursors.get(&c.id).copied() else {
                // A new channel starts at the newest event: no old history.
                st.cursors.insert(c.id.clone(), newest);
                continue;
            };
            let owed: Vec<(i64, Event)> = st
                .events
                .iter()
                .filter(|e| e.id > cursor && e.id <= newest)
                .filter(|e| c.kinds.iter().any(|k| k == e.event.kind.as_str()))
                .map(|e| (e.id, e.event.clone()))
                .collect();
            for (event_id, event) in owed {
                if st
                    .outbox
                    .iter()
                    .any(|i| i.channel == c.id && i.event_id == event_id)
                {
                    continue;
                }
                let id = st.outbox.last().map_or(1, |i| i.id + 1);
                st.outbox.push(OutboxItem {
                    id,
                    channel: c.id.clone(),
                    event_id,
                    event,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    rounds: 0,
                    next_at: Some(now),
                    last_error: None,
                    delivered_at: None,
                });
                added += 1;
            }
            st.cursors.insert(c.id.clone(), newest.max(cursor));
        }
        Ok(added)
    }

    fn outbox_claim(
        &self,
        channels: &[String],
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> PortResult<Vec<OutboxItem>> {
        let mut st = self.lock();
        let mut ids: Vec<i64> = Vec::new();
        for c in channels {
            if ids.len() >= limit {
                break;
            }
            // In order: only the channel's oldest pending delivery, when due.
            if let Some(head) = st
                .outbox
                .iter()
                .find(|i| i.channel == *c && i.status == DeliveryStatus::Pending)
                && head.next_at.is_some_and(|t| t <= now)
            {
                ids.push(head.id);
            }
            // Dead letters whose automatic retry is due.
            for i in &st.outbox {
                if ids.len() >= limit {
                    break;
                }
                if i.channel == *c
                    && i.status == DeliveryStatus::Dead
                    && i.next_at.is_some_and(|t| t <= now)
                {
                    ids.push(i.id);
                }
            }
        }
        let mut out = Vec::new();
        for id in ids {
            if let Some(i) = st.outbox.iter_mut().find(|i| i.id == id) {
                i.next_at = Some(until);
                out.push(i.clone());
            }
        }
        Ok(out)
    }

    fn outbox_settle(&self, id: i64, settle: &Settle, now: Timestamp) -> PortResult<()> {
        let mut st = self.lock();
        let Some(i) = st.outbox.iter_mut().find(|i| i.id == id) else {
            return Ok(());
        };
        i.status = settle.status;
        i.attempts = settle.attempts;
        i.rounds = settle.rounds;
        i.next_at = settle.next_at;
        i.last_error = settle.last_error.clone();
        i.delivered_at = settle.delivered_at;
        let channel = i.channel.clone();
        if settle.status == DeliveryStatus::Delivered {
            for d in st.outbox.iter_mut() {
                if d.channel == channel
                    && d.status == DeliveryStatus::Dead
                    && d.next_at.is_some_and(|t| t > now)
                {
                    d.next_at = Some(now);
                }
            }
        }
        Ok(())
    }

    fn outbox(&self, filter: &OutboxFilter) -> PortResult<Vec<OutboxItem>> {
        let st = self.lock();
        Ok(st
            .outbox
            .iter()
            .rev()
            .filter(|i| filter.status.is_none_or(|s| i.status == s))
            .filter(|i| filter.channel.as_ref().is_none_or(|c| i.channel == *c))
            .take(filter.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    fn outbox_retry(
        &self,
        channel: Option<&str>,
        ids: &[i64],
        now: Timestamp,
    ) -> PortResult<usize> {
        let mut st = self.lock();
        let mut n = 0;
        for i in st.outbox.iter_mut() {
            let chosen = if ids.is_empty() {
                i.status == DeliveryStatus::Dead
            } else {
                ids.contains(&i.id) && i.status != DeliveryStatus::Delivered
            };
            if chosen && channel.is_none_or(|c| i.channel == c) {
                i.status = DeliveryStatus::Pending;
                i.attempts = 0;
                i.next_at = Some(now);
                n += 1;
            }
        }
        Ok(n)
    }

    fn outbox_counts(&self) -> PortResult<Vec<OutboxCounts>> {
        let st = self.lock();
        let mut out: BTreeMap<String, OutboxCounts> = st
            .cursors
            .keys()
            .map(|c| {
                (
                    c.clone(),
                    OutboxCounts {
                        channel: c.clone(),
                        ..OutboxCounts::default()
                    },
                )
            })
            .collect();
        for i in &st.outbox {
            let c = out
                .entry(i.channel.clone())
                .or_insert_with(|| OutboxCounts {
                    channel: i.channel.clone(),
                    ..OutboxCounts::default()
                });
            match i.status {
                DeliveryStatus::Pending => c.pending += 1,
                DeliveryStatus::Dead => c.dead += 1,
                DeliveryStatus::Delivered => c.delivered += 1,
            }
        }
        Ok(out.into_values().collect())
    }
}

/// The newest record: latest start, and among equal starts the last inserted.
fn newest<'a>(it: impl Iterator<Item = &'a StoredDeployment>) -> Option<DeploymentRecord> {
    it.enumerate()
        .max_by_key(|(i, d)| (d.record.start_time, *i))
        .map(|(_, d)| d.record.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ferry_core::EventKind;
    use ferry_core::rollback::{RollbackStatus, Trigger};
    use ferry_core::{Commit, RollbackLevel};
    use ferry_engine::ports::PortErrorKind;
    use serde_json::json;

    fn store_with_run() -> (MemoryStore, RunId) {
        let store = MemoryStore::new();
        let run = store
            .create_run(&NewRun {
                pipeline: "shop".into(),
                commit: Commit {
                    sha: "abc".into(),
                    message: "m".into(),
                    author: "a".into(),
                },
                trigger: "cli".into(),
                triggered_by: "ada".into(),
                hotfix: false,
                id: None,
                created_at: Timestamp(0),
                driver: "sim:1".into(),
                stages: vec![("build".into(), vec![("unit".into(), "command".into())])],
            })
            .unwrap();
        (store, run)
    }

    fn deployment(id: &str, run: RunId) -> DeploymentRecord {
        DeploymentRecord {
            deployment_id: id.into(),
            environment: id.split('#').next().unwrap_or_default().into(),
            version: "abc".into(),
            status: DeploymentStatus::Succeeded,
            start_time: 1,
            end_time: Some(2),
            infrastructure_changed: false,
            commit_message: String::new(),
            commit_author: String::new(),
            pipeline_execution_id: run.execution_id(),
            unit_tests_passed: true,
            integration_tests_passed: true,
            e2e_tests_passed: true,
            coverage_percentage: 90.0,
            rollback_reason: None,
            rollback_level: None,
            rollback_time: None,
            artifact_location: "/a.tar".into(),
            expires_at: 0,
            run_id: run,
            artifact_digest: "sha256:aa".into(),
            previous_version: None,
            config_digest: Some("sha256:cc".into()),
            template_digests: [("infra/app.yml".to_string(), "sha256:tt".to_string())].into(),
            rollback_unsafe: false,
            rollback_unsafe_reason: None,
        }
    }

    fn record(deployment_id: &str, started_at: i64) -> RollbackRecord {
        RollbackRecord {
            deployment_id: deployment_id.into(),
            environment: "production".into(),
            from_version: "abc".into(),
            to_version: None,
            level: None,
            status: RollbackStatus::InProgress,
            reason: "alarm errors went into ALARM".into(),
            trigger: Trigger::Alarm {
                name: "errors".into(),
            },
            started_at: Timestamp(started_at),
            ended_at: None,
            holder: "host:1".into(),
            detail: Vec::new(),
            incident: None,
        }
    }

    fn opened(env: &str, reason: &str, at: i64) -> Change {
        Change::IncidentOpened {
            environment: env.into(),
            deployment_id: format!("{env}#1"),
            reason: reason.into(),
            at: Timestamp(at),
        }
    }

    fn alarm(name: &str, state: AlarmState, at: i64) -> Change {
        Change::AlarmState {
            alarm: name.into(),
            state,
            reason: format!("{name} is {state}"),
            at: Timestamp(at),
        }
    }

    fn event(run: Option<RunId>) -> Event {
        Event {
            at: Timestamp(5),
            kind: EventKind::AlarmStateChanged,
            run,
            environment: None,
            message: "alarm errors went into ALARM".into(),
            data: json!({"alarm": "errors"}),
        }
    }

    #[test]
    fn deployments_keep_their_release_set() {
        let (store, run) = store_with_run();
        let d = deployment("production#1", run);
        store
            .apply(run, &[Change::DeploymentStarted(Box::new(d.clone()))])
            .unwrap();
        assert_eq!(store.latest_deployment("production").unwrap(), Some(d));
    }

    #[test]
    fn a_rolled_back_deployment_carries_reason_level_and_time() {
        let (store, run) = store_with_run();
        let d = deployment("production#1", run);
        store
            .apply(run, &[Change::DeploymentStarted(Box::new(d.clone()))])
            .unwrap();
        store
            .apply(
                run,
                &[Change::DeploymentRolledBack {
                    deployment_id: d.deployment_id.clone(),
                    reason: "tests failed".into(),
                    level: RollbackLevel::Full,
                    at: Timestamp(9),
                }],
            )
            .unwrap();
        assert_eq!(
            store.latest_deployment("production").unwrap(),
            Some(DeploymentRecord {
                status: DeploymentStatus::RolledBack,
                rollback_reason: Some("tests failed".into()),
                rollback_level: Some(RollbackLevel::Full),
                rollback_time: Some(9),
                ..d
            })
        );
        assert_eq!(store.last_known_good("production").unwrap(), None);
    }

    #[test]
    fn rolling_back_an_unknown_deployment_changes_nothing() {
        let (store, run) = store_with_run();
        let d = deployment("production#1", run);
        let err = store
            .apply(
                run,
                &[
                    Change::DeploymentStarted(Box::new(d)),
                    Change::Event(event(Some(run))),
                    opened("production", "x", 1),
                    alarm("errors", AlarmState::Alarm, 1),
                    Change::DeploymentRolledBack {
                        deployment_id: "production#0".into(),
                        reason: "r".into(),
                        level: RollbackLevel::Stage,
                        at: Timestamp(1),
                    },
                ],
            )
            .unwrap_err();
        assert_eq!(err.kind, PortErrorKind::NotFound);
        assert_eq!(err.message, "deployment production#0 does not exist");
        assert!(store.all_deployments().is_empty());
        assert!(store.all_events().is_empty());
        assert_eq!(store.hold("production").unwrap(), None);
        assert_eq!(store.alarm_state("errors").unwrap(), None);
    }

    #[test]
    fn a_rollback_is_claimed_once_and_updated_in_place() {
        let store = MemoryStore::new();
        let first = record("production#1", 10);
        assert_eq!(store.claim_rollback(&first).unwrap(), Ok(()));
        let second = RollbackRecord {
            holder: "host:2".into(),
            trigger: Trigger::Manual {
                by: "bob".into(),
                accept_data_loss: false,
            },
            ..first.clone()
        };
        assert_eq!(store.claim_rollback(&second).unwrap(), Err(first.clone()));
        let done = RollbackRecord {
            status: RollbackStatus::Succeeded,
            to_version: Some("old".into()),
            level: Some(RollbackLevel::Stage),
            ended_at: Some(Timestamp(20)),
            detail: vec!["production: healthy".into()],
            incident: Some(3),
            ..first.clone()
        };
        store.update_rollback(&done).unwrap();
        assert_eq!(store.rollback("production#1").unwrap(), Some(done.clone()));
        assert_eq!(store.claim_rollback(&first).unwrap(), Err(done));
        assert_eq!(store.rollback("production#2").unwrap(), None);
    }

    #[test]
    fn updating_an_unclaimed_rollback_is_not_found() {
        let store = MemoryStore::new();
        let err = store.update_rollback(&record("test#1", 1)).unwrap_err();
        assert_eq!(err.kind, PortErrorKind::NotFound);
        assert_eq!(err.message, "no rollback of deployment test#1 was claimed");
        assert_eq!(store.rollback("test#1").unwrap(), None);
    }

    #[test]
    fn rollbacks_are_newest_first_and_limited() {
        let store = MemoryStore::new();
        for (id, t) in [
            ("test#1", 30),
            ("staging#2", 10),
            ("production#3", 20),
            ("test#4", 20),
        ] {
            store.claim_rollback(&record(id, t)).unwrap().unwrap();
        }
        let ids =
            |v: Vec<RollbackRecord>| v.into_iter().map(|r| r.deployment_id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.rollbacks(10).unwrap()),
            ["test#1", "test#4", "production#3", "staging#2"]
        );
        assert_eq!(ids(store.rollbacks(2).unwrap()), ["test#1", "test#4"]);
    }

    #[test]
    fn of_eight_concurrent_claimers_exactly_one_wins() {
        let store = MemoryStore::new();
        for round in 0..50i64 {
            let id = format!("production#{round}");
            let results: Vec<(String, Result<(), RollbackRecord>)> = std::thread::scope(|s| {
                let joins: Vec<_> = (0..8)
                    .map(|i| {
                        let mut rec = record(&id, round);
                        rec.holder = format!("host:{i}");
                        let store = &store;
                        s.spawn(move || (rec.holder.clone(), store.claim_rollback(&rec).unwrap()))
                    })
                    .collect();
                joins.into_iter().map(|j| j.join().unwrap()).collect()
            });
            let winners: Vec<&String> = results
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(h, _)| h)
                .collect();
            assert_eq!(winners.len(), 1, "round {round}");
            let stored = store.rollback(&id).unwrap().unwrap();
            assert_eq!(&stored.holder, winners[0]);
            assert!(
                results
                    .iter()
                    .all(|(_, r)| r.as_ref().err().is_none_or(|e| *e == stored))
            );
        }
    }

    #[test]
    fn an_environment_has_at_most_one_open_incident() {
        let (store, run) = store_with_run();
        assert_eq!(store.hold("production").unwrap(), None);
        store
            .apply(run, &[opened("production", "first", 1)])
            .unwrap();
        store
            .apply(
                run,
                &[
                    opened("production", "second", 2),
                    opened("staging", "other", 2),
                ],
            )
            .unwrap();
        let held = store.hold("production").unwrap().unwrap();
        assert_eq!(
            held,
            Incident {
                id: 1,
                environment: "production".into(),
                deployment_id: "production#1".into(),
                reason: "first".into(),
                opened_at: Timestamp(1),
                resolved_at: None,
                resolved_by: None,
            }
        );
        assert_eq!(store.hold("staging").unwrap().unwrap().id, 2);
    }

    #[test]
    fn resolving_closes_the_incident_and_records_an_event_of_no_run() {
        let (store, run) = store_with_run();
        store
            .apply(run, &[opened("production", "boom", 1)])
            .unwrap();
        let open = store.hold("production").unwrap().unwrap();
        let at = Timestamp(1_769_508_005_000);
        let closed = store.resolve("production", "alice", at).unwrap();
        assert_eq!(
            closed,
            Incident {
                resolved_at: Some(at),
                resolved_by: Some("alice".into()),
                ..open.clone()
            }
        );
        assert_eq!(store.hold("production").unwrap(), None);
        let events = store.events(&EventFilter::default()).unwrap();
        let (_, e) = events.last().unwrap();
        assert_eq!(e.kind, EventKind::IncidentResolved);
        assert_eq!((e.run, e.at), (None, at));
        assert_eq!(e.environment.as_deref(), Some("production"));
        assert_eq!(e.data["incidentId"], open.id);
        assert_eq!(e.data["resolvedBy"], "alice");
        assert_eq!(e.data["timestamp"], "2026-01-27T10:00:05Z");

        // A later failure opens a new incident.
        store
            .apply(run, &[opened("production", "again", 9)])
            .unwrap();
        let again = store.hold("production").unwrap().unwrap();
        assert!(again.id > open.id);
        assert_eq!(again.reason, "again");
    }

    #[test]
    fn resolving_without_an_open_incident_is_not_found() {
        let store = MemoryStore::new();
        let err = store
            .resolve("production", "alice", Timestamp(1))
            .unwrap_err();
        assert_eq!(err.kind, PortErrorKind::NotFound);
        assert_eq!(err.message, "environment production has no open incident");
        assert!(store.all_events().is_empty());
    }

    #[test]
    fn configs_are_kept_once_under_their_digest() {
        let store = MemoryStore::new();
        assert_eq!(store.config("sha256:aa").unwrap(), None);
        store.put_config("sha256:aa", "pipeline: a").unwrap();
        store.put_config("sha256:aa", "pipeline: b").unwrap();
        assert_eq!(
            store.config("sha256:aa").unwrap().as_deref(),
            Some("pipeline: a")
        );
    }

    #[test]
    fn alarms_are_recorded_without_a_run_all_or_nothing() {
        let (store, run) = store_with_run();
        store
            .record_alarm(&[
                alarm("errors", AlarmState::Alarm, 5),
                Change::Event(event(None)),
                Change::Event(event(Some(RunId(99)))),
            ])
            .unwrap();
        assert_eq!(
            store.alarm_state("errors").unwrap(),
            Some((AlarmState::Alarm, "errors is ALARM".into(), Timestamp(5)))
        );
        let kinds: Vec<Option<RunId>> = store
            .events(&EventFilter::default())
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.run)
            .collect();
        assert_eq!(kinds, [None, Some(RunId(99))]);

        let err = store
            .record_alarm(&[
                alarm("errors", AlarmState::Ok, 6),
                Change::Event(event(None)),
                opened("production", "x", 6),
            ])
            .unwrap_err();
        assert_eq!(err.kind, PortErrorKind::Permanent);
        assert_eq!(
            err.message,
            "an alarm can record only alarm states and events, not a `incident_opened` change"
        );
        assert_eq!(
            store.alarm_state("errors").unwrap().unwrap().0,
            AlarmState::Alarm
        );
        assert_eq!(store.all_events().len(), 2);
        assert_eq!(store.hold("production").unwrap(), None);

        // A run's batch records alarm states too.
        store
            .apply(run, &[alarm("errors", AlarmState::Ok, 7)])
            .unwrap();
        assert_eq!(
            store.alarm_state("errors").unwrap().unwrap().0,
            AlarmState::Ok
        );
        assert_eq!(store.alarm_state("latency").unwrap(), None);
    }
}
