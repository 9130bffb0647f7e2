//! Incidents: an environment held for a person after both rollback levels failed, at
//! most one open per environment, closed by `resolve` (which appends an event of no run).

use crate::support::{self, T0, start, store};
use ferry_core::{Change, EventKind, RunId, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, Incident, PortErrorKind, Store};
use ferry_store::SqliteStore;

fn opened(env: &str, deployment: &str, reason: &str, at: i64) -> Change {
    Change::IncidentOpened {
        environment: env.into(),
        deployment_id: deployment.into(),
        reason: reason.into(),
        at: Timestamp(at),
    }
}

fn a_run(store: &SqliteStore) -> RunId {
    start(store, support::TWO_ENVIRONMENTS, T0).id()
}

#[test]
fn an_opened_incident_holds_its_environment_only() {
    let (_d, store) = store();
    let run = a_run(&store);
    assert_eq!(store.hold("production").unwrap(), None);
    store
        .apply(
            run,
            &[opened(
                "production",
                "production#9",
                "automated rollback failed: boom",
                10,
            )],
        )
        .unwrap();
    let held = store.hold("production").unwrap().unwrap();
    assert_eq!(
        held,
        Incident {
            id: held.id,
            environment: "production".into(),
            deployment_id: "production#9".into(),
            reason: "automated rollback failed: boom".into(),
            opened_at: Timestamp(10),
            resolved_at: None,
            resolved_by: None,
        }
    );
    assert_eq!(store.hold("staging").unwrap(), None);
}

#[test]
fn a_second_incident_in_a_held_environment_keeps_the_first() {
    let (_d, store) = store();
    let run = a_run(&store);
    store
        .apply(run, &[opened("production", "production#1", "first", 1)])
        .unwrap();
    let first = store.hold("production").unwrap().unwrap();
    // In the same batch and in a later one: no error, no second incident.
    store
        .apply(
            run,
            &[
                opened("production", "production#2", "second", 2),
                opened("staging", "staging#2", "other env", 2),
                opened("production", "production#3", "third", 3),
            ],
        )
        .unwrap();
    assert_eq!(store.hold("production").unwrap(), Some(first));
    assert_eq!(store.hold("staging").unwrap().unwrap().reason, "other env");
}

#[test]
fn resolving_closes_the_incident_and_records_an_event_of_no_run() {
    let (_d, store) = store();
    let run = a_run(&store);
    store
        .apply(
            run,
            &[opened(
                "production",
                "production#1",
                "automated rollback failed: x",
                1,
            )],
        )
        .unwrap();
    let open = store.hold("production").unwrap().unwrap();
    let at = Timestamp(T0.0 + 5_000);
    let closed = store.resolve("production", "alice", at).unwrap();
    assert_eq!(
        closed,
        Incident {
            resolved_at: Some(at),
            resolved_by: Some("alice".into()),
            ..open.clone()
        }
    );
    assert_eq!(store.hold("production").unwrap(), None);

    let events = store
        .events(&EventFilter {
            environment: Some("production".into()),
            ..Default::default()
        })
        .unwrap();
    let (_, e) = events.last().unwrap();
    assert_eq!(e.kind, EventKind::IncidentResolved);
    assert_eq!(e.run, None);
    assert_eq!(e.at, at);
    assert_eq!(e.environment.as_deref(), Some("production"));
    assert_eq!(e.data["event"], "incident_resolved");
    assert_eq!(e.data["incidentId"], open.id);
    assert_eq!(e.data["resolvedBy"], "alice");
    assert_eq!(e.data["timestamp"], "2026-01-27T10:00:05Z");
    assert!(e.message.contains("resolved by alice"), "{}", e.message);
    // Not one of the run's events.
    let of_run = store
        .events(&EventFilter {
            run: Some(run),
            ..Default::default()
        })
        .unwrap();
    assert!(
        of_run
            .iter()
            .all(|(_, e)| e.kind != EventKind::IncidentResolved)
    );

    // Once resolved, a new failure opens a new incident.
    store
        .apply(run, &[opened("production", "production#2", "again", 9)])
        .unwrap();
    let again = store.hold("production").unwrap().unwrap();
    assert!(again.id > open.id);
    assert_eq!(again.reason, "again");
}

#[test]
fn resolving_an_environment_without_an_open_incident_is_not_found() {
    let (_d, store) = store();
    let err = store.resolve("production", "alice", T0).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    assert_eq!(err.message, "environment production has no open incident");

    let run = a_run(&store);
    store
        .apply(run, &[opened("production", "production#1", "x", 1)])
        .unwrap();
    store.resolve("production", "alice", T0).unwrap();
    let events = store.events(&EventFilter::default()).unwrap().len();
    let err = store.resolve("production", "bob", T0).unwrap_err();
    assert_eq!(err.kind, PortErrorKind::NotFound);
    // The failed resolve recorded nothing.
    assert_eq!(store.events(&EventFilter::default()).unwrap().len(), events);
}

#[test]
fn concurrent_resolvers_close_the_incident_once() {
    let (dir, store) = store();
    let path = dir.path().join(".ferry").join("ferry.db");
    let run = a_run(&store);
    store
        .apply(run, &[opened("production", "production#1", "x", 1)])
        .unwrap();
    let handles: Vec<SqliteStore> = (0..4).map(|_| SqliteStore::open(&path).unwrap()).collect();
    let ok = std::thread::scope(|s| {
        let joins: Vec<_> = (0..8)
            .map(|i| {
                let st = &handles[i % handles.len()];
                s.spawn(move || st.resolve("production", &format!("person-{i}"), T0).is_ok())
            })
            .collect();
        joins
            .into_iter()
            .map(|j| j.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(ok, 1);
    let resolved = store
        .events(&EventFilter::default())
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.kind == EventKind::IncidentResolved)
        .count();
    assert_eq!(resolved, 1);
}
