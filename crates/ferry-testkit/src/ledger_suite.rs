//! The [`Ledger`] conformance suite: one set of checks every ledger passes the same way
//! (the SQLite store, [`MemoryStore`](crate::store::MemoryStore), the DynamoDB ledger of
//! `ferry-aws` on moto). Each check uses its own environment names, so one table can
//! serve them all.

use ferry_core::Change;
use ferry_core::rollback::{RollbackRecord, RollbackStatus, Trigger};
use ferry_core::window::Freeze;
use ferry_core::{DeploymentRecord, DeploymentStatus, RunId, Timestamp};
use ferry_engine::ports::{Lease, Ledger, PortErrorKind};
use std::sync::{Arc, Barrier};

/// A deployment record of `env` started at `start`.
pub fn deployment(
    env: &str,
    start: i64,
    version: &str,
    status: DeploymentStatus,
) -> DeploymentRecord {
    DeploymentRecord {
        deployment_id: format!("{env}#{start}"),
        environment: env.into(),
        version: version.into(),
        status,
        start_time: start,
        end_time: (status != DeploymentStatus::InProgress).then_some(start + 10),
        infrastructure_changed: false,
        commit_message: format!("commit {version}"),
        commit_author: "ada".into(),
        pipeline_execution_id: format!("run-{start}"),
        unit_tests_passed: true,
        integration_tests_passed: true,
        e2e_tests_passed: true,
        coverage_percentage: 81.5,
        rollback_reason: None,
        rollback_level: None,
        rollback_time: None,
        artifact_location: format!("s3://artifacts/{version}.tar"),
        expires_at: start / 1000 + 90 * 86_400,
        run_id: RunId(-1),
        artifact_digest: "sha256:aa".into(),
        previous_version: None,
        config_digest: None,
        template_digests: Default::default(),
        rollback_unsafe: false,
        rollback_unsafe_reason: None,
    }
}

/// Runs every check; `prefix` makes the environment names unique (a shared table).
pub fn run_all(ledger: &dyn Ledger, prefix: &str) {
    records_round_trip(ledger, &format!("{prefix}rt"));
    last_known_good(ledger, &format!("{prefix}lkg"));
    lease_rules(ledger, &format!("{prefix}lease"));
    lease_take_over(ledger, &format!("{prefix}takeover"));
    rollback_claims(ledger, &format!("{prefix}claim"));
    freezes_and_lifting(ledger, &format!("{prefix}freeze"));
    incidents_and_resolving(ledger, &format!("{prefix}incident"));
}

/// A recorded deployment reads back equal, newest first; recording it again replaces it.
pub fn records_round_trip(ledger: &dyn Ledger, env: &str) {
    let a = deployment(env, 1_000, "aaa", DeploymentStatus::Succeeded);
    let mut b = deployment(env, 2_000, "bbb", DeploymentStatus::InProgress);
    ledger.record_deployment(&a).expect("record a");
    ledger.record_deployment(&b).expect("record b");
    let got = ledger.deployments(Some(env), 10).expect("deployments");
    assert_eq!(got, vec![b.clone(), a.clone()]);
    assert_eq!(
        ledger.latest_deployment(env).expect("latest"),
        Some(b.clone())
    );
    b.status = DeploymentStatus::Failed;
    b.end_time = Some(2_500);
    ledger.record_deployment(&b).expect("record b again");
    assert_eq!(
        ledger.deployments(Some(env), 1).expect("one"),
        vec![b.clone()]
    );
    assert!(
        ledger
            .deployments(None, 100_000)
            .expect("all")
            .iter()
            .any(|d| d == &a)
    );
    assert_eq!(ledger.current_deployment(env).expect("current"), Some(b));
}

