//! Execution modes with runs of different plans: a hotfix run skips test and staging,
//! so runs are placed by the name of the stage they are at in the pipeline's whole
//! order, never by their index in their own plan.
#![allow(clippy::unwrap_used)]

use ferry_core::concurrency::{Contender, Entry, ExecutionMode, entry};
use ferry_core::run::{Next, Run, StepOutcome};
use ferry_core::{Commit, RunId, RunPlan, Timestamp};

const YAML: &str = r#"
pipeline: p
build:
  steps:
    - name: unit
      run: ./unit.sh
environments:
  - name: test
    deploy: { command: { run: ./deploy.sh } }
  - name: staging
    deploy: { command: { run: ./deploy.sh } }
  - name: production
    approval: { timeout: 1h, approvers: [alice, bob] }
    deploy: { command: { run: ./deploy.sh } }
hotfix:
  allowed: true
"#;

fn order() -> Vec<String> {
    ["build", "test", "staging", "production"]
        .map(String::from)
        .to_vec()
}

/// A run of `plan` driven (every step passing) until it starts its first step in
/// stage `stage_name`.
fn at(id: i64, plan: RunPlan, stage_name: &str) -> Run {
    let commit = Commit {
        sha: format!("{id:040}"),
        message: "m".into(),
        author: "x".into(),
    };
    let mut run = Run::new(RunId(id), "p", commit, plan, Timestamp(0));
    let mut t = 0;
    loop {
        t += 10;
        let Next::Step(r) = run.next() else {
            panic!("ended before {stage_name}")
        };
        if run.stage_name(r.stage) == stage_name {
            run.start_step(r, Timestamp(t), None);
            return run;
        }
        if run.step_kind(r).label() == "deploy" {
            run.start_deploy(r, Timestamp(t), None, None);
        } else {
            run.start_step(r, Timestamp(t), None);
        }
        run.finish_step(r, StepOutcome::passed(), Timestamp(t + 1));
    }
}

#[test]
fn a_hotfix_waiting_at_production_is_placed_at_production() {
    let p = ferry_config::parse(YAML, "ferry.yml").unwrap();
    let hotfix = at(4, RunPlan::hotfix(&p).unwrap(), "production");
    let c = Contender::of(&hotfix.view, &order());
    assert_eq!(c.at, 3, "production is the fourth stage of the pipeline");

    // Queued: a newer ordinary run entering test does not wait behind the hotfix,
    // which is already at production.
    assert_eq!(
        entry(ExecutionMode::Queued, RunId(6), 1, &[c]),
        Entry::Enter
    );
    // Superseded: a newer run at test does not overtake the hotfix at production...
    let newer_at_test = Contender::of(&at(7, RunPlan::new(&p), "test").view, &order());
    assert_eq!(newer_at_test.at, 1);
    assert_eq!(
        entry(ExecutionMode::Superseded, RunId(4), 3, &[newer_at_test]),
        Entry::Enter
    );
    // ...while an older ordinary run about to enter production waits behind the older
    // hotfix in queued mode, and is overtaken by a newer hotfix in superseded mode.
    assert_eq!(
        entry(ExecutionMode::Queued, RunId(5), 3, &[c]),
        Entry::Wait { behind: RunId(4) }
    );
    let newer_hotfix = Contender::of(
        &at(8, RunPlan::hotfix(&p).unwrap(), "production").view,
        &order(),
    );
    assert_eq!(
        entry(ExecutionMode::Superseded, RunId(5), 3, &[newer_hotfix]),
        Entry::Supersede { by: RunId(8) }
    );
}
