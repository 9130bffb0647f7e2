//! Approval rules on the simulation: N of M distinct approvers, separation of duties,
//! rejections, the reminder at its fake time, approvals voided by a changed artifact or
//! a cancelled run, and the hotfix lane.
#![allow(clippy::unwrap_used)]

use ferry_core::{EventKind, RunStatus, StageStatus};
use ferry_engine::ports::{PortErrorKind, Store};
use ferry_testkit::pipelines::SHOP;
use ferry_testkit::{Sim, invariants};
use std::sync::Arc;
use std::time::Duration;

const SHA: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const RULE: &str = "    approval:
      timeout: 1h
      approvers: [alice, bob, carol, ada]
      required: 2
      remind_before: 20m
";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The shop pipeline with a 2-of-4 rule at production, a reminder 20 min before the
/// 1 h timeout, and the hotfix lane open; the commit is Ada's.
fn world(rule: &str, hotfix: bool) -> Sim {
    let mut yaml = SHOP.replace("    approval:\n      timeout: 1h\n", rule);
    if hotfix {
        yaml.push_str("hotfix:\n  allowed: true\n");
    }
    let sim = Sim::new(&yaml);
    sim.source
        .add(SHA, "fix: the checkout", "Ada Lovelace <ada@example.com>");
    sim
}

fn check(sim: &Sim, view: &ferry_core::run::RunView) {
    let bad = invariants::after_run(sim, view);
    assert!(bad.is_empty(), "invariants violated:\n{}", bad.join("\n"));
}

fn of_kind(sim: &Sim, run: ferry_core::RunId, kind: EventKind) -> Vec<ferry_core::Event> {
    sim.events(run)
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

#[test]
fn two_of_four_approvers_let_the_run_deploy() {
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    sim.decide_as("production", "bob", secs(120), true);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let granted = of_kind(&sim, view.id, EventKind::ApprovalGranted);
    assert_eq!(granted.len(), 2);
    assert_eq!(granted[0].data["by"], "alice");
    assert_eq!(granted[0].data["approvals"], 1);
    assert_eq!(granted[1].data["approvals"], 2);
    assert_eq!(granted[1].data["required"], 2);
    assert!(
        granted[0].message.contains("(1 of 2)"),
        "{}",
        granted[0].message
    );
    let requested = &of_kind(&sim, view.id, EventKind::ApprovalRequested)[0];
    assert_eq!(requested.data["required"], 2);
    assert_eq!(requested.data["approvers"][3], "ada");
    check(&sim, &view);
}

#[test]
fn one_approval_of_two_is_not_enough() {
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason.as_deref().unwrap().contains("timed out"),
        "{:?}",
        view.reason
    );
    assert_eq!(
        Sim::stage_status(&view, "production"),
        Some(StageStatus::Failed)
    );
    assert!(
        !sim.deployed_envs(view.id)
            .contains(&"production".to_string())
    );
    check(&sim, &view);
}

