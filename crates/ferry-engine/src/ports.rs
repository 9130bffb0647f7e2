//! The ports: what the engine needs from the outside world, as traits. The local runtime
//! implements them with SQLite, git, processes and release directories; the AWS runtime
//! with DynamoDB, S3 and CloudFormation; tests with fakes. All of them are synchronous
//! and `Send + Sync`: a run is driven on its own thread.

use ferry_core::alarm::AlarmState;
use ferry_core::approval::Decision;
use ferry_core::events::{EventKind, iso8601};
pub use ferry_core::findings::{FindingCounts, FindingRecord};
use ferry_core::gates::ExitObservation;
pub use ferry_core::notify::{
    Attempt, OutboxChannel, OutboxCounts, OutboxFilter, OutboxItem, Settle,
};
use ferry_core::rollback::RollbackRecord;
use ferry_core::run::RunView;
pub use ferry_core::window::{BreakGlass, Freeze};
use ferry_core::{Artifact, Change, Commit, DeploymentRecord, Event, RunId, Timestamp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What went wrong in an adapter, classified so the engine can decide whether to retry
/// (seed §6.2) and the CLI which exit code to use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PortError {
    pub kind: PortErrorKind,
    /// A lowercase fragment naming the thing and, where there is one, the fix.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortErrorKind {
    /// Worth retrying (a refused connection, a busy database, a 503).
    Transient,
    /// Retrying will not help (bad input, missing file, permission denied).
    Permanent,
    /// The thing asked for does not exist (a run id, a commit).
    NotFound,
    /// Someone else holds it or it is in the wrong state (a lease, a decided approval).
    Conflict,
    /// The store cannot be used at all (read-only, locked, newer schema, corrupt).
    Unavailable,
}

impl PortError {
    pub fn new(kind: PortErrorKind, message: impl Into<String>) -> Self {
        PortError {
            kind,
            message: message.into(),
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Permanent, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Transient, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(PortErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(PortErrorKind::Unavailable, message)
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// The wall clock, injected so the whole engine can run on a fake one.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, d: Duration);
}

/// A new run, before it has an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub pipeline: String,
    pub commit: Commit,
    /// `cli`, `webhook`, `poll`, `demo` …
    pub trigger: String,
    /// Who or what started it (a user name, a delivery id).
    pub triggered_by: String,
    pub created_at: Timestamp,
    /// The plan's stages and their steps: `(stage name, [(step name, step kind label)])`.
    pub stages: Vec<(String, Vec<(String, String)>)>,
    /// The process driving the run (`host:pid`), so a run whose driver died is found.
    pub driver: String,
    /// A hotfix run (`ferry run --hotfix`).
    pub hotfix: bool,
    /// The id the run must have, when the caller chooses it (`ferry step`: a stage of
    /// a CodePipeline execution carries its execution's run id from one CodeBuild
    /// container to the next). `None`: the store gives the next one. A taken id is a
    /// `Conflict`.
    pub id: Option<RunId>,
}

/// A lease on an environment: at most one run deploys into it at a time (DESIGN
/// invariant 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub environment: String,
    pub run: RunId,
    pub holder: String,
    pub expires_at: Timestamp,
}

/// A query over events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFilter {
    pub run: Option<RunId>,
    pub environment: Option<String>,
    pub after_id: Option<i64>,
    /// Only events of this kind.
    pub kind: Option<ferry_core::EventKind>,
    /// The newest `limit` events, newest first (default: the oldest first).
    pub newest_first: bool,
    pub limit: Option<usize>,
}

