//! A [`Store`] split in two: the run's own record in one store (`local`: its stages,
//! steps, events, findings, outbox) and everything shared between runs and runtimes in
//! a [`Ledger`] (`shared`: deployments, leases, rollbacks, incidents and their
//! resolution, freezes — set by a person or a rollback, listed by the deploy gate,
//! lifted —, alarm states, pipeline files). Break-glass overrides belong to a run and
//! stay local.
//!
//! `ferry step` runs one step of a CodePipeline stage per process, in a CodeBuild
//! container that lives for one stage: the run's record is a SQLite file in the
//! workspace, which CodePipeline carries from stage to stage, while deployments and
//! leases live in the DynamoDB ledger the rollback Lambda reads (seed §3.5.1). Without
//! AWS the shared half is the project's own SQLite store.
//!
//! Reads of shared state go to `shared` only. Writes of a run (`apply`) go to `local`
//! first (one transaction), then each deployment record they touched is copied to
//! `shared` — except over a record `shared` already has as rolled back: a rollback
//! recorded there (by the Lambda) is never overwritten by a run's later view of it.
//! Rollbacks (`record_rollback`) go to `shared`, then their events to `local` too, so
//! the notification outbox (local) announces them.

use crate::ports::*;
use ferry_core::alarm::AlarmState;
use ferry_core::approval::Decision;
use ferry_core::rollback::RollbackRecord;
use ferry_core::run::RunView;
use ferry_core::{Change, DeploymentRecord, DeploymentStatus, Event, RunId, Timestamp};

/// See the module documentation.
pub struct SplitStore<'a> {
    pub local: &'a dyn Store,
    pub shared: &'a dyn Ledger,
}

impl SplitStore<'_> {
    /// The deployments `changes` touch, by id, in order, once each.
    fn touched(changes: &[Change]) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for c in changes {
            let id = match c {
                Change::DeploymentStarted(d) => &d.deployment_id,
                Change::DeploymentFinished { deployment_id, .. }
                | Change::DeploymentInfrastructure { deployment_id, .. } => deployment_id,
                _ => continue,
            };
            if !ids.contains(id) {
                ids.push(id.clone());
            }
        }
        ids
    }

    fn find(
        ledger: &dyn Ledger,
        environment: &str,
        id: &str,
    ) -> PortResult<Option<DeploymentRecord>> {
        Ok(ledger
            .deployments(Some(environment), 1_000)?
            .into_iter()
            .find(|d| d.deployment_id == id))
    }
}

