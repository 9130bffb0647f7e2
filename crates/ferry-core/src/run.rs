//! The run state machine. A [`Run`] is the core's view of one execution: it says what
//! happens next ([`Run::next`]) and turns each observation into the [`Change`]s to
//! persist. It never performs anything itself.
//!
//! Property 1 (order) lives in [`Run::next`]: it only ever offers the first pending step
//! of the first unfinished stage, and a failed step ends the run, so a version reaches an
//! environment only after every earlier stage succeeded.

use crate::approval::{self, ApprovalState, Counted, Decision};
use crate::changes::Change;
use crate::deployment::{self, DeploymentRecord};
use crate::events::{Event, EventKind, iso8601};
use crate::gates::{self, Verdict};
use crate::model::*;
use crate::plan::{RunPlan, StageKind, StepKind};
use crate::time::{Timestamp, human};
use ferry_reports::TestReport;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Which step: indexes into the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StepRef {
    pub stage: usize,
    pub step: usize,
}

/// What the engine should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Start this step (it is pending and everything before it succeeded).
    Step(StepRef),
    /// This step is running: wait for its outcome.
    Wait(StepRef),
    /// The run has ended with this status.
    Finished(RunStatus),
}

/// What a run taken up again after its ferry process died must do first
/// ([`Run::recover`]). See ARCHITECTURE.md, invariant 1, for why each is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Nothing was running: carry on with the next step.
    Continue,
    /// The build was interrupted: it starts again from its first step, in a fresh
    /// checkout (each step that had started is recorded as a retry).
    Rebuild,
    /// A test command of an environment, or its infrastructure step, was interrupted: it
    /// runs again (a retry) under the deployment it opened. The infrastructure deploy
    /// command must therefore be idempotent, as `cdk deploy` and `aws cloudformation
    /// deploy` are.
    Rerun(StepRef),
    /// The approval wait goes on; a decision recorded meanwhile is read from the store.
    AwaitApproval(StepRef),
    /// A deploy was interrupted: ask the deployer what runs; the run's version running
    /// and healthy counts as deployed (without deploying again), anything else fails the
    /// stage and rolls it back.
    CheckDeploy(StepRef),
    /// A monitor window was interrupted: it starts again (an ALARM recorded since the
    /// deployment started keeps it failed).
    RestartWindow(StepRef),
}

impl Recovery {
    /// One word for events and logs.
    pub fn label(self) -> &'static str {
        match self {
            Recovery::Continue => "continue",
            Recovery::Rebuild => "rebuild",
            Recovery::Rerun(_) => "rerun_step",
            Recovery::AwaitApproval(_) => "await_approval",
            Recovery::CheckDeploy(_) => "check_deploy",
            Recovery::RestartWindow(_) => "restart_window",
        }
    }
}

/// What a finished step observed. Built by the engine from the executor's and
/// deployer's reports; the verdict is computed by [`gates`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepOutcome {
    pub verdict: Option<Verdict>,
    pub exit_code: Option<i32>,
    pub tests: Option<TestReport>,
    pub coverage: Option<f64>,
}

impl StepOutcome {
    pub fn passed() -> Self {
        StepOutcome {
            verdict: Some(Verdict::Passed),
            ..Default::default()
        }
    }
    pub fn failed(reason: impl Into<String>) -> Self {
        StepOutcome {
            verdict: Some(Verdict::Failed(reason.into())),
            ..Default::default()
        }
    }
}

/// What the run has learnt about its tests so far: the seed's three flags and the
/// coverage, carried into every deployment record of the run.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TestLedger {
    pub unit: Option<bool>,
    pub integration: Option<bool>,
    pub e2e: Option<bool>,
    pub coverage: Option<f64>,
}

impl TestLedger {
    fn record(&mut self, suite: Suite, ok: bool) {
        let slot = match suite {
            Suite::Unit => &mut self.unit,
            Suite::Integration => &mut self.integration,
            Suite::E2e => &mut self.e2e,
        };
        *slot = Some(slot.unwrap_or(true) && ok);
    }
}

/// The persisted shape of a run: what the store loads and `--json` prints. Property 6
/// says `store.load_run(id) == run.view()` after every committed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    pub id: RunId,
    pub pipeline: String,
    pub commit: Commit,
    pub status: RunStatus,
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub artifact: Option<Artifact>,
    pub stages: Vec<StageView>,
    /// A hotfix run (`ferry run --hotfix`): only the last environment, at least two
    /// approvals there, its monitor window doubled.
    #[serde(default)]
    pub hotfix: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageView {
    pub name: String,
    pub status: StageStatus,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub steps: Vec<StepView>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub name: String,
    pub kind: String,
    pub status: StepStatus,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub log: Option<String>,
}

/// One run, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub plan: RunPlan,
    pub view: RunView,
    pub ledger: TestLedger,
    /// The deployment record this run opened per stage index, while it is open.
    deployments: Vec<Option<DeploymentRecord>>,
    /// When the approval of a stage was requested, for its timeout.
    pub approval_requested: Vec<Option<Timestamp>>,
    /// `sha256:<hex>` of the pipeline file this run follows, recorded in its release sets.
    pub config_digest: Option<String>,
    /// The repository's web address, for the commit link of approval requests.
    pub repository: Option<String>,
    /// The latest time this run has recorded: a run's record never goes back in time,
    /// whatever the clocks it is handed do.
    last: Timestamp,
}