/// The part of the state the rollback orchestrator needs (`crate::rollback`):
/// deployments (their history, the current one, the last known good), environment
/// leases, rollback claims, the changes a rollback records, incidents holding an
/// environment (and their resolution), freezes (set, listed, lifted), alarm states and
/// recorded pipeline files. It is all that an
/// adapter outside the local runtime must keep for rollbacks (the DynamoDB ledger of
/// `ferry-aws`, seed §3.5.1), and what the ledger conformance suite checks on every
/// implementation.
pub trait Ledger: Send + Sync {
    /// Records a deployment, or replaces the record with the same `deployment_id` (its
    /// outcome, its rollback). `apply` records deployments of runs; this is for a
    /// ledger written outside a run (another runtime, an import, the tests).
    fn record_deployment(&self, deployment: &DeploymentRecord) -> PortResult<()>;
    /// Records one batch of a rollback's changes (what `ferry_core::rollback` returns:
    /// events, `DeploymentRolledBack`, `IncidentOpened`) in one transaction, against the
    /// run that made the deployment. The local stores take it as an `apply`.
    fn record_rollback(&self, run: RunId, changes: &[Change]) -> PortResult<()>;
    /// Deployments, newest first, optionally of one environment.
    fn deployments(
        &self,
        environment: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>>;
    /// The newest `succeeded` deployment of an environment (seed §3.5.2), by index.
    fn last_known_good(&self, environment: &str) -> PortResult<Option<DeploymentRecord>>;
    /// The newest deployment of an environment, whatever its status.
    fn latest_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>>;
    /// The deployment an environment runs now: its newest one that was not rolled back
    /// (`None` when there is none). Stores answer it from an index; this default reads
    /// the newest deployments.
    fn current_deployment(&self, environment: &str) -> PortResult<Option<DeploymentRecord>> {
        Ok(self
            .deployments(Some(environment), 10_000)?
            .into_iter()
            .find(|d| d.status != ferry_core::DeploymentStatus::RolledBack))
    }
    /// Takes the lease if it is free, expired, or already ours; returns the holder
    /// otherwise. A negative run id stands for work outside any run (a manual or
    /// alarm-triggered rollback, one id per process) and needs no run record.
    fn acquire_lease(&self, lease: &Lease, now: Timestamp) -> PortResult<Result<(), Lease>>;
    /// Takes over the lease of a holder known to be gone (`gone`, as read): `want`
    /// replaces it only if the environment's lease is still exactly that one (same run,
    /// holder and expiry: a holder that renewed it is alive after all) or there is none;
    /// otherwise the current holder is returned. Two processes that both judge the same
    /// holder gone cannot both win.
    fn take_over_lease(&self, want: &Lease, gone: &Lease) -> PortResult<Result<(), Lease>>;
    /// Extends our lease. Conflict if it is no longer ours.
    fn renew_lease(&self, lease: &Lease) -> PortResult<()>;
    /// Lets go of our lease (no-op if it is not ours).
    fn release_lease(&self, environment: &str, run: RunId) -> PortResult<()>;
    /// Claims the rollback of a deployment (seed Property 2): records `rec` (status
    /// `in_progress`) unless a record for that deployment exists, in which case that
    /// record is returned and nothing is written.
    fn claim_rollback(&self, rec: &RollbackRecord) -> PortResult<Result<(), RollbackRecord>>;
    /// Replaces the record of a claimed rollback with its outcome (or progress).
    fn update_rollback(&self, rec: &RollbackRecord) -> PortResult<()>;
    /// The rollback record of a deployment, if any.
    fn rollback(&self, deployment_id: &str) -> PortResult<Option<RollbackRecord>>;
    /// The open incident holding an environment for a person, if any.
    fn hold(&self, environment: &str) -> PortResult<Option<Incident>>;
    /// Records a freeze and its `freeze_set` event (`Freeze::set_event`) in one
    /// transaction; returns it with its id.
    fn freeze(&self, freeze: &Freeze) -> PortResult<Freeze>;
    /// Closes the open incident of an environment (its `resolved_at`/`resolved_by`) and
    /// records its `incident_resolved` event (`Incident::resolved_event`) in one
    /// transaction; returns it. NotFound when the environment has no open incident.
    fn resolve(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Incident>;
    /// Lifts every freeze of `environment` that is not over at `at`, appending each one's
    /// `freeze_lifted` event; returns them. NotFound when there is none.
    fn unfreeze(&self, environment: &str, by: &str, at: Timestamp) -> PortResult<Vec<Freeze>>;
    /// The freezes (of one environment, or all) not over at `at`: neither lifted nor past
    /// their `until`. Oldest first.
    fn freezes(&self, environment: Option<&str>, at: Timestamp) -> PortResult<Vec<Freeze>>;
    /// An alarm's last recorded state: `(state, reason, at)`.
    fn alarm_state(&self, alarm: &str) -> PortResult<Option<(AlarmState, String, Timestamp)>>;
    fn config(&self, digest: &str) -> PortResult<Option<String>>;
}

/// The state of everything: runs, stages, steps, events, approvals, findings, the
/// outbox, and (through [`Ledger`]) deployments, leases and rollbacks. Every `apply` is
/// one transaction: all of its changes or none.
pub trait Store: Ledger {
    /// Inserts a queued run with its planned stages and steps; returns its id.
    fn create_run(&self, run: &NewRun) -> PortResult<RunId>;
    /// Applies one batch of changes to a run atomically.
    fn apply(&self, run: RunId, changes: &[Change]) -> PortResult<()>;
    /// A run as stored (Property 6: equal to the core's view after every batch).
    fn load_run(&self, run: RunId) -> PortResult<RunView>;
    /// Runs, newest first. `unfinished_only` keeps the non-terminal ones.
    fn list_runs(&self, limit: usize, unfinished_only: bool) -> PortResult<Vec<RunView>>;
    /// The process driving a run (`host:pid`), as recorded when it was created.
    fn driver(&self, run: RunId) -> PortResult<Option<String>>;
    /// Makes `to` the process driving a run if `from` still is (compare and swap, one
    /// transaction): of several processes taking up a run whose driver died, exactly one
    /// gets `true`.
    fn claim_run(&self, run: RunId, from: &str, to: &str) -> PortResult<bool>;

    /// `(trigger, triggered_by)` of a run, as recorded when it was created.
    fn triggered(&self, run: RunId) -> PortResult<(String, String)>;

    /// Every decision recorded for a run's approval of an environment, in the order
    /// they were recorded, voided ones included (with why).
    fn approvals(&self, run: RunId, environment: &str) -> PortResult<Vec<Decision>>;
    /// Appends a decision. Conflict if the run is not awaiting approval there, the same
    /// person already decided (a decision not voided), or a rejection is recorded.
    /// Whether the person may decide at all is the caller's (the core's) question.
    fn decide(&self, run: RunId, environment: &str, decision: &Decision) -> PortResult<()>;

    /// A page of the deployment history, newest first, optionally of one environment:
    /// the deployments ordered before the cursor `(start_time, deployment_id)` of the
    /// last one of the previous page (exclusive; `None` for the first page). Stores
    /// answer it from an index, whatever the history's length.
    fn deployments_before(
        &self,
        environment: Option<&str>,
        before: Option<(i64, &str)>,
        limit: usize,
    ) -> PortResult<Vec<DeploymentRecord>>;
    /// A page of runs, newest first: those with an id below `before` (`None` for the
    /// first page).
    fn runs_before(&self, before: Option<RunId>, limit: usize) -> PortResult<Vec<RunView>>;
    /// What the DORA measures need of an environment's deployments that started at or
    /// after `since`, in start order: each with its run's creation time and its
    /// rollback (`ferry_core::dora`).
    fn dora_samples(
        &self,
        environment: &str,
        since: Timestamp,
    ) -> PortResult<Vec<ferry_core::dora::Sample>>;

    /// Events in id order, with their ids.
    fn events(&self, filter: &EventFilter) -> PortResult<Vec<(i64, Event)>>;

    /// Rollback records, newest first.
    fn rollbacks(&self, limit: usize) -> PortResult<Vec<RollbackRecord>>;

    /// Remembers a pipeline file's text under its digest (release sets refer to it).
    fn put_config(&self, digest: &str, text: &str) -> PortResult<()>;

    /// Records an alarm state change and its event, tied to no run.
    fn record_alarm(&self, changes: &[Change]) -> PortResult<()>;

    /// Records a webhook delivery id (GitHub's `X-GitHub-Delivery`) and the run it
    /// started, if any. `Err(earlier run)` when the id was already recorded: nothing is
    /// written, and the delivery must start nothing new.
    fn record_delivery(
        &self,
        id: &str,
        run: Option<RunId>,
        at: Timestamp,
    ) -> PortResult<Result<(), Option<RunId>>>;
    /// The run a recorded delivery started: `None` for an unknown id, `Some(None)` for a
    /// delivery that started no run.
    fn delivery(&self, id: &str) -> PortResult<Option<Option<RunId>>>;

    // ----- deployment windows: break-glass overrides (freezes are the ledger's) -------

    /// Records a break-glass request and its `break_glass_requested` event; returns it
    /// with its id. Conflict when the run already has one for that environment.
    fn request_override(&self, request: &BreakGlass) -> PortResult<BreakGlass>;
    /// A second person confirms a run's break-glass override for an environment, with
    /// its `break_glass_confirmed` event. NotFound when none was requested; Conflict
    /// (with `BreakGlass::refuse_confirmation`'s reason) when `by` asked for it or it is
    /// already confirmed.
    fn confirm_override(
        &self,
        run: RunId,
        environment: &str,
        by: &str,
        at: Timestamp,
    ) -> PortResult<BreakGlass>;
    /// A run's break-glass overrides, every environment, oldest first.
    fn overrides(&self, run: RunId) -> PortResult<Vec<BreakGlass>>;

    // ----- security findings ----------------------------------------------------------

    /// Records the findings of a run's security gate in one transaction, replacing any
    /// recorded for the run before (a resumed run scans again). NotFound when the run
    /// does not exist.
    fn record_findings(&self, run: RunId, findings: &[FindingRecord]) -> PortResult<()>;
    /// A run's findings in the order recorded (empty when its gate has not run).
    /// NotFound when the run does not exist.
    fn findings(&self, run: RunId) -> PortResult<Vec<FindingRecord>>;
    /// How many findings of each severity a run's gate recorded, allowlisted ones
    /// counted apart. NotFound when the run does not exist.
    fn finding_counts(&self, run: RunId) -> PortResult<FindingCounts>;

    // ----- metrics (`GET /metrics`) ---------------------------------------------------

    /// The counts behind `/metrics`, over the whole store, without reading every
    /// deployment: finished deployments' durations per environment as a histogram over
    /// [`DURATION_BOUNDS_MS`], rollbacks per environment and level, runs per status.
    fn metric_counts(&self) -> PortResult<MetricCounts>;
    // ----- the notification outbox (DESIGN invariant 4; ferry_core::notify) -----------

    /// Enqueues, in one transaction per channel, every event recorded since the
    /// channel's cursor whose kind it wants, and moves the cursor past them: each event
    /// reaches each channel's outbox exactly once. A channel seen for the first time
    /// starts at the newest event (it gets no old history). Returns how many deliveries
    /// were enqueued.
    fn outbox_fill(&self, channels: &[OutboxChannel], now: Timestamp) -> PortResult<usize>;
    /// The deliveries of `channels` due at `now`, at most `limit`: per channel, its
    /// oldest pending delivery if that is due (the ones behind it wait: a channel gets
    /// its events in order), then its dead letters whose automatic retry is due, oldest
    /// first. Each is reserved until `until` (its `next_at` moves there) so no other
    /// process sends it meanwhile.
    fn outbox_claim(
        &self,
        channels: &[String],
        now: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> PortResult<Vec<OutboxItem>>;
    /// Records an attempt's outcome. A delivery that succeeded also makes the channel's
    /// dead letters that wait for an automatic retry due at once (the channel is back).
    fn outbox_settle(&self, id: i64, settle: &Settle, now: Timestamp) -> PortResult<()>;
    /// Deliveries, newest first.
    fn outbox(&self, filter: &OutboxFilter) -> PortResult<Vec<OutboxItem>>;
    /// Makes undelivered deliveries due at `now` as a fresh round (attempts back to 0,
    /// status pending): those of `ids` if any are given, else every dead letter (of
    /// `channel` if given). Returns how many.
    fn outbox_retry(&self, channel: Option<&str>, ids: &[i64], now: Timestamp)
    -> PortResult<usize>;
    /// Pending, dead and delivered counts per channel, by channel id.
    fn outbox_counts(&self) -> PortResult<Vec<OutboxCounts>>;
}

/// The upper bounds (milliseconds) of the deployment duration histogram: 1 s … 1 h. The
/// SQLite store keeps its histogram table with exactly these (migration 9).
pub const DURATION_BOUNDS_MS: &[i64] = &[
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000, 1_200_000, 1_800_000,
    3_600_000,
];

/// What [`Store::metric_counts`] counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricCounts {
    /// Per environment, the deployments that ended (any status but `in_progress`).
    pub durations: BTreeMap<String, DurationHistogram>,
    /// `(environment, level)` → rollbacks. The level is the one the rollback reached
    /// (`stage`, `full`); one still in progress counts as `stage`, where every
    /// rollback starts.
    pub rollbacks: BTreeMap<(String, String), u64>,
    /// Run status (`succeeded`, `failed`, …) → runs.
    pub runs: BTreeMap<String, u64>,
}

/// A histogram of deployment durations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// For each bound of [`DURATION_BOUNDS_MS`], how many took at most that long
    /// (cumulative).
    pub buckets: Vec<u64>,
    pub count: u64,
    /// The sum of the durations, in milliseconds.
    pub sum_ms: i64,
}

impl DurationHistogram {
    /// Adds one duration.
    pub fn observe(&mut self, ms: i64) {
        if self.buckets.len() != DURATION_BOUNDS_MS.len() {
            self.buckets.resize(DURATION_BOUNDS_MS.len(), 0);
        }
        for (b, bound) in self.buckets.iter_mut().zip(DURATION_BOUNDS_MS) {
            if ms <= *bound {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }
}

/// One notification channel (a webhook, Slack, email, GitHub commit statuses): sends one
/// event, with its id so the receiver can drop a duplicate. Implementations put a
/// timeout on every call and never panic on what a receiver answers.
pub trait Notifier: Send + Sync {
    /// The channel's id (`ferry_config::Notification::id`).
    fn id(&self) -> &str;
    /// The event kinds it wants.
    fn kinds(&self) -> &[String];
    /// Sends one event; `Attempt::Delivered` with the receiver's answer, or why not.
    fn deliver(&self, event_id: i64, event: &Event) -> Attempt;
}

/// An environment held for a person after both rollback levels failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Incident {
    pub id: i64,
    pub environment: String,
    pub deployment_id: String,
    pub reason: String,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub resolved_by: Option<String>,
}

/// The repository: turns a revision into a commit and writes a commit's tree into a
/// folder (never the working tree: exactly the commit).
pub trait Source: Send + Sync {
    fn resolve(&self, rev: &str) -> PortResult<Commit>;
    fn checkout(&self, sha: &str, dest: &Path) -> PortResult<()>;
    /// The URL of the repository's `origin` remote, if it has one (commit links are
    /// derived from it when `source.repository` is not set).
    fn origin_url(&self) -> Option<String> {
        None
    }
}

/// One command to run.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    /// Shell text, run by `/bin/sh -c`.
    pub command: String,
    pub cwd: PathBuf,
    /// Added to the inherited environment. Untrusted text (commit message, author) only
    /// ever travels here (DESIGN invariant 7).
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// stdout and stderr, interleaved, appended here.
    pub log: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepExit {
    pub how: ExitObservation,
    pub duration: Duration,
}

/// Runs commands as child processes, each in its own process group, killed as a group
/// on timeout.
pub trait Executor: Send + Sync {
    fn run(&self, req: &StepRequest) -> StepExit;
}

/// Packs the artifact folder into one file and computes digests.
pub trait ArtifactStore: Send + Sync {
    /// Packs `dir` (deterministically: sorted entries, fixed mtimes) into a file named
    /// after the run and returns its digest, location and size.
    fn package(&self, dir: &Path, run: RunId) -> PortResult<Artifact>;
    /// `sha256:<hex>` of the bytes at `location` now.
    fn digest(&self, location: &str) -> PortResult<String>;
}

/// One deployment to perform.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployRequest {
    pub environment: String,
    pub version: String,
    pub artifact: Artifact,
    /// The `FERRY_*` variables of the run.
    pub env: BTreeMap<String, String>,
    /// The run's checkout (where `command` deployers run).
    pub cwd: PathBuf,
    pub log: PathBuf,
}

/// Puts a version into an environment. Implementations are idempotent: deploying the
/// version that is already current succeeds without disruption.
pub trait Deployer: Send + Sync {
    fn deploy(&self, req: &DeployRequest) -> PortResult<()>;
    /// Puts an earlier release back (`req.version`, `req.artifact` are the target's).
    /// A release deployer swaps back to the kept release (unpacking the artifact again
    /// if it was pruned); a command deployer runs its `rollback` command, or its deploy
    /// command with the target's variables when it has none.
    fn rollback(&self, req: &DeployRequest) -> PortResult<()>;
    /// What is really running now (DESIGN invariant 1: asked on reconcile and after a
    /// rollback), `None` when nothing is deployed.
    fn current_version(&self) -> PortResult<Option<String>>;
    /// Waits up to `within` for the environment's health check to answer 2xx. Ok when
    /// the deployer has no health check.
    fn healthy(&self, within: Duration) -> PortResult<()> {
        let _ = within;
        Ok(())
    }
}

impl Incident {
    /// The `incident_resolved` event that closing it appends (tied to no run); both stores
    /// record exactly this.
    pub fn resolved_event(&self, at: Timestamp) -> Event {
        let incident = self;
        let by = incident.resolved_by.as_deref().unwrap_or_default();
        Event {
            at,
            kind: EventKind::IncidentResolved,
            run: None,
            environment: Some(incident.environment.clone()),
            message: format!(
                "incident {} in {} resolved by {by}; automatic deployments to {} resume",
                incident.id, incident.environment, incident.environment
            ),
            data: serde_json::json!({
                "event": "incident_resolved",
                "incidentId": incident.id,
                "environment": incident.environment,
                "deploymentId": incident.deployment_id,
                "reason": incident.reason,
                "resolvedBy": by,
                "openedAt": iso8601(incident.opened_at),
                "timestamp": iso8601(at),
            }),
        }
    }
}

/// Builds the deployer of an environment from a `deploy:` section (the current
/// pipeline's, or the one recorded in a release set that a rollback restores).
pub trait DeployerFactory: Send + Sync {
    fn deployer(
        &self,
        environment: &str,
        deploy: &ferry_config::Deploy,
    ) -> PortResult<Box<dyn Deployer + '_>>;
}

/// The security gate's scan (`build.gates.security`) of a run's checkout: the
/// scanners' findings after the allowlist, and the verdict (seed Property 5). A scan
/// that cannot scan blocks (fail closed).
pub trait SecurityScanner: Send + Sync {
    fn scan(&self, checkout: &Path, security: &ferry_config::Security) -> ScanReport;
}

/// The infrastructure comparison of two commits (issue 5, seed §3.2) — the one `ferry
/// diff` makes: the files changed between them matched against `infrastructure.paths`,
/// then (when some match) the semantic diff of both commits' templates, and the verdict.
/// `checkout` is the run's checkout of `to` (where `synth` may run). A synth that fails
/// or a template that does not parse is an error (the infrastructure step fails closed).
pub trait InfraInspector: Send + Sync {
    fn assess(
        &self,
        checkout: &Path,
        from: &str,
        to: &str,
        infra: &ferry_config::Infrastructure,
    ) -> PortResult<InfraReport>;
}

/// What [`InfraInspector::assess`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct InfraReport {
    /// The verdict (no change / meaningful / rollback-unsafe) and its reasons.
    pub assessment: ferry_core::infra::Assessment,
    /// The comparison for people (changed files, resources, verdict), for the step's log.
    pub lines: Vec<String>,
}

