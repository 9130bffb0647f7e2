//! Rollback records (seed Property 2: one per deployment, claimed before anything is
//! redeployed) and the `DeploymentRolledBack` change.

use crate::support::{self, Choice, T0, drive, store};
use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
use ferry_core::{Change, DeploymentStatus, Event, EventKind, RollbackLevel, RunStatus, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, PortErrorKind, Store};
use ferry_store::SqliteStore;
use serde_json::json;

pub fn record(deployment_id: &str, started_at: i64, trigger: Trigger) -> RollbackRecord {
    RollbackRecord {
        deployment_id: deployment_id.into(),
        environment: deployment_id.split('#').next().unwrap_or_default().into(),
        from_version: "0123456789abcdef".into(),
        to_version: None,
        level: None,
        status: RollbackStatus::InProgress,
        reason: "alarm staging-health went into ALARM".into(),
        trigger,
        started_at: Timestamp(started_at),
        ended_at: None,
        holder: "host-a:4242".into(),
        detail: Vec::new(),
        incident: None,
    }
}

#[test]
fn a_claim_round_trips_and_a_second_claim_gets_the_first_record() {
    let (_d, store) = store();
    let first = record(
        "staging#100",
        1_000,
        Trigger::Alarm {
            name: "staging-health".into(),
        },
    );
    assert_eq!(store.rollback("staging#100").unwrap(), None);
    assert_eq!(store.claim_rollback(&first).unwrap(), Ok(()));
    assert_eq!(store.rollback("staging#100").unwrap(), Some(first.clone()));

    let second = RollbackRecord {
        holder: "host-b:7".into(),
        trigger: Trigger::Manual {
            by: "bob".into(),
            accept_data_loss: false,
        },
        started_at: Timestamp(2_000),
        ..first.clone()
    };
    assert_eq!(store.claim_rollback(&second).unwrap(), Err(first.clone()));
    // Nothing was written by the losing claim.
    assert_eq!(store.rollback("staging#100").unwrap(), Some(first));
    assert_eq!(store.rollbacks(10).unwrap().len(), 1);
}

#[test]
fn every_trigger_and_every_field_round_trips() {
    let (_d, store) = store();
    let triggers = [
        Trigger::DeployFailed,
        Trigger::TestsFailed,
        Trigger::MonitorFailed,
        Trigger::Alarm {
            name: "p99 'latency'".into(),
        },
        Trigger::Manual {
            by: "Zoë <z@example.com>".into(),
            accept_data_loss: true,
        },
    ];
    for (i, trigger) in triggers.into_iter().enumerate() {
        let t = i64::try_from(i).unwrap();
        let mut rec = record(&format!("production#{t}"), t, trigger);
        store.claim_rollback(&rec).unwrap().unwrap();
        assert_eq!(
            store.rollback(&rec.deployment_id).unwrap(),
            Some(rec.clone())
        );
        rec.status = RollbackStatus::Failed;
        rec.to_version = Some("fedcba9876543210".into());
        rec.level = Some(RollbackLevel::Full);
        rec.ended_at = Some(Timestamp(t + 60_000));
        rec.detail = vec![
            "staging: health check 503".into(),
            "ü \"quoted\"; --".into(),
        ];
        rec.incident = Some(7);
        store.update_rollback(&rec).unwrap();
        assert_eq!(store.rollback(&rec.deployment_id).unwrap(), Some(rec));
    }
}

#[test]
fn updating_replaces_the_record() {
    let (_d, store) = store();
    let rec = record("staging#5", 5, Trigger::MonitorFailed);
    store.claim_rollback(&rec).unwrap().unwrap();
    let staged = RollbackRecord {
        level: Some(RollbackLevel::Stage),
        to_version: Some("abc".into()),
        detail: vec!["stage level: redeploying abc".into()],
        ..rec.clone()
    };
    store.update_rollback(&staged).unwrap();
    assert_eq!(store.rollback("staging#5").unwrap(), Some(staged.clone()));
    let done = RollbackRecord {
        status: RollbackStatus::Succeeded,
        ended_at: Some(Timestamp(99)),
        ..staged
    };
    store.update_rollback(&done).unwrap();
    assert_eq!(store.rollback("staging#5").unwrap(), Some(done.clone()));
    // A claim after the outcome still gets the outcome (idempotent rollback).
    assert_eq!(store.claim_rollback(&rec).unwrap(), Err(done));
}