impl Ledger for SplitStore<'_> {
    fn record_deployment(&self, deployment: &DeploymentRecord) -> PortResult<()> {
        self.shared.record_deployment(deployment)
    }
    fn record_rollback(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        self.shared.record_rollback(run, changes)?;
        // The events go to the local outbox as well. The local store may not know the
        // deployment (another execution made it): its record stays in `shared`.
        let events: Vec<Change> = changes
            .iter()
            .filter(|c| matches!(c, Change::Event(_)))
            .cloned()
            .collect();
        if !events.is_empty() {
            let _ = self.local.record_rollback(run, &events);
        }
        Ok(())
    }
    fn deployments(
        &self,
        environment: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        self.shared.deployments(environment, limit)
    }
    fn last_known_good(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.shared.last_known_good(environment)
    }
    fn latest_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.shared.latest_deployment(environment)
    }
    fn current_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        self.shared.current_deployment(environment)
    }
    fn acquire_lease(&self, lease: &Lease, now: Timestamp) -> PortResult<Result<(), Lease>> {
        self.shared.acquire_lease(lease, now)
    }
    fn take_over_lease(&self, want: &Lease, gone: &Lease) -> PortResult<Result<(), Lease>> {
        self.shared.take_over_lease(want, gone)
    }
    fn renew_lease(&self, lease: &Lease) -> PortResult<()> {
        self.shared.renew_lease(lease)
    }
    fn release_lease(&self, environment: &str, run: RunId) -> PortResult<()> {
        self.shared.release_lease(environment, run)
    }
    fn claim_rollback(&self, rec: &RollbackRecord) -> PortResult<Result<(), RollbackRecord>> {
        self.shared.claim_rollback(rec)
    }
    fn update_rollback(&self, rec: &RollbackRecord) -> PortResult<()> {
        self.shared.update_rollback(rec)
    }
    fn rollback(&self, deployment_id: &str) -> PortResult<Option<RollbackRecord>> {
        self.shared.rollback(deployment_id)
    }
    fn hold(&self, environment: &str) -> PortResult<Option<Incident>> {
        self.shared.hold(environment)
    }
    fn freeze(&self, freeze: &Freeze) -> PortResult<Freeze> {
        self.shared.freeze(freeze)
    }
    fn resolve(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Incident> {
        self.shared.resolve(environment, by, at)
    }
    fn unfreeze(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Vec<Freeze>> {
        self.shared.unfreeze(environment, by, at)
    }
    fn freezes(&self, environment: Option<&str>, at: Timestamp) -> PortResult<Vec<Freeze>> {
        self.shared.freezes(environment, at)
    }
    fn alarm_state(&self, alarm: &str) -> PortResult<Option<(AlarmState, String, Timestamp)>> {
        self.shared.alarm_state(alarm)
    }
    fn config(&self, digest: &str) -> PortResult<Option<String>> {
        match self.shared.config(digest)? {
            Some(t) => Ok(Some(t)),
            None => self.local.config(digest),
        }
    }
}

impl Store for SplitStore<'_> {
    fn create_run(&self, run: &NewRun) -> PortResult<RunId> {
        self.local.create_run(run)
    }
    fn apply(&self, run: RunId, changes: &[Change]) -> PortResult<()> {
        self.local.apply(run, changes)?;
        let touched = Self::touched(changes);
        if touched.is_empty() {
            return Ok(());
        }
        let mine = self.local.deployments(None, 10_000)?;
        for id in touched {
            let Some(d) = mine.iter().find(|d| d.deployment_id == id) else {
                continue;
            };
            let started = changes
                .iter()
                .any(|c| matches!(c, Change::DeploymentStarted(s) if s.deployment_id == id));
            if !started
                && Self::find(self.shared, &d.environment, &id)?
                    .is_some_and(|s| s.status == DeploymentStatus::RolledBack)
            {
                continue;
            }
            self.shared.record_deployment(d)?;
        }
        Ok(())
    }
    fn load_run(&self, run: RunId) -> PortResult<RunView> {
        self.local.load_run(run)
    }
    fn list_runs(&self, limit: usize, unfinished_only: bool) -> PortResult<Vec<RunView>> {
        self.local.list_runs(limit, unfinished_only)
    }
    fn driver(&self, run: RunId) -> PortResult<Option<String>> {
        self.local.driver(run)
    }
    fn claim_run(&self, run: RunId, from: &str, to: &str) -> PortResult<bool> {
        self.local.claim_run(run, from, to)
    }
    fn triggered(&self, run: RunId) -> PortResult<(String, String)> {
        self.local.triggered(run)
    }
    fn approvals(&self, run: RunId, environment: &str) -> PortResult<Vec<Decision>> {
        self.local.approvals(run, environment)
    }
    fn decide(&self, run: RunId, environment: &str, decision: &Decision) -> PortResult<()> {
        self.local.decide(run, environment, decision)
    }
    fn deployments_before(
        &self,
        environment: Option<&str>,
        before: Option<(i64, &str)>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>> {
        self.local.deployments_before(environment, before, limit)
    }
    fn runs_before(&self, before: Option<RunId>, limit: usize) -> PortResult<Vec<RunView>> {
        self.local.runs_before(before, limit)
    }
    fn dora_samples(
        &self,
        environment: &str,
        since: Timestamp,
    ) -> PortResult<Vec<ferry_core::dora::Sample>> {
        self.local.dora_samples(environment, since)
    }
    fn events(&self, filter: &EventFilter) -> PortResult<Vec<(i64, Event)>> {
        self.local.events(filter)
    }
    fn rollbacks(&self, limit: usize) -> PortResult<Vec<RollbackRecord>> {
        self.local.rollbacks(limit)
    }
    fn put_config(&self, digest: &str, text: &str) -> PortResult<()> {
        self.local.put_config(digest, text)
    }
    fn record_alarm(&self, changes: &[Change]) -> PortResult<()> {
        self.local.record_alarm(changes)
    }
    fn record_delivery(
        &self,
        id: &str,
        run: Option<RunId>,
        at: Timestamp,
    ) -> PortResult<Result<(), Option<RunId>>> {
        self.local.record_delivery(id, run, at)
    }
    fn delivery(&self, id: &str) -> PortResult<Option<Option<RunId>>> {
        self.local.delivery(id)
    }
    fn request_override(&self, request: &BreakGlass) -> PortResult<BreakGlass> {
        self.local.request_override(request)
    }
    fn confirm_override(
        &self,
        run: RunId,
        environment: &str,
        by: &str,
        at: Timestamp,
    ) -> PortResult<BreakGlass> {
        self.local.confirm_override(run, environment, by, at)
    }
    fn overrides(&self, run: RunId) -> PortResult<Vec<BreakGlass>> {
        self.local.overrides(run)
    }
    fn record_findings(&self, run: RunId, findings: &[FindingRecord]) -> PortResult<()> {
        self.local.record_findings(run, findings)
    }
    fn findings(&self, run: RunId) -> PortResult<Vec<FindingRecord>> {
        self.local.findings(run)
    }
    fn finding_counts(&self, run: RunId) -> PortResult<FindingCounts> {
        self.local.finding_counts(run)
    }
    fn metric_counts(&self) -> PortResult<MetricCounts> {
        self.local.metric_counts()
    }
    fn outbox_fill(&self, channels: &[OutboxChannel], now: Timestamp) -> PortResult<usize> {
        self.local.outbox_fill(channels, now)
    }
    fn outbox_claim(
        &self,
        channels: &[String],
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> PortResult<Vec<OutboxItem>> {
        self.local.outbox_claim(channels, now, until, limit)
    }
    fn outbox_settle(&self, id: i64, settle: &Settle, now: Timestamp) -> PortResult<()> {
        self.local.outbox_settle(id, settle, now)
    }
    fn outbox(&self, filter: &OutboxFilter) -> PortResult<Vec<OutboxItem>> {
        self.local.outbox(filter)
    }
    fn outbox_retry(
        &self,
        channel: Option<&str>,
        ids: &[i64],
        now: Timestamp,
    ) -> PortResult<usize> {
        self.local.outbox_retry(channel, ids, now)
    }
    fn outbox_counts(&self) -> PortResult<Vec<OutboxCounts>> {
        self.local.outbox_counts()
    }
}
