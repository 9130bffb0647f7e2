//! Deployment windows, freezes and break-glass overrides on the simulation: a run that
//! reaches a closed window is held (not failed), holds no lease while it waits, and goes
//! on by itself when the window opens, a freeze is lifted or a second person confirms an
//! override; cancelling still stops it; rollbacks are never held.
#![allow(clippy::unwrap_used)]

use ferry_core::rollback::{RollbackStatus, Trigger};
use ferry_core::window::{BreakGlass, Freeze};
use ferry_core::{DeploymentStatus, EventKind, RunId, RunStatus, Timestamp};
use ferry_engine::ports::Ledger as _;
use ferry_engine::ports::{Clock, PortErrorKind, Store};
use ferry_testkit::{Sim, invariants};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SHA: &str = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c";
const SHA2: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b";

/// `test`, then `production` with no production deploys from Friday 15:00 to Monday
/// 08:00 in Berlin.
const WEEKEND: &str = r#"
pipeline: tiny
build:
  steps:
    - name: build
      run: make
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh test
  - name: production
    windows:
      timezone: Europe/Berlin
      deny:
        - { from: "Fri 15:00", to: "Mon 08:00" }
    deploy:
      command:
        run: ./deploy.sh production
"#;

/// The same pipeline without windows (freezes and overrides only).
const PLAIN: &str = ferry_testkit::pipelines::TINY;

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

/// Milliseconds of a UTC civil time.
fn utc(y: i16, mo: i8, d: i8, h: i8, mi: i8) -> Timestamp {
    let dt = jiff::civil::date(y, mo, d).at(h, mi, 0, 0);
    let ts = jiff::tz::TimeZone::UTC
        .to_ambiguous_timestamp(dt)
        .compatible()
        .unwrap();
    Timestamp(ts.as_millisecond())
}

/// A world whose clock is moved to `at` (the fake clock starts on Tuesday 2026-01-27).
fn world_at(yaml: &str, at: Timestamp) -> Sim {
    let mut sim = Sim::new(yaml);
    sim.clock.advance(at.since(sim.clock.now()));
    // Look again every 10 minutes of fake time: the wake-up at the opening is exact.
    sim.settings.hold_poll = Duration::from_secs(600);
    sim
}

fn production_start(sim: &Sim, run: RunId) -> Timestamp {
    let d = sim
        .deployments_of(run)
        .into_iter()
        .find(|d| d.environment == "production")
        .expect("deployed to production");
    Timestamp(d.start_time)
}

fn assert_invariants(sim: &Sim, view: &ferry_core::run::RunView) {
    let mut bad = invariants::after_run(sim, view);
    bad.extend(invariants::no_overlap(sim));
    assert!(bad.is_empty(), "invariants violated:\n{}", bad.join("\n"));
}

/// Records whether production's lease was ever taken while the run was held.
fn watch_lease_while_held(sim: &Sim) -> Arc<AtomicBool> {
    let leased_while_held = Arc::new(AtomicBool::new(false));
    let (store, flag) = (sim.store.clone(), leased_while_held.clone());
    sim.clock.on_advance(move |_| {
        let events = store.all_events();
        let held = events
            .iter()
            .rev()
            .find(|e| matches!(e.event.kind, EventKind::RunHeld | EventKind::WindowOpened))
            .is_some_and(|e| e.event.kind == EventKind::RunHeld);
        if held && store.lease("production").is_some() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    leased_while_held
}

#[test]
fn a_run_held_friday_afternoon_deploys_by_itself_on_monday_at_eight() {
    // Friday 2026-01-30 16:00 in Berlin (15:00 UTC, winter time).
    let sim = world_at(WEEKEND, utc(2026, 1, 30, 15, 0));
    let leased = watch_lease_while_held(&sim);
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    // Monday 2026-02-02 08:00 in Berlin is 07:00 UTC: not a moment earlier, and at once.
    assert_eq!(production_start(&sim, view.id), utc(2026, 2, 2, 7, 0));
    let test = sim
        .deployments_of(view.id)
        .into_iter()
        .find(|d| d.environment == "test")
        .unwrap();
    assert!(
        Timestamp(test.start_time) < utc(2026, 1, 30, 16, 0),
        "test is not held"
    );
    let events = sim.events(view.id);
    let held: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::RunHeld)
        .collect();
    assert_eq!(held.len(), 1, "one hold, told once: {events:#?}");
    assert_eq!(held[0].data["cause"], "window");
    assert_eq!(held[0].data["opensAt"], "2026-02-02T07:00:00Z");
    assert!(
        held[0].message.contains("Fri 15:00 - Mon 08:00"),
        "{}",
        held[0].message
    );
    let opened: Vec<_> = events
        .iter()
        .filter(|e| e.kind == EventKind::WindowOpened)
        .collect();
    assert_eq!(opened.len(), 1);
    assert!(
        opened[0].message.contains("window opened"),
        "{}",
        opened[0].message
    );
    assert!(
        !leased.load(Ordering::SeqCst),
        "production's lease was held while the run waited for its window"
    );
    assert!(
        sim.observer
            .notes_of(view.id)
            .iter()
            .any(|n| n.contains("held before deploying to production")),
        "the person watching is told"
    );
    assert_invariants(&sim, &view);
}

#[test]
fn a_run_inside_the_window_is_not_held() {
    // Thursday noon.
    let sim = world_at(WEEKEND, utc(2026, 1, 29, 11, 0));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded);
    assert!(!sim.event_kinds(view.id).contains(&EventKind::RunHeld));
    assert!(production_start(&sim, view.id) < utc(2026, 1, 29, 12, 0));
}

