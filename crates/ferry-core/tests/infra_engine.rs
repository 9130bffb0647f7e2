//! The engine's use of the infrastructure diff, decided in the core (issue 5): the
//! infrastructure step in the plan, its decision, the verdict recorded on the
//! deployment, crash recovery of the step, and rollback safety (seed §13.1 question 3)
//! with a property: the orchestrator's decision never lets an automatic rollback take
//! back a rollback-unsafe deployment, and changes nothing when no deployment is unsafe.
#![allow(clippy::unwrap_used)]

use ferry_core::infra::{Assessment, Verdict, step_decision};
use ferry_core::rollback::{
    self, RollbackRecord, Trigger, may_restore, stage_target, superseded_by_restore,
    unsafe_to_restore,
};
use ferry_core::run::{Next, Recovery, Run, StepOutcome, StepRef};
use ferry_core::{
    Change, Commit, DeploymentRecord, DeploymentStatus, EventKind, RollbackLevel, RunId, RunPlan,
    StepStatus, Timestamp,
};
use proptest::prelude::*;

const YAML: &str = r#"
pipeline: p
build:
  steps:
    - name: unit
      run: ./unit.sh
environments:
  - name: test
    infrastructure: { deploy: ./infra.sh }
    deploy: { command: { run: ./deploy.sh } }
  - name: production
    deploy: { command: { run: ./deploy.sh } }
