//! What every store test needs: a fresh database, pipelines parsed from `ferry.yml` text,
//! and runs driven by the real core so the changes applied are the ones the engine sends.

use ferry_core::approval::{self, Decision};
use ferry_core::gates::{self, ExitObservation};
use ferry_core::run::{Next, Run, StepOutcome};
use ferry_core::{
    Artifact, Change, Commit, DeploymentRecord, DeploymentStatus, Event, RunId, RunPlan, RunStatus,
    StageStatus, StepKind, StepStatus, Suite, Timestamp,
};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, NewRun, PortErrorKind, Store};
use ferry_reports::{FailedTest, TestReport};
use ferry_store::{SqliteStore, StepTestResults};
use std::collections::BTreeMap;
use tempfile::TempDir;

/// Build with a coverage gate and an artifact; test, staging (with a monitor) and
/// production (with an approval).
pub const THREE_ENVIRONMENTS: &str = r#"
pipeline: shop-api
build:
  steps:
    - name: lint
      run: ./ci/lint.sh
    - name: unit
      run: ./ci/unit.sh
      reports:
        junit: reports/unit.xml
        coverage: reports/lcov.info
  gates:
    coverage_min: 80
  artifact: dist
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh
    tests:
      - name: integration
        run: ./ci/integration.sh
        reports:
          junit: reports/integration.xml
  - name: staging
    infrastructure:
      deploy: ./infra.sh
    deploy:
      command:
        run: ./deploy.sh
    tests:
      - name: e2e
        run: ./ci/e2e.sh
        reports:
          junit: reports/e2e.xml
    monitor:
      duration: 20s
      interval: 2s
      alarms: [staging-health]
  - name: production
    approval:
      timeout: 1h
    deploy:
      command:
        run: ./deploy.sh
alarms:
  - name: staging-health
    http:
      url: http://127.0.0.1:18182/health