fn freeze(sim: &Sim, days: u64) -> Freeze {
    let now = sim.clock.now();
    sim.store
        .freeze(&Freeze {
            id: 0,
            environment: "production".into(),
            from: now,
            until: now.plus(hours(24 * days)),
            reason: "end-of-year freeze".into(),
            by: "alice".into(),
            lifted_at: None,
            lifted_by: None,
        })
        .unwrap()
}

#[test]
fn a_freeze_lifted_early_lets_the_held_run_go_on() {
    let sim = world_at(PLAIN, utc(2026, 1, 28, 9, 0));
    freeze(&sim, 7);
    let lifted_at = sim.clock.now().plus(hours(3));
    let store = sim.store.clone();
    sim.clock.at(lifted_at, move || {
        store.unfreeze("production", "carol", lifted_at).unwrap();
    });
    let leased = watch_lease_while_held(&sim);
    let view = sim.run(SHA);

    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let start = production_start(&sim, view.id);
    assert!(start >= lifted_at, "deployed before the freeze was lifted");
    assert!(
        start <= lifted_at.plus(sim.settings.hold_poll),
        "noticed within one look"
    );
    let held = sim
        .events(view.id)
        .into_iter()
        .find(|e| e.kind == EventKind::RunHeld)
        .unwrap();
    assert_eq!(held.data["cause"], "freeze");
    assert!(held.message.contains("end-of-year freeze") && held.message.contains("alice"));
    let kinds: Vec<EventKind> = sim
        .store
        .all_events()
        .into_iter()
        .map(|e| e.event.kind)
        .collect();
    assert!(kinds.contains(&EventKind::FreezeSet) && kinds.contains(&EventKind::FreezeLifted));
    assert!(
        sim.store
            .freezes(Some("production"), sim.clock.now())
            .unwrap()
            .is_empty()
    );
    assert!(!leased.load(Ordering::SeqCst));
    assert_invariants(&sim, &view);
}

#[test]
fn a_freeze_that_ends_by_itself_releases_the_run_at_its_end() {
    let sim = world_at(PLAIN, utc(2026, 1, 28, 9, 0));
    let f = freeze(&sim, 2);
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded);
    assert_eq!(production_start(&sim, view.id), f.until);
}

#[test]
fn a_break_glass_override_needs_a_second_person_then_lets_the_run_through() {
    let sim = world_at(PLAIN, utc(2026, 1, 28, 9, 0));
    freeze(&sim, 7);
    let start = sim.clock.now();
    let (t_request, t_confirm) = (start.plus(hours(1)), start.plus(hours(2)));
    let refusals = Arc::new(Mutex::new(Vec::new()));
    {
        let store = sim.store.clone();
        sim.clock.at(t_request, move || {
            store
                .request_override(&BreakGlass {
                    id: 0,
                    run: RunId(1),
                    environment: "production".into(),
                    reason: "payment outage hotfix".into(),
                    requested_by: "alice".into(),
                    requested_at: t_request,
                    confirmed_by: None,
                    confirmed_at: None,
                })
                .unwrap();
        });
    }
    {
        let (store, refusals) = (sim.store.clone(), refusals.clone());
        sim.clock.at(t_confirm, move || {
            // The person who asked cannot be the second person.
            let err = store
                .confirm_override(RunId(1), "production", "alice", t_confirm)
                .unwrap_err();
            refusals.lock().unwrap().push(err);
            store
                .confirm_override(RunId(1), "production", "bob", t_confirm)
                .unwrap();
        });
    }
    let view = sim.run(SHA);
    assert_eq!(view.id, RunId(1));
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let deployed = production_start(&sim, view.id);
    assert!(deployed >= t_confirm && deployed <= t_confirm.plus(sim.settings.hold_poll));

    let refusal = refusals.lock().unwrap().pop().unwrap();
    assert_eq!(refusal.kind, PortErrorKind::Conflict);
    assert!(
        refusal.message.contains("cannot also confirm"),
        "{}",
        refusal.message
    );

    let events = sim.events(view.id);
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let pos = |k| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos(EventKind::RunHeld) < pos(EventKind::BreakGlassRequested));
    assert!(pos(EventKind::BreakGlassRequested) < pos(EventKind::BreakGlassConfirmed));
    assert!(pos(EventKind::BreakGlassConfirmed) < pos(EventKind::WindowOpened));
    // The request is noted on the hold, and the opening names the second person.
    assert!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::RunHeld)
            .any(|e| e.message.contains("waiting for a second person")),
        "{events:#?}"
    );
    let opened = events
        .iter()
        .find(|e| e.kind == EventKind::WindowOpened)
        .unwrap();
    assert!(
        opened.message.contains("confirmed by bob"),
        "{}",
        opened.message
    );
    let o = &sim.store.overrides(view.id).unwrap()[0];
    assert_eq!(o.requested_by, "alice");
    assert_eq!(o.confirmed_by.as_deref(), Some("bob"));
    assert_eq!(o.reason, "payment outage hotfix");
    // The freeze still holds every other run.
    assert_eq!(
        sim.store
            .freezes(Some("production"), sim.clock.now())
            .unwrap()
            .len(),
        1
    );
    assert_invariants(&sim, &view);
}

