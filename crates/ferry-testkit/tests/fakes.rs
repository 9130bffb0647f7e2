//! The fakes honour the contracts of the ports they stand in for: the `Store` trait's
//! documented rules above all, since every engine property is checked through it.
#![allow(clippy::unwrap_used)]

use ferry_core::approval::Decision;
use ferry_core::run::Run;
use ferry_core::{
    Change, Commit, DeploymentStatus, EventKind, RunId, RunPlan, RunStatus, StepRef, Timestamp,
};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{
    Clock, DeployRequest, Deployer, EventFilter, Lease, NewRun, PortErrorKind, Store,
};
use ferry_testkit::pipelines::SHOP;
use ferry_testkit::{CallKind, FakeClock, FakeDeployer, MemoryStore, START, Ticks, Timeline};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn pipeline() -> ferry_config::Pipeline {
    ferry_config::parse(SHOP, "ferry.yml").unwrap()
}

/// A run of the SHOP pipeline recorded in `store` the way the engine records one.
fn new_run(store: &MemoryStore, sha: &str, at: Timestamp) -> Run {
    let p = pipeline();
    let plan = RunPlan::new(&p);
    let commit = Commit {
        sha: sha.into(),
        message: "m".into(),
        author: "a".into(),
    };
    let new = NewRun {
        pipeline: p.name.clone(),
        commit: commit.clone(),
        trigger: "test".into(),
        triggered_by: "me".into(),
        created_at: at,
        driver: "sim:1".into(),
        hotfix: false,
        id: None,
        stages: plan
            .stages
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.steps
                        .iter()
                        .map(|t| (t.name.clone(), t.kind.label().to_string()))
                        .collect(),
                )
            })
            .collect(),
    };
    let id = store.create_run(&new).unwrap();
    let run = Run::new(id, &p.name, commit, plan, at);
    store.apply(id, &run.queued_changes()).unwrap();
    run
}

fn t(ms: i64) -> Timestamp {
    START.plus(Duration::from_millis(u64::try_from(ms).unwrap()))
}

fn decision(approved: bool) -> Decision {
    Decision {
        approved,
        by: "alice".into(),
        reason: None,
        at: t(0),
        digest: None,
        void: None,
    }
}

/// Applies `changes` to the store and checks Property 6 on the way.
fn commit(store: &MemoryStore, run: &Run, changes: Vec<Change>) {
    store.apply(run.id(), &changes).unwrap();
    assert_eq!(store.load_run(run.id()).unwrap(), run.view);
}

/// Drives `run` through the whole build and the test stage, by hand, to production's
/// approval, committing each batch.
fn to_production_approval(store: &MemoryStore, run: &mut Run) {
    let mut now = 0;
    loop {
        now += 1000;
        let r = match run.next() {
            ferry_core::Next::Step(r) => r,
            other => panic!("unexpected {other:?}"),
        };
        let kind = run.step_kind(r).clone();
        let ch = match kind {
            ferry_core::StepKind::Approval { .. } => {
                let ch = run.start_step(r, t(now), None);
                commit(store, run, ch);
                return;
            }
            ferry_core::StepKind::Deploy => {
                let ch = run.start_deploy(r, t(now), None, None);
                commit(store, run, ch);
                run.finish_step(r, ferry_core::StepOutcome::passed(), t(now + 1))
            }
            ferry_core::StepKind::CoverageGate { .. } => run.finish_gate(r, t(now)),
            ferry_core::StepKind::Package { .. } => run.finish_package(
                r,
                ferry_core::Artifact {
                    digest: "sha256:00".into(),
                    location: "mem://a".into(),
                    size: 1,
                },
                t(now),
            ),
            _ => {
                let ch = run.start_step(r, t(now), Some("log".into()));
                commit(store, run, ch);
                run.finish_step(
                    r,
                    ferry_core::StepOutcome {
                        coverage: Some(90.0),
                        ..ferry_core::StepOutcome::passed()
                    },
                    t(now + 1),
                )
            }
        };
        commit(store, run, ch);
    }
}

#[test]
fn a_new_run_loads_back_as_queued_and_runs_list_newest_first() {
    let store = MemoryStore::new();
    let a = new_run(&store, "a", t(0));
    let b = new_run(&store, "b", t(1));
    assert_eq!(store.load_run(a.id()).unwrap(), a.view);
    let ids: Vec<RunId> = store
        .list_runs(10, false)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, [b.id(), a.id()]);
    assert_eq!(store.list_runs(1, false).unwrap().len(), 1);
    assert_eq!(store.trigger(a.id()), Some(("test".into(), "me".into())));
    assert_eq!(
        store.load_run(RunId(99)).map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );
}

