//! Approvals: every decision per run and environment, in order, recorded only while the
//! run waits for it; one per person, none after a rejection (the store is where two
//! people pressing "approve" at once meet). Voided decisions stay, with the reason.

use crate::support::{self, T0, apply, start, store};
use ferry_core::approval::Decision;
use ferry_core::run::{Next, Run};
use ferry_core::{RunId, RunStatus, Timestamp};
use ferry_engine::ports::{PortErrorKind, Store};
use ferry_store::SqliteStore;

fn decision(approved: bool, by: &str) -> Decision {
    Decision {
        approved,
        by: by.into(),
        reason: (!approved).then(|| "the change freeze starts today".to_string()),
        // 2026-01-27T10:05:00Z
        at: Timestamp(T0.0 + 300_000),
        digest: Some("sha256:aa".into()),
        void: None,
    }
}

/// A run of the two-environment pipeline driven up to its production approval.
fn awaiting_production(store: &SqliteStore) -> Run {
    let mut run = start(store, support::TWO_ENVIRONMENTS, T0);
    let mut now = T0;
    loop {
        now = Timestamp(now.0 + 1_000);
        let Next::Step(r) = run.next() else {
            panic!("{:?}", run.next())
        };
        let kind = run.step_kind(r).label();
        let changes = if kind == "deploy" {
            run.start_deploy(r, now, None, None)
        } else {
            run.start_step(r, now, None)
        };
        apply(store, &run, &changes);
        if run.status() == RunStatus::AwaitingApproval {
            return run;
        }
        let changes = match kind {
            "gate" => {
                run.ledger.coverage = Some(95.0);
                run.finish_gate(r, now)
            }
            "package" => run.finish_package(r, support::artifact(run.id()), now),
            _ => run.finish_step(r, ferry_core::StepOutcome::passed(), now),
        };
        apply(store, &run, &changes);
    }
}

#[test]
fn each_person_decides_once_and_every_decision_is_kept_in_order() {
    let (_d, store) = store();
    let run = awaiting_production(&store);
    assert_eq!(store.approvals(run.id(), "production").unwrap(), vec![]);
    store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap();
    let err = store
        .decide(run.id(), "production", &decision(false, "Alice "))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!(
            "run {} was already approved by alice at 2026-01-27T10:05:00Z",
            run.id()
        )
    );
    store
        .decide(run.id(), "production", &decision(true, "bob"))
        .unwrap();
    assert_eq!(
        store.approvals(run.id(), "production").unwrap(),
        vec![decision(true, "alice"), decision(true, "bob")]
    );
}

#[test]
fn voided_decisions_stay_on_record_with_the_reason() {
    let (_d, store) = store();
    let run = awaiting_production(&store);
    store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap();
    let mut run = run;
    let prod = run.plan.stage_index("production").unwrap();
    let changes = run.void_approvals(prod, "the artifact changed", Timestamp(T0.0 + 400_000));
    apply(&store, &run, &changes);
    let all = store.approvals(run.id(), "production").unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].void.as_deref(), Some("the artifact changed"));
    // A voided decision no longer blocks the person.
    store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap();
    assert_eq!(store.approvals(run.id(), "production").unwrap().len(), 2);
}

#[test]
fn a_rejection_keeps_its_reason_and_blocks_a_later_approval() {
    let (_d, store) = store();
    let run = awaiting_production(&store);
    store
        .decide(run.id(), "production", &decision(false, "bob"))
        .unwrap();
    let got = store.approvals(run.id(), "production").unwrap()[0].clone();
    assert_eq!(
        got.reason.as_deref(),
        Some("the change freeze starts today")
    );
    let err = store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "run {} was already rejected by bob at 2026-01-27T10:05:00Z",
            run.id()
        )
    );
}

#[test]
fn a_run_that_is_not_waiting_cannot_be_approved() {
    let (_d, store) = store();
    let mut run = start(&store, support::TWO_ENVIRONMENTS, T0);
    let err = store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!(
            "run {} is not waiting for approval (it is queued)",
            run.id()
        )
    );

    let changes = run.begin(T0);
    apply(&store, &run, &changes);
    let err = store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(
        err.message,
        format!(
            "run {} is not waiting for approval (it is running)",
            run.id()
        )
    );
    assert_eq!(store.approvals(run.id(), "production").unwrap(), vec![]);
}

#[test]
fn only_the_environment_waiting_can_be_approved() {
    let (_d, store) = store();
    let run = awaiting_production(&store);
    let err = store
        .decide(run.id(), "test", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!(
            "run {} is not waiting for approval to deploy to test (it is waiting for approval to deploy to production)",
            run.id()
        )
    );
    let err = store
        .decide(run.id(), "moon", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(
        err.message,
        format!("run {} has no environment `moon`", run.id())
    );
}

#[test]
fn unknown_runs_are_not_found() {
    let (_d, store) = store();
    let err = store
        .decide(RunId(7), "production", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(
        (err.kind, err.message.as_str()),
        (
            PortErrorKind::NotFound,
            "run 7 does not exist; `ferry history` lists the runs"
        )
    );
    assert_eq!(
        store.approvals(RunId(7), "production").unwrap_err().kind,
        PortErrorKind::NotFound
    );
}

#[test]
fn two_stores_on_one_file_see_one_decision_per_person() {
    let (dir, store) = store();
    let run = awaiting_production(&store);
    let other = SqliteStore::open(&dir.path().join(".ferry").join("ferry.db")).unwrap();
    store
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap();
    let err = other
        .decide(run.id(), "production", &decision(true, "alice"))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    other
        .decide(run.id(), "production", &decision(true, "bob"))
        .unwrap();
    assert_eq!(store.approvals(run.id(), "production").unwrap().len(), 2);
}

#[test]
fn a_decision_recorded_before_migration_6_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        for sql in &ferry_store::MIGRATIONS[..5] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            r#"INSERT INTO runs (id, pipeline, commit_sha, commit_message, commit_author, "trigger", triggered_by, status, created_at)
               VALUES (1, 'p', 'abc', 'm', 'a', 'cli', 'ada', 'failed', 0);
               INSERT INTO approvals (run_id, environment, approved, by_whom, reason, at)
               VALUES (1, 'production', 0, 'bob', 'no', 5);
               PRAGMA user_version = 5;"#,
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.approvals(RunId(1), "production").unwrap(),
        vec![Decision {
            approved: false,
            by: "bob".into(),
            reason: Some("no".into()),
            at: Timestamp(5),
            digest: None,
            void: None,
        }]
    );
    assert!(!store.load_run(RunId(1)).unwrap().hotfix);
    assert_eq!(
        store.triggered(RunId(1)).unwrap(),
        ("cli".to_string(), "ada".to_string())
    );
}