#[test]
fn cancelling_a_held_run_stops_it() {
    let sim = world_at(WEEKEND, utc(2026, 1, 30, 15, 0));
    sim.cancel_after(hours(5));
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Cancelled, "{:?}", view.reason);
    assert!(
        !sim.deployed_envs(view.id)
            .contains(&"production".to_string())
    );
    assert!(
        sim.clock.now() < utc(2026, 1, 31, 0, 0),
        "stopped soon after the cancel"
    );
}

#[test]
fn a_rollback_during_a_freeze_goes_ahead() {
    let sim = world_at(PLAIN, utc(2026, 1, 28, 9, 0));
    let a = sim.run(SHA);
    let b = sim.run(SHA2);
    assert_eq!(
        (a.status, b.status),
        (RunStatus::Succeeded, RunStatus::Succeeded)
    );
    freeze(&sim, 7);
    let current = sim
        .deployments_of(b.id)
        .into_iter()
        .find(|d| d.environment == "production")
        .unwrap();
    let rec = sim
        .engine()
        .roll_back(
            &current,
            "bad release",
            Trigger::Manual {
                by: "alice".into(),
                accept_data_loss: false,
            },
            None,
            None,
        )
        .unwrap();
    assert_eq!(rec.status, RollbackStatus::Succeeded, "{rec:#?}");
    assert_eq!(sim.deployer("production").running().as_deref(), Some(SHA));
    let after = sim.store.deployments(Some("production"), 1).unwrap();
    assert_eq!(after[0].status, DeploymentStatus::RolledBack);
}

#[test]
fn an_automatic_rollback_inside_a_closed_window_goes_ahead() {
    // An override let the run into production on Saturday; its deployment fails, and
    // the automatic rollback is not held by the window it is in.
    let sim = world_at(WEEKEND, utc(2026, 1, 29, 11, 0));
    let a = sim.run(SHA);
    assert_eq!(a.status, RunStatus::Succeeded);
    sim.clock
        .advance(utc(2026, 1, 31, 11, 0).since(sim.clock.now()));
    let now = sim.clock.now();
    let store = sim.store.clone();
    sim.clock.at(now.plus(Duration::from_secs(600)), move || {
        let req = BreakGlass {
            id: 0,
            run: RunId(2),
            environment: "production".into(),
            reason: "hotfix".into(),
            requested_by: "alice".into(),
            requested_at: now,
            confirmed_by: None,
            confirmed_at: None,
        };
        let _ = store.request_override(&req);
        let _ = store.confirm_override(RunId(2), "production", "bob", now);
    });
    sim.deployer("production").misreport(Some("something-else"));
    let b = sim.run(SHA2);
    assert_eq!(b.id, RunId(2));
    assert_eq!(b.status, RunStatus::Failed, "{:?}", b.reason);
    let rolled = sim
        .store
        .rollbacks(10)
        .unwrap()
        .into_iter()
        .find(|r| r.environment == "production")
        .expect("a rollback of production");
    assert!(
        rolled.started_at < utc(2026, 2, 2, 7, 0),
        "the rollback did not wait for Monday"
    );
}

#[test]
fn a_window_that_closes_while_the_run_waits_for_the_lease_holds_it_after_all() {
    // Friday 14:50 Berlin (13:50 UTC): the window is open, but someone else deploys to
    // production until 15:30 Berlin — by then the weekend's deny range has begun.
    let sim = world_at(WEEKEND, utc(2026, 1, 30, 13, 50));
    let other = ferry_engine::ports::Lease {
        environment: "production".into(),
        run: RunId(-99),
        holder: "elsewhere:1".into(),
        expires_at: utc(2026, 2, 10, 0, 0),
    };
    assert_eq!(
        sim.store.acquire_lease(&other, sim.clock.now()).unwrap(),
        Ok(())
    );
    let store = sim.store.clone();
    sim.clock.at(utc(2026, 1, 30, 14, 30), move || {
        store.release_lease("production", RunId(-99)).unwrap();
    });
    let view = sim.run(SHA);
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    assert_eq!(production_start(&sim, view.id), utc(2026, 2, 2, 7, 0));
    assert!(sim.store.lease("production").is_none());
    assert_invariants(&sim, &view);
}