/// What a security scan found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanReport {
    /// A CRITICAL or HIGH finding is not allowlisted, or a scanner failed.
    pub blocked: bool,
    /// One line: `blocked: 1 critical, 2 high, …`.
    pub summary: String,
    /// The findings as text, for the step's log (`ferry logs`).
    pub log: String,
    /// The findings as JSON, for the gate's event.
    pub data: serde_json::Value,
    /// Every finding, allowlisted ones included, for the store (`ferry findings`, the
    /// API); a scanner that could not scan is a `ferry` finding that blocks.
    pub findings: Vec<FindingRecord>,
    /// The findings as a SARIF 2.1.0 document, written to `build.gates.security.sarif`
    /// when the file names that key.
    pub sarif: Option<serde_json::Value>,
}

/// Whether the process named by a holder string (`host:pid`, as leases and rollback
/// records carry) is still alive, so the work of a killed ferry is taken over instead of
/// waited for.
pub trait Liveness: Send + Sync {
    /// `Some(false)` only when the holder is known to be gone; `None` when it cannot be
    /// told (another host).
    fn alive(&self, holder: &str) -> Option<bool>;
}

/// A liveness that can never tell (every holder may be alive).
pub struct Unknown;
impl Liveness for Unknown {
    fn alive(&self, _: &str) -> Option<bool> {
        None
    }
}

