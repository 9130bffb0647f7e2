//! Freezes and break-glass overrides: the same contract on SQLite and on the testkit's
//! MemoryStore (each write with its event, the two-person rule, one override per run
//! and environment, lifted and ended freezes left out).

use crate::support::{T0, start, store};
use ferry_core::window::{BreakGlass, Freeze};
use ferry_core::{EventKind, RunId, Timestamp};
use ferry_engine::ports::{EventFilter, PortErrorKind, Store};

const YAML: &str = "pipeline: p\nbuild:\n  steps:\n    - name: b\n      run: make\nenvironments:\n  - name: production\n    deploy: {command: {run: ./deploy.sh}}\n";
const HOUR: i64 = 3_600_000;

fn freeze(env: &str, from: Timestamp, hours: i64, by: &str) -> Freeze {
    Freeze {
        id: 0,
        environment: env.into(),
        from,
        until: Timestamp(from.0 + hours * HOUR),
        reason: "quiet period".into(),
        by: by.into(),
        lifted_at: None,
        lifted_by: None,
    }
}

fn request(run: RunId, by: &str) -> BreakGlass {
    BreakGlass {
        id: 0,
        run,
        environment: "production".into(),
        reason: "hotfix".into(),
        requested_by: by.into(),
        requested_at: T0,
        confirmed_by: None,
        confirmed_at: None,
    }
}

fn kinds(store: &dyn Store) -> Vec<EventKind> {
    store
        .events(&EventFilter::default())
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.kind)
        .filter(|k| {
            matches!(
                k,
                EventKind::FreezeSet
                    | EventKind::FreezeLifted
                    | EventKind::BreakGlassRequested
                    | EventKind::BreakGlassConfirmed
            )
        })
        .collect()
}

/// The contract, on any store; `run` exists there.
fn contract(store: &dyn Store, run: RunId) {
    let a = store.freeze(&freeze("production", T0, 2, "alice")).unwrap();
    assert_eq!(a.id, 1);
    let b = store.freeze(&freeze("staging", T0, 1, "alice")).unwrap();
    assert_eq!(b.id, 2);
    assert_eq!(store.freezes(None, T0).unwrap(), vec![a.clone(), b.clone()]);
    assert_eq!(
        store.freezes(Some("production"), T0).unwrap(),
        vec![a.clone()]
    );
    // An ended freeze is left out.
    let later = Timestamp(T0.0 + HOUR);
    assert_eq!(store.freezes(None, later).unwrap(), vec![a.clone()]);

    let lifted = store
        .unfreeze("production", "carol", Timestamp(T0.0 + 10))
        .unwrap();
    assert_eq!(lifted.len(), 1);
    assert_eq!(lifted[0].lifted_by.as_deref(), Some("carol"));
    assert_eq!(lifted[0].lifted_at, Some(Timestamp(T0.0 + 10)));
    assert!(
        store
            .freezes(Some("production"), Timestamp(T0.0 + 10))
            .unwrap()
            .is_empty()
    );
    let e = store
        .unfreeze("production", "carol", Timestamp(T0.0 + 20))
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);
    assert!(e.message.contains("not frozen"), "{}", e.message);

    // Overrides: one per run and environment, confirmed by someone else, once.
    let e = store
        .confirm_override(run, "production", "bob", T0)
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);
    let o = store.request_override(&request(run, "alice")).unwrap();
    assert_eq!((o.id, o.confirmed_by.clone()), (1, None));
    let e = store.request_override(&request(run, "carol")).unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Conflict);
    assert!(
        e.message.contains("alice already requested"),
        "{}",
        e.message
    );
    let e = store
        .confirm_override(run, "production", "alice", T0)
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Conflict);
    assert!(e.message.contains("cannot also confirm"), "{}", e.message);
    let c = store
        .confirm_override(run, "production", "bob", later)
        .unwrap();
    assert_eq!(c.confirmed_by.as_deref(), Some("bob"));
    assert_eq!(c.confirmed_at, Some(later));
    let e = store
        .confirm_override(run, "production", "dave", later)
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::Conflict);
    assert!(
        e.message.contains("already confirmed by bob"),
        "{}",
        e.message
    );
    assert_eq!(store.overrides(run).unwrap(), vec![c]);
    assert!(store.overrides(RunId(run.0 + 100)).unwrap().is_empty());
    let e = store
        .request_override(&request(RunId(run.0 + 100), "alice"))
        .unwrap_err();
    assert_eq!(e.kind, PortErrorKind::NotFound);

    assert_eq!(
        kinds(store),
        [
            EventKind::FreezeSet,
            EventKind::FreezeSet,
            EventKind::FreezeLifted,
            EventKind::BreakGlassRequested,
            EventKind::BreakGlassConfirmed,
        ]
    );
}

#[test]
fn sqlite_keeps_the_freeze_and_break_glass_contract() {
    let (_d, store) = store();
    let run = start(&store, YAML, T0);
    contract(&store, run.id());
}

#[test]
fn the_memory_store_keeps_the_same_contract() {
    let store = ferry_testkit::MemoryStore::new();
    let (name, plan) = crate::support::plan(YAML);
    let id = store
        .create_run(&crate::support::new_run(&name, &plan, T0))
        .unwrap();
    contract(&store, id);
}