infrastructure:
  paths: [infrastructure/**]
  templates: [infrastructure/*.json]
"#;

/// The smallest pipeline with an approval: build, test, production.
pub const TWO_ENVIRONMENTS: &str = r#"
pipeline: tiny
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
      reports:
        coverage: reports/lcov.info
  gates:
    coverage_min: 80
  artifact: dist
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh
  - name: production
    approval:
      timeout: 30m
    deploy:
      command:
        run: ./deploy.sh
    tests:
      - name: smoke
        run: ./ci/smoke.sh
"#;

/// 2026-01-27T10:00:00Z.
pub const T0: Timestamp = Timestamp(1_769_508_000_000);

pub fn store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join(".ferry").join("ferry.db")).unwrap();
    (dir, store)
}

pub fn plan(yaml: &str) -> (String, RunPlan) {
    let p = ferry_config::parse(yaml, "ferry.yml").unwrap_or_else(|d| panic!("{d:?}"));
    (p.name.clone(), RunPlan::new(&p))
}

pub fn commit() -> Commit {
    Commit {
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        message: "fix: don't `rm -rf` on $HOME\n\nlonger body; with 'quotes' and \"more\"".into(),
        author: "Ada Lovelace <ada@example.com>".into(),
    }
}

pub fn new_run(pipeline: &str, plan: &RunPlan, at: Timestamp) -> NewRun {
    NewRun {
        pipeline: pipeline.to_string(),
        commit: commit(),
        trigger: "cli".into(),
        triggered_by: "ada".into(),
        created_at: at,
        driver: "host:42".into(),
        hotfix: false,
        id: None,
        stages: plan
            .stages
            .iter()
            .map(|s| {
                let steps = s
                    .steps
                    .iter()
                    .map(|st| (st.name.clone(), st.kind.label().to_string()))
                    .collect();
                (s.name.clone(), steps)
            })
            .collect(),
    }
}

/// A run created in the store and in memory, its queued batch applied.
pub fn start(store: &SqliteStore, yaml: &str, at: Timestamp) -> Run {
    let (name, plan) = plan(yaml);
    let id = store.create_run(&new_run(&name, &plan, at)).unwrap();
    let run = Run::new(id, &name, commit(), plan, at);
    assert_eq!(store.load_run(id).unwrap(), run.view);
    apply(store, &run, &run.queued_changes());
    run
}

/// Applies a batch and checks Property 6 on it.
pub fn apply(store: &SqliteStore, run: &Run, changes: &[Change]) {
    store.apply(run.id(), changes).unwrap();
    assert_eq!(
        store.load_run(run.id()).unwrap(),
        run.view,
        "after {changes:#?}"
    );
}

pub fn artifact(run: RunId) -> Artifact {
    Artifact {
        digest: format!("sha256:{:064x}", run.0),
        location: format!("/var/lib/ferry/artifacts/run-{}.tar", run.0),
        size: 4_096_123,
    }
}

/// How an approval step ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
    TimeOut,
}

/// One draw of the dice: what happens to the next step.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The step's command exits 0 / the deploy or monitor passes / the package is built.
    pub pass: bool,
    /// The run is aborted before the step starts.
    pub abort_before: bool,
    /// The run is aborted while the step runs (instead of the step finishing).
    pub abort_during: bool,
    /// Line coverage, for steps that write a coverage report.
    pub coverage: f64,
    /// Failed tests, for steps that write a JUnit report.
    pub failed_tests: u64,
    pub approval: Verdict,
    /// Milliseconds between two actions.
    pub dt: i64,
}

impl Choice {
    pub fn pass() -> Choice {
        Choice {
            pass: true,
            abort_before: false,
            abort_during: false,
            coverage: 91.5,
            failed_tests: 0,
            approval: Verdict::Approve,
            dt: 1_500,
        }
    }
}

/// Applies batches and checks, after every one, that the store holds exactly what the
/// changes said: the run (Property 6), its events, test results and deployments.
pub struct Tracker<'a> {
    pub store: &'a SqliteStore,
    pub events: Vec<Event>,
    pub tests: Vec<StepTestResults>,
    pub deployments: BTreeMap<String, DeploymentRecord>,
    pub batches: usize,
}

impl<'a> Tracker<'a> {
    pub fn start(store: &'a SqliteStore, yaml: &str, at: Timestamp) -> (Tracker<'a>, Run) {
        let (name, plan) = plan(yaml);
        let id = store.create_run(&new_run(&name, &plan, at)).unwrap();
        let run = Run::new(id, &name, commit(), plan, at);
        let mut t = Tracker {
            store,
            events: Vec::new(),
            tests: Vec::new(),
            deployments: BTreeMap::new(),
            batches: 0,
        };
        t.check(&run);
        t.apply(&run, &run.queued_changes());
        (t, run)
    }

    pub fn apply(&mut self, run: &Run, changes: &[Change]) {
        self.store.apply(run.id(), changes).unwrap();
        self.batches += 1;
        for c in changes {
            match c {
                Change::Event(e) => self.events.push(e.clone()),
                Change::TestResults {
                    stage,
                    step,
                    suite,
                    report,
                    coverage,
                } => self.tests.push(StepTestResults {
                    stage: *stage,
                    step: *step,
                    suite: *suite,
                    report: report.clone(),
                    coverage: *coverage,
                }),
                Change::DeploymentStarted(d) => {
                    assert!(
                        self.deployments
                            .insert(d.deployment_id.clone(), (**d).clone())
                            .is_none()
                    );
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
                    let d = self.deployments.get_mut(deployment_id).unwrap();
                    d.status = *status;
                    d.end_time = Some(end_time.0);
                    d.unit_tests_passed = *unit_tests_passed;
                    d.integration_tests_passed = *integration_tests_passed;
                    d.e2e_tests_passed = *e2e_tests_passed;
                    d.coverage_percentage = *coverage_percentage;
                }
                Change::DeploymentInfrastructure {
                    deployment_id,
                    infrastructure_changed,
                    rollback_unsafe,
                    rollback_unsafe_reason,
                } => {
                    let d = self.deployments.get_mut(deployment_id).unwrap();
                    d.infrastructure_changed = *infrastructure_changed;
                    d.rollback_unsafe = *rollback_unsafe;
                    d.rollback_unsafe_reason = rollback_unsafe_reason.clone();
                }
                _ => {}
            }
        }
        self.check(run);
    }

    pub fn check(&self, run: &Run) {
        let id = run.id();
        // Property 6.
        assert_eq!(self.store.load_run(id).unwrap(), run.view);

        let stored: Vec<Event> = self
            .store
            .events(&EventFilter {
                run: Some(id),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        assert_eq!(stored, self.events);
        assert_eq!(self.store.test_results(id).unwrap(), self.tests);

        let mine: Vec<DeploymentRecord> = self
            .store
            .deployments(None, 1_000)
            .unwrap()
            .into_iter()
            .filter(|d| d.run_id == id)
            .collect();
        let expected: Vec<&DeploymentRecord> = self.deployments.values().collect();
        let mut sorted: Vec<&DeploymentRecord> = mine.iter().collect();
        sorted.sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
        assert_eq!(sorted, expected);

        // The deployments agree with the stages they belong to.
        for (si, stage) in run.view.stages.iter().enumerate() {
            if !run.is_environment(si) {
                continue;
            }
            let here: Vec<&DeploymentRecord> = mine
                .iter()
                .filter(|d| d.environment == stage.name)
                .collect();
            let deploy_started = stage.steps.iter().any(|s| {
                (s.kind == "deploy" || s.kind == "infrastructure") && s.started_at.is_some()
            });
            assert_eq!(
                here.len(),
                usize::from(deploy_started),
                "stage {}: {here:#?}",
                stage.name
            );
            let Some(d) = here.first() else { continue };
            assert_eq!(d.version, run.view.commit.sha);
            assert_eq!(d.pipeline_execution_id, id.execution_id());
            assert_eq!(
                d.deployment_id,
                format!("{}#{}", d.environment, d.start_time)
            );
            match stage.status {
                StageStatus::Succeeded => assert_eq!(d.status, DeploymentStatus::Succeeded),
                StageStatus::Failed => assert_eq!(d.status, DeploymentStatus::Failed),
                StageStatus::Running | StageStatus::AwaitingApproval => {
                    assert_eq!(d.status, DeploymentStatus::InProgress);
                    assert_eq!(Some(*d), run.open_deployment(si));
                }
                other => panic!("stage {} is {other} but has deployment {d:#?}", stage.name),
            }
            assert_eq!(
                d.end_time.is_some(),
                d.status != DeploymentStatus::InProgress
            );
        }
        if run.status().is_terminal() {
            assert!(
                mine.iter()
                    .all(|d| d.status != DeploymentStatus::InProgress),
                "{mine:#?}"
            );
            let v = &run.view;
            assert!(
                v.started_at.is_some() && v.started_at <= v.ended_at,
                "{v:#?}"
            );
            assert_eq!(v.reason.is_some(), v.status == RunStatus::Failed, "{v:#?}");
            // Nothing is left half-done: every stage and step has its final status.
            for stage in &v.stages {
                assert!(stage.status.is_terminal(), "{stage:#?}");
                assert!(
                    stage.steps.iter().all(|s| s.status.is_terminal()),
                    "{stage:#?}"
                );
            }
        }
        for stage in &run.view.stages {
            assert!(
                stage.ended_at.is_none() || stage.started_at <= stage.ended_at,
                "{stage:#?}"
            );
            for s in &stage.steps {
                assert!(s.ended_at.is_none() || s.started_at <= s.ended_at, "{s:#?}");
            }
        }
        // The seed's test flags: a deployment that succeeded carries, for each suite, whether
        // it ran (and so passed) in its stage or an earlier one, and the coverage that
        // passed the gate.
        //
        // Not checked for a suite whose steps all write a coverage report but no JUnit
        // report: the core never records such a suite as passed (see `finish_step` and
        // `TestLedger` in ferry-core's run.rs), so its flag stays false.
        let ran_before = |env: usize, suite: Suite| {
            let steps = run.plan.stages[..=env].iter().flat_map(|st| &st.steps);
            let mut of_suite = steps.filter_map(|s| match &s.kind {
                StepKind::Command {
                    suite: x,
                    junit,
                    coverage,
                    ..
                } if *x == suite => Some(!junit.is_empty() || coverage.is_none()),
                _ => None,
            });
            let first = of_suite.next();
            first.map(|f| f || of_suite.any(|f| f))
        };
        for d in mine
            .iter()
            .filter(|d| d.status == DeploymentStatus::Succeeded)
        {
            let env = run.plan.stage_index(&d.environment).unwrap();
            let flags = [
                (Suite::Unit, d.unit_tests_passed),
                (Suite::Integration, d.integration_tests_passed),
                (Suite::E2e, d.e2e_tests_passed),
            ];
            for (suite, flag) in flags {
                match ran_before(env, suite) {
                    Some(true) => assert!(flag, "{suite} ran and passed: {d:#?}"),
                    Some(false) => {}
                    None => assert!(!flag, "{suite} never ran: {d:#?}"),
                }
            }
            assert!(d.coverage_percentage >= 80.0, "{d:#?}");
            assert!(d.end_time >= Some(d.start_time), "{d:#?}");
        }
        assert!(
            self.events.windows(2).all(|w| w[0].at <= w[1].at),
            "events out of order"
        );
    }
}

fn report(failed: u64) -> TestReport {
    TestReport {
        total: 40 + failed,
        passed: 38,
        failed,
        errored: 0,
        skipped: 2,
        failures: (0..failed)
            .map(|i| FailedTest {
                name: format!("test_checkout_{i}"),
                suite: "tests.test_cart".into(),
                error: "AssertionError: 3 != 4".into(),
                stack_trace: Some(format!("Traceback …\n  line {i}\nAssertionError")),
            })
            .collect(),
    }
}

/// Drives a run with the real core to its end, applying and checking every batch.
/// `choices` are used in turn (cycled); every loop ends because each turn starts and
/// finishes one step, or aborts.
pub fn drive(store: &SqliteStore, yaml: &str, choices: &[Choice]) -> Run {
    drive_from(store, yaml, choices, T0)
}

/// [`drive`], starting at `at` (runs in one store need distinct times: deployment ids
/// are `{environment}#{start}`).
pub fn drive_from(store: &SqliteStore, yaml: &str, choices: &[Choice], at: Timestamp) -> Run {
    let (mut t, mut run) = Tracker::start(store, yaml, at);
    let mut now = at;
    for turn in 0.. {
        let c = &choices[turn % choices.len()];
        now = Timestamp(now.0 + c.dt);

        // Deciding is refused unless the run waits for that very approval.
        if run.status() != RunStatus::AwaitingApproval {
            for (si, stage) in run.plan.stages.iter().enumerate() {
                if stage
                    .steps
                    .iter()
                    .any(|s| matches!(s.kind, StepKind::Approval { .. }))
                {
                    let d = Decision {
                        approved: true,
                        by: "mallory".into(),
                        reason: None,
                        at: now,
                        digest: None,
                        void: None,
                    };
                    let err = store.decide(run.id(), run.stage_name(si), &d).unwrap_err();
                    assert_eq!(err.kind, PortErrorKind::Conflict, "{err}");
                }
            }
        }

        if c.abort_before {
            let changes = run.abort("stopped by the operator", now);
            t.apply(&run, &changes);
        }
        let r = match run.next() {
            Next::Finished(status) => {
                assert!(status.is_terminal(), "run ended as {status}");
                return run;
            }
            Next::Wait(r) => panic!("step {r:?} is running but nobody runs it"),
            Next::Step(r) => r,
        };
        let kind = run.step_kind(r).clone();
        let log = Some(format!(
            ".ferry/logs/{}/{}-{}.log",
            run.id(),
            r.stage,
            r.step
        ));
        let changes = match kind {
            StepKind::Deploy => {
                let env = run.stage_name(r.stage).to_string();
                let previous = store.last_known_good(&env).unwrap().map(|d| d.version);
                run.start_deploy(r, now, log, previous)
            }
            StepKind::Infrastructure { .. } => {
                let env = run.stage_name(r.stage).to_string();
                let previous = store.last_known_good(&env).unwrap().map(|d| d.version);
                let mut ch = run.start_deploy(r, now, log, previous);
                let reasons = if c.pass {
                    Vec::new()
                } else {
                    vec!["stateful resource T (AWS::DynamoDB::Table) is replaced".to_string()]
                };
                ch.extend(run.record_infrastructure(
                    r.stage,
                    "meaningful",
                    true,
                    &reasons,
                    "deployed",
                    now,
                ));
                ch
            }
            _ => run.start_step(r, now, log),
        };
        t.apply(&run, &changes);
        now = Timestamp(now.0 + c.dt);

        if c.abort_during {
            let changes = run.abort("ferry was stopped while the step ran", now);
            t.apply(&run, &changes);
            continue;
        }
        let changes = match &kind {
            StepKind::Command {
                junit, coverage, ..
            } => {
                let tests = (!junit.is_empty()).then(|| report(c.failed_tests));
                let code = if c.pass { 0 } else { 3 };
                let verdict = gates::command(&ExitObservation::Code(code), tests.as_ref(), &[]);
                let outcome = StepOutcome {
                    verdict: Some(verdict),
                    exit_code: Some(code),
                    tests,
                    coverage: coverage.as_ref().map(|_| c.coverage),
                };
                run.finish_step(r, outcome, now)
            }
            StepKind::CoverageGate { .. } => run.finish_gate(r, now),
            StepKind::SecurityGate => run.finish_security(
                r,
                !c.pass,
                "1 high",
                serde_json::json!({"counts": {"high": 1}}),
                now,
            ),
            StepKind::Package { .. } if c.pass => run.finish_package(r, artifact(run.id()), now),
            StepKind::Package { .. } => run.finish_step(
                r,
                StepOutcome::failed("cannot pack `dist`: no such folder"),
                now,
            ),
            StepKind::Deploy | StepKind::Infrastructure { .. } | StepKind::Monitor { .. }
                if c.pass =>
            {
                run.finish_step(r, StepOutcome::passed(), now)
            }
            StepKind::Deploy | StepKind::Infrastructure { .. } => run.finish_step(
                r,
                StepOutcome::failed("deploy command exited with status 1"),
                now,
            ),
            StepKind::Monitor { .. } => run.finish_step(
                r,
                StepOutcome::failed("alarm staging-health went into ALARM"),
                now,
            ),
            StepKind::Approval { rule } => {
                let env = run.stage_name(r.stage).to_string();
                let requested = run.approval_requested[r.stage].unwrap();
                let digest = run.view.artifact.as_ref().map(|a| a.digest.clone());
                match c.approval {
                    Verdict::TimeOut => now = requested.plus(rule.timeout),
                    v => {
                        let d = Decision {
                            approved: v == Verdict::Approve,
                            by: "alice".into(),
                            reason: (v == Verdict::Reject).then(|| "not on a friday".to_string()),
                            at: now,
                            digest: digest.clone(),
                            void: None,
                        };
                        store.decide(run.id(), &env, &d).unwrap();
                        assert_eq!(store.approvals(run.id(), &env).unwrap(), vec![d.clone()]);
                        let again = store.decide(run.id(), &env, &d).unwrap_err();
                        assert_eq!(again.kind, PortErrorKind::Conflict);
                    }
                }
                let decisions = store.approvals(run.id(), &env).unwrap();
                let parties = approval::Parties::default();
                let (state, counted) = approval::evaluate(
                    rule,
                    &parties,
                    digest.as_deref(),
                    &decisions,
                    requested,
                    now,
                );
                let mut changes = run.approval_decisions(r, &decisions, &counted, 0, now);
                changes.extend(run.finish_approval(r, state, now));
                changes
            }
        };
        t.apply(&run, &changes);
        // Every step that ended is terminal in the store too (already checked through
        // the view), and nothing runs after the run ended.
        if run.status().is_terminal() {
            assert!(
                run.view
                    .stages
                    .iter()
                    .flat_map(|s| &s.steps)
                    .all(|s| s.status != StepStatus::Running)
            );
        }
    }
    unreachable!()
}
