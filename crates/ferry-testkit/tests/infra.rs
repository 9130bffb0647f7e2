//! The engine and the infrastructure diff (issue 5) on the simulation: the
//! infrastructure step before each deploy runs `infrastructure.deploy` only on a
//! meaningful or rollback-unsafe change (or the first deployment), records it on the
//! deployment, fails closed when the comparison fails; a rollback-unsafe deployment is
//! never rolled back automatically (freeze + incident instead, seed §13.1 question 3),
//! while a safe one is rolled back as before; a person's rollback of it needs
//! `accept_data_loss`.
#![allow(clippy::unwrap_used)]

use ferry_core::alarm::Datapoint::{Breaching, NotBreaching};
use ferry_core::infra::Verdict as Infra;
use ferry_core::rollback::{RollbackStatus, Trigger};
use ferry_core::run::RunView;
use ferry_core::{DeploymentRecord, DeploymentStatus, EventKind, RunId, RunStatus, StageStatus};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{PortErrorKind, Store};
use ferry_testkit::invariants::{self, KnownBugs};
use ferry_testkit::pipelines::{SHOP, shop};
use ferry_testkit::{CallKind, Sim, Verdict};

use std::time::Duration;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccccccccccccccccccccccccccc";

/// SHOP with an `infrastructure` section and an infrastructure deploy in every
/// environment (`./infra.sh ENV`).
fn shop_with_infra() -> String {
    let mut y = SHOP.to_string();
    for env in shop::ENVIRONMENTS {
        let from = format!("    deploy:\n      command:\n        run: ./deploy.sh {env}\n");
        let to = format!("    infrastructure:\n      deploy: ./infra.sh {env}\n{from}");
        assert!(y.contains(&from), "SHOP changed shape: {env}");
        y = y.replace(&from, &to);
    }
    y.push_str("infrastructure:\n  paths: [infrastructure/**]\n  templates: [infrastructure/*.template.json]\n  migrations: [migrations/**]\n");
    y
}

fn infra_cmd(env: &str) -> String {
    format!("./infra.sh {env}")
}

/// A world whose approver lets every run into production after a minute; logs in a
/// temporary folder.
fn world(logs: &tempfile::TempDir) -> Sim {
    let mut sim = Sim::new(&shop_with_infra());
    sim.layout.logs = logs.path().join("logs");
    sim.decide_with("production", |_| {
        Some(Verdict {
            after: Duration::from_secs(60),
            approved: true,
            reason: None,
        })
    });
    sim
}

fn succeeds(sim: &Sim, sha: &str) -> RunView {
    let v = sim.run(sha);
    assert_eq!(v.status, RunStatus::Succeeded, "{sha}: {:?}", v.reason);
    v
}

fn deployment(sim: &Sim, run: RunId, env: &str) -> DeploymentRecord {
    sim.deployments_of(run)
        .into_iter()
        .find(|d| d.environment == env)
        .unwrap_or_else(|| panic!("run {run} has no deployment in {env}"))
}

fn assert_world(sim: &Sim, views: &[&RunView]) {
    let mut bad = invariants::after_rollbacks(sim, true, KnownBugs::default());
    for v in views {
        bad.extend(invariants::after_run(sim, v));
    }
    assert!(bad.is_empty(), "properties violated:\n{}", bad.join("\n"));
}

/// The infrastructure commands a run's steps ran, in order.
fn infra_runs(sim: &Sim) -> Vec<String> {
    sim.executor
        .calls()
        .into_iter()
        .filter(|c| c.command.starts_with("./infra.sh"))
        .map(|c| c.command)
        .collect()
}

#[test]
fn the_plan_puts_the_infrastructure_step_before_each_deploy_and_only_with_the_section() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    let a = succeeds(&sim, A);
    for env in shop::ENVIRONMENTS {
        let stage = a.stages.iter().find(|s| s.name == env).unwrap();
        let kinds: Vec<&str> = stage.steps.iter().map(|s| s.kind.as_str()).collect();
        let i = kinds.iter().position(|k| *k == "infrastructure").unwrap();
        assert_eq!(kinds.get(i + 1), Some(&"deploy"), "{env}: {kinds:?}");
    }
    // Without the top-level section nothing of this is planned.
    let plain = Sim::new(SHOP);
    let v = plain.run(A);
    assert!(
        v.stages
            .iter()
            .flat_map(|s| &s.steps)
            .all(|s| s.kind != "infrastructure")
    );
    assert!(plain.infra.asked.lock().unwrap().is_empty());
}