impl Run {
    /// A queued run. The store has already given it its id.
    pub fn new(id: RunId, pipeline: &str, commit: Commit, plan: RunPlan, now: Timestamp) -> Run {
        let stages = plan
            .stages
            .iter()
            .map(|s| StageView {
                name: s.name.clone(),
                status: StageStatus::Pending,
                started_at: None,
                ended_at: None,
                steps: s
                    .steps
                    .iter()
                    .map(|st| StepView {
                        name: st.name.clone(),
                        kind: st.kind.label().to_string(),
                        status: StepStatus::Pending,
                        started_at: None,
                        ended_at: None,
                        exit_code: None,
                        reason: None,
                        log: None,
                    })
                    .collect(),
            })
            .collect();
        let n = plan.stages.len();
        let hotfix = plan.hotfix;
        Run {
            plan,
            view: RunView {
                id,
                pipeline: pipeline.to_string(),
                commit,
                status: RunStatus::Queued,
                reason: None,
                created_at: now,
                started_at: None,
                ended_at: None,
                artifact: None,
                stages,
                hotfix,
            },
            ledger: TestLedger::default(),
            deployments: vec![None; n],
            approval_requested: vec![None; n],
            config_digest: None,
            repository: None,
            last: now,
        }
    }

    /// `now`, or the latest time already recorded if `now` is earlier.
    fn tick(&mut self, now: Timestamp) -> Timestamp {
        self.last = self.last.max(now);
        self.last
    }

    pub fn id(&self) -> RunId {
        self.view.id
    }

    /// A run rebuilt from its stored view (the pipeline file may have changed since, so
    /// the plan is read off the view), with the deployments it had open, so that it can
    /// be ended after the process driving it died.
    pub fn resume(view: RunView, open: Vec<(usize, DeploymentRecord)>) -> Run {
        let plan = RunPlan::from_view(&view);
        Run::rebuild(view, plan, open)
    }

    fn rebuild(view: RunView, plan: RunPlan, open: Vec<(usize, DeploymentRecord)>) -> Run {
        let n = plan.stages.len();
        let mut deployments = vec![None; n];
        let mut ledger = TestLedger::default();
        for (i, d) in open {
            ledger.unit = Some(d.unit_tests_passed);
            ledger.integration = Some(d.integration_tests_passed);
            ledger.e2e = Some(d.e2e_tests_passed);
            ledger.coverage = Some(d.coverage_percentage);
            if let Some(slot) = deployments.get_mut(i) {
                *slot = Some(d);
            }
        }
        let mut last = view.created_at;
        for t in [view.started_at, view.ended_at].into_iter().flatten() {
            last = last.max(t);
        }
        for s in &view.stages {
            for t in [s.started_at, s.ended_at].into_iter().flatten() {
                last = last.max(t);
            }
            for st in &s.steps {
                for t in [st.started_at, st.ended_at].into_iter().flatten() {
                    last = last.max(t);
                }
            }
        }
        // What the run learnt before: a suite whose step succeeded passed (a failed one
        // would have ended the run); an approval being waited for was requested when its
        // step started.
        let mut approval_requested = vec![None; n];
        for (si, s) in view.stages.iter().enumerate() {
            for (ti, st) in s.steps.iter().enumerate() {
                let kind = plan
                    .stages
                    .get(si)
                    .and_then(|p| p.steps.get(ti))
                    .map(|p| &p.kind);
                match kind {
                    Some(StepKind::Command { suite, .. }) if st.status == StepStatus::Succeeded => {
                        ledger.record(*suite, true);
                    }
                    Some(StepKind::Approval { .. }) if st.status == StepStatus::Running => {
                        approval_requested[si] = st.started_at;
                    }
                    _ => {}
                }
            }
        }
        Run {
            plan,
            view,
            ledger,
            deployments,
            approval_requested,
            config_digest: None,
            repository: None,
            last,
        }
    }

    /// A run rebuilt from its stored view to be driven on (after its ferry process died),
    /// following `plan` — the current pipeline file's — which must have the same stages
    /// and steps (names and kinds) as the view; `None` when it does not (the file changed
    /// since the run started: it cannot be resumed safely).
    pub fn resume_with(
        view: RunView,
        plan: RunPlan,
        open: Vec<(usize, DeploymentRecord)>,
    ) -> Option<Run> {
        let same = plan.stages.len() == view.stages.len()
            && plan.stages.iter().zip(&view.stages).all(|(p, v)| {
                p.name == v.name
                    && p.steps.len() == v.steps.len()
                    && p.steps
                        .iter()
                        .zip(&v.steps)
                        .all(|(a, b)| a.name == b.name && a.kind.label() == b.kind)
            });
        if !same {
            return None;
        }
        Some(Run::rebuild(view, plan, open))
    }

    pub fn status(&self) -> RunStatus {
        self.view.status
    }

    pub fn step_kind(&self, r: StepRef) -> &StepKind {
        &self.plan.stages[r.stage].steps[r.step].kind
    }

    pub fn step_name(&self, r: StepRef) -> &str {
        &self.plan.stages[r.stage].steps[r.step].name
    }

    pub fn stage_name(&self, stage: usize) -> &str {
        &self.plan.stages[stage].name
    }

    /// The open deployment of a stage (between deploy start and stage end).
    pub fn open_deployment(&self, stage: usize) -> Option<&DeploymentRecord> {
        self.deployments.get(stage).and_then(|d| d.as_ref())
    }

    /// The changes that record the run as queued (the first batch the store sees).
    pub fn queued_changes(&self) -> Vec<Change> {
        vec![self.event(
            self.view.created_at,
            EventKind::RunQueued,
            None,
            format!(
                "run {} queued for commit {}",
                self.id(),
                self.view.commit.short()
            ),
            json!({"commit": self.view.commit.sha}),
        )]
    }

    /// queued → running.
    pub fn begin(&mut self, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        if self.view.status != RunStatus::Queued {
            return Vec::new();
        }
        self.view.status = RunStatus::Running;
        self.view.started_at = Some(now);
        vec![
            Change::Run {
                status: RunStatus::Running,
                reason: None,
                at: now,
            },
            self.event(
                now,
                EventKind::RunStarted,
                None,
                format!(
                    "run {} started for commit {}",
                    self.id(),
                    self.view.commit.short()
                ),
                json!({
                    "commit": self.view.commit.sha,
                    "pipelineExecutionId": self.id().execution_id(),
                }),
            ),
        ]
    }

