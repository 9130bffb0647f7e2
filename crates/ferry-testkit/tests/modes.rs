//! Execution modes (DESIGN invariant 2, CodePipeline V2): many runs of one pipeline
//! driven at once, each on its own thread, in one simulated world; and runs taken up
//! again after their ferry process died (invariant 1).

use ferry_core::approval::Decision;
use ferry_core::{DeploymentStatus, EventKind, RunId, RunStatus, StepOutcome};
use ferry_engine::ports::{Clock, Observer, Store};
use ferry_testkit::{Sim, invariants};
use proptest::prelude::*;
use std::time::Duration;

const ENVS: [&str; 3] = ["test", "staging", "production"];

fn pipeline(mode: &str) -> String {
    format!(
        r#"
pipeline: burst
execution_mode: {mode}
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh test
    tests:
      - name: integration
        run: ./ci/integration.sh
  - name: staging
    deploy:
      command:
        run: ./deploy.sh staging
  - name: production
    approval:
      timeout: 1h
    deploy:
      command:
        run: ./deploy.sh production
"#
    )
}

fn sha(i: usize) -> String {
    format!("{i:02}{}", "c".repeat(38))
}

/// Queues `n` runs (run ids in commit order), then drives them all at once, each on its
/// own thread, starting `stagger[i]` fake seconds apart; returns their ids and views.
fn burst(mode: &str, n: usize, stagger: &[u64]) -> (Sim, Vec<RunId>) {
    let mut sim = Sim::new(&pipeline(mode));
    // The heartbeat runs at the real clock's pace: a lease as long as a fake day keeps
    // it from expiring under a paced fake clock (see `tests/props.rs`).
    sim.settings.lease_ttl = Duration::from_secs(24 * 3600);
    // One fake second is 200 µs of real time: the runs really overlap.
    sim.clock.pace(Some(5000));
    sim.approve_after("production", Duration::from_secs(3));
    let runs: Vec<_> = (0..n)
        .map(|i| {
            sim.source.ensure(&sha(i));
            sim.queue(&sha(i)).expect("queued")
        })
        .collect();
    let ids: Vec<RunId> = runs.iter().map(|r| r.id()).collect();
    std::thread::scope(|s| {
        for (i, run) in runs.into_iter().enumerate() {
            let sim = &sim;
            let delay = stagger.get(i).copied().unwrap_or(0);
            s.spawn(move || {
                std::thread::sleep(Duration::from_micros(200 * delay));
                sim.engine().drive(run).expect("driven")
            });
        }
    });
    (sim, ids)
}

/// What both modes promise: every run ended, no two deployments into one environment
/// overlapped, and the newest commit is what every environment runs.
fn common(sim: &Sim, ids: &[RunId]) -> Vec<String> {
    let mut bad = invariants::no_overlap(sim);
    for id in ids {
        let st = sim.stored_status(*id);
        if !st.is_some_and(|s| s.is_terminal()) {
            bad.push(format!("run {id} did not end: {st:?}"));
        }
    }
    let newest = sha(ids.len() - 1);
    for env in ENVS {
        let running = sim.deployer(env).running();
        if running.as_deref() != Some(newest.as_str()) {
            bad.push(format!(
                "{env} runs {running:?}, not the newest commit {newest}"
            ));
        }
    }
    bad
}

/// Deployments into each environment, in the order they started, as run ids.
fn deploy_order(sim: &Sim, env: &str) -> Vec<RunId> {
    let mut d: Vec<_> = sim
        .store
        .all_deployments()
        .into_iter()
        .filter(|d| d.record.environment == env)
        .collect();
    d.sort_by_key(|d| d.started_tick);
    d.into_iter().map(|d| d.record.run_id).collect()
}

fn queued_promises(sim: &Sim, ids: &[RunId]) -> Vec<String> {
    let mut bad = common(sim, ids);
    for id in ids {
        if sim.stored_status(*id) != Some(RunStatus::Succeeded) {
            bad.push(format!(
                "queued mode: run {id} ended {:?}",
                sim.stored_status(*id)
            ));
        }
    }
    for env in ENVS {
        let order = deploy_order(sim, env);
        if order != ids {
            bad.push(format!(
                "queued mode: deployments into {env} in the order {order:?}, not {ids:?}"
            ));
        }
    }
    bad
}