#[test]
fn the_first_deployment_deploys_the_infrastructure_and_records_it() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    let a = succeeds(&sim, A);
    assert_eq!(
        infra_runs(&sim),
        shop::ENVIRONMENTS.map(infra_cmd).to_vec(),
        "one infrastructure deploy per environment"
    );
    // Nothing was deployed before: nothing to compare.
    assert!(sim.infra.asked.lock().unwrap().is_empty());
    for env in shop::ENVIRONMENTS {
        let d = deployment(&sim, a.id, env);
        assert!(d.infrastructure_changed, "{env}");
        assert!(!d.rollback_unsafe);
        // The infrastructure command saw the usual variables.
        let call = sim
            .executor
            .calls()
            .into_iter()
            .find(|c| c.command == infra_cmd(env))
            .unwrap();
        assert_eq!(call.env.get("FERRY_ENV").map(String::as_str), Some(env));
        assert_eq!(call.env.get("FERRY_VERSION").map(String::as_str), Some(A));
    }
    let assessed: Vec<_> = sim
        .events(a.id)
        .into_iter()
        .filter(|e| e.kind == EventKind::InfrastructureAssessed)
        .collect();
    assert_eq!(assessed.len(), 3);
    assert_eq!(assessed[0].data["verdict"], "first-deployment");
    assert_world(&sim, &[&a]);
}

#[test]
fn an_application_only_change_deploys_no_infrastructure() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    succeeds(&sim, A);
    let before = infra_runs(&sim).len();
    // The fake's default verdict is no change.
    let b = succeeds(&sim, B);
    assert_eq!(
        infra_runs(&sim).len(),
        before,
        "no infrastructure deploy for B"
    );
    let asked = sim.infra.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![(A.to_string(), B.to_string()); 3],
        "each environment compares what it runs with the run's commit"
    );
    for env in shop::ENVIRONMENTS {
        let d = deployment(&sim, b.id, env);
        assert!(!d.infrastructure_changed && !d.rollback_unsafe, "{env}");
        let stage = b.stages.iter().find(|s| s.name == env).unwrap();
        let step = stage
            .steps
            .iter()
            .find(|s| s.kind == "infrastructure")
            .unwrap();
        let log = std::fs::read_to_string(step.log.as_deref().unwrap()).unwrap();
        assert!(log.contains("nothing deployed"), "{log}");
    }
    assert_world(&sim, &[&b]);
}

#[test]
fn a_meaningful_change_deploys_the_infrastructure() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    succeeds(&sim, A);
    sim.infra.verdict(B, Infra::Meaningful, &[]);
    let before = infra_runs(&sim).len();
    let b = succeeds(&sim, B);
    assert_eq!(infra_runs(&sim).len(), before + 3);
    for env in shop::ENVIRONMENTS {
        let d = deployment(&sim, b.id, env);
        assert!(d.infrastructure_changed && !d.rollback_unsafe, "{env}");
    }
    let ok = sim
        .events(b.id)
        .into_iter()
        .find(|e| e.kind == EventKind::DeploymentSucceeded)
        .unwrap();
    assert_eq!(ok.data["infrastructureChanged"], true);
    assert_world(&sim, &[&b]);
}

#[test]
fn a_failing_comparison_fails_the_step_closed_before_any_deployment() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    let a = succeeds(&sim, A);
    sim.infra.fails(
        B,
        "`infrastructure.synth` (`npx cdk synth`) failed: exit status 1",
    );
    let b = sim.run(B);
    assert_eq!(b.status, RunStatus::Failed);
    assert_eq!(Sim::stage_status(&b, "test"), Some(StageStatus::Failed));
    assert!(b.reason.as_deref().unwrap().contains("synth"), "{b:?}");
    // Nothing reached the environment: no deployment record, no rollback, A runs.
    assert!(sim.deployments_of(b.id).is_empty());
    assert!(sim.store.rollbacks(10).unwrap().is_empty());
    assert_eq!(sim.deployer("test").running().as_deref(), Some(A));
    assert_world(&sim, &[&a, &b]);
}

#[test]
fn a_failed_infrastructure_deploy_fails_the_stage_and_rolls_it_back() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    succeeds(&sim, A);
    sim.infra.verdict(B, Infra::Meaningful, &[]);
    sim.executor
        .script_for_commit(B, &infra_cmd("staging"), ferry_testkit::Outcome::exit(1));
    let b = sim.run(B);
    assert_eq!(b.status, RunStatus::Failed);
    let d = deployment(&sim, b.id, "staging");
    assert_eq!(d.status, DeploymentStatus::RolledBack, "{d:?}");
    assert!(d.infrastructure_changed);
    let rec = sim.store.rollback(&d.deployment_id).unwrap().unwrap();
    assert_eq!(rec.trigger, Trigger::DeployFailed);
    assert_eq!(rec.status, RollbackStatus::Succeeded);
    // The application deploy of B never ran in staging.
    assert!(
        !sim.timeline
            .into_env("staging")
            .iter()
            .any(|c| c.kind == CallKind::Deploy && c.version == B)
    );
    assert_world(&sim, &[&b]);
}