/// Seed Property 6: the last known good is the newest `succeeded` deployment, whatever
/// came after it (failed, in progress, rolled back), and none when none succeeded.
pub fn last_known_good(ledger: &dyn Ledger, env: &str) {
    assert_eq!(ledger.last_known_good(env).expect("empty"), None);
    ledger
        .record_deployment(&deployment(env, 1_000, "v1", DeploymentStatus::Failed))
        .expect("v1");
    assert_eq!(ledger.last_known_good(env).expect("only failed"), None);
    let v2 = deployment(env, 2_000, "v2", DeploymentStatus::Succeeded);
    let v3 = deployment(env, 3_000, "v3", DeploymentStatus::Succeeded);
    for d in [&v3, &v2] {
        ledger.record_deployment(d).expect("record");
    }
    let mut v4 = deployment(env, 4_000, "v4", DeploymentStatus::RolledBack);
    v4.rollback_reason = Some("alarm".into());
    ledger.record_deployment(&v4).expect("v4");
    ledger
        .record_deployment(&deployment(env, 5_000, "v5", DeploymentStatus::InProgress))
        .expect("v5");
    // Another environment's newer success does not count.
    ledger
        .record_deployment(&deployment(
            &format!("{env}-other"),
            9_000,
            "vx",
            DeploymentStatus::Succeeded,
        ))
        .expect("other");
    assert_eq!(ledger.last_known_good(env).expect("lkg"), Some(v3.clone()));
    // The rolled-back one is not current; the in-progress one is.
    assert_eq!(
        ledger
            .current_deployment(env)
            .expect("current")
            .map(|d| d.version),
        Some("v5".to_string())
    );
}

fn lease(env: &str, run: i64, holder: &str, expires: i64) -> Lease {
    Lease {
        environment: env.into(),
        run: RunId(run),
        holder: holder.into(),
        expires_at: Timestamp(expires),
    }
}

/// DESIGN invariant 2: one holder at a time; the holder may take it again and renew it;
/// an expired lease is taken over; a released one is free; of several threads racing for
/// a free lease exactly one wins and the others see the winner.
pub fn lease_rules(ledger: &dyn Ledger, env: &str) {
    let mine = lease(env, -1, "a:1", 10_000);
    assert_eq!(
        ledger.acquire_lease(&mine, Timestamp(1_000)).expect("take"),
        Ok(())
    );
    assert_eq!(
        ledger
            .acquire_lease(&mine, Timestamp(1_001))
            .expect("again"),
        Ok(())
    );
    let theirs = lease(env, -2, "b:2", 20_000);
    assert_eq!(
        ledger
            .acquire_lease(&theirs, Timestamp(2_000))
            .expect("held"),
        Err(mine.clone())
    );
    let err = ledger.renew_lease(&theirs).expect_err("not theirs");
    assert_eq!(err.kind, PortErrorKind::Conflict);
    ledger
        .renew_lease(&lease(env, -1, "a:1", 15_000))
        .expect("renew");
    // Expired: taken over.
    assert_eq!(
        ledger
            .acquire_lease(&theirs, Timestamp(15_000))
            .expect("expired"),
        Ok(())
    );
    // Releasing someone else's lease does nothing.
    ledger.release_lease(env, RunId(-1)).expect("no-op");
    assert!(
        ledger
            .acquire_lease(&mine, Timestamp(16_000))
            .expect("still theirs")
            .is_err()
    );
    ledger.release_lease(env, RunId(-2)).expect("release");
    assert_eq!(
        ledger
            .acquire_lease(&mine, Timestamp(16_000))
            .expect("free"),
        Ok(())
    );
    ledger.release_lease(env, RunId(-1)).expect("release mine");
}

/// Taking over the lease of a holder judged gone is a compare-and-swap on the lease as
/// read: of two processes that read the same dead holder, the first takes it over and
/// the second (whose read is now stale) sees the first, even though the lease it replaces
/// had not expired.
pub fn lease_take_over(ledger: &dyn Ledger, env: &str) {
    let dead = lease(env, -7, "lambda:gone/until=1000", 600_000);
    assert_eq!(
        ledger.acquire_lease(&dead, Timestamp(1_000)).expect("take"),
        Ok(())
    );
    let first = lease(env, 41, "build-1:1@5", 60_000);
    let second = lease(env, -8, "lambda:retry/until=900000", 700_000);
    assert_eq!(
        ledger.take_over_lease(&first, &dead).expect("take over"),
        Ok(())
    );
    assert_eq!(
        ledger
            .take_over_lease(&second, &dead)
            .expect("stale take over"),
        Err(first.clone()),
        "the second sees the first"
    );
    // The first holds it as its own: it renews it and lets it go.
    ledger.renew_lease(&first).expect("renew");
    ledger.release_lease(env, RunId(41)).expect("release");
    // Nobody holds it: a take-over on a stale read simply takes it.
    assert_eq!(
        ledger.take_over_lease(&second, &dead).expect("free"),
        Ok(())
    );
    ledger.release_lease(env, RunId(-8)).expect("release");
}

