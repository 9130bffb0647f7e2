//! Leases: one run deploys into an environment at a time (DESIGN invariant 2).

use crate::support::{self, T0, start, store};
use ferry_core::{RunId, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Lease, PortErrorKind, Store};
use ferry_store::SqliteStore;

fn lease(run: RunId, until: i64) -> Lease {
    Lease {
        environment: "production".into(),
        run,
        holder: format!("ferry@host pid {}", run.0),
        expires_at: Timestamp(until),
    }
}

fn two_runs(store: &SqliteStore) -> (RunId, RunId) {
    let a = start(store, support::TWO_ENVIRONMENTS, T0).id();
    let b = start(store, support::TWO_ENVIRONMENTS, T0).id();
    (a, b)
}

#[test]
fn a_held_lease_keeps_other_runs_out_until_it_expires() {
    let (_d, store) = store();
    let (a, b) = two_runs(&store);
    assert_eq!(
        store.acquire_lease(&lease(a, 100), Timestamp(0)).unwrap(),
        Ok(())
    );
    assert_eq!(
        store.acquire_lease(&lease(b, 200), Timestamp(50)).unwrap(),
        Err(lease(a, 100))
    );
    assert_eq!(
        store.acquire_lease(&lease(b, 200), Timestamp(99)).unwrap(),
        Err(lease(a, 100))
    );
    // Expiry is inclusive: at expires_at the lease is free.
    assert_eq!(
        store.acquire_lease(&lease(b, 200), Timestamp(100)).unwrap(),
        Ok(())
    );
    assert_eq!(store.lease("production").unwrap(), Some(lease(b, 200)));
    // Other environments are independent.
    let staging = Lease {
        environment: "staging".into(),
        ..lease(a, 500)
    };
    assert_eq!(
        store.acquire_lease(&staging, Timestamp(100)).unwrap(),
        Ok(())
    );
}

#[test]
fn acquiring_again_refreshes_our_own_lease() {
    let (_d, store) = store();
    let (a, b) = two_runs(&store);
    store
        .acquire_lease(&lease(a, 100), Timestamp(0))
        .unwrap()
        .unwrap();
    let mut again = lease(a, 300);
    again.holder = "ferry@other pid 9".into();
    assert_eq!(store.acquire_lease(&again, Timestamp(90)).unwrap(), Ok(()));
    assert_eq!(store.lease("production").unwrap(), Some(again.clone()));
    assert_eq!(
        store.acquire_lease(&lease(b, 400), Timestamp(200)).unwrap(),
        Err(again)
    );
}

#[test]
fn renewing_extends_only_our_lease() {
    let (_d, store) = store();
    let (a, b) = two_runs(&store);
    store
        .acquire_lease(&lease(a, 100), Timestamp(0))
        .unwrap()
        .unwrap();
    store.renew_lease(&lease(a, 1_000)).unwrap();
    assert_eq!(store.lease("production").unwrap(), Some(lease(a, 1_000)));
    assert_eq!(
        store
            .acquire_lease(&lease(b, 2_000), Timestamp(999))
            .unwrap(),
        Err(lease(a, 1_000))
    );

    // A lost the lease (it expired and B took it): renewing is refused, and says who has it.
    store
        .acquire_lease(&lease(b, T0.0), Timestamp(1_000))
        .unwrap()
        .unwrap();
    let err = store.renew_lease(&lease(a, 3_000)).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!(
            "run {a} no longer holds the lease on production: run {b} (ferry@host pid {}) holds it until 2026-01-27T10:00:00Z",
            b.0
        )
    );
    assert_eq!(store.lease("production").unwrap(), Some(lease(b, T0.0)));
}

#[test]
fn renewing_a_released_lease_is_refused() {
    let (_d, store) = store();
    let (a, _) = two_runs(&store);
    store
        .acquire_lease(&lease(a, 100), Timestamp(0))
        .unwrap()
        .unwrap();
    store.release_lease("production", a).unwrap();
    let err = store.renew_lease(&lease(a, 200)).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Conflict);
    assert_eq!(
        err.message,
        format!("run {a} no longer holds the lease on production: nobody holds it")
    );
}

#[test]
fn releasing_someone_elses_lease_does_nothing() {
    let (_d, store) = store();
    let (a, b) = two_runs(&store);
    store
        .acquire_lease(&lease(a, 100), Timestamp(0))
        .unwrap()
        .unwrap();
    store.release_lease("production", b).unwrap();
    store.release_lease("staging", a).unwrap();
    assert_eq!(store.lease("production").unwrap(), Some(lease(a, 100)));
    store.release_lease("production", a).unwrap();
    assert_eq!(store.lease("production").unwrap(), None);
    assert_eq!(
        store.acquire_lease(&lease(b, 100), Timestamp(0)).unwrap(),
        Ok(())
    );
}

#[test]
fn a_lease_for_a_run_kept_in_another_store_is_taken_and_holds() {
    // `ferry step` keeps each stage's run in the workspace and its leases here.
    let (_d, store) = store();
    assert_eq!(
        store
            .acquire_lease(&lease(RunId(42), 100), Timestamp(0))
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        store
            .acquire_lease(&lease(RunId(43), 100), Timestamp(10))
            .unwrap(),
        Err(lease(RunId(42), 100))
    );
    store.release_lease("production", RunId(42)).unwrap();
    assert_eq!(store.lease("production").unwrap(), None);
}

#[test]
fn two_processes_contend_through_the_file() {
    let (dir, store) = store();
    let (a, b) = two_runs(&store);
    let other = SqliteStore::open(&dir.path().join(".ferry").join("ferry.db")).unwrap();
    // Many threads on two handles: exactly one run wins a fresh lease each round.
    for round in 0..20i64 {
        let env = format!("env-{round}");
        let winners: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (st, run) = if i % 2 == 0 { (&store, a) } else { (&other, b) };
                    let env = env.clone();
                    s.spawn(move || {
                        let l = Lease {
                            environment: env,
                            ..lease(run, 1_000)
                        };
                        (run, st.acquire_lease(&l, Timestamp(0)).unwrap())
                    })
                })
                .collect();
            let results: Vec<(RunId, Result<(), Lease>)> =
                handles.into_iter().map(|h| h.join().unwrap()).collect();
            let holder = store.lease(&env).unwrap().unwrap().run;
            // Only the holder's threads got the lease; everyone else was told who has it.
            for (run, r) in &results {
                match r {
                    Ok(()) => assert_eq!(*run, holder),
                    Err(h) => assert_eq!(h.run, holder),
                }
            }
            results.iter().filter(|(_, r)| r.is_ok()).count()
        });
        assert!(winners >= 1, "round {round}");
    }
}

#[test]
fn a_run_is_claimed_by_one_process_only() {
    let (_d, store) = store();
    let (a, _) = two_runs(&store);
    let dead = store.driver(a).unwrap().expect("a driver is recorded");
    assert!(store.claim_run(a, &dead, "host:2").unwrap());
    // The second claimer still names the dead process: it loses.
    assert!(!store.claim_run(a, &dead, "host:3").unwrap());
    assert_eq!(store.driver(a).unwrap().as_deref(), Some("host:2"));
    let err = store.claim_run(RunId(999), "x", "y").unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
}