/// The scenario of the issue: B replaces a DynamoDB table; its staging monitor window
/// then fails. B is not rolled back: staging is frozen, an incident holds it, the
/// rollback is recorded as not performed with the reason, `incident_opened` says why.
#[test]
fn a_rollback_unsafe_deployment_followed_by_an_alarm_is_frozen_not_rolled_back() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    let a = succeeds(&sim, A);
    let why = "stateful resource Orders (AWS::DynamoDB::Table) in stack.template.json is replaced";
    sim.infra.verdict(B, Infra::RollbackUnsafe, &[why]);
    sim.probe
        .script(shop::STAGING_ALARM, [NotBreaching, Breaching, Breaching]);
    let b = sim.run(B);
    assert_eq!(b.status, RunStatus::Failed);
    let d = deployment(&sim, b.id, "staging");
    assert!(d.rollback_unsafe && d.infrastructure_changed);
    assert_eq!(d.rollback_unsafe_reason.as_deref(), Some(why));
    // Not rolled back: failed, B still runs, no rollback call.
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert_eq!(sim.deployer("staging").running().as_deref(), Some(B));
    assert!(
        !sim.timeline
            .into_env("staging")
            .iter()
            .any(|c| c.kind == CallKind::Rollback)
    );
    let rec = sim.store.rollback(&d.deployment_id).unwrap().unwrap();
    assert_eq!(rec.status, RollbackStatus::NotPerformed, "{rec:#?}");
    assert!(rec.detail.iter().any(|l| l.contains("Orders")), "{rec:#?}");
    let incident = sim.store.hold("staging").unwrap().unwrap();
    assert_eq!(rec.incident, Some(incident.id));
    assert!(incident.reason.contains("rollback-unsafe"), "{incident:?}");
    let freezes = sim.store.freezes(Some("staging"), sim_now(&sim)).unwrap();
    assert_eq!(freezes.len(), 1);
    assert!(freezes[0].reason.contains("Orders"));
    let opened = sim
        .events(b.id)
        .into_iter()
        .find(|e| e.kind == EventKind::IncidentOpened)
        .unwrap();
    assert_eq!(opened.data["rollbackUnsafe"], true);
    assert!(opened.data["reason"].as_str().unwrap().contains("Orders"));
    // Production never saw B; test keeps B (it succeeded there).
    assert_eq!(sim.deployer("production").running().as_deref(), Some(A));
    assert_world(&sim, &[&a, &b]);

    // A person decides: a plain manual rollback is refused, with the flag it goes.
    let engine = sim.engine();
    let err = engine
        .roll_back(
            &d,
            "manual",
            Trigger::Manual {
                by: "zoe".into(),
                accept_data_loss: false,
            },
            None,
            None,
        )
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert!(
        err.message.contains("--accept-data-loss"),
        "{}",
        err.message
    );
    let rec = engine
        .roll_back(
            &d,
            "manual, data loss accepted",
            Trigger::Manual {
                by: "zoe".into(),
                accept_data_loss: true,
            },
            None,
            None,
        )
        .unwrap();
    assert_eq!(rec.status, RollbackStatus::Succeeded, "{rec:#?}");
    assert_eq!(sim.deployer("staging").running().as_deref(), Some(A));
    assert_world(&sim, &[]);
}

/// A safe deployment that carried a meaningful infrastructure change is rolled back as
/// before.
#[test]
fn a_safe_infrastructure_change_is_rolled_back_as_before() {
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    succeeds(&sim, A);
    sim.infra.verdict(B, Infra::Meaningful, &[]);
    sim.probe
        .script(shop::STAGING_ALARM, [NotBreaching, Breaching, Breaching]);
    let b = sim.run(B);
    let d = deployment(&sim, b.id, "staging");
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    assert_eq!(sim.deployer("staging").running().as_deref(), Some(A));
    assert!(sim.store.hold("staging").unwrap().is_none());
    assert!(
        sim.store
            .freezes(Some("staging"), sim_now(&sim))
            .unwrap()
            .is_empty()
    );
    assert_world(&sim, &[&b]);
}

