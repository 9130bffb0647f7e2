//! Taking up a run whose ferry process died (`Run::resume_with`, `Run::recover`): what
//! each interrupted step becomes, decided without any I/O.
#![allow(clippy::unwrap_used)]

use ferry_core::run::{Next, Recovery, Run, StepOutcome, StepRef};
use ferry_core::{Change, Commit, EventKind, RunId, RunPlan, StepStatus, Timestamp};

const YAML: &str = r#"
pipeline: p
build:
  steps:
    - name: lint
      run: ./lint.sh
    - name: unit
      run: ./unit.sh
environments:
  - name: test
    deploy: { command: { run: ./deploy.sh } }
    tests:
      - name: integration
        run: ./it.sh
        suite: integration
  - name: production
    approval: { timeout: 1h }
    deploy: { command: { run: ./deploy.sh } }
"#;

fn plan() -> RunPlan {
    RunPlan::new(&ferry_config::parse(YAML, "ferry.yml").unwrap())
}

fn new_run() -> Run {
    let commit = Commit {
        sha: "a".repeat(40),
        message: "m".into(),
        author: "x".into(),
    };
    Run::new(RunId(1), "p", commit, plan(), Timestamp(0))
}

/// Drives `run` (every step passes) until it starts the step `at`; then "the process
/// dies": the run is rebuilt from its view as `Engine::resume` does.
fn killed_at(at: StepRef) -> Run {
    let mut run = new_run();
    let mut t = 0;
    loop {
        t += 10;
        let Next::Step(r) = run.next() else {
            panic!("ended before {at:?}")
        };
        if run.step_kind(r).label() == "deploy" {
            run.start_deploy(r, Timestamp(t), None, None);
        } else {
            run.start_step(r, Timestamp(t), None);
        }
        if r == at {
            break;
        }
        run.finish_step(r, StepOutcome::passed(), Timestamp(t + 1));
    }
    let open = (0..run.plan.stages.len())
        .filter_map(|i| run.open_deployment(i).cloned().map(|d| (i, d)))
        .collect();
    Run::resume_with(run.view.clone(), plan(), open).expect("same plan")
}

fn events(changes: &[Change]) -> Vec<EventKind> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Event(e) => Some(e.kind),
            _ => None,
        })
        .collect()
}

#[test]
fn an_interrupted_build_starts_again_from_its_first_step() {
    let mut run = killed_at(StepRef { stage: 0, step: 1 });
    let (what, ch) = run.recover("host:1", Timestamp(100));
    assert_eq!(what, Recovery::Rebuild);
    assert_eq!(
        events(&ch),
        vec![
            EventKind::RunResumed,
            EventKind::StepRetried,
            EventKind::StepRetried
        ]
    );
    assert!(
        run.view.stages[0]
            .steps
            .iter()
            .all(|s| s.status == StepStatus::Pending)
    );
    assert_eq!(run.next(), Next::Step(StepRef { stage: 0, step: 0 }));
}

#[test]
fn an_interrupted_test_step_runs_again_and_the_deployment_stays_open() {
    let r = StepRef { stage: 1, step: 1 };
    let mut run = killed_at(r);
    let (what, ch) = run.recover("host:1", Timestamp(100));
    assert_eq!(what, Recovery::Rerun(r));
    assert_eq!(
        events(&ch),
        vec![EventKind::RunResumed, EventKind::StepRetried]
    );
    assert_eq!(run.next(), Next::Step(r));
    assert!(run.open_deployment(1).is_some());
}

#[test]
fn a_deploy_is_checked_an_approval_waits_on_from_its_request() {
    let deploy = StepRef { stage: 1, step: 0 };
    let mut run = killed_at(deploy);
    assert_eq!(
        run.recover("host:1", Timestamp(100)).0,
        Recovery::CheckDeploy(deploy)
    );
    let approval = StepRef { stage: 2, step: 0 };
    let mut run = killed_at(approval);
    let requested = run.view.stages[2].steps[0].started_at;
    assert!(requested.is_some());
    // The approval's timeout counts from when it was requested, not from the restart.
    assert_eq!(run.approval_requested[2], requested);
    let (what, ch) = run.recover("host:1", Timestamp(100));
    assert_eq!(what, Recovery::AwaitApproval(approval));
    assert_eq!(events(&ch), vec![EventKind::RunResumed]);
}

#[test]
fn a_changed_pipeline_file_cannot_resume_a_run() {
    let run = new_run();
    let other = ferry_config::parse(
        &YAML.replace("name: integration", "name: smoke"),
        "ferry.yml",
    )
    .unwrap();
    assert!(Run::resume_with(run.view.clone(), RunPlan::new(&other), Vec::new()).is_none());
    assert!(Run::resume_with(run.view, plan(), Vec::new()).is_some());
}