#[test]
fn a_batch_is_applied_whole_or_not_at_all() {
    let store = MemoryStore::new();
    let mut run = new_run(&store, "a", t(0));
    let before = store.load_run(run.id()).unwrap();
    let events_before = store.all_events().len();
    let mut changes = run.start_step(StepRef { stage: 0, step: 0 }, t(5), None);
    changes.push(Change::Stage {
        stage: 99,
        status: ferry_core::StageStatus::Running,
        at: t(5),
    });
    let err = store.apply(run.id(), &changes).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(store.load_run(run.id()).unwrap(), before);
    assert_eq!(store.all_events().len(), events_before);
    assert!(store.applies().last().unwrap().error.is_some());
    assert_eq!(
        store.apply(RunId(42), &[]).map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );
}

#[test]
fn injected_faults_refuse_batches_and_change_nothing() {
    let store = MemoryStore::new();
    let mut run = new_run(&store, "a", t(0));
    store.fail_next_apply(2);
    let ch = run.start_step(StepRef { stage: 0, step: 0 }, t(5), None);
    for _ in 0..2 {
        assert_eq!(
            store.apply(run.id(), &ch).map_err(|e| e.kind),
            Err(PortErrorKind::Unavailable)
        );
    }
    assert_eq!(store.load_run(run.id()).unwrap().status, RunStatus::Queued);
    commit(&store, &run, ch);

    store.fail_apply_after(1, 1);
    store.apply(run.id(), &[]).unwrap();
    assert!(store.apply(run.id(), &[]).is_err());
    store.apply(run.id(), &[]).unwrap();

    store.fail_apply_if(1, |_, ch| {
        ch.iter().any(|c| matches!(c, Change::Artifact(_)))
    });
    store.apply(run.id(), &[]).unwrap();
    let art = Change::Artifact(ferry_core::Artifact {
        digest: "d".into(),
        location: "l".into(),
        size: 1,
    });
    assert!(store.apply(run.id(), std::slice::from_ref(&art)).is_err());
    store.apply(run.id(), &[art]).unwrap();
}

#[test]
fn deployments_conflict_on_duplicate_ids_and_answer_last_known_good() {
    let store = MemoryStore::new();
    let mut run = new_run(&store, "a", t(0));
    to_production_approval(&store, &mut run);
    let recs = store.deployments(None, 10).unwrap();
    assert_eq!(recs.len(), 2, "test and staging");
    assert_eq!(recs[0].environment, "staging", "newest first");
    assert!(recs.iter().all(|d| d.status == DeploymentStatus::Succeeded));
    assert_eq!(store.deployments(Some("test"), 10).unwrap().len(), 1);
    assert_eq!(store.deployments(None, 1).unwrap().len(), 1);

    let dup = Change::DeploymentStarted(Box::new(recs[0].clone()));
    assert_eq!(
        store.apply(run.id(), &[dup]).map_err(|e| e.kind),
        Err(PortErrorKind::Conflict)
    );
    let unknown = Change::DeploymentFinished {
        deployment_id: "nope#1".into(),
        status: DeploymentStatus::Failed,
        end_time: t(0),
        unit_tests_passed: false,
        integration_tests_passed: false,
        e2e_tests_passed: false,
        coverage_percentage: 0.0,
    };
    assert_eq!(
        store.apply(run.id(), &[unknown]).map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );

    // A newer, failed deployment of test: latest sees it, last known good does not.
    let mut failed = recs[1].clone();
    failed.deployment_id = "test#999999999999999".into();
    failed.start_time = i64::MAX / 2;
    failed.status = DeploymentStatus::Failed;
    failed.version = "b".into();
    store
        .apply(run.id(), &[Change::DeploymentStarted(Box::new(failed))])
        .unwrap();
    assert_eq!(
        store.latest_deployment("test").unwrap().unwrap().version,
        "b"
    );
    assert_eq!(store.last_known_good("test").unwrap().unwrap().version, "a");
    assert_eq!(store.last_known_good("production").unwrap(), None);
}