    /// What happens next. Order (Property 1): stages strictly in plan order, steps
    /// strictly in stage order; nothing after a failure.
    pub fn next(&self) -> Next {
        if self.view.status.is_terminal() {
            return Next::Finished(self.view.status);
        }
        for (si, stage) in self.view.stages.iter().enumerate() {
            if stage.status.is_terminal() {
                continue;
            }
            for (ti, step) in stage.steps.iter().enumerate() {
                let r = StepRef {
                    stage: si,
                    step: ti,
                };
                match step.status {
                    StepStatus::Pending => return Next::Step(r),
                    StepStatus::Running => return Next::Wait(r),
                    _ => continue,
                }
            }
        }
        // Every stage is terminal but the run is not: only possible before `finish`.
        Next::Finished(self.view.status)
    }

    /// Records that a step starts (the intent, committed before the side effect).
    /// `log` is where its output will be written.
    pub fn start_step(&mut self, r: StepRef, now: Timestamp, log: Option<String>) -> Vec<Change> {
        let now = self.tick(now);
        let mut out = Vec::new();
        if self.view.status == RunStatus::Queued {
            out.extend(self.begin(now));
        }
        // Stages with nothing to do (a pipeline without build steps) are done once a
        // later one starts.
        for si in 0..r.stage {
            if self.view.stages[si].status == StageStatus::Pending
                && self.view.stages[si].steps.is_empty()
            {
                self.view.stages[si].status = StageStatus::Succeeded;
                self.view.stages[si].started_at = Some(now);
                self.view.stages[si].ended_at = Some(now);
                out.push(Change::Stage {
                    stage: si,
                    status: StageStatus::Running,
                    at: now,
                });
                out.push(Change::Stage {
                    stage: si,
                    status: StageStatus::Succeeded,
                    at: now,
                });
            }
        }
        let env = self.plan.stages[r.stage].environment().map(str::to_string);
        let stage_name = self.stage_name(r.stage).to_string();
        if self.view.stages[r.stage].status == StageStatus::Pending {
            self.view.stages[r.stage].status = StageStatus::Running;
            self.view.stages[r.stage].started_at = Some(now);
            out.push(Change::Stage {
                stage: r.stage,
                status: StageStatus::Running,
                at: now,
            });
            out.push(self.event(
                now,
                EventKind::StageStarted,
                env.clone(),
                format!("stage {stage_name} started"),
                json!({"stage": stage_name}),
            ));
        }
        let name = self.step_name(r).to_string();
        let step = &mut self.view.stages[r.stage].steps[r.step];
        step.status = StepStatus::Running;
        step.started_at = Some(now);
        step.log = log.clone();
        out.push(Change::Step {
            stage: r.stage,
            step: r.step,
            status: StepStatus::Running,
            at: now,
            log,
            exit_code: None,
            reason: None,
        });
        out.push(self.event(
            now,
            EventKind::StepStarted,
            env.clone(),
            format!("step {stage_name}/{name} started"),
            json!({"stage": stage_name, "step": name}),
        ));

        if let StepKind::Approval { rule } = self.step_kind(r) {
            let rule = rule.clone();
            self.approval_requested[r.stage] = Some(now);
            self.view.status = RunStatus::AwaitingApproval;
            self.view.stages[r.stage].status = StageStatus::AwaitingApproval;
            out.push(Change::Run {
                status: RunStatus::AwaitingApproval,
                reason: None,
                at: now,
            });
            out.push(Change::Stage {
                stage: r.stage,
                status: StageStatus::AwaitingApproval,
                at: now,
            });
            let c = &self.view.commit;
            let url = self
                .repository
                .as_deref()
                .map(|repo| approval::commit_url(repo, &c.sha));
            let link = url
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default();
            let needs = if rule.required > 1 {
                format!(" {} approvals from {}", rule.required, rule.who())
            } else if rule.approvers.is_empty() {
                String::new()
            } else {
                format!(" 1 approval from {}", rule.who())
            };
            let hotfix = if self.view.hotfix { "hotfix " } else { "" };
            out.push(self.event(
                now,
                EventKind::ApprovalRequested,
                env,
                format!(
                    "{hotfix}run {} awaits{needs} to deploy {}{link} to {stage_name}: `ferry approve {}` or `ferry reject {} --reason …`",
                    self.id(),
                    c.short(),
                    self.id(),
                    self.id()
                ),
                json!({
                    "event": "approval_requested",
                    "environment": stage_name,
                    "version": c.sha,
                    "commitMessage": c.message,
                    "commitAuthor": c.author,
                    "commitUrl": url,
                    "externalEntityLink": url,
                    "pipelineExecutionId": self.id().execution_id(),
                    "expiresAt": iso8601(now.plus(rule.timeout)),
                    "timestamp": iso8601(now),
                    "required": rule.required,
                    "approvers": rule.approvers,
                    "separationOfDuties": rule.separation_of_duties,
                    "remindAt": rule.reminder_at(now).map(iso8601),
                    "hotfix": self.view.hotfix,
                    "rule": rule,
                }),
            ));
        }
        out
    }