#[test]
fn the_author_and_the_trigger_do_not_count() {
    let sim = world(RULE, false);
    // Ada wrote the commit; `sim` triggered the run (and is no approver anyway).
    sim.decide_as("production", "ada", secs(30), true);
    sim.decide_as("production", "alice", secs(60), true);
    sim.decide_as("production", "carol", secs(300), true);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let refused = of_kind(&sim, view.id, EventKind::ApprovalRefused);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].data["by"], "ada");
    assert!(
        refused[0].data["reason"]
            .as_str()
            .unwrap()
            .contains("separation of duties"),
        "{}",
        refused[0].data
    );
    let granted: Vec<_> = of_kind(&sim, view.id, EventKind::ApprovalGranted)
        .into_iter()
        .map(|e| e.data["by"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(granted, ["alice", "carol"]);
    // Production was deployed only after carol's approval, 300 s into the wait.
    check(&sim, &view);
}

#[test]
fn one_rejection_ends_the_gate() {
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    sim.decide_as("production", "bob", secs(90), false);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    assert!(
        view.reason.as_deref().unwrap().contains("rejected by bob"),
        "{:?}",
        view.reason
    );
    assert_eq!(of_kind(&sim, view.id, EventKind::ApprovalRejected).len(), 1);
    check(&sim, &view);
}

#[test]
fn the_reminder_comes_once_at_timeout_minus_remind_before() {
    let sim = world(RULE, false);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    let requested = of_kind(&sim, view.id, EventKind::ApprovalRequested)[0].at;
    let reminders = of_kind(&sim, view.id, EventKind::ApprovalReminder);
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(
        reminders[0].at,
        requested.plus(Duration::from_secs(40 * 60))
    );
    assert_eq!(reminders[0].data["required"], 2);
    assert!(
        reminders[0].message.contains("20m 00s left"),
        "{}",
        reminders[0].message
    );
    let timed_out = of_kind(&sim, view.id, EventKind::ApprovalTimedOut);
    assert_eq!(timed_out[0].at, requested.plus(Duration::from_secs(3600)));
}

#[test]
fn a_changed_artifact_voids_the_approvals_and_deploys_nothing() {
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    sim.decide_as("production", "bob", secs(120), true);
    // Between the two approvals, someone replaces the artifact.
    let store = sim.store.clone();
    let artifacts = sim.artifacts.clone();
    sim.clock.on_advance(move |_| {
        let Ok(runs) = store.list_runs(1, true) else {
            return;
        };
        for r in runs {
            if store
                .approvals(r.id, "production")
                .is_ok_and(|d| d.len() == 1)
            {
                artifacts.tamper_all();
            }
        }
    });
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Failed);
    let why = view.reason.clone().unwrap();
    assert!(
        why.contains("changed since it was built") && why.contains("void"),
        "{why}"
    );
    let voided = of_kind(&sim, view.id, EventKind::ApprovalVoided);
    assert_eq!(voided.len(), 1);
    let decisions = sim.store.approvals(view.id, "production").unwrap();
    assert_eq!(decisions.len(), 2);
    assert!(decisions.iter().all(|d| d.void.is_some()), "{decisions:?}");
    assert!(
        !sim.deployed_envs(view.id)
            .contains(&"production".to_string())
    );
}