#[test]
fn approvals_follow_the_conflict_rules() {
    let store = MemoryStore::new();
    let mut run = new_run(&store, "a", t(0));
    let id = run.id();
    // Not awaiting approval yet.
    assert_eq!(
        store
            .decide(id, "production", &decision(true))
            .map_err(|e| e.kind),
        Err(PortErrorKind::Conflict)
    );
    assert_eq!(
        store
            .decide(RunId(99), "production", &decision(true))
            .map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );
    assert_eq!(
        store.approvals(RunId(99), "production").map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );

    to_production_approval(&store, &mut run);
    assert_eq!(
        store.load_run(id).unwrap().status,
        RunStatus::AwaitingApproval
    );
    assert_eq!(
        store
            .decide(id, "nowhere", &decision(true))
            .map_err(|e| e.kind),
        Err(PortErrorKind::NotFound)
    );
    assert_eq!(
        store
            .decide(id, "staging", &decision(true))
            .map_err(|e| e.kind),
        Err(PortErrorKind::Conflict)
    );
    assert_eq!(store.approvals(id, "production").unwrap(), vec![]);
    // N of M: several people approve, each once.
    store.decide(id, "production", &decision(true)).unwrap();
    let twice = store
        .decide(id, "production", &decision(false))
        .unwrap_err();
    assert_eq!(twice.kind, PortErrorKind::Conflict);
    assert!(
        twice.message.contains("already approved by alice"),
        "{}",
        twice.message
    );
    let bob = Decision {
        by: "bob".into(),
        reason: Some("no".into()),
        ..decision(false)
    };
    store.decide(id, "production", &bob).unwrap();
    assert_eq!(
        store.approvals(id, "production").unwrap(),
        vec![decision(true), bob.clone()]
    );
    // A rejection ends the gate for everyone.
    let carol = Decision {
        by: "carol".into(),
        ..decision(true)
    };
    let again = store.decide(id, "production", &carol).unwrap_err();
    assert_eq!(again.kind, PortErrorKind::Conflict);
    assert!(
        again.message.contains("already rejected by bob"),
        "{}",
        again.message
    );
    // Voided decisions stay on record with the reason, and no longer count.
    store
        .apply(
            id,
            &[Change::ApprovalsVoided {
                environment: "production".into(),
                reason: "superseded".into(),
                at: t(1),
            }],
        )
        .unwrap();
    let all = store.approvals(id, "production").unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.void.as_deref() == Some("superseded")));
    store.decide(id, "production", &carol).unwrap();
}

