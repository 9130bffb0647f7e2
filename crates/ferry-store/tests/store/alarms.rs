//! Alarm states (recorded with or without a run) and pipeline files kept by digest.

use crate::support::{self, T0, start, store};
use ferry_core::alarm::AlarmState;
use ferry_core::{Change, Event, EventKind, RunId, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{EventFilter, PortErrorKind, Store};
use rusqlite::Connection;
use serde_json::json;

fn state(alarm: &str, s: AlarmState, reason: &str, at: i64) -> Change {
    Change::AlarmState {
        alarm: alarm.into(),
        state: s,
        reason: reason.into(),
        at: Timestamp(at),
    }
}

fn event(run: Option<RunId>, at: i64) -> Event {
    Event {
        at: Timestamp(at),
        kind: EventKind::AlarmStateChanged,
        run,
        environment: Some("production".into()),
        message: "alarm errors went into ALARM".into(),
        data: json!({"alarm": "errors", "state": "ALARM"}),
    }
}

#[test]
fn recording_an_alarm_keeps_its_last_state_and_its_events() {
    let (_d, store) = store();
    assert_eq!(store.alarm_state("errors").unwrap(), None);
    store
        .record_alarm(&[
            state("errors", AlarmState::Alarm, "status 503 in 12ms", 10),
            Change::Event(event(None, 10)),
        ])
        .unwrap();
    assert_eq!(
        store.alarm_state("errors").unwrap(),
        Some((
            AlarmState::Alarm,
            "status 503 in 12ms".into(),
            Timestamp(10)
        ))
    );
    // An event may also name a run, even one this store does not know.
    store
        .record_alarm(&[
            state("errors", AlarmState::Ok, "status 200 in 3ms", 20),
            state("latency", AlarmState::InsufficientData, "no data", 20),
            Change::Event(event(Some(RunId(999)), 20)),
        ])
        .unwrap();
    assert_eq!(
        store.alarm_state("errors").unwrap(),
        Some((AlarmState::Ok, "status 200 in 3ms".into(), Timestamp(20)))
    );
    assert_eq!(
        store.alarm_state("latency").unwrap().unwrap().0,
        AlarmState::InsufficientData
    );
    let events: Vec<Event> = store
        .events(&EventFilter::default())
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(events, [event(None, 10), event(Some(RunId(999)), 20)]);
}

#[test]
fn recording_an_alarm_refuses_other_changes_and_writes_nothing() {
    let (_d, store) = store();
    let err = store
        .record_alarm(&[
            state("errors", AlarmState::Alarm, "x", 1),
            Change::Event(event(None, 1)),
            Change::IncidentOpened {
                environment: "production".into(),
                deployment_id: "production#1".into(),
                reason: "x".into(),
                at: Timestamp(1),
            },
        ])
        .unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Permanent);
    assert_eq!(
        err.message,
        "an alarm can record only alarm states and events, not a `incident_opened` change"
    );
    assert_eq!(store.alarm_state("errors").unwrap(), None);
    assert!(store.events(&EventFilter::default()).unwrap().is_empty());
    assert_eq!(store.hold("production").unwrap(), None);
}

#[test]
fn a_runs_batch_records_alarm_states_too() {
    let (_d, store) = store();
    let run = start(&store, support::TWO_ENVIRONMENTS, T0).id();
    store
        .apply(
            run,
            &[state(
                "staging-health",
                AlarmState::Alarm,
                "connection refused",
                5,
            )],
        )
        .unwrap();
    assert_eq!(
        store.alarm_state("staging-health").unwrap(),
        Some((AlarmState::Alarm, "connection refused".into(), Timestamp(5)))
    );
}

#[test]
fn an_alarm_state_this_ferry_cannot_read_is_named() {
    let (dir, store) = store();
    store
        .record_alarm(&[state("errors", AlarmState::Alarm, "x", 1)])
        .unwrap();
    Connection::open(dir.path().join(".ferry").join("ferry.db"))
        .unwrap()
        .execute("UPDATE alarm_states SET state = 'PANIC'", [])
        .unwrap();
    let err = store.alarm_state("errors").unwrap_err();
    assert_eq!(err.kind, PortErrorKind::Unavailable);
    assert!(
        err.message.contains("holds `PANIC` in alarm_states.state"),
        "{err}"
    );
}

#[test]
fn a_config_is_kept_once_under_its_digest() {
    let (_d, store) = store();
    assert_eq!(store.config("sha256:aa").unwrap(), None);
    store
        .put_config("sha256:aa", support::TWO_ENVIRONMENTS)
        .unwrap();
    assert_eq!(
        store.config("sha256:aa").unwrap().as_deref(),
        Some(support::TWO_ENVIRONMENTS)
    );
    // Putting it again is a no-op (the digest names the text).
    store.put_config("sha256:aa", "something else").unwrap();
    assert_eq!(
        store.config("sha256:aa").unwrap().as_deref(),
        Some(support::TWO_ENVIRONMENTS)
    );
    store.put_config("sha256:bb", "").unwrap();
    assert_eq!(store.config("sha256:bb").unwrap().as_deref(), Some(""));
}