/// Full level never redeploys an environment back past a rollback-unsafe deployment:
/// A everywhere; B (a migration) succeeds in test and staging but is rejected for
/// production; C fails in staging and staging's rollback fails, so full level would put
/// A back everywhere, taking back B in test and staging: refused (freeze + incident).
#[test]
fn full_level_refuses_to_take_back_a_rollback_unsafe_deployment_elsewhere() {
    let logs = tempfile::tempdir().unwrap();
    let mut sim = Sim::new(&shop_with_infra());
    sim.layout.logs = logs.path().join("logs");
    sim.decide_with("production", |run| {
        Some(Verdict {
            after: Duration::from_secs(60),
            approved: run.commit.sha != B,
            reason: (run.commit.sha == B).then(|| "not this one".to_string()),
        })
    });
    let a = succeeds(&sim, A);
    sim.infra.verdict(
        B,
        Infra::RollbackUnsafe,
        &["migration migrations/002.sql changed"],
    );
    let b = sim.run(B);
    assert_eq!(b.status, RunStatus::Failed, "rejected for production");
    assert!(deployment(&sim, b.id, "staging").rollback_unsafe);
    sim.probe
        .script(shop::STAGING_ALARM, [NotBreaching, Breaching, Breaching]);
    sim.deployer("staging")
        .fail_rollback_permanently(Some("disk full (injected)"));
    let c = sim.run(C);
    assert_eq!(c.status, RunStatus::Failed);
    let bad = deployment(&sim, c.id, "staging");
    let rec = sim.store.rollback(&bad.deployment_id).unwrap().unwrap();
    assert_eq!(rec.status, RollbackStatus::NotPerformed, "{rec:#?}");
    assert!(
        rec.detail
            .iter()
            .any(|l| l.contains("full level rollback not performed")),
        "{rec:#?}"
    );
    // Test still runs C and staging B... whatever the failed stage level left; nothing
    // went back to A.
    assert_ne!(sim.deployer("test").running().as_deref(), Some(A));
    assert_eq!(sim.deployer("production").running().as_deref(), Some(A));
    for env in ["test", "staging"] {
        assert_eq!(
            sim.store.freezes(Some(env), sim_now(&sim)).unwrap().len(),
            1,
            "{env} frozen"
        );
    }
    assert!(sim.store.hold("staging").unwrap().is_some());
    assert_world(&sim, &[&a, &b, &c]);
}

fn sim_now(sim: &Sim) -> ferry_core::Timestamp {
    ferry_engine::ports::Clock::now(&*sim.clock)
}

/// DESIGN invariant 1: a ferry process dies while `test`'s infrastructure step runs (its
/// deployment open, the verdict recorded). The next process takes the run up: the step
/// runs again (the comparison and the idempotent deploy command), under the same
/// deployment, and the run goes on to the end.
#[test]
fn an_infrastructure_step_interrupted_by_a_crash_runs_again_when_the_run_is_taken_up() {
    use ferry_engine::ports::{Clock, Observer};
    let logs = tempfile::tempdir().unwrap();
    let sim = world(&logs);
    succeeds(&sim, A);
    sim.infra.verdict(B, Infra::Meaningful, &[]);
    sim.source.ensure(B);
    const DEAD: &str = "dead-host:1";
    let mut dead = sim.engine();
    dead.settings.holder = DEAD.to_string();
    let mut run = dead.queue(B, "sim", "sim").unwrap();
    loop {
        let now = sim.clock.now();
        let ferry_core::Next::Step(r) = run.next() else {
            panic!("ended before the infrastructure step")
        };
        let label = run.step_kind(r).label();
        let mut ch = match label {
            "deploy" | "infrastructure" => run.start_deploy(r, now, None, Some(A.to_string())),
            _ => run.start_step(r, now, None),
        };
        if label == "infrastructure" {
            ch.extend(run.record_infrastructure(
                r.stage,
                "meaningful",
                true,
                &[],
                "meaningful",
                now,
            ));
        }
        sim.store.apply(run.id(), &ch).unwrap();
        sim.observer.changed(&run.view, &ch);
        if label == "infrastructure" {
            break;
        }
        let ch = run.finish_step(r, ferry_core::StepOutcome::passed(), now);
        sim.store.apply(run.id(), &ch).unwrap();
        sim.observer.changed(&run.view, &ch);
    }
    sim.liveness.kill(DEAD);
    let id = run.id();
    let before = infra_runs(&sim).len();
    let engine = sim.engine();
    let run = engine.resume(id).unwrap().expect("taken up");
    let view = engine.drive(run).unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    // Test's infrastructure deploy ran (again), then staging's and production's.
    assert_eq!(infra_runs(&sim).len(), before + 3);
    let kinds: Vec<EventKind> = sim.events(id).into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::RunResumed) && kinds.contains(&EventKind::StepRetried));
    let resumed = sim
        .events(id)
        .into_iter()
        .find(|e| e.kind == EventKind::RunResumed)
        .unwrap();
    assert_eq!(resumed.data["action"], "rerun_step");
    // One deployment into test, the one the interrupted step opened.
    let into_test: Vec<_> = sim
        .deployments_of(id)
        .into_iter()
        .filter(|d| d.environment == "test")
        .collect();
    assert_eq!(into_test.len(), 1);
    assert_eq!(into_test[0].status, DeploymentStatus::Succeeded);
    assert!(into_test[0].infrastructure_changed);
    let mut bad = invariants::events_delivered(&sim);
    bad.extend(invariants::consistency(&sim, &view));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