#[test]
fn events_filter_by_run_environment_id_and_limit() {
    let store = MemoryStore::new();
    let mut a = new_run(&store, "a", t(0));
    let b = new_run(&store, "b", t(0));
    to_production_approval(&store, &mut a);
    let all = store.events(&EventFilter::default()).unwrap();
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "id order");
    let of_b = store
        .events(&EventFilter {
            run: Some(b.id()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].1.kind, EventKind::RunQueued);
    let staging = store
        .events(&EventFilter {
            environment: Some("staging".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(
        !staging.is_empty()
            && staging
                .iter()
                .all(|(_, e)| e.environment.as_deref() == Some("staging"))
    );
    let after = store
        .events(&EventFilter {
            after_id: Some(all[2].0),
            limit: Some(3),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(
        after.iter().map(|e| e.0).collect::<Vec<_>>(),
        [all[3].0, all[4].0, all[5].0]
    );
}

#[test]
fn leases_are_exclusive_until_they_expire() {
    let store = MemoryStore::new();
    let a = new_run(&store, "a", t(0)).id();
    let b = new_run(&store, "b", t(0)).id();
    let lease = |run, until| Lease {
        environment: "test".into(),
        run,
        holder: format!("h{run}"),
        expires_at: t(until),
    };
    assert_eq!(
        store.acquire_lease(&lease(a, 30_000), t(0)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.acquire_lease(&lease(b, 40_000), t(10_000)).unwrap(),
        Err(lease(a, 30_000))
    );
    // Ours again: extended.
    assert_eq!(
        store.acquire_lease(&lease(a, 50_000), t(20_000)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.renew_lease(&lease(b, 60_000)).map_err(|e| e.kind),
        Err(PortErrorKind::Conflict)
    );
    store.renew_lease(&lease(a, 60_000)).unwrap();
    assert!(
        store
            .acquire_lease(&lease(b, 90_000), t(59_999))
            .unwrap()
            .is_err()
    );
    // Expired: anyone may take it.
    assert_eq!(
        store.acquire_lease(&lease(b, 90_000), t(60_000)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.renew_lease(&lease(a, 99_000)).map_err(|e| e.kind),
        Err(PortErrorKind::Conflict)
    );
    store.release_lease("test", a).unwrap(); // not a's: no-op
    assert_eq!(store.lease("test").unwrap().run, b);
    store.release_lease("test", b).unwrap();
    assert_eq!(store.lease("test"), None);
    // A run kept in another store (`ferry step`'s split store) leases here too.
    assert_eq!(
        store
            .acquire_lease(&lease(RunId(77), 1), t(0))
            .map_err(|e| e.kind),
        Ok(Ok(()))
    );
    assert_eq!(store.lease_grants().len(), 4);
}

fn request(env: &str, version: &str, run: i64) -> DeployRequest {
    DeployRequest {
        environment: env.into(),
        version: version.into(),
        artifact: ferry_core::Artifact {
            digest: "sha256:0".into(),
            location: "mem://a".into(),
            size: 1,
        },
        env: BTreeMap::from([("FERRY_RUN_ID".to_string(), run.to_string())]),
        cwd: PathBuf::from("/w"),
        log: PathBuf::from("/l"),
    }
}

#[test]
fn the_fake_deployer_injects_its_faults_in_order() {
    let clock = Arc::new(FakeClock::new());
    let timeline = Arc::new(Timeline::new(Arc::new(Ticks::new())));
    let d = FakeDeployer::new("test", clock.clone(), timeline.clone());
    d.fail_transiently(1).fail_permanently(Some("no quota"));
    assert_eq!(
        d.deploy(&request("test", "v1", 1)).map_err(|e| e.kind),
        Err(PortErrorKind::Transient)
    );
    assert_eq!(
        d.deploy(&request("test", "v1", 1)).map_err(|e| e.kind),
        Err(PortErrorKind::Permanent)
    );
    d.fail_permanently(None);
    d.deploy(&request("test", "v1", 1)).unwrap();
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v1"));
    d.misreport(Some("v0"));
    assert_eq!(d.current_version().unwrap().as_deref(), Some("v0"));
    assert_eq!(d.running().as_deref(), Some("v1"));
    let e = timeline.entries();
    assert_eq!(e.len(), 3);
    assert_eq!(e[2].run, Some(RunId(1)));
    assert_eq!(e[2].end.since(e[2].start), Duration::from_secs(1));
    assert_eq!(clock.now(), START.plus(Duration::from_secs(3)));
    assert!(timeline.overlaps().is_empty());
}

#[test]
fn rollback_faults_are_apart_from_deploy_faults() {
    let clock = Arc::new(FakeClock::new());
    let timeline = Arc::new(Timeline::new(Arc::new(Ticks::new())));
    let d = FakeDeployer::new("test", clock, timeline.clone());
    d.deploy(&request("test", "v1", 1)).unwrap();
    d.fail_rollback_transiently(1)
        .fail_rollback_permanently(Some("release gone"));
    // Deployments are not affected by rollback faults.
    d.deploy(&request("test", "v2", 2)).unwrap();
    assert_eq!(
        d.rollback(&request("test", "v1", 2)).map_err(|e| e.kind),
        Err(PortErrorKind::Transient)
    );
    assert_eq!(
        d.rollback(&request("test", "v1", 2)).map_err(|e| e.kind),
        Err(PortErrorKind::Permanent)
    );
    assert_eq!(
        d.running().as_deref(),
        Some("v2"),
        "a failed rollback changes nothing"
    );
    d.fail_rollback_permanently(None);
    // Nor are rollbacks by deploy faults.
    d.fail_permanently(Some("no quota"));
    d.rollback(&request("test", "v1", 2)).unwrap();
    assert_eq!(d.running().as_deref(), Some("v1"));
    d.fail_health(Some(ferry_engine::ports::PortError::permanent("503")));
    assert!(d.healthy(Duration::from_secs(1)).is_err());
    assert_eq!(d.health_checks(), 1);
    let kinds: Vec<CallKind> = timeline.entries().iter().map(|e| e.kind).collect();
    use CallKind::{Deploy, Rollback};
    assert_eq!(kinds, [Deploy, Deploy, Rollback, Rollback, Rollback]);
    assert_eq!(timeline.rollbacks().len(), 3);
    assert_eq!(timeline.deploys_of_run(RunId(2)).len(), 1);
}

#[test]
fn the_timeline_sees_two_deployments_in_flight_into_one_environment() {
    let clock = Arc::new(FakeClock::new());
    let timeline = Arc::new(Timeline::new(Arc::new(Ticks::new())));
    let d = FakeDeployer::new("test", clock.clone(), timeline.clone());
    let other = d.clone();
    let once = AtomicBool::new(false);
    // While run 1's deployment sleeps on the clock, run 2 deploys into the same place.
    clock.on_advance(move |_| {
        if !once.swap(true, Ordering::SeqCst) {
            other.deploy(&request("test", "v2", 2)).unwrap();
        }
    });
    d.deploy(&request("test", "v1", 1)).unwrap();
    let o = timeline.overlaps();
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].runs, [Some(RunId(1)), Some(RunId(2))]);
}

#[test]
fn a_delivery_id_is_recorded_once_and_a_redelivery_gets_the_earlier_run() {
    let store = MemoryStore::new();
    assert_eq!(store.delivery("d-1").unwrap(), None);
    assert_eq!(
        store.record_delivery("d-1", Some(RunId(7)), t(10)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.record_delivery("d-1", Some(RunId(8)), t(20)).unwrap(),
        Err(Some(RunId(7)))
    );
    assert_eq!(store.delivery("d-1").unwrap(), Some(Some(RunId(7))));
    assert_eq!(store.record_delivery("d-2", None, t(30)).unwrap(), Ok(()));
    assert_eq!(
        store.record_delivery("d-2", Some(RunId(9)), t(40)).unwrap(),
        Err(None)
    );
    assert_eq!(store.delivery("d-2").unwrap(), Some(None));
}