    /// Records that the deploy step of an environment starts: the step's intent plus the
    /// deployment record (`in_progress`). `previous_version` is what the environment ran
    /// before (its last known good deployment). The first of the environment's
    /// infrastructure and deploy steps opens the record; the deploy step after an
    /// infrastructure step finds it open and only starts.
    pub fn start_deploy(
        &mut self,
        r: StepRef,
        now: Timestamp,
        log: Option<String>,
        previous_version: Option<String>,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let mut out = self.start_step(r, now, log);
        if self.deployments[r.stage].is_some() {
            return out;
        }
        let env = self.stage_name(r.stage).to_string();
        let c = self.view.commit.clone();
        let (location, digest) = match &self.view.artifact {
            Some(a) => (a.location.clone(), a.digest.clone()),
            None => (String::new(), String::new()),
        };
        let record = DeploymentRecord {
            deployment_id: deployment::deployment_id(&env, now),
            environment: env.clone(),
            version: c.sha.clone(),
            status: DeploymentStatus::InProgress,
            start_time: now.millis(),
            end_time: None,
            infrastructure_changed: false,
            commit_message: c.message.clone(),
            commit_author: c.author.clone(),
            pipeline_execution_id: self.id().execution_id(),
            unit_tests_passed: self.ledger.unit.unwrap_or(false),
            integration_tests_passed: self.ledger.integration.unwrap_or(false),
            e2e_tests_passed: self.ledger.e2e.unwrap_or(false),
            coverage_percentage: self.ledger.coverage.unwrap_or(0.0),
            rollback_reason: None,
            rollback_level: None,
            rollback_time: None,
            artifact_location: location,
            expires_at: deployment::expires_at(now),
            run_id: self.id(),
            artifact_digest: digest,
            previous_version,
            config_digest: self.config_digest.clone(),
            template_digests: Default::default(),
            rollback_unsafe: false,
            rollback_unsafe_reason: None,
        };
        self.deployments[r.stage] = Some(record.clone());
        out.push(Change::DeploymentStarted(Box::new(record)));
        out.push(self.event(
            now,
            EventKind::DeploymentStarted,
            Some(env.clone()),
            format!("deploying {} to {env}", c.short()),
            json!({
                "event": "deployment_started",
                "environment": env,
                "version": c.sha,
                "commitMessage": c.message,
                "commitAuthor": c.author,
                "pipelineExecutionId": self.id().execution_id(),
                "timestamp": iso8601(now),
            }),
        ));
        out
    }

    /// Records the infrastructure step's verdict on the stage's open deployment, before
    /// its deploy command runs (DESIGN invariant 1: a crash during the command leaves the
    /// record saying what was being deployed): `deploy` — the infrastructure deploy runs
    /// (`infrastructureChanged`); `unsafe_reasons` — non-empty when the change is
    /// rollback-unsafe. `verdict` is the word (`no-change`, `meaningful`,
    /// `rollback-unsafe`, `first-deployment`), `summary` one line for people.
    pub fn record_infrastructure(
        &mut self,
        stage: usize,
        verdict: &str,
        deploy: bool,
        unsafe_reasons: &[String],
        summary: &str,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let run = self.id();
        let Some(d) = self.deployments.get_mut(stage).and_then(|d| d.as_mut()) else {
            return Vec::new();
        };
        d.infrastructure_changed = deploy;
        d.rollback_unsafe = !unsafe_reasons.is_empty();
        d.rollback_unsafe_reason = (!unsafe_reasons.is_empty()).then(|| unsafe_reasons.join("; "));
        let d = d.clone();
        let env = d.environment.clone();
        vec![
            Change::DeploymentInfrastructure {
                deployment_id: d.deployment_id.clone(),
                infrastructure_changed: d.infrastructure_changed,
                rollback_unsafe: d.rollback_unsafe,
                rollback_unsafe_reason: d.rollback_unsafe_reason.clone(),
            },
            Change::Event(Event {
                at: now,
                kind: EventKind::InfrastructureAssessed,
                run: Some(run),
                environment: Some(env.clone()),
                message: format!("infrastructure of {env}: {summary}"),
                data: json!({
                    "event": "infrastructure_assessed",
                    "environment": env,
                    "version": d.version,
                    "deploymentId": d.deployment_id,
                    "verdict": verdict,
                    "infrastructureChanged": d.infrastructure_changed,
                    "rollbackUnsafe": d.rollback_unsafe,
                    "rollbackUnsafeReason": d.rollback_unsafe_reason,
                    "timestamp": iso8601(now),
                }),
            }),
        ]
    }

    /// Records the security gate's verdict, as the scan of the checkout found it:
    /// `blocked` when a CRITICAL or HIGH finding is not allowlisted or a scanner could
    /// not scan (fail closed); `summary` is its one line, `data` the findings.
    pub fn finish_security(
        &mut self,
        r: StepRef,
        blocked: bool,
        summary: &str,
        data: serde_json::Value,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let (kind, verdict) = if blocked {
            (
                EventKind::GateFailed,
                Verdict::Failed(format!("security gate: {summary}")),
            )
        } else {
            (EventKind::GatePassed, Verdict::Passed)
        };
        let mut d = json!({"gate": "security"});
        if let (Some(o), serde_json::Value::Object(more)) = (d.as_object_mut(), data) {
            o.extend(more);
        }
        let ev = self.event(now, kind, None, format!("security gate {summary}"), d);
        let mut out = vec![ev];
        out.extend(self.finish_step(
            r,
            StepOutcome {
                verdict: Some(verdict),
                ..Default::default()
            },
            now,
        ));
        out
    }

    /// Records the coverage gate's verdict, computed here from the run's coverage.
    pub fn finish_gate(&mut self, r: StepRef, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        let StepKind::CoverageGate { min } = *self.step_kind(r) else {
            return self.finish_step(r, StepOutcome::failed("not a gate step"), now);
        };
        let verdict = gates::coverage(self.ledger.coverage, min);
        let (kind, msg) = match &verdict {
            Verdict::Passed => (
                EventKind::GatePassed,
                format!(
                    "coverage gate passed: {} ≥ {}",
                    gates::percent(self.ledger.coverage.unwrap_or(0.0)),
                    gates::percent(min)
                ),
            ),
            Verdict::Failed(why) => (
                EventKind::GateFailed,
                format!("coverage gate failed: {why}"),
            ),
        };
        let ev = self.event(
            now,
            kind,
            None,
            msg,
            json!({"gate": "coverage", "coverage": self.ledger.coverage, "min": min}),
        );
        let mut out = vec![ev];
        out.extend(self.finish_step(
            r,
            StepOutcome {
                verdict: Some(verdict),
                ..Default::default()
            },
            now,
        ));
        out
    }

