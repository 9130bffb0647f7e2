//! The notification outbox: the same contract on SQLite and on the testkit's MemoryStore
//! (a cursor per channel, each wanted event enqueued once, no old history for a new
//! channel, claims, the retry schedule, dead letters and `retry`), and the dispatcher
//! over it with a receiver that is down and comes back.

use crate::support::{T0, store};
use ferry_core::notify::{DeliveryPolicy, DeliveryStatus};
use ferry_core::window::Freeze;
use ferry_core::{Event, Timestamp};
use ferry_engine::notify::Dispatcher;
use ferry_engine::ports::{Attempt, Notifier, OutboxChannel, OutboxFilter, Store};
use ferry_testkit::{FakeClock, MemoryStore};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn event(store: &dyn Store, env: &str, at: Timestamp) {
    store
        .freeze(&Freeze {
            id: 0,
            environment: env.into(),
            from: at,
            until: Timestamp(at.0 + 3_600_000),
            reason: "quiet".into(),
            by: "alice".into(),
            lifted_at: None,
            lifted_by: None,
        })
        .unwrap();
}

fn channel(id: &str, kinds: &[&str]) -> OutboxChannel {
    OutboxChannel {
        id: id.into(),
        kinds: kinds.iter().map(|k| (*k).to_string()).collect(),
    }
}

fn contract(store: &dyn Store) {
    event(store, "old", T0);
    let hook = channel("hook", &["freeze_set"]);
    let other = channel("other", &["deployment_started"]);
    // First sight: the cursor starts at the newest event, nothing old is owed.
    assert_eq!(
        store
            .outbox_fill(&[hook.clone(), other.clone()], T0)
            .unwrap(),
        0
    );
    event(store, "a", T0);
    event(store, "b", T0);
    assert_eq!(
        store
            .outbox_fill(&[hook.clone(), other.clone()], T0)
            .unwrap(),
        2
    );
    // Exactly once: filling again adds nothing.
    assert_eq!(
        store
            .outbox_fill(&[hook.clone(), other.clone()], T0)
            .unwrap(),
        0
    );
    let counts = store.outbox_counts().unwrap();
    assert_eq!(counts.len(), 2);
    assert_eq!((counts[0].channel.as_str(), counts[0].pending), ("hook", 2));
    assert_eq!(
        (counts[1].channel.as_str(), counts[1].pending),
        ("other", 0)
    );

    // A claim reserves the channel's oldest delivery; the next one waits behind it
    // (in order), so a second claim at the same time gets nothing.
    let until = Timestamp(T0.0 + 60_000);
    let hook_ids = ["hook".to_string()];
    let first = store.outbox_claim(&hook_ids, T0, until, 5).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].event.environment.as_deref(), Some("a"));
    assert_eq!(first[0].status, DeliveryStatus::Pending);
    assert!(
        store
            .outbox_claim(&hook_ids, T0, until, 5)
            .unwrap()
            .is_empty()
    );
    // A claim that ran out (the sender died) is due again: at least once.
    let again = store.outbox_claim(&hook_ids, until, until, 5).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);

    // Three transient failures: a dead letter, retried automatically later; the next
    // delivery of the channel is then the head.
    let policy = DeliveryPolicy::default();
    let mut item = first[0].clone();
    for _ in 0..3 {
        let s = policy.settle(&item, &Attempt::Transient("refused".into()), T0);
        store.outbox_settle(item.id, &s, T0).unwrap();
        item = store
            .outbox(&OutboxFilter::default())
            .unwrap()
            .into_iter()
            .find(|i| i.id == item.id)
            .unwrap();
    }
    assert_eq!(item.status, DeliveryStatus::Dead);
    assert_eq!(item.last_error.as_deref(), Some("refused"));
    assert_eq!(item.next_at, Some(T0.plus(Duration::from_secs(60))));
    let dead = store
        .outbox(&OutboxFilter {
            status: Some(DeliveryStatus::Dead),
            ..OutboxFilter::default()
        })
        .unwrap();
    assert_eq!(dead.len(), 1);
    let later = Timestamp(T0.0 + 1_000);
    let second = store.outbox_claim(&hook_ids, later, until, 5).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].event.environment.as_deref(), Some("b"));
    // Delivering it makes the channel's dead letter due at once (the channel is back).
    let ok = policy.settle(&second[0], &Attempt::Delivered("200".into()), later);
    store.outbox_settle(second[0].id, &ok, later).unwrap();
    let again = store.outbox_claim(&hook_ids, later, until, 5).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, item.id);
    assert_eq!(again[0].status, DeliveryStatus::Dead);
    // A permanent failure waits for a person; `retry` makes it a fresh round.
    let s = policy.settle(&again[0], &Attempt::Permanent("550 no".into()), later);
    store.outbox_settle(item.id, &s, later).unwrap();
    assert!(
        store
            .outbox_claim(&hook_ids, Timestamp(i64::MAX / 2), until, 5)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.outbox_retry(Some("other"), &[], later).unwrap(), 0);
    assert_eq!(store.outbox_retry(None, &[], later).unwrap(), 1);
    let fresh = store.outbox_claim(&hook_ids, later, until, 5).unwrap();
    assert_eq!(
        (fresh[0].status, fresh[0].attempts),
        (DeliveryStatus::Pending, 0)
    );
    // Delivered ones are never retried.
    assert_eq!(store.outbox_retry(None, &[second[0].id], later).unwrap(), 0);
    let counts = store.outbox_counts().unwrap();
    assert_eq!(
        (counts[0].pending, counts[0].dead, counts[0].delivered),
        (1, 0, 1)
    );
}