#[test]
fn updating_an_unclaimed_rollback_is_not_found() {
    let (_d, store) = store();
    let err = store
        .update_rollback(&record("test#1", 1, Trigger::DeployFailed))
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(err.message, "no rollback of deployment test#1 was claimed");
    assert_eq!(store.rollback("test#1").unwrap(), None);
}

#[test]
fn rollbacks_are_newest_first_and_limited() {
    let (_d, store) = store();
    for (id, t) in [
        ("test#1", 30),
        ("staging#2", 10),
        ("production#3", 20),
        ("test#4", 20),
    ] {
        store
            .claim_rollback(&record(id, t, Trigger::DeployFailed))
            .unwrap()
            .unwrap();
    }
    let ids = |v: Vec<RollbackRecord>| v.into_iter().map(|r| r.deployment_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.rollbacks(10).unwrap()),
        ["test#1", "test#4", "production#3", "staging#2"]
    );
    assert_eq!(ids(store.rollbacks(2).unwrap()), ["test#1", "test#4"]);
    assert!(store.rollbacks(0).unwrap().is_empty());
}

#[test]
fn of_eight_concurrent_claimers_on_several_handles_exactly_one_wins() {
    let (dir, store) = store();
    let path = dir.path().join(".ferry").join("ferry.db");
    let handles: Vec<SqliteStore> = (0..4).map(|_| SqliteStore::open(&path).unwrap()).collect();
    for round in 0..20i64 {
        let id = format!("production#{round}");
        let results: Vec<(String, Result<(), RollbackRecord>)> = std::thread::scope(|s| {
            let joins: Vec<_> = (0..8)
                .map(|i| {
                    let st = &handles[i % handles.len()];
                    let mut rec = record(
                        &id,
                        round,
                        Trigger::Alarm {
                            name: "errors".into(),
                        },
                    );
                    rec.holder = format!("host:{i}");
                    s.spawn(move || (rec.holder.clone(), st.claim_rollback(&rec).unwrap()))
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(h, _)| h)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let stored = store.rollback(&id).unwrap().unwrap();
        assert_eq!(&stored.holder, winners[0]);
        for (_, r) in &results {
            if let Err(existing) = r {
                assert_eq!(existing, &stored);
            }
        }
    }
    assert_eq!(store.rollbacks(100).unwrap().len(), 20);
}

#[test]
fn a_rolled_back_deployment_carries_reason_level_and_time() {
    let (_d, store) = store();
    let run = drive(&store, support::TWO_ENVIRONMENTS, &[Choice::pass()]);
    assert_eq!(run.status(), RunStatus::Succeeded);
    let prod = store.last_known_good("production").unwrap().unwrap();
    let at = Timestamp(T0.0 + 1_000_000);
    store
        .apply(
            run.id(),
            &[Change::DeploymentRolledBack {
                deployment_id: prod.deployment_id.clone(),
                reason: "alarm errors went into ALARM".into(),
                level: RollbackLevel::Stage,
                at,
            }],
        )
        .unwrap();
    let back = store.latest_deployment("production").unwrap().unwrap();
    assert_eq!(
        back,
        ferry_core::DeploymentRecord {
            status: DeploymentStatus::RolledBack,
            rollback_reason: Some("alarm errors went into ALARM".into()),
            rollback_level: Some(RollbackLevel::Stage),
            rollback_time: Some(at.0),
            ..prod
        }
    );
    assert_eq!(store.last_known_good("production").unwrap(), None);
}

#[test]
fn rolling_back_an_unknown_deployment_is_not_found_and_changes_nothing() {
    let (_d, store) = store();
    let run = drive(&store, support::TWO_ENVIRONMENTS, &[Choice::pass()]);
    let before = store.deployments(None, 10).unwrap();
    let events = store.events(&EventFilter::default()).unwrap().len();
    let test = store.last_known_good("test").unwrap().unwrap();
    let err = store
        .apply(
            run.id(),
            &[
                Change::DeploymentRolledBack {
                    deployment_id: test.deployment_id,
                    reason: "r".into(),
                    level: RollbackLevel::Full,
                    at: T0,
                },
                Change::Event(Event {
                    at: T0,
                    kind: EventKind::RollbackSucceeded,
                    run: Some(run.id()),
                    environment: Some("test".into()),
                    message: "rolled back".into(),
                    data: json!({}),
                }),
                Change::DeploymentRolledBack {
                    deployment_id: "test#0".into(),
                    reason: "r".into(),
                    level: RollbackLevel::Full,
                    at: T0,
                },
            ],
        )
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(err.message, "deployment test#0 does not exist");
    assert_eq!(store.deployments(None, 10).unwrap(), before);
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), events);
}