/// The take-over race with real threads: `n` callers that all judged the same holder
/// gone take its (unexpired) lease over at once; exactly one wins and every loser sees
/// the winner's lease.
pub fn take_over_race(ledger: Arc<dyn Ledger>, env: &str, n: usize) {
    let gone = lease(env, -9, "lambda:gone/until=1", 900_000);
    assert_eq!(
        ledger.acquire_lease(&gone, Timestamp(1)).expect("take"),
        Ok(())
    );
    one_winner(ledger, env, n, -20, move |l, want| {
        l.take_over_lease(want, &gone).expect("take over")
    });
}

/// The lease race with real threads: of `n` callers exactly one wins and every loser
/// sees the winner's lease. `ledger` is shared.
pub fn lease_race(ledger: Arc<dyn Ledger>, env: &str, n: usize) {
    one_winner(ledger, env, n, -10, |l, want| {
        l.acquire_lease(want, Timestamp(1)).expect("acquire")
    });
}

/// `n` threads, each with a lease of its own (runs `first_run`, `first_run - 1`, …),
/// call `take` at once: exactly one wins and every loser sees the winner's lease.
fn one_winner(
    ledger: Arc<dyn Ledger>,
    env: &str,
    n: usize,
    first_run: i64,
    take: impl Fn(&dyn Ledger, &Lease) -> Result<(), Lease> + Send + Sync + 'static,
) {
    let barrier = Arc::new(Barrier::new(n));
    let take = Arc::new(take);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (ledger, barrier, take) = (ledger.clone(), barrier.clone(), take.clone());
            let want = lease(env, first_run - i as i64, &format!("h:{i}"), 100_000);
            std::thread::spawn(move || {
                barrier.wait();
                let got = take(&*ledger, &want);
                (want, got)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let winners: Vec<&Lease> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(w, _)| w)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    for (_, r) in &results {
        if let Err(seen) = r {
            assert_eq!(seen, winners[0], "a loser sees the winner");
        }
    }
}

fn record(d: &DeploymentRecord, holder: &str) -> RollbackRecord {
    RollbackRecord::start(
        d,
        "alarm",
        Trigger::Alarm {
            name: "errors".into(),
        },
        holder,
        Timestamp(5_000),
    )
}

/// Seed Property 2: the first claim wins; a second claim writes nothing and returns the
/// first record; updates need a claim; the outcome reads back.
pub fn rollback_claims(ledger: &dyn Ledger, env: &str) {
    let bad = deployment(env, 1_000, "bad", DeploymentStatus::Failed);
    assert_eq!(ledger.rollback(&bad.deployment_id).expect("none"), None);
    let mut first = record(&bad, "a:1");
    let err = ledger.update_rollback(&first).expect_err("unclaimed");
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(ledger.claim_rollback(&first).expect("claim"), Ok(()));
    let second = record(&bad, "b:2");
    assert_eq!(
        ledger.claim_rollback(&second).expect("second"),
        Err(first.clone())
    );
    first.status = RollbackStatus::Succeeded;
    first.to_version = Some("good".into());
    first.ended_at = Some(Timestamp(6_000));
    ledger.update_rollback(&first).expect("update");
    assert_eq!(
        ledger.rollback(&bad.deployment_id).expect("read"),
        Some(first.clone())
    );
    assert_eq!(ledger.claim_rollback(&second).expect("third"), Err(first));
}

/// The rollback claim race with real threads: exactly one claimer wins, every loser gets
/// the winner's record.
pub fn claim_race(ledger: Arc<dyn Ledger>, env: &str, n: usize) {
    let bad = deployment(env, 1_000, "bad", DeploymentStatus::Failed);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (ledger, barrier, bad) = (ledger.clone(), barrier.clone(), bad.clone());
            std::thread::spawn(move || {
                let rec = record(&bad, &format!("h:{i}"));
                barrier.wait();
                (rec.clone(), ledger.claim_rollback(&rec).expect("claim"))
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    for (_, r) in &results {
        if let Err(seen) = r {
            assert_eq!(seen, &winners[0].0);
        }
    }
}

fn a_freeze(env: &str, from: i64, until: i64, reason: &str) -> Freeze {
    Freeze {
        id: 0,
        environment: env.into(),
        from: Timestamp(from),
        until: Timestamp(until),
        reason: reason.into(),
        by: "ada".into(),
        lifted_at: None,
        lifted_by: None,
    }
}

/// Freezes (DESIGN's deployment windows; the ones a rollback sets for a rollback-unsafe
/// deployment): a recorded freeze is listed, oldest first, until its `until` or until
/// it is lifted; lifting takes every open freeze of that environment only, and lifting
/// an environment with none is NotFound.
pub fn freezes_and_lifting(ledger: &dyn Ledger, env: &str) {
    let other = format!("{env}-other");
    assert_eq!(
        ledger.freezes(Some(env), Timestamp(0)).expect("none"),
        vec![]
    );
    let a = ledger
        .freeze(&a_freeze(env, 1_000, 50_000, "release week"))
        .expect("freeze a");
    let b = ledger
        .freeze(&a_freeze(env, 2_000, 9_000, "schema change"))
        .expect("freeze b");
    ledger
        .freeze(&a_freeze(&other, 1_000, 50_000, "elsewhere"))
        .expect("freeze other");
    assert_eq!((a.lifted_at, b.lifted_at), (None, None));
    let at = |t: i64| {
        ledger
            .freezes(Some(env), Timestamp(t))
            .expect("freezes")
            .into_iter()
            .map(|f| f.reason)
            .collect::<Vec<_>>()
    };
    assert_eq!(at(3_000), vec!["release week", "schema change"]);
    // Past its `until`, a freeze is over.
    assert_eq!(at(9_000), vec!["release week"]);
    let all = ledger.freezes(None, Timestamp(3_000)).expect("all");
    assert!(all.iter().any(|f| f.environment == other), "{all:?}");
    assert!(all.iter().filter(|f| f.environment == *env).count() == 2);

    let lifted = ledger
        .unfreeze(env, "grace", Timestamp(4_000))
        .expect("unfreeze");
    assert_eq!(lifted.len(), 2, "{lifted:?}");
    for f in &lifted {
        assert_eq!(f.lifted_at, Some(Timestamp(4_000)));
        assert_eq!(f.lifted_by.as_deref(), Some("grace"));
        assert_eq!(f.environment, env);
    }
    assert_eq!(at(4_000), Vec::<String>::new());
    // Before it was lifted, it still held (the freezes as they were then).
    assert_eq!(at(3_999), vec!["release week", "schema change"]);
    // The other environment keeps its freeze.
    assert_eq!(
        ledger
            .freezes(Some(&other), Timestamp(4_000))
            .expect("other")
            .len(),
        1
    );
    let err = ledger
        .unfreeze(env, "grace", Timestamp(5_000))
        .expect_err("nothing left to lift");
    assert_eq!(err.kind, PortErrorKind::NotFound, "{err}");
    assert!(err.message.contains(env), "{err}");
}

/// Incidents: a rollback's `IncidentOpened` holds the environment; resolving closes it
/// (who, when) and the environment is free; resolving again (or an environment never
/// held) is NotFound; a later incident holds it again.
pub fn incidents_and_resolving(ledger: &dyn Ledger, env: &str) {
    let open = |at: i64, deployment: &str| {
        ledger
            .record_rollback(
                RunId(-7),
                &[Change::IncidentOpened {
                    environment: env.into(),
                    deployment_id: deployment.into(),
                    reason: "the rollback failed".into(),
                    at: Timestamp(at),
                }],
            )
            .expect("open an incident")
    };
    assert_eq!(ledger.hold(env).expect("hold"), None);
    let err = ledger
        .resolve(env, "ada", Timestamp(500))
        .expect_err("nothing to resolve");
    assert_eq!(err.kind, PortErrorKind::NotFound, "{err}");
    assert!(err.message.contains(env), "{err}");

    open(1_000, &format!("{env}#1000"));
    let held = ledger.hold(env).expect("hold").expect("held");
    assert_eq!(held.deployment_id, format!("{env}#1000"));
    assert_eq!(held.opened_at, Timestamp(1_000));
    let resolved = ledger
        .resolve(env, "ada", Timestamp(2_000))
        .expect("resolve");
    assert_eq!(resolved.resolved_at, Some(Timestamp(2_000)));
    assert_eq!(resolved.resolved_by.as_deref(), Some("ada"));
    assert_eq!(resolved.deployment_id, held.deployment_id);
    assert_eq!(ledger.hold(env).expect("hold"), None);
    let err = ledger
        .resolve(env, "ada", Timestamp(2_500))
        .expect_err("already resolved");
    assert_eq!(err.kind, PortErrorKind::NotFound, "{err}");

    open(3_000, &format!("{env}#3000"));
    assert_eq!(
        ledger.hold(env).expect("hold").map(|i| i.deployment_id),
        Some(format!("{env}#3000"))
    );
    ledger
        .resolve(env, "bob", Timestamp(4_000))
        .expect("resolve the second");
    assert_eq!(ledger.hold(env).expect("hold"), None);
}
