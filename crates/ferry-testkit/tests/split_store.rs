//! The split store of `ferry step` (`ferry_engine::split`): a run's record in one
//! store, deployments and leases in a shared ledger.
#![allow(clippy::unwrap_used)]

use ferry_core::RollbackLevel;
use ferry_core::{Change, Commit, DeploymentStatus, RunId, Timestamp};
use ferry_engine::ports::{Ledger, NewRun, PortErrorKind, Store};
use ferry_engine::split::SplitStore;
use ferry_testkit::ledger_suite;
use ferry_testkit::store::MemoryStore;

fn new_run(id: Option<RunId>) -> NewRun {
    NewRun {
        pipeline: "shop".into(),
        commit: Commit {
            sha: "abc".into(),
            message: "m".into(),
            author: "a".into(),
        },
        trigger: "step".into(),
        triggered_by: "codebuild".into(),
        created_at: Timestamp(0),
        stages: vec![("test".into(), vec![("deploy".into(), "deploy".into())])],
        driver: "here:1".into(),
        hotfix: false,
        id,
    }
}

#[test]
fn the_split_store_passes_the_ledger_suite() {
    let (local, shared) = (MemoryStore::new(), MemoryStore::new());
    let split = SplitStore {
        local: &local,
        shared: &shared,
    };
    ledger_suite::run_all(&split, "split-");
    // Everything the suite wrote is in the shared half only.
    assert!(!shared.deployments(None, 100).unwrap().is_empty());
    assert!(local.deployments(None, 100).unwrap().is_empty());
}

#[test]
fn a_chosen_run_id_is_kept_and_a_taken_one_is_a_conflict() {
    let store = MemoryStore::new();
    assert_eq!(
        store.create_run(&new_run(Some(RunId(4711)))).unwrap(),
        RunId(4711)
    );
    let err = store.create_run(&new_run(Some(RunId(4711)))).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    // The store's own ids go on after the chosen one.
    assert_eq!(store.create_run(&new_run(None)).unwrap(), RunId(4712));
}

#[test]
fn a_runs_deployments_reach_the_shared_ledger_but_never_undo_its_rollback() {
    let (local, shared) = (MemoryStore::new(), MemoryStore::new());
    let split = SplitStore {
        local: &local,
        shared: &shared,
    };
    let run = split.create_run(&new_run(Some(RunId(9)))).unwrap();
    let mut d = ledger_suite::deployment("test", 1_000, "abc", DeploymentStatus::InProgress);
    d.run_id = run;
    split
        .apply(run, &[Change::DeploymentStarted(Box::new(d.clone()))])
        .unwrap();
    let seen = shared.latest_deployment("test").unwrap().unwrap();
    assert_eq!(seen.deployment_id, d.deployment_id);
    assert_eq!(seen.status, DeploymentStatus::InProgress);

    // The rollback Lambda takes it back in the shared ledger meanwhile ...
    shared
        .record_rollback(
            run,
            &[Change::DeploymentRolledBack {
                deployment_id: d.deployment_id.clone(),
                reason: "alarm test-errors".into(),
                level: RollbackLevel::Stage,
                at: Timestamp(2_000),
            }],
        )
        .unwrap();
    // ... and the run, which has not seen it, finishes its stage.
    split
        .apply(
            run,
            &[Change::DeploymentFinished {
                deployment_id: d.deployment_id.clone(),
                status: DeploymentStatus::Succeeded,
                end_time: Timestamp(3_000),
                unit_tests_passed: true,
                integration_tests_passed: true,
                e2e_tests_passed: true,
                coverage_percentage: 80.0,
            }],
        )
        .unwrap();
    let shared_view = shared.latest_deployment("test").unwrap().unwrap();
    assert_eq!(shared_view.status, DeploymentStatus::RolledBack);
    assert_eq!(
        split.latest_deployment("test").unwrap().unwrap().status,
        DeploymentStatus::RolledBack
    );
    assert_eq!(
        local.latest_deployment("test").unwrap().unwrap().status,
        DeploymentStatus::Succeeded
    );

    // A deployment nobody rolled back is copied with its outcome.
    let mut e = ledger_suite::deployment("test", 5_000, "def", DeploymentStatus::InProgress);
    e.run_id = run;
    split
        .apply(run, &[Change::DeploymentStarted(Box::new(e.clone()))])
        .unwrap();
    split
        .apply(
            run,
            &[Change::DeploymentFinished {
                deployment_id: e.deployment_id.clone(),
                status: DeploymentStatus::Succeeded,
                end_time: Timestamp(6_000),
                unit_tests_passed: true,
                integration_tests_passed: true,
                e2e_tests_passed: true,
                coverage_percentage: 80.0,
            }],
        )
        .unwrap();
    let lkg = split.last_known_good("test").unwrap().unwrap();
    assert_eq!(lkg.deployment_id, e.deployment_id);
    assert_eq!(lkg.end_time, Some(6_000));
}