infrastructure:
  paths: [infrastructure/**]
  templates: [infrastructure/*.json]
"#;

fn plan(yaml: &str) -> RunPlan {
    RunPlan::new(&ferry_config::parse(yaml, "ferry.yml").unwrap())
}

fn new_run() -> Run {
    let commit = Commit {
        sha: "a".repeat(40),
        message: "m".into(),
        author: "x".into(),
    };
    Run::new(RunId(1), "p", commit, plan(YAML), Timestamp(0))
}

fn kinds(p: &RunPlan, stage: usize) -> Vec<&'static str> {
    p.stages[stage]
        .steps
        .iter()
        .map(|s| s.kind.label())
        .collect()
}

#[test]
fn the_infrastructure_step_comes_before_deploy_only_where_it_is_configured() {
    let p = plan(YAML);
    assert_eq!(kinds(&p, 1), ["infrastructure", "deploy"]);
    assert_eq!(kinds(&p, 2), ["deploy"]);
    // Without the top-level section, the plan is what it always was.
    let without = YAML.split("infrastructure:\n  paths").next().unwrap();
    let without = without.replace("    infrastructure: { deploy: ./infra.sh }\n", "");
    assert_eq!(kinds(&plan(&without), 1), ["deploy"]);
}

#[test]
fn the_step_deploys_on_a_first_deployment_and_on_any_change_but_no_change() {
    let a = |verdict, reasons: &[&str]| Assessment {
        verdict,
        meaningful: verdict == Verdict::Meaningful,
        unsafe_reasons: reasons.iter().map(|s| s.to_string()).collect(),
    };
    let first = step_decision(None);
    assert!(first.deploy && first.unsafe_reasons.is_empty());
    assert_eq!(first.verdict, "first-deployment");
    let none = step_decision(Some(&a(Verdict::NoChange, &[])));
    assert!(!none.deploy);
    assert!(
        none.summary.contains("nothing deployed"),
        "{}",
        none.summary
    );
    assert!(step_decision(Some(&a(Verdict::Meaningful, &[]))).deploy);
    // A migration alone is not a template change, yet it deploys and is unsafe.
    let m = step_decision(Some(&a(
        Verdict::RollbackUnsafe,
        &["migration migrations/1.sql changed"],
    )));
    assert!(m.deploy && m.unsafe_reasons.len() == 1);
    assert!(m.summary.contains("migrations/1.sql"));
}

/// The infrastructure step opens the deployment, records the verdict on it before the
/// command runs; the deploy step after it finds the deployment open.
#[test]
fn the_verdict_is_recorded_on_the_deployment_the_infrastructure_step_opens() {
    let mut run = new_run();
    let build = StepRef { stage: 0, step: 0 };
    run.start_step(build, Timestamp(1), None);
    run.finish_step(build, StepOutcome::passed(), Timestamp(2));
    let infra = StepRef { stage: 1, step: 0 };
    assert_eq!(run.next(), Next::Step(infra));
    let ch = run.start_deploy(infra, Timestamp(3), None, None);
    assert!(ch.iter().any(|c| matches!(c, Change::DeploymentStarted(_))));
    let ch = run.record_infrastructure(
        1,
        "rollback-unsafe",
        true,
        &["stateful resource T (AWS::DynamoDB::Table) is replaced".into()],
        "rollback-unsafe change",
        Timestamp(4),
    );
    let Some(Change::DeploymentInfrastructure {
        infrastructure_changed,
        rollback_unsafe,
        rollback_unsafe_reason,
        ..
    }) = ch.first()
    else {
        panic!("{ch:?}")
    };
    assert!(*infrastructure_changed && *rollback_unsafe);
    assert!(
        rollback_unsafe_reason
            .as_deref()
            .unwrap()
            .contains("DynamoDB")
    );
    assert!(ch.iter().any(|c| matches!(c, Change::Event(e) if e.kind == EventKind::InfrastructureAssessed && e.data["rollbackUnsafe"] == true)));
    run.finish_step(infra, StepOutcome::passed(), Timestamp(5));
    let deploy = StepRef { stage: 1, step: 1 };
    let ch = run.start_deploy(deploy, Timestamp(6), None, None);
    assert!(
        !ch.iter().any(|c| matches!(c, Change::DeploymentStarted(_))),
        "one deployment per stage"
    );
    let ch = run.finish_step(deploy, StepOutcome::passed(), Timestamp(7));
    let ok = ch
        .iter()
        .find_map(|c| match c {
            Change::Event(e) if e.kind == EventKind::DeploymentSucceeded => Some(e),
            _ => None,
        })
        .unwrap();
    assert_eq!(ok.data["infrastructureChanged"], true);
    assert_eq!(ok.data["rollbackUnsafe"], true);
}

/// A crash while the infrastructure command runs: the step runs again (the deploy
/// command must be idempotent, as `cdk deploy` is), under the deployment it opened.
#[test]
fn an_interrupted_infrastructure_step_runs_again() {
    let mut run = new_run();
    let build = StepRef { stage: 0, step: 0 };
    run.start_step(build, Timestamp(1), None);
    run.finish_step(build, StepOutcome::passed(), Timestamp(2));
    let infra = StepRef { stage: 1, step: 0 };
    run.start_deploy(infra, Timestamp(3), None, None);
    run.record_infrastructure(1, "meaningful", true, &[], "meaningful", Timestamp(4));
    let open = vec![(1, run.open_deployment(1).cloned().unwrap())];
    let mut again = Run::resume_with(run.view.clone(), plan(YAML), open).unwrap();
    let (what, ch) = again.recover("host:1", Timestamp(10));
    assert_eq!(what, Recovery::Rerun(infra));
    assert!(
        ch.iter()
            .any(|c| matches!(c, Change::Event(e) if e.kind == EventKind::StepRetried))
    );
    assert_eq!(again.view.stages[1].steps[0].status, StepStatus::Pending);
    // The deployment stays open (the rerun acts under it and its lease).
    let d = again.open_deployment(1).unwrap();
    assert!(d.infrastructure_changed);
    assert_eq!(again.next(), Next::Step(infra));
}

fn dep(
    env: &str,
    version: &str,
    t: i64,
    status: DeploymentStatus,
    unsafe_: bool,
) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: format!("{env}#{t}"),
        environment: env.into(),
        version: version.into(),
        status,
        start_time: t,
        end_time: Some(t + 1),
        infrastructure_changed: unsafe_,
        commit_message: String::new(),
        commit_author: String::new(),
        pipeline_execution_id: "run-1".into(),
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: true,
        coverage_percentage: 90.0,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: String::new(),
        expires_at: 0,
        run_id: RunId(t),
        artifact_digest: String::new(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
        rollback_unsafe: unsafe_,
        rollback_unsafe_reason: unsafe_.then(|| "table T replaced".to_string()),
    }
}

const ENVS: [&str; 3] = ["test", "staging", "production"];

fn automatic() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        Just(Trigger::DeployFailed),
        Just(Trigger::TestsFailed),
        Just(Trigger::MonitorFailed),
        Just(Trigger::Alarm {
            name: "health".into()
        }),
        Just(Trigger::Manual {
            by: "zoe".into(),
            accept_data_loss: false
        }),
    ]
}

/// Histories of deployments over three environments and four versions, some unsafe.
fn history() -> impl Strategy<Value = Vec<DeploymentRecord>> {
    prop::collection::vec(
        (
            0..3usize,
            0..4usize,
            prop::bool::weighted(0.7),
            prop::bool::weighted(0.25),
        ),
        1..14,
    )
    .prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (e, v, ok, unsafe_))| {
                let status = if ok {
                    DeploymentStatus::Succeeded
                } else {
                    DeploymentStatus::Failed
                };
                dep(ENVS[e], &format!("v{v}"), i as i64 + 1, status, unsafe_)
            })
            .collect()
    })
}

proptest! {
    /// Whatever the history and whichever deployment fails: when the core lets a level
    /// go ahead on an automatic trigger (or a person's without `--accept-data-loss`),
    /// nothing it takes back — at stage or full level — is rollback-unsafe; with no
    /// unsafe deployment at all every level goes ahead as before; a person who accepts
    /// the data loss may always go ahead.
    #[test]
    fn no_automatic_rollback_takes_back_a_rollback_unsafe_deployment(
        h in history(),
        pick in any::<prop::sample::Index>(),
        trigger in automatic(),
    ) {
        let bad = h[pick.index(h.len())].clone();
        let order: Vec<String> = ENVS.map(String::from).to_vec();
        let mut levels = Vec::new();
        if let Some(t) = stage_target(&bad, &h) {
            levels.push(vec![t]);
        }
        if let Ok(ts) = rollback::full_targets(&order, &h, &bad.version) {
            levels.push(ts);
        }
        for targets in &levels {
            let found = unsafe_to_restore(&bad, targets, &h);
            let mut taken: Vec<&DeploymentRecord> = targets
                .iter()
                .flat_map(|t| superseded_by_restore(t, &h, &bad.deployment_id))
                .collect();
            if targets.iter().any(|t| t.environment == bad.environment) {
                taken.push(&bad);
            }
            if may_restore(&trigger, &found) {
                prop_assert!(taken.iter().all(|d| !d.rollback_unsafe), "{taken:?}");
            } else {
                prop_assert!(taken.iter().any(|d| d.rollback_unsafe));
            }
            let forced = Trigger::Manual { by: "zoe".into(), accept_data_loss: true };
            prop_assert!(may_restore(&forced, &found));
            // Without unsafe deployments in the history, nothing changes.
            let safe: Vec<DeploymentRecord> = h
                .iter()
                .cloned()
                .map(|mut d| {
                    d.rollback_unsafe = false;
                    d
                })
                .collect();
            let mut safe_bad = bad.clone();
            safe_bad.rollback_unsafe = false;
            prop_assert!(unsafe_to_restore(&safe_bad, targets, &safe).is_empty());
            prop_assert!(may_restore(&trigger, &[]));
        }
    }
}

#[test]
fn a_refused_rollback_opens_an_incident_with_the_reason() {
    let bad = dep("staging", "v2", 5, DeploymentStatus::Failed, true);
    let good = dep("staging", "v1", 1, DeploymentStatus::Succeeded, false);
    let h = vec![good, bad.clone()];
    let t = stage_target(&bad, &h).unwrap();
    let found = unsafe_to_restore(&bad, &[t], &h);
    assert_eq!(found.len(), 1);
    assert!(!may_restore(&Trigger::MonitorFailed, &found));
    let rec = RollbackRecord::start(&bad, "alarm", Trigger::MonitorFailed, "h:1", Timestamp(9));
    let ch = rollback::not_performed(&rec, &bad, RollbackLevel::Stage, &found, Timestamp(9));
    assert!(
        matches!(&ch[0], Change::IncidentOpened { reason, .. } if reason.contains("table T replaced"))
    );
    let Change::Event(e) = &ch[1] else { panic!() };
    assert_eq!(e.kind, EventKind::IncidentOpened);
    assert_eq!(e.data["rollbackUnsafe"], true);
    let f = rollback::unsafe_freeze("staging", "why", Timestamp(9));
    assert!(f.active_at(Timestamp(9)) && f.until > Timestamp(9));
}