    /// Records the artifact built by the package step.
    pub fn finish_package(
        &mut self,
        r: StepRef,
        artifact: Artifact,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        self.view.artifact = Some(artifact.clone());
        let mut out = vec![
            Change::Artifact(artifact.clone()),
            self.event(
                now,
                EventKind::ArtifactBuilt,
                None,
                format!("artifact {} ({} bytes)", artifact.digest, artifact.size),
                json!({"digest": artifact.digest, "location": artifact.location, "size": artifact.size}),
            ),
        ];
        out.extend(self.finish_step(r, StepOutcome::passed(), now));
        out
    }

    /// The events of decisions recorded since the gate last looked (`decisions[from..]`,
    /// read by [`approval::evaluate`] as `counted`): `approval_granted` per counted
    /// approval ("k of N"), `approval_rejected` for the rejection that ends the gate,
    /// `approval_refused` for a person the rule does not allow, `approval_voided` for a
    /// decision for another artifact.
    pub fn approval_decisions(
        &mut self,
        r: StepRef,
        decisions: &[Decision],
        counted: &[Counted],
        from: usize,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let env = self.stage_name(r.stage).to_string();
        let required = match self.step_kind(r) {
            StepKind::Approval { rule } => rule.required,
            _ => 1,
        };
        let sha = self.view.commit.sha.clone();
        let mut out = Vec::new();
        for (d, c) in decisions.iter().zip(counted).skip(from) {
            let (kind, msg, extra) = match c {
                Counted::Approval { k } => (
                    EventKind::ApprovalGranted,
                    format!(
                        "deployment to {env} approved by {} ({k} of {required})",
                        d.by
                    ),
                    json!({"approvals": k, "required": required}),
                ),
                Counted::Rejection => (
                    EventKind::ApprovalRejected,
                    format!(
                        "deployment to {env} rejected by {}: {}",
                        d.by,
                        d.reason.as_deref().unwrap_or("no reason given")
                    ),
                    json!({"reason": d.reason}),
                ),
                Counted::Refused(why) => (
                    EventKind::ApprovalRefused,
                    format!("decision by {} on {env} does not count: {why}", d.by),
                    json!({"reason": why}),
                ),
                Counted::Void(why) if d.void.is_none() => (
                    EventKind::ApprovalVoided,
                    format!("decision by {} on {env} is void: {why}", d.by),
                    json!({"reason": why}),
                ),
                _ => continue,
            };
            let mut data = json!({
                "environment": env,
                "by": d.by,
                "approved": d.approved,
                "digest": d.digest,
                "version": sha,
            });
            if let (Some(o), Some(e)) = (data.as_object_mut(), extra.as_object()) {
                o.extend(e.clone());
            }
            out.push(self.event(now, kind, Some(env.clone()), msg, data));
        }
        out
    }

    /// The reminder that the gate of stage `r` is still open, once, before its timeout.
    pub fn approval_reminder(
        &mut self,
        r: StepRef,
        state: &ApprovalState,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let ApprovalState::Waiting {
            deadline,
            approvals,
            required,
        } = state
        else {
            return Vec::new();
        };
        let env = self.stage_name(r.stage).to_string();
        let left = deadline.since(now);
        vec![self.event(
            now,
            EventKind::ApprovalReminder,
            Some(env.clone()),
            format!(
                "run {} still awaits approval to deploy {} to {env}: {} of {required} so far, {} left before it times out",
                self.id(),
                self.view.commit.short(),
                approvals.len(),
                human(left)
            ),
            json!({
                "environment": env,
                "version": self.view.commit.sha,
                "approvals": approvals,
                "required": required,
                "expiresAt": iso8601(*deadline),
            }),
        )]
    }

    /// Voids the decisions recorded for stage `stage` (the run was superseded or
    /// cancelled while waiting, the artifact changed): they stay on record and no longer
    /// count.
    pub fn void_approvals(&mut self, stage: usize, why: &str, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        let env = self.stage_name(stage).to_string();
        vec![
            Change::ApprovalsVoided {
                environment: env.clone(),
                reason: why.to_string(),
                at: now,
            },
            self.event(
                now,
                EventKind::ApprovalVoided,
                Some(env.clone()),
                format!("approvals of run {} for {env} are void: {why}", self.id()),
                json!({"environment": env, "reason": why, "version": self.view.commit.sha}),
            ),
        ]
    }

    /// Records an approval step's end. Approvals and rejections have their events from
    /// [`Run::approval_decisions`]; a timeout gets `approval_timed_out` here.
    pub fn finish_approval(
        &mut self,
        r: StepRef,
        state: ApprovalState,
        now: Timestamp,
    ) -> Vec<Change> {
        let now = self.tick(now);
        let env = self.stage_name(r.stage).to_string();
        let mut out = Vec::new();
        let outcome = match &state {
            ApprovalState::Waiting { .. } => return Vec::new(),
            ApprovalState::Approved { .. } => StepOutcome::passed(),
            ApprovalState::Rejected { by, reason } => {
                StepOutcome::failed(format!("approval rejected by {by}: {reason}"))
            }
            ApprovalState::TimedOut { after } => {
                out.push(self.event(
                    now,
                    EventKind::ApprovalTimedOut,
                    Some(env.clone()),
                    format!("approval for {env} timed out after {}", human(*after)),
                    json!({"environment": env, "version": self.view.commit.sha}),
                ));
                StepOutcome::failed(format!(
                    "approval timed out after {}: nobody approved the deployment to {env}",
                    human(*after)
                ))
            }
        };
        if outcome.verdict.as_ref().is_some_and(Verdict::passed) {
            self.view.status = RunStatus::Running;
            self.view.stages[r.stage].status = StageStatus::Running;
            out.push(Change::Run {
                status: RunStatus::Running,
                reason: None,
                at: now,
            });
            out.push(Change::Stage {
                stage: r.stage,
                status: StageStatus::Running,
                at: now,
            });
        }
        out.extend(self.finish_step(r, outcome, now));
        out
    }

