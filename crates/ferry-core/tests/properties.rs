//! Seed §12 Property 1 (deployment ordering) over the core state machine: whatever the
//! steps observe, a run deploys to an environment only after every earlier stage
//! succeeded, and to an environment behind an approval only after the approval.
#![allow(clippy::unwrap_used)]

use ferry_core::approval::{ApprovalState, Counted, Decision};
use ferry_core::run::{Next, Run, StepOutcome};
use ferry_core::{
    Artifact, Change, Commit, DeploymentStatus, EventKind, RunId, RunPlan, RunStatus, StepKind,
    Timestamp,
};
use proptest::prelude::*;
use std::time::Duration;

const YAML: &str = r#"
pipeline: p
build:
  steps:
    - name: unit
      run: ./unit.sh
      reports: { coverage: lcov.info }
  gates: { coverage_min: 80 }
  artifact: dist
environments:
  - name: test
    deploy: { command: { run: ./deploy.sh } }
    tests:
      - name: integration
        run: ./it.sh
  - name: staging
    deploy: { command: { run: ./deploy.sh } }
    tests:
      - name: e2e
        run: ./e2e.sh
  - name: production
    approval: { timeout: 1h }
    deploy: { command: { run: ./deploy.sh } }
"#;

/// One random observation per step: pass or fail, a coverage figure, an approval.
#[derive(Debug, Clone)]
struct Script {
    passes: Vec<bool>,
    coverage: f64,
    approval: u8,
}

fn script() -> impl Strategy<Value = Script> {
    (
        proptest::collection::vec(proptest::bool::weighted(0.85), 16),
        0.0f64..100.0,
        0u8..3,
    )
        .prop_map(|(passes, coverage, approval)| Script {
            passes,
            coverage,
            approval,
        })
}

fn drive(s: &Script) -> (Run, Vec<Change>) {
    let p = ferry_config::parse(YAML, "ferry.yml").unwrap();
    let commit = Commit {
        sha: "a".repeat(40),
        message: "m".into(),
        author: "x".into(),
    };
    let mut run = Run::new(RunId(1), &p.name, commit, RunPlan::new(&p), Timestamp(0));
    let mut all = run.queued_changes();
    let mut t = 0;
    let mut i = 0;
    loop {
        t += 1000;
        let now = Timestamp(t);
        let r = match run.next() {
            Next::Finished(_) => break,
            Next::Wait(_) => panic!("nothing is left running between steps"),
            Next::Step(r) => r,
        };
        let pass = s.passes[i % s.passes.len()];
        i += 1;
        let kind = run.step_kind(r).clone();
        match kind {
            StepKind::Deploy => all.extend(run.start_deploy(r, now, None, None)),
            _ => all.extend(run.start_step(r, now, None)),
        }
        let now = Timestamp(t + 500);
        let ch = match kind {
            StepKind::CoverageGate { .. } => run.finish_gate(r, now),
            StepKind::Package { .. } => run.finish_package(
                r,
                Artifact {
                    digest: "sha256:00".into(),
                    location: "a.tar".into(),
                    size: 1,
                },
                now,
            ),
            StepKind::Approval { .. } => {
                let (st, mut ch) = match s.approval {
                    0 => {
                        let d = Decision {
                            approved: true,
                            by: "a".into(),
                            reason: None,
                            at: now,
                            digest: None,
                            void: None,
                        };
                        let ch =
                            run.approval_decisions(r, &[d], &[Counted::Approval { k: 1 }], 0, now);
                        (
                            ApprovalState::Approved {
                                by: vec!["a".into()],
                            },
                            ch,
                        )
                    }
                    1 => (
                        ApprovalState::Rejected {
                            by: "b".into(),
                            reason: "no".into(),
                        },
                        Vec::new(),
                    ),
                    _ => (
                        ApprovalState::TimedOut {
                            after: Duration::from_secs(3600),
                        },
                        Vec::new(),
                    ),
                };
                ch.extend(run.finish_approval(r, st, now));
                ch
            }
            StepKind::Command {
                coverage: Some(_), ..
            } => run.finish_step(
                r,
                StepOutcome {
                    coverage: Some(s.coverage),
                    ..if pass {
                        StepOutcome::passed()
                    } else {
                        StepOutcome::failed("x")
                    }
                },
                now,
            ),
            _ => run.finish_step(
                r,
                if pass {
                    StepOutcome::passed()
                } else {
                    StepOutcome::failed("x")
                },
                now,
            ),
        };
        all.extend(ch);
    }
    (run, all)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deployments_happen_in_order_and_only_after_success(s in script()) {
        let (run, changes) = drive(&s);
        prop_assert!(run.status().is_terminal());
        let order = ["test", "staging", "production"];
        let mut succeeded: Vec<String> = Vec::new();
        let mut approved = false;
        let mut started: Vec<String> = Vec::new();
        for c in &changes {
            match c {
                Change::DeploymentStarted(d) => {
                    let k = order.iter().position(|e| *e == d.environment).unwrap();
                    // Property 1: every earlier environment already succeeded.
                    for e in &order[..k] {
                        prop_assert!(succeeded.iter().any(|s| s == e), "{} deployed before {e} succeeded", d.environment);
                    }
                    if d.environment == "production" { prop_assert!(approved, "production deployed without approval"); }
                    // Property 3: never below the coverage gate.
                    prop_assert!(s.coverage >= 80.0);
                    started.push(d.environment.clone());
                }
                Change::DeploymentFinished { deployment_id, status: DeploymentStatus::Succeeded, .. } => {
                    succeeded.push(deployment_id.split('#').next().unwrap().to_string());
                }
                Change::Event(e) if e.kind == EventKind::ApprovalGranted => approved = true,
                _ => {}
            }
        }
        // A run succeeds exactly when all three environments were deployed successfully.
        prop_assert_eq!(run.status() == RunStatus::Succeeded, succeeded.len() == 3);
        // Every deployment that started is closed.
        let finished = changes.iter().filter(|c| matches!(c, Change::DeploymentFinished { .. })).count();
        prop_assert_eq!(finished, started.len());
    }
}