fn superseded_promises(sim: &Sim, ids: &[RunId]) -> Vec<String> {
    let mut bad = common(sim, ids);
    let newest = ids[ids.len() - 1];
    if sim.stored_status(newest) != Some(RunStatus::Succeeded) {
        bad.push(format!(
            "the newest run {newest} ended {:?}",
            sim.stored_status(newest)
        ));
    }
    for id in ids {
        match sim.stored_status(*id) {
            Some(RunStatus::Succeeded) => {}
            Some(RunStatus::Superseded) => {
                let ev = sim
                    .events(*id)
                    .into_iter()
                    .find(|e| e.kind == EventKind::RunSuperseded);
                let by = ev
                    .as_ref()
                    .and_then(|e| e.data["supersededBy"].as_i64())
                    .map(RunId);
                if by.is_none_or(|b| b <= *id) {
                    bad.push(format!(
                        "run {id} superseded by {by:?}, not by a newer run: {ev:?}"
                    ));
                }
            }
            other => bad.push(format!("superseded mode: run {id} ended {other:?}")),
        }
    }
    // Each environment's deployments go forward: never an older run after a newer one.
    for env in ENVS {
        let order = deploy_order(sim, env);
        if order.windows(2).any(|w| w[0] > w[1]) {
            bad.push(format!(
                "{env} went backwards: deployments of runs {order:?}"
            ));
        }
    }
    bad
}