    /// Records a step's outcome (committed after the side effect ended) and everything
    /// it implies: test results, the stage's end, the deployment's end, the run's end.
    pub fn finish_step(&mut self, r: StepRef, outcome: StepOutcome, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        let mut out = Vec::new();
        let env = self.plan.stages[r.stage].environment().map(str::to_string);
        let stage_name = self.stage_name(r.stage).to_string();
        let name = self.step_name(r).to_string();
        let verdict = outcome.verdict.clone().unwrap_or(Verdict::Passed);

        if let StepKind::Command { suite, .. } = self.step_kind(r).clone() {
            // A command without a JUnit report still says whether its suite passed:
            // by its verdict (exit status, coverage report readable).
            let ok = outcome.tests.as_ref().is_none_or(|t| t.ok()) && verdict.passed();
            self.ledger.record(suite, ok);
            if let Some(c) = outcome.coverage {
                self.ledger.coverage = Some(c);
            }
            if outcome.tests.is_some() || outcome.coverage.is_some() {
                out.push(Change::TestResults {
                    stage: r.stage,
                    step: r.step,
                    suite,
                    report: outcome.tests.clone().unwrap_or_default(),
                    coverage: outcome.coverage,
                });
            }
        }

        let (status, reason) = match &verdict {
            Verdict::Passed => (StepStatus::Succeeded, None),
            Verdict::Failed(why) => (StepStatus::Failed, Some(why.clone())),
        };
        let step = &mut self.view.stages[r.stage].steps[r.step];
        step.status = status;
        step.ended_at = Some(now);
        step.exit_code = outcome.exit_code;
        step.reason = reason.clone();
        out.push(Change::Step {
            stage: r.stage,
            step: r.step,
            status,
            at: now,
            log: step.log.clone(),
            exit_code: outcome.exit_code,
            reason: reason.clone(),
        });
        let (kind, msg) = match &reason {
            None => (
                EventKind::StepSucceeded,
                format!("step {stage_name}/{name} succeeded"),
            ),
            Some(why) => (
                EventKind::StepFailed,
                format!("step {stage_name}/{name} failed: {why}"),
            ),
        };
        out.push(self.event(
            now,
            kind,
            env.clone(),
            msg,
            json!({"stage": stage_name, "step": name, "exitCode": outcome.exit_code, "reason": reason}),
        ));

        match reason {
            Some(why) => {
                let why = format!("{stage_name}/{name}: {why}");
                out.extend(self.fail_from(r, why, now));
            }
            None => {
                let last = r.step + 1 == self.plan.stages[r.stage].steps.len();
                if last {
                    out.extend(self.finish_stage_ok(r.stage, now));
                }
            }
        }
        out
    }

    /// Ends the run as failed from outside any step (a crash found on restart, a
    /// refused artifact, a lost lease …). The running step, if any, fails with `why`.
    pub fn abort(&mut self, why: &str, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        if self.view.status.is_terminal() {
            return Vec::new();
        }
        match self.next() {
            Next::Wait(r) => self.finish_step(r, StepOutcome::failed(why), now),
            Next::Step(r) => {
                let mut out = Vec::new();
                if self.view.status == RunStatus::Queued {
                    out.extend(self.begin(now));
                }
                // Nothing started: fail from the step that would have run.
                out.extend(self.fail_from(r, why.to_string(), now));
                out
            }
            Next::Finished(_) => Vec::new(),
        }
    }

    fn finish_stage_ok(&mut self, stage: usize, now: Timestamp) -> Vec<Change> {
        let mut out = Vec::new();
        let name = self.stage_name(stage).to_string();
        let env = self.plan.stages[stage].environment().map(str::to_string);
        self.view.stages[stage].status = StageStatus::Succeeded;
        self.view.stages[stage].ended_at = Some(now);
        out.push(Change::Stage {
            stage,
            status: StageStatus::Succeeded,
            at: now,
        });
        out.push(self.event(
            now,
            EventKind::StageSucceeded,
            env,
            format!("stage {name} succeeded"),
            json!({"stage": name}),
        ));
        if let Some(d) = self.deployments[stage].take() {
            out.extend(self.close_deployment(d, DeploymentStatus::Succeeded, None, now));
        }
        if stage + 1 == self.plan.stages.len() {
            self.view.status = RunStatus::Succeeded;
            self.view.ended_at = Some(now);
            out.push(Change::Run {
                status: RunStatus::Succeeded,
                reason: None,
                at: now,
            });
            let took = self
                .view
                .started_at
                .map(|s| human(now.since(s)))
                .unwrap_or_default();
            out.push(self.event(
                now,
                EventKind::RunSucceeded,
                None,
                format!("run {} succeeded in {took}", self.id()),
                json!({"commit": self.view.commit.sha, "duration": took}),
            ));
        }
        out
    }

    /// The failure path: the failed stage ends, its open deployment fails, every step
    /// and stage after it is skipped, and the run fails with `why`.
    fn fail_from(&mut self, r: StepRef, why: String, now: Timestamp) -> Vec<Change> {
        self.end_from(r, why, now, RunStatus::Failed)
    }