#[test]
fn cancelling_a_waiting_run_voids_its_approvals() {
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    let store = sim.store.clone();
    let cancel = Arc::clone(&sim.cancel);
    sim.clock.on_advance(move |_| {
        let Ok(runs) = store.list_runs(1, true) else {
            return;
        };
        for r in runs {
            if store
                .approvals(r.id, "production")
                .is_ok_and(|d| d.len() == 1)
            {
                cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled);
    let decisions = sim.store.approvals(view.id, "production").unwrap();
    assert!(
        decisions[0].void.as_deref().unwrap().contains("cancelled"),
        "{decisions:?}"
    );
    assert_eq!(of_kind(&sim, view.id, EventKind::ApprovalVoided).len(), 1);
    // A later decision is refused: the run no longer waits.
    let late = ferry_core::approval::Decision {
        by: "bob".into(),
        ..decisions[0].clone()
    };
    let err = sim.store.decide(view.id, "production", &late).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
}

#[test]
fn a_hotfix_goes_straight_to_production_with_two_approvals_and_a_doubled_window() {
    // The file asks for one approval; a hotfix needs two.
    let rule = "    approval:\n      timeout: 1h\n";
    let sim = world(rule, true);
    sim.decide_as("production", "alice", secs(60), true);
    sim.decide_as("production", "bob", secs(600), true);
    let view = sim.try_run_hotfix(SHA).unwrap();
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    assert!(view.hotfix);
    assert!(sim.store.load_run(view.id).unwrap().hotfix);
    let stages: Vec<&str> = view.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(stages, ["build", "production"]);
    assert_eq!(sim.deployed_envs(view.id), ["production"]);
    let requested = &of_kind(&sim, view.id, EventKind::ApprovalRequested)[0];
    assert_eq!(requested.data["required"], 2);
    assert_eq!(requested.data["hotfix"], true);
    assert!(
        requested.message.starts_with("hotfix run"),
        "{}",
        requested.message
    );
    // Deployed only after bob, the second approval.
    let granted = of_kind(&sim, view.id, EventKind::ApprovalGranted);
    assert_eq!(granted.len(), 2);
    // The production window is 20 s in the file: 40 s for a hotfix.
    let prod = view.stages.iter().find(|s| s.name == "production").unwrap();
    let monitor = prod.steps.iter().find(|s| s.kind == "monitor").unwrap();
    let took = monitor.ended_at.unwrap().since(monitor.started_at.unwrap());
    assert!(took >= secs(40) && took < secs(45), "{took:?}");
}

#[test]
fn a_hotfix_is_refused_when_the_file_does_not_allow_it() {
    let sim = world(RULE, false);
    let err = sim.try_run_hotfix(SHA).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent);
    assert!(
        err.message.contains("does not allow hotfixes")
            && err.message.contains("hotfix: { allowed: true }"),
        "{}",
        err.message
    );
    assert!(
        sim.store.list_runs(10, false).unwrap().is_empty(),
        "nothing recorded"
    );
}

#[test]
fn a_newer_run_deploying_first_supersedes_a_waiting_run_and_voids_its_approvals() {
    use ferry_core::{Commit, DeploymentRecord, DeploymentStatus, RunId, Timestamp};
    use ferry_engine::ports::NewRun;
    let sim = world(RULE, false);
    sim.decide_as("production", "alice", secs(60), true);
    // Once alice approved run 1, a newer run (2) starts deploying to production.
    let store = sim.store.clone();
    let done = std::sync::atomic::AtomicBool::new(false);
    sim.clock.on_advance(move |now| {
        let approved = store
            .approvals(RunId(1), "production")
            .is_ok_and(|d| d.len() == 1);
        if !approved || done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let sha2 = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";
        let id = store
            .create_run(&NewRun {
                pipeline: "shop-api".into(),
                commit: Commit {
                    sha: sha2.into(),
                    message: "newer".into(),
                    author: "Bob <bob@example.com>".into(),
                },
                trigger: "sim".into(),
                triggered_by: "sim".into(),
                created_at: now,
                stages: vec![],
                driver: "elsewhere:1".into(),
                hotfix: false,
                id: None,
            })
            .unwrap();
        let rec = DeploymentRecord {
            deployment_id: format!("production#{}", now.millis()),
            environment: "production".into(),
            version: sha2.into(),
            status: DeploymentStatus::InProgress,
            start_time: now.millis(),
            end_time: None,
            infrastructure_changed: false,
            commit_message: "newer".into(),
            commit_author: "Bob <bob@example.com>".into(),
            pipeline_execution_id: "2".into(),
            unit_tests_passed: true,
            integration_tests_passed: true,
            e2e_tests_passed: true,
            coverage_percentage: 90.0,
            rollback_reason: None,
            rollback_level: None,
            rollback_time: None,
            artifact_location: String::new(),
            expires_at: ferry_core::deployment::expires_at(Timestamp(now.millis())),
            run_id: id,
            artifact_digest: String::new(),
            previous_version: None,
            config_digest: None,
            template_digests: Default::default(),
            rollback_unsafe: false,
            rollback_unsafe_reason: None,
        };
        store
            .apply(id, &[ferry_core::Change::DeploymentStarted(Box::new(rec))])
            .unwrap();
    });
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Superseded, "{:?}", view.reason);
    assert!(
        view.reason
            .as_deref()
            .unwrap()
            .contains("run 2 already deployed"),
        "{:?}",
        view.reason
    );
    let decisions = sim.store.approvals(view.id, "production").unwrap();
    assert!(
        decisions[0].void.as_deref().unwrap().contains("superseded"),
        "{decisions:?}"
    );
    assert_eq!(of_kind(&sim, view.id, EventKind::ApprovalVoided).len(), 1);
    assert!(
        !sim.deployed_envs(view.id)
            .contains(&"production".to_string())
    );
}