#[test]
fn a_burst_in_queued_mode_deploys_every_run_in_order() {
    let (sim, ids) = burst("queued", 8, &[]);
    let bad = queued_promises(&sim, &ids);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_burst_in_superseded_mode_ends_with_the_newest_commit_and_supersedes_older_runs() {
    let (sim, ids) = burst("superseded", 8, &[]);
    let bad = superseded_promises(&sim, &ids);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let superseded = ids
        .iter()
        .filter(|id| sim.stored_status(**id) == Some(RunStatus::Superseded))
        .count();
    assert!(
        superseded > 0,
        "8 runs started together: some must be overtaken"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the number of runs and the moments they start: no two deployments into
    /// one environment overlap, the newest commit ends in every environment, and in
    /// `queued` mode deployments into an environment are in run order.
    #[test]
    fn bursts_keep_the_mode_promises(
        queued in any::<bool>(),
        n in 2usize..6,
        stagger in prop::collection::vec(0u64..40, 6),
    ) {
        let mode = if queued { "queued" } else { "superseded" };
        let (sim, ids) = burst(mode, n, &stagger);
        let bad = if queued {
            queued_promises(&sim, &ids)
        } else {
            superseded_promises(&sim, &ids)
        };
        prop_assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}

// --- Crash recovery -------------------------------------------------------------------

const DEAD: &str = "dead-host:1";

/// A run of `sha` driven by hand as a ferry process `DEAD` would have driven it (every
/// step passes, nothing is deployed for real), until it starts the first step of kind
/// `kind` in stage `stage`; then that process dies.
fn killed_at(sim: &Sim, sha: &str, stage: usize, kind: &str) -> RunId {
    sim.source.ensure(sha);
    let mut dead = sim.engine();
    dead.settings.holder = DEAD.to_string();
    // (`queue` tells the observer itself.)
    let mut run = dead.queue(sha, "sim", "sim").expect("queued");
    loop {
        let now = sim.clock.now();
        let ferry_core::Next::Step(r) = run.next() else {
            panic!("the run ended before the kill point");
        };
        let label = run.step_kind(r).label();
        let ch = if label == "deploy" {
            run.start_deploy(r, now, None, None)
        } else {
            run.start_step(r, now, None)
        };
        sim.store.apply(run.id(), &ch).expect("applied");
        sim.observer.changed(&run.view, &ch);
        if r.stage == stage && label == kind {
            break;
        }
        let ch = run.finish_step(r, StepOutcome::passed(), now);
        sim.store.apply(run.id(), &ch).expect("applied");
        sim.observer.changed(&run.view, &ch);
    }
    sim.liveness.kill(DEAD);
    run.id()
}

fn killed_during_test_deploy(sim: &Sim, sha: &str) -> RunId {
    killed_at(sim, sha, 1, "deploy")
}

#[test]
fn a_deploy_that_finished_before_the_crash_is_recorded_without_deploying_again() {
    let sim = Sim::new(&pipeline("superseded"));
    sim.approve_after("production", Duration::from_secs(3));
    let id = killed_during_test_deploy(&sim, &sha(1));
    // The deployer had finished: the environment runs the run's version.
    sim.deployer("test").set_current(Some(&sha(1)));
    let engine = sim.engine();
    assert_eq!(engine.orphans().expect("orphans"), vec![id]);
    let run = engine.resume(id).expect("resumed").expect("taken up");
    // A second process finds nothing to take up.
    assert!(engine.resume(id).expect("asked").is_none());
    let view = engine.drive(run).expect("driven");
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let mut bad = invariants::events_delivered(&sim);
    bad.extend(invariants::consistency(&sim, &view));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let into_test: Vec<_> = sim
        .timeline
        .deploys_of_run(id)
        .into_iter()
        .filter(|e| e.environment == "test")
        .collect();
    assert!(into_test.is_empty(), "deployed again: {into_test:?}");
    let kinds = sim.event_kinds(id);
    assert!(kinds.contains(&EventKind::RunResumed), "{kinds:?}");
    let test = sim
        .deployments_of(id)
        .into_iter()
        .find(|d| d.environment == "test")
        .expect("a deployment into test");
    assert_eq!(test.status, DeploymentStatus::Succeeded);
}

#[test]
fn a_deploy_whose_outcome_is_unknown_fails_and_is_rolled_back() {
    let sim = Sim::new(&pipeline("superseded"));
    sim.approve_after("production", Duration::from_secs(3));
    // An earlier good version in test.
    sim.deployer("test").set_current(Some(&sha(0)));
    let id = killed_during_test_deploy(&sim, &sha(1));
    let engine = sim.engine();
    let run = engine.resume(id).expect("resumed").expect("taken up");
    let view = engine.drive(run).expect("driven");
    assert_eq!(view.status, RunStatus::Failed);
    let mut bad = invariants::events_delivered(&sim);
    bad.extend(invariants::consistency(&sim, &view));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        view.reason.as_deref().unwrap_or("").contains("interrupted"),
        "{:?}",
        view.reason
    );
    assert!(
        sim.timeline.deploys_of_run(id).is_empty(),
        "never deployed by the resumed run"
    );
    let test = sim
        .deployments_of(id)
        .into_iter()
        .find(|d| d.environment == "test")
        .expect("a deployment into test");
    assert_ne!(test.status, DeploymentStatus::InProgress);
}

#[test]
fn an_approval_given_while_ferry_was_down_is_not_lost() {
    let sim = Sim::new(&pipeline("superseded"));
    let s = sha(1);
    sim.source.ensure(&s);
    let id = killed_at(&sim, &s, 3, "approval");
    // While it was down, a person approved.
    let now = sim.clock.now();
    let digest = sim
        .store
        .load_run(id)
        .expect("loaded")
        .artifact
        .map(|a| a.digest);
    let decision = Decision {
        approved: true,
        by: "approver@example.com".into(),
        reason: None,
        at: now,
        digest,
        void: None,
    };
    sim.store
        .decide(id, "production", &decision)
        .expect("decided");
    let engine = sim.engine();
    let run = engine.resume(id).expect("resumed").expect("taken up");
    let view = engine.drive(run).expect("driven");
    assert_eq!(view.status, RunStatus::Succeeded, "{:?}", view.reason);
    let kinds = sim.event_kinds(id);
    assert!(kinds.contains(&EventKind::ApprovalGranted), "{kinds:?}");
}

#[test]
fn a_monitor_window_that_saw_alarm_before_the_crash_stays_failed() {
    let yaml = r#"
pipeline: watched
build:
  steps:
    - name: unit
      run: ./ci/unit.sh
environments:
  - name: test
    deploy:
      command:
        run: ./deploy.sh test
    monitor:
      duration: 1m
      alarms: [errors]
alarms:
  - name: errors
    external: {}
    environment: test
"#;
    let sim = Sim::new(yaml);
    let s = sha(1);
    sim.deployer("test").set_current(Some(&s));
    let id = killed_at(&sim, &s, 1, "monitor");
    // The window had seen ALARM (recorded) when ferry died; the alarm is OK again now.
    let at = sim.clock.now();
    for (state, t) in [
        (ferry_core::alarm::AlarmState::Alarm, at),
        (
            ferry_core::alarm::AlarmState::Ok,
            at.plus(Duration::from_secs(1)),
        ),
    ] {
        // As `ferry alarm` / `POST /hooks/alarms` record a pushed state.
        sim.store
            .record_alarm(&[
                ferry_core::Change::AlarmState {
                    alarm: "errors".into(),
                    state,
                    reason: "pushed".into(),
                    at: t,
                },
                ferry_core::Change::Event(ferry_core::Event {
                    at: t,
                    kind: EventKind::AlarmStateChanged,
                    run: None,
                    environment: Some("test".into()),
                    message: format!("alarm errors is {state} (pushed)"),
                    data: serde_json::json!({"alarm": "errors", "state": state, "pushed": true}),
                }),
            ])
            .expect("recorded");
    }
    let engine = sim.engine();
    let run = engine.resume(id).expect("resumed").expect("taken up");
    let view = engine.drive(run).expect("driven");
    // The alarm's state is OK again, but the window had seen ALARM: it stays failed
    // (invariant 6), and the deployment is rolled back.
    assert_eq!(view.status, RunStatus::Failed);
    let reason = view.reason.unwrap_or_default();
    assert!(reason.contains("before ferry stopped"), "{reason}");
}