    /// Cancels the run (Ctrl-C, a newer run superseding it): the running step is
    /// cancelled, the rest skipped, an open deployment fails.
    pub fn cancel(&mut self, why: &str, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        self.stop_as(why, now, RunStatus::Cancelled)
    }

    /// Ends the run as superseded by a newer one (CodePipeline V2's SUPERSEDED mode).
    pub fn supersede(&mut self, why: &str, now: Timestamp) -> Vec<Change> {
        let now = self.tick(now);
        self.stop_as(why, now, RunStatus::Superseded)
    }

    /// [`Self::supersede`] by run `by`: the `run_superseded` event names it
    /// (`supersededBy`).
    pub fn supersede_by(&mut self, by: RunId, why: &str, now: Timestamp) -> Vec<Change> {
        let mut out = self.supersede(why, now);
        for c in &mut out {
            if let Change::Event(e) = c
                && e.kind == EventKind::RunSuperseded
                && let Some(o) = e.data.as_object_mut()
            {
                o.insert("supersededBy".into(), json!(by));
            }
        }
        out
    }

    /// Takes up a run whose ferry process (`driver`) died: decides what to do first
    /// ([`Recovery`]) and returns the changes that record it (`run_resumed`, and a
    /// `step_retried` for each step that runs again). Pure: asking the deployer, waiting
    /// and rolling back are the engine's.
    pub fn recover(&mut self, driver: &str, now: Timestamp) -> (Recovery, Vec<Change>) {
        let now = self.tick(now);
        if self.view.status.is_terminal() {
            return (Recovery::Continue, Vec::new());
        }
        let mut out = Vec::new();
        let build_started = self
            .plan
            .stages
            .first()
            .is_some_and(|p| p.kind == StageKind::Build)
            && !self.view.stages[0].status.is_terminal()
            && self.view.stages[0]
                .steps
                .iter()
                .any(|st| st.status != StepStatus::Pending);
        let recovery = if build_started {
            // What an interrupted build left (checkout, reports, coverage) is not
            // trusted: the whole build runs again.
            let started: Vec<usize> = (0..self.view.stages[0].steps.len())
                .filter(|&ti| self.view.stages[0].steps[ti].status != StepStatus::Pending)
                .collect();
            for ti in started {
                out.extend(self.retry_step(StepRef { stage: 0, step: ti }, now));
            }
            self.ledger = TestLedger::default();
            Recovery::Rebuild
        } else {
            match self.next() {
                Next::Wait(r) => match self.step_kind(r) {
                    StepKind::Approval { .. } => Recovery::AwaitApproval(r),
                    StepKind::Deploy => Recovery::CheckDeploy(r),
                    StepKind::Monitor { .. } => Recovery::RestartWindow(r),
                    _ => {
                        out.extend(self.retry_step(r, now));
                        Recovery::Rerun(r)
                    }
                },
                _ => Recovery::Continue,
            }
        };
        let msg = format!(
            "run {} taken up again after its ferry process ({driver}) stopped: {}",
            self.id(),
            recovery.label().replace('_', " ")
        );
        out.insert(
            0,
            self.event(
                now,
                EventKind::RunResumed,
                None,
                msg,
                json!({"previousDriver": driver, "action": recovery.label()}),
            ),
        );
        (recovery, out)
    }

    /// A step that had started goes back to pending, to run again from the start.
    fn retry_step(&mut self, r: StepRef, now: Timestamp) -> Vec<Change> {
        let stage_name = self.stage_name(r.stage).to_string();
        let env = self.plan.stages[r.stage].environment().map(str::to_string);
        let name = self.step_name(r).to_string();
        let step = &mut self.view.stages[r.stage].steps[r.step];
        let was = step.status;
        step.status = StepStatus::Pending;
        let log = step.log.clone();
        vec![
            Change::Step {
                stage: r.stage,
                step: r.step,
                status: StepStatus::Pending,
                at: now,
                log,
                exit_code: None,
                reason: None,
            },
            self.event(
                now,
                EventKind::StepRetried,
                env,
                format!("step {stage_name}/{name} runs again: it was {was} when its ferry process stopped"),
                json!({"stage": stage_name, "step": name, "was": was.as_str(), "reason": "interrupted"}),
            ),
        ]
    }

    fn stop_as(&mut self, why: &str, now: Timestamp, status: RunStatus) -> Vec<Change> {
        if self.view.status.is_terminal() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.view.status == RunStatus::Queued {
            out.extend(self.begin(now));
        }
        let r = match self.next() {
            Next::Wait(r) => {
                let step = &mut self.view.stages[r.stage].steps[r.step];
                step.status = StepStatus::Cancelled;
                step.ended_at = Some(now);
                step.reason = Some(why.to_string());
                out.push(Change::Step {
                    stage: r.stage,
                    step: r.step,
                    status: StepStatus::Cancelled,
                    at: now,
                    log: step.log.clone(),
                    exit_code: None,
                    reason: Some(why.to_string()),
                });
                r
            }
            Next::Step(r) => r,
            Next::Finished(_) => return out,
        };
        out.extend(self.end_from(r, why.to_string(), now, status));
        out
    }