/// How long after its deadline a holder is still given, for clocks of different
/// machines that disagree (a Lambda's and a CodeBuild container's).
pub const DEADLINE_GRACE: Duration = Duration::from_secs(30);

/// The holder name of a process that cannot outlive `deadline`: a Lambda invocation is
/// ended by the Lambda service at its deadline, so once that has passed (plus
/// [`DEADLINE_GRACE`]) the lease or rollback it left is known to be abandoned, on any
/// machine.
pub fn holder_until(name: &str, deadline: Timestamp) -> String {
    format!("{name}/until={}", deadline.0)
}

/// The deadline a holder name carries (see [`holder_until`]), if any.
pub fn holder_deadline(holder: &str) -> Option<Timestamp> {
    let (_, until) = holder.rsplit_once("/until=")?;
    until.parse().ok().map(Timestamp)
}

/// What a holder's deadline tells at `now`: `Some(false)` (gone) once it is past the
/// deadline plus [`DEADLINE_GRACE`]; `None` before that, or for a holder without one.
pub fn alive_by_deadline(holder: &str, now: Timestamp) -> Option<bool> {
    let deadline = holder_deadline(holder)?;
    (now > deadline.plus(DEADLINE_GRACE)).then_some(false)
}

/// The run id work outside a run (`ferry rollback`, `ferry alarm`, the rollback Lambda)
/// holds an environment's lease under: negative (no run has it) and derived from the
/// holder's name (FNV-1a), which is unique across machines (`host:pid@start`, a Lambda
/// request id). A lease is "ours" by its run id, so a process id alone would not do:
/// containers and Lambda sandboxes run under the same few process ids.
pub fn outside_run_for(holder: &str) -> RunId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in holder.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let n = i64::try_from(h >> 1).unwrap_or(i64::MAX);
    RunId(-n.max(1))
}