#[test]
fn sqlite_keeps_the_outbox_contract() {
    let (_dir, s) = store();
    contract(&s);
}

#[test]
fn memory_store_keeps_the_same_contract() {
    contract(&MemoryStore::new());
}

/// A receiver that refuses while `down` and records what it accepted.
struct Receiver {
    id: String,
    kinds: Vec<String>,
    down: AtomicBool,
    got: Mutex<Vec<i64>>,
}

impl Notifier for Receiver {
    fn id(&self) -> &str {
        &self.id
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, _: &Event) -> Attempt {
        if self.down.load(Ordering::SeqCst) {
            return Attempt::Transient("connection refused".into());
        }
        self.got.lock().unwrap().push(event_id);
        Attempt::Delivered("200 OK".into())
    }
}

fn down_for_an_hour(store: Arc<dyn Store>) {
    let clock = Arc::new(FakeClock::starting_at(T0));
    let rx = Arc::new(Receiver {
        id: "hook".into(),
        kinds: vec!["freeze_set".into()],
        down: AtomicBool::new(true),
        got: Mutex::new(Vec::new()),
    });
    let d = Dispatcher::new(store.clone(), clock.clone(), vec![rx.clone()]);
    d.fill().unwrap();
    for i in 0..5 {
        event(store.as_ref(), &format!("e{i}"), clock_now(&clock));
    }
    // Flushing while the receiver is down gives up at once: nothing is delivered,
    // everything is still owed.
    assert_eq!(d.flush(Duration::from_secs(30)).unwrap(), 5);
    // An hour passes with the receiver down; the dispatcher keeps trying.
    for _ in 0..120 {
        clock.advance(Duration::from_secs(30));
        d.pass().unwrap();
    }
    assert!(rx.got.lock().unwrap().is_empty());
    // Each went dead in turn (in order, 3 attempts each), none lost.
    assert_eq!(d.dead().unwrap(), 5);
    assert_eq!(d.pending().unwrap(), 0);
    rx.down.store(false, Ordering::SeqCst);
    for _ in 0..40 {
        clock.advance(Duration::from_secs(30));
        d.pass().unwrap();
    }
    let mut got = rx.got.lock().unwrap().clone();
    got.sort_unstable();
    let before = got.len();
    got.dedup();
    assert_eq!(before, got.len(), "each event exactly once");
    assert_eq!(got.len(), 5);
    assert_eq!(d.dead().unwrap(), 0);
}

fn clock_now(c: &FakeClock) -> Timestamp {
    use ferry_engine::ports::Clock;
    c.now()
}

#[test]
fn a_receiver_down_for_an_hour_loses_nothing_sqlite() {
    let (_dir, s) = store();
    down_for_an_hour(Arc::new(s));
}

#[test]
fn a_receiver_down_for_an_hour_loses_nothing_memory() {
    down_for_an_hour(Arc::new(MemoryStore::new()));
}

/// A receiver that refuses its first `fail` calls.
struct Blip {
    fail: Mutex<u32>,
    got: Mutex<Vec<i64>>,
    kinds: Vec<String>,
}

impl Notifier for Blip {
    fn id(&self) -> &str {
        "gh"
    }
    fn kinds(&self) -> &[String] {
        &self.kinds
    }
    fn deliver(&self, event_id: i64, _: &Event) -> Attempt {
        let mut f = self.fail.lock().unwrap();
        if *f > 0 {
            *f -= 1;
            return Attempt::Transient("503".into());
        }
        self.got.lock().unwrap().push(event_id);
        Attempt::Delivered("201".into())
    }
}

fn in_order_after_a_blip(store: Arc<dyn Store>) {
    let clock = Arc::new(FakeClock::starting_at(T0));
    let rx = Arc::new(Blip {
        fail: Mutex::new(2),
        got: Mutex::new(Vec::new()),
        kinds: vec!["freeze_set".into()],
    });
    let d = Dispatcher::new(store.clone(), clock.clone(), vec![rx.clone()]);
    d.fill().unwrap();
    for i in 0..4 {
        event(store.as_ref(), &format!("e{i}"), T0);
    }
    // A flush stops at the failure (the receiver looks down) and leaves all four owed.
    assert_eq!(d.flush(Duration::from_secs(60)).unwrap(), 4);
    for _ in 0..20 {
        clock.advance(Duration::from_secs(1));
        d.pass().unwrap();
    }
    assert_eq!(d.pending().unwrap(), 0);
    let got = rx.got.lock().unwrap().clone();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(got.len(), 4);
    assert_eq!(
        got, sorted,
        "a channel gets its events in order, even after a blip"
    );
}

#[test]
fn a_blip_keeps_the_order_sqlite() {
    let (_dir, s) = store();
    in_order_after_a_blip(Arc::new(s));
}

#[test]
fn a_blip_keeps_the_order_memory() {
    in_order_after_a_blip(Arc::new(MemoryStore::new()));
}