    fn end_from(
        &mut self,
        r: StepRef,
        why: String,
        now: Timestamp,
        final_status: RunStatus,
    ) -> Vec<Change> {
        let mut out = Vec::new();
        // Decisions on a gate that will never pass no longer count (a later approve is
        // refused: the run is no longer waiting).
        if self.view.stages[r.stage].status == StageStatus::AwaitingApproval
            && final_status != RunStatus::Failed
        {
            out.extend(self.void_approvals(r.stage, &format!("run {final_status}: {why}"), now));
        }
        let stage_status = if final_status == RunStatus::Failed {
            StageStatus::Failed
        } else {
            StageStatus::Cancelled
        };
        for (ti, step) in self.view.stages[r.stage].steps.iter_mut().enumerate() {
            if step.status == StepStatus::Pending || (ti == r.step && !step.status.is_terminal()) {
                step.status = StepStatus::Skipped;
                out.push(Change::Step {
                    stage: r.stage,
                    step: ti,
                    status: StepStatus::Skipped,
                    at: now,
                    log: step.log.clone(),
                    exit_code: None,
                    reason: None,
                });
            }
        }
        let stage_name = self.stage_name(r.stage).to_string();
        let env = self.plan.stages[r.stage].environment().map(str::to_string);
        let stage = &mut self.view.stages[r.stage];
        if stage.started_at.is_none() {
            stage.started_at = Some(now);
        }
        stage.status = stage_status;
        stage.ended_at = Some(now);
        out.push(Change::Stage {
            stage: r.stage,
            status: stage_status,
            at: now,
        });
        let (stage_kind, stage_word) = if stage_status == StageStatus::Failed {
            (EventKind::StageFailed, "failed")
        } else {
            (EventKind::StageCancelled, "cancelled")
        };
        out.push(self.event(
            now,
            stage_kind,
            env,
            format!("stage {stage_name} {stage_word}: {why}"),
            json!({"stage": stage_name, "reason": why}),
        ));
        if let Some(d) = self.deployments[r.stage].take() {
            out.extend(self.close_deployment(d, DeploymentStatus::Failed, Some(&why), now));
        }
        for si in r.stage + 1..self.view.stages.len() {
            let stage = &mut self.view.stages[si];
            stage.status = StageStatus::Skipped;
            out.push(Change::Stage {
                stage: si,
                status: StageStatus::Skipped,
                at: now,
            });
            for (ti, step) in stage.steps.iter_mut().enumerate() {
                step.status = StepStatus::Skipped;
                out.push(Change::Step {
                    stage: si,
                    step: ti,
                    status: StepStatus::Skipped,
                    at: now,
                    log: None,
                    exit_code: None,
                    reason: None,
                });
            }
        }
        self.view.status = final_status;
        self.view.reason = Some(why.clone());
        self.view.ended_at = Some(now);
        out.push(Change::Run {
            status: final_status,
            reason: Some(why.clone()),
            at: now,
        });
        let kind = match final_status {
            RunStatus::Superseded => EventKind::RunSuperseded,
            RunStatus::Cancelled => EventKind::RunCancelled,
            _ => EventKind::RunFailed,
        };
        out.push(self.event(
            now,
            kind,
            None,
            format!("run {} {final_status}: {why}", self.id()),
            json!({"commit": self.view.commit.sha, "reason": why}),
        ));
        out
    }

    fn close_deployment(
        &mut self,
        mut d: DeploymentRecord,
        status: DeploymentStatus,
        why: Option<&str>,
        now: Timestamp,
    ) -> Vec<Change> {
        d.status = status;
        d.end_time = Some(now.millis());
        d.unit_tests_passed = self.ledger.unit.unwrap_or(false);
        d.integration_tests_passed = self.ledger.integration.unwrap_or(false);
        d.e2e_tests_passed = self.ledger.e2e.unwrap_or(false);
        d.coverage_percentage = self.ledger.coverage.unwrap_or(0.0);
        let took = human(now.since(Timestamp(d.start_time)));
        let verdict = |v: Option<bool>| match v {
            Some(true) => "passed",
            Some(false) => "failed",
            None => "not_run",
        };
        let (kind, msg, data) = match status {
            DeploymentStatus::Succeeded => (
                EventKind::DeploymentSucceeded,
                format!(
                    "deployed {} to {} in {took}",
                    short_sha(&d.version),
                    d.environment
                ),
                json!({
                    "event": "deployment_succeeded",
                    "environment": d.environment,
                    "version": d.version,
                    "duration": took,
                    "infrastructureChanged": d.infrastructure_changed,
                    "rollbackUnsafe": d.rollback_unsafe,
                    "rollbackUnsafeReason": d.rollback_unsafe_reason,
                    "testResults": {
                        "unitTests": verdict(self.ledger.unit),
                        "integrationTests": verdict(self.ledger.integration),
                        "e2eTests": verdict(self.ledger.e2e),
                        "coverage": self.ledger.coverage.map(gates::percent),
                    },
                    "timestamp": iso8601(now),
                }),
            ),
            _ => (
                EventKind::DeploymentFailed,
                format!(
                    "deployment of {} to {} failed: {}",
                    short_sha(&d.version),
                    d.environment,
                    why.unwrap_or("unknown")
                ),
                json!({
                    "event": "deployment_failed",
                    "environment": d.environment,
                    "version": d.version,
                    "reason": why,
                    "infrastructureChanged": d.infrastructure_changed,
                    "rollbackUnsafe": d.rollback_unsafe,
                    "rollbackUnsafeReason": d.rollback_unsafe_reason,
                    "duration": took,
                    "timestamp": iso8601(now),
                }),
            ),
        };
        vec![
            Change::DeploymentFinished {
                deployment_id: d.deployment_id.clone(),
                status,
                end_time: now,
                unit_tests_passed: d.unit_tests_passed,
                integration_tests_passed: d.integration_tests_passed,
                e2e_tests_passed: d.e2e_tests_passed,
                coverage_percentage: d.coverage_percentage,
            },
            self.event(now, kind, Some(d.environment.clone()), msg, data),
        ]
    }

    fn event(
        &self,
        at: Timestamp,
        kind: EventKind,
        environment: Option<String>,
        message: String,
        data: serde_json::Value,
    ) -> Change {
        Change::Event(Event {
            at,
            kind,
            run: Some(self.id()),
            environment,
            message,
            data,
        })
    }

    /// Whether a stage is an environment stage.
    pub fn is_environment(&self, stage: usize) -> bool {
        self.plan.stages[stage].kind == StageKind::Environment
    }
}