/// A liveness that knows only deadlines ([`holder_until`]): what the rollback Lambda
/// can tell about other invocations.
pub struct Deadlines<'a> {
    pub clock: &'a dyn Clock,
}
impl Liveness for Deadlines<'_> {
    fn alive(&self, holder: &str) -> Option<bool> {
        alive_by_deadline(holder, self.clock.now())
    }
}

/// Told about every committed batch, and about waits, so people can watch a run.
pub trait Observer: Send + Sync {
    fn changed(&self, run: &RunView, changes: &[Change]);
    /// Something worth telling that is not a state change (waiting for a lease, a retry).
    fn note(&self, _run: &RunView, _message: &str) {}
    /// The same, outside a run (a rollback, an alarm).
    fn notice(&self, _message: &str) {}
    /// A committed batch of a rollback (its events).
    fn rolled(&self, _changes: &[Change]) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {
    fn changed(&self, _: &RunView, _: &[Change]) {}
}

/// Reads the report files a step wrote (JUnit, coverage), by path or glob relative to
/// the run's checkout. The engine parses them with `ferry_reports`.
pub trait ReportFiles: Send + Sync {
    /// Every file matching `pattern` under `base`, with its bytes. An empty list when
    /// nothing matches (the engine turns that into a clear step failure).
    fn read(&self, base: &Path, pattern: &str) -> PortResult<Vec<(PathBuf, Vec<u8>)>>;
}

/// Takes one datapoint of an alarm (an HTTP probe, a Prometheus query, a command).
pub trait AlarmProbe: Send + Sync {
    /// One period's observation and a short description of what was seen
    /// (`status 503 in 12ms`, `connection refused`, `value 0.7 > 0.5`).
    fn sample(&self, alarm: &ferry_config::Alarm) -> (ferry_core::alarm::Datapoint, String);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_with_a_deadline_is_gone_only_after_it_and_the_grace() {
        let holder = holder_until("lambda:8a1f-42", Timestamp(1_000_000));
        assert_eq!(holder, "lambda:8a1f-42/until=1000000");
        assert_eq!(holder_deadline(&holder), Some(Timestamp(1_000_000)));
        // Before the deadline, at it and within the grace: it may still be at work.
        for now in [0, 1_000_000, 1_000_000 + 30_000] {
            assert_eq!(alive_by_deadline(&holder, Timestamp(now)), None, "at {now}");
        }
        assert_eq!(
            alive_by_deadline(&holder, Timestamp(1_000_000 + 30_001)),
            Some(false)
        );
    }

    #[test]
    fn outside_runs_are_negative_and_differ_by_holder() {
        let a = outside_run_for("web-1:1@4242");
        let b = outside_run_for("web-2:1@4242");
        assert!(a.0 < 0 && b.0 < 0);
        assert_ne!(a, b, "same pid and start, other host");
        assert_eq!(a, outside_run_for("web-1:1@4242"));
        assert!(outside_run_for("").0 < 0);
    }

    #[test]
    fn holders_without_a_deadline_are_not_judged_by_one() {
        for holder in ["web-1:4242@99", "lambda:4242", "x/until=soon", ""] {
            assert_eq!(holder_deadline(holder), None, "{holder}");
            assert_eq!(alive_by_deadline(holder, Timestamp(i64::MAX)), None);
        }
    }
}
